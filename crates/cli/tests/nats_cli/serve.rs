//! `azlin serve`: records events into the store, keeps deployment-state.yaml current, answers
//! GET /healthz and /vms.

use crate::support::*;
use azlin_testkit::NatsServer;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::Duration;

/// Starts `azlin serve` with extra flags and returns it with its HTTP address.
fn serve(azlin: &Azlin, flags: &[&str]) -> (Proc, String) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(flags);
    let serve = azlin.spawn(&args);
    let addr = serve_address(&serve);
    (serve, addr)
}

fn ready_vms(addr: &str, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(20), "the VMs to be ready", || {
        let (status, body) = http_get(addr, "/vms");
        assert_eq!(status, 200, "{body}");
        let vms: Vec<Value> = serde_json::from_str(&body).unwrap();
        (vms.len() == n && vms.iter().all(|v| v["state"] == "ready")).then_some(vms)
    })
}

#[test]
fn serve_over_nats_records_events_and_answers_http() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let launcher = Azlin::new();
    let _worker = launcher.worker(&url, &[]);
    let observer = Azlin::new();
    let (serve, addr) = serve(&observer, &["--nats", &url]);

    launcher
        .run(&new_args("sim", "seen", &["--count", "2", "--nats", &url]))
        .expect(0);
    // `/vms` reads the shared key-value store, which the worker writes: VMs shown ready there
    // say nothing about how far `serve` has got with the events. Wait for that separately.
    let vms = ready_vms(&addr, 2);
    assert_eq!(vms[0]["name"], "seen-1");
    let health = eventually(
        Duration::from_secs(20),
        "serve to record the events",
        || {
            let (status, health) = http_get(&addr, "/healthz");
            assert_eq!(status, 200, "{health}");
            let health: Value = serde_json::from_str(&health).unwrap();
            (health["events_recorded"].as_u64().unwrap_or(0) >= 2 * 10).then_some(health)
        },
    );
    assert_eq!(health["status"], "ok");
    assert_eq!(health["transport"], "nats");
    let state_file = observer.state_dir().join("deployment-state.yaml");
    eventually(Duration::from_secs(10), "the state file", || {
        let text = std::fs::read_to_string(&state_file).ok()?;
        (text.contains("seen-1") && text.contains("seen-2")).then_some(())
    });
    assert_eq!(http_get(&addr, "/nowhere").0, 404);

    serve.signal(Signal::SIGTERM);
    serve.wait(Duration::from_secs(10)).expect(0);
}

#[test]
fn serve_in_process_keeps_the_state_file_and_http_view() {
    let azlin = Azlin::new();
    let (serve, addr) = serve(&azlin, &[]);
    azlin
        .run(&new_args("sim", "here", &["--count", "2"]))
        .expect(0);
    ready_vms(&addr, 2);
    let (_, health) = http_get(&addr, "/healthz");
    assert!(health.contains("in-process"), "{health}");
    // The cache and artifact services run for as long as serve does, and want a job's token.
    let health: Value = serde_json::from_str(&health).unwrap();
    let port = health["services_port"].as_u64().unwrap();
    let services = format!("127.0.0.1:{port}");
    assert_eq!(
        http_get(&services, "/_apis/artifactcache/cache?keys=k&version=v").0,
        401
    );
    serve.signal(Signal::SIGINT);
    serve.wait(Duration::from_secs(10)).expect(0);
    let text = std::fs::read_to_string(azlin.state_dir().join("deployment-state.yaml")).unwrap();
    assert!(text.contains("here-1") && text.contains("here-2"), "{text}");
}

#[test]
fn serve_refuses_a_bad_listen_address() {
    let azlin = Azlin::new();
    let run = azlin.run(&["serve", "--listen", "localhost"]).expect(64);
    assert!(run.stderr.contains("--listen"), "{}", run.stderr);
}
