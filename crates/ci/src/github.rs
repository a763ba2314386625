//! [`GitHub`]: the REST client the CI service posts results back with: check runs
//! (<https://docs.github.com/en/rest/checks/runs>) and commit statuses
//! (<https://docs.github.com/en/rest/commits/statuses>).
//!
//! Requests are retried by GitHub's documented rules
//! (<https://docs.github.com/en/rest/using-the-rest-api/best-practices-for-using-the-rest-api>,
//! <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
//! - a 5xx answer or a failed connection: exponential backoff (1 s, 2 s, 4 s…, capped);
//! - a 403 or 429 rate limit: `retry-after` seconds when given; else, with
//!   `x-ratelimit-remaining: 0`, until `x-ratelimit-reset`; else (a secondary rate limit without
//!   headers) at least a minute, doubling each time it happens again;
//! - any other 4xx fails at once with GitHub's `message`.
//!
//! Attempts and the total time spent waiting are bounded by a [`RetryPolicy`]; past them a call
//! fails ([`GitHubError::RateLimited`], [`GitHubError::ServerError`],
//! [`GitHubError::Unreachable`]). The token is a [`Secret`]: it is sent in `Authorization`
//! only, and no `Debug` output, error or log line shows it.

use azlin_core::nats::Secret;
use jiff::Timestamp;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};
use std::time::Duration;

/// GitHub.com's REST API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// The REST API version requested (`X-GitHub-Api-Version`).
pub const API_VERSION: &str = "2022-11-28";

/// The most a check run's `output.summary` or `output.text` may hold. The documentation says
/// "65535 characters", but GitHub counts UTF-8 bytes ("summary exceeds a maximum bytesize of
/// 65535", github/docs#35252), so bytes are what is counted here.
pub const OUTPUT_MAX_BYTES: usize = 65535;

/// The most characters a commit status `description` may hold.
pub const DESCRIPTION_MAX_CHARS: usize = 140;

/// What ends a truncated `output.summary` or `output.text`.
const TRUNCATION_NOTE: &str = "\n\n… (truncated: GitHub keeps at most 65535 bytes here)";

const USER_AGENT: &str = concat!("azlin/", env!("CARGO_PKG_VERSION"));
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Added to a wait for `x-ratelimit-reset` when it is measured against this machine's clock
/// (no `Date` header), which may be behind GitHub's.
const CLOCK_MARGIN: Duration = Duration::from_secs(1);

/// A check run's status while it is not completed; completing it is
/// [`CheckRunUpdate::conclusion`]'s job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckStatus {
    /// Waiting for a VM.
    Queued,
    /// Running.
    InProgress,
}

impl CheckStatus {
    /// The name GitHub uses.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Queued => "queued",
            CheckStatus::InProgress => "in_progress",
        }
    }
}

/// How a completed check run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conclusion {
    /// It passed.
    Success,
    /// It failed.
    Failure,
    /// It was cancelled.
    Cancelled,
    /// It was skipped (its `if` was false).
    Skipped,
    /// Neither passed nor failed.
    Neutral,
    /// It ran out of time.
    TimedOut,
    /// Someone must act on the `details_url` page.
    ActionRequired,
}

impl Conclusion {
    /// The name GitHub uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::Skipped => "skipped",
            Conclusion::Neutral => "neutral",
            Conclusion::TimedOut => "timed_out",
            Conclusion::ActionRequired => "action_required",
        }
    }
}

/// A new check run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRunCreate {
    /// Its name, e.g. `build (ubuntu-latest)`.
    pub name: String,
    /// The commit it checks.
    pub head_sha: String,
    /// Queued or in progress.
    pub status: CheckStatus,
    /// When it started.
    pub started_at: Timestamp,
    /// Where its details are (azlin's page for the run).
    pub details_url: Option<String>,
    /// azlin's own id for it.
    pub external_id: Option<String>,
}

/// What a check run shows on GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRunOutput {
    /// Its title.
    pub title: String,
    /// Markdown; cut to [`OUTPUT_MAX_BYTES`] with a note when longer.
    pub summary: String,
    /// More Markdown; cut like `summary`.
    pub text: Option<String>,
}

