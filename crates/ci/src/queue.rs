//! The CI service on NATS JetStream, beside the VM streams of the control plane:
//!
//! | name | kind | what for |
//! | --- | --- | --- |
//! | `AZLIN_DELIVERIES` | work-queue stream, `github.delivery` | webhook deliveries accepted and not yet planned; de-duplicated by delivery id |
//! | `azlin-planner` | durable pull consumer | `azlin serve` turns each delivery into runs |
//! | `AZLIN_RUNS` | work-queue stream, `workflow.run.request` | runs waiting for a runner; de-duplicated by run id |
//! | `azlin-runners` | durable pull consumer | shared by every `azlin worker --runs`: ack progress, redelivery with backoff, bounded deliveries |
//! | `AZLIN_RUN_LOGS` | stream, `workflow.log.<run_id>` | step output, kept a week |
//! | `azlin_deliveries` | bucket | delivery id → when it arrived: a delivery is taken once, ever |
//! | `azlin_runs` | bucket | run id → [`RunState`] |
//! | `azlin_checks` | bucket | run and job → the check run posted for it |
//! | `azlin_runners` | bucket, entries live 30 s | runner id → its heartbeat |
//! | `azlin_repos` | object store | repository snapshots by commit; deliveries too big for one message |
//!
//! Workflow events (`workflow.run.*`, `workflow.job.*`, `workflow.step.*`) go on the control
//! plane's events stream, the audit trail.

use crate::run_event::{LogLine, RunEvent, RunRequested, SCHEMA, log_subject};
use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::{Config as StreamConfig, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, kv};
use azlin_control::bus::nats::topology::TRACEPARENT_HEADER;
use azlin_control::bus::{Bus, BusError, DeadLetter};
use azlin_control::{NatsBus, NatsSettings};
use azlin_core::event::subject;
use azlin_core::nats::NatsConnection;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Accepted deliveries, waiting to be planned.
pub const DELIVERIES_STREAM: &str = "AZLIN_DELIVERIES";
/// The subject deliveries are queued on.
pub const DELIVERY_SUBJECT: &str = "github.delivery";
/// The planners' shared consumer.
pub const PLANNER_CONSUMER: &str = "azlin-planner";
/// Runs waiting for a runner.
pub const RUNS_STREAM: &str = "AZLIN_RUNS";
/// The runners' shared consumer.
pub const RUNNERS_CONSUMER: &str = "azlin-runners";
/// Step output.
pub const LOGS_STREAM: &str = "AZLIN_RUN_LOGS";
/// Delivery id → when it arrived.
pub const DELIVERIES_BUCKET: &str = "azlin_deliveries";
/// Run id → state.
pub const RUNS_BUCKET: &str = "azlin_runs";
/// Run and job → check run.
pub const CHECKS_BUCKET: &str = "azlin_checks";
/// Runner id → heartbeat.
pub const RUNNERS_BUCKET: &str = "azlin_runners";
/// Snapshots and large deliveries.
pub const OBJECTS_BUCKET: &str = "azlin_repos";

/// Header: the delivery id.
pub const DELIVERY_ID_HEADER: &str = "Azlin-Delivery";
/// Header: the GitHub event name.
pub const EVENT_HEADER: &str = "Azlin-Event";
/// Header: when the webhook arrived (ms since the epoch).
pub const RECEIVED_HEADER: &str = "Azlin-Received-Ms";
/// Header: the object holding a delivery's body when it does not fit in a message.
pub const BODY_OBJECT_HEADER: &str = "Azlin-Body-Object";
/// How long a runner's heartbeat lives.
pub const HEARTBEAT_TTL: Duration = Duration::from_secs(30);
/// Room left in a message beside a delivery's body.
const HEADROOM: usize = 8 * 1024;

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    /// `queued`, `running` or `ended`.
    pub state: String,
    /// How it ended (`success`, `failure`, `cancelled`), once it has.
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The runner that has (or had) it.
    #[serde(default)]
    pub worker: String,
    /// `OWNER/NAME`.
    pub repository: String,
    /// The workflow file.
    pub workflow: String,
    /// The commit.
    pub sha: String,
    /// When the webhook arrived (ms since the epoch).
    pub received_ms: u64,
}

/// A runner's heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunnerBeat {
    /// Its id.
    pub worker: String,
    /// The `runs-on` labels it serves beyond the Linux ones.
    pub labels: Vec<String>,
    /// Runs it has now.
    pub running: usize,
    /// Runs it takes at once.
    pub capacity: usize,
}

