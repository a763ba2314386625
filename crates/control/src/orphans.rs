//! Resources azlin made and could not remove: a failed delete or release is retried a few
//! times ([`delete_with_retry`]), and what still failed is written to `orphans.jsonl` in the
//! state directory ([`OrphanStore`]) so that it is never silently leaked: `azlin list` counts
//! the records and a later `azlin cleanup` removes them.

use azlin_core::{DeleteReport, ErrorKind, ProviderError, ProviderKind, VmName, VmProvider};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name of the orphan records in the state directory.
pub const ORPHANS_FILE: &str = "orphans.jsonl";

/// One resource that azlin made and failed to remove.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// The provider holding it.
    pub provider: ProviderKind,
    /// What it is (`vm`, `session-vm`, …).
    pub kind: String,
    /// Its name or id at the provider.
    pub name: String,
    /// What failed, as the provider said it.
    pub failure: String,
    /// When the failure was recorded (RFC 3339).
    pub at: String,
}

impl Orphan {
    /// A VM of `provider` named `name` that could not be removed because of `failure`.
    pub fn vm(provider: ProviderKind, name: &VmName, failure: impl Into<String>) -> Self {
        Orphan {
            provider,
            kind: "vm".to_string(),
            name: name.to_string(),
            failure: failure.into(),
            at: azlin_core::now_rfc3339(),
        }
    }
}

/// Why the orphan records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum OrphanError {
    /// The file could not be opened, written or read.
    #[error("orphan records {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A record could not be encoded.
    #[error("encoding an orphan record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The append-only JSON-lines file of [`Orphan`] records.
#[derive(Debug, Clone)]
pub struct OrphanStore {
    path: PathBuf,
}

impl OrphanStore {
    /// The store in `state_dir` (`orphans.jsonl`; created on the first record).
    pub fn in_state_dir(state_dir: &Path) -> Self {
        OrphanStore {
            path: state_dir.join(ORPHANS_FILE),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> OrphanError + '_ {
        |source| OrphanError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends one record. The line goes out in one `write` on a file opened for appending,
    /// so concurrent writers (several workers on one host) never interleave within a line,
    /// and it is synced before this returns.
    pub fn record(&self, orphan: &Orphan) -> Result<(), OrphanError> {
        let mut line = serde_json::to_vec(orphan)?;
        line.push(b'\n');
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io())?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(self.io())?;
        // Every complete record ends with a newline; one that does not was cut short by a
        // crash, and this record must not be glued onto it.
        if ends_torn(&mut file).map_err(self.io())? {
            line.insert(0, b'\n');
        }
        file.write_all(&line).map_err(self.io())?;
        file.sync_data().map_err(self.io())
    }

    /// Every record, oldest first. A line that does not parse (a write cut short by a crash)
    /// is skipped with a warning.
    pub fn list(&self) -> Result<Vec<Orphan>, OrphanError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io()(e)),
        };
        let mut orphans = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            match serde_json::from_str(line) {
                Ok(orphan) => orphans.push(orphan),
                Err(e) => tracing::warn!("{}:{}: skipped: {e}", self.path.display(), n + 1),
            }
        }
        Ok(orphans)
    }

    /// Replaces the records with `remaining` (after a cleanup removed the others), through a
    /// temporary file so that a crash leaves the old list or the new one.
    pub fn replace(&self, remaining: &[Orphan]) -> Result<(), OrphanError> {
        let mut text = Vec::new();
        for orphan in remaining {
            text.extend(serde_json::to_vec(orphan)?);
            text.push(b'\n');
        }
        if remaining.is_empty() && !self.path.exists() {
            return Ok(());
        }
        let temporary = self.path.with_extension("jsonl.tmp");
        std::fs::write(&temporary, text).map_err(self.io())?;
        std::fs::rename(&temporary, &self.path).map_err(self.io())
    }

    /// Records `orphan`, saying so in the log; a record that cannot be written is logged with
    /// everything it would have said, so the resource is still named somewhere.
    pub fn record_or_log(&self, orphan: &Orphan) {
        match self.record(orphan) {
            Ok(()) => tracing::warn!(
                "{} {} '{}' could not be removed ({}); recorded in {} for `azlin cleanup`",
                orphan.provider,
                orphan.kind,
                orphan.name,
                orphan.failure,
                self.path.display()
            ),
            Err(e) => tracing::error!(
                "{} {} '{}' could not be removed ({}) and not recorded: {e}",
                orphan.provider,
                orphan.kind,
                orphan.name,
                orphan.failure
            ),
        }
    }
}

