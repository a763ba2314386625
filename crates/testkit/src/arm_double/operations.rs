//! How the double answers: resource groups, resources, actions, lists and operations.

use super::model::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;

impl Model {
    /// Whether the next operation is to end `Canceled` (a [`Fault::CancelOperations`]).
    fn take_cancel(&mut self) -> bool {
        let cancel = self.faults.cancel > 0;
        self.faults.cancel = self.faults.cancel.saturating_sub(1);
        cancel
    }

    /// Starts a long-running operation; returns its status URL (`Azure-AsyncOperation`) and its
    /// result URL (`Location`).
    pub(crate) fn start_operation(
        &mut self,
        namespace: &str,
        location: &str,
        effect: Effect,
        error: Option<Value>,
    ) -> (String, String) {
        let id = uuid::Uuid::new_v4().to_string();
        let canceled = self.take_cancel();
        self.operations.insert(
            id.clone(),
            Operation {
                polls_left: self.polls_before_done,
                effect: Some(effect),
                error,
                canceled,
                started: now(),
                ended: None,
            },
        );
        let base = format!(
            "{}/subscriptions/{}/providers/{namespace}/locations/{location}",
            self.endpoint, self.subscription
        );
        let version = if namespace == "Microsoft.Network" {
            NETWORK_API
        } else {
            COMPUTE_API
        };
        (
            format!("{base}/operations/{id}?api-version={version}"),
            format!("{base}/operationResults/{id}?api-version={version}"),
        )
    }

    /// `resp` with the headers of the operation at `urls` (from [`Self::start_operation`]) and
    /// `Retry-After`: `Azure-AsyncOperation`, plus `Location` when `with_location` (DELETE, POST,
    /// DiskRP); `Location` alone when the double is in location-only mode.
    pub(crate) fn operation_answer(
        &self,
        resp: Resp,
        urls: (String, String),
        with_location: bool,
    ) -> Resp {
        let (status_url, result_url) = urls;
        let mut resp = resp;
        if with_location || self.location_only {
            resp = resp.header("Location", result_url);
        }
        if !self.location_only {
            resp = resp.header("Azure-AsyncOperation", status_url);
        }
        resp.header("Retry-After", self.retry_after())
    }

    /// What a canceled operation leaves: nothing changed, except the provisioning state of what
    /// was being made, which says `Canceled`.
    fn cancel(&mut self, effect: Effect) {
        match effect {
            Effect::Provisioned(key) | Effect::ProvisionFailed(key) => {
                if let Some(r) = self.resources.get_mut(&key) {
                    r.body["properties"]["provisioningState"] = json!("Canceled");
                }
            }
            Effect::Deleted(key) => {
                if let Some(r) = self.resources.get_mut(&key) {
                    r.body["properties"]["provisioningState"] = json!("Succeeded");
                }
            }
            Effect::GroupDeleted(group) => {
                if let Some(g) = self.groups.get_mut(&group) {
                    g["properties"]["provisioningState"] = json!("Succeeded");
                }
            }
            Effect::Power(..) => {}
        }
    }

