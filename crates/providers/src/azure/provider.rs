//! [`AzureProvider`]: the [`VmProvider`] over ARM. See the module docs of [`super`] for the design.

use super::arm::{Arm, ArmError, COMPUTE_API, DISKS_API, NETWORK_API, RESOURCES_API};
use super::auth::{AzCli, Credentials, INSTALL_HINT};
use super::resources::{
    self, MAX_CUSTOM_DATA_BYTES, Scope, TAG_HOST_KEY, TAG_IP, TAG_REQUEST, TAG_VM, VmBody, VmNames,
    is_azlin, tag, types,
};
use super::settings::{AzureSettings, validate_resource_group};
use async_trait::async_trait;
use azlin_core::{
    CreateRequest, DeleteReport, ErrorKind, ProviderError, Region, Size, Snapshot, Tool, Vm,
    VmName, VmProvider, VmState,
};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// Azure VMs through the ARM REST API, with credentials from `az`.
#[derive(Debug)]
pub struct AzureProvider {
    settings: AzureSettings,
    pub(super) arm: Arm,
}

/// One resource of a VM, in the order they are deleted.
struct Part {
    what: &'static str,
    resource_type: &'static str,
    name: String,
    api: &'static str,
}

/// The OS disk of a VM being removed.
struct OsDisk {
    /// Its name in the VM's resource group.
    name: String,
    /// Whether azlin's VM named it as its OS disk and it was attached to that VM (seen before the
    /// VM was deleted): then it is the VM's own disk even without azlin's tags.
    attached_to_ours: bool,
}

/// What removing a VM's resources did.
#[derive(Default)]
struct Removal {
    removed: Vec<String>,
    failed: Vec<(String, ArmError)>,
    location: Option<String>,
}

impl AzureProvider {
    /// A provider with `settings`. Runs nothing yet: `az` is first run by
    /// [`VmProvider::authenticate`] or the first operation.
    pub fn new(settings: AzureSettings) -> Result<AzureProvider, ProviderError> {
        settings.validate()?;
        let az = AzCli::new(settings.az_program.clone(), settings.search_path.clone());
        let credentials = Arc::new(Credentials::new(az, settings.subscription.clone()));
        let arm = Arm::new(&settings.endpoint, credentials)?;
        Ok(AzureProvider { settings, arm })
    }

    /// The settings in use.
    pub fn settings(&self) -> &AzureSettings {
        &self.settings
    }

    async fn subscription(&self) -> Result<String, ProviderError> {
        Ok(self
            .arm
            .credentials()
            .account()
            .await?
            .subscription_id
            .clone())
    }

    fn scope(subscription: &str, group: &str) -> Scope {
        Scope {
            subscription: subscription.to_string(),
            group: group.to_string(),
        }
    }

    /// Where SSH may come from: the configured prefix, else anywhere, with a warning saying so.
    fn ssh_source(&self, vm: &str) -> &str {
        match self.settings.ssh_source_prefix.as_deref() {
            Some(prefix) => prefix,
            None => {
                tracing::warn!(
                    vm,
                    "SSH (port 22) of this VM is open to any address ('*'): azlin does not know yours; set ssh_source_prefix = \"YOUR.ADDRESS/32\" under [azure] in the config to allow only it"
                );
                "*"
            }
        }
    }

    /// The VM named `name`, from the one-call list.
    async fn find(&self, name: &VmName) -> Result<Option<Vm>, ProviderError> {
        Ok(self.list().await?.into_iter().find(|vm| &vm.name == name))
    }

    /// The VM named `name` and the scope of its resource group.
    pub(super) async fn require(&self, name: &VmName) -> Result<(Vm, Scope), ProviderError> {
        let vm = self
            .find(name)
            .await?
            .ok_or_else(|| ProviderError::not_found(name))?;
        let subscription = self.subscription().await?;
        let group = vm
            .details
            .get("resource_group")
            .cloned()
            .unwrap_or_else(|| self.settings.resource_group.clone());
        Ok((vm, Self::scope(&subscription, &group)))
    }

