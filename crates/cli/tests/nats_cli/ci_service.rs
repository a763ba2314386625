//! `azlin serve` as a CI service: signed GitHub webhooks in, runs queued on NATS for two
//! `azlin worker --runs` processes, each on its own host (a network namespace that reaches
//! nothing but the NATS server), check runs back in the GitHub test double, metrics.

use crate::support::*;
use azlin_testkit::CollectorDouble;
use azlin_testkit::github_double::GitHubDouble;
use azlin_testkit::netns::{Host, Lan};
use azlin_testkit::{NatsServer, ServerOptions};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const SECRET: &str = "webhook-secret-for-tests";
const TOKEN: &str = "ghs_serve_test_token";

const CI: &str = r#"name: CI
on:
  push:
    branches: [main]
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "building $GITHUB_SHA"
      - run: echo "**built on azlin**" >> "$GITHUB_STEP_SUMMARY"
  broken:
    runs-on: ubuntu-latest
    steps:
      - run: exit 3
"#;
const GPU: &str = r#"name: GPU
on: push
jobs:
  train:
    runs-on: [self-hosted, gpu]
    steps:
      - run: echo trained
"#;
const DOCS: &str = r#"name: Docs
on:
  push:
    paths: ['docs/**']
jobs:
  docs:
    runs-on: ubuntu-latest
    steps:
      - run: echo docs
"#;
const RELEASE: &str = r#"name: Release
on:
  push:
    tags: ['v*']
jobs:
  release:
    runs-on: ubuntu-latest
    steps:
      - run: echo release
"#;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `octo/app` under `root` with `workflows` (file name, text) committed on `main`; returns
/// the commit.
fn repository(root: &Path, workflows: &[(&str, &str)]) -> String {
    let repo = root.join("octo/app");
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    for (name, text) in workflows {
        std::fs::write(repo.join(".github/workflows").join(name), text).unwrap();
    }
    std::fs::write(repo.join("src/main.rs"), "fn main() {}\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    git(&repo, &["rev-parse", "HEAD"])
}

fn push_payload(sha: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "ref": "refs/heads/main",
        "before": "0".repeat(40),
        "after": sha,
        "created": false,
        "deleted": false,
        "forced": false,
        "repository": {
            "full_name": "octo/app",
            "name": "app",
            "owner": { "login": "octo" },
            "default_branch": "main",
            "clone_url": "https://github.com/octo/app.git"
        },
        "pusher": { "name": "octocat" },
        "sender": { "login": "octocat" },
        "head_commit": {
            "id": sha,
            "message": "change the code",
            "added": [], "removed": [], "modified": ["src/main.rs"]
        },
        "commits": [{
            "id": sha,
            "message": "change the code",
            "added": [], "removed": [], "modified": ["src/main.rs"]
        }]
    }))
    .unwrap()
}

fn deliver(
    addr: &str,
    id: &str,
    event: &str,
    body: &[u8],
    signature: Option<&str>,
) -> (u16, String) {
    deliver_with(addr, id, event, body, signature, &[])
}

/// A delivery signed with the secret (`signature: None`), with none (`Some("")`) or with the
/// one given, and `extra` headers.
fn deliver_with(
    addr: &str,
    id: &str,
    event: &str,
    body: &[u8],
    signature: Option<&str>,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let signed = azlin_ci::webhook::sign(SECRET.as_bytes(), body);
    let mut headers = vec![
        ("X-GitHub-Event", event),
        ("X-GitHub-Delivery", id),
        ("Content-Type", "application/json"),
    ];
    match signature {
        Some("") => {}
        Some(other) => headers.push(("X-Hub-Signature-256", other)),
        None => headers.push(("X-Hub-Signature-256", &signed)),
    }
    headers.extend_from_slice(extra);
    http_request(addr, "POST", "/webhook", &headers, body)
}

/// The metric samples of `/metrics`, by name and labels.
fn metric(addr: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn config(azlin: &Azlin, extra: &str) {
    let dir = azlin.home.path().join(".config/azlin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("provider = \"sim\"\n{extra}"),
    )
    .unwrap();
}

/// A runner worker in its own installation, on its own host.
fn runner(lan: &mut Lan, url: &str, flags: &[&str]) -> (Azlin, Host, Proc) {
    let azlin = Azlin::new();
    config(&azlin, "");
    let host = lan.host().unwrap();
    let worker = start_runner(&azlin, &host, url, flags);
    (azlin, host, worker)
}

