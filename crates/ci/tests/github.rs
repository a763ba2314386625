//! The GitHub client against the GitHub test double: what is posted, how failures are retried,
//! and the double's own contract (status codes, JSON shapes, headers).

use azlin_ci::github::{
    CheckRunCreate, CheckRunOutput, CheckRunUpdate, CheckStatus, Conclusion, GitHub, GitHubError,
    OUTPUT_MAX_BYTES, RetryPolicy, StatusCreate, StatusState,
};
use azlin_core::nats::Secret;
use azlin_testkit::GitHubDouble;
use azlin_testkit::github_double::Fault;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const REPO: &str = "octo-org/hello-world";
const SHA: &str = "ce587453ced02b1526dfb4cb910479d431683101";

/// Retries fast enough for tests.
fn fast() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
        secondary_wait: Duration::from_millis(300),
        max_total_wait: Duration::from_secs(10),
    }
}

fn client(double: &GitHubDouble) -> GitHub {
    GitHub::new(double.url(), Secret::new(double.token()))
        .expect("a client")
        .with_retry(fast())
}

fn new_run(name: &str) -> CheckRunCreate {
    CheckRunCreate {
        name: name.into(),
        head_sha: SHA.into(),
        status: CheckStatus::InProgress,
        started_at: jiff::Timestamp::now(),
        details_url: Some("https://azlin.example/runs/1".into()),
        external_id: Some("run-1".into()),
    }
}

fn statuses(double: &GitHubDouble) -> Vec<u16> {
    double.calls().iter().map(|c| c.status).collect()
}

#[tokio::test]
async fn a_check_run_is_created_then_completed() {
    let double = GitHubDouble::start();
    let gh = client(&double);
    let id = gh
        .create_check_run(REPO, &new_run("build (ubuntu-latest)"))
        .await
        .expect("created");
    let run = double.check_run(id).expect("recorded");
    assert_eq!((run.status.as_str(), run.conclusion), ("in_progress", None));
    assert_eq!(run.head_sha, SHA);
    assert_eq!(run.external_id.as_deref(), Some("run-1"));

    let update = CheckRunUpdate {
        status: None,
        conclusion: Some(Conclusion::Success),
        completed_at: Some(jiff::Timestamp::now()),
        output: Some(CheckRunOutput {
            title: "3 steps passed".into(),
            summary: "All **green**.".into(),
            text: None,
        }),
    };
    gh.update_check_run(REPO, id, &update)
        .await
        .expect("updated");

    let runs = double.check_runs();
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run.id, id);
    assert!(id > u64::from(u32::MAX), "GitHub's ids exceed u32");
    assert_eq!(run.status, "completed");
    assert_eq!(run.conclusion.as_deref(), Some("success"));
    assert!(run.completed_at.is_some());
    assert_eq!(run.output.title.as_deref(), Some("3 steps passed"));
    assert_eq!(run.conclusions_posted, 1);

    let calls = double.calls();
    let seen: Vec<(&str, &str, u16)> = calls
        .iter()
        .map(|c| (c.method.as_str(), c.path.as_str(), c.status))
        .collect();
    let patch_path = format!("/repos/{REPO}/check-runs/{id}");
    assert_eq!(
        seen,
        [
            ("POST", "/repos/octo-org/hello-world/check-runs", 201),
            ("PATCH", patch_path.as_str(), 200),
        ]
    );
    let first = &calls[0];
    assert_eq!(first.body["status"], "in_progress");
    assert_eq!(first.headers["accept"], "application/vnd.github+json");
    assert_eq!(first.headers["x-github-api-version"], "2022-11-28");
    assert!(first.headers["user-agent"].starts_with("azlin/"));
    // The update sends the conclusion and lets it imply `completed`.
    assert_eq!(calls[1].body["conclusion"], "success");
    assert!(calls[1].body.get("status").is_none());
}

