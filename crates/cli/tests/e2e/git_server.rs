//! The repository `azlin new --repo` clones in the end-to-end tests: one commit in a bare
//! repository, served by the testkit's HTTPS [`azlin_testkit::GitServer`] with its test CA,
//! the way a user's internal git server would be reached with `--ca-cert`.
//!
//! It listens on `host.azlin.internal` (10.213.255.254), the address every local VM reaches the
//! host at through its own veth (the server binds with `IP_FREEBIND`, as the address only
//! exists once a VM's veth carries it). VMs reach it only because the test's config offers its
//! port (`[network] host_ports`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The host name VMs resolve to the host (see the nspawn network module).
pub const HOST_NAME: &str = "host.azlin.internal";
/// Its address.
pub const HOST_ADDR: &str = "10.213.255.254";

/// The token (basic-auth password) the server's private repository needs.
pub const PRIVATE_TOKEN: &str = "ghp_azlinTestToken0123456789";

/// A running server with a public repository and a private one; stops when dropped.
pub struct GitServer {
    /// `https://host.azlin.internal:PORT/demo.git`
    pub url: String,
    /// `https://host.azlin.internal:PORT/private/demo.git`: the same repository, cloned only
    /// with [`PRIVATE_TOKEN`].
    pub private_url: String,
    /// The test CA certificate (PEM file) that signed the server certificate.
    pub ca_path: PathBuf,
    /// The commit the served repository's HEAD points to.
    pub commit: String,
    /// The port it listens on, which VMs reach only once the config offers it
    /// (`[network] host_ports`, see [`GitServer::config`]).
    pub port: u16,
    _server: azlin_testkit::GitServer,
    _dir: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args([
            "-c",
            "user.name=azlin test",
            "-c",
            "user.email=test@azlin.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl GitServer {
    /// Makes a repository with one commit and serves it on [`HOST_ADDR`], publicly and privately.
    pub fn start() -> GitServer {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir(&work).unwrap();
        git(&work, &["init", "-q"]);
        let marker = format!("demo repository {}\n", std::process::id());
        std::fs::write(work.join("README.md"), marker).unwrap();
        git(&work, &["add", "README.md"]);
        git(&work, &["commit", "-q", "-m", "demo commit"]);
        let commit = git(&work, &["rev-parse", "HEAD"]);
        let root = dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(root.join("private")).unwrap();
        for bare in [root.join("demo.git"), root.join("private/demo.git")] {
            git(
                dir.path(),
                &[
                    "clone",
                    "-q",
                    "--bare",
                    work.to_str().unwrap(),
                    bare.to_str().unwrap(),
                ],
            );
            git(&bare, &["update-server-info"]);
        }
        let server = azlin_testkit::GitServer::serve_private(
            &root,
            HOST_ADDR.parse().unwrap(),
            HOST_NAME,
            Some(PRIVATE_TOKEN),
        );
        GitServer {
            url: format!("{}/demo.git", server.url),
            private_url: format!("{}/private/demo.git", server.url),
            ca_path: server.ca_path.clone(),
            commit,
            port: server.port,
            _server: server,
            _dir: dir,
        }
    }

    /// The config that offers this server to VMs.
    pub fn config(&self) -> String {
        format!("[network]\nhost_ports = [{}]\n", self.port)
    }
}
