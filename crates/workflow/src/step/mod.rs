//! The kinds of step, one module each (as act's `step_*.go`): a `run:` script, the built-in
//! `actions/checkout`, a local action (`uses: ./PATH`, read from the job's workspace on the VM),
//! a remote action (`uses: OWNER/REPO[/PATH]@REF`, fetched on the host and copied to the VM),
//! and what an action runs: a composite action's steps or a JavaScript action's `pre`, `main`
//! and `post` stages. Docker actions are refused for their step.
//!
//! Every kind runs inside a [`JobState`]; this module holds what they share: what may stop a
//! running step ([`Watch`], [`Interrupt`]) and what a step produced ([`Execution`]).

mod checkout;
mod composite;
mod javascript;
mod local_action;
mod remote_action;
mod run;

pub(crate) use javascript::PostStage;

use crate::action::manifest::{ActionManifest, Runs};
use crate::expression::Object;
use crate::job::{CANCEL_TIMEOUT, JobState, minutes};
use crate::model::{Step, StepAction};
use crate::protocol::output::Annotation;
use crate::report::StepOutcome;
use std::io::Write;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What a `uses:` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Uses<'a> {
    /// `actions/checkout@…`, built in: it copies the workflow's repository.
    Checkout,
    /// `./PATH` in the job's workspace.
    Local(&'a str),
    /// `OWNER/REPO[/PATH]@REF`.
    Remote(&'a str),
    /// `docker://IMAGE`.
    Docker,
}

impl<'a> Uses<'a> {
    fn of(action: &'a str) -> Uses<'a> {
        let action = action.trim();
        if action.starts_with("./") || action == "." {
            return Uses::Local(action);
        }
        if action.starts_with("docker://") {
            return Uses::Docker;
        }
        // Without its @REF, checkout is refused like any remote action.
        let checkout = action
            .split_once('@')
            .is_some_and(|(base, _)| base.eq_ignore_ascii_case("actions/checkout"));
        if checkout {
            Uses::Checkout
        } else {
            Uses::Remote(action)
        }
    }
}

/// The program that replaces the folder `$1` on the VM with the tar archive on its input (how
/// the repository and remote actions reach the VM).
const EXTRACT_INTO: &str =
    "rm -rf \"$1\" && mkdir -p \"$1\" && tar -xf - -C \"$1\" --no-same-owner";

/// Why a step that needs Docker cannot run.
pub(crate) fn docker_refusal(what: &str) -> String {
    format!("{what} needs Docker on the VM; not supported yet")
}

/// An action ready to run: its manifest and where its files are on the VM.
pub(crate) struct ResolvedAction {
    pub manifest: ActionManifest,
    /// The action's folder on the VM (`github.action_path`).
    pub dir: String,
    /// `OWNER/REPO` for a remote action, empty for a local one (`github.action_repository`).
    pub repository: String,
    /// The ref it was used at, empty for a local one (`github.action_ref`).
    pub git_ref: String,
}

/// Why an action could not be resolved.
pub(crate) enum ActionProblem {
    /// It could not be had (fetching failed, a path left the workspace…).
    Unavailable(String),
    /// Its `action.yml` is missing or invalid.
    Invalid(String),
}

impl JobState<'_> {
    /// Runs an action that was resolved, or records why it could not be.
    async fn resolved_action(
        &mut self,
        call: &StepCall<'_>,
        resolved: Result<ResolvedAction, ActionProblem>,
        with: &[(String, String)],
        log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        match resolved {
            Ok(action) => self.run_action(call, action, with, log, exec).await,
            Err(ActionProblem::Unavailable(e)) => exec.error = Some(e),
            Err(ActionProblem::Invalid(e)) => {
                exec.error = Some(e);
                exec.invalid_action = true;
            }
        }
    }

    /// Runs a resolved action: its composite steps or its JavaScript stages.
    async fn run_action(
        &mut self,
        call: &StepCall<'_>,
        action: ResolvedAction,
        with: &[(String, String)],
        log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        let inputs = match self.action_inputs(&action.manifest, with).await {
            Ok(inputs) => inputs,
            Err(e) => {
                exec.error = Some(e);
                return;
            }
        };
        match &action.manifest.runs {
            Runs::Composite { .. } => self.composite(call, &action, inputs, exec).await,
            Runs::Node { .. } => self.javascript(call, &action, inputs, log, exec).await,
            Runs::Docker { .. } => {
                exec.error = Some(docker_refusal(&format!(
                    "the Docker action {}",
                    action.manifest.path.display()
                )))
            }
        }
    }

    /// The inputs of an action step: each `with:` value evaluated here, then each declared
    /// input without one gets its default (evaluated here too); names as declared, in
    /// declaration order, then the undeclared `with:` names.
    async fn action_inputs(
        &mut self,
        manifest: &ActionManifest,
        with: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let mut given: Vec<(String, String)> = Vec::new();
        for (k, v) in with {
            let value = self
                .render(v)
                .await
                .map_err(|e| format!("evaluating with.{k}: {e}"))?;
            given.push((k.clone(), value));
        }
        let mut inputs = Vec::new();
        for (name, spec) in &manifest.inputs {
            let value = match given.iter().position(|(k, _)| k.eq_ignore_ascii_case(name)) {
                Some(i) => given.remove(i).1,
                None => match &spec.default {
                    Some(default) => self
                        .render(default)
                        .await
                        .map_err(|e| format!("evaluating the default of input {name}: {e}"))?,
                    None => String::new(),
                },
            };
            inputs.push((name.clone(), value));
        }
        inputs.extend(given);
        Ok(inputs)
    }
}

impl ResolvedAction {
    /// `GITHUB_ACTION_PATH`, `GITHUB_ACTION_REPOSITORY` and `GITHUB_ACTION_REF`.
    fn variables(&self) -> Vec<(String, String)> {
        vec![
            ("GITHUB_ACTION_PATH".to_string(), self.dir.clone()),
            (
                "GITHUB_ACTION_REPOSITORY".to_string(),
                self.repository.clone(),
            ),
            ("GITHUB_ACTION_REF".to_string(), self.git_ref.clone()),
        ]
    }
}

/// The `INPUT_<NAME>` variable of an input, as `@actions/core` reads it.
fn input_variable(name: &str) -> String {
    format!("INPUT_{}", name.replace(' ', "_").to_ascii_uppercase())
}

impl JobState<'_> {
    pub(crate) async fn execute(
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
                self.run_step(&call, &script, log, exec).await;
            }
            StepAction::Uses { action, with } => match Uses::of(action) {
                Uses::Checkout => self.checkout(&call, with, log, exec).await,
                Uses::Local(path) => {
                    let resolved = self.local_action(path).await;
                    self.resolved_action(&call, resolved, with, log, exec).await
                }
                Uses::Remote(reference) => {
                    let resolved = self.remote_action(reference).await;
                    self.resolved_action(&call, resolved, with, log, exec).await
                }
                Uses::Docker => exec.error = Some(docker_refusal(action)),
            },
        }
    }

    pub(crate) async fn working_directory(&mut self, step: &Step) -> Result<String, String> {
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
}

