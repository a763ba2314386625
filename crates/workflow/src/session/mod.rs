//! Workflow sessions (seed 002): one VM per session, allocated exactly once before any command,
//! used for setup commands, steps and cleanup commands, and released on every path.
//!
//! - The global limit of concurrent sessions is a semaphore: a session past the limit waits for
//!   a slot (it queues, it does not fail), and there is no check-then-insert race.
//! - The VM is held by a release guard. [`Session::close`] runs the cleanup commands and
//!   releases the VM; if a session is dropped instead (its future cancelled by Ctrl-C, a panic),
//!   the guard's `Drop` does the same on a tracked background task, which
//!   [`SessionManager::wait_idle`] waits for. An allocation still in flight when its caller goes
//!   away is released as soon as it completes. So no path skips the release.
//! - Each session has a record (state, VM, history of snapshots with timestamps) written as JSON
//!   under the sessions folder at every state change.

pub mod allocator;
pub mod launch;
pub mod pool;
pub mod record;

pub use allocator::{
    AllocError, Allocation, AllocationRequest, Allocator, ProviderAllocator, VmOrigin,
};
pub use launch::LaunchAllocator;
pub use pool::PoolAllocator;
pub use record::{SessionRecord, SessionState, SessionStore, SessionVm, Snapshot};

use azlin_core::Vm;
use azlin_remote::{OutputStream, RemoteError, Shell};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Whose account steps run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunAs {
    /// As root, like act and GitHub's hosted runners' passwordless sudo: through `sudo -n` when
    /// the login user is not root, directly when it is (then nothing changes).
    #[default]
    Root,
    /// As the login user.
    Login,
}

/// How long one cleanup command may take before it is abandoned.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(120);

/// Settings of a [`SessionManager`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// At most this many sessions hold a VM at once (at least 1).
    pub max_concurrent: usize,
    /// Where session records go.
    pub sessions_dir: std::path::PathBuf,
    /// Commands run on each VM after it is allocated, before any step.
    pub setup_commands: Vec<String>,
    /// Commands run on each VM before it is released, on every path.
    pub cleanup_commands: Vec<String>,
    /// Whose account commands run as.
    pub run_as: RunAs,
    /// Keep the VM of a failed session (no cleanup commands, no release), for debugging.
    pub keep_failed: bool,
}

/// Facts about a session's VM, learnt once when the session opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFacts {
    /// The user id commands run as (0 for root).
    pub uid: u32,
    /// `HOME` of that user.
    pub home: String,
    /// `uname -m`.
    pub machine: String,
    /// Whether `bash` is installed.
    pub bash: bool,
    /// Whether `python3` is installed.
    pub python3: bool,
    /// The command that runs a program given on standard input as that user (`sh -s`, or
    /// `sudo -n sh -s`).
    pub runner: String,
}

impl VmFacts {
    /// GitHub's `RUNNER_ARCH` for the machine.
    pub fn runner_arch(&self) -> &'static str {
        match self.machine.as_str() {
            "x86_64" | "amd64" => "X64",
            "aarch64" | "arm64" => "ARM64",
            "i386" | "i686" => "X86",
            m if m.starts_with("arm") => "ARM",
            _ => "X64",
        }
    }
}

const PROBE: &str = "printf 'uid=%s\\nhome=%s\\nmachine=%s\\n' \"$(id -u)\" \"$HOME\" \"$(uname -m)\"\ncommand -v bash >/dev/null 2>&1 && echo bash=1\ncommand -v python3 >/dev/null 2>&1 && echo python3=1\nexit 0\n";

fn parse_probe(text: &str, runner: &str) -> Option<VmFacts> {
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    Some(VmFacts {
        uid: get("uid")?.trim().parse().ok()?,
        home: get("home").unwrap_or_default(),
        machine: get("machine").unwrap_or_default(),
        bash: get("bash").is_some(),
        python3: get("python3").is_some(),
        runner: runner.to_string(),
    })
}

