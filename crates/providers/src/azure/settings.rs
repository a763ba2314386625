//! What the `azure` provider is configured with ([`AzureSettings`]), resolved once from the config
//! file (and the CLI) and then passed by value to [`super::AzureProvider::new`].

use azlin_core::config::Config;
use azlin_core::{ErrorKind, ProviderError};
use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;

/// The public Azure Resource Manager endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://management.azure.com";

/// The resource group used when neither the request nor the config names one.
pub const DEFAULT_RESOURCE_GROUP: &str = "azlin";

/// A marketplace image (`publisher:offer:sku:version`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// e.g. `Canonical`.
    pub publisher: String,
    /// e.g. `ubuntu-24_04-lts`.
    pub offer: String,
    /// e.g. `server`.
    pub sku: String,
    /// e.g. `latest`.
    pub version: String,
}

impl ImageRef {
    /// Ubuntu 24.04 LTS, the default image.
    pub fn ubuntu_2404() -> ImageRef {
        ImageRef {
            publisher: "Canonical".into(),
            offer: "ubuntu-24_04-lts".into(),
            sku: "server".into(),
            version: "latest".into(),
        }
    }

    /// Parses an image URN `publisher:offer:sku:version` (`version` may be omitted: `latest`).
    pub fn parse_urn(urn: &str) -> Result<ImageRef, ProviderError> {
        let parts: Vec<&str> = urn.split(':').collect();
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        match parts.as_slice() {
            [p, o, s] | [p, o, s, _] if [p, o, s].iter().all(|x| valid(x)) => Ok(ImageRef {
                publisher: p.to_string(),
                offer: o.to_string(),
                sku: s.to_string(),
                version: parts
                    .get(3)
                    .filter(|v| valid(v))
                    .map_or("latest".to_string(), |v| v.to_string()),
            }),
            _ => Err(ProviderError::new(
                ErrorKind::Usage,
                format!(
                    "invalid Azure image URN '{}': expected publisher:offer:sku:version, e.g. Canonical:ubuntu-24_04-lts:server:latest",
                    urn.escape_default()
                ),
            )),
        }
    }

    /// The URN form.
    pub fn urn(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.publisher, self.offer, self.sku, self.version
        )
    }
}

/// Settings of the `azure` provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureSettings {
    /// Subscription id; the `az` default subscription (`id` of `az account show`) when absent.
    pub subscription: Option<String>,
    /// ARM base URL: [`DEFAULT_ENDPOINT`] unless a test double stands in. `https://`, or
    /// `http://` on a loopback host only (the bearer token is sent to it).
    pub endpoint: String,
    /// Resource group used when a request names none.
    pub resource_group: String,
    /// Source address prefix allowed to reach SSH (port 22): an address or CIDR; `*` (anywhere)
    /// when absent.
    pub ssh_source_prefix: Option<String>,
    /// The image VMs boot.
    pub image: ImageRef,
    /// The Azure CLI program: a name looked up on the `PATH` below, or a path.
    pub az_program: PathBuf,
    /// The `PATH` used to find and run `az`; the process's own when absent.
    pub search_path: Option<OsString>,
}

impl Default for AzureSettings {
    fn default() -> Self {
        AzureSettings {
            subscription: None,
            endpoint: DEFAULT_ENDPOINT.to_string(),
            resource_group: DEFAULT_RESOURCE_GROUP.to_string(),
            ssh_source_prefix: None,
            image: ImageRef::ubuntu_2404(),
            az_program: PathBuf::from("az"),
            search_path: None,
        }
    }
}

fn usage(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Usage, message)
}

