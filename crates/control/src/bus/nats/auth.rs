//! [`NatsConnection`] onto the client's [`ConnectOptions`]: TLS files, then exactly one way to
//! authenticate. Secrets are read from their files here, when connecting, and go nowhere else.

use super::BusError;
use async_nats::{ConnectError, ConnectErrorKind, ConnectOptions};
use azlin_core::nats::{NatsAuth, NatsConnection, NatsTls, SecretSource};
use std::path::Path;

/// The options for `connection` (name, timeouts and callbacks are the caller's).
pub(super) async fn options(connection: &NatsConnection) -> Result<ConnectOptions, BusError> {
    let NatsConnection {
        servers: _,
        shown: _,
        tls,
        auth,
        replicas: _,
    } = connection;
    let NatsTls {
        required,
        ca_file,
        client,
    } = tls;
    if *required {
        // The client asks rustls for the process's crypto provider, and more than one is
        // compiled in: name ours (the first caller's stays; an error only says one is set).
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let mut options = ConnectOptions::new().require_tls(*required);
    if let Some(ca) = ca_file {
        readable(ca, "CA file").await?;
        options = options.add_root_certificates(ca.to_path_buf());
    }
    if let Some((cert, key)) = client {
        readable(cert, "client certificate").await?;
        readable(key, "client key").await?;
        options = options.add_client_certificate(cert.to_path_buf(), key.to_path_buf());
    }
    Ok(match auth {
        NatsAuth::None => options,
        NatsAuth::Token(token) => options.token(secret(token, "token").await?),
        NatsAuth::UserPassword { user, password } => {
            options.user_and_password(user.clone(), secret(password, "password").await?)
        }
        NatsAuth::CredentialsFile(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| setup(path, "credentials file", &e))?,
        NatsAuth::NkeyFile(path) => {
            let seed = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| setup(path, "nkey seed file", &e))?;
            let seed = seed.trim();
            if !seed.starts_with('S') {
                return Err(BusError::Setup(format!(
                    "{} is not an nkey seed (it starts with 'S')",
                    path.display()
                )));
            }
            options.nkey(seed.to_string())
        }
    })
}

/// The error of a failed first connection, naming the server by its redacted URL.
pub(super) fn connect_error(connection: &NatsConnection, e: &ConnectError) -> BusError {
    let shown = &connection.shown;
    match e.kind() {
        ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
            BusError::Auth(format!(
                "the NATS server at {shown} refused these credentials ({e}): check the user and \
                 password, token, nkey or credentials file (see `azlin --help`, --nats-*)"
            ))
        }
        ConnectErrorKind::Tls => BusError::Setup(format!(
            "TLS with the NATS server at {shown} failed: {e} (check --nats-ca, --nats-cert, \
             --nats-key)"
        )),
        _ => BusError::Transport(format!("cannot reach the NATS server at {shown}: {e}")),
    }
}

fn setup(path: &Path, what: &str, e: &dyn std::fmt::Display) -> BusError {
    BusError::Setup(format!(
        "cannot read the NATS {what} {}: {e}",
        path.display()
    ))
}

async fn readable(path: &Path, what: &str) -> Result<(), BusError> {
    tokio::fs::metadata(path)
        .await
        .map(drop)
        .map_err(|e| setup(path, what, &e))
}

async fn secret(source: &SecretSource, what: &str) -> Result<String, BusError> {
    match source {
        SecretSource::Value(secret) => Ok(secret.expose().to_string()),
        SecretSource::File(path) => {
            let text = tokio::fs::read_to_string(path)
                .await
                .map_err(|e| setup(path, &format!("{what} file"), &e))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(BusError::Setup(format!(
                    "the NATS {what} file {} is empty",
                    path.display()
                )));
            }
            Ok(text.to_string())
        }
    }
}
