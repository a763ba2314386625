//! The entry point the CLI calls: parse the workflow files (refusing invalid ones before any VM
//! exists), resolve the run's facts, and run every workflow as its own session(s), in parallel.

use crate::action::source::{ActionError, ActionSource};
use crate::context::RunFacts;
use crate::expression::{Object, Value};
use crate::inputs::{InputError, RunInputs, resolve_run_inputs};
use crate::model::{Workflow, WorkflowError, graph};
use crate::observer::Observer;
use crate::options::{RunOptions, local_user};
use crate::report::RunReport;
use crate::repository::Repository;
use crate::scheduler::WorkflowRun;
use crate::session::{Allocator, SessionConfig, SessionManager};
use azlin_core::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// A run that could not start. Nothing was allocated.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A workflow file is invalid.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    /// `--job` names a job no workflow has.
    #[error("no workflow has a job named '{0}'")]
    UnknownJob(String),
    /// `--repository` is not `OWNER/NAME`.
    #[error("invalid repository '{0}': expected OWNER/NAME")]
    Repository(String),
    /// No workflow file was given.
    #[error("no workflow file given")]
    NoWorkflow,
    /// The action source settings are invalid.
    #[error(transparent)]
    Actions(#[from] ActionError),
    /// The inputs do not fit what a workflow declares.
    #[error("{}: {source}", file.display())]
    Inputs {
        /// The workflow file.
        file: PathBuf,
        /// What does not fit.
        source: InputError,
    },
    /// A folder could not be created.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl RunError {
    /// What kind of error it is (decides the exit code).
    pub fn kind(&self) -> ErrorKind {
        match self {
            RunError::Workflow(_)
            | RunError::UnknownJob(_)
            | RunError::Repository(_)
            | RunError::NoWorkflow
            | RunError::Actions(_)
            | RunError::Inputs { .. } => ErrorKind::Usage,
            RunError::Io { .. } => ErrorKind::Internal,
        }
    }
}

/// The session settings `options` ask for.
pub fn session_config(options: &RunOptions) -> SessionConfig {
    SessionConfig {
        max_concurrent: options.max_concurrent.max(1),
        sessions_dir: options.sessions_dir.clone(),
        setup_commands: options.setup_commands.clone(),
        cleanup_commands: options.cleanup_commands.clone(),
        run_as: options.run_as,
        keep_failed: options.keep_failed,
    }
}

/// Runs `files` with VMs from `allocator`, reporting progress to `observer`. Every workflow runs
/// as its own session (or sessions, with `--vm-scope job`), all in parallel under
/// `options.max_concurrent`. Returns when every VM has been released.
pub async fn run_workflows(
    files: &[PathBuf],
    options: &RunOptions,
    allocator: Arc<dyn Allocator>,
    observer: Arc<dyn Observer>,
) -> Result<RunReport, RunError> {
    let manager = SessionManager::new(allocator, session_config(options));
    let result = run_workflows_in(&manager, files, options, observer).await;
    manager.wait_idle().await;
    result
}

