//! The server crashes and comes back mid-run: file storage keeps requests and events, clients
//! reconnect, and every request still ends exactly once.

use crate::support::*;
use azlin_control::Bus;
use azlin_core::event::{Event, Stage};
use azlin_testkit::NatsServer;
use azlin_testkit::nats::Sync;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_mid_run_loses_no_request_and_no_event() {
    let mut server = NatsServer::start_with(Sync::Always).expect("nats-server");
    let home = Home::new();
    let requester = bus(&server).await;
    let w1 = start_worker(bus(&server).await, &home, sim(1500, 0.0), "w1", 4, 3);
    let w2 = start_worker(bus(&server).await, &home, sim(1500, 0.0), "w2", 4, 3);
    let mut subscription = requester.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&requester, &home, "phoenix", 8).await;

    // Kill the server while VMs are booting, and start it again on the same storage.
    let mut before = Vec::new();
    while !before
        .iter()
        .any(|e| matches!(e, Event::CreateStatus(s) if s.stage == Stage::Provisioning))
    {
        before.push(
            tokio::time::timeout(Duration::from_secs(20), subscription.next())
                .await
                .expect("progress before the crash")
                .expect("open"),
        );
    }
    server.kill().expect("kill nats-server");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.start_again().expect("start nats-server again");

    let pending = ids(&requests);
    let already: std::collections::HashSet<String> = before
        .iter()
        .filter(|e| e.is_terminal())
        .map(|e| e.request_id().to_string())
        .collect();
    let pending = pending.difference(&already).cloned().collect();
    let mut seen = before;
    seen.extend(collect_until_ended(&mut subscription, pending, Duration::from_secs(90)).await);

    assert_one_complete_each(&seen, &requests);
    let trail = audit_trail(&requester).await;
    assert_one_complete_each(&trail, &requests);
    // Nothing the follower saw is missing from the trail.
    let trail_statuses = trail.iter().filter(|e| !e.is_terminal()).count();
    let seen_statuses = seen.iter().filter(|e| !e.is_terminal()).count();
    assert!(
        trail_statuses >= seen_statuses,
        "{trail_statuses} < {seen_statuses}"
    );
    assert_eq!(
        home.sim_vms().len(),
        8,
        "one VM per request: {:?}",
        home.sim_vms()
    );
    w1.stop().await;
    w2.stop().await;
}