/// The check run (or status) posted for a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// The check run's id (0 for commit statuses).
    pub id: u64,
    /// Whether its final update was posted.
    pub completed: bool,
}

/// A delivery as queued for the planner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedDelivery {
    /// GitHub's delivery id.
    pub id: String,
    /// The event name.
    pub event: String,
    /// When it arrived (ms since the epoch).
    pub received_ms: u64,
    /// Its W3C trace context.
    pub traceparent: String,
}

fn transport(what: &str) -> impl FnOnce(String) -> BusError + '_ {
    move |e| BusError::Transport(format!("{what}: {e}"))
}

fn header<'a>(headers: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    headers?.get(name).map(|v| v.as_str())
}

/// The CI service's streams, buckets and consumers on one connection.
#[derive(Clone)]
pub struct CiBus {
    bus: Arc<NatsBus>,
    deliveries: kv::Store,
    runs: kv::Store,
    checks: kv::Store,
    runners: kv::Store,
    objects: ObjectStore,
}

impl std::fmt::Debug for CiBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiBus").finish_non_exhaustive()
    }
}

impl CiBus {
    /// Connects as `connection` says and sets up everything (idempotent).
    pub async fn connect(
        connection: &NatsConnection,
        settings: NatsSettings,
    ) -> Result<CiBus, BusError> {
        let bus = Arc::new(NatsBus::connect_with(connection, settings).await?);
        Self::on(bus).await
    }

