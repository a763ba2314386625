//! The repository a workflow belongs to: where it is (the git top level of the workflow file,
//! else the folder above `.github/workflows`, else the workflow's own folder), what git says
//! about it (commit, branch, `origin` remote, read from `.git` without running git), and the
//! archive `actions/checkout` copies onto the VM. (`hashFiles` hashes that copy, on the VM.)

use std::path::{Path, PathBuf};

/// A workflow's repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// The folder copied by `actions/checkout`.
    pub root: PathBuf,
    /// The commit checked out (`HEAD`), when it is a git repository.
    pub sha: Option<String>,
    /// The branch checked out, when on one.
    pub branch: Option<String>,
    /// The URL of the `origin` remote.
    pub remote: Option<String>,
}

fn git_dir(root: &Path) -> Option<PathBuf> {
    let dot = root.join(".git");
    if dot.is_dir() {
        return Some(dot);
    }
    let text = std::fs::read_to_string(&dot).ok()?;
    let target = text.trim().strip_prefix("gitdir:")?.trim();
    let path = PathBuf::from(target);
    Some(if path.is_absolute() {
        path
    } else {
        root.join(path)
    })
}

fn common_dir(git: &Path) -> PathBuf {
    std::fs::read_to_string(git.join("commondir"))
        .ok()
        .map(|c| git.join(c.trim()))
        .unwrap_or_else(|| git.to_path_buf())
}

fn resolve_ref(git: &Path, name: &str) -> Option<String> {
    let common = common_dir(git);
    for dir in [git, common.as_path()] {
        if let Ok(sha) = std::fs::read_to_string(dir.join(name)) {
            return Some(sha.trim().to_string());
        }
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (sha, r) = l.split_once(' ')?;
        (r.trim() == name).then(|| sha.to_string())
    })
}

fn origin_url(git: &Path) -> Option<String> {
    let config = std::fs::read_to_string(common_dir(git).join("config")).ok()?;
    let mut in_origin = false;
    for line in config.lines() {
        let l = line.trim();
        if l.starts_with('[') {
            in_origin = l.replace(' ', "") == "[remote\"origin\"]";
        } else if in_origin
            && let Some((k, v)) = l.split_once('=')
            && k.trim() == "url"
        {
            return Some(v.trim().to_string());
        }
    }
    None
}

/// `owner/name` from a remote URL (`https://github.com/o/n.git`, `git@github.com:o/n`).
pub fn slug_from_url(url: &str) -> Option<String> {
    let trimmed = url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix(".git").unwrap_or(trimmed);
    let parts: Vec<&str> = trimmed.rsplitn(3, ['/', ':']).collect();
    match parts.as_slice() {
        [name, owner, ..] if !name.is_empty() && !owner.is_empty() && !owner.contains('@') => {
            Some(format!("{owner}/{name}"))
        }
        _ => None,
    }
}

impl Repository {
    /// The repository of the workflow file at `workflow`.
    pub fn discover(workflow: &Path) -> Repository {
        let file = std::fs::canonicalize(workflow).unwrap_or_else(|_| workflow.to_path_buf());
        let folder = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if let Some(repo) = Repository::enclosing(&folder) {
            return repo;
        }
        let root = if folder.file_name().is_some_and(|n| n == "workflows")
            && folder
                .parent()
                .and_then(Path::file_name)
                .is_some_and(|n| n == ".github")
        {
            folder
                .parent()
                .and_then(Path::parent)
                .map(Path::to_path_buf)
                .unwrap_or(folder)
        } else {
            folder
        };
        Repository {
            root,
            sha: None,
            branch: None,
            remote: None,
        }
    }

    /// The repository at `folder` (`-C`): that folder is what `actions/checkout` copies; the
    /// commit, branch and remote come from the git repository it is in, if any.
    pub fn at(folder: &Path) -> Repository {
        let root = std::fs::canonicalize(folder).unwrap_or_else(|_| folder.to_path_buf());
        match Repository::enclosing(&root) {
            Some(repo) => Repository { root, ..repo },
            None => Repository {
                root,
                sha: None,
                branch: None,
                remote: None,
            },
        }
    }

    /// The git repository `folder` is in.
    fn enclosing(folder: &Path) -> Option<Repository> {
        let root = folder.ancestors().find(|a| a.join(".git").exists())?;
        let root = root.to_path_buf();
        let git = git_dir(&root);
        let (mut sha, mut branch, mut remote) = (None, None, None);
        if let Some(git) = &git {
            let head = std::fs::read_to_string(git.join("HEAD")).unwrap_or_default();
            match head.trim().strip_prefix("ref:") {
                Some(r) => {
                    let r = r.trim();
                    branch = r.strip_prefix("refs/heads/").map(str::to_string);
                    sha = resolve_ref(git, r);
                }
                None if !head.trim().is_empty() => sha = Some(head.trim().to_string()),
                None => {}
            }
            remote = origin_url(git);
        }
        Some(Repository {
            root,
            sha,
            branch,
            remote,
        })
    }

    /// `owner/name`: from the `origin` remote, else `local/<folder name>`.
    pub fn default_slug(&self) -> String {
        self.remote
            .as_deref()
            .and_then(slug_from_url)
            .unwrap_or_else(|| {
                let dir = self
                    .root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| "repository".to_string());
                format!("local/{dir}")
            })
    }

    /// A tar archive of the repository, for `actions/checkout`.
    pub fn archive(&self) -> std::io::Result<Vec<u8>> {
        archive_dir(&self.root)
    }
}

/// A tar archive of the folder `dir` (symbolic links kept as links), as it is copied to a VM.
pub fn archive_dir(dir: &Path) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.append_dir_all(".", dir)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_from_remotes() {
        assert_eq!(
            slug_from_url("https://github.com/nektos/act.git").as_deref(),
            Some("nektos/act")
        );
        assert_eq!(
            slug_from_url("git@github.com:owner/name").as_deref(),
            Some("owner/name")
        );
        assert_eq!(slug_from_url("nothing"), None);
    }

    #[test]
    fn discovers_git_repositories_and_plain_folders() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("proj");
        let wf_dir = root.join(".github/workflows");
        std::fs::create_dir_all(&wf_dir).unwrap();
        std::fs::write(wf_dir.join("ci.yml"), "on: push").unwrap();
        // Not a git repository: the folder above .github/workflows.
        let repo = Repository::discover(&wf_dir.join("ci.yml"));
        assert_eq!(repo.root, std::fs::canonicalize(&root).unwrap());
        assert_eq!(repo.default_slug(), "local/proj");
        // A git repository with a branch, a packed ref and an origin.
        let git = root.join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        std::fs::write(git.join("packed-refs"), "# pack\nabc123 refs/heads/main\n").unwrap();
        std::fs::write(
            git.join("config"),
            "[core]\n\tbare = false\n[remote \"origin\"]\n\turl = https://github.com/o/p.git\n",
        )
        .unwrap();
        let repo = Repository::discover(&wf_dir.join("ci.yml"));
        assert_eq!(repo.sha.as_deref(), Some("abc123"));
        assert_eq!(repo.branch.as_deref(), Some("main"));
        assert_eq!(repo.default_slug(), "o/p");
        // Any other folder: the workflow's own.
        std::fs::write(dir.path().join("w.yml"), "on: push").unwrap();
        let repo = Repository::discover(&dir.path().join("w.yml"));
        assert_eq!(repo.root, std::fs::canonicalize(dir.path()).unwrap());
    }
}
