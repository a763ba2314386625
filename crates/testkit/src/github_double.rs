//! [`GitHubDouble`]: a test double of GitHub's REST API for check runs and commit statuses,
//! served over HTTP on `127.0.0.1`.
//!
//! azlin's CI service posts results to GitHub, which tests cannot reach, so its client is tested
//! against this double. It speaks the documented contract of the endpoints azlin uses
//! (<https://docs.github.com/en/rest/checks/runs>,
//! <https://docs.github.com/en/rest/commits/statuses>): their paths, status codes and JSON
//! shapes, GitHub's validation answers (`422 Invalid request.`, `422 Validation Failed`),
//! `401 Bad credentials`, and the rate-limit headers of every answer (`x-ratelimit-*`,
//! `x-github-request-id`). It keeps check runs and statuses in memory with a log of every
//! request, and can answer the next requests with a fault ([`Fault`]): a 5xx, a secondary rate
//! limit, or an exhausted primary rate limit.
//!
//! It is a double, not an emulator: a `{ref}` is matched against head SHAs only (no branches or
//! tags), any well-formed SHA is a commit, and the primary limit is only ever exhausted by a
//! [`Fault`].

use crate::http_thread::HttpThread;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

/// The primary rate limit the double reports (that of a GitHub App installation).
const RATE_LIMIT: u64 = 5000;
/// The most bytes GitHub accepts in a check run's `output.summary` or `output.text`.
const OUTPUT_MAX_BYTES: usize = 65535;
/// The most characters GitHub accepts in a commit status `description`.
const DESCRIPTION_MAX_CHARS: usize = 140;
/// Ids exceed `u32`, as GitHub's have for years.
const FIRST_CHECK_RUN_ID: u64 = 31_000_000_001;
const FIRST_CHECK_SUITE_ID: u64 = 29_000_000_001;
const FIRST_STATUS_ID: u64 = 32_000_000_001;

const DOCS: &str = "https://docs.github.com/rest";
const DOC_CREATE_RUN: &str = "https://docs.github.com/rest/checks/runs#create-a-check-run";
const DOC_UPDATE_RUN: &str = "https://docs.github.com/rest/checks/runs#update-a-check-run";
const DOC_GET_RUN: &str = "https://docs.github.com/rest/checks/runs#get-a-check-run";
const DOC_CREATE_STATUS: &str =
    "https://docs.github.com/rest/commits/statuses#create-a-commit-status";
const SECONDARY_MESSAGE: &str = "You have exceeded a secondary rate limit and have been temporarily blocked from content creation. Please retry your request again later. If you reach out to GitHub Support for help, please include the request ID";
const PRIMARY_MESSAGE: &str = "API rate limit exceeded for installation ID 1. If you reach out to GitHub Support for help, please include the request ID";
const USER_AGENT_MESSAGE: &str = "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). Check https://developer.github.com for other possible causes.";

/// A failure the double answers the next requests with, whatever they ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// This 5xx status: `500` with GitHub's JSON `{"message":"Server Error"}`, others with an
    /// HTML page as GitHub's front end sends.
    ServerError(u16),
    /// `403` with GitHub's secondary-rate-limit message, and `retry-after` when given.
    SecondaryRateLimit {
        /// The `retry-after` header, in seconds.
        retry_after: Option<u64>,
    },
    /// `403` "API rate limit exceeded" with `x-ratelimit-remaining: 0` and an
    /// `x-ratelimit-reset` this many seconds from now.
    PrimaryRateLimit {
        /// Seconds until the limit resets.
        reset_in_secs: u64,
    },
}

/// A request the double received and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCall {
    /// `GET`, `POST`, `PATCH`…
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The request headers, names in lower case, `authorization` left out.
    pub headers: BTreeMap<String, String>,
    /// The JSON body; `Null` when empty, a string when it is not JSON.
    pub body: Value,
    /// The status answered.
    pub status: u16,
}

/// What a check run shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckRunOutput {
    /// Its title.
    pub title: Option<String>,
    /// Its summary.
    pub summary: Option<String>,
    /// Its text.
    pub text: Option<String>,
}

