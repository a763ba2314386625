//! Credentials delegated to the Azure CLI (step 2 of seed 000): the provider is the only place
//! azlin runs `az`, and only for `az account show` and `az account get-access-token`.
//!
//! The access token lives in memory only: it is never written to disk, never logged, and
//! [`Secret`]'s `Debug` prints `<redacted>`. It is refreshed [`REFRESH_MARGIN`] before the
//! `expires_on` instant az reports (POSIX seconds, az ≥ 2.54; older versions only print the local
//! time string `expiresOn`, which is read as a fallback).

use azlin_core::{ErrorKind, ProviderError};
use serde::Deserialize;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, OnceCell};

/// The ARM audience tokens are requested for.
const ARM_RESOURCE: &str = "https://management.azure.com/";

/// A token is refreshed when it has less than this left.
pub(crate) const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long one `az` invocation may take.
const AZ_TIMEOUT: Duration = Duration::from_secs(90);

/// How to install the Azure CLI (shown when `az` is missing; `Tool::install_hint`).
pub(crate) const INSTALL_HINT: &str = "install the Azure CLI: `curl -sL https://aka.ms/InstallAzureCLIDeb | sudo bash` on Debian/Ubuntu (see https://learn.microsoft.com/cli/azure/install-azure-cli), then run `az login`";

/// A string that must not be shown: `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// An ARM access token and when it expires (POSIX seconds).
#[derive(Debug, Clone)]
struct AccessToken {
    secret: Secret,
    expires_at: u64,
}

/// The signed-in account, from `az account show`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// Subscription id.
    pub subscription_id: String,
    /// Subscription display name.
    pub subscription_name: String,
    /// The user or service principal.
    pub user: String,
}

#[derive(Deserialize)]
struct AccountJson {
    id: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    user: Option<UserJson>,
}

#[derive(Deserialize)]
struct UserJson {
    #[serde(default)]
    name: String,
}

/// `az account get-access-token -o json`. No `Debug`: it holds the token.
#[derive(Deserialize)]
struct TokenJson {
    #[serde(rename = "accessToken")]
    access_token: String,
    #[serde(default)]
    expires_on: Option<serde_json::Value>,
    #[serde(rename = "expiresOn", default)]
    expires_on_local: Option<String>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the Azure CLI.
#[derive(Debug, Clone)]
pub(crate) struct AzCli {
    program: PathBuf,
    search_path: Option<OsString>,
}

impl AzCli {
    pub(crate) fn new(program: PathBuf, search_path: Option<OsString>) -> AzCli {
        AzCli {
            program,
            search_path,
        }
    }

    /// Runs `az ARGS` and returns its standard output. Missing program → Prerequisites; a
    /// failure → Auth with the last line az printed on stderr (az's stderr never holds tokens).
    async fn run(&self, args: &[&str]) -> Result<Vec<u8>, ProviderError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(path) = &self.search_path {
            // std looks the program up on the child's PATH when it is set explicitly.
            cmd.env("PATH", path);
        }
        tracing::debug!(program = %self.program.display(), ?args, "running az");
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => {
                ProviderError::new(
                    ErrorKind::Prerequisites,
                    format!(
                        "the Azure CLI ('{}') was not found or cannot be run: {INSTALL_HINT}",
                        self.program.display()
                    ),
                )
            }
            _ => ProviderError::new(
                ErrorKind::Internal,
                format!("cannot run '{}': {e}", self.program.display()),
            ),
        })?;
        let output = tokio::time::timeout(AZ_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                ProviderError::new(
                    ErrorKind::Transient,
                    format!(
                        "'az {}' did not finish within {} s",
                        args.join(" "),
                        AZ_TIMEOUT.as_secs()
                    ),
                )
            })?
            .map_err(|e| {
                ProviderError::new(ErrorKind::Internal, format!("waiting for az failed: {e}"))
            })?;
        if output.status.success() {
            return Ok(output.stdout);
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let said = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no message)")
            .trim()
            .to_string();
        tracing::debug!(status = ?output.status.code(), said = %said, "az failed");
        Err(ProviderError::new(
            ErrorKind::Auth,
            format!("Azure CLI is not ready: {said} (run `az login`, then try again)"),
        ))
    }
}

