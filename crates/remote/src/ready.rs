//! Readiness: wait until a VM answers SSH with the injected host key and accepts the azlin key,
//! then until cloud-init has finished.

use crate::keys::Identity;
use crate::shell::{RemoteError, Shell};
use crate::ssh::{SshShell, SshTarget};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// How often to knock while the port is closed.
const PORT_POLL: Duration = Duration::from_millis(25);
/// How long one TCP connect attempt may take.
const CONNECT_ATTEMPT: Duration = Duration::from_millis(500);
/// The least time one SSH handshake gets, even when the deadline is closer.
const HANDSHAKE_FLOOR: Duration = Duration::from_secs(5);

/// Waits until `target` accepts an SSH login with `identity`, checking the host key strictly.
///
/// While the port is closed it knocks every 25 ms; once open, a refused login (cloud-init has
/// not yet written the user's key) is retried. A host key mismatch ends the wait at once.
pub async fn wait_for_ssh(
    target: &SshTarget,
    identity: &Identity,
    timeout: Duration,
) -> Result<SshShell, RemoteError> {
    let deadline = Instant::now() + timeout;
    let mut last_error = String::from("port never opened");
    loop {
        let port_open = tokio::time::timeout(
            CONNECT_ATTEMPT,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if port_open {
            // A port that accepts but never finishes the handshake (sshd starting, a half-up
            // network) must not hold the wait past its deadline.
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(
                left.max(HANDSHAKE_FLOOR),
                SshShell::connect(target, identity),
            )
            .await
            {
                Ok(Ok(shell)) => return Ok(shell),
                Ok(Err(e @ RemoteError::HostKeyMismatch { .. })) => return Err(e),
                Ok(Err(e)) => last_error = e.to_string(),
                Err(_) => last_error = "the SSH handshake did not finish".to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(RemoteError::Timeout(format!(
                "SSH on {}:{} was not ready after {}s (last: {last_error})",
                target.host,
                target.port,
                timeout.as_secs()
            )));
        }
        let pause = if port_open { PORT_POLL * 4 } else { PORT_POLL };
        tokio::time::sleep(pause).await;
    }
}

/// How cloud-init ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudInitOutcome {
    /// `done`, `error`, `degraded`, or what cloud-init printed.
    pub status: String,
    /// The long status output (errors and the stage they happened in).
    pub detail: String,
}

impl CloudInitOutcome {
    /// Whether cloud-init finished without errors.
    pub fn is_done(&self) -> bool {
        self.status == "done"
    }
}

/// Runs `cloud-init status --wait --long` and reports how cloud-init ended.
pub async fn wait_for_cloud_init(
    shell: &dyn Shell,
    timeout: Duration,
) -> Result<CloudInitOutcome, RemoteError> {
    let run = shell.capture("cloud-init status --wait --long");
    let out = tokio::time::timeout(timeout, run).await.map_err(|_| {
        RemoteError::Timeout(format!(
            "cloud-init had not finished after {}s",
            timeout.as_secs()
        ))
    })??;
    let text = out.stdout_text();
    let status = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("status:"))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| format!("unknown (exit {})", out.code));
    Ok(CloudInitOutcome {
        status,
        detail: format!("{}{}", text.trim_end(), out.stderr_text()),
    })
}
