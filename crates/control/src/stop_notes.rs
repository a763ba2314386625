//! Why azlin stopped a VM on its own (an idle stop by `azlin serve`), kept until the VM starts
//! again, so that `azlin list` can say. One small file per VM under the state directory.

use azlin_core::VmName;
use std::io;
use std::path::PathBuf;

/// The notes, in their folder.
#[derive(Debug, Clone)]
pub struct StopNotes {
    dir: PathBuf,
}

impl StopNotes {
    /// Notes kept in `dir` (made when the first is written).
    pub fn new(dir: impl Into<PathBuf>) -> StopNotes {
        StopNotes { dir: dir.into() }
    }

    fn path(&self, name: &VmName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    /// Records why `name` was stopped.
    pub fn record(&self, name: &VmName, reason: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let staged = self.dir.join(format!(".{name}.new"));
        std::fs::write(&staged, reason)?;
        std::fs::rename(staged, self.path(name))
    }

    /// Why `name` was stopped, if azlin stopped it.
    pub fn read(&self, name: &VmName) -> Option<String> {
        std::fs::read_to_string(self.path(name)).ok()
    }

    /// Forgets the note of `name` (it started again, or is gone).
    pub fn clear(&self, name: &VmName) -> io::Result<()> {
        match std::fs::remove_file(self.path(name)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_is_kept_until_cleared() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let notes = StopNotes::new(tmp.path().join("stopped"));
        let name = VmName::parse("dev").expect("name");
        assert_eq!(notes.read(&name), None);
        notes.clear(&name).expect("clearing nothing");
        notes.record(&name, "idle for 30 min").expect("record");
        assert_eq!(notes.read(&name).as_deref(), Some("idle for 30 min"));
        notes.clear(&name).expect("clear");
        assert_eq!(notes.read(&name), None);
    }
}
