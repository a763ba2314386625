//! JavaScript actions (`node12`, `node16`, `node20`, `node24`), run with the Node.js of the VM
//! image: `pre` (when `pre-if` holds, default `always()`) and `main` as the step, and `post` as a
//! stage of its own after all main steps, in reverse order (when `post-if` holds, default
//! `always()`), also after a failure or a cancel. Inputs arrive as `INPUT_<NAME>`; what `pre`
//! and `main` save with `GITHUB_STATE` or `save-state` arrives in later stages as `STATE_<NAME>`.

use super::run::Process;
use super::{Execution, ResolvedAction, StepCall, Watch, input_variable};
use crate::action::manifest::Runs;
use crate::context::object_of;
use crate::expression::{Condition, Value};
use crate::job::{JobState, millis};
use crate::model::Step;
use crate::observer::Origin;
use crate::protocol::script::ShellCommand;
use crate::report::{JobResult, StepOutcome, StepReport};
use std::io::Write;
use std::time::Instant;

/// The default of `pre-if` and `post-if`.
const ALWAYS: &str = "always()";

/// A `post` stage waiting for the end of the job.
pub(crate) struct PostStage {
    /// The step that ran the action.
    step: Step,
    /// Its name as shown.
    name: String,
    /// The step's environment when it ran.
    env: Vec<(String, String)>,
    /// The action's variables and inputs.
    action_env: Vec<(String, String)>,
    /// The `inputs` its `post-if` sees.
    inputs: Vec<(String, String)>,
    /// The script, relative to the action's folder.
    entry: String,
    dir: String,
    condition: String,
    /// Which action run's state it gets.
    run: usize,
}

