//! Host-wide kernel settings azlin changes for its VMs (IPv4 forwarding, the inotify instance
//! limit): each one's previous
//! value is recorded in a file under `/run/azlin` before azlin first changes it, and put back
//! when the last VM is gone. The record lives in `/run` because a reboot resets the settings too.

use azlin_core::{ErrorKind, ProviderError};
use std::path::{Path, PathBuf};

/// Where the previous values are recorded, one `key=value` a line.
pub const RECORD_FILE: &str = "/run/azlin/host-settings";
/// IPv4 forwarding, which NAT for the VMs needs (a key below `/proc/sys`).
pub const IP_FORWARD: &str = "net/ipv4/ip_forward";
/// inotify instances per user. Every process in a VM's user namespace is charged to the host
/// user that made the namespace (root): the default of 128 runs out at about twenty booting
/// VMs, whose systemd then fails to start ("Too many open files").
pub const INOTIFY_INSTANCES: &str = "fs/inotify/max_user_instances";
/// What [`INOTIFY_INSTANCES`] is raised to, at least.
pub const INOTIFY_INSTANCES_FOR_VMS: u64 = 8192;

/// A host setting that could not be read, recorded, changed or restored.
#[derive(Debug, thiserror::Error)]
pub enum HostSettingError {
    /// The setting could not be read or written.
    #[error("{action} {path}: {source}")]
    Sysctl {
        /// What was being done.
        action: &'static str,
        /// The `/proc/sys` file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The record of previous values could not be read or written.
    #[error("{action} the record of host settings {path}: {source}")]
    Record {
        /// What was being done.
        action: &'static str,
        /// The record file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<HostSettingError> for ProviderError {
    fn from(e: HostSettingError) -> Self {
        ProviderError::new(ErrorKind::Provision, e.to_string())
    }
}

/// The settings of one host: `/proc/sys` and the record file (other roots in tests).
#[derive(Debug, Clone)]
pub struct HostSettings {
    proc_sys: PathBuf,
    record: PathBuf,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings::new("/proc/sys", RECORD_FILE)
    }
}

impl HostSettings {
    /// Settings under `proc_sys`, recorded in `record`.
    pub fn new(proc_sys: impl Into<PathBuf>, record: impl Into<PathBuf>) -> Self {
        HostSettings {
            proc_sys: proc_sys.into(),
            record: record.into(),
        }
    }

    fn read(&self, key: &str) -> Result<String, HostSettingError> {
        let path = self.proc_sys.join(key);
        std::fs::read_to_string(&path)
            .map(|v| v.trim().to_string())
            .map_err(|source| HostSettingError::Sysctl {
                action: "reading",
                path,
                source,
            })
    }

    fn write(&self, key: &str, value: &str) -> Result<(), HostSettingError> {
        let path = self.proc_sys.join(key);
        std::fs::write(&path, value).map_err(|source| HostSettingError::Sysctl {
            action: "writing",
            path,
            source,
        })
    }

