//! The [`Orchestrator`]: subscribes instead of polling. It records every event in the state
//! store, keeps `deployment-state.yaml` (the readable view of what exists) current, and tells a
//! caller when the requests it waits for have ended.

use crate::bus::{Bus, BusError, Subscription};
use crate::store::{StateStore, StoreError, VmRecord};
use azlin_core::event::{Event, Request};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Least time between two rewrites of the deployment state file while following events.
const STATE_FILE_INTERVAL: Duration = Duration::from_millis(250);

/// Requests that could not be submitted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The store refused a request (a create of a name another VM holds) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The bus failed.
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// Records events and maintains the deployment state file.
#[derive(Clone)]
pub struct Orchestrator {
    store: Arc<dyn StateStore>,
    state_file: PathBuf,
}

#[derive(Serialize)]
struct DeploymentState<'a> {
    updated_at: String,
    vms: &'a [VmRecord],
}

impl Orchestrator {
    /// An orchestrator writing `state_file`.
    pub fn new(store: Arc<dyn StateStore>, state_file: PathBuf) -> Self {
        Orchestrator { store, state_file }
    }

    /// The store it records into.
    pub fn store(&self) -> &Arc<dyn StateStore> {
        &self.store
    }

    /// Rewrites `deployment-state.yaml` atomically (temporary file, then rename).
    pub async fn write_state(&self) -> Result<(), StoreError> {
        let vms = self.store.vms().await?;
        let state = DeploymentState {
            updated_at: azlin_core::now_rfc3339(),
            vms: &vms,
        };
        let yaml = yaml_serde::to_string(&state).map_err(StoreError::backend)?;
        let text = format!(
            "# Written by azlin from the event stream: the VMs it knows and their state.\n{yaml}"
        );
        if let Some(dir) = self.state_file.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let tmp = self
            .state_file
            .with_extension(format!("yaml.tmp.{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(StoreError::backend)?;
        std::fs::rename(&tmp, &self.state_file).map_err(StoreError::backend)
    }

    /// Submits `requests` on `bus`, each recorded in the store first (a create claims its VM's
    /// name there), after subscribing so that no event is missed. Returns the subscription and
    /// the request ids to [`follow`](Self::follow).
    pub async fn submit(
        &self,
        bus: &dyn Bus,
        requests: &[Request],
    ) -> Result<(Subscription, HashSet<String>), SubmitError> {
        let subscription = bus.subscribe().await?;
        let mut pending = HashSet::new();
        for request in requests {
            self.store.record_request(request).await?;
            pending.insert(request.request_id().to_string());
            bus.submit(request).await?;
        }
        Ok((subscription, pending))
    }

    /// Submits `requests` and follows them to their ends: the terminal event of each, by
    /// request id (fewer if the bus went away first).
    pub async fn settle(
        &self,
        bus: &dyn Bus,
        requests: &[Request],
    ) -> Result<BTreeMap<String, Event>, SubmitError> {
        let (mut subscription, pending) = self.submit(bus, requests).await?;
        Ok(self.follow(&mut subscription, pending, |_| {}).await)
    }

    /// Follows `subscription` until every request in `pending` has a terminal event, recording
    /// each event and passing those of the pending requests to `on_event`. Returns the terminal
    /// event of each request, or fewer if the subscription ended first: the caller reports the
    /// requests missing from the result as not ended.
    ///
    /// There is no time limit: a boot takes as long as it takes. What ends a follow early is the
    /// bus going away (the in-process bus dropped, or the NATS server unreachable for longer
    /// than [`NatsSettings::follow_outage_limit`](crate::NatsSettings::follow_outage_limit)).
    pub async fn follow(
        &self,
        subscription: &mut Subscription,
        mut pending: HashSet<String>,
        mut on_event: impl FnMut(&Event),
    ) -> BTreeMap<String, Event> {
        let mut ended = BTreeMap::new();
        // The state file is rewritten at most every STATE_FILE_INTERVAL while events arrive,
        // and once at the end: a fleet's burst of events must not rewrite it once per event.
        let mut last_write = Instant::now();
        let mut unwritten = false;
        while !pending.is_empty() {
            let Some(event) = subscription.next().await else {
                tracing::warn!(
                    "the event bus went away before {} request(s) ended",
                    pending.len()
                );
                break;
            };
            if let Err(e) = self.store.apply(&event).await {
                tracing::warn!("recording {}: {e}", event.subject());
            }
            unwritten = true;
            if last_write.elapsed() >= STATE_FILE_INTERVAL {
                self.write_state_logged().await;
                last_write = Instant::now();
                unwritten = false;
            }
            if !pending.contains(event.request_id()) {
                continue;
            }
            on_event(&event);
            if event.is_terminal() {
                pending.remove(event.request_id());
                ended.insert(event.request_id().to_string(), event);
            }
        }
        if unwritten {
            self.write_state_logged().await;
        }
        ended
    }

    async fn write_state_logged(&self) {
        if let Err(e) = self.write_state().await {
            tracing::warn!("writing {}: {e}", self.state_file.display());
        }
    }
}
