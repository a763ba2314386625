//! The webhook events azlin acts on — `push`, `pull_request`, `workflow_dispatch` and `ping` —
//! read from the `X-GitHub-Event` header and the JSON body of a delivery.
//!
//! Only the fields azlin decides with are typed here, and each is checked on the way in: commit
//! SHAs are hex, refs and branch names follow git's rules, the repository is `owner/name` and a
//! dispatched workflow path is relative. Those values later reach `git` and file paths, and a
//! payload that breaks the rules is refused naming the field. The whole payload stays
//! available as [`Event::payload`]: it becomes `github.event` in the run.
//!
//! Changed files (for `paths` filters) come from the push payload's commits; GitHub's
//! `pull_request` payload has none, so the service computes them (`git diff --name-only
//! base...head`) and attaches them with [`Event::set_changed_files`].

use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Component, Path};

/// The number of commits at which a push's commit list is taken to be cut short.
///
/// GitHub documents a cap of 20 commits for timeline events (and a larger one, 2,048, for
/// webhook deliveries); which one a given delivery obeys cannot be told from the payload, so a
/// list of 20 or more commits counts as incomplete. That errs towards running: with incomplete
/// files a `paths` filter passes, as GitHub's does when it cannot diff.
pub const COMMIT_LIST_CAP: usize = 20;

/// A delivery that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// An event kind azlin does not act on: the HTTP layer answers 202 and ignores it.
    #[error("azlin does not act on '{kind}' events")]
    Unsupported {
        /// The `X-GitHub-Event` header value.
        kind: String,
    },
    /// A body that is not JSON, or lacks a field azlin needs, or has one of the wrong shape.
    #[error("the {event} payload {message}")]
    Malformed {
        /// The event kind.
        event: &'static str,
        /// What is missing or wrong, naming the field (`pull_request.head.sha`).
        message: String,
    },
}

/// A webhook event azlin acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Commits or a tag pushed (or a ref deleted).
    Push(Push),
    /// Activity on a pull request.
    PullRequest(PullRequest),
    /// A workflow started by hand or through the API.
    WorkflowDispatch(Dispatch),
    /// The test delivery GitHub sends when a webhook is created.
    Ping(Ping),
}

/// The repository an event belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// `owner/name`.
    pub full_name: String,
    /// The default branch (caches are scoped by it), when the payload names it.
    pub default_branch: Option<String>,
    /// The `clone_url` as GitHub gives it (not validated here).
    pub clone_url: Option<String>,
}

/// A `push` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The repository.
    pub repository: Repository,
    /// The full ref pushed: `refs/heads/main`, `refs/tags/v1`.
    pub git_ref: String,
    /// The commit the ref pointed at before the push (zeros when it was created).
    pub before: String,
    /// The commit the ref points at now (zeros when it was deleted).
    pub after: String,
    /// The push created the ref.
    pub created: bool,
    /// The push deleted the ref.
    pub deleted: bool,
    /// The push was forced.
    pub forced: bool,
    /// The paths added, modified or removed by the pushed commits (the union over
    /// `commits[]`), sorted, each once. See [`Push::changed_files_complete`].
    pub changed_files: Vec<String>,
    /// Whether [`Push::changed_files`] is the whole list. False when the payload has no
    /// `commits`, when a commit lacks its `added`/`modified`/`removed` lists, when the list
    /// may be cut short ([`COMMIT_LIST_CAP`] or more commits, or a `size` larger than the
    /// list), and when a branch is created without new commits (GitHub then compares the head
    /// with its parent, which the payload does not show).
    pub changed_files_complete: bool,
    /// The message of the head commit, when the payload has one.
    pub head_commit_message: Option<String>,
    /// Who pushed (`sender.login`, else `pusher.name`).
    pub actor: String,
    /// The whole payload.
    pub payload: Value,
}

/// A `pull_request` event.
#[derive(Debug, Clone, PartialEq)]
pub struct PullRequest {
    /// The repository (the base repository).
    pub repository: Repository,
    /// The activity: `opened`, `synchronize`, `reopened`, `closed`, `edited`, `labeled`…
    pub action: String,
    /// The pull request number.
    pub number: u64,
    /// The branch the pull request merges into (a name, without `refs/heads/`).
    pub base_ref: String,
    /// The commit at the tip of the base branch.
    pub base_sha: String,
    /// The branch the changes come from (a name; in the head repository).
    pub head_ref: String,
    /// The head commit: the one to check out.
    pub head_sha: String,
    /// `owner/name` of the head repository; `None` when it has been deleted.
    pub head_repository: Option<String>,
    /// The pull request is a draft.
    pub draft: bool,
    /// The pull request has been merged (with `action: closed`).
    pub merged: bool,
    /// The changed files (`git diff --name-only base...head`), once the service has
    /// computed them: the payload does not list them.
    pub changed_files: Option<Vec<String>>,
    /// Who caused the activity (`sender.login`).
    pub actor: String,
    /// The whole payload.
    pub payload: Value,
}

