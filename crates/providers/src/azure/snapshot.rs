//! Snapshots of Azure VMs: managed-disk snapshots of the OS disk through ARM
//! (`Microsoft.Compute/snapshots`, tagged with the VM). A restore makes a new OS disk from the
//! snapshot and swaps it in with the VM deallocated, then starts the VM again if it ran; the old
//! disk is deleted.

use super::arm::{COMPUTE_API, DISKS_API};
use super::provider::AzureProvider;
use super::resources::{Scope, TAG_MANAGED, TAG_VM, tag, types};
use azlin_core::provider::check_snapshot_name;
use azlin_core::{ErrorKind, ProviderError, Snapshot, Vm, VmName, VmProvider, VmState};
use serde_json::{Value, json};

/// The tag naming the snapshot (the resource name also carries the VM's).
const TAG_SNAPSHOT: &str = "azlin-snapshot";

/// The ARM name of `vm`'s snapshot `snapshot`.
fn resource_name(vm: &VmName, snapshot: &str) -> String {
    format!("{vm}-snap-{snapshot}")
}

fn describe(vm: &VmName, body: &Value) -> Option<Snapshot> {
    let name = tag(body, TAG_SNAPSHOT)?.to_string();
    let gib = body
        .pointer("/properties/diskSizeGB")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    Some(Snapshot {
        vm: vm.clone(),
        name,
        created_at: body
            .pointer("/properties/timeCreated")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        with_memory: false,
        size_bytes: gib << 30,
    })
}

fn failure(what: String) -> impl FnOnce(super::arm::ArmError) -> ProviderError {
    move |e| e.into_provider(&what)
}

impl AzureProvider {
    /// The VM's ARM body.
    async fn vm_body(&self, scope: &Scope, name: &VmName) -> Result<Value, ProviderError> {
        self.arm
            .get(&scope.path(types::VM, name.as_str()), COMPUTE_API)
            .await
            .map_err(failure(format!("reading VM {name}")))?
            .ok_or_else(|| ProviderError::not_found(name))
    }

    /// The snapshot's ARM body, or a not-found error naming it.
    async fn snapshot_body(
        &self,
        scope: &Scope,
        name: &VmName,
        snapshot: &str,
    ) -> Result<Value, ProviderError> {
        let path = scope.path(types::SNAPSHOT, &resource_name(name, snapshot));
        self.arm
            .get(&path, DISKS_API)
            .await
            .map_err(failure(format!("reading snapshot {snapshot} of {name}")))?
            .filter(|body| tag(body, TAG_VM) == Some(name.as_str()))
            .ok_or_else(|| {
                ProviderError::new(ErrorKind::NotFound, format!("no snapshot '{snapshot}'"))
            })
    }

    pub(super) async fn create_snapshot(
        &self,
        name: &VmName,
        snapshot: &str,
    ) -> Result<Snapshot, ProviderError> {
        check_snapshot_name(snapshot)?;
        let (_, scope) = self.require(name).await?;
        if self.snapshot_body(&scope, name, snapshot).await.is_ok() {
            return Err(ProviderError::new(
                ErrorKind::Usage,
                format!("VM '{name}' already has a snapshot '{snapshot}'"),
            ));
        }
        let vm = self.vm_body(&scope, name).await?;
        let disk = vm
            .pointer("/properties/storageProfile/osDisk/managedDisk/id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Provision,
                    format!("VM {name} has no managed OS disk"),
                )
            })?;
        let body = json!({
            "location": vm.get("location").cloned().unwrap_or(Value::Null),
            "tags": { TAG_MANAGED: "true", TAG_VM: name.as_str(), TAG_SNAPSHOT: snapshot },
            "properties": {
                "creationData": { "createOption": "Copy", "sourceResourceId": disk },
                "incremental": false,
            }
        });
        let path = scope.path(types::SNAPSHOT, &resource_name(name, snapshot));
        let made = self
            .arm
            .put(&path, DISKS_API, &body)
            .await
            .map_err(failure(format!("taking snapshot {snapshot} of {name}")))?;
        describe(name, &made).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Provision,
                "the snapshot came back without its tags",
            )
        })
    }

    pub(super) async fn list_snapshots(
        &self,
        name: &VmName,
    ) -> Result<Vec<Snapshot>, ProviderError> {
        let (_, scope) = self.require(name).await?;
        let path = format!("{}/providers/{}", scope.group_path(), types::SNAPSHOT);
        let items = self
            .arm
            .list(&path, DISKS_API, &[])
            .await
            .map_err(failure(format!("listing the snapshots of {name}")))?;
        let mut snapshots: Vec<Snapshot> = items
            .iter()
            .filter(|body| tag(body, TAG_VM) == Some(name.as_str()))
            .filter_map(|body| describe(name, body))
            .collect();
        snapshots.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        Ok(snapshots)
    }

    pub(super) async fn restore_snapshot(
        &self,
        name: &VmName,
        snapshot: &str,
    ) -> Result<Vm, ProviderError> {
        check_snapshot_name(snapshot)?;
        let (vm, scope) = self.require(name).await?;
        let source = self.snapshot_body(&scope, name, snapshot).await?;
        let was_running = vm.state == VmState::Running;
        if vm.state != VmState::Stopped {
            self.stop(name).await?;
        }
        let body = self.vm_body(&scope, name).await?;
        let old_disk = body
            .pointer("/properties/storageProfile/osDisk/name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let disk_name = format!("{name}-osdisk-{snapshot}-{}", &azlin_core::new_id()[..8]);
        let disk = json!({
            "location": body.get("location").cloned().unwrap_or(Value::Null),
            "tags": { TAG_MANAGED: "true", TAG_VM: name.as_str() },
            "properties": {
                "creationData": { "createOption": "Copy", "sourceResourceId": source["id"] },
            }
        });
        let disk_path = scope.path(types::DISK, &disk_name);
        let made = self
            .arm
            .put(&disk_path, DISKS_API, &disk)
            .await
            .map_err(failure(format!("making a disk from snapshot {snapshot}")))?;
        let swap = json!({
            "properties": { "storageProfile": { "osDisk": {
                "name": disk_name,
                "managedDisk": { "id": made["id"] },
            } } }
        });
        self.arm
            .patch(&scope.path(types::VM, name.as_str()), COMPUTE_API, &swap)
            .await
            .map_err(failure(format!("swapping the OS disk of {name}")))?;
        if let Some(old) = old_disk {
            let path = scope.path(types::DISK, &old);
            if let Err(e) = self.arm.delete(&path, DISKS_API).await {
                tracing::warn!(disk = %old, error = %e, "the replaced OS disk could not be deleted");
            }
        }
        if was_running {
            self.start(name).await
        } else {
            self.require(name).await.map(|(vm, _)| vm)
        }
    }

    pub(super) async fn delete_snapshot(
        &self,
        name: &VmName,
        snapshot: &str,
    ) -> Result<(), ProviderError> {
        check_snapshot_name(snapshot)?;
        let (_, scope) = self.require(name).await?;
        self.snapshot_body(&scope, name, snapshot).await?;
        let path = scope.path(types::SNAPSHOT, &resource_name(name, snapshot));
        self.arm
            .delete(&path, DISKS_API)
            .await
            .map(drop)
            .map_err(failure(format!("deleting snapshot {snapshot} of {name}")))
    }
}