/// A check run the double holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRun {
    /// Its id.
    pub id: u64,
    /// `OWNER/NAME` as given when it was made.
    pub repo: String,
    /// Its name.
    pub name: String,
    /// The commit it checks.
    pub head_sha: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// How it ended, once `completed`.
    pub conclusion: Option<String>,
    /// When it started (`2024-05-04T01:14:52Z`).
    pub started_at: String,
    /// When it ended.
    pub completed_at: Option<String>,
    /// Its details link.
    pub details_url: Option<String>,
    /// The caller's id for it.
    pub external_id: Option<String>,
    /// What it shows.
    pub output: CheckRunOutput,
    /// How many accepted requests set its conclusion (its creation included).
    pub conclusions_posted: u32,
    check_suite: u64,
}

/// A commit status the double holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitStatus {
    /// Its id.
    pub id: u64,
    /// `OWNER/NAME` as given.
    pub repo: String,
    /// The commit.
    pub sha: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    /// Its context (`default` when none was given).
    pub context: String,
    /// Its description.
    pub description: Option<String>,
    /// Its details link.
    pub target_url: Option<String>,
    /// When it was posted.
    pub created_at: String,
}

/// A test double of GitHub's REST API on `127.0.0.1`, stopped when dropped.
pub struct GitHubDouble {
    url: String,
    token: String,
    state: Arc<Mutex<Model>>,
    _server: HttpThread,
}

impl std::fmt::Debug for GitHubDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubDouble")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl GitHubDouble {
    /// Starts the double on a free port of `127.0.0.1`, in a thread of its own, accepting a
    /// fresh random token (see [`Self::token`]).
    pub fn start() -> GitHubDouble {
        let token = format!("ghs_double{}", uuid::Uuid::new_v4().simple());
        let state = Arc::new(Mutex::new(Model::new(String::new(), token.clone())));
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(state.clone());
        let server = HttpThread::start("github-double", app);
        let url = server.url().to_string();
        lock(&state).url = url.clone();
        GitHubDouble {
            url,
            token,
            state,
            _server: server,
        }
    }

    /// The double accepting `token` instead (and no longer the previous one).
    pub fn with_token(mut self, token: &str) -> GitHubDouble {
        lock(&self.state).token = token.to_string();
        self.token = token.to_string();
        self
    }

    /// The API URL to use instead of `https://api.github.com` (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The only token accepted, as `Authorization: Bearer TOKEN` (or `token TOKEN`).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Answers the next `n` requests with `fault` (after the faults already queued).
    pub fn fail_next(&self, n: usize, fault: Fault) {
        lock(&self.state)
            .faults
            .extend(std::iter::repeat_n(fault, n));
    }

    /// Every request received so far, in order, faulted and refused ones included.
    pub fn calls(&self) -> Vec<RecordedCall> {
        lock(&self.state).calls.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_calls(&self) {
        lock(&self.state).calls.clear();
    }

    /// Every check run, by id.
    pub fn check_runs(&self) -> Vec<CheckRun> {
        lock(&self.state).check_runs.values().cloned().collect()
    }

    /// Check run `id`, if it exists.
    pub fn check_run(&self, id: u64) -> Option<CheckRun> {
        lock(&self.state).check_runs.get(&id).cloned()
    }

    /// Every commit status, in the order posted.
    pub fn statuses(&self) -> Vec<CommitStatus> {
        lock(&self.state).statuses.clone()
    }
}

fn lock(state: &Mutex<Model>) -> MutexGuard<'_, Model> {
    // A panic while holding the lock poisons it; the data is still usable for assertions.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

