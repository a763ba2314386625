//! The [`Launcher`]: steps 4–6 of seed 000 for one request — provision, wait for SSH and
//! cloud-init, clone repositories — publishing each stage as an event. Also deletes.

use crate::bus::{Bus, BusError};
use crate::orphans::{Orphan, OrphanStore, Retry, delete_with_retry};
use azlin_core::cloudinit::CloudConfig;
use azlin_core::event::{
    CloudInitComplete, CreateComplete, CreateFailed, CreateRequested, DeleteComplete, DeleteFailed,
    DeleteRequested, Event, EventError, SCHEMA, SshVerified, Stage, Status,
};
use azlin_core::{
    CreateRequest, ErrorKind, ImageProfile, ProviderError, ProviderKind, Vm, VmName, VmProvider,
    now_rfc3339,
};
use azlin_remote::ready::{CloudInitOutcome, wait_for_cloud_init, wait_for_ssh};
use azlin_remote::{Identity, Shell, keys, quote};
use futures::FutureExt;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Gives the launcher the provider for a kind (built lazily by the CLI from its settings).
pub trait ProviderSource: Send + Sync {
    /// The provider of `kind`, or why it cannot be used here.
    fn provider(&self, kind: ProviderKind) -> Result<Arc<dyn VmProvider>, ProviderError>;
}

/// Timeouts and identity of a launcher.
#[derive(Debug, Clone)]
pub struct LaunchSettings {
    /// How long to wait for SSH.
    pub ssh_timeout: Duration,
    /// How long to wait for cloud-init.
    pub cloud_init_timeout: Duration,
    /// This worker's id, stamped on its events.
    pub worker_id: String,
}

/// Performs creates and deletes, publishing events as it goes.
pub struct Launcher {
    bus: Arc<dyn Bus>,
    providers: Arc<dyn ProviderSource>,
    identity: Identity,
    settings: LaunchSettings,
    orphans: Option<OrphanStore>,
    delete_retry: Retry,
}

/// Why a create failed, and whether retrying can help.
#[derive(Debug, Clone)]
pub struct LaunchFailure {
    /// The event to publish if no retry follows.
    pub event: CreateFailed,
}

impl LaunchFailure {
    /// Whether the failure may go away on another attempt (everything made was removed).
    pub fn retryable(&self) -> bool {
        self.event.error.retryable
    }
}

/// Stamps events of one request.
struct Reporter<'a> {
    bus: &'a dyn Bus,
    request_id: &'a str,
    name: &'a VmName,
    attempt: u32,
    worker: &'a str,
}

impl Reporter<'_> {
    async fn status(
        &self,
        stage: Stage,
        message: impl Into<String>,
        warning: bool,
    ) -> Result<(), BusError> {
        let status = Status {
            schema: SCHEMA,
            request_id: self.request_id.to_string(),
            name: self.name.clone(),
            stage,
            message: message.into(),
            attempt: self.attempt,
            worker: self.worker.to_string(),
            at: now_rfc3339(),
            warning,
        };
        self.bus.publish(&Event::CreateStatus(status)).await
    }

    fn failure(
        &self,
        kind: ErrorKind,
        message: String,
        cleaned: Option<Vec<String>>,
    ) -> LaunchFailure {
        let vm_left_running = kind == ErrorKind::Readiness;
        LaunchFailure {
            event: CreateFailed {
                schema: SCHEMA,
                request_id: self.request_id.to_string(),
                name: self.name.clone(),
                error: EventError {
                    kind,
                    retryable: kind.retryable() && cleaned.is_some(),
                    message,
                },
                attempt: self.attempt,
                cleaned_up: cleaned.is_some(),
                removed: cleaned.unwrap_or_default(),
                vm_left_running,
                vm: None,
            },
        }
    }
}

fn bus_failure(reporter: &Reporter<'_>, e: BusError) -> LaunchFailure {
    reporter.failure(
        ErrorKind::Transient,
        format!("publishing progress failed: {e}"),
        None,
    )
}

