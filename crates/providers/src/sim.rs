//! The `sim` provider: a simulated VM with configurable boot latency and failure rate. Its
//! "machine" is a folder; commands run there as local processes (see `azlin_remote::LocalShell`),
//! so repository clones and workflow steps are real. It has no sshd and no cloud-init: it is
//! ready when its boot latency has passed. For control-plane scale tests and benchmarks only;
//! never a default. Its records are not flushed to disk (a simulated VM is not worth an fsync).

use crate::record::RecordStore;
use async_trait::async_trait;
use azlin_core::cloudinit::ADMIN_USER;
use azlin_core::{
    CreateRequest, DeleteReport, ErrorKind, ProviderError, ProviderKind, Tool, Vm, VmName,
    VmProvider, VmState,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SimSettings {
    /// How long a create takes.
    pub boot: Duration,
    /// Probability (0..=1) that a create fails.
    pub fail_rate: f64,
}

/// The `sim` provider, keeping its VMs under one folder.
#[derive(Debug, Clone)]
pub struct SimProvider {
    records: RecordStore,
    settings: SimSettings,
    /// Probability (0..=1) that a delete fails (and leaves the VM), for tests of what
    /// happens to resources azlin cannot remove.
    delete_fail_rate: f64,
}

impl SimProvider {
    /// A provider keeping VMs under `root`.
    pub fn new(root: impl Into<PathBuf>, settings: SimSettings) -> Self {
        SimProvider {
            records: RecordStore::unsynced(root),
            settings,
            delete_fail_rate: 0.0,
        }
    }

    /// The same provider, failing deletes with probability `rate` (0..=1).
    pub fn with_delete_fail_rate(mut self, rate: f64) -> Self {
        self.delete_fail_rate = rate;
        self
    }

    fn io(context: &str, e: std::io::Error) -> ProviderError {
        ProviderError::new(ErrorKind::Provision, format!("{context}: {e}"))
    }

    /// Lays out the machine folder: its home.
    fn lay_out(&self, dir: &std::path::Path) -> Result<(), ProviderError> {
        std::fs::create_dir_all(dir.join("home")).map_err(|e| Self::io("creating sim home", e))
    }

    /// Finishes booting a VM whose record says `Creating`.
    async fn boot(&self, mut vm: Vm) -> Result<Vm, ProviderError> {
        // Even a zero sleep waits for the timer wheel's next tick (a millisecond): skip it.
        if !self.settings.boot.is_zero() {
            tokio::time::sleep(self.settings.boot).await;
        }
        if self.settings.fail_rate > 0.0 && fastrand::f64() < self.settings.fail_rate {
            let dir = self.records.dir(&vm.name);
            self.records.remove(&vm.name)?;
            return Err(ProviderError::new(
                ErrorKind::Provision,
                format!(
                    "simulated boot failure of '{}' (fail rate {})",
                    vm.name, self.settings.fail_rate
                ),
            )
            .with_cleanup(vec![format!("sim VM folder {}", dir.display())]));
        }
        vm.state = VmState::Running;
        self.records.save(&vm)?;
        Ok(vm)
    }
}

#[async_trait]
impl VmProvider for SimProvider {
    fn required_tools(&self) -> Vec<Tool> {
        Vec::new()
    }

    async fn authenticate(&self) -> Result<String, ProviderError> {
        Ok("simulated provider (no credentials)".to_string())
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vm, ProviderError> {
        if let Some(vm) = self.find_by_request(&request.request_id).await? {
            return match vm.state {
                VmState::Creating => self.boot(vm).await,
                _ => Ok(vm),
            };
        }
        let dir = self
            .records
            .claim(&request.spec.name, &request.request_id)?;
        let vm = Vm {
            name: request.spec.name.clone(),
            provider: ProviderKind::Sim,
            state: VmState::Creating,
            address: dir.display().to_string(),
            ssh_port: 22,
            user: ADMIN_USER.to_string(),
            host_key: request.host_public_key.clone(),
            request_id: request.request_id.clone(),
            details: BTreeMap::new(),
        };
        if let Err(e) = self.lay_out(&dir).and_then(|()| self.records.save(&vm)) {
            self.records.remove(&vm.name)?;
            return Err(e.with_cleanup(vec![format!("sim VM folder {}", dir.display())]));
        }
        self.boot(vm).await
    }

    async fn get(&self, name: &VmName) -> Result<Option<Vm>, ProviderError> {
        self.records.load(name)
    }

    async fn find_by_request(&self, request_id: &str) -> Result<Option<Vm>, ProviderError> {
        self.records.find_by_request(request_id)
    }

    async fn list(&self) -> Result<Vec<Vm>, ProviderError> {
        self.records.list()
    }

    async fn start(&self, name: &VmName) -> Result<Vm, ProviderError> {
        let mut vm = self.records.require(name)?;
        vm.state = VmState::Running;
        self.records.save(&vm)?;
        Ok(vm)
    }

    async fn stop(&self, name: &VmName) -> Result<(), ProviderError> {
        let mut vm = self.records.require(name)?;
        vm.state = VmState::Stopped;
        self.records.save(&vm)
    }

    async fn delete(&self, name: &VmName) -> Result<DeleteReport, ProviderError> {
        self.records.require(name)?;
        if self.delete_fail_rate > 0.0 && fastrand::f64() < self.delete_fail_rate {
            return Err(ProviderError::new(
                ErrorKind::Transient,
                format!(
                    "simulated delete failure of '{name}' (delete fail rate {})",
                    self.delete_fail_rate
                ),
            ));
        }
        let dir = self.records.dir(name);
        self.records.remove(name)?;
        Ok(DeleteReport {
            removed: vec![format!("sim VM folder {}", dir.display())],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use azlin_core::VmSpec;

    fn request(name: &str, id: &str) -> CreateRequest {
        CreateRequest {
            request_id: id.into(),
            spec: VmSpec::new(VmName::parse(name).unwrap(), ProviderKind::Sim),
            user_data: String::new(),
            admin_public_key: String::new(),
            host_public_key: String::new(),
        }
    }

    #[tokio::test]
    async fn lifecycle_and_idempotency() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimProvider::new(dir.path(), SimSettings::default());
        let vm = sim.create(&request("a", "r1")).await.unwrap();
        assert_eq!(vm.state, VmState::Running);
        // The same request again returns the same VM; another request for the name conflicts.
        assert_eq!(sim.create(&request("a", "r1")).await.unwrap(), vm);
        assert_eq!(
            sim.create(&request("a", "r2")).await.unwrap_err().kind,
            ErrorKind::Conflict
        );
        sim.stop(&vm.name).await.unwrap();
        assert_eq!(
            sim.get(&vm.name).await.unwrap().unwrap().state,
            VmState::Stopped
        );
        assert_eq!(sim.start(&vm.name).await.unwrap().state, VmState::Running);
        assert_eq!(sim.list().await.unwrap().len(), 1);
        sim.delete(&vm.name).await.unwrap();
        assert!(sim.list().await.unwrap().is_empty());
        assert!(!std::path::Path::new(&vm.address).exists());
    }

    #[tokio::test]
    async fn failures_clean_up() {
        let dir = tempfile::tempdir().unwrap();
        let sim = SimProvider::new(
            dir.path(),
            SimSettings {
                boot: Duration::ZERO,
                fail_rate: 1.0,
            },
        );
        let err = sim.create(&request("b", "r1")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Provision);
        assert_eq!(err.cleaned_up.len(), 1);
        assert!(sim.list().await.unwrap().is_empty());
        assert!(!dir.path().join("b").exists());
    }
}
