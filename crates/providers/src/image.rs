//! Base images for local VMs: a Debian bookworm rootfs made by `debootstrap`, configured for
//! azlin (NoCloud seed, no baked host keys, locale), cached under the image folder and rebuilt
//! only when its recipe changes.
//!
//! Layout: `<image_dir>/<profile>-<digest>/rootfs`, where the digest is a hash of the recipe
//! text. A build happens in a scratch folder under a lock and is renamed into place, so readers
//! only ever see complete images.
//!
//! Every image carries the Node.js that JavaScript actions run with ([`node`]).
//!
//! The qemu provider boots a flavour of the same image made into a disk ([`qemu`]);
//! [`Flavour`] and [`ImageInfo`] speak of either.

pub mod node;
pub mod qemu;

use crate::command::spawn_piped;
use crate::lock::FileLock;
use azlin_core::{ErrorKind, ImageProfile, ProviderError, ProviderKind};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Bump when the build steps change in a way the recipe text does not show.
const RECIPE_VERSION: u32 = 1;
/// The Debian release images are built from.
pub const SUITE: &str = "bookworm";
/// The mirror used unless configured otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// cloud-init settings baked into every image: seed from NoCloud only, and leave the network
/// alone (the host configures the VM's interface before boot).
const CLOUD_CFG: &str = "# azlin: VMs are seeded through NoCloud; the host sets up the network.\n\
datasource_list: [ NoCloud, None ]\n\
network: {config: disabled}\n";

/// Files written into the rootfs after debootstrap.
const FILES: &[(&str, &str)] = &[
    ("etc/cloud/cloud.cfg.d/90-azlin.cfg", CLOUD_CFG),
    ("etc/locale.gen", "en_US.UTF-8 UTF-8\n"),
    ("etc/default/locale", "LANG=en_US.UTF-8\n"),
];

/// Shell run inside the rootfs to finish it: locales, `host.azlin.internal` in the hosts
/// template cloud-init renders, none of the periodic jobs a workflow machine does not want (apt's
/// daily runs take dpkg's lock from a step's `apt-get`; file-system scrubs and dpkg backups
/// only cost a short-lived VM its boot time), no host keys or machine id baked in (each VM gets
/// its own), no package caches.
const FINISH: &str = "set -e\n\
locale-gen\n\
systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service\n\
echo '10.213.255.254 host.azlin.internal' >> /etc/cloud/templates/hosts.debian.tmpl\n\
rm -f /etc/ssh/ssh_host_*\n\
: > /etc/machine-id\n\
rm -f /var/lib/dbus/machine-id\n\
apt-get clean\n\
rm -rf /var/lib/apt/lists/*\n";

/// What an image is made of; its text's hash names the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    profile: ImageProfile,
    /// Packages given to debootstrap.
    base_packages: Vec<&'static str>,
    /// Packages installed with apt afterwards (the `dev` tools).
    extra_packages: Vec<&'static str>,
}

impl Recipe {
    /// The recipe of `profile`.
    pub fn for_profile(profile: ImageProfile) -> Recipe {
        let base = ImageProfile::Minimal.packages().to_vec();
        let extra = profile
            .packages()
            .iter()
            .copied()
            .filter(|p| !base.contains(p))
            .collect();
        Recipe {
            profile,
            base_packages: base,
            extra_packages: extra,
        }
    }

    /// The full recipe as text.
    pub fn text(&self) -> String {
        let mut text = format!(
            "azlin image recipe v{RECIPE_VERSION}\nsuite: {SUITE}\nvariant: minbase\nprofile: {}\ndebootstrap --include: {}\napt install: {}\n",
            self.profile,
            self.base_packages.join(","),
            self.extra_packages.join(" ")
        );
        for (path, content) in FILES {
            text.push_str(&format!("file /{path}:\n{content}"));
        }
        text.push_str(&node::recipe_line(std::env::consts::ARCH));
        text.push_str(&format!("finish:\n{FINISH}"));
        text
    }

    /// The first 12 hex digits of the recipe's SHA-256.
    pub fn digest(&self) -> String {
        digest_of(&self.text())
    }
}

