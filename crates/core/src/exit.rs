//! Exit codes (seed 000) and the error kinds that map onto them.

use serde::{Deserialize, Serialize};

/// The process exit codes of the CLI contract, decided in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// Everything worked.
    Ok,
    /// Any error not covered below.
    Error,
    /// A required tool is missing.
    Prerequisites,
    /// Authentication with the provider failed.
    Auth,
    /// SSH key setup or provisioning failed (after cleanup).
    Provision,
    /// The VM never became ready, or the connection failed; the VM is left running.
    Readiness,
    /// The command line or an input file was invalid; nothing was changed.
    Usage,
    /// Interrupted (Ctrl-C), after cleaning up and saying what was removed.
    Interrupted,
    /// The exit status of a command azlin ran for the user (`azlin connect NAME -- CMD`),
    /// passed through.
    Command(u8),
}

impl ExitCode {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Error => 1,
            ExitCode::Prerequisites => 2,
            ExitCode::Auth => 3,
            ExitCode::Provision => 4,
            ExitCode::Readiness => 5,
            ExitCode::Usage => 64,
            ExitCode::Interrupted => 130,
            ExitCode::Command(code) => code,
        }
    }
}

/// What kind of failure an error is: decides the exit code and whether a retry can help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Bad input from the user; nothing was changed.
    Usage,
    /// A required tool or facility is missing.
    Prerequisites,
    /// Credentials are missing or rejected.
    Auth,
    /// SSH key generation or permissions.
    KeySetup,
    /// Creating the VM or one of its resources failed.
    Provision,
    /// The VM did not become reachable or ready in time.
    Readiness,
    /// A named VM or resource does not exist.
    NotFound,
    /// A resource with that name already exists.
    Conflict,
    /// A transient fault (throttling, network, a busy server): worth retrying.
    Transient,
    /// Anything else.
    Internal,
}

impl ErrorKind {
    /// The exit code a command ends with when it fails with this kind of error.
    pub fn exit_code(self) -> ExitCode {
        match self {
            ErrorKind::Usage | ErrorKind::NotFound | ErrorKind::Conflict => ExitCode::Usage,
            ErrorKind::Prerequisites => ExitCode::Prerequisites,
            ErrorKind::Auth => ExitCode::Auth,
            ErrorKind::KeySetup | ErrorKind::Provision => ExitCode::Provision,
            ErrorKind::Readiness => ExitCode::Readiness,
            ErrorKind::Transient | ErrorKind::Internal => ExitCode::Error,
        }
    }

    /// Whether repeating the same operation may succeed.
    pub fn retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Provision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_the_seed_exit_codes() {
        assert_eq!(ErrorKind::Prerequisites.exit_code().code(), 2);
        assert_eq!(ErrorKind::Auth.exit_code().code(), 3);
        assert_eq!(ErrorKind::KeySetup.exit_code().code(), 4);
        assert_eq!(ErrorKind::Provision.exit_code().code(), 4);
        assert_eq!(ErrorKind::Readiness.exit_code().code(), 5);
        assert_eq!(ErrorKind::Usage.exit_code().code(), 64);
        assert_eq!(ErrorKind::Internal.exit_code().code(), 1);
        assert_eq!(ExitCode::Interrupted.code(), 130);
    }
}
