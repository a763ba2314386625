//! The nftables filter that confines each nspawn VM: it reaches the ports azlin offers on
//! `host.azlin.internal` and the outside world its egress policy allows, and nothing else — no
//! other VM, no other host port, no IPv6 at all (the veths carry link-local IPv6 addresses
//! through which host services on `::` would otherwise be reachable).
//!
//! Everything lives in one table, `inet azlin`:
//!
//! | chain / map      | what it does                                                          |
//! |------------------|-----------------------------------------------------------------------|
//! | `input`          | packets to the host: replies pass, a VM's new ones go to its `host` chain |
//! | `forward`        | replies pass; nothing new reaches a VM through the host; a VM's new packets go to its `egress` chain |
//! | `postrouting`    | masquerades the VM range leaving through the uplink                   |
//! | `host_access`    | map: VM veth → `goto slot-N-host`                                      |
//! | `egress`         | map: VM veth → `goto slot-N-egress`                                    |
//! | `slot-N-host`    | offered TCP ports and azlin's job services on the host alias, then drop |
//! | `slot-N-egress`  | the VM's own source address only, never the VM range, the policy, then drop |
//!
//! A VM's chains and map entries are made in one transaction with its network and removed by
//! its delete; the table goes with the last VM.

use super::{HOST_ALIAS, Slot};
use crate::command::run_with_input;
use azlin_core::network::JOB_SERVICE_PORTS;
use azlin_core::{Egress, ErrorKind, ProviderError};
use std::net::Ipv4Addr;

/// The table (family `inet`, so IPv6 from VMs is filtered too).
const TABLE: &str = "azlin";
/// The range every VM's subnet is cut from; never reachable from a VM.
pub(super) const VM_RANGE: &str = "10.213.0.0/16";
/// Host veths of VMs (an nft wildcard).
const VETHS: &str = "\"azv*\"";

/// What one VM may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// TCP ports on [`HOST_ALIAS`] the VM may connect to.
    pub offered_ports: Vec<u16>,
    /// Where outside the host the VM may connect.
    pub egress: Egress,
    /// The resolvers the VM is given (the host's), reachable on port 53 under a CIDR policy.
    pub resolvers: Vec<Ipv4Addr>,
}

fn host_chain(slot: Slot) -> String {
    format!("slot-{}-host", slot.0)
}

fn egress_chain(slot: Slot) -> String {
    format!("slot-{}-egress", slot.0)
}

/// The table, its base chains (their rules rewritten, so this can run for every VM) and maps.
fn skeleton() -> String {
    let t = format!("inet {TABLE}");
    format!(
        "add table {t}\n\
         add map {t} host_access {{ type ifname : verdict; }}\n\
         add map {t} egress {{ type ifname : verdict; }}\n\
         add chain {t} input {{ type filter hook input priority filter; policy accept; }}\n\
         flush chain {t} input\n\
         add rule {t} input ct state established,related accept\n\
         add rule {t} input iifname vmap @host_access\n\
         add chain {t} forward {{ type filter hook forward priority filter; policy accept; }}\n\
         flush chain {t} forward\n\
         add rule {t} forward ct state established,related accept\n\
         add rule {t} forward oifname {VETHS} drop\n\
         add rule {t} forward iifname vmap @egress\n\
         add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         flush chain {t} postrouting\n\
         add rule {t} postrouting ip saddr {VM_RANGE} oifname != {VETHS} masquerade\n"
    )
}