async fn serve(
    State(state): State<Arc<Mutex<Model>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = Query::<BTreeMap<String, String>>::try_from_uri(&uri)
        .map(|Query(q)| q)
        .unwrap_or_default();
    let reply = lock(&state).handle(method.as_str(), uri.path(), &query, &headers, &body);
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (content_type, text) = match reply.body {
        Body::Json(value) => ("application/json; charset=utf-8", value.to_string()),
        Body::Html(text) => ("text/html; charset=utf-8", text),
        Body::Text(text) => ("text/plain; charset=utf-8", text),
    };
    let mut out = (
        status,
        [(axum::http::header::CONTENT_TYPE, content_type)],
        text,
    )
        .into_response();
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            out.headers_mut().insert(name, value);
        }
    }
    out
}

/// An answer's body.
enum Body {
    Json(Value),
    Html(String),
    Text(String),
}

/// An answer before it is sent.
struct Reply {
    status: u16,
    body: Body,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body: Body::Json(body),
            headers: Vec::new(),
        }
    }

    /// GitHub's error shape: `message`, `documentation_url` and `status` as a string.
    fn error(status: u16, message: &str, documentation_url: &str) -> Reply {
        Reply::json(
            status,
            json!({
                "message": message,
                "documentation_url": documentation_url,
                "status": status.to_string(),
            }),
        )
    }

    fn not_found(documentation_url: &str) -> Reply {
        Reply::error(404, "Not Found", documentation_url)
    }

    /// `422 Invalid request.` with a reason, as GitHub answers a body off its schema.
    fn invalid(reason: &str, documentation_url: &str) -> Reply {
        Reply::error(
            422,
            &format!("Invalid request.\n\n{reason}"),
            documentation_url,
        )
    }

    /// `422 Validation Failed` for one field, as GitHub answers a value its model refuses.
    fn validation_failed(resource: &str, field: &str, message: &str, doc: &str) -> Reply {
        Reply::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{"resource": resource, "code": "custom", "field": field, "message": message}],
                "documentation_url": doc,
                "status": "422",
            }),
        )
    }
}

/// The double's state.
struct Model {
    url: String,
    token: String,
    check_runs: BTreeMap<u64, CheckRun>,
    statuses: Vec<CommitStatus>,
    suites: BTreeMap<(String, String), u64>,
    next_run: u64,
    next_suite: u64,
    next_status: u64,
    faults: VecDeque<Fault>,
    calls: Vec<RecordedCall>,
    /// Requests counted against the primary limit in the current hour.
    used: u64,
    /// When the current hour ends (epoch seconds).
    reset: i64,
}

impl Model {
    fn new(url: String, token: String) -> Model {
        Model {
            url,
            token,
            check_runs: BTreeMap::new(),
            statuses: Vec::new(),
            suites: BTreeMap::new(),
            next_run: FIRST_CHECK_RUN_ID,
            next_suite: FIRST_CHECK_SUITE_ID,
            next_status: FIRST_STATUS_ID,
            faults: VecDeque::new(),
            calls: Vec::new(),
            used: 0,
            reset: jiff::Timestamp::now().as_second() + 3600,
        }
    }

