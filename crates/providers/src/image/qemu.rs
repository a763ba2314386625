//! The qemu flavour of a base image: the Debian rootfs of the nspawn image of the same profile,
//! plus a kernel and initramfs (`linux-image-amd64`) and a DHCP configuration for the guest NIC,
//! made into an ext4 disk without mounting anything (`mkfs.ext4 -d`) and converted to a qcow2
//! base that every qemu VM backs its overlay with.
//!
//! Layout: `<image_dir>/<profile>-qemu-<digest>/` holding `disk.qcow2`, `vmlinuz`,
//! `initrd.img`, `kernel-release` and `recipe.txt`. The digest hashes this recipe's text, which
//! names the nspawn image it starts from, so a change to either rebuilds it. Like the nspawn
//! image it is built under a lock in a scratch folder and renamed into place.

use super::{
    ImageStore, Recipe, digest_of, fresh_scratch, image_error, publish, run_in_rootfs, stream,
    write_files,
};
use crate::lock::FileLock;
use azlin_core::{ErrorKind, ImageProfile, ProviderError};
use std::path::{Path, PathBuf};

/// Bump when the build steps change in a way the recipe text does not show.
const RECIPE_VERSION: u32 = 1;

/// The virtual size of the disk. The file system is made this big up front (the qcow2 file only
/// holds written clusters), so a VM never needs to grow it at boot.
pub const DISK_SIZE_GIB: u64 = 16;

/// The file-system label of the root disk.
const ROOT_LABEL: &str = "azlin-root";

/// Files written before the kernel is installed: an initramfs with just the drivers a QEMU guest
/// boots from (virtio disk, ext4) instead of every driver Debian ships, so that it is a few MB
/// and quick to unpack under TCG.
const PRE_FILES: &[(&str, &str)] = &[
    (
        "etc/initramfs-tools/conf.d/azlin.conf",
        "# azlin: QEMU guests boot from a virtio disk; keep the initramfs small.\nMODULES=list\nCOMPRESS=zstd\n",
    ),
    (
        "etc/initramfs-tools/modules",
        "virtio_pci\nvirtio_blk\next4\n",
    ),
];

/// Shell run inside the copied rootfs: the kernel, DHCP on the guest NIC through
/// systemd-networkd (cloud-init's networking stays disabled, as in the nspawn image), and
/// `host.azlin.internal` pointing at the host as QEMU's user-mode network shows it.
const INSTALL: &str = "set -e\n\
export DEBIAN_FRONTEND=noninteractive\n\
apt-get -q update\n\
apt-get -q install -y --no-install-recommends linux-image-amd64 initramfs-tools zstd\n\
systemctl enable systemd-networkd.service\n\
sed -i 's/^10\\.213\\.255\\.254 host\\.azlin\\.internal$/10.0.2.2 host.azlin.internal/' /etc/cloud/templates/hosts.debian.tmpl\n\
grep -qx '10.0.2.2 host.azlin.internal' /etc/cloud/templates/hosts.debian.tmpl\n\
apt-get clean\n\
rm -rf /var/lib/apt/lists/*\n";

/// Files written after the install step (systemd-nspawn replaces `/etc/resolv.conf` and may
/// fill in `/etc/machine-id` while it runs): the DHCP network, the DNS of the user-mode
/// network, the root file system, no machine id (each VM gets its own), and no GRUB probing by
/// cloud-init (the kernel is booted directly).
const POST_FILES: &[(&str, &str)] = &[
    (
        "etc/systemd/network/20-azlin-dhcp.network",
        "# azlin: the QEMU user-mode network hands out addresses by DHCP.\n[Match]\nType=ether\n\n[Network]\nDHCP=ipv4\n",
    ),
    ("etc/resolv.conf", "nameserver 10.0.2.3\n"),
    ("etc/fstab", "/dev/vda / ext4 rw,errors=remount-ro 0 1\n"),
    ("etc/machine-id", ""),
    (
        "etc/cloud/cloud.cfg.d/91-azlin-qemu.cfg",
        "# azlin: the kernel is booted directly, there is no boot loader to configure.\ngrub_dpkg: {enabled: false}\n",
    ),
];

/// The recipe of the qemu image of a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuRecipe {
    base: Recipe,
}

impl QemuRecipe {
    /// The recipe of `profile`.
    pub fn for_profile(profile: ImageProfile) -> QemuRecipe {
        QemuRecipe {
            base: Recipe::for_profile(profile),
        }
    }

    /// The full recipe as text (naming the nspawn image it starts from).
    pub fn text(&self) -> String {
        let mut text = format!(
            "azlin qemu image recipe v{RECIPE_VERSION}\nfrom: {}-{}\n",
            self.base.profile,
            self.base.digest()
        );
        for (path, content) in PRE_FILES {
            text.push_str(&format!("file /{path}:\n{content}"));
        }
        text.push_str(&format!("install:\n{INSTALL}"));
        for (path, content) in POST_FILES {
            text.push_str(&format!("file /{path}:\n{content}"));
        }
        text.push_str(&format!(
            "disk: mkfs.ext4 -L {ROOT_LABEL} -d rootfs, {DISK_SIZE_GIB} GiB, qcow2\n"
        ));
        text
    }

