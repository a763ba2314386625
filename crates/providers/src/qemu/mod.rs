//! The `qemu` provider: each VM is a real virtual machine — QEMU with KVM when KVM runs guests
//! on this host, TCG otherwise — booting the qemu flavour of the base image through a
//! copy-on-write qcow2 overlay, configured by real cloud-init from a NoCloud seed ISO, reached
//! over real SSH. It needs no root, so it is the local provider of non-root users (the image
//! itself is built by root once). Either way each VM's QEMU runs in a network namespace whose
//! filter confines the guest as an nspawn machine is confined: run by root, a VM network
//! namespace (see `crate::network`), SSH coming in on the namespace's address; without root, a
//! namespace pasta makes (see `crate::network::rootless`), SSH forwarded from a loopback port.
//!
//! - `accel`: the KVM-or-TCG verdict (probed with a real guest, remembered per host boot).
//! - `host`: CPUs, memory and free loopback ports of the host.
//! - `disk`: the overlay and the seed ISO.
//! - `machine`: the QEMU process: command line, launch, boot watch, power-down, kill.
//! - `qmp`: the QEMU Machine Protocol client behind an orderly power-down.
//!
//! A VM's folder (`<state>/qemu/<name>/`) holds everything the VM has on the host: record,
//! overlay, seed, console log, QMP socket, pid file. Deleting the VM kills its process (which
//! frees its port), removes its network namespace if it has one, and removes the folder.

pub mod accel;
mod disk;
pub mod host;
mod machine;
mod qmp;
mod snapshot;

use crate::image::ImageStore;
use crate::image::qemu::QemuImage;
use crate::local::{self, LocalVms};
use crate::network::{self, NetworkSettings, Slot, rootless};
use crate::record::RecordStore;
use accel::QEMU;
use async_trait::async_trait;
use azlin_core::cloudinit::{ADMIN_USER, meta_data};
use azlin_core::provider::check_snapshot_name;
use azlin_core::{
    CreateRequest, DeleteReport, ErrorKind, ProviderError, ProviderKind, Snapshot, Tool, Vm,
    VmName, VmProvider, VmState,
};
use host::Resources;
use machine::{Boot, LaunchError, Link, VmDir};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The programs the qemu provider runs (and those of `network::TOOLS` when run by root, pasta
/// otherwise).
pub const TOOLS: [Tool; 3] = [
    Tool {
        program: QEMU,
        version_args: &["--version"],
        purpose: "runs local VMs",
        install_hint: "apt-get install qemu-system-x86",
    },
    Tool {
        program: "qemu-img",
        version_args: &["--version"],
        purpose: "creates copy-on-write VM disks",
        install_hint: "apt-get install qemu-utils",
    },
    Tool {
        program: "genisoimage",
        version_args: &["--version"],
        purpose: "writes the cloud-init seed of local VMs",
        install_hint: "apt-get install genisoimage",
    },
];

/// How many ports a boot tries when others keep taking the chosen one first.
const PORT_ATTEMPTS: usize = 8;
/// The SSH address of VMs in the host's network: the loopback end of QEMU's port forward.
const ADDRESS: &str = "127.0.0.1";
/// Where the accelerator verdict is remembered, inside the VM folder root.
const ACCEL_CACHE: &str = ".accel.json";

/// Keys of [`Vm::details`] this provider sets.
mod detail {
    pub const IMAGE: &str = "image";
    pub const FOLDER: &str = "folder";
    pub const KERNEL: &str = "kernel";
    pub const PID: &str = "pid";
    pub const ACCEL: &str = "accel";
    pub const ACCEL_REASON: &str = "accel_reason";
    pub const VCPUS: &str = "vcpus";
    pub const MEMORY_MIB: &str = "memory_mib";
    pub const SLOT: &str = "slot";
    pub const NETNS: &str = "netns";
}

/// Where a provider's VMs are networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Networking {
    /// Each in a VM network namespace behind a filter (root).
    Namespace,
    /// Each in a namespace of its own made by pasta, its filter inside (no root).
    Private,
}