/// The first 12 hex digits of the SHA-256 of a recipe's `text`: the digest that names an image.
fn digest_of(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hash.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// Its profile.
    pub profile: ImageProfile,
    /// The recipe digest.
    pub digest: String,
    /// The image folder (`<profile>-<digest>`).
    pub dir: PathBuf,
}

impl BaseImage {
    /// The root filesystem.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
}

/// Which local provider an image is made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Flavour {
    /// A rootfs that systemd-nspawn boots (`<profile>-<digest>/rootfs`).
    Nspawn,
    /// A qcow2 disk, kernel and initramfs that QEMU boots (`<profile>-qemu-<digest>/`).
    Qemu,
}

impl Flavour {
    /// Every flavour, in the order listings show them.
    pub const ALL: [Flavour; 2] = [Flavour::Nspawn, Flavour::Qemu];

    /// The flavour `kind` boots, if it boots a local image at all.
    pub fn for_provider(kind: ProviderKind) -> Option<Flavour> {
        match kind {
            ProviderKind::Nspawn => Some(Flavour::Nspawn),
            ProviderKind::Qemu => Some(Flavour::Qemu),
            ProviderKind::Azure | ProviderKind::Sim => None,
        }
    }

    /// The provider that boots this flavour.
    pub fn provider(self) -> ProviderKind {
        match self {
            Flavour::Nspawn => ProviderKind::Nspawn,
            Flavour::Qemu => ProviderKind::Qemu,
        }
    }
}

/// A built image of either flavour, as `azlin image` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Its flavour.
    pub flavour: Flavour,
    /// Its profile.
    pub profile: ImageProfile,
    /// The recipe digest.
    pub digest: String,
    /// The image folder.
    pub dir: PathBuf,
}

impl From<BaseImage> for ImageInfo {
    fn from(image: BaseImage) -> Self {
        ImageInfo {
            flavour: Flavour::Nspawn,
            profile: image.profile,
            digest: image.digest,
            dir: image.dir,
        }
    }
}

impl From<qemu::QemuImage> for ImageInfo {
    fn from(image: qemu::QemuImage) -> Self {
        ImageInfo {
            flavour: Flavour::Qemu,
            profile: image.profile,
            digest: image.digest,
            dir: image.dir,
        }
    }
}

/// The folder holding base images.
#[derive(Debug, Clone)]
pub struct ImageStore {
    dir: PathBuf,
    mirror: String,
}

fn image_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

impl ImageStore {
    /// Images under `dir`, built from `mirror`.
    pub fn new(dir: impl Into<PathBuf>, mirror: impl Into<String>) -> Self {
        ImageStore {
            dir: dir.into(),
            mirror: mirror.into(),
        }
    }

