//! Names, paths, tags and request bodies of the resources one azlin VM is made of, and the reading
//! of a VM back from ARM's answer. Pure functions: no I/O.
//!
//! Per VM, in resource group `RG`: network security group `NAME-nsg` (one inbound rule, TCP 22),
//! Standard static public IP `NAME-ip`, network interface `NAME-nic`, VM `NAME` and its OS disk
//! `NAME-osdisk`. Shared per resource group and region: virtual network `azlin-vnet-REGION` with
//! subnet `azlin-subnet`. Every resource carries `azlin-managed=true`, `azlin-vm=NAME` and
//! `azlin-request=ID` (the shared VNet and a group azlin created only `azlin-managed=true`).
//! Azure does not pass a VM's tags on to the OS disk it creates with it, so azlin tags the disk
//! with a `PATCH` once the VM exists ([`tags_update_body`]).
//!
//! The VM also carries `azlin-ip` (its static public address) and `azlin-host-key` (the SSH host
//! key azlin injected). That is what lets `list` build complete [`Vm`]s from ONE call: ARM's
//! subscription-wide VM list (`statusOnly=true`) returns tags and power state but no addresses,
//! and a Standard static IP does not change for the life of the VM, so the tag stays true.

use super::settings::ImageRef;
use azlin_core::cloudinit::ADMIN_USER;
use azlin_core::{ErrorKind, ProviderError, ProviderKind, Vm, VmName, VmState};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Marks every resource azlin made.
pub(crate) const TAG_MANAGED: &str = "azlin-managed";
/// The azlin VM name a resource belongs to.
pub(crate) const TAG_VM: &str = "azlin-vm";
/// The `vm.create.request` id that made a resource (the idempotency key).
pub(crate) const TAG_REQUEST: &str = "azlin-request";
/// On the VM: its public IP address.
pub(crate) const TAG_IP: &str = "azlin-ip";
/// On the VM: the SSH host public key azlin injected.
pub(crate) const TAG_HOST_KEY: &str = "azlin-host-key";

/// Subnet name in the shared VNet.
pub(crate) const SUBNET: &str = "azlin-subnet";

/// Azure's limit on `osProfile.customData` (the cloud-init user data), in bytes before base64:
/// "the maximum length of the binary array is 65535 bytes" (Compute REST reference, OSProfile).
/// ARM enforces it as base64 of at most 87,380 characters, so 64 KiB (65,536 bytes) is one byte
/// too many. The renderer of every provider's user data enforces the same limit.
pub const MAX_CUSTOM_DATA_BYTES: usize = azlin_core::cloudinit::MAX_USER_DATA_BYTES;

/// Azure's limits on tags.
const MAX_TAGS: usize = 50;
const MAX_TAG_NAME: usize = 512;
const MAX_TAG_VALUE: usize = 256;

/// ARM resource types azlin makes.
pub(crate) mod types {
    pub(crate) const VM: &str = "Microsoft.Compute/virtualMachines";
    pub(crate) const DISK: &str = "Microsoft.Compute/disks";
    pub(crate) const SNAPSHOT: &str = "Microsoft.Compute/snapshots";
    pub(crate) const NIC: &str = "Microsoft.Network/networkInterfaces";
    pub(crate) const PUBLIC_IP: &str = "Microsoft.Network/publicIPAddresses";
    pub(crate) const NSG: &str = "Microsoft.Network/networkSecurityGroups";
    pub(crate) const VNET: &str = "Microsoft.Network/virtualNetworks";
}

/// A subscription and resource group: where resource paths start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Scope {
    pub subscription: String,
    pub group: String,
}

impl Scope {
    /// `/subscriptions/SUB/resourceGroups/RG`
    pub(crate) fn group_path(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}",
            self.subscription, self.group
        )
    }

    /// `/subscriptions/SUB/resourceGroups/RG/providers/TYPE/NAME`
    pub(crate) fn path(&self, resource_type: &str, name: &str) -> String {
        format!("{}/providers/{resource_type}/{name}", self.group_path())
    }
}

/// The names of the resources of one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmNames {
    pub vm: String,
    pub nic: String,
    pub public_ip: String,
    pub nsg: String,
    pub os_disk: String,
}

impl VmNames {
    pub(crate) fn new(name: &str) -> VmNames {
        VmNames {
            vm: name.to_string(),
            nic: format!("{name}-nic"),
            public_ip: format!("{name}-ip"),
            nsg: format!("{name}-nsg"),
            os_disk: format!("{name}-osdisk"),
        }
    }
}

/// The shared virtual network of a region.
pub(crate) fn vnet_name(region: &str) -> String {
    format!("azlin-vnet-{region}")
}

