//! How a session gets its VM: the [`Allocator`] trait (the CLI implements it over the control
//! plane, the same launch path as `azlin new`), and [`ProviderAllocator`], an implementation
//! over any [`VmProvider`] whose VMs are reached through a shell factory (the `sim` provider with
//! `LocalShell` in tests).

use async_trait::async_trait;
use azlin_core::{
    CreateRequest, ErrorKind, ProviderError, ProviderKind, Vm, VmName, VmProvider, VmSpec,
};
use azlin_remote::{LocalShell, Shell};
use std::fmt;
use std::sync::Arc;

/// What a session asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationRequest {
    /// The session the VM is for (unique; a good idempotency key).
    pub session_id: String,
    /// What the session runs, for names and tags (`ci.yml` or `ci.yml/build`).
    pub label: String,
    /// The `runs-on` labels of its (first) job: they pick the warm pool.
    pub runs_on: Vec<String>,
}

impl AllocationRequest {
    /// A VM name derived from the session id: `wf-` and its first twelve hex digits.
    pub fn vm_name(&self) -> Result<VmName, AllocError> {
        let hex: String = self
            .session_id
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(12)
            .collect::<String>()
            .to_ascii_lowercase();
        VmName::parse(&format!("wf-{hex}"))
            .map_err(|e| AllocError::new(ErrorKind::Internal, e.to_string()))
    }
}

/// Where a session's VM came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum VmOrigin {
    /// Booted for the session (no pool serves its `runs-on`).
    Booted,
    /// Taken ready from a warm pool, its claim lasting `claim_us` microseconds.
    Pool {
        /// The pool.
        pool: String,
        /// How long the claim in the state store took.
        claim_us: u64,
    },
    /// Booted for the session because the pool that serves it had no ready VM.
    PoolEmpty {
        /// The pool.
        pool: String,
    },
}

impl fmt::Display for VmOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmOrigin::Booted => f.write_str("booted for the session"),
            VmOrigin::Pool { pool, .. } => write!(f, "taken from pool '{pool}'"),
            VmOrigin::PoolEmpty { pool } => {
                write!(f, "cold boot: pool '{pool}' had no ready VM")
            }
        }
    }
}

/// A VM given to a session, and the shell that runs commands on it.
#[derive(Clone)]
pub struct Allocation {
    /// The VM.
    pub vm: Vm,
    /// Commands on the VM (one persistent SSH connection, or local processes for `sim`).
    pub shell: Arc<dyn Shell>,
    /// Where the VM came from.
    pub origin: VmOrigin,
}

impl fmt::Debug for Allocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Allocation")
            .field("vm", &self.vm.name)
            .field("shell", &self.shell.target())
            .finish()
    }
}

/// An allocation or release that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct AllocError {
    /// What kind of failure (decides the exit code).
    pub kind: ErrorKind,
    /// What happened.
    pub message: String,
}

impl AllocError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        AllocError {
            kind,
            message: message.into(),
        }
    }
}

impl From<ProviderError> for AllocError {
    fn from(e: ProviderError) -> Self {
        AllocError::new(e.kind, e.message)
    }
}

/// Gives sessions VMs and takes them back.
#[async_trait]
pub trait Allocator: Send + Sync {
    /// Makes (or hands out) one VM for `request`. Called exactly once per session, before any
    /// command runs.
    async fn allocate(&self, request: &AllocationRequest) -> Result<Allocation, AllocError>;

    /// Takes the VM back (deleting it, for providers that make one per session). Called exactly
    /// once for every successful [`Allocator::allocate`], on every path.
    async fn release(&self, allocation: &Allocation) -> Result<(), AllocError>;
}

/// Makes the shell for a VM.
pub type Connect = dyn Fn(&Vm) -> Result<Arc<dyn Shell>, AllocError> + Send + Sync;

/// An [`Allocator`] that creates one VM per session through a [`VmProvider`] and deletes it on
/// release. It sends no cloud-init and no keys, so it suits providers that need none (`sim`);
/// real VMs come through the control plane's allocator in the CLI.
pub struct ProviderAllocator {
    provider: Arc<dyn VmProvider>,
    kind: ProviderKind,
    connect: Arc<Connect>,
}

impl ProviderAllocator {
    /// VMs of `provider` (of kind `kind`), reached through `connect`.
    pub fn new(provider: Arc<dyn VmProvider>, kind: ProviderKind, connect: Arc<Connect>) -> Self {
        ProviderAllocator {
            provider,
            kind,
            connect,
        }
    }

    /// VMs whose address is a local folder, reached with [`LocalShell`] (the `sim` provider).
    pub fn local(provider: Arc<dyn VmProvider>, kind: ProviderKind) -> Self {
        Self::new(
            provider,
            kind,
            Arc::new(|vm: &Vm| Ok(Arc::new(LocalShell::new(&vm.address)) as Arc<dyn Shell>)),
        )
    }
}

#[async_trait]
impl Allocator for ProviderAllocator {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Allocation, AllocError> {
        let mut spec = VmSpec::new(request.vm_name()?, self.kind);
        spec.tags
            .insert("azlin-session".to_string(), request.session_id.clone());
        let vm = self
            .provider
            .create(&CreateRequest {
                request_id: request.session_id.clone(),
                spec,
                user_data: String::new(),
                admin_public_key: String::new(),
                host_public_key: String::new(),
            })
            .await?;
        match (self.connect)(&vm) {
            Ok(shell) => Ok(Allocation {
                vm,
                shell,
                origin: VmOrigin::Booted,
            }),
            Err(e) => {
                // Nothing may leak: a VM we cannot reach is deleted at once (retried).
                let retry = azlin_control::orphans::Retry::default();
                if let Err(error) = azlin_control::orphans::delete_with_retry(
                    self.provider.as_ref(),
                    &vm.name,
                    retry,
                )
                .await
                {
                    tracing::warn!(vm = %vm.name, %error, "an unreachable session VM could not be deleted; it is left behind");
                }
                Err(e)
            }
        }
    }

    async fn release(&self, allocation: &Allocation) -> Result<(), AllocError> {
        self.provider.delete(&allocation.vm.name).await?;
        Ok(())
    }
}
