//! Figures of issue 3, each printed next to its baseline, measured in the same run:
//!
//! 1. request → complete round trip with the `sim` provider at 0 s boot (one request at a time),
//!    in-process and over NATS: p50 / p99; and sustained requests/s (many requests in flight).
//! 2. N = 1, 8, 64 sim VMs with a 2 s boot through two workers over NATS: wall time from the first
//!    submit to the last complete event, next to the sequential baseline N × one VM.
//!
//! `cargo bench -p azlin-control --bench control_plane` (or `bench/control_plane.sh`). Needs
//! nats-server ≥ 2.10 (`scripts/install-nats.sh`); each run starts its own on loopback.
//! Sizes: `BENCH_ROUND_TRIPS` (default 1000), `BENCH_BURST` (default 2000). The sim VMs' folders
//! live on tmpfs (`/dev/shm`) when there is one, the NATS store on the disk.

// A benchmark harness: a failed unwrap is a failed run, with its location.
#![allow(clippy::unwrap_used, missing_docs)]

use azlin_control::bus::memory::MemoryBus;
use azlin_control::{
    Bus, LaunchSettings, Launcher, NatsBus, NatsSettings, ProviderSource, Subscription, Worker,
    WorkerSettings,
};
use azlin_core::event::{CreateRequested, Event, Request, SCHEMA};
use azlin_core::{ProviderError, ProviderKind, VmName, VmProvider, VmSpec};
use azlin_providers::sim::{SimProvider, SimSettings};
use azlin_remote::Identity;
use azlin_testkit::NatsServer;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Sim(Arc<SimProvider>);

impl ProviderSource for Sim {
    fn provider(&self, _: ProviderKind) -> Result<Arc<dyn VmProvider>, ProviderError> {
        Ok(self.0.clone())
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

static NAMES: AtomicUsize = AtomicUsize::new(0);

fn request(identity: &Identity) -> Request {
    let n = NAMES.fetch_add(1, Ordering::Relaxed);
    Request::Create(CreateRequested {
        schema: SCHEMA,
        request_id: azlin_core::new_id(),
        spec: VmSpec::new(VmName::parse(&format!("b{n}")).unwrap(), ProviderKind::Sim),
        ssh_public_key: identity.public_openssh.clone(),
        requested_by: "bench@localhost".into(),
        created_at: azlin_core::now_rfc3339(),
    })
}

/// Starts a worker on `bus` making sim VMs under `root`.
fn worker(
    bus: Arc<dyn Bus>,
    root: &Path,
    boot: Duration,
    identity: &Identity,
    concurrency: usize,
    id: &str,
) -> watch::Sender<bool> {
    let provider = Arc::new(SimProvider::new(
        root,
        SimSettings {
            boot,
            fail_rate: 0.0,
        },
    ));
    let launcher = Arc::new(Launcher::new(
        bus.clone(),
        Arc::new(Sim(provider)),
        identity.clone(),
        LaunchSettings {
            ssh_timeout: Duration::from_secs(60),
            cloud_init_timeout: Duration::from_secs(60),
            worker_id: id.to_string(),
        },
    ));
    let worker = Worker::new(
        bus,
        launcher,
        WorkerSettings {
            concurrency,
            max_attempts: 3,
            backoff: Duration::from_millis(100),
            progress_interval: Duration::from_secs(5),
        },
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        let _ = worker.run(stopped).await;
    });
    stop
}

/// A worker that does no provider work: for each create it publishes the events a sim launch
/// publishes (7 statuses, `vm.ssh.verified`, `vm.cloudinit.complete`, `vm.create.complete`) and
/// acknowledges. What remains of the round trip is the transport.
fn echo_worker(bus: Arc<dyn Bus>, concurrency: usize) -> tokio::task::JoinHandle<()> {
    use azlin_core::event::{
        CloudInitComplete, CreateComplete, SshVerified, Stage, Status, VmEndpoint,
    };
    tokio::spawn(async move {
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        loop {
            let permit = permits.clone().acquire_owned().await.unwrap();
            let Ok(delivery) = bus.next_request().await else {
                return;
            };
            let bus = bus.clone();
            tokio::spawn(async move {
                let Ok(Request::Create(r)) = Request::decode(&delivery.subject, &delivery.payload)
                else {
                    panic!("not a create");
                };
                let status = |stage| {
                    Event::CreateStatus(Status {
                        schema: SCHEMA,
                        request_id: r.request_id.clone(),
                        name: r.spec.name.clone(),
                        stage,
                        message: "echo".into(),
                        attempt: delivery.attempt,
                        worker: "echo".into(),
                        at: azlin_core::now_rfc3339(),
                        warning: false,
                    })
                };
                let at = azlin_core::now_rfc3339();
                let events = [
                    status(Stage::Accepted),
                    status(Stage::Provisioning),
                    status(Stage::Provisioned),
                    status(Stage::WaitingForSsh),
                    Event::SshVerified(SshVerified {
                        schema: SCHEMA,
                        request_id: r.request_id.clone(),
                        name: r.spec.name.clone(),
                        at: at.clone(),
                    }),
                    status(Stage::SshReady),
                    status(Stage::WaitingForCloudInit),
                    Event::CloudInitComplete(CloudInitComplete {
                        schema: SCHEMA,
                        request_id: r.request_id.clone(),
                        name: r.spec.name.clone(),
                        status: "done".into(),
                        at,
                    }),
                    status(Stage::CloudInitDone),
                    Event::CreateComplete(CreateComplete {
                        schema: SCHEMA,
                        request_id: r.request_id.clone(),
                        vm: VmEndpoint {
                            name: r.spec.name.clone(),
                            provider: ProviderKind::Sim,
                            address: "/echo".into(),
                            ssh_port: 22,
                            user: "azureuser".into(),
                            host_key: String::new(),
                        },
                        timings: BTreeMap::new(),
                        warnings: vec![],
                        details: BTreeMap::new(),
                    }),
                ];
                for event in &events {
                    bus.publish(event).await.unwrap();
                }
                delivery.acker.ack().await.unwrap();
                drop(permit);
            });
        }
    })
}

/// The median of `n` runs of `f`.
async fn median<F, Fut>(n: usize, mut f: F) -> Duration
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let started = Instant::now();
        f(i).await;
        samples.push(started.elapsed());
    }
    samples.sort();
    samples[n / 2]
}

