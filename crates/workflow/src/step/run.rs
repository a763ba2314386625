//! `run:` steps, and the machinery every step that runs a process on the VM shares (a
//! JavaScript action's stages too): one round trip per step, output shown and logged live,
//! workflow commands, environment files, timeouts and cancellation.

use super::{Execution, StepCall};
use crate::context::set_pair;
use crate::expression::{Object, Value};
use crate::job::{JobState, KILL_TIMEOUT};
use crate::observer::Origin;
use crate::protocol::file_command::{parse_key_values, parse_paths};
use crate::protocol::output::{Annotation, StepOutput};
use crate::protocol::script::{
    FileCommandPaths, FileContents, ShellCommand, StepScript, kill_program, parse_trailer,
};
use std::io::Write;

/// A process a step runs on the VM.
pub(super) struct Process {
    /// How the script runs.
    pub shell: ShellCommand,
    /// The script (expressions already substituted).
    pub script: String,
    pub working_directory: String,
    /// The variables of the action being run (`INPUT_*`, `STATE_*`, `GITHUB_ACTION_PATH`…),
    /// above the step's own.
    pub action_env: Vec<(String, String)>,
}

impl JobState<'_> {
    /// A `run:` step: its script with its shell, in its working directory.
    pub(super) async fn run_step(
        &mut self,
        call: &StepCall<'_>,
        script: &str,
        log: Option<Box<dyn Write + Send>>,
        exec: &mut Execution,
    ) {
        let facts = self.env.facts;
        let step = call.step;
        let shell_name = step
            .shell
            .as_deref()
            .or(self.inst.job.defaults.shell.as_deref())
            .or(facts.workflow.defaults.shell.as_deref())
            .map(str::to_string);
        // act reads expressions in a shell name (`shell: ${{ env.MY_SHELL }}`).
        let shell_name = match shell_name {
            Some(name) => match self.render(&name).await {
                Ok(name) => Some(name),
                Err(e) => {
                    exec.error = Some(e);
                    return;
                }
            },
            None => None,
        };
        let shell = match ShellCommand::resolve(shell_name.as_deref(), self.session.facts().bash) {
            Ok(s) => s,
            Err(e) => {
                exec.error = Some(e.0);
                return;
            }
        };
        let working_directory = match self.working_directory(step).await {
            Ok(wd) => wd,
            Err(e) => {
                exec.error = Some(e);
                return;
            }
        };
        // A missing interpreter exits 127 before the script runs; a script's own 127 (a
        // command it cannot find) comes from bash or sh, whose presence the VM probe checked.
        let interpreter = shell
            .template
            .split_whitespace()
            .next()
            .filter(|p| matches!(*p, "pwsh" | "python3" | "python"))
            .map(str::to_string);
        let process = Process {
            shell,
            script: script.to_string(),
            working_directory,
            action_env: self.frame.action_env.clone(),
        };
        self.run_process(call, &process, log, exec).await;
        if let Some(interpreter) = interpreter {
            exec.explain_missing(&interpreter);
        }
    }

    /// Runs `process` as the step `call`, in one round trip: output shown and logged live,
    /// workflow commands and environment files applied, state kept on `exec`.
    pub(super) async fn run_process(
        &mut self,
        call: &StepCall<'_>,
        process: &Process,
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
        let Process {
            shell,
            script,
            working_directory: wd,
            action_env,
        } = process;
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
            .chain(action_env.iter())
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
            working_directory: wd,
            shell,
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
        // Shared by the step's own output and the services' progress lines (never both at once:
        // each lock lasts one synchronous call).
        let output = std::sync::Mutex::new(StepOutput::new(
            &marker,
            &mut self.masker,
            allow_unsecure,
            facts.debug,
            log,
            display,
        ));
        let transfers = &mut self.transfers;
        let ending = {
            let feed = |stream, bytes: &[u8]| {
                output
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .feed(stream, bytes);
            };
            let mut sink = feed;
            let run = self.session.run(&program, &mut sink);
            tokio::pin!(run);
            loop {
                tokio::select! {
                    r = &mut run => break Ok(r),
                    interrupt = watch.interrupted() => break Err(interrupt),
                    Some(line) = next_line(transfers) => {
                        feed(azlin_remote::OutputStream::Stdout, format!("{line}\n").as_bytes());
                    }
                }
            }
        };
        if let Err(interrupt) = &ending {
            interrupt.record(exec);
        }
        let finished = output
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish();
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
        exec.state = effects.state;
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

    pub(super) fn set_env_var(&mut self, key: &str, value: String, exec: &mut Execution) {
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
        files: &FileContents,
        outputs: &mut Object,
        exec: &mut Execution,
    ) -> Result<(), String> {
        for (k, v) in parse_key_values("GITHUB_ENV", &files.env).map_err(|e| e.to_string())? {
            self.set_env_var(&k, v, exec);
        }
        for (k, v) in parse_key_values("GITHUB_OUTPUT", &files.output).map_err(|e| e.to_string())? {
            outputs.insert(k, Value::String(v));
        }
        exec.state
            .extend(parse_key_values("GITHUB_STATE", &files.state).map_err(|e| e.to_string())?);
        for p in parse_paths(&files.path) {
            self.path_prepend.insert(0, p);
        }
        exec.summary = files.summary.clone();
        Ok(())
    }
}

/// The next progress line of the job's downloads; never, when nothing reports them.
async fn next_line(
    lines: &mut Option<tokio::sync::mpsc::UnboundedReceiver<String>>,
) -> Option<String> {
    match lines {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}
