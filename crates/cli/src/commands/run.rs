//! `azlin run`: GitHub Actions workflows on VMs, one VM per workflow session (seed 002). VMs come
//! through the control plane — the same launch path as `azlin new` — and go back on every path,
//! Ctrl-C included.

use crate::app::{App, ControlPlane};
use crate::args::{OutputFormat, RunArgs, VmScope as VmScopeArg};
use crate::commands::{new, pool, prerequisites};
use crate::failure::Failure;
use crate::output;
use crate::progress::Progress;
use azlin_control::LaunchOptions;
use azlin_core::{ExitCode, ProviderKind};
use azlin_remote::OutputStream;
use azlin_workflow::session::{Allocator, PoolAllocator, VmOrigin};
use azlin_workflow::{
    JobReport, JobResult, LaunchAllocator, Observer, Origin, RunAs, RunOptions, SessionManager,
    StepOutcome, StepReport, VmScope, check_run, dotenv, run_workflows_in, session_config,
};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parses repeated `K=V` flags.
fn pairs(flag: &str, values: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    values
        .iter()
        .map(|v| match v.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failure::usage(format!("{flag} '{v}' is not K=V"))),
        })
        .collect()
}

/// The entries of the `.env` file given to `flag`.
fn dotenv_file(flag: &str, path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("{flag}: cannot read {}: {e}", path.display())))?;
    dotenv::parse(&text).map_err(|e| Failure::usage(format!("{flag} {}: {e}", path.display())))
}

/// The secrets of `--secret-file`, then `--secret K=V` or `--secret K` (the environment
/// variable K), which win.
fn secrets(file: Option<&Path>, flags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut secrets: BTreeMap<String, String> = match file {
        Some(path) => dotenv_file("--secret-file", path)?.into_iter().collect(),
        None => BTreeMap::new(),
    };
    for flag in flags {
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value.to_string()),
            None => (
                flag.as_str(),
                std::env::var(flag).map_err(|_| {
                    Failure::usage(format!(
                        "--secret {flag}: the environment variable {flag} is not set"
                    ))
                })?,
            ),
        };
        if name.is_empty() {
            return Err(Failure::usage(format!("--secret '{flag}' is not K=V or K")));
        }
        secrets.insert(name.to_string(), value);
    }
    Ok(secrets)
}

