//! Remote actions and reusable workflows (`uses: OWNER/REPO[/PATH]@REF`), fetched on the host.
//!
//! [`ActionSource`] resolves a ref to a commit once per run (`git ls-remote`), fetches that
//! commit's tree with `git fetch --depth 1` + `git archive` (the tree GitHub's tarball holds:
//! `export-ignore` applies), and keeps it at `<cache_dir>/actions/<owner>/<repo>/<commit>/`,
//! published by a rename so a half-written tree is never used. The ref → commit of each fetch
//! is recorded beside the trees so that `--actions-offline` can resolve from the cache alone.
//! `--action-override` folders are used as they are, without git.

use crate::options::ActionSettings;
use std::collections::HashMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::OnceCell;

/// Why an action could not be named, found or fetched.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The `uses:` value is not `OWNER/REPO[/PATH]@REF`.
    #[error("invalid action reference '{reference}': {reason}")]
    InvalidRef {
        /// The reference as written.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The actions URL is refused (credentials are shown as `***`).
    #[error("invalid actions URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL, credentials redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The ref names no branch, tag or commit of the repository.
    #[error("{action}: the ref '{git_ref}' names no branch, tag or commit of {repository}")]
    UnknownRef {
        /// The action as written.
        action: String,
        /// The ref.
        git_ref: String,
        /// `OWNER/REPO`.
        repository: String,
    },
    /// The ref only names a shortened commit SHA, which GitHub refuses too.
    #[error(
        "{action}: the ref '{git_ref}' is a shortened commit SHA, which GitHub does not support: \
         use the full 40-character SHA"
    )]
    ShortSha {
        /// The action as written.
        action: String,
        /// The ref.
        git_ref: String,
    },
    /// Offline, and the action is not in the cache.
    #[error(
        "{action} is not in the action cache ({cache_dir}), and --actions-offline uses the cache \
         only: run once without it to fetch the action"
    )]
    NotCached {
        /// The action as written.
        action: String,
        /// The cache folder searched.
        cache_dir: PathBuf,
    },
    /// `git` failed against the actions URL.
    #[error("fetching {action} from {url} failed: {detail}")]
    Fetch {
        /// The action as written.
        action: String,
        /// The repository URL, credentials redacted.
        url: String,
        /// What git said, trimmed.
        detail: String,
    },
    /// An `--action-override OWNER/REPO@REF=DIR` is refused.
    #[error("invalid --action-override '{key}={}': {reason}", dir.display())]
    Override {
        /// `OWNER/REPO@REF`.
        key: String,
        /// The folder.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A file operation in the cache failed (or git could not be started).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ActionError {
    let context = context.into();
    move |source| ActionError::Io { context, source }
}

/// A remote action or reusable workflow: `OWNER/REPO[/PATH]@REF`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteRef {
    /// The repository owner.
    pub owner: String,
    /// The repository name.
    pub repo: String,
    /// The folder (or workflow file) inside the repository, without leading or trailing `/`.
    pub path: Option<String>,
    /// The branch, tag or full commit SHA.
    pub git_ref: String,
}

impl RemoteRef {
    /// Parses `OWNER/REPO[/PATH]@REF`, refusing anything that could be read as a git option, a
    /// shell word or a path outside the repository.
    pub fn parse(reference: &str) -> Result<RemoteRef, ActionError> {
        let invalid = |reason: &str| ActionError::InvalidRef {
            reference: reference.to_string(),
            reason: reason.to_string(),
        };
        let (name, git_ref) = reference
            .rsplit_once('@')
            // act's and GitHub's words for it.
            .ok_or_else(|| {
                invalid("Expected format {org}/{repo}[/path]@ref (the @ref is missing)")
            })?;
        check_ref(git_ref).map_err(invalid)?;
        let mut parts = name.splitn(3, '/');
        let owner = parts.next().unwrap_or_default();
        let repo = parts
            .next()
            .ok_or_else(|| invalid("expected OWNER/REPO[/PATH]@REF (the /REPO is missing)"))?;
        for (what, part) in [("owner", owner), ("repository", repo)] {
            check_name(part).map_err(|reason| invalid(&format!("the {what} {reason}")))?;
        }
        let path = match parts.next() {
            Some(path) => Some(check_path(path).map_err(invalid)?),
            None => None,
        };
        Ok(RemoteRef {
            owner: owner.to_string(),
            repo: repo.to_string(),
            path,
            git_ref: git_ref.to_string(),
        })
    }

