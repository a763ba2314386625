//! Fleets through several workers: one VM and one complete event per request, stages in order.

use crate::support::*;
use azlin_core::event::{Event, Stage};
use azlin_testkit::NatsServer;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The position of an event in the life of a create, for checking order.
fn rank(event: &Event) -> (Stage, u8) {
    match event {
        Event::CreateStatus(s) => (s.stage, 0),
        // Published between "waiting for SSH" and "SSH ready".
        Event::SshVerified(_) => (Stage::WaitingForSsh, 1),
        Event::CloudInitComplete(_) => (Stage::WaitingForCloudInit, 1),
        Event::CreateComplete(_) | Event::CreateFailed(_) => (Stage::Deleting, 9),
        other => panic!("unexpected event {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_vms_through_two_workers() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let requester = bus(&server).await;
    let w1 = start_worker(bus(&server).await, &home, sim(300, 0.0), "w1", 4, 3);
    let w2 = start_worker(bus(&server).await, &home, sim(300, 0.0), "w2", 4, 3);
    let mut subscription = azlin_control::Bus::subscribe(requester.as_ref())
        .await
        .expect("subscribe");

    let requests = submit_fleet(&requester, &home, "fleet", 8).await;
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(60)).await;

    assert_one_complete_each(&seen, &requests);
    let trail = audit_trail(&requester).await;
    assert_one_complete_each(&trail, &requests);

    // Per VM, events arrive in stage order, and the complete event is the last.
    let mut per_request: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for event in &seen {
        per_request
            .entry(event.request_id().to_string())
            .or_default()
            .push(event);
    }
    for (id, events) in &per_request {
        let ranks: Vec<_> = events.iter().map(|e| rank(e)).collect();
        assert!(
            ranks.windows(2).all(|w| w[0] < w[1]),
            "events of {id} out of order: {ranks:?}"
        );
        assert!(matches!(events[0], Event::CreateStatus(s) if s.stage == Stage::Accepted));
        assert!(matches!(events.last(), Some(Event::CreateComplete(_))));
    }

    // One VM per request, made by the request it belongs to; both workers took a share.
    let vms = home.sim_vms();
    assert_eq!(vms.len(), 8, "{vms:?}");
    let workers: BTreeSet<String> = seen
        .iter()
        .filter_map(|e| match e {
            Event::CreateStatus(s) => Some(s.worker.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        workers,
        BTreeSet::from(["w1".to_string(), "w2".to_string()])
    );

    w1.stop().await;
    w2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_request_goes_to_another_worker_and_resumes() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let requester = bus(&server).await;
    let mut subscription = azlin_control::Bus::subscribe(requester.as_ref())
        .await
        .expect("subscribe");
    let first = start_worker(bus(&server).await, &home, sim(3000, 0.0), "first", 2, 3);
    let requests = submit_fleet(&requester, &home, "handed", 1).await;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(20), subscription.next())
            .await
            .expect("progress")
            .expect("open");
        if matches!(&event, Event::CreateStatus(s) if s.stage == Stage::Provisioning) {
            break;
        }
    }
    // A second signal: give up what is in flight, at once.
    first.worker.abandon();
    first.stop().await;
    let second = start_worker(bus(&server).await, &home, sim(3000, 0.0), "second", 2, 3);
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(30)).await;
    assert_one_complete_each(&seen, &requests);
    let resumed = seen
        .iter()
        .any(|e| matches!(e, Event::CreateStatus(s) if s.worker == "second" && s.attempt >= 2));
    assert!(resumed, "the second worker took a later attempt: {seen:?}");
    assert_eq!(home.sim_vms(), ["handed-1"]);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_redelivered_after_an_interrupted_claim_resumes_it() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let requester = bus(&server).await;
    let mut subscription = azlin_control::Bus::subscribe(requester.as_ref())
        .await
        .expect("subscribe");
    let requests = submit_fleet(&requester, &home, "interrupted", 1).await;
    let request = &requests[0];
    // A worker takes the request, claims the VM's name, and is killed before the VM's record
    // exists: the server redelivers the request after its ack wait.
    let delivery = azlin_control::Bus::next_request(requester.as_ref())
        .await
        .expect("delivery");
    azlin_providers::record::RecordStore::unsynced(home.sim_root())
        .claim(request.name(), request.request_id())
        .expect("claim");
    drop(delivery);

    let worker = start_worker(bus(&server).await, &home, sim(0, 0.0), "next", 1, 3);
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(30)).await;
    assert_one_complete_each(&seen, &requests);
    let resumed = seen.iter().any(
        |e| matches!(e, Event::CreateStatus(s) if s.stage == Stage::Accepted && s.attempt == 2),
    );
    assert!(resumed, "the redelivery made it: {seen:?}");
    assert_eq!(home.sim_vms(), ["interrupted-1"]);
    worker.stop().await;
}