/// A session that could not be opened. Whatever it had was released.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No VM could be allocated.
    #[error("session {session}: allocating a VM failed: {source}")]
    Allocate {
        /// Session id.
        session: String,
        /// Why.
        source: AllocError,
    },
    /// The VM was allocated but could not be prepared.
    #[error("session {session}: preparing VM {vm} failed: {message}")]
    Setup {
        /// Session id.
        session: String,
        /// VM name.
        vm: String,
        /// Why.
        message: String,
    },
    /// Cancelled before it got a VM.
    #[error("session {session} was cancelled before it got a VM")]
    Cancelled {
        /// Session id.
        session: String,
    },
}

/// How a session's VM was given back.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CloseReport {
    /// Cleanup commands that failed (with their output).
    pub cleanup_failures: Vec<String>,
    /// The release error, if the VM could not be released.
    pub release_error: Option<String>,
    /// The session failed and its VM was kept (`--keep-failed`).
    pub kept: bool,
}

struct Shared {
    allocator: Arc<dyn Allocator>,
    permits: Arc<Semaphore>,
    store: SessionStore,
    tracker: TaskTracker,
    config: SessionConfig,
}

/// Opens sessions under a global concurrency limit. Cheap to clone.
#[derive(Clone)]
pub struct SessionManager {
    shared: Arc<Shared>,
}

/// Everything the release guard needs to finish a session.
struct Finisher {
    shared: Arc<Shared>,
    allocation: Allocation,
    record: Arc<Mutex<SessionRecord>>,
    runner: Option<String>,
    _permit: OwnedSemaphorePermit,
}

impl Finisher {
    async fn finish(self, outcome: SessionState, note: String) -> CloseReport {
        let mut report = CloseReport::default();
        update(&self.shared.store, &self.record, |r| r.enter(outcome, note));
        if outcome == SessionState::Failed && self.shared.config.keep_failed {
            let note = format!(
                "VM {} kept for debugging: azlin connect {0}; azlin delete {0} when done",
                self.allocation.vm.name
            );
            update(&self.shared.store, &self.record, |r| {
                r.enter(SessionState::Kept, note)
            });
            report.kept = true;
            return report;
        }
        if let Some(runner) = &self.runner
            && outcome == SessionState::Cancelled
        {
            // Stop whatever the abandoned steps left running (every step carries the id).
            let id = self
                .record
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .id
                .clone();
            let kill = crate::protocol::script::kill_matching("AZLIN_SESSION_ID", &id);
            let _ = tokio::time::timeout(
                CLEANUP_TIMEOUT,
                capture(self.allocation.shell.as_ref(), runner, &kill),
            )
            .await;
        }
        if let Some(runner) = &self.runner {
            for command in &self.shared.config.cleanup_commands {
                let result = tokio::time::timeout(
                    CLEANUP_TIMEOUT,
                    capture(self.allocation.shell.as_ref(), runner, command),
                )
                .await;
                update(&self.shared.store, &self.record, |r| r.commands += 1);
                match result {
                    Ok(Ok((0, _))) => {}
                    Ok(Ok((code, out))) => report
                        .cleanup_failures
                        .push(format!("`{command}` exited with {code}: {}", out.trim())),
                    Ok(Err(e)) => report.cleanup_failures.push(format!("`{command}`: {e}")),
                    Err(_) => report.cleanup_failures.push(format!(
                        "`{command}` did not finish within {} s",
                        CLEANUP_TIMEOUT.as_secs()
                    )),
                }
            }
        }
        let released = self.shared.allocator.release(&self.allocation).await;
        let note = match &released {
            Ok(()) => format!("VM {} released", self.allocation.vm.name),
            Err(e) => {
                report.release_error = Some(e.message.clone());
                format!("releasing VM {} failed: {e}", self.allocation.vm.name)
            }
        };
        update(&self.shared.store, &self.record, |r| {
            r.enter(SessionState::Released, note)
        });
        report
    }
}

/// Releases the VM if the session is dropped without [`Session::close`].
struct ReleaseGuard {
    finisher: Option<Finisher>,
}

impl Drop for ReleaseGuard {
    fn drop(&mut self) {
        let Some(finisher) = self.finisher.take() else {
            return;
        };
        let tracker = finisher.shared.tracker.clone();
        let vm = finisher.allocation.vm.name.clone();
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                tracker.spawn_on(
                    finisher.finish(
                        SessionState::Cancelled,
                        "the session was abandoned (cancelled); cleaning up".to_string(),
                    ),
                    &handle,
                );
            }
            Err(_) => tracing::error!(
                vm = %vm,
                "a session was dropped outside a runtime; its VM could not be released"
            ),
        }
    }
}