    /// Answers one request and records it.
    fn handle(
        &mut self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        headers: &HeaderMap,
        raw: &[u8],
    ) -> Reply {
        let body = if raw.is_empty() {
            Ok(Value::Null)
        } else {
            serde_json::from_slice::<Value>(raw)
                .map_err(|_| Value::String(String::from_utf8_lossy(raw).into_owned()))
        };
        let request_id = request_id();
        let now = jiff::Timestamp::now().as_second();
        if now >= self.reset {
            self.used = 0;
            self.reset = now + 3600;
        }
        let mut limit_headers = None;
        let mut reply = match self.faults.pop_front() {
            Some(fault) => {
                let (reply, headers) = self.fault(fault, &request_id, now);
                limit_headers = headers;
                reply
            }
            None => match header(headers, "user-agent") {
                None | Some("") => Reply {
                    status: 403,
                    body: Body::Text(USER_AGENT_MESSAGE.into()),
                    headers: Vec::new(),
                },
                Some(_) => match self.authenticate(headers) {
                    Some(refusal) => refusal,
                    None => {
                        self.used += 1;
                        match &body {
                            Ok(parsed) => self.route(method, path, query, parsed),
                            Err(_) => Reply::error(400, "Problems parsing JSON", DOCS),
                        }
                    }
                },
            },
        };
        let (remaining, reset) =
            limit_headers.unwrap_or((RATE_LIMIT.saturating_sub(self.used), self.reset));
        reply.headers.extend([
            ("x-ratelimit-limit", RATE_LIMIT.to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", reset.to_string()),
            ("x-ratelimit-used", (RATE_LIMIT - remaining).to_string()),
            ("x-ratelimit-resource", "core".to_string()),
            ("x-github-request-id", request_id),
            ("x-github-media-type", "github.v3; format=json".to_string()),
            ("x-github-api-version-selected", "2022-11-28".to_string()),
        ]);
        self.calls.push(RecordedCall {
            method: method.to_string(),
            path: path.to_string(),
            headers: headers
                .iter()
                .filter(|(name, _)| *name != axum::http::header::AUTHORIZATION)
                .map(|(name, value)| {
                    let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                    (name.as_str().to_string(), value)
                })
                .collect(),
            body: body.unwrap_or_else(|raw| raw),
            status: reply.status,
        });
        reply
    }

    /// The answer to a fault, and the `(remaining, reset)` it reports when it is not the usual.
    fn fault(&self, fault: Fault, request_id: &str, now: i64) -> (Reply, Option<(u64, i64)>) {
        match fault {
            Fault::ServerError(500) => (Reply::json(500, json!({"message": "Server Error"})), None),
            Fault::ServerError(status) => {
                let page = format!(
                    "<html><head><title>{status}</title></head><body><h1>{status}</h1><p>Unicorn! GitHub is having trouble.</p></body></html>"
                );
                let reply = Reply {
                    status,
                    body: Body::Html(page),
                    headers: Vec::new(),
                };
                (reply, None)
            }
            Fault::SecondaryRateLimit { retry_after } => {
                let mut reply = Reply::error(
                    403,
                    &format!("{SECONDARY_MESSAGE} {request_id}."),
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                );
                if let Some(secs) = retry_after {
                    reply.headers.push(("retry-after", secs.to_string()));
                }
                (reply, None)
            }
            Fault::PrimaryRateLimit { reset_in_secs } => {
                let reply = Reply::error(
                    403,
                    &format!("{PRIMARY_MESSAGE} {request_id}."),
                    "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-the-primary-rate-limit",
                );
                let reset = now.saturating_add(i64::try_from(reset_in_secs).unwrap_or(i64::MAX));
                (reply, Some((0, reset)))
            }
        }
    }

    /// `None` when the request carries the token; else GitHub's 401.
    fn authenticate(&self, headers: &HeaderMap) -> Option<Reply> {
        let Some(auth) = header(headers, "authorization") else {
            return Some(Reply::error(401, "Requires authentication", DOCS));
        };
        let presented = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("token "));
        if presented == Some(self.token.as_str()) {
            None
        } else {
            Some(Reply::error(401, "Bad credentials", DOCS))
        }
    }

    fn route(
        &mut self,
        method: &str,
        path: &str,
        query: &BTreeMap<String, String>,
        body: &Value,
    ) -> Reply {
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (method, segments.as_slice()) {
            ("POST", ["repos", owner, repo, "check-runs"]) => {
                with_object(body, DOC_CREATE_RUN, |b| {
                    self.create_check_run(owner, repo, b)
                })
            }
            ("PATCH", ["repos", owner, repo, "check-runs", id]) => {
                with_object(body, DOC_UPDATE_RUN, |b| {
                    self.update_check_run(owner, repo, id, b)
                })
            }
            ("GET", ["repos", owner, repo, "check-runs", id]) => {
                match self.find_run(owner, repo, id) {
                    Some(run) => Reply::json(200, self.check_run_json(run)),
                    None => Reply::not_found(DOC_GET_RUN),
                }
            }
            ("GET", ["repos", owner, repo, "commits", reference, "check-runs"]) => {
                self.list_check_runs(owner, repo, reference, query)
            }
            ("POST", ["repos", owner, repo, "statuses", sha]) => {
                with_object(body, DOC_CREATE_STATUS, |b| {
                    self.create_status(owner, repo, sha, b)
                })
            }
            ("GET", ["repos", owner, repo, "commits", reference, "statuses"]) => {
                let statuses: Vec<Value> = self
                    .statuses
                    .iter()
                    .rev()
                    .filter(|s| same_repo(&s.repo, owner, repo) && s.sha == *reference)
                    .map(|s| self.status_json(s))
                    .collect();
                Reply::json(200, Value::Array(statuses))
            }
            _ => Reply::not_found(DOCS),
        }
    }

