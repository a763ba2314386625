//! [`SshShell`]: one persistent SSH connection (russh) to a VM, checked strictly against the
//! host key azlin injected; every command runs on its own channel.

use crate::keys::{Identity, parse_public_key};
use crate::shell::{OutputSink, OutputStream, RemoteError, Shell};
use async_trait::async_trait;
use russh::keys::{PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect, client};
use std::sync::Arc;
use std::time::Duration;

/// Where to connect and what to expect there.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Login user.
    pub user: String,
    /// The host key the server must present (OpenSSH public key line).
    pub host_key: String,
}

impl SshTarget {
    fn describe(&self) -> String {
        format!("{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Accepts exactly one server key.
struct StrictHostKey {
    expected: PublicKey,
    mismatch: bool,
}

impl client::Handler for StrictHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let matches = match server_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.key_data() == self.expected.key_data()
            }
            // azlin injects plain host keys; a certificate is not what it injected.
            russh::keys::PublicKeyOrCertificate::Certificate(_) => false,
        };
        self.mismatch = !matches;
        Ok(matches)
    }
}

/// An authenticated SSH connection.
pub struct SshShell {
    handle: client::Handle<StrictHostKey>,
    target: SshTarget,
}

impl std::fmt::Debug for SshShell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SshShell")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

fn client_config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // Steps can be silent for a long time; keepalives notice a dead peer instead.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        nodelay: true,
        ..client::Config::default()
    })
}

impl SshShell {
    /// Connects to `target`, checks its host key, and authenticates with `identity`.
    pub async fn connect(target: &SshTarget, identity: &Identity) -> Result<SshShell, RemoteError> {
        let expected = parse_public_key(&target.host_key)?;
        let connect_error = |reason: String| RemoteError::Connect {
            target: target.describe(),
            reason,
        };
        let handler = StrictHostKey {
            expected,
            mismatch: false,
        };
        let mut handle = match client::connect(
            client_config(),
            (target.host.as_str(), target.port),
            handler,
        )
        .await
        {
            Ok(handle) => handle,
            Err(russh::Error::UnknownKey) => {
                return Err(RemoteError::HostKeyMismatch {
                    target: format!("{}:{}", target.host, target.port),
                    expected: target
                        .host_key
                        .split_whitespace()
                        .take(2)
                        .collect::<Vec<_>>()
                        .join(" "),
                });
            }
            Err(e) => return Err(connect_error(e.to_string())),
        };
        let hash = handle
            .best_supported_rsa_hash()
            .await
            .map_err(|e| connect_error(e.to_string()))?
            .flatten();
        let auth = handle
            .authenticate_publickey(
                &target.user,
                PrivateKeyWithHashAlg::new(identity.key.clone(), hash),
            )
            .await
            .map_err(|e| connect_error(e.to_string()))?;
        if !auth.success() {
            return Err(RemoteError::AuthRejected {
                target: format!("{}:{}", target.host, target.port),
                user: target.user.clone(),
            });
        }
        Ok(SshShell {
            handle,
            target: target.clone(),
        })
    }

    /// Closes the connection politely.
    pub async fn close(&self) {
        let _ = self
            .handle
            .disconnect(Disconnect::ByApplication, "", "en")
            .await;
    }

    fn lost(&self, e: russh::Error) -> RemoteError {
        RemoteError::Connect {
            target: self.target.describe(),
            reason: e.to_string(),
        }
    }
}

#[async_trait]
impl Shell for SshShell {
    async fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        sink: &mut OutputSink<'_>,
    ) -> Result<i32, RemoteError> {
        let channel = self
            .handle
            .channel_open_session()
            .await
            .map_err(|e| self.lost(e))?;
        channel
            .exec(true, command)
            .await
            .map_err(|e| self.lost(e))?;
        let (mut reader, writer) = channel.split();
        // Feed stdin while reading output, so that a command producing output before it has
        // read all of its input cannot deadlock on flow-control windows.
        let feed = async {
            if !stdin.is_empty() {
                writer.data(stdin).await?;
            }
            writer.eof().await
        };
        let drain = async {
            let (mut code, mut signal) = (None, None);
            while let Some(msg) = reader.wait().await {
                match msg {
                    ChannelMsg::Data { data } => sink(OutputStream::Stdout, &data),
                    ChannelMsg::ExtendedData { data, ext: 1 } => sink(OutputStream::Stderr, &data),
                    ChannelMsg::ExitStatus { exit_status } => code = Some(exit_status),
                    ChannelMsg::ExitSignal { signal_name, .. } => {
                        signal = Some(format!("{signal_name:?}"))
                    }
                    _ => {}
                }
            }
            (code, signal)
        };
        let (fed, (code, signal)) = tokio::join!(feed, drain);
        match (code, fed) {
            // The exit status arrived: a command that stopped reading its input early is fine.
            (Some(code), _) => Ok(i32::try_from(code).unwrap_or(i32::MAX)),
            (None, Err(e)) => Err(self.lost(e)),
            (None, Ok(())) => Err(RemoteError::NoExitStatus { signal }),
        }
    }

    fn target(&self) -> String {
        self.target.describe()
    }
}
