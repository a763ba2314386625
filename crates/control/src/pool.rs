//! Warm pools (`[pool.NAME]`): VMs booted ahead through the control plane, SSH-verified and
//! cloud-init-done, recorded in the state store as `pooled`, and each handed out once.
//!
//! Taking a VM is an atomic claim in the store ([`StateStore::claim`]), so no two takers get
//! the same VM, across processes and (with NATS) hosts. A VM taken never goes back: its taker
//! deletes it, and [`Pools::maintain`] boots a replacement. `maintain` also retires VMs that are
//! too old or unhealthy, and reaps VMs whose taker died before releasing them. It runs in the
//! pool keeper of `azlin serve`, or detached after a take (`azlin pool fill`).

use crate::bus::Bus;
use crate::orchestrator::Orchestrator;
use crate::plan::{PlanError, Planner};
use crate::store::{Claim, RecordState, StoreError, VmRecord};
use azlin_core::config::PoolConfig;
use azlin_core::event::{CreateRequested, DeleteRequested, Event, PoolVm, Request, SCHEMA};
use azlin_core::{cloudinit, new_id, now_rfc3339};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A pool operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The pool is unknown or its settings are wrong (exit 64).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A request could not be submitted.
    #[error(transparent)]
    Submit(#[from] crate::orchestrator::SubmitError),
    /// The pool's lock file could not be used.
    #[error("pool lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How a pool stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolStatus {
    /// The pool.
    pub name: String,
    /// VMs ready to be taken.
    pub ready: usize,
    /// VMs booting.
    pub booting: usize,
    /// VMs handed out and not yet gone.
    pub taken: usize,
    /// The ready VMs it keeps.
    pub min_ready: usize,
    /// Most VMs at once.
    pub max: usize,
    /// The `runs-on` labels it serves.
    pub labels: Vec<String>,
    /// The ready VMs, oldest first.
    pub ready_vms: Vec<String>,
}

impl PoolStatus {
    /// `pool`'s standing among `records`.
    pub fn of(name: &str, pool: &PoolConfig, records: &[VmRecord]) -> PoolStatus {
        let mut members: Vec<&VmRecord> = records
            .iter()
            .filter(|r| r.pool.as_deref() == Some(name))
            .collect();
        members.sort_by(|a, b| a.updated_at.cmp(&b.updated_at));
        let count = |state: RecordState| members.iter().filter(|r| r.state == state).count();
        let ready_vms: Vec<String> = members
            .iter()
            .filter(|r| r.state == RecordState::Pooled)
            .map(|r| r.name.to_string())
            .collect();
        PoolStatus {
            name: name.to_string(),
            ready: ready_vms.len(),
            booting: count(RecordState::Creating),
            taken: members.len() - ready_vms.len() - count(RecordState::Creating),
            min_ready: pool.min_ready,
            max: pool.max_vms(),
            labels: pool.labels.clone(),
            ready_vms,
        }
    }

    /// How many VMs to boot now: up to `min_ready` ready or booting, within `max` in all.
    pub fn deficit(&self) -> usize {
        let coming = self.ready + self.booting;
        let room = self.max.saturating_sub(coming + self.taken);
        self.min_ready.saturating_sub(coming).min(room)
    }
}

/// What [`Pools::maintain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Maintenance {
    /// VMs booted into the pool.
    pub booted: Vec<String>,
    /// Boots that failed, with the reason.
    pub failed: Vec<String>,
    /// VMs retired, with the reason.
    pub retired: Vec<String>,
    /// Whether another process was already maintaining the pool (nothing was done).
    pub busy: bool,
}

/// Decides whether a ready pool VM still works.
pub type HealthCheck = dyn Fn(&VmRecord) -> futures::future::BoxFuture<'static, bool> + Send + Sync;

/// The pools of one config, worked through a control plane.
#[derive(Clone)]
pub struct Pools {
    bus: Arc<dyn Bus>,
    orchestrator: Orchestrator,
    ssh_public_key: String,
    requested_by: String,
    host: String,
    lock_dir: PathBuf,
}

impl Pools {
    /// Pools whose VMs are requested on `bus`, recorded by `orchestrator`, and log in with
    /// `ssh_public_key` (as the VM's user, and as root for workflow sessions). `host` names this
    /// machine in claims; fills of one pool on this machine take turns on a lock in `lock_dir`.
    pub fn new(
        bus: Arc<dyn Bus>,
        orchestrator: Orchestrator,
        ssh_public_key: String,
        requested_by: String,
        host: String,
        lock_dir: &Path,
    ) -> Self {
        Pools {
            bus,
            orchestrator,
            ssh_public_key,
            requested_by,
            host,
            lock_dir: lock_dir.to_path_buf(),
        }
    }

    /// The standing of pool `name`.
    pub async fn status(&self, name: &str, pool: &PoolConfig) -> Result<PoolStatus, PoolError> {
        let records = self.orchestrator.store().vms().await?;
        Ok(PoolStatus::of(name, pool, &records))
    }

