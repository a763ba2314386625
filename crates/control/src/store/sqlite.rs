//! [`SqliteStore`]: the state store of one machine, an SQLite database in WAL mode so that
//! several azlin processes can use it at once.

use super::{
    Claim, LoggedEvent, StateStore, StoreError, VmRecord, claimed, next_record, oldest_pooled,
    requested_record,
};
use async_trait::async_trait;
use azlin_core::VmName;
use azlin_core::event::{Event, Request};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

/// The SQLite state store.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

/// How long a command waits for another azlin process to release the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS vms (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subject TEXT NOT NULL,
    request_id TEXT NOT NULL,
    payload TEXT NOT NULL
);
";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let conn = Connection::open(path).map_err(StoreError::backend)?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(StoreError::backend)?;
        // Switching to WAL and creating the tables take locks for which SQLite may answer
        // SQLITE_BUSY at once rather than call the busy handler (two azlin commands opening a
        // new store together): such a start is retried until the busy timeout.
        let started = std::time::Instant::now();
        loop {
            let prepared = conn
                .pragma_update(None, "journal_mode", "WAL")
                .and_then(|()| conn.pragma_update(None, "synchronous", "NORMAL"))
                .and_then(|()| conn.execute_batch(SCHEMA));
            match prepared {
                Ok(()) => break,
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(StoreError::backend(e)),
            }
        }
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| StoreError::backend("store lock poisoned"))?;
        f(&mut conn).map_err(StoreError::backend)
    }
}

fn load(conn: &Connection, name: &str) -> rusqlite::Result<Option<VmRecord>> {
    let json: Option<String> = conn
        .query_row("SELECT record FROM vms WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .optional()?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

fn load_all(conn: &Connection) -> rusqlite::Result<Vec<VmRecord>> {
    let mut stmt = conn.prepare("SELECT record FROM vms ORDER BY name")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    Ok(rows
        .filter_map(|r| r.ok())
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect())
}

fn save(conn: &Connection, record: &VmRecord) -> rusqlite::Result<()> {
    let json = serde_json::to_string(record).unwrap_or_default();
    conn.execute(
        "INSERT INTO vms (name, record) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET record = excluded.record",
        params![record.name.as_str(), json],
    )?;
    Ok(())
}

#[async_trait]
impl StateStore for SqliteStore {
    async fn record_request(&self, request: &Request) -> Result<(), StoreError> {
        let Some(record) = requested_record(request) else {
            return Ok(());
        };
        // An immediate transaction takes the write lock before reading, so that of two
        // processes recording the same name, the second sees the first's record.
        let existing = self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let existing = load(&tx, record.name.as_str())?;
            if existing.is_none() {
                save(&tx, &record)?;
            }
            tx.commit()?;
            Ok(existing)
        })?;
        match existing {
            Some(existing) if existing.request_id != record.request_id => {
                Err(StoreError::name_taken(existing))
            }
            _ => Ok(()),
        }
    }

    async fn apply(&self, event: &Event) -> Result<(), StoreError> {
        self.with(|conn| {
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO events (subject, request_id, payload) VALUES (?1, ?2, ?3)",
                params![
                    event.subject(),
                    event.request_id(),
                    String::from_utf8_lossy(&event.encode())
                ],
            )?;
            let current = load(&tx, event.name().as_str())?;
            match next_record(current, event) {
                Some(Some(record)) => save(&tx, &record)?,
                Some(None) => {
                    tx.execute("DELETE FROM vms WHERE name = ?1", [event.name().as_str()])?;
                }
                None => {}
            }
            tx.commit()
        })
    }

    async fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        self.with(|conn| load_all(conn))
    }

    async fn claim(
        &self,
        pool: &str,
        only: Option<&VmName>,
        claim: &Claim,
    ) -> Result<Option<VmRecord>, StoreError> {
        // The write lock is taken before reading: two processes never pick the same VM.
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let records = load_all(&tx)?;
            let taken = oldest_pooled(&records, pool, only).map(|r| claimed(r.clone(), claim));
            if let Some(record) = &taken {
                save(&tx, record)?;
            }
            tx.commit()?;
            Ok(taken)
        })
    }

    async fn vm(&self, name: &VmName) -> Result<Option<VmRecord>, StoreError> {
        self.with(|conn| load(conn, name.as_str()))
    }

    async fn forget(&self, name: &VmName) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute("DELETE FROM vms WHERE name = ?1", [name.as_str()])
                .map(drop)
        })
    }

    async fn events(&self, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        self.with(|conn| {
            let mut stmt = conn
                .prepare("SELECT seq, subject, payload FROM events WHERE seq > ?1 ORDER BY seq")?;
            let rows = stmt.query_map([i64::try_from(after).unwrap_or(i64::MAX)], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })?;
            Ok(rows
                .filter_map(|r| r.ok())
                .map(|(seq, subject, payload)| LoggedEvent {
                    seq: u64::try_from(seq).unwrap_or(0),
                    subject,
                    payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
                    traceparent: None,
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azlin_core::event::{CreateRequested, SCHEMA};
    use azlin_core::{ProviderKind, VmSpec};

    fn create(name: &str, request_id: &str) -> Request {
        Request::Create(CreateRequested {
            schema: SCHEMA,
            request_id: request_id.into(),
            spec: VmSpec::new(VmName::parse(name).expect("name"), ProviderKind::Sim),
            ssh_public_key: String::new(),
            requested_by: "test".into(),
            created_at: azlin_core::now_rfc3339(),
        })
    }

    #[tokio::test]
    async fn recording_a_request_again_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("state.db")).expect("open");
        let request = create("again", "r1");
        store.record_request(&request).await.expect("record");
        store.record_request(&request).await.expect("record again");
        let err = store
            .record_request(&create("again", "r2"))
            .await
            .expect_err("another request for the name");
        assert!(
            err.to_string()
                .contains("a VM named 'again' already exists (creating, request r1)"),
            "{err}"
        );
    }
}