    fn create_check_run(
        &mut self,
        owner: &str,
        repo: &str,
        body: &Map<String, Value>,
    ) -> Result<Reply, Reply> {
        let doc = DOC_CREATE_RUN;
        let fields = RunFields::read(body, doc)?;
        let (Some(name), Some(head_sha)) = (fields.name.clone(), fields.head_sha.clone()) else {
            let missing = if fields.name.is_none() {
                "name"
            } else {
                "head_sha"
            };
            return Err(Reply::invalid(
                &format!("\"{missing}\" wasn't supplied."),
                doc,
            ));
        };
        if !is_sha(&head_sha) {
            return Err(Reply::validation_failed(
                "CheckRun",
                "head_sha",
                &format!("No commit found for SHA: {head_sha}"),
                doc,
            ));
        }
        let now = iso8601(jiff::Timestamp::now());
        let suite_key = (
            format!("{owner}/{repo}").to_ascii_lowercase(),
            head_sha.clone(),
        );
        let check_suite = match self.suites.get(&suite_key) {
            Some(id) => *id,
            None => {
                let id = self.next_suite;
                self.next_suite += 1;
                self.suites.insert(suite_key, id);
                id
            }
        };
        let mut run = CheckRun {
            id: self.next_run,
            repo: format!("{owner}/{repo}"),
            name,
            head_sha,
            status: "queued".into(),
            conclusion: None,
            started_at: now,
            completed_at: None,
            details_url: None,
            external_id: None,
            output: CheckRunOutput::default(),
            conclusions_posted: 0,
            check_suite,
        };
        fields.apply(&mut run, doc)?;
        self.next_run += 1;
        let answer = self.check_run_json(&run);
        self.check_runs.insert(run.id, run);
        Ok(Reply::json(201, answer))
    }

