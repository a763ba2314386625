//! Networking of local VMs run by root: each VM gets a network namespace, a veth pair, a /30
//! subnet of 10.213.0.0/16, outbound NAT and a filter that confines it (see [`firewall`]). An
//! nspawn machine boots inside the namespace; a QEMU VM's process runs in it, so that what its
//! user-mode network reaches is what the filter admits.
//!
//! A VM's slot number `N` names everything: namespace `azlin-N`, host veth `azvN`, subnet
//! `10.213.0.0 + 4N`/30 (host `.1`, VM `.2`), filter chains `slot-N-host` and `slot-N-egress`. Slots are
//! allocated under a machine-wide lock by looking at which veths exist, so there is no registry
//! to drift from reality. Every host veth also carries [`HOST_ALIAS`].
//!
//! QEMU VMs of a user without root get the same confinement another way: see [`rootless`].

pub mod firewall;
pub mod host_settings;
pub mod rootless;

use crate::command::{run, run_with_input};
use crate::lock::FileLock;
use azlin_core::{Egress, ErrorKind, ProviderError, Tool};
use firewall::Policy;
use host_settings::{
    HostSettings, INOTIFY_INSTANCES, INOTIFY_INSTANCES_FOR_VMS, IP_FORWARD, remove_if_present,
};
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The program VM filters are made with.
pub const NFT: Tool = Tool {
    program: "nft",
    version_args: &["--version"],
    purpose: "gives local VMs outbound NAT and confines them",
    install_hint: "apt-get install nftables",
};

/// The programs VM networks are made with.
pub const TOOLS: [Tool; 2] = [
    Tool {
        program: "ip",
        version_args: &["-V"],
        purpose: "creates VM network namespaces",
        install_hint: "apt-get install iproute2",
    },
    NFT,
];

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
/// Who owns each slot: `OWNERS_DIR/N` holds the folder of the VM the slot was made for (of
/// whichever azlin home), so that a slot whose VM folder is gone is provably an orphan.
const OWNERS_DIR: &str = "/run/azlin/slots";

/// What local VMs may reach on the network (from `[network]` in the config).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkSettings {
    /// TCP ports on `host.azlin.internal` VMs may connect to; none by default.
    pub offered_ports: Vec<u16>,
    /// Where outside the host VMs may connect.
    pub egress: Egress,
}

impl NetworkSettings {
    /// The filter policy of a VM booted now.
    pub fn policy(&self) -> Policy {
        Policy {
            offered_ports: self.offered_ports.clone(),
            egress: self.egress.clone(),
            resolvers: firewall::host_resolvers(),
        }
    }
}

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

    fn veth_exists(self) -> bool {
        Path::new("/sys/class/net").join(self.host_veth()).exists()
    }

    fn netns_exists(self) -> bool {
        Path::new(&self.netns_path()).exists()
    }

    fn owner_file(self) -> std::path::PathBuf {
        Path::new(OWNERS_DIR).join(self.0.to_string())
    }

    /// Records `owner` (a VM folder) as the owner of the slot.
    fn set_owner(self, owner: &Path) -> Result<(), ProviderError> {
        std::fs::create_dir_all(OWNERS_DIR)
            .and_then(|()| std::fs::write(self.owner_file(), owner.as_os_str().as_encoded_bytes()))
            .map_err(|e| {
                net_error(format!(
                    "recording the owner of network slot {}: {e}",
                    self.0
                ))
            })
    }
}

