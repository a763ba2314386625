//! What the nspawn and qemu providers do alike. Their VMs are processes on this host, each with
//! a folder and a record in a [`RecordStore`]: a record is checked against the host before it is
//! answered, and a VM is torn down as far as it exists — on delete, and when its create fails
//! half-way.

use crate::record::RecordStore;
use azlin_core::{DeleteReport, ErrorKind, ProviderError, Vm, VmName, VmState};
use std::future::Future;

/// A provider whose VMs are processes on this host.
pub(crate) trait LocalVms: Sync {
    /// The VMs' records.
    fn records(&self) -> &RecordStore;

    /// Whether the VM's process is alive.
    fn is_running(&self, vm: &Vm) -> bool;

    /// Removes everything the VM has on the host, as far as it exists, returning what was
    /// removed.
    fn tear_down(&self, vm: &Vm) -> impl Future<Output = Vec<String>> + Send;

    /// The record with its state checked against the host: a VM whose process is gone is
    /// stopped, or failed if it was being created.
    fn refresh(&self, mut vm: Vm) -> Vm {
        if matches!(vm.state, VmState::Running | VmState::Creating) && !self.is_running(&vm) {
            vm.state = if vm.state == VmState::Creating {
                VmState::Failed
            } else {
                VmState::Stopped
            };
        }
        vm
    }
}

/// The record of `name`, checked against the host, if there is one.
pub(crate) fn get(vms: &impl LocalVms, name: &VmName) -> Result<Option<Vm>, ProviderError> {
    Ok(vms.records().load(name)?.map(|vm| vms.refresh(vm)))
}

/// The record of `name`, checked against the host; [`ErrorKind::NotFound`] if there is none.
pub(crate) fn require(vms: &impl LocalVms, name: &VmName) -> Result<Vm, ProviderError> {
    Ok(vms.refresh(vms.records().require(name)?))
}

/// Every record, checked against the host.
pub(crate) fn list(vms: &impl LocalVms) -> Result<Vec<Vm>, ProviderError> {
    Ok(vms
        .records()
        .list()?
        .into_iter()
        .map(|vm| vms.refresh(vm))
        .collect())
}

/// The record of the VM made for `request_id`, checked against the host, if any.
pub(crate) fn find_by_request(
    vms: &impl LocalVms,
    request_id: &str,
) -> Result<Option<Vm>, ProviderError> {
    Ok(vms
        .records()
        .find_by_request(request_id)?
        .map(|vm| vms.refresh(vm)))
}

/// Tears the VM `name` down.
pub(crate) async fn delete(
    vms: &impl LocalVms,
    name: &VmName,
) -> Result<DeleteReport, ProviderError> {
    let vm = vms.records().require(name)?;
    Ok(DeleteReport {
        removed: vms.tear_down(&vm).await,
    })
}

/// The running VM an earlier create of `request_id` made, if any. What a create that died
/// half-way left is torn down, so that the VM can be made once more.
pub(crate) async fn created_before(
    vms: &impl LocalVms,
    request_id: &str,
) -> Result<Option<Vm>, ProviderError> {
    if let Some(vm) = find_by_request(vms, request_id)? {
        if vm.state == VmState::Running {
            return Ok(Some(vm));
        }
        vms.tear_down(&vm).await;
    }
    Ok(None)
}

/// Saves the record of the claimed VM `vm` and makes it with `provision`. If either fails, the
/// VM is torn down as its record on disk knows it (provisioning records what it sets up — a
/// network slot, a process — as soon as it is there) and what was removed joins the error's
/// clean-up list.
pub(crate) async fn provision_or_tear_down<F, Fut>(
    vms: &impl LocalVms,
    vm: Vm,
    provision: F,
) -> Result<Vm, ProviderError>
where
    F: FnOnce(Vm) -> Fut,
    Fut: Future<Output = Result<Vm, ProviderError>>,
{
    let made = match vms.records().save(&vm) {
        Ok(()) => provision(vm.clone()).await,
        Err(e) => Err(e),
    };
    match made {
        Ok(vm) => Ok(vm),
        Err(e) => {
            let latest = vms.records().load(&vm.name).ok().flatten().unwrap_or(vm);
            let mut removed = e.cleaned_up.clone();
            removed.extend(vms.tear_down(&latest).await);
            Err(e.with_cleanup(removed))
        }
    }
}

/// The error of starting VM `name` while it is `state` (neither running nor stopped).
pub(crate) fn cannot_start(name: &VmName, state: VmState) -> ProviderError {
    ProviderError::new(
        ErrorKind::Usage,
        format!("VM '{name}' is {state} and cannot be started; delete it and create it again"),
    )
}
