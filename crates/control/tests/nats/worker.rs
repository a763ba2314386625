//! How a worker settles requests with the server: progress while a create or a delete outlasts
//! the ack wait (so the request is not redelivered to another worker), and a give-up that is
//! acknowledged only once its dead letter and its failure event are stored.

use crate::support::*;
use async_trait::async_trait;
use azlin_control::bus::{Acker, DeadLetter, Delivery};
use azlin_control::{Bus, BusError, NatsBus, NatsSettings, Subscription};
use azlin_core::event::{DeleteRequested, Event, Request, SCHEMA, Stage};
use azlin_core::{ProviderKind, VmName};
use azlin_testkit::NatsServer;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// An ack wait much shorter than the creates and deletes of these tests.
const ACK_WAIT: Duration = Duration::from_secs(1);

fn short_ack_wait() -> NatsSettings {
    NatsSettings {
        ack_wait: ACK_WAIT,
        ..settings()
    }
}

/// A [`NatsBus`] that counts the progress reports of the requests it delivers and fails some
/// operations on purpose: the next `fail_failed` publishes of `vm.create.failed` and the next
/// `fail_dead_letters` dead letters.
struct Faulty {
    nats: Arc<NatsBus>,
    progress: Arc<AtomicUsize>,
    fail_failed: AtomicUsize,
    fail_dead_letters: AtomicUsize,
}

impl Faulty {
    fn new(nats: Arc<NatsBus>) -> Arc<Faulty> {
        Self::failing(nats, 0, 0)
    }

    fn failing(nats: Arc<NatsBus>, failed: usize, dead_letters: usize) -> Arc<Faulty> {
        Arc::new(Faulty {
            nats,
            progress: Arc::new(AtomicUsize::new(0)),
            fail_failed: AtomicUsize::new(failed),
            fail_dead_letters: AtomicUsize::new(dead_letters),
        })
    }

    fn progress_reports(&self) -> usize {
        self.progress.load(Ordering::SeqCst)
    }
}

/// Takes one from `budget` if it is not used up: whether to fail this time.
fn fail_now(budget: &AtomicUsize) -> bool {
    budget
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn injected() -> BusError {
    BusError::Transport("injected failure".into())
}

struct CountingAcker {
    inner: Box<dyn Acker>,
    progress: Arc<AtomicUsize>,
}

#[async_trait]
impl Acker for CountingAcker {
    async fn ack(&self) -> Result<(), BusError> {
        self.inner.ack().await
    }

    async fn nak(&self, delay: Duration) -> Result<(), BusError> {
        self.inner.nak(delay).await
    }

    async fn in_progress(&self) -> Result<(), BusError> {
        self.progress.fetch_add(1, Ordering::SeqCst);
        self.inner.in_progress().await
    }
}

#[async_trait]
impl Bus for Faulty {
    async fn submit(&self, request: &Request) -> Result<(), BusError> {
        self.nats.submit(request).await
    }

    async fn publish(&self, event: &Event) -> Result<(), BusError> {
        if matches!(event, Event::CreateFailed(_)) && fail_now(&self.fail_failed) {
            return Err(injected());
        }
        self.nats.publish(event).await
    }

    async fn subscribe(&self) -> Result<Subscription, BusError> {
        self.nats.subscribe().await
    }

    async fn next_request(&self) -> Result<Delivery, BusError> {
        let delivery = self.nats.next_request().await?;
        Ok(Delivery {
            acker: Box::new(CountingAcker {
                inner: delivery.acker,
                progress: self.progress.clone(),
            }),
            ..delivery
        })
    }

    async fn stop_requests(&self) {
        self.nats.stop_requests().await;
    }

    async fn ended(&self, request_id: &str) -> Result<bool, BusError> {
        self.nats.ended(request_id).await
    }

    async fn dead_letter(&self, letter: DeadLetter) -> Result<(), BusError> {
        if fail_now(&self.fail_dead_letters) {
            return Err(injected());
        }
        self.nats.dead_letter(letter).await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, BusError> {
        self.nats.dead_letters().await
    }
}

/// How many times the server redelivered requests of the workers' consumer.
async fn redeliveries(bus: &NatsBus) -> usize {
    bus.jetstream()
        .get_stream("AZLIN_REQUESTS")
        .await
        .expect("request stream")
        .consumer_info("azlin-workers")
        .await
        .expect("workers' consumer")
        .num_redelivered
}

/// The `accepted` statuses, one per attempt a worker started.
fn attempts_started(events: &[Event]) -> Vec<(String, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::CreateStatus(s) if s.stage == Stage::Accepted => {
                Some((s.worker.clone(), s.attempt))
            }
            _ => None,
        })
        .collect()
}

