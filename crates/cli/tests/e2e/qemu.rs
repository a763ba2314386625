//! `azlin new --provider qemu`, end to end: a real QEMU VM (KVM if it runs guests here, TCG
//! otherwise) booted from the qemu base image (built by `scripts/setup.sh`), reached over SSH
//! (run by root: on its network namespace's address; by another user: on a forwarded loopback
//! port), stopped and started with its disk kept, and deleted without leaving a process, folder,
//! network or listening port; what a root-run VM reaches on the host and outside; and broken
//! images that exit 4 after cleaning up.

use crate::support::{Azlin, assert_nothing_left, image_dir, live_processes};
use serde_json::Value;
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

/// TCG boots a Debian guest to SSH in about 75 s on two host cores when nothing else runs; the
/// end-to-end suite runs other VMs at the same time, so allow for four times that.
const CONFIG: &str = "ssh_timeout_secs = 300\ncloud_init_timeout_secs = 300\n";

/// Live (non-zombie) QEMU processes whose command line mentions `needle`.
fn qemu_processes(needle: &str) -> Vec<u32> {
    live_processes("qemu-system-x86_64", needle)
}

/// Live pasta processes (the network of a VM run without root) mentioning `needle`.
fn pasta_processes(needle: &str) -> Vec<u32> {
    live_processes("pasta", needle)
}

/// Whether something listens on loopback `port`.
fn listening(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_err()
}

/// What a qemu VM holds on the host: its folder, its process, and either a forwarded
/// loopback port or a network namespace with its veth.
struct Footprint {
    folder: String,
    access: Access,
}

enum Access {
    Loopback(u16),
    Namespace { netns: String, veth: String },
}

impl Footprint {
    fn of(vm: &Value) -> Footprint {
        let access = match vm["details"]["slot"].as_str() {
            Some(slot) => Access::Namespace {
                netns: format!("/run/netns/azlin-{slot}"),
                veth: format!("/sys/class/net/azv{slot}"),
            },
            None => {
                Access::Loopback(u16::try_from(vm["ssh_port"].as_u64().expect("ssh_port")).unwrap())
            }
        };
        Footprint {
            folder: vm["details"]["folder"]
                .as_str()
                .expect("folder")
                .to_string(),
            access,
        }
    }

    /// The way in that is there now.
    fn access_left(&self) -> Vec<String> {
        match &self.access {
            Access::Loopback(port) if listening(*port) => {
                vec![format!("listener on 127.0.0.1:{port}")]
            }
            Access::Loopback(_) => Vec::new(),
            Access::Namespace { netns, veth } => [netns, veth]
                .into_iter()
                .filter(|path| Path::new(path).exists())
                .cloned()
                .collect(),
        }
    }

    fn assert_present(&self) {
        assert!(
            Path::new(&self.folder).is_dir(),
            "no folder {}",
            self.folder
        );
        assert_eq!(qemu_processes(&self.folder).len(), 1, "{}", self.folder);
        let (expected, pastas) = match self.access {
            Access::Loopback(_) => (1, 1),
            Access::Namespace { .. } => (2, 0),
        };
        assert_eq!(pasta_processes(&self.folder).len(), pastas);
        assert_eq!(self.access_left().len(), expected, "{}", self.folder);
    }

    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if Path::new(&self.folder).exists() {
            left.push(format!("folder {}", self.folder));
        }
        left.extend(
            qemu_processes(&self.folder)
                .into_iter()
                .map(|p| format!("qemu process {p}")),
        );
        left.extend(
            pasta_processes(&self.folder)
                .into_iter()
                .map(|p| format!("pasta process {p}")),
        );
        left.extend(self.access_left());
        left
    }

    /// Waits briefly for a killed QEMU to be reaped and its port closed.
    fn assert_gone(&self) {
        assert_nothing_left(|| self.leftovers());
    }
}