/// Tags for a resource of VM `vm` made by `request_id`: the user's, then azlin's (which win).
pub(crate) fn tags(
    user: &BTreeMap<String, String>,
    vm: &str,
    request_id: &str,
) -> Map<String, Value> {
    let mut tags: Map<String, Value> = user.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    tags.insert(TAG_MANAGED.into(), json!("true"));
    tags.insert(TAG_VM.into(), json!(vm));
    tags.insert(TAG_REQUEST.into(), json!(request_id));
    tags
}

/// Refuses user tags Azure would refuse (before anything is created).
pub(crate) fn validate_user_tags(user: &BTreeMap<String, String>) -> Result<(), ProviderError> {
    // azlin adds up to 5 tags of its own.
    if user.len() + 5 > MAX_TAGS {
        return Err(ProviderError::new(
            ErrorKind::Usage,
            format!("too many tags: Azure allows {MAX_TAGS} per resource and azlin uses 5"),
        ));
    }
    for (k, v) in user {
        let bad_name = k.is_empty()
            || k.len() > MAX_TAG_NAME
            || k.chars()
                .any(|c| matches!(c, '<' | '>' | '%' | '&' | '\\' | '?' | '/'))
            || k.to_ascii_lowercase().starts_with("azure")
            || k.to_ascii_lowercase().starts_with("microsoft")
            || k.to_ascii_lowercase().starts_with("windows");
        if bad_name {
            return Err(ProviderError::new(
                ErrorKind::Usage,
                format!(
                    "invalid Azure tag name '{}': 1-{MAX_TAG_NAME} characters without < > % & \\ ? /, not starting with azure, microsoft or windows",
                    k.escape_default()
                ),
            ));
        }
        if v.len() > MAX_TAG_VALUE {
            return Err(ProviderError::new(
                ErrorKind::Usage,
                format!("the value of tag '{k}' is longer than Azure's {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    Ok(())
}

/// The body of a `PATCH` that sets a resource's tags (the OS disk's, after the VM made it).
pub(crate) fn tags_update_body(tags: &Map<String, Value>) -> Value {
    json!({ "tags": tags })
}

/// A resource group azlin creates.
pub(crate) fn resource_group_body(location: &str) -> Value {
    json!({ "location": location, "tags": { TAG_MANAGED: "true" } })
}

/// The shared virtual network with its one subnet.
pub(crate) fn vnet_body(location: &str) -> Value {
    json!({
        "location": location,
        "tags": { TAG_MANAGED: "true" },
        "properties": {
            "addressSpace": { "addressPrefixes": ["10.10.0.0/16"] },
            "subnets": [ { "name": SUBNET, "properties": { "addressPrefix": "10.10.0.0/20" } } ]
        }
    })
}

/// The VM's network security group: SSH in from `source_prefix` (`*` = anywhere).
pub(crate) fn nsg_body(location: &str, source_prefix: &str, tags: &Map<String, Value>) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "properties": {
            "securityRules": [ {
                "name": "azlin-ssh",
                "properties": {
                    "description": "SSH to the azlin VM",
                    "protocol": "Tcp",
                    "sourcePortRange": "*",
                    "destinationPortRange": "22",
                    "sourceAddressPrefix": source_prefix,
                    "destinationAddressPrefix": "*",
                    "access": "Allow",
                    "priority": 1000,
                    "direction": "Inbound"
                }
            } ]
        }
    })
}

/// A Standard, static IPv4 public address.
pub(crate) fn public_ip_body(location: &str, tags: &Map<String, Value>) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "sku": { "name": "Standard", "tier": "Regional" },
        "properties": {
            "publicIPAllocationMethod": "Static",
            "publicIPAddressVersion": "IPv4"
        }
    })
}

/// The network interface: subnet, public IP and NSG.
pub(crate) fn nic_body(
    location: &str,
    subnet_id: &str,
    public_ip_id: &str,
    nsg_id: &str,
    tags: &Map<String, Value>,
) -> Value {
    json!({
        "location": location,
        "tags": tags,
        "properties": {
            "ipConfigurations": [ {
                "name": "ipconfig1",
                "properties": {
                    "privateIPAllocationMethod": "Dynamic",
                    "subnet": { "id": subnet_id },
                    "publicIPAddress": { "id": public_ip_id }
                }
            } ],
            "networkSecurityGroup": { "id": nsg_id }
        }
    })
}

/// What the VM body is made from.
pub(crate) struct VmBody<'a> {
    pub location: &'a str,
    pub size: &'a str,
    pub image: &'a ImageRef,
    pub computer_name: &'a str,
    pub admin_public_key: &'a str,
    /// Base64 of the cloud-init user data.
    pub custom_data: &'a str,
    pub nic_id: &'a str,
    pub os_disk: &'a str,
    pub tags: &'a Map<String, Value>,
}