/// The account and a cached access token, fetched through `az` on first use.
pub(crate) struct Credentials {
    az: AzCli,
    subscription: Option<String>,
    account: OnceCell<Account>,
    token: Mutex<Option<AccessToken>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("az", &self.az)
            .field("subscription", &self.subscription)
            .field("account", &self.account.get())
            .field("token", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    pub(crate) fn new(az: AzCli, subscription: Option<String>) -> Credentials {
        Credentials {
            az,
            subscription,
            account: OnceCell::new(),
            token: Mutex::new(None),
        }
    }

    /// The signed-in account and the subscription azlin works in (`az account show`, once).
    pub(crate) async fn account(&self) -> Result<&Account, ProviderError> {
        self.account
            .get_or_try_init(|| async {
                let mut args = vec!["account", "show", "-o", "json"];
                if let Some(sub) = &self.subscription {
                    args.extend(["--subscription", sub.as_str()]);
                }
                let out = self.az.run(&args).await?;
                let json: AccountJson = serde_json::from_slice(&out).map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Auth,
                        format!(
                            "'az account show' printed unexpected output ({e}); is az up to date?"
                        ),
                    )
                })?;
                Ok(Account {
                    subscription_id: json.id,
                    subscription_name: json.name,
                    user: json.user.map(|u| u.name).unwrap_or_default(),
                })
            })
            .await
    }

    /// A token valid for at least [`REFRESH_MARGIN`] (unless az hands out shorter-lived ones).
    pub(crate) async fn token(&self) -> Result<Secret, ProviderError> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if t.expires_at > now_secs() + REFRESH_MARGIN.as_secs() {
                return Ok(t.secret.clone());
            }
            tracing::debug!("access token expires soon; refreshing");
        }
        let account = self.account().await?;
        let args = [
            "account",
            "get-access-token",
            "--resource",
            ARM_RESOURCE,
            "--subscription",
            account.subscription_id.as_str(),
            "-o",
            "json",
        ];
        let out = self.az.run(&args).await?;
        let fresh = parse_token(&out)?;
        tracing::debug!(
            expires_in_secs = fresh.expires_at.saturating_sub(now_secs()),
            "got an ARM access token from az"
        );
        let secret = fresh.secret.clone();
        *cached = Some(fresh);
        Ok(secret)
    }

    /// Forgets the cached token (after ARM refused it), so the next call asks az again.
    pub(crate) async fn invalidate(&self) {
        *self.token.lock().await = None;
    }
}

fn parse_token(out: &[u8]) -> Result<AccessToken, ProviderError> {
    // serde's messages can quote values; report only where the JSON broke.
    let json: TokenJson = serde_json::from_slice(out).map_err(|e| {
        ProviderError::new(
            ErrorKind::Auth,
            format!(
                "'az account get-access-token' printed unexpected output (line {}, column {}); is az up to date?",
                e.line(),
                e.column()
            ),
        )
    })?;
    if json.access_token.is_empty() {
        return Err(ProviderError::new(
            ErrorKind::Auth,
            "'az account get-access-token' returned no token: run `az login`",
        ));
    }
    let epoch = match &json.expires_on {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let expires_at = epoch
        .or_else(|| json.expires_on_local.as_deref().and_then(parse_local_time))
        // Unknown expiry: assume a short life so that it is refreshed soon.
        .unwrap_or_else(|| now_secs() + REFRESH_MARGIN.as_secs() + 60);
    Ok(AccessToken {
        secret: Secret(json.access_token),
        expires_at,
    })
}

/// `expiresOn` of older az versions: `2024-01-01 12:00:00.000000` in the local time zone.
fn parse_local_time(s: &str) -> Option<u64> {
    let civil: jiff::civil::DateTime = s.trim().replace(' ', "T").parse().ok()?;
    let zoned = civil.to_zoned(jiff::tz::TimeZone::system()).ok()?;
    u64::try_from(zoned.timestamp().as_second()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_expiry_prefers_epoch_then_local_time() {
        let t = parse_token(
            br#"{"accessToken":"abc","expiresOn":"2000-01-01 00:00:00.000000","expires_on":4102444800,"tokenType":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.expires_at, 4_102_444_800);
        let t = parse_token(br#"{"accessToken":"abc","expires_on":"4102444800"}"#).unwrap();
        assert_eq!(t.expires_at, 4_102_444_800);
        let t = parse_token(br#"{"accessToken":"abc","expiresOn":"2099-12-31 00:00:00.000000"}"#)
            .unwrap();
        assert!(t.expires_at > 4_000_000_000);
    }

    #[test]
    fn token_parse_errors_do_not_echo_output() {
        let err = parse_token(br#"{"accessToken": 12345678, "expires_on": 1}"#).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Auth);
        assert!(!err.message.contains("12345678"), "{}", err.message);
    }

    #[test]
    fn secrets_are_redacted() {
        let t = parse_token(br#"{"accessToken":"supersecret","expires_on":1}"#).unwrap();
        assert!(!format!("{t:?}").contains("supersecret"));
        assert_eq!(t.secret.expose(), "supersecret");
    }
}
