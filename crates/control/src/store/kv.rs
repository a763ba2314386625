//! [`KvStore`]: the state store of a fleet, a JetStream key-value bucket (`azlin_vms`, one key
//! per VM name) shared by every azlin process that talks to the same NATS server. Needs
//! nats-server ≥ 2.10.
//!
//! Several processes may record the same events (the `azlin new` that follows its requests and
//! `azlin serve`): every change is a compare-and-set on the key's revision, retried on conflict,
//! and all of them apply [`next_record`] to the same ordered events, so they agree. The audit
//! trail is the events stream itself.
//!
//! Listing is what the orchestrator does after every event (to rewrite the deployment state),
//! so it must not cost a round trip per VM: the store keeps a mirror of the bucket, fed by a
//! reader of the bucket's stream, and a listing waits only until the mirror has seen this
//! store's own latest write (and everything there was when the mirror started).

use super::{
    Claim, LoggedEvent, StateStore, StoreError, VmRecord, claimed, next_record, oldest_pooled,
    requested_record,
};
use crate::bus::nats::topology::STATE_BUCKET;
use crate::bus::nats::{self, NatsSettings, Range, StoredMessage, replay::replay};
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use azlin_core::VmName;
use azlin_core::event::{Event, Request};
use azlin_core::nats::NatsConnection;
use futures::TryStreamExt;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, OnceCell};

/// How often a compare-and-set is retried when other processes keep changing the same key.
const MAX_CONFLICTS: usize = 50;
/// The subject prefix of the bucket's keys.
const KEY_PREFIX: &str = "$KV.azlin_vms.";
/// How long a listing waits for the mirror before reading the bucket key by key.
const MIRROR_WAIT: Duration = Duration::from_secs(5);

/// The key-value state store.
pub struct KvStore {
    source: Source,
    open: OnceCell<Open>,
}

enum Source {
    Url(String, NatsSettings),
    Connection(NatsConnection, NatsSettings),
    Context(jetstream::Context, NatsSettings),
}

struct Open {
    js: jetstream::Context,
    vms: kv::Store,
    /// The highest revision this store wrote (a listing shows at least that).
    written: AtomicU64,
    mirror: OnceCell<Arc<Mirror>>,
}

/// The bucket's records (with their revisions) as its stream delivers them.
struct Mirror {
    state: Mutex<MirrorState>,
    changed: Notify,
    /// The bucket's last revision when the watch began: the mirror is complete from there on.
    floor: u64,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct MirrorState {
    records: BTreeMap<String, (VmRecord, u64)>,
    revision: u64,
}

impl Mirror {
    /// Applies one message of the bucket's stream: a record, or (empty) a delete or purge.
    fn apply(&self, message: StoredMessage) {
        let Some(key) = message.subject.strip_prefix(KEY_PREFIX) else {
            return;
        };
        if let Ok(mut state) = self.state.lock() {
            state.revision = state.revision.max(message.seq);
            if message.payload.is_empty() {
                state.records.remove(key);
            } else if let Ok(record) = serde_json::from_slice::<VmRecord>(&message.payload) {
                state.records.insert(key.to_string(), (record, message.seq));
            }
        }
        self.changed.notify_waiters();
    }

    /// The records, once the mirror has seen revision `want`; `None` if it does not in time.
    async fn records(&self, want: u64) -> Option<Vec<VmRecord>> {
        let deadline = tokio::time::Instant::now() + MIRROR_WAIT;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let state = self.state.lock().ok()?;
                if state.revision >= want {
                    return Some(state.records.values().map(|(r, _)| r.clone()).collect());
                }
            }
            tokio::time::timeout_at(deadline, notified).await.ok()?;
        }
    }
}

impl Mirror {
    /// The record of `key` and its revision, if the mirror has it.
    fn get(&self, key: &str) -> Option<(VmRecord, u64)> {
        self.state.lock().ok()?.records.get(key).cloned()
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").finish_non_exhaustive()
    }
}

fn err(what: &str) -> impl FnOnce(String) -> StoreError + '_ {
    move |e| StoreError::Backend(format!("{what}: {e}"))
}

impl KvStore {
    /// A store on the server at `url`, connected on first use (so that commands that never
    /// touch the store never connect).
    pub fn lazy(url: impl Into<String>, settings: NatsSettings) -> KvStore {
        KvStore {
            source: Source::Url(url.into(), settings),
            open: OnceCell::new(),
        }
    }

    /// A store on the server `connection` names (TLS, credentials, replicas), connected on
    /// first use.
    pub fn lazy_with(connection: NatsConnection, settings: NatsSettings) -> KvStore {
        let settings = NatsSettings {
            replicas: connection.replicas,
            ..settings
        };
        KvStore {
            source: Source::Connection(connection, settings),
            open: OnceCell::new(),
        }
    }

