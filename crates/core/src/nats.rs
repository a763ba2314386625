//! How azlin reaches and authenticates to a NATS server ([`NatsConnection`]), and the
//! redaction that keeps its secrets out of every message ([`redact_url`], [`Secret`],
//! [`NatsUrl`]).
//!
//! The connection settings are resolved once at the CLI edge from flags, environment and the
//! `[nats]` config; the control plane maps them onto the client's options. A password or token
//! written in the URL (`nats://user:password@host`, `nats://token@host`) is taken out of it here,
//! so the URL handed to the client, and every URL printed, carries no secret.

use serde::Deserialize;
use std::path::PathBuf;

/// A secret value: never shown by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `url` (or a comma-separated list of URLs) with any password replaced by `***`:
/// `nats://user:pw@host:4222` → `nats://user:***@host:4222`, and a user without a password
/// (the NATS token form, `nats://token@host`) → `nats://***@host`.
pub fn redact_url(url: &str) -> String {
    url.split(',').map(redact_one).collect::<Vec<_>>().join(",")
}

fn redact_one(url: &str) -> String {
    let Some((scheme, userinfo, rest)) = userinfo_parts(url) else {
        return url.to_string();
    };
    let shown = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{scheme}{shown}@{rest}")
}

/// `url` cut around its user information: the scheme (with `://`), the user information, and
/// the rest from the host on; `None` when it has none.
fn userinfo_parts(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..end].rfind('@')?;
    Some((scheme, &rest[..at], &rest[at + 1..]))
}

/// A NATS server URL as the user gave it (it may hold a password or token): `Debug` and
/// `Display` show it redacted ([`redact_url`]).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct NatsUrl(String);

impl NatsUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        NatsUrl(url.into())
    }

    /// The URL as given, secrets included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for NatsUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(NatsUrl(s.to_string()))
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl std::fmt::Display for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// `[nats]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL (wins over the top-level `nats_url`).
    pub url: Option<NatsUrl>,
    /// Replicas of every stream and key-value bucket (1, or 3 on a 3-node cluster).
    pub replicas: Option<usize>,
    /// PEM file of the CA that signed the server's certificate.
    pub ca_file: Option<PathBuf>,
    /// PEM file of this client's certificate (with `key_file`: mutual TLS).
    pub cert_file: Option<PathBuf>,
    /// PEM file of this client's private key.
    pub key_file: Option<PathBuf>,
    /// Use TLS even when the URL says `nats://` (a `tls://` URL always does).
    pub tls: Option<bool>,
    /// Credentials file (user JWT and nkey seed, `.creds`).
    pub creds_file: Option<PathBuf>,
    /// File holding an nkey seed (`SU…`).
    pub nkey_file: Option<PathBuf>,
    /// File holding a token.
    pub token_file: Option<PathBuf>,
    /// User name (with `password_file`, or the password in the URL).
    pub user: Option<String>,
    /// File holding the password of `user`.
    pub password_file: Option<PathBuf>,
}

/// A secret given inline (environment, URL) or as a file read when connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The value.
    Value(Secret),
    /// A file holding it (surrounding white space is ignored).
    File(PathBuf),
}

/// How the client proves who it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// A token.
    Token(SecretSource),
    /// A user and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: SecretSource,
    },
    /// A credentials file (JWT + nkey seed).
    CredentialsFile(PathBuf),
    /// A file holding an nkey seed.
    NkeyFile(PathBuf),
}

/// TLS towards the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NatsTls {
    /// Require TLS (also implied by a `tls://` URL or any file below).
    pub required: bool,
    /// CA certificates (PEM) to trust for the server, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM), for servers that verify clients.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Everything needed to connect: the server URL(s) without secrets, TLS and credentials.
/// `Debug` and `Display` never show a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConnection {
    /// The server URL(s) with any user and password taken out (handed to the client).
    pub servers: String,
    /// The URL as shown to people: the user's, password redacted.
    pub shown: String,
    /// TLS.
    pub tls: NatsTls,
    /// Credentials.
    pub auth: NatsAuth,
    /// Replicas of streams and buckets.
    pub replicas: usize,
}

impl std::fmt::Display for NatsConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Connection settings that contradict each other or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NatsConfigError {
    /// More than one way to authenticate was given.
    #[error("NATS: give one way to authenticate, not {0}")]
    ManyAuth(String),
    /// A part of the settings is incomplete or malformed.
    #[error("NATS: {0}")]
    Invalid(String),
}

