//! Networking of QEMU VMs run without root. `pasta` (of the passt project) starts QEMU in a
//! network namespace of a user namespace of its own and links that namespace to the host's
//! network through its own sockets. In the namespace its user is root, so an nftables filter
//! there confines the guest as the root filter does (see [`super::firewall`]): the guest
//! reaches the ports azlin offers and the outside its egress policy allows — no other host
//! port, no address of the host, no other VM.
//!
//! | address in the namespace | what it is                                                      |
//! |--------------------------|-----------------------------------------------------------------|
//! | [`NAMESPACE_ADDRESS`]    | the namespace's own (pasta's tap)                               |
//! | [`GATEWAY`]              | pasta's gateway: TCP to it reaches the host's loopback          |
//! | `127.0.0.1`              | the namespace's loopback, QEMU's `10.0.2.2` for the guest: offered ports are sent on to the gateway |
//!
//! SSH comes in through pasta: a loopback port of the host is forwarded to the namespace's
//! loopback port 22, where QEMU forwards it to the guest. The host's addresses are read when
//! the VM boots; an address the host gains later is not in that VM's filter (the VM range of
//! root's VMs always is).

use super::firewall::{self, Policy, VM_RANGE};
use crate::tools::which;
use azlin_core::{ErrorKind, ProviderError, Tool};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

/// The program that gives QEMU its namespace.
pub const PASTA: Tool = Tool {
    program: "pasta",
    version_args: &["--version"],
    purpose: "gives the QEMU VMs of a user without root a confined network",
    install_hint: "apt-get install passt",
};

/// The namespace's address (RFC 2544 benchmarking range: on no real network).
pub const NAMESPACE_ADDRESS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The namespace's gateway, which pasta maps to the host's loopback.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The prefix length of the namespace's link.
const PREFIX: u8 = 30;
/// The namespace port QEMU forwards to the guest's SSH.
pub const NAMESPACE_SSH_PORT: u16 = 22;
/// The device pasta opens in the namespace.
const TUN: &str = "/dev/net/tun";
/// What pasta logs when it cannot bind a forwarded port.
const BIND_FAILED: &str = "Failed to bind";

/// Checks that this user can give a VM a confined network: pasta and nft are installed and the
/// TUN device opens.
pub fn check() -> Result<(), ProviderError> {
    installed(&PASTA)?;
    installed(&super::NFT)?;
    std::fs::File::options()
        .read(true)
        .write(true)
        .open(TUN)
        .map(drop)
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Prerequisites,
                format!(
                    "cannot open {TUN} ({e}): a VM's network needs it without root; Debian \
                     opens it to every user (as root: `chmod 0666 {TUN}`)"
                ),
            )
        })
}

fn missing(tool: &Tool) -> ProviderError {
    ProviderError::new(
        ErrorKind::Prerequisites,
        format!(
            "{} is not installed; it {} (install it with `{}`)",
            tool.program, tool.purpose, tool.install_hint
        ),
    )
}

/// Where `tool` is: on `PATH`, or in the system directories a user's `PATH` often leaves out
/// (nft lives in `/usr/sbin`).
fn installed(tool: &Tool) -> Result<PathBuf, ProviderError> {
    which(tool.program)
        .or_else(|| {
            ["/usr/sbin", "/sbin"]
                .iter()
                .find_map(|dir| which(&format!("{dir}/{}", tool.program)))
        })
        .ok_or_else(|| missing(tool))
}

