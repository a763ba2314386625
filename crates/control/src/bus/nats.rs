//! The NATS JetStream [`Bus`]: the same requests and events as the in-process bus, across
//! processes and machines.
//!
//! - Requests go to a work-queue stream and are taken, one at a time per free worker slot,
//!   from ONE durable pull consumer that all workers share (explicit ack; a long create sends
//!   progress so its ack wait is extended; redeliveries are bounded and backed off).
//! - Events go to the events stream, the audit trail. Followers read it from "now" (or, for
//!   `azlin events`, from the start) with a reader that resumes after the last sequence it saw.
//!   A follow from "now" (`azlin new`) ends when the server has been unreachable for
//!   [`NatsSettings::follow_outage_limit`], so that its follower never waits for ever.
//! - Dead letters go to their own stream with the reason and the attempt count; requests the
//!   server gave up on (workers kept dying) are caught from its max-deliveries advisory by the
//!   janitor ([`NatsBus::run_janitor`]).
//! - A terminal event is published once per request: its message id is `<request_id>.end` (the
//!   server drops a duplicate), the request is then marked as ended in a key-value bucket, and a
//!   redelivered request that has ended is acknowledged without being redone.
//! - Progress events are pipelined: `publish` sends them and returns, and the server's
//!   confirmations are collected before the next terminal event, which is published only when
//!   every earlier event of the same request is stored (one the server did not confirm is sent
//!   again, with its message id, so it is stored once). A launch thus costs one round trip to
//!   the server, not one per stage, and launches in flight never wait for each other's
//!   confirmations.
//!
//! Names and settings of all of these are in [`topology`].

mod auth;
mod janitor;
mod pull;
pub mod replay;
pub mod topology;

pub use replay::{Range, StoredMessage};
pub use topology::NatsSettings;

use super::{Acker, Bus, BusError, DeadLetter, Delivery, Subscription};
use crate::store::LoggedEvent;
use async_nats::jetstream::{self, AckKind, kv, message::PublishMessage, publish::PublishAck};
use async_nats::{Client, HeaderMap};
use async_trait::async_trait;
use azlin_core::event::{Event, Request};
use azlin_core::nats::NatsConnection;
use bytes::Bytes;
use pull::{Pulled, Puller};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use topology::{
    ATTEMPTS_HEADER, DEAD_LETTER_PREFIX, DEAD_LETTER_STREAM, EVENTS_STREAM, REASON_HEADER,
    REQUEST_ID_HEADER, REQUESTS_STREAM,
};

/// How many events a slow follower may fall behind before the reader waits for it.
const FOLLOWER_BUFFER: usize = 4096;
/// How many progress events of one request may await the server's confirmation before
/// `publish` waits.
const MAX_UNCONFIRMED: usize = 512;

/// How often a follower checks whether the server is reachable.
const OUTAGE_CHECK: Duration = Duration::from_secs(1);

/// How long the connection has been down, against a limit.
struct Outage {
    client: Client,
    limit: Duration,
    since: Option<Instant>,
}

impl Outage {
    fn new(client: Client, limit: Duration) -> Self {
        Outage {
            client,
            limit,
            since: None,
        }
    }

    /// Whether the connection has been down for longer than the limit (checked now).
    fn too_long(&mut self) -> bool {
        if self.client.connection_state() == async_nats::connection::State::Connected {
            self.since = None;
            return false;
        }
        self.since.get_or_insert_with(Instant::now).elapsed() >= self.limit
    }
}

/// A progress event sent and not yet confirmed by the server.
struct Unconfirmed {
    subject: String,
    payload: Bytes,
    msg_id: String,
    headers: HeaderMap,
    ack: jetstream::context::PublishAckFuture,
}

/// A connection to a NATS server with JetStream, set up for azlin.
pub struct NatsBus {
    client: Client,
    js: jetstream::Context,
    ended: kv::Store,
    settings: NatsSettings,
    puller: tokio::sync::Mutex<Option<Puller>>,
    /// Progress events sent and not yet confirmed, per request id.
    unconfirmed: std::sync::Mutex<HashMap<String, VecDeque<Unconfirmed>>>,
}