    /// Takes a ready VM of pool `name` for `by` (a session id or a user), or `None` when none is
    /// ready. With `hand_over`, the VM becomes the user's and is never reaped.
    pub async fn take(
        &self,
        name: &str,
        by: &str,
        hand_over: bool,
    ) -> Result<Option<VmRecord>, PoolError> {
        let mut claim = Claim::by_this_process(by, self.host.clone());
        claim.handed_over = hand_over;
        let Some(record) = self.orchestrator.store().claim(name, None, &claim).await? else {
            return Ok(None);
        };
        self.announce(Event::PoolTaken(pool_event(&record, name, by)))
            .await;
        Ok(Some(record))
    }

    /// Keeps pool `name` as configured: reaps VMs whose taker died, retires ready VMs that are
    /// older than the pool's `max_age_minutes` or fail `health`, then boots VMs until
    /// `min_ready` are ready (within `max`). Returns at once, doing nothing, when another
    /// process of this machine is already at it.
    pub async fn maintain(
        &self,
        planner: &Planner<'_>,
        name: &str,
        health: &HealthCheck,
    ) -> Result<Maintenance, PoolError> {
        let pool = planner.pool(name)?;
        planner.pool_vm(name)?;
        let Some(_lock) = self.try_lock(name)? else {
            return Ok(Maintenance {
                busy: true,
                ..Maintenance::default()
            });
        };
        let mut done = Maintenance::default();
        self.reap(name, &mut done).await?;
        self.retire_stale(name, pool, health, &mut done).await?;
        loop {
            let status = self.status(name, pool).await?;
            let deficit = status.deficit();
            if deficit == 0 {
                break;
            }
            let before = done.booted.len();
            self.boot(planner, name, deficit, &mut done).await?;
            // A round that booted nothing would fail the same way again: leave it for the next
            // maintenance.
            if done.booted.len() == before {
                break;
            }
        }
        Ok(done)
    }

    /// Retires every ready VM of pool `name` (taken VMs finish their work). Returns the
    /// retired VMs.
    pub async fn drain(&self, name: &str) -> Result<Vec<String>, PoolError> {
        let mut retired = Vec::new();
        while let Some(record) = self.take(name, "drain", false).await? {
            self.retire(&record, name, "drained").await;
            retired.push(record.name.to_string());
        }
        Ok(retired)
    }

    /// Deletes a taken VM through the control plane, announcing it as retired for `reason`.
    /// Failures are logged (the delete path records what it could not remove as an orphan).
    pub async fn retire(&self, record: &VmRecord, pool: &str, reason: &str) {
        let delete = Request::Delete(DeleteRequested {
            schema: SCHEMA,
            request_id: new_id(),
            name: record.name.clone(),
            provider: record.provider,
            requested_by: self.requested_by.clone(),
            created_at: now_rfc3339(),
        });
        match self.orchestrator.settle(self.bus.as_ref(), &[delete]).await {
            Ok(ended) => {
                if let Some(Event::DeleteFailed(failed)) = ended.values().next() {
                    tracing::warn!(vm = %record.name, error = %failed.error.message, "retiring a pool VM failed");
                }
            }
            Err(error) => tracing::warn!(vm = %record.name, %error, "retiring a pool VM failed"),
        }
        self.announce(Event::PoolRetired(pool_event(record, pool, reason)))
            .await;
    }

