//! VM records on disk: one folder per VM holding `vm.json`, for the providers whose VMs live on
//! this machine (nspawn, qemu, sim). Claiming a name is an atomic `mkdir`, so two processes
//! creating the same name cannot both win. An index (`.requests/<request id>` → name) finds the
//! VM of a request without reading every record.

use azlin_core::{ErrorKind, ProviderError, Vm, VmName};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder holding one sub-folder per VM.
#[derive(Debug, Clone)]
pub struct RecordStore {
    root: PathBuf,
    sync: bool,
}

const RECORD_FILE: &str = "vm.json";
const REQUEST_INDEX: &str = ".requests";
/// In a VM folder: the request it was claimed for.
const CLAIM_FILE: &str = ".request";
/// Folders being claimed: `.claiming-<index key>`, renamed to the VM name when complete.
const STAGING_PREFIX: &str = ".claiming-";

/// The index entry name of a request id: the id itself when it is a plain token (UUIDs are),
/// else a hash of it.
fn index_key(request_id: &str) -> String {
    let plain = !request_id.is_empty()
        && request_id.len() <= 128
        && request_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if plain {
        request_id.to_string()
    } else {
        use sha2::{Digest, Sha256};
        Sha256::digest(request_id.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn io_error(context: String, e: std::io::Error) -> ProviderError {
    ProviderError::new(ErrorKind::Internal, format!("{context}: {e}"))
}

impl RecordStore {
    /// Records under `root` (created on first use), each flushed to disk when written.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RecordStore {
            root: root.into(),
            sync: true,
        }
    }

    /// Records that are not flushed to disk when written: they survive the death of any
    /// process (the page cache keeps them) but not a power cut. For simulated VMs, whose
    /// creation must not cost an fsync.
    pub fn unsynced(root: impl Into<PathBuf>) -> Self {
        RecordStore {
            root: root.into(),
            sync: false,
        }
    }

    fn index_entry(&self, request_id: &str) -> PathBuf {
        self.root.join(REQUEST_INDEX).join(index_key(request_id))
    }

    /// The folder of VM `name`.
    pub fn dir(&self, name: &VmName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// Claims `name` for `request_id` by creating its folder; fails with
    /// [`ErrorKind::Conflict`] if another request holds it.
    ///
    /// The folder appears atomically with the request id in it (it is made under a staging name,
    /// then renamed into place), so a claim the same request made before — a worker killed
    /// before the record was written, the request redelivered — is recognised and resumed,
    /// while a claim of another request is never taken over.
    pub fn claim(&self, name: &VmName, request_id: &str) -> Result<PathBuf, ProviderError> {
        let index = self.root.join(REQUEST_INDEX);
        std::fs::create_dir_all(&index)
            .map_err(|e| io_error(format!("creating {}", index.display()), e))?;
        let dir = self.dir(name);
        let staging = self
            .root
            .join(format!("{STAGING_PREFIX}{}", index_key(request_id)));
        // What an earlier claim of this request left half-made.
        remove_if_present(&staging)
            .map_err(|e| io_error(format!("removing {}", staging.display()), e))?;
        std::fs::create_dir(&staging)
            .and_then(|()| std::fs::write(staging.join(CLAIM_FILE), request_id))
            .map_err(|e| io_error(format!("creating {}", staging.display()), e))?;
        if let Err(e) = std::fs::rename(&staging, &dir) {
            let _ = remove_if_present(&staging);
            // A folder that is not empty is a claim; whose, its claim file (or record) says.
            let taken = matches!(
                e.kind(),
                std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
            );
            if !taken {
                return Err(io_error(format!("creating {}", dir.display()), e));
            }
            if self.claimed_by(name).as_deref() != Some(request_id) {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!(
                        "a VM named '{name}' already exists (see `azlin list`, or `azlin delete {name}`)"
                    ),
                ));
            }
        }
        let entry = self.index_entry(request_id);
        let _ = std::fs::remove_file(&entry);
        std::os::unix::fs::symlink(name.as_str(), &entry)
            .map_err(|e| io_error(format!("indexing request {request_id}"), e))?;
        Ok(dir)
    }

    /// The request the folder of `name` was claimed for: its record's, else its claim file's.
    fn claimed_by(&self, name: &VmName) -> Option<String> {
        if let Ok(Some(vm)) = self.load(name) {
            return Some(vm.request_id);
        }
        std::fs::read_to_string(self.dir(name).join(CLAIM_FILE)).ok()
    }

    /// Writes the record of `vm` atomically (temp file, then rename).
    pub fn save(&self, vm: &Vm) -> Result<(), ProviderError> {
        let dir = self.dir(&vm.name);
        let json = serde_json::to_vec_pretty(vm)
            .map_err(|e| ProviderError::new(ErrorKind::Internal, e.to_string()))?;
        write_atomically(&dir.join(RECORD_FILE), &json, self.sync)
            .map_err(|e| io_error(format!("writing record of {}", vm.name), e))
    }

    /// The record of `name`, if its folder holds one.
    pub fn load(&self, name: &VmName) -> Result<Option<Vm>, ProviderError> {
        let path = self.dir(name).join(RECORD_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                ProviderError::new(
                    ErrorKind::Internal,
                    format!("corrupt record {}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(format!("reading {}", path.display()), e)),
        }
    }

    /// The record of `name`; [`ErrorKind::NotFound`] if its folder holds none.
    pub fn require(&self, name: &VmName) -> Result<Vm, ProviderError> {
        self.load(name)?
            .ok_or_else(|| ProviderError::not_found(name))
    }

    /// The record of the VM made for `request_id`, if any.
    pub fn find_by_request(&self, request_id: &str) -> Result<Option<Vm>, ProviderError> {
        let Ok(target) = std::fs::read_link(self.index_entry(request_id)) else {
            return Ok(None);
        };
        let Some(name) = target.to_str().and_then(|n| VmName::parse(n).ok()) else {
            return Ok(None);
        };
        Ok(self.load(&name)?.filter(|vm| vm.request_id == request_id))
    }

    /// Every record, sorted by name. Folders without a record (a create in progress) are skipped.
    pub fn list(&self) -> Result<Vec<Vm>, ProviderError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(format!("listing {}", self.root.display()), e)),
        };
        let mut vms = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry
                .file_name()
                .to_str()
                .and_then(|n| VmName::parse(n).ok())
            else {
                continue;
            };
            if let Some(vm) = self.load(&name)? {
                vms.push(vm);
            }
        }
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(vms)
    }

    /// Removes the folder of `name`, everything in it, and its index entry.
    pub fn remove(&self, name: &VmName) -> Result<(), ProviderError> {
        if let Ok(Some(vm)) = self.load(name) {
            let _ = std::fs::remove_file(self.index_entry(&vm.request_id));
        }
        match std::fs::remove_dir_all(self.dir(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(
                format!("removing {}", self.dir(name).display()),
                e,
            )),
        }
    }
}