    /// Sets up the CI streams and buckets on an open control-plane connection.
    pub async fn on(bus: Arc<NatsBus>) -> Result<CiBus, BusError> {
        let js = bus.jetstream().clone();
        let settings = bus.settings().clone();
        for config in [
            work_queue(
                DELIVERIES_STREAM,
                DELIVERY_SUBJECT,
                "webhook deliveries to plan",
                &settings,
            ),
            work_queue(
                RUNS_STREAM,
                subject::RUN_REQUEST,
                "workflow runs waiting for a runner",
                &settings,
            ),
            StreamConfig {
                name: LOGS_STREAM.into(),
                description: Some("azlin: step output of workflow runs".into()),
                subjects: vec![format!("{}.>", subject::LOG_PREFIX)],
                storage: StorageType::File,
                max_age: Duration::from_secs(7 * 24 * 3600),
                num_replicas: settings.replicas,
                ..Default::default()
            },
        ] {
            let name = config.name.clone();
            js.create_or_update_stream(config)
                .await
                .map_err(|e| transport(&format!("setting up stream {name}"))(e.to_string()))?;
        }
        let month = Duration::from_secs(30 * 24 * 3600);
        let bucket = |name: &'static str, what: &'static str, max_age: Duration| {
            let js = js.clone();
            let config = kv::Config {
                bucket: name.to_string(),
                description: format!("azlin: {what}"),
                history: 1,
                max_age,
                storage: StorageType::File,
                num_replicas: settings.replicas,
                ..Default::default()
            };
            async move {
                js.create_or_update_key_value(config)
                    .await
                    .map_err(|e| transport(&format!("setting up bucket {name}"))(e.to_string()))
            }
        };
        let deliveries = bucket(DELIVERIES_BUCKET, "webhook deliveries taken", month).await?;
        let runs = bucket(RUNS_BUCKET, "workflow runs", month).await?;
        let checks = bucket(CHECKS_BUCKET, "check runs posted per job", month).await?;
        let runners = bucket(RUNNERS_BUCKET, "runner heartbeats", HEARTBEAT_TTL).await?;
        let objects = match js.get_object_store(OBJECTS_BUCKET).await {
            Ok(store) => store,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: OBJECTS_BUCKET.into(),
                    description: Some("azlin: repository snapshots and large deliveries".into()),
                    max_age: month,
                    storage: StorageType::File,
                    num_replicas: settings.replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| transport("setting up the object store")(e.to_string()))?,
        };
        Ok(CiBus {
            bus,
            deliveries,
            runs,
            checks,
            runners,
            objects,
        })
    }

    /// The control-plane connection underneath.
    pub fn control(&self) -> &Arc<NatsBus> {
        &self.bus
    }

    fn js(&self) -> &jetstream::Context {
        self.bus.jetstream()
    }

    /// Takes delivery `id` for this service: `false` when it was taken before (a replay).
    pub async fn claim_delivery(&self, id: &str, received_ms: u64) -> Result<bool, BusError> {
        match self
            .deliveries
            .create(id, received_ms.to_string().into())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(transport("recording a delivery")(e.to_string())),
        }
    }

    /// Gives a claimed delivery back (it could not be queued; GitHub may send it again).
    pub async fn release_delivery(&self, id: &str) {
        if let Err(e) = self.deliveries.purge(id).await {
            tracing::warn!(
                delivery = id,
                "forgetting a delivery that was not queued: {e}"
            );
        }
    }

    /// Queues a claimed delivery for the planner.
    pub async fn queue_delivery(
        &self,
        delivery: &QueuedDelivery,
        body: Bytes,
    ) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(DELIVERY_ID_HEADER, delivery.id.as_str());
        headers.insert(EVENT_HEADER, delivery.event.as_str());
        headers.insert(RECEIVED_HEADER, delivery.received_ms.to_string().as_str());
        headers.insert(TRACEPARENT_HEADER, delivery.traceparent.as_str());
        let max = self.bus.client().server_info().max_payload;
        let payload = if body.len() + HEADROOM > max {
            let name = format!("delivery/{}", delivery.id);
            self.put_object(&name, &mut body.as_ref()).await?;
            headers.insert(BODY_OBJECT_HEADER, name.as_str());
            Bytes::new()
        } else {
            body
        };
        self.publish(DELIVERY_SUBJECT, payload, &delivery.id, headers)
            .await
    }

    async fn publish(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: &str,
        headers: HeaderMap,
    ) -> Result<(), BusError> {
        let message = PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(msg_id);
        self.js()
            .send_publish(subject.to_string(), message)
            .await
            .map_err(|e| transport(&format!("publishing on {subject}"))(e.to_string()))?
            .await
            .map_err(|e| transport(&format!("storing on {subject}"))(e.to_string()))
            .map(drop)
    }

    async fn consumer(&self, stream: &str, config: pull::Config) -> Result<PullConsumer, BusError> {
        self.js()
            .get_stream_no_info(stream)
            .await
            .map_err(|e| transport(&format!("opening stream {stream}"))(e.to_string()))?
            .create_consumer(config)
            .await
            .map_err(|e| transport(&format!("setting up a consumer on {stream}"))(e.to_string()))
    }

    /// The planner's consumer.
    pub async fn planner(&self) -> Result<Taker, BusError> {
        let config = pull::Config {
            durable_name: Some(PLANNER_CONSUMER.into()),
            description: Some("azlin serve: plans the runs of deliveries".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(120),
            max_deliver: 5,
            ..Default::default()
        };
        Ok(Taker {
            consumer: self.consumer(DELIVERIES_STREAM, config).await?,
        })
    }

    /// The runners' consumer, set up with this runner's ack wait, backoff and limit of runs
    /// held by all runners at once (the last runner started sets them).
    pub async fn runner_queue(&self, max_in_flight: Option<u32>) -> Result<Taker, BusError> {
        let settings = self.bus.settings();
        let backoff = settings.backoff();
        let config = pull::Config {
            durable_name: Some(RUNNERS_CONSUMER.into()),
            description: Some("azlin workers: workflow runs (shared)".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: backoff.first().copied().unwrap_or(settings.ack_wait),
            max_deliver: settings.max_deliver,
            backoff,
            max_ack_pending: max_in_flight.map_or(10_000, i64::from),
            ..Default::default()
        };
        Ok(Taker {
            consumer: self.consumer(RUNS_STREAM, config).await?,
        })
    }

    /// Reads a queued delivery: its facts and body.
    pub async fn read_delivery(
        &self,
        message: &jetstream::Message,
    ) -> Result<(QueuedDelivery, Vec<u8>), BusError> {
        let headers = message.headers.as_ref();
        let text = |name| header(headers, name).unwrap_or_default().to_string();
        let delivery = QueuedDelivery {
            id: text(DELIVERY_ID_HEADER),
            event: text(EVENT_HEADER),
            received_ms: text(RECEIVED_HEADER).parse().unwrap_or(0),
            traceparent: text(TRACEPARENT_HEADER),
        };
        let body = match header(headers, BODY_OBJECT_HEADER) {
            Some(name) => {
                let mut body = Vec::new();
                let mut object = self
                    .objects
                    .get(name)
                    .await
                    .map_err(|e| transport("reading a delivery")(e.to_string()))?;
                tokio::io::AsyncReadExt::read_to_end(&mut object, &mut body)
                    .await
                    .map_err(|e| transport("reading a delivery")(e.to_string()))?;
                body
            }
            None => message.payload.to_vec(),
        };
        Ok((delivery, body))
    }

    /// Whether object `name` exists.
    pub async fn has_object(&self, name: &str) -> bool {
        self.objects
            .info(name)
            .await
            .is_ok_and(|info| !info.deleted)
    }

    /// Stores object `name` from `data`.
    pub async fn put_object(
        &self,
        name: &str,
        data: &mut (impl tokio::io::AsyncRead + Unpin),
    ) -> Result<(), BusError> {
        self.objects
            .put(name, data)
            .await
            .map(drop)
            .map_err(|e| transport(&format!("storing {name}"))(e.to_string()))
    }

    /// Writes object `name` into file `to`.
    pub async fn get_object(&self, name: &str, to: &Path) -> Result<(), BusError> {
        let mut object = self
            .objects
            .get(name)
            .await
            .map_err(|e| transport(&format!("reading {name}"))(e.to_string()))?;
        let mut file = tokio::fs::File::create(to)
            .await
            .map_err(|e| transport(&format!("writing {}", to.display()))(e.to_string()))?;
        tokio::io::copy(&mut object, &mut file)
            .await
            .map_err(|e| transport(&format!("reading {name}"))(e.to_string()))?;
        Ok(())
    }

    /// Queues a run (once: its id is the message id, and a run already recorded is skipped).
    /// Returns whether it was queued now.
    pub async fn queue_run(&self, run: &RunRequested, traceparent: &str) -> Result<bool, BusError> {
        if self.run_state(&run.run_id).await?.is_some() {
            return Ok(false);
        }
        self.set_run_state(
            &run.run_id,
            &RunState {
                state: "queued".into(),
                conclusion: None,
                worker: String::new(),
                repository: run.repository.clone(),
                workflow: run.workflow.clone(),
                sha: run.sha.clone(),
                received_ms: run.received_ms,
            },
        )
        .await?;
        let mut headers = HeaderMap::new();
        headers.insert(TRACEPARENT_HEADER, traceparent);
        let payload = serde_json::to_vec(run)
            .map_err(|e| transport("encoding a run request")(e.to_string()))?;
        self.publish(subject::RUN_REQUEST, payload.into(), &run.run_id, headers)
            .await?;
        Ok(true)
    }

    /// The state of run `id`, if it is known.
    pub async fn run_state(&self, id: &str) -> Result<Option<RunState>, BusError> {
        get_json(&self.runs, id, "a run").await
    }

    /// Records the state of run `id`.
    pub async fn set_run_state(&self, id: &str, state: &RunState) -> Result<(), BusError> {
        put_json(&self.runs, id, state, "a run").await
    }

    /// Publishes a workflow event on the audit trail. Terminal ones (a run's end, a job's
    /// completion) carry an id that makes a repeat a duplicate the server drops.
    pub async fn publish_event(&self, event: &RunEvent, traceparent: &str) -> Result<(), BusError> {
        let msg_id = match event {
            RunEvent::Complete(e) | RunEvent::Failed(e) => format!("{}.end", e.run_id),
            RunEvent::JobCompleted(e) => format!("{}.{}.end", e.run_id, e.job),
            _ => azlin_core::new_id(),
        };
        let mut headers = HeaderMap::new();
        if !traceparent.is_empty() {
            headers.insert(TRACEPARENT_HEADER, traceparent);
        }
        self.publish(event.subject(), event.encode().into(), &msg_id, headers)
            .await
    }

    /// Sends a line of step output (not waiting for the server: output is never held up).
    pub async fn publish_log(&self, run_id: &str, line: &LogLine) {
        let payload = serde_json::to_vec(line).unwrap_or_default();
        if let Err(e) = self
            .bus
            .client()
            .publish(log_subject(run_id), payload.into())
            .await
        {
            tracing::debug!("a log line was not sent: {e}");
        }
    }

    /// The output lines of run `run_id`: those stored so far, then new ones as they come.
    pub async fn follow_log(
        &self,
        run_id: &str,
    ) -> Result<impl futures::Stream<Item = LogLine> + Send + 'static, BusError> {
        if run_id.is_empty()
            || !run_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(BusError::Setup(format!("'{run_id}' is not a run id")));
        }
        let consumer = self
            .js()
            .get_stream_no_info(LOGS_STREAM)
            .await
            .map_err(|e| transport("opening the run logs")(e.to_string()))?
            .create_consumer(pull::OrderedConfig {
                filter_subject: log_subject(run_id),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| transport("following a run's log")(e.to_string()))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| transport("following a run's log")(e.to_string()))?;
        Ok(messages.filter_map(|message| async move {
            serde_json::from_slice::<LogLine>(&message.ok()?.payload).ok()
        }))
    }

    /// The check run posted for `key`, if any.
    pub async fn check(&self, key: &str) -> Result<Option<CheckRecord>, BusError> {
        get_json(&self.checks, key, "a check run").await
    }

    /// Records the check run posted for `key`.
    pub async fn set_check(&self, key: &str, record: &CheckRecord) -> Result<(), BusError> {
        put_json(&self.checks, key, record, "a check run").await
    }

    /// Says this runner is alive.
    pub async fn heartbeat(&self, beat: &RunnerBeat) -> Result<(), BusError> {
        put_json(&self.runners, &beat.worker, beat, "a heartbeat").await
    }

    /// Says this runner is gone.
    pub async fn leave(&self, worker: &str) {
        if let Err(e) = self.runners.purge(worker).await {
            tracing::debug!("removing the heartbeat: {e}");
        }
    }

    /// The runners alive now.
    pub async fn runners(&self) -> Result<Vec<RunnerBeat>, BusError> {
        let mut keys = self
            .runners
            .keys()
            .await
            .map_err(|e| transport("listing runners")(e.to_string()))?;
        let mut beats = Vec::new();
        while let Some(key) = keys.next().await {
            let Ok(key) = key else { continue };
            if let Some(beat) = get_json(&self.runners, &key, "a runner").await? {
                beats.push(beat);
            }
        }
        Ok(beats)
    }

    /// Runs waiting for a runner or held by one.
    pub async fn queue_depth(&self) -> Result<u64, BusError> {
        let mut stream = self
            .js()
            .get_stream(RUNS_STREAM)
            .await
            .map_err(|e| transport("opening the run queue")(e.to_string()))?;
        let info = stream
            .info()
            .await
            .map_err(|e| transport("reading the run queue")(e.to_string()))?;
        Ok(info.state.messages)
    }

    /// Moves a message that cannot be used to the dead letters.
    pub async fn dead_letter(&self, message: &jetstream::Message, reason: String, attempts: u32) {
        let letter = DeadLetter {
            subject: message.subject.to_string(),
            payload: String::from_utf8_lossy(&message.payload).into_owned(),
            reason,
            attempts,
            at: azlin_core::now_rfc3339(),
        };
        if let Err(e) = self.bus.dead_letter(letter).await {
            tracing::warn!("a dead letter was not stored: {e}");
        }
    }
}