    /// The first 12 hex digits of the recipe's SHA-256.
    pub fn digest(&self) -> String {
        digest_of(&self.text())
    }

    fn dir_name(&self) -> String {
        format!("{}-qemu-{}", self.base.profile, self.digest())
    }
}

/// A built qemu image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuImage {
    /// Its profile.
    pub profile: ImageProfile,
    /// The recipe digest.
    pub digest: String,
    /// The image folder (`<profile>-qemu-<digest>`).
    pub dir: PathBuf,
}

impl QemuImage {
    /// The complete image in `dir` (a `<profile>-qemu-<digest>` folder), built by any recipe:
    /// how a VM finds the image its overlay is backed by after the recipe changed.
    pub fn open(dir: &Path) -> Option<QemuImage> {
        let name = dir.file_name()?.to_str()?;
        let (profile, digest) = name.split_once("-qemu-")?;
        let image = QemuImage {
            profile: profile.parse().ok()?,
            digest: digest.to_string(),
            dir: dir.to_path_buf(),
        };
        image.complete().then_some(image)
    }

    /// The qcow2 base disk.
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }

    /// The kernel.
    pub fn kernel(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The initramfs.
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    /// The kernel's release (`uname -r` in the guest), if recorded.
    pub fn kernel_release(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("kernel-release"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    fn complete(&self) -> bool {
        [self.disk(), self.kernel(), self.initrd()]
            .iter()
            .all(|p| p.is_file())
    }
}

impl ImageStore {
    /// Where the qemu image of `profile` for the current recipe lives once built.
    pub fn qemu_path_for(&self, profile: ImageProfile) -> PathBuf {
        self.dir.join(QemuRecipe::for_profile(profile).dir_name())
    }

    /// The qemu image of `profile` for the current recipe, if it has been built.
    pub fn locate_qemu(&self, profile: ImageProfile) -> Option<QemuImage> {
        let recipe = QemuRecipe::for_profile(profile);
        let image = QemuImage {
            profile,
            digest: recipe.digest(),
            dir: self.dir.join(recipe.dir_name()),
        };
        image.complete().then_some(image)
    }

    /// The qemu image of `profile`, building it (and the nspawn image it starts from) first if
    /// needed. Building needs root, as debootstrap and systemd-nspawn do; using it does not.
    pub async fn ensure_qemu(
        &self,
        profile: ImageProfile,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<QemuImage, ProviderError> {
        if let Some(image) = self.locate_qemu(profile) {
            return Ok(image);
        }
        if !nix::unistd::geteuid().is_root() {
            return Err(ProviderError::new(
                ErrorKind::Prerequisites,
                format!(
                    "the qemu '{profile}' base image is not built in {} and building it needs \
                     root (debootstrap, systemd-nspawn): run `sudo azlin image build --provider \
                     qemu --profile {profile}` with AZLIN_IMAGE_DIR={}",
                    self.dir.display(),
                    self.dir.display()
                ),
            ));
        }
        let base = self.ensure(profile, progress).await?;
        let _lock = FileLock::acquire(&self.dir.join(format!(".{profile}-qemu.lock"))).await?;
        if let Some(image) = self.locate_qemu(profile) {
            return Ok(image);
        }
        let recipe = QemuRecipe::for_profile(profile);
        let final_dir = self.dir.join(recipe.dir_name());
        let scratch = self.dir.join(format!(".build-{}", recipe.dir_name()));
        fresh_scratch(&scratch)?;
        if let Err(e) = build_into(&recipe, &base.rootfs(), &scratch, progress).await {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
        // A half-built image left by a crash (no disk) would block the rename.
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir)
                .map_err(|e| image_error(format!("removing {}: {e}", final_dir.display())))?;
        }
        publish(&scratch, &final_dir, progress)?;
        Ok(QemuImage {
            profile,
            digest: recipe.digest(),
            dir: final_dir,
        })
    }
}

/// The one kernel release installed in `rootfs` (from `/boot/vmlinuz-<release>`).
fn installed_kernel(rootfs: &Path) -> Result<String, ProviderError> {
    let boot = rootfs.join("boot");
    let entries = std::fs::read_dir(&boot)
        .map_err(|e| image_error(format!("reading {}: {e}", boot.display())))?;
    let mut releases: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("vmlinuz-"))
                .map(str::to_string)
        })
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(image_error(format!("no kernel in {}", boot.display()))),
        many => Err(image_error(format!(
            "several kernels in {}: {}",
            boot.display(),
            many.join(", ")
        ))),
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), ProviderError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).map_err(|e| image_error(format!("copying {}: {e}", from.display())))?;
    // Readable by everyone: VMs of other users boot from it (read only).
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| image_error(format!("chmod {}: {e}", to.display())))
}