/// A `workflow_dispatch` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    /// The repository.
    pub repository: Repository,
    /// The ref the workflow runs on, as given (`refs/heads/main`). The payload has no SHA:
    /// the service resolves the ref.
    pub git_ref: String,
    /// The workflow file, relative to the repository root (`.github/workflows/ci.yml`).
    pub workflow: String,
    /// The inputs as given (checked against the workflow's declaration by
    /// `azlin_workflow::inputs`); empty when the payload has none.
    pub inputs: serde_json::Map<String, Value>,
    /// Who dispatched (`sender.login`).
    pub actor: String,
    /// The whole payload.
    pub payload: Value,
}

/// A `ping` event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// GitHub's zen line.
    pub zen: Option<String>,
    /// The webhook's id.
    pub hook_id: Option<u64>,
    /// The repository, for a repository webhook (organization and app webhooks have none).
    pub repository: Option<Repository>,
    /// The whole payload.
    pub payload: Value,
}

impl Event {
    /// Reads a delivery: `kind` is the `X-GitHub-Event` header, `body` the JSON payload.
    ///
    /// An event kind azlin does not act on is [`EventError::Unsupported`] whatever the body.
    pub fn parse(kind: &str, body: &[u8]) -> Result<Event, EventError> {
        let event = match kind {
            "push" => "push",
            "pull_request" => "pull_request",
            "workflow_dispatch" => "workflow_dispatch",
            "ping" => "ping",
            other => {
                return Err(EventError::Unsupported { kind: shown(other) });
            }
        };
        let payload: Value = serde_json::from_slice(body).map_err(|e| EventError::Malformed {
            event,
            message: format!("is not JSON: {e}"),
        })?;
        if !payload.is_object() {
            return Err(EventError::Malformed {
                event,
                message: "is not a JSON object".to_string(),
            });
        }
        match event {
            "push" => Push::read(payload).map(Event::Push),
            "pull_request" => PullRequest::read(payload).map(Event::PullRequest),
            "workflow_dispatch" => Dispatch::read(payload).map(Event::WorkflowDispatch),
            _ => Ping::read(payload).map(Event::Ping),
        }
    }

    /// The event's name as written in a workflow's `on:` (`push`, `pull_request`,
    /// `workflow_dispatch`; `ping`, which no workflow runs on).
    pub fn name(&self) -> &'static str {
        match self {
            Event::Push(_) => "push",
            Event::PullRequest(_) => "pull_request",
            Event::WorkflowDispatch(_) => "workflow_dispatch",
            Event::Ping(_) => "ping",
        }
    }

    /// The repository's `owner/name` (`None` only for a ping without a repository).
    pub fn repository(&self) -> Option<&str> {
        self.repo().map(|r| r.full_name.as_str())
    }

    /// The repository's default branch, when the payload names it.
    pub fn default_branch(&self) -> Option<&str> {
        self.repo().and_then(|r| r.default_branch.as_deref())
    }

    /// The commit to check out: a push's `after` (`None` when the push deletes the ref), a
    /// pull request's head. A dispatch names only a ref ([`Event::git_ref`]), a ping nothing.
    pub fn sha(&self) -> Option<&str> {
        match self {
            Event::Push(p) if !p.deleted => Some(&p.after),
            Event::PullRequest(pr) => Some(&pr.head_sha),
            _ => None,
        }
    }

    /// `GITHUB_REF`: the ref pushed, `refs/pull/<number>/merge` for a pull request (as GitHub
    /// sets it), the dispatch's ref; `None` for a ping.
    pub fn git_ref(&self) -> Option<String> {
        match self {
            Event::Push(p) => Some(p.git_ref.clone()),
            Event::PullRequest(pr) => Some(pr.merge_ref()),
            Event::WorkflowDispatch(d) => Some(d.git_ref.clone()),
            Event::Ping(_) => None,
        }
    }

    /// `github.actor`: who caused the event (`None` for a ping).
    pub fn actor(&self) -> Option<&str> {
        match self {
            Event::Push(p) => Some(&p.actor),
            Event::PullRequest(pr) => Some(&pr.actor),
            Event::WorkflowDispatch(d) => Some(&d.actor),
            Event::Ping(_) => None,
        }
    }

    /// The whole payload: `github.event` in the run.
    pub fn payload(&self) -> &Value {
        match self {
            Event::Push(p) => &p.payload,
            Event::PullRequest(pr) => &pr.payload,
            Event::WorkflowDispatch(d) => &d.payload,
            Event::Ping(p) => &p.payload,
        }
    }

    /// The changed files when they are known in full: a push's when its commit list is
    /// complete, a pull request's once attached. `None` means unknown (path filters then
    /// pass), and always for dispatches and pings.
    pub fn changed_files(&self) -> Option<&[String]> {
        match self {
            Event::Push(p) => p.known_changed_files(),
            Event::PullRequest(pr) => pr.changed_files.as_deref(),
            _ => None,
        }
    }

    /// Attaches the changed files the service computed (sorted and deduplicated here), for a
    /// push or a pull request; returns false, changing nothing, for events without a diff
    /// (dispatch, ping).
    pub fn set_changed_files(&mut self, files: Vec<String>) -> bool {
        let files: Vec<String> = files
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        match self {
            Event::Push(p) => {
                p.changed_files = files;
                p.changed_files_complete = true;
                true
            }
            Event::PullRequest(pr) => {
                pr.changed_files = Some(files);
                true
            }
            _ => false,
        }
    }

    fn repo(&self) -> Option<&Repository> {
        match self {
            Event::Push(p) => Some(&p.repository),
            Event::PullRequest(pr) => Some(&pr.repository),
            Event::WorkflowDispatch(d) => Some(&d.repository),
            Event::Ping(p) => p.repository.as_ref(),
        }
    }
}

