//! The workflow model: a workflow file parsed with a real YAML parser into typed jobs and steps,
//! checked for what GitHub refuses (unknown keys, wrong shapes, `needs` that point nowhere or in
//! a circle, steps with neither `run` nor `uses`, malformed expressions). Every error names the
//! file, the line and what was expected.
//!
//! Values that may hold expressions (`if`, `env` values, `runs-on`, `timeout-minutes`…) stay text
//! here; the executor evaluates them when their contexts exist.

pub mod graph;
pub(crate) mod locate;
pub(crate) mod shape;

use crate::expression::{Condition, Object, Template, Value};
use locate::{Seg, line_of};
use shape::{MatrixShape, Ordered, RawDefaults, RawJob, RawSecrets, RawStep, RawWorkflow, Text};
use std::path::{Path, PathBuf};

/// A workflow that cannot be read or is not valid.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The file could not be read.
    #[error("{file}: cannot read the workflow: {source}")]
    Read {
        /// The workflow file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid workflow.
    #[error("{file}:{line}{}: {message}", if *column > 0 { format!(":{column}") } else { String::new() })]
    Invalid {
        /// The workflow file.
        file: PathBuf,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// What is wrong and what was expected.
        message: String,
    },
}

/// `defaults.run` at workflow or job level.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDefaults {
    /// `shell`.
    pub shell: Option<String>,
    /// `working-directory`.
    pub working_directory: Option<String>,
}

/// What a step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepAction {
    /// `run:` a script.
    Run(String),
    /// `uses:` an action, with its `with:` inputs.
    Uses {
        /// The action reference, e.g. `actions/checkout@v4`.
        action: String,
        /// `with:` inputs in file order.
        with: Vec<(String, String)>,
    },
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Position in the job (0-based).
    pub index: usize,
    /// `id`.
    pub id: Option<String>,
    /// `name` (may hold expressions).
    pub name: Option<String>,
    /// `run` or `uses`.
    pub action: StepAction,
    /// `shell`.
    pub shell: Option<String>,
    /// `env` in file order (values may hold expressions).
    pub env: Vec<(String, String)>,
    /// `if`.
    pub condition: Option<String>,
    /// `working-directory`.
    pub working_directory: Option<String>,
    /// `continue-on-error` (a boolean or an expression).
    pub continue_on_error: Option<String>,
    /// `timeout-minutes` (a number or an expression).
    pub timeout_minutes: Option<String>,
    /// Line of the step in the file.
    pub line: usize,
}

impl Step {
    /// The name shown for the step when it has no `name`: `Run <first line of the script>` or
    /// `Run <action>`, as GitHub shows it.
    pub fn default_name(&self) -> String {
        match &self.action {
            StepAction::Run(script) => {
                let first = script.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
                format!("Run {}", first.trim())
            }
            StepAction::Uses { action, .. } => format!("Run {action}"),
        }
    }
}

/// The secrets a job passes to the reusable workflow it calls.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CallSecrets {
    /// None.
    #[default]
    None,
    /// `secrets: inherit`: all of the caller's.
    Inherit,
    /// `secrets: {NAME: value}` (values may hold expressions).
    Map(Vec<(String, String)>),
}

/// `strategy.matrix` as written.
#[derive(Debug, Clone, PartialEq)]
pub enum MatrixSource {
    /// An expression that evaluates to the matrix mapping.
    Expression(String),
    /// The mapping (its values may hold expressions).
    Mapping(Value),
}

/// `strategy`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Strategy {
    /// `matrix`.
    pub matrix: Option<MatrixSource>,
    /// `fail-fast` (default true).
    pub fail_fast: Option<String>,
    /// `max-parallel`.
    pub max_parallel: Option<String>,
}