/// The payload of `--eventpath`: a JSON object.
fn event_payload(path: &Path) -> anyhow::Result<serde_json::Value> {
    let fail = |why: String| Failure::usage(format!("--eventpath {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let payload: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| fail(format!("not valid JSON: {e}")))?;
    if !payload.is_object() {
        return Err(fail("the payload must be a JSON object".to_string()));
    }
    Ok(payload)
}

/// `--action-override OWNER/REPO@REF=DIR`: the action and the folder used instead. The `=`
/// that ends the action is the first after its `@` (a folder name may hold `=`).
fn action_override(value: &str) -> anyhow::Result<(String, PathBuf)> {
    let bad = || {
        Failure::usage(format!(
            "--action-override '{value}' is not OWNER/REPO@REF=DIR"
        ))
    };
    let at = value.find('@').ok_or_else(bad)?;
    let eq = value[at..].find('=').map(|i| at + i).ok_or_else(bad)?;
    let (action, dir) = (&value[..eq], &value[eq + 1..]);
    let (repo, git_ref) = action.split_at(at);
    let valid_repo = matches!(repo.split_once('/'), Some((o, n)) if !o.is_empty() && !n.is_empty());
    if !valid_repo || git_ref.len() < 2 || dir.is_empty() {
        return Err(bad());
    }
    let dir = PathBuf::from(dir);
    if !dir.is_dir() {
        return Err(Failure::usage(format!(
            "--action-override {action}: no folder {}",
            dir.display()
        )));
    }
    Ok((action.to_string(), dir))
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}

/// Prints the run as it happens: step output as `[job/step] line`, marks for steps and jobs.
struct LiveObserver {
    /// Step output goes to stdout for a human, to stderr when stdout carries JSON.
    output_to_stderr: bool,
}

impl Observer for LiveObserver {
    fn job_started(&self, at: Origin<'_>, vm: &str, origin: &VmOrigin) {
        let from = match origin {
            VmOrigin::Booted => String::new(),
            other => format!(" ({other})"),
        };
        eprintln!("► job '{}' ({}) on VM {vm}{from}", at.job, at.workflow);
    }

    fn step_started(&self, at: Origin<'_>) {
        eprintln!("  ► [{}] {}", at.job, at.step);
    }

    fn output(&self, at: Origin<'_>, _stream: OutputStream, line: &str) {
        let text = format!("  [{}/{}] {line}\n", at.job, at.step);
        // A closed pipe must not stop the run.
        let _ = if self.output_to_stderr {
            std::io::stderr().write_all(text.as_bytes())
        } else {
            std::io::stdout().write_all(text.as_bytes())
        };
    }

    fn step_finished(&self, at: Origin<'_>, report: &StepReport) {
        let (mark, detail) = match (report.outcome, report.conclusion) {
            (StepOutcome::Success, _) => ("✓", String::new()),
            (StepOutcome::Skipped, _) => ("-", " skipped".to_string()),
            (StepOutcome::Failure, StepOutcome::Success) => {
                ("⚠", " failed (continue-on-error)".to_string())
            }
            (StepOutcome::Failure, _) => (
                "✗",
                report
                    .error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
            ),
            (StepOutcome::Cancelled, _) => ("✗", " cancelled".to_string()),
        };
        eprintln!(
            "  {mark} [{}] {}{detail} ({})",
            at.job,
            at.step,
            seconds(report.duration_ms)
        );
    }

    fn job_finished(&self, workflow: &str, report: &JobReport) {
        let mark = match report.result {
            JobResult::Success => "✓",
            JobResult::Skipped => "-",
            JobResult::Failure | JobResult::Cancelled => "✗",
        };
        let why = report
            .skip_reason
            .as_ref()
            .or(report.error.as_ref())
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        eprintln!(
            "{mark} job '{}' ({workflow}) {}{why} ({})",
            report.name,
            report.result.as_str(),
            seconds(report.duration_ms)
        );
    }
}

/// Runs `azlin run`.
pub async fn run(app: &App, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let RunArgs {
        workflows,
        provider,
        event,
        eventpath,
        inputs,
        job,
        secrets: secret_flags,
        secret_file,
        env_file,
        vars,
        actor,
        repository,
        directory,
        actions_url: url,
        actions_ca_cert,
        actions_offline,
        action_overrides,
        max_concurrent,
        vm_scope,
        log_dir,
        setup_commands,
        cleanup_commands,
        keep_failed,
    } = args;
    let paths = &app.settings.paths;
    let state = &paths.state_dir;
    // Runs started in the same second (or the same workflow twice) get folders of their own.
    let run_id = format!(
        "{}-{}",
        azlin_core::compact_timestamp(),
        &azlin_core::new_id()[..8]
    );
    let mut options = base_options(
        app,
        log_dir
            .clone()
            .unwrap_or_else(|| state.join("logs").join(&run_id)),
    );
    options.event = event.clone();
    if let Some(path) = eventpath {
        options.event_payload = event_payload(path)?;
    }
    options.inputs = pairs("--input", inputs)?;
    options.job = job.clone();
    options.secrets = secrets(secret_file.as_deref(), secret_flags)?;
    options.vars = pairs("--var", vars)?;
    if let Some(path) = env_file {
        options.env.extend(dotenv_file("--env-file", path)?);
    }
    options.actor = actor.clone();
    options.setup_commands = setup_commands.clone();
    options.cleanup_commands = cleanup_commands.clone();
    options.keep_failed = *keep_failed;
    options.repository = repository.clone();
    if let Some(dir) = directory {
        if !dir.is_dir() {
            return Err(Failure::usage(format!(
                "-C/--directory: no folder {}",
                dir.display()
            )));
        }
        options.repo_dir = Some(dir.clone());
    }
    if let Some(url) = url {
        options.actions.url = url.trim_end_matches('/').to_string();
    }
    options.actions.offline = *actions_offline;
    options.actions.ca_cert = actions_ca_cert.clone();
    options.actions.overrides = action_overrides
        .iter()
        .map(|o| action_override(o))
        .collect::<anyhow::Result<_>>()?;
    options.max_concurrent = max_concurrent
        .or(app.settings.config.max_concurrent_sessions)
        .unwrap_or(4);
    if options.max_concurrent == 0 {
        return Err(Failure::usage("--max-concurrent must be at least 1"));
    }
    options.vm_scope = match vm_scope {
        VmScopeArg::Workflow => VmScope::Workflow,
        VmScopeArg::Job => VmScope::Job,
    };
    for file in workflows {
        if !file.is_file() {
            return Err(Failure::usage(format!(
                "no workflow file {}",
                file.display()
            )));
        }
    }
    // Bad workflows and inputs are refused before the control plane starts or any VM exists.
    check_run(workflows, &options)
        .map_err(|e| Failure::with_code(e.kind().exit_code(), e.to_string()))?;
    let stack = session_stack(app, provider.as_deref(), &mut options, Plane::Configured).await?;
    let observer = Arc::new(LiveObserver {
        output_to_stderr: app.settings.output == OutputFormat::Json,
    });
    // The first Ctrl-C cancels as GitHub does (`always()` steps and cleanup still run); a
    // second one abandons the steps at once. VMs are released either way before azlin exits.
    let cancel = options.cancel.clone();
    let (abandon, abandoned) = tokio::sync::oneshot::channel::<()>();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!(
                "⚠ interrupted: stopping steps, running cleanup, releasing VMs… (Ctrl-C again to stop at once)"
            );
            cancel.cancel();
        }
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("⚠ interrupted again: abandoning the steps, releasing VMs…");
            let _ = abandon.send(());
        }
    });
    let outcome = tokio::select! {
        outcome = run_workflows_in(&stack.manager, workflows, &options, observer) => Some(outcome),
        Ok(()) = abandoned => None,
    };
    ctrl_c.abort();
    stack.shutdown(&mut options).await;
    let Some(outcome) = outcome else {
        return Err(Failure::with_code(
            ExitCode::Error,
            "interrupted twice: the steps were abandoned; every VM was released",
        ));
    };
    let report = match outcome {
        Ok(report) => report,
        Err(e) => return Err(Failure::with_code(e.kind().exit_code(), e.to_string())),
    };
    for session in report.workflows.iter().flat_map(|w| &w.sessions) {
        if session.kept {
            eprintln!(
                "⚠ kept VM {vm} of the failed session {id}: azlin connect {vm} (azlin delete {vm} --yes when done)",
                vm = session.vm,
                id = session.id
            );
        }
        for failure in &session.cleanup_failures {
            eprintln!("⚠ cleanup on VM {}: {failure}", session.vm);
        }
    }
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        let rows = report.workflows.iter().flat_map(|w| {
            w.jobs.iter().flat_map(move |j| {
                let job_row = vec![
                    w.name.clone(),
                    j.name.clone(),
                    String::new(),
                    j.result.as_str().to_string(),
                    seconds(j.duration_ms),
                ];
                std::iter::once(job_row).chain(j.steps.iter().map(move |s| {
                    vec![
                        String::new(),
                        String::new(),
                        s.name.clone(),
                        s.conclusion.as_str().to_string(),
                        seconds(s.duration_ms),
                    ]
                }))
            })
        });
        println!();
        output::table(&["WORKFLOW", "JOB", "STEP", "OUTCOME", "DURATION"], rows);
        for job in report.jobs() {
            for cache in &job.caches {
                println!("{}", cache_line(&job.name, cache));
            }
        }
        println!(
            "run: {} · logs: {}",
            report.run_id,
            options.logs_dir.display()
        );
    }
    if report.success {
        Ok(ExitCode::Ok)
    } else {
        Err(Failure::with_code(
            ExitCode::Error,
            report
                .error_message()
                .unwrap_or_else(|| "the run failed".to_string()),
        ))
    }
}

