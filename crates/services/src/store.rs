//! Where caches and artifacts live: an index in SQLite and the bytes content-addressed.
//!
//! ```text
//! DIR/index.sqlite        caches and artifacts (a row without a digest is still uploading)
//! DIR/blobs/SHA256        finished bytes, shared by every row with that digest
//! DIR/uploads/KIND-ID     bytes of an upload in progress (and KIND-ID.blocks/ for staged blocks)
//! ```
//! An upload becomes visible only when it is committed: the staged file is hashed and moved
//! into `blobs/`. A blob goes when the last row that names it goes.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An entry with that key, version and ref (or that artifact name in the run) exists or
    /// is being uploaded.
    #[error("{0} already exists")]
    Exists(String),
    /// No such entry (or not one the caller may see).
    #[error("{0} not found")]
    NotFound(String),
    /// The upload is not what was announced (size or digest), or is over the limit.
    #[error("{0}")]
    Rejected(String),
    /// The index.
    #[error("store index: {0}")]
    Index(#[from] rusqlite::Error),
    /// The files.
    #[error("store files: {0}")]
    Io(#[from] std::io::Error),
}

/// Which kind of upload a staged file belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A cache entry.
    Cache,
    /// An artifact.
    Artifact,
}

impl Kind {
    /// The name used in paths and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cache => "cache",
            Kind::Artifact => "artifact",
        }
    }

    /// The kind named `s` in a URL.
    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "cache" => Some(Kind::Cache),
            "artifact" => Some(Kind::Artifact),
            _ => None,
        }
    }
}

/// A finished or in-progress cache entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheEntry {
    /// Its id (the v1 protocol's `cacheId`).
    pub id: i64,
    /// `owner/name`.
    pub repository: String,
    /// The ref it was saved on.
    pub git_ref: String,
    /// The cache key.
    pub key: String,
    /// The version hash (paths and compression).
    pub version: String,
    /// Bytes (0 while uploading).
    pub size: u64,
    /// `sha256` of the bytes, once committed.
    pub digest: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds of the last restore (or the save).
    pub last_used: i64,
}

/// A finished or in-progress artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactEntry {
    /// Its id.
    pub id: i64,
    /// `owner/name`.
    pub repository: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The job that uploaded it.
    pub job_id: String,
    /// Its name, unique in the run.
    pub name: String,
    /// Bytes of the zip (0 while uploading).
    pub size: u64,
    /// `sha256` of the zip, once finalized.
    pub digest: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds after which it is removed.
    pub expires_at: i64,
}

/// An in-progress upload older than this is abandoned (its job crashed) and may be replaced.
const STALE_UPLOAD_MS: i64 = 30 * 60 * 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS caches (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  repository TEXT NOT NULL, git_ref TEXT NOT NULL, key TEXT NOT NULL, version TEXT NOT NULL,
  size INTEGER NOT NULL DEFAULT 0, digest TEXT,
  created_at INTEGER NOT NULL, last_used INTEGER NOT NULL,
  UNIQUE (repository, git_ref, key, version));
CREATE TABLE IF NOT EXISTS artifacts (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  repository TEXT NOT NULL, run_id TEXT NOT NULL, job_id TEXT NOT NULL, name TEXT NOT NULL,
  size INTEGER NOT NULL DEFAULT 0, digest TEXT,
  created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
  UNIQUE (repository, run_id, name));
";

const CACHE_COLUMNS: &str =
    "id, repository, git_ref, key, version, size, digest, created_at, last_used";
const ARTIFACT_COLUMNS: &str =
    "id, repository, run_id, job_id, name, size, digest, created_at, expires_at";

