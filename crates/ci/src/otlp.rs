//! OpenTelemetry export: with `[serve] otlp_endpoint`, `serve` sends a span for every run, job
//! and step to an OTLP/HTTP collector (`POST ENDPOINT/v1/traces`, OTLP's JSON encoding), in the
//! trace the webhook's `traceparent` began: the run is a child of the delivery's span, its jobs
//! children of the run, their steps children of the job. A run's span starts when its webhook
//! arrived, so queueing shows. Spans go out in the background, a batch at a time; a collector
//! that is down costs a warning, never a run.

use crate::run_event::{JobEvent, RunEnded, RunEvent, StepEvent};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::mpsc;

/// Spans waiting to be sent; beyond this, new ones are dropped (with a warning).
const QUEUE: usize = 4096;
/// The most spans one request carries.
const BATCH: usize = 512;
/// How long a collector may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The path of the traces signal under the endpoint.
const TRACES_PATH: &str = "/v1/traces";

/// A collector endpoint that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("[serve] otlp_endpoint '{endpoint}': {reason}")]
pub struct EndpointError {
    endpoint: String,
    reason: String,
}

/// One finished span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_span_id: String,
    /// `run WORKFLOW`, `job NAME`, `step NAME`.
    pub name: String,
    /// Unix nanoseconds.
    pub start_ns: i128,
    /// Unix nanoseconds.
    pub end_ns: i128,
    /// Attributes (string values).
    pub attributes: Vec<(&'static str, String)>,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

impl Span {
    /// The span in OTLP's JSON encoding.
    fn to_json(&self) -> Value {
        let attributes: Vec<Value> = self
            .attributes
            .iter()
            .map(|(key, value)| json!({"key": key, "value": {"stringValue": value}}))
            .collect();
        let status = match &self.error {
            Some(message) => json!({"code": 2, "message": message}),
            None => json!({"code": 1}),
        };
        json!({
            "traceId": self.trace_id,
            "spanId": self.span_id,
            "parentSpanId": self.parent_span_id,
            "name": self.name,
            "kind": 1,
            "startTimeUnixNano": self.start_ns.to_string(),
            "endTimeUnixNano": self.end_ns.max(self.start_ns).to_string(),
            "attributes": attributes,
            "status": status,
        })
    }
}

/// The body of one export request.
fn request_body(spans: &[Span]) -> Value {
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "azlin"}}
        ]},
        "scopeSpans": [{
            "scope": {"name": "azlin-ci", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans.iter().map(Span::to_json).collect::<Vec<_>>(),
        }],
    }]})
}

/// The trace a run belongs to and the span its run span hangs from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TraceContext {
    trace_id: String,
    parent_span_id: String,
}

impl TraceContext {
    /// From a W3C `traceparent`; without one (or with one that cannot be read), a trace of the
    /// run's own, derived from its id so every event of the run lands in it.
    fn of(traceparent: Option<&str>, run_id: &str) -> TraceContext {
        let parts: Option<Vec<&str>> = traceparent.map(|t| t.trim().split('-').collect());
        let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
        match parts.as_deref() {
            Some(["00", trace, parent, _]) if hex(trace, 32) && hex(parent, 16) => TraceContext {
                trace_id: trace.to_ascii_lowercase(),
                parent_span_id: parent.to_ascii_lowercase(),
            },
            _ => TraceContext {
                trace_id: hex_id(&["trace", run_id], 16),
                parent_span_id: String::new(),
            },
        }
    }
}

/// `bytes` bytes of the SHA-256 of `parts`, in hex: span ids that every serve instance derives
/// alike, so a run reported again keeps its ids.
fn hex_id(parts: &[&str], bytes: usize) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize()[..bytes]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn span_id(parts: &[&str]) -> String {
    hex_id(parts, 8)
}

/// Unix nanoseconds of an RFC 3339 time (`None` if it is not one).
fn nanos(at: &str) -> Option<i128> {
    at.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_nanosecond())
}

fn millis_to_nanos(ms: u64) -> i128 {
    i128::from(ms) * 1_000_000
}