/// The qemu provider.
#[derive(Debug, Clone)]
pub struct QemuProvider {
    records: RecordStore,
    images: ImageStore,
    vm_root: PathBuf,
    network: NetworkSettings,
    /// Whether VMs get a network namespace (only root can make one).
    namespaced: bool,
}

impl QemuProvider {
    /// VMs kept under `vm_dir`, booted from images in `images`, with the default network
    /// settings (see [`QemuProvider::with_network`]); in a VM network namespace each when
    /// run by root.
    pub fn new(vm_dir: impl Into<PathBuf>, images: ImageStore) -> Self {
        let vm_root = absolute(vm_dir.into());
        QemuProvider {
            records: RecordStore::new(&vm_root),
            images,
            vm_root,
            network: NetworkSettings::default(),
            namespaced: nix::unistd::geteuid().is_root(),
        }
    }

    /// The same, with VMs confined by `network` (with or without root, as nspawn machines).
    pub fn with_network(mut self, network: NetworkSettings) -> Self {
        self.network = network;
        self
    }

    /// How VMs are networked, or why they cannot be.
    fn networking(&self) -> Result<Networking, ProviderError> {
        if self.namespaced {
            return Ok(Networking::Namespace);
        }
        rootless::check()?;
        Ok(Networking::Private)
    }

    fn slot(vm: &Vm) -> Option<Slot> {
        vm.details.get(detail::SLOT)?.parse().ok().map(Slot)
    }

    /// Gives a VM its network namespace (a new one, or its own made again after a host
    /// reboot) and sends the guest's gateway address on to the host; the link QEMU gets.
    async fn namespace(&self, vm: &mut Vm) -> Result<Link, ProviderError> {
        let dir = self.dir(&vm.name);
        let policy = self.network.policy();
        let (slot, new) = network::attach(Self::slot(vm), &policy, &dir.0).await?;
        if new {
            vm.details.insert(detail::SLOT.into(), slot.0.to_string());
            vm.details.insert(detail::NETNS.into(), slot.netns());
            vm.address = slot.guest_ip().to_string();
            vm.ssh_port = 22;
            self.records.save(vm)?;
        }
        network::send_loopback_to_host(slot).await?;
        Ok(Link::Namespace {
            netns: slot.netns(),
            address: slot.guest_ip(),
        })
    }

    fn dir(&self, name: &VmName) -> VmDir {
        VmDir(self.records.dir(name))
    }

    fn pid(vm: &Vm) -> Option<u32> {
        vm.details.get(detail::PID)?.parse().ok()
    }

    /// The VM's process, if it runs.
    fn running_pid(&self, vm: &Vm) -> Option<u32> {
        Self::pid(vm).filter(|pid| machine::is_qemu(*pid, &self.dir(&vm.name)))
    }