/// The VM: image, size, `azureuser` with an SSH key only, cloud-init as `customData`, one NIC.
pub(crate) fn vm_body(b: &VmBody<'_>) -> Value {
    json!({
        "location": b.location,
        "tags": b.tags,
        "properties": {
            "hardwareProfile": { "vmSize": b.size },
            "storageProfile": {
                "imageReference": {
                    "publisher": b.image.publisher,
                    "offer": b.image.offer,
                    "sku": b.image.sku,
                    "version": b.image.version
                },
                "osDisk": {
                    "name": b.os_disk,
                    "createOption": "FromImage",
                    "caching": "ReadWrite",
                    "managedDisk": { "storageAccountType": "StandardSSD_LRS" },
                    "deleteOption": "Detach"
                }
            },
            "osProfile": {
                "computerName": b.computer_name,
                "adminUsername": ADMIN_USER,
                "customData": b.custom_data,
                "linuxConfiguration": {
                    "disablePasswordAuthentication": true,
                    "provisionVMAgent": true,
                    "ssh": {
                        "publicKeys": [ {
                            "path": format!("/home/{ADMIN_USER}/.ssh/authorized_keys"),
                            "keyData": b.admin_public_key
                        } ]
                    }
                }
            },
            "networkProfile": {
                "networkInterfaces": [ { "id": b.nic_id, "properties": { "primary": true } } ]
            }
        }
    })
}

/// The value of tag `key` of an ARM resource body.
pub(crate) fn tag<'a>(resource: &'a Value, key: &str) -> Option<&'a str> {
    resource
        .get("tags")?
        .as_object()?
        .iter()
        .find_map(|(k, v)| {
            // ARM keeps tag names as given but compares them case-insensitively.
            k.eq_ignore_ascii_case(key).then(|| v.as_str()).flatten()
        })
}

