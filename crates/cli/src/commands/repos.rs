//! Step 6 from this side of the launch, over azlin's SSH: a GitHub token given to the VM's git
//! and `gh`, then the repositories cloned. Used when a token is given (it never travels on the
//! bus to a worker) and for VMs taken ready from a pool.

use crate::failure::Failure;
use crate::progress::Progress;
use crate::settings::read_secret;
use azlin_control::launch::{clone_command, clone_failure};
use azlin_core::nats::Secret;
use azlin_core::{ExitCode, RepoUrl, Vm};
use azlin_remote::Identity;
use std::path::Path;
use std::time::Duration;

/// The host whose token GitHub's own repositories need.
const GITHUB: &str = "github.com";

/// The GitHub token for new VMs: `--gh-token-file`, else `[github] token_file`, else what
/// `gh auth token` says on this machine (when `gh` is installed and logged in).
pub async fn github_token(
    flag: Option<&Path>,
    config: Option<&Path>,
) -> anyhow::Result<Option<Secret>> {
    let file = match (flag, config) {
        (Some(file), _) => Some(("--gh-token-file", file)),
        (None, Some(file)) => Some(("[github] token_file", file)),
        (None, None) => None,
    };
    if let Some((origin, file)) = file {
        let token = read_secret(origin, file)?;
        if token.expose().contains(char::is_whitespace) {
            return Err(Failure::usage(format!(
                "{origin}: {} does not hold a token",
                file.display()
            )));
        }
        return Ok(Some(token));
    }
    let asked = tokio::process::Command::new("gh")
        .args(["auth", "token"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    Ok(
        match tokio::time::timeout(Duration::from_secs(10), asked).await {
            Ok(Ok(out)) if out.status.success() => {
                let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (!token.is_empty()).then(|| Secret::new(token))
            }
            _ => None,
        },
    )
}

/// Gives `vm` the token (when there is one) and clones `repos` on it; returns the warnings (a
/// failed clone or `gh` login does not fail the launch).
pub async fn github_and_repos(
    progress: &Progress,
    vm: &Vm,
    identity: &Identity,
    token: Option<&Secret>,
    repos: &[RepoUrl],
) -> anyhow::Result<Vec<String>> {
    let mut warnings = Vec::new();
    if token.is_none() && repos.is_empty() {
        return Ok(warnings);
    }
    let shell = azlin_remote::connect(vm, identity)
        .await
        .map_err(|e| Failure::with_code(ExitCode::Readiness, e.to_string()))?;
    if let Some(token) = token {
        let stage = progress.stage(format!("GitHub access on {}", vm.name));
        let mut hosts = vec![GITHUB.to_string()];
        for host in repos
            .iter()
            .filter_map(|r| azlin_remote::github::url_host(r.as_str()))
        {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        match azlin_remote::github::log_in(shell.as_ref(), token, &hosts).await {
            Ok(login) => {
                let gh = match login.gh {
                    Some(true) => ", gh logged in",
                    Some(false) => {
                        warnings.push(format!("gh auth login failed: {}", login.gh_error));
                        ", gh login failed"
                    }
                    None => "",
                };
                stage.done(&format!("git has the token for {}{gh}", hosts.join(", ")));
            }
            Err(e) => {
                stage.fail(&e.to_string());
                warnings.push(e.to_string());
            }
        }
    }
    if repos.is_empty() {
        return Ok(warnings);
    }
    let stage = progress.stage("Repositories");
    let mut failed = 0;
    for repo in repos {
        let Some(dir) = repo.dir_name() else { continue };
        stage.update(&format!("cloning {repo} into ~/{dir}"));
        let failure = match shell.capture(&clone_command(repo, dir)).await {
            Ok(out) if out.code == 0 => None,
            Ok(out) => Some(clone_failure(repo, &out.stderr_text())),
            Err(e) => Some(clone_failure(repo, &e.to_string())),
        };
        if let Some(failure) = failure {
            failed += 1;
            warnings.push(failure);
        }
    }
    stage.done(&format!(
        "{} of {} repositories cloned",
        repos.len() - failed,
        repos.len()
    ));
    Ok(warnings)
}