    /// Checks a request before anything is sent anywhere.
    fn check_request(&self, request: &CreateRequest) -> Result<(Size, String), ProviderError> {
        let spec = &request.spec;
        let usage = |m: String| ProviderError::new(ErrorKind::Usage, m);
        if spec.region == Region::LOCAL || Region::parse(&spec.region).is_err() {
            return Err(usage(format!(
                "region '{}' is not an Azure region: choose one with --region, e.g. {}",
                spec.region.escape_default(),
                Region::DEFAULT_AZURE
            )));
        }
        let size = Size::lookup(&spec.size).map_err(|e| usage(e.to_string()))?;
        if request.user_data.len() > MAX_CUSTOM_DATA_BYTES {
            return Err(usage(format!(
                "cloud-init user data is {} bytes; Azure accepts at most {MAX_CUSTOM_DATA_BYTES} bytes of customData: make the --cloud-init file smaller",
                request.user_data.len()
            )));
        }
        if request.admin_public_key.trim().is_empty() {
            return Err(ProviderError::new(
                ErrorKind::KeySetup,
                "no SSH public key for azureuser: Azure VMs are created with key login only",
            ));
        }
        resources::validate_user_tags(&spec.tags)?;
        let group = if spec.resource_group.is_empty() {
            self.settings.resource_group.clone()
        } else {
            spec.resource_group.clone()
        };
        validate_resource_group(&group)?;
        Ok((size, group))
    }

    /// Creates every resource of the VM, in dependency order, each waited for.
    async fn provision(
        &self,
        request: &CreateRequest,
        scope: &Scope,
        size: Size,
    ) -> Result<Vm, ProviderError> {
        let spec = &request.spec;
        let name = spec.name.as_str();
        let location = spec.region.as_str();
        let names = VmNames::new(name);
        let tags = resources::tags(&spec.tags, name, &request.request_id);
        let arm = &self.arm;
        let fail = |doing: String| move |e: ArmError| e.into_provider(&doing);

        if arm
            .get(&scope.group_path(), RESOURCES_API)
            .await
            .map_err(fail(format!("reading resource group {}", scope.group)))?
            .is_none()
        {
            tracing::info!(group = %scope.group, location, "creating resource group");
            arm.put(
                &scope.group_path(),
                RESOURCES_API,
                &resources::resource_group_body(location),
            )
            .await
            .map_err(fail(format!("creating resource group {}", scope.group)))?;
        }

        // The per-VM NSG and IP come before the shared VNet: while they exist, a concurrent
        // delete of another VM sees this one and keeps the shared VNet.
        let source = self.ssh_source(name);
        let nsg_path = scope.path(types::NSG, &names.nsg);
        tracing::info!(vm = name, nsg = %names.nsg, source, "creating network security group (SSH 22)");
        arm.put(
            &nsg_path,
            NETWORK_API,
            &resources::nsg_body(location, source, &tags),
        )
        .await
        .map_err(fail(format!(
            "creating network security group {}",
            names.nsg
        )))?;

        let ip_path = scope.path(types::PUBLIC_IP, &names.public_ip);
        tracing::info!(vm = name, ip = %names.public_ip, "creating public IP address");
        let ip = arm
            .put(
                &ip_path,
                NETWORK_API,
                &resources::public_ip_body(location, &tags),
            )
            .await
            .map_err(fail(format!(
                "creating public IP address {}",
                names.public_ip
            )))?;
        let address = ip
            .pointer("/properties/ipAddress")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| {
                ProviderError::new(
                    ErrorKind::Provision,
                    format!("Azure assigned no address to public IP {}", names.public_ip),
                )
            })?
            .to_string();

        let vnet = resources::vnet_name(location);
        let vnet_path = scope.path(types::VNET, &vnet);
        if arm
            .get(&vnet_path, NETWORK_API)
            .await
            .map_err(fail(format!("reading virtual network {vnet}")))?
            .is_none()
        {
            tracing::info!(vnet = %vnet, location, "creating virtual network");
            arm.put(&vnet_path, NETWORK_API, &resources::vnet_body(location))
                .await
                .map_err(fail(format!("creating virtual network {vnet}")))?;
        }

        let nic_path = scope.path(types::NIC, &names.nic);
        tracing::info!(vm = name, nic = %names.nic, "creating network interface");
        arm.put(
            &nic_path,
            NETWORK_API,
            &resources::nic_body(
                location,
                &format!("{vnet_path}/subnets/{}", resources::SUBNET),
                &ip_path,
                &nsg_path,
                &tags,
            ),
        )
        .await
        .map_err(fail(format!("creating network interface {}", names.nic)))?;