impl Push {
    /// The branch pushed (the ref without `refs/heads/`), if a branch was.
    pub fn branch(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/heads/")
    }

    /// The tag pushed (the ref without `refs/tags/`), if a tag was.
    pub fn tag(&self) -> Option<&str> {
        self.git_ref.strip_prefix("refs/tags/")
    }

    /// [`Push::changed_files`] when [`Push::changed_files_complete`], else `None` (unknown).
    pub fn known_changed_files(&self) -> Option<&[String]> {
        self.changed_files_complete
            .then_some(self.changed_files.as_slice())
    }

    fn read(payload: Value) -> Result<Push, EventError> {
        let f = Fields::new("push", &payload);
        let repository = f.repository()?;
        let git_ref = f.git_ref(&["ref"])?.to_string();
        let before = f.sha(&["before"])?.to_string();
        let after = f.sha(&["after"])?.to_string();
        let created = f.flag(&["created"])?;
        let deleted = f.flag(&["deleted"])?;
        let forced = f.flag(&["forced"])?;
        let head_commit_message = f.opt_string(&["head_commit", "message"])?.map(String::from);
        let actor = match f.opt_string(&["sender", "login"])? {
            Some(login) => login,
            None => f.string(&["pusher", "name"])?,
        }
        .to_string();
        let (changed_files, mut changed_files_complete) = pushed_files(&payload);
        if created && changed_files.is_empty() {
            changed_files_complete = false;
        }
        Ok(Push {
            repository,
            git_ref,
            before,
            after,
            created,
            deleted,
            forced,
            changed_files,
            changed_files_complete,
            head_commit_message,
            actor,
            payload,
        })
    }
}

/// The union of `commits[].added/modified/removed`, and whether it is complete.
fn pushed_files(payload: &Value) -> (Vec<String>, bool) {
    let Some(commits) = payload.get("commits").and_then(Value::as_array) else {
        return (Vec::new(), false);
    };
    let mut complete = commits.len() < COMMIT_LIST_CAP;
    if let Some(size) = payload.get("size").and_then(Value::as_u64)
        && usize::try_from(size).map_or(true, |size| size > commits.len())
    {
        complete = false;
    }
    let mut files = BTreeSet::new();
    for commit in commits {
        for key in ["added", "modified", "removed"] {
            match commit.get(key).and_then(Value::as_array) {
                Some(paths) => {
                    for path in paths {
                        match path.as_str() {
                            Some(p) => {
                                files.insert(p.to_string());
                            }
                            None => complete = false,
                        }
                    }
                }
                None => complete = false,
            }
        }
    }
    (files.into_iter().collect(), complete)
}

impl PullRequest {
    /// `refs/pull/<number>/merge`, the ref GitHub gives a pull request's runs.
    pub fn merge_ref(&self) -> String {
        format!("refs/pull/{}/merge", self.number)
    }

    /// Whether the changes come from another repository (a fork, or a deleted one).
    pub fn from_fork(&self) -> bool {
        self.head_repository.as_deref() != Some(self.repository.full_name.as_str())
    }

