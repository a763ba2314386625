//! The bus messages of CI runs: the request a runner takes, and the events and log lines it
//! publishes. Every payload carries `schema: 1`, like the VM messages.

pub use azlin_core::event::SCHEMA;
use azlin_core::event::{DecodeError, decode_payload as decode, subject};
use serde::{Deserialize, Serialize};

/// `workflow.run.request`: one workflow of one delivery, for a runner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRequested {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// `<delivery>-<workflow hash>`: the idempotency key.
    pub run_id: String,
    /// The webhook delivery it came from.
    pub delivery: String,
    /// `OWNER/NAME`.
    pub repository: String,
    /// The workflow file, relative to the repository (`.github/workflows/ci.yml`).
    pub workflow: String,
    /// The event name (`push`, …).
    pub event: String,
    /// The event payload (`github.event`).
    pub payload: serde_json::Value,
    /// The commit.
    pub sha: String,
    /// The ref (`refs/heads/main`).
    pub git_ref: String,
    /// The object holding the repository at `sha`.
    pub snapshot: String,
    /// `runs-on` labels its jobs ask for beyond the Linux ones; a runner takes the run only if
    /// it serves all of them.
    #[serde(default)]
    pub labels: Vec<String>,
    /// When the webhook arrived (milliseconds since the epoch): job-start latency is measured
    /// from here.
    pub received_ms: u64,
}

/// `workflow.run.status`: progress of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStatus {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The run.
    pub run_id: String,
    /// The runner's id.
    pub worker: String,
    /// 1 for the first delivery.
    pub attempt: u32,
    /// What is happening.
    pub message: String,
    /// When (RFC 3339).
    pub at: String,
}

/// `workflow.run.complete` and `workflow.run.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnded {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The run.
    pub run_id: String,
    /// `OWNER/NAME`.
    pub repository: String,
    /// The workflow file.
    pub workflow: String,
    /// `success`, `failure` or `cancelled`.
    pub conclusion: String,
    /// Why it failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// The runner's id.
    pub worker: String,
    /// When (RFC 3339).
    pub at: String,
}

/// A step's line in a job's summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLine {
    /// Its name.
    pub name: String,
    /// `success`, `failure`, `skipped` or `cancelled`.
    pub conclusion: String,
    /// How long it took.
    pub duration_ms: u64,
}

/// `workflow.job.started` and `workflow.job.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The run.
    pub run_id: String,
    /// The job's display name (with matrix values): one check run each.
    pub job: String,
    /// The workflow's name.
    pub workflow: String,
    /// `OWNER/NAME`.
    pub repository: String,
    /// The commit.
    pub sha: String,
    /// The runner's id.
    pub worker: String,
    /// The VM it runs on (empty for a skipped job).
    #[serde(default)]
    pub vm: String,
    /// The warm pool the VM came from, if it came ready from one.
    #[serde(default)]
    pub pool: Option<String>,
    /// How long taking the VM from the pool took (microseconds).
    #[serde(default)]
    pub claim_us: Option<u64>,
    /// `success`, `failure`, `skipped` or `cancelled` (completed only).
    #[serde(default)]
    pub conclusion: Option<String>,
    /// Its steps (completed only).
    #[serde(default)]
    pub steps: Vec<StepLine>,
    /// What its steps wrote to `GITHUB_STEP_SUMMARY` (completed only).
    #[serde(default)]
    pub summary: String,
    /// Why it failed or was skipped.
    #[serde(default)]
    pub error: Option<String>,
    /// When the webhook arrived (ms since the epoch).
    pub received_ms: u64,
    /// When (RFC 3339).
    pub at: String,
}

/// `workflow.step.started` and `workflow.step.completed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepEvent {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The run.
    pub run_id: String,
    /// The job's display name.
    pub job: String,
    /// The step's name.
    pub step: String,
    /// How it ended (completed only).
    #[serde(default)]
    pub conclusion: Option<String>,
    /// When the webhook arrived (ms since the epoch).
    pub received_ms: u64,
    /// When (RFC 3339).
    pub at: String,
}

/// One line of step output on `workflow.log.<run_id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The job's display name.
    pub job: String,
    /// The step's name.
    pub step: String,
    /// The line (already masked).
    pub line: String,
}

