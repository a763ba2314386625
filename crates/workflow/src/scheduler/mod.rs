//! One workflow run: the job graph in `needs` order, job `if` (implicitly `success()` over every
//! job it needs, directly or not, as act does), matrices, `fail-fast`, `max-parallel`, jobs
//! skipped for non-Linux `runs-on`, and the sessions that give the jobs their VMs: one for the
//! whole workflow (`--vm-scope workflow`, jobs one after another) or one per job run
//! (`--vm-scope job`, independent jobs in parallel).
//!
//! After the run is cancelled, jobs whose `if` still holds (`always()`, `cancelled()`) run as
//! usual (they are not cancelled themselves) and the others end `cancelled`;
//! [`CANCEL_TIMEOUT`] after the cancellation, the run stops whatever still runs.

use crate::context::{Layout, RunFacts, github_context, needs_entry, object_of};
use crate::expression::{Condition, Object, Scope, Status, Template, Value};
use crate::job::{CANCEL_TIMEOUT, Instance, InstanceOutcome, JobEnv, run_instance, slug};
use crate::matrix::{display_name, expand, resolve_expressions};
use crate::model::{Job, MatrixSource, graph};
use crate::observer::Observer;
use crate::options::VmScope;

mod reusable;
use crate::action::source::ActionSource;
use crate::platform::unsupported_label;
use crate::report::{JobReport, JobResult, SessionSummary, WorkflowReport};
use crate::session::{Session, SessionManager, SessionState, VmOrigin};
use futures::stream::{FuturesUnordered, StreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex as StdMutex;
use std::time::Instant;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;

/// The repository archive `actions/checkout` copies, made once per run.
type Archive = tokio::sync::OnceCell<Result<Arc<Vec<u8>>, String>>;

/// How a finished job looks to the jobs that need it.
#[derive(Debug, Clone)]
struct Done {
    result: JobResult,
    outputs: Object,
}

/// The session shared by every job with `--vm-scope workflow`, opened when the first job that
/// runs steps needs it.
enum Shared {
    Unopened,
    Open(Box<Session>),
    Failed(String),
}

/// A job, planned: everything known before its runs start.
struct Planned<'a> {
    job: &'a Job,
    instances: Vec<Instance<'a>>,
    skip: Vec<Option<String>>,
    fail_fast: bool,
    max_parallel: usize,
}

/// What one job (all its runs) produced.
struct JobDone {
    id: String,
    done: Done,
    reports: Vec<JobReport>,
    sessions: Vec<SessionSummary>,
}

impl JobDone {
    /// `job` ended with `reports` (its result is theirs together) and `outputs`.
    fn new(
        job: &Job,
        reports: Vec<JobReport>,
        sessions: Vec<SessionSummary>,
        outputs: Object,
    ) -> JobDone {
        JobDone {
            id: job.id.clone(),
            done: Done {
                result: aggregate(&reports),
                outputs,
            },
            reports,
            sessions,
        }
    }
}

pub(crate) struct WorkflowRun<'a> {
    pub facts: &'a RunFacts,
    pub manager: &'a SessionManager,
    pub observer: &'a Arc<dyn Observer>,
    /// The run's cancellation (Ctrl-C): jobs and steps whose `if` holds once it fired
    /// (`always()`, `cancelled()`) still run.
    pub cancel: &'a CancellationToken,
    /// Fires [`CANCEL_TIMEOUT`] after `cancel` and stops whatever still runs; a new token.
    pub stop: CancellationToken,
    pub scope: VmScope,
    /// `runs-on` labels served beyond the Linux ones.
    pub runner_labels: &'a [String],
    /// The jobs to run (all, or `--job` and what it needs).
    pub selected: Vec<String>,
    /// Where remote actions come from.
    pub actions: &'a ActionSource,
    /// The action folders already copied to a VM.
    pub uploaded: &'a StdMutex<HashSet<String>>,
    /// The cache and artifact services jobs are pointed at, when the run has them.
    pub services: Option<&'a azlin_services::Services>,
}

fn skipped_report(job: &Job, name: String, reason: String, result: JobResult) -> JobReport {
    JobReport {
        id: job.id.clone(),
        name,
        matrix: None,
        result,
        continue_on_error: false,
        duration_ms: 0,
        session: None,
        vm: None,
        skip_reason: (result == JobResult::Skipped).then(|| reason.clone()),
        error: (result != JobResult::Skipped).then_some(reason),
        outputs: BTreeMap::new(),
        invalid_action: false,
        caches: Vec::new(),
        steps: Vec::new(),
    }
}

