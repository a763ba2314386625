//! Snapshots of nspawn machines: a copy of the overlay's upper layer (everything the machine
//! changed from its base image), taken with the machine frozen so that the copy is consistent,
//! kept in `snapshots/NAME/` of the machine's folder. A restore puts the copy back with the
//! machine stopped; a clone boots a new machine on a copy, as a new cloud-init instance.

use azlin_core::provider::check_snapshot_name as check_name;
use azlin_core::{ErrorKind, ProviderError, Snapshot, VmName};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What a snapshot's `snapshot.json` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Meta {
    name: String,
    created_at: String,
    /// The first host uid of the machine's user namespace when it was taken.
    uid_base: Option<u32>,
}

fn failure(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// The snapshots of one machine folder.
#[derive(Debug, Clone)]
pub struct Snapshots(pub PathBuf);

impl Snapshots {
    fn dir(&self, snapshot: &str) -> PathBuf {
        self.0.join(snapshot)
    }

    /// The saved upper layer of `snapshot`.
    pub fn upper(&self, snapshot: &str) -> PathBuf {
        self.dir(snapshot).join("upper")
    }

    /// The user-namespace base `snapshot` was taken with.
    pub fn uid_base(&self, snapshot: &str) -> Result<Option<u32>, ProviderError> {
        Ok(self.meta(snapshot)?.uid_base)
    }

    fn meta(&self, snapshot: &str) -> Result<Meta, ProviderError> {
        let path = self.dir(snapshot).join("snapshot.json");
        let text = std::fs::read_to_string(&path).map_err(|_| {
            ProviderError::new(ErrorKind::NotFound, format!("no snapshot '{snapshot}'"))
        })?;
        serde_json::from_str(&text).map_err(|e| failure(format!("reading {}: {e}", path.display())))
    }

    /// Copies `upper` as `snapshot` (refused if it exists).
    pub async fn save(
        &self,
        vm: &VmName,
        snapshot: &str,
        upper: &Path,
        uid_base: Option<u32>,
    ) -> Result<Snapshot, ProviderError> {
        check_name(snapshot)?;
        let dir = self.dir(snapshot);
        if dir.exists() {
            return Err(ProviderError::new(
                ErrorKind::Usage,
                format!("VM '{vm}' already has a snapshot '{snapshot}'"),
            ));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| failure(format!("creating {}: {e}", dir.display())))?;
        if let Err(e) = copy_tree(upper, &dir.join("upper")).await {
            std::fs::remove_dir_all(&dir).ok();
            return Err(e);
        }
        let meta = Meta {
            name: snapshot.to_string(),
            created_at: azlin_core::now_rfc3339(),
            uid_base,
        };
        let json = serde_json::to_string_pretty(&meta).unwrap_or_default();
        std::fs::write(dir.join("snapshot.json"), json)
            .map_err(|e| failure(format!("writing the snapshot record: {e}")))?;
        self.describe(vm, snapshot)
    }

    fn describe(&self, vm: &VmName, snapshot: &str) -> Result<Snapshot, ProviderError> {
        let meta = self.meta(snapshot)?;
        Ok(Snapshot {
            vm: vm.clone(),
            name: meta.name,
            created_at: meta.created_at,
            with_memory: false,
            size_bytes: tree_size(&self.upper(snapshot)),
        })
    }

    /// Every snapshot, oldest first.
    pub fn list(&self, vm: &VmName) -> Vec<Snapshot> {
        let Ok(entries) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut snapshots: Vec<Snapshot> = entries
            .flatten()
            .filter_map(|e| self.describe(vm, &e.file_name().to_string_lossy()).ok())
            .collect();
        snapshots.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        snapshots
    }

    /// Removes `snapshot`.
    pub fn delete(&self, snapshot: &str) -> Result<(), ProviderError> {
        check_name(snapshot)?;
        self.meta(snapshot)?;
        std::fs::remove_dir_all(self.dir(snapshot))
            .map_err(|e| failure(format!("removing snapshot '{snapshot}': {e}")))
    }
}

/// Copies `from` to `to` keeping owners, modes, links and times (`cp -a`, reflinks where the
/// file system has them).
pub async fn copy_tree(from: &Path, to: &Path) -> Result<(), ProviderError> {
    let out = tokio::process::Command::new("cp")
        .args(["-a", "--reflink=auto", "--no-target-directory"])
        .arg(from)
        .arg(to)
        .output()
        .await
        .map_err(|e| failure(format!("cannot run cp: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(failure(format!(
            "copying {} to {}: {}",
            from.display(),
            to.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Re-owns a tree copied from a machine whose user namespace started at `from` for one whose
/// namespace starts at `to`: each owner `from + k` becomes `to + k`.
pub fn shift_owners(root: &Path, from: u32, to: u32) -> Result<(), ProviderError> {
    let shift = |id: u32| id.checked_sub(from).map(|k| to + k).unwrap_or(id);
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| failure(format!("reading {}: {e}", path.display())))?;
        std::os::unix::fs::lchown(&path, Some(shift(meta.uid())), Some(shift(meta.gid())))
            .map_err(|e| failure(format!("re-owning {}: {e}", path.display())))?;
        // lchown drops set-id bits: put the mode back on regular files and folders.
        if !meta.file_type().is_symlink() {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(meta.mode()))
                .map_err(|e| failure(format!("re-moding {}: {e}", path.display())))?;
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path)
                .map_err(|e| failure(format!("reading {}: {e}", path.display())))?
                .flatten()
            {
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Makes a copied upper layer boot as a new machine: an empty `/etc/machine-id` (systemd
/// makes a new one at boot) and no SSH host keys (cloud-init writes the clone's own).
pub fn forget_identity(upper: &Path) -> Result<(), ProviderError> {
    let machine_id = upper.join("etc/machine-id");
    if machine_id.exists() {
        std::fs::write(&machine_id, "")
            .map_err(|e| failure(format!("resetting the machine id: {e}")))?;
    }
    if let Ok(entries) = std::fs::read_dir(upper.join("etc/ssh")) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("ssh_host_") {
                std::fs::remove_file(entry.path())
                    .map_err(|e| failure(format!("removing {name}: {e}")))?;
            }
        }
    }
    Ok(())
}

/// Bytes of the regular files under `root`.
fn tree_size(root: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_saved_snapshot_is_listed_read_back_and_deleted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("etc/ssh")).expect("mkdir");
        std::fs::write(upper.join("etc/machine-id"), "0123\n").expect("write");
        std::fs::write(upper.join("etc/ssh/ssh_host_ed25519_key"), "k").expect("write");
        std::fs::write(upper.join("etc/ssh/sshd_config"), "c").expect("write");
        let vm = VmName::parse("dev").expect("name");
        let snapshots = Snapshots(dir.path().join("snapshots"));
        let saved = snapshots
            .save(&vm, "one", &upper, Some(7))
            .await
            .expect("save");
        assert_eq!(saved.name, "one");
        assert_eq!(saved.size_bytes, 7);
        let again = snapshots.save(&vm, "one", &upper, Some(7)).await;
        assert_eq!(again.expect_err("exists").kind, ErrorKind::Usage);
        assert_eq!(snapshots.list(&vm).len(), 1);
        assert_eq!(snapshots.uid_base("one").expect("meta"), Some(7));
        let copy = snapshots.upper("one");
        forget_identity(&copy).expect("forget");
        assert_eq!(
            std::fs::read_to_string(copy.join("etc/machine-id")).expect("id"),
            ""
        );
        assert!(!copy.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(copy.join("etc/ssh/sshd_config").exists());
        snapshots.delete("one").expect("delete");
        assert!(snapshots.list(&vm).is_empty());
        assert_eq!(
            snapshots.delete("one").expect_err("gone").kind,
            ErrorKind::NotFound
        );
    }
}
