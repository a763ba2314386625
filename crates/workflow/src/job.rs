//! Running one job (one matrix combination) on a session's VM: the job's folders and event file,
//! then each step as one round trip, with `if`, `continue-on-error`, `timeout-minutes`,
//! environment files, workflow commands, masking, per-step logs, and finally the job outputs.
//!
//! Cancellation follows GitHub's runner: when the run is cancelled, fail-fast cancels the job or
//! the job exceeds its `timeout-minutes`, the job's status becomes `cancelled`; the running step
//! stops unless its `if` still holds (`always()`), and later steps run only if theirs does
//! (`always()`, `cancelled()`), all within [`CANCEL_TIMEOUT`]. A timed-out job is reported failed.

use crate::context::{
    Layout, RunFacts, default_env, github_context, object_of, runner_context, set_pair,
};
use crate::expression::{
    Condition, Expr, Object, Scope, Status, Template, Value, hash_files_patterns,
};
use crate::hash_files::{ONLY_IN_STEPS, WorkspaceHashes};
use crate::model::{Job, Step, StepAction};
use crate::observer::{Observer, Origin};
use crate::protocol::file_command::{parse_key_values, parse_paths};
use crate::protocol::mask::Masker;
use crate::protocol::output::{Annotation, StepOutput};
use crate::protocol::script::{
    FileCommandPaths, ShellCommand, StepScript, kill_program, parse_trailer,
};
use crate::report::{JobReport, JobResult, StepOutcome, StepReport};
use crate::session::Session;
use azlin_remote::quote::sh;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// GitHub's default job timeout.
pub const DEFAULT_JOB_TIMEOUT_MINUTES: f64 = 360.0;

/// How long killing a timed-out or cancelled step's processes may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the steps that run after a cancellation (`if: always()`, `if: cancelled()`) may
/// take in all: GitHub's default `cancel-timeout-minutes`. A cancelled run stops whatever is
/// still running this long after its cancellation, jobs that started after it included.
pub(crate) const CANCEL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What the status functions answer once a job is cancelled (GitHub's job status `cancelled`).
const CANCELLED: Status = Status {
    success: false,
    failure: false,
    cancelled: true,
};

/// One job run, ready to go.
pub(crate) struct Instance<'a> {
    pub job: &'a Job,
    pub name: String,
    pub matrix: Object,
    pub has_matrix: bool,
    pub strategy: Object,
    pub needs: Object,
    /// Folder name of its logs.
    pub log_slug: String,
    pub continue_on_error: bool,
}

/// What a job run produced.
pub(crate) struct InstanceOutcome {
    pub report: JobReport,
    pub outputs: Object,
}

/// What every job of a workflow run shares.
pub(crate) struct JobEnv<'a> {
    pub facts: &'a RunFacts,
    pub observer: &'a Arc<dyn Observer>,
    /// Cancels the job (the run's cancellation, or fail-fast): steps whose `if` still holds
    /// once it is cancelled (`always()`, `cancelled()`) go on running.
    pub cancel: &'a CancellationToken,
    /// Stops the job outright: nothing more runs once it fires.
    pub stop: &'a CancellationToken,
    pub archive: &'a tokio::sync::OnceCell<Result<Arc<Vec<u8>>, String>>,
}

/// Keeps names usable as file names.
pub(crate) fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let s = s.trim_matches('_').to_string();
    let s: String = s.chars().take(60).collect();
    if s.is_empty() { "step".to_string() } else { s }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Minutes as a duration (fractions allowed; non-positive or invalid values are refused).
pub(crate) fn minutes(value: &Value, what: &str) -> Result<Duration, String> {
    let n = value.to_number();
    if !n.is_finite() || n <= 0.0 {
        return Err(format!(
            "{what} must be a positive number of minutes, not '{}'",
            value.to_display_string()
        ));
    }
    Ok(Duration::from_secs_f64(n * 60.0))
}

struct JobState<'a> {
    env: &'a JobEnv<'a>,
    inst: &'a Instance<'a>,
    session: &'a Session,
    layout: Layout,
    defaults: Vec<(String, String)>,
    job_env: Vec<(String, String)>,
    set_env: Vec<(String, String)>,
    path_prepend: Vec<String>,
    contexts: Object,
    steps_ctx: Object,
    masker: Masker,
    status: JobResult,
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// The job exceeded its `timeout-minutes` (it is then cancelled, and reported failed).
    timed_out: bool,
    /// Set when the job is cancelled: until when the steps that still run may run.
    cancel_deadline: Option<tokio::time::Instant>,
    /// The `hashFiles` results of the step being evaluated (none outside a step).
    hashes: Option<WorkspaceHashes>,
    log_dir: Option<PathBuf>,
    error: Option<String>,
}

