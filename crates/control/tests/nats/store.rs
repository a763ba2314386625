//! The JetStream key-value state store.

use crate::support::*;
use azlin_control::store::StoreError;
use azlin_control::store::{Claim, POOL_TAG, RecordState};
use azlin_control::{Bus, KvStore, SqliteStore, StateStore};
use azlin_core::VmName;
use azlin_core::event::{CreateComplete, CreateRequested, Event, Request, SCHEMA, VmEndpoint};
use azlin_core::{ProviderKind, VmSpec};
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

/// A pool VM of pool `ci`, booted and ready: its create recorded and completed.
async fn pooled(store: &dyn StateStore, name: &str) {
    let vm_name = VmName::parse(name).expect("name");
    let mut spec = VmSpec::new(vm_name.clone(), ProviderKind::Sim);
    spec.tags.insert(POOL_TAG.into(), "ci".into());
    let request_id = format!("r-{name}");
    store
        .record_request(&Request::Create(CreateRequested {
            schema: SCHEMA,
            request_id: request_id.clone(),
            spec,
            ssh_public_key: String::new(),
            requested_by: "test".into(),
            created_at: azlin_core::now_rfc3339(),
        }))
        .await
        .expect("record");
    store
        .apply(&Event::CreateComplete(CreateComplete {
            schema: SCHEMA,
            request_id,
            vm: VmEndpoint {
                name: vm_name,
                provider: ProviderKind::Sim,
                address: "/nowhere".into(),
                ssh_port: 22,
                user: "u".into(),
                host_key: String::new(),
            },
            timings: Default::default(),
            warnings: Vec::new(),
            details: Default::default(),
        }))
        .await
        .expect("complete");
}

/// Takers, each with its own connection to the store (as processes, or hosts, have), claim
/// pool VMs at once until none is left: each VM goes to exactly one taker.
async fn race_for_pool_vms(stores: Vec<Arc<dyn StateStore>>, vms: usize) {
    for i in 0..vms {
        pooled(stores[0].as_ref(), &format!("pool-ci-{i:02}")).await;
    }
    assert!(
        stores[0]
            .vms()
            .await
            .expect("vms")
            .iter()
            .all(|r| r.state == RecordState::Pooled)
    );
    let barrier = Arc::new(tokio::sync::Barrier::new(stores.len()));
    let takers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(t, store)| {
            let (store, barrier) = (store.clone(), barrier.clone());
            tokio::spawn(async move {
                let claim = Claim::by_this_process(format!("taker-{t}"), "host");
                barrier.wait().await;
                let mut got = Vec::new();
                while let Some(record) = store.claim("ci", None, &claim).await.expect("claim") {
                    assert_eq!(record.claim.as_ref(), Some(&claim));
                    got.push(record.name.to_string());
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for taker in takers {
        all.extend(taker.await.expect("taker"));
    }
    let distinct: std::collections::BTreeSet<_> = all.iter().collect();
    assert_eq!(all.len(), vms, "{all:?}");
    assert_eq!(distinct.len(), vms, "a VM went to two takers: {all:?}");
    let records = stores[0].vms().await.expect("vms");
    assert!(
        records
            .iter()
            .all(|r| r.state == RecordState::Ready && r.claim.is_some())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_pool_vm_in_sqlite() {
    let home = Home::new();
    let path = home.dir.path().join("state.db");
    let stores = (0..6)
        .map(|_| Arc::new(SqliteStore::open(&path).expect("open")) as Arc<dyn StateStore>)
        .collect();
    race_for_pool_vms(stores, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_pool_vm_in_nats_kv() {
    let server = NatsServer::start().expect("nats-server");
    let stores: Vec<Arc<dyn StateStore>> = (0..4)
        .map(|_| Arc::new(KvStore::lazy(server.url(), settings())) as Arc<dyn StateStore>)
        .collect();
    race_for_pool_vms(stores, 16).await;
}
