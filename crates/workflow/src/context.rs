//! What a job sees: the facts of the run (repository, actor, event…), the folders on the VM,
//! the `github` and `runner` contexts and the default environment variables of every step.

use crate::expression::{Object, Value};
use crate::model::Workflow;
use crate::repository::Repository;
use crate::session::VmFacts;
use std::path::PathBuf;
use std::sync::Arc;

/// Facts shared by every job of one workflow run (a called reusable workflow gets a copy with
/// its own workflow, inputs and secrets).
#[derive(Debug, Clone)]
pub(crate) struct RunFacts {
    pub workflow: Arc<Workflow>,
    pub repo: Repository,
    /// `owner/name`.
    pub repository: String,
    pub actor: String,
    pub run_id: String,
    pub run_number: String,
    pub event_name: String,
    pub event: Value,
    pub sha: String,
    pub git_ref: String,
    /// The pull request's head and base branches (`pull_request` events), else empty.
    pub head_ref: String,
    pub base_ref: String,
    pub secrets: Object,
    pub vars: Object,
    pub inputs: Object,
    /// Variables every step gets (`ACT=true` by default).
    pub extra_env: Vec<(String, String)>,
    /// Where this workflow's step logs go.
    pub logs_dir: PathBuf,
    /// `ACTIONS_STEP_DEBUG` is on.
    pub debug: bool,
    /// How many reusable-workflow calls deep this workflow runs (0: the one given to `run`).
    pub depth: usize,
}

impl RunFacts {
    pub fn owner(&self) -> &str {
        self.repository
            .split_once('/')
            .map(|(o, _)| o)
            .unwrap_or(&self.repository)
    }

    pub fn repo_name(&self) -> &str {
        self.repository
            .rsplit_once('/')
            .map(|(_, n)| n)
            .unwrap_or(&self.repository)
    }

    pub fn ref_name(&self) -> &str {
        self.git_ref
            .strip_prefix("refs/heads/")
            .or_else(|| self.git_ref.strip_prefix("refs/tags/"))
            .or_else(|| self.git_ref.strip_prefix("refs/pull/"))
            .unwrap_or(&self.git_ref)
    }

    fn ref_type(&self) -> &str {
        if self.git_ref.starts_with("refs/tags/") {
            "tag"
        } else {
            "branch"
        }
    }
}

/// The folders of a job on the VM, laid out like GitHub's runner under `$HOME/work`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    pub workspace: String,
    pub temp: String,
    pub tool_cache: String,
    pub event_path: String,
    pub file_commands: String,
    /// Where remote actions are copied (`_actions/OWNER/REPO/REF`).
    pub actions: String,
}

impl Layout {
    pub fn new(home: &str, repo_name: &str) -> Self {
        let home = home.trim_end_matches('/');
        let root = format!("{home}/work");
        let temp = format!("{root}/_temp");
        Layout {
            workspace: format!("{root}/{repo_name}/{repo_name}"),
            tool_cache: format!("{root}/_tool"),
            event_path: format!("{temp}/_github_workflow/event.json"),
            file_commands: format!("{temp}/_runner_file_commands"),
            actions: format!("{root}/_actions"),
            temp,
        }
    }
}

fn s(v: &str) -> Value {
    Value::String(v.to_string())
}

/// The `github` context of job `job`.
pub(crate) fn github_context(f: &RunFacts, job: &str, layout: &Layout) -> Object {
    let mut g = Object::new();
    let server = "https://github.com";
    g.insert("action", s("__run"));
    g.insert("action_path", s(""));
    g.insert("actor", s(&f.actor));
    g.insert("actor_id", s("0"));
    g.insert("api_url", s("https://api.github.com"));
    g.insert("base_ref", s(&f.base_ref));
    g.insert("event", f.event.clone());
    g.insert("event_name", s(&f.event_name));
    g.insert("event_path", s(&layout.event_path));
    g.insert("graphql_url", s("https://api.github.com/graphql"));
    g.insert("head_ref", s(&f.head_ref));
    g.insert("job", s(job));
    g.insert("ref", s(&f.git_ref));
    g.insert("ref_name", s(f.ref_name()));
    g.insert("ref_protected", Value::Bool(false));
    g.insert("ref_type", s(f.ref_type()));
    g.insert("repository", s(&f.repository));
    g.insert("repository_owner", s(f.owner()));
    g.insert(
        "repositoryUrl",
        s(&format!("git://github.com/{}.git", f.repository)),
    );
    g.insert("retention_days", s("0"));
    g.insert("run_attempt", s("1"));
    g.insert("run_id", s(&f.run_id));
    g.insert("run_number", s(&f.run_number));
    g.insert("server_url", s(server));
    g.insert("sha", s(&f.sha));
    g.insert(
        "token",
        f.secrets.get("GITHUB_TOKEN").cloned().unwrap_or(s("")),
    );
    g.insert("triggering_actor", s(&f.actor));
    g.insert("workflow", s(&f.workflow.name));
    g.insert(
        "workflow_ref",
        s(&format!(
            "{}/{}@{}",
            f.repository,
            f.workflow.path.display(),
            f.git_ref
        )),
    );
    g.insert("workspace", s(&layout.workspace));
    g
}

