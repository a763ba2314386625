//! Cross-process exclusive locks on files (`flock`), for work that several azlin processes may
//! attempt at once: building a base image, allocating a network slot.

use azlin_core::{ErrorKind, ProviderError};
use std::fs::File;
use std::path::Path;

/// Holds an exclusive lock until dropped.
#[derive(Debug)]
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the exclusive lock on `path` (created if missing) without blocking the runtime.
    pub async fn acquire(path: &Path) -> Result<FileLock, ProviderError> {
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let fail = |e: std::io::Error| {
                ProviderError::new(
                    ErrorKind::Internal,
                    format!("locking {}: {e}", path.display()),
                )
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(fail)?;
            }
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(fail)?;
            file.lock().map_err(fail)?;
            Ok(FileLock { _file: file })
        })
        .await
        .map_err(|e| ProviderError::new(ErrorKind::Internal, format!("lock task failed: {e}")))?
    }
}