fn error_of(conclusion: Option<&str>, error: Option<&str>) -> Option<String> {
    match (conclusion, error) {
        (_, Some(error)) => Some(error.to_string()),
        (Some("failure" | "cancelled"), None) => Some(conclusion.unwrap_or_default().to_string()),
        _ => None,
    }
}

/// What is known of a run whose span is not finished.
#[derive(Debug, Default)]
struct OpenRun {
    /// When its webhook arrived (or, failing that, when it was first seen).
    start_ns: Option<i128>,
    /// Its jobs not finished, by name.
    jobs: HashMap<String, OpenJob>,
}

/// What is known of a job whose span is not finished.
#[derive(Debug, Default)]
struct OpenJob {
    /// When it started.
    start_ns: Option<i128>,
    /// How many steps it has started (a step's number tells same-named steps apart).
    steps_started: usize,
    /// The step running: its number, name and start.
    running: Option<(usize, String, i128)>,
}

/// Turns workflow events into spans: starts are remembered until the matching end arrives.
#[derive(Debug, Default)]
pub struct SpanBuilder {
    runs: HashMap<String, OpenRun>,
}

impl SpanBuilder {
    /// The spans `event` (which came with `traceparent`) finishes.
    pub fn spans(&mut self, event: &RunEvent, traceparent: Option<&str>) -> Vec<Span> {
        match event {
            RunEvent::Status(status) => {
                let run = self.runs.entry(status.run_id.clone()).or_default();
                run.start_ns = run.start_ns.or_else(|| nanos(&status.at));
                Vec::new()
            }
            RunEvent::JobStarted(job) => {
                let run = self.open(&job.run_id, job.received_ms, &job.at);
                run.jobs.entry(job.job.clone()).or_default().start_ns = nanos(&job.at);
                Vec::new()
            }
            RunEvent::StepStarted(step) => {
                let run = self.open(&step.run_id, step.received_ms, &step.at);
                let job = run.jobs.entry(step.job.clone()).or_default();
                job.steps_started += 1;
                job.running = nanos(&step.at).map(|at| (job.steps_started, step.step.clone(), at));
                Vec::new()
            }
            RunEvent::StepCompleted(step) => {
                self.step_span(step, traceparent).into_iter().collect()
            }
            RunEvent::JobCompleted(job) => self.job_span(job, traceparent).into_iter().collect(),
            RunEvent::Complete(ended) | RunEvent::Failed(ended) => {
                self.run_span(ended, traceparent).into_iter().collect()
            }
        }
    }

    fn open(&mut self, run_id: &str, received_ms: u64, at: &str) -> &mut OpenRun {
        let run = self.runs.entry(run_id.to_string()).or_default();
        let received = Some(millis_to_nanos(received_ms)).filter(|ns| *ns > 0);
        run.start_ns = received.or(run.start_ns).or_else(|| nanos(at));
        run
    }

    fn step_span(&mut self, step: &StepEvent, traceparent: Option<&str>) -> Option<Span> {
        let end = nanos(&step.at)?;
        let (index, name, start) = self
            .runs
            .get_mut(&step.run_id)?
            .jobs
            .get_mut(&step.job)?
            .running
            .take()
            .filter(|(_, name, _)| *name == step.step)?;
        let context = TraceContext::of(traceparent, &step.run_id);
        Some(Span {
            trace_id: context.trace_id,
            span_id: span_id(&[&step.run_id, &step.job, &index.to_string()]),
            parent_span_id: span_id(&[&step.run_id, &step.job]),
            name: format!("step {name}"),
            start_ns: start,
            end_ns: end,
            attributes: vec![
                ("azlin.run_id", step.run_id.clone()),
                ("github.job", step.job.clone()),
                ("github.step", name),
                (
                    "azlin.conclusion",
                    step.conclusion.clone().unwrap_or_default(),
                ),
            ],
            error: error_of(step.conclusion.as_deref(), None),
        })
    }