    /// The recorded `(key, previous value)` pairs.
    pub fn recorded(&self) -> Result<Vec<(String, String)>, HostSettingError> {
        match std::fs::read_to_string(&self.record) {
            Ok(text) => Ok(text
                .lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(HostSettingError::Record {
                action: "reading",
                path: self.record.clone(),
                source,
            }),
        }
    }

    /// Writes the record atomically (a temporary file renamed into place).
    fn save(&self, entries: &[(String, String)]) -> Result<(), HostSettingError> {
        let fail = |action| {
            let path = self.record.clone();
            move |source| HostSettingError::Record {
                action,
                path,
                source,
            }
        };
        if let Some(dir) = self.record.parent() {
            std::fs::create_dir_all(dir).map_err(fail("creating the folder of"))?;
        }
        let text: String = entries.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let tmp = self.record.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(fail("writing"))?;
        std::fs::rename(&tmp, &self.record).map_err(fail("publishing"))
    }

    /// Sets `key` to `value`, first recording its current value unless a previous one is
    /// already recorded (the value from before the first azlin VM is the one to restore).
    pub fn set(&self, key: &str, value: &str) -> Result<(), HostSettingError> {
        let current = self.read(key)?;
        let mut entries = self.recorded()?;
        if !entries.iter().any(|(k, _)| k == key) {
            entries.push((key.to_string(), current.clone()));
            self.save(&entries)?;
        }
        if current != value {
            self.write(key, value)?;
        }
        Ok(())
    }

    /// Raises numeric `key` to `at_least` when it is lower (recording its value first, as
    /// [`set`](Self::set) does); a higher value is left as it is.
    pub fn raise(&self, key: &str, at_least: u64) -> Result<(), HostSettingError> {
        let current: u64 = self.read(key)?.parse().unwrap_or(0);
        if current >= at_least {
            return Ok(());
        }
        self.set(key, &at_least.to_string())
    }

    /// Puts every recorded setting back and removes the record, returning what was restored.
    /// A setting that cannot be restored stays recorded (for the next try) and is an error.
    pub fn restore(&self) -> Result<Vec<String>, HostSettingError> {
        let entries = self.recorded()?;
        let mut restored = Vec::new();
        let mut kept = Vec::new();
        let mut first_error = None;
        for (key, previous) in entries {
            match self.read(&key).and_then(|now| {
                if now != previous {
                    self.write(&key, &previous)?;
                }
                Ok(())
            }) {
                Ok(()) => restored.push(format!("host setting {key} = {previous}")),
                Err(e) => {
                    first_error.get_or_insert(e);
                    kept.push((key, previous));
                }
            }
        }
        if kept.is_empty() {
            remove_if_present(&self.record).map_err(|source| HostSettingError::Record {
                action: "removing",
                path: self.record.clone(),
                source,
            })?;
        } else {
            self.save(&kept)?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(restored),
        }
    }
}

/// Removes the file `path`, if it is there.
pub(super) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(dir: &Path, forward: &str) -> HostSettings {
        let proc_sys = dir.join("sys");
        std::fs::create_dir_all(proc_sys.join("net/ipv4")).unwrap();
        std::fs::write(proc_sys.join(IP_FORWARD), format!("{forward}\n")).unwrap();
        HostSettings::new(proc_sys, dir.join("run/host-settings"))
    }

    #[test]
    fn the_value_before_the_first_change_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let settings = host(dir.path(), "0");
        settings.set(IP_FORWARD, "1").unwrap();
        assert_eq!(settings.read(IP_FORWARD).unwrap(), "1");
        // A second VM (or a re-created network) does not overwrite the recorded value.
        settings.set(IP_FORWARD, "1").unwrap();
        assert_eq!(
            settings.recorded().unwrap(),
            vec![(IP_FORWARD.to_string(), "0".to_string())]
        );
        let restored = settings.restore().unwrap();
        assert_eq!(restored, vec![format!("host setting {IP_FORWARD} = 0")]);
        assert_eq!(settings.read(IP_FORWARD).unwrap(), "0");
        assert!(!dir.path().join("run/host-settings").exists());
        // Nothing recorded: nothing to do.
        assert!(settings.restore().unwrap().is_empty());
    }

    #[test]
    fn a_limit_is_raised_never_lowered_and_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let settings = host(dir.path(), "0");
        let limit = dir.path().join("sys").join(INOTIFY_INSTANCES);
        std::fs::create_dir_all(limit.parent().unwrap()).unwrap();
        std::fs::write(&limit, "128\n").unwrap();
        settings.raise(INOTIFY_INSTANCES, 8192).unwrap();
        assert_eq!(settings.read(INOTIFY_INSTANCES).unwrap(), "8192");
        settings.raise(INOTIFY_INSTANCES, 64).unwrap();
        assert_eq!(settings.read(INOTIFY_INSTANCES).unwrap(), "8192");
        settings.restore().unwrap();
        assert_eq!(settings.read(INOTIFY_INSTANCES).unwrap(), "128");
        // A host that allows more already is left alone, and nothing is recorded.
        std::fs::write(&limit, "65536\n").unwrap();
        settings.raise(INOTIFY_INSTANCES, 8192).unwrap();
        assert!(settings.recorded().unwrap().is_empty());
    }

    #[test]
    fn a_setting_that_was_already_on_stays_on() {
        let dir = tempfile::tempdir().unwrap();
        let settings = host(dir.path(), "1");
        settings.set(IP_FORWARD, "1").unwrap();
        settings.restore().unwrap();
        assert_eq!(settings.read(IP_FORWARD).unwrap(), "1");
    }

    #[test]
    fn an_unrestorable_setting_stays_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let settings = host(dir.path(), "0");
        settings.set(IP_FORWARD, "1").unwrap();
        std::fs::remove_dir_all(dir.path().join("sys")).unwrap();
        assert!(settings.restore().is_err());
        assert_eq!(settings.recorded().unwrap().len(), 1);
    }
}
