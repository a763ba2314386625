//! The application context: resolved settings, the providers built from them, the state
//! store, and the control plane (in-process bus with a worker, or NATS).

use crate::settings::Settings;
use azlin_control::bus::memory::MemoryBus;
use azlin_control::store::VmRecord;
use azlin_control::{
    Bus, KvStore, LaunchSettings, Launcher, NatsBus, NatsSettings, Orchestrator, ProviderSource,
    SqliteStore, StateStore, Worker, WorkerSettings,
};
use azlin_core::{ErrorKind, ProviderError, ProviderKind, Vm, VmName, VmProvider};
use azlin_providers::azure::{AzureProvider, AzureSettings};
use azlin_providers::image::ImageStore;
use azlin_providers::network::NetworkSettings;
use azlin_providers::nspawn::NspawnProvider;
use azlin_providers::qemu::QemuProvider;
use azlin_providers::sim::SimProvider;
use azlin_remote::Identity;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Builds providers on first use, from the settings.
pub struct Providers {
    settings: Settings,
    built: Mutex<BTreeMap<ProviderKind, Arc<dyn VmProvider>>>,
}

impl Providers {
    /// Providers configured by `settings`.
    pub fn new(settings: &Settings) -> Self {
        Providers {
            settings: settings.clone(),
            built: Mutex::new(BTreeMap::new()),
        }
    }

    /// The local base image store.
    pub fn images(&self) -> ImageStore {
        ImageStore::new(&self.settings.image_dir, &self.settings.mirror)
    }

    /// What local VMs may reach, from `[network]`.
    fn network(&self) -> NetworkSettings {
        let network = &self.settings.config.network;
        NetworkSettings {
            offered_ports: network.host_ports.clone(),
            egress: network.egress.clone(),
        }
    }

    fn build(&self, kind: ProviderKind) -> Result<Arc<dyn VmProvider>, ProviderError> {
        let state = &self.settings.paths.state_dir;
        Ok(match kind {
            ProviderKind::Nspawn => Arc::new(NspawnProvider::new(
                state.join("nspawn"),
                self.images(),
                self.network(),
            )),
            ProviderKind::Sim => Arc::new(
                SimProvider::new(state.join("sim"), self.settings.sim)
                    .with_delete_fail_rate(self.settings.sim_delete_fail_rate),
            ),
            ProviderKind::Azure => {
                // `--subscription` wins over `[azure] subscription`; with neither, az's default.
                let mut azure = AzureSettings::from_config(&self.settings.config)?;
                if let Some(id) = &self.settings.azure_subscription {
                    azure.subscription = Some(id.clone());
                }
                Arc::new(AzureProvider::new(azure)?)
            }
            ProviderKind::Qemu => Arc::new(
                QemuProvider::new(state.join("qemu"), self.images()).with_network(self.network()),
            ),
        })
    }
}

impl ProviderSource for Providers {
    fn provider(&self, kind: ProviderKind) -> Result<Arc<dyn VmProvider>, ProviderError> {
        let mut built = self
            .built
            .lock()
            .map_err(|_| ProviderError::new(ErrorKind::Internal, "provider cache poisoned"))?;
        if let Some(provider) = built.get(&kind) {
            return Ok(provider.clone());
        }
        let provider = self.build(kind)?;
        built.insert(kind, provider.clone());
        Ok(provider)
    }
}

/// The running control plane of one command.
pub struct ControlPlane {
    /// The bus requests go to and events come from.
    pub bus: Arc<dyn Bus>,
    /// Records events and keeps the deployment state.
    pub orchestrator: Orchestrator,
    local_worker: Option<LocalWorker>,
}