fn millis(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Launcher {
    /// A launcher publishing on `bus`, using `identity` to reach the VMs it makes.
    pub fn new(
        bus: Arc<dyn Bus>,
        providers: Arc<dyn ProviderSource>,
        identity: Identity,
        settings: LaunchSettings,
    ) -> Self {
        Launcher {
            bus,
            providers,
            identity,
            settings,
            orphans: None,
            delete_retry: Retry::default(),
        }
    }

    /// The same launcher, recording VMs it fails to delete in `orphans`.
    pub fn with_orphans(mut self, orphans: OrphanStore) -> Self {
        self.orphans = Some(orphans);
        self
    }

    /// The same launcher, trying deletes as `retry` says.
    pub fn with_delete_retry(mut self, retry: Retry) -> Self {
        self.delete_retry = retry;
        self
    }

    /// The worker id on this launcher's events.
    pub fn worker_id(&self) -> &str {
        &self.settings.worker_id
    }

    /// Renders the cloud-config for a request: the requester's key and this worker's (when
    /// different), a fresh host key, trusted CAs, packages the image lacks, the user's extras.
    fn user_data(&self, request: &CreateRequested) -> Result<(String, String), ProviderError> {
        let spec = &request.spec;
        let host_key = keys::generate_host_key(spec.name.as_str())
            .map_err(|e| ProviderError::new(ErrorKind::KeySetup, e.to_string()))?;
        let mut authorized = vec![request.ssh_public_key.trim().to_string()];
        let own = self.identity.public_openssh.trim().to_string();
        if !authorized.contains(&own) {
            authorized.push(own);
        }
        // Local images have the profile's tools baked in; elsewhere cloud-init installs them.
        let packages: Vec<&str> = if spec.provider.is_local() || spec.image == ImageProfile::Minimal
        {
            Vec::new()
        } else {
            spec.image.packages().to_vec()
        };
        let user_data = CloudConfig {
            hostname: spec.name.as_str(),
            authorized_keys: authorized,
            host_key: &host_key,
            ca_certs: &spec.ca_certs,
            packages: &packages,
            extra: spec.cloud_init.as_deref(),
        }
        .render()
        .map_err(|e| ProviderError::new(ErrorKind::Usage, e.to_string()))?;
        Ok((user_data, host_key.public_openssh))
    }

    /// Creates the VM of `request` (attempt number `attempt`), waits until it is ready, clones
    /// its repositories, and returns the `vm.create.complete` event — or the failure.
    ///
    /// A panic on the way (a bug) still ends the request with a failure, not retried: the
    /// in-process bus never redelivers a dropped request, so its follower would wait for ever.
    pub async fn create(
        &self,
        request: &CreateRequested,
        attempt: u32,
    ) -> Result<CreateComplete, LaunchFailure> {
        // The launcher holds no state a panic could leave half-changed for the next request.
        match AssertUnwindSafe(self.attempt_create(request, attempt))
            .catch_unwind()
            .await
        {
            Ok(outcome) => outcome,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown cause".to_string());
                let name = &request.spec.name;
                tracing::error!(request_id = %request.request_id, "launch panicked: {why}");
                Err(self.reporter(request, attempt).failure(
                    ErrorKind::Internal,
                    format!(
                        "internal error while launching: {why} (a bug in azlin; anything made \
                         for the VM is removed by `azlin delete {name}`)"
                    ),
                    None,
                ))
            }
        }
    }

    fn reporter<'a>(&'a self, request: &'a CreateRequested, attempt: u32) -> Reporter<'a> {
        Reporter {
            bus: self.bus.as_ref(),
            request_id: &request.request_id,
            name: &request.spec.name,
            attempt,
            worker: &self.settings.worker_id,
        }
    }

    async fn attempt_create(
        &self,
        request: &CreateRequested,
        attempt: u32,
    ) -> Result<CreateComplete, LaunchFailure> {
        let spec = &request.spec;
        let r = self.reporter(request, attempt);
        let mut timings = BTreeMap::new();
        r.status(
            Stage::Accepted,
            format!("worker {} took the request", self.settings.worker_id),
            false,
        )
        .await
        .map_err(|e| bus_failure(&r, e))?;
        let provider = self
            .providers
            .provider(spec.provider)
            .map_err(|e| r.failure(e.kind, e.message, Some(Vec::new())))?;
        let (user_data, host_public_key) = self
            .user_data(request)
            .map_err(|e| r.failure(e.kind, e.message, Some(Vec::new())))?;

        let started = Instant::now();
        r.status(
            Stage::Provisioning,
            format!("creating {} VM", spec.provider),
            false,
        )
        .await
        .map_err(|e| bus_failure(&r, e))?;
        let create = CreateRequest {
            request_id: request.request_id.clone(),
            spec: spec.clone(),
            user_data,
            admin_public_key: request.ssh_public_key.clone(),
            host_public_key,
        };
        let vm = provider.create(&create).await.map_err(|e| {
            let mut failure = r.failure(e.kind, e.message, Some(e.cleaned_up));
            // The provider knows better than the kind whether another attempt can help.
            failure.event.error.retryable &= e.retryable;
            failure
        })?;
        timings.insert("provision".to_string(), millis(started));
        r.status(
            Stage::Provisioned,
            format!("booting at {}", vm.address),
            false,
        )
        .await
        .map_err(|e| bus_failure(&r, e))?;

        let shell = match self.wait_until_ready(&vm, &r, &mut timings).await {
            Ok(shell) => shell,
            Err(mut failure) => {
                if failure.event.vm_left_running {
                    failure.event.vm = Some(vm.endpoint());
                }
                // A VM that did not become ready is left running: say what it is stuck on.
                if failure.event.vm_left_running
                    && let Some(diagnosis) = provider.boot_diagnosis(&vm).await
                {
                    failure.event.error.message += &format!("\nwhat the VM says:\n{diagnosis}");
                }
                return Err(failure);
            }
        };
        let warnings = self
            .clone_repos(spec, shell.as_ref(), &r, &mut timings)
            .await?;
        Ok(CreateComplete {
            schema: SCHEMA,
            request_id: request.request_id.clone(),
            vm: vm.endpoint(),
            timings,
            warnings,
            details: vm.details.clone(),
        })
    }

    /// Step 5: SSH with the injected host key, then cloud-init. Failures leave the VM running.
    async fn wait_until_ready(
        &self,
        vm: &Vm,
        r: &Reporter<'_>,
        timings: &mut BTreeMap<String, u64>,
    ) -> Result<Arc<dyn Shell>, LaunchFailure> {
        let not_ready = |message: String| {
            r.failure(
                ErrorKind::Readiness,
                format!(
                    "{message}; the VM '{}' is left running (inspect it, or `azlin delete {}`)",
                    vm.name, vm.name
                ),
                None,
            )
        };
        let started = Instant::now();
        r.status(
            Stage::WaitingForSsh,
            format!("waiting for SSH on {}:{}", vm.address, vm.ssh_port),
            false,
        )
        .await
        .map_err(|e| bus_failure(r, e))?;
        let shell: Arc<dyn Shell> = if vm.provider == ProviderKind::Sim {
            azlin_remote::connect(vm, &self.identity)
                .await
                .map_err(|e| not_ready(e.to_string()))?
        } else {
            let target = azlin_remote::ssh_target(vm);
            Arc::new(
                wait_for_ssh(&target, &self.identity, self.settings.ssh_timeout)
                    .await
                    .map_err(|e| not_ready(e.to_string()))?,
            )
        };
        timings.insert("ssh".to_string(), millis(started));
        let verified = Event::SshVerified(SshVerified {
            schema: SCHEMA,
            request_id: r.request_id.to_string(),
            name: vm.name.clone(),
            at: now_rfc3339(),
        });
        self.bus
            .publish(&verified)
            .await
            .map_err(|e| bus_failure(r, e))?;
        r.status(
            Stage::SshReady,
            "SSH answered with the injected host key",
            false,
        )
        .await
        .map_err(|e| bus_failure(r, e))?;

        let started = Instant::now();
        r.status(Stage::WaitingForCloudInit, "waiting for cloud-init", false)
            .await
            .map_err(|e| bus_failure(r, e))?;
        // A simulated VM has no cloud-init: it is ready once booted.
        let outcome = if vm.provider == ProviderKind::Sim {
            CloudInitOutcome {
                status: "done".to_string(),
                detail: "simulated VM".to_string(),
            }
        } else {
            wait_for_cloud_init(shell.as_ref(), self.settings.cloud_init_timeout)
                .await
                .map_err(|e| not_ready(e.to_string()))?
        };
        timings.insert("cloud_init".to_string(), millis(started));
        let complete = Event::CloudInitComplete(CloudInitComplete {
            schema: SCHEMA,
            request_id: r.request_id.to_string(),
            name: vm.name.clone(),
            status: outcome.status.clone(),
            at: now_rfc3339(),
        });
        self.bus
            .publish(&complete)
            .await
            .map_err(|e| bus_failure(r, e))?;
        if !outcome.is_done() {
            return Err(not_ready(format!(
                "cloud-init ended with status '{}':\n{}",
                outcome.status, outcome.detail
            )));
        }
        r.status(Stage::CloudInitDone, "cloud-init finished", false)
            .await
            .map_err(|e| bus_failure(r, e))?;
        Ok(shell)
    }

    /// Step 6: clone each repository into `~/<name>`. A failed clone is a warning; the
    /// launch goes on (seed 000).
    async fn clone_repos(
        &self,
        spec: &azlin_core::VmSpec,
        shell: &dyn Shell,
        r: &Reporter<'_>,
        timings: &mut BTreeMap<String, u64>,
    ) -> Result<Vec<String>, LaunchFailure> {
        let mut warnings = Vec::new();
        if spec.repos.is_empty() {
            return Ok(warnings);
        }
        let started = Instant::now();
        for repo in &spec.repos {
            let Some(dir) = repo.dir_name() else { continue };
            r.status(
                Stage::CloningRepos,
                format!("cloning {repo} into ~/{dir}"),
                false,
            )
            .await
            .map_err(|e| bus_failure(r, e))?;
            let command = clone_command(repo, dir);
            let warning = match shell.capture(&command).await {
                Ok(out) if out.code == 0 => None,
                Ok(out) => Some(clone_failure(repo, &out.stderr_text())),
                Err(e) => Some(clone_failure(repo, &e.to_string())),
            };
            if let Some(warning) = warning {
                r.status(Stage::CloningRepos, warning.clone(), true)
                    .await
                    .map_err(|e| bus_failure(r, e))?;
                warnings.push(warning);
            }
        }
        timings.insert("repos".to_string(), millis(started));
        r.status(
            Stage::ReposDone,
            format!(
                "{} of {} repositories cloned",
                spec.repos.len() - warnings.len(),
                spec.repos.len()
            ),
            false,
        )
        .await
        .map_err(|e| bus_failure(r, e))?;
        Ok(warnings)
    }

    /// Deletes the VM of `request`, returning the terminal event to publish.
    pub async fn delete(&self, request: &DeleteRequested) -> Event {
        let failed = |error: ProviderError| {
            Event::DeleteFailed(DeleteFailed {
                schema: SCHEMA,
                request_id: request.request_id.clone(),
                name: request.name.clone(),
                error: EventError {
                    kind: error.kind,
                    retryable: error.kind.retryable(),
                    message: error.message,
                },
                at: now_rfc3339(),
            })
        };
        let provider = match self.providers.provider(request.provider) {
            Ok(provider) => provider,
            Err(e) => return failed(e),
        };
        let status = Event::DeleteStatus(Status {
            schema: SCHEMA,
            request_id: request.request_id.clone(),
            name: request.name.clone(),
            stage: Stage::Deleting,
            message: format!("deleting {} VM", request.provider),
            attempt: 1,
            worker: self.settings.worker_id.clone(),
            at: now_rfc3339(),
            warning: false,
        });
        if let Err(e) = self.bus.publish(&status).await {
            tracing::warn!("publishing delete progress: {e}");
        }
        match delete_with_retry(provider.as_ref(), &request.name, self.delete_retry).await {
            Ok(report) => Event::DeleteComplete(DeleteComplete {
                schema: SCHEMA,
                request_id: request.request_id.clone(),
                name: request.name.clone(),
                removed: report.removed,
                at: now_rfc3339(),
            }),
            Err(e) => {
                if let Some(orphans) = &self.orphans {
                    orphans.record_or_log(&Orphan::vm(request.provider, &request.name, &e.message));
                }
                failed(e)
            }
        }
    }
}