    /// The image a VM was made from (its overlay is backed by that image's disk).
    fn image_of(vm: &Vm) -> Result<QemuImage, ProviderError> {
        let dir = PathBuf::from(vm.details.get(detail::IMAGE).map_or("", String::as_str));
        QemuImage::open(&dir).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Provision,
                format!(
                    "the image of '{}' is gone from '{}' (delete the VM and create it again)",
                    vm.name,
                    dir.display()
                ),
            )
        })
    }

    fn resources_of(vm: &Vm) -> Option<Resources> {
        Some(Resources {
            vcpus: vm.details.get(detail::VCPUS)?.parse().ok()?,
            memory_mib: vm.details.get(detail::MEMORY_MIB)?.parse().ok()?,
        })
    }

    /// Starts QEMU for a VM whose disks exist and waits for its init; records pid, port and
    /// accelerator as soon as they are known, so a failure can be cleaned up.
    async fn boot(&self, mut vm: Vm) -> Result<Vm, ProviderError> {
        let networking = self.networking()?;
        let dir = self.dir(&vm.name);
        let image = Self::image_of(&vm)?;
        let resources = Self::resources_of(&vm).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Internal,
                format!("the record of '{}' has no CPU or memory size", vm.name),
            )
        })?;
        let verdict = accel::decide(
            &self.vm_root.join(ACCEL_CACHE),
            &image.kernel(),
            &self.vm_root,
        )
        .await;
        vm.details
            .insert(detail::ACCEL.into(), verdict.accel.to_string());
        vm.details
            .insert(detail::ACCEL_REASON.into(), verdict.reason.clone());
        let name = vm.name.clone();
        let boot = |link: Link| Boot {
            dir: &dir,
            name: name.as_str(),
            image: &image,
            accel: verdict.accel,
            resources,
            link,
        };
        let pid = match networking {
            Networking::Namespace => {
                let link = self.namespace(&mut vm).await?;
                machine::launch(&boot(link)).await.map_err(|e| match e {
                    LaunchError::Failed(e) => e,
                    LaunchError::PortTaken => ProviderError::new(
                        ErrorKind::Provision,
                        "QEMU could not forward SSH in the VM's network namespace",
                    ),
                })?
            }
            Networking::Private => {
                let filter = rootless::filter(&self.network.policy(), &rootless::host_addresses());
                std::fs::write(dir.filter(), filter).map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Provision,
                        format!("writing {}: {e}", dir.filter().display()),
                    )
                })?;
                let (pid, ssh_port) = Self::launch_on_loopback(vm.ssh_port, |ssh_port| {
                    boot(Link::Private {
                        ssh_port,
                        filter: dir.filter(),
                    })
                })
                .await?;
                vm.ssh_port = ssh_port;
                pid
            }
        };
        vm.details.insert(detail::PID.into(), pid.to_string());
        self.records.save(&vm)?;
        machine::wait_for_init(&dir, pid, verdict.accel).await?;
        vm.state = VmState::Running;
        self.records.save(&vm)?;
        Ok(vm)
    }

    /// Launches QEMU with SSH forwarded from a free loopback port — `previous` (the port a
    /// restarted VM had, which its user may have in a command line) while it is free — trying
    /// another port when one is taken between its choice and QEMU's bind. The pid and port.
    async fn launch_on_loopback<'a>(
        previous: u16,
        boot: impl Fn(u16) -> Boot<'a>,
    ) -> Result<(u32, u16), ProviderError> {
        let mut port = Some(previous).filter(|p| host::port_is_free(*p));
        for _ in 0..PORT_ATTEMPTS {
            let ssh_port = match port.take() {
                Some(port) => port,
                None => host::free_loopback_port().map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Provision,
                        format!("no free loopback port for SSH: {e}"),
                    )
                })?,
            };
            match machine::launch(&boot(ssh_port)).await {
                Ok(pid) => return Ok((pid, ssh_port)),
                // Lost the race for the port (see `host::free_loopback_port`): another one.
                Err(LaunchError::PortTaken) => {
                    tracing::debug!("port {ssh_port} was taken before QEMU bound it; retrying");
                }
                Err(LaunchError::Failed(e)) => return Err(e),
            }
        }
        Err(ProviderError::new(
            ErrorKind::Provision,
            format!(
                "{PORT_ATTEMPTS} loopback ports in a row were taken before QEMU could bind them"
            ),
        ))
    }

    /// Makes the disks of a claimed VM and boots it.
    async fn provision(
        &self,
        vm: Vm,
        image: &QemuImage,
        request: &CreateRequest,
    ) -> Result<Vm, ProviderError> {
        let dir = self.dir(&vm.name);
        restrict(&dir.0)?;
        disk::create_overlay(&image.disk(), &dir.disk()).await?;
        let meta = meta_data(&request.request_id, request.spec.name.as_str());
        disk::create_seed(&dir.seed(), &dir.seed_staging(), &meta, &request.user_data).await?;
        self.boot(vm).await
    }
}