    /// Boots `count` VMs into pool `name` and waits for them.
    async fn boot(
        &self,
        planner: &Planner<'_>,
        name: &str,
        count: usize,
        done: &mut Maintenance,
    ) -> Result<(), PoolError> {
        // Workflow sessions log in as root; users of `new --pool` as the VM's user.
        let root = cloudinit::root_login(&self.ssh_public_key);
        let mut requests = Vec::new();
        for _ in 0..count {
            let mut spec = planner.pool_vm(name)?;
            spec.cloud_init = Some(
                cloudinit::merge_documents(spec.cloud_init.as_deref(), &root)
                    .map_err(|e| PlanError(e.to_string()))?,
            );
            requests.push(Request::Create(CreateRequested {
                schema: SCHEMA,
                request_id: new_id(),
                spec,
                ssh_public_key: self.ssh_public_key.clone(),
                requested_by: self.requested_by.clone(),
                created_at: now_rfc3339(),
            }));
        }
        let ended = self
            .orchestrator
            .settle(self.bus.as_ref(), &requests)
            .await?;
        for event in ended.into_values() {
            match event {
                Event::CreateComplete(complete) => {
                    done.booted.push(complete.vm.name.to_string());
                    self.announce(Event::PoolReady(PoolVm {
                        schema: SCHEMA,
                        request_id: complete.request_id,
                        pool: name.to_string(),
                        name: complete.vm.name,
                        detail: String::new(),
                        at: now_rfc3339(),
                    }))
                    .await;
                }
                Event::CreateFailed(failed) => {
                    tracing::warn!(vm = %failed.name, error = %failed.error.message, "a pool VM failed to boot");
                    done.failed
                        .push(format!("{}: {}", failed.name, failed.error.message));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Retires the ready VMs of `name` that are too old or unhealthy.
    async fn retire_stale(
        &self,
        name: &str,
        pool: &PoolConfig,
        health: &HealthCheck,
        done: &mut Maintenance,
    ) -> Result<(), PoolError> {
        let max_age = Duration::from_secs(pool.max_age_minutes.saturating_mul(60));
        let records = self.orchestrator.store().vms().await?;
        for record in records
            .iter()
            .filter(|r| r.state == RecordState::Pooled && r.pool.as_deref() == Some(name))
        {
            let reason = if age(&record.updated_at) > max_age {
                format!("older than {} minutes", pool.max_age_minutes)
            } else if !health(record).await {
                "failed its health check".to_string()
            } else {
                continue;
            };
            // Claimed first, so that no session takes it while it goes.
            let claim = Claim::by_this_process("keeper", self.host.clone());
            let store = self.orchestrator.store();
            if let Some(taken) = store.claim(name, Some(&record.name), &claim).await? {
                self.retire(&taken, name, &reason).await;
                done.retired.push(format!("{}: {reason}", record.name));
            }
        }
        Ok(())
    }

    /// Retires VMs of `name` taken by processes of this host that are gone.
    async fn reap(&self, name: &str, done: &mut Maintenance) -> Result<(), PoolError> {
        let records = self.orchestrator.store().vms().await?;
        for record in records.iter().filter(|r| r.pool.as_deref() == Some(name)) {
            let Some(claim) = &record.claim else { continue };
            if claim.handed_over
                || claim.host != self.host
                || record.state == RecordState::Deleting
                || process_alive(claim.pid)
            {
                continue;
            }
            let reason = format!("its taker (process {}) is gone", claim.pid);
            self.retire(record, name, &reason).await;
            done.retired.push(format!("{}: {reason}", record.name));
        }
        Ok(())
    }

    /// Records `event` on the audit trail and publishes it. An event that cannot be published
    /// changes nothing, so it is only logged.
    async fn announce(&self, event: Event) {
        if let Err(e) = self.orchestrator.store().apply(&event).await {
            tracing::warn!("recording {}: {e}", event.subject());
        }
        if let Err(e) = self.bus.publish(&event).await {
            tracing::warn!("publishing {}: {e}", event.subject());
        }
    }

    /// The pool's lock on this machine, unless another process holds it.
    fn try_lock(&self, name: &str) -> Result<Option<std::fs::File>, PoolError> {
        let path = self.lock_dir.join(format!("pool-{name}.lock"));
        let fail = |source| PoolError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&self.lock_dir).map_err(fail)?;
        let file = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(fail)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(fail(e)),
        }
    }
}

fn pool_event(record: &VmRecord, pool: &str, detail: &str) -> PoolVm {
    PoolVm {
        schema: SCHEMA,
        request_id: record.request_id.clone(),
        pool: pool.to_string(),
        name: record.name.clone(),
        detail: detail.to_string(),
        at: now_rfc3339(),
    }
}

/// How long ago `rfc3339` was (zero when it cannot be read).
fn age(rfc3339: &str) -> Duration {
    rfc3339
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|then| jiff::Timestamp::now().duration_since(then).try_into().ok())
        .unwrap_or_default()
}

/// Whether process `pid` of this machine still runs.
fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(min_ready: usize, max: Option<usize>) -> PoolConfig {
        PoolConfig {
            provider: None,
            image: None,
            size: None,
            min_ready,
            max,
            labels: vec!["self-hosted".into()],
            max_age_minutes: 60,
        }
    }

    fn status(ready: usize, booting: usize, taken: usize, pool: &PoolConfig) -> PoolStatus {
        PoolStatus {
            name: "ci".into(),
            ready,
            booting,
            taken,
            min_ready: pool.min_ready,
            max: pool.max_vms(),
            labels: Vec::new(),
            ready_vms: Vec::new(),
        }
    }

    #[test]
    fn the_deficit_fills_to_min_ready_within_max() {
        let p = pool(2, Some(3));
        assert_eq!(status(0, 0, 0, &p).deficit(), 2);
        assert_eq!(status(1, 1, 0, &p).deficit(), 0);
        assert_eq!(
            status(0, 0, 2, &p).deficit(),
            1,
            "max caps the VMs in use too"
        );
        assert_eq!(status(0, 0, 3, &p).deficit(), 0);
        assert_eq!(status(3, 0, 0, &p).deficit(), 0);
        assert_eq!(pool(2, None).max_vms(), 4);
    }

    #[test]
    fn a_process_of_this_machine_is_alive_and_a_reaped_one_is_not() {
        assert!(process_alive(std::process::id()));
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid));
    }
}
