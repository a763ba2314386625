//! One QEMU VM on the host: its folder and the `qemu-system-x86_64` process that runs it.
//!
//! Run by root, QEMU is started with `-daemonize` in the VM's network namespace: the command
//! azlin runs returns once the VM is set up (or failed to be, with the reason on stderr), and
//! its pid comes from the pid file QEMU writes. Without root, pasta starts QEMU in a network
//! namespace of its own (see `crate::network::rootless`) and QEMU's pid is pasta's child's.
//! Either way the VM process lives on in its own session, so a Ctrl-C in azlin's terminal does
//! not reach it, and its pid is trusted only while `/proc/PID/cmdline` is QEMU running this
//! VM's disk, so a recycled pid is never signalled.

use super::accel::{Accel, QEMU};
use super::host::Resources;
use super::qmp;
use crate::image::qemu::QemuImage;
use crate::network::rootless;
use crate::process::{self, alive, signal};
use azlin_core::{ErrorKind, ProviderError};
use nix::sys::signal::Signal;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// What the guest's systemd prints on the console once it runs from the root disk
/// (`systemd.show_status=1`).
const INIT_MARKER: &str = "Welcome to ";
/// How long may pass before the guest's init runs. Under TCG the kernel and initramfs alone take
/// 10–20 s on two host cores, more when several VMs boot at once.
fn init_timeout(accel: Accel) -> Duration {
    match accel {
        Accel::Kvm => Duration::from_secs(60),
        Accel::Tcg => Duration::from_secs(240),
    }
}
/// How long an orderly shutdown may take before the VM is killed (systemd stopping its units
/// under TCG takes a while).
pub const POWEROFF_TIMEOUT: Duration = Duration::from_secs(60);
/// Polling interval while waiting on the VM.
const POLL: Duration = Duration::from_millis(100);
/// The longest unix socket path (`sun_path` holds 108 bytes with the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;
/// How long pasta may take to start QEMU in its namespace.
const NAMESPACE_START_TIMEOUT: Duration = Duration::from_secs(10);

fn machine_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// The folder of one VM: `disk.qcow2` (the overlay), `seed.iso`, `console.log`, `qmp.sock`,
/// `qemu.pid`, next to the record.
#[derive(Debug, Clone)]
pub struct VmDir(pub PathBuf);

impl VmDir {
    /// The copy-on-write disk.
    pub fn disk(&self) -> PathBuf {
        self.0.join("disk.qcow2")
    }

    /// The NoCloud seed ISO.
    pub fn seed(&self) -> PathBuf {
        self.0.join("seed.iso")
    }

    /// Where the seed's files are staged while the ISO is made.
    pub fn seed_staging(&self) -> PathBuf {
        self.0.join("seed")
    }

    /// The serial console's output.
    pub fn console_log(&self) -> PathBuf {
        self.0.join("console.log")
    }

    /// The QMP socket.
    pub fn qmp_socket(&self) -> PathBuf {
        self.0.join("qmp.sock")
    }

    /// The pid file QEMU writes (run by root).
    pub fn pid_file(&self) -> PathBuf {
        self.0.join("qemu.pid")
    }

    /// The filter of the VM's own network namespace (without root).
    pub fn filter(&self) -> PathBuf {
        self.0.join("network.nft")
    }

    /// What QEMU (and the filter's loading) wrote on stderr, without root.
    pub fn qemu_log(&self) -> PathBuf {
        self.0.join("qemu.log")
    }

    /// pasta's log, without root.
    pub fn pasta_log(&self) -> PathBuf {
        self.0.join("pasta.log")
    }

