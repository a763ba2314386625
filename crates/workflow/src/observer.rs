//! Live progress: the executor calls an [`Observer`] as jobs and steps start, print and end. The
//! CLI prints `[job/step] line`.

use crate::report::{JobReport, StepReport, WorkflowReport};
use crate::session::VmOrigin;
use azlin_remote::OutputStream;

/// Where something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin<'a> {
    /// The workflow's name.
    pub workflow: &'a str,
    /// The job's display name (with matrix values).
    pub job: &'a str,
    /// The step's display name (empty for job-level messages).
    pub step: &'a str,
}

/// Receives progress. Every method has a default that ignores it.
pub trait Observer: Send + Sync {
    /// A job is starting on `vm`, which came from `origin`.
    fn job_started(&self, _at: Origin<'_>, _vm: &str, _origin: &VmOrigin) {}
    /// A step is starting.
    fn step_started(&self, _at: Origin<'_>) {}
    /// A line of output (already masked).
    fn output(&self, _at: Origin<'_>, _stream: OutputStream, _line: &str) {}
    /// A step ended.
    fn step_finished(&self, _at: Origin<'_>, _report: &StepReport) {}
    /// A job ended (or was skipped).
    fn job_finished(&self, _workflow: &str, _report: &JobReport) {}
    /// A workflow ended.
    fn workflow_finished(&self, _report: &WorkflowReport) {}
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullObserver;

impl Observer for NullObserver {}