impl LocalVms for QemuProvider {
    fn records(&self) -> &RecordStore {
        &self.records
    }

    fn is_running(&self, vm: &Vm) -> bool {
        self.running_pid(vm).is_some()
    }

    /// Removes the VM's process (and with it the forwarded port), its network namespace and
    /// its folder.
    async fn tear_down(&self, vm: &Vm) -> Vec<String> {
        let mut removed = Vec::new();
        let dir = self.dir(&vm.name);
        // A boot interrupted before QEMU's pid was recorded leaves it unrecorded: found by disk.
        if let Some(pid) = self.running_pid(vm).or_else(|| machine::find(&dir)) {
            machine::stop_now(pid, &dir).await;
            removed.push(format!(
                "qemu process {pid} (and its SSH forward on {}:{})",
                vm.address, vm.ssh_port
            ));
        }
        if let Some(slot) = Self::slot(vm) {
            removed.extend(network::remove(slot).await);
        }
        if dir.0.exists() && self.records.remove(&vm.name).is_ok() {
            removed.push(format!(
                "VM folder {} (disk overlay, seed, console log)",
                dir.0.display()
            ));
        }
        removed
    }
}

/// `path` made absolute against the working directory (a daemonized QEMU works from `/`).
fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    std::env::current_dir()
        .map(|cwd| cwd.join(&path))
        .unwrap_or(path)
}

/// Makes a VM folder private: its seed holds the VM's private host key.
fn restrict(dir: &std::path::Path) -> Result<(), ProviderError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| {
        ProviderError::new(
            ErrorKind::Provision,
            format!("chmod {}: {e}", dir.display()),
        )
    })
}

