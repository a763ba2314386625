//! What a run produced: per workflow, per job (each matrix combination), per step, with
//! outcomes, durations and act's wording for failures (`Job 'ID' failed`). Serialisable for
//! `azlin run -o json`.

use crate::expression::Value;
pub use crate::protocol::output::Annotation;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The result of a job (GitHub's `needs.<id>.result`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobResult {
    /// Every step succeeded (or failed with `continue-on-error`).
    Success,
    /// A step failed, the job timed out, or it could not run.
    Failure,
    /// The run was cancelled, or fail-fast cancelled it.
    Cancelled,
    /// Its `if` was false, a job it needs did not succeed, or its `runs-on` is not Linux.
    Skipped,
}

impl JobResult {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Success => "success",
            JobResult::Failure => "failure",
            JobResult::Cancelled => "cancelled",
            JobResult::Skipped => "skipped",
        }
    }
}

/// The outcome or conclusion of a step (GitHub's `steps.<id>.outcome` / `.conclusion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepOutcome {
    /// It succeeded.
    Success,
    /// It failed.
    Failure,
    /// It was cancelled.
    Cancelled,
    /// It did not run.
    Skipped,
}

impl StepOutcome {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Success => "success",
            StepOutcome::Failure => "failure",
            StepOutcome::Cancelled => "cancelled",
            StepOutcome::Skipped => "skipped",
        }
    }
}

/// One step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Position in the job (0-based).
    pub index: usize,
    /// `id`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name shown.
    pub name: String,
    /// Before `continue-on-error`.
    pub outcome: StepOutcome,
    /// After `continue-on-error`.
    pub conclusion: StepOutcome,
    /// Wall-clock time.
    pub duration_ms: u64,
    /// The script's exit code, when it ran to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The step's log file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// Annotations it wrote.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<Annotation>,
    /// Why it failed, when not just an exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What it wrote to `GITHUB_STEP_SUMMARY`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub summary: String,
}

/// One job run (one matrix combination).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReport {
    /// The job id.
    pub id: String,
    /// The name shown (with matrix values).
    pub name: String,
    /// The matrix combination, when the job has a matrix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<Value>,
    /// The result.
    pub result: JobResult,
    /// Whether the job's `continue-on-error` was true (a failure then fails neither the run nor
    /// the jobs that need it: see [`JobReport::conclusion`]).
    pub continue_on_error: bool,
    /// Wall-clock time.
    pub duration_ms: u64,
    /// The session that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The VM that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<String>,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<String>,
    /// Why it failed, when not a step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Its outputs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, String>,
    /// A step failed because its action is invalid (no `action.yml`, or a malformed one).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invalid_action: bool,
    /// Its cache lookups and saves (hit or miss, by key).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caches: Vec<azlin_services::CacheUse>,
    /// Its steps.
    pub steps: Vec<StepReport>,
}

impl JobReport {
    /// The result as the jobs that need this one see it (`needs.<id>.result`) and as the run
    /// counts it: a failure with `continue-on-error` is a success, the rest is [`Self::result`].
    pub fn conclusion(&self) -> JobResult {
        match self.result {
            JobResult::Failure if self.continue_on_error => JobResult::Success,
            other => other,
        }
    }
}

/// A session a workflow used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id.
    pub id: String,
    /// VM name.
    pub vm: String,
    /// Where the VM came from: `taken from pool 'NAME'`, `booted for the session`, or
    /// `cold boot: pool 'NAME' had no ready VM`.
    pub vm_origin: String,
    /// Microseconds the claim of a warm pool VM took (only for a VM taken from a pool).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_us: Option<u64>,
    /// Milliseconds from asking for its VM to having it.
    pub allocate_ms: u64,
    /// Milliseconds from asking for its VM to its first command having run.
    pub usable_ms: u64,
    /// How it ended.
    pub outcome: String,
    /// Whether its VM was released.
    pub released: bool,
    /// Whether its VM was kept because the session failed (`--keep-failed`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
    /// Cleanup commands that failed on its VM (each with its exit status and output).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanup_failures: Vec<String>,
}

/// One workflow file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowReport {
    /// The file.
    pub file: PathBuf,
    /// `name` (or the file path).
    pub name: String,
    /// The event it ran for.
    pub event: String,
    /// Whether `on` includes that event (if not, nothing ran).
    pub triggered: bool,
    /// Whether every job that ran succeeded.
    pub success: bool,
    /// Wall-clock time.
    pub duration_ms: u64,
    /// Its sessions.
    pub sessions: Vec<SessionSummary>,
    /// Its jobs, in the order they finished.
    pub jobs: Vec<JobReport>,
    /// Failures in act's wording (`Job 'ID' failed`).
    pub errors: Vec<String>,
}

/// A whole `run_workflows` call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The run's id (`GITHUB_RUN_ID`): its artifacts are found by it.
    #[serde(default)]
    pub run_id: String,
    /// Whether every job that ran in every workflow succeeded.
    pub success: bool,
    /// Wall-clock time.
    pub duration_ms: u64,
    /// One per file, in the order given.
    pub workflows: Vec<WorkflowReport>,
    /// Every failure, in act's wording.
    pub errors: Vec<String>,
}

impl RunReport {
    /// The failures as one message (`None` on success).
    pub fn error_message(&self) -> Option<String> {
        (!self.errors.is_empty()).then(|| self.errors.join("; "))
    }

    /// Every job report of every workflow.
    pub fn jobs(&self) -> impl Iterator<Item = &JobReport> {
        self.workflows.iter().flat_map(|w| w.jobs.iter())
    }
}