/// The median time of a sim `create` at 0 s boot with its VM folders under `root`.
async fn sim_create(identity: &Identity, root: &Path) -> Duration {
    use azlin_core::CreateRequest;
    let sim = SimProvider::new(root, SimSettings::default());
    median(200, |_| {
        let Request::Create(r) = request(identity) else {
            unreachable!()
        };
        let sim = &sim;
        async move {
            sim.create(&CreateRequest {
                request_id: r.request_id.clone(),
                spec: r.spec.clone(),
                user_data: String::new(),
                admin_public_key: String::new(),
                host_public_key: String::new(),
            })
            .await
            .unwrap();
        }
    })
    .await
}

/// What a sim launch costs outside the transport, one step at a time; `disk` is a folder on the
/// disk that holds azlin's state, for comparison with `root` (tmpfs when there is one).
async fn breakdown(identity: &Identity, root: &Path, disk: &Path) {
    let create = sim_create(identity, &root.join("breakdown")).await;
    let on_disk = sim_create(identity, &disk.join("breakdown")).await;
    let host_key_pair = azlin_remote::keys::generate_host_key("render").unwrap();
    let render = median(200, |_| {
        let key = &host_key_pair;
        async move {
            azlin_core::cloudinit::CloudConfig {
                hostname: "bench",
                authorized_keys: vec![identity.public_openssh.clone()],
                host_key: key,
                ca_certs: &[],
                packages: &[],
                extra: None,
            }
            .render()
            .unwrap();
        }
    })
    .await;
    let host_key = median(200, |i| async move {
        azlin_remote::keys::generate_host_key(&format!("k{i}")).unwrap();
    })
    .await;
    println!(
        "
where a sim launch spends its time outside the transport (medians): sim `create` at 0 s \
         boot (VM folder and record, not flushed) {} on {} ({} on the disk, ext4 here, where \
         it varies with the discards of earlier deletions), rendering the cloud-config {}, \
         host key generation {}",
        ms(create),
        if root.starts_with("/dev/shm") {
            "tmpfs"
        } else {
            "the disk"
        },
        ms(on_disk),
        ms(render),
        ms(host_key)
    );
}