/// `qemu-system-x86_64 -accel help`: the accelerators this QEMU was built with.
async fn accelerators() -> Result<Vec<String>, ProviderError> {
    let out = crate::command::run(ErrorKind::Auth, QEMU, &["-accel", "help"]).await?;
    Ok(out
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

#[async_trait]
impl VmProvider for QemuProvider {
    fn required_tools(&self) -> Vec<Tool> {
        if self.namespaced {
            [&TOOLS[..], &network::TOOLS[..]].concat()
        } else {
            [&TOOLS[..], &[rootless::PASTA]].concat()
        }
    }

    /// No credentials and no root: checks that QEMU runs and can emulate a CPU (TCG) and, without
    /// root, that a VM can get its confined network; says whether KVM is open to this user.
    async fn authenticate(&self) -> Result<String, ProviderError> {
        if !self.namespaced {
            rootless::check()?;
        }
        let accelerators = accelerators().await.map_err(|e| {
            ProviderError::new(ErrorKind::Auth, format!("QEMU cannot run: {}", e.message))
        })?;
        if !accelerators.iter().any(|a| a == "tcg") {
            return Err(ProviderError::new(
                ErrorKind::Auth,
                format!(
                    "this {QEMU} has no TCG accelerator (it has: {})",
                    accelerators.join(", ")
                ),
            ));
        }
        let uid = nix::unistd::geteuid();
        let user = nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| format!("uid {uid}"), |u| u.name);
        let kvm = if let Some(verdict) = accel::remembered(&self.vm_root.join(ACCEL_CACHE)) {
            format!("VMs run under {} ({})", verdict.accel, verdict.reason)
        } else if !accelerators.iter().any(|a| a == "kvm") {
            "no KVM in this QEMU: VMs run under TCG".to_string()
        } else if std::fs::File::options()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .is_ok()
        {
            "/dev/kvm is open to it: KVM is tried on the first boot, TCG if it cannot run a guest"
                .to_string()
        } else {
            "/dev/kvm is not open to it: VMs run under TCG".to_string()
        };
        Ok(format!("{user}, QEMU; {kvm}"))
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vm, ProviderError> {
        if let Some(vm) = local::created_before(self, &request.request_id).await? {
            return Ok(vm);
        }
        // A policy QEMU cannot apply is refused before anything is made.
        self.networking()?;
        let spec = &request.spec;
        let mut image = self.images.locate_qemu(spec.image).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Provision,
                format!(
                    "the qemu '{}' base image is not built in {} (run `azlin image build \
                     --provider qemu --profile {}`)",
                    spec.image,
                    self.images.dir().display(),
                    spec.image
                ),
            )
        })?;
        // The overlay names its backing file, and QEMU opens kernel and initramfs, by path:
        // relative to the VM folder or to `/` (once daemonized) a relative path breaks.
        image.dir = absolute(image.dir);
        let folder = self.records.claim(&spec.name, &request.request_id)?;
        let resources = Resources::for_this_host(spec.size());
        let mut details = BTreeMap::new();
        details.insert(detail::IMAGE.into(), image.dir.display().to_string());
        details.insert(detail::FOLDER.into(), folder.display().to_string());
        if let Some(release) = image.kernel_release() {
            details.insert(detail::KERNEL.into(), release);
        }
        details.insert(detail::VCPUS.into(), resources.vcpus.to_string());
        details.insert(detail::MEMORY_MIB.into(), resources.memory_mib.to_string());
        let vm = Vm {
            name: spec.name.clone(),
            provider: ProviderKind::Qemu,
            state: VmState::Creating,
            address: ADDRESS.to_string(),
            ssh_port: 0,
            user: ADMIN_USER.to_string(),
            host_key: request.host_public_key.clone(),
            request_id: request.request_id.clone(),
            details,
        };
        local::provision_or_tear_down(self, vm, |vm| self.provision(vm, &image, request)).await
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
            VmState::Stopped => match self.boot(vm).await {
                Ok(vm) => Ok(vm),
                Err(e) => {
                    // Leave it stopped, not half-started.
                    if let Ok(Some(mut latest)) = self.records.load(name) {
                        if let Some(pid) = self.running_pid(&latest) {
                            machine::stop_now(pid, &self.dir(name)).await;
                        }
                        latest.details.remove(detail::PID);
                        latest.state = VmState::Stopped;
                        let _ = self.records.save(&latest);
                    }
                    Err(e)
                }
            },
            other => Err(local::cannot_start(name, other)),
        }
    }

    async fn stop(&self, name: &VmName) -> Result<(), ProviderError> {
        let mut vm = local::require(self, name)?;
        if let Some(pid) = self.running_pid(&vm) {
            let how = machine::powerdown(pid, &self.dir(name), machine::POWEROFF_TIMEOUT).await;
            tracing::info!("VM '{name}': {how}");
        }
        vm.state = VmState::Stopped;
        vm.details.remove(detail::PID);
        self.records.save(&vm)
    }

    async fn find_by_request(&self, request_id: &str) -> Result<Option<Vm>, ProviderError> {
        local::find_by_request(self, request_id)
    }

    async fn delete(&self, name: &VmName) -> Result<DeleteReport, ProviderError> {
        local::delete(self, name).await
    }

    async fn snapshot_create(
        &self,
        name: &VmName,
        snapshot: &str,
    ) -> Result<Snapshot, ProviderError> {
        check_snapshot_name(snapshot)?;
        let vm = local::require(self, name)?;
        let running = self.running_pid(&vm).is_some();
        snapshot::create(name, &self.dir(name), snapshot, running).await
    }

    async fn snapshot_list(&self, name: &VmName) -> Result<Vec<Snapshot>, ProviderError> {
        local::require(self, name)?;
        snapshot::list(name, &self.dir(name)).await
    }

    async fn snapshot_restore(&self, name: &VmName, snapshot: &str) -> Result<Vm, ProviderError> {
        check_snapshot_name(snapshot)?;
        let vm = local::require(self, name)?;
        let running = self.running_pid(&vm).is_some();
        snapshot::restore(name, &self.dir(name), snapshot, running).await?;
        Ok(vm)
    }

    async fn snapshot_delete(&self, name: &VmName, snapshot: &str) -> Result<(), ProviderError> {
        check_snapshot_name(snapshot)?;
        let vm = local::require(self, name)?;
        let running = self.running_pid(&vm).is_some();
        snapshot::delete(name, &self.dir(name), snapshot, running).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DEFAULT_MIRROR;
    use azlin_core::{ImageProfile, VmSpec};

    fn request(name: &str) -> CreateRequest {
        CreateRequest {
            request_id: format!("req-{name}"),
            spec: VmSpec {
                name: VmName::parse(name).unwrap(),
                provider: ProviderKind::Qemu,
                size: "Standard_B2s".into(),
                region: "westeurope".into(),
                resource_group: "rg".into(),
                image: ImageProfile::Minimal,
                repos: Vec::new(),
                cloud_init: None,
                ca_certs: Vec::new(),
                tags: BTreeMap::new(),
                clone_of: None,
            },
            user_data: "#cloud-config\n".into(),
            admin_public_key: "ssh-ed25519 AAAA".into(),
            host_public_key: "ssh-ed25519 BBBB".into(),
        }
    }

    #[tokio::test]
    async fn a_missing_image_is_a_provisioning_error_that_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(
            tmp.path().join("vms"),
            ImageStore::new(tmp.path().join("images"), DEFAULT_MIRROR),
        );
        let err = provider.create(&request("q1")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Provision);
        assert!(
            err.message.contains("azlin image build --provider qemu"),
            "{}",
            err.message
        );
        assert!(provider.list().await.unwrap().is_empty());
        assert!(!tmp.path().join("vms/q1").exists());
    }

    #[tokio::test]
    async fn a_broken_image_fails_with_everything_removed() {
        if crate::tools::which(QEMU).is_none() || crate::tools::which("genisoimage").is_none() {
            eprintln!("skipped: QEMU or genisoimage is not installed");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let images = ImageStore::new(tmp.path().join("images"), DEFAULT_MIRROR);
        let image_dir = images.qemu_path_for(ImageProfile::Minimal);
        std::fs::create_dir_all(&image_dir).unwrap();
        crate::command::run(
            ErrorKind::Internal,
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                image_dir.join("disk.qcow2").to_str().unwrap(),
                "64M",
            ],
        )
        .await
        .unwrap();
        // Not a kernel: QEMU refuses to start.
        std::fs::write(image_dir.join("vmlinuz"), "not a kernel").unwrap();
        std::fs::write(image_dir.join("initrd.img"), "not an initramfs").unwrap();
        let provider = QemuProvider::new(tmp.path().join("vms"), images);
        let err = provider.create(&request("q2")).await.unwrap_err();
        assert_eq!(err.kind, ErrorKind::Provision, "{}", err.message);
        assert!(
            err.cleaned_up.iter().any(|c| c.starts_with("VM folder")),
            "{:?}",
            err.cleaned_up
        );
        assert!(!tmp.path().join("vms/q2").exists());
        assert!(provider.list().await.unwrap().is_empty());
        assert!(provider.find_by_request("req-q2").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unknown_vms_are_not_found() {
        let tmp = tempfile::tempdir().unwrap();
        let provider = QemuProvider::new(
            tmp.path().join("vms"),
            ImageStore::new(tmp.path().join("images"), DEFAULT_MIRROR),
        );
        let name = VmName::parse("nope").unwrap();
        assert!(provider.get(&name).await.unwrap().is_none());
        assert_eq!(
            provider.delete(&name).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            provider.start(&name).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
        assert_eq!(
            provider.stop(&name).await.unwrap_err().kind,
            ErrorKind::NotFound
        );
    }

    #[test]
    fn tools_are_the_three_programs() {
        let programs: Vec<_> = TOOLS.iter().map(|t| t.program).collect();
        assert_eq!(programs, [QEMU, "qemu-img", "genisoimage"]);
    }
}
