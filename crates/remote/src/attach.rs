//! Interactive access through the system `ssh`: a tmux session, a single command, X11
//! forwarding, and port-forwarding tunnels (for the VNC desktop).

use crate::keys::write_known_hosts;
use crate::quote;
use crate::shell::RemoteError;
use crate::ssh::SshTarget;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The system `ssh`, used for interactive sessions and tunnels.
pub const SSH_TOOL: azlin_core::Tool = azlin_core::Tool {
    program: "ssh",
    version_args: &["-V"],
    purpose: "interactive sessions and tunnels (connect, gui)",
    install_hint: "apt-get install openssh-client",
};

/// The tmux session every `azlin connect` attaches to (created when missing).
pub const TMUX_SESSION: &str = "azlin";

/// How to reach a VM with the system `ssh`.
#[derive(Debug, Clone)]
pub struct SshAccess {
    /// Host or IP.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// The VM's host key (written to a known_hosts file for strict checking).
    pub host_key: String,
    /// The private key file.
    pub key_path: PathBuf,
    /// The known_hosts file to write and use.
    pub known_hosts: PathBuf,
}

/// What to do once connected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// Attach to (or create) the `azlin` tmux session.
    Tmux,
    /// A plain login shell.
    Shell,
    /// Run a command (its words are quoted) and return its exit code.
    Command(Vec<String>),
}

impl SshAccess {
    /// The same VM as a target of azlin's own SSH client (russh), with the same strict host key.
    pub fn target(&self) -> SshTarget {
        SshTarget {
            host: self.host.clone(),
            port: self.port,
            user: self.user.clone(),
            host_key: self.host_key.clone(),
        }
    }

    /// Writes the VM's known_hosts file (its recorded host key), which every `ssh` and `scp`
    /// of azlin checks strictly.
    pub fn write_known_hosts(&self) -> Result<(), RemoteError> {
        write_known_hosts(&self.known_hosts, &self.host, self.port, &self.host_key)
    }

    /// The options every invocation shares: the azlin key only, strict host-key checking against
    /// the injected key, no password prompts.
    fn base_args(&self) -> Vec<String> {
        vec![
            "-i".into(),
            self.key_path.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "PasswordAuthentication=no".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            "-p".into(),
            self.port.to_string(),
        ]
    }

    /// The `ssh` arguments for `session` (everything after the program name).
    pub fn args(&self, session: &Session, x11: bool, tty: bool) -> Vec<String> {
        let mut args = self.base_args();
        if x11 {
            args.push("-Y".into());
        }
        match session {
            Session::Tmux => args.push("-t".into()),
            Session::Command(_) if tty => args.push("-t".into()),
            _ => {}
        }
        args.push(format!("{}@{}", self.user, self.host));
        match session {
            Session::Tmux => args.push(format!("tmux new-session -A -s {TMUX_SESSION}")),
            Session::Shell => {}
            Session::Command(words) => args.push(quote::command(words)),
        }
        args
    }

    /// Runs the system `ssh` with the terminal attached and returns its exit code (255 means
    /// ssh itself failed to connect).
    pub fn run(&self, session: &Session, x11: bool, tty: bool) -> Result<i32, RemoteError> {
        self.write_known_hosts()?;
        let status = Command::new("ssh")
            .args(self.args(session, x11, tty))
            .status()
            .map_err(|e| RemoteError::io("running ssh", e))?;
        Ok(status.code().unwrap_or(255))
    }

    /// Starts `ssh -N -L local_port:127.0.0.1:remote_port` in the background; the tunnel lives
    /// until the returned child is killed.
    pub fn tunnel(
        &self,
        local_port: u16,
        remote_port: u16,
    ) -> Result<std::process::Child, RemoteError> {
        self.write_known_hosts()?;
        let mut args = self.base_args();
        args.extend([
            "-N".into(),
            "-o".into(),
            "ExitOnForwardFailure=yes".into(),
            "-L".into(),
            format!("127.0.0.1:{local_port}:127.0.0.1:{remote_port}"),
            format!("{}@{}", self.user, self.host),
        ]);
        Command::new("ssh")
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| RemoteError::io("starting ssh tunnel", e))
    }

    /// Starts `ssh -N -L SPEC` detached from this process (its own process group, so that it
    /// outlives azlin and its Ctrl-C), with its messages going to `log`.
    pub fn background_forward(
        &self,
        spec: &str,
        log: &Path,
    ) -> Result<std::process::Child, RemoteError> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(log)
            .map_err(|e| RemoteError::io(format!("creating {}", log.display()), e))?;
        let mut args = self.base_args();
        args.extend([
            "-N".into(),
            "-o".into(),
            "ExitOnForwardFailure=yes".into(),
            "-o".into(),
            "ServerAliveInterval=30".into(),
            "-L".into(),
            spec.to_string(),
            format!("{}@{}", self.user, self.host),
        ]);
        Command::new("ssh")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| RemoteError::io("starting ssh tunnel", e))
    }

    /// The command line a user can copy to reach the VM.
    pub fn display_command(&self) -> String {
        let port = if self.port == 22 {
            String::new()
        } else {
            format!(" -p {}", self.port)
        };
        format!(
            "ssh -i {} -o UserKnownHostsFile={}{port} {}@{}",
            self.key_path.display(),
            self.known_hosts.display(),
            self.user,
            self.host
        )
    }
}

/// The known_hosts file azlin keeps for VM `name` under `state_dir`.
pub fn known_hosts_path(state_dir: &Path, name: &str) -> PathBuf {
    state_dir.join("known_hosts.d").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access() -> SshAccess {
        SshAccess {
            host: "10.0.0.2".into(),
            port: 22,
            user: "azureuser".into(),
            host_key: "ssh-ed25519 AAAA".into(),
            key_path: "/k".into(),
            known_hosts: "/kh".into(),
        }
    }

    #[test]
    fn commands_are_quoted_and_checked_strictly() {
        let args = access().args(
            &Session::Command(vec!["echo".into(), "a b; id".into()]),
            false,
            false,
        );
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert_eq!(args.last().unwrap(), "'echo' 'a b; id'");
        let args = access().args(&Session::Tmux, true, true);
        assert!(args.contains(&"-Y".to_string()) && args.contains(&"-t".to_string()));
        assert_eq!(args.last().unwrap(), "tmux new-session -A -s azlin");
    }
}
