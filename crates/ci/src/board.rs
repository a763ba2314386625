//! What the dashboard shows of runs: each run with its jobs and their steps, kept up to date
//! from the workflow events, and a broadcast of every change for the pages that are open.

use crate::run_event::RunEvent;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::RwLock;
use tokio::sync::broadcast;

/// The most runs kept in memory (the oldest are dropped first).
const MAX_RUNS: usize = 500;

/// A step as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepView {
    /// Its name.
    pub name: String,
    /// `running`, or how it ended.
    pub state: String,
}

/// A job as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobView {
    /// Its display name.
    pub name: String,
    /// `running`, or how it ended.
    pub state: String,
    /// The VM it runs on.
    pub vm: String,
    /// Its steps so far.
    pub steps: Vec<StepView>,
}

/// A run as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunView {
    /// Its id.
    pub run_id: String,
    /// `OWNER/NAME`.
    pub repository: String,
    /// The workflow (its name once a job started, its file before).
    pub workflow: String,
    /// The commit.
    pub sha: String,
    /// `queued`, `running`, or how it ended.
    pub state: String,
    /// The runner that has it.
    pub worker: String,
    /// Why it failed.
    pub error: Option<String>,
    /// Its jobs so far.
    pub jobs: Vec<JobView>,
}

impl RunView {
    fn new(run_id: &str) -> RunView {
        RunView {
            run_id: run_id.to_string(),
            repository: String::new(),
            workflow: String::new(),
            sha: String::new(),
            state: "queued".into(),
            worker: String::new(),
            error: None,
            jobs: Vec::new(),
        }
    }

    fn job(&mut self, name: &str) -> &mut JobView {
        if let Some(i) = self.jobs.iter().position(|j| j.name == name) {
            return &mut self.jobs[i];
        }
        self.jobs.push(JobView {
            name: name.to_string(),
            state: "running".into(),
            vm: String::new(),
            steps: Vec::new(),
        });
        let last = self.jobs.len() - 1;
        &mut self.jobs[last]
    }
}

/// The runs the dashboard shows, in the order they were first seen.
pub struct Board {
    runs: RwLock<(Vec<String>, BTreeMap<String, RunView>)>,
    changes: broadcast::Sender<RunView>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            runs: RwLock::new((Vec::new(), BTreeMap::new())),
            changes: broadcast::channel(1024).0,
        }
    }
}

impl std::fmt::Debug for Board {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Board").finish_non_exhaustive()
    }
}

impl Board {
    /// Applies a workflow event and tells the open pages.
    pub fn apply(&self, event: &RunEvent) {
        let view = {
            let mut guard = self
                .runs
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let (order, runs) = &mut *guard;
            let id = event.run_id();
            if !runs.contains_key(id) {
                order.push(id.to_string());
                if order.len() > MAX_RUNS {
                    let oldest = order.remove(0);
                    runs.remove(&oldest);
                }
            }
            let run = runs
                .entry(id.to_string())
                .or_insert_with(|| RunView::new(id));
            update(run, event);
            run.clone()
        };
        // An error only says that no page is open.
        self.changes.send(view).ok();
    }

    /// Every run, newest first.
    pub fn runs(&self) -> Vec<RunView> {
        let guard = self
            .runs
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (order, runs) = &*guard;
        order
            .iter()
            .rev()
            .filter_map(|id| runs.get(id).cloned())
            .collect()
    }

    /// Changes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<RunView> {
        self.changes.subscribe()
    }
}

fn update(run: &mut RunView, event: &RunEvent) {
    match event {
        RunEvent::Status(status) => {
            run.state = "running".into();
            run.worker = status.worker.clone();
        }
        RunEvent::Complete(end) | RunEvent::Failed(end) => {
            run.repository = end.repository.clone();
            if run.workflow.is_empty() {
                run.workflow = end.workflow.clone();
            }
            run.state = end.conclusion.clone();
            run.worker = end.worker.clone();
            run.error = end.error.clone();
        }
        RunEvent::JobStarted(job) => {
            run.repository = job.repository.clone();
            run.workflow = job.workflow.clone();
            run.sha = job.sha.clone();
            run.state = "running".into();
            let view = run.job(&job.job);
            view.state = "running".into();
            view.vm = job.vm.clone();
            // A job started again (its run went to another runner) starts its steps afresh.
            view.steps.clear();
        }
        RunEvent::JobCompleted(job) => {
            run.repository = job.repository.clone();
            run.workflow = job.workflow.clone();
            run.sha = job.sha.clone();
            let view = run.job(&job.job);
            view.state = job.conclusion.clone().unwrap_or_else(|| "failure".into());
            view.steps = job
                .steps
                .iter()
                .map(|s| StepView {
                    name: s.name.clone(),
                    state: s.conclusion.clone(),
                })
                .collect();
        }
        RunEvent::StepStarted(step) => {
            run.job(&step.job).steps.push(StepView {
                name: step.step.clone(),
                state: "running".into(),
            });
        }
        RunEvent::StepCompleted(step) => {
            let job = run.job(&step.job);
            let state = step.conclusion.clone().unwrap_or_else(|| "failure".into());
            match job
                .steps
                .iter_mut()
                .rev()
                .find(|s| s.name == step.step && s.state == "running")
            {
                Some(view) => view.state = state,
                None => job.steps.push(StepView {
                    name: step.step.clone(),
                    state,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_event::{JobEvent, RunEnded, SCHEMA, StepEvent};

    fn job(run: &str, conclusion: Option<&str>) -> JobEvent {
        JobEvent {
            schema: SCHEMA,
            run_id: run.into(),
            job: "build".into(),
            workflow: "CI".into(),
            repository: "octo/app".into(),
            sha: "a".repeat(40),
            worker: "w".into(),
            vm: "vm-1".into(),
            pool: None,
            claim_us: None,
            conclusion: conclusion.map(str::to_string),
            steps: Vec::new(),
            summary: String::new(),
            error: None,
            received_ms: 0,
            at: String::new(),
        }
    }

    fn step(run: &str, conclusion: Option<&str>) -> StepEvent {
        StepEvent {
            schema: SCHEMA,
            run_id: run.into(),
            job: "build".into(),
            step: "make".into(),
            conclusion: conclusion.map(str::to_string),
            received_ms: 0,
            at: String::new(),
        }
    }

    #[test]
    fn events_build_runs_jobs_and_steps_and_are_broadcast() {
        let board = Board::default();
        let mut changes = board.subscribe();
        board.apply(&RunEvent::JobStarted(job("r1", None)));
        board.apply(&RunEvent::StepStarted(step("r1", None)));
        let runs = board.runs();
        assert_eq!(runs[0].jobs[0].steps[0].state, "running");
        board.apply(&RunEvent::StepCompleted(step("r1", Some("success"))));
        board.apply(&RunEvent::Complete(RunEnded {
            schema: SCHEMA,
            run_id: "r1".into(),
            repository: "octo/app".into(),
            workflow: ".github/workflows/ci.yml".into(),
            conclusion: "success".into(),
            error: None,
            worker: "w".into(),
            at: String::new(),
        }));
        board.apply(&RunEvent::JobStarted(job("r2", None)));
        let runs = board.runs();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].run_id, "r2", "newest first");
        let r1 = &runs[1];
        assert_eq!((r1.state.as_str(), r1.workflow.as_str()), ("success", "CI"));
        assert_eq!(r1.jobs[0].steps[0].state, "success");
        assert_eq!(changes.try_recv().unwrap().run_id, "r1");
    }
}
