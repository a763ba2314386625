//! The options of a run; they mirror `azlin run`'s flags.

use crate::session::RunAs;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// How VMs map to work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmScope {
    /// One VM for the whole workflow run (seed 002): its jobs run one after another in `needs`
    /// order on that VM.
    #[default]
    Workflow,
    /// One VM per job (per matrix combination); independent jobs run in parallel, bounded by
    /// the concurrency limit and `max-parallel`.
    Job,
}

impl std::str::FromStr for VmScope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "workflow" => Ok(VmScope::Workflow),
            "job" => Ok(VmScope::Job),
            other => Err(format!("unknown vm scope '{other}' (known: workflow, job)")),
        }
    }
}

/// Options of [`crate::run_workflows`]. `Debug` shows the secrets' names, never their values.
#[derive(Clone)]
pub struct RunOptions {
    /// `--event`: the event that triggers the run (default `push`).
    pub event: String,
    /// The event payload (`github.event`, the `GITHUB_EVENT_PATH` file); default `{}`.
    pub event_payload: serde_json::Value,
    /// `--job`: run only this job (and the jobs it needs).
    pub job: Option<String>,
    /// `--secret K=V`: the `secrets` context, masked in all output.
    pub secrets: BTreeMap<String, String>,
    /// `--var K=V`: the `vars` context.
    pub vars: BTreeMap<String, String>,
    /// Variables added to every step's environment and the `env` context, below the
    /// workflow's own. The default is `ACT=true`, as act sets it, so that workflows written
    /// for local runs (`if: ${{ !env.ACT }}`) behave the same; remove it to opt out.
    pub env: BTreeMap<String, String>,
    /// `--actor`: `github.actor` (default: the local user).
    pub actor: Option<String>,
    /// `--repository OWNER/NAME`: `github.repository` (default: from the repository's
    /// `origin` remote, else `local/<folder>`).
    pub repository: Option<String>,
    /// `--max-concurrent`: sessions holding a VM at once (at least 1).
    pub max_concurrent: usize,
    /// `--vm-scope`.
    pub vm_scope: VmScope,
    /// Whose account steps run as (default root, like act).
    pub run_as: RunAs,
    /// Where session records go.
    pub sessions_dir: PathBuf,
    /// Where step logs go (one file per step).
    pub logs_dir: PathBuf,
    /// Commands run on each VM after allocation, before any step.
    pub setup_commands: Vec<String>,
    /// Commands run on each VM before release, on every path.
    pub cleanup_commands: Vec<String>,
    /// `--keep-failed`: a failed session's VM is kept (not cleaned up, not released).
    pub keep_failed: bool,
    /// `runs-on` labels this machine serves beyond the Linux ones (the warm pools' labels, as a
    /// self-hosted runner's custom labels).
    pub runner_labels: Vec<String>,
    /// Cancels the run (Ctrl-C): running steps are stopped, cleanup runs, VMs are released.
    pub cancel: CancellationToken,
    /// `-C/--directory`: the repository that `actions/checkout` copies and that local actions
    /// and workflows resolve from (default: discovered from the workflow file's folder).
    pub repo_dir: Option<PathBuf>,
    /// `--input K=V`: `workflow_dispatch` / `workflow_call` inputs, typed by their declaration.
    pub inputs: BTreeMap<String, String>,
    /// Where remote actions come from and are cached.
    pub actions: ActionSettings,
    /// The cache and artifact services jobs are pointed at (`actions/cache`, the artifact
    /// actions); none by default.
    pub services: Option<Arc<azlin_services::Services>>,
}

/// Where remote actions (`uses: OWNER/REPO[/PATH]@REF`) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSettings {
    /// `--actions-url`: action repositories are `<url>/OWNER/REPO` (default
    /// `https://github.com`).
    pub url: String,
    /// `--actions-offline`: use the cache only.
    pub offline: bool,
    /// `--action-override OWNER/REPO@REF=DIR`: a local folder used instead of the repository.
    pub overrides: Vec<(String, PathBuf)>,
    /// Where fetched action trees are kept, by commit.
    pub cache_dir: PathBuf,
    /// An extra CA certificate (PEM file) trusted for the actions URL, for an internal git
    /// server with its own CA.
    pub ca_cert: Option<PathBuf>,
}

impl ActionSettings {
    /// GitHub as the source, cached under `cache_dir`.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        ActionSettings {
            url: "https://github.com".to_string(),
            offline: false,
            overrides: Vec::new(),
            cache_dir: cache_dir.into(),
            ca_cert: None,
        }
    }
}

impl RunOptions {
    /// Defaults, with records under `sessions_dir` and logs under `logs_dir`.
    pub fn new(sessions_dir: impl Into<PathBuf>, logs_dir: impl Into<PathBuf>) -> Self {
        let sessions_dir = sessions_dir.into();
        let actions = ActionSettings::new(sessions_dir.join("actions-cache"));
        let mut env = BTreeMap::new();
        env.insert("ACT".to_string(), "true".to_string());
        RunOptions {
            event: "push".to_string(),
            event_payload: serde_json::Value::Object(serde_json::Map::new()),
            job: None,
            secrets: BTreeMap::new(),
            vars: BTreeMap::new(),
            env,
            actor: None,
            repository: None,
            max_concurrent: 4,
            vm_scope: VmScope::Workflow,
            run_as: RunAs::Root,
            sessions_dir,
            logs_dir: logs_dir.into(),
            setup_commands: Vec::new(),
            cleanup_commands: Vec::new(),
            keep_failed: false,
            runner_labels: Vec::new(),
            cancel: CancellationToken::new(),
            repo_dir: None,
            inputs: BTreeMap::new(),
            actions,
            services: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Field by field, without `..`: a new field cannot be left out (or leak) unnoticed.
        let RunOptions {
            event,
            event_payload,
            job,
            secrets,
            vars,
            env,
            actor,
            repository,
            max_concurrent,
            vm_scope,
            run_as,
            sessions_dir,
            logs_dir,
            setup_commands,
            cleanup_commands,
            keep_failed,
            runner_labels,
            cancel,
            repo_dir,
            inputs,
            actions,
            services,
        } = self;
        let secrets: BTreeMap<&str, &str> = secrets.keys().map(|k| (k.as_str(), "***")).collect();
        f.debug_struct("RunOptions")
            .field("event", event)
            .field("event_payload", event_payload)
            .field("job", job)
            .field("secrets", &secrets)
            .field("vars", vars)
            .field("env", env)
            .field("actor", actor)
            .field("repository", repository)
            .field("max_concurrent", max_concurrent)
            .field("vm_scope", vm_scope)
            .field("run_as", run_as)
            .field("sessions_dir", sessions_dir)
            .field("logs_dir", logs_dir)
            .field("setup_commands", setup_commands)
            .field("cleanup_commands", cleanup_commands)
            .field("keep_failed", keep_failed)
            .field("runner_labels", runner_labels)
            .field("cancel", cancel)
            .field("repo_dir", repo_dir)
            .field("inputs", inputs)
            .field("actions", actions)
            .field("services_port", &services.as_ref().map(|s| s.port()))
            .finish()
    }
}

/// The name of the user running this process, from the user database (not the environment).
pub fn local_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "azlin".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_names_secrets_without_their_values() {
        let mut options = RunOptions::new("/s", "/l");
        options
            .secrets
            .insert("API_TOKEN".into(), "tok-8c1f-very-secret".into());
        let shown = format!("{options:?}");
        assert!(!shown.contains("tok-8c1f-very-secret"), "{shown}");
        assert!(shown.contains("\"API_TOKEN\": \"***\""), "{shown}");
    }
}
