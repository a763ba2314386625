//! Which accelerator QEMU runs guests with: KVM when it really runs a guest on this host, TCG
//! (QEMU's own CPU emulation) otherwise.
//!
//! A `/dev/kvm` that opens is not proof that KVM works: under nested virtualisation the device
//! may exist and accept `KVM_CREATE_VM`, and even run a real-mode boot sector, while a Linux
//! guest never gets going. On this project's CI host, for one, the outer hypervisor offers KVM
//! through `kvm-pvm`: with `-cpu host` QEMU aborts at once ("failed to set MSR 0x10a"), and with
//! other CPU models the guest hangs without a line on its console. So the verdict comes from
//! booting the image's own kernel under KVM with `-cpu host` (what VMs would get) and no root
//! disk: a kernel that runs prints its banner and panics for want of a root file system within
//! seconds; `panic=-1` and `-no-reboot` make QEMU exit cleanly then. Anything else — an abort,
//! an error exit, silence until the deadline — means TCG.
//!
//! The verdict is remembered in a small file keyed by the host's boot id and the QEMU binary, so
//! the probe runs once per boot of the host (or QEMU upgrade), not once per VM.

use crate::record::write_atomically;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// How long the probe guest may take to reach its panic under KVM (seconds suffice when KVM
/// works; the deadline only bounds the case of a guest that hangs).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
/// What the probe kernel prints once it ran far enough to look for a root file system.
const PROBE_MARKER: &str = "Kernel panic";

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's tiny code generator: CPU emulation, slow but available everywhere.
    Tcg,
}

impl Accel {
    /// The name QEMU and azlin use.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// `-accel` and `-cpu` arguments.
    pub fn qemu_args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            // One host thread per vCPU (multi-threaded TCG); `max` is every feature TCG
            // emulates.
            Accel::Tcg => ["-accel", "tcg,thread=multi", "-cpu", "max"],
        }
    }

    /// Extra kernel command-line words. TCG does not emulate speculative execution, so the
    /// guest's Spectre/Meltdown mitigations protect nothing there while costing a lot (page
    /// table isolation flushes QEMU's software TLB on every system call); under KVM the guest
    /// runs on a real CPU and keeps them.
    pub fn kernel_args(self) -> &'static str {
        match self {
            Accel::Kvm => "",
            Accel::Tcg => " mitigations=off",
        }
    }

    /// Parses a name written by [`Accel::as_str`].
    pub fn parse(name: &str) -> Option<Accel> {
        match name {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The accelerator chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The accelerator VMs use.
    pub accel: Accel,
    /// Why (shown by `azlin doctor`-like messages and kept in the VM's details).
    pub reason: String,
}

/// The remembered verdict and what it was decided for.
#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    host: String,
    verdict: Verdict,
}

/// What a verdict depends on: this boot of the host and this QEMU binary.
fn host_fingerprint() -> String {
    use std::os::unix::fs::MetadataExt;
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let qemu = crate::tools::which(QEMU)
        .and_then(|path| {
            let meta = std::fs::metadata(&path).ok()?;
            Some(format!(
                "{} {} {}",
                path.display(),
                meta.size(),
                meta.mtime()
            ))
        })
        .unwrap_or_default();
    format!("boot {boot_id}; qemu {qemu}")
}

/// The verdict remembered in `cache`, if it was made for this boot of the host and this QEMU.
pub fn remembered(cache: &Path) -> Option<Verdict> {
    let host = host_fingerprint();
    std::fs::read(cache)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Cached>(&bytes).ok())
        .filter(|c| c.host == host)
        .map(|c| c.verdict)
}

/// Decides the accelerator: the verdict [`remembered`] in `cache`, else a fresh probe with
/// `kernel` (whose scratch files go in `work_dir`), remembered for next time.
pub async fn decide(cache: &Path, kernel: &Path, work_dir: &Path) -> Verdict {
    if let Some(verdict) = remembered(cache) {
        return verdict;
    }
    let host = host_fingerprint();
    let verdict = probe(kernel, work_dir).await;
    tracing::info!("QEMU accelerator: {} ({})", verdict.accel, verdict.reason);
    // Two processes probing at once both write a verdict; the rename keeps the file whole.
    let remembered = serde_json::to_vec(&Cached {
        host,
        verdict: verdict.clone(),
    })
    .map_err(std::io::Error::other)
    .and_then(|json| {
        if let Some(dir) = cache.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_atomically(cache, &json, false)
    });
    if let Err(e) = remembered {
        tracing::warn!(
            "cannot remember the accelerator in {}: {e}",
            cache.display()
        );
    }
    verdict
}