async fn follow(subscription: &mut Subscription, requests: &[Request]) -> Vec<Event> {
    collect_until_ended(subscription, ids(requests), Duration::from_secs(30)).await
}

/// Two workers of one request at a time each, sharing `provider`: while one works, the other
/// is idle, ready to take a redelivery. Returns their buses (to count progress reports) too.
async fn two_workers(
    server: &NatsServer,
    home: &Home,
    provider: &Arc<Counted>,
) -> (Vec<Arc<Faulty>>, Vec<RunningWorker>) {
    let mut buses = Vec::new();
    let mut workers = Vec::new();
    for id in ["w1", "w2"] {
        let bus = Faulty::new(bus_with(server, short_ack_wait()).await);
        workers.push(start_worker_on(
            bus.clone(),
            home,
            provider.clone(),
            id,
            1,
            3,
        ));
        buses.push(bus);
    }
    (buses, workers)
}

fn progress_reports(buses: &[Arc<Faulty>]) -> usize {
    buses.iter().map(|b| b.progress_reports()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_longer_than_the_ack_wait_reports_progress_and_is_not_redelivered() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let requester = bus_with(&server, short_ack_wait()).await;
    // A boot takes four ack waits.
    let provider = Counted::new(&home, sim(4000, 0.0), Duration::ZERO);
    let (buses, workers) = two_workers(&server, &home, &provider).await;
    let mut subscription = requester.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&requester, &home, "slow", 1).await;
    let seen = follow(&mut subscription, &requests).await;

    assert_one_complete_each(&seen, &requests);
    assert_eq!(provider.creates(), 1, "one create attempt");
    assert_eq!(attempts_started(&seen).len(), 1, "{seen:?}");
    assert_eq!(redeliveries(&requester).await, 0);
    let progress = progress_reports(&buses);
    assert!(progress >= 4, "progress while booting: {progress}");
    assert_eq!(home.sim_vms(), ["slow-1"]);
    for worker in workers {
        worker.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_longer_than_the_ack_wait_reports_progress_and_is_not_redelivered() {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let requester = bus_with(&server, short_ack_wait()).await;
    // A delete takes four ack waits.
    let provider = Counted::new(&home, sim(0, 0.0), 4 * ACK_WAIT);
    let (buses, workers) = two_workers(&server, &home, &provider).await;
    let mut subscription = requester.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&requester, &home, "doomed", 1).await;
    follow(&mut subscription, &requests).await;
    assert_eq!(home.sim_vms(), ["doomed-1"]);

    let delete = Request::Delete(DeleteRequested {
        schema: SCHEMA,
        request_id: azlin_core::new_id(),
        name: VmName::parse("doomed-1").expect("name"),
        provider: ProviderKind::Sim,
        requested_by: "test@localhost".into(),
        created_at: azlin_core::now_rfc3339(),
    });
    let progress_before = progress_reports(&buses);
    requester.submit(&delete).await.expect("submit");
    let seen = follow(&mut subscription, std::slice::from_ref(&delete)).await;

    let ends: Vec<_> = seen.iter().filter(|e| e.is_terminal()).collect();
    assert!(
        matches!(ends.as_slice(), [Event::DeleteComplete(_)]),
        "{seen:?}"
    );
    assert_eq!(provider.deletes(), 1, "one delete attempt");
    assert_eq!(redeliveries(&requester).await, 0);
    let progress = progress_reports(&buses) - progress_before;
    assert!(progress >= 4, "progress while deleting: {progress}");
    assert!(home.sim_vms().is_empty(), "{:?}", home.sim_vms());
    for worker in workers {
        worker.stop().await;
    }
}

/// Gives up on a request that always fails (one attempt allowed) while the bus fails the first
/// `failed` publishes of its failure and the first `dead_letters` dead letters; returns what
/// the follower saw and the dead letters.
async fn give_up_with_faults(failed: usize, dead_letters: usize) -> (Vec<Event>, Vec<DeadLetter>) {
    let server = NatsServer::start().expect("nats-server");
    let home = Home::new();
    let requester = bus(&server).await;
    let bus = Faulty::failing(bus(&server).await, failed, dead_letters);
    let provider = Counted::new(&home, sim(0, 1.0), Duration::ZERO);
    let worker = start_worker_on(bus, &home, provider, "w", 1, 1);
    let mut subscription = requester.subscribe().await.expect("subscribe");
    let requests = submit_fleet(&requester, &home, "unlucky", 1).await;
    let seen = follow(&mut subscription, &requests).await;
    worker.stop().await;
    let letters = requester.dead_letters().await.expect("dead letters");
    let trail = audit_trail(&requester).await;
    let ends = terminals(&trail);
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert!(
        matches!(
            ends.values().next().map(Vec::as_slice),
            Some([Event::CreateFailed(_)])
        ),
        "{ends:?}"
    );
    assert!(home.sim_vms().is_empty(), "{:?}", home.sim_vms());
    (seen, letters)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_up_whose_failure_event_is_lost_is_retried_until_followers_hear_of_it() {
    let (seen, letters) = give_up_with_faults(1, 0).await;
    let Some(Event::CreateFailed(failed)) = seen.last() else {
        panic!("expected vm.create.failed: {seen:?}");
    };
    assert_eq!(failed.attempt, 2, "the give-up was redone on redelivery");
    // The first give-up's dead letter was stored before its event failed.
    assert_eq!(
        letters.iter().map(|l| l.attempts).collect::<Vec<_>>(),
        [1, 2],
        "{letters:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_give_up_whose_dead_letter_is_lost_is_retried_and_dead_lettered() {
    let (seen, letters) = give_up_with_faults(0, 1).await;
    let Some(Event::CreateFailed(failed)) = seen.last() else {
        panic!("expected vm.create.failed: {seen:?}");
    };
    assert_eq!(failed.attempt, 2);
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        letters[0].reason.contains("failed after 2 attempts"),
        "{letters:?}"
    );
}

/// In process, a request the worker drops is never delivered again: a launch that panics (a
/// bug) must still end its request, or `azlin new` would wait for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launch_that_panics_ends_its_request_with_a_failure_in_process() {
    let home = Home::new();
    let bus: Arc<dyn Bus> = Arc::new(azlin_control::bus::memory::MemoryBus::new());
    let provider = Counted::panicking(&home);
    let worker = start_worker_on(bus.clone(), &home, provider.clone(), "w", 1, 3);
    let mut subscription = bus.subscribe().await.expect("subscribe");
    let request = create("buggy", &home.identity);
    bus.submit(&request).await.expect("submit");
    let seen = collect_until_ended(
        &mut subscription,
        ids(std::slice::from_ref(&request)),
        Duration::from_secs(20),
    )
    .await;
    worker.stop().await;
    let Some(Event::CreateFailed(failed)) = seen.last() else {
        panic!("expected vm.create.failed: {seen:?}");
    };
    assert!(
        failed.error.message.contains("internal error")
            && failed
                .error
                .message
                .contains("the provider's create has a bug"),
        "{failed:?}"
    );
    assert_eq!(provider.creates(), 1, "a bug is not retried");
}
