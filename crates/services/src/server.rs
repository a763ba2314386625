//! Starting and stopping the services, and what a job needs to reach them.

use crate::store::{Store, StoreError};
use crate::token::{JobScope, SigningKey};
use crate::{artifact, blob, cache};
use axum::Router;
use axum::routing::{get, post};
pub use azlin_core::CacheProtocol;
use azlin_core::network::JOB_SERVICE_PORTS;
use serde::Serialize;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a job's token works: GitHub's longest job.
const JOB_TOKEN_TTL: Duration = Duration::from_secs(6 * 60 * 60);
/// How often expired artifacts are removed while the services run.
const EXPIRY_INTERVAL: Duration = Duration::from_secs(60 * 60);

/// Sizes and lifetimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of caches kept per repository; the least recently used go first. Also the
    /// largest one cache may be.
    pub cache_bytes: u64,
    /// The largest one artifact may be.
    pub artifact_bytes: u64,
    /// How long artifacts are kept.
    pub artifact_retention: Duration,
}

impl Default for Limits {
    /// GitHub's: 10 GiB of caches per repository, artifacts kept 90 days.
    fn default() -> Self {
        Limits {
            cache_bytes: 10 << 30,
            artifact_bytes: 10 << 30,
            artifact_retention: Duration::from_secs(90 * 24 * 60 * 60),
        }
    }
}

/// Where and how the services run.
#[derive(Debug, Clone)]
pub struct ServicesConfig {
    /// Where caches, artifacts and the signing key live (survives restarts).
    pub dir: PathBuf,
    /// Sizes and lifetimes.
    pub limits: Limits,
    /// The cache protocol jobs use.
    pub cache_protocol: CacheProtocol,
    /// The addresses to listen on, all on one port: loopback for `sim` and QEMU VMs,
    /// `host.azlin.internal` for nspawn VMs.
    pub addresses: Vec<IpAddr>,
    /// The port; by default the first of [`JOB_SERVICE_PORTS`] free on every address.
    pub port: Option<u16>,
}

/// A failure to start.
#[derive(Debug, thiserror::Error)]
pub enum ServicesError {
    /// The store could not be opened.
    #[error("cache and artifact store: {0}")]
    Store(#[from] StoreError),
    /// The signing key could not be read or made.
    #[error("signing key {path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No port could be bound.
    #[error("cannot listen for jobs on {addresses}: {message}")]
    Bind {
        /// The addresses tried.
        addresses: String,
        /// Why.
        message: String,
    },
}

/// What happened to one cache lookup or save, for the run report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheOutcome {
    /// The primary key matched.
    Hit,
    /// A restore key matched.
    RestoreKeyHit,
    /// Nothing matched.
    Miss,
    /// A cache was saved.
    Saved,
}

/// One cache lookup or save of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct CacheUse {
    /// The key asked for (or saved).
    pub key: String,
    /// What happened.
    pub outcome: CacheOutcome,
    /// The key that matched, on a hit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_key: Option<String>,
    /// Bytes restored or saved.
    pub size: u64,
}

/// State every endpoint shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Store,
    pub key: SigningKey,
    pub limits: Limits,
    /// Cache uses by (run, job), until the job's report takes them.
    uses: Mutex<HashMap<(String, String), Vec<CacheUse>>>,
    /// Where progress lines of each watched job go, by (run, job).
    watchers: Mutex<HashMap<(String, String), mpsc::UnboundedSender<String>>>,
}

impl Shared {
    /// Sends a progress line to the log of job `job` of run `run`, when someone watches it.
    pub fn progress(&self, run: &str, job: &str, line: String) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        let key = (run.to_string(), job.to_string());
        if let Some(sender) = watchers.get(&key)
            && sender.send(line).is_err()
        {
            watchers.remove(&key);
        }
    }

    /// Notes a cache use of the job `scope` for its report.
    pub fn record(&self, scope: &JobScope, cache_use: CacheUse) {
        tracing::info!(repository = %scope.repository, key = %cache_use.key, outcome = ?cache_use.outcome, "cache");
        self.uses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((scope.run_id.clone(), scope.job_id.clone()))
            .or_default()
            .push(cache_use);
    }
}

/// The running services.
#[derive(Debug)]
pub struct Services {
    shared: Arc<Shared>,
    port: u16,
    protocol: CacheProtocol,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_apis/artifactcache/cache", get(cache::v1_lookup))
        .route("/_apis/artifactcache/caches", post(cache::v1_reserve))
        .route(
            "/_apis/artifactcache/caches/{id}",
            post(cache::v1_commit).patch(cache::v1_upload),
        )
        .route(
            "/twirp/github.actions.results.api.v1.CacheService/{method}",
            post(cache::v2),
        )
        .route(
            "/twirp/github.actions.results.api.v1.ArtifactService/{method}",
            post(artifact::twirp),
        )
        .route(
            "/blob/{kind}/{id}",
            get(blob::handle).head(blob::handle).put(blob::handle),
        )
        .with_state(shared)
}

