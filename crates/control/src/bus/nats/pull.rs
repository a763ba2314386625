//! Taking requests off the workers' shared consumer one at a time.
//!
//! A worker asks for exactly one message when it has room for one (a pull request of batch 1),
//! never more: a message fetched ahead would sit in this process with its ack wait running while
//! another worker is idle. Replies come to one inbox subscription kept for the life of the bus.
//! The pull request carries an idle heartbeat; when neither a message nor a heartbeat arrives in
//! time (the server restarted and forgot the request), the request is sent again.

use super::reconnected;
use super::topology::workers_pull_subject;
use crate::bus::BusError;
use async_nats::connection::State;
use async_nats::{Client, StatusCode, Subscriber};
use futures::StreamExt;
use std::time::Duration;

/// How long one pull request waits at the server.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// The server's sign of life while a pull request waits.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// Silence after which the pull request is presumed lost.
const PULL_SILENCE: Duration = Duration::from_secs(3);

/// What a pull brought.
pub(super) enum Pulled {
    /// A request (with its `$JS.ACK…` reply subject).
    Message(async_nats::Message),
    /// The consumer does not exist (yet, or any more).
    NoConsumer,
}

/// The inbox and the state of the pull request.
pub(super) struct Puller {
    client: Client,
    subject: String,
    inbox: String,
    subscriber: Subscriber,
    /// Whether a pull request is waiting at the server.
    outstanding: bool,
}

impl Puller {
    /// Subscribes the inbox.
    pub(super) async fn new(client: Client) -> Result<Puller, BusError> {
        let inbox = client.new_inbox();
        let subscriber = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| BusError::Transport(format!("subscribing the pull inbox: {e}")))?;
        Ok(Puller {
            client,
            subject: workers_pull_subject(),
            inbox,
            subscriber,
            outstanding: false,
        })
    }

    async fn request(&mut self) -> Result<(), BusError> {
        let body = serde_json::json!({
            "batch": 1,
            "expires": u64::try_from(PULL_EXPIRES.as_nanos()).unwrap_or(u64::MAX),
            "idle_heartbeat": u64::try_from(PULL_HEARTBEAT.as_nanos()).unwrap_or(u64::MAX),
        });
        self.client
            .publish_with_reply(
                self.subject.clone(),
                self.inbox.clone(),
                body.to_string().into(),
            )
            .await
            .map_err(|e| BusError::Transport(format!("asking for a request: {e}")))?;
        self.outstanding = true;
        Ok(())
    }

    /// The next request message. Cancel-safe: a pull request still waiting is reused by the
    /// next call.
    pub(super) async fn next(&mut self) -> Result<Pulled, BusError> {
        loop {
            if !self.outstanding {
                if self.client.connection_state() != State::Connected {
                    // Requests sent now would all reach the server at once on reconnection.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                self.request().await?;
            }
            let heard = tokio::select! {
                heard = tokio::time::timeout(PULL_SILENCE, self.subscriber.next()) => heard,
                // The restarted server forgot the pull request: ask again at once.
                () = reconnected(&self.client) => {
                    self.outstanding = false;
                    continue;
                }
            };
            let message = match heard {
                Err(_silence) => {
                    tracing::debug!("no word on the pull request; asking again");
                    self.outstanding = false;
                    continue;
                }
                Ok(None) => return Err(BusError::Closed),
                Ok(Some(message)) => message,
            };
            match message.status {
                None | Some(StatusCode::OK) if message.reply.is_some() => {
                    self.outstanding = false;
                    return Ok(Pulled::Message(message));
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(StatusCode::TIMEOUT) | Some(StatusCode::NOT_FOUND) => {
                    self.outstanding = false;
                }
                Some(StatusCode::NO_RESPONDERS) => {
                    // The consumer is not there: the caller makes it and asks again.
                    self.outstanding = false;
                    return Ok(Pulled::NoConsumer);
                }
                status => {
                    tracing::debug!(
                        ?status,
                        description = ?message.description,
                        "pull request ended; asking again"
                    );
                    self.outstanding = false;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Stops receiving: the inbox is drained (unsubscribed at the server, then every message
    /// the server had sent before is still received) and what had arrived is handed back, to be
    /// released at once.
    pub(super) async fn close(mut self) -> Vec<async_nats::Message> {
        let mut left = Vec::new();
        if self.subscriber.drain().await.is_err() {
            return left;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while let Ok(Some(message)) =
            tokio::time::timeout_at(deadline, self.subscriber.next()).await
        {
            if message.reply.is_some() && message.status.is_none() {
                left.push(message);
            }
        }
        left
    }
}
