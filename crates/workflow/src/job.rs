//! Running one job (one matrix combination) on a session's VM: the job's folders and event file,
//! then each step as one round trip, with `if`, `continue-on-error`, `timeout-minutes`,
//! environment files, workflow commands, masking, per-step logs, and finally the job outputs.
//!
//! Cancellation follows GitHub's runner: when the run is cancelled, fail-fast cancels the job or
//! the job exceeds its `timeout-minutes`, the job's status becomes `cancelled`; the running step
//! stops unless its `if` still holds (`always()`), and later steps run only if theirs does
//! (`always()`, `cancelled()`), all within [`CANCEL_TIMEOUT`]. A timed-out job is reported failed.
//!
//! What each kind of step does lives in [`crate::step`]; this module keeps the job's state, the
//! order of its stages (main steps, then the `post` stages of its actions in reverse order, also
//! after a failure or a cancel) and the [`Frame`] a step runs in (the job, or a composite action).

use crate::action::source::ActionSource;
use crate::context::{
    Layout, RunFacts, default_env, github_context, job_scope, object_of, runner_context,
    services_host, set_pair,
};
use crate::expression::{
    Condition, Expr, Object, Scope, Status, Template, Value, hash_files_patterns,
};
use crate::hash_files::{ONLY_IN_STEPS, WorkspaceHashes};
use crate::model::{Job, Step};
use crate::observer::{Observer, Origin};
use crate::protocol::mask::Masker;
use crate::report::{JobReport, JobResult, StepOutcome, StepReport};
use crate::session::Session;
use crate::step::{Execution, PostStage, docker_refusal};
use azlin_remote::quote::sh;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// GitHub's default job timeout.
pub const DEFAULT_JOB_TIMEOUT_MINUTES: f64 = 360.0;

/// How long killing a timed-out or cancelled step's processes may take.
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(15);

/// How long the steps that run after a cancellation (`if: always()`, `if: cancelled()`) may
/// take in all: GitHub's default `cancel-timeout-minutes`. A cancelled run stops whatever is
/// still running this long after its cancellation, jobs that started after it included.
pub(crate) const CANCEL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// What the status functions answer once a job is cancelled (GitHub's job status `cancelled`).
pub(crate) const CANCELLED: Status = Status {
    success: false,
    failure: false,
    cancelled: true,
};

/// One job run, ready to go.
pub(crate) struct Instance<'a> {
    pub job: &'a Job,
    pub name: String,
    /// Its `runs-on` labels, evaluated.
    pub labels: Vec<String>,
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
    /// Where remote actions come from.
    pub actions: &'a ActionSource,
    /// The action folders already copied to a VM (`VM:FOLDER`), so each is copied once.
    pub uploaded: &'a Mutex<HashSet<String>>,
    /// The cache and artifact services, when the run has them.
    pub services: Option<&'a azlin_services::Services>,
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