/// The `runner` context.
pub(crate) fn runner_context(vm: &VmFacts, vm_name: &str, layout: &Layout, debug: bool) -> Object {
    let mut r = Object::new();
    r.insert("name", s(vm_name));
    r.insert("os", s("Linux"));
    r.insert("arch", s(vm.runner_arch()));
    r.insert("temp", s(&layout.temp));
    r.insert("tool_cache", s(&layout.tool_cache));
    r.insert("debug", s(if debug { "1" } else { "" }));
    r.insert("environment", s("self-hosted"));
    r
}

/// The default variables of every step of job `job` (GitHub's "Default environment variables").
pub(crate) fn default_env(
    f: &RunFacts,
    job: &str,
    layout: &Layout,
    vm: &VmFacts,
    vm_name: &str,
    session: &str,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("CI", "true"),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_ACTOR", f.actor.as_str()),
        ("GITHUB_ACTOR_ID", "0"),
        ("GITHUB_API_URL", "https://api.github.com"),
        ("GITHUB_BASE_REF", f.base_ref.as_str()),
        ("GITHUB_EVENT_NAME", f.event_name.as_str()),
        ("GITHUB_EVENT_PATH", layout.event_path.as_str()),
        ("GITHUB_GRAPHQL_URL", "https://api.github.com/graphql"),
        ("GITHUB_HEAD_REF", f.head_ref.as_str()),
        ("GITHUB_JOB", job),
        ("GITHUB_REF", f.git_ref.as_str()),
        ("GITHUB_REF_NAME", f.ref_name()),
        ("GITHUB_REF_PROTECTED", "false"),
        ("GITHUB_REF_TYPE", f.ref_type()),
        ("GITHUB_REPOSITORY", f.repository.as_str()),
        ("GITHUB_REPOSITORY_OWNER", f.owner()),
        ("GITHUB_RETENTION_DAYS", "0"),
        ("GITHUB_RUN_ATTEMPT", "1"),
        ("GITHUB_RUN_ID", f.run_id.as_str()),
        ("GITHUB_RUN_NUMBER", f.run_number.as_str()),
        ("GITHUB_SERVER_URL", "https://github.com"),
        ("GITHUB_SHA", f.sha.as_str()),
        ("GITHUB_TRIGGERING_ACTOR", f.actor.as_str()),
        ("GITHUB_WORKFLOW", f.workflow.name.as_str()),
        ("GITHUB_WORKSPACE", layout.workspace.as_str()),
        ("RUNNER_ARCH", vm.runner_arch()),
        ("RUNNER_ENVIRONMENT", "self-hosted"),
        ("RUNNER_NAME", vm_name),
        ("RUNNER_OS", "Linux"),
        ("RUNNER_TEMP", layout.temp.as_str()),
        ("RUNNER_TOOL_CACHE", layout.tool_cache.as_str()),
        ("AZLIN_VM_NAME", vm_name),
        ("AZLIN_SESSION_ID", session),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if f.debug {
        env.push(("RUNNER_DEBUG".to_string(), "1".to_string()));
    }
    if !vm.home.is_empty() {
        env.push(("HOME".to_string(), vm.home.clone()));
    }
    env
}

/// What a job's runtime token lets it reach in the cache and artifact services: its
/// repository; caches of its own ref, then of a pull request's base branch and of the default
/// branch (GitHub's scope rules); the artifacts of its run.
pub(crate) fn job_scope(f: &RunFacts, job_key: &str) -> azlin_services::JobScope {
    let mut fallback_refs = Vec::new();
    if !f.base_ref.is_empty() {
        fallback_refs.push(format!("refs/heads/{}", f.base_ref));
    }
    let default_branch = f
        .event
        .as_object()
        .and_then(|e| e.get("repository"))
        .and_then(Value::as_object)
        .and_then(|r| r.get("default_branch"))
        .map(Value::to_display_string)
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "main".to_string());
    fallback_refs.push(format!("refs/heads/{default_branch}"));
    azlin_services::JobScope {
        repository: f.repository.clone(),
        git_ref: f.git_ref.clone(),
        fallback_refs,
        run_id: f.run_id.clone(),
        job_id: job_key.to_string(),
    }
}

/// How a VM of `provider` names this host, where the job services listen: none for Azure VMs,
/// which cannot reach it.
pub(crate) fn services_host(provider: azlin_core::ProviderKind) -> Option<&'static str> {
    use azlin_core::ProviderKind;
    match provider {
        ProviderKind::Nspawn | ProviderKind::Qemu => Some("host.azlin.internal"),
        ProviderKind::Sim => Some("127.0.0.1"),
        ProviderKind::Azure => None,
    }
}

/// The `needs` entry of one job.
pub(crate) fn needs_entry(result: &str, outputs: &Object) -> Value {
    let mut o = Object::new();
    o.insert("result", s(result));
    o.insert("outputs", Value::Object(outputs.clone()));
    Value::Object(o)
}

/// Turns ordered pairs into an object of strings (later pairs win).
pub(crate) fn object_of(pairs: &[(String, String)]) -> Object {
    let mut o = Object::new();
    for (k, v) in pairs {
        o.insert(k.clone(), s(v));
    }
    o
}

/// Sets `key` to `value` in ordered pairs, replacing an earlier entry.
pub(crate) fn set_pair(pairs: &mut Vec<(String, String)>, key: &str, value: String) {
    match pairs.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value,
        None => pairs.push((key.to_string(), value)),
    }
}