/// Runs `inst` on `session`.
pub(crate) async fn run_instance(
    env: &JobEnv<'_>,
    inst: &Instance<'_>,
    session: &Session,
) -> InstanceOutcome {
    let started = Instant::now();
    let facts = env.facts;
    let job = inst.job;
    let vm_name = session.vm().name.to_string();
    let layout = Layout::new(&session.facts().home, facts.repo_name());
    let origin = Origin {
        workflow: &facts.workflow.name,
        job: &inst.name,
        step: "",
    };
    env.observer.job_started(origin, &vm_name);

    let mut contexts = Object::new();
    contexts.insert(
        "github",
        Value::Object(github_context(facts, &job.id, &layout)),
    );
    contexts.insert(
        "runner",
        Value::Object(runner_context(
            session.facts(),
            &vm_name,
            &layout,
            facts.debug,
        )),
    );
    contexts.insert("matrix", Value::Object(inst.matrix.clone()));
    contexts.insert("strategy", Value::Object(inst.strategy.clone()));
    contexts.insert("needs", Value::Object(inst.needs.clone()));
    contexts.insert("secrets", Value::Object(facts.secrets.clone()));
    contexts.insert("vars", Value::Object(facts.vars.clone()));
    contexts.insert("inputs", Value::Object(facts.inputs.clone()));
    contexts.insert("steps", Value::Object(Object::new()));
    let mut job_ctx = Object::new();
    job_ctx.insert("status", Value::from("success"));
    contexts.insert("job", Value::Object(job_ctx));

    let mut masker = Masker::new();
    for (_, v) in facts.secrets.iter() {
        masker.add(&v.to_display_string());
    }

    let mut state = JobState {
        env,
        inst,
        session,
        defaults: default_env(
            facts,
            &job.id,
            &layout,
            session.facts(),
            &vm_name,
            session.id(),
        ),
        layout,
        job_env: facts.extra_env.clone(),
        set_env: Vec::new(),
        path_prepend: Vec::new(),
        contexts,
        steps_ctx: Object::new(),
        masker,
        status: JobResult::Success,
        deadline: tokio::time::Instant::now(),
        timeout: Duration::ZERO,
        timed_out: false,
        cancel_deadline: None,
        hashes: None,
        log_dir: None,
        error: None,
    };
    let mut steps: Vec<StepReport> = Vec::new();
    match state.prepare().await {
        Ok(()) => {
            for step in &job.steps {
                let report = state.step(step).await;
                env.observer.step_finished(
                    Origin {
                        workflow: &facts.workflow.name,
                        job: &inst.name,
                        step: &report.name,
                    },
                    &report,
                );
                steps.push(report);
            }
        }
        Err(e) => {
            state.status = JobResult::Failure;
            state.error = Some(state.masker.mask(&e));
            env.observer.output(
                origin,
                azlin_remote::OutputStream::Stderr,
                &state.masker.mask(&e),
            );
        }
    }
    let outputs = state.outputs().await;
    let result = if state.timed_out {
        JobResult::Failure
    } else {
        state.status
    };
    let report = JobReport {
        id: job.id.clone(),
        name: inst.name.clone(),
        matrix: inst.has_matrix.then(|| Value::Object(inst.matrix.clone())),
        result,
        continue_on_error: inst.continue_on_error,
        duration_ms: millis(started.elapsed()),
        session: Some(session.id().to_string()),
        vm: Some(vm_name),
        skip_reason: None,
        error: state.error.clone(),
        outputs: outputs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_display_string()))
            .collect::<BTreeMap<_, _>>(),
        steps,
    };
    InstanceOutcome { report, outputs }
}