/// One job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job id (key under `jobs`).
    pub id: String,
    /// `name` (may hold expressions).
    pub name: Option<String>,
    /// `runs-on` labels (each may hold expressions).
    pub runs_on: Vec<String>,
    /// `needs`.
    pub needs: Vec<String>,
    /// `if`.
    pub condition: Option<String>,
    /// `strategy`.
    pub strategy: Option<Strategy>,
    /// `env` in file order.
    pub env: Vec<(String, String)>,
    /// `defaults.run`.
    pub defaults: RunDefaults,
    /// `outputs` in file order.
    pub outputs: Vec<(String, String)>,
    /// `timeout-minutes`.
    pub timeout_minutes: Option<String>,
    /// `continue-on-error`.
    pub continue_on_error: Option<String>,
    /// The steps.
    pub steps: Vec<Step>,
    /// `uses:` a reusable workflow.
    pub uses: Option<String>,
    /// `with:` inputs of the reusable workflow it calls, in file order.
    pub with: Vec<(String, String)>,
    /// `secrets:` of the reusable workflow it calls.
    pub secrets: CallSecrets,
    /// Keys azlin accepts but does not implement (`container`, `services`): the job fails
    /// naming them rather than running without them.
    pub unsupported: Vec<String>,
    /// Line of the job in the file.
    pub line: usize,
}

/// A parsed workflow file.
#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    /// The file it came from.
    pub path: PathBuf,
    /// `name`, or the file path as GitHub shows it when there is none.
    pub name: String,
    /// The events in `on`.
    pub events: Vec<String>,
    /// The settings under each event in `on` (e.g. `workflow_dispatch.inputs`).
    pub event_settings: Vec<(String, Value)>,
    /// `env` in file order.
    pub env: Vec<(String, String)>,
    /// `defaults.run`.
    pub defaults: RunDefaults,
    /// The jobs in file order.
    pub jobs: Vec<Job>,
}

impl Workflow {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Workflow, WorkflowError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkflowError::Read {
            file: path.to_path_buf(),
            source,
        })?;
        Workflow::parse(path, &text)
    }

    /// Parses `text`, naming `path` in errors.
    pub fn parse(path: &Path, text: &str) -> Result<Workflow, WorkflowError> {
        let raw: RawWorkflow = yaml_serde::from_str(text).map_err(|e| {
            yaml_error(
                path,
                &e,
                &[
                    ("on", "missing `on` (the events that trigger the workflow)"),
                    ("jobs", "missing `jobs`"),
                ],
            )
        })?;
        Builder { path, text }.build(raw)
    }

    /// The job with id `id`.
    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// The graph as `(job, needs)` pairs in file order.
    pub fn graph(&self) -> Vec<(String, Vec<String>)> {
        self.jobs
            .iter()
            .map(|j| (j.id.clone(), j.needs.clone()))
            .collect()
    }

    /// Whether the workflow runs for `event`.
    pub fn triggered_by(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }

    /// The mapping `on.<event>.<key>` (e.g. `workflow_call.inputs`), if the workflow has one.
    pub fn event_setting(&self, event: &str, key: &str) -> Option<&Object> {
        let (_, settings) = self.event_settings.iter().find(|(e, _)| e == event)?;
        settings.as_object()?.get(key)?.as_object()
    }
}

/// The YAML parser's error `e` as [`WorkflowError::Invalid`] at its line and column; each
/// `(field, message)` of `missing` replaces serde's "missing field `field`" with `message`.
pub(crate) fn yaml_error(
    path: &Path,
    e: &yaml_serde::Error,
    missing: &[(&str, &str)],
) -> WorkflowError {
    let mut message = e.to_string();
    let (mut line, mut column) = (0, 0);
    if let Some(loc) = e.location() {
        (line, column) = (loc.line(), loc.column());
        // The position moves to the front, where editors and people look for it.
        let suffix = format!(" at line {line} column {column}");
        if let Some(stripped) = message.strip_suffix(&suffix) {
            message = stripped.to_string();
        }
    }
    for (field, replacement) in missing {
        message = message.replace(&format!("missing field `{field}`"), replacement);
    }
    WorkflowError::Invalid {
        file: path.to_path_buf(),
        line,
        column,
        message,
    }
}