    fn job_span(&mut self, job: &JobEvent, traceparent: Option<&str>) -> Option<Span> {
        let end = nanos(&job.at)?;
        let start = self
            .runs
            .get_mut(&job.run_id)
            .and_then(|run| run.jobs.remove(&job.job)?.start_ns)
            .unwrap_or(end);
        let context = TraceContext::of(traceparent, &job.run_id);
        Some(Span {
            trace_id: context.trace_id,
            span_id: span_id(&[&job.run_id, &job.job]),
            parent_span_id: span_id(&[&job.run_id]),
            name: format!("job {}", job.job),
            start_ns: start,
            end_ns: end,
            attributes: vec![
                ("azlin.run_id", job.run_id.clone()),
                ("github.repository", job.repository.clone()),
                ("github.workflow", job.workflow.clone()),
                ("github.job", job.job.clone()),
                ("azlin.worker", job.worker.clone()),
                ("azlin.vm", job.vm.clone()),
                (
                    "azlin.conclusion",
                    job.conclusion.clone().unwrap_or_default(),
                ),
            ],
            error: error_of(job.conclusion.as_deref(), job.error.as_deref()),
        })
    }

    fn run_span(&mut self, ended: &RunEnded, traceparent: Option<&str>) -> Option<Span> {
        let end = nanos(&ended.at)?;
        let start = self
            .runs
            .remove(&ended.run_id)
            .and_then(|run| run.start_ns)
            .unwrap_or(end);
        let context = TraceContext::of(traceparent, &ended.run_id);
        Some(Span {
            trace_id: context.trace_id,
            span_id: span_id(&[&ended.run_id]),
            parent_span_id: context.parent_span_id,
            name: format!("run {}", ended.workflow),
            start_ns: start,
            end_ns: end,
            attributes: vec![
                ("azlin.run_id", ended.run_id.clone()),
                ("github.repository", ended.repository.clone()),
                ("github.workflow", ended.workflow.clone()),
                ("azlin.worker", ended.worker.clone()),
                ("azlin.conclusion", ended.conclusion.clone()),
            ],
            error: error_of(Some(&ended.conclusion), ended.error.as_deref()),
        })
    }
}

/// Sends the spans of workflow events to a collector.
pub struct Exporter {
    builder: Mutex<SpanBuilder>,
    queue: mpsc::Sender<Span>,
}

impl Exporter {
    /// An exporter to the collector at `endpoint` (its base URL, `http://HOST:4318` say);
    /// its sender runs on the current runtime until the exporter is dropped.
    pub fn start(endpoint: &str) -> Result<Exporter, EndpointError> {
        let bad = |reason: &str| EndpointError {
            endpoint: endpoint.to_string(),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(endpoint).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("not an http:// or https:// URL"));
        }
        if azlin_core::network::has_credentials(&url) {
            return Err(bad("credentials do not belong in the URL"));
        }
        let traces = format!("{}{TRACES_PATH}", endpoint.trim_end_matches('/'));
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        let (queue, spans) = mpsc::channel(QUEUE);
        tokio::spawn(send(client, traces, spans));
        Ok(Exporter {
            builder: Mutex::new(SpanBuilder::default()),
            queue,
        })
    }

    /// Records `event` (which came with `traceparent`) and queues the spans it finishes.
    pub fn record(&self, event: &RunEvent, traceparent: Option<&str>) {
        let spans = self
            .builder
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .spans(event, traceparent);
        for span in spans {
            if self.queue.try_send(span).is_err() {
                tracing::warn!("the OpenTelemetry collector is behind: a span was dropped");
            }
        }
    }
}

