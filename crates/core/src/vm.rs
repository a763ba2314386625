//! A VM as azlin knows it: where it runs and how to reach it.

use crate::{ProviderKind, VmName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Lifecycle state of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    /// Being created.
    Creating,
    /// Running (booted; SSH may still be starting).
    Running,
    /// Stopped or deallocated; its disk is kept.
    Stopped,
    /// Being deleted.
    Deleting,
    /// Creation failed.
    Failed,
    /// The provider reports something azlin does not model.
    Unknown,
}

impl VmState {
    /// The lowercase name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Creating => "creating",
            VmState::Running => "running",
            VmState::Stopped => "stopped",
            VmState::Deleting => "deleting",
            VmState::Failed => "failed",
            VmState::Unknown => "unknown",
        }
    }
}

impl fmt::Display for VmState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM made by azlin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    /// Its name.
    pub name: VmName,
    /// The provider that made it.
    pub provider: ProviderKind,
    /// Current state.
    pub state: VmState,
    /// Where SSH listens: an IP address or host name. For `sim` VMs, the VM's directory on this
    /// machine (commands run there as local processes).
    pub address: String,
    /// The SSH port.
    pub ssh_port: u16,
    /// The login user.
    pub user: String,
    /// The VM's SSH host public key (`ssh-ed25519 AAAA…`), injected by azlin, checked strictly.
    pub host_key: String,
    /// The `vm.create.request` that made it: the idempotency key.
    pub request_id: String,
    /// Provider-specific facts (network namespace, resource ids, process id…).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

impl Vm {
    /// How to reach it (the `vm` of `vm.create.complete`).
    pub fn endpoint(&self) -> crate::event::VmEndpoint {
        crate::event::VmEndpoint {
            name: self.name.clone(),
            provider: self.provider,
            address: self.address.clone(),
            ssh_port: self.ssh_port,
            user: self.user.clone(),
            host_key: self.host_key.clone(),
        }
    }

    /// The `ssh` command a user would type to reach this VM.
    pub fn ssh_command(&self, key_path: &str) -> String {
        let port = if self.ssh_port == 22 {
            String::new()
        } else {
            format!(" -p {}", self.ssh_port)
        };
        format!("ssh -i {key_path}{port} {}@{}", self.user, self.address)
    }
}
