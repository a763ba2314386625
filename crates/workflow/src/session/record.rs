//! Session records: state, the VM, and a history of state snapshots with timestamps, kept as
//! one JSON file per session under the sessions folder the caller chose.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The schema version of session records.
pub const SCHEMA: u32 = 1;

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionState {
    /// Waiting for a slot under the concurrency limit, or for its VM.
    Creating,
    /// Has its VM; setup commands run.
    Active,
    /// Steps run.
    Executing,
    /// Every job it ran succeeded.
    Completed,
    /// Something failed.
    Failed,
    /// Cancelled (Ctrl-C, or its future dropped).
    Cancelled,
    /// Its VM has been released: the last state.
    Released,
    /// It failed, and its VM was kept for debugging (`--keep-failed`): the last state.
    Kept,
}

impl SessionState {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionState::Creating => "creating",
            SessionState::Active => "active",
            SessionState::Executing => "executing",
            SessionState::Completed => "completed",
            SessionState::Failed => "failed",
            SessionState::Cancelled => "cancelled",
            SessionState::Released => "released",
            SessionState::Kept => "kept",
        }
    }
}

/// A state the session entered, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The state.
    pub state: SessionState,
    /// RFC 3339 timestamp.
    pub at: String,
    /// What happened.
    pub note: String,
}

/// The VM a session got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionVm {
    /// VM name.
    pub name: String,
    /// Provider.
    pub provider: String,
    /// Address (a folder for `sim`).
    pub address: String,
    /// Where it came from (a warm pool, or booted for the session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<super::VmOrigin>,
}

/// One session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Record schema.
    pub schema: u32,
    /// Unique session id.
    pub id: String,
    /// What it runs (`ci.yml`, or `ci.yml/build` with one VM per job).
    pub label: String,
    /// Current state.
    pub state: SessionState,
    /// How it ended (completed, failed, cancelled), kept after `released`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<SessionState>,
    /// Its VM, once allocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<SessionVm>,
    /// How many times a VM was allocated for it (exactly one for a session that got one).
    pub allocations: u32,
    /// How many commands ran on its VM (probe, setup, steps, cleanup).
    pub commands: u64,
    /// When it was created.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    /// Every state it entered, in order.
    pub history: Vec<Snapshot>,
    /// The process that holds it (a session whose process died holds its VM for nobody).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

impl SessionRecord {
    /// A new record in state `Creating`.
    pub fn new(id: String, label: String) -> Self {
        let now = azlin_core::now_rfc3339();
        SessionRecord {
            schema: SCHEMA,
            id,
            label,
            state: SessionState::Creating,
            outcome: None,
            vm: None,
            allocations: 0,
            commands: 0,
            created_at: now.clone(),
            updated_at: now.clone(),
            history: vec![Snapshot {
                state: SessionState::Creating,
                at: now,
                note: "session created".to_string(),
            }],
            pid: Some(std::process::id()),
        }
    }

    /// Whether its VM was abandoned: the session has not ended and the process that held it
    /// is gone (killed), so nothing will ever release the VM.
    pub fn abandoned(&self) -> bool {
        let ended = matches!(self.state, SessionState::Released | SessionState::Kept);
        let holder_alive = self
            .pid
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        !ended && self.vm.is_some() && !holder_alive
    }

    /// Moves to `state`, recording a snapshot.
    pub fn enter(&mut self, state: SessionState, note: impl Into<String>) {
        let now = azlin_core::now_rfc3339();
        if matches!(
            state,
            SessionState::Completed | SessionState::Failed | SessionState::Cancelled
        ) {
            self.outcome = Some(state);
        }
        self.state = state;
        self.updated_at = now.clone();
        self.history.push(Snapshot {
            state,
            at: now,
            note: note.into(),
        });
    }
}

/// Session records on disk.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

impl SessionStore {
    /// Records under `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SessionStore { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of session `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Writes `record` atomically (temporary file, then rename).
    pub fn save(&self, record: &SessionRecord) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.path(&record.id);
        let tmp = self.dir.join(format!(".{}.json.tmp", record.id));
        let json = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        std::fs::rename(&tmp, &path)
    }

    /// The record of session `id`, if any.
    pub fn load(&self, id: &str) -> std::io::Result<Option<SessionRecord>> {
        match std::fs::read(self.path(id)) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every record, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<SessionRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            if let Some(record) = self.load(id)? {
                out.push(record);
            }
        }
        out.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_history() {
        let dir = tempfile::tempdir().unwrap();
        let store = SessionStore::new(dir.path().join("sessions"));
        let mut r = SessionRecord::new("s1".into(), "ci.yml".into());
        r.enter(SessionState::Active, "got VM");
        r.enter(SessionState::Failed, "step failed");
        r.enter(SessionState::Released, "VM deleted");
        store.save(&r).unwrap();
        let back = store.load("s1").unwrap().unwrap();
        assert_eq!(back, r);
        assert_eq!(back.state, SessionState::Released);
        assert_eq!(back.outcome, Some(SessionState::Failed));
        assert_eq!(back.history.len(), 4);
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(store.load("nope").unwrap().is_none());
        let json = std::fs::read_to_string(store.path("s1")).unwrap();
        assert!(json.contains("\"state\": \"released\""), "{json}");
    }
}