/// Builds the image into `scratch` from the nspawn rootfs `base_rootfs`.
async fn build_into(
    recipe: &QemuRecipe,
    base_rootfs: &Path,
    scratch: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ProviderError> {
    let rootfs = scratch.join("rootfs");
    let rootfs_arg = rootfs.display().to_string();
    progress(&format!("copying {}", base_rootfs.display()));
    stream(
        "cp",
        &[
            "-a",
            "--reflink=auto",
            &base_rootfs.display().to_string(),
            &rootfs_arg,
        ],
        progress,
    )
    .await?;
    write_files(&rootfs, PRE_FILES)?;
    progress("installing the kernel (linux-image-amd64) and the guest's DHCP network");
    run_in_rootfs(&rootfs_arg, INSTALL, progress).await?;
    write_files(&rootfs, POST_FILES)?;
    let release = installed_kernel(&rootfs)?;
    copy(
        &rootfs.join(format!("boot/vmlinuz-{release}")),
        &scratch.join("vmlinuz"),
    )?;
    copy(
        &rootfs.join(format!("boot/initrd.img-{release}")),
        &scratch.join("initrd.img"),
    )?;
    std::fs::write(scratch.join("kernel-release"), format!("{release}\n"))
        .map_err(|e| image_error(format!("writing kernel-release: {e}")))?;

    progress(&format!(
        "making a {DISK_SIZE_GIB} GiB ext4 disk from the rootfs (kernel {release})"
    ));
    let raw = scratch.join("root.raw");
    std::fs::File::create(&raw)
        .and_then(|f| f.set_len(DISK_SIZE_GIB << 30))
        .map_err(|e| image_error(format!("creating {}: {e}", raw.display())))?;
    let raw_arg = raw.display().to_string();
    stream(
        "mkfs.ext4",
        &["-q", "-F", "-L", ROOT_LABEL, "-d", &rootfs_arg, &raw_arg],
        progress,
    )
    .await?;
    progress("converting the disk to qcow2");
    let disk = scratch.join("disk.qcow2");
    stream(
        "qemu-img",
        &[
            "convert",
            "-f",
            "raw",
            "-O",
            "qcow2",
            &raw_arg,
            &disk.display().to_string(),
        ],
        progress,
    )
    .await?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o644))
            .map_err(|e| image_error(format!("chmod {}: {e}", disk.display())))?;
    }
    for (path, what) in [(&raw, "raw disk"), (&rootfs, "rootfs copy")] {
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(path)
        } else {
            std::fs::remove_file(path)
        };
        removed.map_err(|e| image_error(format!("removing the {what}: {e}")))?;
    }
    std::fs::write(scratch.join("recipe.txt"), recipe.text())
        .map_err(|e| image_error(format!("writing recipe: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::DEFAULT_MIRROR;

    #[test]
    fn recipe_names_its_base_and_differs_by_profile() {
        let minimal = QemuRecipe::for_profile(ImageProfile::Minimal);
        let base = Recipe::for_profile(ImageProfile::Minimal);
        assert!(
            minimal
                .text()
                .contains(&format!("from: minimal-{}", base.digest()))
        );
        assert!(minimal.text().contains("linux-image-amd64"));
        assert!(minimal.text().contains("10.0.2.2 host.azlin.internal"));
        assert_eq!(minimal.digest().len(), 12);
        assert_ne!(minimal.digest(), base.digest());
        assert_ne!(
            minimal.digest(),
            QemuRecipe::for_profile(ImageProfile::Dev).digest()
        );
    }

    #[test]
    fn located_only_when_disk_kernel_and_initrd_exist() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), DEFAULT_MIRROR);
        assert!(store.locate_qemu(ImageProfile::Minimal).is_none());
        let path = store.qemu_path_for(ImageProfile::Minimal);
        assert!(
            path.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("minimal-qemu-")
        );
        std::fs::create_dir_all(&path).unwrap();
        for file in ["disk.qcow2", "vmlinuz"] {
            std::fs::write(path.join(file), "x").unwrap();
        }
        assert!(store.locate_qemu(ImageProfile::Minimal).is_none());
        std::fs::write(path.join("initrd.img"), "x").unwrap();
        std::fs::write(path.join("kernel-release"), "6.1.0-9-amd64\n").unwrap();
        let image = store.locate_qemu(ImageProfile::Minimal).unwrap();
        assert_eq!(image.kernel_release().as_deref(), Some("6.1.0-9-amd64"));
        assert_eq!(QemuImage::open(&path), Some(image));
        assert_eq!(QemuImage::open(dir.path()), None);
        // The nspawn image of the same profile is not confused with it.
        assert!(store.locate(ImageProfile::Minimal).is_none());
    }

    #[test]
    fn finds_exactly_one_kernel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("boot")).unwrap();
        assert!(installed_kernel(dir.path()).is_err());
        std::fs::write(dir.path().join("boot/vmlinuz-6.1.0-9-amd64"), "k").unwrap();
        std::fs::write(dir.path().join("boot/config-6.1.0-9-amd64"), "c").unwrap();
        assert_eq!(installed_kernel(dir.path()).unwrap(), "6.1.0-9-amd64");
        std::fs::write(dir.path().join("boot/vmlinuz-6.1.0-10-amd64"), "k").unwrap();
        assert!(installed_kernel(dir.path()).is_err());
    }
}
