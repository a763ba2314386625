//! Reaching azlin VMs: SSH keys, readiness checks, command execution with streamed output,
//! interactive attach and tunnels.
//!
//! This is the only layer that speaks SSH or runs `ssh`. Upper layers get a [`Shell`] for a VM
//! from [`connect`] and never care whether it is an SSH session (nspawn, qemu, azure) or local
//! processes in a directory (sim).

pub mod attach;
pub mod copy;
pub mod desktop;
pub mod fleet;
pub mod github;
pub mod health;
pub mod idle;
pub mod keys;
pub mod local;
pub mod quote;
pub mod ready;
pub mod rotate;
pub mod shell;
pub mod ssh;
pub mod ssh_config;
pub mod tunnel;

pub use keys::Identity;
pub use local::LocalShell;
pub use shell::{Captured, OutputStream, RemoteError, Shell};
pub use ssh::{SshShell, SshTarget};

use azlin_core::{ProviderKind, Vm};
use std::sync::Arc;

/// Opens a [`Shell`] on a VM that is up: an SSH connection checked against the VM's injected
/// host key, or, for `sim` VMs, local processes in the VM's folder.
pub async fn connect(vm: &Vm, identity: &Identity) -> Result<Arc<dyn Shell>, RemoteError> {
    if vm.provider == ProviderKind::Sim {
        return Ok(Arc::new(LocalShell::new(&vm.address)));
    }
    Ok(Arc::new(
        SshShell::connect(&ssh_target(vm), identity).await?,
    ))
}

/// The SSH target of a VM.
pub fn ssh_target(vm: &Vm) -> SshTarget {
    SshTarget {
        host: vm.address.clone(),
        port: vm.ssh_port,
        user: vm.user.clone(),
        host_key: vm.host_key.clone(),
    }
}
