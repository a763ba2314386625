//! TEMPORARY stub, replaced by the real fetching module.
#![allow(missing_docs)]
use crate::options::ActionSettings;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(String);

#[derive(Debug, Clone)]
pub struct RemoteRef {
    pub owner: String,
    pub repo: String,
    pub path: Option<String>,
    pub git_ref: String,
}

impl RemoteRef {
    pub fn parse(s: &str) -> Result<RemoteRef, ActionError> {
        let (name, git_ref) = s
            .split_once('@')
            .ok_or_else(|| ActionError(format!("{s}: no @REF")))?;
        let mut parts = name.splitn(3, '/');
        Ok(RemoteRef {
            owner: parts.next().unwrap_or_default().to_string(),
            repo: parts.next().unwrap_or_default().to_string(),
            path: parts.next().map(str::to_string),
            git_ref: git_ref.to_string(),
        })
    }
    pub fn repository(&self) -> String {
        format!("{}/{}", self.owner, self.repo)
    }
}

pub struct FetchedAction {
    pub root: PathBuf,
    pub dir: PathBuf,
    pub commit: String,
}

pub struct ActionSource {
    settings: ActionSettings,
}

impl ActionSource {
    pub fn new(settings: &ActionSettings) -> Result<ActionSource, ActionError> {
        Ok(ActionSource {
            settings: settings.clone(),
        })
    }
    pub async fn fetch(&self, r: &RemoteRef) -> Result<FetchedAction, ActionError> {
        let base = self.settings.url.trim_start_matches("file://");
        let url = format!("{base}/{}/{}.git", r.owner, r.repo);
        let root = self.settings.cache_dir.join(format!(
            "stub-{}-{}-{}",
            r.owner,
            r.repo,
            r.git_ref.replace('/', "_")
        ));
        if !root.exists() {
            let out = tokio::process::Command::new("git")
                .args(["clone", "-q", "--branch", &r.git_ref, "--depth", "1", &url])
                .arg(&root)
                .output()
                .await
                .map_err(|e| ActionError(e.to_string()))?;
            if !out.status.success() {
                return Err(ActionError(format!(
                    "Unable to resolve action `{}@{}`: {}",
                    r.repository(),
                    r.git_ref,
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        let dir = match &r.path {
            Some(p) => root.join(p),
            None => root.clone(),
        };
        Ok(FetchedAction {
            root,
            dir,
            commit: String::new(),
        })
    }
}