    /// `OWNER/REPO`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

impl fmt::Display for RemoteRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.repo)?;
        if let Some(path) = &self.path {
            write!(f, "/{path}")?;
        }
        write!(f, "@{}", self.git_ref)
    }
}

/// An owner or repository name: GitHub's characters, and never `.` or `..`.
fn check_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name == "." || name == ".." {
        return Err("cannot be '.' or '..'");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err("may only hold letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// A folder inside the repository; a trailing `/` is dropped.
fn check_path(path: &str) -> Result<String, &'static str> {
    if path.starts_with('/') {
        return Err("the path inside the repository cannot start with '/'");
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() {
        return Err("the path inside the repository is empty");
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err("the path inside the repository cannot hold empty, '.' or '..' parts");
        }
    }
    if path.chars().any(|c| c.is_control() || c == '\\') {
        return Err("the path inside the repository holds control characters or '\\'");
    }
    Ok(path.to_string())
}

/// A ref safe to hand to git as an argument: `[A-Za-z0-9._/-]`, no leading `-`, and git's own
/// ref-name rules on top (no `..`, no empty or dot-led parts, no `.lock` ending).
fn check_ref(git_ref: &str) -> Result<(), &'static str> {
    if git_ref.is_empty() {
        return Err("the ref after '@' is empty");
    }
    if !git_ref
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-'))
    {
        return Err("the ref may only hold letters, digits, '.', '_', '/' and '-'");
    }
    if git_ref.starts_with('-') {
        return Err("the ref cannot start with '-'");
    }
    if git_ref.contains("..")
        || git_ref.ends_with(".lock")
        || git_ref
            .split('/')
            .any(|part| part.is_empty() || part.starts_with('.'))
    {
        return Err("the ref is not a valid git ref name");
    }
    Ok(())
}

fn is_hex(s: &str) -> bool {
    s.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && is_hex(s)
}