/// Whether the file's last byte is something other than a newline.
fn ends_torn(file: &mut std::fs::File) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}

/// How often and how patiently a removal is tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Delay before the second attempt; doubled for each further one.
    pub backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Deletes VM `name`, retrying failures that may pass with backoff. A VM that is already gone
/// counts as deleted (an earlier attempt may have removed it before failing to say so).
pub async fn delete_with_retry(
    provider: &dyn VmProvider,
    name: &VmName,
    retry: Retry,
) -> Result<DeleteReport, ProviderError> {
    let attempts = retry.attempts.max(1);
    let mut delay = retry.backoff;
    let mut attempt = 1;
    loop {
        match provider.delete(name).await {
            Ok(report) => return Ok(report),
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(DeleteReport::default()),
            Err(e) if attempt < attempts && e.retryable => {
                tracing::warn!(
                    "deleting VM '{name}' failed (attempt {attempt} of {attempts}): {}; retrying in {delay:?}",
                    e.message
                );
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
                attempt += 1;
            }
            Err(e) => {
                tracing::warn!(
                    "deleting VM '{name}' failed (attempt {attempt} of {attempts}): {}",
                    e.message
                );
                return Err(e);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use azlin_core::{CreateRequest, VmSpec};
    use azlin_providers::sim::{SimProvider, SimSettings};

    fn orphan(name: &str) -> Orphan {
        Orphan::vm(
            ProviderKind::Sim,
            &VmName::parse(name).unwrap(),
            "simulated delete failure",
        )
    }

    #[test]
    fn records_append_and_read_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = OrphanStore::in_state_dir(&dir.path().join("state"));
        assert!(store.list().unwrap().is_empty(), "no file: no orphans");
        store.record(&orphan("a")).unwrap();
        store.record(&orphan("b")).unwrap();
        let listed = store.list().unwrap();
        let names: Vec<&str> = listed.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(listed[0].kind, "vm");
        assert_eq!(listed[0].provider, ProviderKind::Sim);
        assert_eq!(listed[0].failure, "simulated delete failure");
        let text = std::fs::read_to_string(store.path()).unwrap();
        assert_eq!(text.lines().count(), 2, "one line per record:\n{text}");
    }

    #[test]
    fn a_torn_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let store = OrphanStore::in_state_dir(dir.path());
        store.record(&orphan("a")).unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(store.path())
            .unwrap();
        file.write_all(b"{\"provider\":\"sim\",\"ki").unwrap();
        drop(file);
        // The next record starts on a line of its own.
        store.record(&orphan("c")).unwrap();
        let names: Vec<String> = store.list().unwrap().into_iter().map(|o| o.name).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn concurrent_writers_never_interleave() {
        let dir = tempfile::tempdir().unwrap();
        let store = OrphanStore::in_state_dir(dir.path());
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        store.record(&orphan(&format!("vm-{t}-{i}"))).unwrap();
                    }
                });
            }
        });
        assert_eq!(store.list().unwrap().len(), 100);
    }

    async fn sim_vm(dir: &Path, name: &str, delete_fail_rate: f64) -> (SimProvider, VmName) {
        let sim =
            SimProvider::new(dir, SimSettings::default()).with_delete_fail_rate(delete_fail_rate);
        let name = VmName::parse(name).unwrap();
        let request = CreateRequest {
            request_id: format!("r-{name}"),
            spec: VmSpec::new(name.clone(), ProviderKind::Sim),
            user_data: String::new(),
            admin_public_key: String::new(),
            host_public_key: String::new(),
        };
        sim.create(&request).await.unwrap();
        (sim, name)
    }

    #[tokio::test(start_paused = true)]
    async fn a_failing_delete_is_retried_then_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (sim, name) = sim_vm(dir.path(), "stuck", 1.0).await;
        let err = delete_with_retry(&sim, &name, Retry::default())
            .await
            .unwrap_err();
        assert!(err.message.contains("simulated delete failure"), "{err}");
        assert!(sim.get(&name).await.unwrap().is_some(), "still there");
    }

    #[tokio::test]
    async fn a_gone_vm_counts_as_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimProvider::new(dir.path(), SimSettings::default());
        let report = delete_with_retry(&sim, &VmName::parse("gone").unwrap(), Retry::default())
            .await
            .unwrap();
        assert!(report.removed.is_empty());
    }
}

