//! A real HTTPS git server for tests: a bare repository served over "dumb" HTTP with TLS from a
//! test CA, the way a user's internal git server would be reached with `--ca-cert`.
//!
//! It listens on `host.azlin.internal` (10.213.255.254), the address every local VM reaches the
//! host at through its own veth. The address only exists once a VM's veth carries it, so the
//! socket is bound with `IP_FREEBIND`.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// The host name VMs resolve to the host (see the nspawn network module).
pub const HOST_NAME: &str = "host.azlin.internal";
/// Its address.
pub const HOST_ADDR: &str = "10.213.255.254";

/// A running server; stops when dropped.
pub struct GitServer {
    /// `https://host.azlin.internal:PORT/demo.git`
    pub url: String,
    /// The test CA certificate (PEM file) that signed the server certificate.
    pub ca_path: PathBuf,
    /// The commit the served repository's HEAD points to.
    pub commit: String,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl GitServer {
    /// Makes a repository with one commit and serves it on [`HOST_ADDR`].
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
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                work.to_str().unwrap(),
                root.join("demo.git").to_str().unwrap(),
            ],
        );
        git(&root.join("demo.git"), &["update-server-info"]);

        let (ca_pem, tls) = tls_config();
        let ca_path = dir.path().join("test-ca.pem");
        std::fs::File::create(&ca_path)
            .unwrap()
            .write_all(ca_pem.as_bytes())
            .unwrap();

        let port = free_port();
        let addr = SocketAddr::new(HOST_ADDR.parse::<IpAddr>().unwrap(), port);
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_reuse_address(true).unwrap();
        socket.set_freebind_v4(true).unwrap();
        socket.set_nonblocking(true).unwrap();
        socket.bind(&addr.into()).unwrap();
        socket.listen(64).unwrap();
        let std_listener: std::net::TcpListener = socket.into();

        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(std_listener, tls, root, stopped));
        });
        GitServer {
            url: format!("https://{HOST_NAME}:{port}/demo.git"),
            ca_path,
            commit,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A test CA and a server certificate for [`HOST_NAME`] signed by it.
fn tls_config() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "azlin test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf_params = CertificateParams::new(vec![HOST_NAME.to_string()]).unwrap();
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(HOST_ADDR.parse().unwrap()));
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, HOST_NAME);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    root: PathBuf,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            _ = &mut stopped => return,
        };
        let acceptor = acceptor.clone();
        let root = root.clone();
        tokio::spawn(async move {
            if let Ok(stream) = acceptor.accept(stream).await {
                let _ = respond(stream, &root).await;
            }
        });
    }
}

/// Answers one `GET` with the file it names (query strings ignored), or 404.
async fn respond<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    root: &Path,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = path
        .split('?')
        .next()
        .unwrap_or("/")
        .trim_start_matches('/');
    let file = root.join(path);
    let body = if path.split('/').any(|part| part == "..") {
        None
    } else {
        std::fs::read(&file).ok()
    };
    let mut stream = reader.into_inner();
    match body {
        Some(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).await?;
            stream.write_all(&body).await?;
        }
        None => {
            stream
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await?;
        }
    }
    stream.shutdown().await
}