/// Like [`run_workflows`], with sessions from `manager` (whose limit and records apply). If this
/// future is dropped (Ctrl-C without the cancellation token), its VMs are released in the
/// background: await [`SessionManager::wait_idle`] before exiting.
pub async fn run_workflows_in(
    manager: &SessionManager,
    files: &[PathBuf],
    options: &RunOptions,
    observer: Arc<dyn Observer>,
) -> Result<RunReport, RunError> {
    let started = Instant::now();
    let workflows = prepare(files, options)?;
    for dir in [&options.sessions_dir, &options.logs_dir] {
        std::fs::create_dir_all(dir).map_err(|source| RunError::Io {
            context: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let actions = ActionSource::new(&options.actions)?;
    let uploaded = std::sync::Mutex::new(std::collections::HashSet::new());
    let run_id = run_number_id();
    let mut used_slugs: Vec<String> = Vec::new();
    let mut facts = Vec::new();
    for (wf, inputs) in workflows {
        let mut slug = log_slug(&wf.path);
        if used_slugs.contains(&slug) {
            slug = format!("{slug}-{}", used_slugs.len() + 1);
        }
        used_slugs.push(slug.clone());
        facts.push(resolve_facts(wf, inputs, options, &run_id, &slug));
    }
    let observer = &observer;
    let runs = facts.iter().map(|f| {
        let selected = match &options.job {
            None => f.workflow.jobs.iter().map(|j| j.id.clone()).collect(),
            Some(job) if f.workflow.job(job).is_some() => {
                let graph = f.workflow.graph();
                let mut ids: Vec<String> = graph::ancestors(&graph, job)
                    .into_iter()
                    .map(str::to_string)
                    .collect();
                ids.push(job.clone());
                ids
            }
            Some(_) => Vec::new(),
        };
        WorkflowRun {
            facts: f,
            manager,
            observer,
            cancel: &options.cancel,
            stop: CancellationToken::new(),
            scope: options.vm_scope,
            runner_labels: &options.runner_labels,
            selected,
            actions: &actions,
            uploaded: &uploaded,
            services: options.services.as_deref(),
        }
        .run()
    });
    let reports = futures::future::join_all(runs).await;
    let several = reports.len() > 1;
    let errors = reports
        .iter()
        .flat_map(|r| {
            r.errors.iter().map(move |e| {
                if several {
                    format!("{}: {e}", r.file.display())
                } else {
                    e.clone()
                }
            })
        })
        .collect::<Vec<_>>();
    Ok(RunReport {
        run_id,
        success: reports.iter().all(|r| r.success),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        workflows: reports,
        errors,
    })
}

/// Checks everything [`run_workflows_in`] refuses before any VM exists (the workflow files,
/// `--job`, `--repository`, the inputs) without running anything, so that a caller can refuse
/// a run before it starts its control plane.
pub fn check_run(files: &[PathBuf], options: &RunOptions) -> Result<(), RunError> {
    prepare(files, options).map(|_| ())
}

/// The workflows of a run with their inputs, checked.
fn prepare(
    files: &[PathBuf],
    options: &RunOptions,
) -> Result<Vec<(Arc<Workflow>, RunInputs)>, RunError> {
    if files.is_empty() {
        return Err(RunError::NoWorkflow);
    }
    ActionSource::new(&options.actions)?;
    let workflows = files
        .iter()
        .map(|f| Workflow::load(f).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(job) = &options.job
        && !workflows.iter().any(|w| w.job(job).is_some())
    {
        return Err(RunError::UnknownJob(job.clone()));
    }
    if let Some(repo) = &options.repository
        && !valid_slug(repo)
    {
        return Err(RunError::Repository(repo.clone()));
    }
    let payload = Value::from_json(&options.event_payload);
    workflows
        .into_iter()
        .map(|wf| {
            let inputs = resolve_run_inputs(&wf, &options.event, &options.inputs, &payload)
                .map_err(|source| RunError::Inputs {
                    file: wf.path.clone(),
                    source,
                })?;
            Ok((wf, inputs))
        })
        .collect()
}

fn valid_slug(s: &str) -> bool {
    let ok = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    matches!(s.split_once('/'), Some((o, n)) if ok(o) && ok(n))
}

fn log_slug(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "workflow".to_string());
    crate::job::slug(&stem)
}

/// A numeric run id, as GitHub's are.
fn run_number_id() -> String {
    let hex: String = azlin_core::new_id()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(8)
        .collect();
    u64::from_str_radix(&hex, 16)
        .map(|n| (n % 9_000_000_000 + 1_000_000_000).to_string())
        .unwrap_or_else(|_| "1".to_string())
}

/// A non-empty string value.
fn text(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn strings(map: &std::collections::BTreeMap<String, String>) -> Object {
    Object::from_strings(map.iter().map(|(k, v)| (k.clone(), v.clone())))
}

fn resolve_facts(
    workflow: Arc<Workflow>,
    inputs: RunInputs,
    options: &RunOptions,
    run_id: &str,
    slug: &str,
) -> RunFacts {
    let repo = match &options.repo_dir {
        Some(dir) => Repository::at(dir),
        None => Repository::discover(&workflow.path),
    };
    let repository = options
        .repository
        .clone()
        .unwrap_or_else(|| repo.default_slug());
    let RunInputs {
        context: inputs,
        event_inputs,
    } = inputs;
    let mut event = Value::from_json(&options.event_payload);
    if let (Some(event_inputs), Value::Object(payload)) = (event_inputs, &mut event) {
        payload.insert("inputs", Value::Object(event_inputs));
    }
    let payload = event.as_object();
    let sha = text(payload.and_then(|p| p.get("after")))
        .map(str::to_string)
        .or_else(|| repo.sha.clone())
        .unwrap_or_else(|| "0".repeat(40));
    let pull_request = payload
        .filter(|_| {
            matches!(
                options.event.as_str(),
                "pull_request" | "pull_request_target"
            )
        })
        .and_then(|p| p.get("pull_request"))
        .and_then(Value::as_object);
    let pr_ref = |side: &str| {
        text(
            pull_request
                .and_then(|pr| pr.get(side))
                .and_then(Value::as_object)
                .and_then(|s| s.get("ref")),
        )
        .unwrap_or_default()
        .to_string()
    };
    let pr_number = pull_request
        .and_then(|pr| pr.get("number"))
        .or_else(|| pull_request.and(payload.and_then(|p| p.get("number"))))
        .filter(|n| matches!(n, Value::Number(_) | Value::String(_)))
        .map(Value::to_display_string);
    let git_ref = match (text(payload.and_then(|p| p.get("ref"))), pr_number) {
        (Some(r), _) => r.to_string(),
        (None, Some(number)) => format!("refs/pull/{number}/merge"),
        (None, None) => format!(
            "refs/heads/{}",
            repo.branch.clone().unwrap_or_else(|| "main".to_string())
        ),
    };
    let (head_ref, base_ref) = (pr_ref("head"), pr_ref("base"));
    RunFacts {
        repo,
        repository,
        actor: options.actor.clone().unwrap_or_else(local_user),
        run_id: run_id.to_string(),
        run_number: "1".to_string(),
        event_name: options.event.clone(),
        event,
        sha,
        git_ref,
        head_ref,
        base_ref,
        secrets: strings(&options.secrets),
        vars: strings(&options.vars),
        inputs,
        extra_env: options
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        logs_dir: options.logs_dir.join(slug),
        debug: options
            .secrets
            .get("ACTIONS_STEP_DEBUG")
            .is_some_and(|v| v.eq_ignore_ascii_case("true")),
        depth: 0,
        workflow,
    }
}