/// Turns raw shapes into the model, checking what serde cannot and naming lines in errors.
pub(crate) struct Builder<'a> {
    /// The file, for messages.
    pub(crate) path: &'a Path,
    /// Its text, for [`line_of`].
    pub(crate) text: &'a str,
}

/// The string of an optional [`Text`].
pub(crate) fn text(t: Option<Text>) -> Option<String> {
    t.map(|Text(s)| s)
}

fn pairs(m: Option<Ordered<Text>>) -> Vec<(String, String)> {
    m.map(|Ordered(v)| v.into_iter().map(|(k, Text(t))| (k, t)).collect())
        .unwrap_or_default()
}

fn defaults(d: Option<RawDefaults>) -> RunDefaults {
    let run = d.and_then(|d| d.run).unwrap_or_default();
    RunDefaults {
        shell: text(run.shell),
        working_directory: text(run.working_directory),
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl Builder<'_> {
    /// [`WorkflowError::Invalid`] at the line of `path`, the message prefixed with the dotted path.
    pub(crate) fn error(&self, path: &[Seg<'_>], message: impl Into<String>) -> WorkflowError {
        let dotted = path
            .iter()
            .map(|s| match s {
                Seg::Key(k) => format!(".{k}"),
                Seg::Item(i) => format!("[{i}]"),
            })
            .collect::<String>();
        let dotted = dotted.trim_start_matches('.');
        WorkflowError::Invalid {
            file: self.path.to_path_buf(),
            line: line_of(self.text, path).unwrap_or(0),
            column: 0,
            message: if dotted.is_empty() {
                message.into()
            } else {
                format!("{dotted}: {}", message.into())
            },
        }
    }

    fn line(&self, path: &[Seg<'_>]) -> usize {
        line_of(self.text, path).unwrap_or(0)
    }

    /// Checks that `value` parses as a template (or as a condition for `if`).
    fn check_expr(
        &self,
        path: &[Seg<'_>],
        value: Option<&str>,
        condition: bool,
    ) -> Result<(), WorkflowError> {
        let Some(value) = value else { return Ok(()) };
        let result = if condition {
            Condition::parse(value).map(|_| ())
        } else {
            Template::parse(value).map(|_| ())
        };
        result.map_err(|e| self.error(path, format!("invalid expression: {e}")))
    }

    /// The text `t`, checked at `path` to parse as a template (or, with `condition`, as a
    /// condition).
    pub(crate) fn checked_text(
        &self,
        path: &[Seg<'_>],
        t: Option<Text>,
        condition: bool,
    ) -> Result<Option<String>, WorkflowError> {
        let t = text(t);
        self.check_expr(path, t.as_deref(), condition)?;
        Ok(t)
    }

    /// The boolean setting `t` (`continue-on-error`, `fail-fast`), checked at `path`: `true`,
    /// `false` or an expression (evaluated when its contexts exist).
    fn checked_flag(
        &self,
        path: &[Seg<'_>],
        t: Option<Text>,
    ) -> Result<Option<String>, WorkflowError> {
        let t = self.checked_text(path, t, false)?;
        if let Some(v) = &t
            && !v.contains("${{")
        {
            Value::from(v.as_str()).to_flag().map_err(|_| {
                self.error(
                    path,
                    format!("expected true, false or an expression, not '{v}'"),
                )
            })?;
        }
        Ok(t)
    }

    /// Checks that each value of the map at `path` (its `pairs`) parses as a template.
    fn check_map<'a>(
        &self,
        path: &[Seg<'a>],
        pairs: &'a [(String, String)],
    ) -> Result<(), WorkflowError> {
        for (k, v) in pairs {
            let mut p = path.to_vec();
            p.push(Seg::Key(k));
            self.check_expr(&p, Some(v), false)?;
        }
        Ok(())
    }

    fn build(&self, raw: RawWorkflow) -> Result<Workflow, WorkflowError> {
        let RawWorkflow {
            name,
            run_name: _,
            on,
            env,
            defaults: raw_defaults,
            jobs: Ordered(raw_jobs),
            permissions: _,
            concurrency: _,
        } = raw;
        if raw_jobs.is_empty() {
            return Err(self.error(&[Seg::Key("jobs")], "expected at least one job"));
        }
        let env = pairs(env);
        self.check_map(&[Seg::Key("env")], &env)?;
        let mut jobs = Vec::new();
        for (id, raw_job) in raw_jobs {
            jobs.push(self.job(id, raw_job)?);
        }
        let graph: Vec<(String, Vec<String>)> = jobs
            .iter()
            .map(|j: &Job| (j.id.clone(), j.needs.clone()))
            .collect();
        graph::check(&graph).map_err(|p| WorkflowError::Invalid {
            file: self.path.to_path_buf(),
            line: self.line(&[Seg::Key("jobs"), Seg::Key(&p.job), Seg::Key("needs")]),
            column: 0,
            message: format!("jobs.{}.needs: {}", p.job, p.message),
        })?;
        Ok(Workflow {
            path: self.path.to_path_buf(),
            name: text(name)
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| self.path.display().to_string()),
            events: on.events,
            event_settings: on.settings,
            env,
            defaults: defaults(raw_defaults),
            jobs,
        })
    }

    fn job(&self, id: String, raw: RawJob) -> Result<Job, WorkflowError> {
        let RawJob {
            name,
            runs_on,
            needs,
            condition,
            strategy,
            env,
            defaults: raw_defaults,
            outputs,
            timeout_minutes,
            continue_on_error,
            steps,
            uses,
            with,
            secrets,
            container,
            services,
            permissions: _,
            concurrency: _,
            environment: _,
        } = raw;
        let at = |key: &'static str| [Seg::Key("jobs"), Seg::Key(&id), Seg::Key(key)];
        if !valid_id(&id) {
            return Err(self.error(
                &[Seg::Key("jobs"), Seg::Key(&id)],
                "a job id must start with a letter or '_' and contain only letters, digits, '-' and '_'",
            ));
        }
        let uses = text(uses);
        let with = pairs(with);
        self.check_map(&at("with"), &with)?;
        let secrets = match secrets {
            None => CallSecrets::None,
            Some(RawSecrets::Word(w)) if w == "inherit" => CallSecrets::Inherit,
            Some(RawSecrets::Word(w)) => {
                return Err(self.error(
                    &at("secrets"),
                    format!("expected `inherit` or a mapping of secrets, not '{w}'"),
                ));
            }
            Some(RawSecrets::Map(map)) => {
                let map = pairs(Some(map));
                self.check_map(&at("secrets"), &map)?;
                CallSecrets::Map(map)
            }
        };
        if uses.is_none() && (!with.is_empty() || secrets != CallSecrets::None) {
            return Err(self.error(
                &[Seg::Key("jobs"), Seg::Key(&id)],
                "`with` and `secrets` belong to a job that calls a reusable workflow with `uses`",
            ));
        }
        if uses.is_none() && runs_on.is_none() {
            return Err(self.error(
                &[Seg::Key("jobs"), Seg::Key(&id)],
                "missing `runs-on` (expected a runner label such as ubuntu-latest)",
            ));
        }
        let raw_steps = steps.unwrap_or_default();
        if uses.is_none() && raw_steps.is_empty() {
            return Err(self.error(
                &[Seg::Key("jobs"), Seg::Key(&id)],
                "missing `steps` (expected a list of steps)",
            ));
        }
        let name = self.checked_text(&at("name"), name, false)?;
        let condition = self.checked_text(&at("if"), condition, true)?;
        let runs_on = runs_on.map(|r| r.0).unwrap_or_default();
        for label in &runs_on {
            self.check_expr(&at("runs-on"), Some(label), false)?;
        }
        let env = pairs(env);
        self.check_map(&at("env"), &env)?;
        let outputs = pairs(outputs);
        self.check_map(&at("outputs"), &outputs)?;
        let timeout_minutes = self.checked_text(&at("timeout-minutes"), timeout_minutes, false)?;
        let continue_on_error = self.checked_flag(&at("continue-on-error"), continue_on_error)?;
        let strategy = match strategy {
            None => None,
            Some(s) => {
                let matrix = match s.matrix {
                    None => None,
                    Some(MatrixShape::Expression(e)) => {
                        self.check_expr(&at("strategy"), Some(&e), false)?;
                        Some(MatrixSource::Expression(e))
                    }
                    Some(MatrixShape::Mapping(v)) => Some(MatrixSource::Mapping(v)),
                };
                let mut fail_fast_at = at("strategy").to_vec();
                fail_fast_at.push(Seg::Key("fail-fast"));
                Some(Strategy {
                    matrix,
                    fail_fast: self.checked_flag(&fail_fast_at, s.fail_fast)?,
                    max_parallel: text(s.max_parallel),
                })
            }
        };
        let steps = self.steps(&at("steps"), raw_steps)?;
        let mut unsupported = Vec::new();
        if container.is_some() {
            unsupported.push("container".to_string());
        }
        if services.is_some() {
            unsupported.push("services".to_string());
        }
        Ok(Job {
            line: self.line(&[Seg::Key("jobs"), Seg::Key(&id)]),
            needs: needs.map(|n| n.0).unwrap_or_default(),
            name,
            runs_on,
            condition,
            strategy,
            env,
            defaults: defaults(raw_defaults),
            outputs,
            timeout_minutes,
            continue_on_error,
            steps,
            uses,
            with,
            secrets,
            unsupported,
            id,
        })
    }

    /// The steps of the list at `base` (`jobs.<job>.steps`, or an action's `runs.steps`), each
    /// checked, their ids unique.
    pub(crate) fn steps(
        &self,
        base: &[Seg<'_>],
        raw: Vec<RawStep>,
    ) -> Result<Vec<Step>, WorkflowError> {
        let mut steps: Vec<Step> = Vec::new();
        for (index, raw_step) in raw.into_iter().enumerate() {
            let mut at = base.to_vec();
            at.push(Seg::Item(index));
            let step = self.step(&at, index, raw_step)?;
            if let Some(step_id) = &step.id
                && steps.iter().any(|s| s.id.as_ref() == Some(step_id))
            {
                at.push(Seg::Key("id"));
                return Err(self.error(
                    &at,
                    format!("the step id '{step_id}' is already used by an earlier step"),
                ));
            }
            steps.push(step);
        }
        Ok(steps)
    }

    /// The step at `base`, the `index`th of its list.
    fn step(&self, base: &[Seg<'_>], index: usize, raw: RawStep) -> Result<Step, WorkflowError> {
        let RawStep {
            id,
            name,
            run,
            uses,
            with,
            shell,
            env,
            condition,
            working_directory,
            continue_on_error,
            timeout_minutes,
        } = raw;
        let at = |key: &'static str| {
            let mut p = base.to_vec();
            p.push(Seg::Key(key));
            p
        };
        let action = match (text(run), text(uses)) {
            (Some(run), None) => {
                self.check_expr(&at("run"), Some(&run), false)?;
                StepAction::Run(run)
            }
            (None, Some(action)) => {
                let with = pairs(with);
                self.check_map(&at("with"), &with)?;
                StepAction::Uses { action, with }
            }
            (Some(_), Some(_)) => {
                return Err(self.error(base, "a step has either `run` or `uses`, not both"));
            }
            (None, None) => {
                return Err(self.error(base, "a step needs `run` (a script) or `uses` (an action)"));
            }
        };
        let id = text(id);
        if let Some(id) = &id
            && !valid_id(id)
        {
            return Err(self.error(
                &at("id"),
                "a step id must start with a letter or '_' and contain only letters, digits, '-' and '_'",
            ));
        }
        let name = self.checked_text(&at("name"), name, false)?;
        let condition = self.checked_text(&at("if"), condition, true)?;
        let env = pairs(env);
        self.check_map(&at("env"), &env)?;
        let working_directory =
            self.checked_text(&at("working-directory"), working_directory, false)?;
        let continue_on_error = self.checked_flag(&at("continue-on-error"), continue_on_error)?;
        let timeout_minutes = self.checked_text(&at("timeout-minutes"), timeout_minutes, false)?;
        Ok(Step {
            index,
            id,
            name,
            action,
            shell: text(shell),
            env,
            condition,
            working_directory,
            continue_on_error,
            timeout_minutes,
            line: self.line(base),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        Workflow::parse(Path::new("wf.yml"), text)
    }

    fn err(text: &str) -> (usize, String) {
        match parse(text).unwrap_err() {
            WorkflowError::Invalid { line, message, .. } => (line, message),
            other => panic!("{other}"),
        }
    }

    const GOOD: &str = "\
name: ci
on:
  push:
    branches: [main]
  workflow_dispatch:
env:
  GLOBAL: 1
defaults:
  run:
    shell: bash
jobs:
  build:
    runs-on: [self-hosted, ubuntu-latest]
    env:
      FLAG: true
    outputs:
      out: ${{ steps.s1.outputs.v }}
    steps:
      - id: s1
        run: echo hi
        continue-on-error: true
        timeout-minutes: 5
      - uses: actions/checkout@v4
        with:
          path: src
  test:
    needs: build
    if: ${{ needs.build.result == 'success' }}
    runs-on: ubuntu-latest
    strategy:
      fail-fast: false
      max-parallel: 2
      matrix:
        os: [a, b]
        node: [1, 2]
        include:
          - os: c
    steps:
      - run: |
          echo one
          echo two
        working-directory: sub
        shell: sh
";

    #[test]
    fn parses_a_full_workflow() {
        let wf = parse(GOOD).unwrap();
        assert_eq!(wf.name, "ci");
        assert_eq!(wf.events, ["push", "workflow_dispatch"]);
        assert_eq!(wf.env, [("GLOBAL".to_string(), "1".to_string())]);
        assert_eq!(wf.defaults.shell.as_deref(), Some("bash"));
        let build = wf.job("build").unwrap();
        assert_eq!(build.runs_on, ["self-hosted", "ubuntu-latest"]);
        assert_eq!(build.env[0].1, "true");
        assert_eq!(build.line, 12);
        assert_eq!(build.steps[0].continue_on_error.as_deref(), Some("true"));
        assert_eq!(build.steps[0].timeout_minutes.as_deref(), Some("5"));
        assert_eq!(build.steps[0].default_name(), "Run echo hi");
        assert_eq!(build.steps[1].line, 23);
        assert!(matches!(
            &build.steps[1].action,
            StepAction::Uses { action, with } if action == "actions/checkout@v4" && with[0].1 == "src"
        ));
        let test = wf.job("test").unwrap();
        assert_eq!(test.needs, ["build"]);
        let strategy = test.strategy.as_ref().unwrap();
        assert_eq!(strategy.fail_fast.as_deref(), Some("false"));
        assert_eq!(strategy.max_parallel.as_deref(), Some("2"));
        let Some(MatrixSource::Mapping(Value::Object(m))) = &strategy.matrix else {
            panic!("{:?}", strategy.matrix)
        };
        assert_eq!(
            m.keys().cloned().collect::<Vec<_>>(),
            ["os", "node", "include"]
        );
        assert_eq!(test.steps[0].shell.as_deref(), Some("sh"));
        assert!(wf.triggered_by("push") && !wf.triggered_by("pull_request"));
    }

    #[test]
    fn on_may_be_a_string_or_a_list() {
        let wf =
            parse("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n").unwrap();
        assert_eq!(wf.events, ["push"]);
        assert_eq!(wf.name, "wf.yml");
        let wf = parse(
            "on: [push, pull_request]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n",
        )
        .unwrap();
        assert_eq!(wf.events, ["push", "pull_request"]);
    }

    #[test]
    fn malformed_yaml_names_file_and_line() {
        let e = parse("on: push\njobs:\n  a:\n    runs-on: [x\n    steps: 1\n").unwrap_err();
        let text = e.to_string();
        assert!(text.starts_with("wf.yml:"), "{text}");
        let WorkflowError::Invalid { line, .. } = e else {
            panic!()
        };
        assert!(line >= 4, "{text}");
    }

    #[test]
    fn wrong_shapes_say_what_was_expected() {
        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: {x: 1}\n    steps:\n      - run: x\n",
        );
        assert_eq!(line, 5, "{msg}");
        assert!(msg.contains("jobs.a.needs"), "{msg}");
        assert!(
            msg.contains("expected a string or a list of strings"),
            "{msg}"
        );

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: x\n        shel: bash\n",
        );
        assert_eq!(line, 7, "{msg}");
        assert!(msg.contains("unknown field `shel`"), "{msg}");
        assert!(msg.contains("expected one of"), "{msg}");

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: [x]\n",
        );
        assert_eq!(line, 6, "{msg}");
        assert!(
            msg.contains("expected a string, number or boolean"),
            "{msg}"
        );

        let (_, msg) = err("jobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n");
        assert!(msg.contains("missing `on`"), "{msg}");

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: []\n    env:\n      A: 1\n      A: 2\n",
        );
        assert!(msg.contains("duplicate key `A`"), "{msg}");
        assert!(line >= 7, "{msg}");
    }

    #[test]
    fn semantic_errors_name_the_line() {
        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n  b:\n    runs-on: x\n    needs: [a, nope]\n    steps:\n      - run: x\n",
        );
        assert_eq!(line, 9);
        assert_eq!(
            msg,
            "jobs.b.needs: job 'b' needs job 'nope', which is not defined in this workflow"
        );

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    needs: b\n    runs-on: x\n    steps:\n      - run: x\n  b:\n    needs: a\n    runs-on: x\n    steps:\n      - run: x\n",
        );
        assert_eq!(line, 4);
        assert!(msg.contains("cycle: 'a' needs 'b' needs 'a'"), "{msg}");

        let (line, msg) =
            err("on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - name: nothing\n");
        assert_eq!(line, 6);
        assert!(msg.contains("jobs.a.steps[0]: a step needs `run`"), "{msg}");

        let (line, msg) = err("on: push\njobs:\n  a:\n    steps:\n      - run: x\n");
        assert_eq!(line, 3);
        assert!(msg.contains("missing `runs-on`"), "{msg}");

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n        if: github.event_name = 'push'\n",
        );
        assert_eq!(line, 7);
        assert!(msg.contains("invalid expression"), "{msg}");

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo ${{ foo.bar }}\n",
        );
        assert_eq!(line, 6);
        assert!(msg.contains("Unrecognized named-value: 'foo'"), "{msg}");

        let (_, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - id: s\n        run: x\n      - id: s\n        run: y\n",
        );
        assert!(msg.contains("already used"), "{msg}");

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: x\n        continue-on-error: maybe\n",
        );
        assert_eq!(line, 7);
        assert!(
            msg.contains("continue-on-error: expected true, false or an expression, not 'maybe'"),
            "{msg}"
        );

        let (line, msg) = err(
            "on: push\njobs:\n  a:\n    runs-on: x\n    strategy:\n      fail-fast: 0x\n    steps:\n      - run: x\n",
        );
        assert_eq!(line, 6);
        assert!(
            msg.contains("jobs.a.strategy.fail-fast: expected true"),
            "{msg}"
        );
    }
}