/// `text` with the credentials of every `scheme://user:password@host` replaced by `***`.
fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(userinfo_end) => {
                out.push_str("***");
                out.push_str(&authority[userinfo_end..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// A validated actions URL, without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourceUrl {
    base: String,
    file: bool,
}

impl SourceUrl {
    fn parse(raw: &str) -> Result<SourceUrl, ActionError> {
        let invalid = |reason: &str| ActionError::InvalidUrl {
            url: redact(raw),
            reason: reason.to_string(),
        };
        let url = url::Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
        if azlin_core::network::has_credentials(&url) {
            return Err(invalid(
                "credentials in the URL are refused (they would be stored and shown): \
                 configure a git credential helper instead",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("a query or fragment is not allowed"));
        }
        let file = match url.scheme() {
            "https" => false,
            "file" => true,
            "http" => {
                if !azlin_core::network::is_loopback_url(&url) {
                    return Err(invalid(
                        "http:// is only allowed on loopback (127.0.0.0/8, ::1, localhost): use https://",
                    ));
                }
                false
            }
            _ => {
                return Err(invalid(
                    "only https://, file:// and loopback http:// are allowed",
                ));
            }
        };
        if !file && url.host().is_none() {
            return Err(invalid("the URL has no host"));
        }
        Ok(SourceUrl {
            base: url.as_str().trim_end_matches('/').to_string(),
            file,
        })
    }

    fn repository(&self, r: &RemoteRef) -> String {
        format!("{}/{}/{}", self.base, r.owner, r.repo)
    }
}

/// An action's files on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedAction {
    /// The tree root of the repository at the commit (or the override folder).
    pub root: PathBuf,
    /// The 40-hex commit, or `override` for an `--action-override` folder.
    pub commit: String,
    /// `root` joined with the reference's path.
    pub dir: PathBuf,
}

/// The commit a ref resolved to, and the full ref name to fetch it by (`None` for a SHA).
#[derive(Debug, Clone)]
struct Resolved {
    commit: String,
    refname: Option<String>,
}

#[derive(Debug)]
struct Override {
    owner: String,
    repo: String,
    git_ref: String,
    dir: PathBuf,
}

/// Where remote actions come from: overrides, the cache, and the actions URL.
#[derive(Debug)]
pub struct ActionSource {
    url: SourceUrl,
    offline: bool,
    ca_cert: Option<PathBuf>,
    overrides: Vec<Override>,
    /// `<cache_dir>/actions`.
    cache: PathBuf,
    resolved: Mutex<HashMap<String, Arc<OnceCell<Resolved>>>>,
    trees: Mutex<HashMap<PathBuf, Arc<OnceCell<()>>>>,
    fetches: AtomicUsize,
}

impl ActionSource {
    /// Validates the settings: the URL (https://, file://, or http:// on loopback; no
    /// credentials) and each override (`OWNER/REPO@REF` naming an existing folder).
    pub fn new(settings: &ActionSettings) -> Result<ActionSource, ActionError> {
        let ActionSettings {
            url,
            offline,
            overrides,
            cache_dir,
            ca_cert,
        } = settings;
        let url = SourceUrl::parse(url)?;
        let overrides = overrides
            .iter()
            .map(|(key, dir)| parse_override(key, dir))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ActionSource {
            url,
            offline: *offline,
            ca_cert: ca_cert.clone(),
            overrides,
            cache: cache_dir.join("actions"),
            resolved: Mutex::new(HashMap::new()),
            trees: Mutex::new(HashMap::new()),
            fetches: AtomicUsize::new(0),
        })
    }

    /// How many trees this source fetched from the actions URL (cache hits are not counted).
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// The files of `r` on the host: its override folder, else its cached tree, fetched first
    /// when missing (never when offline).
    pub async fn fetch(&self, r: &RemoteRef) -> Result<FetchedAction, ActionError> {
        let located = |root: PathBuf, commit: String| {
            let dir = match &r.path {
                Some(path) => root.join(path),
                None => root.clone(),
            };
            FetchedAction { root, commit, dir }
        };
        if let Some(o) = self.overrides.iter().find(|o| {
            o.owner.eq_ignore_ascii_case(&r.owner)
                && o.repo.eq_ignore_ascii_case(&r.repo)
                && o.git_ref == r.git_ref
        }) {
            return Ok(located(o.dir.clone(), "override".to_string()));
        }
        let resolved = self.resolve(r).await?;
        let root = self.tree(r, &resolved).await?;
        Ok(located(root, resolved.commit))
    }

    /// `<cache>/<owner>/<repo>`, lowercased as GitHub names are case-insensitive.
    fn repo_cache(&self, r: &RemoteRef) -> PathBuf {
        self.cache
            .join(r.owner.to_ascii_lowercase())
            .join(r.repo.to_ascii_lowercase())
    }

    /// The file recording what `r.git_ref` resolved to (`/` encoded as `%2F`: `%` is not a
    /// ref character, so names cannot collide).
    fn ref_file(&self, r: &RemoteRef) -> PathBuf {
        self.repo_cache(r)
            .join("refs")
            .join(r.git_ref.replace('/', "%2F"))
    }

    fn not_cached(&self, r: &RemoteRef) -> ActionError {
        ActionError::NotCached {
            action: r.to_string(),
            cache_dir: self.cache.clone(),
        }
    }

    /// The commit of `r.git_ref`: a full SHA as is; offline, the recorded one; else asked of
    /// the repository once per source.
    async fn resolve(&self, r: &RemoteRef) -> Result<Resolved, ActionError> {
        if is_full_sha(&r.git_ref) {
            return Ok(Resolved {
                commit: r.git_ref.to_ascii_lowercase(),
                refname: None,
            });
        }
        if self.offline {
            let recorded = std::fs::read_to_string(self.ref_file(r)).unwrap_or_default();
            let commit = recorded.trim();
            return match is_full_sha(commit) {
                true => Ok(Resolved {
                    commit: commit.to_string(),
                    refname: None,
                }),
                false => Err(self.not_cached(r)),
            };
        }
        let key = format!("{}@{}", r.repository().to_ascii_lowercase(), r.git_ref);
        let cell = self
            .resolved
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(key)
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.ls_remote(r)).await.cloned()
    }

    /// Resolves a branch or tag with `git ls-remote`. A tag wins over a branch of the same
    /// name, as `git rev-parse` (and so GitHub's tarball API, which actions/runner downloads)
    /// resolves it; an annotated tag is peeled to its commit.
    async fn ls_remote(&self, r: &RemoteRef) -> Result<Resolved, ActionError> {
        let tag = format!("refs/tags/{}", r.git_ref);
        let peeled = format!("{tag}^{{}}");
        let branch = format!("refs/heads/{}", r.git_ref);
        let url = self.url.repository(r);
        let out = self
            .git(None)
            .args(["ls-remote", "--"])
            .arg(&url)
            .args([&tag, &peeled, &branch])
            .run(r, &url)
            .await?;
        let refs: HashMap<&str, &str> = out
            .lines()
            .filter_map(|line| {
                let (sha, name) = line.split_once('\t')?;
                Some((name.trim(), sha.trim()))
            })
            .collect();
        let found = [(&peeled, &tag), (&tag, &tag), (&branch, &branch)]
            .into_iter()
            .find_map(|(name, fetch)| Some((refs.get(name.as_str())?, fetch)));
        let Some((commit, refname)) = found else {
            let n = r.git_ref.len();
            return Err(if (4..=39).contains(&n) && is_hex(&r.git_ref) {
                ActionError::ShortSha {
                    action: r.to_string(),
                    git_ref: r.git_ref.clone(),
                }
            } else {
                ActionError::UnknownRef {
                    action: r.to_string(),
                    git_ref: r.git_ref.clone(),
                    repository: r.repository(),
                }
            });
        };
        if !is_full_sha(commit) {
            return Err(ActionError::Fetch {
                action: r.to_string(),
                url: redact(&url),
                detail: format!("git ls-remote gave '{commit}' for {refname}, not a commit SHA"),
            });
        }
        let resolved = Resolved {
            commit: commit.to_ascii_lowercase(),
            refname: Some(refname.clone()),
        };
        self.record_ref(r, &resolved.commit)?;
        Ok(resolved)
    }

    /// Records ref → commit for offline runs (written whole, then renamed into place).
    fn record_ref(&self, r: &RemoteRef, commit: &str) -> Result<(), ActionError> {
        let file = self.ref_file(r);
        let dir = self.repo_cache(r).join("refs");
        std::fs::create_dir_all(&dir).map_err(io_error(format!("creating {}", dir.display())))?;
        let temp = tempfile::NamedTempFile::new_in(&dir)
            .map_err(io_error(format!("creating a file in {}", dir.display())))?;
        std::fs::write(temp.path(), format!("{commit}\n"))
            .map_err(io_error(format!("writing {}", temp.path().display())))?;
        temp.persist(&file)
            .map_err(|e| e.error)
            .map_err(io_error(format!("writing {}", file.display())))?;
        Ok(())
    }

    /// The cached tree of the commit, fetched when missing (once per source at a time).
    async fn tree(&self, r: &RemoteRef, resolved: &Resolved) -> Result<PathBuf, ActionError> {
        let root = self.repo_cache(r).join(&resolved.commit);
        if root.is_dir() {
            return Ok(root);
        }
        if self.offline {
            return Err(self.not_cached(r));
        }
        let cell = self
            .trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(root.clone())
            .or_default()
            .clone();
        cell.get_or_try_init(|| self.fetch_tree(r, resolved, &root))
            .await?;
        Ok(root)
    }

    /// Fetches the commit into a scratch repository, extracts its tree into a staging folder
    /// and renames that to `root`.
    async fn fetch_tree(
        &self,
        r: &RemoteRef,
        resolved: &Resolved,
        root: &Path,
    ) -> Result<(), ActionError> {
        if root.is_dir() {
            return Ok(());
        }
        let parent = self.repo_cache(r);
        std::fs::create_dir_all(&parent)
            .map_err(io_error(format!("creating {}", parent.display())))?;
        let scratch = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&parent)
            .map_err(io_error(format!(
                "creating a folder in {}",
                parent.display()
            )))?;
        let git_dir = scratch.path().join("git");
        let url = self.url.repository(r);
        self.git(None)
            .args(["init", "-q", "--bare", "--"])
            .arg(&git_dir)
            .run(r, &url)
            .await?;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let commit = &resolved.commit;
        let wanted = resolved.refname.as_deref().unwrap_or(commit);
        self.fetch_one(r, &git_dir, &url, wanted).await?;
        if !self.has_commit(r, &git_dir, &url, commit).await? && wanted != commit {
            // The branch moved between ls-remote and fetch: ask for the commit itself.
            self.fetch_one(r, &git_dir, &url, commit).await?;
        }
        if !self.has_commit(r, &git_dir, &url, commit).await? {
            return Err(ActionError::UnknownRef {
                action: r.to_string(),
                git_ref: r.git_ref.clone(),
                repository: r.repository(),
            });
        }
        let archive = scratch.path().join("tree.tar");
        let mut output = OsString::from("--output=");
        output.push(&archive);
        self.git(Some(&git_dir))
            .args(["archive", "--format=tar"])
            .arg(output)
            .arg(commit)
            .run(r, &url)
            .await?;
        let staging = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&parent)
            .map_err(io_error(format!(
                "creating a folder in {}",
                parent.display()
            )))?;
        let into = staging.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&archive)?;
            tar::Archive::new(std::io::BufReader::new(file)).unpack(&into)
        })
        .await
        .map_err(|e| ActionError::Io {
            context: format!("extracting {r}"),
            source: std::io::Error::other(e),
        })?
        .map_err(io_error(format!("extracting {r}")))?;
        match std::fs::rename(staging.path(), root) {
            Ok(()) => {
                // The folder now lives at `root`: nothing is left to delete.
                let _published = staging.keep();
                Ok(())
            }
            // Another process published the same commit first; its tree is the same.
            Err(_) if root.is_dir() => Ok(()),
            Err(e) => Err(io_error(format!("publishing {}", root.display()))(e)),
        }
    }

    /// `git fetch --depth 1` of one ref or commit; without `--depth` when the server cannot
    /// do shallow fetches (dumb HTTP).
    async fn fetch_one(
        &self,
        r: &RemoteRef,
        git_dir: &Path,
        url: &str,
        wanted: &str,
    ) -> Result<(), ActionError> {
        let shallow = self
            .git(Some(git_dir))
            .args(["fetch", "-q", "--no-tags", "--depth", "1", "--"])
            .arg(url)
            .arg(wanted)
            .run(r, url)
            .await;
        let error = match shallow {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        let ActionError::Fetch { detail, .. } = &error else {
            return Err(error);
        };
        if detail.contains("not our ref") {
            return Err(ActionError::UnknownRef {
                action: r.to_string(),
                git_ref: r.git_ref.clone(),
                repository: r.repository(),
            });
        }
        self.git(Some(git_dir))
            .args(["fetch", "-q", "--no-tags", "--"])
            .arg(url)
            .arg(wanted)
            .run(r, url)
            .await
            .map(drop)
    }

    /// Whether the scratch repository holds `commit` as a commit.
    async fn has_commit(
        &self,
        r: &RemoteRef,
        git_dir: &Path,
        url: &str,
        commit: &str,
    ) -> Result<bool, ActionError> {
        let mut git =
            self.git(Some(git_dir))
                .args(["cat-file", "-e", &format!("{commit}^{{commit}}")]);
        let status = git
            .command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .map_err(|e| git_not_started(r, url, e))?;
        Ok(status.success())
    }

    /// `git` with no prompts, no inherited repository, and this source's settings.
    fn git(&self, git_dir: Option<&Path>) -> Git {
        let mut command = tokio::process::Command::new("git");
        command
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "true")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        for var in [
            "GIT_DIR",
            "GIT_WORK_TREE",
            "GIT_INDEX_FILE",
            "GIT_OBJECT_DIRECTORY",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES",
            "GIT_NAMESPACE",
            "GIT_CEILING_DIRECTORIES",
        ] {
            command.env_remove(var);
        }
        if let Some(git_dir) = git_dir {
            command.env("GIT_DIR", git_dir);
        }
        if self.url.file {
            command.args(["-c", "protocol.file.allow=always"]);
        }
        if let Some(ca) = &self.ca_cert {
            let mut setting = OsString::from("http.sslCAInfo=");
            setting.push(ca);
            command.arg("-c").arg(setting);
            // GIT_SSL_CAINFO, when the environment sets it, wins over the config.
            command.env("GIT_SSL_CAINFO", ca);
        }
        Git { command }
    }
}