/// Changes to a check run; `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRunUpdate {
    /// A new status; ignored when `conclusion` is set (that makes the run `completed`).
    pub status: Option<CheckStatus>,
    /// How it ended: GitHub marks the run `completed`.
    pub conclusion: Option<Conclusion>,
    /// When it ended.
    pub completed_at: Option<Timestamp>,
    /// What it shows.
    pub output: Option<CheckRunOutput>,
}

/// A commit status's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusState {
    /// Running.
    Pending,
    /// Passed.
    Success,
    /// Failed.
    Failure,
    /// Could not run.
    Error,
}

impl StatusState {
    /// The name GitHub uses.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }
}

/// A commit status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusCreate {
    /// Its state.
    pub state: StatusState,
    /// What it is about, e.g. `azlin/build`; a later status of the same context replaces it.
    pub context: String,
    /// One line; cut to [`DESCRIPTION_MAX_CHARS`] with `…` when longer.
    pub description: String,
    /// Where its details are.
    pub target_url: Option<String>,
}

/// How requests are retried and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// The first backoff after a 5xx or a failed connection; it doubles each attempt.
    pub base_delay: Duration,
    /// The longest such backoff.
    pub max_delay: Duration,
    /// The wait after a secondary rate limit that names no time (GitHub: "at least one
    /// minute"); it doubles each time it happens again.
    pub secondary_wait: Duration,
    /// The most time one request may spend waiting; a longer wait fails the request instead.
    pub max_total_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(32),
            secondary_wait: Duration::from_secs(60),
            max_total_wait: Duration::from_secs(15 * 60),
        }
    }
}

/// Why a GitHub call failed.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    /// The API URL is not one the token may be sent to.
    #[error("invalid GitHub API URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token cannot be sent (it is not shown).
    #[error("invalid GitHub token: {0}")]
    InvalidToken(&'static str),
    /// Not `OWNER/NAME`.
    #[error("invalid repository '{0}': expected OWNER/NAME")]
    InvalidRepo(String),
    /// Not a full commit SHA.
    #[error("invalid commit SHA '{0}': expected 40 (or 64) hexadecimal digits")]
    InvalidSha(String),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    /// GitHub refused the request (a 4xx other than a rate limit): retrying cannot help.
    #[error("GitHub refused {request}: {status} {message}")]
    Refused {
        /// Method and path, e.g. `POST /repos/o/r/check-runs`.
        request: String,
        /// The HTTP status.
        status: u16,
        /// GitHub's `message` (and its validation errors).
        message: String,
    },
    /// GitHub rate-limited the request for longer than the [`RetryPolicy`] allows.
    #[error(
        "GitHub rate-limited {request} ({attempts} attempts) and asks to wait {retry_in:?} more, past what the retry policy allows: {message}"
    )]
    RateLimited {
        /// Method and path.
        request: String,
        /// Attempts made.
        attempts: u32,
        /// How long GitHub still asked to wait.
        retry_in: Duration,
        /// GitHub's `message`.
        message: String,
    },
    /// GitHub kept answering 5xx.
    #[error("GitHub answered {status} to {request} ({attempts} attempts): {message}")]
    ServerError {
        /// Method and path.
        request: String,
        /// The last HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// GitHub's `message`, or the start of its answer.
        message: String,
    },
    /// No answer: the connection failed or timed out.
    #[error("cannot reach GitHub for {request} ({attempts} attempts): {reason}")]
    Unreachable {
        /// Method and path.
        request: String,
        /// Attempts made.
        attempts: u32,
        /// The last connection error.
        reason: String,
    },
    /// A success answer without what the API documents.
    #[error("GitHub's answer to {request} is not what its API documents: {reason}")]
    InvalidAnswer {
        /// Method and path.
        request: String,
        /// What is missing.
        reason: String,
    },
}

/// A client of GitHub's REST API for one token.
#[derive(Debug, Clone)]
pub struct GitHub {
    http: reqwest::Client,
    base: url::Url,
    token: Secret,
    retry: RetryPolicy,
}