impl JobState<'_> {
    /// What the status functions answer: the job's status so far.
    fn scope_status(&self) -> Status {
        Status {
            success: self.status == JobResult::Success,
            failure: self.status == JobResult::Failure,
            cancelled: self.status == JobResult::Cancelled,
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancel_deadline.is_some()
    }

    /// Cancels the job (once): its status becomes `cancelled`, and the steps that still run
    /// get [`CANCEL_TIMEOUT`] from now.
    fn cancel_job(&mut self) {
        if !self.is_cancelled() {
            self.cancel_deadline = Some(tokio::time::Instant::now() + CANCEL_TIMEOUT);
            self.set_job_status(JobResult::Cancelled);
        }
    }

    fn env_object(&self, extra: &[(String, String)]) -> Value {
        let mut all = self.job_env.clone();
        for (k, v) in self.set_env.iter().chain(extra) {
            set_pair(&mut all, k, v.clone());
        }
        Value::Object(object_of(&all))
    }

    /// Runs `f` with the scope expressions see here: the contexts so far, the job's status and,
    /// in a step, the `hashFiles` results computed for it (see [`Self::hash_files_for`]).
    fn in_scope<R>(&self, f: impl FnOnce(&Scope<'_>) -> R) -> R {
        self.in_scope_as(self.scope_status(), f)
    }

    /// Like [`Self::in_scope`], with the status functions answering `status`.
    fn in_scope_as<R>(&self, status: Status, f: impl FnOnce(&Scope<'_>) -> R) -> R {
        let hash = |patterns: &[String]| match &self.hashes {
            Some(hashes) => hashes.get(patterns),
            None => Err(ONLY_IN_STEPS.to_string()),
        };
        f(&Scope {
            contexts: &self.contexts,
            status,
            hash_files: Some(&hash),
        })
    }

    /// Computes on the VM, in a step, what the `hashFiles` `calls` (their arguments) will ask
    /// for; their arguments are evaluated as they will be. Outside a step it does nothing, and
    /// `hashFiles` is refused when evaluated.
    async fn hash_files_for(&mut self, calls: &[&[Expr]]) -> Result<(), String> {
        if calls.is_empty() {
            return Ok(());
        }
        let Some(mut hashes) = self.hashes.take() else {
            return Ok(());
        };
        // An argument that cannot be evaluated fails the evaluation itself, with its message.
        let patterns: Vec<Vec<String>> = calls
            .iter()
            .filter_map(|args| self.in_scope(|scope| hash_files_patterns(args, scope).ok()))
            .collect();
        let computed = hashes
            .compute(self.session, &self.layout.workspace, patterns)
            .await;
        self.hashes = Some(hashes);
        computed
    }

    /// Parses `template` and computes the `hashFiles` results it will ask for.
    async fn parse_template(&mut self, template: &str) -> Result<Template, String> {
        let t = Template::parse(template).map_err(|e| e.message)?;
        self.hash_files_for(&t.hash_files_calls()).await?;
        Ok(t)
    }

    async fn render(&mut self, template: &str) -> Result<String, String> {
        let t = self.parse_template(template).await?;
        self.in_scope(|scope| t.render(scope).map_err(|e| e.message))
    }

    async fn evaluate(&mut self, template: &str) -> Result<Value, String> {
        let t = self.parse_template(template).await?;
        self.in_scope(|scope| t.evaluate(scope).map_err(|e| e.message))
    }

    /// Evaluates the job's environment and timeout, and lays out the job's folders on the VM.
    async fn prepare(&mut self) -> Result<(), String> {
        let facts = self.env.facts;
        let job = self.inst.job;
        for (k, v) in facts.workflow.env.iter().chain(job.env.iter()) {
            self.contexts.insert("env", self.env_object(&[]));
            let value = self
                .render(v)
                .await
                .map_err(|e| format!("evaluating env {k}: {e}"))?;
            set_pair(&mut self.job_env, k, value);
        }
        self.contexts.insert("env", self.env_object(&[]));
        self.timeout = match &job.timeout_minutes {
            None => Duration::from_secs_f64(DEFAULT_JOB_TIMEOUT_MINUTES * 60.0),
            Some(t) => minutes(&self.evaluate(t).await?, "timeout-minutes")?,
        };
        self.deadline = tokio::time::Instant::now() + self.timeout;
        let dir = facts.logs_dir.join(&self.inst.log_slug);
        self.log_dir = match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot create the log folder");
                None
            }
        };
        if let Some(reason) = job.uses.as_ref() {
            return Err(format!(
                "reusable workflows are not supported (jobs.{}.uses: {reason})",
                job.id
            ));
        }
        if !job.unsupported.is_empty() {
            return Err(format!(
                "jobs.{} uses {}, which azlin does not support (steps run directly on the VM)",
                job.id,
                job.unsupported.join(" and ")
            ));
        }
        let l = &self.layout;
        let event = serde_json::to_string_pretty(&facts.event).unwrap_or_else(|_| "{}".into());
        let delimiter = format!("AZLIN_EVENT_{}", azlin_core::new_id().replace('-', ""));
        let event_dir = l
            .event_path
            .rsplit_once('/')
            .map(|(d, _)| d.to_string())
            .unwrap_or_default();
        let program = format!(
            "rm -rf {temp}\nmkdir -p {ws} {temp} {tool} {event_dir} {fc} || exit 1\ncat > {event} <<'{delimiter}'\n{event_json}\n{delimiter}\n",
            temp = sh(&l.temp),
            ws = sh(&l.workspace),
            tool = sh(&l.tool_cache),
            event_dir = sh(&event_dir),
            fc = sh(&l.file_commands),
            event = sh(&l.event_path),
            event_json = event,
        );
        let mut out = Vec::new();
        let code = tokio::time::timeout(
            self.timeout,
            self.session
                .run(&program, &mut |_, b| out.extend_from_slice(b)),
        )
        .await
        .map_err(|_| "preparing the job on the VM timed out".to_string())?
        .map_err(|e| format!("preparing the job on the VM failed: {e}"))?;
        if code != 0 {
            return Err(format!(
                "preparing the job on the VM failed (exit code {code}): {}",
                String::from_utf8_lossy(&out).trim()
            ));
        }
        Ok(())
    }

    fn skipped(&mut self, step: &Step, name: String, error: Option<String>) -> StepReport {
        if let Some(id) = &step.id {
            self.record_step(
                id,
                &Object::new(),
                StepOutcome::Skipped,
                StepOutcome::Skipped,
            );
        }
        StepReport {
            index: step.index,
            id: step.id.clone(),
            name,
            outcome: StepOutcome::Skipped,
            conclusion: StepOutcome::Skipped,
            duration_ms: 0,
            exit_code: None,
            log: None,
            annotations: Vec::new(),
            error,
            summary: String::new(),
        }
    }

    fn record_step(
        &mut self,
        id: &str,
        outputs: &Object,
        outcome: StepOutcome,
        conclusion: StepOutcome,
    ) {
        let mut entry = Object::new();
        entry.insert("outputs", Value::Object(outputs.clone()));
        entry.insert("outcome", Value::from(outcome.as_str()));
        entry.insert("conclusion", Value::from(conclusion.as_str()));
        self.steps_ctx.insert(id.to_string(), Value::Object(entry));
        self.contexts
            .insert("steps", Value::Object(self.steps_ctx.clone()));
    }

    /// Sets the job's status; a cancelled job stays cancelled (GitHub merges results so).
    fn set_job_status(&mut self, status: JobResult) {
        if self.status == JobResult::Cancelled {
            return;
        }
        self.status = status;
        let mut job_ctx = Object::new();
        job_ctx.insert("status", Value::from(status.as_str()));
        self.contexts.insert("job", Value::Object(job_ctx));
    }

    async fn step(&mut self, step: &Step) -> StepReport {
        let started = Instant::now();
        let default_name = step.default_name();
        if self.env.cancel.is_cancelled() {
            self.cancel_job();
        }
        if self.env.stop.is_cancelled() {
            return self.skipped(step, default_name, None);
        }
        self.hashes = Some(WorkspaceHashes::default());
        // The step's env, evaluated against the job's env so far.
        self.contexts.insert("env", self.env_object(&[]));
        let mut step_env = Vec::new();
        let mut failure: Option<String> = None;
        for (k, v) in &step.env {
            match self.render(v).await {
                Ok(value) => set_pair(&mut step_env, k, value),
                Err(e) => {
                    failure = Some(format!("evaluating env {k}: {e}"));
                    break;
                }
            }
        }
        self.contexts.insert("env", self.env_object(&step_env));
        let condition = match Condition::parse(step.condition.as_deref().unwrap_or("")) {
            Ok(c) => self.hash_files_for(&c.hash_files_calls()).await.map(|()| c),
            Err(e) => Err(e.message),
        };
        let holds = |status: Status| {
            let c = condition.as_ref().map_err(Clone::clone)?;
            self.in_scope_as(status, |scope| c.holds(scope).map_err(|e| e.message))
        };
        let run_it = holds(self.scope_status());
        // GitHub evaluates the condition again when the job is cancelled while the step runs:
        // a step that still holds (`always()`) goes on.
        let survives_cancel = !self.is_cancelled() && holds(CANCELLED) == Ok(true);
        let name = match &step.name {
            Some(n) => self.render(n).await.unwrap_or_else(|_| n.clone()),
            None => default_name,
        };
        let name = self.masker.mask(&name);
        match run_it {
            Ok(false) => return self.skipped(step, name, None),
            Ok(true) => {}
            Err(e) => failure = failure.or(Some(format!("evaluating if: {e}"))),
        }
        let continue_on_error = match &step.continue_on_error {
            None => false,
            Some(t) => match self.evaluate(t).await.and_then(|v| v.to_flag()) {
                Ok(flag) => flag,
                Err(e) => {
                    failure = failure.or(Some(format!("evaluating continue-on-error: {e}")));
                    false
                }
            },
        };
        let facts = self.env.facts;
        let origin = Origin {
            workflow: &facts.workflow.name,
            job: &self.inst.name,
            step: &name,
        };
        self.env.observer.step_started(origin);
        let log_path = self
            .log_dir
            .as_ref()
            .map(|d| d.join(format!("{:02}-{}.log", step.index + 1, slug(&name))));
        let log: Option<Box<dyn Write + Send>> = log_path.as_ref().and_then(|p| {
            std::fs::File::create(p)
                .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn Write + Send>)
                .ok()
        });
        let mut exec = Execution::default();
        match failure {
            Some(e) => exec.error = Some(e),
            None => {
                self.execute(step, &name, &step_env, log, &mut exec, survives_cancel)
                    .await
            }
        }
        if let Some(e) = exec.error.as_ref().filter(|_| !exec.error_shown) {
            let masked = self.masker.mask(e);
            self.env.observer.output(
                Origin {
                    workflow: &facts.workflow.name,
                    job: &self.inst.name,
                    step: &name,
                },
                azlin_remote::OutputStream::Stderr,
                &format!("Error: {masked}"),
            );
            if let Some(p) = &log_path
                && let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(p)
            {
                let _ = writeln!(f, "Error: {masked}");
            }
        }
        let outcome = if exec.cancelled {
            StepOutcome::Cancelled
        } else if exec.error.is_none() && exec.exit_code == Some(0) {
            StepOutcome::Success
        } else {
            StepOutcome::Failure
        };
        let conclusion = if outcome == StepOutcome::Failure && continue_on_error {
            StepOutcome::Success
        } else {
            outcome
        };
        if let Some(id) = &step.id {
            let outputs = exec.outputs.clone();
            self.record_step(id, &outputs, outcome, conclusion);
        }
        if exec.job_timed_out {
            self.timed_out = true;
            self.error = exec.error.clone();
            self.cancel_job();
        }
        match conclusion {
            StepOutcome::Failure => self.set_job_status(JobResult::Failure),
            StepOutcome::Cancelled => self.cancel_job(),
            _ => {}
        }
        if self.env.cancel.is_cancelled() {
            self.cancel_job();
        }
        StepReport {
            index: step.index,
            id: step.id.clone(),
            name,
            outcome,
            conclusion,
            duration_ms: millis(started.elapsed()),
            exit_code: exec.exit_code,
            log: log_path,
            annotations: exec.annotations,
            error: exec.error.map(|e| self.masker.mask(&e)),
            summary: self.masker.mask(&exec.summary),
        }
    }

    async fn execute(
        &mut self,
        step: &Step,
        name: &str,
        step_env: &[(String, String)],
        log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
        survives_cancel: bool,
    ) {
        let call = match self.watch(step, survives_cancel).await {
            Ok(watch) => StepCall {
                step,
                name,
                env: step_env,
                watch,
            },
            Err(e) => {
                exec.error = Some(e);
                return;
            }
        };
        match &step.action {
            StepAction::Run(script) => {
                let script = match self.render(script).await {
                    Ok(s) => s,
                    Err(e) => {
                        exec.error = Some(e);
                        return;
                    }
                };
                self.run_script(&call, &script, log, exec).await;
            }
            StepAction::Uses { action, with } => {
                let base = action.split('@').next().unwrap_or(action);
                if base.eq_ignore_ascii_case("actions/checkout") {
                    self.checkout(&call, with, log, exec).await;
                } else {
                    exec.error = Some(format!(
                        "the action '{action}' cannot run: azlin runs `run:` steps and has actions/checkout built in; other actions are not supported"
                    ));
                }
            }
        }
    }

    async fn working_directory(&mut self, step: &Step) -> Result<String, String> {
        let wd = step
            .working_directory
            .as_ref()
            .or(self.inst.job.defaults.working_directory.as_ref())
            .or(self.env.facts.workflow.defaults.working_directory.as_ref());
        let Some(wd) = wd else {
            return Ok(self.layout.workspace.clone());
        };
        let wd = self.render(wd).await?;
        Ok(if wd.starts_with('/') {
            wd
        } else if wd.is_empty() {
            self.layout.workspace.clone()
        } else {
            format!("{}/{}", self.layout.workspace, wd)
        })
    }

    /// What may interrupt `step`: its own timeout, the job's (or, once the job is cancelled,
    /// the cancel timeout), the job's cancellation unless the step `survives_cancel`, and the
    /// run's stop.
    async fn watch(&mut self, step: &Step, survives_cancel: bool) -> Result<Watch, String> {
        let (mut deadline, mut limit) = match self.cancel_deadline {
            Some(at) => (at, Limit::Cancel),
            None => (self.deadline, Limit::Job(self.timeout)),
        };
        if let Some(t) = &step.timeout_minutes {
            let own = minutes(&self.evaluate(t).await?, "timeout-minutes")?;
            let at = tokio::time::Instant::now() + own;
            if at < deadline {
                (deadline, limit) = (at, Limit::Step(own));
            }
        }
        Ok(Watch {
            cancel: (!self.is_cancelled() && !survives_cancel).then(|| self.env.cancel.clone()),
            stop: self.env.stop.clone(),
            deadline,
            limit,
        })
    }

    async fn run_script(
        &mut self,
        call: &StepCall<'_>,
        script: &str,
        log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        let StepCall {
            step,
            name,
            env: step_env,
            watch,
        } = call;
        let facts = self.env.facts;
        let shell_name = step
            .shell
            .as_deref()
            .or(self.inst.job.defaults.shell.as_deref())
            .or(facts.workflow.defaults.shell.as_deref());
        let shell = match ShellCommand::resolve(shell_name, self.session.facts().bash) {
            Ok(s) => s,
            Err(e) => {
                exec.error = Some(e.0);
                return;
            }
        };
        let wd = match self.working_directory(step).await {
            Ok(wd) => wd,
            Err(e) => {
                exec.error = Some(e);
                return;
            }
        };
        let token = azlin_core::new_id();
        let files = FileCommandPaths::in_dir(&self.layout.file_commands, &token);
        let script_path = format!("{}/{}.{}", self.layout.temp, token, shell.extension);
        let action = step
            .id
            .clone()
            .unwrap_or_else(|| format!("__run_{}", step.index + 1));
        let mut env = self.defaults.clone();
        for (k, v) in self
            .job_env
            .iter()
            .chain(self.set_env.iter())
            .chain(step_env.iter())
        {
            set_pair(&mut env, k, v.clone());
        }
        for (k, v) in files.variables() {
            set_pair(&mut env, k, v.to_string());
        }
        set_pair(&mut env, "GITHUB_ACTION", action);
        set_pair(&mut env, "AZLIN_STEP", token.clone());
        let allow_unsecure = env
            .iter()
            .rev()
            .find(|(k, _)| k == "ACTIONS_ALLOW_UNSECURE_COMMANDS")
            .is_some_and(|(_, v)| v.eq_ignore_ascii_case("true"));
        let marker = format!("__azlin_marker_{token}__");
        let program = StepScript {
            env: &env,
            path_prepend: &self.path_prepend,
            files: &files,
            script_path: &script_path,
            script,
            working_directory: &wd,
            shell: &shell,
            marker: &marker,
        }
        .render();

        let observer = self.env.observer.clone();
        let (workflow, job, step_name) = (
            facts.workflow.name.clone(),
            self.inst.name.clone(),
            name.to_string(),
        );
        let display = Box::new(move |stream, line: &str| {
            observer.output(
                Origin {
                    workflow: &workflow,
                    job: &job,
                    step: &step_name,
                },
                stream,
                line,
            )
        });
        let mut output = StepOutput::new(
            &marker,
            &mut self.masker,
            allow_unsecure,
            facts.debug,
            log,
            display,
        );
        let ending = {
            let mut sink = |stream, bytes: &[u8]| output.feed(stream, bytes);
            let run = self.session.run(&program, &mut sink);
            tokio::select! {
                r = run => Ok(r),
                interrupt = watch.interrupted() => Err(interrupt),
            }
        };
        if let Err(interrupt) = &ending {
            interrupt.record(exec);
        }
        let finished = output.finish();
        if ending.is_err() {
            // Stop whatever the step left running; the session's VM outlives this step.
            let _ = tokio::time::timeout(
                KILL_TIMEOUT,
                self.session.run(&kill_program(&token), &mut |_, _| {}),
            )
            .await;
        }
        let effects = finished.effects;
        exec.annotations = effects.annotations;
        if let Ok(result) = ending {
            match result {
                Ok(code) => exec.exit_code = Some(code),
                Err(e) => {
                    exec.error = Some(format!("running the step on the VM failed: {e}"));
                }
            }
        }
        let mut outputs = Object::new();
        for (k, v) in &effects.outputs {
            outputs.insert(k.clone(), Value::from(v.as_str()));
        }
        for (k, v) in effects.env {
            self.set_env_var(&k, v, exec);
        }
        for p in effects.paths {
            self.path_prepend.insert(0, p);
        }
        if exec.error.is_none() && exec.exit_code.is_some() {
            if let Some(first) = effects.failures.first() {
                // Already shown where the command was written.
                exec.error = Some(first.clone());
                exec.error_shown = true;
            }
            match finished.trailer.as_deref().map(parse_trailer) {
                Some(Ok(files)) => {
                    if let Err(e) = self.apply_files(&files, &mut outputs, exec) {
                        exec.error = Some(e);
                    }
                }
                Some(Err(e)) => exec.error = Some(e),
                None => {
                    exec.error = Some(
                        "the step's output ended before its environment files were read back"
                            .to_string(),
                    );
                }
            }
        }
        exec.outputs = outputs;
    }

    fn set_env_var(&mut self, key: &str, value: String, exec: &mut Execution) {
        let upper = key.to_ascii_uppercase();
        if upper.starts_with("GITHUB_") || upper.starts_with("RUNNER_") || upper == "NODE_OPTIONS" {
            exec.annotations.push(Annotation {
                level: "warning".into(),
                message: format!("the environment variable {key} cannot be overwritten"),
                file: None,
                line: None,
            });
            return;
        }
        set_pair(&mut self.set_env, key, value);
    }

    fn apply_files(
        &mut self,
        files: &crate::protocol::script::FileContents,
        outputs: &mut Object,
        exec: &mut Execution,
    ) -> Result<(), String> {
        for (k, v) in parse_key_values("GITHUB_ENV", &files.env).map_err(|e| e.to_string())? {
            self.set_env_var(&k, v, exec);
        }
        for (k, v) in parse_key_values("GITHUB_OUTPUT", &files.output).map_err(|e| e.to_string())? {
            outputs.insert(k, Value::String(v));
        }
        parse_key_values("GITHUB_STATE", &files.state).map_err(|e| e.to_string())?;
        for p in parse_paths(&files.path) {
            self.path_prepend.insert(0, p);
        }
        exec.summary = files.summary.clone();
        Ok(())
    }

    async fn checkout(
        &mut self,
        call: &StepCall<'_>,
        with: &[(String, String)],
        mut log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        let StepCall { name, watch, .. } = call;
        let facts = self.env.facts;
        let mut inputs = BTreeMap::new();
        for (k, v) in with {
            match self.render(v).await {
                Ok(value) => {
                    inputs.insert(k.as_str(), value);
                }
                Err(e) => {
                    exec.error = Some(format!("evaluating with.{k}: {e}"));
                    return;
                }
            }
        }
        if let Some(repo) = inputs.get("repository").filter(|r| !r.is_empty())
            && !repo.eq_ignore_ascii_case(&facts.repository)
        {
            exec.error = Some(format!(
                "actions/checkout of another repository ({repo}) is not supported: azlin copies the workflow's own repository"
            ));
            return;
        }
        let dest = match inputs.get("path").filter(|p| !p.is_empty()) {
            Some(p) if p.starts_with('/') => p.clone(),
            Some(p) => format!("{}/{}", self.layout.workspace, p),
            None => self.layout.workspace.clone(),
        };
        let repo = facts.repo.clone();
        let archive = self
            .env
            .archive
            .get_or_init(|| async move {
                tokio::task::spawn_blocking(move || repo.archive())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map(Arc::new)
            })
            .await
            .clone();
        let archive = match archive {
            Ok(a) => a,
            Err(e) => {
                exec.error = Some(format!(
                    "cannot archive the repository {}: {e}",
                    facts.repo.root.display()
                ));
                return;
            }
        };
        let line = format!(
            "Copying {} ({} KiB) into {dest}",
            facts.repo.root.display(),
            archive.len() / 1024
        );
        if let Some(l) = &mut log {
            let _ = writeln!(l, "{line}");
            let _ = l.flush();
        }
        self.env.observer.output(
            Origin {
                workflow: &facts.workflow.name,
                job: &self.inst.name,
                step: name,
            },
            azlin_remote::OutputStream::Stdout,
            &line,
        );
        let mut out = Vec::new();
        let mut sink = |_, b: &[u8]| out.extend_from_slice(b);
        let args = [dest.as_str()];
        let result = tokio::select! {
            r = self.session.run_with_input(
                "rm -rf \"$1\" && mkdir -p \"$1\" && tar -xf - -C \"$1\" --no-same-owner",
                &args,
                &archive,
                &mut sink,
            ) => r,
            interrupt = watch.interrupted() => {
                interrupt.record(exec);
                return;
            }
        };
        match result {
            Ok(code) => {
                exec.exit_code = Some(code);
                if code != 0 {
                    exec.error = Some(format!(
                        "copying the repository failed: {}",
                        String::from_utf8_lossy(&out).trim()
                    ));
                }
            }
            Err(e) => exec.error = Some(format!("copying the repository failed: {e}")),
        }
    }

    /// Evaluates the job's `outputs` (dropping values that would reveal a secret, as GitHub
    /// does).
    async fn outputs(&mut self) -> Object {
        let mut out = Object::new();
        self.hashes = None;
        self.contexts
            .insert("steps", Value::Object(self.steps_ctx.clone()));
        let job = self.inst.job;
        for (k, template) in &job.outputs {
            match self.render(template).await {
                Ok(v) if self.masker.reveals(&v) => {
                    tracing::warn!(output = %k, "skipping a job output that may contain a secret");
                }
                Ok(v) => out.insert(k.clone(), Value::String(v)),
                Err(e) => tracing::warn!(output = %k, error = %e, "cannot evaluate a job output"),
            }
        }
        out
    }
}