impl std::fmt::Debug for NatsBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsBus")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn transport(what: impl std::fmt::Display) -> impl FnOnce(String) -> BusError {
    move |e| BusError::Transport(format!("{what}: {e}"))
}

/// Whether `key` may be a key of a key-value bucket.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with('.')
        && !key.ends_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/_=.".contains(&b))
}

/// Returns once the connection of `client` has gone down and come back, as seen from now on
/// (polled). A server restart forgets in-memory consumers and waiting pull requests, which the
/// client would otherwise only notice when they expire: a reader waits on this beside its
/// messages to start over at once.
pub(crate) async fn reconnected(client: &Client) {
    const POLL: Duration = Duration::from_millis(100);
    let mut was_down = false;
    loop {
        match client.connection_state() {
            async_nats::connection::State::Connected if was_down => return,
            async_nats::connection::State::Connected => {}
            _ => was_down = true,
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Connects to `url` (reconnecting for ever after a first success): no credentials beyond any
/// in the URL.
pub async fn connect_client(url: &str, name: &str) -> Result<Client, BusError> {
    let connection = NatsConnection::from_url(url).map_err(|e| BusError::Setup(e.to_string()))?;
    connect(&connection, name).await
}

/// Connects as `connection` says (TLS, credentials), reconnecting for ever after a first
/// success. Errors name the server by its redacted URL.
pub async fn connect(connection: &NatsConnection, name: &str) -> Result<Client, BusError> {
    let servers = connection
        .servers
        .split(',')
        .map(|url| url.trim().parse::<async_nats::ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BusError::Setup(format!("NATS URL {connection}: {e}")))?;
    let options = auth::options(connection).await?;
    options
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis(
                u64::try_from(attempts)
                    .unwrap_or(u64::MAX)
                    .saturating_mul(100),
            )
            .min(Duration::from_secs(2))
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS: connected"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("NATS: disconnected; reconnecting")
                }
                // Permission violations and the like: the server says what it refused.
                async_nats::Event::ServerError(e) => tracing::warn!("NATS server: {e}"),
                other => tracing::debug!("NATS: {other}"),
            }
        })
        .connect(servers)
        .await
        .map_err(|e| auth::connect_error(connection, &e))
}

impl NatsBus {
    /// Connects to the server at `url` and sets up the streams (idempotent).
    pub async fn connect(url: &str, settings: NatsSettings) -> Result<NatsBus, BusError> {
        let client = connect_client(url, &settings.connection_name).await?;
        Self::with_client(client, settings).await
    }

    /// Connects as `connection` says (TLS, credentials) and sets up the streams with its
    /// replicas (idempotent).
    pub async fn connect_with(
        connection: &NatsConnection,
        settings: NatsSettings,
    ) -> Result<NatsBus, BusError> {
        let client = connect(connection, &settings.connection_name).await?;
        let settings = NatsSettings {
            replicas: connection.replicas,
            ..settings
        };
        Self::with_client(client, settings).await
    }