fn git_not_started(r: &RemoteRef, url: &str, e: std::io::Error) -> ActionError {
    ActionError::Io {
        context: format!("running git to fetch {r} from {}", redact(url)),
        source: e,
    }
}

/// A git command about to run.
struct Git {
    command: tokio::process::Command,
}

impl Git {
    fn arg(mut self, arg: impl AsRef<std::ffi::OsStr>) -> Git {
        self.command.arg(arg);
        self
    }

    fn args<I, S>(mut self, args: I) -> Git
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.command.args(args);
        self
    }

    /// Runs it; stdout on success, else [`ActionError::Fetch`] with git's stderr, redacted.
    async fn run(mut self, r: &RemoteRef, url: &str) -> Result<String, ActionError> {
        let out = self
            .command
            .output()
            .await
            .map_err(|e| git_not_started(r, url, e))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        Err(ActionError::Fetch {
            action: r.to_string(),
            url: redact(url),
            detail: summarise(&String::from_utf8_lossy(&out.stderr), out.status),
        })
    }
}

/// git's stderr on one line, at most 500 characters, credentials redacted.
fn summarise(stderr: &str, status: std::process::ExitStatus) -> String {
    let text = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let text = redact(&text);
    if text.is_empty() {
        return format!("git exited with {status}");
    }
    match text.char_indices().nth(500) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn parse_override(key: &str, dir: &Path) -> Result<Override, ActionError> {
    let refused = |reason: String| ActionError::Override {
        key: key.to_string(),
        dir: dir.to_path_buf(),
        reason,
    };
    let r = RemoteRef::parse(key).map_err(|e| match e {
        ActionError::InvalidRef { reason, .. } => refused(reason),
        other => refused(other.to_string()),
    })?;
    if r.path.is_some() {
        return Err(refused(
            "expected OWNER/REPO@REF: an override stands for a whole repository".to_string(),
        ));
    }
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(refused("not a folder".to_string())),
        Err(e) => return Err(refused(e.to_string())),
    }
    Ok(Override {
        owner: r.owner,
        repo: r.repo,
        git_ref: r.git_ref,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid_reason(reference: &str) -> String {
        match RemoteRef::parse(reference) {
            Err(ActionError::InvalidRef { reason, .. }) => reason,
            other => panic!("{reference}: expected InvalidRef, got {other:?}"),
        }
    }

    #[test]
    fn parses_owner_repo_path_and_ref() {
        let r = RemoteRef::parse("cloudposse/actions/github/slash-command-dispatch@0.14.0")
            .expect("valid");
        assert_eq!(r.owner, "cloudposse");
        assert_eq!(r.repo, "actions");
        assert_eq!(r.path.as_deref(), Some("github/slash-command-dispatch"));
        assert_eq!(r.git_ref, "0.14.0");
        assert_eq!(r.repository(), "cloudposse/actions");
        assert_eq!(
            r.to_string(),
            "cloudposse/actions/github/slash-command-dispatch@0.14.0"
        );
        let r = RemoteRef::parse("actions/checkout@v4").expect("valid");
        assert_eq!(r.path, None);
        assert_eq!(r.to_string(), "actions/checkout@v4");
        let r = RemoteRef::parse("o/r/.github/workflows/x.yml@release/v1").expect("valid");
        assert_eq!(r.path.as_deref(), Some(".github/workflows/x.yml"));
        assert_eq!(r.git_ref, "release/v1");
        let r = RemoteRef::parse("o/r/sub/@main").expect("valid");
        assert_eq!(r.path.as_deref(), Some("sub"));
    }

    #[test]
    fn refuses_malformed_references() {
        for reference in [
            "actions/checkout",
            "actions/checkout@",
            "actions@v4",
            "/checkout@v4",
            "actions/@v4",
            "act ions/checkout@v4",
            "actions/check$out@v4",
            "../checkout@v4",
            "actions/..@v4",
            "actions/checkout//x@v4",
            "actions/checkout/../../x@v4",
            "actions/checkout/./x@v4",
            "actions/checkout@main;rm -rf /",
            "actions/checkout@$(x)",
            "actions/checkout@`x`",
            "actions/checkout@-upload-pack=x",
            "actions/checkout@v1..v2",
            "actions/checkout@a b",
            "actions/checkout@a\nb",
            "actions/checkout@/main",
            "actions/checkout@main/",
            "actions/checkout@.hidden",
            "actions/checkout@main.lock",
        ] {
            invalid_reason(reference);
        }
        assert!(invalid_reason("a/b@-x").contains("cannot start with '-'"));
        assert!(invalid_reason("a/b").contains("Expected format {org}/{repo}[/path]@ref"));
    }

    #[test]
    fn redacts_credentials_anywhere_in_text() {
        assert_eq!(
            redact("fatal: https://user:s3cret@example.com/o/r failed"),
            "fatal: https://***@example.com/o/r failed"
        );
        assert_eq!(redact("https://tok@h/x"), "https://***@h/x");
        assert_eq!(redact("file:///tmp/a@b/c"), "file:///tmp/a@b/c");
        assert_eq!(redact("no url here"), "no url here");
    }

    fn url_error(url: &str) -> (String, String) {
        match SourceUrl::parse(url) {
            Err(e @ ActionError::InvalidUrl { .. }) => {
                let text = e.to_string();
                let ActionError::InvalidUrl { url, .. } = e else {
                    unreachable!()
                };
                (url, text)
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[test]
    fn accepts_https_file_and_loopback_http() {
        for url in [
            "https://github.com",
            "https://git.example.com:8443/mirror/",
            "file:///srv/actions",
            "http://127.0.0.1:8080",
            "http://127.1.2.3",
            "http://[::1]:3000",
            "http://localhost:3000",
        ] {
            let parsed = SourceUrl::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(!parsed.base.ends_with('/'), "{url}");
        }
        let base = SourceUrl::parse("https://github.com/").expect("valid");
        let r = RemoteRef::parse("actions/checkout@v4").expect("valid");
        assert_eq!(base.repository(&r), "https://github.com/actions/checkout");
    }

    #[test]
    fn refuses_other_urls_without_showing_credentials() {
        let (shown, text) = url_error("https://user:hunter2@github.com");
        assert_eq!(shown, "https://***@github.com");
        assert!(
            !text.contains("hunter2") && !text.contains("user"),
            "{text}"
        );
        let (_, text) = url_error("https://ghp_tokenvalue@github.com/");
        assert!(!text.contains("ghp_tokenvalue"), "{text}");
        let (_, text) = url_error("http://example.com");
        assert!(text.contains("loopback"), "{text}");
        url_error("http://10.0.0.1");
        url_error("ssh://git@github.com");
        url_error("ext::sh -c x");
        url_error("https://github.com/?q=1");
        url_error("not a url");
    }
}
