//! Fetching a repository at one commit with the system `git`, the token given by environment
//! (an `Authorization` header git adds to its HTTP requests), never by argv, and never logged.

use azlin_core::nats::Secret;
use std::path::Path;
use std::process::Stdio;

/// Where repositories come from: `{repository}` in the template stands for `OWNER/NAME`.
#[derive(Debug, Clone)]
pub struct RepoSource {
    template: String,
    token: Option<Secret>,
}

/// A repository that could not be fetched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// The URL template cannot be used.
    #[error("[serve] repo_url '{0}': {1}")]
    Template(String, String),
    /// git failed.
    #[error("fetching {repository} at {sha}: {message}")]
    Git {
        /// `OWNER/NAME`.
        repository: String,
        /// The commit.
        sha: String,
        /// What git said (its last lines).
        message: String,
    },
}

/// The default source: GitHub.
pub const DEFAULT_TEMPLATE: &str = "https://github.com/{repository}.git";

impl RepoSource {
    /// Checks `template` (`https://…` or `file://…`, with `{repository}`, without credentials;
    /// `http://` on loopback only).
    pub fn new(template: &str, token: Option<Secret>) -> Result<RepoSource, FetchError> {
        let bad = |why: &str| FetchError::Template(template.to_string(), why.to_string());
        if !template.contains("{repository}") {
            return Err(bad("it must contain {repository}"));
        }
        let sample = template.replace("{repository}", "owner/name");
        let url = url::Url::parse(&sample).map_err(|e| bad(&e.to_string()))?;
        match url.scheme() {
            "https" | "file" => {}
            "http" if azlin_core::network::is_loopback_url(&url) => {}
            _ => {
                return Err(bad(
                    "expected https:// or file:// (http:// on loopback only)",
                ));
            }
        }
        if azlin_core::network::has_credentials(&url) {
            return Err(bad(
                "credentials do not belong in the URL: put the token in [serve] token_file",
            ));
        }
        Ok(RepoSource {
            template: template.to_string(),
            token,
        })
    }

    /// The URL of `repository` (`OWNER/NAME`, checked to be just that).
    pub fn url(&self, repository: &str) -> Result<String, FetchError> {
        // GitHub's rule for the parts (no `.` or `..`, no `/`): safe in a URL or a path.
        if crate::github::split_repo(repository).is_err() {
            return Err(FetchError::Template(
                self.template.clone(),
                format!("'{repository}' is not OWNER/NAME"),
            ));
        }
        Ok(self.template.replace("{repository}", repository))
    }

    /// Fetches `repository` at `sha` into the empty folder `into` (a git work tree with the
    /// commit checked out, detached, and history one commit deep).
    pub async fn fetch(&self, repository: &str, sha: &str, into: &Path) -> Result<(), FetchError> {
        let url = self.url(repository)?;
        let fail = |message: String| FetchError::Git {
            repository: repository.to_string(),
            sha: sha.to_string(),
            message,
        };
        if crate::github::check_sha(sha).is_err() {
            return Err(fail("not a commit id".into()));
        }
        let dir = into.to_string_lossy().into_owned();
        let steps: [&[&str]; 3] = [
            &["init", "-q", &dir],
            &[
                "-C",
                &dir,
                "fetch",
                "-q",
                "--depth=1",
                "--no-tags",
                &url,
                sha,
            ],
            &["-C", &dir, "checkout", "-q", "--detach", "FETCH_HEAD"],
        ];
        for args in steps {
            self.git(args).await.map_err(fail)?;
        }
        Ok(())
    }

    async fn git(&self, args: &[&str]) -> Result<(), String> {
        let mut command = tokio::process::Command::new("git");
        command
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(token) = &self.token {
            use base64::Engine;
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("x-access-token:{}", token.expose()));
            command
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        let output = command
            .output()
            .await
            .map_err(|e| format!("cannot run git: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        Err(tail.into_iter().rev().collect::<Vec<_>>().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        let source = RepoSource::new(DEFAULT_TEMPLATE, None).unwrap();
        assert_eq!(
            source.url("octo/app").unwrap(),
            "https://github.com/octo/app.git"
        );
        // GitHub's own `.github` repositories are fetched like any other.
        assert_eq!(
            source.url("octo/.github").unwrap(),
            "https://github.com/octo/.github.git"
        );
        for bad in ["octo", "octo/", "../x/y", "a/b c", "a/..", "a/b/c", "./x"] {
            assert!(source.url(bad).is_err(), "{bad}");
        }
        RepoSource::new("file:///srv/git/{repository}", None).unwrap();
        RepoSource::new("http://127.0.0.1:9/{repository}", None).unwrap();
        for bad in [
            "https://github.com/fixed.git",
            "http://example.com/{repository}",
            "https://me:pw@github.com/{repository}",
            "ssh://git@github.com/{repository}",
        ] {
            assert!(RepoSource::new(bad, None).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn commit_ids_that_are_not_full_shas_are_refused_before_git_runs() {
        let source = RepoSource::new("file:///nowhere/{repository}", None).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "abc123",
            &"g".repeat(40),
            &"a".repeat(41),
            "--upload-pack=x",
        ] {
            let e = source.fetch("octo/app", bad, dir.path()).await.unwrap_err();
            assert!(e.to_string().contains("not a commit id"), "{e}");
        }
        assert!(dir.path().read_dir().unwrap().next().is_none());
    }
}
