//! The host processes of local VMs (nspawn and qemu), by pid: whether one is alive, signalling
//! it, waiting for it to end.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::time::{Duration, Instant};

/// Whether `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

/// The pids of the host's processes that `is` picks (a VM process found by its command line,
/// when its pid was never recorded).
pub(crate) fn pids_where(is: impl Fn(u32) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| is(*pid))
        .collect()
}

/// Sends `sig` to `pid`, if it is still there.
pub(crate) fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        // The process may already be gone; that is what we want anyway.
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Waits up to `timeout`, looking every `poll`, until `running` says the process is gone;
/// whether it went.
pub(crate) async fn wait_gone(
    timeout: Duration,
    poll: Duration,
    running: impl Fn() -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while running() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(poll).await;
    }
    true
}