    /// A store sharing an existing JetStream connection.
    pub fn with_context(js: jetstream::Context, settings: NatsSettings) -> KvStore {
        KvStore {
            source: Source::Context(js, settings),
            open: OnceCell::new(),
        }
    }

    async fn open(&self) -> Result<&Open, StoreError> {
        self.open
            .get_or_try_init(|| async {
                let (js, settings) = match &self.source {
                    Source::Url(url, settings) => {
                        let client = nats::connect_client(url, &settings.connection_name)
                            .await
                            .map_err(StoreError::backend)?;
                        (jetstream::new(client), settings)
                    }
                    Source::Connection(connection, settings) => {
                        let client = nats::connect(connection, &settings.connection_name)
                            .await
                            .map_err(StoreError::Bus)?;
                        (jetstream::new(client), settings)
                    }
                    Source::Context(js, settings) => (js.clone(), settings),
                };
                let vms = js
                    .create_or_update_key_value(settings.state_bucket())
                    .await
                    .map_err(|e| err("opening the state bucket")(e.to_string()))?;
                // The audit trail is the events stream: make sure it exists for `events`.
                js.create_or_update_stream(settings.events_stream())
                    .await
                    .map_err(|e| err("opening the events stream")(e.to_string()))?;
                Ok(Open {
                    js,
                    vms,
                    written: AtomicU64::new(0),
                    mirror: OnceCell::new(),
                })
            })
            .await
    }

    /// The mirror of the bucket, started on first use.
    async fn mirror(open: &Open) -> Result<&Arc<Mirror>, StoreError> {
        open.mirror
            .get_or_try_init(|| async {
                // The bucket's stream from its first retained message (a few revisions per key,
                // applied in order), then every change.
                let stream = format!("KV_{STATE_BUCKET}");
                let floor = open
                    .js
                    .get_stream(&stream)
                    .await
                    .map_err(|e| err("reading the state bucket")(e.to_string()))?
                    .info()
                    .await
                    .map_err(|e| err("reading the state bucket")(e.to_string()))?
                    .state
                    .last_sequence;
                let mut messages = replay(&open.js, &stream, Range::Follow { after: 0 }, 1024)
                    .await
                    .map_err(|e| err("watching the state bucket")(e.to_string()))?;
                Ok(Arc::new_cyclic(|weak: &Weak<Mirror>| {
                    let weak = weak.clone();
                    let task = tokio::spawn(async move {
                        while let Some(message) = messages.recv().await {
                            let Some(mirror) = weak.upgrade() else { return };
                            mirror.apply(message);
                        }
                    });
                    Mirror {
                        state: Mutex::new(MirrorState::default()),
                        changed: Notify::new(),
                        floor,
                        task,
                    }
                }))
            })
            .await
    }

    /// Notes that this store wrote `revision`.
    fn wrote(open: &Open, revision: u64) {
        open.written.fetch_max(revision, Ordering::Relaxed);
    }

    /// Notes a delete of `name`: its tombstone's revision.
    async fn deleted(open: &Open, name: &str) {
        if let Ok(Some(entry)) = open.vms.entry(name).await {
            Self::wrote(open, entry.revision);
        }
    }

    /// Every record, read key by key (when the mirror lags).
    async fn read_all(open: &Open) -> Result<Vec<VmRecord>, StoreError> {
        let keys: Vec<String> = match open.vms.keys().await {
            Ok(keys) => keys
                .try_collect()
                .await
                .map_err(|e| err("listing records")(e.to_string()))?,
            Err(e) => return Err(err("listing records")(e.to_string())),
        };
        let mut records = Vec::new();
        for key in keys {
            let (record, _) = Self::current(&open.vms, &key).await?;
            records.extend(record);
        }
        Ok(records)
    }

    /// The current record of `name` and the revision to compare against (0: no key).
    async fn current(vms: &kv::Store, name: &str) -> Result<(Option<VmRecord>, u64), StoreError> {
        let entry = vms
            .entry(name)
            .await
            .map_err(|e| err("reading a record")(e.to_string()))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                (serde_json::from_slice(&entry.value).ok(), entry.revision)
            }
            Some(entry) => (None, entry.revision),
            None => (None, 0),
        })
    }
}

/// A compare-and-set of `name`'s record lost to other writers [`MAX_CONFLICTS`] times.
fn kept_changing(name: &str) -> StoreError {
    StoreError::Backend(format!(
        "the record of {name} kept changing; gave up after {MAX_CONFLICTS} tries"
    ))
}

fn encode(record: &VmRecord) -> Result<bytes::Bytes, StoreError> {
    serde_json::to_vec(record)
        .map(Into::into)
        .map_err(StoreError::backend)
}