impl GitHub {
    /// A client of the API at `api_url` ([`DEFAULT_API_URL`], or `https://HOST/api/v3` for
    /// GitHub Enterprise Server) sending `token`. `http://` is accepted on a loopback host
    /// only (`127.0.0.0/8`, `::1`, `localhost`): the token goes with every request.
    pub fn new(api_url: &str, token: Secret) -> Result<GitHub, GitHubError> {
        let base = validate_api_url(api_url)?;
        if token.expose().trim().is_empty() {
            return Err(GitHubError::InvalidToken("it is empty"));
        }
        if HeaderValue::from_str(token.expose()).is_err() {
            return Err(GitHubError::InvalidToken(
                "it is not a valid HTTP header value",
            ));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            HeaderName::from_static("x-github-api-version"),
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| GitHubError::Client(e.to_string()))?;
        Ok(GitHub {
            http,
            base,
            token,
            retry: RetryPolicy::default(),
        })
    }

    /// The same client retrying by `retry`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> GitHub {
        self.retry = retry;
        self
    }

    /// Creates a check run on `repo` (`OWNER/NAME`); returns its id.
    pub async fn create_check_run(
        &self,
        repo: &str,
        run: &CheckRunCreate,
    ) -> Result<u64, GitHubError> {
        let CheckRunCreate {
            name,
            head_sha,
            status,
            started_at,
            details_url,
            external_id,
        } = run;
        let (owner, repo_name) = split_repo(repo)?;
        check_sha(head_sha)?;
        let mut body = Map::new();
        body.insert("name".into(), name.as_str().into());
        body.insert("head_sha".into(), head_sha.as_str().into());
        body.insert("status".into(), status.as_str().into());
        body.insert("started_at".into(), iso8601(*started_at).into());
        if let Some(url) = details_url {
            body.insert("details_url".into(), url.as_str().into());
        }
        if let Some(id) = external_id {
            body.insert("external_id".into(), id.as_str().into());
        }
        let url = self.endpoint(&["repos", owner, repo_name, "check-runs"])?;
        // A create retried after a lost answer can make a second run of the same name; GitHub
        // shows the latest run of each name, so the duplicate stays out of sight.
        let (request, answer) = self
            .send(Method::POST, url, Some(&Value::Object(body)))
            .await?;
        answer
            .get("id")
            .and_then(Value::as_u64)
            .ok_or(GitHubError::InvalidAnswer {
                request,
                reason: "the check run has no numeric `id`".into(),
            })
    }

    /// Updates check run `id` of `repo`.
    pub async fn update_check_run(
        &self,
        repo: &str,
        id: u64,
        update: &CheckRunUpdate,
    ) -> Result<(), GitHubError> {
        let CheckRunUpdate {
            status,
            conclusion,
            completed_at,
            output,
        } = update;
        let (owner, repo_name) = split_repo(repo)?;
        let mut body = Map::new();
        match (conclusion, status) {
            (Some(conclusion), _) => {
                body.insert("conclusion".into(), conclusion.as_str().into());
            }
            (None, Some(status)) => {
                body.insert("status".into(), status.as_str().into());
            }
            (None, None) => {}
        }
        if let Some(at) = completed_at {
            body.insert("completed_at".into(), iso8601(*at).into());
        }
        if let Some(output) = output {
            body.insert("output".into(), output_json(output));
        }
        let id = id.to_string();
        let url = self.endpoint(&["repos", owner, repo_name, "check-runs", &id])?;
        self.send(Method::PATCH, url, Some(&Value::Object(body)))
            .await
            .map(|_| ())
    }

    /// Sets a commit status on commit `sha` of `repo`.
    pub async fn create_status(
        &self,
        repo: &str,
        sha: &str,
        status: &StatusCreate,
    ) -> Result<(), GitHubError> {
        let StatusCreate {
            state,
            context,
            description,
            target_url,
        } = status;
        let (owner, repo_name) = split_repo(repo)?;
        check_sha(sha)?;
        let mut body = Map::new();
        body.insert("state".into(), state.as_str().into());
        body.insert("context".into(), context.as_str().into());
        body.insert(
            "description".into(),
            truncate_description(description).into(),
        );
        if let Some(url) = target_url {
            body.insert("target_url".into(), url.as_str().into());
        }
        let url = self.endpoint(&["repos", owner, repo_name, "statuses", sha])?;
        self.send(Method::POST, url, Some(&Value::Object(body)))
            .await
            .map(|_| ())
    }

    /// The API URL with `segments` appended to its path (each one percent-encoded).
    fn endpoint(&self, segments: &[&str]) -> Result<url::Url, GitHubError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| GitHubError::InvalidUrl {
                url: self.base.to_string(),
                reason: "it cannot take a path".into(),
            })?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// One request, retried by GitHub's rules; returns `METHOD PATH` and the JSON answer.
    async fn send(
        &self,
        method: Method,
        url: url::Url,
        body: Option<&Value>,
    ) -> Result<(String, Value), GitHubError> {
        let RetryPolicy {
            max_attempts,
            base_delay,
            max_delay,
            secondary_wait,
            max_total_wait,
        } = self.retry.clone();
        let request = format!("{method} {}", url.path());
        let mut waited = Duration::ZERO;
        let mut secondary_hits = 0;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let backoff = base_delay
                .saturating_mul(2u32.saturating_pow(attempt - 1))
                .min(max_delay);
            let (wait, give_up) = match self.attempt(&method, &url, body).await {
                Ok(answer) if answer.status.is_success() => return Ok((request, answer.body)),
                Ok(answer) => {
                    let message = error_message(answer.status, &answer.body);
                    let status = answer.status.as_u16();
                    match rate_limit(answer.status, &answer.headers, &message, Timestamp::now()) {
                        Some(limit) => {
                            let wait = match limit {
                                Limit::Wait(wait) => wait,
                                Limit::Secondary => {
                                    secondary_hits += 1;
                                    secondary_wait
                                        .saturating_mul(2u32.saturating_pow(secondary_hits - 1))
                                }
                            };
                            let error = GitHubError::RateLimited {
                                request: request.clone(),
                                attempts: attempt,
                                retry_in: wait,
                                message,
                            };
                            (wait, error)
                        }
                        None if answer.status.is_server_error() => {
                            let wait = retry_after(&answer.headers).unwrap_or(backoff);
                            let error = GitHubError::ServerError {
                                request: request.clone(),
                                status,
                                attempts: attempt,
                                message,
                            };
                            (wait, error)
                        }
                        None => {
                            return Err(GitHubError::Refused {
                                request,
                                status,
                                message,
                            });
                        }
                    }
                }
                Err(reason) => {
                    let error = GitHubError::Unreachable {
                        request: request.clone(),
                        attempts: attempt,
                        reason,
                    };
                    (backoff, error)
                }
            };
            if attempt >= max_attempts || waited.saturating_add(wait) > max_total_wait {
                return Err(give_up);
            }
            tracing::warn!(
                request,
                attempt,
                wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                error = %give_up,
                "GitHub call failed; retrying"
            );
            tokio::time::sleep(wait).await;
            waited = waited.saturating_add(wait);
        }
    }

    /// One attempt: GitHub's answer, or why none came.
    async fn attempt(
        &self,
        method: &Method,
        url: &url::Url,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        // `bearer_auth` marks the header sensitive, so reqwest's own `Debug` hides it too.
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(self.token.expose());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| error_chain(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| error_chain(&e))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                let text = String::from_utf8_lossy(&bytes);
                Value::String(text.chars().take(200).collect())
            })
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// An HTTP answer read in full.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

