//! Copies between this machine and VMs, or between two VMs, with the system `scp` (which speaks
//! SFTP): azlin's key only, and each VM's recorded host key checked strictly.

use crate::attach::SshAccess;
use crate::shell::RemoteError;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The system `scp`.
pub const SCP_TOOL: azlin_core::Tool = azlin_core::Tool {
    program: "scp",
    version_args: &["-V"],
    purpose: "copying files to and from VMs (cp)",
    install_hint: "apt-get install openssh-client",
};

/// One side of `azlin cp` as typed: a local path, or `NAME:PATH` on a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    /// A path on this machine.
    Local(PathBuf),
    /// A path on the VM `name` (relative paths are relative to the login user's home).
    Vm {
        /// The VM's name.
        name: String,
        /// The path on the VM.
        path: String,
    },
}

impl Operand {
    /// `NAME:PATH` names a VM when `NAME` has no `/` (as scp decides); anything else is a
    /// local path (`./a:b` is one).
    pub fn parse(text: &str) -> Operand {
        match text.split_once(':') {
            Some((name, path)) if !name.is_empty() && !name.contains('/') => Operand::Vm {
                name: name.to_string(),
                path: path.to_string(),
            },
            _ => Operand::Local(PathBuf::from(text)),
        }
    }
}

/// One side of a copy, resolved: a local path or a path on a reachable VM.
#[derive(Debug, Clone)]
pub enum CopyEnd {
    /// A path on this machine.
    Local(PathBuf),
    /// A path on a VM.
    Remote {
        /// How to reach the VM.
        access: SshAccess,
        /// The path on the VM (relative to the login user's home unless absolute).
        path: String,
    },
}

impl CopyEnd {
    /// What scp is given: the local path, or `scp://USER@HOST:PORT/PATH` (a URI carries each
    /// VM's own port, so that a copy between two VMs works).
    fn argument(&self) -> String {
        match self {
            CopyEnd::Local(path) => path.display().to_string(),
            CopyEnd::Remote { access, path } => {
                // In an scp URI the path after the first `/` is relative to the home folder;
                // an absolute path keeps its own leading `/`.
                let path = if path.is_empty() { "." } else { path };
                format!(
                    "scp://{}@{}:{}/{}",
                    access.user,
                    host_in_uri(&access.host),
                    access.port,
                    path
                )
            }
        }
    }

    fn access(&self) -> Option<&SshAccess> {
        match self {
            CopyEnd::Local(_) => None,
            CopyEnd::Remote { access, .. } => Some(access),
        }
    }
}

fn host_in_uri(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// The `scp` arguments for copying `from` to `to`.
pub fn scp_args(from: &CopyEnd, to: &CopyEnd, recursive: bool, quiet: bool) -> Vec<String> {
    let ends = [from, to];
    let accesses: Vec<&SshAccess> = ends.iter().filter_map(|e| e.access()).collect();
    let known_hosts: Vec<String> = accesses
        .iter()
        .map(|a| a.known_hosts.display().to_string())
        .collect();
    let mut args = vec![
        "-o".to_string(),
        "IdentitiesOnly=yes".to_string(),
        "-o".to_string(),
        format!("UserKnownHostsFile={}", known_hosts.join(" ")),
        "-o".to_string(),
        "StrictHostKeyChecking=yes".to_string(),
        "-o".to_string(),
        "BatchMode=yes".to_string(),
        "-o".to_string(),
        "ConnectTimeout=10".to_string(),
    ];
    if let Some(access) = accesses.first() {
        args.extend(["-i".to_string(), access.key_path.display().to_string()]);
    }
    if accesses.len() == 2 {
        // Between two VMs the bytes pass through this machine: neither VM holds a key to the
        // other.
        args.push("-3".to_string());
    }
    if recursive {
        args.push("-r".to_string());
    }
    if quiet {
        args.push("-q".to_string());
    }
    args.push("-p".to_string());
    args.extend([from.argument(), to.argument()]);
    args
}

/// Copies `from` to `to`; with `progress`, scp's progress meter shows on the terminal.
pub fn copy(
    from: &CopyEnd,
    to: &CopyEnd,
    recursive: bool,
    progress: bool,
) -> Result<(), RemoteError> {
    for access in [from, to].into_iter().filter_map(CopyEnd::access) {
        access.write_known_hosts()?;
    }
    let output = Command::new(SCP_TOOL.program)
        .args(scp_args(from, to, recursive, !progress))
        .stdin(Stdio::null())
        .stdout(if progress {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| RemoteError::io("running scp", e))?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Err(RemoteError::Copy(if said.is_empty() {
        format!("scp exited with {}", output.status)
    } else {
        said
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(host: &str, port: u16) -> SshAccess {
        SshAccess {
            host: host.into(),
            port,
            user: "azureuser".into(),
            host_key: "ssh-ed25519 AAAA".into(),
            key_path: "/k/azlin_key".into(),
            known_hosts: format!("/kh/{host}").into(),
        }
    }

    #[test]
    fn operands_name_a_vm_only_before_a_slash() {
        assert_eq!(
            Operand::parse("dev:/tmp/x"),
            Operand::Vm {
                name: "dev".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            Operand::parse("dev:"),
            Operand::Vm {
                name: "dev".into(),
                path: String::new()
            }
        );
        assert_eq!(Operand::parse("./a:b"), Operand::Local("./a:b".into()));
        assert_eq!(Operand::parse("/tmp/x"), Operand::Local("/tmp/x".into()));
        assert_eq!(Operand::parse(":x"), Operand::Local(":x".into()));
    }

    #[test]
    fn a_copy_between_two_vms_goes_through_here_with_both_host_keys() {
        let from = CopyEnd::Remote {
            access: access("10.213.0.2", 22),
            path: "data".into(),
        };
        let to = CopyEnd::Remote {
            access: access("127.0.0.1", 2222),
            path: "/tmp/data".into(),
        };
        let args = scp_args(&from, &to, true, true);
        assert!(args.contains(&"UserKnownHostsFile=/kh/10.213.0.2 /kh/127.0.0.1".to_string()));
        assert!(args.contains(&"StrictHostKeyChecking=yes".to_string()));
        assert!(args.contains(&"-3".to_string()) && args.contains(&"-r".to_string()));
        assert_eq!(
            args[args.len() - 2..],
            [
                "scp://azureuser@10.213.0.2:22/data",
                "scp://azureuser@127.0.0.1:2222//tmp/data"
            ]
        );
    }

    #[test]
    fn a_local_copy_side_stays_a_path() {
        let args = scp_args(
            &CopyEnd::Local("big.bin".into()),
            &CopyEnd::Remote {
                access: access("10.213.0.2", 22),
                path: String::new(),
            },
            false,
            false,
        );
        assert!(!args.contains(&"-3".to_string()));
        assert_eq!(
            args[args.len() - 2..],
            ["big.bin", "scp://azureuser@10.213.0.2:22/."]
        );
    }
}