impl AzureSettings {
    /// Settings from the config file: `[azure]` plus the top-level `resource_group`.
    pub fn from_config(config: &Config) -> Result<AzureSettings, ProviderError> {
        let azlin_core::config::AzureConfig {
            subscription,
            endpoint,
            image,
            ssh_source_prefix,
            az_program,
        } = &config.azure;
        let defaults = AzureSettings::default();
        let settings = AzureSettings {
            subscription: subscription.clone(),
            endpoint: endpoint.clone().unwrap_or(defaults.endpoint),
            resource_group: config
                .resource_group
                .clone()
                .unwrap_or(defaults.resource_group),
            ssh_source_prefix: ssh_source_prefix.clone(),
            image: match image {
                Some(urn) => ImageRef::parse_urn(urn)?,
                None => defaults.image,
            },
            az_program: az_program.clone().unwrap_or(defaults.az_program),
            search_path: None,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the values a user typed: endpoint URL, subscription id, source prefix, group name.
    pub fn validate(&self) -> Result<(), ProviderError> {
        validate_endpoint(&self.endpoint)?;
        if let Some(sub) = &self.subscription
            && (sub.is_empty() || !sub.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
        {
            return Err(usage(format!(
                "invalid Azure subscription id '{}': expected a GUID such as 00000000-0000-0000-0000-000000000000",
                sub.escape_default()
            )));
        }
        if let Some(prefix) = &self.ssh_source_prefix {
            validate_source_prefix(prefix)?;
        }
        validate_resource_group(&self.resource_group)
    }
}

/// An ARM endpoint: an `https://` URL, or `http://` on a loopback host (`127.0.0.0/8`, `::1`,
/// `localhost`), where only a local test double can listen. Every request carries the bearer
/// token, so plain http anywhere else would hand it to the network.
fn validate_endpoint(endpoint: &str) -> Result<(), ProviderError> {
    let url = url::Url::parse(endpoint)
        .ok()
        .filter(|u| u.host().is_some() && matches!(u.scheme(), "https" | "http"));
    match url {
        Some(u) if u.scheme() == "https" || azlin_core::network::is_loopback_url(&u) => Ok(()),
        Some(u) => Err(usage(format!(
            "Azure endpoint '{}' uses plain http on host '{}': the access token would travel unencrypted; use https:// (http:// is accepted only on a loopback host — 127.0.0.1, ::1, localhost — for a local test double)",
            endpoint.escape_default(),
            u.host_str().unwrap_or_default().escape_default()
        ))),
        None => Err(usage(format!(
            "invalid Azure endpoint '{}': expected a URL such as {DEFAULT_ENDPOINT}",
            endpoint.escape_default()
        ))),
    }
}

/// A source prefix for the SSH rule: `*`, an IP address, or an address/length CIDR.
pub(crate) fn validate_source_prefix(prefix: &str) -> Result<(), ProviderError> {
    if prefix == "*" {
        return Ok(());
    }
    let (addr, len) = match prefix.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (prefix, None),
    };
    let max = match addr.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => 32,
        Ok(IpAddr::V6(_)) => 128,
        Err(_) => 0,
    };
    let len_ok = len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max));
    if max == 0 || !len_ok {
        return Err(usage(format!(
            "invalid SSH source prefix '{}': expected an address or CIDR such as 203.0.113.7/32 (or '*')",
            prefix.escape_default()
        )));
    }
    Ok(())
}

/// Azure's rule for resource group names: 1–90 of letters, digits, `_-.()`, not ending in `.`.
pub(crate) fn validate_resource_group(name: &str) -> Result<(), ProviderError> {
    let ok = !name.is_empty()
        && name.len() <= 90
        && !name.ends_with('.')
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '(' | ')'));
    if ok {
        Ok(())
    } else {
        Err(usage(format!(
            "invalid resource group name '{}': 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'",
            name.escape_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_urns_parse_and_refuse() {
        let image = ImageRef::parse_urn("Canonical:ubuntu-24_04-lts:server:latest").unwrap();
        assert_eq!(image, ImageRef::ubuntu_2404());
        assert_eq!(
            ImageRef::parse_urn("Debian:debian-12:12").unwrap().version,
            "latest"
        );
        assert!(ImageRef::parse_urn("ubuntu").is_err());
        assert!(ImageRef::parse_urn("a:b:c d:1").is_err());
    }

    #[test]
    fn config_fields_reach_the_settings() {
        let config = Config::parse(
            "resource_group = \"team\"\n[azure]\nsubscription = \"0000-aa\"\nendpoint = \"http://127.0.0.1:9\"\nimage = \"Debian:debian-12:12:latest\"\nssh_source_prefix = \"203.0.113.0/24\"\naz_program = \"/opt/az/bin/az\"\n",
        )
        .unwrap();
        let s = AzureSettings::from_config(&config).unwrap();
        assert_eq!(s.resource_group, "team");
        assert_eq!(s.subscription.as_deref(), Some("0000-aa"));
        assert_eq!(s.endpoint, "http://127.0.0.1:9");
        assert_eq!(s.image.offer, "debian-12");
        assert_eq!(s.ssh_source_prefix.as_deref(), Some("203.0.113.0/24"));
        assert_eq!(s.az_program, PathBuf::from("/opt/az/bin/az"));
        let defaults = AzureSettings::from_config(&Config::default()).unwrap();
        assert_eq!(defaults, AzureSettings::default());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for (field, value) in [
            ("endpoint", "management.azure.com"),
            ("subscription", "my sub"),
            ("ssh_source_prefix", "10.0.0.0/40"),
            ("ssh_source_prefix", "home"),
        ] {
            let config = Config::parse(&format!("[azure]\n{field} = \"{value}\"\n")).unwrap();
            let err = AzureSettings::from_config(&config).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Usage, "{field}={value}: {err}");
        }
        assert!(validate_resource_group("rg(1)_a.b-c").is_ok());
        assert!(validate_resource_group("bad/name").is_err());
        assert!(validate_resource_group("ends.").is_err());
        assert!(validate_source_prefix("2001:db8::/48").is_ok());
    }

    #[test]
    fn plain_http_is_accepted_on_loopback_only() {
        for ok in [
            "https://management.azure.com",
            "https://management.usgovcloudapi.net/",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(validate_endpoint(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://management.azure.com",
            "http://10.0.0.5:8080",
            "http://localhost.attacker.example",
            "http://[2001:db8::1]/",
        ] {
            let err = validate_endpoint(refused).unwrap_err();
            assert_eq!(err.kind, ErrorKind::Usage, "{refused}");
            assert!(err.message.contains("https://"), "{}", err.message);
            assert!(err.message.contains("loopback"), "{}", err.message);
        }
        assert!(validate_endpoint("ftp://127.0.0.1").is_err());
        assert!(validate_endpoint("management.azure.com").is_err());
    }
}
