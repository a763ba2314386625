//! The transport itself: followers from "now", terminal events once, redeliveries of ended
//! requests settled without being redone.

use crate::support::*;
use azlin_control::{Bus, NatsSettings, Orchestrator, SqliteStore};
use azlin_core::ProviderKind;
use azlin_core::event::{CreateComplete, Event, Request, SCHEMA, Stage, Status, VmEndpoint};
use azlin_testkit::NatsServer;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn status(request: &Request, stage: Stage) -> Event {
    Event::CreateStatus(Status {
        schema: SCHEMA,
        request_id: request.request_id().to_string(),
        name: request.name().clone(),
        stage,
        message: "test".into(),
        attempt: 1,
        worker: "test".into(),
        at: azlin_core::now_rfc3339(),
        warning: false,
    })
}

fn complete(request: &Request) -> Event {
    Event::CreateComplete(CreateComplete {
        schema: SCHEMA,
        request_id: request.request_id().to_string(),
        vm: VmEndpoint {
            name: request.name().clone(),
            provider: ProviderKind::Sim,
            address: "/nowhere".into(),
            ssh_port: 22,
            user: "azureuser".into(),
            host_key: String::new(),
        },
        timings: BTreeMap::new(),
        warnings: vec![],
        details: BTreeMap::new(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn followers_start_from_now_and_the_trail_from_the_start() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let request = create("old", &home.identity);
    bus.publish(&status(&request, Stage::Accepted))
        .await
        .expect("publish");
    // Progress is pipelined: make sure it is stored before "now".
    bus.flush_events().await.expect("flush");

    let mut subscription = bus.subscribe().await.expect("subscribe");
    bus.publish(&status(&request, Stage::Provisioning))
        .await
        .expect("publish");
    let first = tokio::time::timeout(Duration::from_secs(10), subscription.next())
        .await
        .expect("an event")
        .expect("open");
    assert!(
        matches!(&first, Event::CreateStatus(s) if s.stage == Stage::Provisioning),
        "a follower sees only what comes after it subscribed: {first:?}"
    );

    let trail = audit_trail(&bus).await;
    assert_eq!(trail.len(), 2);
    let logged = bus.events_after(1).await.expect("after 1");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].seq, 2);
    assert_eq!(logged[0].subject, "vm.create.status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_event_is_stored_once() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let request = create("once", &home.identity);
    assert!(!bus.has_ended(request.request_id()).await.expect("ended?"));
    // Two workers finishing the same request (one thought dead) both publish its end.
    let other = self::bus(&server).await;
    bus.publish(&complete(&request)).await.expect("publish");
    other
        .publish(&complete(&request))
        .await
        .expect("publish again");
    let trail = audit_trail(&bus).await;
    assert_eq!(trail.len(), 1, "{trail:?}");
    assert!(bus.has_ended(request.request_id()).await.expect("ended?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_request_that_ended_is_not_redone() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let request = create("ended", &home.identity);
    bus.submit(&request).await.expect("submit");

    // A worker takes it, publishes its end, and dies before acknowledging.
    let delivery = bus.next_request().await.expect("delivery");
    assert_eq!(delivery.attempt, 1);
    bus.publish(&complete(&request)).await.expect("publish");
    drop(delivery);

    // The next worker gets it again after the ack wait and settles it without a create.
    let worker = start_worker(self::bus(&server).await, &home, sim(0, 0.0), "w", 2, 3);
    let stream = bus.jetstream().clone();
    eventually(
        Duration::from_secs(20),
        "the request to leave the queue",
        || {
            let js = stream.clone();
            async move {
                let mut requests = js.get_stream("AZLIN_REQUESTS").await.expect("stream");
                requests.info().await.expect("info").state.messages == 0
            }
        },
    )
    .await;
    worker.stop().await;
    assert!(
        home.sim_vms().is_empty(),
        "no VM made: {:?}",
        home.sim_vms()
    );
    let trail = audit_trail(&bus).await;
    assert_eq!(trail.len(), 1, "nothing published again: {trail:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_request_is_queued_once() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let request = create("dup", &home.identity);
    bus.submit(&request).await.expect("submit");
    bus.submit(&request).await.expect("submit again (a retry)");
    let mut stream = bus
        .jetstream()
        .get_stream("AZLIN_REQUESTS")
        .await
        .expect("stream");
    assert_eq!(stream.info().await.expect("info").state.messages, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_outlives_a_server_restart_and_stops_when_the_server_stays_away() {
    let mut server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let limit = Duration::from_secs(3);
    let bus = bus_with(
        &server,
        NatsSettings {
            follow_outage_limit: limit,
            ..settings()
        },
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(SqliteStore::open(&dir.path().join("state.db")).expect("store"));
    let orchestrator = Orchestrator::new(store, dir.path().join("deployment-state.yaml"));
    let mut subscription = bus.subscribe().await.expect("subscribe");
    // A request no worker will ever take.
    let request = create("forsaken", &home.identity);

    // A restart within the limit is no reason to stop following.
    server.restart().expect("restart nats-server");
    bus.publish(&status(&request, Stage::Accepted))
        .await
        .expect("publish after the restart");
    let event = tokio::time::timeout(Duration::from_secs(20), subscription.next())
        .await
        .expect("an event after the restart")
        .expect("still following");
    assert_eq!(event.request_id(), request.request_id());

    // The server goes away for good: the follow ends once the limit has passed, with the
    // request not ended, for the caller to report.
    server.kill().expect("kill nats-server");
    let gone = Instant::now();
    let pending = HashSet::from([request.request_id().to_string()]);
    let ended = tokio::time::timeout(
        Duration::from_secs(30),
        orchestrator.follow(&mut subscription, pending, |_| {}),
    )
    .await
    .expect("the follow ends when the server stays away");
    assert!(ended.is_empty(), "{ended:?}");
    let waited = gone.elapsed();
    assert!(
        waited >= limit && waited < limit + Duration::from_secs(10),
        "followed {waited:?} after the server went away (limit {limit:?})"
    );
}