/// Waits on `subscription` until every id in `pending` has its terminal event; panics on a
/// failure.
async fn until_complete(subscription: &mut Subscription, mut pending: HashSet<String>) {
    while !pending.is_empty() {
        let event = tokio::time::timeout(Duration::from_secs(120), subscription.next())
            .await
            .expect("progress")
            .expect("open");
        if let Event::CreateFailed(f) = &event {
            panic!("a create failed: {f:?}");
        }
        if event.is_terminal() {
            pending.remove(event.request_id());
        }
    }
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

/// One request at a time: submit, then wait for its complete event.
async fn round_trips(
    requester: &dyn Bus,
    subscription: &mut Subscription,
    identity: &Identity,
    n: usize,
) -> Latency {
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let request = request(identity);
        let started = Instant::now();
        requester.submit(&request).await.unwrap();
        until_complete(
            subscription,
            HashSet::from([request.request_id().to_string()]),
        )
        .await;
        if i >= n / 10 {
            samples.push(started.elapsed());
        }
    }
    samples.sort();
    Latency {
        p50: samples[samples.len() / 2],
        p99: samples[samples.len() * 99 / 100],
    }
}

/// `n` requests submitted at once (8 submitters), until the last completes: requests/s.
async fn burst(
    requester: Arc<dyn Bus>,
    subscription: &mut Subscription,
    identity: &Identity,
    n: usize,
) -> (f64, Duration) {
    let requests: Vec<Request> = (0..n).map(|_| request(identity)).collect();
    let pending: HashSet<String> = requests
        .iter()
        .map(|r| r.request_id().to_string())
        .collect();
    let started = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for chunk in requests.chunks(n.div_ceil(8)) {
        let chunk = chunk.to_vec();
        let requester = requester.clone();
        submitters.spawn(async move {
            for request in &chunk {
                requester.submit(request).await.unwrap();
            }
        });
    }
    until_complete(subscription, pending).await;
    let elapsed = started.elapsed();
    while submitters.join_next().await.is_some() {}
    (n as f64 / elapsed.as_secs_f64(), elapsed)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn nats_bus(server: &NatsServer) -> Arc<NatsBus> {
    Arc::new(
        NatsBus::connect(&server.url(), NatsSettings::default())
            .await
            .unwrap(),
    )
}

/// One row of the round-trip table.
struct Row {
    what: &'static str,
    latency: Latency,
    rate: f64,
}

/// Round trips and a burst through `requester`, with the worker already running.
async fn measure(what: &'static str, requester: Arc<dyn Bus>, identity: &Identity) -> Row {
    let n = env_usize("BENCH_ROUND_TRIPS", 1000);
    let burst_n = env_usize("BENCH_BURST", 2000);
    let mut subscription = requester.subscribe().await.unwrap();
    let latency = round_trips(requester.as_ref(), &mut subscription, identity, n).await;
    let (rate, _) = burst(requester, &mut subscription, identity, burst_n).await;
    Row {
        what,
        latency,
        rate,
    }
}

async fn round_trip_figures(identity: &Identity, root: &Path, disk: &Path) {
    let n = env_usize("BENCH_ROUND_TRIPS", 1000);
    let burst_n = env_usize("BENCH_BURST", 2000);
    println!("\n## 1. request → complete round trip, sim provider at 0 s boot");
    println!(
        "({n} round trips one at a time after {} warm-up; sustained: a burst of {burst_n} \
         requests, worker concurrency 64; over NATS the requester and the worker have their own \
         connections, as separate processes would)\n",
        n / 10
    );
    let server = NatsServer::start().unwrap();
    let mut rows = Vec::new();

    // The sim launch, in-process (the baseline) and over NATS.
    let memory: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let stop = worker(
        memory.clone(),
        &root.join("memory"),
        Duration::ZERO,
        identity,
        64,
        "mem",
    );
    rows.push(measure("sim launch, in-process (baseline)", memory, identity).await);
    stop.send_replace(true);
    let worker_bus: Arc<dyn Bus> = nats_bus(&server).await;
    let stop = worker(
        worker_bus,
        &root.join("nats"),
        Duration::ZERO,
        identity,
        64,
        "nats",
    );
    let requester: Arc<dyn Bus> = nats_bus(&server).await;
    rows.push(measure("sim launch, NATS JetStream", requester, identity).await);
    stop.send_replace(true);

    // The transport alone: the same ten events per request, no provider work.
    let memory: Arc<dyn Bus> = Arc::new(MemoryBus::new());
    let echo = echo_worker(memory.clone(), 64);
    rows.push(measure("transport only, in-process", memory, identity).await);
    echo.abort();
    let echo_bus: Arc<dyn Bus> = nats_bus(&server).await;
    let echo = echo_worker(echo_bus, 64);
    let requester: Arc<dyn Bus> = nats_bus(&server).await;
    rows.push(measure("transport only, NATS JetStream", requester, identity).await);
    echo.abort();

    println!("| what | p50 | p99 | sustained |");
    println!("| --- | ---: | ---: | ---: |");
    for row in &rows {
        println!(
            "| {} | {} | {} | {:.0} req/s |",
            row.what,
            ms(row.latency.p50),
            ms(row.latency.p99),
            row.rate
        );
    }
    let over_nats = &rows[1];
    println!(
        "\ntargets for the sim launch over NATS: p50 < 2 ms ({}), ≥ 1,000 req/s ({})",
        if over_nats.latency.p50 < Duration::from_millis(2) {
            "met"
        } else {
            "NOT met"
        },
        if over_nats.rate >= 1000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    breakdown(identity, root, disk).await;
}

async fn fleet_figures(identity: &Identity, root: &Path) {
    let boot = Duration::from_secs(2);
    println!(
        "\n## 2. fleets of sim VMs with a 2 s boot through 2 workers over NATS (concurrency 32 each)\n"
    );
    let server = NatsServer::start().unwrap();
    let requester = nats_bus(&server).await;
    let stops: Vec<_> = (0..2)
        .map(|i| (i, root.join(format!("fleet-{i}"))))
        .collect::<Vec<_>>();
    let mut stoppers = Vec::new();
    for (i, dir) in &stops {
        let bus = nats_bus(&server).await;
        stoppers.push(worker(bus, dir, boot, identity, 32, &format!("w{i}")));
    }
    let mut subscription = requester.subscribe().await.unwrap();
    // Warm-up, then the one-VM time the sequential baseline multiplies.
    let requester_dyn: Arc<dyn Bus> = requester.clone();
    burst(requester_dyn.clone(), &mut subscription, identity, 1).await;
    let mut rows = Vec::new();
    let mut one = Duration::ZERO;
    for n in [1usize, 8, 64] {
        let (_, wall) = burst(requester_dyn.clone(), &mut subscription, identity, n).await;
        if n == 1 {
            one = wall;
        }
        rows.push((n, wall));
    }
    println!("| N | wall time | sequential baseline (N × one VM) | speed-up | wall / one VM |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for (n, wall) in &rows {
        let sequential = one * u32::try_from(*n).unwrap();
        println!(
            "| {n} | {:.2} s | {:.2} s | {:.1}× | {:.3} |",
            wall.as_secs_f64(),
            sequential.as_secs_f64(),
            sequential.as_secs_f64() / wall.as_secs_f64(),
            wall.as_secs_f64() / one.as_secs_f64()
        );
    }
    let (_, last) = rows[rows.len() - 1];
    println!(
        "\ntarget: 64 VMs in ≤ 1.25 × one VM ({:.3} × — {})",
        last.as_secs_f64() / one.as_secs_f64(),
        if last.as_secs_f64() <= 1.25 * one.as_secs_f64() {
            "met"
        } else {
            "NOT met"
        }
    );
    for stop in stoppers {
        stop.send_replace(true);
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        println!("control_plane bench: run with `cargo bench` for figures");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Sim VM folders go on tmpfs when there is one: the figures are the control plane's,
        // not the disk's (the breakdown shows what a create costs on the disk).
        let dir = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
        let disk = tempfile::tempdir().unwrap();
        let (identity, _) =
            azlin_remote::keys::ensure_identity(&dir.path().join("ssh/azlin_key")).unwrap();
        println!(
            "# azlin control plane ({} cores)",
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
        round_trip_figures(&identity, dir.path(), disk.path()).await;
        fleet_figures(&identity, dir.path()).await;
    });
}
