//! [`TestPki`]: a throwaway CA, a server certificate for `127.0.0.1`/`localhost` and a client
//! certificate, as PEM files, for servers started with TLS (mutual TLS when they verify
//! clients).

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// PEM files of a test CA and the certificates it signed.
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate (`127.0.0.1`, `localhost`).
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate (common name `azlin-test-client`).
    pub client_cert: PathBuf,
    /// The client's key.
    pub client_key: PathBuf,
}

fn other(e: rcgen::Error) -> std::io::Error {
    std::io::Error::other(e)
}

impl TestPki {
    /// Makes the CA and certificates and writes them into `dir`.
    pub fn write(dir: &Path) -> std::io::Result<TestPki> {
        let ca_key = KeyPair::generate().map_err(other)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "azlin test CA");
        let ca_cert = ca_params.self_signed(&ca_key).map_err(other)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().map_err(other)?;
        let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(other)?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let server_cert = server.signed_by(&server_key, &issuer).map_err(other)?;

        let client_key = KeyPair::generate().map_err(other)?;
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        client
            .distinguished_name
            .push(DnType::CommonName, "azlin-test-client");
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client.signed_by(&client_key, &issuer).map_err(other)?;

        let pki = TestPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server-cert.pem"),
            server_key: dir.join("server-key.pem"),
            client_cert: dir.join("client-cert.pem"),
            client_key: dir.join("client-key.pem"),
        };
        std::fs::write(&pki.ca, ca_cert.pem())?;
        std::fs::write(&pki.server_cert, server_cert.pem())?;
        std::fs::write(&pki.server_key, server_key.serialize_pem())?;
        std::fs::write(&pki.client_cert, client_cert.pem())?;
        std::fs::write(&pki.client_key, client_key.serialize_pem())?;
        Ok(pki)
    }

    /// A nats-server `tls {}` block with these files; `verify` demands client certificates.
    pub fn nats_tls_block(&self, verify: bool) -> String {
        format!(
            "tls {{\n    cert_file: {:?}\n    key_file: {:?}\n    ca_file: {:?}\n    \
             verify: {verify}\n    timeout: 5\n}}\n",
            self.server_cert.display().to_string(),
            self.server_key.display().to_string(),
            self.ca.display().to_string(),
        )
    }
}
