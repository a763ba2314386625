//! What a user asks for: provider, size, region, image profile, repositories, tags.

use crate::{RepoUrl, VmName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An input value that is not one of the known choices.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}' (known: {known})")]
pub struct UnknownChoice {
    what: &'static str,
    value: String,
    known: String,
}

impl UnknownChoice {
    fn new<'a>(what: &'static str, value: &str, known: impl IntoIterator<Item = &'a str>) -> Self {
        UnknownChoice {
            what,
            value: value.escape_default().to_string(),
            known: known.into_iter().collect::<Vec<_>>().join(", "),
        }
    }
}

/// Where a VM runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// A systemd-nspawn machine booted from a Debian rootfs, in its own network namespace.
    Nspawn,
    /// A QEMU virtual machine (KVM when usable, TCG otherwise).
    Qemu,
    /// An Azure VM created through the ARM REST API.
    Azure,
    /// An in-memory simulated VM for scale tests and benchmarks; never a default.
    Sim,
}

impl ProviderKind {
    /// Every provider, in the order `--help` lists them.
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Nspawn,
        ProviderKind::Qemu,
        ProviderKind::Azure,
        ProviderKind::Sim,
    ];

    /// The name used on the command line and in config files.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Nspawn => "nspawn",
            ProviderKind::Qemu => "qemu",
            ProviderKind::Azure => "azure",
            ProviderKind::Sim => "sim",
        }
    }

    /// Whether the VM runs on this machine (and so uses a locally built base image).
    pub fn is_local(self) -> bool {
        matches!(self, ProviderKind::Nspawn | ProviderKind::Qemu)
    }
}

impl FromStr for ProviderKind {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ProviderKind::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownChoice::new("provider", s, ProviderKind::ALL.map(|p| p.as_str())))
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM size: an Azure size name with its vCPU count and memory. Local providers apply what
/// they can (QEMU: both; nspawn: shares the host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// The Azure size name, e.g. `Standard_B2s`.
    pub name: &'static str,
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

/// Short aliases (as in the Python azlin's `--size s|m|l|xl`) and the size each stands for.
const SIZE_ALIASES: [(&str, &str); 5] = [
    ("xs", "Standard_B1s"),
    ("s", "Standard_B2s"),
    ("m", "Standard_D4s_v5"),
    ("l", "Standard_D8s_v5"),
    ("xl", "Standard_D16s_v5"),
];

/// The sizes azlin knows.
pub const SIZES: [Size; 12] = [
    Size {
        name: "Standard_B1s",
        vcpus: 1,
        memory_mib: 1024,
    },
    Size {
        name: "Standard_B1ms",
        vcpus: 1,
        memory_mib: 2048,
    },
    Size {
        name: "Standard_B2s",
        vcpus: 2,
        memory_mib: 4096,
    },
    Size {
        name: "Standard_B2ms",
        vcpus: 2,
        memory_mib: 8192,
    },
    Size {
        name: "Standard_B4ms",
        vcpus: 4,
        memory_mib: 16384,
    },
    Size {
        name: "Standard_D2s_v5",
        vcpus: 2,
        memory_mib: 8192,
    },
    Size {
        name: "Standard_D4s_v5",
        vcpus: 4,
        memory_mib: 16384,
    },
    Size {
        name: "Standard_D8s_v5",
        vcpus: 8,
        memory_mib: 32768,
    },
    Size {
        name: "Standard_D16s_v5",
        vcpus: 16,
        memory_mib: 65536,
    },
    Size {
        name: "Standard_E4s_v5",
        vcpus: 4,
        memory_mib: 32768,
    },
    Size {
        name: "Standard_E8s_v5",
        vcpus: 8,
        memory_mib: 65536,
    },
    Size {
        name: "Standard_F4s_v2",
        vcpus: 4,
        memory_mib: 8192,
    },
];

impl Size {
    /// The size used when neither flag nor config names one.
    pub const DEFAULT: &'static str = "Standard_B2s";

    /// Looks up a size by Azure name (case-insensitive) or alias.
    pub fn lookup(name: &str) -> Result<Size, UnknownChoice> {
        let canonical = SIZE_ALIASES
            .iter()
            .find(|(alias, _)| *alias == name)
            .map_or(name, |(_, size)| size);
        SIZES
            .into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(canonical))
            .ok_or_else(|| {
                let known = SIZE_ALIASES
                    .iter()
                    .map(|(a, _)| *a)
                    .chain(SIZES.iter().map(|s| s.name));
                UnknownChoice::new("size", name, known)
            })
    }
}

/// Region names azlin accepts: Azure's public regions, plus `local` for VMs on this machine.
pub const REGIONS: [&str; 43] = [
    "local",
    "eastus",
    "eastus2",
    "westus",
    "westus2",
    "westus3",
    "centralus",
    "northcentralus",
    "southcentralus",
    "westcentralus",
    "canadacentral",
    "canadaeast",
    "brazilsouth",
    "mexicocentral",
    "northeurope",
    "westeurope",
    "uksouth",
    "ukwest",
    "francecentral",
    "germanywestcentral",
    "switzerlandnorth",
    "norwayeast",
    "swedencentral",
    "polandcentral",
    "italynorth",
    "spaincentral",
    "uaenorth",
    "qatarcentral",
    "israelcentral",
    "southafricanorth",
    "centralindia",
    "southindia",
    "westindia",
    "japaneast",
    "japanwest",
    "koreacentral",
    "koreasouth",
    "eastasia",
    "southeastasia",
    "australiaeast",
    "australiasoutheast",
    "australiacentral",
    "newzealandnorth",
];

/// A validated region name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Region(String);

