//! `Host azlin-NAME` entries for the user's OpenSSH configuration, so that `ssh azlin-NAME`,
//! `scp` and editors' remote-SSH extensions reach azlin's VMs with azlin's key and each VM's
//! recorded host key, checked strictly.
//!
//! The entries live in a file of their own, rewritten as a whole; the user's `config` gets one
//! `Include` line for it, at its top (an `Include` after a `Host` line would only apply to that
//! host), added once.

use crate::attach::SshAccess;
use crate::shell::RemoteError;
use std::path::Path;

/// The file the entries are written to, next to the user's `config`.
pub const INCLUDE_FILE: &str = "azlin_config";

/// The alias of VM `name` in the SSH configuration.
pub fn host_alias(name: &str) -> String {
    format!("azlin-{name}")
}

/// The entry of one VM.
pub fn entry(name: &str, access: &SshAccess) -> String {
    format!(
        "Host {alias}\n  HostName {host}\n  Port {port}\n  User {user}\n  IdentityFile {key}\n  \
         IdentitiesOnly yes\n  UserKnownHostsFile {known_hosts}\n  StrictHostKeyChecking yes\n",
        alias = host_alias(name),
        host = access.host,
        port = access.port,
        user = access.user,
        key = quoted(&access.key_path.display().to_string()),
        known_hosts = quoted(&access.known_hosts.display().to_string()),
    )
}

/// A path as ssh_config reads it: in double quotes when it has a space.
fn quoted(path: &str) -> String {
    if path.contains(char::is_whitespace) {
        format!("\"{path}\"")
    } else {
        path.to_string()
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The file of entries.
    pub include_file: std::path::PathBuf,
    /// Whether the `Include` line was added to `config` now (false: it was there).
    pub include_added: bool,
}

/// Writes the entries of `vms` (name and access) into `ssh_dir/azlin_config` (replacing what
/// was there), each VM's known_hosts file, and the `Include` line into `ssh_dir/config` once.
pub fn write(ssh_dir: &Path, vms: &[(String, SshAccess)]) -> Result<Written, RemoteError> {
    std::fs::create_dir_all(ssh_dir)
        .map_err(|e| RemoteError::io(format!("creating {}", ssh_dir.display()), e))?;
    let mut text = String::from(
        "# Written by `azlin ssh-config`: one entry per VM; rewritten on each run.\n\n",
    );
    for (name, access) in vms {
        access.write_known_hosts()?;
        text.push_str(&entry(name, access));
        text.push('\n');
    }
    let include_file = ssh_dir.join(INCLUDE_FILE);
    write_private(&include_file, &text)?;

    let config = ssh_dir.join("config");
    let existing = match std::fs::read_to_string(&config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(RemoteError::io(format!("reading {}", config.display()), e)),
    };
    let include_line = format!("Include {}", quoted(&include_file.display().to_string()));
    let include_added = !existing.lines().any(|l| l.trim() == include_line);
    if include_added {
        write_private(&config, &format!("{include_line}\n\n{existing}"))?;
    }
    Ok(Written {
        include_file,
        include_added,
    })
}

/// Writes `text` to `path` (mode 0600, as ssh wants its config), through a temporary file.
fn write_private(path: &Path, text: &str) -> Result<(), RemoteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("azlin-tmp");
    let io = |e| RemoteError::io(format!("writing {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    std::fs::rename(&temporary, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(dir: &Path) -> SshAccess {
        SshAccess {
            host: "10.213.0.2".into(),
            port: 22,
            user: "azureuser".into(),
            host_key:
                "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQ0gqGUb1K4fJmgmDUOYHdtrrRhoHdFFDZTXZtPvnLc"
                    .into(),
            key_path: dir.join("azlin_key"),
            known_hosts: dir.join("known_hosts.d/dev"),
        }
    }

    #[test]
    fn entries_pin_the_key_and_host_key_and_the_include_is_added_once_at_the_top() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = dir.path().join(".ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        std::fs::write(ssh.join("config"), "Host other\n  User me\n").unwrap();
        let vms = vec![("dev".to_string(), access(dir.path()))];
        let first = write(&ssh, &vms).unwrap();
        assert!(first.include_added);
        let second = write(&ssh, &vms).unwrap();
        assert!(!second.include_added);
        let config = std::fs::read_to_string(ssh.join("config")).unwrap();
        assert!(config.starts_with(&format!("Include {}\n", first.include_file.display())));
        assert_eq!(config.matches("Include").count(), 1);
        assert!(config.ends_with("Host other\n  User me\n"));
        let entries = std::fs::read_to_string(&first.include_file).unwrap();
        assert!(entries.contains("Host azlin-dev\n  HostName 10.213.0.2\n  Port 22\n"));
        assert!(entries.contains("StrictHostKeyChecking yes"));
        assert!(entries.contains("IdentitiesOnly yes"));
        assert!(dir.path().join("known_hosts.d/dev").exists());
        // A VM gone from the list is gone from the file.
        write(&ssh, &[]).unwrap();
        assert!(
            !std::fs::read_to_string(&first.include_file)
                .unwrap()
                .contains("azlin-dev")
        );
    }
}