/// The JSON value of `key` in `bucket` (`None` when absent or unreadable); `what` names it in
/// errors.
async fn get_json<T: serde::de::DeserializeOwned>(
    bucket: &kv::Store,
    key: &str,
    what: &str,
) -> Result<Option<T>, BusError> {
    let entry = bucket
        .get(key)
        .await
        .map_err(|e| transport(&format!("reading {what}"))(e.to_string()))?;
    Ok(entry.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

/// Stores `value` as JSON under `key` in `bucket`.
async fn put_json<T: Serialize>(
    bucket: &kv::Store,
    key: &str,
    value: &T,
    what: &str,
) -> Result<(), BusError> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| transport(&format!("encoding {what}"))(e.to_string()))?;
    bucket
        .put(key, bytes.into())
        .await
        .map(drop)
        .map_err(|e| transport(&format!("recording {what}"))(e.to_string()))
}

fn work_queue(name: &str, subject: &str, what: &str, settings: &NatsSettings) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        description: Some(format!("azlin: {what} (work queue)")),
        subjects: vec![subject.into()],
        retention: RetentionPolicy::WorkQueue,
        storage: StorageType::File,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        ..Default::default()
    }
}

/// Takes messages off a shared consumer one at a time: a message is asked for only when there
/// is room to work on it, so none waits in a busy process while another is idle.
pub struct Taker {
    consumer: PullConsumer,
}

impl Taker {
    /// The next message, or `None` when none came within a few seconds.
    pub async fn next(&self) -> Option<jetstream::Message> {
        let batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(Duration::from_secs(5))
            .messages()
            .await;
        match batch {
            Ok(mut batch) => match batch.next().await {
                Some(Ok(message)) => Some(message),
                Some(Err(e)) => {
                    tracing::debug!("taking a message: {e}");
                    None
                }
                None => None,
            },
            Err(e) => {
                tracing::debug!("asking for a message: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                None
            }
        }
    }
}

/// How many deliveries a message has had (1 on the first).
pub fn attempt(message: &jetstream::Message) -> u32 {
    message
        .info()
        .map(|info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
        .unwrap_or(1)
        .max(1)
}

/// A log line for `job`/`step`.
pub fn log_line(job: &str, step: &str, line: &str) -> LogLine {
    LogLine {
        schema: SCHEMA,
        job: job.into(),
        step: step.into(),
        line: line.into(),
    }
}
