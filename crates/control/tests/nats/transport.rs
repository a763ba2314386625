//! The transport itself: followers from "now", terminal events once, redeliveries of ended
//! requests settled without being redone.

use crate::support::*;
use azlin_control::Bus;
use azlin_core::ProviderKind;
use azlin_core::event::{CreateComplete, Event, Request, SCHEMA, Stage, Status, VmEndpoint};
use azlin_testkit::NatsServer;
use std::collections::BTreeMap;
use std::time::Duration;

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
