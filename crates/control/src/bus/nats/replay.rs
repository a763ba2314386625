//! Reading a stream in order from a given sequence: the followers of `azlin new`, `azlin events`
//! and the dead-letter listing.
//!
//! The consumer is ephemeral and without acknowledgements. This module tracks the last stream
//! sequence itself and, when the consumer is lost (server restart, missed heartbeats, a gap in
//! consumer sequences), makes a new one starting right after it — so a follower that subscribed
//! "from now" never replays history and never misses an event.

use super::reconnected;
use crate::bus::BusError;
use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use futures::StreamExt;
use std::time::Duration;
use tokio::sync::mpsc;

/// One message of a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Its stream sequence.
    pub seq: u64,
    /// Its subject.
    pub subject: String,
    /// Its payload.
    pub payload: Bytes,
    /// When the server stored it (RFC 3339).
    pub stored_at: String,
    /// Its W3C trace context, if it carries one.
    pub traceparent: Option<String>,
}

/// Where a replay starts and whether it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// From `after + 1` to the last message present when the replay began.
    UntilEnd {
        /// The last sequence already seen (0: from the start).
        after: u64,
    },
    /// From `after + 1`, for ever.
    Follow {
        /// The last sequence already seen.
        after: u64,
    },
    /// From the next message published, for ever.
    FromNow,
}

fn transport(what: &str) -> impl Fn(String) -> BusError + '_ {
    move |e| BusError::Transport(format!("{what}: {e}"))
}

/// The stream's last sequence and message count.
async fn extent(stream: &mut stream::Stream) -> Result<(u64, u64), BusError> {
    let info = stream
        .info()
        .await
        .map_err(|e| transport("reading stream info")(e.to_string()))?;
    Ok((info.state.last_sequence, info.state.messages))
}

/// Reads `stream_name` over `range`, delivering messages in order on the returned channel. The
/// channel closes at the end of an [`Range::UntilEnd`] replay; dropping the receiver stops it.
pub async fn replay(
    js: &jetstream::Context,
    stream_name: &str,
    range: Range,
    buffer: usize,
) -> Result<mpsc::Receiver<StoredMessage>, BusError> {
    let mut stream = js
        .get_stream(stream_name)
        .await
        .map_err(|e| transport("opening the stream")(e.to_string()))?;
    let (last, count) = extent(&mut stream).await?;
    let (mut next, end) = match range {
        Range::UntilEnd { after } => (after + 1, Some(last)),
        Range::Follow { after } => (after + 1, None),
        Range::FromNow => (last + 1, None),
    };
    let (tx, rx) = mpsc::channel(buffer.max(1));
    if let Some(end) = end
        && (count == 0 || next > end)
    {
        return Ok(rx);
    }
    let name = stream_name.to_string();
    let client = js.client();
    tokio::spawn(async move {
        let mut failures = 0u32;
        loop {
            match read_from(&client, &stream, next, end, &tx).await {
                Ok(Read::Done) => return,
                Ok(Read::Lost(at)) => {
                    next = at;
                    failures = 0;
                }
                Err((at, e)) => {
                    next = at;
                    failures += 1;
                    tracing::debug!(stream = %name, "replay interrupted: {e}");
                    let pause = Duration::from_millis(100 * u64::from(failures.min(20)));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = tx.closed() => return,
                    }
                }
            }
        }
    });
    Ok(rx)
}

enum Read {
    /// The range is done, or the receiver went away.
    Done,
    /// The consumer was lost; go on from this sequence.
    Lost(u64),
}

/// Reads with one consumer, from `next` on; `Err` carries where to resume.
async fn read_from(
    client: &async_nats::Client,
    stream: &stream::Stream,
    mut next: u64,
    end: Option<u64>,
    tx: &mpsc::Sender<StoredMessage>,
) -> Result<Read, (u64, String)> {
    let consumer: jetstream::consumer::Consumer<pull::Config> = stream
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: next,
            },
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            memory_storage: true,
            ..Default::default()
        })
        .await
        .map_err(|e| (next, format!("creating a reader: {e}")))?;
    let name = consumer.cached_info().name.clone();
    if end.is_some() && consumer.cached_info().num_pending == 0 {
        let _ = stream.delete_consumer(&name).await;
        return Ok(Read::Done);
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(256)
        .heartbeat(Duration::from_secs(2))
        .expires(Duration::from_secs(10))
        .messages()
        .await
        .map_err(|e| (next, format!("reading: {e}")))?;
    let mut consumer_seq = 0u64;
    let outcome = loop {
        let item = tokio::select! {
            item = messages.next() => item,
            _ = tx.closed() => break Read::Done,
            // A restart lost this in-memory consumer: a new one from the same sequence.
            () = reconnected(client) => break Read::Lost(next),
        };
        let message = match item {
            None => break Read::Lost(next),
            Some(Ok(message)) => message,
            Some(Err(e)) => match e.kind() {
                MessagesErrorKind::MissingHeartbeat
                | MessagesErrorKind::ConsumerDeleted
                | MessagesErrorKind::NoResponders => break Read::Lost(next),
                _ => {
                    tracing::debug!("reading a stream: {e}");
                    continue;
                }
            },
        };
        let Ok(info) = message.info() else { continue };
        if info.consumer_sequence != consumer_seq + 1 {
            // A gap: start over right after the last message delivered.
            break Read::Lost(next);
        }
        consumer_seq = info.consumer_sequence;
        let seq = info.stream_sequence;
        let pending = info.pending;
        let stored_at = rfc3339(info.published.unix_timestamp_nanos());
        if seq < next {
            continue;
        }
        next = seq + 1;
        let stored = StoredMessage {
            seq,
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            stored_at,
            traceparent: message
                .headers
                .as_ref()
                .and_then(|h| h.get(super::topology::TRACEPARENT_HEADER))
                .map(|v| v.to_string()),
        };
        if tx.send(stored).await.is_err() {
            break Read::Done;
        }
        if let Some(end) = end
            && (seq >= end || pending == 0)
        {
            break Read::Done;
        }
    };
    drop(messages);
    let _ = stream.delete_consumer(&name).await;
    Ok(outcome)
}

/// Formats nanoseconds since the epoch as RFC 3339 ("" if out of range).
pub(super) fn rfc3339(nanos: i128) -> String {
    jiff::Timestamp::from_nanosecond(nanos)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