    fn update_check_run(
        &mut self,
        owner: &str,
        repo: &str,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<Reply, Reply> {
        let doc = DOC_UPDATE_RUN;
        let Some(mut run) = self.find_run(owner, repo, id).cloned() else {
            return Err(Reply::not_found(doc));
        };
        let fields = RunFields::read(body, doc)?;
        if fields.head_sha.is_some() {
            return Err(Reply::invalid("\"head_sha\" is not a permitted key.", doc));
        }
        fields.apply(&mut run, doc)?;
        let answer = self.check_run_json(&run);
        self.check_runs.insert(run.id, run);
        Ok(Reply::json(200, answer))
    }

    fn find_run(&self, owner: &str, repo: &str, id: &str) -> Option<&CheckRun> {
        let run = self.check_runs.get(&id.parse::<u64>().ok()?)?;
        same_repo(&run.repo, owner, repo).then_some(run)
    }

    /// `GET …/commits/{ref}/check-runs` with `check_name`, `status`, `filter` (`latest`, the
    /// default, keeps the newest run of each name) and `per_page`/`page`.
    fn list_check_runs(
        &self,
        owner: &str,
        repo: &str,
        reference: &str,
        query: &BTreeMap<String, String>,
    ) -> Reply {
        let latest = query.get("filter").is_none_or(|f| f == "latest");
        let mut runs: Vec<&CheckRun> = self
            .check_runs
            .values()
            .rev()
            .filter(|r| same_repo(&r.repo, owner, repo) && r.head_sha == reference)
            .filter(|r| query.get("check_name").is_none_or(|n| *n == r.name))
            .filter(|r| query.get("status").is_none_or(|s| *s == r.status))
            .collect();
        if latest {
            let mut seen = std::collections::BTreeSet::new();
            runs.retain(|r| seen.insert(r.name.clone()));
        }
        let number = |key: &str, default: usize| {
            query
                .get(key)
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(default)
        };
        let per_page = number("per_page", 30).clamp(1, 100);
        let page = number("page", 1).max(1);
        let shown: Vec<Value> = runs
            .iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .map(|r| self.check_run_json(r))
            .collect();
        Reply::json(200, json!({"total_count": runs.len(), "check_runs": shown}))
    }

    fn create_status(
        &mut self,
        owner: &str,
        repo: &str,
        sha: &str,
        body: &Map<String, Value>,
    ) -> Result<Reply, Reply> {
        let doc = DOC_CREATE_STATUS;
        let text = |key: &str| string_field(body, key, "", doc);
        let state = text("state")?;
        let context = text("context")?;
        let description = text("description")?;
        let target_url = text("target_url")?;
        let Some(state) = state else {
            return Err(Reply::invalid("\"state\" wasn't supplied.", doc));
        };
        if !matches!(state.as_str(), "error" | "failure" | "pending" | "success") {
            return Err(Reply::invalid(
                &format!(
                    "For 'properties/state', \"{state}\" is not one of [\"error\", \"failure\", \"pending\", \"success\"]."
                ),
                doc,
            ));
        }
        if !is_sha(sha) {
            return Err(Reply::error(
                422,
                &format!("No commit found for SHA: {sha}"),
                doc,
            ));
        }
        if description
            .as_ref()
            .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX_CHARS)
        {
            return Err(Reply::validation_failed(
                "Status",
                "description",
                "description is too long (maximum is 140 characters)",
                doc,
            ));
        }
        if target_url.as_deref().is_some_and(|u| !is_http_url(u)) {
            return Err(Reply::validation_failed(
                "Status",
                "target_url",
                "target_url must use http(s) scheme",
                doc,
            ));
        }
        let status = CommitStatus {
            id: self.next_status,
            repo: format!("{owner}/{repo}"),
            sha: sha.to_string(),
            state,
            context: context.unwrap_or_else(|| "default".into()),
            description,
            target_url,
            created_at: iso8601(jiff::Timestamp::now()),
        };
        self.next_status += 1;
        let answer = self.status_json(&status);
        self.statuses.push(status);
        Ok(Reply::json(201, answer))
    }

    /// A check run as GitHub shows it.
    fn check_run_json(&self, run: &CheckRun) -> Value {
        let CheckRun {
            id,
            repo,
            name,
            head_sha,
            status,
            conclusion,
            started_at,
            completed_at,
            details_url,
            external_id,
            output,
            conclusions_posted: _,
            check_suite,
        } = run;
        let url = format!("{}/repos/{repo}/check-runs/{id}", self.url);
        json!({
            "id": id,
            "name": name,
            "node_id": format!("CR_kwDOdouble{id}"),
            "head_sha": head_sha,
            "external_id": external_id.clone().unwrap_or_default(),
            "url": url,
            "html_url": format!("https://github.com/{repo}/runs/{id}"),
            "details_url": details_url.clone().unwrap_or_else(|| format!("https://github.com/{repo}/runs/{id}")),
            "status": status,
            "conclusion": conclusion,
            "started_at": started_at,
            "completed_at": completed_at,
            "output": {
                "title": output.title,
                "summary": output.summary,
                "text": output.text,
                "annotations_count": 0,
                "annotations_url": format!("{url}/annotations"),
            },
            "check_suite": {"id": check_suite},
            "app": {"id": 1, "slug": "azlin-double", "name": "azlin (GitHub test double)"},
            "pull_requests": [],
        })
    }