/// The slots whose recorded owner folder no longer exists: networks a crash left behind.
/// Slots without an owner record are never listed (nothing proves they are orphans).
pub fn orphaned_slots() -> Vec<Slot> {
    let Ok(entries) = std::fs::read_dir(OWNERS_DIR) else {
        return Vec::new();
    };
    let mut slots: Vec<Slot> = entries
        .flatten()
        .filter_map(|e| {
            let slot = Slot(e.file_name().to_str()?.parse().ok()?);
            let owner = std::fs::read(e.path()).ok()?;
            let owner = Path::new(std::ffi::OsStr::from_bytes(&owner));
            (!owner.exists()).then_some(slot)
        })
        .collect();
    slots.sort_by_key(|s| s.0);
    slots
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

/// Allocates a free slot and creates its namespace, veth pair, addresses, route and filter
/// (see [`firewall`]). On failure, whatever was made is removed again.
pub async fn create(policy: &Policy, owner: &Path) -> Result<Slot, ProviderError> {
    let _lock = FileLock::acquire(Path::new(LOCK_FILE)).await?;
    let slot = (0..SLOTS)
        .map(Slot)
        .find(|s| !s.veth_exists() && !s.netns_exists())
        .ok_or_else(|| net_error(format!("all {SLOTS} VM network slots are in use")))?;
    slot.set_owner(owner)?;
    match build(slot, policy).await {
        Ok(()) => Ok(slot),
        Err(e) => {
            let removed = remove_locked(slot).await;
            Err(e.with_cleanup(removed))
        }
    }
}

/// The network of a VM: its slot `recorded` made whole again (see [`ensure`]), or a new one
/// (see [`create`]) for a VM that has none yet — then also `true`, for the caller to record.
pub async fn attach(
    recorded: Option<Slot>,
    policy: &Policy,
    owner: &Path,
) -> Result<(Slot, bool), ProviderError> {
    match recorded {
        Some(slot) => ensure(slot, policy, owner).await.map(|()| (slot, false)),
        None => create(policy, owner).await.map(|slot| (slot, true)),
    }
}

/// Re-creates whatever part of a slot's network is missing (after a host reboot), and gives it
/// the current `policy`.
pub async fn ensure(slot: Slot, policy: &Policy, owner: &Path) -> Result<(), ProviderError> {
    let _lock = FileLock::acquire(Path::new(LOCK_FILE)).await?;
    slot.set_owner(owner)?;
    if slot.veth_exists() && slot.netns_exists() {
        host_settings()?;
        return firewall::add(slot, policy).await;
    }
    remove_locked(slot).await;
    build(slot, policy).await
}

async fn build(slot: Slot, policy: &Policy) -> Result<(), ProviderError> {
    let (ns, veth, mtu) = (slot.netns(), slot.host_veth(), uplink_mtu());
    // The filter comes first: the VM's veth is never up without it.
    firewall::add(slot, policy).await?;
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
    // The namespace belongs to the host's user namespace, so root of a VM in its own user
    // namespace has no privilege in it (it cannot reconfigure its network, which suits
    // isolation) — nor to bind ports below 1024, which sshd needs: any port may be bound.
    netns_sysctl(&ns, "net.ipv4.ip_unprivileged_port_start=0").await?;
    host_settings()
}

/// Sets a sysctl (`key=value`) inside network namespace `ns`.
async fn netns_sysctl(ns: &str, setting: &str) -> Result<(), ProviderError> {
    run(
        ErrorKind::Provision,
        "ip",
        &["netns", "exec", ns, "sysctl", "-qw", setting],
    )
    .await
    .map(drop)
}

/// Sends every TCP connection made to the namespace's loopback address out to the host, at
/// [`HOST_ALIAS`], where the slot's filter judges it like any other: for a QEMU VM in the
/// namespace, whose user-mode network turns the guest's connections to its gateway (10.0.2.2)
/// into connections to this loopback. The rules live in the namespace and go with it.
pub async fn send_loopback_to_host(slot: Slot) -> Result<(), ProviderError> {
    let ns = slot.netns();
    // Packets from 127.0.0.1 may leave through eth0 only with `route_localnet`; masquerading
    // then gives them the namespace's own address.
    netns_sysctl(&ns, "net.ipv4.conf.all.route_localnet=1").await?;
    // Declared, dropped and made again in one transaction: the same rules after a restart.
    let rules = [
        "add table ip azlin-loopback".to_string(),
        "delete table ip azlin-loopback".to_string(),
        "add table ip azlin-loopback".to_string(),
        "add chain ip azlin-loopback output { type nat hook output priority -100; }".to_string(),
        format!(
            "add rule ip azlin-loopback output ip daddr 127.0.0.1 meta l4proto tcp dnat to {HOST_ALIAS}"
        ),
        "add chain ip azlin-loopback postrouting { type nat hook postrouting priority 100; }"
            .to_string(),
        "add rule ip azlin-loopback postrouting ip saddr 127.0.0.0/8 oifname \"eth0\" masquerade"
            .to_string(),
    ]
    .join("\n");
    run_with_input(
        ErrorKind::Provision,
        "ip",
        &["netns", "exec", &ns, "nft", "-f", "-"],
        &rules,
    )
    .await
    .map(drop)
}

/// The host settings VMs need, their previous values coming back with the last VM: IPv4
/// forwarding for their NAT, and room for their inotify instances.
fn host_settings() -> Result<(), ProviderError> {
    let settings = HostSettings::default();
    settings.set(IP_FORWARD, "1")?;
    settings.raise(INOTIFY_INSTANCES, INOTIFY_INSTANCES_FOR_VMS)?;
    Ok(())
}

/// Removes the slot's filter, veth pair and namespace (whichever exist), returning what was
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

/// Whether any VM network (an `azv*` veth) is left on the host.
fn any_vm_left() -> bool {
    std::fs::read_dir("/sys/class/net").is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("azv"))
    })
}

