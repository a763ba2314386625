//! What local VMs may reach on the network: `[network]` in the config ([`NetworkConfig`]).
//!
//! A local VM reaches the internet (subject to [`Egress`]) and the ports azlin offers it on the
//! host end of its link (`host.azlin.internal`, [`NetworkConfig::host_ports`]) — nothing else:
//! not other VMs, not other host ports.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// TCP ports on `host.azlin.internal` where azlin's own job services (the cache and artifact
/// services) listen; every local VM may connect to them. Each `azlin run` takes the first
/// free one; nothing else on the host should listen there.
pub const JOB_SERVICE_PORTS: RangeInclusive<u16> = 47400..=47463;

/// Whether `url`'s host is this machine's loopback (127.0.0.0/8, ::1, `localhost`): the only
/// hosts plain `http://` is accepted for, where a local test double or server listens.
pub fn is_loopback_url(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Whether `url` carries a user name or password, which azlin never sends or stores in a URL.
pub fn has_credentials(url: &url::Url) -> bool {
    !url.username().is_empty() || url.password().is_some()
}

/// `[network]` in the config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// TCP ports on `host.azlin.internal` that VMs may connect to (a git server the user
    /// runs for them, say); none by default.
    #[serde(default)]
    pub host_ports: Vec<u16>,
    /// Where VMs may connect outside the host; everywhere by default.
    #[serde(default)]
    pub egress: Egress,
}

/// Where a VM may connect outside the host. The ranges of other VMs are never reachable,
/// whatever this says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Egress {
    /// Anywhere (`"all"`).
    #[default]
    All,
    /// Nowhere (`"none"`), DNS included.
    None,
    /// Only these networks (a list of CIDRs), plus DNS to the resolvers the VM is given.
    Only(Vec<Ipv4Cidr>),
}

impl<'de> Deserialize<'de> for Egress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EgressVisitor;
        impl<'de> Visitor<'de> for EgressVisitor {
            type Value = Egress;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"all\", \"none\" or a list of IPv4 CIDRs")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Egress, E> {
                match v {
                    "all" => Ok(Egress::All),
                    "none" => Ok(Egress::None),
                    other => Err(E::invalid_value(de::Unexpected::Str(other), &self)),
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Egress, A::Error> {
                let mut cidrs = Vec::new();
                while let Some(cidr) = seq.next_element::<Ipv4Cidr>()? {
                    cidrs.push(cidr);
                }
                Ok(Egress::Only(cidrs))
            }
        }
        deserializer.deserialize_any(EgressVisitor)
    }
}

/// An IPv4 network in CIDR notation (`192.0.2.0/24`; a bare address is a `/32`), with no
/// host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub struct Ipv4Cidr {
    addr: Ipv4Addr,
    prefix: u8,
}

/// Why a CIDR was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid IPv4 CIDR '{text}': {reason}")]
pub struct InvalidCidr {
    text: String,
    reason: &'static str,
}

impl Ipv4Cidr {
    /// The network address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length (0–32).
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
}

impl FromStr for Ipv4Cidr {
    type Err = InvalidCidr;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| InvalidCidr {
            text: text.escape_default().to_string(),
            reason,
        };
        let (addr, prefix) = text.split_once('/').unwrap_or((text, "32"));
        let addr: Ipv4Addr = addr.parse().map_err(|_| fail("not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| fail("the prefix length is not 0–32"))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        if u32::from(addr) & !mask != 0 {
            return Err(fail("host bits are set"));
        }
        Ok(Ipv4Cidr { addr, prefix })
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<Ipv4Cidr> for String {
    fn from(cidr: Ipv4Cidr) -> String {
        cidr.to_string()
    }
}

impl<'de> Deserialize<'de> for Ipv4Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<NetworkConfig, String> {
        toml::from_str(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn egress_is_all_none_or_cidrs() {
        assert_eq!(parse("").unwrap(), NetworkConfig::default());
        assert_eq!(parse("egress = \"all\"").unwrap().egress, Egress::All);
        assert_eq!(parse("egress = \"none\"").unwrap().egress, Egress::None);
        let only = parse("egress = [\"192.0.2.0/24\", \"198.51.100.7\"]").unwrap();
        assert_eq!(
            only.egress,
            Egress::Only(vec![
                "192.0.2.0/24".parse().unwrap(),
                "198.51.100.7/32".parse().unwrap()
            ])
        );
        assert!(parse("egress = \"some\"").is_err());
        assert!(parse("egress = 3").is_err());
        let err = parse("egress = [\"192.0.2.1/24\"]").unwrap_err();
        assert!(err.contains("host bits"), "{err}");
        assert!(parse("egress = [\"192.0.2.0/33\"]").is_err());
        assert!(parse("egress = [\"::/0\"]").is_err());
    }

    #[test]
    fn host_ports_are_ports_and_unknown_keys_are_refused() {
        assert_eq!(
            parse("host_ports = [8443, 22]").unwrap().host_ports,
            vec![8443, 22]
        );
        assert!(parse("host_ports = [70000]").is_err());
        assert!(parse("host_port = [80]").is_err());
    }

    #[test]
    fn cidrs_print_as_parsed() {
        let cidr: Ipv4Cidr = "0.0.0.0/0".parse().unwrap();
        assert_eq!(cidr.to_string(), "0.0.0.0/0");
        assert_eq!(cidr.prefix(), 0);
        assert_eq!(
            "10.1.2.3".parse::<Ipv4Cidr>().unwrap().to_string(),
            "10.1.2.3/32"
        );
    }
}