impl Region {
    /// The region of VMs on this machine.
    pub const LOCAL: &'static str = "local";
    /// The Azure region used when neither flag nor config names one.
    pub const DEFAULT_AZURE: &'static str = "westus2";

    /// Validates a region name.
    pub fn parse(name: &str) -> Result<Region, UnknownChoice> {
        REGIONS
            .iter()
            .find(|r| **r == name)
            .map(|r| Region(r.to_string()))
            .ok_or_else(|| UnknownChoice::new("region", name, REGIONS))
    }

    /// The region name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Region {
    type Error = UnknownChoice;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Region::parse(&s)
    }
}

impl From<Region> for String {
    fn from(r: Region) -> String {
        r.0
    }
}

/// The tool set of a VM image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ImageProfile {
    /// What tests need: systemd, sshd, cloud-init, sudo, git, tmux, curl.
    #[default]
    Minimal,
    /// The seed's developer tools (docker, build tools, python, node, go, rust, gh, azure-cli).
    Dev,
}

impl ImageProfile {
    /// Both profiles.
    pub const ALL: [ImageProfile; 2] = [ImageProfile::Minimal, ImageProfile::Dev];

    /// The profile's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageProfile::Minimal => "minimal",
            ImageProfile::Dev => "dev",
        }
    }

    /// Debian packages of the profile on top of the base system.
    pub fn packages(self) -> &'static [&'static str] {
        const MINIMAL: &[&str] = &[
            "systemd",
            "systemd-sysv",
            "dbus",
            "openssh-server",
            "cloud-init",
            "sudo",
            "git",
            "tmux",
            "zstd",
            "curl",
            "ca-certificates",
            "locales",
            "python3-cffi-backend",
            "iproute2",
            "netbase",
            "less",
        ];
        const DEV: &[&str] = &[
            "systemd",
            "systemd-sysv",
            "dbus",
            "openssh-server",
            "cloud-init",
            "sudo",
            "git",
            "tmux",
            "zstd",
            "curl",
            "ca-certificates",
            "locales",
            "python3-cffi-backend",
            "iproute2",
            "netbase",
            "less",
            "docker.io",
            "build-essential",
            "python3",
            "python3-pip",
            "python3-venv",
            "nodejs",
            "npm",
            "golang",
            "rustc",
            "cargo",
            "gh",
            "azure-cli",
        ];
        match self {
            ImageProfile::Minimal => MINIMAL,
            ImageProfile::Dev => DEV,
        }
    }
}

impl FromStr for ImageProfile {
    type Err = UnknownChoice;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageProfile::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                UnknownChoice::new("image profile", s, ImageProfile::ALL.map(|p| p.as_str()))
            })
    }
}

impl fmt::Display for ImageProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything needed to create one VM; travels in `vm.create.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSpec {
    /// The VM's name.
    pub name: VmName,
    /// Where it runs.
    pub provider: ProviderKind,
    /// Azure size name (see [`Size`]).
    pub size: String,
    /// Region (see [`REGIONS`]).
    pub region: String,
    /// Azure resource group; recorded for local VMs too.
    pub resource_group: String,
    /// Image profile.
    pub image: ImageProfile,
    /// Repositories to clone into `~/<name>`.
    #[serde(default)]
    pub repos: Vec<RepoUrl>,
    /// Extra cloud-config (YAML) merged into the generated one.
    #[serde(default)]
    pub cloud_init: Option<String>,
    /// PEM CA certificates the VM should trust (for internal git servers).
    #[serde(default)]
    pub ca_certs: Vec<String>,
    /// User tags, added to azlin's own.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Boot from a snapshot of another VM instead of the base image (`azlin clone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_of: Option<Box<CloneSource>>,
}

/// The snapshot a clone boots from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSource {
    /// The VM the snapshot is of.
    pub vm: VmName,
    /// The snapshot.
    pub snapshot: String,
}

impl VmSpec {
    /// A spec with the defaults of a plain `azlin new`: default size, the provider's default
    /// region, resource group `azlin`, the minimal image, no repositories, no extras.
    pub fn new(name: VmName, provider: ProviderKind) -> VmSpec {
        let region = if provider == ProviderKind::Azure {
            Region::DEFAULT_AZURE
        } else {
            Region::LOCAL
        };
        VmSpec {
            name,
            provider,
            size: Size::DEFAULT.to_string(),
            region: region.to_string(),
            resource_group: "azlin".to_string(),
            image: ImageProfile::Minimal,
            repos: Vec::new(),
            cloud_init: None,
            ca_certs: Vec::new(),
            tags: BTreeMap::new(),
            clone_of: None,
        }
    }

    /// The resolved size.
    pub fn size(&self) -> Size {
        // The CLI resolves sizes before it makes a spec; the fallback keeps this total.
        Size::lookup(&self.size).unwrap_or(SIZES[2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_parse_and_refuse() {
        assert_eq!(
            "nspawn".parse::<ProviderKind>().unwrap(),
            ProviderKind::Nspawn
        );
        let err = "docker".parse::<ProviderKind>().unwrap_err().to_string();
        assert!(
            err.contains("unknown provider 'docker'") && err.contains("nspawn, qemu, azure, sim"),
            "{err}"
        );
    }

    #[test]
    fn sizes_resolve_aliases_and_names() {
        assert_eq!(Size::lookup("s").unwrap().name, "Standard_B2s");
        assert_eq!(Size::lookup("standard_d4s_v5").unwrap().vcpus, 4);
        assert!(Size::lookup("Standard_Huge").is_err());
    }

    #[test]
    fn regions_are_checked() {
        assert!(Region::parse("westeurope").is_ok());
        assert!(Region::parse("mars-north").is_err());
    }
}