fn size_of(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn cache_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<CacheEntry> {
    Ok(CacheEntry {
        id: row.get(0)?,
        repository: row.get(1)?,
        git_ref: row.get(2)?,
        key: row.get(3)?,
        version: row.get(4)?,
        size: size_of(row.get(5)?),
        digest: row.get(6)?,
        created_at: row.get(7)?,
        last_used: row.get(8)?,
    })
}

fn artifact_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ArtifactEntry> {
    Ok(ArtifactEntry {
        id: row.get(0)?,
        repository: row.get(1)?,
        run_id: row.get(2)?,
        job_id: row.get(3)?,
        name: row.get(4)?,
        size: size_of(row.get(5)?),
        digest: row.get(6)?,
        created_at: row.get(7)?,
        expires_at: row.get(8)?,
    })
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// The store. Cheap to clone; every clone shares one connection.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
    db: Arc<Mutex<Connection>>,
}

impl Store {
    /// Opens (or makes) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for sub in ["blobs", "uploads"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let db = Connection::open(dir.join("index.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.busy_timeout(std::time::Duration::from_secs(10))?;
        db.execute_batch(SCHEMA)?;
        Ok(Store {
            dir: dir.to_path_buf(),
            db: Arc::new(Mutex::new(db)),
        })
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written row (SQLite is
        // transactional), so a poisoned lock is still usable.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where the bytes of digest `digest` are.
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.dir.join("blobs").join(digest)
    }

    /// Where an upload's bytes are staged.
    pub fn staging_path(&self, kind: Kind, id: i64) -> PathBuf {
        self.dir
            .join("uploads")
            .join(format!("{}-{id}", kind.as_str()))
    }

    /// Where an upload's staged blocks are kept until their list is committed.
    pub fn blocks_dir(&self, kind: Kind, id: i64) -> PathBuf {
        self.dir
            .join("uploads")
            .join(format!("{}-{id}.blocks", kind.as_str()))
    }

    fn discard_staging(&self, kind: Kind, id: i64) {
        remove_quietly(&self.staging_path(kind, id));
        let blocks = self.blocks_dir(kind, id);
        if blocks.exists()
            && let Err(e) = std::fs::remove_dir_all(&blocks)
        {
            tracing::warn!(path = %blocks.display(), error = %e, "could not remove staged blocks");
        }
    }

    /// Whether upload `id` of `kind` is in progress (not yet committed).
    pub fn is_uploading(&self, kind: Kind, id: i64) -> Result<bool, StoreError> {
        let table = table(kind);
        let found: Option<Option<String>> = self
            .db()
            .query_row(
                &format!("SELECT digest FROM {table} WHERE id = ?1"),
                [id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(matches!(found, Some(None)))
    }

    /// Moves a finished staged file into `blobs/`, checking its size (and digest when given).
    /// An upload that fails the checks is dropped with its row.
    fn commit_staged(
        &self,
        kind: Kind,
        id: i64,
        size: u64,
        expected_digest: Option<&str>,
    ) -> Result<String, StoreError> {
        let committed = self.move_staged(kind, id, size, expected_digest);
        if committed.is_err() {
            self.abandon(kind, id)?;
        }
        committed
    }

    fn move_staged(
        &self,
        kind: Kind,
        id: i64,
        size: u64,
        expected_digest: Option<&str>,
    ) -> Result<String, StoreError> {
        let staged = self.staging_path(kind, id);
        let actual = std::fs::metadata(&staged).map(|m| m.len()).unwrap_or(0);
        if actual != size {
            return Err(StoreError::Rejected(format!(
                "{size} bytes announced, {actual} uploaded"
            )));
        }
        let digest = sha256_file(&staged)?;
        if let Some(expected) = expected_digest
            && expected != digest
        {
            return Err(StoreError::Rejected(format!(
                "the upload's sha256 is {digest}, not {expected}"
            )));
        }
        std::fs::rename(&staged, self.blob_path(&digest))?;
        self.discard_staging(kind, id);
        Ok(digest)
    }

    /// Deletes row `id` of `kind`, then its bytes: the blob when no other row names it, or
    /// what was staged of an unfinished upload.
    fn delete_row(
        &self,
        db: &Connection,
        kind: Kind,
        id: i64,
        digest: Option<&str>,
    ) -> Result<(), StoreError> {
        db.execute(&format!("DELETE FROM {} WHERE id = ?1", table(kind)), [id])?;
        match digest {
            Some(digest) => self.collect_blob(db, digest),
            None => {
                self.discard_staging(kind, id);
                Ok(())
            }
        }
    }

    /// A new upload of `kind` may take the place of `existing` (id, digest, created_at: the row
    /// with the same identity) only when that one is an upload abandoned long ago, which goes.
    fn make_way(
        &self,
        db: &Connection,
        kind: Kind,
        existing: Option<(i64, Option<String>, i64)>,
        what: String,
    ) -> Result<(), StoreError> {
        let Some((id, digest, created_at)) = existing else {
            return Ok(());
        };
        if digest.is_some() || now_ms() - created_at < STALE_UPLOAD_MS {
            return Err(StoreError::Exists(what));
        }
        self.delete_row(db, kind, id, None)
    }

    /// Removes the blob `digest` when no row names it any more.
    fn collect_blob(&self, db: &Connection, digest: &str) -> Result<(), StoreError> {
        let users: i64 = db.query_row(
            "SELECT (SELECT count(*) FROM caches WHERE digest = ?1)
                  + (SELECT count(*) FROM artifacts WHERE digest = ?1)",
            [digest],
            |r| r.get(0),
        )?;
        if users == 0 {
            remove_quietly(&self.blob_path(digest));
        }
        Ok(())
    }

    // ---- caches ----

    /// Reserves a new cache entry (nothing visible until [`Store::commit_cache`]). Refused when
    /// the same key and version exist on the ref or are being saved by another job.
    pub fn reserve_cache(
        &self,
        repository: &str,
        git_ref: &str,
        key: &str,
        version: &str,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        let db = self.db();
        let existing: Option<(i64, Option<String>, i64)> = db
            .query_row(
                "SELECT id, digest, created_at FROM caches
                 WHERE repository = ?1 AND git_ref = ?2 AND key = ?3 AND version = ?4",
                params![repository, git_ref, key, version],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        self.make_way(&db, Kind::Cache, existing, format!("cache '{key}'"))?;
        db.execute(
            "INSERT INTO caches (repository, git_ref, key, version, created_at, last_used)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            params![repository, git_ref, key, version, now],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// The in-progress cache entry `id` of `repository`.
    pub fn pending_cache(&self, repository: &str, id: i64) -> Result<CacheEntry, StoreError> {
        self.db()
            .query_row(
                &format!(
                    "SELECT {CACHE_COLUMNS} FROM caches
                     WHERE id = ?1 AND repository = ?2 AND digest IS NULL"
                ),
                params![id, repository],
                cache_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("cache upload {id}")))
    }

    /// The in-progress cache entry with this key and version on `git_ref`.
    pub fn pending_cache_by_key(
        &self,
        repository: &str,
        git_ref: &str,
        key: &str,
        version: &str,
    ) -> Result<CacheEntry, StoreError> {
        self.db()
            .query_row(
                &format!(
                    "SELECT {CACHE_COLUMNS} FROM caches WHERE repository = ?1 AND git_ref = ?2
                     AND key = ?3 AND version = ?4 AND digest IS NULL"
                ),
                params![repository, git_ref, key, version],
                cache_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("cache upload '{key}'")))
    }

    /// Makes the staged upload of cache `id` visible, then evicts the least recently used
    /// entries of its repository until it holds at most `limit` bytes.
    pub fn commit_cache(&self, id: i64, size: u64, limit: u64) -> Result<CacheEntry, StoreError> {
        if size > limit {
            self.abandon(Kind::Cache, id)?;
            return Err(StoreError::Rejected(format!(
                "a cache of {size} bytes is over the limit of {limit}"
            )));
        }
        let digest = self.commit_staged(Kind::Cache, id, size, None)?;
        let now = now_ms();
        let db = self.db();
        db.execute(
            "UPDATE caches SET digest = ?2, size = ?3, created_at = ?4, last_used = ?4 WHERE id = ?1",
            params![id, digest, i64::try_from(size).unwrap_or(i64::MAX), now],
        )?;
        let entry = db.query_row(
            &format!("SELECT {CACHE_COLUMNS} FROM caches WHERE id = ?1"),
            [id],
            cache_row,
        )?;
        self.evict(&db, &entry.repository, limit)?;
        Ok(entry)
    }

    /// Drops the in-progress upload `id` and whatever was staged for it.
    pub fn abandon(&self, kind: Kind, id: i64) -> Result<(), StoreError> {
        self.db().execute(
            &format!(
                "DELETE FROM {} WHERE id = ?1 AND digest IS NULL",
                table(kind)
            ),
            [id],
        )?;
        self.discard_staging(kind, id);
        Ok(())
    }

    /// Removes the least recently used caches of `repository` until the rest fit in `limit`.
    fn evict(&self, db: &Connection, repository: &str, limit: u64) -> Result<(), StoreError> {
        let mut stmt = db.prepare(&format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE repository = ?1 AND digest IS NOT NULL
             ORDER BY last_used DESC, id DESC"
        ))?;
        let entries: Vec<CacheEntry> = stmt
            .query_map([repository], cache_row)?
            .collect::<Result<_, _>>()?;
        let mut kept = 0u64;
        for entry in entries {
            kept += entry.size;
            if kept > limit {
                tracing::info!(key = %entry.key, repository, "evicting the least recently used cache");
                self.delete_row(db, Kind::Cache, entry.id, entry.digest.as_deref())?;
            }
        }
        Ok(())
    }

    /// The cache a job restores, by GitHub's rules: on each readable ref in order, the exact
    /// `primary` key, then each restore key as a prefix, newest first. Only entries of
    /// `repository` with `version` count. A hit is marked used (for LRU eviction).
    pub fn find_cache(
        &self,
        repository: &str,
        refs: &[&str],
        primary: &str,
        restore_keys: &[String],
        version: &str,
    ) -> Result<Option<CacheEntry>, StoreError> {
        let db = self.db();
        let mut exact = db.prepare(&format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE repository = ?1 AND git_ref = ?2
             AND version = ?3 AND key = ?4 AND digest IS NOT NULL"
        ))?;
        let mut prefix = db.prepare(&format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE repository = ?1 AND git_ref = ?2
             AND version = ?3 AND substr(key, 1, length(?4)) = ?4 AND digest IS NOT NULL
             ORDER BY created_at DESC, id DESC LIMIT 1"
        ))?;
        let mut hit = None;
        'refs: for git_ref in refs {
            if let Some(entry) = exact
                .query_row(params![repository, git_ref, version, primary], cache_row)
                .optional()?
            {
                hit = Some(entry);
                break;
            }
            for restore_key in restore_keys {
                if let Some(entry) = prefix
                    .query_row(
                        params![repository, git_ref, version, restore_key],
                        cache_row,
                    )
                    .optional()?
                {
                    hit = Some(entry);
                    break 'refs;
                }
            }
        }
        if let Some(entry) = &mut hit {
            entry.last_used = now_ms();
            db.execute(
                "UPDATE caches SET last_used = ?2 WHERE id = ?1",
                params![entry.id, entry.last_used],
            )?;
        }
        Ok(hit)
    }

    /// The finished cache entry `id`.
    pub fn cache(&self, id: i64) -> Result<CacheEntry, StoreError> {
        self.db()
            .query_row(
                &format!("SELECT {CACHE_COLUMNS} FROM caches WHERE id = ?1 AND digest IS NOT NULL"),
                [id],
                cache_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("cache {id}")))
    }

    /// Finished caches, of one repository or all, newest first.
    pub fn caches(&self, repository: Option<&str>) -> Result<Vec<CacheEntry>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {CACHE_COLUMNS} FROM caches WHERE digest IS NOT NULL
             AND (?1 IS NULL OR repository = ?1) ORDER BY created_at DESC, id DESC"
        ))?;
        let rows = stmt
            .query_map([repository], cache_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Deletes the finished caches with `key` (of one repository or all); returns them.
    pub fn delete_caches(
        &self,
        repository: Option<&str>,
        key: &str,
    ) -> Result<Vec<CacheEntry>, StoreError> {
        let doomed: Vec<CacheEntry> = self
            .caches(repository)?
            .into_iter()
            .filter(|c| c.key == key)
            .collect();
        let db = self.db();
        for entry in &doomed {
            self.delete_row(&db, Kind::Cache, entry.id, entry.digest.as_deref())?;
        }
        Ok(doomed)
    }

    // ---- artifacts ----

    /// Starts artifact `name` of a run. Refused when the run has one of that name already.
    pub fn create_artifact(
        &self,
        repository: &str,
        run_id: &str,
        job_id: &str,
        name: &str,
        expires_at: i64,
    ) -> Result<i64, StoreError> {
        let now = now_ms();
        let db = self.db();
        let existing: Option<(i64, Option<String>, i64)> = db
            .query_row(
                "SELECT id, digest, created_at FROM artifacts
                 WHERE repository = ?1 AND run_id = ?2 AND name = ?3",
                params![repository, run_id, name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        self.make_way(&db, Kind::Artifact, existing, format!("artifact '{name}'"))?;
        db.execute(
            "INSERT INTO artifacts (repository, run_id, job_id, name, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![repository, run_id, job_id, name, now, expires_at],
        )?;
        Ok(db.last_insert_rowid())
    }

    /// The artifact `name` of a run, finished or (with `pending`) still uploading.
    pub fn artifact(
        &self,
        repository: &str,
        run_id: &str,
        name: &str,
        pending: bool,
    ) -> Result<ArtifactEntry, StoreError> {
        self.db()
            .query_row(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE repository = ?1 AND run_id = ?2
                     AND name = ?3 AND (digest IS NULL) = ?4"
                ),
                params![repository, run_id, name, pending],
                artifact_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("artifact '{name}'")))
    }

    /// Makes the staged zip of artifact `id` visible after checking its size and digest.
    pub fn finalize_artifact(
        &self,
        id: i64,
        size: u64,
        digest: Option<&str>,
    ) -> Result<ArtifactEntry, StoreError> {
        let digest = self.commit_staged(Kind::Artifact, id, size, digest)?;
        let db = self.db();
        db.execute(
            "UPDATE artifacts SET digest = ?2, size = ?3 WHERE id = ?1",
            params![id, digest, i64::try_from(size).unwrap_or(i64::MAX)],
        )?;
        Ok(db.query_row(
            &format!("SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = ?1"),
            [id],
            artifact_row,
        )?)
    }

    /// The finished artifact `id`.
    pub fn artifact_by_id(&self, id: i64) -> Result<ArtifactEntry, StoreError> {
        self.db()
            .query_row(
                &format!(
                    "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE id = ?1 AND digest IS NOT NULL"
                ),
                [id],
                artifact_row,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("artifact {id}")))
    }

    /// The finished artifacts of run `run_id` (of one repository or any), by name.
    pub fn artifacts(
        &self,
        repository: Option<&str>,
        run_id: &str,
    ) -> Result<Vec<ArtifactEntry>, StoreError> {
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE run_id = ?1 AND digest IS NOT NULL
             AND (?2 IS NULL OR repository = ?2) ORDER BY name"
        ))?;
        let rows = stmt
            .query_map(params![run_id, repository], artifact_row)?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Deletes a finished artifact.
    pub fn delete_artifact(&self, entry: &ArtifactEntry) -> Result<(), StoreError> {
        self.delete_row(
            &self.db(),
            Kind::Artifact,
            entry.id,
            entry.digest.as_deref(),
        )
    }

    /// Removes artifacts past their retention and uploads abandoned long ago; returns how many
    /// artifacts went.
    pub fn expire(&self) -> Result<usize, StoreError> {
        let now = now_ms();
        let db = self.db();
        let mut stmt = db.prepare(&format!(
            "SELECT {ARTIFACT_COLUMNS} FROM artifacts WHERE expires_at <= ?1
             OR (digest IS NULL AND created_at < ?2)"
        ))?;
        let expired: Vec<ArtifactEntry> = stmt
            .query_map(params![now, now - STALE_UPLOAD_MS], artifact_row)?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        for entry in &expired {
            self.delete_row(&db, Kind::Artifact, entry.id, entry.digest.as_deref())?;
        }
        Ok(expired.len())
    }
}

