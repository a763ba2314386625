//! Fleets through worker processes: each request once, in stage order; workers SIGKILLed in
//! the middle of creates; a request that always fails.

use crate::support::*;
use azlin_testkit::{LAUNCH_MILESTONES, NatsServer};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// The order of an event in the life of a create.
fn rank(event: &Value) -> usize {
    let key = match event["subject"].as_str().unwrap() {
        "vm.create.status" => event["payload"]["stage"].as_str().unwrap(),
        other => other,
    };
    LAUNCH_MILESTONES
        .iter()
        .position(|s| *s == key)
        .unwrap_or_else(|| panic!("unexpected event {event}"))
}

#[test]
fn eight_vms_through_two_worker_processes() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let azlin = Azlin::new().env("AZLIN_SIM_BOOT_MS", "300");
    // One worker names the server with the flag, the other through the environment.
    let w1 = azlin.worker(&url, &["--concurrency", "4"]);
    let w2 = {
        let worker = azlin.spawn_env(
            &["worker", "--concurrency", "4"],
            &[("AZLIN_NATS_URL", &url)],
        );
        worker.wait_for_stderr("serving", Duration::from_secs(20));
        worker
    };
    let run = azlin
        .run_env(
            &new_args("sim", "fleet", &["--count", "8", "-o", "json"]),
            &[("AZLIN_NATS_URL", &url)],
        )
        .expect(0);
    let report = run.json();
    assert_eq!(report["vms"].as_array().unwrap().len(), 8, "{report}");
    assert!(report["failed"].as_array().unwrap().is_empty());

    let events = azlin.events(&url);
    let ends = terminals(&events);
    assert_eq!(ends.len(), 8);
    for (id, subjects) in &ends {
        assert_eq!(subjects, &["vm.create.complete"], "request {id}");
    }
    let mut per_request: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for event in &events {
        per_request
            .entry(event["payload"]["request_id"].as_str().unwrap().to_string())
            .or_default()
            .push(event);
    }
    for (id, events) in &per_request {
        let ranks: Vec<usize> = events.iter().map(|e| rank(e)).collect();
        assert!(ranks.windows(2).all(|w| w[0] < w[1]), "{id}: {ranks:?}");
        assert_eq!(ranks.first(), Some(&0));
        assert_eq!(ranks.last(), Some(&9));
    }
    let workers: BTreeSet<&str> = of(&events, "vm.create.status")
        .iter()
        .map(|e| e["payload"]["worker"].as_str().unwrap())
        .collect();
    assert_eq!(workers.len(), 2, "both workers took a share: {workers:?}");

    // One sim VM per request, made by that request.
    let vms = azlin.sim_vms();
    assert_eq!(vms.len(), 8);
    let ids: BTreeSet<&String> = ends.keys().collect();
    assert_eq!(vms.values().collect::<BTreeSet<_>>(), ids);

    // `list` reads the key-value store: another machine (another home) sees the fleet.
    let elsewhere = Azlin::new();
    write_nats_config(elsewhere.home.path(), &url);
    let listed = elsewhere.run(&["list", "-o", "json"]).expect(0).json();
    let rows = listed.as_array().unwrap();
    assert_eq!(rows.len(), 8, "{listed}");
    assert!(
        rows.iter()
            .all(|r| r["state"] == "ready" && r["provider"] == "sim"),
        "{listed}"
    );

    for worker in [w1, w2] {
        worker.signal(nix::sys::signal::Signal::SIGTERM);
        let stopped = worker.wait(Duration::from_secs(20)).expect(0);
        assert!(stopped.stderr.contains("stopped"), "{}", stopped.stderr);
    }
}

#[test]
fn workers_killed_mid_create_lose_nothing_and_make_no_vm_twice() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let azlin = Azlin::new().env("AZLIN_SIM_BOOT_MS", "3000");
    let new = azlin.spawn(&new_args(
        "sim",
        "hydra",
        &["--count", "3", "-o", "json", "--nats", &url],
    ));
    let flags = ["--concurrency", "4", "--ack-wait", "1"];
    let mut killed = Vec::new();
    for _ in 0..3 {
        let mut worker = azlin.worker(&url, &flags);
        let id = worker_id(&worker);
        // Wait until this worker is booting a VM, then kill it without warning.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let events = azlin.events(&url);
            let booting = of(&events, "vm.create.status").iter().any(|e| {
                e["payload"]["worker"] == id.as_str() && e["payload"]["stage"] == "provisioning"
            });
            if booting {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "worker {id} never started a create"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(500));
        worker.kill9();
        killed.push(id);
    }
    let survivor = azlin.worker(&url, &flags);
    let report = new.wait(Duration::from_secs(90)).expect(0).json();
    assert_eq!(report["vms"].as_array().unwrap().len(), 3, "{report}");

    let events = azlin.events(&url);
    assert!(of(&events, "vm.create.failed").is_empty());
    let ends = terminals(&events);
    assert_eq!(ends.len(), 3);
    assert!(
        ends.values().all(|s| s == &["vm.create.complete"]),
        "{ends:?}"
    );
    // Every killed worker had started creates that others finished.
    for id in &killed {
        assert!(
            of(&events, "vm.create.status")
                .iter()
                .any(|e| e["payload"]["worker"] == id.as_str()),
            "{id}"
        );
    }
    let completes = of(&events, "vm.create.complete");
    assert!(completes.iter().all(|e| {
        of(&events, "vm.create.status").iter().any(|s| {
            s["payload"]["request_id"] == e["payload"]["request_id"]
                && s["payload"]["attempt"].as_u64().unwrap() > 1
        })
    }));
    // One VM per request: none made twice, none left over.
    let vms = azlin.sim_vms();
    assert_eq!(vms.len(), 3, "{vms:?}");
    assert_eq!(
        vms.values().collect::<BTreeSet<_>>(),
        ends.keys().collect::<BTreeSet<_>>()
    );
    drop(survivor);
}

#[test]
fn an_always_failing_request_fails_after_the_configured_attempts_cleaned_up() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let azlin = Azlin::new()
        .env("AZLIN_SIM_FAIL_RATE", "1")
        .env("AZLIN_SIM_BOOT_MS", "50");
    let _worker = azlin.worker(&url, &["--max-attempts", "2"]);
    let run = azlin
        .run(&new_args("sim", "doomed", &["-o", "json", "--nats", &url]))
        .expect(4);
    let report = run.json();
    let failed = &report["failed"][0];
    assert_eq!(failed["cleaned_up"], true, "{report}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("simulated boot failure"),
        "{report}"
    );
    let events = azlin.events(&url);
    let failures = of(&events, "vm.create.failed");
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["payload"]["attempt"], 2);
    assert!(azlin.sim_vms().is_empty(), "no sim VM folder left");
    assert!(!azlin.sim_dir().join("doomed").exists());
    let letters = dead_letters(&url);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].attempts, 2);
    assert!(
        letters[0].reason.contains("failed after 2 attempts"),
        "{letters:?}"
    );
}