/// A workflow event as read from the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// `workflow.run.status`
    Status(RunStatus),
    /// `workflow.run.complete`
    Complete(RunEnded),
    /// `workflow.run.failed`
    Failed(RunEnded),
    /// `workflow.job.started`
    JobStarted(JobEvent),
    /// `workflow.job.completed`
    JobCompleted(JobEvent),
    /// `workflow.step.started`
    StepStarted(StepEvent),
    /// `workflow.step.completed`
    StepCompleted(StepEvent),
}

impl RunRequested {
    /// Reads a run request.
    pub fn decode(bytes: &[u8]) -> Result<RunRequested, DecodeError> {
        decode(subject::RUN_REQUEST, bytes)
    }
}

impl RunEvent {
    /// The subject it is published on.
    pub fn subject(&self) -> &'static str {
        match self {
            RunEvent::Status(_) => subject::RUN_STATUS,
            RunEvent::Complete(_) => subject::RUN_COMPLETE,
            RunEvent::Failed(_) => subject::RUN_FAILED,
            RunEvent::JobStarted(_) => subject::JOB_STARTED,
            RunEvent::JobCompleted(_) => subject::JOB_COMPLETED,
            RunEvent::StepStarted(_) => subject::STEP_STARTED,
            RunEvent::StepCompleted(_) => subject::STEP_COMPLETED,
        }
    }

    /// The run it belongs to.
    pub fn run_id(&self) -> &str {
        match self {
            RunEvent::Status(e) => &e.run_id,
            RunEvent::Complete(e) | RunEvent::Failed(e) => &e.run_id,
            RunEvent::JobStarted(e) | RunEvent::JobCompleted(e) => &e.run_id,
            RunEvent::StepStarted(e) | RunEvent::StepCompleted(e) => &e.run_id,
        }
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        let encoded = match self {
            RunEvent::Status(e) => serde_json::to_vec(e),
            RunEvent::Complete(e) | RunEvent::Failed(e) => serde_json::to_vec(e),
            RunEvent::JobStarted(e) | RunEvent::JobCompleted(e) => serde_json::to_vec(e),
            RunEvent::StepStarted(e) | RunEvent::StepCompleted(e) => serde_json::to_vec(e),
        };
        // Plain structs of strings and numbers always serialise.
        encoded.unwrap_or_default()
    }

    /// Reads a workflow event that arrived on `subject`.
    pub fn decode(subject: &str, bytes: &[u8]) -> Result<RunEvent, DecodeError> {
        match subject {
            subject::RUN_STATUS => decode(subject, bytes).map(RunEvent::Status),
            subject::RUN_COMPLETE => decode(subject, bytes).map(RunEvent::Complete),
            subject::RUN_FAILED => decode(subject, bytes).map(RunEvent::Failed),
            subject::JOB_STARTED => decode(subject, bytes).map(RunEvent::JobStarted),
            subject::JOB_COMPLETED => decode(subject, bytes).map(RunEvent::JobCompleted),
            subject::STEP_STARTED => decode(subject, bytes).map(RunEvent::StepStarted),
            subject::STEP_COMPLETED => decode(subject, bytes).map(RunEvent::StepCompleted),
            other => Err(DecodeError::UnknownSubject(other.to_string())),
        }
    }
}

/// The subject of `run_id`'s log lines.
pub fn log_subject(run_id: &str) -> String {
    format!("{}.{run_id}", subject::LOG_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_bad_ones_are_told_apart() {
        let event = RunEvent::JobStarted(JobEvent {
            schema: SCHEMA,
            run_id: "d1-ab".into(),
            job: "build".into(),
            workflow: "CI".into(),
            repository: "octo/app".into(),
            sha: "a".repeat(40),
            worker: "w1".into(),
            vm: "run-1".into(),
            pool: None,
            claim_us: None,
            conclusion: None,
            steps: Vec::new(),
            summary: String::new(),
            error: None,
            received_ms: 1,
            at: "2026-01-01T00:00:00Z".into(),
        });
        let bytes = event.encode();
        assert_eq!(RunEvent::decode(event.subject(), &bytes).unwrap(), event);
        assert!(matches!(
            RunEvent::decode(subject::JOB_STARTED, br#"{"schema":2}"#),
            Err(DecodeError::UnknownSchema { version: 2, .. })
        ));
        assert!(matches!(
            RunRequested::decode(b"{"),
            Err(DecodeError::Malformed { .. })
        ));
        assert!(RunEvent::decode("workflow.nope", b"{}").is_err());
        assert_eq!(log_subject("d1-ab"), "workflow.log.d1-ab");
    }
}