/// A listening socket on `address:port`; an address not (yet) on this host is allowed, so
/// that `host.azlin.internal` can be bound before the first VM's link carries it.
fn listen(address: IpAddr, port: u16) -> std::io::Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let addr = SocketAddr::new(address, port);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if address.is_ipv4() && !address.is_loopback() {
        socket.set_freebind_v4(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

fn listen_all(
    addresses: &[IpAddr],
    port: Option<u16>,
) -> Result<(u16, Vec<tokio::net::TcpListener>), ServicesError> {
    let candidates: Vec<u16> = match port {
        Some(port) => vec![port],
        None => JOB_SERVICE_PORTS.collect(),
    };
    let mut last_error = String::from("no port to try");
    for port in candidates {
        match addresses
            .iter()
            .map(|a| listen(*a, port))
            .collect::<std::io::Result<Vec<_>>>()
        {
            Ok(listeners) => return Ok((port, listeners)),
            Err(e) => last_error = format!("port {port}: {e}"),
        }
    }
    Err(ServicesError::Bind {
        addresses: addresses
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        message: last_error,
    })
}

impl Services {
    /// Opens the store and starts listening.
    pub async fn start(config: ServicesConfig) -> Result<Services, ServicesError> {
        let store = Store::open(&config.dir)?;
        let key_path = config.dir.join("signing.key");
        let key = SigningKey::load_or_create(&key_path).map_err(|source| ServicesError::Key {
            path: key_path,
            source,
        })?;
        let addresses = if config.addresses.is_empty() {
            vec![IpAddr::V4(Ipv4Addr::LOCALHOST)]
        } else {
            config.addresses.clone()
        };
        let (port, listeners) = listen_all(&addresses, config.port)?;
        let shared = Arc::new(Shared {
            store,
            key,
            limits: config.limits,
            uses: Mutex::new(HashMap::new()),
            watchers: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        for listener in listeners {
            let app = router(shared.clone());
            let stop = stop.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await
                {
                    tracing::error!(error = %e, "job services stopped");
                }
            }));
        }
        let expiring = shared.clone();
        let stop_expiry = stop.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                let store = expiring.store.clone();
                match tokio::task::spawn_blocking(move || store.expire()).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(n)) => tracing::info!(artifacts = n, "expired artifacts removed"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "expiring artifacts"),
                    Err(e) => tracing::warn!(error = %e, "expiring artifacts"),
                }
                tokio::select! {
                    () = stop_expiry.cancelled() => break,
                    () = tokio::time::sleep(EXPIRY_INTERVAL) => {}
                }
            }
        }));
        tracing::info!(port, addresses = ?addresses, "cache and artifact services listening");
        Ok(Services {
            shared,
            port,
            protocol: config.cache_protocol,
            stop,
            tasks,
        })
    }

    /// The port the services listen on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A runtime token for the job `scope`.
    pub fn token(&self, scope: &JobScope) -> String {
        self.shared.key.issue(scope, JOB_TOKEN_TTL)
    }

    /// The variables that point a job's actions at the services, reached at `host` (the
    /// name or address the VM uses for this host). `ACTIONS_RUNTIME_TOKEN` is a secret.
    pub fn job_env(&self, scope: &JobScope, host: &str) -> Vec<(String, String)> {
        let url = format!("http://{host}:{}/", self.port);
        let mut env = vec![
            ("ACTIONS_RUNTIME_TOKEN".to_string(), self.token(scope)),
            ("ACTIONS_RUNTIME_URL".to_string(), url.clone()),
            ("ACTIONS_RESULTS_URL".to_string(), url.clone()),
            ("ACTIONS_CACHE_URL".to_string(), url),
        ];
        if self.protocol == CacheProtocol::V2 {
            env.push(("ACTIONS_CACHE_SERVICE_V2".to_string(), "true".to_string()));
        }
        env
    }

    /// The cache lookups and saves of job `job_id` of run `run_id` so far (each is returned
    /// once).
    pub fn take_cache_uses(&self, run_id: &str, job_id: &str) -> Vec<CacheUse> {
        self.shared
            .uses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(run_id.to_string(), job_id.to_string()))
            .unwrap_or_default()
    }

    /// Progress lines of the large downloads of job `scope` (cache restores, artifact
    /// downloads, which their clients do not report), for its step logs. Until the receiver
    /// is dropped.
    pub fn watch(&self, scope: &JobScope) -> mpsc::UnboundedReceiver<String> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.shared
            .watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((scope.run_id.clone(), scope.job_id.clone()), sender);
        receiver
    }

    /// Stops listening and waits for requests in flight.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "a job services task ended badly");
            }
        }
    }
}