fn describe(d: Duration) -> String {
    let minutes = d.as_secs_f64() / 60.0;
    if (minutes - minutes.round()).abs() < 1e-9 {
        format!("{} minutes", minutes.round() as u64)
    } else {
        format!("{minutes:.2} minutes")
    }
}

/// The limit a step reached.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Limit {
    /// Its own `timeout-minutes`.
    Step(Duration),
    /// The job's `timeout-minutes`.
    Job(Duration),
    /// [`CANCEL_TIMEOUT`] after the job was cancelled.
    Cancel,
}

/// Why a running step was stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Interrupt {
    /// It reached a limit.
    Timeout(Limit),
    /// The job was cancelled, or the run stopped.
    Cancelled,
}

impl Interrupt {
    /// Records the interruption on the step's execution.
    fn record(self, exec: &mut Execution) {
        let message = match self {
            Interrupt::Timeout(Limit::Step(limit)) => {
                format!("The step has exceeded its timeout of {}", describe(limit))
            }
            Interrupt::Timeout(Limit::Job(limit)) => {
                exec.job_timed_out = true;
                format!(
                    "The job has exceeded the maximum execution time of {}",
                    describe(limit)
                )
            }
            Interrupt::Timeout(Limit::Cancel) => {
                exec.cancelled = true;
                format!(
                    "The job was cancelled and its remaining steps exceeded the cancel timeout of {}",
                    describe(CANCEL_TIMEOUT)
                )
            }
            Interrupt::Cancelled => {
                exec.cancelled = true;
                "The run was cancelled".to_string()
            }
        };
        exec.error = Some(message);
    }
}

