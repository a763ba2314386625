//! Every stream, consumer and bucket azlin uses on a NATS server, with their settings, in one
//! place. Everything is created (or brought up to date) by the azlin process that needs it, so a
//! bare `nats-server -js` is all the setup there is.
//!
//! | name | kind | subjects / keys | retention, storage | what for |
//! | --- | --- | --- | --- | --- |
//! | `AZLIN_REQUESTS` | stream | `vm.create.request`, `vm.delete.request` | work queue, file; de-duplicated by request id | requests waiting for a worker: a message leaves the stream when a worker acknowledges it |
//! | `azlin-workers` | durable pull consumer on `AZLIN_REQUESTS` | all | explicit ack; ack wait + backoff per redelivery, extended by progress; bounded deliveries | the ONE consumer every worker pulls from, so each request goes to one worker at a time |
//! | `AZLIN_EVENTS` | stream | every event subject of seed 001 (`vm.create.status`, …, `vm.delete.*`, `pool.vm.*`) and the workflow events (`workflow.run.status`, …, `workflow.step.completed`) | limits (age), file; de-duplicated | the audit trail (`azlin events`), followed by `azlin new` and `azlin serve` |
//! | `AZLIN_DEAD_LETTERS` | stream | `azlin.dead.<original subject>` | limits (age), file | messages given up on, with reason and attempt count |
//! | `AZLIN_ADVISORIES` | stream | `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.AZLIN_REQUESTS.azlin-workers` | work queue, file | the server's notice that a request ran out of deliveries (workers kept dying): kept until a worker's janitor dead-letters the request |
//! | `azlin-janitor` | durable pull consumer on `AZLIN_ADVISORIES` | all | explicit ack | shared by the janitors of all workers |
//! | `azlin-serve` | durable pull consumer on `AZLIN_EVENTS` | all | explicit ack, one at a time | `azlin serve` resumes where it stopped |
//! | `azlin_requests` | key-value bucket | request id → terminal event subject | 1 revision, file, expires after a week | "this request has ended": a redelivered request is not redone, and no second terminal event is published |
//! | `azlin_vms` | key-value bucket | VM name → record | 5 revisions, file | the state store ([`KvStore`](crate::store::kv::KvStore)) |
//!
//! Every stream and bucket has `[nats] replicas` replicas (default 1; 3 on a 3-node cluster).
//!
//! Terminal events carry `Nats-Msg-Id: <request_id>.end` and every other message a unique id, so
//! a publish retried after a lost acknowledgement (server restart) is stored once.

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::{
    Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, kv};
use azlin_core::event::subject;
use std::time::Duration;

/// The work queue of requests.
pub const REQUESTS_STREAM: &str = "AZLIN_REQUESTS";
/// The durable pull consumer shared by all workers.
pub const WORKERS_CONSUMER: &str = "azlin-workers";
/// The audit trail of events.
pub const EVENTS_STREAM: &str = "AZLIN_EVENTS";
/// Messages given up on.
pub const DEAD_LETTER_STREAM: &str = "AZLIN_DEAD_LETTERS";
/// Subject prefix of dead letters: `azlin.dead.<original subject>`.
pub const DEAD_LETTER_PREFIX: &str = "azlin.dead";
/// The server's max-deliveries advisories about the workers' consumer.
pub const ADVISORY_STREAM: &str = "AZLIN_ADVISORIES";
/// The durable consumer of the advisories, shared by the workers' janitors.
pub const JANITOR_CONSUMER: &str = "azlin-janitor";
/// The durable consumer `azlin serve` follows events with.
pub const SERVE_CONSUMER: &str = "azlin-serve";
/// Request id → the subject of its terminal event.
pub const ENDED_BUCKET: &str = "azlin_requests";
/// VM name → record (the state store).
pub const STATE_BUCKET: &str = "azlin_vms";

/// Header naming the request a message belongs to (for people reading the streams).
pub const REQUEST_ID_HEADER: &str = "Azlin-Request-Id";
/// Header of a dead letter: why it was given up on.
pub const REASON_HEADER: &str = "Azlin-Reason";
/// Header of a dead letter: how many deliveries it had.
pub const ATTEMPTS_HEADER: &str = "Azlin-Attempts";
/// The W3C trace context a message belongs to (from a webhook to the step events).
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// The subject the server announces a request that ran out of deliveries on.
pub fn max_deliveries_advisory() -> String {
    format!("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{REQUESTS_STREAM}.{WORKERS_CONSUMER}")
}