    /// A commit status as GitHub shows it.
    fn status_json(&self, status: &CommitStatus) -> Value {
        let CommitStatus {
            id,
            repo,
            sha,
            state,
            context,
            description,
            target_url,
            created_at,
        } = status;
        json!({
            "url": format!("{}/repos/{repo}/statuses/{sha}", self.url),
            "avatar_url": "https://avatars.githubusercontent.com/in/1?v=4",
            "id": id,
            "node_id": format!("SC_kwDOdouble{id}"),
            "state": state,
            "description": description,
            "target_url": target_url,
            "context": context,
            "created_at": created_at,
            "updated_at": created_at,
            "creator": {"login": "azlin-double[bot]", "id": 1, "type": "Bot"},
        })
    }
}

/// The check run fields a create or update may carry, read and type-checked.
struct RunFields {
    name: Option<String>,
    head_sha: Option<String>,
    status: Option<String>,
    conclusion: Option<String>,
    started_at: Option<String>,
    completed_at: Option<String>,
    details_url: Option<String>,
    external_id: Option<String>,
    output: Option<CheckRunOutput>,
}

impl RunFields {
    fn read(body: &Map<String, Value>, doc: &str) -> Result<RunFields, Reply> {
        let text = |key: &str| string_field(body, key, "", doc);
        let time = |key: &str| match text(key)? {
            None => Ok(None),
            Some(raw) => match raw.parse::<jiff::Timestamp>() {
                Ok(at) => Ok(Some(iso8601(at))),
                Err(_) => Err(Reply::invalid(
                    &format!("For 'properties/{key}', \"{raw}\" is not a valid date-time."),
                    doc,
                )),
            },
        };
        let one_of = |key: &str, allowed: &[&str]| match text(key)? {
            Some(v) if !allowed.contains(&v.as_str()) => Err(Reply::invalid(
                &format!("For 'properties/{key}', \"{v}\" is not one of {allowed:?}."),
                doc,
            )),
            v => Ok(v),
        };
        let output = match body.get("output") {
            None | Some(Value::Null) => None,
            Some(Value::Object(o)) => Some(read_output(o, doc)?),
            Some(other) => {
                return Err(Reply::invalid(
                    &format!("For 'properties/output', {other} is not an object."),
                    doc,
                ));
            }
        };
        Ok(RunFields {
            name: text("name")?,
            head_sha: text("head_sha")?,
            status: one_of(
                "status",
                &[
                    "queued",
                    "in_progress",
                    "completed",
                    "waiting",
                    "requested",
                    "pending",
                ],
            )?,
            conclusion: one_of(
                "conclusion",
                &[
                    "action_required",
                    "cancelled",
                    "failure",
                    "neutral",
                    "success",
                    "skipped",
                    "stale",
                    "timed_out",
                ],
            )?,
            started_at: time("started_at")?,
            completed_at: time("completed_at")?,
            details_url: text("details_url")?,
            external_id: text("external_id")?,
            output,
        })
    }

    /// Applies the fields to `run` by GitHub's rules: a conclusion makes the run `completed`
    /// (at `completed_at`, or now); `completed` or `completed_at` without a conclusion is
    /// refused; going back to `queued` or `in_progress` clears the conclusion.
    fn apply(self, run: &mut CheckRun, doc: &str) -> Result<(), Reply> {
        let RunFields {
            name,
            head_sha: _,
            status,
            conclusion,
            started_at,
            completed_at,
            details_url,
            external_id,
            output,
        } = self;
        if let Some(status) = status.as_deref()
            && matches!(status, "waiting" | "requested" | "pending")
        {
            return Err(Reply::invalid(
                &format!("Only GitHub Actions can set a status of {status}."),
                doc,
            ));
        }
        if conclusion.as_deref() == Some("stale") {
            return Err(Reply::invalid(
                "Conclusion 'stale' can only be set by GitHub.",
                doc,
            ));
        }
        let completing = status.as_deref() == Some("completed") || completed_at.is_some();
        if conclusion.is_none() && completing && run.conclusion.is_none() {
            return Err(Reply::invalid("\"conclusion\" wasn't supplied.", doc));
        }
        if let Some(url) = details_url.as_deref()
            && !is_http_url(url)
        {
            return Err(Reply::validation_failed(
                "CheckRun",
                "details_url",
                "details_url must use http(s) scheme",
                doc,
            ));
        }
        if let Some(name) = name {
            run.name = name;
        }
        if let Some(at) = started_at {
            run.started_at = at;
        }
        if details_url.is_some() {
            run.details_url = details_url;
        }
        if external_id.is_some() {
            run.external_id = external_id;
        }
        if let Some(output) = output {
            run.output = output;
        }
        match (conclusion, status) {
            (Some(conclusion), _) => {
                run.status = "completed".into();
                run.conclusion = Some(conclusion);
                run.conclusions_posted += 1;
                run.completed_at = Some(
                    completed_at
                        .or(run.completed_at.take())
                        .unwrap_or_else(|| iso8601(jiff::Timestamp::now())),
                );
            }
            (None, Some(status)) if status != "completed" => {
                run.status = status;
                run.conclusion = None;
                run.completed_at = None;
            }
            (None, _) => {
                if completed_at.is_some() {
                    run.completed_at = completed_at;
                }
            }
        }
        Ok(())
    }
}