/// A rate limit and how long it asks to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Limit {
    /// This long, from `retry-after` or `x-ratelimit-reset`.
    Wait(Duration),
    /// A secondary rate limit naming no time: [`RetryPolicy::secondary_wait`], doubling.
    Secondary,
}

/// Whether a failed answer is a rate limit, by GitHub's rules, and how long it asks to wait.
/// A 403 without rate-limit headers or message is a refusal (a missing permission), not a limit.
fn rate_limit(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: Timestamp,
) -> Option<Limit> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    if let Some(wait) = retry_after(headers) {
        return Some(Limit::Wait(wait));
    }
    if header(headers, "x-ratelimit-remaining") == Some("0") {
        if let Some(reset) =
            header(headers, "x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok())
        {
            // Measured on GitHub's clock when its `Date` says what time it is there.
            let (server_now, margin) = match header(headers, "date").and_then(|d| {
                jiff::fmt::rfc2822::DateTimeParser::new()
                    .parse_timestamp(d)
                    .ok()
            }) {
                Some(date) => (date, Duration::ZERO),
                None => (now, CLOCK_MARGIN),
            };
            let millis = reset
                .saturating_mul(1000)
                .saturating_sub(server_now.as_millisecond());
            let wait = Duration::from_millis(u64::try_from(millis).unwrap_or(0));
            return Some(Limit::Wait(wait + margin));
        }
        return Some(Limit::Secondary);
    }
    if status == StatusCode::TOO_MANY_REQUESTS
        || message.to_ascii_lowercase().contains("rate limit")
    {
        return Some(Limit::Secondary);
    }
    None
}

