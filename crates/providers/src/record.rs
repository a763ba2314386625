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
    /// [`ErrorKind::Conflict`] if it exists.
    pub fn claim(&self, name: &VmName, request_id: &str) -> Result<PathBuf, ProviderError> {
        let index = self.root.join(REQUEST_INDEX);
        std::fs::create_dir_all(&index)
            .map_err(|e| io_error(format!("creating {}", index.display()), e))?;
        let dir = self.dir(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let entry = self.index_entry(request_id);
                let _ = std::fs::remove_file(&entry);
                std::os::unix::fs::symlink(name.as_str(), &entry)
                    .map_err(|e| io_error(format!("indexing request {request_id}"), e))?;
                Ok(dir)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "a VM named '{name}' already exists (see `azlin list`, or `azlin delete {name}`)"
                ),
            )),
            Err(e) => Err(io_error(format!("creating {}", dir.display()), e)),
        }
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
