//! The provider boundary: every kind of VM is created, listed and deleted through [`VmProvider`].

use crate::{ErrorKind, Vm, VmName, VmSpec};
use async_trait::async_trait;

/// What a provider needs to create one VM. The control plane renders cloud-init and generates
/// the host key; the provider only delivers them.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// Idempotency key: a provider asked twice for the same request id makes one VM.
    pub request_id: String,
    /// What to create.
    pub spec: VmSpec,
    /// Rendered `#cloud-config` user data.
    pub user_data: String,
    /// The admin user's SSH public key (also in the user data; Azure wants it separately).
    pub admin_public_key: String,
    /// The SSH host public key the VM will present (its private half is in the user data).
    pub host_public_key: String,
}

/// What a delete (or the cleanup of a failed create) removed, in the order it was removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteReport {
    /// Human-readable descriptions, e.g. `network namespace azlin-3`.
    pub removed: Vec<String>,
}

/// A provider failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ProviderError {
    /// What kind of failure: decides exit code and retry.
    pub kind: ErrorKind,
    /// A message a user can act on.
    pub message: String,
    /// For a failed create: what was removed while cleaning up after it.
    pub cleaned_up: Vec<String>,
    /// Whether another attempt may succeed. Starts as the kind's answer and stays with the
    /// cause when a provider re-labels the kind (a refused permission re-labelled a
    /// provisioning failure is still not worth retrying).
    pub retryable: bool,
}

impl ProviderError {
    /// A failure of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ProviderError {
            kind,
            message: message.into(),
            cleaned_up: Vec::new(),
            retryable: kind.retryable(),
        }
    }

    /// No VM of that name exists.
    pub fn not_found(name: &VmName) -> Self {
        Self::new(ErrorKind::NotFound, format!("no VM named '{name}'"))
    }

    /// Records what the cleanup after this failure removed.
    pub fn with_cleanup(mut self, removed: Vec<String>) -> Self {
        self.cleaned_up = removed;
        self
    }
}

/// A saved state of a VM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The VM.
    pub vm: VmName,
    /// The snapshot's name.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Whether it holds the running VM's memory too (a restore resumes without booting).
    pub with_memory: bool,
    /// What it takes on disk.
    pub size_bytes: u64,
}

/// Snapshot names: `[a-z0-9][a-z0-9._-]{0,62}` — a folder name that cannot climb out, and one
/// word on a monitor's command line.
pub fn check_snapshot_name(snapshot: &str) -> Result<(), ProviderError> {
    let mut chars = snapshot.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && snapshot.len() <= 63;
    if valid {
        Ok(())
    } else {
        Err(ProviderError::new(
            ErrorKind::Usage,
            format!(
                "snapshot name '{snapshot}' must be a lowercase letter or digit followed by up \
                 to 62 lowercase letters, digits, '.', '_' or '-'"
            ),
        ))
    }
}

/// The error of a snapshot operation a provider does not have.
fn no_snapshots(operation: &str) -> ProviderError {
    ProviderError::new(
        ErrorKind::Usage,
        format!("this provider cannot {operation} snapshots"),
    )
}

/// A program a provider needs on the machine it runs on (step 1 of seed 000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The program name looked up on `PATH`.
    pub program: &'static str,
    /// Arguments that make it print its version.
    pub version_args: &'static [&'static str],
    /// What azlin uses it for.
    pub purpose: &'static str,
    /// How to install it on Debian/Ubuntu.
    pub install_hint: &'static str,
}

/// A place VMs run. Implementations: nspawn, qemu, azure, sim.
#[async_trait]
pub trait VmProvider: Send + Sync {
    /// The programs this provider runs (checked by `azlin doctor` and before `new`; exit 2).
    fn required_tools(&self) -> Vec<Tool>;

    /// Step 2 of seed 000: checks that the provider can act (credentials, privileges) and
    /// describes the identity it acts as. Fails with [`ErrorKind::Auth`] (exit 3).
    async fn authenticate(&self) -> Result<String, ProviderError>;

    /// Creates and boots a VM. On failure everything made so far is removed and listed in
    /// [`ProviderError::cleaned_up`]. If a VM for `request.request_id` already exists, returns it.
    async fn create(&self, request: &CreateRequest) -> Result<Vm, ProviderError>;

    /// The VM named `name`, if azlin made it.
    async fn get(&self, name: &VmName) -> Result<Option<Vm>, ProviderError>;

    /// Every VM azlin made with this provider.
    async fn list(&self) -> Result<Vec<Vm>, ProviderError>;

    /// Starts a stopped VM.
    async fn start(&self, name: &VmName) -> Result<Vm, ProviderError>;

    /// Stops a VM, keeping its disk.
    async fn stop(&self, name: &VmName) -> Result<(), ProviderError>;

    /// Deletes a VM and every resource made for it.
    async fn delete(&self, name: &VmName) -> Result<DeleteReport, ProviderError>;

    /// VMs that are gone but left resources this provider made for them (a create killed
    /// between two resources, a delete that stopped half-way), found in the provider's own
    /// inventory; `delete` of each name removes them. Resources of the launches in
    /// `under_way` (request ids) are left out. None for providers whose VM is one resource.
    async fn orphans(&self, _under_way: &[String]) -> Result<Vec<VmName>, ProviderError> {
        Ok(Vec::new())
    }

    /// What the VM itself says about its boot, for a VM that does not become ready: the jobs
    /// its init still waits on, cloud-init's errors, the end of its console. `None` when the
    /// provider cannot look inside.
    async fn boot_diagnosis(&self, _vm: &Vm) -> Option<String> {
        None
    }

    /// Saves the VM's state as `snapshot`: consistent (taken with the VM paused or stopped),
    /// the VM running again afterwards if it was.
    async fn snapshot_create(
        &self,
        _name: &VmName,
        _snapshot: &str,
    ) -> Result<Snapshot, ProviderError> {
        Err(no_snapshots("take"))
    }

    /// The VM's snapshots, oldest first.
    async fn snapshot_list(&self, _name: &VmName) -> Result<Vec<Snapshot>, ProviderError> {
        Err(no_snapshots("list"))
    }

    /// Puts the VM back to `snapshot` (it keeps its identity: name, address, host key).
    async fn snapshot_restore(&self, _name: &VmName, _snapshot: &str) -> Result<Vm, ProviderError> {
        Err(no_snapshots("restore"))
    }

    /// Deletes `snapshot`.
    async fn snapshot_delete(&self, _name: &VmName, _snapshot: &str) -> Result<(), ProviderError> {
        Err(no_snapshots("delete"))
    }

    /// The VM made for `request_id`, if any (how a redelivered request finds its VM).
    async fn find_by_request(&self, request_id: &str) -> Result<Option<Vm>, ProviderError> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .find(|vm| vm.request_id == request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_cannot_leave_their_folder_or_their_word() {
        for good in ["before-upgrade", "s1", "2026.12.03_a"] {
            assert!(check_snapshot_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/b",
            "Upper",
            "-x",
            "s1 quit",
            &"x".repeat(64),
        ] {
            assert!(check_snapshot_name(bad).is_err(), "{bad}");
        }
    }
}
