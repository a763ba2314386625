//! VM records on disk: one folder per VM holding `vm.json`, for the providers whose VMs live on
//! this machine (nspawn, qemu, sim). Claiming a name is an atomic `mkdir`, so two processes
//! creating the same name cannot both win.

use azlin_core::{ErrorKind, ProviderError, Vm, VmName};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The folder holding one sub-folder per VM.
#[derive(Debug, Clone)]
pub struct RecordStore {
    root: PathBuf,
}

const RECORD_FILE: &str = "vm.json";

fn io_error(context: String, e: std::io::Error) -> ProviderError {
    ProviderError::new(ErrorKind::Internal, format!("{context}: {e}"))
}

impl RecordStore {
    /// Records under `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        RecordStore { root: root.into() }
    }

    /// The folder of VM `name`.
    pub fn dir(&self, name: &VmName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// Claims `name` by creating its folder; fails with [`ErrorKind::Conflict`] if it exists.
    pub fn claim(&self, name: &VmName) -> Result<PathBuf, ProviderError> {
        std::fs::create_dir_all(&self.root)
            .map_err(|e| io_error(format!("creating {}", self.root.display()), e))?;
        let dir = self.dir(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => Ok(dir),
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
        write_atomically(&dir.join(RECORD_FILE), &json)
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

    /// Removes the folder of `name` and everything in it.
    pub fn remove(&self, name: &VmName) -> Result<(), ProviderError> {
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
/// readers see the old content or the new, never a part.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}
