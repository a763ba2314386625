//! The JetStream key-value state store.

use crate::support::*;
use azlin_control::store::RecordState;
use azlin_control::store::StoreError;
use azlin_control::{Bus, KvStore, SqliteStore, StateStore};
use azlin_core::VmName;
use azlin_testkit::NatsServer;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_follow_the_events_and_the_trail_is_the_events_stream() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let bus = bus(&server).await;
    let store = KvStore::lazy(server.url(), settings());
    assert!(store.vms().await.expect("empty list").is_empty());

    let worker = start_worker(self::bus(&server).await, &home, sim(0, 0.0), "w", 2, 3);
    let mut subscription = bus.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&bus, &home, "kept", 2).await;
    for request in &requests {
        store.record_request(request).await.expect("record");
    }
    let creating = store.vms().await.expect("list");
    assert_eq!(creating.len(), 2);
    assert!(creating.iter().all(|r| r.state == RecordState::Creating));

    // Two followers (the CLI and `azlin serve`) record the same events.
    let other = KvStore::with_context(bus.jetstream().clone(), settings());
    let seen =
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(30)).await;
    let (a, b) = futures::join!(
        async {
            for event in &seen {
                store.apply(event).await.expect("apply");
            }
        },
        async {
            for event in &seen {
                other.apply(event).await.expect("apply");
            }
        }
    );
    let _ = (a, b);
    let ready = store.vms().await.expect("list");
    assert_eq!(ready.len(), 2);
    for record in &ready {
        assert_eq!(record.state, RecordState::Ready, "{record:?}");
        assert!(!record.address.is_empty());
    }
    // Each store's listing (its mirror of the bucket) shows what the other wrote.
    let view = |records: &[azlin_control::VmRecord]| -> Vec<_> {
        records
            .iter()
            .map(|r| {
                (
                    r.name.clone(),
                    r.state,
                    r.address.clone(),
                    r.request_id.clone(),
                )
            })
            .collect()
    };
    assert_eq!(view(&other.vms().await.expect("list")), view(&ready));
    let one = store
        .vm(&VmName::parse("kept-1").expect("name"))
        .await
        .expect("get")
        .expect("present");
    assert_eq!(one.request_id, requests[0].request_id());

    let trail = store.events(0).await.expect("trail");
    assert_eq!(trail.len(), seen.len());
    assert!(trail.windows(2).all(|w| w[0].seq < w[1].seq));

    store
        .forget(&VmName::parse("kept-2").expect("name"))
        .await
        .expect("forget");
    assert_eq!(store.vms().await.expect("list").len(), 1);
    worker.stop().await;
}

/// Two processes (`stores`, each with its own connection) record a create of one name at the
/// same moment, `rounds` times: exactly one wins, the other gets the name conflict, the loser
/// changes nothing, and the winner recording again is no conflict.
async fn race_for_one_name(stores: [Arc<dyn StateStore>; 2], home: &Home, rounds: usize) {
    for round in 0..rounds {
        let name = format!("contested-{round}");
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks = stores.clone().map(|store| {
            let (barrier, request) = (barrier.clone(), create(&name, &home.identity));
            tokio::spawn(async move {
                barrier.wait().await;
                (store.record_request(&request).await, request)
            })
        });
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        let (won, lost): (Vec<_>, Vec<_>) = outcomes.into_iter().partition(|(r, _)| r.is_ok());
        assert_eq!((won.len(), lost.len()), (1, 1), "round {round}");
        let winner = won[0].1.request_id();
        assert!(
            matches!(
                &lost[0].0,
                Err(StoreError::NameTaken { name: taken, request_id, state: RecordState::Creating })
                    if request_id == winner && taken.as_str() == name
            ),
            "{:?}",
            lost[0].0
        );
        let record = stores[1]
            .vm(&VmName::parse(&name).expect("name"))
            .await
            .expect("read")
            .expect("recorded");
        assert_eq!(record.request_id, winner, "the loser changed nothing");
        stores[0]
            .record_request(&won[0].1)
            .await
            .expect("record again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_processes_recording_one_name_at_once_exactly_one_wins_in_sqlite() {
    let home = Home::new();
    let path = home.dir.path().join("state.db");
    let stores =
        [0, 1].map(|_| Arc::new(SqliteStore::open(&path).expect("open")) as Arc<dyn StateStore>);
    race_for_one_name(stores, &home, 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_processes_recording_one_name_at_once_exactly_one_wins_in_nats_kv() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let stores =
        [0, 1].map(|_| Arc::new(KvStore::lazy(server.url(), settings())) as Arc<dyn StateStore>);
    for store in &stores {
        assert!(store.vms().await.expect("open").is_empty());
    }
    race_for_one_name(stores.clone(), &home, 10).await;
    // A name whose VM was deleted can be taken again.
    let name = VmName::parse("contested-0").expect("name");
    stores[0].forget(&name).await.expect("forget");
    stores[1]
        .record_request(&create("contested-0", &home.identity))
        .await
        .expect("a free name again");
}
