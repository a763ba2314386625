//! The `nspawn` provider: each VM is a systemd-nspawn machine booted with full systemd from a
//! copy-on-write overlay of the Debian base image, in its own network namespace, configured by
//! real cloud-init through a NoCloud seed, reached over real SSH.

mod diagnosis;
mod idmap;
mod machine;
mod snapshot;

use crate::image::ImageStore;
use crate::local::{self, LocalVms};
use crate::network::{self, NetworkSettings, Slot};
use crate::record::RecordStore;
use async_trait::async_trait;
use azlin_core::cloudinit::{ADMIN_USER, meta_data};
use azlin_core::{
    CreateRequest, DeleteReport, ErrorKind, ProviderError, ProviderKind, Snapshot, Tool, Vm,
    VmName, VmProvider, VmState,
};
use machine::MachineDir;
use snapshot::Snapshots;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The programs the nspawn provider runs, besides those of [`network::TOOLS`].
pub const TOOLS: [Tool; 2] = [
    Tool {
        program: "systemd-nspawn",
        version_args: &["--version"],
        purpose: "boots local VMs",
        install_hint: "apt-get install systemd-container",
    },
    Tool {
        program: "debootstrap",
        version_args: &["--version"],
        purpose: "builds the Debian base image",
        install_hint: "apt-get install debootstrap",
    },
];

/// Keys of [`Vm::details`] this provider sets.
mod detail {
    pub const SLOT: &str = "slot";
    pub const NETNS: &str = "netns";
    pub const PID: &str = "pid";
    pub const IMAGE: &str = "image";
    pub const FOLDER: &str = "folder";
    pub const UID_BASE: &str = "uid_base";
    pub const SIZE: &str = "size";
}

/// The first host uid of VM user namespaces: slot `N` maps its root to `UID_BASE + N * 65536`.
const UID_BASE: u32 = 0x2000_0000;

/// Removes what machines whose folder is gone left on this host (any azlin home's): their
/// network (namespace, veth, filter) and cgroups. With `dry_run`, only names them. Returns
/// what was (or would be) removed.
pub async fn remove_orphans(dry_run: bool) -> Vec<String> {
    let mut removed = Vec::new();
    for slot in network::orphaned_slots() {
        if dry_run {
            removed.push(format!(
                "network of a VM that is gone (namespace {}, veth {})",
                slot.netns(),
                slot.host_veth()
            ));
            continue;
        }
        removed.extend(leftover_processes(&slot.netns()));
        removed.extend(machine::remove_cgroups(&slot.netns()).await);
        removed.extend(network::remove(slot).await);
    }
    // A machine's cgroups live inside its network's lifetime: groups whose network is gone
    // were left by a machine killed outright.
    for machine in machine::machines_with_cgroups() {
        if Path::new("/run/netns").join(&machine).exists() {
            continue;
        }
        if dry_run {
            removed.push(format!("cgroups of {machine}, a VM that is gone"));
        } else {
            removed.extend(leftover_processes(&machine));
            removed.extend(machine::remove_cgroups(&machine).await);
        }
    }
    removed
}

/// Kills what still runs in a gone machine's cgroups, saying how much.
fn leftover_processes(machine: &str) -> Option<String> {
    match machine::kill_leftover_processes(machine) {
        0 => None,
        n => Some(format!("{n} processes of {machine} left running")),
    }
}

/// The nspawn provider.
#[derive(Debug, Clone)]
pub struct NspawnProvider {
    records: RecordStore,
    images: ImageStore,
    settings: NetworkSettings,
}

impl NspawnProvider {
    /// VMs kept under `vm_dir`, booted from images in `images`, confined by `settings`.
    pub fn new(vm_dir: impl Into<PathBuf>, images: ImageStore, settings: NetworkSettings) -> Self {
        NspawnProvider {
            records: RecordStore::new(vm_dir),
            images,
            settings,
        }
    }

