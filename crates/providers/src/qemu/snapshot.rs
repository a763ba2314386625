//! Snapshots of QEMU VMs: internal qcow2 snapshots of the VM's disk. A running VM's are taken
//! through the monitor (`savevm`) with its memory and device state, so that `loadvm` resumes it
//! where it was, without a boot; a stopped VM's hold its disk only (`qemu-img snapshot`).

use super::machine::VmDir;
use super::qmp;
use azlin_core::{ErrorKind, ProviderError, Snapshot, VmName};
use serde::Deserialize;
use std::time::Duration;

/// How long saving or loading a VM's memory may take (under TCG, a few seconds per GiB).
const MONITOR_TIMEOUT: Duration = Duration::from_secs(600);

fn failure(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// One snapshot as `qemu-img info --output=json` lists it.
#[derive(Debug, Deserialize)]
struct Listed {
    name: String,
    #[serde(rename = "vm-state-size", default)]
    vm_state_size: u64,
    #[serde(rename = "date-sec", default)]
    date_sec: i64,
}

#[derive(Debug, Deserialize)]
struct DiskInfo {
    #[serde(default)]
    snapshots: Vec<Listed>,
}

async fn qemu_img(args: &[&str]) -> Result<Vec<u8>, ProviderError> {
    let out = tokio::process::Command::new("qemu-img")
        .args(args)
        .output()
        .await
        .map_err(|e| failure(format!("cannot run qemu-img: {e}")))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(failure(format!(
            "qemu-img {}: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// The snapshots of the VM in `dir`, oldest first (readable while it runs).
pub async fn list(vm: &VmName, dir: &VmDir) -> Result<Vec<Snapshot>, ProviderError> {
    let disk = dir.disk().display().to_string();
    let json = qemu_img(&["info", "--output=json", "--force-share", &disk]).await?;
    let info: DiskInfo = serde_json::from_slice(&json)
        .map_err(|e| failure(format!("reading qemu-img's answer: {e}")))?;
    let mut snapshots: Vec<Snapshot> = info
        .snapshots
        .into_iter()
        .map(|s| Snapshot {
            vm: vm.clone(),
            name: s.name,
            created_at: jiff::Timestamp::from_second(s.date_sec)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            with_memory: s.vm_state_size > 0,
            size_bytes: s.vm_state_size,
        })
        .collect();
    snapshots.sort_by(|a, b| a.created_at.cmp(&b.created_at));
    Ok(snapshots)
}

async fn find(vm: &VmName, dir: &VmDir, snapshot: &str) -> Result<Option<Snapshot>, ProviderError> {
    Ok(list(vm, dir)
        .await?
        .into_iter()
        .find(|s| s.name == snapshot))
}

async fn monitor(dir: &VmDir, command_line: &str) -> Result<(), ProviderError> {
    qmp::human(&dir.qmp_socket(), command_line, MONITOR_TIMEOUT)
        .await
        .map_err(|e| failure(e.to_string()))
}

/// Saves `snapshot`: with memory through the monitor when `running`, the disk alone otherwise.
pub async fn create(
    vm: &VmName,
    dir: &VmDir,
    snapshot: &str,
    running: bool,
) -> Result<Snapshot, ProviderError> {
    if find(vm, dir, snapshot).await?.is_some() {
        return Err(ProviderError::new(
            ErrorKind::Usage,
            format!("VM '{vm}' already has a snapshot '{snapshot}'"),
        ));
    }
    if running {
        monitor(dir, &format!("savevm {snapshot}")).await?;
    } else {
        let disk = dir.disk().display().to_string();
        qemu_img(&["snapshot", "-c", snapshot, &disk]).await?;
    }
    find(vm, dir, snapshot)
        .await?
        .ok_or_else(|| failure(format!("snapshot '{snapshot}' was not saved")))
}

/// Puts the VM back to `snapshot`: a running VM resumes in the saved state (memory and disk,
/// no boot); a stopped VM's disk is put back and it boots from it when started.
pub async fn restore(
    vm: &VmName,
    dir: &VmDir,
    snapshot: &str,
    running: bool,
) -> Result<(), ProviderError> {
    let Some(found) = find(vm, dir, snapshot).await? else {
        return Err(ProviderError::new(
            ErrorKind::NotFound,
            format!("no snapshot '{snapshot}'"),
        ));
    };
    if running && found.with_memory {
        monitor(dir, &format!("loadvm {snapshot}")).await
    } else if running {
        Err(ProviderError::new(
            ErrorKind::Usage,
            format!(
                "snapshot '{snapshot}' holds the disk of a stopped VM: stop '{vm}' first \
                 (`azlin stop {vm}`), then restore it"
            ),
        ))
    } else {
        let disk = dir.disk().display().to_string();
        qemu_img(&["snapshot", "-a", snapshot, &disk])
            .await
            .map(drop)
    }
}

/// Deletes `snapshot`.
pub async fn delete(
    vm: &VmName,
    dir: &VmDir,
    snapshot: &str,
    running: bool,
) -> Result<(), ProviderError> {
    if find(vm, dir, snapshot).await?.is_none() {
        return Err(ProviderError::new(
            ErrorKind::NotFound,
            format!("no snapshot '{snapshot}'"),
        ));
    }
    if running {
        monitor(dir, &format!("delvm {snapshot}")).await
    } else {
        let disk = dir.disk().display().to_string();
        qemu_img(&["snapshot", "-d", snapshot, &disk])
            .await
            .map(drop)
    }
}