/// The pull subject of the workers' consumer.
pub fn workers_pull_subject() -> String {
    format!("$JS.API.CONSUMER.MSG.NEXT.{REQUESTS_STREAM}.{WORKERS_CONSUMER}")
}

/// Tunables of the NATS transport. The defaults suit real VMs; tests shorten the ack wait.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    /// How long the server waits for a worker's acknowledgement (or sign of progress) before it
    /// gives the request to another worker. Doubles for each further redelivery (up to 8×).
    pub ack_wait: Duration,
    /// Deliveries of one request before the server gives up on it (retries after failures and
    /// redeliveries after workers died, together). The janitor then dead-letters it.
    pub max_deliver: i64,
    /// How long the server remembers message ids to drop duplicates.
    pub duplicate_window: Duration,
    /// How long events stay on the audit trail (zero: for ever).
    pub events_max_age: Duration,
    /// How long dead letters are kept (zero: for ever).
    pub dead_letters_max_age: Duration,
    /// How long to keep retrying a publish while the server is unreachable.
    pub publish_timeout: Duration,
    /// How long a follower of events (`azlin new` waiting for its VMs) waits while the server
    /// is unreachable before its subscription ends, so that it reports the requests that did
    /// not end instead of waiting for ever. Only an outage counts: a long boot with the server
    /// up is followed for as long as it takes.
    pub follow_outage_limit: Duration,
    /// The name this client shows in the server's connection list.
    pub connection_name: String,
    /// Replicas of every stream and bucket (`[nats] replicas`): 3 on a 3-node cluster lets it
    /// lose a node. Consumers take their stream's.
    pub replicas: usize,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            ack_wait: Duration::from_secs(30),
            max_deliver: 8,
            duplicate_window: Duration::from_secs(120),
            events_max_age: Duration::from_secs(90 * 24 * 3600),
            dead_letters_max_age: Duration::ZERO,
            publish_timeout: Duration::from_secs(60),
            follow_outage_limit: Duration::from_secs(120),
            connection_name: "azlin".to_string(),
            replicas: 1,
        }
    }
}

impl NatsSettings {
    /// Redelivery waits after the 1st, 2nd… delivery: ack wait × 1, 2, 4, 8. Bounded below
    /// `max_deliver`, as the server requires.
    pub fn backoff(&self) -> Vec<Duration> {
        let steps = usize::try_from(self.max_deliver.saturating_sub(1))
            .unwrap_or(0)
            .min(4);
        (0..steps)
            .map(|i| self.ack_wait.saturating_mul(1 << i))
            .collect()
    }

