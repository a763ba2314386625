//! Port forwards that outlive the command that opened them: a background `ssh -N -L`, recorded
//! as one JSON file per tunnel so that `tunnel list` and `tunnel close` find it again.

use crate::attach::SshAccess;
use crate::shell::RemoteError;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `LOCAL_PORT:REMOTE_HOST:REMOTE_PORT`, as `ssh -L` takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    /// The port on this machine.
    pub local_port: u16,
    /// Where the VM connects (`localhost` is the VM itself).
    pub remote_host: String,
    /// The port there.
    pub remote_port: u16,
}

impl std::str::FromStr for Forward {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("'{s}': expected LOCAL_PORT:REMOTE_HOST:REMOTE_PORT, such as 8080:localhost:80")
        };
        let mut parts = s.splitn(3, ':');
        let (Some(local), Some(host), Some(remote)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0);
        match (port(local), port(remote)) {
            (Some(local_port), Some(remote_port))
                if !host.is_empty() && !host.contains(char::is_whitespace) =>
            {
                Ok(Forward {
                    local_port,
                    remote_host: host.to_string(),
                    remote_port,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// A tunnel running in the background.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelRecord {
    /// Its id (`tunnel close ID`).
    pub id: String,
    /// The VM.
    pub vm: String,
    /// The local address it listens on.
    pub bind: IpAddr,
    /// What it forwards.
    pub forward: Forward,
    /// The `ssh` process.
    pub pid: u32,
    /// When it was opened (RFC 3339).
    pub opened_at: String,
}

impl TunnelRecord {
    /// Whether its `ssh` still runs.
    pub fn is_alive(&self) -> bool {
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|cmdline| {
                let text = String::from_utf8_lossy(&cmdline);
                text.starts_with("ssh\0") && text.contains(&format!("{}:", self.forward.local_port))
            })
            .unwrap_or(false)
    }
}

/// Opens a tunnel through `access` in the background: `bind:local_port` on this machine to
/// `remote_host:remote_port` as the VM sees it; ssh's messages go to `log`. Returns once the
/// local port accepts connections; fails if ssh exits first (port taken, VM unreachable).
fn open(
    access: &SshAccess,
    vm: &str,
    bind: IpAddr,
    forward: &Forward,
    log: &Path,
) -> Result<TunnelRecord, RemoteError> {
    // A port already taken would look open at once (someone else answers on it).
    if let Err(e) = std::net::TcpListener::bind(SocketAddr::new(bind, forward.local_port)) {
        return Err(RemoteError::PortTaken(format!(
            "{}:{}: {e}",
            bind_text(bind),
            forward.local_port
        )));
    }
    access.write_known_hosts()?;
    let spec = format!(
        "{}:{}:{}:{}",
        bind_text(bind),
        forward.local_port,
        forward.remote_host,
        forward.remote_port
    );
    let mut child = access.background_forward(&spec, log)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let target = SocketAddr::new(connectable(bind), forward.local_port);
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| RemoteError::io("waiting for ssh", e))?
        {
            let said = std::fs::read_to_string(log).unwrap_or_default();
            return Err(RemoteError::Connect {
                target: format!("{vm} ({spec})"),
                reason: format!("ssh exited ({status}): {}", said.trim()),
            });
        }
        if TcpStream::connect_timeout(&target, Duration::from_millis(200)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            return Err(RemoteError::Timeout(format!(
                "the tunnel to {vm} did not open within 20 s"
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(TunnelRecord {
        id: format!("{vm}-{}", forward.local_port),
        vm: vm.to_string(),
        bind,
        forward: forward.clone(),
        pid: child.id(),
        opened_at: azlin_core::now_rfc3339(),
    })
}

fn bind_text(bind: IpAddr) -> String {
    match bind {
        IpAddr::V6(v6) => format!("[{v6}]"),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// An address to check the listener on: the bind address, or loopback for "any".
fn connectable(bind: IpAddr) -> IpAddr {
    match bind {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        other => other,
    }
}

/// The records of open tunnels, one file each in a folder.
#[derive(Debug, Clone)]
pub struct TunnelStore {
    dir: PathBuf,
}

impl TunnelStore {
    /// The store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> TunnelStore {
        TunnelStore { dir: dir.into() }
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Opens a tunnel (see [`open`]) and records it.
    pub fn open(
        &self,
        access: &SshAccess,
        vm: &str,
        bind: IpAddr,
        forward: &Forward,
    ) -> Result<TunnelRecord, RemoteError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| RemoteError::io(format!("creating {}", self.dir.display()), e))?;
        let log = self.dir.join(format!("{vm}-{}.log", forward.local_port));
        let record = open(access, vm, bind, forward, &log)?;
        self.save(&record)?;
        Ok(record)
    }

    /// Records `tunnel`.
    fn save(&self, tunnel: &TunnelRecord) -> Result<(), RemoteError> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| RemoteError::io(format!("creating {}", self.dir.display()), e))?;
        let text = serde_json::to_string_pretty(tunnel).unwrap_or_default();
        std::fs::write(self.path(&tunnel.id), text)
            .map_err(|e| RemoteError::io("recording the tunnel", e))
    }

    /// The tunnels still running; records of those that ended are removed.
    pub fn list(&self) -> Vec<TunnelRecord> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut live = Vec::new();
        let records = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"));
        for path in records {
            let record = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<TunnelRecord>(&t).ok());
            match record {
                Some(record) if record.is_alive() => live.push(record),
                _ => {
                    remove(&path);
                    remove(&path.with_extension("log"));
                }
            }
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        live
    }

    /// Stops tunnel `id` and forgets it; `None` when there is no such running tunnel.
    pub fn close(&self, id: &str) -> Option<TunnelRecord> {
        let record = self.list().into_iter().find(|t| t.id == id)?;
        if let Ok(pid) = i32::try_from(record.pid) {
            // SIGTERM to the ssh process: it closes the forward and exits.
            if let Err(e) = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            ) {
                tracing::warn!(pid, "stopping the tunnel's ssh: {e}");
            }
        }
        remove(&self.path(id));
        remove(&self.path(id).with_extension("log"));
        Some(record)
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "removing a tunnel record: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_are_parsed_as_ssh_takes_them() {
        assert_eq!(
            "8080:localhost:80".parse::<Forward>().unwrap(),
            Forward {
                local_port: 8080,
                remote_host: "localhost".into(),
                remote_port: 80
            }
        );
        for bad in [
            "8080",
            "8080:localhost",
            "0:h:80",
            "x:h:80",
            "80::80",
            "80:h:99999",
        ] {
            assert!(bad.parse::<Forward>().is_err(), "{bad}");
        }
    }

    #[test]
    fn records_of_ended_tunnels_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = TunnelStore::new(dir.path());
        let ended = TunnelRecord {
            id: "dev-8080".into(),
            vm: "dev".into(),
            bind: "127.0.0.1".parse().unwrap(),
            forward: "8080:localhost:80".parse().unwrap(),
            pid: u32::MAX - 1,
            opened_at: String::new(),
        };
        store.save(&ended).unwrap();
        assert!(store.list().is_empty());
        assert!(!dir.path().join("dev-8080.json").exists());
        assert!(store.close("dev-8080").is_none());
    }
}
