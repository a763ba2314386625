//! Running the host programs providers drive (`ip`, `nft`, …) with their error output turned
//! into a message.

use azlin_core::{ErrorKind, ProviderError};
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// Runs `program args…`, returning its stdout; a non-zero exit becomes an error of `kind`
/// carrying the command line and its stderr.
pub async fn run(kind: ErrorKind, program: &str, args: &[&str]) -> Result<String, ProviderError> {
    run_with_input(kind, program, args, "").await
}

/// Like [`run`], feeding `input` to the program's stdin (for `ip -batch -` and `nft -f -`).
pub async fn run_with_input(
    kind: ErrorKind,
    program: &str,
    args: &[&str],
    input: &str,
) -> Result<String, ProviderError> {
    let mut child = spawn_piped(
        Command::new(program).args(args).stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        }),
        program,
    )?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .await
            .map_err(|e| ProviderError::new(kind, format!("writing to {program}: {e}")))?;
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|e| ProviderError::new(kind, format!("waiting for {program}: {e}")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(ProviderError::new(
            kind,
            format!(
                "`{program} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        ))
    }
}

/// Starts `command` (which runs `program`) with its stdout and stderr piped, killed if its handle
/// is dropped; a program that cannot be started is an [`ErrorKind::Prerequisites`] error.
pub(crate) fn spawn_piped(command: &mut Command, program: &str) -> Result<Child, ProviderError> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Prerequisites,
                format!("cannot run {program}: {e}"),
            )
        })
}