    fn read(payload: Value) -> Result<PullRequest, EventError> {
        let f = Fields::new("pull_request", &payload);
        let repository = f.repository()?;
        let action = f.string(&["action"])?.to_string();
        let number = f.number(&["number"])?;
        let base_ref = f.branch(&["pull_request", "base", "ref"])?.to_string();
        let base_sha = f.sha(&["pull_request", "base", "sha"])?.to_string();
        let head_ref = f.branch(&["pull_request", "head", "ref"])?.to_string();
        let head_sha = f.sha(&["pull_request", "head", "sha"])?.to_string();
        let head_repository = f
            .opt_full_name(&["pull_request", "head", "repo", "full_name"])?
            .map(String::from);
        let draft = f.flag(&["pull_request", "draft"])?;
        let merged = f.flag(&["pull_request", "merged"])?;
        let actor = f.string(&["sender", "login"])?.to_string();
        Ok(PullRequest {
            repository,
            action,
            number,
            base_ref,
            base_sha,
            head_ref,
            head_sha,
            head_repository,
            draft,
            merged,
            changed_files: None,
            actor,
            payload,
        })
    }
}

impl Dispatch {
    fn read(payload: Value) -> Result<Dispatch, EventError> {
        let f = Fields::new("workflow_dispatch", &payload);
        let repository = f.repository()?;
        let git_ref = f.git_ref(&["ref"])?.to_string();
        let workflow = f.string(&["workflow"])?;
        if !relative_path(workflow) {
            return Err(f.invalid(&["workflow"], "a path inside the repository", workflow));
        }
        let workflow = workflow.to_string();
        let inputs = match f.get(&["inputs"]) {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(inputs)) => inputs.clone(),
            Some(_) => return Err(f.wrong(&["inputs"], "an object")),
        };
        let actor = f.string(&["sender", "login"])?.to_string();
        Ok(Dispatch {
            repository,
            git_ref,
            workflow,
            inputs,
            actor,
            payload,
        })
    }
}

impl Ping {
    fn read(payload: Value) -> Result<Ping, EventError> {
        let f = Fields::new("ping", &payload);
        let zen = f.opt_string(&["zen"])?.map(String::from);
        let hook_id = match f.get(&["hook_id"]) {
            None | Some(Value::Null) => None,
            Some(_) => Some(f.number(&["hook_id"])?),
        };
        let repository = match f.get(&["repository"]) {
            None | Some(Value::Null) => None,
            Some(_) => Some(f.repository()?),
        };
        Ok(Ping {
            zen,
            hook_id,
            repository,
            payload,
        })
    }
}

/// Reads typed fields out of a payload, naming the dotted path of what is missing or wrong.
struct Fields<'a> {
    event: &'static str,
    root: &'a Value,
}

impl<'a> Fields<'a> {
    fn new(event: &'static str, root: &'a Value) -> Self {
        Fields { event, root }
    }

    fn get(&self, path: &[&str]) -> Option<&'a Value> {
        path.iter().try_fold(self.root, |v, key| v.get(key))
    }

    fn malformed(&self, message: String) -> EventError {
        EventError::Malformed {
            event: self.event,
            message,
        }
    }

    /// `path` absent or of another type than `expected`.
    fn wrong(&self, path: &[&str], expected: &str) -> EventError {
        let at = path.join(".");
        match self.get(path) {
            None | Some(Value::Null) => self.malformed(format!("has no `{at}` ({expected})")),
            Some(_) => self.malformed(format!("has `{at}` that is not {expected}")),
        }
    }

    /// `path` holds `value`, which is not `expected`.
    fn invalid(&self, path: &[&str], expected: &str, value: &str) -> EventError {
        self.malformed(format!(
            "has `{}` '{}', which is not {expected}",
            path.join("."),
            shown(value)
        ))
    }

    fn string(&self, path: &[&str]) -> Result<&'a str, EventError> {
        self.get(path)
            .and_then(Value::as_str)
            .ok_or_else(|| self.wrong(path, "a string"))
    }

    /// A string that may be absent or null.
    fn opt_string(&self, path: &[&str]) -> Result<Option<&'a str>, EventError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(self.wrong(path, "a string")),
        }
    }

    /// A boolean; absent or null is false.
    fn flag(&self, path: &[&str]) -> Result<bool, EventError> {
        match self.get(path) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(self.wrong(path, "true or false")),
        }
    }

    fn number(&self, path: &[&str]) -> Result<u64, EventError> {
        self.get(path)
            .and_then(Value::as_u64)
            .ok_or_else(|| self.wrong(path, "a whole number"))
    }

    fn sha(&self, path: &[&str]) -> Result<&'a str, EventError> {
        let sha = self.string(path)?;
        if matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(sha)
        } else {
            Err(self.invalid(path, "a commit SHA", sha))
        }
    }

    /// A full ref (`refs/heads/main`), or for a dispatch possibly a short one (`main`).
    fn git_ref(&self, path: &[&str]) -> Result<&'a str, EventError> {
        let name = self.string(path)?;
        if valid_ref_name(name) {
            Ok(name)
        } else {
            Err(self.invalid(path, "a valid git ref", name))
        }
    }

    fn branch(&self, path: &[&str]) -> Result<&'a str, EventError> {
        let name = self.string(path)?;
        if valid_ref_name(name) {
            Ok(name)
        } else {
            Err(self.invalid(path, "a valid branch name", name))
        }
    }

    fn opt_full_name(&self, path: &[&str]) -> Result<Option<&'a str>, EventError> {
        match self.opt_string(path)? {
            Some(name) if !valid_full_name(name) => {
                Err(self.invalid(path, "a repository 'owner/name'", name))
            }
            name => Ok(name),
        }
    }

    fn repository(&self) -> Result<Repository, EventError> {
        let full_name = self
            .opt_full_name(&["repository", "full_name"])?
            .ok_or_else(|| self.wrong(&["repository", "full_name"], "a string"))?
            .to_string();
        let default_branch = match self.opt_string(&["repository", "default_branch"])? {
            Some(b) if !valid_ref_name(b) => {
                return Err(self.invalid(
                    &["repository", "default_branch"],
                    "a valid branch name",
                    b,
                ));
            }
            b => b.map(String::from),
        };
        let clone_url = self
            .opt_string(&["repository", "clone_url"])?
            .map(String::from);
        Ok(Repository {
            full_name,
            default_branch,
            clone_url,
        })
    }
}

