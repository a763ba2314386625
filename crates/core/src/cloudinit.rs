//! Renders the `#cloud-config` user data every provider delivers (NoCloud seed, CIDATA disk or
//! Azure `customData`): the admin user with its key, passwordless sudo, host name, the SSH host key
//! azlin generated, trusted CAs, packages, and whatever the user's own cloud-config adds.

use yaml_serde::{Mapping, Value};

/// The admin user on every azlin VM (as on Azure).
pub const ADMIN_USER: &str = "azureuser";

/// The most user data every provider accepts: Azure refuses `customData` whose decoded form is
/// longer than 65,535 bytes (87,380 base64 characters).
pub const MAX_USER_DATA_BYTES: usize = 65_535;

/// An SSH host key pair in OpenSSH formats.
#[derive(Debug, Clone)]
pub struct HostKey {
    /// `-----BEGIN OPENSSH PRIVATE KEY-----…`
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA…`
    pub public_openssh: String,
}

/// Inputs of the generated cloud-config.
#[derive(Debug, Clone)]
pub struct CloudConfig<'a> {
    /// Host name of the VM.
    pub hostname: &'a str,
    /// Keys authorised for [`ADMIN_USER`].
    pub authorized_keys: Vec<String>,
    /// The Ed25519 host key sshd must present.
    pub host_key: &'a HostKey,
    /// PEM certificates to add to the system trust store.
    pub ca_certs: &'a [String],
    /// Packages to install at first boot (empty when the image has them baked in).
    pub packages: &'a [&'a str],
    /// The user's own cloud-config, merged in.
    pub extra: Option<&'a str>,
}

/// User cloud-config that cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudInitError {
    /// Not YAML.
    #[error("cloud-init file is not valid YAML: {0}")]
    Yaml(String),
    /// YAML, but not a mapping of cloud-config keys.
    #[error(
        "cloud-init file must be a YAML mapping of cloud-config keys (it starts with #cloud-config)"
    )]
    NotAMapping,
    /// The result is larger than Azure accepts.
    #[error("cloud-init user data is {0} bytes; the limit is {MAX_USER_DATA_BYTES}")]
    TooLarge(usize),
}

fn string(s: &str) -> Value {
    Value::String(s.to_string())
}

fn map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Mapping(entries.into_iter().map(|(k, v)| (string(k), v)).collect())
}

fn strings<S: AsRef<str>>(items: &[S]) -> Value {
    Value::Sequence(items.iter().map(|s| string(s.as_ref())).collect())
}

impl CloudConfig<'_> {
    /// The generated settings, before the user's are merged in.
    fn base(&self) -> Mapping {
        let user = map([
            ("name", string(ADMIN_USER)),
            ("sudo", string("ALL=(ALL) NOPASSWD:ALL")),
            ("groups", string("sudo")),
            ("shell", string("/bin/bash")),
            ("lock_passwd", Value::Bool(true)),
            ("ssh_authorized_keys", strings(&self.authorized_keys)),
        ]);
        let mut root = Mapping::new();
        root.insert(string("hostname"), string(self.hostname));
        root.insert(string("manage_etc_hosts"), Value::Bool(true));
        root.insert(string("users"), Value::Sequence(vec![user]));
        root.insert(string("ssh_pwauth"), Value::Bool(false));
        root.insert(string("disable_root"), Value::Bool(true));
        root.insert(string("ssh_deletekeys"), Value::Bool(true));
        // Only the Ed25519 type, which `ssh_keys` already provides: nothing is generated (an
        // empty list would say the same, but cloud-init's schema refuses it as too short).
        root.insert(string("ssh_genkeytypes"), strings(&["ed25519"]));
        root.insert(
            string("ssh_keys"),
            map([
                ("ed25519_private", string(&self.host_key.private_openssh)),
                ("ed25519_public", string(&self.host_key.public_openssh)),
            ]),
        );
        if !self.ca_certs.is_empty() {
            root.insert(
                string("ca_certs"),
                map([("trusted", strings(self.ca_certs))]),
            );
        }
        if !self.packages.is_empty() {
            root.insert(string("packages"), strings(self.packages));
        }
        root
    }

    /// Renders the user data. Lists in the user's cloud-config (`packages`, `runcmd`,
    /// `users`, `write_files`, …) are appended to azlin's; other keys of the user's replace
    /// azlin's, except the SSH host key, which stays azlin's so that it can be checked.
    pub fn render(&self) -> Result<String, CloudInitError> {
        let mut root = self.base();
        if let Some(extra) = self.extra {
            merge_into(&mut root, parse_mapping(extra)?, true);
        }
        let body = yaml_serde::to_string(&Value::Mapping(root))
            .map_err(|e| CloudInitError::Yaml(e.to_string()))?;
        let text = format!("#cloud-config\n{body}");
        if text.len() > MAX_USER_DATA_BYTES {
            return Err(CloudInitError::TooLarge(text.len()));
        }
        Ok(text)
    }
}

/// Checks a user's cloud-config before anything is made: it must be a YAML mapping that
/// [`CloudConfig::render`] can merge.
pub fn check_user_config(text: &str) -> Result<(), CloudInitError> {
    parse_mapping(text).map(drop)
}

/// Parses a cloud-config document (YAML mapping, `#cloud-config` line optional).
fn parse_mapping(text: &str) -> Result<Mapping, CloudInitError> {
    let parsed: Value =
        yaml_serde::from_str(text).map_err(|e| CloudInitError::Yaml(e.to_string()))?;
    match parsed {
        Value::Mapping(map) => Ok(map),
        // An empty document is an empty config.
        Value::Null => Ok(Mapping::new()),
        _ => Err(CloudInitError::NotAMapping),
    }
}

/// Merges `extra` into `root`: lists are appended, other values replace. With
/// `protect_host_key`, the SSH host key settings of `root` are kept.
fn merge_into(root: &mut Mapping, extra: Mapping, protect_host_key: bool) {
    for (key, value) in extra {
        let protected = protect_host_key
            && matches!(
                key.as_str(),
                Some("ssh_keys" | "ssh_deletekeys" | "ssh_genkeytypes")
            );
        match (root.get_mut(&key), value) {
            _ if protected => {}
            (Some(Value::Sequence(ours)), Value::Sequence(theirs)) => ours.extend(theirs),
            (_, value) => {
                root.insert(key, value);
            }
        }
    }
}

/// Merges two cloud-config documents the way [`CloudConfig::render`] merges the user's into
/// azlin's (lists appended), returning a `#cloud-config` document.
pub fn merge_documents(first: Option<&str>, second: &str) -> Result<String, CloudInitError> {
    let mut root = match first {
        Some(text) => parse_mapping(text)?,
        None => Mapping::new(),
    };
    merge_into(&mut root, parse_mapping(second)?, false);
    let body = yaml_serde::to_string(&Value::Mapping(root))
        .map_err(|e| CloudInitError::Yaml(e.to_string()))?;
    Ok(format!("#cloud-config\n{body}"))
}

/// Cloud-config that also authorises `public_key` for root (for workflow session VMs, whose
/// steps run as root, as act's do, without a `sudo` per step).
pub fn root_login(public_key: &str) -> String {
    format!(
        "disable_root: false\nssh_authorized_keys:\n  - {}\n",
        serde_json::Value::String(public_key.trim().to_string())
    )
}

/// NoCloud `meta-data` for a VM: a per-request instance id (so cloud-init runs once per VM) and
/// the host name.
pub fn meta_data(instance_id: &str, hostname: &str) -> String {
    format!("instance-id: {instance_id}\nlocal-hostname: {hostname}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_key() -> HostKey {
        HostKey {
            private_openssh:
                "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n"
                    .into(),
            public_openssh: "ssh-ed25519 AAAAhost".into(),
        }
    }

    fn render(extra: Option<&str>) -> Result<Value, CloudInitError> {
        let key = host_key();
        let text = CloudConfig {
            hostname: "dev",
            authorized_keys: vec!["ssh-ed25519 AAAAuser".into()],
            host_key: &key,
            ca_certs: &["-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----".into()],
            packages: &[],
            extra,
        }
        .render()?;
        assert!(text.starts_with("#cloud-config\n"));
        Ok(yaml_serde::from_str(&text).unwrap())
    }

    #[test]
    fn user_data_over_the_limit_is_refused_with_its_size() {
        let big = format!("runcmd:\n  - echo {}\n", "x".repeat(MAX_USER_DATA_BYTES));
        let Err(CloudInitError::TooLarge(size)) = render(Some(&big)) else {
            panic!("accepted user data over the limit");
        };
        assert!(size > MAX_USER_DATA_BYTES);
        let message = CloudInitError::TooLarge(size).to_string();
        assert!(message.ends_with("the limit is 65535"), "{message}");
    }

    #[test]
    fn renders_user_host_key_and_cas() {
        let doc = render(None).unwrap();
        assert_eq!(doc["hostname"], string("dev"));
        assert_eq!(doc["users"][0]["name"], string(ADMIN_USER));
        assert_eq!(
            doc["users"][0]["ssh_authorized_keys"][0],
            string("ssh-ed25519 AAAAuser")
        );
        assert_eq!(
            doc["ssh_keys"]["ed25519_public"],
            string("ssh-ed25519 AAAAhost")
        );
        assert!(
            doc["ssh_keys"]["ed25519_private"]
                .as_str()
                .unwrap()
                .ends_with("KEY-----\n")
        );
        assert!(
            doc["ca_certs"]["trusted"][0]
                .as_str()
                .unwrap()
                .contains("CERTIFICATE")
        );
        assert_eq!(doc.get("packages"), None);
    }

    #[test]
    fn merges_user_config_without_losing_ours() {
        let doc = render(Some(
            "#cloud-config\npackages: [jq]\nruncmd: [touch /x]\nusers: [{name: bob}]\nssh_keys: {ed25519_public: evil}\n",
        ))
        .unwrap();
        assert_eq!(doc["packages"][0], string("jq"));
        assert_eq!(doc["runcmd"][0], string("touch /x"));
        assert_eq!(doc["users"][0]["name"], string(ADMIN_USER));
        assert_eq!(doc["users"][1]["name"], string("bob"));
        assert_eq!(
            doc["ssh_keys"]["ed25519_public"],
            string("ssh-ed25519 AAAAhost")
        );
    }

    #[test]
    fn documents_merge_and_root_login_is_valid_yaml() {
        let merged =
            merge_documents(Some("packages: [jq]\n"), &root_login("ssh-ed25519 AAAA me")).unwrap();
        let doc: Value = yaml_serde::from_str(&merged).unwrap();
        assert_eq!(doc["packages"][0], string("jq"));
        assert_eq!(doc["disable_root"], Value::Bool(false));
        assert_eq!(doc["ssh_authorized_keys"][0], string("ssh-ed25519 AAAA me"));
    }

    #[test]
    fn refuses_non_mappings() {
        assert_eq!(
            render(Some("- a\n- b\n")).unwrap_err(),
            CloudInitError::NotAMapping
        );
        assert!(matches!(
            render(Some("a: [")).unwrap_err(),
            CloudInitError::Yaml(_)
        ));
    }
}