/// An open session: its VM and the shell to reach it.
pub struct Session {
    id: String,
    label: String,
    vm: Vm,
    origin: VmOrigin,
    timing: SessionTiming,
    shell: Arc<dyn Shell>,
    facts: VmFacts,
    record: Arc<Mutex<SessionRecord>>,
    store: SessionStore,
    guard: ReleaseGuard,
}

/// How long a session waited for its VM.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionTiming {
    /// From asking for a VM to having it (a pool claim and a login, or a whole boot).
    pub allocate_ms: u64,
    /// From asking for a VM to its first command having run (the session is usable).
    pub usable_ms: u64,
}

fn elapsed_ms(since: std::time::Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn update(store: &SessionStore, record: &Mutex<SessionRecord>, f: impl FnOnce(&mut SessionRecord)) {
    let snapshot = {
        let mut r = record.lock().unwrap_or_else(|p| p.into_inner());
        let before = r.history.len();
        f(&mut r);
        // Counters change on every command; only state changes are written at once.
        (r.history.len() != before).then(|| r.clone())
    };
    if let Some(r) = snapshot
        && let Err(e) = store.save(&r)
    {
        tracing::warn!(session = %r.id, error = %e, "cannot write the session record");
    }
}

async fn capture(
    shell: &dyn Shell,
    runner: &str,
    program: &str,
) -> Result<(i32, String), RemoteError> {
    let mut out = Vec::new();
    let code = shell
        .exec(runner, program.as_bytes(), &mut |_, b| {
            out.extend_from_slice(b)
        })
        .await?;
    Ok((code, String::from_utf8_lossy(&out).into_owned()))
}

impl SessionManager {
    /// A manager allocating through `allocator`.
    pub fn new(allocator: Arc<dyn Allocator>, config: SessionConfig) -> Self {
        let limit = config.max_concurrent.max(1);
        SessionManager {
            shared: Arc::new(Shared {
                allocator,
                permits: Arc::new(Semaphore::new(limit)),
                store: SessionStore::new(config.sessions_dir.clone()),
                tracker: TaskTracker::new(),
                config,
            }),
        }
    }

    /// The record store.
    pub fn store(&self) -> &SessionStore {
        &self.shared.store
    }

    /// Opens a session labelled `label` for jobs that run on `runs_on`: waits for a slot,
    /// allocates its VM (exactly once),
    /// learns the VM's facts and runs the setup commands. Cancelling `cancel` while waiting for
    /// a slot gives up; once a VM is allocated it is always released.
    pub async fn open(
        &self,
        label: &str,
        runs_on: &[String],
        cancel: &CancellationToken,
    ) -> Result<Session, SessionError> {
        let id = azlin_core::new_id();
        let record = Arc::new(Mutex::new(SessionRecord::new(
            id.clone(),
            label.to_string(),
        )));
        let store = self.shared.store.clone();
        if let Err(e) = store.save(&record.lock().unwrap_or_else(|p| p.into_inner())) {
            tracing::warn!(session = %id, error = %e, "cannot write the session record");
        }
        let permit = tokio::select! {
            permit = self.shared.permits.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => return Err(SessionError::Cancelled { session: id }),
            },
            _ = cancel.cancelled() => {
                update(&store, &record, |r| r.enter(SessionState::Cancelled, "cancelled while waiting for a slot"));
                update(&store, &record, |r| r.enter(SessionState::Released, "no VM was allocated"));
                return Err(SessionError::Cancelled { session: id });
            }
        };
        update(&store, &record, |r| {
            r.enter(SessionState::Creating, "slot acquired; allocating a VM")
        });
        let allocating = std::time::Instant::now();
        // The allocation runs on a tracked task: if this future is dropped mid-allocation, the
        // task still releases what it gets.
        let (tx, rx) = tokio::sync::oneshot::channel();
        let allocator = self.shared.allocator.clone();
        let request = AllocationRequest {
            session_id: id.clone(),
            label: label.to_string(),
            runs_on: runs_on.to_vec(),
        };
        self.shared.tracker.spawn(async move {
            let result = allocator.allocate(&request).await;
            if let Err(Ok(orphan)) = tx.send(result)
                && let Err(error) = allocator.release(&orphan).await
            {
                tracing::warn!(vm = %orphan.vm.name, %error, "a VM allocated for an abandoned session could not be released");
            }
        });
        let allocation = match rx.await {
            Ok(Ok(a)) => a,
            Ok(Err(source)) => {
                update(&store, &record, |r| {
                    r.enter(SessionState::Failed, format!("allocation failed: {source}"))
                });
                update(&store, &record, |r| {
                    r.enter(SessionState::Released, "no VM was allocated")
                });
                return Err(SessionError::Allocate {
                    session: id,
                    source,
                });
            }
            Err(_) => {
                let source = AllocError::new(
                    azlin_core::ErrorKind::Internal,
                    "the allocation task ended without an answer",
                );
                update(&store, &record, |r| {
                    r.enter(SessionState::Failed, source.message.clone())
                });
                return Err(SessionError::Allocate {
                    session: id,
                    source,
                });
            }
        };
        let vm = allocation.vm.clone();
        let shell = allocation.shell.clone();
        let origin = allocation.origin.clone();
        let timing = SessionTiming {
            allocate_ms: elapsed_ms(allocating),
            usable_ms: 0,
        };
        update(&store, &record, |r| {
            r.allocations += 1;
            r.vm = Some(SessionVm {
                name: vm.name.to_string(),
                provider: vm.provider.to_string(),
                address: vm.address.clone(),
                origin: Some(origin.clone()),
            });
            r.enter(SessionState::Active, format!("VM {} allocated", vm.name));
        });
        let mut guard = ReleaseGuard {
            finisher: Some(Finisher {
                shared: self.shared.clone(),
                allocation,
                record: record.clone(),
                runner: None,
                _permit: permit,
            }),
        };
        let prepared = self.prepare(shell.as_ref(), &record, cancel).await;
        let facts = match prepared {
            Ok(facts) => facts,
            Err(message) => {
                if let Some(mut f) = guard.finisher.take() {
                    f.runner = Some("sh -s".to_string());
                    let cancelled = cancel.is_cancelled();
                    let outcome = if cancelled {
                        SessionState::Cancelled
                    } else {
                        SessionState::Failed
                    };
                    let tracker = f.shared.tracker.clone();
                    if let Err(error) = tracker.spawn(f.finish(outcome, message.clone())).await {
                        tracing::warn!(vm = %vm.name, %error, "releasing the VM of a failed setup did not finish");
                    }
                }
                return Err(SessionError::Setup {
                    session: id,
                    vm: vm.name.to_string(),
                    message,
                });
            }
        };
        if let Some(f) = &mut guard.finisher {
            f.runner = Some(facts.runner.clone());
        }
        let timing = SessionTiming {
            usable_ms: elapsed_ms(allocating),
            ..timing
        };
        Ok(Session {
            id,
            label: label.to_string(),
            vm,
            origin,
            timing,
            shell,
            facts,
            record,
            store,
            guard,
        })
    }

    async fn prepare(
        &self,
        shell: &dyn Shell,
        record: &Mutex<SessionRecord>,
        cancel: &CancellationToken,
    ) -> Result<VmFacts, String> {
        let store = &self.shared.store;
        let probe = |runner: &'static str| async move {
            let (code, out) = capture(shell, runner, PROBE)
                .await
                .map_err(|e| format!("cannot run commands on the VM: {e}"))?;
            update(store, record, |r| r.commands += 1);
            if code != 0 {
                return Err(format!(
                    "`{runner}` failed with exit code {code}: {}",
                    out.trim()
                ));
            }
            parse_probe(&out, runner)
                .ok_or_else(|| format!("unexpected answer to the VM probe: {}", out.trim()))
        };
        let mut facts = probe("sh -s").await?;
        if self.shared.config.run_as == RunAs::Root && facts.uid != 0 {
            facts = probe("sudo -n sh -s").await.map_err(|e| {
                format!(
                    "steps run as root through `sudo -n`, but that failed for the login user (uid {}): {e}",
                    facts.uid
                )
            })?;
        }
        for command in &self.shared.config.setup_commands {
            if cancel.is_cancelled() {
                return Err("cancelled during setup".to_string());
            }
            let (code, out) = capture(shell, &facts.runner, command)
                .await
                .map_err(|e| format!("setup command `{command}`: {e}"))?;
            update(store, record, |r| r.commands += 1);
            if code != 0 {
                return Err(format!(
                    "setup command `{command}` exited with {code}: {}",
                    out.trim()
                ));
            }
        }
        Ok(facts)
    }

    /// Waits until every VM of an abandoned session has been cleaned up and released.
    pub async fn wait_idle(&self) {
        let tracker = &self.shared.tracker;
        tracker.close();
        tracker.wait().await;
        tracker.reopen();
    }
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the session runs.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Its VM.
    pub fn vm(&self) -> &Vm {
        &self.vm
    }

    /// Where its VM came from.
    pub fn origin(&self) -> &VmOrigin {
        &self.origin
    }

    /// How long it took to get its VM and to make it usable.
    pub fn timing(&self) -> SessionTiming {
        self.timing
    }

    /// Facts learnt about the VM.
    pub fn facts(&self) -> &VmFacts {
        &self.facts
    }

    /// The shell of the VM.
    pub fn shell(&self) -> &Arc<dyn Shell> {
        &self.shell
    }

    /// A copy of the record.
    pub fn record(&self) -> SessionRecord {
        self.record
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Runs `program` (a POSIX shell program, sent on standard input) on the VM as the step
    /// user, streaming its output to `sink`; returns its exit code. Moves the session to
    /// `Executing` the first time.
    pub async fn run(
        &self,
        program: &str,
        sink: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<i32, RemoteError> {
        update(&self.store, &self.record, |r| {
            if r.state == SessionState::Active {
                r.enter(SessionState::Executing, "running steps");
            }
            r.commands += 1;
        });
        self.shell
            .exec(&self.facts.runner, program.as_bytes(), sink)
            .await
    }

    /// Runs `script` with `sh -c` (as the step user), with `args` as `$1`…, feeding it `stdin`
    /// (how `actions/checkout` streams a tar archive onto the VM).
    pub async fn run_with_input(
        &self,
        script: &str,
        args: &[&str],
        stdin: &[u8],
        sink: &mut (dyn FnMut(OutputStream, &[u8]) + Send),
    ) -> Result<i32, RemoteError> {
        update(&self.store, &self.record, |r| r.commands += 1);
        let sudo = if self.facts.runner.starts_with("sudo") {
            "sudo -n "
        } else {
            ""
        };
        let args: Vec<String> = args.iter().map(|a| azlin_remote::quote::sh(a)).collect();
        let command = format!(
            "{sudo}sh -c {} sh {}",
            azlin_remote::quote::sh(script),
            args.join(" ")
        );
        self.shell.exec(&command, stdin, sink).await
    }

    /// Runs the cleanup commands and releases the VM, recording `outcome` (`Completed`,
    /// `Failed` or `Cancelled`) and then `Released`.
    ///
    /// The work runs on a tracked task: if this future is dropped half way (Ctrl-C during
    /// cleanup), the release still completes, and [`SessionManager::wait_idle`] waits for it.
    pub async fn close(mut self, outcome: SessionState, note: &str) -> CloseReport {
        match self.guard.finisher.take() {
            Some(f) => {
                let tracker = f.shared.tracker.clone();
                let task = tracker.spawn(f.finish(outcome, note.to_string()));
                task.await.unwrap_or_else(|e| CloseReport {
                    release_error: Some(format!("the release task failed: {e}")),
                    ..CloseReport::default()
                })
            }
            None => CloseReport::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_parse() {
        let f = parse_probe("uid=1000\nhome=/home/u\nmachine=aarch64\nbash=1\n", "sh -s").unwrap();
        assert_eq!(f.uid, 1000);
        assert_eq!(f.home, "/home/u");
        assert!(f.bash && !f.python3);
        assert_eq!(f.runner_arch(), "ARM64");
        assert!(parse_probe("garbage", "sh -s").is_none());
    }
}