/// [`remove`] for a caller that holds the network lock. When the last VM network goes, so do
/// the azlin table and the host settings azlin changed, so a host without azlin VMs is as it
/// was before.
async fn remove_locked(slot: Slot) -> Vec<String> {
    let mut removed = firewall::remove(slot).await;
    removed.extend(remove_legacy_nat_rule(slot).await);
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
    if let Err(e) = remove_if_present(&slot.owner_file()) {
        tracing::warn!("forgetting the owner of network slot {}: {e}", slot.0);
    }
    if !any_vm_left() {
        removed.extend(firewall::remove_table().await);
        match HostSettings::default().restore() {
            Ok(restored) => removed.extend(restored),
            Err(e) => tracing::warn!("{e}"),
        }
    }
    removed
}

/// The table of the NAT rules of VMs made before the filter (`ip azlin`, one masquerade rule
/// per VM commented `azlin-slot-N`).
const LEGACY_TABLE: &str = "azlin";

/// Removes the NAT rule a VM made by an earlier azlin has in the legacy table, and the table
/// with its last rule.
async fn remove_legacy_nat_rule(slot: Slot) -> Vec<String> {
    let list = || {
        run(
            ErrorKind::Internal,
            "nft",
            &["-a", "list", "chain", "ip", LEGACY_TABLE, "postrouting"],
        )
    };
    let Ok(listing) = list().await else {
        return Vec::new();
    };
    let needle = format!("comment \"azlin-slot-{}\"", slot.0);
    let Some(handle) = listing
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.rsplit_once("# handle "))
        .map(|(_, h)| h.trim().to_string())
    else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    let deleted = run(
        ErrorKind::Internal,
        "nft",
        &[
            "delete",
            "rule",
            "ip",
            LEGACY_TABLE,
            "postrouting",
            "handle",
            &handle,
        ],
    )
    .await;
    match deleted {
        Ok(_) => removed.push(format!("NAT rule for {}", slot.cidr())),
        Err(e) => tracing::warn!("{e}"),
    }
    if list().await.is_ok_and(|l| !l.contains("masquerade")) {
        match run(
            ErrorKind::Internal,
            "nft",
            &["delete", "table", "ip", LEGACY_TABLE],
        )
        .await
        {
            Ok(_) => removed.push(format!("nftables table ip {LEGACY_TABLE}")),
            Err(e) => tracing::warn!("{e}"),
        }
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