/// Removes the folder `path` and everything in it, if it is there.
fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that
/// readers see the old content or the new, never a part; with `sync`, flushed to disk first.
pub fn write_atomically(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    if sync {
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> VmName {
        VmName::parse(n).unwrap()
    }

    #[test]
    fn a_claim_interrupted_before_the_record_is_resumed_by_its_request_only() {
        let dir = tempfile::tempdir().unwrap();
        let records = RecordStore::unsynced(dir.path());
        // The worker claimed the name and died before writing the record.
        let folder = records.claim(&name("half"), "r1").unwrap();
        assert!(records.load(&name("half")).unwrap().is_none());
        assert!(records.list().unwrap().is_empty());
        // Another request cannot take the name over…
        let err = records.claim(&name("half"), "r2").unwrap_err();
        assert_eq!(err.kind, ErrorKind::Conflict);
        // …the same request, redelivered, resumes it.
        assert_eq!(records.claim(&name("half"), "r1").unwrap(), folder);
        // A staging folder left by a claim that died before its rename is no obstacle.
        std::fs::create_dir(dir.path().join(format!("{STAGING_PREFIX}r3"))).unwrap();
        records.claim(&name("other"), "r3").unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn of_two_requests_claiming_one_name_at_once_exactly_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..50 {
            let vm = name(&format!("raced-{round}"));
            let outcomes: Vec<_> = std::thread::scope(|scope| {
                let claims: Vec<_> = ["a", "b"]
                    .map(|id| {
                        let records = RecordStore::unsynced(dir.path());
                        let vm = vm.clone();
                        let id = format!("{id}{round}");
                        scope.spawn(move || records.claim(&vm, &id).map(drop))
                    })
                    .into_iter()
                    .collect();
                claims.into_iter().map(|c| c.join().unwrap()).collect()
            });
            assert_eq!(
                outcomes.iter().filter(|o| o.is_ok()).count(),
                1,
                "{outcomes:?}"
            );
        }
    }
}