    /// The folder images live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn image_dir(&self, recipe: &Recipe) -> PathBuf {
        self.dir
            .join(format!("{}-{}", recipe.profile, recipe.digest()))
    }

    /// Where the image of `profile` for the current recipe lives once built.
    pub fn path_for(&self, profile: ImageProfile) -> PathBuf {
        self.image_dir(&Recipe::for_profile(profile))
    }

    /// The image of `profile` for the current recipe, if it has been built.
    pub fn locate(&self, profile: ImageProfile) -> Option<BaseImage> {
        let recipe = Recipe::for_profile(profile);
        let dir = self.image_dir(&recipe);
        dir.join("rootfs").is_dir().then(|| BaseImage {
            profile,
            digest: recipe.digest(),
            dir,
        })
    }

    /// Where the `flavour` image of `profile` for the current recipe lives once built.
    pub fn flavour_path_for(&self, flavour: Flavour, profile: ImageProfile) -> PathBuf {
        match flavour {
            Flavour::Nspawn => self.path_for(profile),
            Flavour::Qemu => self.qemu_path_for(profile),
        }
    }

    /// The `flavour` image of `profile` for the current recipe, if it has been built.
    pub fn locate_flavour(&self, flavour: Flavour, profile: ImageProfile) -> Option<ImageInfo> {
        match flavour {
            Flavour::Nspawn => self.locate(profile).map(ImageInfo::from),
            Flavour::Qemu => self.locate_qemu(profile).map(ImageInfo::from),
        }
    }

    /// The `flavour` image of `profile`, building it first if needed (see [`Self::ensure`]).
    pub async fn ensure_flavour(
        &self,
        flavour: Flavour,
        profile: ImageProfile,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ImageInfo, ProviderError> {
        Ok(match flavour {
            Flavour::Nspawn => self.ensure(profile, progress).await?.into(),
            Flavour::Qemu => self.ensure_qemu(profile, progress).await?.into(),
        })
    }

    /// The image of `profile`, building it first if needed. `progress` receives a line per
    /// step of a build. Concurrent callers wait for one build.
    pub async fn ensure(
        &self,
        profile: ImageProfile,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BaseImage, ProviderError> {
        if let Some(image) = self.locate(profile) {
            return Ok(image);
        }
        let _lock = FileLock::acquire(&self.dir.join(format!(".{profile}.lock"))).await?;
        if let Some(image) = self.locate(profile) {
            return Ok(image);
        }
        self.build(profile, progress).await
    }

    /// Builds the image of `profile` (the caller holds the lock).
    async fn build(
        &self,
        profile: ImageProfile,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BaseImage, ProviderError> {
        let recipe = Recipe::for_profile(profile);
        let final_dir = self.image_dir(&recipe);
        let scratch = self
            .dir
            .join(format!(".build-{profile}-{}", recipe.digest()));
        fresh_scratch(&scratch)?;
        let result = self
            .build_into(&recipe, &scratch.join("rootfs"), progress)
            .await;
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&scratch);
            return Err(e);
        }
        std::fs::write(scratch.join("recipe.txt"), recipe.text())
            .map_err(|e| image_error(format!("writing recipe: {e}")))?;
        publish(&scratch, &final_dir, progress)?;
        Ok(BaseImage {
            profile,
            digest: recipe.digest(),
            dir: final_dir,
        })
    }

    async fn build_into(
        &self,
        recipe: &Recipe,
        rootfs: &Path,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<(), ProviderError> {
        let rootfs_arg = rootfs.display().to_string();
        let include = format!("--include={}", recipe.base_packages.join(","));
        progress(&format!("debootstrap {SUITE} from {}", self.mirror));
        stream(
            "debootstrap",
            &[
                "--variant=minbase",
                &include,
                SUITE,
                &rootfs_arg,
                &self.mirror,
            ],
            progress,
        )
        .await?;
        write_files(rootfs, FILES)?;
        // Fetched next to the rootfs, not into it: only the binary enters the image.
        node::install(rootfs, &rootfs.with_file_name("node"), progress).await?;
        // `set -e` first: a failed check or package install fails the build.
        let mut script = format!("set -e\n{}", node::check_script());
        if !recipe.extra_packages.is_empty() {
            progress(&format!(
                "installing {} extra packages",
                recipe.extra_packages.len()
            ));
            script.push_str(&format!(
                "export DEBIAN_FRONTEND=noninteractive\napt-get update\napt-get install -y --no-install-recommends {}\n",
                recipe.extra_packages.join(" ")
            ));
        }
        script.push_str(FINISH);
        progress("configuring image (locale, no host keys, no machine id)");
        run_in_rootfs(&rootfs_arg, &script, progress).await
    }
}

/// Makes `scratch` an empty folder for a build, removing what an interrupted build left there.
fn fresh_scratch(scratch: &Path) -> Result<(), ProviderError> {
    if scratch.exists() {
        std::fs::remove_dir_all(scratch)
            .map_err(|e| image_error(format!("removing stale {}: {e}", scratch.display())))?;
    }
    std::fs::create_dir_all(scratch)
        .map_err(|e| image_error(format!("creating {}: {e}", scratch.display())))
}

/// Moves the image built in `scratch` into place at `final_dir`, telling `progress`.
fn publish(
    scratch: &Path,
    final_dir: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ProviderError> {
    std::fs::rename(scratch, final_dir)
        .map_err(|e| image_error(format!("moving image into {}: {e}", final_dir.display())))?;
    progress(&format!("image ready: {}", final_dir.display()));
    Ok(())
}

/// Writes `files` (path below `rootfs`, content) into `rootfs`, creating their folders.
fn write_files(rootfs: &Path, files: &[(&str, &str)]) -> Result<(), ProviderError> {
    for (path, content) in files {
        let target = rootfs.join(path);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| image_error(format!("creating {}: {e}", dir.display())))?;
        }
        // `/etc/resolv.conf` may be a symlink into the host's run directory: replace, never
        // write through it.
        if target.is_symlink() {
            std::fs::remove_file(&target)
                .map_err(|e| image_error(format!("removing {}: {e}", target.display())))?;
        }
        std::fs::write(&target, content)
            .map_err(|e| image_error(format!("writing {}: {e}", target.display())))?;
    }
    Ok(())
}

