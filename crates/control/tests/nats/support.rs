//! The harness: a real nats-server, buses connected to it (one per simulated process), launch
//! workers with the `sim` provider, and helpers to make requests and read what happened.

use async_trait::async_trait;
use azlin_control::bus::nats::{NatsBus, NatsSettings};
use azlin_control::{Bus, LaunchSettings, Launcher, ProviderSource, Worker, WorkerSettings};
use azlin_core::event::{CreateRequested, Event, Request, SCHEMA};
use azlin_core::{
    CreateRequest, DeleteReport, ProviderError, ProviderKind, Tool, Vm, VmName, VmProvider, VmSpec,
};
use azlin_providers::sim::{SimProvider, SimSettings};
use azlin_remote::Identity;
use azlin_testkit::NatsServer;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Settings with a short ack wait, so that redeliveries happen within a test.
pub fn settings() -> NatsSettings {
    NatsSettings {
        ack_wait: Duration::from_secs(2),
        max_deliver: 6,
        publish_timeout: Duration::from_secs(30),
        connection_name: "azlin-test".into(),
        ..NatsSettings::default()
    }
}

/// A connection, as one azlin process would have.
pub async fn bus(server: &NatsServer) -> Arc<NatsBus> {
    bus_with(server, settings()).await
}

/// A connection with `settings` (every connection of a test should use the same: the last
/// worker started sets the consumer's).
pub async fn bus_with(server: &NatsServer, settings: NatsSettings) -> Arc<NatsBus> {
    Arc::new(
        NatsBus::connect(&server.url(), settings)
            .await
            .expect("connect to nats-server"),
    )
}

/// A temporary home: the SSH identity and the sim provider's VM folders.
pub struct Home {
    /// The temporary folder everything of this home lives in.
    pub dir: tempfile::TempDir,
    pub identity: Identity,
}

impl Home {
    pub fn new() -> Home {
        let dir = tempfile::tempdir().expect("tempdir");
        let (identity, _) =
            azlin_remote::keys::ensure_identity(&dir.path().join("ssh/azlin_key")).expect("key");
        Home { dir, identity }
    }

    /// Where the sim provider keeps its VMs.
    pub fn sim_root(&self) -> PathBuf {
        self.dir.path().join("sim")
    }

    /// The VM folders present.
    pub fn sim_vms(&self) -> Vec<String> {
        list_dirs(&self.sim_root())
    }
}

