//! One nspawn machine on the host: its copy-on-write root (an overlay of the base image), its
//! NoCloud seed, and the `systemd-nspawn` process that boots it.

use crate::process::{alive, signal, wait_gone};
use azlin_core::{ErrorKind, ProviderError};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a booting machine may take to start its init before the boot counts as failed.
const INIT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an orderly shutdown may take before the machine is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(15);
/// Polling interval while waiting on processes.
const POLL: Duration = Duration::from_millis(10);

fn machine_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// The folder of one machine: `upper/` and `work/` of the overlay, `rootfs/` where it is
/// mounted, and `console.log`.
#[derive(Debug, Clone)]
pub struct MachineDir(pub PathBuf);

impl MachineDir {
    fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }

    fn work(&self) -> PathBuf {
        self.0.join("work")
    }

    /// Where the machine's root is mounted.
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }

    /// The machine's console output.
    pub fn console_log(&self) -> PathBuf {
        self.0.join("console.log")
    }

    /// Whether the overlay is mounted on `rootfs/`.
    pub fn is_mounted(&self) -> bool {
        let target = self.rootfs().display().to_string();
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
    }

    /// Mounts the base image `lower` with this machine's upper layer on `rootfs/`.
    pub fn mount(&self, lower: &Path) -> Result<(), ProviderError> {
        if self.is_mounted() {
            return Ok(());
        }
        for dir in [self.upper(), self.work(), self.rootfs()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| machine_error(format!("creating {}: {e}", dir.display())))?;
        }
        let paths = [lower.to_path_buf(), self.upper(), self.work()];
        if let Some(bad) = paths
            .iter()
            .find(|p| p.to_string_lossy().contains([',', ':']))
        {
            return Err(machine_error(format!(
                "{} contains ',' or ':', which overlay mounts cannot take",
                bad.display()
            )));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            paths[0].display(),
            paths[1].display(),
            paths[2].display()
        );
        mount(
            Some("overlay"),
            &self.rootfs(),
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| {
            machine_error(format!(
                "mounting the overlay on {}: {e}",
                self.rootfs().display()
            ))
        })
    }

    /// Unmounts `rootfs/` if mounted (lazily if something still holds it).
    pub fn unmount(&self) -> Result<bool, ProviderError> {
        if !self.is_mounted() {
            return Ok(false);
        }
        let target = self.rootfs();
        umount2(&target, MntFlags::empty())
            .or_else(|_| umount2(&target, MntFlags::MNT_DETACH))
            .map_err(|e| {
                ProviderError::new(
                    ErrorKind::Internal,
                    format!("unmounting {}: {e}", target.display()),
                )
            })?;
        Ok(true)
    }

    /// Writes the NoCloud seed (`meta-data`, `user-data`) into the mounted root.
    pub fn write_seed(&self, meta_data: &str, user_data: &str) -> Result<(), ProviderError> {
        let seed = self.rootfs().join("var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&seed)
            .map_err(|e| machine_error(format!("creating {}: {e}", seed.display())))?;
        for (file, content) in [("meta-data", meta_data), ("user-data", user_data)] {
            std::fs::write(seed.join(file), content)
                .map_err(|e| machine_error(format!("writing seed {file}: {e}")))?;
        }
        // The user data carries the private host key: root-only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            seed.join("user-data"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| machine_error(format!("chmod seed: {e}")))
    }

    /// The last lines of the console log, for error messages.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.console_log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Boots the machine: `systemd-nspawn -b` in the network namespace at `netns_path`, detached
/// from azlin (its own process group, output to the console log). Returns the nspawn pid once the
/// machine's init runs, or an error with the console output if nspawn gave up.
pub async fn boot(
    dir: &MachineDir,
    machine: &str,
    hostname: &str,
    netns_path: &str,
) -> Result<u32, ProviderError> {
    let console = std::fs::File::create(dir.console_log())
        .map_err(|e| machine_error(format!("creating {}: {e}", dir.console_log().display())))?;
    let console_err = console
        .try_clone()
        .map_err(|e| machine_error(format!("console log: {e}")))?;
    let rootfs = dir.rootfs().display().to_string();
    let mut child = tokio::process::Command::new("systemd-nspawn")
        .args([
            "--quiet",
            "--boot",
            "--directory",
            &rootfs,
            // The host has no systemd: no machined registration, no scope unit.
            "--register=no",
            "--keep-unit",
            "--machine",
            machine,
            "--hostname",
            hostname,
            "--network-namespace-path",
            netns_path,
            "--console=read-only",
            "--link-journal=no",
        ])
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        // Its own process group: a Ctrl-C in azlin's terminal must not stop the VM.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Prerequisites,
                format!("cannot run systemd-nspawn: {e}"),
            )
        })?;
    let pid = child
        .id()
        .ok_or_else(|| machine_error("systemd-nspawn exited at once".to_string()))?;
    let deadline = Instant::now() + INIT_START_TIMEOUT;
    loop {
        // While booting, the child handle (not /proc, whose command line is briefly empty
        // right after exec) tells whether nspawn gave up.
        if let Ok(Some(status)) = child.try_wait() {
            return Err(machine_error(format!(
                "systemd-nspawn exited ({status}) while booting the machine:\n{}",
                dir.console_tail(12)
            )));
        }
        if init_pid(pid).is_some_and(|init| comm(init).as_deref() == Some("systemd")) {
            // Dropping the handle neither waits for nor kills the machine; tokio reaps it if
            // it ends while azlin still runs.
            drop(child);
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            stop_now(pid).await;
            return Err(machine_error(format!(
                "the machine's init did not start within {}s:\n{}",
                INIT_START_TIMEOUT.as_secs(),
                dir.console_tail(12)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The machine's init: the child of the nspawn process.
pub(super) fn init_pid(nspawn: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `pid` is a live `systemd-nspawn` booting `rootfs` (and not a reused pid).
pub fn is_nspawn(pid: u32, rootfs: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    alive(pid)
        && args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"))
        && args.contains(&rootfs.as_bytes())
}

/// Kills the machine at once: its init (which takes every process of the machine with it) and
/// the nspawn process.
pub async fn stop_now(pid: u32) {
    if let Some(init) = init_pid(pid) {
        signal(init, Signal::SIGKILL);
    }
    signal(pid, Signal::SIGKILL);
    wait_gone(Duration::from_secs(5), POLL, || {
        alive(pid) && comm(pid).as_deref() == Some("systemd-nspawn")
    })
    .await;
}

/// Shuts the machine down in order (nspawn turns SIGTERM into a poweroff request), killing it
/// if it does not finish in time.
pub async fn poweroff(pid: u32, rootfs: &str) {
    signal(pid, Signal::SIGTERM);
    if !wait_gone(POWEROFF_TIMEOUT, POLL, || is_nspawn(pid, rootfs)).await {
        stop_now(pid).await;
    }
}