fn start_runner(azlin: &Azlin, host: &Host, url: &str, flags: &[&str]) -> Proc {
    let mut args = vec!["worker", "--runs", "--nats", url];
    args.extend_from_slice(flags);
    let worker = azlin.spawn_on(Some(host), &args, &[]);
    worker.wait_for_stderr("running workflow runs", Duration::from_secs(60));
    worker
}

/// The id a runner worker announced.
fn runner_id(worker: &Proc) -> String {
    worker
        .stderr()
        .split("azlin worker ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string()
}

/// nats-server on the LAN's host address, the GitHub double, a repository with `workflows`, and
/// `azlin serve` taking its webhooks (`[serve]` as below, plus `extra`), on this machine.
struct Service {
    _nats: NatsServer,
    url: String,
    github: GitHubDouble,
    _git_root: tempfile::TempDir,
    sha: String,
    server: Azlin,
    _secrets: tempfile::TempDir,
    serve: Proc,
    addr: String,
}

fn service(lan: &Lan, workflows: &[(&str, &str)], extra: &str) -> Service {
    let nats = NatsServer::start_options(ServerOptions {
        address: Some(lan.gateway()),
        ..ServerOptions::default()
    })
    .unwrap();
    let url = nats.url();
    let github = GitHubDouble::start().with_token(TOKEN);
    let git_root = tempfile::tempdir().unwrap();
    let sha = repository(git_root.path(), workflows);
    let server = Azlin::new();
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(secrets.path().join("token"), TOKEN).unwrap();
    config(
        &server,
        &format!(
            "[serve]\nwebhook_secret_file = \"{}\"\ntoken_file = \"{}\"\nrepo_url = \"file://{}/{{repository}}\"\napi_url = \"{}\"\n{extra}",
            secrets.path().join("secret").display(),
            secrets.path().join("token").display(),
            git_root.path().display(),
            github.url()
        ),
    );
    let serve = server.spawn(&["serve", "--listen", "127.0.0.1:0", "--nats", &url]);
    let addr = serve_address(&serve);
    Service {
        _nats: nats,
        url,
        github,
        _git_root: git_root,
        sha,
        server,
        _secrets: secrets,
        serve,
        addr,
    }
}

#[test]
fn push_webhooks_run_matching_workflows_on_runners_and_post_check_runs() {
    let mut lan = Lan::new().unwrap();
    let collector = CollectorDouble::start();
    let svc = service(
        &lan,
        &[
            ("ci.yml", CI),
            ("gpu.yml", GPU),
            ("docs.yml", DOCS),
            ("release.yaml", RELEASE),
        ],
        &format!("otlp_endpoint = \"{}\"\n", collector.url()),
    );
    let (gpu_home, _gpu_host, gpu) = runner(&mut lan, &svc.url, &["--labels", "gpu"]);
    let (plain_home, _plain_host, plain) = runner(&mut lan, &svc.url, &[]);
    let gpu_id = runner_id(&gpu);

    // Refused: no signature, a wrong one; nothing is queued.
    let body = push_payload(&svc.sha);
    assert_eq!(
        deliver(&svc.addr, "d-unsigned", "push", &body, Some("")).0,
        401
    );
    let forged = azlin_ci::webhook::sign(b"not the secret", &body);
    assert_eq!(
        deliver(&svc.addr, "d-forged", "push", &body, Some(&forged)).0,
        401
    );
    assert_eq!(
        deliver(&svc.addr, "d-ping", "ping", b"{\"zen\":\"hi\"}", None).0,
        200
    );

    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming = format!("00-{trace}-00f067aa0ba902b7-01");
    let (status, answer) = deliver_with(
        &svc.addr,
        "d-push-1",
        "push",
        &body,
        None,
        &[("traceparent", &incoming)],
    );
    assert_eq!(status, 202, "{answer}");
    let runs = eventually(
        Duration::from_secs(120),
        "three completed check runs",
        || {
            let runs = svc.github.check_runs();
            (runs.len() == 3 && runs.iter().all(|r| r.status == "completed")).then_some(runs)
        },
    );
    let conclusion = |name: &str| {
        let run = runs
            .iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("{name}: {runs:?}"));
        assert_eq!(run.head_sha, svc.sha);
        assert_eq!(run.repo, "octo/app");
        assert_eq!(run.conclusions_posted, 1, "{run:?}");
        run.conclusion.clone().unwrap()
    };
    assert_eq!(conclusion("build"), "success");
    assert_eq!(conclusion("broken"), "failure");
    assert_eq!(conclusion("train"), "success");
    let build = runs.iter().find(|r| r.name == "build").unwrap();
    assert!(
        build
            .output
            .summary
            .as_deref()
            .unwrap_or_default()
            .contains("success"),
        "{:?}",
        build.output
    );
    assert!(
        build
            .output
            .text
            .as_deref()
            .unwrap_or_default()
            .contains("built on azlin"),
        "{:?}",
        build.output
    );

    // A replay of the delivery runs nothing again; the job needing `gpu` ran on the runner
    // that serves it; the docs and release workflows never ran.
    let (status, answer) = deliver(&svc.addr, "d-push-1", "push", &body, None);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("taken before"), "{answer}");
    let events = svc.server.events(&svc.url);
    let started: Vec<&Value> = of(&events, "workflow.job.started");
    assert_eq!(started.len(), 3, "{started:#?}");
    let train = started
        .iter()
        .find(|e| e["payload"]["job"] == "train")
        .unwrap();
    assert_eq!(train["payload"]["worker"], gpu_id.as_str());
    let workflows: Vec<&str> = of(&events, "workflow.run.status")
        .iter()
        .map(|e| e["payload"]["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(workflows.len(), 2, "{workflows:?}");
    assert_eq!(of(&events, "workflow.run.failed").len(), 1);
    assert_eq!(of(&events, "workflow.run.complete").len(), 1);
    // The webhook's trace reaches every step event.
    let steps = of(&events, "workflow.step.started");
    assert_eq!(steps.len(), 4, "{steps:#?}");
    for event in steps.iter().chain(&of(&events, "workflow.step.completed")) {
        let traceparent = event["traceparent"].as_str().unwrap_or_default();
        assert!(traceparent.starts_with(&format!("00-{trace}-")), "{event}");
    }
    // The collector got the runs as trees of spans in that trace, each run a child of the
    // delivery's span.
    let delivery_span = steps[0]["traceparent"].as_str().unwrap()[36..52].to_string();
    let spans = eventually(Duration::from_secs(20), "9 spans", || {
        let spans = collector.spans();
        (spans.len() >= 9).then_some(spans)
    });
    let named = |prefix: &str| -> Vec<&Value> {
        spans
            .iter()
            .filter(|s| s["name"].as_str().unwrap().starts_with(prefix))
            .collect()
    };
    let (run_spans, job_spans, step_spans) = (named("run "), named("job "), named("step "));
    assert_eq!(
        (run_spans.len(), job_spans.len(), step_spans.len()),
        (2, 3, 4),
        "{spans:#?}"
    );
    let ids = |spans: &[&Value]| -> Vec<String> {
        spans
            .iter()
            .map(|s| s["spanId"].as_str().unwrap().to_string())
            .collect()
    };
    let parent = |span: &Value| span["parentSpanId"].as_str().unwrap().to_string();
    for span in &spans {
        assert_eq!(span["traceId"], trace, "{span}");
        let (start, end) = (
            span["startTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap(),
            span["endTimeUnixNano"]
                .as_str()
                .unwrap()
                .parse::<u128>()
                .unwrap(),
        );
        assert!(start <= end, "{span}");
    }
    assert!(run_spans.iter().all(|s| parent(s) == delivery_span));
    assert!(
        job_spans
            .iter()
            .all(|s| ids(&run_spans).contains(&parent(s)))
    );
    assert!(
        step_spans
            .iter()
            .all(|s| ids(&job_spans).contains(&parent(s)))
    );
    let failed: Vec<&str> = spans
        .iter()
        .filter(|s| s["status"]["code"] == 2)
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(failed.contains(&"job broken"), "{failed:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(svc.github.check_runs().len(), 3);

    // The metrics parse, and count what happened.
    let delivered = |outcome| {
        metric(
            &svc.addr,
            "azlin_webhook_deliveries_total",
            &[("event", "push"), ("outcome", outcome)],
        )
    };
    assert_eq!(delivered("queued"), 1.0);
    assert_eq!(delivered("duplicate"), 1.0);
    assert_eq!(delivered("refused"), 2.0);
    eventually(Duration::from_secs(20), "runs counted", || {
        (metric(&svc.addr, "azlin_runs_total", &[("result", "success")]) == 1.0
            && metric(&svc.addr, "azlin_runs_total", &[("result", "failure")]) == 1.0)
            .then_some(())
    });
    assert_eq!(metric(&svc.addr, "azlin_runs_queued_total", &[]), 2.0);
    assert_eq!(
        metric(&svc.addr, "azlin_job_start_latency_seconds_count", &[]),
        3.0
    );
    assert_eq!(metric(&svc.addr, "azlin_runners", &[]), 2.0);
    assert_eq!(metric(&svc.addr, "azlin_run_queue_depth", &[]), 0.0);

    let outputs = stop_all(vec![gpu, plain, svc.serve]);
    // The token and the webhook secret are in no output and no file azlin wrote.
    for secret in [TOKEN, SECRET] {
        for run in &outputs {
            assert!(!run.stderr.contains(secret) && !run.stdout.contains(secret));
        }
        for home in [&svc.server, &gpu_home, &plain_home] {
            let leaked = files_containing(home.home.path(), secret);
            assert!(leaked.is_empty(), "{secret} is in {leaked:?}");
        }
    }
    // Every session VM went back.
    assert_eq!(gpu_home.sim_vms().len(), 0);
    assert_eq!(plain_home.sim_vms().len(), 0);
}

#[test]
fn a_run_whose_runner_is_killed_completes_once_on_another_and_leaks_no_vm() {
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let slow = format!(
        "name: Slow\non: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    steps:\n      \
         - run: touch {m}/started-$$; while [ ! -f {m}/go ]; do sleep 0.1; done\n      \
         - run: echo finished\n"
    );
    let mut lan = Lan::new().unwrap();
    let svc = service(&lan, &[("slow.yml", &slow)], "");
    let (first_home, first_host, first) = runner(&mut lan, &svc.url, &["--ack-wait", "2"]);
    let (second_home, second_host, second) = runner(&mut lan, &svc.url, &["--ack-wait", "2"]);
    let ids = [runner_id(&first), runner_id(&second)];

    assert_eq!(
        deliver(&svc.addr, "d-slow", "push", &push_payload(&svc.sha), None).0,
        202
    );
    eventually(Duration::from_secs(60), "the step to start", || {
        std::fs::read_dir(marks.path())
            .unwrap()
            .next()
            .is_some()
            .then_some(())
    });
    let taken = eventually(Duration::from_secs(20), "the run's taker", || {
        let events = svc.server.events(&svc.url);
        of(&events, "workflow.run.status")
            .first()
            .map(|e| e["payload"]["worker"].as_str().unwrap().to_string())
    });
    let (mut victim, victim_home, victim_host, survivor, survivor_home) = if taken == ids[0] {
        (first, first_home, first_host, second, second_home)
    } else {
        assert_eq!(taken, ids[1]);
        (second, second_home, second_host, first, first_home)
    };
    victim.kill9();
    std::fs::write(marks.path().join("go"), "").unwrap();

    let run = eventually(Duration::from_secs(90), "the check run to complete", || {
        let runs = svc.github.check_runs();
        runs.first().filter(|r| r.status == "completed").cloned()
    });
    assert_eq!(run.conclusion.as_deref(), Some("success"), "{run:?}");
    assert_eq!(run.conclusions_posted, 1);
    let events = svc.server.events(&svc.url);
    let takers: Vec<&str> = of(&events, "workflow.run.status")
        .iter()
        .map(|e| e["payload"]["worker"].as_str().unwrap())
        .collect();
    assert_eq!(takers.len(), 2, "{takers:?}");
    assert_ne!(takers[0], takers[1]);
    assert_eq!(of(&events, "workflow.run.complete").len(), 1);
    assert!(of(&events, "workflow.run.failed").is_empty());
    assert_eq!(of(&events, "workflow.job.completed").len(), 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(svc.github.check_runs().len(), 1);
    assert_eq!(
        metric(&svc.addr, "azlin_runs_total", &[("result", "success")]),
        1.0
    );

    // The killed runner's session VM is released when a runner starts again on its host.
    assert_eq!(victim_home.sim_vms().len(), 1);
    let restarted = start_runner(&victim_home, &victim_host, &svc.url, &[]);
    assert!(
        restarted.stderr().contains("removed sim VM"),
        "{}",
        restarted.stderr()
    );
    assert_eq!(victim_home.sim_vms().len(), 0);
    stop_all(vec![restarted, survivor, svc.serve]);
    assert_eq!(survivor_home.sim_vms().len(), 0);
}

/// `node tests/dashboard/watch.mjs` on `url`: Chromium watching the dashboard, line by line.
struct Watcher {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Watcher {
    fn start(url: &str, line: &str, screenshot: &Path) -> Watcher {
        use std::io::BufRead;
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/dashboard/watch.mjs"
        );
        let mut child = Command::new("node")
            .args([script, url, line])
            .arg(screenshot)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("node runs (scripts/test.sh installs tests/dashboard)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watcher { child, lines }
    }

    fn expect(&self, said: &str) {
        let line = self
            .lines
            .recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("the browser did not say '{said}': {e}"));
        assert_eq!(line, said);
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_dashboard_shows_a_delivered_run_and_its_output_live_in_chromium() {
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let live = format!(
        "name: Live\non: push\njobs:\n  talk:\n    runs-on: ubuntu-latest\n    steps:\n      \
         - run: echo hello-from-the-step; while [ ! -f {m}/go ]; do sleep 0.1; done\n"
    );
    let mut lan = Lan::new().unwrap();
    let svc = service(&lan, &[("live.yml", &live)], "");
    let (_home, _host, worker) = runner(&mut lan, &svc.url, &[]);
    let artifacts = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/test-artifacts");
    std::fs::create_dir_all(artifacts).unwrap();
    let screenshot = Path::new(artifacts).join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);

    let browser = Watcher::start(
        &format!("http://{}/", svc.addr),
        "hello-from-the-step",
        &screenshot,
    );
    browser.expect("ready");
    assert_eq!(
        deliver(&svc.addr, "d-live", "push", &push_payload(&svc.sha), None).0,
        202
    );
    browser.expect("run");
    // The line shows while its step is still running: it came live, not with the result.
    browser.expect("log");
    assert!(
        svc.github
            .check_runs()
            .iter()
            .all(|r| r.status != "completed")
    );
    std::fs::write(marks.path().join("go"), "").unwrap();
    browser.expect("done");
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 1000);

    // The page itself is rendered on the server: the run, the VM table, the runner.
    let (status, page) = http_get(&svc.addr, "/");
    assert_eq!(status, 200);
    assert!(
        page.contains("octo/app") && page.contains("Runner workers"),
        "{page}"
    );
    assert!(page.contains(&runner_id(&worker)), "{page}");
    stop_all(vec![worker, svc.serve]);
}

#[test]
fn commit_statuses_when_configured_and_unreadable_runs_go_to_dead_letters() {
    let mut lan = Lan::new().unwrap();
    let svc = service(&lan, &[("ci.yml", CI)], "report = \"statuses\"\n");
    let (_home, _host, worker) = runner(&mut lan, &svc.url, &[]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = azlin_control::NatsBus::connect(&svc.url, azlin_control::NatsSettings::default())
            .await
            .unwrap();
        bus.submit_raw("workflow.run.request", b"{not json".to_vec())
            .await
            .unwrap();
    });
    let letters = dead_letters(&svc.url);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].subject, "workflow.run.request");
    assert!(letters[0].reason.contains("malformed"), "{letters:?}");

    assert_eq!(
        deliver(
            &svc.addr,
            "d-statuses",
            "push",
            &push_payload(&svc.sha),
            None
        )
        .0,
        202
    );
    let last = |context: &str| {
        svc.github
            .statuses()
            .into_iter()
            .rfind(|s| s.context == context && s.sha == svc.sha)
            .map(|s| s.state)
    };
    eventually(Duration::from_secs(60), "final statuses", || {
        (last("azlin/CI/build").as_deref() == Some("success")
            && last("azlin/CI/broken").as_deref() == Some("failure"))
        .then_some(())
    });
    assert!(svc.github.check_runs().is_empty());
    stop_all(vec![worker, svc.serve]);
}

#[test]
fn beyond_loopback_the_dashboard_needs_its_token_and_webhooks_need_nats() {
    let lan = Lan::new().unwrap();
    let listen = format!("{}:0", lan.gateway());
    let start = |extra: &str| {
        let azlin = Azlin::new();
        config(&azlin, extra);
        let serve = azlin.spawn(&["serve", "--listen", &listen]);
        let addr = serve_address(&serve);
        (azlin, serve, addr)
    };
    let (_closed_home, closed, addr) = start("");
    assert_eq!(http_get(&addr, "/").0, 403);
    let (status, answer) = deliver(&addr, "d-1", "push", b"{}", None);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("webhook_secret_file"), "{answer}");

    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(secrets.path().join("dashboard"), "let-me-see\n").unwrap();
    std::fs::write(secrets.path().join("secret"), SECRET).unwrap();
    let (_home, open, addr) = start(&format!(
        "[serve]\ndashboard_token_file = \"{}\"\nwebhook_secret_file = \"{}\"\n",
        secrets.path().join("dashboard").display(),
        secrets.path().join("secret").display()
    ));
    assert_eq!(http_get(&addr, "/").0, 401);
    assert_eq!(http_get(&addr, "/?token=wrong").0, 401);
    assert_eq!(http_get(&addr, "/events").0, 401);
    let (status, page) = http_get(&addr, "/?token=let-me-see");
    assert_eq!(status, 200);
    assert!(page.contains("Runner workers"));
    let (status, _) = http_request(
        &addr,
        "GET",
        "/",
        &[("Authorization", "Bearer let-me-see")],
        b"",
    );
    assert_eq!(status, 200);
    // Signed, but there is no run queue without NATS.
    let (status, answer) = deliver(&addr, "d-2", "push", b"{}", None);
    assert_eq!(status, 503, "{answer}");
    assert!(answer.contains("NATS"), "{answer}");
    stop_all(vec![closed, open]);
}

