//! [`StubAz`]: a test double of the Azure CLI, written as a shell script named `az` into a
//! temporary `bin` folder that a test puts first on the `PATH` it gives the provider.
//!
//! It answers the two commands azlin runs with the JSON shapes the real `az` prints:
//! - `az account show -o json`: `environmentName`, `homeTenantId`, `id`, `isDefault`,
//!   `managedByTenants`, `name`, `state`, `tenantDefaultDomain`, `tenantDisplayName`, `tenantId`,
//!   `user {name, type}`;
//! - `az account get-access-token --resource … -o json`: `accessToken`, `expiresOn` (local time,
//!   `YYYY-MM-DD HH:MM:SS.ffffff`), `expires_on` (POSIX seconds, az ≥ 2.54), `subscription`,
//!   `tenant`, `tokenType` (as built in azure-cli's `profile/custom.py`). The token is the one the
//!   [`ArmDouble`] accepts only when asked for ARM's audience (`--resource
//!   https://management.azure.com/`, or az's default `https://management.core.windows.net/`);
//!   for any other `--resource` it is a token the double refuses, as ARM refuses tokens issued
//!   for other audiences;
//! - when "logged out", both print az's own error, `ERROR: Please run 'az login' to setup
//!   account.`, on stderr and exit 1.
//!
//! Every invocation's arguments are appended to a calls file (never the token), so tests can count
//! how often azlin ran `az`.

use crate::ArmDouble;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The account the stub pretends to be logged in as.
#[derive(Clone, PartialEq, Eq)]
pub struct AzAccount {
    /// Subscription id (`id` of `az account show`).
    pub subscription_id: String,
    /// Subscription display name.
    pub subscription_name: String,
    /// Tenant id.
    pub tenant_id: String,
    /// The signed-in user.
    pub user: String,
    /// The access token handed out.
    pub token: String,
    /// Seconds until each handed-out token expires.
    pub token_lifetime_secs: u64,
}

impl std::fmt::Debug for AzAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzAccount")
            .field("subscription_id", &self.subscription_id)
            .field("user", &self.user)
            .field("token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl AzAccount {
    /// The account whose token `double` accepts, tokens valid for an hour.
    pub fn for_double(double: &ArmDouble) -> AzAccount {
        AzAccount {
            subscription_id: double.subscription_id().to_string(),
            subscription_name: "azlin test subscription".into(),
            tenant_id: double.tenant_id().to_string(),
            user: "developer@contoso.example".into(),
            token: double.token().to_string(),
            token_lifetime_secs: 3600,
        }
    }
}

/// A stub `az` program in its own temporary folder (removed on drop).
#[derive(Debug)]
pub struct StubAz {
    dir: tempfile::TempDir,
}

const LOGIN_ERROR: &str = "ERROR: Please run 'az login' to setup account.";

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn json_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

impl StubAz {
    /// An `az` logged in as `account`.
    pub fn logged_in(account: &AzAccount) -> std::io::Result<StubAz> {
        let show = format!(
            r#"{{
  "environmentName": "AzureCloud",
  "homeTenantId": {tenant},
  "id": {sub},
  "isDefault": true,
  "managedByTenants": [],
  "name": {name},
  "state": "Enabled",
  "tenantDefaultDomain": "contoso.onmicrosoft.com",
  "tenantDisplayName": "Contoso",
  "tenantId": {tenant},
  "user": {{
    "name": {user},
    "type": "user"
  }}
}}"#,
            tenant = json_string(&account.tenant_id),
            sub = json_string(&account.subscription_id),
            name = json_string(&account.subscription_name),
            user = json_string(&account.user),
        );
        let body = format!(
            r#"case "$1 $2" in
"account show")
  if [ -n "$subscription" ] && [ "$subscription" != {sub} ]; then
    echo "ERROR: Subscription '$subscription' not found. Check the spelling and casing and try again." >&2
    exit 1
  fi
  cat <<'JSON'
{show}
JSON
  ;;
"account get-access-token")
  token={token}
  case "$resource" in
  ""|https://management.azure.com|https://management.azure.com/|https://management.core.windows.net|https://management.core.windows.net/) ;;
  *) token="token-for-another-audience" ;;
  esac
  now=$(date +%s)
  exp=$((now + {lifetime}))
  local_time=$(date -d "@$exp" '+%Y-%m-%d %H:%M:%S.000000')
  printf '{{\n  "accessToken": "%s",\n  "expiresOn": "%s",\n  "expires_on": %s,\n  "subscription": "%s",\n  "tenant": "%s",\n  "tokenType": "Bearer"\n}}\n' \
    "$token" "$local_time" "$exp" {sub} {tenant}
  ;;
*)
  unknown "$@"
  ;;
esac
"#,
            sub = quote(&account.subscription_id),
            tenant = quote(&account.tenant_id),
            token = quote(&account.token),
            lifetime = account.token_lifetime_secs,
        );
        StubAz::write(&body)
    }

    /// An `az` that is installed but not logged in.
    pub fn logged_out() -> std::io::Result<StubAz> {
        let body = format!(
            r#"case "$1 $2" in
"account show"|"account get-access-token")
  echo {err} >&2
  exit 1
  ;;
*)
  unknown "$@"
  ;;
esac
"#,
            err = quote(LOGIN_ERROR)
        );
        StubAz::write(&body)
    }

    fn write(body: &str) -> std::io::Result<StubAz> {
        let dir = tempfile::Builder::new().prefix("azlin-stub-az").tempdir()?;
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin)?;
        let calls = dir.path().join("calls");
        std::fs::write(&calls, "")?;
        let script = format!(
            r#"#!/bin/sh
# Test double of the Azure CLI written by azlin-testkit (StubAz). Not the real az.
printf '%s\n' "$*" >> {calls}
subscription=""
resource=""
prev=""
for a in "$@"; do
  if [ "$prev" = "--subscription" ]; then subscription="$a"; fi
  if [ "$prev" = "--resource" ]; then resource="$a"; fi
  prev="$a"
done
unknown() {{
  if [ "$1" = "--version" ]; then
    echo "azure-cli                         2.77.0"
    exit 0
  fi
  echo "ERROR: '$1' is misspelled or not recognized by the system." >&2
  exit 2
}}
{body}"#,
            calls = quote(&calls.display().to_string()),
        );
        let program = bin.join("az");
        std::fs::write(&program, script)?;
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))?;
        Ok(StubAz { dir })
    }

    /// The folder holding `az`.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    /// The `az` program's path.
    pub fn program(&self) -> PathBuf {
        self.bin_dir().join("az")
    }

    /// A `PATH` value with the stub's folder first, then `rest` (e.g. the test's own `PATH`).
    pub fn path_first(&self, rest: Option<&std::ffi::OsStr>) -> OsString {
        let mut dirs = vec![self.bin_dir()];
        if let Some(rest) = rest {
            dirs.extend(std::env::split_paths(rest));
        }
        std::env::join_paths(dirs).unwrap_or_else(|_| self.bin_dir().into_os_string())
    }

    /// The arguments of every invocation so far, one string each.
    pub fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("calls"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The folder the stub lives in.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}
