//! [`NatsServer`]: the real `nats-server` (≥ 2.10, see `scripts/install-nats.sh`) on a free
//! loopback port with JetStream storing in a temporary folder. It can be stopped, killed and
//! started again on the same port and storage (to test that nothing is lost across a server
//! restart); `Drop` kills it and removes its storage.
//!
//! [`ServerOptions`] add configuration (TLS, users and permissions, accounts) with files beside
//! it and variables in its environment; [`NatsCluster`] runs several servers as one JetStream
//! cluster on loopback.

/// The milestones of one launch in the order they happen: the stages of `vm.create.status` and
/// the subjects of the milestone events between them. Tests check event order and loss with it.
pub const LAUNCH_MILESTONES: [&str; 10] = [
    "accepted",
    "provisioning",
    "provisioned",
    "waiting_for_ssh",
    "vm.ssh.verified",
    "ssh_ready",
    "waiting_for_cloud_init",
    "vm.cloudinit.complete",
    "cloud_init_done",
    "vm.create.complete",
];

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a start may take before it is a failure.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the server stores JetStream data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sync {
    /// nats-server's default: file storage, flushed to disk every few minutes (kill -9 may lose
    /// what the OS had not written; a graceful stop loses nothing).
    #[default]
    Default,
    /// `sync_interval: always`: every write is flushed, so even `kill -9` loses nothing
    /// acknowledged.
    Always,
}

/// What a server runs with beyond its port and JetStream storage.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// How JetStream storage is flushed.
    pub sync: Sync,
    /// Configuration appended to the generated one (`tls {}`, `authorization {}`,
    /// `include "file"`, `accounts {}`).
    pub extra: String,
    /// Files (name, contents) written beside the config before each start, for `include`.
    pub files: Vec<(String, String)>,
    /// Environment of the server process: the config's `$VARIABLES`.
    pub env: Vec<(String, String)>,
    /// The address it listens on: loopback unless a test's own link is named (the host end
    /// of a [`crate::netns::Lan`], for clients in other network namespaces).
    pub address: Option<Ipv4Addr>,
}

impl ServerOptions {
    /// A server with azlin's documented users and subject permissions
    /// (`docs/nats/azlin-users.conf`), after `extra` (a `tls {}` block, say). Each role's password
    /// is its name's last part and `-pw`: `azlin-worker` has `worker-pw`, `azlin-cli` `cli-pw`,
    /// `azlin-serve` `serve-pw`.
    pub fn with_azlin_users(extra: &str) -> ServerOptions {
        ServerOptions {
            extra: format!("{extra}include \"azlin-users.conf\"\n"),
            files: vec![(
                "azlin-users.conf".into(),
                include_str!("../../../docs/nats/azlin-users.conf").into(),
            )],
            env: ["WORKER", "CLI", "SERVE"]
                .iter()
                .map(|role| {
                    (
                        format!("AZLIN_{role}_PASSWORD"),
                        format!("{}-pw", role.to_ascii_lowercase()),
                    )
                })
                .collect(),
            ..ServerOptions::default()
        }
    }
}

/// A running `nats-server` with JetStream, owned by a test.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    options: ServerOptions,
    /// `cluster {}` of a cluster node.
    cluster: String,
    child: Option<Child>,
    starts: u32,
}