fn list_dirs(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                // Hidden entries are the record store's own (its request index), not VMs.
                .filter(|e| e.path().is_dir() && !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

struct Sim(Arc<dyn VmProvider>);

impl ProviderSource for Sim {
    fn provider(&self, kind: ProviderKind) -> Result<Arc<dyn VmProvider>, ProviderError> {
        assert_eq!(kind, ProviderKind::Sim, "tests use the sim provider only");
        Ok(self.0.clone())
    }
}

/// The sim provider, counting the creates and deletes asked of it, with deletes that take
/// `delete_latency` (a sim delete is otherwise instant).
pub struct Counted {
    sim: SimProvider,
    delete_latency: Duration,
    creates: AtomicUsize,
    deletes: AtomicUsize,
    /// Whether a create panics (a provider with a bug).
    panics: bool,
}

impl Counted {
    /// A counted sim provider keeping its VMs in `home`.
    pub fn new(home: &Home, sim: SimSettings, delete_latency: Duration) -> Arc<Counted> {
        Self::build(home, sim, delete_latency, false)
    }

    /// The same, with a bug: every create panics.
    pub fn panicking(home: &Home) -> Arc<Counted> {
        Self::build(home, sim(0, 0.0), Duration::ZERO, true)
    }

    fn build(
        home: &Home,
        sim: SimSettings,
        delete_latency: Duration,
        panics: bool,
    ) -> Arc<Counted> {
        Arc::new(Counted {
            sim: SimProvider::new(home.sim_root(), sim),
            delete_latency,
            creates: AtomicUsize::new(0),
            deletes: AtomicUsize::new(0),
            panics,
        })
    }

    /// Creates asked so far (each attempt of a request is one).
    pub fn creates(&self) -> usize {
        self.creates.load(Ordering::SeqCst)
    }

    /// Deletes asked so far.
    pub fn deletes(&self) -> usize {
        self.deletes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl VmProvider for Counted {
    fn required_tools(&self) -> Vec<Tool> {
        self.sim.required_tools()
    }

    async fn authenticate(&self) -> Result<String, ProviderError> {
        self.sim.authenticate().await
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vm, ProviderError> {
        self.creates.fetch_add(1, Ordering::SeqCst);
        assert!(!self.panics, "the provider's create has a bug");
        self.sim.create(request).await
    }

    async fn get(&self, name: &VmName) -> Result<Option<Vm>, ProviderError> {
        self.sim.get(name).await
    }

    async fn list(&self) -> Result<Vec<Vm>, ProviderError> {
        self.sim.list().await
    }

    async fn start(&self, name: &VmName) -> Result<Vm, ProviderError> {
        self.sim.start(name).await
    }

    async fn stop(&self, name: &VmName) -> Result<(), ProviderError> {
        self.sim.stop(name).await
    }

    async fn delete(&self, name: &VmName) -> Result<DeleteReport, ProviderError> {
        self.deletes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delete_latency).await;
        self.sim.delete(name).await
    }

    async fn find_by_request(&self, request_id: &str) -> Result<Option<Vm>, ProviderError> {
        self.sim.find_by_request(request_id).await
    }
}

/// A running in-process worker on its own connection.
pub struct RunningWorker {
    pub worker: Arc<Worker>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl RunningWorker {
    /// Stops taking requests and waits for the ones in flight.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        self.handle.await.expect("worker task");
    }
}

/// Sim settings for a worker.
pub fn sim(boot_ms: u64, fail_rate: f64) -> SimSettings {
    SimSettings {
        boot: Duration::from_millis(boot_ms),
        fail_rate,
    }
}

/// Starts a worker of `concurrency` on `bus`, with a sim provider of its own.
pub fn start_worker(
    bus: Arc<NatsBus>,
    home: &Home,
    sim: SimSettings,
    id: &str,
    concurrency: usize,
    max_attempts: u32,
) -> RunningWorker {
    let provider = Arc::new(SimProvider::new(home.sim_root(), sim));
    start_worker_on(bus, home, provider, id, concurrency, max_attempts)
}

/// Starts a worker of `concurrency` on any `bus`, creating VMs with `provider`.
pub fn start_worker_on(
    bus: Arc<dyn Bus>,
    home: &Home,
    provider: Arc<dyn VmProvider>,
    id: &str,
    concurrency: usize,
    max_attempts: u32,
) -> RunningWorker {
    let launcher = Arc::new(Launcher::new(
        bus.clone(),
        Arc::new(Sim(provider)),
        home.identity.clone(),
        LaunchSettings {
            ssh_timeout: Duration::from_secs(30),
            cloud_init_timeout: Duration::from_secs(30),
            worker_id: id.to_string(),
        },
    ));
    let worker = Worker::new(
        bus,
        launcher,
        WorkerSettings {
            concurrency,
            max_attempts,
            backoff: Duration::from_millis(200),
            progress_interval: Duration::from_millis(400),
        },
    );
    let (stop, stopped) = watch::channel(false);
    let running = worker.clone();
    let handle = tokio::spawn(async move {
        running.run(stopped).await.expect("worker ran");
    });
    RunningWorker {
        worker,
        stop,
        handle,
    }
}

/// A create request for a sim VM.
pub fn create(name: &str, identity: &Identity) -> Request {
    Request::Create(CreateRequested {
        schema: SCHEMA,
        request_id: azlin_core::new_id(),
        spec: VmSpec::new(VmName::parse(name).expect("name"), ProviderKind::Sim),
        ssh_public_key: identity.public_openssh.clone(),
        requested_by: "test@localhost".into(),
        created_at: azlin_core::now_rfc3339(),
    })
}

/// Submits `n` creates named `prefix-1..n`; returns them.
pub async fn submit_fleet(bus: &NatsBus, home: &Home, prefix: &str, n: usize) -> Vec<Request> {
    let mut requests = Vec::new();
    for i in 1..=n {
        let request = create(&format!("{prefix}-{i}"), &home.identity);
        bus.submit(&request).await.expect("submit");
        requests.push(request);
    }
    requests
}

/// Reads events from `subscription` until every request in `pending` has ended (or panics
/// after `limit`). Returns every event seen, in order.
pub async fn collect_until_ended(
    subscription: &mut azlin_control::Subscription,
    mut pending: HashSet<String>,
    limit: Duration,
) -> Vec<Event> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    while !pending.is_empty() {
        let event = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("requests still pending after {limit:?}: {pending:?}"))
            .expect("subscription open");
        if event.is_terminal() {
            pending.remove(event.request_id());
        }
        seen.push(event);
    }
    seen
}

/// The ids of `requests`.
pub fn ids(requests: &[Request]) -> HashSet<String> {
    requests
        .iter()
        .map(|r| r.request_id().to_string())
        .collect()
}

/// Every event on the audit trail, decoded.
pub async fn audit_trail(bus: &NatsBus) -> Vec<Event> {
    bus.events_after(0)
        .await
        .expect("read the audit trail")
        .into_iter()
        .map(|logged| {
            let bytes = serde_json::to_vec(&logged.payload).expect("json");
            Event::decode(&logged.subject, &bytes).expect("decodable event")
        })
        .collect()
}

/// Terminal events per request id.
pub fn terminals(events: &[Event]) -> BTreeMap<String, Vec<Event>> {
    let mut out: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for event in events.iter().filter(|e| e.is_terminal()) {
        out.entry(event.request_id().to_string())
            .or_default()
            .push(event.clone());
    }
    out
}

/// Asserts that every request has exactly one terminal event, a `vm.create.complete`.
pub fn assert_one_complete_each(events: &[Event], requests: &[Request]) {
    let terminals = terminals(events);
    for request in requests {
        let ends = terminals
            .get(request.request_id())
            .unwrap_or_else(|| panic!("no terminal event for {}", request.name()));
        assert_eq!(
            ends.len(),
            1,
            "terminal events of {}: {ends:?}",
            request.name()
        );
        assert!(
            matches!(ends[0], Event::CreateComplete(_)),
            "{} ended with {:?}",
            request.name(),
            ends[0]
        );
    }
}

/// Waits until `check` holds (polling), or panics with `what` after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