/// `retry-after`, in seconds (the only form GitHub sends).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, "retry-after")?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

/// GitHub's `message`, with the messages (or codes) of its validation `errors`; the start of
/// the answer when it is not JSON (an HTML 502 page).
fn error_message(status: StatusCode, body: &Value) -> String {
    let mut message = match body {
        Value::String(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => body
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            }),
    };
    for e in body
        .get("errors")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let detail = e
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                let field = e.get("field").and_then(Value::as_str)?;
                let code = e.get("code").and_then(Value::as_str).unwrap_or("invalid");
                Some(format!("{field} {code}"))
            });
        if let Some(detail) = detail {
            message.push_str("; ");
            message.push_str(&detail);
        }
    }
    message
}

/// A reqwest error with its causes (the bare error often says only "error sending request").
fn error_chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// An API URL: `https://`, or `http://` on a loopback host, where only a local test double can
/// listen. Every request carries the token, so plain http anywhere else would hand it out.
fn validate_api_url(api_url: &str) -> Result<url::Url, GitHubError> {
    let invalid = |reason: String| GitHubError::InvalidUrl {
        url: api_url.escape_default().to_string(),
        reason,
    };
    let url = url::Url::parse(api_url)
        .ok()
        .filter(|u| u.host().is_some() && matches!(u.scheme(), "https" | "http"))
        .ok_or_else(|| invalid(format!("expected a URL such as {DEFAULT_API_URL}")))?;
    if azlin_core::network::has_credentials(&url) {
        return Err(invalid(
            "credentials do not belong in the URL; they go in the token".into(),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or fragment".into()));
    }
    if url.scheme() == "http" && !azlin_core::network::is_loopback_url(&url) {
        return Err(invalid(format!(
            "plain http on host '{}' would send the token unencrypted; use https:// (http:// is accepted only on a loopback host — 127.0.0.1, ::1, localhost — for a local test double)",
            url.host_str().unwrap_or_default().escape_default()
        )));
    }
    Ok(url)
}

/// `OWNER/NAME` split in two, each of GitHub's name characters.
pub(crate) fn split_repo(repo: &str) -> Result<(&str, &str), GitHubError> {
    let valid = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if valid(owner) && valid(name) => Ok((owner, name)),
        _ => Err(GitHubError::InvalidRepo(repo.escape_default().to_string())),
    }
}

/// A full commit SHA: 40 hex digits (SHA-1) or 64 (SHA-256).
pub(crate) fn check_sha(sha: &str) -> Result<(), GitHubError> {
    if matches!(sha.len(), 40 | 64) && sha.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(GitHubError::InvalidSha(sha.escape_default().to_string()))
    }
}