/// The inputs [`NatsConnection::resolve`] combines (flags and environment win over the config).
#[derive(Debug, Clone, Default)]
pub struct NatsInputs {
    /// The URL.
    pub url: NatsUrl,
    /// `[nats]` of the config, overridden field by field by the flags below.
    pub config: NatsConfig,
    /// A token from the environment (`AZLIN_NATS_TOKEN`).
    pub token: Option<Secret>,
}

impl NatsConnection {
    /// A connection to `url` with no further settings (credentials in the URL are honoured).
    pub fn from_url(url: &str) -> Result<NatsConnection, NatsConfigError> {
        Self::resolve(NatsInputs {
            url: NatsUrl::new(url),
            ..NatsInputs::default()
        })
    }

    /// Combines the inputs, taking credentials out of the URL; refuses more than one way to
    /// authenticate, a client certificate without its key, and a password without a user.
    pub fn resolve(inputs: NatsInputs) -> Result<NatsConnection, NatsConfigError> {
        let NatsInputs { url, config, token } = inputs;
        let NatsConfig {
            url: _,
            replicas,
            ca_file,
            cert_file,
            key_file,
            tls,
            creds_file,
            nkey_file,
            token_file,
            user,
            password_file,
        } = config;
        let mut in_url: Option<(String, Option<String>)> = None;
        let mut servers = Vec::new();
        for one in url.expose().split(',').map(str::trim) {
            let (stripped, userinfo) = strip_userinfo(one);
            if let Some(userinfo) = userinfo {
                if in_url.as_ref().is_some_and(|seen| *seen != userinfo) {
                    return Err(NatsConfigError::Invalid(
                        "the server URLs carry different credentials".into(),
                    ));
                }
                in_url = Some(userinfo);
            }
            servers.push(stripped);
        }
        if servers.iter().any(String::is_empty) {
            return Err(NatsConfigError::Invalid(format!(
                "no server in the URL '{url}'"
            )));
        }
        let mut ways: Vec<(&str, NatsAuth)> = Vec::new();
        if let Some(path) = creds_file {
            ways.push(("a credentials file", NatsAuth::CredentialsFile(path)));
        }
        if let Some(path) = nkey_file {
            ways.push(("an nkey seed", NatsAuth::NkeyFile(path)));
        }
        if let Some(path) = token_file {
            ways.push(("a token file", NatsAuth::Token(SecretSource::File(path))));
        } else if let Some(token) = token {
            ways.push(("a token", NatsAuth::Token(SecretSource::Value(token))));
        }
        let (url_user, url_password) = match in_url {
            Some((user, password)) => (Some(user), password),
            None => (None, None),
        };
        match (user, password_file, url_user, url_password) {
            (None, None, None, None) => {}
            (None, None, Some(token), None) => {
                ways.push((
                    "a token in the URL",
                    NatsAuth::Token(SecretSource::Value(Secret(token))),
                ));
            }
            (flag_user, file, url_user, url_password) => {
                let user = match (flag_user, url_user) {
                    (Some(a), Some(b)) if a != b => {
                        return Err(NatsConfigError::Invalid(format!(
                            "user '{a}' and the URL's user '{b}' differ"
                        )));
                    }
                    (Some(user), _) | (None, Some(user)) => user,
                    (None, None) => {
                        return Err(NatsConfigError::Invalid(
                            "a password file needs a user (--nats-user)".into(),
                        ));
                    }
                };
                let password = match (file, url_password) {
                    (Some(_), Some(_)) => {
                        return Err(NatsConfigError::Invalid(
                            "a password both in the URL and in a file".into(),
                        ));
                    }
                    (Some(path), None) => SecretSource::File(path),
                    (None, Some(password)) => SecretSource::Value(Secret(password)),
                    (None, None) => {
                        return Err(NatsConfigError::Invalid(format!(
                            "user '{user}' needs a password (--nats-password-file, or in the URL)"
                        )));
                    }
                };
                ways.push((
                    "a user and password",
                    NatsAuth::UserPassword { user, password },
                ));
            }
        }
        if ways.len() > 1 {
            let names: Vec<&str> = ways.iter().map(|(name, _)| *name).collect();
            return Err(NatsConfigError::ManyAuth(names.join(" and ")));
        }
        let auth = ways.pop().map_or(NatsAuth::None, |(_, auth)| auth);
        let client = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => {
                return Err(NatsConfigError::Invalid(
                    "a client certificate needs its key, and a key its certificate".into(),
                ));
            }
        };
        let replicas = replicas.unwrap_or(1);
        if !(1..=5).contains(&replicas) {
            return Err(NatsConfigError::Invalid(format!(
                "replicas must be between 1 and 5, not {replicas}"
            )));
        }
        let required = tls.unwrap_or(false)
            || ca_file.is_some()
            || client.is_some()
            || servers.iter().any(|s| s.starts_with("tls://"));
        Ok(NatsConnection {
            servers: servers.join(","),
            shown: redact_url(url.expose()),
            tls: NatsTls {
                required,
                ca_file,
                client,
            },
            auth,
            replicas,
        })
    }
}