    fn machine(&self, name: &VmName) -> MachineDir {
        MachineDir(self.records.dir(name))
    }

    fn slot(vm: &Vm) -> Option<Slot> {
        vm.details.get(detail::SLOT)?.parse().ok().map(Slot)
    }

    /// The first host uid of the VM's user namespace; none for VMs made before azlin gave
    /// VMs their own (their files belong to host root).
    fn uid_base(vm: &Vm) -> Option<u32> {
        vm.details.get(detail::UID_BASE)?.parse().ok()
    }

    fn pid(vm: &Vm) -> Option<u32> {
        vm.details.get(detail::PID)?.parse().ok()
    }

    fn snapshots(&self, name: &VmName) -> Snapshots {
        Snapshots(self.records.dir(name).join("snapshots"))
    }

    /// Fills a new machine's upper layer from `source`'s snapshot: owners shifted into the new
    /// machine's user namespace, machine id and SSH host keys left for the new machine to make.
    async fn fill_from_snapshot(
        &self,
        source: &azlin_core::CloneSource,
        dir: &MachineDir,
        uid_base: Option<u32>,
    ) -> Result<(), ProviderError> {
        let snapshots = self.snapshots(&source.vm);
        let from_base = snapshots.uid_base(&source.snapshot)?;
        std::fs::remove_dir_all(dir.upper()).ok();
        snapshot::copy_tree(&snapshots.upper(&source.snapshot), &dir.upper()).await?;
        if let (Some(from), Some(to)) = (from_base, uid_base) {
            snapshot::shift_owners(&dir.upper(), from, to)?;
        }
        snapshot::forget_identity(&dir.upper())
    }

    fn rootfs_arg(&self, name: &VmName) -> String {
        self.machine(name).rootfs().display().to_string()
    }

    /// Mounts, networks and boots a machine whose record exists (a new one from `clone_of`'s
    /// snapshot when given); records the pid.
    async fn boot(
        &self,
        mut vm: Vm,
        seed: Option<(&str, &str)>,
        clone_of: Option<&azlin_core::CloneSource>,
    ) -> Result<Vm, ProviderError> {
        let dir = self.machine(&vm.name);
        let image = vm.details.get(detail::IMAGE).cloned().unwrap_or_default();
        let policy = self.settings.policy();
        let (slot, new) = network::attach(Self::slot(&vm), &policy, &dir.0).await?;
        if new {
            vm.details.insert(detail::SLOT.into(), slot.0.to_string());
            vm.details.insert(detail::NETNS.into(), slot.netns());
            let base = UID_BASE + slot.0 * idmap::RANGE;
            vm.details.insert(detail::UID_BASE.into(), base.to_string());
            vm.address = slot.guest_ip().to_string();
            self.records.save(&vm)?;
        }
        let uid_base = Self::uid_base(&vm);
        if let Some(source) = clone_of {
            self.fill_from_snapshot(source, &dir, uid_base).await?;
        }
        dir.mount(
            std::path::Path::new(&image).join("rootfs").as_path(),
            uid_base,
        )?;
        if let Some((meta, user)) = seed {
            dir.write_seed(meta, user, uid_base)?;
        }
        // Its size's CPU, memory and process limits (VMs made before azlin set them have
        // none recorded).
        let limits = vm
            .details
            .get(detail::SIZE)
            .and_then(|size| azlin_core::Size::lookup(size).ok())
            .map(|size| machine::Limits::of(&size));
        let pid = machine::boot(
            &dir,
            &slot.netns(),
            vm.name.as_str(),
            &slot.netns_path(),
            uid_base,
            limits,
        )
        .await?;
        vm.details.insert(detail::PID.into(), pid.to_string());
        vm.state = VmState::Running;
        self.records.save(&vm)?;
        Ok(vm)
    }
}

impl LocalVms for NspawnProvider {
    fn records(&self) -> &RecordStore {
        &self.records
    }

