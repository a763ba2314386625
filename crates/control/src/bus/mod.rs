//! The [`Bus`]: a work queue of requests consumed by workers, and a stream of events that is
//! the audit trail.

pub mod memory;
pub mod nats;

use async_trait::async_trait;
use azlin_core::event::{Event, Request};
use std::time::Duration;
use tokio::sync::mpsc;

/// A bus failure.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus is closed (shutting down, or the server is gone for good).
    #[error("the event bus is closed")]
    Closed,
    /// The server could not be reached or refused an operation.
    #[error("event bus: {0}")]
    Transport(String),
    /// The server refused this client's credentials (or demands some).
    #[error("event bus: {0}")]
    Auth(String),
    /// The connection settings cannot be used (a credentials or TLS file is missing or bad).
    #[error("event bus: {0}")]
    Setup(String),
}

/// Acknowledgement of one delivered request, towards the transport that delivered it.
#[async_trait]
pub trait Acker: Send + Sync {
    /// The request is done: never deliver it again.
    async fn ack(&self) -> Result<(), BusError>;
    /// The attempt failed: deliver it again after `delay`.
    async fn nak(&self, delay: Duration) -> Result<(), BusError>;
    /// Still working: extend the deadline before the request is redelivered.
    async fn in_progress(&self) -> Result<(), BusError>;
}

/// One request as delivered to a worker: raw, so that a message that cannot be read still
/// reaches the worker and can be dead-lettered with its reason.
pub struct Delivery {
    /// The subject it arrived on.
    pub subject: String,
    /// The payload as sent.
    pub payload: Vec<u8>,
    /// 1 on first delivery, then 2, 3…
    pub attempt: u32,
    /// Acknowledges it.
    pub acker: Box<dyn Acker>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("subject", &self.subject)
            .field("attempt", &self.attempt)
            .field("bytes", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// A live feed of events, from the moment of subscribing.
#[derive(Debug)]
pub struct Subscription {
    rx: mpsc::Receiver<Event>,
}

impl Subscription {
    /// Wraps a receiver fed by a transport.
    pub fn new(rx: mpsc::Receiver<Event>) -> Self {
        Subscription { rx }
    }

    /// The next event; `None` when the bus closed.
    pub async fn next(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

/// A message that could not be processed, kept with the reason.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// The subject it arrived on.
    pub subject: String,
    /// Its payload (lossy UTF-8).
    pub payload: String,
    /// Why it was given up on.
    pub reason: String,
    /// How many deliveries it had.
    pub attempts: u32,
    /// When (RFC 3339).
    pub at: String,
}

/// The transport between requesters, workers and followers.
#[async_trait]
pub trait Bus: Send + Sync {
    /// Queues a request; exactly one worker will take each.
    async fn submit(&self, request: &Request) -> Result<(), BusError>;

    /// Publishes an event on the audit trail.
    async fn publish(&self, event: &Event) -> Result<(), BusError>;

    /// Follows events from now on. Subscribe before submitting, so nothing is missed.
    async fn subscribe(&self) -> Result<Subscription, BusError>;

    /// Waits for the next request for a worker.
    async fn next_request(&self) -> Result<Delivery, BusError>;

    /// Stops taking requests for this worker: a request already on its way to it is handed
    /// back, so that later releases (naks) reach other workers. Transports without anything on
    /// its way need do nothing.
    async fn stop_requests(&self) {}

    /// Whether `request_id` has already had its terminal event (a redelivered request that has
    /// ended is acknowledged, not redone). Transports that never redeliver a finished request
    /// need not track this.
    async fn ended(&self, _request_id: &str) -> Result<bool, BusError> {
        Ok(false)
    }

    /// Moves a message to the dead letters with its reason.
    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError>;

    /// The dead letters so far.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError>;
}
