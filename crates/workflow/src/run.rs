//! The entry point the CLI calls: parse the workflow files (refusing invalid ones before any VM
//! exists), resolve the run's facts, and run every workflow as its own session(s), in parallel.

use crate::action::source::{ActionError, ActionSource};
use crate::context::RunFacts;
use crate::expression::{Object, Value};
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
            | RunError::Actions(_) => ErrorKind::Usage,
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
    if files.is_empty() {
        return Err(RunError::NoWorkflow);
    }
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
    for wf in &workflows {
        let mut slug = log_slug(&wf.path);
        if used_slugs.contains(&slug) {
            slug = format!("{slug}-{}", used_slugs.len() + 1);
        }
        used_slugs.push(slug.clone());
        facts.push(resolve_facts(wf.clone(), options, &run_id, &slug));
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
            selected,
            actions: &actions,
            uploaded: &uploaded,
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
        success: reports.iter().all(|r| r.success),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        workflows: reports,
        errors,
    })
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

fn strings(map: &std::collections::BTreeMap<String, String>) -> Object {
    Object::from_strings(map.iter().map(|(k, v)| (k.clone(), v.clone())))
}

fn resolve_facts(
    workflow: Arc<Workflow>,
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
    let sha = repo.sha.clone().unwrap_or_else(|| "0".repeat(40));
    let git_ref = format!(
        "refs/heads/{}",
        repo.branch.clone().unwrap_or_else(|| "main".to_string())
    );
    let event = Value::from_json(&options.event_payload);
    // Inputs: the defaults declared under workflow_dispatch / workflow_call, then the payload's.
    let mut inputs = Object::new();
    for (event_name, settings) in &workflow.event_settings {
        if !matches!(event_name.as_str(), "workflow_dispatch" | "workflow_call") {
            continue;
        }
        if let Some(Value::Object(declared)) = settings.as_object().and_then(|s| s.get("inputs")) {
            for (name, spec) in declared.iter() {
                let default = spec
                    .as_object()
                    .and_then(|s| s.get("default"))
                    .cloned()
                    .unwrap_or(Value::Null);
                inputs.insert(name.clone(), default);
            }
        }
    }
    if let Some(Value::Object(given)) = event.as_object().and_then(|e| e.get("inputs")) {
        for (k, v) in given.iter() {
            inputs.insert(k.clone(), v.clone());
        }
    }
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