    /// Why QEMU ended, as far as its logs tell (empty when they tell nothing); pasta's
    /// banner line (`pasta VERSION: PROGRAM (PID)`) left out.
    pub fn exit_reasons(&self) -> String {
        [self.qemu_log(), self.pasta_log()]
            .iter()
            .filter_map(|log| std::fs::read_to_string(log).ok())
            .flat_map(|text| {
                text.lines()
                    .filter(|line| !line.starts_with(rootless::PASTA.program))
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .filter(|line| !line.trim().is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The last lines of the console, for error messages.
    pub fn console_tail(&self, lines: usize) -> String {
        let bytes = std::fs::read(self.console_log()).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        let all: Vec<&str> = text.lines().map(str::trim_end).collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Everything one boot of a VM is made of.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    /// The VM's folder (an absolute path: a daemonized QEMU works from `/`).
    pub dir: &'a VmDir,
    /// The VM's name (QEMU's `-name`, the guest's host name comes from cloud-init).
    pub name: &'a str,
    /// Kernel and initramfs.
    pub image: &'a QemuImage,
    /// The accelerator.
    pub accel: Accel,
    /// CPUs and memory.
    pub resources: Resources,
    /// Where the guest's network leads.
    pub link: Link,
}

/// Where a guest's user-mode network leads, and where its SSH is forwarded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// QEMU runs in a network namespace of its own user namespace, made by pasta (no root):
    /// SSH is forwarded from a loopback port of the host, and the `filter` loaded in the
    /// namespace confines the guest (see `crate::network::rootless`).
    Private {
        /// The host's loopback port forwarded to the guest's SSH.
        ssh_port: u16,
        /// The namespace's nft filter file.
        filter: PathBuf,
    },
    /// QEMU runs in a VM network namespace (root): SSH is forwarded from the namespace's
    /// address, and every connection the guest makes leaves through the namespace's filtered
    /// link (see `crate::network`).
    Namespace {
        /// The namespace's name.
        netns: String,
        /// Its address, which the host reaches over the veth.
        address: std::net::Ipv4Addr,
    },
}

impl Link {
    /// QEMU's `-netdev` value.
    fn netdev(&self) -> String {
        match self {
            Link::Private { .. } => format!(
                "user,id=net0,restrict=off,hostfwd=tcp:127.0.0.1:{}-:22",
                rootless::NAMESPACE_SSH_PORT
            ),
            Link::Namespace { address, .. } => {
                format!("user,id=net0,restrict=off,hostfwd=tcp:{address}:22-:22")
            }
        }
    }
}

impl Boot<'_> {
    /// The kernel command line: root on the virtio disk, console on the serial port (which
    /// QEMU writes to `console.log`), systemd's status lines there too (how [`wait_for_init`]
    /// sees init start), and on a panic — in the kernel or the initramfs — a reboot, which
    /// `-no-reboot` turns into QEMU exiting, so a broken image fails fast instead of hanging.
    pub fn kernel_command_line(&self) -> String {
        format!(
            "root=/dev/vda rw console=ttyS0,115200 panic=-1 quiet systemd.show_status=1{}",
            self.accel.kernel_args()
        )
    }

    /// The arguments of `qemu-system-x86_64`.
    pub fn args(&self) -> Vec<String> {
        let dir = self.dir;
        let mut args: Vec<String> = self
            .accel
            .qemu_args()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let path = |p: PathBuf| p.display().to_string();
        args.extend(
            [
                "-name",
                self.name,
                "-machine",
                "q35",
                "-smp",
                &self.resources.vcpus.to_string(),
                "-m",
                &self.resources.memory_mib.to_string(),
                // Nothing but what is listed here: no VGA, no default NIC, no monitor.
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
                "-kernel",
                &path(self.image.kernel()),
                "-initrd",
                &path(self.image.initrd()),
                "-append",
                &self.kernel_command_line(),
                "-drive",
                &format!(
                    "file={},if=virtio,format=qcow2,discard=unmap",
                    path(dir.disk())
                ),
                "-drive",
                &format!("file={},if=virtio,format=raw,readonly=on", path(dir.seed())),
                // User-mode networking: the guest reaches out through QEMU (NAT, DHCP, DNS at
                // 10.0.2.3, the host at 10.0.2.2); the only way in is SSH forwarded to it.
                //
                // Isolation: every outbound connection is a socket of the QEMU process, so it is
                // filtered where that process runs: always in a network namespace whose filter
                // admits what the policy allows. The guest's 10.0.2.2 — the namespace's
                // loopback to QEMU — is sent on to the host (its alias with root, pasta's
                // gateway without) for the offered ports, so it meets the same filter.
                "-netdev",
                &self.link.netdev(),
                "-device",
                "virtio-net-pci,netdev=net0",
                "-device",
                "virtio-rng-pci",
                "-serial",
                &format!("file:{}", path(dir.console_log())),
                "-qmp",
                &format!("unix:{},server=on,wait=off", path(dir.qmp_socket())),
            ]
            .map(str::to_string),
        );
        if let Link::Namespace { .. } = self.link {
            args.extend([
                "-pidfile".to_string(),
                path(dir.pid_file()),
                "-daemonize".into(),
            ]);
        }
        args
    }
}

/// Why QEMU did not start.
#[derive(Debug)]
pub enum LaunchError {
    /// Another process bound the SSH port between its choice and QEMU's bind (see
    /// `host::free_loopback_port`): try another port.
    PortTaken,
    /// Anything else.
    Failed(ProviderError),
}

/// Starts QEMU for `boot` and returns the VM process's pid once QEMU daemonized.
pub async fn launch(boot: &Boot<'_>) -> Result<u32, LaunchError> {
    let dir = boot.dir;
    let socket = dir.qmp_socket();
    if socket.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(LaunchError::Failed(machine_error(format!(
            "the VM folder's path is too long for QEMU's control socket ({}); use a shorter \
             AZLIN_HOME or state directory",
            socket.display()
        ))));
    }
    // QEMU's option syntax gives ',' a meaning (and escapes it differently per option), so
    // paths that contain one are refused rather than quoted.
    for path in [&dir.0, &boot.image.dir] {
        if path.to_string_lossy().contains(',') {
            return Err(LaunchError::Failed(machine_error(format!(
                "{} contains ',', which QEMU's command line cannot take in a path",
                path.display()
            ))));
        }
    }
    for stale in [dir.pid_file(), socket, dir.qemu_log(), dir.pasta_log()] {
        let _ = std::fs::remove_file(stale);
    }
    match &boot.link {
        Link::Namespace { netns, .. } => daemonize(boot, netns).await,
        Link::Private { ssh_port, filter } => start_in_own_namespace(boot, *ssh_port, filter).await,
    }
}

/// Starts QEMU daemonized in the VM network namespace `netns` (root); its pid from its pid file.
async fn daemonize(boot: &Boot<'_>, netns: &str) -> Result<u32, LaunchError> {
    let dir = boot.dir;
    let output = tokio::process::Command::new("ip")
        .args(["netns", "exec", netns, QEMU])
        .args(boot.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group while it daemonizes; the daemon then has its own session.
        .process_group(0)
        .output()
        .await
        .map_err(|e| {
            LaunchError::Failed(ProviderError::new(
                ErrorKind::Prerequisites,
                format!("cannot run {QEMU}: {e}"),
            ))
        })?;
    if !output.status.success() {
        return Err(LaunchError::Failed(machine_error(format!(
            "{QEMU} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))));
    }
    std::fs::read_to_string(dir.pid_file())
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            LaunchError::Failed(machine_error(format!(
                "{QEMU} started but wrote no pid to {}",
                dir.pid_file().display()
            )))
        })
}

/// Starts QEMU through pasta in a network namespace of its own, confined by `filter`, with
/// SSH forwarded from the host's loopback port `ssh_port` (no root); QEMU's pid once it runs.
async fn start_in_own_namespace(
    boot: &Boot<'_>,
    ssh_port: u16,
    filter: &std::path::Path,
) -> Result<u32, LaunchError> {
    let dir = boot.dir;
    let failed = |message: String| LaunchError::Failed(machine_error(message));
    let log = std::fs::File::create(dir.qemu_log())
        .and_then(|log| Ok((log.try_clone()?, log)))
        .map_err(|e| failed(format!("creating {}: {e}", dir.qemu_log().display())))?;
    let mut pasta = rootless::command(ssh_port, filter, &dir.pasta_log(), QEMU, &boot.args())
        .map_err(LaunchError::Failed)?
        .stdout(log.0)
        .stderr(log.1)
        .spawn()
        .map_err(|e| {
            LaunchError::Failed(ProviderError::new(
                ErrorKind::Prerequisites,
                format!("cannot run {}: {e}", rootless::PASTA.program),
            ))
        })?;
    let pasta_pid = pasta
        .id()
        .ok_or_else(|| failed("pasta ended before it could be watched".into()))?;
    let deadline = Instant::now() + NAMESPACE_START_TIMEOUT;
    loop {
        if let Some(pid) = rootless::started_process(pasta_pid).filter(|pid| is_qemu(*pid, dir)) {
            return Ok(pid);
        }
        if let Ok(Some(status)) = pasta.try_wait() {
            if rootless::port_was_taken(&dir.pasta_log()) {
                return Err(LaunchError::PortTaken);
            }
            return Err(failed(format!(
                "{QEMU} did not start in the VM's network namespace ({status}): {}",
                dir.exit_reasons()
            )));
        }
        if Instant::now() >= deadline {
            if let Err(e) = pasta.kill().await {
                tracing::warn!("stopping pasta {pasta_pid}: {e}");
            }
            return Err(failed(format!(
                "{QEMU} did not start in the VM's network namespace within {}s: {}",
                NAMESPACE_START_TIMEOUT.as_secs(),
                dir.exit_reasons()
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the guest's init runs from the root disk. Fails with the console's last lines
/// if QEMU exits first (a kernel or initramfs panic with `-no-reboot`, a guest KVM cannot run)
/// or if init does not start in time, in which case the VM is killed.
pub async fn wait_for_init(dir: &VmDir, pid: u32, accel: Accel) -> Result<(), ProviderError> {
    let timeout = init_timeout(accel);
    let deadline = Instant::now() + timeout;
    loop {
        let console = std::fs::read(dir.console_log()).unwrap_or_default();
        if String::from_utf8_lossy(&console).contains(INIT_MARKER) {
            return Ok(());
        }
        if !is_qemu(pid, dir) {
            return Err(machine_error(format!(
                "the VM stopped while booting ({accel}); its console ended with:\n{}{}",
                dir.console_tail(12),
                Some(dir.exit_reasons())
                    .filter(|reasons| !reasons.is_empty())
                    .map(|reasons| format!("\nand QEMU said:\n{reasons}"))
                    .unwrap_or_default()
            )));
        }
        if Instant::now() >= deadline {
            stop_now(pid, dir).await;
            return Err(machine_error(format!(
                "the VM's init did not start within {}s ({accel}); its console ended with:\n{}",
                timeout.as_secs(),
                dir.console_tail(12)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether `pid` is a live QEMU running the VM in `dir` (and not a reused pid).
pub fn is_qemu(pid: u32, dir: &VmDir) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let disk = dir.disk().display().to_string();
    let mut args = cmdline.split(|b| *b == 0);
    let program = args.next().unwrap_or_default();
    alive(pid)
        && program.ends_with(QEMU.as_bytes())
        && args.any(|a| String::from_utf8_lossy(a).contains(&disk))
}

/// The live QEMU running the VM in `dir`, found among all processes.
pub fn find(dir: &VmDir) -> Option<u32> {
    process::pids_where(|pid| is_qemu(pid, dir))
        .first()
        .copied()
}

/// Waits up to `timeout` for the VM process to end; whether it did.
async fn wait_gone(pid: u32, dir: &VmDir, timeout: Duration) -> bool {
    process::wait_gone(timeout, POLL, || is_qemu(pid, dir)).await
}

/// Kills the VM at once (SIGKILL: a VM being deleted needs no orderly end).
pub async fn stop_now(pid: u32, dir: &VmDir) {
    if is_qemu(pid, dir) {
        signal(pid, Signal::SIGKILL);
        if !wait_gone(pid, dir, Duration::from_secs(5)).await {
            tracing::warn!("QEMU process {pid} outlived SIGKILL for 5 s");
        }
    }
}

/// Shuts the VM down in order: ACPI power button through QMP (`system_powerdown`), then, if
/// the guest has not powered off within `timeout` (or QMP is not answering), SIGTERM (QEMU
/// ends the VM at once) and finally SIGKILL. Returns how it ended.
pub async fn powerdown(pid: u32, dir: &VmDir, timeout: Duration) -> &'static str {
    if !is_qemu(pid, dir) {
        return "already stopped";
    }
    match qmp::execute(
        &dir.qmp_socket(),
        "system_powerdown",
        Duration::from_secs(5),
    )
    .await
    {
        Ok(()) => {
            if wait_gone(pid, dir, timeout).await {
                return "powered off by the guest";
            }
            tracing::warn!(
                "the VM did not power off within {}s; stopping QEMU",
                timeout.as_secs()
            );
        }
        Err(e) => tracing::warn!("cannot ask the VM to power off: {e}; stopping QEMU"),
    }
    signal(pid, Signal::SIGTERM);
    if wait_gone(pid, dir, Duration::from_secs(5)).await {
        return "stopped by SIGTERM";
    }
    stop_now(pid, dir).await;
    "killed"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> QemuImage {
        QemuImage {
            profile: azlin_core::ImageProfile::Minimal,
            digest: "0123456789ab".into(),
            dir: PathBuf::from("/images/minimal-qemu-0123456789ab"),
        }
    }

    #[test]
    fn command_line_forwards_ssh_in_the_namespace_and_daemonizes_with_root() {
        let dir = VmDir(PathBuf::from("/state/qemu/q1"));
        let image = image();
        let boot = Boot {
            dir: &dir,
            name: "q1",
            image: &image,
            accel: Accel::Tcg,
            resources: Resources {
                vcpus: 2,
                memory_mib: 2048,
            },
            link: Link::Private {
                ssh_port: 40022,
                filter: PathBuf::from("/state/qemu/q1/network.nft"),
            },
        };
        let args = boot.args();
        let after = |flag: &str| -> Vec<&str> {
            args.windows(2)
                .filter(|w| w[0] == flag)
                .map(|w| w[1].as_str())
                .collect()
        };
        // Without root, pasta forwards the host's port to the namespace's port 22, which QEMU
        // forwards to the guest; QEMU stays in the foreground as pasta's child.
        assert_eq!(
            after("-netdev"),
            ["user,id=net0,restrict=off,hostfwd=tcp:127.0.0.1:22-:22"]
        );
        assert!(!args.iter().any(|a| a == "-daemonize" || a == "-pidfile"));
        // In a VM network namespace SSH comes in on the namespace's address; the filter there
        // confines the guest, so nothing is restricted.
        let confined = Boot {
            link: Link::Namespace {
                netns: "azlin-3".into(),
                address: std::net::Ipv4Addr::new(10, 213, 0, 14),
            },
            ..boot.clone()
        };
        assert!(
            confined
                .args()
                .contains(&"user,id=net0,restrict=off,hostfwd=tcp:10.213.0.14:22-:22".to_string())
        );
        assert_eq!(after("-smp"), ["2"]);
        assert_eq!(after("-m"), ["2048"]);
        assert_eq!(after("-accel"), ["tcg,thread=multi"]);
        assert_eq!(
            after("-kernel"),
            ["/images/minimal-qemu-0123456789ab/vmlinuz"]
        );
        assert_eq!(
            after("-drive"),
            [
                "file=/state/qemu/q1/disk.qcow2,if=virtio,format=qcow2,discard=unmap",
                "file=/state/qemu/q1/seed.iso,if=virtio,format=raw,readonly=on"
            ]
        );
        assert_eq!(after("-serial"), ["file:/state/qemu/q1/console.log"]);
        assert_eq!(
            after("-qmp"),
            ["unix:/state/qemu/q1/qmp.sock,server=on,wait=off"]
        );
        assert!(confined.args().iter().any(|a| a == "-daemonize"));
        assert!(args.iter().any(|a| a == "-no-reboot"));
        assert!(args.iter().any(|a| a == "-nodefaults"));
        let cmdline = boot.kernel_command_line();
        assert!(cmdline.contains("panic=-1") && cmdline.contains("mitigations=off"));
        let kvm = Boot {
            accel: Accel::Kvm,
            ..boot
        };
        assert!(!kvm.kernel_command_line().contains("mitigations"));
    }

    #[tokio::test]
    async fn paths_with_commas_are_refused_before_qemu_runs() {
        let dir = VmDir(PathBuf::from("/state/a,b/q1"));
        let image = image();
        let boot = Boot {
            dir: &dir,
            name: "q1",
            image: &image,
            accel: Accel::Tcg,
            resources: Resources {
                vcpus: 1,
                memory_mib: 512,
            },
            link: Link::Private {
                ssh_port: 40022,
                filter: PathBuf::from("/state/a,b/q1/network.nft"),
            },
        };
        match launch(&boot).await {
            Err(LaunchError::Failed(e)) => {
                assert_eq!(e.kind, ErrorKind::Provision);
                assert!(e.message.contains("contains ','"), "{}", e.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn console_tail_keeps_the_last_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = VmDir(tmp.path().to_path_buf());
        assert_eq!(dir.console_tail(3), "");
        std::fs::write(dir.console_log(), "a\nb\r\nc\nd\n").unwrap();
        assert_eq!(dir.console_tail(2), "c\nd");
    }

    #[test]
    fn only_qemu_running_this_disk_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = VmDir(tmp.path().to_path_buf());
        assert!(!is_qemu(std::process::id(), &dir));
        assert!(!is_qemu(u32::MAX, &dir));
        assert_eq!(find(&dir), None);
    }
}