fn table(kind: Kind) -> &'static str {
    match kind {
        Kind::Cache => "caches",
        Kind::Artifact => "artifacts",
    }
}

fn remove_quietly(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "could not remove"),
    }
}

/// The `sha256` of a file, in hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPO: &str = "octo/app";
    const LIMIT: u64 = 1 << 30;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn save(store: &Store, git_ref: &str, key: &str, bytes: &[u8], limit: u64) -> CacheEntry {
        let id = store.reserve_cache(REPO, git_ref, key, "v1").unwrap();
        std::fs::write(store.staging_path(Kind::Cache, id), bytes).unwrap();
        store.commit_cache(id, bytes.len() as u64, limit).unwrap()
    }

    fn find(store: &Store, refs: &[&str], primary: &str, restore: &[&str]) -> Option<String> {
        let restore: Vec<String> = restore.iter().map(|s| s.to_string()).collect();
        store
            .find_cache(REPO, refs, primary, &restore, "v1")
            .unwrap()
            .map(|c| format!("{}@{}", c.key, c.git_ref))
    }

    #[test]
    fn lookups_follow_githubs_order_exact_then_prefixes_newest_first_then_the_default_branch() {
        let (_dir, store) = store();
        save(&store, "refs/heads/main", "deps-linux-aaa", b"1", LIMIT);
        save(&store, "refs/heads/main", "deps-linux-bbb", b"2", LIMIT);
        save(&store, "refs/heads/feature", "deps-linux-old", b"3", LIMIT);
        let both = ["refs/heads/feature", "refs/heads/main"];
        // Exact on the main branch.
        assert_eq!(
            find(&store, &both, "deps-linux-aaa", &[]),
            Some("deps-linux-aaa@refs/heads/main".into())
        );
        // A prefix hit on the job's own ref beats an exact-looking one elsewhere.
        assert_eq!(
            find(&store, &both, "deps-linux-zzz", &["deps-linux-"]),
            Some("deps-linux-old@refs/heads/feature".into())
        );
        // On main alone, the newest prefix match.
        assert_eq!(
            find(&store, &["refs/heads/main"], "x", &["deps-linux-"]),
            Some("deps-linux-bbb@refs/heads/main".into())
        );
        // The primary key is exact only, and other versions or refs do not count.
        assert_eq!(find(&store, &both, "deps-linux", &[]), None);
        assert_eq!(
            find(&store, &["refs/heads/other"], "deps-linux-aaa", &[]),
            None
        );
        assert_eq!(
            store
                .find_cache(REPO, &both, "deps-linux-aaa", &[], "v2")
                .unwrap(),
            None
        );
        assert_eq!(
            store
                .find_cache("evil/app", &both, "deps-linux-aaa", &[], "v1")
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_key_is_saved_once_per_ref_and_uploads_are_invisible_until_committed() {
        let (_dir, store) = store();
        let id = store
            .reserve_cache(REPO, "refs/heads/main", "k", "v1")
            .unwrap();
        assert!(matches!(
            store.reserve_cache(REPO, "refs/heads/main", "k", "v1"),
            Err(StoreError::Exists(_))
        ));
        assert_eq!(find(&store, &["refs/heads/main"], "k", &[]), None);
        std::fs::write(store.staging_path(Kind::Cache, id), b"abc").unwrap();
        // A size that is not what was uploaded drops the upload.
        assert!(matches!(
            store.commit_cache(id, 4, LIMIT),
            Err(StoreError::Rejected(_))
        ));
        assert!(store.caches(None).unwrap().is_empty());
        assert!(!store.staging_path(Kind::Cache, id).exists());
        save(&store, "refs/heads/main", "k", b"abc", LIMIT);
        assert!(matches!(
            store.reserve_cache(REPO, "refs/heads/main", "k", "v1"),
            Err(StoreError::Exists(_))
        ));
    }

    #[test]
    fn the_least_recently_used_cache_is_evicted_first_and_its_blob_with_it() {
        let (_dir, store) = store();
        let limit = 10;
        let old = save(&store, "refs/heads/main", "old", b"aaaa", limit);
        std::thread::sleep(std::time::Duration::from_millis(3));
        let used = save(&store, "refs/heads/main", "used", b"bbbb", limit);
        std::thread::sleep(std::time::Duration::from_millis(3));
        // Restoring "old" makes it recently used, so "used" is now the least recent.
        assert!(find(&store, &["refs/heads/main"], "old", &[]).is_some());
        std::thread::sleep(std::time::Duration::from_millis(3));
        save(&store, "refs/heads/main", "new", b"cccc", limit);
        let keys: Vec<String> = store
            .caches(Some(REPO))
            .unwrap()
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, ["new", "old"]);
        assert!(!store.blob_path(used.digest.as_ref().unwrap()).exists());
        assert!(store.blob_path(old.digest.as_ref().unwrap()).exists());
        // One cache over the whole limit is refused and leaves nothing.
        let id = store
            .reserve_cache(REPO, "refs/heads/main", "huge", "v1")
            .unwrap();
        std::fs::write(store.staging_path(Kind::Cache, id), [0u8; 11]).unwrap();
        assert!(store.commit_cache(id, 11, limit).is_err());
        assert_eq!(store.caches(Some(REPO)).unwrap().len(), 2);
    }

    #[test]
    fn identical_bytes_share_a_blob_until_the_last_user_goes() {
        let (_dir, store) = store();
        let a = save(&store, "refs/heads/main", "a", b"same", LIMIT);
        let b = save(&store, "refs/heads/main", "b", b"same", LIMIT);
        assert_eq!(a.digest, b.digest);
        let blob = store.blob_path(a.digest.as_ref().unwrap());
        store.delete_caches(Some(REPO), "a").unwrap();
        assert!(blob.exists());
        store.delete_caches(Some(REPO), "b").unwrap();
        assert!(!blob.exists());
    }

    #[test]
    fn artifacts_are_unique_per_run_checked_on_finalize_and_expire() {
        let (_dir, store) = store();
        let far = now_ms() + 60_000;
        let id = store
            .create_artifact(REPO, "7", "build", "dist", far)
            .unwrap();
        assert!(matches!(
            store.create_artifact(REPO, "7", "test", "dist", far),
            Err(StoreError::Exists(_))
        ));
        // Another run may use the name.
        store
            .create_artifact(REPO, "8", "build", "dist", far)
            .unwrap();
        std::fs::write(store.staging_path(Kind::Artifact, id), b"zip").unwrap();
        let digest = sha256_file(&store.staging_path(Kind::Artifact, id)).unwrap();
        let done = store.finalize_artifact(id, 3, Some(&digest)).unwrap();
        assert_eq!(done.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(store.artifacts(None, "7").unwrap(), vec![done.clone()]);
        // A digest that does not match drops the upload.
        let bad = store
            .create_artifact(REPO, "7", "build", "logs", far)
            .unwrap();
        std::fs::write(store.staging_path(Kind::Artifact, bad), b"zip").unwrap();
        assert!(store.finalize_artifact(bad, 3, Some("0000")).is_err());
        assert_eq!(store.artifacts(None, "7").unwrap().len(), 1);
        // Expiry.
        let soon = store
            .create_artifact(REPO, "9", "b", "old", now_ms() - 1)
            .unwrap();
        std::fs::write(store.staging_path(Kind::Artifact, soon), b"x").unwrap();
        store.finalize_artifact(soon, 1, None).unwrap();
        assert_eq!(store.expire().unwrap(), 1);
        assert!(store.artifacts(None, "9").unwrap().is_empty());
    }
}
