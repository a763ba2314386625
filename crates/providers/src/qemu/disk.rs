//! The disks of one QEMU VM: a qcow2 overlay backed by the image's base disk (copy on write,
//! so a VM costs only what it writes), and a NoCloud seed: an ISO 9660 volume labelled `cidata`
//! holding `user-data` and `meta-data`, which cloud-init in the guest finds by its label.

use crate::command::run;
use azlin_core::{ErrorKind, ProviderError};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn disk_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// Creates `overlay`, a qcow2 disk of the base's size whose unwritten clusters read from
/// `base`.
pub async fn create_overlay(base: &Path, overlay: &Path) -> Result<(), ProviderError> {
    let base = base.display().to_string();
    let overlay = overlay.display().to_string();
    run(
        ErrorKind::Provision,
        "qemu-img",
        &[
            "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", &base, &overlay,
        ],
    )
    .await
    .map(drop)
}

/// Writes the NoCloud seed ISO `iso` with `meta_data` and `user_data`, readable by its owner
/// only (the user data holds the VM's private host key). `staging` is a folder for the two
/// files while the ISO is made; it is removed afterwards.
pub async fn create_seed(
    iso: &Path,
    staging: &Path,
    meta_data: &str,
    user_data: &str,
) -> Result<(), ProviderError> {
    let made = write_seed(iso, staging, meta_data, user_data).await;
    let removed = std::fs::remove_dir_all(staging);
    made?;
    removed.map_err(|e| disk_error(format!("removing {}: {e}", staging.display())))
}

async fn write_seed(
    iso: &Path,
    staging: &Path,
    meta_data: &str,
    user_data: &str,
) -> Result<(), ProviderError> {
    std::fs::create_dir_all(staging)
        .and_then(|()| std::fs::set_permissions(staging, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| disk_error(format!("creating {}: {e}", staging.display())))?;
    for (file, content) in [("meta-data", meta_data), ("user-data", user_data)] {
        std::fs::write(staging.join(file), content)
            .map_err(|e| disk_error(format!("writing seed {file}: {e}")))?;
    }
    // Created empty and private first, so the key is never readable by others.
    std::fs::File::create(iso)
        .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o600)))
        .map_err(|e| disk_error(format!("creating {}: {e}", iso.display())))?;
    let iso = iso.display().to_string();
    let staging = staging.display().to_string();
    run(
        ErrorKind::Provision,
        "genisoimage",
        &[
            "-quiet", "-output", &iso, "-volid", "cidata", "-joliet", "-rock", &staging,
        ],
    )
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::which;

    #[tokio::test]
    async fn seed_is_a_private_cidata_volume_and_leaves_no_staging() {
        if which("genisoimage").is_none() {
            eprintln!("skipped: genisoimage is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("seed.iso");
        let staging = dir.path().join("seed");
        create_seed(&iso, &staging, "instance-id: r1\n", "#cloud-config\n")
            .await
            .unwrap();
        assert!(!staging.exists());
        let bytes = std::fs::read(&iso).unwrap();
        // The primary volume descriptor at sector 16: type 1, "CD001", volume id at 40.
        let pvd = &bytes[16 * 2048..17 * 2048];
        assert_eq!(&pvd[1..6], b"CD001");
        assert_eq!(std::str::from_utf8(&pvd[40..72]).unwrap().trim(), "cidata");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("instance-id: r1") && text.contains("#cloud-config"));
        let mode = std::fs::metadata(&iso).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn overlay_is_backed_by_the_base() {
        if which("qemu-img").is_none() {
            eprintln!("skipped: qemu-img is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        run(
            ErrorKind::Provision,
            "qemu-img",
            &["create", "-q", "-f", "qcow2", base.to_str().unwrap(), "64M"],
        )
        .await
        .unwrap();
        let overlay = dir.path().join("disk.qcow2");
        create_overlay(&base, &overlay).await.unwrap();
        let info = run(
            ErrorKind::Provision,
            "qemu-img",
            &["info", "--output=json", overlay.to_str().unwrap()],
        )
        .await
        .unwrap();
        let info: serde_json::Value = serde_json::from_str(&info).unwrap();
        assert_eq!(info["backing-filename"], base.to_str().unwrap());
        assert_eq!(info["virtual-size"], 64 << 20);
        let err = create_overlay(&dir.path().join("missing.qcow2"), &dir.path().join("x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Provision);
    }
}
