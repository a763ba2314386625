//! Dead letters: unreadable messages, requests that always fail, and requests whose workers
//! kept dying (the server's max-deliveries advisory, caught by the janitor).

use crate::support::*;
use azlin_control::Bus;
use azlin_control::bus::DeadLetter;
use azlin_core::event::{Event, Stage};
use azlin_testkit::NatsServer;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::watch;

/// The dead letters, once there are `n`.
async fn dead_letters(bus: &azlin_control::NatsBus, n: usize) -> Vec<DeadLetter> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let letters = bus.dead_letters().await.expect("dead letters");
        if letters.len() >= n || tokio::time::Instant::now() > deadline {
            assert_eq!(letters.len(), n, "{letters:?}");
            return letters;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_schema_messages_are_dead_lettered_and_the_worker_goes_on() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let worker = start_worker(self::bus(&server).await, &home, sim(0, 0.0), "w", 2, 3);
    let mut subscription = bus.subscribe().await.expect("subscribe");

    bus.submit_raw("vm.create.request", b"{not json".to_vec())
        .await
        .expect("raw");
    bus.submit_raw(
        "vm.create.request",
        br#"{"schema":7,"request_id":"future","spec":{}}"#.to_vec(),
    )
    .await
    .expect("raw");
    // The worker is still serving afterwards.
    let requests = submit_fleet(&bus, &home, "after", 1).await;
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(30)).await;
    assert_one_complete_each(&seen, &requests);

    // The worker takes two requests at a time: the letters may be stored in either order.
    let mut letters = dead_letters(&bus, 2).await;
    letters.sort_by_key(|l| l.payload != "{not json");
    assert!(letters[0].reason.contains("malformed"), "{letters:?}");
    assert_eq!(letters[0].payload, "{not json");
    assert!(
        letters[1].reason.contains("unknown schema version 7"),
        "{letters:?}"
    );
    assert!(
        letters
            .iter()
            .all(|l| l.attempts == 1 && l.subject == "vm.create.request")
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_always_fails_ends_failed_cleaned_up_and_dead_lettered() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let worker = start_worker(self::bus(&server).await, &home, sim(100, 1.0), "w", 2, 3);
    let mut subscription = bus.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&bus, &home, "doomed", 1).await;
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(30)).await;

    let failed: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::CreateFailed(f) => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].attempt, 3, "after the configured attempts");
    assert!(failed[0].cleaned_up, "{:?}", failed[0]);
    assert!(!failed[0].removed.is_empty());
    let retries = seen
        .iter()
        .filter(|e| matches!(e, Event::CreateStatus(s) if s.stage == Stage::Retrying))
        .count();
    assert_eq!(retries, 2);
    assert!(
        home.sim_vms().is_empty(),
        "no sim VM folder left: {:?}",
        home.sim_vms()
    );

    let letters = dead_letters(&bus, 1).await;
    assert_eq!(letters[0].attempts, 3);
    assert!(
        letters[0].reason.contains("failed after 3 attempts"),
        "{letters:?}"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_workers_keep_dying_is_dead_lettered_by_the_janitor() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = std::sync::Arc::new(
        azlin_control::NatsBus::connect(
            &server.url(),
            azlin_control::NatsSettings {
                ack_wait: Duration::from_secs(1),
                max_deliver: 2,
                ..settings()
            },
        )
        .await
        .expect("connect"),
    );
    let (stop_janitor, stopped) = watch::channel(false);
    let janitor = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.run_janitor(stopped).await })
    };
    let follower = self::bus(&server).await;
    let mut subscription = follower.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&bus, &home, "cursed", 1).await;

    // Two workers take it in turn and die without a word (no ack, no progress).
    for attempt in 1..=2 {
        let delivery = tokio::time::timeout(Duration::from_secs(20), bus.next_request())
            .await
            .expect("delivered in time")
            .expect("delivery");
        assert_eq!(delivery.attempt, attempt);
        drop(delivery);
    }
    // A live worker keeps asking; the server gives up on the request instead of delivering it.
    let asking = {
        let bus = bus.clone();
        tokio::spawn(async move { bus.next_request().await.map(|d| d.attempt) })
    };
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(30)).await;
    let Some(Event::CreateFailed(failed)) = seen.last() else {
        panic!("expected vm.create.failed, saw {seen:?}");
    };
    assert!(
        failed.error.message.contains("delivered 2 times"),
        "{failed:?}"
    );
    assert!(!failed.cleaned_up);

    let letters = dead_letters(&follower, 1).await;
    assert_eq!(letters[0].attempts, 2);
    assert!(
        letters[0].reason.contains("stopped each time"),
        "{letters:?}"
    );
    let js = follower.jetstream().clone();
    eventually(
        Duration::from_secs(10),
        "the request to leave the queue",
        || {
            let js = js.clone();
            async move {
                let mut requests = js.get_stream("AZLIN_REQUESTS").await.expect("stream");
                requests.info().await.expect("info").state.messages == 0
            }
        },
    )
    .await;
    assert!(
        !asking.is_finished(),
        "the request was never delivered a third time"
    );
    asking.abort();
    stop_janitor.send_replace(true);
    janitor.await.expect("janitor task").expect("janitor");
    let ended: HashSet<_> = ids(&requests);
    for id in ended {
        assert!(follower.has_ended(&id).await.expect("ended?"));
    }
}
