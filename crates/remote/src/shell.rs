//! The [`Shell`] trait: run a command on a machine, stream its output, get its exit code.

use async_trait::async_trait;

/// Which output stream a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// A failure to run a command (not the command failing: that is its exit code).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The connection could not be made or was lost.
    #[error("cannot reach {target}: {reason}")]
    Connect {
        /// `user@host:port` or a directory.
        target: String,
        /// Why.
        reason: String,
    },
    /// The host presented a key other than the one azlin injected.
    #[error(
        "host key of {target} does not match the key azlin injected (expected {expected}); refusing to connect"
    )]
    HostKeyMismatch {
        /// `host:port`.
        target: String,
        /// The expected key's fingerprint.
        expected: String,
    },
    /// The server refused the azlin key.
    #[error("{target} refused the azlin SSH key for user {user}")]
    AuthRejected {
        /// `host:port`.
        target: String,
        /// The login user.
        user: String,
    },
    /// The command ended without an exit status (killed by a signal, or the channel closed).
    #[error("command ended without an exit status{}", signal.as_ref().map(|s| format!(" (signal {s})")).unwrap_or_default())]
    NoExitStatus {
        /// The signal, when known.
        signal: Option<String>,
    },
    /// A local I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A key file could not be read or written.
    #[error("{0}")]
    Key(String),
    /// Waiting ran out of time.
    #[error("{0}")]
    Timeout(String),
    /// A copy failed (what `scp` said).
    #[error("copy failed: {0}")]
    Copy(String),
    /// A local port to listen on is taken.
    #[error("cannot listen on {0}")]
    PortTaken(String),
    /// A command on the machine failed (what it said).
    #[error("{0}")]
    Failed(String),
}

impl RemoteError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        RemoteError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Output and exit code of a command run to completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// Exit code.
    pub code: i32,
    /// Everything written to stdout.
    pub stdout: Vec<u8>,
    /// Everything written to stderr.
    pub stderr: Vec<u8>,
}

impl Captured {
    /// Stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Receives output chunks as they arrive.
pub type OutputSink<'a> = dyn FnMut(OutputStream, &[u8]) + Send + 'a;

/// A connection to one machine that runs commands.
///
/// Commands are command lines for the login user's POSIX shell (`sh -c` semantics); callers
/// quote every piece of data with [`crate::quote::sh`]. Commands can run concurrently on one
/// shell (each SSH command gets its own channel on one connection).
#[async_trait]
pub trait Shell: Send + Sync {
    /// Runs `command`, feeds it `stdin` then end-of-file, streams its output to `sink`, and
    /// returns its exit code. Dropping the future abandons the command.
    async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RemoteError>;

    /// A short description of the target (`azureuser@10.213.0.2:22`).
    fn target(&self) -> String;

    /// Runs `command` with no input and collects its output.
    async fn capture(&self, command: &str) -> Result<Captured, RemoteError> {
        let mut out = Captured::default();
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        out.code = self
            .exec(command, &[], &mut |stream, bytes| match stream {
                OutputStream::Stdout => stdout.extend_from_slice(bytes),
                OutputStream::Stderr => stderr.extend_from_slice(bytes),
            })
            .await?;
        out.stdout = stdout;
        out.stderr = stderr;
        Ok(out)
    }
}