    pub(crate) fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Provisioned(key) => {
                if let Some(r) = self.resources.get_mut(&key) {
                    r.body["properties"]["provisioningState"] = json!("Succeeded");
                    if r.kind == Kind::VirtualMachine {
                        self.power.insert(key, "running");
                    }
                }
            }
            Effect::ProvisionFailed(key) => {
                if let Some(r) = self.resources.get_mut(&key) {
                    r.body["properties"]["provisioningState"] = json!("Failed");
                    self.power.insert(key, "stopped");
                }
            }
            Effect::Deleted(key) => {
                if let Some(r) = self.resources.remove(&key) {
                    self.power.remove(&key);
                    if r.kind == Kind::VirtualMachine {
                        // A deleted VM lets go of its OS disk (deleteOption Detach, the default).
                        for d in self.resources.values_mut().filter(|d| d.kind == Kind::Disk) {
                            if d.body.get("managedBy").and_then(Value::as_str).map(lower)
                                == Some(lower(&r.id))
                            {
                                if let Some(o) = d.body.as_object_mut() {
                                    o.remove("managedBy");
                                }
                                d.body["properties"]["diskState"] = json!("Unattached");
                            }
                        }
                    }
                }
            }
            Effect::Power(key, state) => {
                if self.resources.contains_key(&key) {
                    self.power.insert(key, state);
                }
            }
            Effect::GroupDeleted(group) => {
                self.groups.remove(&group);
                self.resources.retain(|_, r| r.group != group);
                let power = &mut self.power;
                power.retain(|k, _| !k.contains(&format!("/resourcegroups/{group}/")));
            }
        }
    }

    pub(crate) fn poll(
        &mut self,
        id: &str,
        status_view: bool,
        path: &str,
        query: &BTreeMap<String, String>,
    ) -> Resp {
        let Some(op) = self.operations.get_mut(id) else {
            return Resp::error(
                404,
                "OperationNotFound",
                format!("The operation '{id}' was not found."),
            );
        };
        let in_progress = if op.polls_left > 0 {
            op.polls_left -= 1;
            true
        } else {
            false
        };
        let mut effect = None;
        if !in_progress && op.ended.is_none() {
            op.ended = Some(now());
            effect = op.effect.take();
        }
        let (started, ended, error, canceled) = (
            op.started.clone(),
            op.ended.clone(),
            op.error.clone(),
            op.canceled,
        );
        let provisioned = match &effect {
            Some(Effect::Provisioned(key)) => Some(key.clone()),
            _ => None,
        };
        match effect {
            Some(e) if canceled => self.cancel(e),
            Some(e) => self.apply(e),
            None => {}
        }
        let retry = self.retry_after();
        if status_view {
            let mut body = json!({ "name": id, "startTime": started });
            if in_progress {
                body["status"] = json!("InProgress");
                return Resp::json(200, body).header("Retry-After", retry);
            }
            body["endTime"] = json!(ended);
            if canceled {
                body["status"] = json!("Canceled");
                return Resp::json(200, body);
            }
            match error {
                Some(e) => {
                    body["status"] = json!("Failed");
                    body["error"] = e;
                }
                None => body["status"] = json!("Succeeded"),
            }
            return Resp::json(200, body);
        }
        if in_progress {
            let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Resp::empty(202)
                .header(
                    "Location",
                    format!("{}{path}?{}", self.endpoint, query.join("&")),
                )
                .header("Retry-After", retry);
        }
        if canceled {
            return Resp::error(400, "OperationCanceled", "The operation was canceled.");
        }
        match error {
            Some(e) => Resp::json(400, json!({ "error": e })),
            None => match provisioned.and_then(|k| self.resources.get(&k)) {
                Some(r) => Resp::json(200, r.body.clone()),
                None => Resp::empty(200),
            },
        }
    }

    /// The `Retry-After` of operation answers, seconds.
    pub(crate) fn retry_after(&self) -> String {
        self.operation_retry_after.to_string()
    }

    pub(crate) fn group(&mut self, req: &Req, name: &str) -> Resp {
        let key = lower(name);
        match req.method.as_str() {
            "GET" => match self.groups.get(&key) {
                Some(body) => Resp::json(200, body.clone()),
                None => Self::group_not_found(name),
            },
            "PUT" => {
                let body = req.body.clone().unwrap_or(Value::Null);
                let Some(location) = body.get("location").and_then(Value::as_str) else {
                    return Resp::error(
                        400,
                        "LocationRequired",
                        "The location property is required for this definition.",
                    );
                };
                let existing = self.groups.get(&key);
                let status = if existing.is_some() { 200 } else { 201 };
                let id = self.group_id(existing.and_then(|g| str_at(g, "/name")).unwrap_or(name));
                let stored = json!({
                    "id": id,
                    "name": name,
                    "type": "Microsoft.Resources/resourceGroups",
                    "location": location,
                    "tags": tags_of(&body),
                    "properties": { "provisioningState": "Succeeded" }
                });
                self.groups.insert(key, stored.clone());
                Resp::json(status, stored)
            }
            "DELETE" => {
                let Some(g) = self.groups.get_mut(&key) else {
                    return Self::group_not_found(name);
                };
                g["properties"]["provisioningState"] = json!("Deleting");
                let id = uuid::Uuid::new_v4().to_string();
                let canceled = self.take_cancel();
                self.operations.insert(
                    id.clone(),
                    Operation {
                        polls_left: self.polls_before_done,
                        effect: Some(Effect::GroupDeleted(key)),
                        error: None,
                        canceled,
                        started: now(),
                        ended: None,
                    },
                );
                Resp::empty(202)
                    .header(
                        "Location",
                        format!(
                            "{}/subscriptions/{}/operationresults/{id}?api-version={RESOURCES_API}",
                            self.endpoint, self.subscription
                        ),
                    )
                    .header("Retry-After", self.retry_after())
            }
            _ => Self::method_not_allowed(&req.method),
        }
    }

    pub(crate) fn method_not_allowed(method: &str) -> Resp {
        Resp::error(
            405,
            "MethodNotAllowed",
            format!("The requested resource does not support http method '{method}'."),
        )
    }

    pub(crate) fn group_not_found(name: &str) -> Resp {
        Resp::error(
            404,
            "ResourceGroupNotFound",
            format!("Resource group '{name}' could not be found."),
        )
    }

    /// The resources of group `name`, or its not-found answer.
    fn group_members(&self, name: &str) -> Result<impl Iterator<Item = &Stored>, Resp> {
        let key = lower(name);
        if !self.groups.contains_key(&key) {
            return Err(Self::group_not_found(name));
        }
        Ok(self.resources.values().filter(move |r| r.group == key))
    }

    pub(crate) fn group_resources(&self, name: &str) -> Resp {
        let members = match self.group_members(name) {
            Ok(members) => members,
            Err(resp) => return resp,
        };
        let value: Vec<Value> = members
            .map(|r| {
                json!({
                    "id": r.id,
                    "name": r.body.get("name").cloned().unwrap_or(Value::Null),
                    "type": r.kind.full_type(),
                    "location": r.body.get("location").cloned().unwrap_or(Value::Null),
                    "tags": tags_of(&r.body),
                })
            })
            .collect();
        Resp::json(200, json!({ "value": value }))
    }

    /// `GET` of every resource of `kind` in a group: their full bodies.
    pub(crate) fn group_resources_of(&self, name: &str, kind: Kind) -> Resp {
        match self.group_members(name) {
            Ok(members) => {
                let value: Vec<Value> = members
                    .filter(|r| r.kind == kind)
                    .map(|r| r.body.clone())
                    .collect();
                Resp::json(200, json!({ "value": value }))
            }
            Err(resp) => resp,
        }
    }

    pub(crate) fn resource(&mut self, req: &Req, group: &str, kind: Kind, name: &str) -> Resp {
        let group_key = lower(group);
        let Some(group_name) = self
            .groups
            .get(&group_key)
            .and_then(|g| str_at(g, "/name"))
            .map(str::to_string)
        else {
            return Self::group_not_found(group);
        };
        let id = self.resource_id(&group_name, kind, name);
        let key = lower(&id);
        match req.method.as_str() {
            "GET" => match self.resources.get(&key) {
                Some(r) => Resp::json(200, r.body.clone()),
                None => Self::not_found(kind, name, group),
            },
            "PUT" => self.put(req, &group_name, kind, name, id),
            "PATCH" => self.patch(req, kind, &key, name, group),
            "DELETE" => self.delete(kind, &key),
            _ => Self::method_not_allowed(&req.method),
        }
    }

    pub(crate) fn not_found(kind: Kind, name: &str, group: &str) -> Resp {
        Resp::error(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{}/{name}' under resource group '{group}' was not found.",
                kind.full_type()
            ),
        )
    }

    pub(crate) fn exists(&self, id: &str, kind: Kind) -> bool {
        self.resources
            .get(&lower(id))
            .is_some_and(|r| r.kind == kind)
    }

    pub(crate) fn put(
        &mut self,
        req: &Req,
        group: &str,
        kind: Kind,
        name: &str,
        id: String,
    ) -> Resp {
        let key = lower(&id);
        let body = req.body.clone().unwrap_or(Value::Null);
        let Some(location) = body
            .get("location")
            .and_then(Value::as_str)
            .map(str::to_string)
        else {
            return Resp::error(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            );
        };
        if let Err(resp) = self.validate(kind, &body) {
            return resp;
        }
        if kind == Kind::VirtualMachine
            && let Some((status, code, message)) = self.faults.reject_vm.pop_front()
        {
            let refusal = Resp::error(status, &code, message);
            return if status == 429 || status >= 500 {
                refusal.header("Retry-After", "0")
            } else {
                refusal
            };
        }
        let existed = self.resources.contains_key(&key);
        let os_disk_name = str_at(&body, "/properties/storageProfile/osDisk/name")
            .map(str::to_string)
            .unwrap_or_else(|| format!("{name}_OsDisk_1_{}", uuid::Uuid::new_v4().simple()));
        let os_disk_id = self.resource_id(group, Kind::Disk, &os_disk_name);
        if kind == Kind::VirtualMachine && !existed && self.exists(&os_disk_id, Kind::Disk) {
            return Resp::error(
                409,
                "ConflictingUserInput",
                format!(
                    "Disk {os_disk_name} already exists in resource group {}. Only CreateOption.Attach is supported.",
                    group.to_ascii_uppercase()
                ),
            );
        }
        let mut stored = body.clone();
        let obj = match stored.as_object_mut() {
            Some(o) => o,
            None => {
                return Resp::error(
                    400,
                    "InvalidRequestContent",
                    "The request content was invalid.",
                );
            }
        };
        obj.insert("id".into(), json!(id));
        obj.insert("name".into(), json!(name));
        obj.insert("type".into(), json!(kind.full_type()));
        obj.insert("location".into(), json!(location));
        obj.insert("tags".into(), tags_of(&body));
        obj.insert(
            "etag".into(),
            json!(format!("W/\"{}\"", uuid::Uuid::new_v4())),
        );
        if !obj.get("properties").is_some_and(Value::is_object) {
            obj.insert("properties".into(), json!({}));
        }
        stored["properties"]["provisioningState"] =
            json!(if existed { "Updating" } else { "Creating" });
        let mut error = None;
        match kind {
            Kind::PublicIpAddress => {
                let address = existing_address(self.resources.get(&key)).unwrap_or_else(|| {
                    self.next_address += 1;
                    format!("127.100.0.{}", self.next_address % 250 + 1)
                });
                stored["properties"]["ipAddress"] = json!(address);
                stored["properties"]["publicIPAddressVersion"] = json!("IPv4");
            }
            Kind::NetworkInterface => {
                if let Some(configs) = stored["properties"]["ipConfigurations"].as_array_mut() {
                    for (i, c) in configs.iter_mut().enumerate() {
                        let cname = c
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("ipconfig1")
                            .to_string();
                        c["id"] = json!(format!("{id}/ipConfigurations/{cname}"));
                        c["properties"]["privateIPAddress"] = json!(format!("10.0.0.{}", 4 + i));
                        c["properties"]["provisioningState"] = json!("Succeeded");
                    }
                }
            }
            Kind::VirtualMachine => {
                // customData is write-only on Azure: GET never returns it.
                if let Some(p) = stored["properties"]["osProfile"].as_object_mut() {
                    p.remove("customData");
                }
                stored["properties"]["vmId"] = json!(uuid::Uuid::new_v4().to_string());
                let (disk_name, disk_id) = (os_disk_name, os_disk_id);
                stored["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"] =
                    json!(disk_id);
                stored["properties"]["storageProfile"]["osDisk"]["osType"] = json!("Linux");
                if !existed {
                    let disk = json!({
                        "id": disk_id,
                        "name": disk_name,
                        "type": "Microsoft.Compute/disks",
                        "location": location,
                        "managedBy": id,
                        "sku": { "name": str_at(&body, "/properties/storageProfile/osDisk/managedDisk/storageAccountType").unwrap_or("Standard_LRS") },
                        "properties": {
                            "osType": "Linux",
                            "creationData": { "createOption": "FromImage" },
                            "diskSizeGB": 30,
                            "diskState": "Attached",
                            "provisioningState": "Succeeded",
                            "timeCreated": now(),
                        }
                    });
                    self.resources.insert(
                        lower(&disk_id),
                        Stored {
                            id: disk_id,
                            kind: Kind::Disk,
                            group: lower(group),
                            body: disk,
                        },
                    );
                }
                if let Some((code, message)) = self.faults.fail_vm.pop_front() {
                    error = Some(json!({ "code": code, "message": message }));
                }
            }
            Kind::Snapshot | Kind::Disk => {
                // A copy has its source's size.
                let size = str_at(&body, "/properties/creationData/sourceResourceId")
                    .and_then(|source| self.resources.get(&lower(source)))
                    .and_then(|r| r.body.pointer("/properties/diskSizeGB").cloned())
                    .unwrap_or(json!(30));
                stored["properties"]["diskSizeGB"] = size;
                stored["properties"]["timeCreated"] = json!(now());
                if kind == Kind::Disk {
                    stored["properties"]["diskState"] = json!("Unattached");
                }
            }
            _ => {}
        }
        self.resources.insert(
            key.clone(),
            Stored {
                id: id.clone(),
                kind,
                group: lower(group),
                body: stored.clone(),
            },
        );
        let effect = if error.is_some() {
            Effect::ProvisionFailed(key)
        } else {
            Effect::Provisioned(key)
        };
        let urls = self.start_operation(kind.namespace(), &location, effect, error);
        self.operation_answer(
            Resp::json(if existed { 200 } else { 201 }, stored),
            urls,
            false,
        )
    }

    /// `PATCH` of a resource: its tags, the one update the double supports.
    pub(crate) fn patch(
        &mut self,
        req: &Req,
        kind: Kind,
        key: &str,
        name: &str,
        group: &str,
    ) -> Resp {
        let body = req.body.clone().unwrap_or(Value::Null);
        let Some(update) = body.as_object() else {
            return Resp::error(
                400,
                "InvalidRequestContent",
                "The request content was invalid.",
            );
        };
        if kind == Kind::VirtualMachine && update.contains_key("properties") {
            return self.swap_os_disk(key, &body);
        }
        if let Some(other) = update.keys().find(|k| k.as_str() != "tags") {
            return Resp::error(
                400,
                "InvalidParameter",
                format!(
                    "the ARM double updates only tags (and a VM's OS disk) with PATCH, not '{other}'"
                ),
            );
        }
        let tags = match update.get("tags") {
            None => None,
            Some(Value::Object(t)) => Some(Value::Object(t.clone())),
            Some(_) => {
                return Resp::error(400, "InvalidParameter", "tags must be an object of strings");
            }
        };
        let Some(r) = self.resources.get_mut(key) else {
            return Self::not_found(kind, name, group);
        };
        if let Some(tags) = tags {
            r.body["tags"] = tags;
        }
        if kind != Kind::Disk {
            return Resp::json(200, r.body.clone());
        }
        // DiskRP updates are long-running operations.
        r.body["properties"]["provisioningState"] = json!("Updating");
        let location = location_of(&r.body);
        let urls = self.start_operation(
            kind.namespace(),
            &location,
            Effect::Provisioned(key.to_string()),
            None,
        );
        self.operation_answer(Resp::empty(202), urls, true)
    }

    /// `PATCH` of a VM's `storageProfile.osDisk` (name and managed disk id): Azure's OS disk
    /// swap, allowed on a deallocated VM with an unattached disk.
    fn swap_os_disk(&mut self, key: &str, body: &Value) -> Resp {
        let (Some(name), Some(disk_id)) = (
            str_at(body, "/properties/storageProfile/osDisk/name"),
            str_at(body, "/properties/storageProfile/osDisk/managedDisk/id"),
        ) else {
            return Resp::error(
                400,
                "InvalidParameter",
                "the ARM double updates only storageProfile.osDisk (name, managedDisk.id) of a VM",
            );
        };
        if self.power.get(key).copied() != Some("deallocated") {
            return Resp::error(
                409,
                "OperationNotAllowed",
                "The OS disk of a VM can be swapped only while the VM is deallocated.",
            );
        }
        let disk_key = lower(disk_id);
        match self.resources.get(&disk_key) {
            Some(d) if d.kind == Kind::Disk && d.body.get("managedBy").is_none() => {}
            Some(_) => {
                return Resp::error(
                    409,
                    "OperationNotAllowed",
                    format!("Disk {disk_id} is in use."),
                );
            }
            None => {
                return Resp::error(
                    400,
                    "InvalidResourceReference",
                    format!("Resource {disk_id} referenced by resource was not found."),
                );
            }
        }
        let Some(vm) = self.resources.get_mut(key) else {
            return Resp::error(404, "ResourceNotFound", "The VM was not found.");
        };
        let vm_id = vm.id.clone();
        let os_disk = &mut vm.body["properties"]["storageProfile"]["osDisk"];
        let old = os_disk
            .pointer("/managedDisk/id")
            .and_then(Value::as_str)
            .map(lower);
        os_disk["name"] = json!(name);
        os_disk["managedDisk"]["id"] = json!(disk_id);
        let answer = vm.body.clone();
        if let Some(old) = old.and_then(|old| self.resources.get_mut(&old)) {
            if let Some(o) = old.body.as_object_mut() {
                o.remove("managedBy");
            }
            old.body["properties"]["diskState"] = json!("Unattached");
        }
        if let Some(new) = self.resources.get_mut(&disk_key) {
            new.body["managedBy"] = json!(vm_id);
            new.body["properties"]["diskState"] = json!("Reserved");
        }
        Resp::json(200, answer)
    }

    pub(crate) fn delete(&mut self, kind: Kind, key: &str) -> Resp {
        let Some(location) = self.resources.get(key).map(|r| location_of(&r.body)) else {
            return Resp::empty(204);
        };
        if let Some((status, code, message)) = self.users_of(kind, key) {
            return Resp::error(status, code, message);
        }
        if let Some(r) = self.resources.get_mut(key) {
            r.body["properties"]["provisioningState"] = json!("Deleting");
        }
        let urls = self.start_operation(
            kind.namespace(),
            &location,
            Effect::Deleted(key.to_string()),
            None,
        );
        self.operation_answer(Resp::empty(202), urls, true)
    }

    pub(crate) fn vm_action(&mut self, group: &str, name: &str, action: &str) -> Resp {
        let Some(group_name) = self
            .groups
            .get(&lower(group))
            .and_then(|g| str_at(g, "/name"))
            .map(str::to_string)
        else {
            return Self::group_not_found(group);
        };
        let key = lower(&self.resource_id(&group_name, Kind::VirtualMachine, name));
        let state = match action {
            "start" | "restart" => "running",
            "deallocate" => "deallocated",
            "poweroff" => "stopped",
            _ => {
                return Resp::error(
                    404,
                    "NotFound",
                    format!("No action '{action}' on virtual machines."),
                );
            }
        };
        let Some(location) = self.resources.get(&key).map(|r| location_of(&r.body)) else {
            return Self::not_found(Kind::VirtualMachine, name, group);
        };
        let urls = self.start_operation(
            "Microsoft.Compute",
            &location,
            Effect::Power(key, state),
            None,
        );
        self.operation_answer(Resp::empty(202), urls, true)
    }

    pub(crate) fn list_vms(&self, req: &Req) -> Resp {
        let status_only = req
            .query
            .get("statusOnly")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let skip: usize = req
            .query
            .get("$skiptoken")
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let vms: Vec<&Stored> = self
            .resources
            .values()
            .filter(|r| r.kind == Kind::VirtualMachine)
            .collect();
        let page: Vec<Value> = vms
            .iter()
            .skip(skip)
            .take(self.list_page_size)
            .map(|r| {
                let mut body = r.body.clone();
                if status_only {
                    let provisioning = str_at(&r.body, "/properties/provisioningState").unwrap_or("Succeeded").to_ascii_lowercase();
                    let power = self.power.get(&lower(&r.id)).copied().unwrap_or("starting");
                    body["properties"]["instanceView"] = json!({
                        "statuses": [
                            { "code": format!("ProvisioningState/{provisioning}"), "level": "Info", "displayStatus": format!("Provisioning {provisioning}") },
                            { "code": format!("PowerState/{power}"), "level": "Info", "displayStatus": format!("VM {power}") }
                        ]
                    });
                }
                body
            })
            .collect();
        let mut body = json!({ "value": page });
        if skip + self.list_page_size < vms.len() {
            body["nextLink"] = json!(format!(
                "{}/subscriptions/{}/providers/Microsoft.Compute/virtualMachines?api-version={COMPUTE_API}{}&$skiptoken={}",
                self.endpoint,
                self.subscription,
                if status_only { "&statusOnly=true" } else { "" },
                skip + self.list_page_size
            ));
        }
        Resp::json(200, body)
    }

    /// Inserts a resource group as if a user had made it.
    pub fn add_group(&mut self, name: &str, location: &str, tags: Value) {
        let id = self.group_id(name);
        self.groups.insert(
            lower(name),
            json!({
                "id": id, "name": name, "type": "Microsoft.Resources/resourceGroups",
                "location": location, "tags": tags,
                "properties": { "provisioningState": "Succeeded" }
            }),
        );
    }

    /// Inserts a running VM directly (as if made earlier), creating its group if missing.
    pub fn insert_vm(&mut self, group: &str, name: &str, location: &str, tags: Value) -> String {
        if !self.groups.contains_key(&lower(group)) {
            self.add_group(group, location, json!({}));
        }
        let id = self.resource_id(group, Kind::VirtualMachine, name);
        let body = json!({
            "id": id, "name": name, "type": "Microsoft.Compute/virtualMachines",
            "location": location, "tags": tags,
            "properties": {
                "vmId": uuid::Uuid::new_v4().to_string(),
                "hardwareProfile": { "vmSize": "Standard_B2s" },
                "provisioningState": "Succeeded"
            }
        });
        self.resources.insert(
            lower(&id),
            Stored {
                id: id.clone(),
                kind: Kind::VirtualMachine,
                group: lower(group),
                body,
            },
        );
        self.power.insert(lower(&id), "running");
        id
    }

    /// Inserts a managed disk directly (as if a user had made it), attached to `managed_by` (a VM
    /// id) or not, creating its group if missing. Returns its resource id.
    pub fn insert_disk(
        &mut self,
        group: &str,
        name: &str,
        location: &str,
        tags: Value,
        managed_by: Option<&str>,
    ) -> String {
        if !self.groups.contains_key(&lower(group)) {
            self.add_group(group, location, json!({}));
        }
        let id = self.resource_id(group, Kind::Disk, name);
        let mut body = json!({
            "id": id, "name": name, "type": "Microsoft.Compute/disks",
            "location": location, "tags": tags,
            "sku": { "name": "Premium_LRS" },
            "properties": {
                "creationData": { "createOption": "Empty" },
                "diskSizeGB": 128,
                "diskState": if managed_by.is_some() { "Attached" } else { "Unattached" },
                "provisioningState": "Succeeded",
                "timeCreated": now(),
            }
        });
        if let Some(vm) = managed_by {
            body["managedBy"] = json!(vm);
        }
        self.resources.insert(
            lower(&id),
            Stored {
                id: id.clone(),
                kind: Kind::Disk,
                group: lower(group),
                body,
            },
        );
        id
    }
}

pub(crate) fn existing_address(existing: Option<&Stored>) -> Option<String> {
    existing
        .and_then(|r| str_at(&r.body, "/properties/ipAddress"))
        .map(str::to_string)
}

/// The region a resource body names (the double's default region when it names none), where its
/// long-running operations live.
fn location_of(body: &Value) -> String {
    str_at(body, "/location").unwrap_or("westus2").to_string()
}
