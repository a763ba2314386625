//! `azlin events`: the audit trail in-process (SQLite) and over NATS, as a table or JSON lines,
//! once or following.

use crate::support::*;
use azlin_testkit::NatsServer;
use nix::sys::signal::Signal;
use serde_json::Value;
use std::time::Duration;

fn completes_in(stdout: &str) -> usize {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["subject"] == "vm.create.complete")
        .count()
}

#[test]
fn in_process_events_are_the_sqlite_trail() {
    let azlin = Azlin::new();
    azlin.run(&["events"]).expect(0);
    let follow = azlin.spawn(&["events", "--follow", "-o", "json"]);
    azlin
        .run(&new_args("sim", "local", &["--count", "2"]))
        .expect(0);
    let trail = azlin.run(&["events", "-o", "json"]).expect(0).json_lines();
    assert_eq!(of(&trail, "vm.create.complete").len(), 2);
    assert!(
        trail
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    let table = azlin.run(&["events"]).expect(0).stdout;
    let header = table.lines().next().unwrap();
    assert!(
        header.contains("SEQ") && header.contains("SUBJECT"),
        "{table}"
    );
    assert!(
        table.contains("vm.create.complete") && table.contains("ready at"),
        "{table}"
    );

    eventually(
        Duration::from_secs(10),
        "the follower to print both VMs",
        || (completes_in(&follow.stdout()) == 2).then_some(()),
    );
    follow.signal(Signal::SIGTERM);
    follow.wait(Duration::from_secs(10)).expect(0);
}

#[test]
fn nats_events_from_the_start_and_following() {
    let server = NatsServer::start().unwrap();
    let url = server.url();
    let azlin = Azlin::new();
    let _worker = azlin.worker(&url, &[]);
    azlin
        .run(&new_args("sim", "before", &["--nats", &url]))
        .expect(0);
    let follow = azlin.spawn(&["events", "--follow", "-o", "json", "--nats", &url]);
    // The follower reads from the start, then goes on with what comes.
    eventually(Duration::from_secs(10), "the existing trail", || {
        (completes_in(&follow.stdout()) == 1).then_some(())
    });
    azlin
        .run(&new_args("sim", "after", &["--nats", &url]))
        .expect(0);
    eventually(Duration::from_secs(10), "the new event", || {
        (completes_in(&follow.stdout()) == 2).then_some(())
    });
    follow.signal(Signal::SIGINT);
    let followed = follow.wait(Duration::from_secs(10)).expect(0);
    let lines: Vec<Value> = followed
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["stored_at"].is_string()));

    let table = azlin.run(&["events", "--nats", &url]).expect(0).stdout;
    assert!(table.lines().next().unwrap().contains("SEQ"), "{table}");
    assert_eq!(table.lines().count(), lines.len() + 1, "{table}");
    // A closed pipe ends the listing quietly.
    let mut head = azlin
        .command(&["events", "--nats", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(head.stdout.take());
    let out = head.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
