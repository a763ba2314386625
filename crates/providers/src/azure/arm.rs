//! The Azure Resource Manager HTTP client: bearer token from [`Credentials`], retries of `429` and
//! `5xx` with bounded backoff (honouring `Retry-After`), long-running operations followed through
//! `Azure-AsyncOperation` (else `Location`, else the resource's `provisioningState`), and ARM error
//! bodies turned into [`ArmError`]s.
//!
//! Nothing here logs headers or bodies: bodies carry cloud-init user data (with the VM's SSH host
//! key) and headers carry the token. Poll URLs from Azure are only followed when they point at the
//! configured endpoint, so the token is never sent anywhere else.

use super::auth::Credentials;
use azlin_core::{ErrorKind, ProviderError};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// api-version of `Microsoft.Resources` (resource groups, resource lists).
pub(crate) const RESOURCES_API: &str = "2024-07-01";
/// api-version of `Microsoft.Network`.
pub(crate) const NETWORK_API: &str = "2025-05-01";
/// api-version of `Microsoft.Compute` virtual machines.
pub(crate) const COMPUTE_API: &str = "2025-04-01";
/// api-version of managed disks (`Microsoft.Compute/disks` has its own versions, DiskRP).
pub(crate) const DISKS_API: &str = "2025-01-02";

/// Attempts per request when ARM answers 429 or 5xx or the connection fails.
const MAX_ATTEMPTS: u32 = 6;
/// First backoff when ARM gives no `Retry-After`; doubles per attempt.
const BASE_BACKOFF: Duration = Duration::from_secs(1);
/// No single wait is longer than this, whatever `Retry-After` says.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Poll interval of a long-running operation without `Retry-After`.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// A long-running operation still running after this is given up on.
const LRO_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A failed ARM call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ArmError {
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// ARM's error code (`ResourceNotFound`, `SkuNotAvailable`, …) or a local one.
    pub code: String,
    /// ARM's message.
    pub message: String,
    /// Set when the failure is already a provider error (az missing or logged out).
    pub kind: Option<ErrorKind>,
}

impl ArmError {
    fn local(code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status: None,
            code: code.into(),
            message: message.into(),
            kind: None,
        }
    }

    fn credentials(e: ProviderError) -> ArmError {
        ArmError {
            status: None,
            code: "CredentialsUnavailable".into(),
            message: e.message,
            kind: Some(e.kind),
        }
    }

    /// Whether ARM said the thing does not exist.
    pub(crate) fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }

    /// The error as a [`ProviderError`] a user can act on, `doing` saying what azlin was doing.
    pub(crate) fn into_provider(self, doing: &str) -> ProviderError {
        if let Some(kind) = self.kind {
            return ProviderError::new(kind, self.message);
        }
        let code = self.code.as_str();
        let lower = self.message.to_ascii_lowercase();
        let (kind, hint) = match (self.status, code) {
            (Some(401), _)
            | (
                _,
                "AuthenticationFailed"
                | "InvalidAuthenticationToken"
                | "ExpiredAuthenticationToken"
                | "InvalidAuthenticationTokenTenant",
            ) => (
                ErrorKind::Auth,
                "Azure refused the credentials: run `az login` (and `az account set --subscription …` if needed)",
            ),
            (Some(403), _) | (_, "AuthorizationFailed" | "LinkedAuthorizationFailed") => (
                ErrorKind::Auth,
                "the signed-in account is not allowed to do this: ask for the Contributor role on the subscription or resource group",
            ),
            (_, "QuotaExceeded" | "PublicIPCountLimitReached") | (_, "OperationNotAllowed")
                if code != "OperationNotAllowed" || lower.contains("quota") =>
            {
                (
                    ErrorKind::Provision,
                    "quota exceeded: choose a smaller --size or another --region, or request a quota increase (Azure portal → Quotas)",
                )
            }
            (
                _,
                "SkuNotAvailable"
                | "AllocationFailed"
                | "ZonalAllocationFailed"
                | "OverconstrainedAllocationRequest",
            ) => (
                ErrorKind::Provision,
                "that VM size is not available in this region right now: choose another --size or --region",
            ),
            (_, CANCELED) => (
                ErrorKind::Transient,
                "another request on the same resource or a cancel (portal, az) stopped it: check the resource, then try again",
            ),
            (Some(409), _) | (_, "Conflict" | "ResourceExists" | "AnotherOperationInProgress") => (
                ErrorKind::Conflict,
                "a resource with that name exists or is busy: choose another --name, or wait and try again",
            ),
            (Some(404), _) => (ErrorKind::NotFound, "it does not exist (any more)"),
            (Some(429), _) | (Some(500..=599), _) | (None, "Unreachable" | "OperationTimedOut") => {
                (
                    ErrorKind::Transient,
                    "Azure is busy or unreachable: try again in a few minutes",
                )
            }
            _ => (ErrorKind::Provision, ""),
        };
        let status = self
            .status
            .map(|s| format!("HTTP {s}, "))
            .unwrap_or_default();
        let mut message = format!("{doing} failed ({status}{}): {}", self.code, self.message);
        if !hint.is_empty() {
            message.push_str(" — ");
            message.push_str(hint);
        }
        ProviderError::new(kind, message)
    }
}