/// Posts queued spans to `traces`, a batch per request, until the queue closes.
async fn send(client: reqwest::Client, traces: String, mut spans: mpsc::Receiver<Span>) {
    let mut batch = Vec::with_capacity(BATCH);
    while spans.recv_many(&mut batch, BATCH).await > 0 {
        let sent = client
            .post(&traces)
            .json(&request_body(&batch))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        if let Err(e) = sent {
            tracing::warn!("sending {} spans to {traces}: {e}", batch.len());
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_event::StepLine;

    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn step(name: &str, at: &str, conclusion: Option<&str>) -> StepEvent {
        StepEvent {
            schema: 1,
            run_id: "r1".into(),
            job: "build".into(),
            step: name.into(),
            conclusion: conclusion.map(str::to_string),
            received_ms: 1_700_000_000_000,
            at: at.into(),
        }
    }

    fn job(at: &str, conclusion: Option<&str>) -> JobEvent {
        JobEvent {
            schema: 1,
            run_id: "r1".into(),
            job: "build".into(),
            workflow: "ci.yml".into(),
            repository: "octo/app".into(),
            sha: "a".repeat(40),
            worker: "w1".into(),
            vm: "vm1".into(),
            pool: None,
            claim_us: None,
            conclusion: conclusion.map(str::to_string),
            steps: vec![StepLine {
                name: "echo".into(),
                conclusion: "success".into(),
                duration_ms: 5,
            }],
            summary: String::new(),
            error: None,
            received_ms: 1_700_000_000_000,
            at: at.into(),
        }
    }

    #[test]
    fn a_run_is_a_tree_of_spans_in_the_webhooks_trace() {
        let mut builder = SpanBuilder::default();
        let mut spans = Vec::new();
        let tp = Some(TRACEPARENT);
        let events = [
            RunEvent::JobStarted(job("2023-11-14T22:13:21Z", None)),
            RunEvent::StepStarted(step("echo", "2023-11-14T22:13:22Z", None)),
            RunEvent::StepCompleted(step("echo", "2023-11-14T22:13:23Z", Some("success"))),
            RunEvent::StepStarted(step("echo", "2023-11-14T22:13:23Z", None)),
            RunEvent::StepCompleted(step("echo", "2023-11-14T22:13:24Z", Some("failure"))),
            RunEvent::JobCompleted(job("2023-11-14T22:13:25Z", Some("failure"))),
            RunEvent::Failed(RunEnded {
                schema: 1,
                run_id: "r1".into(),
                repository: "octo/app".into(),
                workflow: "ci.yml".into(),
                conclusion: "failure".into(),
                error: None,
                worker: "w1".into(),
                at: "2023-11-14T22:13:26Z".into(),
            }),
        ];
        for event in &events {
            spans.extend(builder.spans(event, tp));
        }
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["step echo", "step echo", "job build", "run ci.yml"]);
        let trace = "0af7651916cd43dd8448eb211c80319c";
        assert!(spans.iter().all(|s| s.trace_id == trace));
        let (first, second, job, run) = (&spans[0], &spans[1], &spans[2], &spans[3]);
        // Steps of the same name are two spans, both children of the job.
        assert_ne!(first.span_id, second.span_id);
        assert_eq!(first.parent_span_id, job.span_id);
        assert_eq!(second.parent_span_id, job.span_id);
        assert_eq!(job.parent_span_id, run.span_id);
        assert_eq!(run.parent_span_id, "b7ad6b7169203331");
        assert_eq!(second.error.as_deref(), Some("failure"));
        assert_eq!(first.error, None);
        // The run began when its webhook arrived; the job when it started.
        assert_eq!(run.start_ns, 1_700_000_000_000_000_000);
        assert_eq!(job.start_ns, nanos("2023-11-14T22:13:21Z").unwrap());
        assert!(spans.iter().all(|s| s.start_ns <= s.end_ns));
        assert!(builder.runs.is_empty(), "nothing kept once the run ended");
        let body = request_body(&spans);
        let sent = &body["resourceSpans"][0]["scopeSpans"][0]["spans"];
        assert_eq!(sent[3]["parentSpanId"], "b7ad6b7169203331");
        assert_eq!(sent[3]["status"]["code"], 2);
        assert_eq!(sent[0]["startTimeUnixNano"], "1700000002000000000");
    }

    #[test]
    fn without_a_traceparent_a_run_has_a_trace_of_its_own() {
        let a = TraceContext::of(None, "r1");
        assert_eq!(a, TraceContext::of(Some("garbage"), "r1"));
        assert_eq!(a.trace_id.len(), 32);
        assert!(a.parent_span_id.is_empty());
        assert_ne!(a.trace_id, TraceContext::of(None, "r2").trace_id);
    }

    #[tokio::test]
    async fn endpoints_are_checked() {
        assert!(Exporter::start("http://127.0.0.1:4318").is_ok());
        for bad in [
            "127.0.0.1:4318",
            "ftp://collector",
            "http://me:pw@collector:4318",
        ] {
            assert!(Exporter::start(bad).is_err(), "{bad}");
        }
    }
}