    /// Whether the machine's nspawn process is alive.
    fn is_running(&self, vm: &Vm) -> bool {
        Self::pid(vm).is_some_and(|pid| machine::is_nspawn(pid, &self.rootfs_arg(&vm.name)))
    }

    /// Removes process, mount, network and folder.
    async fn tear_down(&self, vm: &Vm) -> Vec<String> {
        let mut removed = Vec::new();
        let dir = self.machine(&vm.name);
        let pids = match Self::pid(vm).filter(|_| self.is_running(vm)) {
            Some(pid) => vec![pid],
            // A launch killed between starting the machine and recording its pid.
            None => machine::nspawn_processes(&self.rootfs_arg(&vm.name)),
        };
        for pid in pids {
            machine::stop_now(pid).await;
            removed.push(format!("systemd-nspawn process {pid}"));
        }
        match dir.unmount() {
            Ok(true) => removed.push(format!("overlay mount {}", dir.rootfs().display())),
            Ok(false) => {}
            Err(e) => tracing::warn!("{e}"),
        }
        if let Some(slot) = Self::slot(vm) {
            if Self::uid_base(vm).is_some() {
                removed.extend(machine::remove_cgroups(&slot.netns()).await);
            }
            removed.extend(network::remove(slot).await);
        }
        if self.records.remove(&vm.name).is_ok() {
            removed.push(format!(
                "VM folder {} (overlay upper layer)",
                dir.0.display()
            ));
        }
        removed
    }
}

#[async_trait]
impl VmProvider for NspawnProvider {
    fn required_tools(&self) -> Vec<Tool> {
        [&TOOLS[..], &network::TOOLS[..]].concat()
    }