/// An answer from ARM.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// The ARM client.
#[derive(Debug, Clone)]
pub(crate) struct Arm {
    http: reqwest::Client,
    base: url::Url,
    credentials: Arc<Credentials>,
}

/// Whether an ARM `provisioningState` is final.
fn terminal(state: &str) -> bool {
    state.eq_ignore_ascii_case("succeeded")
        || state.eq_ignore_ascii_case("failed")
        || is_canceled(state)
}

/// Whether an operation status or `provisioningState` says the operation was canceled.
fn is_canceled(state: &str) -> bool {
    state.eq_ignore_ascii_case("canceled") || state.eq_ignore_ascii_case("cancelled")
}

fn error_from_body(status: Option<u16>, body: &Value) -> ArmError {
    let e = body.get("error").unwrap_or(body);
    let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
    let mut message = text("message").unwrap_or_else(|| "no error message".into());
    // Deployment-style errors put the useful part in details.
    if let Some(details) = e.get("details").and_then(Value::as_array) {
        for d in details {
            if let Some(m) = d.get("message").and_then(Value::as_str) {
                message.push_str("; ");
                message.push_str(m);
            }
        }
    }
    ArmError {
        kind: None,
        status,
        code: text("code")
            .unwrap_or_else(|| status.map_or("Unknown".to_string(), |s| format!("Http{s}"))),
        message,
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

fn header_url(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

impl Arm {
    /// A client for `endpoint` (e.g. `https://management.azure.com`).
    pub(crate) fn new(endpoint: &str, credentials: Arc<Credentials>) -> Result<Arm, ProviderError> {
        let base = url::Url::parse(endpoint).map_err(|e| {
            ProviderError::new(
                ErrorKind::Usage,
                format!("invalid Azure endpoint '{endpoint}': {e}"),
            )
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .timeout(Duration::from_secs(120))
            .user_agent(concat!("azlin/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderError::new(
                    ErrorKind::Internal,
                    format!("cannot build HTTP client: {e}"),
                )
            })?;
        Ok(Arm {
            http,
            base,
            credentials,
        })
    }

    /// The credentials this client uses.
    pub(crate) fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    fn url(&self, path: &str, api_version: &str, extra: &[(&str, &str)]) -> url::Url {
        let mut url = self.base.clone();
        url.set_path(path);
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("api-version", api_version);
            for (k, v) in extra {
                q.append_pair(k, v);
            }
        }
        url
    }

    /// Parses a URL Azure handed back (poll or next-page link), refusing other hosts.
    fn follow_url(&self, link: &str) -> Result<url::Url, ArmError> {
        let url = url::Url::parse(link).map_err(|e| {
            ArmError::local("InvalidLink", format!("Azure returned an invalid URL: {e}"))
        })?;
        if url.origin() != self.base.origin() {
            return Err(ArmError::local(
                "ForeignLink",
                format!(
                    "Azure pointed at {} instead of {}; not sending credentials there",
                    url.origin().ascii_serialization(),
                    self.base.origin().ascii_serialization()
                ),
            ));
        }
        Ok(url)
    }

    /// One request with retries of 429/5xx/connection failures and one token refresh on 401.
    async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<Answer, ArmError> {
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self
                .credentials
                .token()
                .await
                .map_err(ArmError::credentials)?;
            let mut req = self
                .http
                .request(method.clone(), url.clone())
                .bearer_auth(token.expose())
                .header(reqwest::header::ACCEPT, "application/json");
            if let Some(b) = body {
                req = req.json(b);
            }
            tracing::debug!(%method, path = url.path(), attempt, "ARM request");
            let started = Instant::now();
            let result = req.send().await;
            let (status, headers, bytes) = match result {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    match resp.bytes().await {
                        Ok(b) => (status, headers, b),
                        Err(e) if attempt < MAX_ATTEMPTS => {
                            let wait = backoff(attempt);
                            tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "ARM answer cut off; retrying");
                            tokio::time::sleep(wait).await;
                            continue;
                        }
                        Err(e) => {
                            return Err(ArmError::local(
                                "Unreachable",
                                format!("reading the answer from {} failed: {e}", url.path()),
                            ));
                        }
                    }
                }
                Err(e) if attempt < MAX_ATTEMPTS => {
                    let wait = backoff(attempt);
                    tracing::debug!(error = %e, wait_ms = wait.as_millis() as u64, "ARM unreachable; retrying");
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(e) => {
                    return Err(ArmError::local(
                        "Unreachable",
                        format!(
                            "cannot reach Azure at {}: {e}",
                            self.base.origin().ascii_serialization()
                        ),
                    ));
                }
            };
            tracing::trace!(%method, path = url.path(), status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "ARM answer");
            let body: Value = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(
                        String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned(),
                    )
                })
            };
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable && attempt < MAX_ATTEMPTS {
                let wait = retry_after(&headers)
                    .unwrap_or_else(|| backoff(attempt))
                    .min(MAX_WAIT);
                tracing::debug!(
                    status = status.as_u16(),
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "ARM throttled or failed; retrying after the wait it asked for"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                // An expired or revoked token: ask az for a fresh one, once.
                tracing::debug!("ARM refused the token; refreshing it once");
                refreshed = true;
                self.credentials.invalidate().await;
                continue;
            }
            if !status.is_success() {
                let mut err = error_from_body(Some(status.as_u16()), &body);
                if let Value::String(text) = &body {
                    err.message = text.clone();
                }
                return Err(err);
            }
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
    }

    /// `GET` a resource; `None` when ARM says 404.
    pub(crate) async fn get(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<Value>, ArmError> {
        match self
            .send(Method::GET, self.url(path, api_version, &[]), None)
            .await
        {
            Ok(a) => Ok(Some(a.body)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a list, following `nextLink` pages.
    pub(crate) async fn list(
        &self,
        path: &str,
        api_version: &str,
        extra: &[(&str, &str)],
    ) -> Result<Vec<Value>, ArmError> {
        let mut items = Vec::new();
        let mut url = self.url(path, api_version, extra);
        loop {
            let answer = self.send(Method::GET, url, None).await?;
            if let Some(Value::Array(page)) = answer.body.get("value") {
                items.extend(page.iter().cloned());
            }
            match answer.body.get("nextLink").and_then(Value::as_str) {
                Some(next) if !next.is_empty() => url = self.follow_url(next)?,
                _ => return Ok(items),
            }
        }
    }

    /// `PUT` a resource and wait until it is provisioned; returns its final body.
    pub(crate) async fn put(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, ArmError> {
        self.write(Method::PUT, path, api_version, body).await
    }

    /// `PATCH` a resource (e.g. its tags) and wait until the update is done; returns its final
    /// body.
    pub(crate) async fn patch(
        &self,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, ArmError> {
        self.write(Method::PATCH, path, api_version, body).await
    }

    /// Sends a `PUT` or `PATCH`, follows its long-running operation, then reads the resource until
    /// its `provisioningState` is final.
    async fn write(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: &Value,
    ) -> Result<Value, ArmError> {
        let url = self.url(path, api_version, &[]);
        let answer = self.send(method, url.clone(), Some(body)).await?;
        let polled = self.follow(&answer).await?;
        let state = answer
            .body
            .pointer("/properties/provisioningState")
            .and_then(Value::as_str)
            .unwrap_or("Succeeded");
        if !polled && terminal(state) {
            return Ok(answer.body);
        }
        // After the operation (or without one, while provisioningState is not final): read the
        // resource until it is final.
        let deadline = Instant::now() + LRO_TIMEOUT;
        loop {
            let current = self.send(Method::GET, url.clone(), None).await?;
            let state = current
                .body
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .unwrap_or("Succeeded")
                .to_string();
            if state.eq_ignore_ascii_case("succeeded") {
                return Ok(current.body);
            }
            if terminal(&state) {
                let code = if is_canceled(&state) {
                    CANCELED.to_string()
                } else {
                    format!("Provisioning{state}")
                };
                return Err(ArmError {
                    kind: None,
                    status: Some(current.status.as_u16()),
                    code,
                    message: format!("{path} ended in provisioning state {state}"),
                });
            }
            if Instant::now() > deadline {
                return Err(timeout_error(path));
            }
            tokio::time::sleep(
                retry_after(&current.headers)
                    .unwrap_or(DEFAULT_POLL)
                    .min(MAX_WAIT),
            )
            .await;
        }
    }

    /// `POST` an action (start, deallocate) and wait for it.
    pub(crate) async fn action(&self, path: &str, api_version: &str) -> Result<(), ArmError> {
        let answer = self
            .send(Method::POST, self.url(path, api_version, &[]), None)
            .await?;
        self.follow(&answer).await.map(|_| ())
    }

    /// `DELETE` a resource and wait until it is gone. `Ok(false)` when there was nothing to delete.
    pub(crate) async fn delete(&self, path: &str, api_version: &str) -> Result<bool, ArmError> {
        let answer = match self
            .send(Method::DELETE, self.url(path, api_version, &[]), None)
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
        };
        if answer.status == StatusCode::NO_CONTENT {
            return Ok(false);
        }
        self.follow(&answer).await?;
        Ok(true)
    }

    /// Follows a long-running operation started by `answer`. Returns whether there was one.
    async fn follow(&self, answer: &Answer) -> Result<bool, ArmError> {
        let async_op = header_url(&answer.headers, "azure-asyncoperation");
        let location = header_url(&answer.headers, "location");
        let started = answer.status == StatusCode::CREATED || answer.status == StatusCode::ACCEPTED;
        let deadline = Instant::now() + LRO_TIMEOUT;
        let mut wait = retry_after(&answer.headers).unwrap_or(DEFAULT_POLL);
        if let Some(link) = async_op {
            let url = self.follow_url(&link)?;
            loop {
                tokio::time::sleep(wait.min(MAX_WAIT)).await;
                let poll = self.send(Method::GET, url.clone(), None).await?;
                let status = poll
                    .body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("InProgress");
                match status.to_ascii_lowercase().as_str() {
                    "succeeded" => return Ok(true),
                    "failed" => {
                        let mut err = error_from_body(None, &poll.body);
                        if poll.body.get("error").is_none() {
                            err.code = "OperationFailed".into();
                            err.message =
                                "the Azure operation ended Failed without saying why".into();
                        }
                        return Err(err);
                    }
                    s if is_canceled(s) => return Err(canceled_error(&poll.body)),
                    _ => {}
                }
                if Instant::now() > deadline {
                    return Err(timeout_error(url.path()));
                }
                wait = retry_after(&poll.headers).unwrap_or(DEFAULT_POLL);
            }
        }
        if let (Some(link), true) = (location, started) {
            let url = self.follow_url(&link)?;
            loop {
                tokio::time::sleep(wait.min(MAX_WAIT)).await;
                let poll = self.send(Method::GET, url.clone(), None).await?;
                if poll.status != StatusCode::ACCEPTED {
                    return Ok(true);
                }
                if Instant::now() > deadline {
                    return Err(timeout_error(url.path()));
                }
                wait = retry_after(&poll.headers).unwrap_or(DEFAULT_POLL);
            }
        }
        Ok(false)
    }
}

fn backoff(attempt: u32) -> Duration {
    (BASE_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1))).min(MAX_WAIT)
}

/// ARM's code for an operation that ended `Canceled`.
const CANCELED: &str = "OperationCanceled";

/// The error of an operation whose status ended `Canceled`: Azure's own error when it gave one,
/// else one that says what happened.
fn canceled_error(status_body: &Value) -> ArmError {
    let mut err = error_from_body(None, status_body);
    if status_body.get("error").is_none() {
        err.code = CANCELED.into();
        err.message = "Azure canceled the operation before it finished".into();
    }
    err
}

fn timeout_error(what: &str) -> ArmError {
    ArmError::local(
        "OperationTimedOut",
        format!(
            "{what} was still running after {} minutes",
            LRO_TIMEOUT.as_secs() / 60
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(status: u16, code: &str, message: &str) -> ArmError {
        ArmError {
            status: Some(status),
            code: code.into(),
            message: message.into(),
            kind: None,
        }
    }

    #[test]
    fn errors_become_actionable_kinds() {
        let quota = err(
            409,
            "OperationNotAllowed",
            "exceeding approved Total Regional Cores quota",
        )
        .into_provider("creating VM dev");
        assert_eq!(quota.kind, ErrorKind::Provision);
        assert!(quota.message.contains("quota"), "{}", quota.message);
        let sku = err(409, "SkuNotAvailable", "not available").into_provider("creating VM dev");
        assert_eq!(sku.kind, ErrorKind::Provision);
        assert!(sku.message.contains("--size"), "{}", sku.message);
        assert_eq!(
            err(401, "ExpiredAuthenticationToken", "x")
                .into_provider("x")
                .kind,
            ErrorKind::Auth
        );
        assert_eq!(
            err(403, "AuthorizationFailed", "x").into_provider("x").kind,
            ErrorKind::Auth
        );
        assert_eq!(
            err(409, "Conflict", "x").into_provider("x").kind,
            ErrorKind::Conflict
        );
        assert_eq!(
            err(503, "ServiceUnavailable", "x").into_provider("x").kind,
            ErrorKind::Transient
        );
        assert_eq!(
            err(400, "InvalidParameter", "x").into_provider("x").kind,
            ErrorKind::Provision
        );
        assert_eq!(
            err(409, "OperationNotAllowed", "disk attached")
                .into_provider("x")
                .kind,
            ErrorKind::Conflict
        );
    }

    #[test]
    fn error_bodies_are_read_with_details() {
        let body = serde_json::json!({"error": {"code": "DeploymentFailed", "message": "top", "details": [{"code": "X", "message": "inner"}]}});
        let e = error_from_body(Some(400), &body);
        assert_eq!(e.code, "DeploymentFailed");
        assert_eq!(e.message, "top; inner");
        assert_eq!(error_from_body(Some(502), &Value::Null).code, "Http502");
    }

    #[test]
    fn links_to_other_hosts_are_not_followed() {
        let az = super::super::auth::AzCli::new("az".into(), None);
        let credentials = Arc::new(Credentials::new(az, None));
        let arm = Arm::new("https://management.azure.com", credentials).unwrap();
        assert!(
            arm.follow_url(
                "https://management.azure.com/subscriptions/s/operations/1?api-version=x"
            )
            .is_ok()
        );
        let err = arm
            .follow_url("https://attacker.example/subscriptions/s")
            .unwrap_err();
        assert_eq!(err.code, "ForeignLink");
        assert!(
            arm.follow_url("http://management.azure.com/x").is_err(),
            "no downgrade to http"
        );
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(30), MAX_WAIT);
    }
}
