//! What the host offers a QEMU VM: CPUs, memory, and a free loopback port for its SSH.

use azlin_core::Size;
use std::net::{Ipv4Addr, TcpListener};

/// A VM never gets more than this share of the host's memory (guest memory is allocated as
/// the guest touches it, but a guest that touches all of it must not starve the host).
const MEMORY_SHARE: (u64, u64) = (3, 4);
/// Nor less than this, which Debian with cloud-init needs to boot.
const MIN_MEMORY_MIB: u32 = 512;

/// The CPUs and memory a VM gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// Virtual CPUs (`-smp`).
    pub vcpus: u32,
    /// Memory in MiB (`-m`).
    pub memory_mib: u32,
}

impl Resources {
    /// `size` capped to what a host with `host_cpus` CPUs and `host_memory_mib` MiB has: no
    /// more vCPUs than host CPUs (more only contend, under TCG each is a host thread) and at
    /// most three quarters of its memory.
    pub fn fit(size: Size, host_cpus: u32, host_memory_mib: u64) -> Resources {
        let memory_cap = host_memory_mib * MEMORY_SHARE.0 / MEMORY_SHARE.1;
        let memory = u64::from(size.memory_mib).min(memory_cap);
        Resources {
            vcpus: size.vcpus.min(host_cpus).max(1),
            memory_mib: u32::try_from(memory)
                .unwrap_or(u32::MAX)
                .max(MIN_MEMORY_MIB),
        }
    }

    /// `size` capped to this host.
    pub fn for_this_host(size: Size) -> Resources {
        Resources::fit(size, host_cpus(), host_memory_mib())
    }
}

/// The CPUs this process may use.
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// The host's memory (`MemTotal`), in MiB; 1 GiB if unknown.
pub fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(1024, |kib| kib / 1024)
}

/// A loopback port nothing listens on right now, from the kernel's ephemeral range.
///
/// The port is free when this returns but not reserved: the listener that found it is closed
/// before QEMU binds it, and another process may take it in between. QEMU then fails to set up
/// its forwarding rule and exits, which the caller detects and answers by asking for another
/// port (see `machine::LaunchError::PortTaken`); QEMU cannot be handed an open socket for a
/// `hostfwd` rule, so the race cannot be closed, only retried.
pub fn free_loopback_port() -> std::io::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// Whether nothing listens on loopback `port` now.
pub fn port_is_free(port: u16) -> bool {
    port != 0 && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn size(vcpus: u32, memory_mib: u32) -> Size {
        Size {
            name: "test",
            vcpus,
            memory_mib,
        }
    }

    #[test]
    fn sizes_are_capped_to_the_host() {
        assert_eq!(
            Resources::fit(size(2, 4096), 8, 32768),
            Resources {
                vcpus: 2,
                memory_mib: 4096
            }
        );
        assert_eq!(
            Resources::fit(size(16, 65536), 2, 8192),
            Resources {
                vcpus: 2,
                memory_mib: 6144
            }
        );
        assert_eq!(
            Resources::fit(size(1, 1024), 0, 256),
            Resources {
                vcpus: 1,
                memory_mib: 512
            }
        );
    }

    #[test]
    fn this_host_has_cpus_and_memory() {
        assert!(host_cpus() >= 1);
        assert!(host_memory_mib() >= 64);
    }

    #[test]
    fn a_free_port_is_free_and_a_taken_one_is_not() {
        let port = free_loopback_port().unwrap();
        assert!(port_is_free(port));
        let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        assert!(!port_is_free(taken.local_addr().unwrap().port()));
        assert!(!port_is_free(0));
    }
}