#[tokio::test]
async fn long_output_is_cut_to_what_github_accepts() {
    let double = GitHubDouble::start();
    let gh = client(&double);
    let id = gh
        .create_check_run(REPO, &new_run("test"))
        .await
        .expect("created");
    let update = CheckRunUpdate {
        status: None,
        conclusion: Some(Conclusion::Failure),
        completed_at: None,
        output: Some(CheckRunOutput {
            title: "log".into(),
            summary: "é".repeat(OUTPUT_MAX_BYTES),
            text: Some("x".repeat(OUTPUT_MAX_BYTES + 1)),
        }),
    };
    gh.update_check_run(REPO, id, &update)
        .await
        .expect("accepted");
    let output = double.check_run(id).expect("recorded").output;
    for part in [output.summary, output.text] {
        let part = part.expect("set");
        assert!(part.len() <= OUTPUT_MAX_BYTES, "{}", part.len());
        assert!(part.contains("truncated"));
    }
}

#[tokio::test]
async fn commit_statuses_are_posted() {
    let double = GitHubDouble::start();
    let gh = client(&double);
    for (state, description) in [
        (StatusState::Pending, "Running on azlin".to_string()),
        (StatusState::Failure, "step failed: ".repeat(20)),
    ] {
        let status = StatusCreate {
            state,
            context: "azlin/build".into(),
            description,
            target_url: Some("https://azlin.example/runs/1".into()),
        };
        gh.create_status(REPO, SHA, &status).await.expect("posted");
    }
    let posted = double.statuses();
    assert_eq!(posted.len(), 2);
    assert_eq!(posted[0].state, "pending");
    assert_eq!(posted[1].state, "failure");
    assert_eq!(posted[1].context, "azlin/build");
    let description = posted[1].description.as_deref().expect("a description");
    assert_eq!(description.chars().count(), 140);
    assert_eq!(statuses(&double), [201, 201]);
    assert_eq!(
        double.calls()[0].path,
        format!("/repos/{REPO}/statuses/{SHA}")
    );
}

#[tokio::test]
async fn a_502_is_retried() {
    let double = GitHubDouble::start();
    double.fail_next(1, Fault::ServerError(502));
    let id = client(&double)
        .create_check_run(REPO, &new_run("build"))
        .await
        .expect("created on the second attempt");
    assert_eq!(statuses(&double), [502, 201]);
    assert_eq!(double.check_runs().len(), 1);
    assert_eq!(double.check_runs()[0].id, id);
}

#[tokio::test]
async fn a_secondary_limit_retry_after_is_honoured() {
    created_after_waiting(
        Fault::SecondaryRateLimit {
            retry_after: Some(1),
        },
        Duration::from_secs(1),
    )
    .await;
}

/// A check run is created on the second attempt, at least `wait` after the first was answered
/// with `fault`.
async fn created_after_waiting(fault: Fault, wait: Duration) {
    let double = GitHubDouble::start();
    double.fail_next(1, fault);
    let started = Instant::now();
    client(&double)
        .create_check_run(REPO, &new_run("build"))
        .await
        .expect("created after the wait");
    assert!(started.elapsed() >= wait, "{:?}", started.elapsed());
    assert_eq!(statuses(&double), [403, 201]);
}

#[tokio::test]
async fn a_secondary_limit_without_headers_waits_the_minimum() {
    let double = GitHubDouble::start();
    double.fail_next(1, Fault::SecondaryRateLimit { retry_after: None });
    let started = Instant::now();
    client(&double)
        .create_status(
            REPO,
            SHA,
            &StatusCreate {
                state: StatusState::Success,
                context: "azlin".into(),
                description: "ok".into(),
                target_url: None,
            },
        )
        .await
        .expect("posted after the wait");
    // `fast()` stands in 300 ms for GitHub's "at least one minute".
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(statuses(&double), [403, 201]);
}

#[tokio::test]
async fn a_primary_limit_waits_for_the_reset() {
    created_after_waiting(
        Fault::PrimaryRateLimit { reset_in_secs: 1 },
        Duration::from_secs(1),
    )
    .await;
}

#[tokio::test]
async fn a_422_fails_at_once_with_github_message() {
    let double = GitHubDouble::start();
    let mut run = new_run("build");
    run.details_url = Some("ftp://azlin.example/runs/1".into());
    let err = client(&double)
        .create_check_run(REPO, &run)
        .await
        .expect_err("refused");
    match &err {
        GitHubError::Refused {
            status, message, ..
        } => {
            assert_eq!(*status, 422);
            assert!(message.starts_with("Validation Failed"), "{message}");
            assert!(message.contains("details_url"), "{message}");
        }
        other => panic!("not a refusal: {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("POST /repos/octo-org/hello-world/check-runs")
    );
    assert_eq!(statuses(&double), [422]);
}

#[tokio::test]
async fn an_unknown_check_run_is_not_found() {
    let double = GitHubDouble::start();
    let err = client(&double)
        .update_check_run(REPO, 42, &CheckRunUpdate::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, GitHubError::Refused { status: 404, message, .. } if message == "Not Found"),
        "{err:?}"
    );
    assert_eq!(statuses(&double), [404]);
}

