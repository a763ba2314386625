//! Networking of nspawn VMs: each VM gets a network namespace, a veth pair, a /30 subnet of
//! 10.213.0.0/16 and an nftables masquerade rule so that it reaches package mirrors.
//!
//! A VM's slot number `N` names everything: namespace `azlin-N`, host veth `azvN`, subnet
//! `10.213.0.0 + 4N`/30 (host `.1`, VM `.2`), NAT rule comment `azlin-slot-N`. Slots are
//! allocated under a machine-wide lock by looking at which veths exist, so there is no registry
//! to drift from reality. Every host veth also carries [`HOST_ALIAS`].

use crate::command::{run, run_with_input};
use crate::lock::FileLock;
use azlin_core::{ErrorKind, ProviderError};
use std::net::Ipv4Addr;
use std::path::Path;

/// First address of the range VM subnets are cut from.
const RANGE_START: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 0);
/// How many /30 subnets of 10.213.0.0/16 are handed out (the last one is reserved for
/// [`HOST_ALIAS`]).
const SLOTS: u32 = 16383;
/// An address of the host that every VM reaches through its own veth, named
/// `host.azlin.internal` in the VMs' `/etc/hosts`: services on the host (an internal git
/// server, say) listen here to be reachable from every local VM.
pub const HOST_ALIAS: Ipv4Addr = Ipv4Addr::new(10, 213, 255, 254);
/// The machine-wide lock held while a slot is chosen and created.
const LOCK_FILE: &str = "/run/azlin/network.lock";
/// The nftables table azlin keeps its NAT rules in.
const NFT_TABLE: &str = "azlin";

/// A VM's network slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub u32);

impl Slot {
    /// The network namespace name.
    pub fn netns(self) -> String {
        format!("azlin-{}", self.0)
    }

    /// The path of the network namespace (for `--network-namespace-path`).
    pub fn netns_path(self) -> String {
        format!("/run/netns/{}", self.netns())
    }

    /// The host end of the veth pair.
    pub fn host_veth(self) -> String {
        format!("azv{}", self.0)
    }

    fn base(self) -> u32 {
        u32::from(RANGE_START) + self.0 * 4
    }

    /// The host's address on the VM's subnet.
    pub fn host_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 1)
    }

    /// The VM's address.
    pub fn guest_ip(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base() + 2)
    }

    /// The subnet in CIDR notation.
    pub fn cidr(self) -> String {
        format!("{}/30", Ipv4Addr::from(self.base()))
    }

    fn nat_comment(self) -> String {
        format!("azlin-slot-{}", self.0)
    }

    fn veth_exists(self) -> bool {
        Path::new("/sys/class/net").join(self.host_veth()).exists()
    }

    fn netns_exists(self) -> bool {
        Path::new(&self.netns_path()).exists()
    }
}

fn net_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// The MTU of the host's default route, so VM packets fit the uplink (1500 if unknown).
fn uplink_mtu() -> u32 {
    let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let iface = routes
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"00000000"))
        .and_then(|f| f.first().map(|s| s.to_string()));
    iface
        .and_then(|i| std::fs::read_to_string(format!("/sys/class/net/{i}/mtu")).ok())
        .and_then(|m| m.trim().parse().ok())
        .map_or(1500, |m: u32| m.min(1500))
}

/// Runs `ip [-n NETNS] -batch -` with `commands`, one per line.
async fn ip_batch(netns: Option<&str>, commands: &str) -> Result<(), ProviderError> {
    let mut args = Vec::new();
    if let Some(ns) = netns {
        args.extend(["-n", ns]);
    }
    args.extend(["-batch", "-"]);
    run_with_input(ErrorKind::Provision, "ip", &args, commands)
        .await
        .map(drop)
}

/// Turns on IPv4 forwarding, which NAT for the VMs needs.
fn enable_forwarding() -> Result<(), ProviderError> {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    if std::fs::read_to_string(PATH).is_ok_and(|v| v.trim() == "1") {
        return Ok(());
    }
    std::fs::write(PATH, "1").map_err(|e| net_error(format!("enabling IPv4 forwarding: {e}")))
}

/// Allocates a free slot and creates its namespace, veth pair, addresses, route and NAT rule.
/// On failure, whatever was made is removed again.
pub async fn create() -> Result<Slot, ProviderError> {
    let _lock = FileLock::acquire(Path::new(LOCK_FILE)).await?;
    let slot = (0..SLOTS)
        .map(Slot)
        .find(|s| !s.veth_exists() && !s.netns_exists())
        .ok_or_else(|| net_error(format!("all {SLOTS} VM network slots are in use")))?;
    match build(slot).await {
        Ok(()) => Ok(slot),
        Err(e) => {
            let removed = remove_locked(slot).await;
            Err(e.with_cleanup(removed))
        }
    }
}

