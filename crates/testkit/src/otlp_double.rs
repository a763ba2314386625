//! [`CollectorDouble`]: a test double of an OpenTelemetry collector's OTLP/HTTP receiver for
//! traces, served on `127.0.0.1`.
//!
//! No collector can be installed on the test machine, so azlin's span export is tested against
//! this double. It speaks the receiver's documented contract
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>) for the JSON encoding: `POST
//! /v1/traces` with `Content-Type: application/json` and an `ExportTraceServiceRequest` body,
//! answered `200` with an `ExportTraceServiceResponse`; `415` for another content type, `400`
//! for a body that is not such a request, `404` for other paths. It keeps every span received,
//! flattened out of its resource and scope.

use crate::http_thread::HttpThread;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// The double; stops when dropped.
pub struct CollectorDouble {
    spans: Arc<Mutex<Vec<Value>>>,
    server: HttpThread,
}

impl CollectorDouble {
    /// Starts the double on a free port of `127.0.0.1`.
    pub fn start() -> CollectorDouble {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/v1/traces", axum::routing::post(traces))
            .with_state(spans.clone());
        CollectorDouble {
            spans,
            server: HttpThread::start("otlp-collector-double", app),
        }
    }

    /// The endpoint to configure (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        self.server.url()
    }

    /// Every span received so far, in order.
    pub fn spans(&self) -> Vec<Value> {
        self.spans
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

async fn traces(
    State(spans): State<Arc<Mutex<Vec<Value>>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "only application/json is accepted",
        )
            .into_response();
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not JSON").into_response();
    };
    let Some(resources) = request["resourceSpans"].as_array() else {
        return (StatusCode::BAD_REQUEST, "no resourceSpans").into_response();
    };
    let received: Vec<Value> = resources
        .iter()
        .flat_map(|r| r["scopeSpans"].as_array().cloned().unwrap_or_default())
        .flat_map(|s| s["spans"].as_array().cloned().unwrap_or_default())
        .collect();
    spans
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(received);
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}