/// `2024-05-04T01:14:52Z`, the form GitHub documents.
fn iso8601(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn output_json(output: &CheckRunOutput) -> Value {
    let CheckRunOutput {
        title,
        summary,
        text,
    } = output;
    let mut out = Map::new();
    out.insert("title".into(), title.as_str().into());
    out.insert("summary".into(), truncate_output(summary).into());
    if let Some(text) = text {
        out.insert("text".into(), truncate_output(text).into());
    }
    Value::Object(out)
}

/// `text` cut on a character boundary to at most [`OUTPUT_MAX_BYTES`], note included.
pub fn truncate_output(text: &str) -> String {
    if text.len() <= OUTPUT_MAX_BYTES {
        return text.to_string();
    }
    let mut end = OUTPUT_MAX_BYTES - TRUNCATION_NOTE.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATION_NOTE}", &text[..end])
}

/// `text` cut to at most [`DESCRIPTION_MAX_CHARS`] characters, ending in `…` when cut.
pub fn truncate_description(text: &str) -> String {
    if text.chars().count() <= DESCRIPTION_MAX_CHARS {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(DESCRIPTION_MAX_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("a header value"));
        }
        map
    }

    #[test]
    fn plain_http_is_accepted_on_loopback_only() {
        for ok in [
            DEFAULT_API_URL,
            "https://github.example.com/api/v3",
            "http://127.0.0.1:8080",
            "http://127.8.9.10",
            "http://[::1]:8080/",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(validate_api_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://api.github.com",
            "http://10.0.0.5:8080",
            "http://localhost.attacker.example",
            "http://[2001:db8::1]/",
        ] {
            let err = validate_api_url(refused).expect_err(refused).to_string();
            assert!(
                err.contains("https://") && err.contains("loopback"),
                "{err}"
            );
        }
        for invalid in [
            "api.github.com",
            "ftp://127.0.0.1",
            "https://user:pw@api.github.com",
            "https://api.github.com/?x=1",
        ] {
            assert!(
                matches!(
                    validate_api_url(invalid),
                    Err(GitHubError::InvalidUrl { .. })
                ),
                "{invalid}"
            );
        }
    }

    #[test]
    fn paths_keep_the_base_path_and_encode_segments() {
        let gh =
            GitHub::new("https://ghe.example.com/api/v3/", Secret::new("t")).expect("a client");
        let url = gh
            .endpoint(&["repos", "o", "r", "check-runs", "7"])
            .expect("a URL");
        assert_eq!(
            url.as_str(),
            "https://ghe.example.com/api/v3/repos/o/r/check-runs/7"
        );
        let gh = GitHub::new(DEFAULT_API_URL, Secret::new("t")).expect("a client");
        let url = gh
            .endpoint(&["repos", "o", "r", "statuses", "a/b"])
            .expect("a URL");
        assert_eq!(
            url.as_str(),
            "https://api.github.com/repos/o/r/statuses/a%2Fb"
        );
    }

    #[test]
    fn the_token_never_shows() {
        let token = "ghs_s3cr3tT0kenValue";
        let gh = GitHub::new(DEFAULT_API_URL, Secret::new(token)).expect("a client");
        let debug = format!("{gh:?}");
        assert!(!debug.contains(token), "{debug}");
        assert!(debug.contains("***"), "{debug}");
        let err = GitHub::new(DEFAULT_API_URL, Secret::new("ghs_bad\ntoken")).expect_err("refused");
        assert!(!format!("{err} {err:?}").contains("ghs_bad"), "{err:?}");
        assert!(matches!(
            GitHub::new(DEFAULT_API_URL, Secret::new(" ")),
            Err(GitHubError::InvalidToken(_))
        ));
    }

    #[test]
    fn output_is_cut_on_a_char_boundary_with_a_note() {
        assert_eq!(truncate_output("short"), "short");
        let exact = "a".repeat(OUTPUT_MAX_BYTES);
        assert_eq!(truncate_output(&exact), exact);
        // 'é' is two bytes and '🦀' four: the cut must not split one.
        for filler in ["a", "é", "🦀"] {
            let long = filler.repeat(OUTPUT_MAX_BYTES + 1);
            let cut = truncate_output(&long);
            assert!(cut.len() <= OUTPUT_MAX_BYTES, "{filler}: {}", cut.len());
            assert!(cut.len() > OUTPUT_MAX_BYTES - TRUNCATION_NOTE.len() - 4);
            assert!(cut.ends_with(TRUNCATION_NOTE));
            assert!(cut.starts_with(filler));
        }
    }

    #[test]
    fn descriptions_are_cut_to_140_characters() {
        assert_eq!(truncate_description("Build passed"), "Build passed");
        let exact = "é".repeat(DESCRIPTION_MAX_CHARS);
        assert_eq!(truncate_description(&exact), exact);
        let cut = truncate_description(&"🦀".repeat(200));
        assert_eq!(cut.chars().count(), DESCRIPTION_MAX_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn rate_limits_follow_github_rules() {
        let now = Timestamp::from_second(1_700_000_000).expect("a time");
        let limit = |status: u16, pairs: &[(&'static str, &str)], message: &str| {
            let status = StatusCode::from_u16(status).expect("a status");
            rate_limit(status, &headers(pairs), message, now)
        };
        let secs = |s| Some(Limit::Wait(Duration::from_secs(s)));
        assert_eq!(limit(403, &[("retry-after", "7")], "x"), secs(7));
        assert_eq!(limit(429, &[("retry-after", "2")], "x"), secs(2));
        // Reset on GitHub's clock (its `Date`), on ours plus a margin without it.
        let primary = [
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1700000030"),
            ("date", "Tue, 14 Nov 2023 22:13:40 GMT"),
        ];
        assert_eq!(limit(403, &primary, "API rate limit exceeded"), secs(10));
        assert_eq!(
            limit(403, &primary[..2], "API rate limit exceeded"),
            secs(31)
        );
        let past = [("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1")];
        assert_eq!(limit(429, &past, "x"), secs(1));
        let secondary = "You have exceeded a secondary rate limit";
        assert_eq!(
            limit(403, &[("x-ratelimit-remaining", "4000")], secondary),
            Some(Limit::Secondary)
        );
        assert_eq!(limit(429, &[], "whatever"), Some(Limit::Secondary));
        // A 403 for a missing permission, and other statuses, are not limits.
        assert_eq!(
            limit(
                403,
                &[("x-ratelimit-remaining", "4999")],
                "Resource not accessible by integration"
            ),
            None
        );
        assert_eq!(limit(502, &[("retry-after", "3")], "x"), None);
        assert_eq!(limit(422, &[], "rate limit"), None);
    }

    #[test]
    fn error_messages_carry_github_details() {
        let body = serde_json::json!({
            "message": "Validation Failed",
            "errors": [{"resource": "Status", "code": "custom", "field": "description",
                        "message": "description is too long (maximum is 140 characters)"},
                       {"resource": "Status", "field": "state", "code": "invalid"}],
        });
        assert_eq!(
            error_message(StatusCode::UNPROCESSABLE_ENTITY, &body),
            "Validation Failed; description is too long (maximum is 140 characters); state invalid"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, &Value::Null),
            "Bad Gateway"
        );
        let html = Value::String("<html>Unicorn!</html>".into());
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, &html),
            "<html>Unicorn!</html>"
        );
    }

    #[test]
    fn repos_and_shas_are_checked() {
        assert_eq!(
            split_repo("octo-org/hello.world_1").ok(),
            Some(("octo-org", "hello.world_1"))
        );
        for bad in ["octo", "/r", "o/", "o/r/x", "o/..", "o/r?x", "o /r"] {
            assert!(
                matches!(split_repo(bad), Err(GitHubError::InvalidRepo(_))),
                "{bad}"
            );
        }
        assert!(check_sha(&"a1".repeat(20)).is_ok());
        assert!(check_sha(&"F".repeat(64)).is_ok());
        for bad in ["main", "abc123", &"g".repeat(40)] {
            assert!(
                matches!(check_sha(bad), Err(GitHubError::InvalidSha(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn timestamps_are_whole_seconds_in_utc() {
        let at: Timestamp = "2024-05-04T01:14:52.123Z".parse().expect("a time");
        assert_eq!(iso8601(at), "2024-05-04T01:14:52Z");
    }
}
