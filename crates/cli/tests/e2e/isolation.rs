//! Network isolation of nspawn VMs, measured from inside real VMs: a VM reaches the ports its
//! config offers on `host.azlin.internal` and the outside its egress policy allows — not another
//! VM, not another host port — and its delete leaves no rule behind. The "outside" is a network
//! namespace this test makes, with its own veth and a server in it (the machine has no internet).

use crate::git_server::HOST_ADDR;
use crate::support::{Azlin, HostFootprint};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The outside network: the host end and two server addresses.
pub const OUTSIDE_HOST: &str = "198.51.100.1";
pub const OUTSIDE_A: &str = "198.51.100.2";
pub const OUTSIDE_B: &str = "198.51.100.3";
/// The port the outside server listens on.
pub const OUTSIDE_PORT: u16 = 8080;

/// Only one test at a time makes the outside namespace (the qemu tests use it too) and changes
/// `ip_forward`.
pub static HOST_STATE: Mutex<()> = Mutex::new(());

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace standing for the internet, with an HTTP server on two addresses;
/// removed (server, namespace, veth) when dropped.
pub struct Outside {
    netns: String,
    veth: String,
    server: Child,
}

impl Outside {
    pub fn start() -> Outside {
        let tag = std::process::id() % 100_000;
        let (netns, veth) = (format!("azt-outside-{tag}"), format!("azto{tag}"));
        ip(&["netns", "add", &netns]);
        let mut outside = Outside {
            netns: netns.clone(),
            veth: veth.clone(),
            server: Command::new("true").spawn().unwrap(),
        };
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
        ]);
        ip(&["addr", "add", &format!("{OUTSIDE_HOST}/29"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        for addr in [OUTSIDE_A, OUTSIDE_B] {
            ip(&[
                "-n",
                &netns,
                "addr",
                "add",
                &format!("{addr}/29"),
                "dev",
                "eth0",
            ]);
        }
        ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        outside.server = Command::new("ip")
            .args(["netns", "exec", &netns, "python3", "-m", "http.server"])
            .args(["--bind", "0.0.0.0", &OUTSIDE_PORT.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The server answers from the host before any VM asks.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect((OUTSIDE_A, OUTSIDE_PORT)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the outside server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        outside
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if self.server.kill().is_ok() {
            self.server.wait().ok();
        }
        // The veth pair first, at once: the namespace's deletion takes it only once the
        // namespace is torn down, which may be after the next test of this process made its own.
        Command::new("ip")
            .args(["link", "del", &self.veth])
            .status()
            .ok();
        Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status()
            .ok();
    }
}

/// A TCP server on 0.0.0.0 of the host that accepts and drops connections until the test ends.
/// A server on every host address, on a port outside azlin's job services' range (which
/// every VM may reach).
pub fn host_server() -> u16 {
    host_server_on(std::net::Ipv4Addr::UNSPECIFIED)
}

/// [`host_server`] on `address` only.
pub fn host_server_on(address: std::net::Ipv4Addr) -> u16 {
    let (listener, port) = loop {
        let listener = TcpListener::bind((address, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        if !azlin_core::network::JOB_SERVICE_PORTS.contains(&port) {
            break (listener, port);
        }
    };
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            drop(conn);
        }
    });
    port
}

/// Tries every `(address, port)` from inside `vm` at once (10 s each: under TCG on a loaded
/// machine, starting the nine probes' shells took a QEMU guest more than 3 s); the reachable
/// ones. A blocked port is dropped, so it never answers however long a probe waits.
pub fn reachable(azlin: &Azlin, vm: &str, targets: &[(&str, u16)]) -> Vec<String> {
    reachable_by(|args| azlin.run(args), vm, targets)
}

/// [`reachable`] through `azlin`, a way to run azlin (as another user, say).
pub fn reachable_by(
    azlin: impl Fn(&[&str]) -> crate::support::Run,
    vm: &str,
    targets: &[(&str, u16)],
) -> Vec<String> {
    let script: String = targets
        .iter()
        .map(|(addr, port)| {
            format!(
                "( timeout 10 bash -c '</dev/tcp/{addr}/{port}' 2>/dev/null && echo {addr}:{port} ) & "
            )
        })
        .chain(["wait".to_string()])
        .collect();
    let run = azlin(&["connect", vm, "--", "bash", "-c", &script]).expect(0);
    let mut open: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    open.sort();
    open
}

pub fn sorted(items: &[(&str, u16)]) -> Vec<String> {
    let mut v: Vec<String> = items.iter().map(|(a, p)| format!("{a}:{p}")).collect();
    v.sort();
    v
}

fn vm_networks_on_host() -> bool {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("azv"))
}

const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

fn ip_forward() -> String {
    std::fs::read_to_string(IP_FORWARD)
        .unwrap()
        .trim()
        .to_string()
}

fn ruleset() -> String {
    let out = Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn vms_reach_offered_host_ports_and_allowed_egress_and_nothing_else() {
    let _host = HOST_STATE.lock().unwrap_or_else(|e| e.into_inner());
    // With no VM on the host, forwarding is turned off first, so that its restoration is seen
    // (other tests or users may run VMs meanwhile: then the check is skipped).
    let alone = !vm_networks_on_host() && !Path::new("/run/azlin/host-settings").exists();
    let forward_before = ip_forward();
    if alone {
        std::fs::write(IP_FORWARD, "0").unwrap();
    }
    let outside = Outside::start();
    let (offered, other) = (host_server(), host_server());

    let all = Azlin::new();
    all.config(&format!("[network]\nhost_ports = [{offered}]\n"));
    let only_b = Azlin::new();
    only_b.config(&format!("[network]\negress = [\"{OUTSIDE_B}/32\"]\n"));
    let none = Azlin::new();
    none.config(&format!(
        "[network]\nhost_ports = [{offered}]\negress = \"none\"\n"
    ));
    let started = Instant::now();
    all.new_vm("nspawn", "iso-all", &[]).expect(0);
    only_b.new_vm("nspawn", "iso-only", &[]).expect(0);
    none.new_vm("nspawn", "iso-none", &[]).expect(0);
    eprintln!("three VMs booted in {:?}", started.elapsed());
    let (vm_all, vm_only, vm_none) = (
        all.vm("iso-all"),
        only_b.vm("iso-only"),
        none.vm("iso-none"),
    );
    let addr = |vm: &serde_json::Value| vm["address"].as_str().unwrap().to_string();
    let (a_all, a_only, a_none) = (addr(&vm_all), addr(&vm_only), addr(&vm_none));
    // The host's own end of each VM's link (`.1` of its /30): a host address, not offered.
    let host_end = |vm_addr: &str| {
        let ip: std::net::Ipv4Addr = vm_addr.parse().unwrap();
        std::net::Ipv4Addr::from(u32::from(ip) - 1).to_string()
    };
    let host_end_all = host_end(&a_all);

    let targets = |own: &str| -> Vec<(String, u16)> {
        let mut t: Vec<(String, u16)> = [&a_all, &a_only, &a_none]
            .into_iter()
            .filter(|a| a.as_str() != own)
            .map(|a| (a.clone(), 22))
            .collect();
        t.extend([
            (HOST_ADDR.to_string(), offered),
            (HOST_ADDR.to_string(), other),
            (host_end(own), offered),
            (host_end_all.clone(), other),
            (OUTSIDE_A.to_string(), OUTSIDE_PORT),
            (OUTSIDE_B.to_string(), OUTSIDE_PORT),
        ]);
        t
    };
    let probe = |azlin: &Azlin, vm: &str, own: &str| {
        let t = targets(own);
        let refs: Vec<(&str, u16)> = t.iter().map(|(a, p)| (a.as_str(), *p)).collect();
        reachable(azlin, vm, &refs)
    };

    // egress "all", the port offered: the offered port on the host alias and the outside.
    assert_eq!(
        probe(&all, "iso-all", &a_all),
        sorted(&[
            (HOST_ADDR, offered),
            (OUTSIDE_A, OUTSIDE_PORT),
            (OUTSIDE_B, OUTSIDE_PORT)
        ])
    );
    // egress to one outside address, nothing offered: that address only.
    assert_eq!(
        probe(&only_b, "iso-only", &a_only),
        sorted(&[(OUTSIDE_B, OUTSIDE_PORT)])
    );
    // egress "none", the port offered: the offered port only.
    assert_eq!(
        probe(&none, "iso-none", &a_none),
        sorted(&[(HOST_ADDR, offered)])
    );
    // VM root is not host root: the machine runs in its own user namespace.
    let map = all
        .run(&["connect", "iso-all", "--", "cat", "/proc/self/uid_map"])
        .expect(0);
    let fields: Vec<&str> = map.stdout.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"0"), "{}", map.stdout);
    assert_ne!(
        fields.get(1),
        Some(&"0"),
        "identity uid map: {}",
        map.stdout
    );
    // The host still reaches every VM (SSH from the host is how `connect` just worked), and a
    // VM's name service still works under "all" (the resolver is the host's, reached via NAT).
    assert!(ruleset().contains("\"azv"));

    // Each delete removes that VM's rules; the last one removes the table and restores
    // forwarding.
    for (azlin, name, vm) in [
        (&all, "iso-all", &vm_all),
        (&only_b, "iso-only", &vm_only),
        (&none, "iso-none", &vm_none),
    ] {
        let footprint = HostFootprint::of(vm);
        footprint.assert_present();
        let slot = vm["details"]["slot"].as_str().unwrap().to_string();
        azlin.run(&["delete", name, "--yes"]).expect(0);
        footprint.assert_gone();
        let veth = format!("azv{slot}");
        if !Path::new("/sys/class/net").join(&veth).exists() {
            let rules = ruleset();
            assert!(
                !rules.contains(&format!("slot-{slot}-"))
                    && !rules.contains(&format!("\"{veth}\"")),
                "rules of {name} left:\n{rules}"
            );
        }
    }
    drop(outside);
    if alone && !vm_networks_on_host() {
        assert!(!ruleset().contains("table inet azlin"), "{}", ruleset());
        assert_eq!(ip_forward(), "0", "forwarding was not restored");
        assert!(!Path::new("/run/azlin/host-settings").exists());
        std::fs::write(IP_FORWARD, &forward_before).unwrap();
    } else {
        eprintln!("other VMs run on this host: the restoration of ip_forward is not checked");
    }
}
