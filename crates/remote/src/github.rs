//! GitHub access on a VM (step 6 of the launch): a token becomes git's credential for the hosts
//! of the repositories to clone (and GitHub's), kept in a file only the login user can read, and
//! logs in the VM's `gh` (`gh auth login --with-token`) when it has one. The token reaches the
//! VM on stdin: never in a command line, never in a log.

use crate::quote;
use crate::shell::{RemoteError, Shell};
use azlin_core::nats::Secret;

/// Where the credentials live on the VM (relative to the login user's home).
pub const CREDENTIALS_FILE: &str = ".config/azlin/git-credentials";

/// What the login did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The hosts git now has the token for.
    pub hosts: Vec<String>,
    /// `Some(true)` when `gh` was logged in, `Some(false)` when its login failed (its output
    /// then says why), `None` when the VM has no `gh`.
    pub gh: Option<bool>,
    /// What `gh` said when it failed.
    pub gh_error: String,
}

/// `host[:port]` of an `https://` URL.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    (!authority.is_empty() && !authority.contains('@')).then(|| authority.to_ascii_lowercase())
}

/// Percent-encodes what a credential URL's password may not hold as is.
fn encode(token: &str) -> String {
    token
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The script run on the VM. Its stdin: the raw token on the first line, then the contents of
/// the credentials file.
fn script(hosts: &[String]) -> String {
    let mut script = format!(
        "set -e\numask 077\nIFS= read -r token\ncreds=\"$HOME/{CREDENTIALS_FILE}\"\n\
         mkdir -p \"${{creds%/*}}\"\ncat > \"$creds\"\n"
    );
    for host in hosts {
        script.push_str(&format!(
            "git config --global {} {}\n",
            quote::sh(&format!("credential.https://{host}.helper")),
            "\"store --file=$creds\""
        ));
    }
    // `printf` is a shell builtin: the token is in no process's argv.
    script.push_str(
        "if command -v gh >/dev/null 2>&1; then\n  \
         if printf '%s\\n' \"$token\" | gh auth login --with-token --hostname github.com 2>&1; \
         then echo gh-ok; else echo gh-failed; fi\nfi\n",
    );
    script
}

/// Gives `token` to git on the VM for `hosts` (and logs in `gh`).
pub async fn log_in(
    shell: &dyn Shell,
    token: &Secret,
    hosts: &[String],
) -> Result<Login, RemoteError> {
    let mut stdin = format!("{}\n", token.expose());
    for host in hosts {
        stdin.push_str(&format!(
            "https://x-access-token:{}@{host}\n",
            encode(token.expose())
        ));
    }
    let mut output = Vec::new();
    let code = shell
        .exec(&script(hosts), stdin.as_bytes(), &mut |_, bytes| {
            output.extend_from_slice(bytes)
        })
        .await?;
    let text = String::from_utf8_lossy(&output).replace(token.expose(), "***");
    if code != 0 {
        return Err(RemoteError::Failed(format!(
            "giving git the token on the VM failed ({code}): {}",
            text.trim()
        )));
    }
    let gh = if text.contains("gh-ok") {
        Some(true)
    } else if text.contains("gh-failed") {
        Some(false)
    } else {
        None
    };
    let gh_error = match gh {
        Some(false) => text.replace("gh-failed", "").trim().to_string(),
        _ => String::new(),
    };
    Ok(Login {
        hosts: hosts.to_vec(),
        gh,
        gh_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_come_from_https_urls() {
        assert_eq!(
            url_host("https://GitHub.com/o/r.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            url_host("https://host.azlin.internal:8443/private/r.git").as_deref(),
            Some("host.azlin.internal:8443")
        );
        assert_eq!(url_host("http://github.com/o/r"), None);
        assert_eq!(url_host("https://me@github.com/o/r"), None);
    }

    #[test]
    fn the_token_is_in_no_command_line() {
        let hosts = vec!["github.com".to_string(), "git.example:8443".to_string()];
        let script = script(&hosts);
        assert!(!script.contains("ghp_secret"));
        assert!(
            script.contains("'credential.https://git.example:8443.helper'"),
            "{script}"
        );
        assert_eq!(encode("a+b/c@d"), "a%2Bb%2Fc%40d");
    }
}
