//! [`ActionRepos`]: the action repositories of the conformance corpus (git bundles in
//! `tests/conformance/actions`), as bare repositories laid out `<dir>/OWNER/REPO.git` — an
//! actions source with no internet, as a `file://` URL or served by [`crate::GitServer`].

use std::path::{Path, PathBuf};
use std::process::Command;

/// Each bundle and the repository it holds.
pub const BUNDLES: [(&str, &str); 4] = [
    ("nektos-act-test-actions.bundle", "nektos/act-test-actions"),
    (
        "actions-hello-world-javascript-action.bundle",
        "actions/hello-world-javascript-action",
    ),
    ("cloudposse-actions.bundle", "cloudposse/actions"),
    ("actions-cache.bundle", "actions/cache"),
];

/// The folder of the bundles.
pub fn bundles_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/actions")
}

/// The bundled repositories, unpacked into a temporary folder removed on drop.
pub struct ActionRepos {
    dir: tempfile::TempDir,
}

/// Runs git, panicking with its stderr on failure; gives stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl ActionRepos {
    /// Unpacks every bundle with all its refs (branches and tags), ready for dumb HTTP too
    /// (`git update-server-info`).
    pub fn new() -> ActionRepos {
        let dir = tempfile::tempdir().expect("a temporary folder");
        for (bundle, repository) in BUNDLES {
            let bare = dir.path().join(format!("{repository}.git"));
            std::fs::create_dir_all(&bare).expect("the repository folder");
            git(&bare, &["init", "-q", "--bare"]);
            let bundle = bundles_dir().join(bundle);
            let bundle = bundle.to_str().expect("a UTF-8 path");
            git(&bare, &["fetch", "-q", bundle, "refs/*:refs/*"]);
            // HEAD names the default branch when there is one (a tag-only bundle has none).
            let heads = git(
                &bare,
                &["for-each-ref", "--format=%(refname)", "refs/heads"],
            );
            if let Some(head) = heads.lines().next() {
                git(&bare, &["symbolic-ref", "HEAD", head]);
            }
            git(&bare, &["update-server-info"]);
        }
        ActionRepos { dir }
    }

    /// The folder holding `OWNER/REPO.git`.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The bare repository of `OWNER/REPO`.
    pub fn repository(&self, repository: &str) -> PathBuf {
        self.dir.path().join(format!("{repository}.git"))
    }

    /// `file:///…` of [`ActionRepos::root`], for the actions URL.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }

    /// The commit `rev` names in `OWNER/REPO`.
    pub fn rev_parse(&self, repository: &str, rev: &str) -> String {
        git(
            &self.repository(repository),
            &["rev-parse", "--verify", &format!("{rev}^{{commit}}")],
        )
    }
}

impl Default for ActionRepos {
    fn default() -> Self {
        ActionRepos::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bundle_ref_is_a_ref_of_its_repository() {
        let repos = ActionRepos::new();
        for (repository, rev) in [
            ("nektos/act-test-actions", "refs/heads/main"),
            ("actions/hello-world-javascript-action", "refs/tags/v1"),
            ("actions/hello-world-javascript-action", "refs/heads/main"),
            ("cloudposse/actions", "refs/tags/0.14.0"),
            ("actions/cache", "refs/tags/v4"),
        ] {
            assert_eq!(
                repos.rev_parse(repository, rev).len(),
                40,
                "{repository} {rev}"
            );
        }
        assert!(repos.file_url().starts_with("file:///"));
    }
}