/// The transaction that gives `slot` its chains and map entries.
fn vm_rules(slot: Slot, policy: &Policy) -> String {
    let t = format!("inet {TABLE}");
    let (host, egress, veth, guest) = (
        host_chain(slot),
        egress_chain(slot),
        slot.host_veth(),
        slot.guest_ip(),
    );
    let mut s = skeleton();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!("add chain {t} {host}"));
    line(format!("flush chain {t} {host}"));
    line(format!(
        "add rule {t} {host} ip saddr {guest} ip daddr {HOST_ALIAS} tcp dport {} accept",
        host_ports(policy)
    ));
    line(format!("add rule {t} {host} drop"));
    line(format!("add chain {t} {egress}"));
    line(format!("flush chain {t} {egress}"));
    line(format!("add rule {t} {egress} ip saddr != {guest} drop"));
    line(format!("add rule {t} {egress} ip daddr {VM_RANGE} drop"));
    for rule in egress_rules(&policy.egress, &policy.resolvers) {
        line(format!("add rule {t} {egress} {rule}"));
    }
    line(format!("add rule {t} {egress} drop"));
    line(format!(
        "add element {t} host_access {{ \"{veth}\" : goto {host} }}"
    ));
    line(format!(
        "add element {t} egress {{ \"{veth}\" : goto {egress} }}"
    ));
    s
}

/// The host ports a VM may connect to, as an nft set: the offered ports and the range azlin's
/// job services listen in.
pub(super) fn host_ports(policy: &Policy) -> String {
    let mut ports: Vec<String> = policy.offered_ports.iter().map(u16::to_string).collect();
    ports.push(format!(
        "{}-{}",
        JOB_SERVICE_PORTS.start(),
        JOB_SERVICE_PORTS.end()
    ));
    format!("{{ {} }}", ports.join(", "))
}

/// The accepting rules of an egress policy, for a chain that drops whatever they leave (the
/// host and the VM range are dropped before them): IPv4 anywhere, nothing, or the listed
/// networks and DNS to `resolvers`.
pub(super) fn egress_rules(egress: &Egress, resolvers: &[Ipv4Addr]) -> Vec<String> {
    match egress {
        Egress::All => vec!["meta nfproto ipv4 accept".to_string()],
        Egress::None => Vec::new(),
        Egress::Only(cidrs) => {
            let mut rules = Vec::new();
            if !resolvers.is_empty() {
                for proto in ["udp", "tcp"] {
                    rules.push(format!(
                        "ip daddr {{ {} }} {proto} dport 53 accept",
                        join(resolvers)
                    ));
                }
            }
            if !cidrs.is_empty() {
                rules.push(format!("ip daddr {{ {} }} accept", join(cidrs)));
            }
            rules
        }
    }
}

pub(super) fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

async fn nft_script(script: &str) -> Result<String, ProviderError> {
    run_with_input(ErrorKind::Provision, "nft", &["-f", "-"], script).await
}

/// Gives `slot` its filter (and NAT), replacing whatever it had: one transaction.
pub async fn add(slot: Slot, policy: &Policy) -> Result<(), ProviderError> {
    if !is_present(slot).await {
        // Stale map entries would make `add element` fail: drop any remains first.
        remove(slot).await;
    }
    nft_script(&vm_rules(slot, policy)).await.map(drop)
}

/// The table as nft lists it, if it exists.
async fn listing() -> Option<String> {
    run_with_input(
        ErrorKind::Internal,
        "nft",
        &["list", "table", "inet", TABLE],
        "",
    )
    .await
    .ok()
}

/// Whether `slot` has both chains and both map entries.
pub async fn is_present(slot: Slot) -> bool {
    let Some(text) = listing().await else {
        return false;
    };
    let (veth, host, egress) = (slot.host_veth(), host_chain(slot), egress_chain(slot));
    text.contains(&format!("\"{veth}\" : goto {host}"))
        && text.contains(&format!("\"{veth}\" : goto {egress}"))
        && text.contains(&format!("chain {host} {{"))
        && text.contains(&format!("chain {egress} {{"))
}

