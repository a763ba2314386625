//! What the double checks in request bodies, and Azure's refusals to delete resources in use.

use super::model::*;
use base64::Engine;
use serde_json::{Value, json};

/// What ARM checks of `osProfile.customData`: base64 of at most this many characters, that is
/// the 65,535 bytes of the REST reference ("the maximum length of the binary array is 65535
/// bytes") once encoded. ARM's refusal names this number.
const MAX_CUSTOM_DATA_CHARS: usize = 87_380;

impl Model {
    pub(crate) fn validate(&self, kind: Kind, body: &Value) -> Result<(), Resp> {
        let invalid = |target: &str, message: &str| {
            Err(Resp::json(
                400,
                json!({ "error": { "code": "InvalidParameter", "message": message, "target": target } }),
            ))
        };
        let reference = |pointer: &str, want: Kind| -> Result<(), Resp> {
            match str_at(body, pointer) {
                Some(id) if self.exists(id, want) => Ok(()),
                Some(id) => Err(Resp::error(
                    400,
                    "InvalidResourceReference",
                    format!(
                        "Resource {id} referenced by resource was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
                    ),
                )),
                None => Ok(()),
            }
        };
        match kind {
            Kind::VirtualNetwork => {
                let prefixes = body
                    .pointer("/properties/addressSpace/addressPrefixes")
                    .and_then(Value::as_array);
                if prefixes.is_none_or(|p| p.is_empty()) {
                    return invalid(
                        "addressSpace",
                        "The virtual network must have at least one address prefix.",
                    );
                }
                for s in body
                    .pointer("/properties/subnets")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if s.get("name").and_then(Value::as_str).is_none()
                        || str_at(s, "/properties/addressPrefix").is_none()
                    {
                        return invalid(
                            "subnets",
                            "Each subnet needs a name and properties.addressPrefix.",
                        );
                    }
                }
            }
            Kind::NetworkSecurityGroup => {
                for r in body
                    .pointer("/properties/securityRules")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let p = |k: &str| r.pointer(&format!("/properties/{k}"));
                    let priority = p("priority").and_then(Value::as_u64).unwrap_or(0);
                    if r.get("name").is_none()
                        || p("protocol").is_none()
                        || p("access").is_none()
                        || p("direction").is_none()
                        || !(100..=4096).contains(&priority)
                    {
                        return Err(Resp::error(
                            400,
                            "SecurityRuleInvalidPriority",
                            "Security rule has invalid Priority. Value provided: 0 Allowed range 100-4096, and protocol, access, direction are required.",
                        ));
                    }
                }
            }
            Kind::Snapshot | Kind::Disk => {
                let option = str_at(body, "/properties/creationData/createOption");
                match (kind, option) {
                    // A snapshot copies a disk; a disk may copy a snapshot (or a disk).
                    (Kind::Snapshot, Some(o)) if o.eq_ignore_ascii_case("Copy") => {
                        reference("/properties/creationData/sourceResourceId", Kind::Disk)?;
                    }
                    (Kind::Snapshot, _) => {
                        return invalid(
                            "creationData.createOption",
                            "A snapshot is made with createOption Copy from a disk.",
                        );
                    }
                    (_, Some(o)) if o.eq_ignore_ascii_case("Copy") => {
                        let source = str_at(body, "/properties/creationData/sourceResourceId");
                        let found = source.is_some_and(|id| {
                            self.exists(id, Kind::Snapshot) || self.exists(id, Kind::Disk)
                        });
                        if !found {
                            return Err(Resp::error(
                                400,
                                "InvalidResourceReference",
                                format!(
                                    "Resource {} referenced by resource was not found.",
                                    source.unwrap_or("(none)")
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
            Kind::PublicIpAddress => {
                let sku = str_at(body, "/sku/name").unwrap_or("Basic");
                let method =
                    str_at(body, "/properties/publicIPAllocationMethod").unwrap_or("Dynamic");
                if sku.eq_ignore_ascii_case("Standard") && !method.eq_ignore_ascii_case("Static") {
                    return Err(Resp::error(
                        400,
                        "StandardSkuPublicIPAddressesMustBeStatic",
                        "Standard sku publicIp must have AllocationMethod set to Static.",
                    ));
                }
            }
            Kind::NetworkInterface => {
                let configs = body
                    .pointer("/properties/ipConfigurations")
                    .and_then(Value::as_array);
                let Some(configs) = configs.filter(|c| !c.is_empty()) else {
                    return invalid(
                        "ipConfigurations",
                        "A network interface needs at least one IP configuration.",
                    );
                };
                for c in configs {
                    match str_at(c, "/properties/subnet/id") {
                        Some(subnet) => {
                            let vnet = subnet.to_ascii_lowercase();
                            let (vnet_id, subnet_name) = match vnet.split_once("/subnets/") {
                                Some((v, s)) => (v.to_string(), s.to_string()),
                                None => (vnet.clone(), String::new()),
                            };
                            let found = self.resources.get(&vnet_id).is_some_and(|v| {
                                v.body
                                    .pointer("/properties/subnets")
                                    .and_then(Value::as_array)
                                    .is_some_and(|s| {
                                        s.iter().any(|s| {
                                            s.get("name").and_then(Value::as_str).map(lower)
                                                == Some(subnet_name.clone())
                                        })
                                    })
                            });
                            if !found {
                                return Err(Resp::error(
                                    400,
                                    "InvalidResourceReference",
                                    format!(
                                        "Resource {subnet} referenced by resource was not found."
                                    ),
                                ));
                            }
                        }
                        None => return invalid("subnet", "An IP configuration needs a subnet."),
                    }
                    if let Some(ip) = str_at(c, "/properties/publicIPAddress/id")
                        && !self.exists(ip, Kind::PublicIpAddress)
                    {
                        return Err(Resp::error(
                            400,
                            "InvalidResourceReference",
                            format!("Resource {ip} referenced by resource was not found."),
                        ));
                    }
                }
                reference(
                    "/properties/networkSecurityGroup/id",
                    Kind::NetworkSecurityGroup,
                )?;
            }
            Kind::VirtualMachine => {
                let required = [
                    (
                        "/properties/hardwareProfile/vmSize",
                        "hardwareProfile.vmSize",
                    ),
                    (
                        "/properties/storageProfile/imageReference/publisher",
                        "imageReference.publisher",
                    ),
                    (
                        "/properties/storageProfile/imageReference/offer",
                        "imageReference.offer",
                    ),
                    (
                        "/properties/storageProfile/imageReference/sku",
                        "imageReference.sku",
                    ),
                    (
                        "/properties/osProfile/adminUsername",
                        "osProfile.adminUsername",
                    ),
                    (
                        "/properties/osProfile/computerName",
                        "osProfile.computerName",
                    ),
                ];
                for (pointer, target) in required {
                    if str_at(body, pointer).is_none_or(str::is_empty) {
                        return invalid(
                            target,
                            &format!("Required parameter '{target}' is missing (null)."),
                        );
                    }
                }
                let user = str_at(body, "/properties/osProfile/adminUsername").unwrap_or_default();
                let linux = body.pointer("/properties/osProfile/linuxConfiguration");
                let no_password = linux
                    .and_then(|l| l.get("disablePasswordAuthentication"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let keys = linux
                    .and_then(|l| l.pointer("/ssh/publicKeys"))
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if no_password && keys.is_empty() {
                    return invalid(
                        "linuxConfiguration",
                        "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
                    );
                }
                if !no_password && str_at(body, "/properties/osProfile/adminPassword").is_none() {
                    return invalid(
                        "adminPassword",
                        "Required parameter 'adminPassword' is missing (null).",
                    );
                }
                let expected = format!("/home/{user}/.ssh/authorized_keys");
                for k in &keys {
                    if str_at(k, "/path") != Some(expected.as_str()) {
                        return invalid(
                            "linuxConfiguration.ssh.publicKeys.path",
                            &format!(
                                "Destination path for SSH public keys is currently limited to its default value {expected} due to a known issue in Linux provisioning agent."
                            ),
                        );
                    }
                    if str_at(k, "/keyData").is_none_or(str::is_empty) {
                        return invalid(
                            "linuxConfiguration.ssh.publicKeys.keyData",
                            "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
                        );
                    }
                }
                if let Some(data) = str_at(body, "/properties/osProfile/customData")
                    && (data.len() > MAX_CUSTOM_DATA_CHARS
                        || base64::engine::general_purpose::STANDARD
                            .decode(data)
                            .is_err())
                {
                    return invalid(
                        "customData",
                        &format!(
                            "Custom data in OSProfile must be in Base64 encoding and with a maximum length of {MAX_CUSTOM_DATA_CHARS} characters."
                        ),
                    );
                }
                let nics = body
                    .pointer("/properties/networkProfile/networkInterfaces")
                    .and_then(Value::as_array);
                let Some(nics) = nics.filter(|n| !n.is_empty()) else {
                    return invalid(
                        "networkProfile",
                        "Virtual machine must have at least one network interface.",
                    );
                };
                for n in nics {
                    match str_at(n, "/id") {
                        Some(id) if self.exists(id, Kind::NetworkInterface) => {}
                        Some(id) => {
                            return Err(Resp::error(
                                404,
                                "NotFound",
                                format!("Resource {id} not found."),
                            ));
                        }
                        None => {
                            return invalid(
                                "networkProfile.networkInterfaces",
                                "Network interface id is missing.",
                            );
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Resources that still use `key`, as Azure would report them.
    pub(crate) fn users_of(&self, kind: Kind, key: &str) -> Option<(u16, &'static str, String)> {
        let target = &self.resources.get(key)?.id;
        let quoted = format!("\"{}\"", lower(target));
        let nested = format!("\"{}/", lower(target));
        let referrer = |from: Kind| {
            self.resources.values().find(|r| {
                if r.kind != from || lower(&r.id) == key {
                    return false;
                }
                let text = lower(&r.body.to_string());
                text.contains(&quoted) || text.contains(&nested)
            })
        };
        match kind {
            Kind::NetworkInterface => referrer(Kind::VirtualMachine).map(|vm| {
                (400, "NicInUse", format!("Network Interface {target} is used by existing resource {}. In order to delete the network interface, it must be dissociated from the resource.", vm.id))
            }),
            Kind::PublicIpAddress => referrer(Kind::NetworkInterface).map(|nic| {
                (400, "PublicIPAddressCannotBeDeleted", format!("Public IP address {target} can not be deleted since it is still allocated to resource {}/ipConfigurations.", nic.id))
            }),
            Kind::NetworkSecurityGroup => referrer(Kind::NetworkInterface).map(|nic| {
                (400, "InUseNetworkSecurityGroupCannotBeDeleted", format!("Network security group {target} cannot be deleted because it is in use by the following resources: {}.", nic.id))
            }),
            Kind::VirtualNetwork => referrer(Kind::NetworkInterface).map(|nic| {
                (400, "InUseSubnetCannotBeDeleted", format!("Subnet of {target} is in use by {}/ipConfigurations and cannot be deleted.", nic.id))
            }),
            Kind::Disk => {
                let by = self.resources.get(key)?.body.get("managedBy")?.as_str()?;
                Some((409, "OperationNotAllowed", format!("Disk {target} is attached to VM {by}.")))
            }
            Kind::VirtualMachine | Kind::Snapshot => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A VM body the double accepts but for `customData` of `bytes` bytes.
    fn vm_with_custom_data(bytes: usize) -> Value {
        json!({
            "location": "westus2",
            "properties": {
                "hardwareProfile": { "vmSize": "Standard_B2s" },
                "storageProfile": { "imageReference": { "publisher": "p", "offer": "o", "sku": "s" } },
                "osProfile": {
                    "adminUsername": "azureuser",
                    "computerName": "vm",
                    "customData": base64::engine::general_purpose::STANDARD.encode(vec![b'x'; bytes]),
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": true,
                        "ssh": { "publicKeys": [ { "path": "/home/azureuser/.ssh/authorized_keys", "keyData": "ssh-ed25519 AAAA" } ] }
                    }
                },
                "networkProfile": { "networkInterfaces": [ { "id": "/nic" } ] }
            }
        })
    }

    /// Whether `validate` refused `body` for its customData.
    fn custom_data_refused(body: &Value) -> bool {
        let model = Model::new("sub".into(), "token".into());
        match model.validate(Kind::VirtualMachine, body) {
            Err(resp) => resp
                .body
                .is_some_and(|b| b["error"]["target"] == "customData"),
            Ok(()) => false,
        }
    }

    #[test]
    fn custom_data_is_limited_to_65535_bytes_as_on_azure() {
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .encode(vec![0u8; 65_535])
                .len(),
            MAX_CUSTOM_DATA_CHARS
        );
        assert!(!custom_data_refused(&vm_with_custom_data(65_535)));
        assert!(custom_data_refused(&vm_with_custom_data(65_536)));
        let mut not_base64 = vm_with_custom_data(3);
        not_base64["properties"]["osProfile"]["customData"] = json!("#cloud-config");
        assert!(custom_data_refused(&not_base64));
    }
}