/// A check run `output` object: `title` and `summary` required, `summary` and `text` at most
/// 65535 bytes (GitHub counts bytes, whatever its documentation says about characters).
fn read_output(o: &Map<String, Value>, doc: &str) -> Result<CheckRunOutput, Reply> {
    let text = |key: &str| string_field(o, key, "output/", doc);
    let output = CheckRunOutput {
        title: text("title")?,
        summary: text("summary")?,
        text: text("text")?,
    };
    for (key, value) in [("title", &output.title), ("summary", &output.summary)] {
        if value.is_none() {
            return Err(Reply::invalid(&format!("\"{key}\" wasn't supplied."), doc));
        }
    }
    for (key, value) in [("summary", &output.summary), ("text", &output.text)] {
        if value.as_ref().is_some_and(|v| v.len() > OUTPUT_MAX_BYTES) {
            return Err(Reply::validation_failed(
                "CheckRun",
                key,
                &format!("{key} exceeds a maximum bytesize of {OUTPUT_MAX_BYTES}"),
                doc,
            ));
        }
    }
    Ok(output)
}

/// Runs `f` on a JSON object body (an empty body is `{}`); GitHub's 422 for anything else.
fn with_object(
    body: &Value,
    doc: &str,
    f: impl FnOnce(&Map<String, Value>) -> Result<Reply, Reply>,
) -> Reply {
    let answer = match body {
        Value::Object(map) => f(map),
        Value::Null => f(&Map::new()),
        other => Err(Reply::invalid(
            &format!("For 'links/0/schema', {other} is not an object."),
            doc,
        )),
    };
    answer.unwrap_or_else(|refusal| refusal)
}

/// String field `key` of `map` (`null` is absent); GitHub's 422 when it is not a string.
fn string_field(
    map: &Map<String, Value>,
    key: &str,
    prefix: &str,
    doc: &str,
) -> Result<Option<String>, Reply> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Reply::invalid(
            &format!("For 'properties/{prefix}{key}', {other} is not a string."),
            doc,
        )),
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok()
}

fn same_repo(stored: &str, owner: &str, repo: &str) -> bool {
    stored.eq_ignore_ascii_case(&format!("{owner}/{repo}"))
}

/// A full commit SHA: 40 hex digits (SHA-1) or 64 (SHA-256).
fn is_sha(sha: &str) -> bool {
    matches!(sha.len(), 40 | 64) && sha.chars().all(|c| c.is_ascii_hexdigit())
}

fn is_http_url(url: &str) -> bool {
    url.strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .is_some_and(|rest| !rest.is_empty())
}

fn iso8601(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// An id shaped like GitHub's `x-github-request-id` (`C0A1:3B5F:1F2B3C4:2A1B3C4:65A1B2C3`).
fn request_id() -> String {
    let hex = uuid::Uuid::new_v4()
        .simple()
        .to_string()
        .to_ascii_uppercase();
    format!(
        "{}:{}:{}:{}:{}",
        &hex[..4],
        &hex[4..8],
        &hex[8..15],
        &hex[15..22],
        &hex[22..30]
    )
}