/// Whether a resource was made by azlin.
pub(crate) fn is_azlin(resource: &Value) -> bool {
    tag(resource, TAG_MANAGED).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The resource group named in a resource id.
pub(crate) fn group_of(id: &str) -> Option<&str> {
    let mut parts = id.split('/');
    while let Some(p) = parts.next() {
        if p.eq_ignore_ascii_case("resourceGroups") {
            return parts.next().filter(|s| !s.is_empty());
        }
    }
    None
}

/// The VM state from `provisioningState` and the `PowerState/…` instance-view status.
pub(crate) fn state_of(provisioning: Option<&str>, power: Option<&str>) -> VmState {
    let provisioning = provisioning.unwrap_or("").to_ascii_lowercase();
    match provisioning.as_str() {
        "deleting" => return VmState::Deleting,
        "failed" => return VmState::Failed,
        "creating" => return VmState::Creating,
        _ => {}
    }
    match power.map(str::to_ascii_lowercase).as_deref() {
        Some("running" | "starting") => VmState::Running,
        Some("stopped" | "stopping" | "deallocated" | "deallocating") => VmState::Stopped,
        _ => VmState::Unknown,
    }
}

/// A [`Vm`] from an item of ARM's VM list (`statusOnly=true`), if azlin made it.
pub(crate) fn vm_from_arm(item: &Value, subscription: &str) -> Option<Vm> {
    if !is_azlin(item) {
        return None;
    }
    let arm_name = item.get("name").and_then(Value::as_str).unwrap_or("");
    let name = tag(item, TAG_VM).unwrap_or(arm_name);
    let name = match VmName::parse(name) {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "skipping an azlin-tagged VM with an unusable name");
            return None;
        }
    };
    let id = item.get("id").and_then(Value::as_str).unwrap_or("");
    let statuses = item
        .pointer("/properties/instanceView/statuses")
        .and_then(Value::as_array);
    let status = |prefix: &str| {
        statuses.and_then(|s| {
            s.iter()
                .filter_map(|s| s.get("code").and_then(Value::as_str))
                .find_map(|c| c.strip_prefix(prefix))
        })
    };
    let provisioning = item
        .pointer("/properties/provisioningState")
        .and_then(Value::as_str)
        .or_else(|| status("ProvisioningState/"));
    let power = status("PowerState/");
    let group = group_of(id).unwrap_or("");
    let scope = Scope {
        subscription: subscription.to_string(),
        group: group.to_string(),
    };
    let names = VmNames::new(arm_name);
    let mut details = BTreeMap::new();
    details.insert("subscription".into(), subscription.to_string());
    details.insert("resource_group".into(), group.to_string());
    if let Some(l) = item.get("location").and_then(Value::as_str) {
        details.insert("location".into(), l.to_string());
    }
    if let Some(s) = item
        .pointer("/properties/hardwareProfile/vmSize")
        .and_then(Value::as_str)
    {
        details.insert("size".into(), s.to_string());
    }
    details.insert("vm_id".into(), id.to_string());
    details.insert("nic_id".into(), scope.path(types::NIC, &names.nic));
    details.insert(
        "public_ip_id".into(),
        scope.path(types::PUBLIC_IP, &names.public_ip),
    );
    details.insert("nsg_id".into(), scope.path(types::NSG, &names.nsg));
    details.insert("os_disk_id".into(), scope.path(types::DISK, &names.os_disk));
    if let Some(p) = power {
        details.insert("power_state".into(), p.to_string());
    }
    if let Some(p) = provisioning {
        details.insert("provisioning_state".into(), p.to_string());
    }
    Some(Vm {
        name,
        provider: ProviderKind::Azure,
        state: state_of(provisioning, power),
        address: tag(item, TAG_IP).unwrap_or("").to_string(),
        ssh_port: 22,
        user: ADMIN_USER.to_string(),
        host_key: tag(item, TAG_HOST_KEY).unwrap_or("").to_string(),
        request_id: tag(item, TAG_REQUEST).unwrap_or("").to_string(),
        details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn azlin_tags_win_over_user_tags() {
        let user = BTreeMap::from([
            ("team".to_string(), "infra".to_string()),
            (TAG_VM.to_string(), "evil".to_string()),
        ]);
        let t = tags(&user, "dev", "r1");
        assert_eq!(t["team"], "infra");
        assert_eq!(t[TAG_VM], "dev");
        assert_eq!(t[TAG_MANAGED], "true");
        assert_eq!(t[TAG_REQUEST], "r1");
    }

    #[test]
    fn bad_user_tags_are_refused() {
        for k in ["a/b", "", "azure-x", "x?"] {
            let user = BTreeMap::from([(k.to_string(), "v".to_string())]);
            assert!(validate_user_tags(&user).is_err(), "{k}");
        }
        let long = BTreeMap::from([("k".to_string(), "v".repeat(300))]);
        assert!(validate_user_tags(&long).is_err());
    }

    #[test]
    fn states_map_from_provisioning_and_power() {
        assert_eq!(
            state_of(Some("Succeeded"), Some("running")),
            VmState::Running
        );
        assert_eq!(
            state_of(Some("Succeeded"), Some("deallocated")),
            VmState::Stopped
        );
        assert_eq!(state_of(Some("Creating"), None), VmState::Creating);
        assert_eq!(state_of(Some("Failed"), Some("running")), VmState::Failed);
        assert_eq!(
            state_of(Some("Deleting"), Some("running")),
            VmState::Deleting
        );
        assert_eq!(state_of(None, None), VmState::Unknown);
    }

    #[test]
    fn list_items_become_vms_only_when_tagged() {
        let item = json!({
            "id": "/subscriptions/s/resourceGroups/rg1/providers/Microsoft.Compute/virtualMachines/dev",
            "name": "dev",
            "location": "westus2",
            "tags": { "azlin-managed": "true", "azlin-vm": "dev", "azlin-request": "r1", "azlin-ip": "203.0.113.9", "azlin-host-key": "ssh-ed25519 AAAAhost" },
            "properties": { "provisioningState": "Succeeded", "instanceView": { "statuses": [
                { "code": "ProvisioningState/succeeded" }, { "code": "PowerState/deallocated" } ] } }
        });
        let vm = vm_from_arm(&item, "s").unwrap();
        assert_eq!(vm.name.as_str(), "dev");
        assert_eq!(vm.state, VmState::Stopped);
        assert_eq!(vm.address, "203.0.113.9");
        assert_eq!(vm.host_key, "ssh-ed25519 AAAAhost");
        assert_eq!(vm.request_id, "r1");
        assert_eq!(vm.details["resource_group"], "rg1");
        assert!(vm.details["nic_id"].ends_with(
            "/resourceGroups/rg1/providers/Microsoft.Network/networkInterfaces/dev-nic"
        ));
        let mut other = item.clone();
        other["tags"] = json!({ "owner": "someone" });
        assert!(vm_from_arm(&other, "s").is_none());
    }

    #[test]
    fn group_is_read_from_ids() {
        assert_eq!(
            group_of("/subscriptions/s/resourcegroups/RG/providers/x/y/z"),
            Some("RG")
        );
        assert_eq!(group_of("/subscriptions/s"), None);
    }
}