impl JobState<'_> {
    /// Runs the JavaScript `action` as the step `call`: its `pre` stage, then `main`; keeps its
    /// `post` stage for the end of the job.
    pub(super) async fn javascript(
        &mut self,
        call: &StepCall<'_>,
        action: &ResolvedAction,
        inputs: Vec<(String, String)>,
        log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        let Runs::Node {
            main,
            pre,
            pre_if,
            post,
            post_if,
            using: _,
        } = &action.manifest.runs
        else {
            return;
        };
        let run = self.states.len();
        self.states.insert(run, Vec::new());
        let mut action_env = action.variables();
        action_env.extend(inputs.iter().map(|(k, v)| (input_variable(k), v.clone())));
        if let Some(post) = post {
            self.posts.push(PostStage {
                step: call.step.clone(),
                name: format!("Post {}", call.name),
                env: call.env.to_vec(),
                action_env: action_env.clone(),
                inputs: inputs.clone(),
                entry: post.clone(),
                dir: action.dir.clone(),
                condition: post_if.clone().unwrap_or_else(|| ALWAYS.to_string()),
                run,
            });
        }
        if let Some(pre) = pre {
            let condition = pre_if.as_deref().unwrap_or(ALWAYS);
            match self.stage_holds(condition, &inputs).await {
                Ok(false) => {}
                Ok(true) => {
                    let mut pre_exec = Execution::default();
                    let process = self.node_process(&action.dir, pre, &action_env, run);
                    self.run_process(call, &process, None, &mut pre_exec).await;
                    pre_exec.explain_missing("node");
                    self.keep_state(run, &mut pre_exec);
                    if pre_exec.outcome() != StepOutcome::Success {
                        *exec = pre_exec;
                        return;
                    }
                }
                Err(e) => {
                    exec.error = Some(format!("evaluating pre-if: {e}"));
                    return;
                }
            }
        }
        let process = self.node_process(&action.dir, main, &action_env, run);
        self.run_process(call, &process, log, exec).await;
        exec.explain_missing("node");
        self.keep_state(run, exec);
    }

    /// Runs a `post` stage and reports it as a step of its own.
    pub(crate) async fn post_stage(&mut self, post: PostStage) -> StepReport {
        let started = Instant::now();
        let mut exec = Execution::default();
        match self.stage_holds(&post.condition, &post.inputs).await {
            Ok(false) => return self.stage_report(&post, started, exec, None),
            Ok(true) => {}
            Err(e) => {
                exec.error = Some(format!("evaluating post-if: {e}"));
                self.show_error(&post.name, &exec, None);
                self.set_job_status(JobResult::Failure);
                return self.stage_report(&post, started, exec, None);
            }
        }
        self.env.observer.step_started(Origin {
            workflow: &self.env.facts.workflow.name,
            job: &self.inst.name,
            step: &post.name,
        });
        let (log_path, log) = self.open_log(&format!(
            "{:02}-post-{}",
            post.step.index + 1,
            crate::job::slug(&post.name)
        ));
        let watch = Watch {
            cancel: None,
            stop: self.env.stop.clone(),
            deadline: self.cancel_deadline.unwrap_or(self.deadline),
            limit: if self.is_cancelled() {
                super::Limit::Cancel
            } else {
                super::Limit::Job(self.timeout)
            },
        };
        let call = StepCall {
            step: &post.step,
            name: &post.name,
            env: &post.env,
            watch,
        };
        let process = self.node_process(&post.dir, &post.entry, &post.action_env, post.run);
        self.run_process(&call, &process, log, &mut exec).await;
        exec.explain_missing("node");
        self.show_error(&post.name, &exec, log_path.as_deref());
        if exec.outcome() == StepOutcome::Failure {
            self.set_job_status(JobResult::Failure);
        }
        self.stage_report(&post, started, exec, log_path)
    }

    /// The report of a `post` stage (skipped when it did not run).
    fn stage_report(
        &self,
        post: &PostStage,
        started: Instant,
        exec: Execution,
        log: Option<std::path::PathBuf>,
    ) -> StepReport {
        let ran = exec.exit_code.is_some() || exec.error.is_some();
        let outcome = if ran {
            exec.outcome()
        } else {
            StepOutcome::Skipped
        };
        StepReport {
            index: post.step.index,
            id: None,
            name: post.name.clone(),
            outcome,
            conclusion: outcome,
            duration_ms: millis(started.elapsed()),
            exit_code: exec.exit_code,
            log,
            annotations: exec.annotations,
            error: exec.error.map(|e| self.masker.mask(&e)),
            summary: self.masker.mask(&exec.summary),
        }
    }

    /// Whether a stage's `pre-if` / `post-if` holds; the action's inputs are its `inputs`.
    async fn stage_holds(
        &mut self,
        condition: &str,
        inputs: &[(String, String)],
    ) -> Result<bool, String> {
        let condition = Condition::parse(condition).map_err(|e| e.message)?;
        self.hash_files_for(&condition.hash_files_calls()).await?;
        let outer = self.contexts.get("inputs").cloned();
        self.contexts
            .insert("inputs", Value::Object(object_of(inputs)));
        let holds = self.in_scope(|scope| condition.holds(scope).map_err(|e| e.message));
        if let Some(outer) = outer {
            self.contexts.insert("inputs", outer);
        }
        holds
    }

    /// The process of one stage: `node` on the stage's script, in the workspace, with the
    /// action's variables and the state saved so far by this action run.
    fn node_process(
        &self,
        dir: &str,
        entry: &str,
        action_env: &[(String, String)],
        run: usize,
    ) -> Process {
        let mut env = action_env.to_vec();
        if let Some(state) = self.states.get(&run) {
            env.extend(state.iter().map(|(k, v)| (format!("STATE_{k}"), v.clone())));
        }
        // node runs as the step's shell, so that inputs whose names are no shell names
        // (`INPUT_WHO-TO-GREET`) reach it.
        let entry = format!("{}/{}", dir.trim_end_matches('/'), entry);
        Process {
            shell: ShellCommand {
                template: format!("node \"{}\"", entry.replace('"', "")),
                extension: "js",
            },
            script: String::new(),
            working_directory: self.layout.workspace.clone(),
            action_env: env,
        }
    }

    /// Keeps what a stage saved for the later stages of the same action run.
    fn keep_state(&mut self, run: usize, exec: &mut Execution) {
        self.states.entry(run).or_default().append(&mut exec.state);
    }
}
