//! Stopping workers: the first SIGTERM lets requests in flight finish; a second hands them to
//! another worker at once. And what `azlin worker` refuses.

use crate::support::*;
use azlin_testkit::NatsServer;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::{Duration, Instant};

/// Waits until worker `id` reports `stage` for some request.
fn wait_for_stage(azlin: &Azlin, url: &str, id: &str, stage: &str) {
    eventually(
        Duration::from_secs(30),
        "the worker to start a create",
        || {
            let events = azlin.events(url);
            of(&events, "vm.create.status")
                .iter()
                .any(|e| e["payload"]["worker"] == id && e["payload"]["stage"] == stage)
                .then_some(())
        },
    );
}

/// The worker and attempt of the last status event.
fn last_status(events: &[Value]) -> (String, u64) {
    let last = of(events, "vm.create.status").pop().unwrap().clone();
    (
        last["payload"]["worker"].as_str().unwrap().to_string(),
        last["payload"]["attempt"].as_u64().unwrap(),
    )
}

#[test]
fn sigterm_lets_the_request_in_flight_finish() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let azlin = Azlin::new().env("AZLIN_SIM_BOOT_MS", "2000");
    let worker = azlin.worker(&url, &[]);
    let id = worker_id(&worker);
    let new = azlin.spawn(&new_args("sim", "calm", &["--nats", &url]));
    wait_for_stage(&azlin, &url, &id, "provisioning");
    worker.signal(Signal::SIGTERM);
    let stopped = worker.wait(Duration::from_secs(30)).expect(0);
    assert!(
        stopped.stderr.contains("finishing the requests in flight"),
        "{}",
        stopped.stderr
    );
    new.wait(Duration::from_secs(10)).expect(0);
    let events = azlin.events(&url);
    assert_eq!(of(&events, "vm.create.complete").len(), 1);
    assert_eq!(
        last_status(&events),
        (id, 1),
        "the first worker finished it"
    );
}

#[test]
fn a_second_signal_hands_the_request_to_another_worker() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let azlin = Azlin::new().env("AZLIN_SIM_BOOT_MS", "4000");
    let first = azlin.worker(&url, &[]);
    let id = worker_id(&first);
    let new = azlin.spawn(&new_args("sim", "handed", &["--nats", &url]));
    wait_for_stage(&azlin, &url, &id, "provisioning");
    let asked = Instant::now();
    first.signal(Signal::SIGTERM);
    first.wait_for_stderr("finishing the requests in flight", Duration::from_secs(10));
    first.signal(Signal::SIGINT);
    let stopped = first.wait(Duration::from_secs(10)).expect(0);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "left before its 4 s create would have finished"
    );
    assert!(
        stopped
            .stderr
            .contains("handing the requests in flight back"),
        "{}",
        stopped.stderr
    );

    let second = azlin.worker(&url, &[]);
    let second_id = worker_id(&second);
    new.wait(Duration::from_secs(30)).expect(0);
    let events = azlin.events(&url);
    assert_eq!(of(&events, "vm.create.complete").len(), 1);
    let (by, attempt) = last_status(&events);
    assert_eq!(by, second_id);
    assert!(attempt >= 2, "{attempt}");
    assert_eq!(azlin.sim_vms().len(), 1);
}

#[test]
fn a_worker_needs_nats_and_sane_flags() {
    let azlin = Azlin::new();
    let run = azlin.run(&["worker"]).expect(64);
    assert!(run.stderr.contains("--nats"), "{}", run.stderr);
    for flags in [
        ["--concurrency", "0"],
        ["--max-attempts", "0"],
        ["--ack-wait", "0"],
    ] {
        let mut args = vec!["worker", "--nats", "nats://127.0.0.1:9"];
        args.extend_from_slice(&flags);
        azlin.run(&args).expect(64);
    }
    // A server that is not there is an error, not a hang.
    let run = azlin
        .run(&["worker", "--nats", "nats://127.0.0.1:9"])
        .expect(1);
    assert!(
        run.stderr.contains("cannot reach the NATS server"),
        "{}",
        run.stderr
    );
}