/// The worker of an in-process control plane.
struct LocalWorker {
    worker: Arc<Worker>,
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl ControlPlane {
    /// Stops the in-process worker (if any) after its requests in flight.
    pub async fn shutdown(self) {
        if let Some(LocalWorker {
            worker: _,
            stop,
            handle,
        }) = self.local_worker
        {
            stop.send_replace(true);
            if let Err(e) = handle.await {
                tracing::warn!("in-process worker ended abnormally: {e}");
            }
        }
    }

    /// Stops the in-process worker (if any) at once, giving up its requests in flight: what
    /// they made stays, for the caller to remove. Whether there was such a worker: without
    /// one (NATS), the requests go on on workers elsewhere.
    pub async fn abandon(&mut self) -> bool {
        let Some(LocalWorker {
            worker,
            stop,
            handle,
        }) = self.local_worker.take()
        else {
            return false;
        };
        worker.abandon();
        stop.send_replace(true);
        if let Err(e) = handle.await {
            tracing::warn!("in-process worker ended abnormally: {e}");
        }
        true
    }
}

/// The context every command runs in.
pub struct App {
    /// Resolved settings.
    pub settings: Settings,
    /// Providers.
    pub providers: Arc<Providers>,
}

impl App {
    /// The context for `settings`.
    pub fn new(settings: Settings) -> Self {
        App {
            providers: Arc::new(Providers::new(&settings)),
            settings,
        }
    }

    /// The state store: JetStream key-value with NATS (connected on first use), else the SQLite
    /// database of this machine.
    pub fn store(&self) -> anyhow::Result<Arc<dyn StateStore>> {
        if let Some(nats) = &self.settings.nats {
            return Ok(Arc::new(KvStore::lazy_with(
                nats.clone(),
                self.nats_settings(),
            )));
        }
        Ok(Arc::new(SqliteStore::open(&self.settings.state_db())?))
    }

    /// Settings of this process's NATS connections.
    pub fn nats_settings(&self) -> NatsSettings {
        NatsSettings {
            connection_name: format!("azlin {}-{}", hostname(), std::process::id()),
            replicas: self.settings.nats.as_ref().map_or(1, |nats| nats.replicas),
            ..NatsSettings::default()
        }
    }

    /// The orchestrator writing the deployment state.
    pub fn orchestrator(&self) -> anyhow::Result<Orchestrator> {
        Ok(Orchestrator::new(
            self.store()?,
            self.settings.deployment_state(),
        ))
    }

    /// Settings for a launcher in this process.
    pub fn launch_settings(&self) -> LaunchSettings {
        LaunchSettings {
            ssh_timeout: self.settings.ssh_timeout,
            cloud_init_timeout: self.settings.cloud_init_timeout,
            worker_id: format!("{}-{}", hostname(), std::process::id()),
        }
    }

    /// Starts the control plane: with NATS configured, the NATS transport (workers run
    /// elsewhere); otherwise an in-process bus with a worker of `concurrency` in this process.
    pub async fn control_plane(
        &self,
        identity: &Identity,
        concurrency: usize,
    ) -> anyhow::Result<ControlPlane> {
        if let Some(url) = &self.settings.nats {
            let settings = self.nats_settings();
            let nats = NatsBus::connect_with(url, settings.clone()).await?;
            if let Ok(None | Some(0)) = nats.waiting_workers().await {
                tracing::warn!(
                    "no azlin worker is waiting for requests on {url} (all busy, or none \
                     running): requests wait in the queue until one takes them \
                     (`azlin worker --nats {url}`)"
                );
            }
            let store = Arc::new(KvStore::with_context(nats.jetstream().clone(), settings));
            return Ok(ControlPlane {
                bus: Arc::new(nats),
                orchestrator: Orchestrator::new(store, self.settings.deployment_state()),
                local_worker: None,
            });
        }
        self.local_control_plane(identity, concurrency)
    }