pub(crate) fn describe(d: Duration) -> String {
    let minutes = d.as_secs_f64() / 60.0;
    if (minutes - minutes.round()).abs() < 1e-9 {
        format!("{} minutes", minutes.round() as u64)
    } else {
        format!("{minutes:.2} minutes")
    }
}

/// The limit a step reached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Limit {
    /// Its own `timeout-minutes`.
    Step(Duration),
    /// The job's `timeout-minutes`.
    Job(Duration),
    /// [`CANCEL_TIMEOUT`] after the job was cancelled.
    Cancel,
}

/// Why a running step was stopped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Interrupt {
    /// It reached a limit.
    Timeout(Limit),
    /// The job was cancelled, or the run stopped.
    Cancelled,
}

impl Interrupt {
    /// Records the interruption on the step's execution.
    pub(crate) fn record(self, exec: &mut Execution) {
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
pub(crate) struct StepCall<'c> {
    pub step: &'c Step,
    pub name: &'c str,
    pub env: &'c [(String, String)],
    pub watch: Watch,
}

/// What may stop a running step before it ends.
pub(crate) struct Watch {
    /// The job's cancellation, unless the step goes on after it (or the job already is).
    pub cancel: Option<CancellationToken>,
    /// The run's stop.
    pub stop: CancellationToken,
    /// When the step must end, and which limit that is.
    pub deadline: tokio::time::Instant,
    pub limit: Limit,
}

impl Watch {
    /// Resolves when the step must stop, saying why.
    pub(crate) async fn interrupted(&self) -> Interrupt {
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

/// What running a step produced.
#[derive(Default)]
pub(crate) struct Execution {
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The error was already shown in the step's output.
    pub error_shown: bool,
    pub cancelled: bool,
    pub job_timed_out: bool,
    pub outputs: Object,
    pub annotations: Vec<Annotation>,
    pub summary: String,
    /// What the step saved with `GITHUB_STATE` or `save-state`, in order.
    pub state: Vec<(String, String)>,
    /// The step's action could not be read (missing or malformed `action.yml`).
    pub invalid_action: bool,
}

impl Execution {
    /// Says that `program` is missing when the step's command exited 127 (what a shell
    /// answers for a command it cannot find) without an error of its own.
    pub fn explain_missing(&mut self, program: &str) {
        if self.exit_code == Some(127) && self.error.is_none() {
            self.error = Some(format!(
                "{program} was not found on the VM: install it in a setup step, or use another shell"
            ));
        }
    }

    /// How the step ended.
    pub fn outcome(&self) -> StepOutcome {
        if self.cancelled {
            StepOutcome::Cancelled
        } else if self.error.is_none() && self.exit_code == Some(0) {
            StepOutcome::Success
        } else {
            StepOutcome::Failure
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn uses_names_a_kind_of_step() {
        assert_eq!(Uses::of("actions/checkout@v4"), Uses::Checkout);
        assert_eq!(
            Uses::of("actions/checkout"),
            Uses::Remote("actions/checkout")
        );
        assert_eq!(Uses::of("./a/b"), Uses::Local("./a/b"));
        assert_eq!(Uses::of("./"), Uses::Local("./"));
        assert_eq!(Uses::of("docker://alpine:3"), Uses::Docker);
        assert_eq!(Uses::of("o/r/p@v1"), Uses::Remote("o/r/p@v1"));
        assert_eq!(input_variable("who to-greet"), "INPUT_WHO_TO-GREET");
        assert_eq!(describe(Duration::from_secs(120)), "2 minutes");
    }
}
