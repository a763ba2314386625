//! [`KvStore`]: the state store of a fleet, a JetStream key-value bucket (`azlin_vms`, one key
//! per VM name) shared by every azlin process that talks to the same NATS server. Needs
//! nats-server ≥ 2.10.
//!
//! Several processes may record the same events (the `azlin new` that follows its requests and
//! `azlin serve`): every change is a compare-and-set on the key's revision, retried on conflict,
//! and all of them apply [`next_record`] to the same ordered events, so they agree. The audit
//! trail is the events stream itself.

use super::{LoggedEvent, StateStore, StoreError, VmRecord, next_record, requested_record};
use crate::bus::nats::{self, NatsSettings};
use async_nats::jetstream::{self, kv};
use async_trait::async_trait;
use azlin_core::VmName;
use azlin_core::event::{Event, Request};
use futures::TryStreamExt;
use tokio::sync::OnceCell;

/// How often a compare-and-set is retried when other processes keep changing the same key.
const MAX_CONFLICTS: usize = 50;

/// The key-value state store.
pub struct KvStore {
    source: Source,
    open: OnceCell<Open>,
}

enum Source {
    Url(String, NatsSettings),
    Context(jetstream::Context, NatsSettings),
}

struct Open {
    js: jetstream::Context,
    vms: kv::Store,
}

impl std::fmt::Debug for KvStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvStore").finish_non_exhaustive()
    }
}

fn err(what: &str) -> impl FnOnce(String) -> StoreError + '_ {
    move |e| StoreError(format!("{what}: {e}"))
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
                            .map_err(|e| StoreError(e.to_string()))?;
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
                Ok(Open { js, vms })
            })
            .await
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

fn encode(record: &VmRecord) -> Result<bytes::Bytes, StoreError> {
    serde_json::to_vec(record)
        .map(Into::into)
        .map_err(|e| StoreError(e.to_string()))
}

#[async_trait]
impl StateStore for KvStore {
    async fn record_request(&self, request: &Request) -> Result<(), StoreError> {
        let Some(record) = requested_record(request) else {
            return Ok(());
        };
        let open = self.open().await?;
        open.vms
            .put(record.name.as_str(), encode(&record)?)
            .await
            .map(drop)
            .map_err(|e| err("recording a request")(e.to_string()))
    }

    async fn apply(&self, event: &Event) -> Result<(), StoreError> {
        let open = self.open().await?;
        let name = event.name().as_str();
        for _ in 0..MAX_CONFLICTS {
            let (current, revision) = Self::current(&open.vms, name).await?;
            let had_record = current.is_some();
            let written = match next_record(current, event) {
                None => return Ok(()),
                Some(Some(record)) => open
                    .vms
                    .update(name, encode(&record)?, revision)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string()),
                Some(None) if !had_record => return Ok(()),
                Some(None) => open
                    .vms
                    .delete_expect_revision(name, Some(revision))
                    .await
                    .map_err(|e| e.to_string()),
            };
            match written {
                Ok(()) => return Ok(()),
                // Another process changed the record meanwhile: read it again.
                Err(e) => tracing::debug!(%name, "record changed meanwhile ({e}); again"),
            }
        }
        Err(StoreError(format!(
            "the record of {name} kept changing; gave up after {MAX_CONFLICTS} tries"
        )))
    }

    async fn vms(&self) -> Result<Vec<VmRecord>, StoreError> {
        let open = self.open().await?;
        let keys: Vec<String> = match open.vms.keys().await {
            Ok(keys) => keys
                .try_collect()
                .await
                .map_err(|e| err("listing records")(e.to_string()))?,
            Err(e) => return Err(err("listing records")(e.to_string())),
        };
        let mut records = Vec::new();
        for key in keys {
            if VmName::parse(&key).is_err() {
                continue;
            }
            let (record, _) = Self::current(&open.vms, &key).await?;
            records.extend(record);
        }
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    async fn vm(&self, name: &VmName) -> Result<Option<VmRecord>, StoreError> {
        let open = self.open().await?;
        Ok(Self::current(&open.vms, name.as_str()).await?.0)
    }

    async fn forget(&self, name: &VmName) -> Result<(), StoreError> {
        let open = self.open().await?;
        open.vms
            .delete(name.as_str())
            .await
            .map_err(|e| err("forgetting a record")(e.to_string()))
    }

    async fn events(&self, after: u64) -> Result<Vec<LoggedEvent>, StoreError> {
        let open = self.open().await?;
        nats::read_events(&open.js, after)
            .await
            .map_err(|e| StoreError(e.to_string()))
    }
}