        let mut vm_tags = tags.clone();
        vm_tags.insert(TAG_IP.into(), Value::String(address.clone()));
        let host_key = short_key(&request.host_public_key);
        if !host_key.is_empty() && host_key.len() <= 256 {
            vm_tags.insert(TAG_HOST_KEY.into(), Value::String(host_key));
        } else if !host_key.is_empty() {
            tracing::warn!(
                vm = name,
                "host key longer than an Azure tag value; `list` will not show it"
            );
        }
        let custom_data =
            base64::engine::general_purpose::STANDARD.encode(request.user_data.as_bytes());
        let body = resources::vm_body(&VmBody {
            location,
            size: size.name,
            image: &self.settings.image,
            computer_name: name,
            admin_public_key: request.admin_public_key.trim(),
            custom_data: &custom_data,
            nic_id: &nic_path,
            os_disk: &names.os_disk,
            tags: &vm_tags,
        });
        tracing::info!(vm = name, size = size.name, image = %self.settings.image.urn(), location, "creating virtual machine");
        let created = arm
            .put(&scope.path(types::VM, name), COMPUTE_API, &body)
            .await
            .map_err(fail(format!("creating virtual machine {name}")))?;
        // Azure gives the OS disk none of the VM's tags: azlin's go on it now, so that only a
        // disk azlin made is ever deleted as this VM's.
        let disk = os_disk_name(&created).unwrap_or(&names.os_disk);
        tracing::info!(vm = name, disk, "tagging the OS disk");
        arm.patch(
            &scope.path(types::DISK, disk),
            DISKS_API,
            &resources::tags_update_body(&tags),
        )
        .await
        .map_err(fail(format!("tagging OS disk {disk}")))?;
        let subscription = &scope.subscription;
        let mut vm = resources::vm_from_arm(&created, subscription).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::Provision,
                format!("Azure answered the creation of VM {name} with an unexpected body"),
            )
        })?;
        vm.state = VmState::Running;
        vm.address = address;
        vm.host_key = request.host_public_key.clone();
        Ok(vm)
    }

    /// The OS disk named by azlin's VM `vm` (an ARM body), and whether it is attached to it.
    async fn os_disk_of(&self, scope: &Scope, vm: &Value) -> Option<OsDisk> {
        let name = os_disk_name(vm)?.to_string();
        let vm_id = vm.get("id").and_then(Value::as_str)?;
        let attached_to_ours = match self
            .arm
            .get(&scope.path(types::DISK, &name), DISKS_API)
            .await
        {
            Ok(Some(disk)) => managed_by(&disk).is_some_and(|by| by.eq_ignore_ascii_case(vm_id)),
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(disk = %name, error = %e, "cannot read the OS disk of the VM");
                false
            }
        };
        Some(OsDisk {
            name,
            attached_to_ours,
        })
    }

    /// Deletes OS disk `disk` of VM `name` when it is that VM's (see [`OsDisk`] and the tags) and
    /// no longer attached to anything.
    async fn remove_os_disk(&self, scope: &Scope, name: &str, disk: OsDisk, out: &mut Removal) {
        let path = scope.path(types::DISK, &disk.name);
        let label = format!("OS disk {}", disk.name);
        let body = match self.arm.get(&path, DISKS_API).await {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(e) => {
                out.failed.push((label, e));
                return;
            }
        };
        let tagged = is_azlin(&body) && tag(&body, TAG_VM) == Some(name);
        if !tagged && !disk.attached_to_ours {
            tracing::warn!(resource = %label, "exists but was not made by azlin for this VM; left alone");
            return;
        }
        if managed_by(&body).is_some() {
            tracing::warn!(resource = %label, "still attached to a VM; left alone");
            return;
        }
        tracing::info!(resource = %label, "deleting");
        match self.arm.delete(&path, DISKS_API).await {
            Ok(_) => out.removed.push(label),
            Err(e) => out.failed.push((label, e)),
        }
    }

    /// Deletes the resources of VM `name` in `scope`, VM first and disk last, each waited for.
    /// Resources that exist but were not made by azlin for this VM are left alone.
    async fn remove_vm_resources(&self, scope: &Scope, name: &str) -> Removal {
        let names = VmNames::new(name);
        let mut out = Removal::default();
        let mut disk = OsDisk {
            name: names.os_disk.clone(),
            attached_to_ours: false,
        };
        let parts = [
            Part {
                what: "virtual machine",
                resource_type: types::VM,
                name: names.vm.clone(),
                api: COMPUTE_API,
            },
            Part {
                what: "network interface",
                resource_type: types::NIC,
                name: names.nic.clone(),
                api: NETWORK_API,
            },
            Part {
                what: "public IP address",
                resource_type: types::PUBLIC_IP,
                name: names.public_ip.clone(),
                api: NETWORK_API,
            },
            Part {
                what: "network security group",
                resource_type: types::NSG,
                name: names.nsg.clone(),
                api: NETWORK_API,
            },
        ];
        for part in parts {
            let path = scope.path(part.resource_type, &part.name);
            let label = format!("{} {}", part.what, part.name);
            let body = match self.arm.get(&path, part.api).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    out.failed.push((label, e));
                    continue;
                }
            };
            if !is_azlin(&body) || tag(&body, TAG_VM) != Some(name) {
                tracing::warn!(resource = %label, "exists but was not made by azlin for this VM; left alone");
                continue;
            }
            if out.location.is_none() {
                out.location = body
                    .get("location")
                    .and_then(Value::as_str)
                    .map(str::to_string);
            }
            // Before the VM goes: afterwards its disk is attached to nothing.
            if part.resource_type == types::VM
                && let Some(d) = self.os_disk_of(scope, &body).await
            {
                disk = d;
            }
            tracing::info!(resource = %label, "deleting");
            match self.arm.delete(&path, part.api).await {
                Ok(_) => out.removed.push(label),
                Err(e) => out.failed.push((label, e)),
            }
        }
        self.remove_os_disk(scope, name, disk, &mut out).await;
        out
    }

    /// Deletes the shared VNet of `location` when no other azlin resource of that region is left
    /// in the group, and the group itself when azlin created it and it is then empty. Best
    /// effort: a failure is logged and the shared resource kept.
    async fn prune_shared(&self, scope: &Scope, location: &str) -> Vec<String> {
        let mut removed = Vec::new();
        let list_path = format!("{}/resources", scope.group_path());
        let mut left = match self.arm.list(&list_path, RESOURCES_API, &[]).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(error = %e, group = %scope.group, "cannot list the resource group; shared resources kept");
                return removed;
            }
        };
        let vnet = resources::vnet_name(location);
        let is_vnet = |r: &Value| {
            r.get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case(types::VNET))
        };
        let region_in_use = left.iter().any(|r| {
            is_azlin(r)
                && !is_vnet(r)
                && r.get("location")
                    .and_then(Value::as_str)
                    .is_some_and(|l| l.eq_ignore_ascii_case(location))
        });
        let ours = left.iter().position(|r| {
            is_vnet(r)
                && is_azlin(r)
                && r.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| n.eq_ignore_ascii_case(&vnet))
        });
        if let (false, Some(i)) = (region_in_use, ours) {
            tracing::info!(vnet = %vnet, "no azlin VM left in this region of the group; deleting the shared virtual network");
            match self
                .arm
                .delete(&scope.path(types::VNET, &vnet), NETWORK_API)
                .await
            {
                Ok(_) => {
                    removed.push(format!("virtual network {vnet}"));
                    left.remove(i);
                }
                Err(e) => tracing::warn!(error = %e, vnet = %vnet, "virtual network kept"),
            }
        }
        if !left.is_empty() {
            return removed;
        }
        match self.arm.get(&scope.group_path(), RESOURCES_API).await {
            Ok(Some(group)) if is_azlin(&group) => {
                tracing::info!(group = %scope.group, "the resource group azlin created is empty; deleting it");
                match self.arm.delete(&scope.group_path(), RESOURCES_API).await {
                    Ok(_) => removed.push(format!("resource group {}", scope.group)),
                    Err(e) => {
                        tracing::warn!(error = %e, group = %scope.group, "resource group kept")
                    }
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, group = %scope.group, "resource group kept"),
        }
        removed
    }
}