    /// Uses an existing connection.
    pub async fn with_client(client: Client, settings: NatsSettings) -> Result<NatsBus, BusError> {
        let js = jetstream::new(client.clone());
        let ended = topology::ensure_streams(&js, &settings)
            .await
            .map_err(|e| {
                BusError::Transport(format!("{e} (is JetStream enabled: nats-server -js?)"))
            })?;
        Ok(NatsBus {
            client,
            js,
            ended,
            settings,
            puller: tokio::sync::Mutex::new(None),
            unconfirmed: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// The JetStream context (shared with the key-value state store).
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// The connection.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The settings in force.
    pub fn settings(&self) -> &NatsSettings {
        &self.settings
    }

    /// Creates the workers' shared consumer, or applies these settings to it (ack wait,
    /// backoff, max deliveries: the last worker started sets them).
    pub async fn ensure_workers_consumer(&self) -> Result<(), BusError> {
        let stream = self
            .js
            .get_stream_no_info(REQUESTS_STREAM)
            .await
            .map_err(|e| transport("opening the request stream")(e.to_string()))?;
        stream
            .create_consumer(self.settings.workers_consumer())
            .await
            .map_err(|e| transport("setting up the workers' consumer")(e.to_string()))?;
        Ok(())
    }

    /// How many workers wait for a request right now (each idle worker keeps one pull request
    /// waiting); `None` when no worker ever started on this server.
    pub async fn waiting_workers(&self) -> Result<Option<usize>, BusError> {
        let stream = self
            .js
            .get_stream_no_info(REQUESTS_STREAM)
            .await
            .map_err(|e| transport("opening the request stream")(e.to_string()))?;
        match stream.consumer_info(topology::WORKERS_CONSUMER).await {
            Ok(info) => Ok(Some(info.num_waiting)),
            Err(e) if e.to_string().contains("consumer not found") => Ok(None),
            Err(e) => Err(transport("reading the workers' consumer")(e.to_string())),
        }
    }

    /// Stores `payload` on `subject`, retrying (with the same message id, so it is stored once)
    /// while the server is unreachable, up to the publish timeout.
    async fn store(
        &self,
        subject: &str,
        payload: Bytes,
        msg_id: &str,
        headers: HeaderMap,
    ) -> Result<PublishAck, BusError> {
        let deadline = Instant::now() + self.settings.publish_timeout;
        let mut pause = Duration::from_millis(50);
        loop {
            let publish = PublishMessage::build()
                .payload(payload.clone())
                .headers(headers.clone())
                .message_id(msg_id);
            let result = match self.js.send_publish(subject.to_string(), publish).await {
                Ok(ack) => ack.await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            match result {
                Ok(ack) => return Ok(ack),
                Err(e) if Instant::now() + pause < deadline => {
                    tracing::debug!(%subject, "publish failed, retrying: {e}");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(transport(format!("publishing on {subject}"))(e)),
            }
        }
    }

    /// Sends a progress event without waiting for the server's confirmation (see the module
    /// doc); falls back to a confirmed publish when it cannot even be sent.
    async fn send_unconfirmed(
        &self,
        request_id: &str,
        subject: &str,
        payload: Bytes,
        msg_id: String,
        headers: HeaderMap,
    ) -> Result<(), BusError> {
        // One task publishes a request's events at a time, so its queue needs no lock between
        // these steps; the lock guards the map only.
        if self.pending(request_id) >= MAX_UNCONFIRMED {
            self.flush_request(request_id).await?;
        }
        let publish = PublishMessage::build()
            .payload(payload.clone())
            .headers(headers.clone())
            .message_id(&msg_id);
        match self.js.send_publish(subject.to_string(), publish).await {
            Ok(ack) => {
                self.queues()
                    .entry(request_id.to_string())
                    .or_default()
                    .push_back(Unconfirmed {
                        subject: subject.to_string(),
                        payload,
                        msg_id,
                        headers,
                        ack,
                    });
                Ok(())
            }
            Err(e) => {
                tracing::debug!(%subject, "could not send; publishing with confirmation: {e}");
                self.flush_request(request_id).await?;
                self.store(subject, payload, &msg_id, headers)
                    .await
                    .map(drop)
            }
        }
    }

    /// The unconfirmed events by request. A panic elsewhere cannot leave the map half-updated
    /// (each critical section is one map operation), so a poisoned lock is used as is.
    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Unconfirmed>>> {
        self.unconfirmed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self, request_id: &str) -> usize {
        self.queues().get(request_id).map_or(0, VecDeque::len)
    }

    /// Waits for the confirmations of `sent` (all at once: after an outage each may take the
    /// full ack timeout); what the server did not confirm is published again, in order, with
    /// its message id (stored once).
    async fn confirm(&self, sent: VecDeque<Unconfirmed>) -> Result<(), BusError> {
        let (events, acks): (Vec<_>, Vec<_>) = sent
            .into_iter()
            .map(|u| {
                (
                    (u.subject, u.payload, u.msg_id, u.headers),
                    u.ack.into_future(),
                )
            })
            .unzip();
        let results = futures::future::join_all(acks).await;
        for ((subject, payload, msg_id, headers), result) in events.into_iter().zip(results) {
            if let Err(e) = result {
                tracing::debug!(%subject, "unconfirmed ({e}); publishing again");
                self.store(&subject, payload, &msg_id, headers).await?;
            }
        }
        Ok(())
    }

    /// Waits until every event of `request_id` published so far is stored.
    async fn flush_request(&self, request_id: &str) -> Result<(), BusError> {
        let sent = self.queues().remove(request_id).unwrap_or_default();
        self.confirm(sent).await
    }

    /// Waits until every event published so far, of every request, is stored: all confirmations
    /// at once, each request's events still in their order.
    pub async fn flush_events(&self) -> Result<(), BusError> {
        let all: VecDeque<_> = self.queues().drain().flat_map(|(_, queue)| queue).collect();
        self.confirm(all).await
    }

    /// Whether `request_id` has had its terminal event.
    pub async fn has_ended(&self, request_id: &str) -> Result<bool, BusError> {
        if !valid_key(request_id) {
            return Ok(false);
        }
        self.ended
            .get(request_id)
            .await
            .map(|v| v.is_some())
            .map_err(|e| transport("reading the ended requests")(e.to_string()))
    }

    async fn mark_ended(&self, request_id: &str, subject: &str) {
        if !valid_key(request_id) {
            tracing::warn!(%request_id, "request id cannot be a key; not marking it as ended");
            return;
        }
        if let Err(e) = self
            .ended
            .put(request_id, Bytes::from(subject.to_string()))
            .await
        {
            tracing::warn!(%request_id, "could not mark the request as ended: {e}");
        }
    }

    /// Publishes a raw request payload on `subject` (for tests of malformed messages, and tools).
    pub async fn submit_raw(&self, subject: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.store(
            subject,
            payload.into(),
            &azlin_core::new_id(),
            HeaderMap::new(),
        )
        .await
        .map(drop)
    }

    /// Reads the audit trail over `range`.
    pub async fn audit(&self, range: Range) -> Result<mpsc::Receiver<StoredMessage>, BusError> {
        replay::replay(&self.js, EVENTS_STREAM, range, FOLLOWER_BUFFER).await
    }

    /// The audit trail after sequence `after`, as the state store shows it.
    pub async fn events_after(&self, after: u64) -> Result<Vec<LoggedEvent>, BusError> {
        read_events(&self.js, after).await
    }

    /// Follows events with the durable `azlin serve` consumer: resumes after the last event
    /// acknowledged, one event at a time.
    pub async fn serve_feed(&self) -> Result<ServeFeed, BusError> {
        let stream = self
            .js
            .get_stream_no_info(EVENTS_STREAM)
            .await
            .map_err(|e| transport("opening the events stream")(e.to_string()))?;
        let consumer = stream
            .create_consumer(self.settings.serve_consumer())
            .await
            .map_err(|e| transport("setting up the serve consumer")(e.to_string()))?;
        let messages = consumer
            .stream()
            .max_messages_per_batch(16)
            .heartbeat(Duration::from_secs(2))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| transport("following events")(e.to_string()))?;
        Ok(ServeFeed { messages })
    }

    /// Before the process ends: stops taking requests (see [`Bus::stop_requests`]) and waits
    /// until every event published is stored and every acknowledgement sent.
    pub async fn release(&self) {
        self.stop_requests().await;
        if let Err(e) = self.flush_events().await {
            tracing::warn!("events not confirmed: {e}");
        }
        let _ = self.client.flush().await;
    }

    fn delivery(&self, message: async_nats::Message) -> Delivery {
        let message = jetstream::Message {
            message,
            context: self.js.clone(),
        };
        let attempt = message
            .info()
            .map(|info| u32::try_from(info.delivered).unwrap_or(u32::MAX))
            .unwrap_or(1)
            .max(1);
        Delivery {
            subject: message.subject.to_string(),
            payload: message.payload.to_vec(),
            attempt,
            acker: Box::new(NatsAcker { message }),
        }
    }
}

/// Reads the events stream after `after` into audit-trail entries.
pub async fn read_events(
    js: &jetstream::Context,
    after: u64,
) -> Result<Vec<LoggedEvent>, BusError> {
    let mut rx = replay::replay(
        js,
        EVENTS_STREAM,
        Range::UntilEnd { after },
        FOLLOWER_BUFFER,
    )
    .await?;
    let mut events = Vec::new();
    while let Some(message) = rx.recv().await {
        events.push(logged(&message));
    }
    Ok(events)
}

/// An audit-trail entry for a stored event (a payload that is not JSON is kept as a string).
pub fn logged(message: &StoredMessage) -> LoggedEvent {
    LoggedEvent {
        seq: message.seq,
        subject: message.subject.clone(),
        payload: serde_json::from_slice(&message.payload).unwrap_or_else(|_| {
            serde_json::Value::String(String::from_utf8_lossy(&message.payload).into_owned())
        }),
        traceparent: message.traceparent.clone(),
    }
}

/// `azlin serve`'s durable feed of events.
pub struct ServeFeed {
    messages: jetstream::consumer::pull::Stream,
}

/// One event from the [`ServeFeed`]; [`FedEvent::done`] acknowledges it.
pub struct FedEvent {
    /// The VM event (`None` for a workflow event, and for a VM event that could not be read:
    /// that one is logged, and `done` skips it).
    pub event: Option<Event>,
    message: jetstream::Message,
}

impl FedEvent {
    /// The subject it arrived on.
    pub fn subject(&self) -> &str {
        &self.message.subject
    }

    /// Its payload as sent.
    pub fn payload(&self) -> &[u8] {
        &self.message.payload
    }

    /// The W3C trace context it was published with, if any.
    pub fn traceparent(&self) -> Option<&str> {
        self.message
            .headers
            .as_ref()?
            .get(topology::TRACEPARENT_HEADER)
            .map(|value| value.as_str())
    }

    /// The event was recorded: do not deliver it again.
    pub async fn done(self) -> Result<(), BusError> {
        self.message
            .double_ack()
            .await
            .map_err(|e| transport("acknowledging an event")(e.to_string()))
    }
}

impl ServeFeed {
    /// The next event; `None` when the connection closed for good.
    pub async fn next(&mut self) -> Option<FedEvent> {
        use futures::StreamExt;
        loop {
            match self.messages.next().await? {
                Ok(message) => {
                    let workflow = message.subject.starts_with("workflow.");
                    let event = match Event::decode(&message.subject, &message.payload) {
                        Ok(event) => Some(event),
                        Err(_) if workflow => None,
                        Err(e) => {
                            tracing::warn!("skipping an event that cannot be read: {e}");
                            None
                        }
                    };
                    return Some(FedEvent { event, message });
                }
                Err(e) => {
                    tracing::debug!("following events: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

struct NatsAcker {
    message: jetstream::Message,
}

#[async_trait]
impl Acker for NatsAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.message
            .double_ack()
            .await
            .map_err(|e| transport("acknowledging a request")(e.to_string()))
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.message
            .ack_with(AckKind::Nak(delay))
            .await
            .map_err(|e| transport("releasing a request")(e.to_string()))
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.message
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| transport("reporting progress")(e.to_string()))
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn submit(&self, request: &Request) -> Result<(), BusError> {
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, request.request_id());
        self.store(
            request.subject(),
            request.encode().into(),
            &format!("{}.request", request.request_id()),
            headers,
        )
        .await
        .map(drop)
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let request_id = event.request_id();
        let terminal = event.is_terminal();
        let msg_id = if terminal {
            format!("{request_id}.end")
        } else {
            azlin_core::new_id()
        };
        let mut headers = HeaderMap::new();
        headers.insert(REQUEST_ID_HEADER, request_id);
        if !terminal {
            return self
                .send_unconfirmed(
                    request_id,
                    event.subject(),
                    event.encode().into(),
                    msg_id,
                    headers,
                )
                .await;
        }
        // Everything of this request before its end is stored before the end is.
        self.flush_request(request_id).await?;
        let ack = self
            .store(event.subject(), event.encode().into(), &msg_id, headers)
            .await?;
        if ack.duplicate {
            tracing::info!(%request_id, "terminal event already published; not repeated");
        }
        self.mark_ended(request_id, event.subject()).await;
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription, BusError> {
        let mut stored = replay::replay(&self.js, EVENTS_STREAM, Range::FromNow, 64).await?;
        let (tx, rx) = mpsc::channel(FOLLOWER_BUFFER);
        let mut outage = Outage::new(self.client.clone(), self.settings.follow_outage_limit);
        tokio::spawn(async move {
            // The reader resumes after any number of server restarts; what ends a follow is
            // the server staying away (the follower then learns that its requests did not end).
            let mut check = tokio::time::interval(OUTAGE_CHECK);
            loop {
                let message = tokio::select! {
                    message = stored.recv() => message,
                    _ = check.tick() => {
                        if outage.too_long() {
                            tracing::warn!(
                                "following events: the NATS server has been unreachable for {:?}; \
                                 giving up",
                                outage.limit
                            );
                            return;
                        }
                        continue;
                    }
                };
                let Some(message) = message else { return };
                match Event::decode(&message.subject, &message.payload) {
                    Ok(event) => {
                        if tx.send(event).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(seq = message.seq, "skipping an unreadable event: {e}")
                    }
                }
            }
        });
        Ok(Subscription::new(rx))
    }

    async fn next_request(&self) -> Result<Delivery, BusError> {
        let mut slot = self.puller.lock().await;
        let puller = match &mut *slot {
            Some(puller) => puller,
            empty => {
                self.ensure_workers_consumer().await?;
                empty.insert(Puller::new(self.client.clone()).await?)
            }
        };
        loop {
            match puller.next().await? {
                Pulled::Message(message) => return Ok(self.delivery(message)),
                Pulled::NoConsumer => {
                    tracing::warn!("the workers' consumer is gone; making it again");
                    if let Err(e) = self.ensure_workers_consumer().await {
                        tracing::warn!("{e}");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        }
    }

    async fn ended(&self, request_id: &str) -> Result<bool, BusError> {
        self.has_ended(request_id).await
    }

    async fn stop_requests(&self) {
        let Some(puller) = self.puller.lock().await.take() else {
            return;
        };
        for message in puller.close().await {
            let message = jetstream::Message {
                message,
                context: self.js.clone(),
            };
            if let Err(e) = message.ack_with(AckKind::Nak(None)).await {
                tracing::warn!("handing back a request: {e}");
            }
        }
        let _ = self.client.flush().await;
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError> {
        tracing::warn!(subject = %letter.subject, reason = %letter.reason, "dead letter");
        let mut headers = HeaderMap::new();
        headers.insert(
            REASON_HEADER,
            letter.reason.replace(['\r', '\n'], " ").as_str(),
        );
        headers.insert(ATTEMPTS_HEADER, letter.attempts.to_string().as_str());
        let payload = serde_json::to_vec(&letter)
            .map_err(|e| BusError::Transport(format!("encoding a dead letter: {e}")))?;
        self.store(
            &format!("{DEAD_LETTER_PREFIX}.{}", letter.subject),
            payload.into(),
            &azlin_core::new_id(),
            headers,
        )
        .await
        .map(drop)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        let mut rx = replay::replay(
            &self.js,
            DEAD_LETTER_STREAM,
            Range::UntilEnd { after: 0 },
            FOLLOWER_BUFFER,
        )
        .await?;
        let mut letters = Vec::new();
        while let Some(message) = rx.recv().await {
            match serde_json::from_slice(&message.payload) {
                Ok(letter) => letters.push(letter),
                Err(e) => tracing::warn!(seq = message.seq, "unreadable dead letter: {e}"),
            }
        }
        Ok(letters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(valid_key("0b6f3a52-1c1e-4a8e-9f3e-7d1e2f9a0b1c"));
        assert!(!valid_key(""));
        assert!(!valid_key("a b"));
        assert!(!valid_key(".a"));
        assert!(!valid_key("a*"));
    }
}