/// The kernel release the qemu image was built with.
fn image_kernel(azlin: &Azlin) -> String {
    let qemu = azlin.image("qemu", "minimal");
    assert_eq!(qemu["built"], true, "the qemu image is not built: {qemu}");
    let dir = qemu["dir"].as_str().unwrap();
    std::fs::read_to_string(format!("{dir}/kernel-release"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn qemu_vm_boots_restarts_and_is_deleted_without_leftovers() {
    let azlin = Azlin::new();
    azlin.config(CONFIG);
    let kernel = image_kernel(&azlin);
    let run = azlin.new_vm("qemu", "q1", &[]).expect(0);
    for stage in [
        "✓ Prerequisites",
        "✓ Authentication",
        "✓ Waiting for SSH",
        "✓ Waiting for cloud-init",
    ] {
        assert!(run.stderr.contains(stage), "no {stage} in:\n{}", run.stderr);
    }
    let vm = azlin.vm("q1");
    assert_eq!(vm["provider"], "qemu");
    assert_eq!(vm["state"], "running");
    // Run by root: in its own network namespace, SSH on that namespace's address.
    assert!(
        vm["address"].as_str().unwrap().starts_with("10.213."),
        "{vm}"
    );
    assert_eq!(vm["ssh_port"], 22, "{vm}");
    let accel = vm["details"]["accel"].as_str().unwrap().to_string();
    assert!(accel == "kvm" || accel == "tcg", "{vm}");
    let footprint = Footprint::of(&vm);
    footprint.assert_present();

    let run = azlin
        .run(&["connect", "q1", "--", "cloud-init", "status"])
        .expect(0);
    assert!(run.stdout.contains("status: done"), "{}", run.stdout);
    let run = azlin.run(&["connect", "q1", "--", "uname", "-r"]).expect(0);
    assert_eq!(run.stdout.trim(), kernel);
    // The Node.js of the image comes along into the qemu flavour.
    let run = azlin
        .run(&["connect", "q1", "--", "node", "--version"])
        .expect(0);
    assert!(run.stdout.starts_with("v24."), "{}", run.stdout);
    // The guest's own DHCP network, and the host under its azlin name.
    let run = azlin
        .run(&[
            "connect",
            "q1",
            "--",
            "sh",
            "-c",
            "ip -4 -o addr show scope global; getent hosts host.azlin.internal; \
             echo kept > marker",
        ])
        .expect(0);
    assert!(run.stdout.contains("10.0.2.15/24"), "{}", run.stdout);
    assert!(
        run.stdout.contains("10.0.2.2") && run.stdout.contains("host.azlin.internal"),
        "{}",
        run.stdout
    );

    // A running VM's snapshot holds its memory: the restore resumes it where it was, without
    // a boot (same boot id), the disk back as it was (the file written after is gone).
    let boot_id = |azlin: &Azlin| azlin.sh("q1", "cat /proc/sys/kernel/random/boot_id");
    let booted = boot_id(&azlin);
    let taken = azlin
        .run(&["snapshot", "create", "q1", "s1", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(taken[0]["with_memory"], true, "{taken}");
    azlin.sh("q1", "echo lost > after; sync");
    azlin.run(&["snapshot", "restore", "q1", "s1"]).expect(0);
    assert_eq!(
        azlin.sh("q1", "cat marker; ls after 2>/dev/null || echo after-gone"),
        "kept\nafter-gone"
    );
    assert_eq!(boot_id(&azlin), booted, "the restore booted the VM");
    let listed = azlin
        .run(&["snapshot", "list", "q1", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(listed[0]["name"], "s1", "{listed}");
    azlin.run(&["snapshot", "delete", "q1", "s1"]).expect(0);
    assert_eq!(
        azlin
            .run(&["snapshot", "list", "q1", "-o", "json"])
            .expect(0)
            .json(),
        serde_json::json!([])
    );

    azlin.run(&["stop", "q1"]).expect(0);
    assert_eq!(azlin.vm("q1")["state"], "stopped");
    assert!(qemu_processes(&footprint.folder).is_empty());
    azlin.run(&["start", "q1"]).expect(0);
    let vm = azlin.vm("q1");
    assert_eq!(vm["state"], "running");
    let footprint = Footprint::of(&vm);
    footprint.assert_present();
    // `start` waited for SSH: the first connect works.
    let run = azlin
        .run(&["connect", "q1", "--", "cat", "marker"])
        .expect(0);
    assert_eq!(run.stdout.trim(), "kept");

    let run = azlin.run(&["delete", "q1", "--yes"]).expect(0);
    assert!(run.stderr.contains("qemu process"), "{}", run.stderr);
    footprint.assert_gone();
    azlin.assert_no_vms();
}

/// How a test image is broken.
#[derive(Clone, Copy)]
enum Broken {
    /// Its kernel is not a kernel: QEMU refuses to start.
    Kernel,
    /// Kernel and initramfs are the real image's, its disk an empty ext4 file system: the
    /// initramfs mounts it, finds no init and panics.
    NoInit,
}

/// Makes a broken qemu image where azlin, with its image folder `azlin`'s, looks for the
/// minimal one.
fn broken_image(azlin: &Azlin, broken: Broken) {
    let dir = azlin.image("qemu", "minimal")["dir"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::create_dir_all(&dir).unwrap();
    let run = |program: &str, args: &[&str]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap();
        assert!(status.success(), "{program} {args:?}");
    };
    let disk = format!("{dir}/disk.qcow2");
    match broken {
        Broken::Kernel => {
            run("qemu-img", &["create", "-q", "-f", "qcow2", &disk, "64M"]);
            std::fs::write(format!("{dir}/vmlinuz"), "not a kernel").unwrap();
            std::fs::write(format!("{dir}/initrd.img"), "not an initramfs").unwrap();
        }
        Broken::NoInit => {
            let raw = format!("{dir}/root.raw");
            std::fs::File::create(&raw)
                .unwrap()
                .set_len(64 << 20)
                .unwrap();
            run("mkfs.ext4", &["-q", "-F", &raw]);
            run(
                "qemu-img",
                &["convert", "-f", "raw", "-O", "qcow2", &raw, &disk],
            );
            std::fs::remove_file(&raw).unwrap();
            // The shared image of the same recipe has the same folder name.
            let real = image_dir().join(Path::new(&dir).file_name().unwrap());
            for file in ["vmlinuz", "initrd.img"] {
                std::fs::copy(real.join(file), format!("{dir}/{file}")).unwrap();
            }
        }
    }
}

/// Runs `azlin new --provider qemu --name NAME` on an image broken as `broken`, asserts it exits
/// 4 having cleaned up (no folder, process or VM left), and returns its stderr.
fn new_on_broken_image(broken: Broken, name: &str) -> String {
    let images = tempfile::tempdir().unwrap();
    let azlin = Azlin::with_image_dir(images.path());
    broken_image(&azlin, broken);
    let stderr = azlin.new_vm("qemu", name, &[]).expect(4).stderr;
    assert!(stderr.contains("cleaned up: removed"), "{stderr}");
    assert!(stderr.contains("VM folder"), "{stderr}");
    let folder = azlin.state_dir().join("qemu").join(name);
    assert!(!folder.exists(), "{} is left", folder.display());
    assert!(qemu_processes(&azlin.home.path().display().to_string()).is_empty());
    azlin.assert_no_vms();
    stderr
}

#[test]
fn an_image_qemu_cannot_start_exits_4_after_cleaning_up() {
    let stderr = new_on_broken_image(Broken::Kernel, "qbad");
    assert!(stderr.contains("qemu-system-x86_64 failed"), "{stderr}");
}

#[test]
fn an_image_without_init_exits_4_after_cleaning_up() {
    let stderr = new_on_broken_image(Broken::NoInit, "qnoinit");
    // The kernel and initramfs ran, found no init and rebooted, which ends QEMU
    // (-no-reboot): the failure comes with the console's last lines.
    assert!(stderr.contains("the VM stopped while booting"), "{stderr}");
    assert!(stderr.contains("init"), "{stderr}");
}

/// What a QEMU VM's isolation is measured against: the outside network, and TCP servers on
/// the host — on every address, one on a port the config offers and one on a port it does
/// not, and one on the loopback only (what the guest's 10.0.2.2 reached before VMs were
/// confined). Held for the test; one test at a time changes the host.
struct HostServers {
    // Fields drop in this order: the outside network is gone before the next test may take
    // the host (it makes a namespace of the same name in the same process).
    _outside: crate::isolation::Outside,
    _host: std::sync::MutexGuard<'static, ()>,
    offered: u16,
    other: u16,
    loopback: u16,
}

impl HostServers {
    fn start() -> HostServers {
        let host = crate::isolation::HOST_STATE
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        HostServers {
            _outside: crate::isolation::Outside::start(),
            _host: host,
            offered: crate::isolation::host_server(),
            other: crate::isolation::host_server(),
            // Outside the job services' range too, which the guest may reach on 10.0.2.2.
            loopback: crate::isolation::host_server_on(Ipv4Addr::LOCALHOST),
        }
    }
}

/// The host's address on its uplink (the source of its default route): there before any VM
/// boots, unlike the addresses of links other tests make meanwhile.
fn host_address() -> String {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "route", "get", "203.0.113.1"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .skip_while(|w| *w != "src")
        .nth(1)
        .expect("a source address of the default route")
        .to_string()
}

/// A user without root gets a QEMU VM (the default provider without root) confined like
/// root's: QEMU runs as that user in a network namespace pasta makes, and the guest reaches
/// the host ports its config offers — on `host.azlin.internal` and its gateway 10.0.2.2 — and
/// the outside its egress list allows, but no other host port on any host address, even one
/// inside that list. Its delete leaves no process, port or file.
#[test]
fn a_user_without_root_gets_a_confined_qemu_vm() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let servers = HostServers::start();
    let (offered, other, loopback_port) = (servers.offered, servers.other, servers.loopback);
    let azlin = Azlin::new();
    // The outside's /29 holds the host's own end of that link: a host address inside the list.
    let outside_net = "198.51.100.0/29";
    azlin.config(&format!(
        "{CONFIG}[network]\nhost_ports = [{offered}]\negress = [\"{outside_net}\"]\n"
    ));
    std::fs::set_permissions(azlin.home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    // No --provider: qemu is the default of a user who is not root.
    azlin
        .run_as_nobody(&["new", "--name", "qnr", "--no-connect"])
        .expect(0);
    let run = azlin
        .run_as_nobody(&["status", "qnr", "-o", "json"])
        .expect(0);
    let vm = run.json()["vm"].clone();
    assert_eq!(vm["provider"], "qemu");
    assert_eq!(vm["address"], "127.0.0.1", "{vm}");
    let footprint = Footprint::of(&vm);
    footprint.assert_present();
    for pid in qemu_processes(&footprint.folder)
        .into_iter()
        .chain(pasta_processes(&footprint.folder))
    {
        let uid = std::fs::metadata(format!("/proc/{pid}")).unwrap().uid();
        assert_eq!(uid, 65534, "process {pid} runs as uid {uid}");
    }
    let run = azlin
        .run_as_nobody(&["connect", "qnr", "--", "cloud-init", "status"])
        .expect(0);
    assert!(run.stdout.contains("status: done"), "{}", run.stdout);

    let (host, outside_host) = (host_address(), crate::isolation::OUTSIDE_HOST);
    let (a, b) = (crate::isolation::OUTSIDE_A, crate::isolation::OUTSIDE_B);
    let port = crate::isolation::OUTSIDE_PORT;
    let targets = [
        ("10.0.2.2", offered),
        ("host.azlin.internal", offered),
        ("10.0.2.2", other),
        ("10.0.2.2", loopback_port),
        (host.as_str(), offered),
        (host.as_str(), other),
        (outside_host, other),
        (a, port),
        (b, port),
    ];
    assert_eq!(
        crate::isolation::reachable_by(|args| azlin.run_as_nobody(args), "qnr", &targets),
        crate::isolation::sorted(&[
            ("10.0.2.2", offered),
            ("host.azlin.internal", offered),
            (a, port),
            (b, port)
        ])
    );
    azlin.run_as_nobody(&["delete", "qnr", "--yes"]).expect(0);
    footprint.assert_gone();
}

/// Run by root, a QEMU VM is confined like an nspawn machine: it reaches the host ports its
/// config offers — on `host.azlin.internal` and on its gateway 10.0.2.2 alike — and the outside
/// its egress list allows, and no other host port, whatever address the host server is bound
/// to.
#[test]
fn a_qemu_vm_reaches_offered_host_ports_and_allowed_egress_and_nothing_else() {
    let servers = HostServers::start();
    let (offered, other, loopback_port) = (servers.offered, servers.other, servers.loopback);
    let azlin = Azlin::new();
    let b = crate::isolation::OUTSIDE_B;
    azlin.config(&format!(
        "{CONFIG}[network]\nhost_ports = [{offered}]\negress = [\"{b}/32\"]\n"
    ));
    azlin.new_vm("qemu", "q-iso", &[]).expect(0);
    let host = crate::git_server::HOST_ADDR;
    let a = crate::isolation::OUTSIDE_A;
    let port = crate::isolation::OUTSIDE_PORT;
    let targets = [
        ("10.0.2.2", offered),
        ("10.0.2.2", other),
        ("10.0.2.2", loopback_port),
        (host, offered),
        (host, other),
        (a, port),
        (b, port),
    ];
    assert_eq!(
        crate::isolation::reachable(&azlin, "q-iso", &targets),
        crate::isolation::sorted(&[("10.0.2.2", offered), (host, offered), (b, port)])
    );
    let footprint = Footprint::of(&azlin.vm("q-iso"));
    azlin.run(&["delete", "q-iso", "--yes"]).expect(0);
    footprint.assert_gone();
    azlin.assert_no_vms();
}
