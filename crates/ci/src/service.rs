//! The HTTP side of the CI service: `POST /webhook` (checked, de-duplicated, queued, answered
//! at once) and `GET /metrics`.

use crate::metrics::Metrics;
use crate::queue::{CiBus, QueuedDelivery};
use crate::webhook::{self, DELIVERY_HEADER, EVENT_HEADER, MAX_BODY_BYTES, SIGNATURE_HEADER};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use azlin_control::{RecordState, StateStore};
use azlin_core::event::Event as VmEvent;
use azlin_core::nats::Secret;
use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// What the endpoints share.
pub struct CiService {
    secret: Option<Secret>,
    bus: Option<CiBus>,
    metrics: Arc<Metrics>,
    store: Arc<dyn StateStore>,
}

impl CiService {
    /// The service: deliveries are checked against `secret` and queued on `bus` (refused
    /// without either); metrics read `store` for pools.
    pub fn new(
        secret: Option<Secret>,
        bus: Option<CiBus>,
        metrics: Arc<Metrics>,
        store: Arc<dyn StateStore>,
    ) -> Arc<CiService> {
        Arc::new(CiService {
            secret,
            bus,
            metrics,
            store,
        })
    }

    /// `POST /webhook` and `GET /metrics`.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/webhook", post(webhook))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .route("/metrics", get(metrics))
            .with_state(self.clone())
    }

    /// Counts a VM event (boot times).
    pub fn vm_event(&self, event: &VmEvent) {
        if let VmEvent::CreateComplete(complete) = event {
            let ms: u64 = complete.timings.values().sum();
            self.metrics.vm_booted(Duration::from_millis(ms));
        }
    }

    async fn accept(&self, headers: &HeaderMap, body: Bytes) -> (StatusCode, String) {
        let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
        let event = text(EVENT_HEADER).unwrap_or_default().to_string();
        let (Some(secret), Some(bus)) = (&self.secret, &self.bus) else {
            self.metrics.delivery(&event, "refused");
            let missing = if self.secret.is_none() {
                "no webhook secret is configured ([serve] webhook_secret_file)"
            } else {
                "webhooks need a NATS server (--nats URL) for their run queue"
            };
            return (StatusCode::SERVICE_UNAVAILABLE, missing.into());
        };
        if let Err(e) =
            webhook::verify_signature(secret.expose().as_bytes(), &body, text(SIGNATURE_HEADER))
        {
            self.metrics.delivery(&event, "refused");
            return (StatusCode::UNAUTHORIZED, e.to_string());
        }
        let id = match webhook::delivery_id(text(DELIVERY_HEADER)) {
            Ok(id) => id,
            Err(e) => {
                self.metrics.delivery(&event, "refused");
                return (StatusCode::BAD_REQUEST, e.to_string());
            }
        };
        if event == "ping" {
            self.metrics.delivery(&event, "ignored");
            return (StatusCode::OK, "pong".into());
        }
        if !webhook::EVENTS.contains(&event.as_str()) {
            self.metrics.delivery(&event, "ignored");
            return (
                StatusCode::ACCEPTED,
                format!("event '{event}' is not one azlin runs workflows for"),
            );
        }
        let received_ms = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
        match bus.claim_delivery(&id, received_ms).await {
            Ok(true) => {}
            Ok(false) => {
                self.metrics.delivery(&event, "duplicate");
                return (StatusCode::OK, format!("delivery {id} was taken before"));
            }
            Err(e) => return unavailable(e),
        }
        let delivery = QueuedDelivery {
            id: id.clone(),
            event: event.clone(),
            received_ms,
            traceparent: traceparent(text("traceparent")),
        };
        if let Err(e) = bus.queue_delivery(&delivery, body).await {
            bus.release_delivery(&id).await;
            return unavailable(e);
        }
        self.metrics.delivery(&event, "queued");
        (StatusCode::ACCEPTED, format!("delivery {id} queued"))
    }

    async fn metrics_text(&self) -> String {
        let mut depth = 0;
        let mut runners = 0;
        if let Some(bus) = &self.bus {
            depth = bus.queue_depth().await.unwrap_or_else(|e| {
                tracing::debug!("{e}");
                0
            });
            runners = bus.runners().await.map(|r| r.len()).unwrap_or(0);
        }
        let mut ready: BTreeMap<String, usize> = BTreeMap::new();
        for record in self.store.vms().await.unwrap_or_default() {
            if let Some(pool) = &record.pool {
                let count = ready.entry(pool.clone()).or_default();
                if record.state == RecordState::Ready && record.claim.is_none() {
                    *count += 1;
                }
            }
        }
        let pools: Vec<(String, usize)> = ready.into_iter().collect();
        self.metrics.set_gauges(depth, runners, &pools);
        self.metrics.encode()
    }
}

fn unavailable(e: azlin_control::BusError) -> (StatusCode, String) {
    tracing::warn!("a delivery could not be queued: {e}");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the run queue is unavailable; the delivery was not taken".into(),
    )
}

/// A W3C trace context for a delivery: the caller's trace when it sent one, a new one otherwise,
/// with a new span for the delivery.
pub fn traceparent(incoming: Option<&str>) -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    let span = &random[..16];
    let trace = incoming
        .and_then(|t| {
            let parts: Vec<&str> = t.trim().split('-').collect();
            match parts.as_slice() {
                ["00", trace, _, _]
                    if trace.len() == 32
                        && trace.bytes().all(|b| b.is_ascii_hexdigit())
                        && trace.bytes().any(|b| b != b'0') =>
                {
                    Some(trace.to_ascii_lowercase())
                }
                _ => None,
            }
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    format!("00-{trace}-{span}-01")
}

async fn webhook(
    State(service): State<Arc<CiService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (status, message) = service.accept(&headers, body).await;
    (status, [(header::CONTENT_TYPE, "text/plain")], message).into_response()
}

async fn metrics(State(service): State<Arc<CiService>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        service.metrics_text().await,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_contexts_continue_the_callers_trace() {
        let own = traceparent(None);
        let parts: Vec<&str> = own.split('-').collect();
        assert_eq!(parts.len(), 4);
        assert_eq!(
            (parts[0], parts[1].len(), parts[2].len(), parts[3]),
            ("00", 32, 16, "01")
        );
        let theirs = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let continued = traceparent(Some(theirs));
        assert!(continued.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!continued.contains("00f067aa0ba902b7"));
        for bad in [
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            assert!(!traceparent(Some(bad)).contains("00000000000000000000000000000000"));
        }
    }
}
