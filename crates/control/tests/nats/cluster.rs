//! A 3-node JetStream cluster with every stream and bucket on 3 replicas (`[nats] replicas`):
//! the node leading the request stream is killed in the middle of a 32-VM fleet; every VM is
//! made once, and the node catches up when it comes back.

use crate::support::*;
use azlin_control::bus::nats::NatsBus;
use azlin_control::bus::nats::topology::{EVENTS_STREAM, REQUESTS_STREAM};
use azlin_core::event::{Event, Stage};
use azlin_core::nats::NatsConnection;
use azlin_testkit::{NatsCluster, ServerOptions};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection with 3 replicas. Right after the meta leader is elected the leader may not
/// know every peer yet ("no suitable peers"): the streams are set up again until it does.
async fn cluster_bus(cluster: &NatsCluster) -> Arc<NatsBus> {
    let mut connection = NatsConnection::from_url(&cluster.url()).expect("cluster URL");
    connection.replicas = 3;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match NatsBus::connect_with(&connection, settings()).await {
            Ok(bus) => return Arc::new(bus),
            Err(e) if Instant::now() < deadline && e.to_string().contains("peer") => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("connect to the cluster: {e}"),
        }
    }
}

/// Whether `stream` has a leader and two current replicas.
async fn replicated(bus: &NatsBus, stream: &str) -> bool {
    let Ok(mut stream) = bus.jetstream().get_stream(stream).await else {
        return false;
    };
    let Ok(info) = stream.info().await else {
        return false;
    };
    info.cluster.as_ref().is_some_and(|cluster| {
        cluster.leader.is_some()
            && cluster.replicas.len() == 2
            && cluster
                .replicas
                .iter()
                .all(|peer| peer.current && !peer.offline)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_survives_the_loss_of_the_stream_leader() {
    let started = Instant::now();
    let mut cluster = NatsCluster::start(3, ServerOptions::default()).expect("3-node cluster");
    let home = Home::new();
    let requester = cluster_bus(&cluster).await;
    let info = requester
        .jetstream()
        .get_stream(REQUESTS_STREAM)
        .await
        .expect("request stream")
        .info()
        .await
        .expect("stream info")
        .clone();
    assert_eq!(info.config.num_replicas, 3);
    let w1 = start_worker(
        cluster_bus(&cluster).await,
        &home,
        sim(1500, 0.0),
        "w1",
        16,
        3,
    );
    let w2 = start_worker(
        cluster_bus(&cluster).await,
        &home,
        sim(1500, 0.0),
        "w2",
        16,
        3,
    );
    let mut subscription = azlin_control::Bus::subscribe(requester.as_ref())
        .await
        .expect("subscribe");
    let requests = submit_fleet(&requester, &home, "ha", 32).await;

    // Once VMs are booting, kill the node leading the request stream.
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|e| matches!(e, Event::CreateStatus(s) if s.stage == Stage::Provisioning))
    {
        let event = tokio::time::timeout(Duration::from_secs(30), subscription.next())
            .await
            .expect("progress")
            .expect("open");
        seen.push(event);
    }
    let mut stream = requester
        .jetstream()
        .get_stream(REQUESTS_STREAM)
        .await
        .expect("request stream");
    let leader = stream
        .info()
        .await
        .expect("stream info")
        .cluster
        .clone()
        .and_then(|c| c.leader)
        .expect("a stream leader");
    let victim = cluster
        .nodes
        .iter()
        .position(|node| leader == format!("azlin-test-{}", node.port()))
        .expect("the leader is a node of the cluster");
    cluster.nodes[victim].kill().expect("kill the leader");
    let killed_at = started.elapsed();

    let pending = ids(&requests);
    let rest = collect_until_ended(&mut subscription, pending, Duration::from_secs(120)).await;
    seen.extend(rest);
    let all_done = started.elapsed();

    // Every request ended once, with one VM each.
    let trail = audit_trail(&requester).await;
    let ends = terminals(&trail);
    let lost = requests
        .iter()
        .filter(|r| !ends.contains_key(r.request_id()))
        .count();
    let duplicated = ends.values().filter(|e| e.len() > 1).count();
    let vms = home.sim_vms();
    eprintln!(
        "cluster fleet: killed {leader} at {killed_at:?}; 32 requests, {} VMs, lost {lost}, \
         duplicated {duplicated}, all ended at {all_done:?}",
        vms.len()
    );
    assert_eq!((lost, duplicated), (0, 0));
    assert_one_complete_each(&trail, &requests);
    assert_eq!(vms.len(), 32, "{vms:?}");

    // The node comes back and catches up: both streams have all replicas current again.
    cluster.nodes[victim]
        .start_again()
        .expect("restart the node");
    for name in [REQUESTS_STREAM, EVENTS_STREAM] {
        eventually(
            Duration::from_secs(60),
            &format!("{name} replicas current"),
            || replicated(&requester, name),
        )
        .await;
    }
    eprintln!(
        "cluster fleet: node back and current at {:?}",
        started.elapsed()
    );
    w1.stop().await;
    w2.stop().await;
}