/// Removes `slot`'s map entries and chains (whichever exist), returning what was removed.
/// Never fails: cleanup goes as far as it can.
pub async fn remove(slot: Slot) -> Vec<String> {
    let Some(text) = listing().await else {
        return Vec::new();
    };
    let t = format!("inet {TABLE}");
    let (veth, host, egress) = (slot.host_veth(), host_chain(slot), egress_chain(slot));
    let mut steps = Vec::new();
    for (map, chain) in [("host_access", &host), ("egress", &egress)] {
        if text.contains(&format!("\"{veth}\" : goto {chain}")) {
            steps.push(format!("delete element {t} {map} {{ \"{veth}\" }}"));
        }
    }
    for chain in [&host, &egress] {
        if text.contains(&format!("chain {chain} {{")) {
            steps.push(format!("delete chain {t} {chain}"));
        }
    }
    if steps.is_empty() {
        return Vec::new();
    }
    match nft_script(&(steps.join("\n") + "\n")).await {
        Ok(_) => vec![format!("firewall rules of {veth}")],
        Err(e) => {
            tracing::warn!("removing the firewall rules of {veth}: {e}");
            Vec::new()
        }
    }
}

/// Drops the whole table (when no VM is left), returning what was removed.
pub async fn remove_table() -> Vec<String> {
    if listing().await.is_none() {
        return Vec::new();
    }
    match run_with_input(
        ErrorKind::Internal,
        "nft",
        &["delete", "table", "inet", TABLE],
        "",
    )
    .await
    {
        Ok(_) => vec![format!("nftables table inet {TABLE}")],
        Err(e) => {
            tracing::warn!("{e}");
            Vec::new()
        }
    }
}

/// The IPv4 resolvers of the host's `/etc/resolv.conf` (which nspawn copies into the VM),
/// loopback ones left out (a VM cannot reach the host's loopback).
pub fn host_resolvers() -> Vec<Ipv4Addr> {
    parse_resolvers(&std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default())
}

fn parse_resolvers(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse::<Ipv4Addr>().ok())
        .filter(|a| !a.is_loopback())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_gets_offered_ports_and_its_egress_policy() {
        let policy = Policy {
            offered_ports: vec![8443, 9000],
            egress: Egress::Only(vec!["192.0.2.0/24".parse().unwrap()]),
            resolvers: vec![Ipv4Addr::new(192, 0, 2, 53)],
        };
        let rules = vm_rules(Slot(5), &policy);
        assert!(rules.contains(
            "add rule inet azlin slot-5-host ip saddr 10.213.0.22 ip daddr 10.213.255.254 \
             tcp dport { 8443, 9000, 47400-47463 } accept"
        ));
        assert!(rules.contains("add rule inet azlin slot-5-egress ip daddr 10.213.0.0/16 drop"));
        assert!(rules.contains("ip daddr { 192.0.2.53 } udp dport 53 accept"));
        assert!(
            rules.contains("add rule inet azlin slot-5-egress ip daddr { 192.0.2.0/24 } accept")
        );
        assert!(rules.contains("\"azv5\" : goto slot-5-egress"));
        // The VM range is dropped before the policy is looked at.
        let range = rules.find("10.213.0.0/16 drop").unwrap();
        assert!(range < rules.find("192.0.2.0/24").unwrap());
    }

    #[test]
    fn nothing_offered_and_no_egress_leaves_the_job_services_and_drops() {
        let policy = Policy {
            egress: Egress::None,
            ..Policy::default()
        };
        let rules = vm_rules(Slot(1), &policy);
        assert!(
            rules.contains(
                "slot-1-host ip saddr 10.213.0.6 ip daddr 10.213.255.254 tcp dport { 47400-47463 } accept"
            ),
            "{rules}"
        );
        assert!(!rules.contains("slot-1-egress ip daddr {"), "{rules}");
        assert!(!rules.contains("slot-1-egress meta nfproto ipv4 accept"));
        assert!(rules.contains("add rule inet azlin slot-1-egress drop"));
    }

    #[test]
    fn resolvers_skip_loopback_and_ipv6() {
        let text = "# c\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\n";
        assert_eq!(parse_resolvers(text), vec![Ipv4Addr::new(10, 255, 255, 53)]);
    }
}