/// Re-creates whatever part of a slot's network is missing (after a host reboot).
pub async fn ensure(slot: Slot) -> Result<(), ProviderError> {
    if slot.veth_exists() && slot.netns_exists() && nat_rule_handle(slot).await?.is_some() {
        return Ok(());
    }
    let _lock = FileLock::acquire(Path::new(LOCK_FILE)).await?;
    remove_locked(slot).await;
    build(slot).await
}

async fn build(slot: Slot) -> Result<(), ProviderError> {
    let (ns, veth, mtu) = (slot.netns(), slot.host_veth(), uplink_mtu());
    ip_batch(
        None,
        &format!(
            "netns add {ns}\n\
             link add {veth} mtu {mtu} type veth peer name eth0 mtu {mtu} netns {ns}\n\
             addr add {}/30 dev {veth}\n\
             addr add {HOST_ALIAS}/32 dev {veth}\n\
             link set {veth} up\n",
            slot.host_ip()
        ),
    )
    .await?;
    ip_batch(
        Some(&ns),
        &format!(
            "addr add {}/30 dev eth0\nlink set lo up\nlink set eth0 up\nroute add default via {}\n",
            slot.guest_ip(),
            slot.host_ip()
        ),
    )
    .await?;
    enable_forwarding()?;
    add_nat_rule(slot).await
}

async fn add_nat_rule(slot: Slot) -> Result<(), ProviderError> {
    let script = format!(
        "add table ip {NFT_TABLE}\n\
         add chain ip {NFT_TABLE} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
         add rule ip {NFT_TABLE} postrouting ip saddr {} masquerade comment \"{}\"\n",
        slot.cidr(),
        slot.nat_comment()
    );
    run_with_input(ErrorKind::Provision, "nft", &["-f", "-"], &script)
        .await
        .map(drop)
}

/// The handle of the slot's NAT rule, if present.
async fn nat_rule_handle(slot: Slot) -> Result<Option<String>, ProviderError> {
    let Ok(listing) = run(
        ErrorKind::Internal,
        "nft",
        &["-a", "list", "chain", "ip", NFT_TABLE, "postrouting"],
    )
    .await
    else {
        // No table or chain: no rule.
        return Ok(None);
    };
    let needle = format!("comment \"{}\"", slot.nat_comment());
    Ok(listing
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.rsplit_once("# handle "))
        .map(|(_, h)| h.trim().to_string()))
}

/// Removes the slot's NAT rule, veth pair and namespace (whichever exist), returning what was
/// removed. Never fails: cleanup goes as far as it can.
pub async fn remove(slot: Slot) -> Vec<String> {
    match FileLock::acquire(Path::new(LOCK_FILE)).await {
        Ok(_lock) => remove_locked(slot).await,
        Err(e) => {
            tracing::warn!(
                "{e}; removing the network of slot {} without the lock",
                slot.0
            );
            remove_locked(slot).await
        }
    }
}

/// [`remove`] for a caller that holds the network lock. Drops the NAT table when its last rule
/// goes, so a host without azlin VMs carries no azlin ruleset.
async fn remove_locked(slot: Slot) -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(Some(handle)) = nat_rule_handle(slot).await {
        if run(
            ErrorKind::Internal,
            "nft",
            &[
                "delete",
                "rule",
                "ip",
                NFT_TABLE,
                "postrouting",
                "handle",
                &handle,
            ],
        )
        .await
        .is_ok()
        {
            removed.push(format!("NAT rule for {}", slot.cidr()));
        }
        let listing = run(
            ErrorKind::Internal,
            "nft",
            &["list", "chain", "ip", NFT_TABLE, "postrouting"],
        )
        .await;
        if listing.is_ok_and(|l| !l.contains("masquerade")) {
            let _ = run(
                ErrorKind::Internal,
                "nft",
                &["delete", "table", "ip", NFT_TABLE],
            )
            .await;
        }
    }
    if slot.veth_exists()
        && run(
            ErrorKind::Internal,
            "ip",
            &["link", "del", &slot.host_veth()],
        )
        .await
        .is_ok()
    {
        removed.push(format!("veth pair {}", slot.host_veth()));
    }
    if slot.netns_exists()
        && run(ErrorKind::Internal, "ip", &["netns", "del", &slot.netns()])
            .await
            .is_ok()
    {
        removed.push(format!("network namespace {}", slot.netns()));
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_name_everything() {
        let slot = Slot(5);
        assert_eq!(slot.netns(), "azlin-5");
        assert_eq!(slot.host_veth(), "azv5");
        assert_eq!(slot.cidr(), "10.213.0.20/30");
        assert_eq!(slot.host_ip(), Ipv4Addr::new(10, 213, 0, 21));
        assert_eq!(slot.guest_ip(), Ipv4Addr::new(10, 213, 0, 22));
        // The last slot handed out stops short of the /30 that holds the host alias.
        assert_eq!(Slot(SLOTS - 1).guest_ip(), Ipv4Addr::new(10, 213, 255, 250));
        // The reserved slot is the one whose addresses include the alias.
        assert_eq!(Slot(SLOTS).guest_ip(), HOST_ALIAS);
        assert!(Slot(SLOTS - 1).host_veth().len() <= 15);
    }
}