pub(crate) fn millis(d: Duration) -> u64 {
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

/// Where steps run: the job itself, or the steps of a composite action (which have their own
/// `steps` and `inputs` contexts, inherit the environment of the step that called the action,
/// and fail the calling step rather than the job).
#[derive(Debug, Clone, Default)]
pub(crate) struct Frame {
    /// The `steps` context.
    pub steps: Object,
    /// The `inputs` context.
    pub inputs: Object,
    /// The environment of the step that called the composite action (empty for the job).
    pub env: Vec<(String, String)>,
    /// `GITHUB_ACTION_PATH`, `GITHUB_ACTION_REPOSITORY`, `GITHUB_ACTION_REF` of the action.
    pub action_env: Vec<(String, String)>,
    /// A step of the composite action failed.
    pub failed: bool,
    /// How many composite actions deep (0: the job).
    pub depth: usize,
    /// What the step logs' file names start with.
    pub log_prefix: String,
}

pub(crate) struct JobState<'a> {
    pub env: &'a JobEnv<'a>,
    pub inst: &'a Instance<'a>,
    pub session: &'a Session,
    pub layout: Layout,
    pub defaults: Vec<(String, String)>,
    pub job_env: Vec<(String, String)>,
    pub set_env: Vec<(String, String)>,
    pub path_prepend: Vec<String>,
    pub contexts: Object,
    pub frame: Frame,
    pub masker: Masker,
    pub status: JobResult,
    pub deadline: tokio::time::Instant,
    pub timeout: Duration,
    /// The job exceeded its `timeout-minutes` (it is then cancelled, and reported failed).
    pub timed_out: bool,
    /// Set when the job is cancelled: until when the steps that still run may run.
    pub cancel_deadline: Option<tokio::time::Instant>,
    /// The `hashFiles` results of the step being evaluated (none outside a step).
    pub hashes: Option<WorkspaceHashes>,
    pub log_dir: Option<PathBuf>,
    pub error: Option<String>,
    /// The `post` stages of the actions that ran, in the order they ran.
    pub posts: Vec<PostStage>,
    /// What each action run saved (`GITHUB_STATE`), by its run number.
    pub states: HashMap<usize, Vec<(String, String)>>,
    /// A step failed because its action is invalid.
    pub invalid_action: bool,
    /// Progress lines of the job's large downloads from the cache and artifact services,
    /// shown in the log of the step that runs meanwhile.
    pub transfers: Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
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
    env.observer.job_started(origin, &vm_name, session.origin());

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
    let mut defaults = default_env(
        facts,
        &job.id,
        &layout,
        session.facts(),
        &vm_name,
        session.id(),
    );
    let services_scope = env.services.and_then(|services| {
        let Some(host) = services_host(session.vm().provider) else {
            tracing::info!(vm = %vm_name, "caches and artifacts are not served to Azure VMs");
            return None;
        };
        let scope = job_scope(facts, &slug(&format!("{}-{}", session.id(), inst.name)));
        for (key, value) in services.job_env(&scope, host) {
            if key == "ACTIONS_RUNTIME_TOKEN" {
                masker.add(&value);
            }
            defaults.push((key, value));
        }
        Some((services, scope))
    });

    let mut state = JobState {
        env,
        inst,
        session,
        defaults,
        layout,
        job_env: facts.extra_env.clone(),
        set_env: Vec::new(),
        path_prepend: Vec::new(),
        frame: Frame {
            inputs: facts.inputs.clone(),
            ..Frame::default()
        },
        contexts,
        masker,
        status: JobResult::Success,
        deadline: tokio::time::Instant::now(),
        timeout: Duration::ZERO,
        timed_out: false,
        cancel_deadline: None,
        hashes: None,
        log_dir: None,
        error: None,
        posts: Vec::new(),
        states: HashMap::new(),
        invalid_action: false,
        transfers: services_scope
            .as_ref()
            .map(|(services, scope)| services.watch(scope)),
    };
    let mut steps: Vec<StepReport> = Vec::new();
    let mut finished = |report: StepReport| {
        env.observer.step_finished(
            Origin {
                workflow: &facts.workflow.name,
                job: &inst.name,
                step: &report.name,
            },
            &report,
        );
        steps.push(report);
    };
    match state.prepare().await {
        Ok(()) => {
            for step in &job.steps {
                finished(state.step(step).await);
            }
            for post in std::mem::take(&mut state.posts).into_iter().rev() {
                finished(state.post_stage(post).await);
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
        invalid_action: state.invalid_action,
        caches: services_scope
            .map(|(services, scope)| services.take_cache_uses(&scope.run_id, &scope.job_id))
            .unwrap_or_default(),
        steps,
    };
    InstanceOutcome { report, outputs }
}

impl JobState<'_> {
    /// What the status functions answer: the job's status so far (and, in a composite action,
    /// whether one of its steps failed).
    pub(crate) fn scope_status(&self) -> Status {
        Status {
            success: self.status == JobResult::Success && !self.frame.failed,
            failure: self.status == JobResult::Failure || self.frame.failed,
            cancelled: self.status == JobResult::Cancelled,
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
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

    pub(crate) fn env_object(&self, extra: &[(String, String)]) -> Value {
        let mut all = self.job_env.clone();
        for (k, v) in self.set_env.iter().chain(extra) {
            set_pair(&mut all, k, v.clone());
        }
        Value::Object(object_of(&all))
    }

    /// Runs `f` with the scope expressions see here: the contexts so far, the job's status and,
    /// in a step, the `hashFiles` results computed for it (see [`Self::hash_files_for`]).
    pub(crate) fn in_scope<R>(&self, f: impl FnOnce(&Scope<'_>) -> R) -> R {
        self.in_scope_as(self.scope_status(), f)
    }

    /// Like [`Self::in_scope`], with the status functions answering `status`.
    pub(crate) fn in_scope_as<R>(&self, status: Status, f: impl FnOnce(&Scope<'_>) -> R) -> R {
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
    pub(crate) async fn hash_files_for(&mut self, calls: &[&[Expr]]) -> Result<(), String> {
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

    pub(crate) async fn render(&mut self, template: &str) -> Result<String, String> {
        let t = self.parse_template(template).await?;
        self.in_scope(|scope| t.render(scope).map_err(|e| e.message))
    }

    pub(crate) async fn evaluate(&mut self, template: &str) -> Result<Value, String> {
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
        if !job.unsupported.is_empty() {
            return Err(docker_refusal(&format!(
                "jobs.{}.{}",
                job.id,
                job.unsupported.join(" and ")
            )));
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

    pub(crate) fn skipped(
        &mut self,
        step: &Step,
        name: String,
        error: Option<String>,
    ) -> StepReport {
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
        self.frame
            .steps
            .insert(id.to_string(), Value::Object(entry));
        self.contexts
            .insert("steps", Value::Object(self.frame.steps.clone()));
    }

    /// Makes the contexts show `frame` (its `steps`, `inputs` and `github.action_*`), and
    /// returns the frame it replaces.
    pub(crate) fn enter_frame(&mut self, frame: Frame) -> Frame {
        let outer = std::mem::replace(&mut self.frame, frame);
        self.show_frame();
        outer
    }

    /// Puts `outer` back (see [`Self::enter_frame`]) and returns the frame that ends.
    pub(crate) fn leave_frame(&mut self, outer: Frame) -> Frame {
        let inner = std::mem::replace(&mut self.frame, outer);
        self.show_frame();
        inner
    }

    fn show_frame(&mut self) {
        self.contexts
            .insert("steps", Value::Object(self.frame.steps.clone()));
        self.contexts
            .insert("inputs", Value::Object(self.frame.inputs.clone()));
        if let Some(Value::Object(github)) = self.contexts.get("github") {
            let mut github = github.clone();
            let var = |name: &str| {
                self.frame
                    .action_env
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| Value::from(v.as_str()))
                    .unwrap_or(Value::from(""))
            };
            github.insert("action_path", var("GITHUB_ACTION_PATH"));
            github.insert("action_repository", var("GITHUB_ACTION_REPOSITORY"));
            github.insert("action_ref", var("GITHUB_ACTION_REF"));
            self.contexts.insert("github", Value::Object(github));
        }
    }

    /// Records a failed step: it fails the job, or, in a composite action, that action.
    pub(crate) fn step_failed(&mut self) {
        if self.frame.depth == 0 {
            self.set_job_status(JobResult::Failure);
        } else {
            self.frame.failed = true;
        }
    }

    /// Sets the job's status; a cancelled job stays cancelled (GitHub merges results so).
    pub(crate) fn set_job_status(&mut self, status: JobResult) {
        if self.status == JobResult::Cancelled {
            return;
        }
        self.status = status;
        let mut job_ctx = Object::new();
        job_ctx.insert("status", Value::from(status.as_str()));
        self.contexts.insert("job", Value::Object(job_ctx));
    }

    pub(crate) async fn step(&mut self, step: &Step) -> StepReport {
        let started = Instant::now();
        let default_name = step.default_name();
        if self.env.cancel.is_cancelled() {
            self.cancel_job();
        }
        if self.env.stop.is_cancelled() {
            return self.skipped(step, default_name, None);
        }
        self.hashes = Some(WorkspaceHashes::default());
        // The step's env, evaluated against the job's env so far (in a composite action, over
        // the env of the step that called it).
        let mut step_env = self.frame.env.clone();
        self.contexts.insert("env", self.env_object(&step_env));
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
        let (log_path, log) = self.open_log(&format!(
            "{}{:02}-{}",
            self.frame.log_prefix,
            step.index + 1,
            slug(&name)
        ));
        let mut exec = Execution::default();
        match failure {
            Some(e) => exec.error = Some(e),
            None => {
                self.execute(step, &name, &step_env, log, &mut exec, survives_cancel)
                    .await
            }
        }
        self.show_error(&name, &exec, log_path.as_deref());
        self.invalid_action |= exec.invalid_action;
        let outcome = exec.outcome();
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
            StepOutcome::Failure => self.step_failed(),
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

    /// A step's log file, `<name>.log` in the job's log folder (none if it cannot be made).
    pub(crate) fn open_log(&self, name: &str) -> (Option<PathBuf>, Option<Box<dyn Write + Send>>) {
        let path = self.log_dir.as_ref().map(|d| d.join(format!("{name}.log")));
        let log = path.as_ref().and_then(|p| {
            std::fs::File::create(p)
                .map(|f| Box::new(std::io::BufWriter::new(f)) as Box<dyn Write + Send>)
                .ok()
        });
        (path, log)
    }

    /// Shows a step's error (unless its output already did) and appends it to its log.
    pub(crate) fn show_error(&self, name: &str, exec: &Execution, log: Option<&std::path::Path>) {
        let Some(e) = exec.error.as_ref().filter(|_| !exec.error_shown) else {
            return;
        };
        let masked = self.masker.mask(e);
        self.env.observer.output(
            Origin {
                workflow: &self.env.facts.workflow.name,
                job: &self.inst.name,
                step: name,
            },
            azlin_remote::OutputStream::Stderr,
            &format!("Error: {masked}"),
        );
        if let Some(p) = log
            && let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(p)
            && let Err(e) = writeln!(f, "Error: {masked}")
        {
            tracing::warn!(log = %p.display(), error = %e, "cannot write to the step log");
        }
    }

    async fn outputs(&mut self) -> Object {
        let mut out = Object::new();
        self.hashes = None;
        self.contexts
            .insert("steps", Value::Object(self.frame.steps.clone()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("Run echo hi"), "Run_echo_hi");
        assert_eq!(slug("test (8.x, a/b)"), "test__8.x__a_b");
        assert_eq!(slug("***"), "step");
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
    }
}