    /// The request work queue.
    pub fn requests_stream(&self) -> StreamConfig {
        StreamConfig {
            name: REQUESTS_STREAM.to_string(),
            description: Some("azlin: VM requests waiting for a worker (work queue)".into()),
            subjects: subject::REQUESTS.iter().map(|s| s.to_string()).collect(),
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The audit trail.
    pub fn events_stream(&self) -> StreamConfig {
        StreamConfig {
            name: EVENTS_STREAM.to_string(),
            description: Some("azlin: every event (the audit trail)".into()),
            subjects: subject::EVENTS
                .iter()
                .chain(&subject::WORKFLOW_EVENTS)
                .map(|s| s.to_string())
                .collect(),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            max_age: self.events_max_age,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The dead letters.
    pub fn dead_letter_stream(&self) -> StreamConfig {
        StreamConfig {
            name: DEAD_LETTER_STREAM.to_string(),
            description: Some("azlin: messages given up on, with the reason".into()),
            subjects: vec![format!("{DEAD_LETTER_PREFIX}.>")],
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            discard: DiscardPolicy::Old,
            max_age: self.dead_letters_max_age,
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The captured max-deliveries advisories.
    pub fn advisory_stream(&self) -> StreamConfig {
        StreamConfig {
            name: ADVISORY_STREAM.to_string(),
            description: Some(
                "azlin: requests that ran out of deliveries, until the janitor dead-letters them"
                    .into(),
            ),
            subjects: vec![max_deliveries_advisory()],
            retention: RetentionPolicy::WorkQueue,
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// The workers' shared consumer.
    pub fn workers_consumer(&self) -> pull::Config {
        let backoff = self.backoff();
        pull::Config {
            durable_name: Some(WORKERS_CONSUMER.to_string()),
            description: Some("azlin: launch workers (shared)".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: backoff.first().copied().unwrap_or(self.ack_wait),
            max_deliver: self.max_deliver,
            backoff,
            max_ack_pending: 10_000,
            ..Default::default()
        }
    }

    /// The janitors' shared consumer.
    pub fn janitor_consumer(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(JANITOR_CONSUMER.to_string()),
            description: Some("azlin: dead-letters requests that ran out of deliveries".into()),
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_deliver: 20,
            ..Default::default()
        }
    }

    /// `azlin serve`'s consumer: from the first event it sees, one at a time, in order.
    pub fn serve_consumer(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(SERVE_CONSUMER.to_string()),
            description: Some("azlin serve: records events in the state store".into()),
            deliver_policy: DeliverPolicy::New,
            ack_policy: AckPolicy::Explicit,
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 1,
            ..Default::default()
        }
    }

    /// Request id → terminal event.
    pub fn ended_bucket(&self) -> kv::Config {
        kv::Config {
            bucket: ENDED_BUCKET.to_string(),
            description: "azlin: requests that have ended (terminal event published)".into(),
            history: 1,
            max_age: Duration::from_secs(7 * 24 * 3600),
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }

    /// VM name → record.
    pub fn state_bucket(&self) -> kv::Config {
        kv::Config {
            bucket: STATE_BUCKET.to_string(),
            description: "azlin: the state store (VM records)".into(),
            history: 5,
            storage: StorageType::File,
            num_replicas: self.replicas,
            ..Default::default()
        }
    }
}

/// Creates the streams and the ended bucket, or brings their settings up to date.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<kv::Store, String> {
    for config in [
        settings.requests_stream(),
        settings.events_stream(),
        settings.dead_letter_stream(),
        settings.advisory_stream(),
    ] {
        let name = config.name.clone();
        js.create_or_update_stream(config)
            .await
            .map_err(|e| format!("setting up stream {name}: {e}"))?;
    }
    js.create_or_update_key_value(settings.ended_bucket())
        .await
        .map_err(|e| format!("setting up bucket {ENDED_BUCKET}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stays_below_max_deliver() {
        let settings = NatsSettings {
            ack_wait: Duration::from_secs(2),
            max_deliver: 8,
            ..NatsSettings::default()
        };
        assert_eq!(
            settings.backoff(),
            [2, 4, 8, 16].map(Duration::from_secs).to_vec()
        );
        let few = NatsSettings {
            max_deliver: 2,
            ..settings
        };
        assert_eq!(few.backoff().len(), 1);
        assert_eq!(few.workers_consumer().ack_wait, Duration::from_secs(2));
    }

    #[test]
    fn replicas_reach_every_stream_and_bucket() {
        let settings = NatsSettings {
            replicas: 3,
            ..NatsSettings::default()
        };
        for stream in [
            settings.requests_stream(),
            settings.events_stream(),
            settings.dead_letter_stream(),
            settings.advisory_stream(),
        ] {
            assert_eq!(stream.num_replicas, 3, "{}", stream.name);
        }
        assert_eq!(settings.ended_bucket().num_replicas, 3);
        assert_eq!(settings.state_bucket().num_replicas, 3);
    }

    #[test]
    fn streams_cover_the_seed_subjects() {
        let settings = NatsSettings::default();
        assert_eq!(
            settings.requests_stream().subjects,
            ["vm.create.request", "vm.delete.request"]
        );
        let events = settings.events_stream().subjects;
        for s in [
            "vm.create.status",
            "vm.create.complete",
            "vm.create.failed",
            "vm.ssh.verified",
            "vm.cloudinit.complete",
        ] {
            assert!(events.iter().any(|e| e == s), "{s}");
        }
        assert_eq!(
            max_deliveries_advisory(),
            "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.AZLIN_REQUESTS.azlin-workers"
        );
    }
}