/// The result of a job from the conclusions of its runs.
fn aggregate(reports: &[JobReport]) -> JobResult {
    let any = |result| reports.iter().any(|r| r.conclusion() == result);
    if any(JobResult::Failure) {
        JobResult::Failure
    } else if any(JobResult::Cancelled) {
        JobResult::Cancelled
    } else if !reports.is_empty() && reports.iter().all(|r| r.conclusion() == JobResult::Skipped) {
        JobResult::Skipped
    } else {
        JobResult::Success
    }
}

impl WorkflowRun<'_> {
    pub async fn run(self) -> WorkflowReport {
        let started = Instant::now();
        let wf = &self.facts.workflow;
        let mut report = WorkflowReport {
            file: wf.path.clone(),
            name: wf.name.clone(),
            event: self.facts.event_name.clone(),
            triggered: wf.triggered_by(&self.facts.event_name),
            success: true,
            duration_ms: 0,
            sessions: Vec::new(),
            jobs: Vec::new(),
            errors: Vec::new(),
        };
        if report.triggered && !self.selected.is_empty() {
            let (jobs, sessions) = self.run_graph().await;
            report.jobs = jobs;
            report.sessions = sessions;
        }
        // act's wording, one error per failed job, in file order.
        for job in &wf.jobs {
            let runs: Vec<&JobReport> = report.jobs.iter().filter(|r| r.id == job.id).collect();
            if runs.iter().any(|r| r.conclusion() == JobResult::Failure) {
                report.errors.push(format!("Job '{}' failed", job.id));
            } else if runs.iter().any(|r| r.result == JobResult::Cancelled) {
                report
                    .errors
                    .push(format!("Job '{}' was cancelled", job.id));
            }
        }
        // act's wording for a run that failed on an action it could not read, and why.
        let invalid: Vec<&JobReport> = report
            .jobs
            .iter()
            .filter(|r| r.invalid_action && r.conclusion() == JobResult::Failure)
            .collect();
        if !invalid.is_empty() {
            let reasons: Vec<String> = invalid
                .iter()
                .flat_map(|r| r.steps.iter().filter_map(|s| s.error.clone()))
                .collect();
            report
                .errors
                .push("jobs failed due to invalid action".to_string());
            report.errors.extend(reasons);
        }
        report.success = report.errors.is_empty();
        report.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.observer.workflow_finished(&report);
        report
    }

    async fn run_graph(&self) -> (Vec<JobReport>, Vec<SessionSummary>) {
        let archive = tokio::sync::OnceCell::new();
        let shared = Mutex::new(Shared::Unopened);
        let parallel = self.scope == VmScope::Job;
        let (reports, mut sessions, _) = self
            .run_jobs((!parallel).then_some(&shared), &archive)
            .await;
        if let Shared::Open(session) =
            std::mem::replace(&mut *shared.lock().await, Shared::Unopened)
        {
            let failed = reports.iter().any(|r| r.conclusion() == JobResult::Failure);
            let outcome = if self.cancel.is_cancelled() {
                SessionState::Cancelled
            } else if failed {
                SessionState::Failed
            } else {
                SessionState::Completed
            };
            sessions.push(close(*session, outcome).await);
        }
        (reports, sessions)
    }

    /// Runs the selected jobs in `needs` order, on the `shared` session (`--vm-scope workflow`)
    /// or on a session each (`None`); returns their reports, the sessions they closed and how
    /// each job ended.
    async fn run_jobs(
        &self,
        shared: Option<&Mutex<Shared>>,
        archive: &Archive,
    ) -> (Vec<JobReport>, Vec<SessionSummary>, HashMap<String, Done>) {
        let wf = &self.facts.workflow;
        let mut done: HashMap<String, Done> = HashMap::new();
        let mut reports = Vec::new();
        let mut sessions = Vec::new();
        let mut started: Vec<String> = Vec::new();
        let ready = |done: &HashMap<String, Done>, started: &[String]| -> Vec<&Job> {
            wf.jobs
                .iter()
                .filter(|j| self.selected.contains(&j.id) && !started.contains(&j.id))
                .filter(|j| j.needs.iter().all(|n| done.contains_key(n)))
                .collect()
        };
        let mut running = FuturesUnordered::new();
        let stop_after_cancel = async {
            self.cancel.cancelled().await;
            tokio::time::sleep(CANCEL_TIMEOUT).await;
        };
        tokio::pin!(stop_after_cancel);
        loop {
            let next = ready(&done, &started);
            let parallel = shared.is_none();
            for job in next.into_iter().take(if parallel { usize::MAX } else { 1 }) {
                if !parallel && !running.is_empty() {
                    break;
                }
                started.push(job.id.clone());
                let snapshot = done.clone();
                running.push(async move { self.run_job(job, &snapshot, shared, archive).await });
            }
            let finished = tokio::select! {
                finished = running.next() => finished,
                () = &mut stop_after_cancel, if !self.stop.is_cancelled() => {
                    self.stop.cancel();
                    continue;
                }
            };
            let Some(finished) = finished else {
                break;
            };
            done.insert(finished.id, finished.done);
            reports.extend(finished.reports);
            sessions.extend(finished.sessions);
        }
        (reports, sessions, done)
    }

    fn job_contexts(&self, job: &Job, needs: &Object) -> Object {
        let mut ctx = Object::new();
        let layout = Layout::new("", self.facts.repo_name());
        ctx.insert(
            "github",
            Value::Object(github_context(self.facts, &job.id, &layout)),
        );
        ctx.insert("needs", Value::Object(needs.clone()));
        ctx.insert("vars", Value::Object(self.facts.vars.clone()));
        ctx.insert("inputs", Value::Object(self.facts.inputs.clone()));
        ctx.insert("secrets", Value::Object(self.facts.secrets.clone()));
        ctx.insert("env", Value::Object(object_of(&self.facts.workflow.env)));
        ctx
    }

    async fn run_job(
        &self,
        job: &Job,
        done: &HashMap<String, Done>,
        shared: Option<&Mutex<Shared>>,
        archive: &Archive,
    ) -> JobDone {
        let mut needs = Object::new();
        for n in &job.needs {
            if let Some(d) = done.get(n) {
                needs.insert(n.clone(), needs_entry(d.result.as_str(), &d.outputs));
            }
        }
        let finish = |reports: Vec<JobReport>, sessions: Vec<SessionSummary>, outputs: Object| {
            for r in &reports {
                self.observer.job_finished(&self.facts.workflow.name, r);
            }
            JobDone::new(job, reports, sessions, outputs)
        };
        let one = |name: String, reason: String, result: JobResult| {
            finish(
                vec![skipped_report(job, name, reason, result)],
                Vec::new(),
                Object::new(),
            )
        };
        let cancelled_run = || {
            one(
                job.id.clone(),
                "the run was cancelled".to_string(),
                JobResult::Cancelled,
            )
        };
        if self.stop.is_cancelled() {
            return cancelled_run();
        }
        // Read once: a job the cancellation finds starting is treated as starting after it.
        let cancelled = self.cancel.is_cancelled();
        let graph = self.facts.workflow.graph();
        let ancestors = graph::ancestors(&graph, &job.id);
        let result_of = |id: &str| done.get(id).map(|d| d.result);
        let status = Status {
            success: !cancelled
                && ancestors
                    .iter()
                    .all(|a| result_of(a) == Some(JobResult::Success)),
            failure: ancestors
                .iter()
                .any(|a| result_of(a) == Some(JobResult::Failure)),
            cancelled,
        };
        let contexts = self.job_contexts(job, &needs);
        // No `hashFiles` at job level: there is no workspace yet (GitHub refuses it too).
        let scope = Scope {
            contexts: &contexts,
            status,
            hash_files: None,
        };
        let condition = job.condition.as_deref().unwrap_or("");
        match Condition::parse(condition).and_then(|c| c.holds(&scope)) {
            Ok(true) => {}
            Ok(false) if cancelled => return cancelled_run(),
            Ok(false) => {
                let reason = if condition.trim().is_empty() && !status.success {
                    "a job it needs did not succeed".to_string()
                } else {
                    format!("its condition is false: if: {}", condition.trim())
                };
                return one(job.id.clone(), reason, JobResult::Skipped);
            }
            Err(e) => {
                return one(
                    job.id.clone(),
                    format!("evaluating if: {}", e.message),
                    JobResult::Failure,
                );
            }
        }
        if let Some(uses) = &job.uses {
            return self.call(job, uses, &contexts, shared, archive).await;
        }
        let planned = match self.plan(job, &contexts, &needs) {
            Ok(p) => p,
            Err(e) => return one(job.id.clone(), e, JobResult::Failure),
        };
        // A job that starts after the run was cancelled is not cancelled itself (its steps run
        // as usual); only the run's stop ends it.
        let base = if cancelled { &self.stop } else { self.cancel };
        let (reports, sessions, outputs) = self.run_planned(planned, base, shared, archive).await;
        finish(reports, sessions, outputs)
    }

    fn plan<'j>(
        &self,
        job: &'j Job,
        contexts: &Object,
        needs: &Object,
    ) -> Result<Planned<'j>, String> {
        let scope = Scope::new(contexts);
        let eval = |t: &str, scope: &Scope<'_>| {
            Template::parse(t)
                .and_then(|t| t.evaluate(scope))
                .map_err(|e| e.message)
        };
        let strategy = job.strategy.clone().unwrap_or_default();
        let (combos, has_matrix) = match &strategy.matrix {
            None => (vec![Object::new()], false),
            Some(source) => {
                let value = match source {
                    MatrixSource::Expression(e) => {
                        eval(e, &scope).map_err(|e| format!("evaluating the matrix: {e}"))?
                    }
                    MatrixSource::Mapping(m) => m.clone(),
                };
                let value = resolve_expressions(&value, &scope).map_err(|e| e.to_string())?;
                (expand(&value).map_err(|e| e.to_string())?, true)
            }
        };
        let flag = |t: &str, what: &str, scope: &Scope<'_>| {
            eval(t, scope)?
                .to_flag()
                .map_err(|e| format!("{what}: {e}"))
        };
        let fail_fast = match &strategy.fail_fast {
            None => true,
            Some(t) => flag(t, "strategy.fail-fast", &scope)?,
        };
        let total = combos.len();
        let max_parallel = match &strategy.max_parallel {
            None => total.max(1),
            Some(t) => {
                let n = eval(t, &scope)?.to_number();
                if !n.is_finite() || n < 1.0 {
                    return Err(format!(
                        "max-parallel must be a number of at least 1, not {t}"
                    ));
                }
                n as usize
            }
        };
        let name_template = job.name.as_deref().map(Template::parse).transpose();
        let name_template = name_template.map_err(|e| e.message)?;
        let name_uses_matrix = name_template
            .as_ref()
            .is_some_and(|t| t.reads_context("matrix"));
        let mut instances = Vec::new();
        let mut skip = Vec::new();
        for (index, combo) in combos.into_iter().enumerate() {
            let mut ctx = contexts.clone();
            ctx.insert("matrix", Value::Object(combo.clone()));
            let mut strategy_ctx = Object::new();
            strategy_ctx.insert("fail-fast", Value::Bool(fail_fast));
            strategy_ctx.insert("job-index", Value::Number(index as f64));
            strategy_ctx.insert("job-total", Value::Number(total as f64));
            strategy_ctx.insert("max-parallel", Value::Number(max_parallel as f64));
            ctx.insert("strategy", Value::Object(strategy_ctx.clone()));
            let scope = Scope::new(&ctx);
            let base = match &name_template {
                Some(t) => t.render(&scope).map_err(|e| e.message)?,
                None => job.id.clone(),
            };
            let name = display_name(&base, name_uses_matrix, &combo);
            let mut labels = Vec::new();
            for label in &job.runs_on {
                match eval(label, &scope)? {
                    Value::Array(items) => {
                        labels.extend(items.iter().map(Value::to_display_string));
                    }
                    other => labels.push(other.to_display_string()),
                }
            }
            skip.push(unsupported_label(&labels, self.runner_labels));
            let continue_on_error = match &job.continue_on_error {
                None => false,
                Some(t) => flag(t, "continue-on-error", &scope)?,
            };
            let log_slug = if total > 1 {
                format!("{}-{}", slug(&job.id), index + 1)
            } else {
                slug(&job.id)
            };
            instances.push(Instance {
                job,
                name,
                labels,
                matrix: combo,
                has_matrix,
                strategy: strategy_ctx,
                needs: needs.clone(),
                log_slug,
                continue_on_error,
            });
        }
        Ok(Planned {
            job,
            instances,
            skip,
            fail_fast,
            max_parallel,
        })
    }

    /// Runs a planned job's runs; cancelling `base` cancels them.
    async fn run_planned(
        &self,
        planned: Planned<'_>,
        base: &CancellationToken,
        shared: Option<&Mutex<Shared>>,
        archive: &Archive,
    ) -> (Vec<JobReport>, Vec<SessionSummary>, Object) {
        let group = base.child_token();
        let limit = Semaphore::new(planned.max_parallel.max(1));
        let runs = planned
            .instances
            .iter()
            .zip(planned.skip.iter())
            .map(|(inst, skip)| {
                let group = &group;
                let limit = &limit;
                async move {
                    if let Some(reason) = skip {
                        return (
                            skipped_report(
                                planned.job,
                                inst.name.clone(),
                                reason.clone(),
                                JobResult::Skipped,
                            ),
                            Object::new(),
                            None,
                        );
                    }
                    let _permit = limit.acquire().await;
                    if group.is_cancelled() {
                        let why = if base.is_cancelled() {
                            "the run was cancelled"
                        } else {
                            "cancelled by fail-fast: another run of this job failed"
                        };
                        return (
                            skipped_report(
                                planned.job,
                                inst.name.clone(),
                                why.to_string(),
                                JobResult::Cancelled,
                            ),
                            Object::new(),
                            None,
                        );
                    }
                    let (outcome, session) = self.run_instance(inst, shared, group, archive).await;
                    let failed = outcome.report.conclusion() == JobResult::Failure;
                    if failed && planned.fail_fast {
                        group.cancel();
                    }
                    (outcome.report, outcome.outputs, session)
                }
            });
        let results: Vec<_> = if shared.is_some() {
            // One VM: the runs go one after another.
            let mut out = Vec::new();
            for run in runs {
                out.push(run.await);
            }
            out
        } else {
            futures::future::join_all(runs).await
        };
        let mut reports = Vec::new();
        let mut sessions = Vec::new();
        let mut outputs = Object::new();
        for (report, outs, session) in results {
            for (k, v) in outs.iter() {
                if !v.to_display_string().is_empty() || !outputs.contains_key(k) {
                    outputs.insert(k.clone(), v.clone());
                }
            }
            reports.push(report);
            sessions.extend(session);
        }
        (reports, sessions, outputs)
    }

    async fn run_instance(
        &self,
        inst: &Instance<'_>,
        shared: Option<&Mutex<Shared>>,
        cancel: &CancellationToken,
        archive: &Archive,
    ) -> (InstanceOutcome, Option<SessionSummary>) {
        let env = JobEnv {
            facts: self.facts,
            observer: self.observer,
            cancel,
            stop: &self.stop,
            archive,
            actions: self.actions,
            uploaded: self.uploaded,
            services: self.services,
        };
        let failed = |message: String| {
            // A run cancelled while it waited for a VM is cancelled, not failed.
            let result = if cancel.is_cancelled() || self.cancel.is_cancelled() {
                JobResult::Cancelled
            } else {
                JobResult::Failure
            };
            InstanceOutcome {
                report: JobReport {
                    error: Some(message.clone()),
                    ..skipped_report(inst.job, inst.name.clone(), message, result)
                },
                outputs: Object::new(),
            }
        };
        match shared {
            Some(shared) => {
                let mut guard = shared.lock().await;
                if matches!(*guard, Shared::Unopened) {
                    let label = self.facts.workflow.path.display().to_string();
                    *guard = match self.manager.open(&label, &inst.labels, cancel).await {
                        Ok(s) => Shared::Open(Box::new(s)),
                        Err(e) => Shared::Failed(e.to_string()),
                    };
                }
                match &*guard {
                    Shared::Open(session) => (run_instance(&env, inst, session).await, None),
                    Shared::Failed(e) => (failed(format!("could not get a VM: {e}")), None),
                    Shared::Unopened => (failed("could not get a VM".to_string()), None),
                }
            }
            None => {
                let label = format!("{}/{}", self.facts.workflow.path.display(), inst.name);
                match self.manager.open(&label, &inst.labels, cancel).await {
                    Ok(session) => {
                        let outcome = run_instance(&env, inst, &session).await;
                        let state = match outcome.report.result {
                            JobResult::Success | JobResult::Skipped => SessionState::Completed,
                            JobResult::Failure => SessionState::Failed,
                            JobResult::Cancelled => SessionState::Cancelled,
                        };
                        let summary = close(session, state).await;
                        (outcome, Some(summary))
                    }
                    Err(e) => (failed(format!("could not get a VM: {e}")), None),
                }
            }
        }
    }
}

async fn close(session: Session, outcome: SessionState) -> SessionSummary {
    let id = session.id().to_string();
    let vm = session.vm().name.to_string();
    let vm_origin = session.origin().to_string();
    let timing = session.timing();
    let claim_us = match session.origin() {
        VmOrigin::Pool { claim_us, .. } => Some(*claim_us),
        _ => None,
    };
    let report = session
        .close(outcome, &format!("jobs ended: {}", outcome.as_str()))
        .await;
    SessionSummary {
        id,
        vm,
        vm_origin,
        claim_us,
        allocate_ms: timing.allocate_ms,
        usable_ms: timing.usable_ms,
        outcome: outcome.as_str().to_string(),
        released: report.release_error.is_none() && !report.kept,
        kept: report.kept,
        cleanup_failures: report.cleanup_failures,
    }
}