/// The `nats-server` to use: `$AZLIN_NATS_SERVER`, else `nats-server` on the `PATH`, else
/// `/usr/local/bin/nats-server`.
pub fn server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("AZLIN_NATS_SERVER") {
        return Some(PathBuf::from(path));
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let fallback = PathBuf::from("/usr/local/bin/nats-server");
        fallback.is_file().then_some(fallback)
    })
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl NatsServer {
    /// Starts a server with the default storage sync.
    pub fn start() -> std::io::Result<NatsServer> {
        Self::start_with(Sync::Default)
    }

    /// Starts a server with the given storage sync.
    pub fn start_with(sync: Sync) -> std::io::Result<NatsServer> {
        Self::start_options(ServerOptions {
            sync,
            ..ServerOptions::default()
        })
    }

    /// Starts a server with `options` (TLS, users, accounts).
    pub fn start_options(options: ServerOptions) -> std::io::Result<NatsServer> {
        let mut server = Self::prepare(options, free_port()?)?;
        server.start_again()?;
        Ok(server)
    }

    /// A server not started yet.
    fn prepare(options: ServerOptions, port: u16) -> std::io::Result<NatsServer> {
        let binary = server_binary().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "nats-server not found: run scripts/install-nats.sh (or set AZLIN_NATS_SERVER)",
            )
        })?;
        let server = NatsServer {
            binary,
            dir: tempfile::Builder::new().prefix("azlin-nats-").tempdir()?,
            port,
            options,
            cluster: String::new(),
            child: None,
            starts: 0,
        };
        Ok(server)
    }

    /// The folder holding its config, log, storage and [`ServerOptions::files`].
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `nats://ADDRESS:PORT` (`127.0.0.1` unless [`ServerOptions::address`] says otherwise).
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.address(), self.port)
    }

    fn address(&self) -> Ipv4Addr {
        self.options.address.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where JetStream keeps its data.
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// The server's log (all starts appended).
    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    /// Whether the process is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    fn write_config(&self) -> std::io::Result<PathBuf> {
        let sync = match self.options.sync {
            Sync::Default => "",
            Sync::Always => "\n    sync_interval: always",
        };
        for (name, contents) in &self.options.files {
            std::fs::write(self.dir.path().join(name), contents)?;
        }
        let config = format!(
            "# Written by azlin-testkit.\nlisten: {address}:{port}\nserver_name: azlin-test-{port}\n\
             jetstream {{\n    store_dir: {store:?}{sync}\n}}\n{cluster}\n{extra}\n",
            address = self.address(),
            port = self.port,
            store = self.store_dir().display().to_string(),
            cluster = self.cluster,
            extra = self.options.extra,
        );
        let path = self.dir.path().join("nats-server.conf");
        std::fs::write(&path, config)?;
        Ok(path)
    }

    /// Starts the server (again) on the same port and storage, and waits until it is ready.
    pub fn start_again(&mut self) -> std::io::Result<()> {
        if self.is_running() {
            return Ok(());
        }
        let config = self.write_config()?;
        let log = self.log_file();
        let ready_before = ready_lines(&log);
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .arg("-l")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .spawn()?;
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if !self.is_running() {
                return Err(std::io::Error::other(format!(
                    "nats-server exited at start; see {}",
                    log.display()
                )));
            }
            if ready_lines(&log) > ready_before
                && TcpStream::connect((self.address(), self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("nats-server not ready in time; see {}", log.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server gracefully (SIGTERM: it flushes its storage) and waits for it to exit.
    pub fn stop(&mut self) -> std::io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait().map(drop)
    }

    /// Kills the server (SIGKILL), as a crash would.
    pub fn kill(&mut self) -> std::io::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = child.kill();
        child.wait().map(drop)
    }

    /// Stops the server gracefully and starts it again on the same port and storage.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.stop()?;
        self.start_again()
    }

    /// How many times the process was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }
}

/// Several servers as one JetStream cluster on loopback (routes on free ports, each node with
/// its own storage). Nodes can be killed and started again like a single [`NatsServer`].
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes, in the order started.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes with `options` each, and waits until they have a metadata leader.
    pub fn start(size: usize, options: ServerOptions) -> std::io::Result<NatsCluster> {
        let name = format!("azlin-test-{}", uuid::Uuid::new_v4().simple());
        let route_ports = (0..size)
            .map(|_| free_port())
            .collect::<std::io::Result<Vec<_>>>()?;
        let routes: Vec<String> = route_ports
            .iter()
            .map(|port| format!("\"nats-route://127.0.0.1:{port}\""))
            .collect();
        let mut nodes = Vec::new();
        for route_port in &route_ports {
            let mut node = NatsServer::prepare(options.clone(), free_port()?)?;
            node.cluster = format!(
                "cluster {{\n    name: {name}\n    listen: 127.0.0.1:{route_port}\n    \
                 routes: [{}]\n}}",
                routes.join(", ")
            );
            nodes.push(node);
        }
        // Each node comes up on its own; JetStream waits for its peers.
        for node in &mut nodes {
            node.start_again()?;
        }
        let cluster = NatsCluster { nodes };
        cluster.wait_for_leader(START_TIMEOUT)?;
        Ok(cluster)
    }

    /// The client URLs of every node, comma-separated.
    pub fn url(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until a node's log says that the JetStream cluster elected a metadata leader
    /// (after the last start of that node).
    pub fn wait_for_leader(&self, limit: Duration) -> std::io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.nodes.iter().any(|node| {
                std::fs::read_to_string(node.log_file()).is_ok_and(|log| {
                    log.rsplit("Server is ready")
                        .next()
                        .is_some_and(|since| since.contains("metadata leader"))
                })
            }) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the JetStream cluster elected no metadata leader in time",
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// How many times the log says "Server is ready".
fn ready_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .map(|text| text.matches("Server is ready").count())
        .unwrap_or(0)
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // The temporary folder (config, log, JetStream storage) goes with `self.dir`.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_restarts_and_cleans_up() {
        let mut server = NatsServer::start().expect("start");
        let port = server.port();
        assert!(server.url().ends_with(&format!(":{port}")));
        server.restart().expect("restart");
        assert_eq!(server.port(), port);
        assert_eq!(server.starts(), 2);
        server.kill().expect("kill");
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
        server.start_again().expect("start after kill");
        let store = server.store_dir();
        assert!(store.exists());
        drop(server);
        assert!(!store.exists());
        assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    }
}