/// Where in-process launches mark their requests, in the state directory.
const IN_FLIGHT_DIR: &str = "in-flight";

/// Launches under way in this process, each marked by a file `in-flight/REQUEST_ID` holding
/// this process's id; unmarked when dropped. A launch killed outright (SIGKILL) leaves its
/// marks, and [`abandoned_requests`] finds them for `azlin cleanup`.
#[derive(Debug)]
pub struct InFlight {
    marks: Vec<PathBuf>,
}

impl InFlight {
    /// Marks `request_ids` as launched by this process.
    pub fn mark<'a>(state_dir: &Path, request_ids: impl IntoIterator<Item = &'a str>) -> InFlight {
        let dir = state_dir.join(IN_FLIGHT_DIR);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!("cannot mark launches in {}: {e}", dir.display());
        }
        let pid = std::process::id().to_string();
        let marks = request_ids
            .into_iter()
            .map(|id| dir.join(id))
            .filter(|path| match std::fs::write(path, &pid) {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!("cannot mark launch {}: {e}", path.display());
                    false
                }
            })
            .collect();
        InFlight { marks }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        for mark in &self.marks {
            forget_mark(mark);
        }
    }
}

/// Removes an in-flight mark.
pub fn forget_mark(mark: &Path) {
    if let Err(e) = std::fs::remove_file(mark)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("removing {}: {e}", mark.display());
    }
}

/// Every marked request, its mark, and whether its launching process is alive.
fn marked_requests(state_dir: &Path) -> Vec<(String, PathBuf, bool)> {
    let Ok(entries) = std::fs::read_dir(state_dir.join(IN_FLIGHT_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = std::fs::read_to_string(entry.path()).ok()?;
            let alive = Path::new("/proc").join(pid.trim()).exists();
            Some((
                entry.file_name().to_string_lossy().into_owned(),
                entry.path(),
                alive,
            ))
        })
        .collect()
}

/// The requests whose launching process is gone without unmarking them, with their marks.
pub fn abandoned_requests(state_dir: &Path) -> Vec<(String, PathBuf)> {
    marked_requests(state_dir)
        .into_iter()
        .filter(|(_, _, alive)| !alive)
        .map(|(id, mark, _)| (id, mark))
        .collect()
}

/// The requests whose launch is under way on this machine.
pub fn requests_under_way(state_dir: &Path) -> Vec<String> {
    marked_requests(state_dir)
        .into_iter()
        .filter(|(_, _, alive)| *alive)
        .map(|(id, _, _)| id)
        .collect()
}

#[cfg(test)]
mod in_flight_tests {
    use super::*;

    #[test]
    fn marks_of_a_live_process_are_not_abandoned_and_go_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let marks = InFlight::mark(dir.path(), ["req-1", "req-2"]);
        assert!(abandoned_requests(dir.path()).is_empty());
        let mut live = requests_under_way(dir.path());
        live.sort();
        assert_eq!(live, ["req-1", "req-2"]);
        // A mark of a process that is gone.
        std::fs::write(dir.path().join("in-flight/req-3"), "4194304999").unwrap();
        let abandoned: Vec<String> = abandoned_requests(dir.path())
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(abandoned, ["req-3"]);
        drop(marks);
        assert!(!dir.path().join("in-flight/req-1").exists());
    }
}