/// Runs the shell `script` inside the root file system at `rootfs` with systemd-nspawn, which
/// (unlike chroot) gives the package scripts /proc, /dev and the host's DNS.
async fn run_in_rootfs(
    rootfs: &str,
    script: &str,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ProviderError> {
    stream(
        "systemd-nspawn",
        &[
            "-q",
            "--register=no",
            "--keep-unit",
            "-D",
            rootfs,
            "/bin/sh",
            "-c",
            script,
        ],
        progress,
    )
    .await
}

/// Runs a program, passing each output line to `progress`; fails with the last lines.
async fn stream(
    program: &str,
    args: &[&str],
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ProviderError> {
    let mut child = spawn_piped(
        Command::new(program)
            .args(args)
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null()),
        program,
    )?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(image_error(format!("{program}: no output pipes")));
    };
    let mut out = BufReader::new(stdout).lines();
    let mut err = BufReader::new(stderr).lines();
    let mut tail: Vec<String> = Vec::new();
    let (mut out_open, mut err_open) = (true, true);
    while out_open || err_open {
        let line = tokio::select! {
            l = out.next_line(), if out_open => l.ok().flatten().or_else(|| { out_open = false; None }),
            l = err.next_line(), if err_open => l.ok().flatten().or_else(|| { err_open = false; None }),
        };
        if let Some(line) = line {
            progress(&line);
            tail.push(line);
            if tail.len() > 8 {
                tail.remove(0);
            }
        }
    }
    let status = child
        .wait()
        .await
        .map_err(|e| image_error(format!("waiting for {program}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(image_error(format!(
            "{program} failed ({status}):\n{}",
            tail.join("\n")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_the_recipe() {
        let minimal = Recipe::for_profile(ImageProfile::Minimal);
        let dev = Recipe::for_profile(ImageProfile::Dev);
        assert_eq!(
            minimal.digest(),
            Recipe::for_profile(ImageProfile::Minimal).digest()
        );
        assert_ne!(minimal.digest(), dev.digest());
        assert_eq!(minimal.digest().len(), 12);
        assert!(dev.text().contains("docker.io") && !minimal.text().contains("docker.io"));
        assert!(minimal.text().contains("python3-cffi-backend"));
    }

    #[test]
    fn the_recipe_names_the_node_version() {
        // A new pin changes the text, so every image is rebuilt with it.
        for profile in ImageProfile::ALL {
            let text = Recipe::for_profile(profile).text();
            assert!(
                text.lines()
                    .any(|l| l.starts_with("node: ") && l.contains(node::VERSION)),
                "{text}"
            );
        }
        assert!(node::VERSION.starts_with("24."));
    }

    #[test]
    fn missing_images_are_not_located() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::new(dir.path(), DEFAULT_MIRROR);
        assert!(store.locate(ImageProfile::Minimal).is_none());
        let recipe = Recipe::for_profile(ImageProfile::Minimal);
        std::fs::create_dir_all(
            dir.path()
                .join(format!("minimal-{}/rootfs", recipe.digest())),
        )
        .unwrap();
        assert!(store.locate(ImageProfile::Minimal).is_some());
    }
}