#[test]
fn a_limit_on_runs_in_flight_holds_across_runners() {
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().display();
    let slow = |name: &str| {
        format!(
            "name: {name}\non: push\njobs:\n  wait:\n    runs-on: ubuntu-latest\n    steps:\n      \
             - run: touch {m}/started-{name}; while [ ! -f {m}/go ]; do sleep 0.1; done\n"
        )
    };
    let (one, two) = (slow("one"), slow("two"));
    let mut lan = Lan::new().unwrap();
    let svc = service(&lan, &[("one.yml", &one), ("two.yml", &two)], "");
    let limit = ["--max-in-flight", "1"];
    let (_first_home, _first_host, first) = runner(&mut lan, &svc.url, &limit);
    let (_second_home, _second_host, second) = runner(&mut lan, &svc.url, &limit);

    assert_eq!(
        deliver(&svc.addr, "d-limit", "push", &push_payload(&svc.sha), None).0,
        202
    );
    let started = || std::fs::read_dir(marks.path()).unwrap().count();
    eventually(Duration::from_secs(60), "a run to start", || {
        (started() == 1).then_some(())
    });
    // Two runners with room, two runs queued: the limit keeps the second waiting.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(started(), 1);
    std::fs::write(marks.path().join("go"), "").unwrap();
    eventually(Duration::from_secs(60), "both runs to complete", || {
        let runs = svc.github.check_runs();
        (runs.len() == 2
            && runs
                .iter()
                .all(|r| r.conclusion.as_deref() == Some("success")))
        .then_some(())
    });
    stop_all(vec![first, second, svc.serve]);
}

#[test]
fn a_run_no_runner_serves_fails_saying_which_label_is_missing() {
    let mut lan = Lan::new().unwrap();
    let svc = service(&lan, &[("gpu.yml", GPU)], "");
    // A short ack wait and few attempts: the run is handed back sooner, and given up sooner.
    let (_home, _host, plain) = runner(
        &mut lan,
        &svc.url,
        &["--ack-wait", "1", "--max-attempts", "1"],
    );
    assert_eq!(
        deliver(&svc.addr, "d-gpu", "push", &push_payload(&svc.sha), None).0,
        202
    );
    let failed = eventually(Duration::from_secs(90), "the run to fail", || {
        let events = svc.server.events(&svc.url);
        of(&events, "workflow.run.failed")
            .first()
            .map(|e| (*e).clone())
    });
    let error = failed["payload"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("runs-on label 'gpu'") && error.contains("--labels gpu"),
        "{failed}"
    );
    let events = svc.server.events(&svc.url);
    assert!(of(&events, "workflow.job.started").is_empty());
    assert!(svc.github.check_runs().is_empty());
    stop_all(vec![plain, svc.serve]);
}