    async fn authenticate(&self) -> Result<String, ProviderError> {
        if !nix::unistd::geteuid().is_root() {
            return Err(ProviderError::new(
                ErrorKind::Auth,
                "the nspawn provider needs root to create network namespaces and mounts \
                 (run azlin with sudo, or use --provider qemu)",
            ));
        }
        if !std::path::Path::new("/proc/self/ns/net").exists() {
            return Err(ProviderError::new(
                ErrorKind::Auth,
                "network namespaces are not available on this kernel",
            ));
        }
        let host = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "this machine".into());
        Ok(format!("root on {host} (network namespaces available)"))
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vm, ProviderError> {
        if let Some(vm) = local::created_before(self, &request.request_id).await? {
            return Ok(vm);
        }
        let spec = &request.spec;
        let image = self.images.locate(spec.image).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Provision,
                format!(
                    "the '{}' base image is not built in {} (run `azlin image build --profile {}`)",
                    spec.image,
                    self.images.dir().display(),
                    spec.image
                ),
            )
        })?;
        let folder = self.records.claim(&spec.name, &request.request_id)?;
        let mut details = BTreeMap::new();
        details.insert(detail::IMAGE.into(), image.dir.display().to_string());
        details.insert(detail::FOLDER.into(), folder.display().to_string());
        details.insert(detail::SIZE.into(), spec.size.clone());
        let vm = Vm {
            name: spec.name.clone(),
            provider: ProviderKind::Nspawn,
            state: VmState::Creating,
            address: String::new(),
            ssh_port: 22,
            user: ADMIN_USER.to_string(),
            host_key: request.host_public_key.clone(),
            request_id: request.request_id.clone(),
            details,
        };
        let meta = meta_data(&request.request_id, spec.name.as_str());
        local::provision_or_tear_down(self, vm, |vm| {
            self.boot(
                vm,
                Some((&meta, &request.user_data)),
                spec.clone_of.as_deref(),
            )
        })
        .await
    }

    async fn get(&self, name: &VmName) -> Result<Option<Vm>, ProviderError> {
        local::get(self, name)
    }

    async fn list(&self) -> Result<Vec<Vm>, ProviderError> {
        local::list(self)
    }

    async fn start(&self, name: &VmName) -> Result<Vm, ProviderError> {
        let vm = local::require(self, name)?;
        match vm.state {
            VmState::Running => Ok(vm),
            VmState::Stopped => self.boot(vm, None, None).await,
            other => Err(local::cannot_start(name, other)),
        }
    }

    async fn stop(&self, name: &VmName) -> Result<(), ProviderError> {
        let mut vm = local::require(self, name)?;
        if let Some(pid) = Self::pid(&vm).filter(|_| self.is_running(&vm)) {
            machine::poweroff(pid, &self.rootfs_arg(name)).await;
        }
        if let Some(slot) = Self::slot(&vm).filter(|_| Self::uid_base(&vm).is_some()) {
            machine::remove_cgroups(&slot.netns()).await;
        }
        self.machine(name).unmount()?;
        vm.state = VmState::Stopped;
        vm.details.remove(detail::PID);
        self.records.save(&vm)
    }

    async fn find_by_request(&self, request_id: &str) -> Result<Option<Vm>, ProviderError> {
        local::find_by_request(self, request_id)
    }

    async fn boot_diagnosis(&self, vm: &Vm) -> Option<String> {
        let pid = Self::pid(vm).filter(|_| self.is_running(vm))?;
        Some(diagnosis::diagnose(&self.machine(&vm.name), pid).await)
    }

    async fn delete(&self, name: &VmName) -> Result<DeleteReport, ProviderError> {
        local::delete(self, name).await
    }

    async fn snapshot_create(
        &self,
        name: &VmName,
        snapshot: &str,
    ) -> Result<Snapshot, ProviderError> {
        azlin_core::provider::check_snapshot_name(snapshot)?;
        let vm = local::require(self, name)?;
        let upper = self.machine(name).upper();
        let uid_base = Self::uid_base(&vm);
        let snapshots = self.snapshots(name);
        let machine = Self::slot(&vm).map(|slot| slot.netns());
        match machine.filter(|_| self.is_running(&vm) && uid_base.is_some()) {
            // A running machine is frozen while its layer is copied: a consistent copy, and the
            // machine goes on where it was.
            Some(machine) => {
                machine::freeze(&machine, true).await?;
                let saved = snapshots.save(name, snapshot, &upper, uid_base).await;
                let thawed = machine::freeze(&machine, false).await;
                let saved = saved?;
                thawed?;
                Ok(saved)
            }
            None if self.is_running(&vm) => Err(ProviderError::new(
                ErrorKind::Usage,
                format!(
                    "VM '{name}' cannot be paused for a snapshot: stop it first (`azlin stop {name}`)"
                ),
            )),
            None => snapshots.save(name, snapshot, &upper, uid_base).await,
        }
    }

    async fn snapshot_list(&self, name: &VmName) -> Result<Vec<Snapshot>, ProviderError> {
        local::require(self, name)?;
        Ok(self.snapshots(name).list(name))
    }

    async fn snapshot_restore(&self, name: &VmName, snapshot: &str) -> Result<Vm, ProviderError> {
        azlin_core::provider::check_snapshot_name(snapshot)?;
        let vm = local::require(self, name)?;
        let snapshots = self.snapshots(name);
        // Refused before the VM is touched when there is no such snapshot.
        snapshots.uid_base(snapshot)?;
        let was_running = self.is_running(&vm);
        if vm.state != VmState::Stopped {
            self.stop(name).await?;
        }
        let dir = self.machine(name);
        for layer in [dir.upper(), dir.work()] {
            std::fs::remove_dir_all(&layer).ok();
        }
        snapshot::copy_tree(&snapshots.upper(snapshot), &dir.upper()).await?;
        if was_running {
            self.start(name).await
        } else {
            local::require(self, name)
        }
    }

    async fn snapshot_delete(&self, name: &VmName, snapshot: &str) -> Result<(), ProviderError> {
        local::require(self, name)?;
        self.snapshots(name).delete(snapshot)
    }
}