/// `s` as it may appear in a message: escaped, and cut at 100 characters.
fn shown(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(100)
        .collect::<String>()
        .escape_default()
        .to_string();
    if s.chars().nth(100).is_some() {
        out.push('…');
    }
    out
}

/// `owner/name` with the characters GitHub allows in each (and nothing a path could misread).
fn valid_full_name(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    name.split_once('/')
        .is_some_and(|(owner, repo)| part(owner) && part(repo))
}

/// A name git accepts for a ref or branch (`git check-ref-format`'s rules), and that cannot be
/// read as an option.
fn valid_ref_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('-')
        && !name.starts_with('/')
        && !name.ends_with('/')
        && !name.ends_with('.')
        && name != "@"
        && !name.contains("..")
        && !name.contains("//")
        && !name.contains("@{")
        && !name
            .chars()
            .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
        && name
            .split('/')
            .all(|part| !part.starts_with('.') && !part.ends_with(".lock"))
}

/// A relative path that stays inside the repository.
fn relative_path(path: &str) -> bool {
    let p = Path::new(path);
    !path.is_empty()
        && !path.contains('\0')
        && p.components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    const SHA_B: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
    const ZEROS: &str = "0000000000000000000000000000000000000000";

    fn repository() -> serde_json::Value {
        serde_json::json!({
            "id": 186853002,
            "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=",
            "name": "Hello-World",
            "full_name": "Codertocat/Hello-World",
            "private": false,
            "owner": {"login": "Codertocat", "id": 21031067, "type": "User"},
            "html_url": "https://github.com/Codertocat/Hello-World",
            "clone_url": "https://github.com/Codertocat/Hello-World.git",
            "default_branch": "main"
        })
    }

    fn commit(
        id: &str,
        message: &str,
        added: &[&str],
        modified: &[&str],
        removed: &[&str],
    ) -> serde_json::Value {
        serde_json::json!({
            "id": id,
            "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
            "distinct": true,
            "message": message,
            "timestamp": "2019-05-15T15:20:41Z",
            "url": format!("https://github.com/Codertocat/Hello-World/commit/{id}"),
            "author": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com", "username": "Codertocat"},
            "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
            "added": added,
            "removed": removed,
            "modified": modified
        })
    }

    fn push_payload(commits: Vec<serde_json::Value>) -> serde_json::Value {
        let head = commits.last().cloned().unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "ref": "refs/heads/main",
            "before": SHA_A,
            "after": SHA_B,
            "repository": repository(),
            "pusher": {"name": "Codertocat", "email": "21031067+Codertocat@users.noreply.github.com"},
            "sender": {"login": "Codertocat", "id": 21031067, "type": "User"},
            "created": false,
            "deleted": false,
            "forced": false,
            "base_ref": null,
            "compare": "https://github.com/Codertocat/Hello-World/compare/6113728f27ae...0d1a26e67d8f",
            "commits": commits,
            "head_commit": head
        })
    }

    fn parse(kind: &str, payload: &serde_json::Value) -> Result<Event, EventError> {
        Event::parse(kind, payload.to_string().as_bytes())
    }

    fn malformed(kind: &str, payload: &serde_json::Value) -> String {
        match parse(kind, payload) {
            Err(EventError::Malformed { message, .. }) => message,
            other => panic!("expected a malformed payload, got {other:?}"),
        }
    }

    #[test]
    fn push_reads_refs_actor_and_the_union_of_changed_files() {
        let payload = push_payload(vec![
            commit(SHA_A, "Add docs", &["docs/a.md"], &["README.md"], &[]),
            commit(
                SHA_B,
                "Tidy\n\nmore words",
                &[],
                &["README.md", "src/lib.rs"],
                &["old.txt"],
            ),
        ]);
        let event = parse("push", &payload).expect("parses");
        assert_eq!(event.name(), "push");
        assert_eq!(event.repository(), Some("Codertocat/Hello-World"));
        assert_eq!(event.default_branch(), Some("main"));
        assert_eq!(event.sha(), Some(SHA_B));
        assert_eq!(event.git_ref().as_deref(), Some("refs/heads/main"));
        assert_eq!(event.actor(), Some("Codertocat"));
        assert_eq!(event.payload(), &payload);
        let Event::Push(push) = &event else {
            panic!("not a push: {event:?}")
        };
        assert_eq!(push.before, SHA_A);
        assert_eq!(push.branch(), Some("main"));
        assert_eq!(push.tag(), None);
        assert!(!push.created && !push.deleted && !push.forced);
        assert_eq!(
            push.changed_files,
            ["README.md", "docs/a.md", "old.txt", "src/lib.rs"]
        );
        assert!(push.changed_files_complete);
        assert_eq!(
            push.head_commit_message.as_deref(),
            Some("Tidy\n\nmore words")
        );
        assert_eq!(
            push.repository.clone_url.as_deref(),
            Some("https://github.com/Codertocat/Hello-World.git")
        );
        assert_eq!(
            event.changed_files().map(<[String]>::len),
            Some(4),
            "complete files are known"
        );
    }

    #[test]
    fn push_of_a_tag_and_a_deletion() {
        let mut payload = push_payload(vec![]);
        payload["ref"] = "refs/tags/v1.2.0".into();
        payload["created"] = true.into();
        payload["before"] = ZEROS.into();
        let event = parse("push", &payload).expect("parses");
        let Event::Push(push) = &event else {
            panic!("not a push")
        };
        assert_eq!(push.tag(), Some("v1.2.0"));
        assert_eq!(push.branch(), None);
        assert!(push.created);
        assert!(
            !push.changed_files_complete,
            "a created ref without commits compares with the head's parent, unknown here"
        );
        assert_eq!(event.changed_files(), None);

        // GitHub's documented example of a deletion: `after` is zeros, no head commit.
        let mut payload = push_payload(vec![]);
        payload["ref"] = "refs/heads/simple-tag".into();
        payload["after"] = ZEROS.into();
        payload["deleted"] = true.into();
        let event = parse("push", &payload).expect("parses");
        assert_eq!(event.sha(), None, "nothing to check out");
        let Event::Push(push) = &event else {
            panic!("not a push")
        };
        assert!(push.deleted);
        assert_eq!(push.head_commit_message, None);
    }

    #[test]
    fn push_files_are_incomplete_when_the_list_may_be_cut_or_lacks_files() {
        let many: Vec<_> = (0..COMMIT_LIST_CAP)
            .map(|i| commit(SHA_A, &format!("c{i}"), &[], &["a"], &[]))
            .collect();
        let Ok(Event::Push(push)) = parse("push", &push_payload(many)) else {
            panic!("parses")
        };
        assert!(!push.changed_files_complete, "20 commits may be a cut list");

        let few: Vec<_> = (0..COMMIT_LIST_CAP - 1)
            .map(|i| commit(SHA_A, &format!("c{i}"), &[], &["a"], &[]))
            .collect();
        let Ok(Event::Push(push)) = parse("push", &push_payload(few)) else {
            panic!("parses")
        };
        assert!(push.changed_files_complete);
        assert_eq!(push.changed_files, ["a"]);

        let mut sized = push_payload(vec![commit(SHA_A, "x", &["a"], &[], &[])]);
        sized["size"] = 3.into();
        let Ok(Event::Push(push)) = parse("push", &sized) else {
            panic!("parses")
        };
        assert!(
            !push.changed_files_complete,
            "size says more commits than listed"
        );

        let mut no_commits = push_payload(vec![]);
        no_commits
            .as_object_mut()
            .expect("object")
            .remove("commits");
        let Ok(Event::Push(push)) = parse("push", &no_commits) else {
            panic!("parses")
        };
        assert!(!push.changed_files_complete);

        // The Actions view of a commit has no file lists.
        let mut bare = commit(SHA_A, "x", &[], &[], &[]);
        for key in ["added", "modified", "removed"] {
            bare.as_object_mut().expect("object").remove(key);
        }
        let Ok(Event::Push(push)) = parse("push", &push_payload(vec![bare])) else {
            panic!("parses")
        };
        assert!(!push.changed_files_complete);

        // An empty commit on an existing branch: complete, and nothing changed.
        let Ok(Event::Push(push)) = parse(
            "push",
            &push_payload(vec![commit(SHA_B, "empty", &[], &[], &[])]),
        ) else {
            panic!("parses")
        };
        assert!(push.changed_files_complete);
        assert!(push.changed_files.is_empty());
    }

    fn pull_request_payload(action: &str) -> serde_json::Value {
        serde_json::json!({
            "action": action,
            "number": 2,
            "pull_request": {
                "url": "https://api.github.com/repos/Codertocat/Hello-World/pulls/2",
                "id": 279147437,
                "number": 2,
                "state": "open",
                "locked": false,
                "title": "Update the README with new information.",
                "user": {"login": "Codertocat", "id": 21031067},
                "body": "This is a pretty simple change that we need to pull into main.",
                "draft": false,
                "merged": false,
                "merge_commit_sha": null,
                "head": {
                    "label": "Codertocat:changes",
                    "ref": "changes",
                    "sha": SHA_B,
                    "user": {"login": "Codertocat"},
                    "repo": repository()
                },
                "base": {
                    "label": "Codertocat:main",
                    "ref": "main",
                    "sha": SHA_A,
                    "user": {"login": "Codertocat"},
                    "repo": repository()
                }
            },
            "repository": repository(),
            "sender": {"login": "Codertocat", "id": 21031067, "type": "User"}
        })
    }

    #[test]
    fn pull_request_reads_refs_and_takes_changed_files_later() {
        let payload = pull_request_payload("opened");
        let mut event = parse("pull_request", &payload).expect("parses");
        assert_eq!(event.name(), "pull_request");
        assert_eq!(event.sha(), Some(SHA_B));
        assert_eq!(event.git_ref().as_deref(), Some("refs/pull/2/merge"));
        assert_eq!(event.actor(), Some("Codertocat"));
        assert_eq!(event.changed_files(), None, "the payload lists no files");
        let Event::PullRequest(pr) = &event else {
            panic!("not a pull request")
        };
        assert_eq!(pr.action, "opened");
        assert_eq!(pr.number, 2);
        assert_eq!(pr.base_ref, "main");
        assert_eq!(pr.base_sha, SHA_A);
        assert_eq!(pr.head_ref, "changes");
        assert_eq!(pr.head_sha, SHA_B);
        assert!(!pr.from_fork());
        assert!(!pr.draft && !pr.merged);

        assert!(event.set_changed_files(vec!["b".into(), "a".into(), "b".into()]));
        assert_eq!(
            event.changed_files(),
            Some(&["a".to_string(), "b".to_string()][..])
        );
    }

    #[test]
    fn pull_request_from_a_fork_or_a_deleted_one() {
        let mut payload = pull_request_payload("synchronize");
        payload["pull_request"]["head"]["repo"]["full_name"] = "mona/Hello-World".into();
        let Ok(Event::PullRequest(pr)) = parse("pull_request", &payload) else {
            panic!("parses")
        };
        assert_eq!(pr.head_repository.as_deref(), Some("mona/Hello-World"));
        assert!(pr.from_fork());

        payload["pull_request"]["head"]["repo"] = serde_json::Value::Null;
        let Ok(Event::PullRequest(pr)) = parse("pull_request", &payload) else {
            panic!("parses")
        };
        assert_eq!(pr.head_repository, None);
        assert!(pr.from_fork());
    }

    #[test]
    fn workflow_dispatch_reads_ref_workflow_and_inputs() {
        let payload = serde_json::json!({
            "inputs": {"name": "Mona the Octocat", "debug": true, "count": 3},
            "ref": "refs/heads/main",
            "repository": repository(),
            "organization": {"login": "octo-org"},
            "sender": {"login": "octocat", "id": 1},
            "workflow": ".github/workflows/hello-world-workflow.yml"
        });
        let mut event = parse("workflow_dispatch", &payload).expect("parses");
        assert_eq!(event.name(), "workflow_dispatch");
        assert_eq!(event.sha(), None, "a dispatch names a ref, not a commit");
        assert_eq!(event.git_ref().as_deref(), Some("refs/heads/main"));
        assert_eq!(event.actor(), Some("octocat"));
        assert!(!event.set_changed_files(vec!["a".into()]));
        let Event::WorkflowDispatch(d) = &event else {
            panic!("not a dispatch")
        };
        assert_eq!(d.workflow, ".github/workflows/hello-world-workflow.yml");
        assert_eq!(d.inputs.len(), 3);
        assert_eq!(d.inputs["debug"], serde_json::Value::Bool(true));

        let mut no_inputs = payload.clone();
        no_inputs["inputs"] = serde_json::Value::Null;
        let Ok(Event::WorkflowDispatch(d)) = parse("workflow_dispatch", &no_inputs) else {
            panic!("parses")
        };
        assert!(d.inputs.is_empty());

        let mut outside = payload;
        outside["workflow"] = "../../etc/passwd".into();
        let message = malformed("workflow_dispatch", &outside);
        assert!(message.contains("`workflow`"), "{message}");
    }

    #[test]
    fn ping_with_and_without_a_repository() {
        let payload = serde_json::json!({
            "zen": "Anything added dilutes everything else.",
            "hook_id": 109948940,
            "hook": {"type": "Repository", "id": 109948940, "events": ["push", "pull_request"]},
            "repository": repository(),
            "sender": {"login": "octocat"}
        });
        let event = parse("ping", &payload).expect("parses");
        assert_eq!(event.name(), "ping");
        assert_eq!(event.repository(), Some("Codertocat/Hello-World"));
        assert_eq!(event.sha(), None);
        assert_eq!(event.git_ref(), None);
        let Event::Ping(ping) = &event else {
            panic!("not a ping")
        };
        assert_eq!(
            ping.zen.as_deref(),
            Some("Anything added dilutes everything else.")
        );
        assert_eq!(ping.hook_id, Some(109948940));

        let org = serde_json::json!({"zen": "Keep it logically awesome.", "hook_id": 1, "organization": {"login": "octo-org"}});
        let event = parse("ping", &org).expect("parses");
        assert_eq!(event.repository(), None);
    }

    #[test]
    fn unknown_kinds_are_their_own_error_whatever_the_body() {
        assert_eq!(
            Event::parse("issues", b"not even json"),
            Err(EventError::Unsupported {
                kind: "issues".to_string()
            })
        );
        assert!(matches!(
            Event::parse("pull_request_target", b"{}"),
            Err(EventError::Unsupported { .. })
        ));
    }

    #[test]
    fn malformed_payloads_name_what_is_wrong() {
        let message = match Event::parse("push", b"{\"ref\": ") {
            Err(EventError::Malformed { event, message }) => {
                assert_eq!(event, "push");
                message
            }
            other => panic!("{other:?}"),
        };
        assert!(message.starts_with("is not JSON"), "{message}");

        assert!(malformed("push", &serde_json::json!([1, 2])).contains("not a JSON object"));

        let mut payload = pull_request_payload("opened");
        payload["pull_request"]["head"]
            .as_object_mut()
            .expect("object")
            .remove("sha");
        let message = malformed("pull_request", &payload);
        assert_eq!(message, "has no `pull_request.head.sha` (a string)");
        let error = parse("pull_request", &payload).expect_err("malformed");
        assert_eq!(
            error.to_string(),
            "the pull_request payload has no `pull_request.head.sha` (a string)"
        );

        let mut payload = push_payload(vec![]);
        payload["after"] = "HEAD; rm -rf /".into();
        let message = malformed("push", &payload);
        assert!(
            message.contains("`after`") && message.contains("not a commit SHA"),
            "{message}"
        );

        let mut payload = push_payload(vec![]);
        payload["ref"] = "--upload-pack=evil".into();
        assert!(malformed("push", &payload).contains("not a valid git ref"));

        let mut payload = push_payload(vec![]);
        payload["repository"]["full_name"] = "../escape".into();
        assert!(malformed("push", &payload).contains("`repository.full_name`"));

        let mut payload = push_payload(vec![]);
        payload["deleted"] = "yes".into();
        assert!(malformed("push", &payload).contains("`deleted` that is not true or false"));

        let mut payload = pull_request_payload("opened");
        payload["number"] = "2".into();
        assert!(
            malformed("pull_request", &payload).contains("`number` that is not a whole number")
        );

        let mut payload = pull_request_payload("opened");
        payload["pull_request"]["base"]["ref"] = "main..dev".into();
        assert!(malformed("pull_request", &payload).contains("not a valid branch name"));
    }

    #[test]
    fn ref_and_name_rules() {
        for ok in [
            "refs/heads/main",
            "main",
            "feature/a-b_c.d",
            "refs/tags/v1.2.0",
            "ünïcode",
        ] {
            assert!(valid_ref_name(ok), "{ok}");
        }
        for bad in [
            "",
            "-x",
            "/main",
            "main/",
            "a..b",
            "a//b",
            "a@{1}",
            "@",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a.lock",
            ".hidden/x",
            "x/.y",
            "end.",
            "tab\t",
        ] {
            assert!(!valid_ref_name(bad), "{bad:?}");
        }
        for ok in ["octo/hello", "Codertocat/Hello-World", "a_b/c.d"] {
            assert!(valid_full_name(ok), "{ok}");
        }
        for bad in ["octo", "/x", "x/", "a/b/c", "../x", "a/..", "-a/b", "a b/c"] {
            assert!(!valid_full_name(bad), "{bad}");
        }
        assert!(relative_path(".github/workflows/ci.yml"));
        assert!(relative_path("./.github/workflows/ci.yml"));
        for bad in ["", "/etc/passwd", "../x", ".github/../../x"] {
            assert!(!relative_path(bad), "{bad}");
        }
    }
}