    /// Starts an in-process control plane (a bus and a worker of `concurrency` in this
    /// process, this machine's state store), NATS or not: VMs that live and die with a
    /// command on this host, such as the session VMs of `azlin worker --runs`.
    pub fn local_control_plane(
        &self,
        identity: &Identity,
        concurrency: usize,
    ) -> anyhow::Result<ControlPlane> {
        let bus: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let launcher = Arc::new(
            Launcher::new(
                bus.clone(),
                self.providers.clone(),
                identity.clone(),
                self.launch_settings(),
            )
            .with_orphans(self.settings.orphans()),
        );
        let worker = Worker::new(
            bus.clone(),
            launcher,
            WorkerSettings {
                concurrency,
                ..WorkerSettings::default()
            },
        );
        let (stop, stopped) = watch::channel(false);
        let running = worker.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = running.run(stopped).await {
                tracing::warn!("in-process worker stopped: {e}");
            }
        });
        Ok(ControlPlane {
            bus,
            orchestrator: self.orchestrator()?,
            local_worker: Some(LocalWorker {
                worker,
                stop,
                handle,
            }),
        })
    }

    /// Finds a VM by name: the state store says which provider has it; VMs the store does not
    /// know are looked for with the local providers; a VM no local provider has (made by a
    /// worker elsewhere) is described by its record.
    pub async fn locate(&self, name: &VmName) -> anyhow::Result<(Arc<dyn VmProvider>, Vm)> {
        let record = self.store()?.vm(name).await?;
        self.locate_with(name, record).await
    }

    /// Every VM of the state store that `keep` selects, as its provider sees it now (or why
    /// it cannot be found), with one read of the store for all of them.
    pub async fn locate_recorded(
        &self,
        keep: impl Fn(&VmRecord) -> bool,
    ) -> anyhow::Result<Vec<(VmRecord, anyhow::Result<Vm>)>> {
        let mut located = Vec::new();
        for record in self.store()?.vms().await?.into_iter().filter(|r| keep(r)) {
            let found = self
                .locate_with(&record.name, Some(record.clone()))
                .await
                .map(|(_, vm)| vm);
            located.push((record, found));
        }
        Ok(located)
    }

    /// [`App::locate`] for a VM whose record (if any) the caller already has.
    async fn locate_with(
        &self,
        name: &VmName,
        record: Option<VmRecord>,
    ) -> anyhow::Result<(Arc<dyn VmProvider>, Vm)> {
        let mut kinds = Vec::new();
        if let Some(record) = &record {
            kinds.push(record.provider);
        }
        for kind in [ProviderKind::Nspawn, ProviderKind::Qemu, ProviderKind::Sim] {
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        for kind in kinds {
            let Ok(provider) = self.providers.provider(kind) else {
                continue;
            };
            if let Some(vm) = provider.get(name).await? {
                let vm = if kind.is_local() || kind == ProviderKind::Sim {
                    vm
                } else {
                    trusted_endpoint(vm, record.as_ref())
                };
                return Ok((provider, vm));
            }
        }
        // A VM a worker on another machine made (NATS): what the shared store knows is enough
        // to reach it.
        if let Some(record) = record.filter(|r| !r.address.is_empty()) {
            return Ok((self.providers.provider(record.provider)?, record.to_vm()));
        }
        Err(ProviderError::not_found(name).into())
    }
}

/// A cloud VM as its provider lists it, with the address, SSH port, user and host key
/// recorded when it was created (the state store) in place of what the provider reports: a
/// cloud provider reads those back from resource tags, which anyone allowed to tag the VM can
/// change, and a changed host key would be trusted by `ssh`. Without such a record the host key
/// is left empty, so that nothing connects to the VM trusting its tags.
fn trusted_endpoint(mut vm: Vm, record: Option<&VmRecord>) -> Vm {
    match record.filter(|r| !r.host_key.is_empty() && !r.address.is_empty()) {
        Some(record) => {
            if vm.address != record.address || vm.host_key.trim() != record.host_key.trim() {
                tracing::warn!(
                    vm = %vm.name,
                    "the VM's {} tags name address {} and a host key that differ from what was recorded at its creation; using the recorded address {} and host key",
                    vm.provider,
                    vm.address,
                    record.address
                );
            }
            vm.address.clone_from(&record.address);
            vm.ssh_port = record.ssh_port;
            vm.user.clone_from(&record.user);
            vm.host_key.clone_from(&record.host_key);
        }
        None => vm.host_key.clear(),
    }
    vm
}

/// This machine's host name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
