//! The janitor: requests the server gave up on because they were delivered `max_deliver` times
//! without being settled (the workers handling them kept dying). The server announces each on
//! its max-deliveries advisory subject; a work-queue stream keeps those notices until a janitor
//! (every `azlin worker` runs one, sharing a durable consumer) has moved the request to the dead
//! letters, published its failure so followers stop waiting, and removed it from the queue.

use super::NatsBus;
use super::topology::{ADVISORY_STREAM, REQUESTS_STREAM};
use crate::bus::{Bus, BusError, DeadLetter};
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use azlin_core::event::{CreateFailed, DeleteFailed, Event, EventError, Request, SCHEMA};
use azlin_core::{ErrorKind, now_rfc3339};
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::watch;

/// The server's `io.nats.jetstream.advisory.v1.max_deliver` notice (the fields azlin reads).
#[derive(Debug, Deserialize)]
struct MaxDeliveries {
    stream_seq: u64,
    deliveries: u64,
}

impl NatsBus {
    /// Serves the max-deliveries advisories until `shutdown` turns true.
    pub async fn run_janitor(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), BusError> {
        let consumer = self
            .jetstream()
            .get_stream_no_info(ADVISORY_STREAM)
            .await
            .map_err(|e| BusError::Transport(format!("opening the advisory stream: {e}")))?
            .create_consumer(self.settings().janitor_consumer())
            .await
            .map_err(|e| BusError::Transport(format!("setting up the janitor: {e}")))?;
        let mut messages = consumer
            .stream()
            .max_messages_per_batch(1)
            .heartbeat(Duration::from_secs(2))
            .expires(Duration::from_secs(10))
            .messages()
            .await
            .map_err(|e| BusError::Transport(format!("following advisories: {e}")))?;
        loop {
            let next = tokio::select! {
                next = messages.next() => next,
                _ = shutdown.changed() => return Ok(()),
            };
            let message = match next {
                None => return Err(BusError::Closed),
                Some(Err(e)) => {
                    tracing::debug!("janitor: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                Some(Ok(message)) => message,
            };
            let settled = match serde_json::from_slice::<MaxDeliveries>(&message.payload) {
                Ok(notice) => self.settle(&notice).await,
                Err(e) => {
                    tracing::warn!("janitor: unreadable advisory ignored: {e}");
                    Ok(())
                }
            };
            match settled {
                Ok(()) => {
                    if let Err(e) = message.double_ack().await {
                        tracing::warn!("janitor: acknowledging an advisory: {e}");
                    }
                }
                // Left unacknowledged: the advisory comes back and is settled again.
                Err(e) => tracing::warn!("janitor: {e}"),
            }
        }
    }

    /// Dead-letters the request of `notice`, publishes its failure, removes it from the queue.
    async fn settle(&self, notice: &MaxDeliveries) -> Result<(), BusError> {
        let requests = self
            .jetstream()
            .get_stream_no_info(REQUESTS_STREAM)
            .await
            .map_err(|e| BusError::Transport(format!("opening the request stream: {e}")))?;
        let raw = match requests.get_raw_message(notice.stream_seq).await {
            Ok(raw) => raw,
            // A late worker settled it after all.
            Err(e) if matches!(e.kind(), LastRawMessageErrorKind::NoMessageFound) => return Ok(()),
            Err(e) => {
                return Err(BusError::Transport(format!(
                    "reading request {}: {e}",
                    notice.stream_seq
                )));
            }
        };
        let subject = raw.subject.to_string();
        let reason = format!(
            "delivered {} times without being settled: the workers that took it stopped each time \
             (the consumer allows {} deliveries)",
            notice.deliveries,
            self.settings().max_deliver
        );
        self.dead_letter(DeadLetter {
            subject: subject.clone(),
            payload: String::from_utf8_lossy(&raw.payload).into_owned(),
            reason: reason.clone(),
            attempts: u32::try_from(notice.deliveries).unwrap_or(u32::MAX),
            at: now_rfc3339(),
        })
        .await?;
        if let Ok(request) = Request::decode(&subject, &raw.payload)
            && !self.has_ended(request.request_id()).await?
        {
            self.publish(&failure(&request, &reason, notice.deliveries))
                .await?;
        }
        if let Err(e) = requests.delete_message(notice.stream_seq).await {
            tracing::debug!("janitor: removing request {}: {e}", notice.stream_seq);
        }
        Ok(())
    }
}

/// The terminal failure of a request given up on.
fn failure(request: &Request, reason: &str, deliveries: u64) -> Event {
    let error = EventError {
        kind: ErrorKind::Provision,
        message: format!("{reason}; anything made for it may be left (check `azlin list`)"),
        retryable: false,
    };
    match request {
        Request::Create(r) => Event::CreateFailed(CreateFailed {
            schema: SCHEMA,
            request_id: r.request_id.clone(),
            name: r.spec.name.clone(),
            error,
            attempt: u32::try_from(deliveries).unwrap_or(u32::MAX),
            cleaned_up: false,
            removed: Vec::new(),
            vm_left_running: false,
            vm: None,
        }),
        Request::Delete(r) => Event::DeleteFailed(DeleteFailed {
            schema: SCHEMA,
            request_id: r.request_id.clone(),
            name: r.name.clone(),
            error,
            at: now_rfc3339(),
        }),
    }
}
