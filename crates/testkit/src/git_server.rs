//! [`GitServer`]: a real HTTPS git server for tests. It serves every bare repository under a
//! root folder over "dumb" HTTP (run `git update-server-info` in each) with TLS from a test
//! CA, the way a user's internal git server is reached with its own CA certificate.
//!
//! `/OWNER/REPO/…` is also served from `OWNER/REPO.git`, as git hosts do. Paths under
//! `/private/` need HTTP basic auth whose password is the server's token (any user name), as a
//! git host asks for a private repository: 401 with a `WWW-Authenticate` challenge otherwise.
//! The socket is bound
//! with `IP_FREEBIND`, so the address may be one that exists only later (the host address of a
//! VM's veth); loopback works too.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A running server; stops when dropped.
pub struct GitServer {
    /// `https://NAME:PORT`, without a trailing `/`: a repository is `<url>/OWNER/REPO.git`.
    pub url: String,
    /// The test CA certificate (PEM file) that signed the server certificate.
    pub ca_path: PathBuf,
    /// The port listened on.
    pub port: u16,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A TCP port free on the loopback address of `addr`'s family.
pub fn free_port(addr: IpAddr) -> u16 {
    let any = match addr {
        IpAddr::V4(_) => "127.0.0.1:0",
        IpAddr::V6(_) => "[::1]:0",
    };
    std::net::TcpListener::bind(any)
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl GitServer {
    /// Serves the files under `root` on `addr`, with a certificate for `name` and `addr`.
    /// `root` must outlive the server. Nothing is private.
    pub fn serve(root: &Path, addr: IpAddr, name: &str) -> GitServer {
        Self::serve_private(root, addr, name, None)
    }

    /// The same, with `/private/…` open only to requests carrying `token` as their basic-auth
    /// password (closed to all without a token).
    pub fn serve_private(root: &Path, addr: IpAddr, name: &str, token: Option<&str>) -> GitServer {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let (ca_pem, tls) = tls_config(name, addr);
        let ca_path = dir.path().join("test-ca.pem");
        std::fs::File::create(&ca_path)
            .and_then(|mut f| f.write_all(ca_pem.as_bytes()))
            .expect("the CA file is written");

        let port = free_port(addr);
        let domain = match addr {
            IpAddr::V4(_) => socket2::Domain::IPV4,
            IpAddr::V6(_) => socket2::Domain::IPV6,
        };
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None).expect("a socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        match addr {
            IpAddr::V4(_) => socket.set_freebind_v4(true),
            IpAddr::V6(_) => socket.set_freebind_v6(true),
        }
        .expect("IP_FREEBIND");
        socket.set_nonblocking(true).expect("non-blocking");
        socket
            .bind(&SocketAddr::new(addr, port).into())
            .expect("the server binds");
        socket.listen(64).expect("the server listens");
        let std_listener: std::net::TcpListener = socket.into();

        let (stop, stopped) = tokio::sync::oneshot::channel();
        let site = Arc::new(Site {
            root: root.to_path_buf(),
            token: token.map(str::to_string),
        });
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(serve(std_listener, tls, site, stopped));
        });
        GitServer {
            url: format!("https://{name}:{port}"),
            ca_path,
            port,
            _dir: dir,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The server may have stopped already; nothing is left to stop then.
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // A panicked server thread has already reported itself to the test.
            let _ = thread.join();
        }
    }
}

/// A test CA and a server certificate for `name` and `addr` signed by it.
fn tls_config(name: &str, addr: IpAddr) -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "azlin test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().expect("a server key");
    let mut leaf_params =
        CertificateParams::new(vec![name.to_string()]).expect("server parameters");
    leaf_params.subject_alt_names.push(SanType::IpAddress(addr));
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, name);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .expect("the server certificate");

    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(vec![leaf.der().clone()], key)
    .expect("the server TLS configuration");
    (ca_cert.pem(), Arc::new(config))
}

/// What is served, and the token of its private part.
struct Site {
    root: PathBuf,
    token: Option<String>,
}

impl Site {
    /// Whether a request for `path` with these `Authorization` header value may read it.
    fn allows(&self, path: &str, authorization: Option<&str>) -> bool {
        if !path.starts_with("/private/") {
            return true;
        }
        let Some(token) = &self.token else {
            return false;
        };
        use base64::Engine;
        authorization
            .and_then(|value| value.trim().strip_prefix("Basic "))
            .and_then(|encoded| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            })
            .and_then(|decoded| String::from_utf8(decoded).ok())
            .is_some_and(|pair| pair.split_once(':').is_some_and(|(_, p)| p == token))
    }
}

async fn serve(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    site: Arc<Site>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
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
        let site = site.clone();
        tokio::spawn(async move {
            if let Ok(stream) = acceptor.accept(stream).await {
                // A client that hangs up mid-answer is not the server's failure.
                let _ = respond(stream, &site).await;
            }
        });
    }
}

/// The file `path` names under `root`, where a folder `X` may be stored as `X.git`; `None` for
/// a path with `..` or one that does not exist.
fn locate(root: &Path, path: &str) -> Option<PathBuf> {
    let mut file = root.to_path_buf();
    for part in path.split('/').filter(|p| !p.is_empty()) {
        if part == ".." {
            return None;
        }
        let plain = file.join(part);
        let bare = file.join(format!("{part}.git"));
        file = if !plain.exists() && bare.is_dir() {
            bare
        } else {
            plain
        };
    }
    file.is_file().then_some(file)
}

/// Answers one `GET` with the file it names (query strings ignored), 401 for a private one
/// without the token, or 404.
async fn respond<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: S,
    site: &Site,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).await?;
    let mut authorization = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).await? == 0 || header == "\r\n" || header == "\n" {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_string());
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or("/");
    let mut stream = reader.into_inner();
    if !site.allows(path, authorization.as_deref()) {
        stream
            .write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            )
            .await?;
        return stream.shutdown().await;
    }
    let body = locate(&site.root, path).and_then(|file| std::fs::read(file).ok());
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