#[tokio::test]
async fn a_wrong_token_is_refused_without_showing_it() {
    let double = GitHubDouble::start().with_token("ghs_the_right_one");
    let wrong = "ghs_a_wrong_token";
    let gh = GitHub::new(double.url(), Secret::new(wrong))
        .expect("a client")
        .with_retry(fast());
    let err = gh
        .create_check_run(REPO, &new_run("build"))
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, GitHubError::Refused { status: 401, message, .. } if message == "Bad credentials"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?} {gh:?}").contains(wrong));
    assert_eq!(statuses(&double), [401]);
}

#[tokio::test]
async fn it_gives_up_after_the_max_attempts() {
    let double = GitHubDouble::start();
    double.fail_next(10, Fault::ServerError(502));
    let err = client(&double)
        .create_check_run(REPO, &new_run("build"))
        .await
        .expect_err("gave up");
    assert!(
        matches!(
            err,
            GitHubError::ServerError {
                status: 502,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(statuses(&double), [502; 4]);
    assert!(double.check_runs().is_empty());
}

#[tokio::test]
async fn a_limit_beyond_the_wait_budget_fails_at_once() {
    let double = GitHubDouble::start();
    double.fail_next(
        1,
        Fault::SecondaryRateLimit {
            retry_after: Some(3600),
        },
    );
    let started = Instant::now();
    let err = client(&double)
        .create_check_run(REPO, &new_run("build"))
        .await
        .expect_err("rate-limited");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it did not wait"
    );
    match &err {
        GitHubError::RateLimited {
            retry_in, attempts, ..
        } => {
            assert_eq!(*retry_in, Duration::from_secs(3600));
            assert_eq!(*attempts, 1);
        }
        other => panic!("not rate-limited: {other:?}"),
    }
    assert!(err.to_string().contains("rate-limited"), "{err}");
    assert_eq!(statuses(&double), [403]);
}

#[tokio::test]
async fn an_unreachable_api_is_retried_then_reported() {
    let port = azlin_testkit::free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let gh = GitHub::new(&format!("http://127.0.0.1:{port}"), Secret::new("t"))
        .expect("a client")
        .with_retry(fast());
    let err = gh
        .create_check_run(REPO, &new_run("build"))
        .await
        .expect_err("unreachable");
    assert!(
        matches!(err, GitHubError::Unreachable { attempts: 4, .. }),
        "{err:?}"
    );
}

/// Raw requests to the double, to check its own contract.
struct Raw {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Raw {
    fn new(double: &GitHubDouble) -> Raw {
        Raw {
            http: reqwest::Client::builder()
                .user_agent("azlin-tests")
                .build()
                .expect("a client"),
            base: double.url().to_string(),
            token: double.token().to_string(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, reqwest::header::HeaderMap, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("an answer");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }
}

#[tokio::test]
async fn the_double_answers_check_runs_like_github() {
    use reqwest::Method;
    let double = GitHubDouble::start();
    let raw = Raw::new(&double);
    let runs = format!("/repos/{REPO}/check-runs");

    let (status, headers, body) = raw
        .send(Method::POST, &runs, Some(json!({"head_sha": SHA})))
        .await;
    assert_eq!(status, 422);
    assert!(
        body["message"]
            .as_str()
            .expect("a message")
            .starts_with("Invalid request.")
    );
    for name in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-ratelimit-used",
        "x-github-request-id",
    ] {
        assert!(headers.contains_key(name), "{name}");
    }
    assert_eq!(headers["x-ratelimit-resource"], "core");

    let completed = json!({"name": "lint", "head_sha": SHA, "status": "completed"});
    let (status, _, _) = raw.send(Method::POST, &runs, Some(completed)).await;
    assert_eq!(status, 422, "completed needs a conclusion");

    let (status, _, first) = raw
        .send(
            Method::POST,
            &runs,
            Some(json!({"name": "lint", "head_sha": SHA})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(first["status"], "queued");
    assert_eq!(first["conclusion"], Value::Null);
    assert!(first["started_at"].is_string());
    assert!(
        first["html_url"]
            .as_str()
            .expect("html_url")
            .contains("/runs/")
    );

    let concluded = json!({"name": "lint", "head_sha": SHA, "conclusion": "neutral"});
    let (status, headers, second) = raw.send(Method::POST, &runs, Some(concluded)).await;
    assert_eq!(status, 201);
    assert_eq!(second["status"], "completed");
    assert!(second["completed_at"].is_string());
    assert!(second["id"].as_u64() > first["id"].as_u64());
    assert_eq!(
        headers["x-ratelimit-used"], "4",
        "every authenticated request counts"
    );

    let one = format!("{runs}/{}", first["id"]);
    let (status, _, got) = raw.send(Method::GET, &one, None).await;
    assert_eq!((status, &got["name"]), (200, &json!("lint")));
    let too_long = json!({"output": {"title": "t", "summary": "x".repeat(65536)}});
    let (status, _, body) = raw.send(Method::PATCH, &one, Some(too_long)).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["errors"][0]["message"],
        "summary exceeds a maximum bytesize of 65535"
    );
    let (status, _, body) = raw
        .send(Method::PATCH, &format!("{runs}/1"), Some(json!({})))
        .await;
    assert_eq!((status, &body["message"]), (404, &json!("Not Found")));

    // `filter=latest` (the default) shows the newest run of each name.
    let list = format!("/repos/{REPO}/commits/{SHA}/check-runs");
    let (_, _, latest) = raw.send(Method::GET, &list, None).await;
    assert_eq!(latest["total_count"], 1);
    assert_eq!(latest["check_runs"][0]["id"], second["id"]);
    let (_, _, all) = raw
        .send(Method::GET, &format!("{list}?filter=all"), None)
        .await;
    assert_eq!(all["total_count"], 2);
}

#[tokio::test]
async fn the_double_answers_statuses_and_refusals_like_github() {
    use reqwest::Method;
    let double = GitHubDouble::start();
    let raw = Raw::new(&double);
    let post = format!("/repos/{REPO}/statuses/{SHA}");
    for state in ["pending", "success"] {
        let (status, _, body) = raw
            .send(Method::POST, &post, Some(json!({"state": state})))
            .await;
        assert_eq!(status, 201);
        assert_eq!(body["context"], "default");
    }
    let (status, _, _) = raw
        .send(Method::POST, &post, Some(json!({"state": "done"})))
        .await;
    assert_eq!(status, 422);
    let long = json!({"state": "error", "description": "d".repeat(141)});
    let (status, _, _) = raw.send(Method::POST, &post, Some(long)).await;
    assert_eq!(status, 422);
    let list = format!("/repos/{REPO}/commits/{SHA}/statuses");
    let (status, _, listed) = raw.send(Method::GET, &list, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["state"], "success", "newest first");
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    let anonymous = reqwest::Client::builder()
        .user_agent("azlin-tests")
        .build()
        .expect("a client");
    let resp = anonymous
        .post(format!("{}{post}", double.url()))
        .json(&json!({"state": "success"}))
        .send()
        .await
        .expect("an answer");
    assert_eq!(resp.status().as_u16(), 401);
    let wrong = Raw {
        token: "ghs_wrong".into(),
        ..Raw::new(&double)
    };
    let (status, _, body) = wrong.send(Method::GET, &list, None).await;
    assert_eq!((status, &body["message"]), (401, &json!("Bad credentials")));

    double.fail_next(1, Fault::PrimaryRateLimit { reset_in_secs: 30 });
    let (status, headers, body) = raw.send(Method::GET, &list, None).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-ratelimit-remaining"], "0");
    let reset: i64 = headers["x-ratelimit-reset"]
        .to_str()
        .expect("text")
        .parse()
        .expect("epoch seconds");
    assert!(reset >= jiff::Timestamp::now().as_second() + 29);
    assert!(
        body["message"]
            .as_str()
            .expect("a message")
            .starts_with("API rate limit exceeded")
    );
    let last = double.calls().pop().expect("recorded");
    assert_eq!((last.method.as_str(), last.status), ("GET", 403));
    assert!(!last.headers.contains_key("authorization"));
}