/// A step about to run: the step, its name as shown, its evaluated `env`, and what may stop it.
struct StepCall<'c> {
    step: &'c Step,
    name: &'c str,
    env: &'c [(String, String)],
    watch: Watch,
}

/// What may stop a running step before it ends.
struct Watch {
    /// The job's cancellation, unless the step goes on after it (or the job already is).
    cancel: Option<CancellationToken>,
    /// The run's stop.
    stop: CancellationToken,
    /// When the step must end, and which limit that is.
    deadline: tokio::time::Instant,
    limit: Limit,
}

impl Watch {
    /// Resolves when the step must stop, saying why.
    async fn interrupted(&self) -> Interrupt {
        let cancelled = async {
            match &self.cancel {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancelled => Interrupt::Cancelled,
            () = self.stop.cancelled() => Interrupt::Cancelled,
            () = tokio::time::sleep_until(self.deadline) => Interrupt::Timeout(self.limit),
        }
    }
}

#[derive(Default)]
struct Execution {
    exit_code: Option<i32>,
    error: Option<String>,
    /// The error was already shown in the step's output.
    error_shown: bool,
    cancelled: bool,
    job_timed_out: bool,
    outputs: Object,
    annotations: Vec<Annotation>,
    summary: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("Run echo hi"), "Run_echo_hi");
        assert_eq!(slug("test (8.x, a/b)"), "test__8.x__a_b");
        assert_eq!(slug("***"), "step");
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_reports_what_stopped_the_step() {
        let minute = Duration::from_secs(60);
        let watch = |cancel: Option<&CancellationToken>, stop: &CancellationToken, limit| Watch {
            cancel: cancel.cloned(),
            stop: stop.clone(),
            deadline: tokio::time::Instant::now() + minute,
            limit,
        };
        let (cancel, stop) = (CancellationToken::new(), CancellationToken::new());
        let job = Limit::Job(minute);
        let started = tokio::time::Instant::now();
        assert_eq!(
            watch(Some(&cancel), &stop, job).interrupted().await,
            Interrupt::Timeout(job)
        );
        assert_eq!(started.elapsed(), minute);
        cancel.cancel();
        assert_eq!(
            watch(Some(&cancel), &stop, job).interrupted().await,
            Interrupt::Cancelled
        );
        // A step that goes on after the cancellation still meets its limit, or the stop.
        let started = tokio::time::Instant::now();
        assert_eq!(
            watch(None, &stop, Limit::Cancel).interrupted().await,
            Interrupt::Timeout(Limit::Cancel)
        );
        assert_eq!(started.elapsed(), minute);
        stop.cancel();
        assert_eq!(
            watch(None, &stop, Limit::Cancel).interrupted().await,
            Interrupt::Cancelled
        );
    }