/// `url` without its user information, and that information (user, password) if any.
fn strip_userinfo(url: &str) -> (String, Option<(String, Option<String>)>) {
    let Some((scheme, userinfo, rest)) = userinfo_parts(url) else {
        return (url.to_string(), None);
    };
    let decode = |s: &str| percent_decode(s);
    let info = match userinfo.split_once(':') {
        Some((user, password)) => (decode(user), Some(decode(password))),
        None => (decode(userinfo), None),
    };
    (format!("{scheme}{rest}"), Some(info))
}

/// Decodes `%XX` escapes (as URLs carry reserved characters of a password).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("nats://alice:s3cret@127.0.0.1:4222"),
            "nats://alice:***@127.0.0.1:4222"
        );
        assert_eq!(redact_url("nats://t0ken@host:4222"), "nats://***@host:4222");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
        assert_eq!(
            redact_url("tls://a:b@h1:1,nats://h2:2,nats://c:d@h3:3/x?y=@z"),
            "tls://a:***@h1:1,nats://h2:2,nats://c:***@h3:3/x?y=@z"
        );
        assert_eq!(redact_url("u:p@host:4222"), "u:***@host:4222");
        let url = NatsUrl::new("nats://alice:s3cret@h:1");
        assert_eq!(url.to_string(), "nats://alice:***@h:1");
        assert!(!format!("{url:?}").contains("s3cret"));
        assert!(!format!("{:?}", Secret::new("s3cret")).contains("s3cret"));
    }

    #[test]
    fn credentials_leave_the_url() {
        let conn = NatsConnection::from_url("nats://alice:p%40ss@127.0.0.1:4222").expect("ok");
        assert_eq!(conn.servers, "nats://127.0.0.1:4222");
        assert_eq!(conn.to_string(), "nats://alice:***@127.0.0.1:4222");
        assert_eq!(
            conn.auth,
            NatsAuth::UserPassword {
                user: "alice".into(),
                password: SecretSource::Value(Secret::new("p@ss")),
            }
        );
        assert!(!format!("{conn:?}").contains("p@ss"));
        let token = NatsConnection::from_url("nats://tok@h:1").expect("ok");
        assert_eq!(
            token.auth,
            NatsAuth::Token(SecretSource::Value(Secret::new("tok")))
        );
        assert!(!token.tls.required);
        assert!(
            NatsConnection::from_url("tls://h:1")
                .expect("ok")
                .tls
                .required
        );
    }

    #[test]
    fn contradictions_are_refused() {
        let inputs = |config: NatsConfig| NatsInputs {
            url: NatsUrl::new("nats://u:p@h:1"),
            config,
            token: None,
        };
        let err = NatsConnection::resolve(inputs(NatsConfig {
            creds_file: Some("x.creds".into()),
            ..NatsConfig::default()
        }))
        .unwrap_err();
        assert!(matches!(err, NatsConfigError::ManyAuth(_)), "{err}");
        assert!(
            NatsConnection::resolve(inputs(NatsConfig {
                cert_file: Some("c.pem".into()),
                ..NatsConfig::default()
            }))
            .is_err()
        );
        assert!(
            NatsConnection::resolve(inputs(NatsConfig {
                replicas: Some(0),
                ..NatsConfig::default()
            }))
            .is_err()
        );
        let ok = NatsConnection::resolve(NatsInputs {
            url: NatsUrl::new("nats://h:1"),
            config: NatsConfig {
                user: Some("w".into()),
                password_file: Some("pw".into()),
                ca_file: Some("ca.pem".into()),
                replicas: Some(3),
                ..NatsConfig::default()
            },
            token: None,
        })
        .expect("ok");
        assert!(ok.tls.required);
        assert_eq!(ok.replicas, 3);
    }
}