#[async_trait]
impl StateStore for KvStore {
    async fn record_request(&self, request: &Request) -> Result<(), StoreError> {
        let Some(record) = requested_record(request) else {
            return Ok(());
        };
        let open = self.open().await?;
        let name = record.name.as_str();
        let value = encode(&record)?;
        // A compare-and-set against "no record" (revision 0, or a deleted record's revision):
        // of two processes recording the same name, only the first write lands.
        for _ in 0..MAX_CONFLICTS {
            match Self::current(&open.vms, name).await? {
                (Some(existing), _) if existing.request_id == record.request_id => return Ok(()),
                (Some(existing), _) => return Err(StoreError::name_taken(existing)),
                (None, revision) => match open.vms.update(name, value.clone(), revision).await {
                    Ok(revision) => {
                        Self::wrote(open, revision);
                        return Ok(());
                    }
                    // Written meanwhile: read who holds it now.
                    Err(e) => tracing::debug!(%name, "record written meanwhile ({e}); again"),
                },
            }
        }
        Err(kept_changing(name))
    }

    async fn apply(&self, event: &Event) -> Result<(), StoreError> {
        let open = self.open().await?;
        let name = event.name().as_str();
        // Events that change no record (see `next_record`) cost nothing.
        if !super::changes_records(event) {
            return Ok(());
        }
        // First try with the mirror's copy (one round trip when it is current; the revision check
        // refuses a stale one), then with what the bucket says.
        let mut mirrored = match open.mirror.get() {
            Some(mirror) => mirror.get(name),
            None => None,
        };
        for _ in 0..MAX_CONFLICTS {
            let (current, revision, from_mirror) = match mirrored.take() {
                Some((record, revision)) => (Some(record), revision, true),
                None => {
                    let (record, revision) = Self::current(&open.vms, name).await?;
                    (record, revision, false)
                }
            };
            let had_record = current.is_some();
            let written = match next_record(current, event) {
                // Nothing to change — unless the mirror's copy is stale (say, of an earlier VM
                // of that name): ask the bucket before concluding.
                None if from_mirror => continue,
                None => return Ok(()),
                Some(Some(record)) => open
                    .vms
                    .update(name, encode(&record)?, revision)
                    .await
                    .map(|revision| Self::wrote(open, revision))
                    .map_err(|e| e.to_string()),
                Some(None) if !had_record => return Ok(()),
                Some(None) => match open.vms.delete_expect_revision(name, Some(revision)).await {
                    Ok(()) => {
                        Self::deleted(open, name).await;
                        Ok(())
                    }
                    Err(e) => Err(e.to_string()),
                },
            };
            match written {
                Ok(()) => return Ok(()),
                // Another process changed the record meanwhile: read it again.
                Err(e) => tracing::debug!(%name, "record changed meanwhile ({e}); again"),
            }
        }
        Err(kept_changing(name))
    }

    async fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let open = self.open().await?;
        let mirror = Self::mirror(open).await?;
        let want = open.written.load(Ordering::Relaxed).max(mirror.floor);
        let mut records = match mirror.records(want).await {
            Some(records) => records,
            None => {
                tracing::debug!("the state mirror lags; reading the bucket key by key");
                Self::read_all(open).await?
            }
        };
        records.retain(|r| VmName::parse(r.name.as_str()).is_ok());
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    async fn vm(&self, name: &VmName) -> Result<Option<VmRecord>, StoreError> {
        let open = self.open().await?;
        Ok(Self::current(&open.vms, name.as_str()).await?.0)
    }

    async fn claim(
        &self,
        pool: &str,
        only: Option<&VmName>,
        claim: &Claim,
    ) -> Result<Option<VmRecord>, StoreError> {
        let open = self.open().await?;
        let mut candidates: Vec<VmRecord> = self.vms().await?;
        // Oldest first; each is taken by a compare-and-set on its revision, so of two hosts
        // claiming at once, one wins it and the other moves on to the next.
        while let Some(oldest) = oldest_pooled(&candidates, pool, only).cloned() {
            candidates.retain(|r| r.name != oldest.name);
            let name = oldest.name.as_str();
            let (Some(current), revision) = Self::current(&open.vms, name).await? else {
                continue;
            };
            if oldest_pooled([&current], pool, only).is_none() {
                continue;
            }
            let taken = claimed(current, claim);
            match open.vms.update(name, encode(&taken)?, revision).await {
                Ok(revision) => {
                    Self::wrote(open, revision);
                    return Ok(Some(taken));
                }
                Err(e) => tracing::debug!(%name, "taken meanwhile ({e}); trying the next"),
            }
        }
        Ok(None)
    }

    async fn forget(&self, name: &VmName) -> Result<(), StoreError> {
        let open = self.open().await?;
        open.vms
            .delete(name.as_str())
            .await
            .map_err(|e| err("forgetting a record")(e.to_string()))?;
        Self::deleted(open, name.as_str()).await;
        Ok(())
    }

    async fn events(&self, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        let open = self.open().await?;
        nats::read_events(&open.js, after)
            .await
            .map_err(StoreError::backend)
    }
}