    #[test]
    fn interruptions_say_which_limit_was_reached() {
        let record = |interrupt: Interrupt| {
            let mut exec = Execution::default();
            interrupt.record(&mut exec);
            (exec.error.unwrap(), exec.cancelled, exec.job_timed_out)
        };
        let two = Duration::from_secs(120);
        assert_eq!(
            record(Interrupt::Timeout(Limit::Step(two))),
            (
                "The step has exceeded its timeout of 2 minutes".into(),
                false,
                false
            )
        );
        assert_eq!(
            record(Interrupt::Timeout(Limit::Job(two))),
            (
                "The job has exceeded the maximum execution time of 2 minutes".into(),
                false,
                true
            )
        );
        let (message, cancelled, _) = record(Interrupt::Timeout(Limit::Cancel));
        assert!(
            message.contains("cancel timeout of 5 minutes") && cancelled,
            "{message}"
        );
        assert_eq!(
            record(Interrupt::Cancelled),
            ("The run was cancelled".into(), true, false)
        );
    }

    #[test]
    fn minutes_accept_fractions_and_refuse_nonsense() {
        assert_eq!(
            minutes(&Value::Number(0.5), "t").unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            minutes(&Value::from("2"), "t").unwrap(),
            Duration::from_secs(120)
        );
        assert!(minutes(&Value::from("x"), "t").is_err());
        assert!(minutes(&Value::Number(0.0), "t").is_err());
        assert_eq!(describe(Duration::from_secs(120)), "2 minutes");
    }
}