/// The options every workflow run of this machine starts from: session records in the state
/// folder, logs in `logs_dir`, the warm pools' labels served, actions from the configured URL
/// cached in the cache folder.
pub fn base_options(app: &App, logs_dir: PathBuf) -> RunOptions {
    let paths = &app.settings.paths;
    let mut options = RunOptions::new(paths.state_dir.join("sessions"), logs_dir);
    options.runner_labels = app
        .settings
        .config
        .pool
        .values()
        .flat_map(|pool| pool.labels.iter().cloned())
        .collect();
    if let Some(url) = &app.settings.config.actions.url {
        options.actions.url = url.trim_end_matches('/').to_string();
    }
    options.actions.cache_dir = paths.cache_dir.clone();
    options
}

/// Where session VMs come from: the configured control plane (NATS workers when configured), or
/// one in this process whatever is configured (the runner of `azlin worker --runs`, whose
/// session VMs live on its own host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    /// As configured.
    Configured,
    /// In this process.
    Local,
}

/// What runs workflow sessions on this machine: the control plane that makes their VMs, the
/// allocator (warm pools first), and the cache and artifact services jobs use.
pub struct SessionStack {
    /// Sessions, one VM each.
    pub manager: Arc<SessionManager>,
    control: ControlPlane,
    services: Arc<azlin_services::Services>,
}