/// The IPv4 addresses of the host's interfaces.
pub fn host_addresses() -> Vec<Ipv4Addr> {
    let mut addresses: Vec<Ipv4Addr> = nix::ifaddrs::getifaddrs()
        .map(|interfaces| {
            interfaces
                .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
                .collect()
        })
        .unwrap_or_default();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// The filter of a VM's namespace: offered ports on the guest's gateway (the namespace's
/// loopback) sent on to pasta's gateway, the host and the VM range dropped, then the egress
/// policy; IPv6 never leaves.
pub fn filter(policy: &Policy, host_addresses: &[Ipv4Addr]) -> String {
    let ports = firewall::host_ports(policy);
    let mut unreachable = vec![GATEWAY.to_string(), VM_RANGE.to_string()];
    unreachable.extend(host_addresses.iter().map(ToString::to_string));
    let egress = firewall::egress_rules(&policy.egress, &policy.resolvers);
    let mut s = format!(
        "table inet azlin {{\n\
         \tchain offered {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tip daddr 127.0.0.1 tcp dport {ports} dnat ip to {GATEWAY}\n\
         \t}}\n\
         \tchain from_loopback {{\n\
         \t\ttype nat hook postrouting priority 100; policy accept;\n\
         \t\tip saddr 127.0.0.0/8 oifname != \"lo\" masquerade\n\
         \t}}\n\
         \tchain output {{\n\
         \t\ttype filter hook output priority filter; policy drop;\n\
         \t\toifname \"lo\" accept\n\
         \t\tct state established,related accept\n\
         \t\tip daddr {GATEWAY} tcp dport {ports} accept\n\
         \t\tip daddr {{ {} }} drop\n",
        firewall::join(&unreachable)
    );
    for rule in egress {
        s.push_str(&format!("\t\t{rule}\n"));
    }
    s.push_str("\t}\n}\n");
    s
}

/// The command that runs `program args…` in a new confined namespace: pasta makes the
/// namespace and forwards `127.0.0.1:ssh_port` of the host to its port 22, a shell loads
/// `filter` (an nft file), lets loopback packets leave (for the offered ports) and becomes
/// the program. pasta logs to `log`; it ends when the program ends.
pub fn command(
    ssh_port: u16,
    filter: &Path,
    log: &Path,
    program: &str,
    args: &[String],
) -> Result<tokio::process::Command, ProviderError> {
    let nft = installed(&super::NFT)?;
    // Its own session, like a daemon: a Ctrl-C or hang-up of azlin's terminal does not reach it.
    let mut command = tokio::process::Command::new("setsid");
    command
        .arg(PASTA.program)
        .args(["--ipv4-only", "--config-net", "--log-file"])
        .arg(log)
        .args(["--address", &NAMESPACE_ADDRESS.to_string()])
        .args(["--netmask", &PREFIX.to_string()])
        .args(["--gateway", &GATEWAY.to_string()])
        .args([
            "--tcp-ports",
            &format!("127.0.0.1/{ssh_port}:{NAMESPACE_SSH_PORT}"),
        ])
        // No other forward, and none of the host's ports into the namespace.
        .args([
            "--udp-ports",
            "none",
            "--tcp-ns",
            "none",
            "--udp-ns",
            "none",
        ])
        .args([
            "--",
            "sh",
            "-c",
            "\"$0\" -f \"$1\" && echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet \
             && shift && exec \"$@\"",
        ])
        .arg(nft)
        .arg(filter)
        .arg(program)
        .args(args)
        .stdin(Stdio::null());
    Ok(command)
}

/// The process pasta started (as the host numbers it), once there is one.
pub fn started_process(pasta: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pasta}/task/{pasta}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether pasta's `log` says it could not bind the SSH port (another process took it).
pub fn port_was_taken(log: &Path) -> bool {
    std::fs::read_to_string(log).is_ok_and(|text| text.contains(BIND_FAILED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use azlin_core::Egress;

    fn policy(egress: Egress) -> Policy {
        Policy {
            offered_ports: vec![8080],
            egress,
            resolvers: vec![Ipv4Addr::new(10, 0, 0, 53)],
        }
    }

    #[test]
    fn the_filter_offers_ports_and_drops_the_host_before_egress() {
        let hosts = [Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::LOCALHOST];
        let all = filter(&policy(Egress::All), &hosts);
        assert!(
            all.contains(
                "ip daddr 127.0.0.1 tcp dport { 8080, 47400-47463 } dnat ip to 198.18.0.1"
            ),
            "{all}"
        );
        let drop = all
            .find("ip daddr { 198.18.0.1, 10.213.0.0/16, 192.0.2.2, 127.0.0.1 } drop")
            .expect(&all);
        let accept = all.find("meta nfproto ipv4 accept").expect(&all);
        assert!(drop < accept);
        let none = filter(&policy(Egress::None), &hosts);
        assert!(!none.contains("nfproto") && none.contains("policy drop"));
        let only = filter(
            &policy(Egress::Only(vec!["203.0.113.0/24".parse().unwrap()])),
            &hosts,
        );
        assert!(only.contains("ip daddr { 10.0.0.53 } udp dport 53 accept"));
        assert!(only.contains("ip daddr { 203.0.113.0/24 } accept"));
    }

    #[test]
    fn the_host_has_a_loopback_address() {
        assert!(host_addresses().contains(&Ipv4Addr::LOCALHOST));
    }
}