fn tcg(reason: String) -> Verdict {
    Verdict {
        accel: Accel::Tcg,
        reason,
    }
}

/// Boots `kernel` under KVM without a root disk and watches it reach its panic.
async fn probe(kernel: &Path, work_dir: &Path) -> Verdict {
    if !Path::new("/dev/kvm").exists() {
        return tcg("no /dev/kvm on this host".into());
    }
    if let Err(e) = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return tcg(format!(
            "/dev/kvm cannot be opened ({e}; join the kvm group to use it)"
        ));
    }
    let dir = work_dir.join(format!(".accel-probe-{}", std::process::id()));
    let verdict = probe_in(kernel, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    verdict
}

async fn probe_in(kernel: &Path, dir: &Path) -> Verdict {
    if let Err(e) = std::fs::create_dir_all(dir) {
        return tcg(format!("cannot test KVM ({}: {e})", dir.display()));
    }
    let log: PathBuf = dir.join("console.log");
    let mut command = tokio::process::Command::new(QEMU);
    command
        .args(Accel::Kvm.qemu_args())
        .args([
            "-machine",
            "q35",
            "-smp",
            "1",
            "-m",
            "256",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-append",
            "console=ttyS0 panic=-1 loglevel=4",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-serial")
        .arg(format!("file:{}", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return tcg(format!("cannot run {QEMU}: {e}")),
    };
    let outcome = tokio::time::timeout(PROBE_TIMEOUT, child.wait_with_output()).await;
    let console = std::fs::read_to_string(&log).unwrap_or_default();
    match outcome {
        // Dropping the timed-out future kills the guest (`kill_on_drop`).
        Err(_) => tcg(format!(
            "KVM did not run a test guest within {}s",
            PROBE_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => tcg(format!("waiting for the KVM test guest: {e}")),
        Ok(Ok(out)) if out.status.success() && console.contains(PROBE_MARKER) => Verdict {
            accel: Accel::Kvm,
            reason: "KVM ran a test guest".into(),
        },
        Ok(Ok(out)) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let why = stderr
                .lines()
                .map(str::trim)
                .find(|l| l.contains("error") || l.contains("Assertion"))
                .or_else(|| stderr.lines().map(str::trim).find(|l| !l.is_empty()))
                .unwrap_or("the test guest printed nothing");
            tcg(format!(
                "KVM could not run a test guest ({}: {why})",
                out.status
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accelerators_round_trip_and_differ_in_arguments() {
        for accel in [Accel::Kvm, Accel::Tcg] {
            assert_eq!(Accel::parse(accel.as_str()), Some(accel));
        }
        assert_eq!(Accel::parse("hvf"), None);
        assert_eq!(Accel::Kvm.qemu_args()[3], "host");
        assert!(Accel::Tcg.qemu_args()[1].starts_with("tcg"));
        assert!(Accel::Tcg.kernel_args().contains("mitigations=off"));
        assert!(Accel::Kvm.kernel_args().is_empty());
    }

    #[tokio::test]
    async fn a_remembered_verdict_for_this_host_is_reused() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("accel.json");
        let remembered = Verdict {
            accel: Accel::Kvm,
            reason: "remembered".into(),
        };
        let json = serde_json::to_vec(&Cached {
            host: host_fingerprint(),
            verdict: remembered.clone(),
        })
        .unwrap();
        std::fs::write(&cache, json).unwrap();
        // No kernel is needed: the probe does not run.
        let verdict = decide(&cache, Path::new("/nonexistent"), dir.path()).await;
        assert_eq!(verdict, remembered);
    }

    #[tokio::test]
    async fn a_verdict_for_another_boot_is_probed_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("accel.json");
        let stale = serde_json::to_vec(&Cached {
            host: "boot 0; qemu old".into(),
            verdict: Verdict {
                accel: Accel::Kvm,
                reason: "stale".into(),
            },
        })
        .unwrap();
        std::fs::write(&cache, stale).unwrap();
        // A kernel that does not exist never boots, so KVM cannot be shown to work.
        let verdict = decide(&cache, &dir.path().join("no-kernel"), dir.path()).await;
        assert_eq!(verdict.accel, Accel::Tcg, "{verdict:?}");
        let again: Cached = serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
        assert_eq!(again.verdict, verdict);
        assert_eq!(again.host, host_fingerprint());
        // The probe's scratch folder is gone.
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("accel.json")]);
    }
}