/// The shell command that clones `repo` into `~/<dir>` on a VM. A clone already there (left by
/// an earlier attempt) counts as done. git never asks for a password: a repository that needs
/// one fails at once.
pub fn clone_command(repo: &azlin_core::RepoUrl, dir: &str) -> String {
    format!(
        "test -d {dir}/.git || GIT_TERMINAL_PROMPT=0 git clone --quiet -- {url} {dir}",
        dir = quote::sh(dir),
        url = quote::sh(repo.as_str())
    )
}

/// The warning for a clone of `repo` that failed with `detail` (what git said); one that needed
/// credentials says how to give a token.
pub fn clone_failure(repo: &azlin_core::RepoUrl, detail: &str) -> String {
    let detail = detail.trim();
    let needs_credentials = [
        "could not read Username",
        "Authentication failed",
        "terminal prompts disabled",
    ]
    .iter()
    .any(|sign| detail.contains(sign));
    let hint = if needs_credentials {
        " (a private repository: give the VM a GitHub token with --gh-token-file FILE or \
         [github] token_file, or log in here with `gh auth login`)"
    } else {
        ""
    };
    format!("cloning {repo} failed: {detail}{hint}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::bus::memory::MemoryBus;
    use azlin_core::{CreateRequest, VmSpec};
    use azlin_providers::sim::{SimProvider, SimSettings};

    struct One(Arc<dyn VmProvider>);

    impl ProviderSource for One {
        fn provider(&self, _: ProviderKind) -> Result<Arc<dyn VmProvider>, ProviderError> {
            Ok(self.0.clone())
        }
    }

    /// A delete that keeps failing is retried, answered with `vm.delete.failed`, and the VM
    /// is recorded as an orphan.
    #[tokio::test(start_paused = true)]
    async fn a_failed_delete_records_an_orphan() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimProvider::new(dir.path().join("sim"), SimSettings::default())
            .with_delete_fail_rate(1.0);
        let name = VmName::parse("stuck").unwrap();
        sim.create(&CreateRequest {
            request_id: "r1".into(),
            spec: VmSpec::new(name.clone(), ProviderKind::Sim),
            user_data: String::new(),
            admin_public_key: String::new(),
            host_public_key: String::new(),
        })
        .await
        .unwrap();
        let orphans = OrphanStore::in_state_dir(dir.path());
        let launcher = Launcher::new(
            Arc::new(MemoryBus::new()),
            Arc::new(One(Arc::new(sim))),
            Identity::ephemeral().unwrap(),
            LaunchSettings {
                ssh_timeout: Duration::from_secs(1),
                cloud_init_timeout: Duration::from_secs(1),
                worker_id: "test".into(),
            },
        )
        .with_orphans(orphans.clone());
        let event = launcher
            .delete(&DeleteRequested {
                schema: SCHEMA,
                request_id: "d1".into(),
                name: name.clone(),
                provider: ProviderKind::Sim,
                requested_by: "test".into(),
                created_at: now_rfc3339(),
            })
            .await;
        assert!(matches!(event, Event::DeleteFailed(_)), "{event:?}");
        let recorded = orphans.list().unwrap();
        assert_eq!(recorded.len(), 1, "{recorded:?}");
        assert_eq!(recorded[0].name, "stuck");
        assert_eq!(recorded[0].provider, ProviderKind::Sim);
        assert!(recorded[0].failure.contains("simulated delete failure"));
    }
}
