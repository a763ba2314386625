//! Results back to GitHub, from the workflow events on the audit trail: a check run (or a commit
//! status) per job, created when the job starts and completed with its conclusion and a summary.
//! What was posted is recorded per run and job, so a job started again (its run redelivered to
//! another runner) updates its check run instead of making a second one, and a job's final
//! update is posted once.

use crate::github::{
    CheckRunCreate, CheckRunOutput, CheckRunUpdate, CheckStatus, Conclusion, GitHub, GitHubError,
    StatusCreate, StatusState,
};
use crate::metrics::Metrics;
use crate::queue::{CheckRecord, CiBus};
use crate::run_event::{JobEvent, RunEvent};
use azlin_control::bus::BusError;
use azlin_core::config::ReportMode;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Why an event could not be reported (it is delivered again).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// GitHub failed after its retries.
    #[error("{0}")]
    GitHub(#[from] GitHubError),
    /// The record of what was posted could not be read or written.
    #[error("{0}")]
    Bus(#[from] BusError),
}

/// Posts results and counts them.
pub struct Reporter {
    bus: CiBus,
    github: Option<GitHub>,
    mode: ReportMode,
    metrics: Arc<Metrics>,
    /// Jobs whose first step was seen (job-start latency is measured once per job).
    started: Mutex<HashSet<String>>,
}

impl Reporter {
    /// A reporter posting through `github` (nothing is posted without one).
    pub fn new(
        bus: CiBus,
        github: Option<GitHub>,
        mode: ReportMode,
        metrics: Arc<Metrics>,
    ) -> Reporter {
        Reporter {
            bus,
            github,
            mode,
            metrics,
            started: Mutex::new(HashSet::new()),
        }
    }

    /// Reports one workflow event.
    pub async fn handle(&self, event: &RunEvent) -> Result<(), ReportError> {
        match event {
            RunEvent::JobStarted(job) => {
                if let Some(us) = job.claim_us {
                    self.metrics.vm_allocated(Duration::from_micros(us));
                }
                self.job_started(job).await.map(drop)
            }
            RunEvent::JobCompleted(job) => self.job_completed(job).await,
            RunEvent::StepStarted(step) => {
                let key = check_key(&step.run_id, &step.job);
                let first = self
                    .started
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key);
                if first {
                    self.metrics.job_started(since(step.received_ms));
                }
                Ok(())
            }
            RunEvent::Complete(run) | RunEvent::Failed(run) => {
                self.metrics.run_ended(&run.conclusion);
                Ok(())
            }
            RunEvent::Status(_) | RunEvent::StepCompleted(_) => Ok(()),
        }
    }

    /// Creates the job's check run unless it has one; returns its record.
    async fn job_started(&self, job: &JobEvent) -> Result<Option<CheckRecord>, ReportError> {
        let Some(github) = &self.github else {
            return Ok(None);
        };
        let key = check_key(&job.run_id, &job.job);
        if let Some(record) = self.bus.check(&key).await? {
            return Ok(Some(record));
        }
        let id = match self.mode {
            ReportMode::Checks => {
                github
                    .create_check_run(
                        &job.repository,
                        &CheckRunCreate {
                            name: job.job.clone(),
                            head_sha: job.sha.clone(),
                            status: CheckStatus::InProgress,
                            started_at: jiff::Timestamp::now(),
                            details_url: None,
                            external_id: Some(job.run_id.clone()),
                        },
                    )
                    .await?
            }
            ReportMode::Statuses => {
                github
                    .create_status(
                        &job.repository,
                        &job.sha,
                        &StatusCreate {
                            state: StatusState::Pending,
                            context: status_context(job),
                            description: format!("running on {}", job.worker),
                            target_url: None,
                        },
                    )
                    .await?;
                0
            }
        };
        let record = CheckRecord {
            id,
            completed: false,
        };
        self.bus.set_check(&key, &record).await?;
        Ok(Some(record))
    }

    async fn job_completed(&self, job: &JobEvent) -> Result<(), ReportError> {
        let Some(github) = &self.github else {
            return Ok(());
        };
        let Some(record) = self.job_started(job).await? else {
            return Ok(());
        };
        if record.completed {
            return Ok(());
        }
        let conclusion = job.conclusion.as_deref().unwrap_or("failure");
        match self.mode {
            ReportMode::Checks => {
                github
                    .update_check_run(
                        &job.repository,
                        record.id,
                        &CheckRunUpdate {
                            status: None,
                            conclusion: Some(check_conclusion(conclusion)),
                            completed_at: Some(jiff::Timestamp::now()),
                            output: Some(output(job, conclusion)),
                        },
                    )
                    .await?;
            }
            ReportMode::Statuses => {
                let state = match conclusion {
                    "success" | "skipped" => StatusState::Success,
                    "failure" => StatusState::Failure,
                    _ => StatusState::Error,
                };
                github
                    .create_status(
                        &job.repository,
                        &job.sha,
                        &StatusCreate {
                            state,
                            context: status_context(job),
                            description: format!("{} on azlin", conclusion),
                            target_url: None,
                        },
                    )
                    .await?;
            }
        }
        let key = check_key(&job.run_id, &job.job);
        self.bus
            .set_check(
                &key,
                &CheckRecord {
                    id: record.id,
                    completed: true,
                },
            )
            .await?;
        Ok(())
    }
}

fn since(received_ms: u64) -> Duration {
    let now = jiff::Timestamp::now().as_millisecond();
    Duration::from_millis(u64::try_from(now).unwrap_or(0).saturating_sub(received_ms))
}

/// The key of a job's check run: the run, then a hash of the job's name (names hold any
/// character; keys do not).
pub fn check_key(run_id: &str, job: &str) -> String {
    let digest = Sha256::digest(job.as_bytes());
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("{run_id}.{hex}")
}

fn status_context(job: &JobEvent) -> String {
    format!("azlin/{}/{}", job.workflow, job.job)
}

fn check_conclusion(conclusion: &str) -> Conclusion {
    match conclusion {
        "success" => Conclusion::Success,
        "skipped" => Conclusion::Skipped,
        "cancelled" => Conclusion::Cancelled,
        _ => Conclusion::Failure,
    }
}

/// The check run's title and summary: the steps, then what the job wrote to its step summary.
fn output(job: &JobEvent, conclusion: &str) -> CheckRunOutput {
    let mut summary = String::from("| step | result | time |\n| --- | --- | --- |\n");
    for step in &job.steps {
        summary.push_str(&format!(
            "| {} | {} | {:.1}s |\n",
            step.name.replace('|', "\\|"),
            step.conclusion,
            step.duration_ms as f64 / 1000.0
        ));
    }
    if let Some(error) = &job.error {
        summary.push_str(&format!("\n{error}\n"));
    }
    CheckRunOutput {
        title: format!("{} {conclusion}", job.job),
        summary,
        text: (!job.summary.is_empty()).then(|| job.summary.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_keys_are_valid_bucket_keys_per_run_and_job() {
        let key = check_key("d-1-abc", "build (ubuntu-latest, 18)");
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "{key}"
        );
        assert_ne!(key, check_key("d-1-abc", "build (ubuntu-latest, 20)"));
        assert_ne!(key, check_key("d-2-abc", "build (ubuntu-latest, 18)"));
    }
}
