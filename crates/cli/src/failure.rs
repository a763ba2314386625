//! Errors at the CLI edge and the one place they become exit codes.

use azlin_control::bus::BusError;
use azlin_control::store::StoreError;
use azlin_core::ExitCode;
use azlin_core::config::ConfigError;
use azlin_core::{ErrorKind, ProviderError};
use azlin_remote::RemoteError;

/// An error that decides its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code.
    pub code: ExitCode,
    /// What to tell the user.
    pub message: String,
}

impl Failure {
    /// Bad input: exit 64, nothing changed.
    pub fn usage(message: impl Into<String>) -> anyhow::Error {
        Failure {
            code: ExitCode::Usage,
            message: message.into(),
        }
        .into()
    }

    /// A failure with an explicit exit code.
    pub fn with_code(code: ExitCode, message: impl Into<String>) -> anyhow::Error {
        Failure {
            code,
            message: message.into(),
        }
        .into()
    }
}

/// The exit code for an error: the first typed error in its chain decides.
pub fn exit_code(error: &anyhow::Error) -> ExitCode {
    for cause in error.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.code;
        }
        if let Some(e) = cause.downcast_ref::<ProviderError>() {
            return e.kind.exit_code();
        }
        if let Some(e) = cause.downcast_ref::<BusError>() {
            return bus_exit_code(e);
        }
        if let Some(StoreError::Bus(e)) = cause.downcast_ref::<StoreError>() {
            return bus_exit_code(e);
        }
        if cause.downcast_ref::<ConfigError>().is_some() {
            return ExitCode::Usage;
        }
        if let Some(e) = cause.downcast_ref::<RemoteError>() {
            return match e {
                RemoteError::Key(_) => ErrorKind::KeySetup.exit_code(),
                RemoteError::PortTaken(_) => ExitCode::Usage,
                RemoteError::Connect { .. }
                | RemoteError::HostKeyMismatch { .. }
                | RemoteError::AuthRejected { .. } => ExitCode::Readiness,
                _ => ExitCode::Error,
            };
        }
    }
    ExitCode::Error
}

/// Credentials refused: 3; connection settings that cannot be used: 64; else 1.
fn bus_exit_code(e: &BusError) -> ExitCode {
    match e {
        BusError::Auth(_) => ExitCode::Auth,
        BusError::Setup(_) => ExitCode::Usage,
        BusError::Closed | BusError::Transport(_) => ExitCode::Error,
    }
}
