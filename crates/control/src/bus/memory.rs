//! The in-process bus: channels inside one azlin process. No server needed; the default.

use super::{Acker, Bus, BusError, DeadLetter, Delivery, Subscription};
use async_trait::async_trait;
use azlin_core::event::{Event, Request};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

/// How many events a slow follower may fall behind before publishers wait for it.
const FOLLOWER_BUFFER: usize = 4096;

struct Queued {
    subject: String,
    payload: Vec<u8>,
    attempt: u32,
}

/// An in-process [`Bus`]. Clones share the same queue and followers.
#[derive(Clone)]
pub struct MemoryBus {
    queue_tx: mpsc::UnboundedSender<Queued>,
    queue_rx: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Queued>>>,
    followers: Arc<Mutex<Vec<mpsc::Sender<Event>>>>,
    dead: Arc<Mutex<Vec<DeadLetter>>>,
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBus {
    /// An empty bus.
    pub fn new() -> Self {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        MemoryBus {
            queue_tx,
            queue_rx: Arc::new(tokio::sync::Mutex::new(queue_rx)),
            followers: Arc::new(Mutex::new(Vec::new())),
            dead: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Queues a raw message, as a transport would deliver it (also used to test how workers
    /// treat malformed messages).
    pub fn submit_raw(&self, subject: &str, payload: Vec<u8>) -> Result<(), BusError> {
        self.queue_tx
            .send(Queued {
                subject: subject.to_string(),
                payload,
                attempt: 1,
            })
            .map_err(|_| BusError::Closed)
    }
}

struct MemoryAcker {
    queue_tx: mpsc::UnboundedSender<Queued>,
    subject: String,
    payload: Vec<u8>,
    attempt: u32,
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(&self) -> Result<(), BusError> {
        Ok(())
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        let again = Queued {
            subject: self.subject.clone(),
            payload: self.payload.clone(),
            attempt: self.attempt + 1,
        };
        let tx = self.queue_tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A closed bus drops the redelivery, as a stopped server would.
            let _ = tx.send(again);
        });
        Ok(())
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn submit(&self, request: &Request) -> Result<(), BusError> {
        self.submit_raw(request.subject(), request.encode())
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        let followers: Vec<_> = self.followers.lock().map_err(|_| BusError::Closed)?.clone();
        for follower in followers {
            // A follower that went away is simply skipped.
            let _ = follower.send(event.clone()).await;
        }
        if let Ok(mut list) = self.followers.lock() {
            list.retain(|f| !f.is_closed());
        }
        Ok(())
    }

    async fn subscribe(&self) -> Result<Subscription, BusError> {
        let (tx, rx) = mpsc::channel(FOLLOWER_BUFFER);
        self.followers
            .lock()
            .map_err(|_| BusError::Closed)?
            .push(tx);
        Ok(Subscription::new(rx))
    }

    async fn next_request(&self) -> Result<Delivery, BusError> {
        let queued = self
            .queue_rx
            .lock()
            .await
            .recv()
            .await
            .ok_or(BusError::Closed)?;
        Ok(Delivery {
            acker: Box::new(MemoryAcker {
                queue_tx: self.queue_tx.clone(),
                subject: queued.subject.clone(),
                payload: queued.payload.clone(),
                attempt: queued.attempt,
            }),
            subject: queued.subject,
            payload: queued.payload,
            attempt: queued.attempt,
        })
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError> {
        tracing::warn!(subject = %letter.subject, reason = %letter.reason, "dead letter");
        self.dead.lock().map_err(|_| BusError::Closed)?.push(letter);
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        Ok(self.dead.lock().map_err(|_| BusError::Closed)?.clone())
    }
}
