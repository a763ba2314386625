//! [`LocalShell`]: commands as local processes in a directory (the `sim` provider's VMs).

use crate::shell::{OutputSink, OutputStream, RemoteError, Shell};
use async_trait::async_trait;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// Runs commands with `sh -c` in `root/home`, with `HOME` set to it and `root/bin` first on
/// `PATH` (where a simulated machine keeps its own programs).
#[derive(Debug, Clone)]
pub struct LocalShell {
    root: PathBuf,
}

impl LocalShell {
    /// A shell for the machine whose directory is `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalShell { root: root.into() }
    }

    fn home(&self) -> PathBuf {
        self.root.join("home")
    }

    fn path_var(&self) -> std::ffi::OsString {
        let mut dirs = vec![self.root.join("bin")];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap_or_default()
    }
}

#[async_trait]
impl Shell for LocalShell {
    async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RemoteError> {
        let home = self.home();
        std::fs::create_dir_all(&home)
            .map_err(|e| RemoteError::io(format!("creating {}", home.display()), e))?;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .current_dir(&home)
            .env("HOME", &home)
            .env("PATH", self.path_var())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A process group of its own, so that abandoning the command kills its children too.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| RemoteError::io("starting sh", e))?;
        let mut input = child.stdin.take();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let feed = async {
            if let Some(mut input) = input.take() {
                // A command that exits without reading its input is not an error.
                let _ = input.write_all(stdin).await;
            }
        };
        let (mut out_buf, mut err_buf) = ([0u8; 8192], [0u8; 8192]);
        let pump = async {
            let (mut out_open, mut err_open) = (stdout.is_some(), stderr.is_some());
            while out_open || err_open {
                tokio::select! {
                    n = read_some(&mut stdout, &mut out_buf), if out_open => match n {
                        Some(n) => sink(OutputStream::Stdout, &out_buf[..n]),
                        None => out_open = false,
                    },
                    n = read_some(&mut stderr, &mut err_buf), if err_open => match n {
                        Some(n) => sink(OutputStream::Stderr, &err_buf[..n]),
                        None => err_open = false,
                    },
                }
            }
        };
        tokio::join!(feed, pump);
        let status = child
            .wait()
            .await
            .map_err(|e| RemoteError::io("waiting for sh", e))?;
        status
            .code()
            .ok_or(RemoteError::NoExitStatus { signal: None })
    }

    fn target(&self) -> String {
        format!("local:{}", self.root.display())
    }
}

/// Reads one chunk; `None` at end of stream or on error.
async fn read_some<R: AsyncReadExt + Unpin>(
    reader: &mut Option<R>,
    buf: &mut [u8],
) -> Option<usize> {
    match reader.as_mut()?.read(buf).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_in_its_home_with_stdin_and_exit_code() {
        let dir = tempfile::tempdir().unwrap();
        let shell = LocalShell::new(dir.path());
        let out = shell.capture("pwd; echo err >&2; exit 3").await.unwrap();
        assert_eq!(out.code, 3);
        assert_eq!(
            out.stdout_text().trim(),
            dir.path().join("home").display().to_string()
        );
        assert_eq!(out.stderr_text(), "err\n");
        let mut got = Vec::new();
        let code = shell
            .exec("cat", b"hello", &mut |_, b| got.extend_from_slice(b))
            .await
            .unwrap();
        assert_eq!((code, got.as_slice()), (0, &b"hello"[..]));
    }
}