impl SessionStack {
    /// Waits for every session to release its VM, then stops the control plane and services.
    pub async fn shutdown(self, options: &mut RunOptions) {
        self.manager.wait_idle().await;
        self.control.shutdown().await;
        options.services = None;
        drop(self.manager);
        if let Some(services) = Arc::into_inner(self.services) {
            services.shutdown().await;
        }
    }
}

/// Sets up session VMs (like `azlin new` with the configured defaults, or `provider`) and the
/// services for runs with `options`, which get the services' address.
pub async fn session_stack(
    app: &App,
    provider: Option<&str>,
    options: &mut RunOptions,
    plane: Plane,
) -> anyhow::Result<SessionStack> {
    let defaults = LaunchOptions {
        provider: provider.map(str::to_string),
        ..LaunchOptions::default()
    };
    let template = new::plan(app, &defaults)?.remove(0);
    app.settings
        .planner()
        .check_pools()
        .map_err(|e| Failure::usage(e.0))?;
    if template.provider == ProviderKind::Sim {
        eprintln!(
            "⚠ the sim provider runs steps as processes on this machine, as {}, not in a VM",
            azlin_workflow::local_user()
        );
    }
    let progress = Progress::new(app.settings.progress_tty);
    let identity =
        prerequisites::preflight(app, &progress, template.provider, template.image).await?;
    let control = match plane {
        Plane::Configured => app.control_plane(&identity, options.max_concurrent).await?,
        Plane::Local => app.local_control_plane(&identity, options.max_concurrent)?,
    };
    // Steps run as root, as act's do: sessions log in as root rather than pay a `sudo` a step.
    let root_login = options.run_as == RunAs::Root;
    let pools = pool::pools(app, &control, &identity);
    let allocator = LaunchAllocator::new(
        control.bus.clone(),
        control.orchestrator.clone(),
        identity,
        template,
        format!("azlin run on {}", crate::app::hostname()),
        root_login,
    )
    .map_err(|e| Failure::usage(e.to_string()))?;
    // With warm pools configured, sessions whose `runs-on` a pool serves take its VMs.
    let allocator: Arc<dyn Allocator> = if app.settings.config.pool.is_empty() {
        Arc::new(allocator)
    } else {
        let settings = app.settings.clone();
        Arc::new(PoolAllocator::new(
            allocator,
            pools,
            app.settings.config.pool.clone(),
            Arc::new(move |name: &str| pool::spawn_refill(&settings, name)),
        ))
    };
    // Caches and artifacts are served while the stack lives, from the store they share.
    let services = Arc::new(
        azlin_services::Services::start(app.settings.services_config())
            .await
            .map_err(|e| Failure::with_code(ExitCode::Error, e.to_string()))?,
    );
    options.services = Some(services.clone());
    let manager = Arc::new(SessionManager::new(allocator, session_config(options)));
    Ok(SessionStack {
        manager,
        control,
        services,
    })
}

/// One cache lookup or save in words: `cache build: hit deps-1a2b (12.3 MB)`.
fn cache_line(job: &str, cache: &azlin_services::CacheUse) -> String {
    use azlin_services::CacheOutcome;
    let size = format!("{:.1} MB", cache.size as f64 / 1e6);
    let what = match (cache.outcome, &cache.matched_key) {
        (CacheOutcome::Hit, _) => format!("hit {} ({size})", cache.key),
        (CacheOutcome::RestoreKeyHit, Some(matched)) => {
            format!("miss {}, restored {matched} ({size})", cache.key)
        }
        (CacheOutcome::RestoreKeyHit | CacheOutcome::Miss, _) => format!("miss {}", cache.key),
        (CacheOutcome::Saved, _) => format!("saved {} ({size})", cache.key),
    };
    format!("cache {job}: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_action_override_ends_at_the_first_equals_after_the_at() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a=b");
        std::fs::create_dir(&odd).unwrap();
        let flag = format!("octo/act@v1={}", odd.display());
        let (action, folder) = action_override(&flag).unwrap();
        assert_eq!(action, "octo/act@v1");
        assert_eq!(folder, odd);
        for bad in [
            "octo/act=dir",
            "octo@v1=dir",
            "octo/act@=dir",
            "octo/act@v1=",
        ] {
            assert!(action_override(bad).is_err(), "{bad}");
        }
        let missing = format!("octo/act@v1={}", dir.path().join("none").display());
        assert!(
            action_override(&missing)
                .unwrap_err()
                .to_string()
                .contains("no folder")
        );
    }
}
