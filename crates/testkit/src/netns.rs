//! Several "hosts" on one machine: network namespaces on a bridge in the root namespace, made by
//! a test and removed when it drops them. A server listening on the bridge's address (the host
//! end of the test's own link) is reached from every host; nothing else of the machine is.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A bridge with an address in the root namespace, for hosts to join.
#[derive(Debug)]
pub struct Lan {
    tag: u32,
    bridge: String,
    subnet: [u8; 3],
    hosts: Vec<String>,
}

impl Lan {
    /// A new bridge on `10.254.X.0/24`, X the first subnet no interface of the machine uses
    /// (tests in this and other processes each get their own), the root namespace at `.1`.
    /// Needs root.
    pub fn new() -> std::io::Result<Lan> {
        static MADE: AtomicU32 = AtomicU32::new(0);
        let start = std::process::id().wrapping_mul(7);
        for _ in 0..250 {
            let tag = start.wrapping_add(MADE.fetch_add(1, Ordering::Relaxed)) % 100_000;
            let subnet = [10, 254, u8::try_from(tag % 250).unwrap_or(0)];
            let taken = Command::new("ip")
                .args(["-o", "addr", "show", "to"])
                .arg(format!("{}.{}.{}.0/24", subnet[0], subnet[1], subnet[2]))
                .output()?;
            if !taken.stdout.is_empty() {
                continue;
            }
            let lan = Lan {
                tag,
                bridge: format!("aztbr{tag}"),
                subnet,
                hosts: Vec::new(),
            };
            if ip(&["link", "add", &lan.bridge, "type", "bridge"]).is_err() {
                continue;
            }
            ip(&[
                "addr",
                "add",
                &format!("{}/24", lan.gateway()),
                "dev",
                &lan.bridge,
            ])?;
            ip(&["link", "set", &lan.bridge, "up"])?;
            return Ok(lan);
        }
        Err(std::io::Error::other(
            "no free 10.254.X.0/24 subnet for a test LAN",
        ))
    }

    /// The root namespace's address on the bridge.
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b, c] = self.subnet;
        Ipv4Addr::new(a, b, c, 1)
    }

    /// A new host: a network namespace joined to the bridge at `.(10 + n)` for the n-th host,
    /// with loopback up.
    pub fn host(&mut self) -> std::io::Result<Host> {
        let n = u8::try_from(self.hosts.len()).unwrap_or(u8::MAX);
        let netns = format!("azt-host-{}-{n}", self.tag);
        let veth = format!("azth{}x{n}", self.tag);
        let [a, b, c] = self.subnet;
        let address = Ipv4Addr::new(a, b, c, 10 + n);
        ip(&["netns", "add", &netns])?;
        self.hosts.push(netns.clone());
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge])?;
        ip(&["link", "set", &veth, "up"])?;
        ip(&[
            "-n",
            &netns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        Ok(Host { netns, address })
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        // Removing a namespace removes its end of the veth, and with it the host end.
        for netns in &self.hosts {
            if let Err(e) = ip(&["netns", "delete", netns]) {
                eprintln!("{e}");
            }
        }
        if let Err(e) = ip(&["link", "delete", &self.bridge]) {
            eprintln!("{e}");
        }
    }
}

/// A host of a [`Lan`].
#[derive(Debug, Clone)]
pub struct Host {
    /// Its network namespace.
    pub netns: String,
    /// Its address on the bridge.
    pub address: Ipv4Addr,
}

impl Host {
    /// `ip netns exec NETNS program`: a command to run on this host.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.netns]).arg(program);
        command
    }
}