/// The name of the OS disk an ARM VM body names.
fn os_disk_name(vm: &Value) -> Option<&str> {
    vm.pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
        .and_then(|id| id.rsplit('/').next())
        .filter(|name| !name.is_empty())
}

/// The VM a disk is attached to (`managedBy`), if any.
fn managed_by(disk: &Value) -> Option<&str> {
    disk.get("managedBy")
        .and_then(Value::as_str)
        .filter(|by| !by.is_empty())
}

/// `type base64` of an OpenSSH public key (the comment dropped), to fit in a tag.
fn short_key(key: &str) -> String {
    key.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

fn describe_failures(failed: &[(String, ArmError)]) -> String {
    failed
        .iter()
        .map(|(what, e)| format!("{what} ({}: {})", e.code, e.message))
        .collect::<Vec<_>>()
        .join("; ")
}

#[async_trait]
impl VmProvider for AzureProvider {
    fn required_tools(&self) -> Vec<Tool> {
        vec![Tool {
            program: "az",
            version_args: &["--version"],
            purpose: "Azure credentials (az account show, az account get-access-token)",
            install_hint: INSTALL_HINT,
        }]
    }

    async fn authenticate(&self) -> Result<String, ProviderError> {
        let account = self.arm.credentials().account().await?.clone();
        // Also proves that az can hand out a token for ARM.
        self.arm.credentials().token().await?;
        Ok(format!(
            "Azure subscription '{}' ({}) as {}",
            account.subscription_name, account.subscription_id, account.user
        ))
    }

    async fn create(&self, request: &CreateRequest) -> Result<Vm, ProviderError> {
        let (size, group) = self.check_request(request)?;
        let subscription = self.subscription().await?;
        let existing = self.list().await?;
        if let Some(vm) = existing
            .iter()
            .find(|vm| vm.request_id == request.request_id)
        {
            tracing::info!(vm = %vm.name, request = %request.request_id, "VM for this request exists already");
            return Ok(vm.clone());
        }
        let name = &request.spec.name;
        if let Some(vm) = existing.iter().find(|vm| &vm.name == name) {
            return Err(ProviderError::new(
                ErrorKind::Conflict,
                format!(
                    "an azlin VM named '{name}' exists already (resource group {}): choose another --name or delete it first",
                    vm.details.get("resource_group").map_or("?", String::as_str)
                ),
            ));
        }
        let scope = Self::scope(&subscription, &group);
        let vm_path = scope.path(types::VM, name.as_str());
        match self.arm.get(&vm_path, COMPUTE_API).await {
            Ok(Some(_)) => {
                return Err(ProviderError::new(
                    ErrorKind::Conflict,
                    format!(
                        "resource group {group} already has a VM named '{name}' that azlin did not make: choose another --name or --resource-group"
                    ),
                ));
            }
            Ok(None) => {}
            // A missing group is fine (it is created); other failures are reported.
            Err(e) if e.code == "ResourceGroupNotFound" => {}
            Err(e) => return Err(e.into_provider(&format!("checking the name '{name}'"))),
        }
        match self.provision(request, &scope, size).await {
            Ok(vm) => {
                tracing::info!(vm = %vm.name, address = %vm.address, "Azure VM created");
                Ok(vm)
            }
            Err(mut error) => {
                tracing::warn!(vm = %name, error = %error, "creating the Azure VM failed; removing what was made");
                let removal = self.remove_vm_resources(&scope, name.as_str()).await;
                let mut removed = removal.removed;
                removed.extend(self.prune_shared(&scope, &request.spec.region).await);
                if !removal.failed.is_empty() {
                    error.message.push_str(&format!(
                        "; cleanup could not remove: {} — delete them with `azlin delete {name}`",
                        describe_failures(&removal.failed)
                    ));
                }
                // Whatever stopped the create once resources were being made (a refusal,
                // throttling that outlasted the retries, a permission missing for one resource
                // type, a canceled operation) is a provisioning failure after cleanup: exit 4,
                // with what was removed. The message keeps the cause and what to do about it.
                error.kind = ErrorKind::Provision;
                Err(error.with_cleanup(removed))
            }
        }
    }

    async fn get(&self, name: &VmName) -> Result<Option<Vm>, ProviderError> {
        self.find(name).await
    }

    /// One ARM call: the subscription's VM list with run-time status (`statusOnly=true`),
    /// filtered on the `azlin-managed` tag; addresses and host keys come from the VM's tags.
    async fn list(&self) -> Result<Vec<Vm>, ProviderError> {
        let subscription = self.subscription().await?;
        let path = format!("/subscriptions/{subscription}/providers/{}", types::VM);
        let items = self
            .arm
            .list(&path, COMPUTE_API, &[("statusOnly", "true")])
            .await
            .map_err(|e| e.into_provider("listing Azure VMs"))?;
        let mut vms: Vec<Vm> = items
            .iter()
            .filter_map(|item| resources::vm_from_arm(item, &subscription))
            .collect();
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(vms)
    }

    async fn start(&self, name: &VmName) -> Result<Vm, ProviderError> {
        let (_, scope) = self.require(name).await?;
        tracing::info!(vm = %name, "starting");
        self.arm
            .action(
                &format!("{}/start", scope.path(types::VM, name.as_str())),
                COMPUTE_API,
            )
            .await
            .map_err(|e| e.into_provider(&format!("starting VM {name}")))?;
        self.find(name)
            .await?
            .ok_or_else(|| ProviderError::not_found(name))
    }

    async fn stop(&self, name: &VmName) -> Result<(), ProviderError> {
        let (_, scope) = self.require(name).await?;
        tracing::info!(vm = %name, "deallocating");
        self.arm
            .action(
                &format!("{}/deallocate", scope.path(types::VM, name.as_str())),
                COMPUTE_API,
            )
            .await
            .map_err(|e| e.into_provider(&format!("stopping (deallocating) VM {name}")))
    }

    async fn snapshot_create(
        &self,
        name: &VmName,
        snapshot: &str,
    ) -> Result<Snapshot, ProviderError> {
        self.create_snapshot(name, snapshot).await
    }

    async fn snapshot_list(&self, name: &VmName) -> Result<Vec<Snapshot>, ProviderError> {
        self.list_snapshots(name).await
    }

    async fn snapshot_restore(&self, name: &VmName, snapshot: &str) -> Result<Vm, ProviderError> {
        self.restore_snapshot(name, snapshot).await
    }

    async fn snapshot_delete(&self, name: &VmName, snapshot: &str) -> Result<(), ProviderError> {
        self.delete_snapshot(name, snapshot).await
    }

    /// The VMs named by azlin's resources in the configured resource group that no VM of
    /// the subscription answers to: NICs, public IPs, NSGs and disks a killed create or an
    /// interrupted delete left. Resources without azlin's tags are never named.
    async fn orphans(&self, under_way: &[String]) -> Result<Vec<VmName>, ProviderError> {
        let subscription = self.subscription().await?;
        let scope = Self::scope(&subscription, &self.settings.resource_group);
        let list_path = format!("{}/resources", scope.group_path());
        let items = match self.arm.list(&list_path, RESOURCES_API, &[]).await {
            Ok(items) => items,
            Err(e) if e.is_not_found() => return Ok(Vec::new()),
            Err(e) => return Err(e.into_provider("listing the resource group")),
        };
        let live: BTreeSet<VmName> = self.list().await?.into_iter().map(|vm| vm.name).collect();
        let names: BTreeSet<VmName> = items
            .iter()
            .filter(|r| is_azlin(r))
            .filter(|r| tag(r, TAG_REQUEST).is_none_or(|id| !under_way.iter().any(|u| u == id)))
            .filter_map(|r| VmName::parse(tag(r, TAG_VM)?).ok())
            .filter(|name| !live.contains(name))
            .collect();
        Ok(names.into_iter().collect())
    }

    async fn delete(&self, name: &VmName) -> Result<DeleteReport, ProviderError> {
        let subscription = self.subscription().await?;
        let found = self.find(name).await?;
        let group = found
            .as_ref()
            .and_then(|vm| vm.details.get("resource_group").cloned())
            .unwrap_or_else(|| self.settings.resource_group.clone());
        let scope = Self::scope(&subscription, &group);
        // Its snapshots go first (while the VM is there to find them by).
        if found.is_some() {
            for snapshot in self.list_snapshots(name).await.unwrap_or_default() {
                if let Err(e) = self.delete_snapshot(name, &snapshot.name).await {
                    tracing::warn!(vm = %name, snapshot = %snapshot.name, "deleting a snapshot: {e}");
                }
            }
        }
        let removal = self.remove_vm_resources(&scope, name.as_str()).await;
        if removal.removed.is_empty() && removal.failed.is_empty() {
            return Err(ProviderError::not_found(name));
        }
        if let Some((what, first)) = removal.failed.first() {
            let kind = first.clone().into_provider(what).kind;
            return Err(ProviderError::new(
                kind,
                format!(
                    "deleting VM {name} was not complete: could not remove {}; run `azlin delete {name}` again",
                    describe_failures(&removal.failed)
                ),
            )
            .with_cleanup(removal.removed));
        }
        let mut removed = removal.removed;
        let location = found
            .as_ref()
            .and_then(|vm| vm.details.get("location").cloned())
            .or(removal.location);
        if let Some(location) = location {
            removed.extend(self.prune_shared(&scope, &location).await);
        }
        Ok(DeleteReport { removed })
    }
}
