//! The server crashes and comes back mid-run: file storage keeps requests and events, clients
//! reconnect, and every request still ends exactly once, with one VM, and no event lost.

use crate::support::*;
use azlin_control::Bus;
use azlin_core::VmProvider;
use azlin_core::event::{Event, Request, Stage};
use azlin_providers::sim::SimProvider;
use azlin_testkit::nats::Sync;
use azlin_testkit::{LAUNCH_MILESTONES, NatsServer};
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

/// The events of `request`, in order, up to and including its terminal event.
fn until_end<'a>(events: &'a [Event], request: &Request) -> Vec<&'a Event> {
    let mut own = Vec::new();
    for event in events
        .iter()
        .filter(|e| e.request_id() == request.request_id())
    {
        own.push(event);
        if event.is_terminal() {
            break;
        }
    }
    own
}

/// What a launch without repositories publishes, each at least once: its stages, SSH verified,
/// cloud-init complete, and the complete event.
fn milestones(events: &[&Event]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| match e {
            Event::CreateStatus(s) => s.stage.as_str().to_string(),
            other => other.subject().to_string(),
        })
        .collect()
}

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
    assert!(
        !before.iter().any(Event::is_terminal),
        "the crash came before any request ended: {before:?}"
    );
    // Longer than a boot and than the wait for a publish's confirmation (5 s): the VMs become
    // ready while the server is away, their progress events go unconfirmed and must be
    // published again (without that, this test loses events in nearly every run).
    tokio::time::sleep(Duration::from_millis(6000)).await;
    server.start_again().expect("start nats-server again");

    let mut seen = before;
    seen.extend(
        collect_until_ended(&mut subscription, ids(&requests), Duration::from_secs(90)).await,
    );

    // Every request ended once, complete, for the follower and on the audit trail.
    assert_one_complete_each(&seen, &requests);
    let trail = audit_trail(&requester).await;
    assert_one_complete_each(&trail, &requests);

    // No event was lost or stored twice: the trail holds each event once, the follower saw
    // exactly the trail's events of each request up to its end, and those cover every
    // milestone of a launch.
    let mut stored = HashSet::new();
    for event in &trail {
        assert!(stored.insert(event.encode()), "stored twice: {event:?}");
    }
    let expected: BTreeSet<String> = LAUNCH_MILESTONES.map(String::from).into();
    for request in &requests {
        let followed = until_end(&seen, request);
        let recorded = until_end(&trail, request);
        assert_eq!(followed, recorded, "events of {}", request.name());
        let published = milestones(&recorded);
        let missing: Vec<_> = expected.difference(&published).collect();
        assert!(
            missing.is_empty(),
            "{}: missing {missing:?}",
            request.name()
        );
    }

    // No request was lost: each is marked ended (just after its end is stored, so a follower
    // may see the end first) and acknowledged (the queue empties).
    for request in &requests {
        let requester = requester.clone();
        let id = request.request_id().to_string();
        eventually(
            Duration::from_secs(20),
            &format!("{} marked ended", request.name()),
            || {
                let (requester, id) = (requester.clone(), id.clone());
                async move { requester.has_ended(&id).await.expect("ended?") }
            },
        )
        .await;
    }
    let js = requester.jetstream().clone();
    eventually(
        Duration::from_secs(20),
        "every request acknowledged",
        || {
            let js = js.clone();
            async move {
                let mut queue = js.get_stream("AZLIN_REQUESTS").await.expect("stream");
                queue.info().await.expect("info").state.messages == 0
            }
        },
    )
    .await;

    // One VM per request: exactly the requested names, each made by its own request.
    let names: Vec<String> = requests.iter().map(|r| r.name().to_string()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(home.sim_vms(), sorted, "one VM per request");
    let vms = SimProvider::new(home.sim_root(), sim(0, 0.0));
    for request in &requests {
        let vm = vms
            .find_by_request(request.request_id())
            .await
            .expect("read the sim records")
            .unwrap_or_else(|| panic!("no VM for {}", request.name()));
        assert_eq!(&vm.name, request.name());
    }
    w1.stop().await;
    w2.stop().await;
}
