//! The in-memory Azure Resource Manager behind [`super::ArmDouble`]: resource table, long-running
//! operations, faults and the request log. Plain synchronous code under one lock; the HTTP layer
//! in `mod.rs` only translates requests and responses.
//!
//! Wire contract followed (Azure REST API reference and the azure-rest-api-specs examples):
//! - every request carries `api-version`; a missing one is `400 MissingApiVersionParameter`, an
//!   unknown one `400 NoRegisteredProviderFound` (resource groups: `InvalidApiVersionParameter`);
//! - `PUT` of a resource answers `201 Created` (new) or `200 OK` (update) with the resource body
//!   (`properties.provisioningState` = `Creating`/`Updating`), an `Azure-AsyncOperation` header
//!   and `Retry-After`; the operation status URL answers `{"status":"InProgress"}` until it ends in
//!   `Succeeded` or `Failed` (with an `error` object);
//! - `DELETE` answers `202 Accepted` with `Location`, `Azure-AsyncOperation` and `Retry-After`
//!   (resource groups: `Location` only), `204 No Content` when there is nothing to delete; the
//!   `Location` URL answers `202` while the operation runs and `200` when it is done;
//! - `POST …/virtualMachines/{vm}/start|deallocate|powerOff|restart` answer `202` like `DELETE`;
//! - `PATCH` of a resource updates its tags: managed disks answer `202` with the operation
//!   headers (DiskRP), others `200` with the body; a VM's `PATCH` may also swap its OS disk
//!   (`storageProfile.osDisk` name and managed disk id), only while it is deallocated and only to
//!   an unattached disk (`409 OperationNotAllowed` otherwise);
//! - snapshots (`Microsoft.Compute/snapshots`) copy a disk (`creationData.createOption: Copy`,
//!   `sourceResourceId` of an existing disk); a disk may copy a snapshot; copies keep their
//!   source's `diskSizeGB`; `GET …/resourceGroups/{g}/providers/{ns}/{type}` lists one type;
//! - an operation can end `Canceled` (status body `{"status":"Canceled"}`, no `error`);
//! - a VM whose new OS disk would take the name of an existing disk is refused
//!   (`409 ConflictingUserInput`: only `createOption: Attach` may use an existing disk);
//! - `customData` must be base64 of at most 87,380 characters (65,535 bytes decoded), refused
//!   with ARM's own message otherwise;
//! - a missing resource is `404 ResourceNotFound`, a missing group `404 ResourceGroupNotFound`;
//! - deleting something another resource still uses fails as Azure does (`NicInUse`,
//!   `PublicIPAddressCannotBeDeleted`, `InUseNetworkSecurityGroupCannotBeDeleted`,
//!   `InUseSubnetCannotBeDeleted`, attached disk), so a client that deletes in the wrong order fails;
//! - errors are `{"error":{"code":…,"message":…}}`.

use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// api-version of `Microsoft.Resources` (resource groups, resource lists).
pub const RESOURCES_API: &str = "2024-07-01";
/// api-version of `Microsoft.Network`.
pub const NETWORK_API: &str = "2025-05-01";
/// api-version of `Microsoft.Compute` virtual machines.
pub const COMPUTE_API: &str = "2025-04-01";
/// api-version of `Microsoft.Compute` managed disks (the disk resource provider versions apart).
pub const DISKS_API: &str = "2025-01-02";

/// The resource types the double knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `Microsoft.Network/virtualNetworks`
    VirtualNetwork,
    /// `Microsoft.Network/networkSecurityGroups`
    NetworkSecurityGroup,
    /// `Microsoft.Network/publicIPAddresses`
    PublicIpAddress,
    /// `Microsoft.Network/networkInterfaces`
    NetworkInterface,
    /// `Microsoft.Compute/virtualMachines`
    VirtualMachine,
    /// `Microsoft.Compute/disks`
    Disk,
    /// `Microsoft.Compute/snapshots`
    Snapshot,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::VirtualNetwork,
        Kind::NetworkSecurityGroup,
        Kind::PublicIpAddress,
        Kind::NetworkInterface,
        Kind::VirtualMachine,
        Kind::Disk,
        Kind::Snapshot,
    ];

    pub(crate) fn parse(namespace: &str, type_name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            k.namespace().eq_ignore_ascii_case(namespace)
                && k.type_name().eq_ignore_ascii_case(type_name)
        })
    }

    pub(crate) fn namespace(self) -> &'static str {
        match self {
            Kind::VirtualMachine | Kind::Disk | Kind::Snapshot => "Microsoft.Compute",
            _ => "Microsoft.Network",
        }
    }

    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Kind::VirtualNetwork => "virtualNetworks",
            Kind::NetworkSecurityGroup => "networkSecurityGroups",
            Kind::PublicIpAddress => "publicIPAddresses",
            Kind::NetworkInterface => "networkInterfaces",
            Kind::VirtualMachine => "virtualMachines",
            Kind::Disk => "disks",
            Kind::Snapshot => "snapshots",
        }
    }

    /// `Microsoft.Network/virtualNetworks` and so on.
    pub fn full_type(self) -> String {
        format!("{}/{}", self.namespace(), self.type_name())
    }

    pub(crate) fn api_version(self) -> &'static str {
        match self {
            Kind::VirtualMachine => COMPUTE_API,
            Kind::Disk | Kind::Snapshot => DISKS_API,
            _ => NETWORK_API,
        }
    }
}

/// One request as the double received it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// `GET`, `PUT`, `POST`, `DELETE`, …
    pub method: String,
    /// The URL path, as sent (not decoded).
    pub path: String,
    /// Decoded query parameters.
    pub query: BTreeMap<String, String>,
    /// The JSON body, if any.
    pub body: Option<Value>,
    /// The status code the double answered with.
    pub status: u16,
}

impl RecordedRequest {
    /// Whether the path ends with `suffix`, compared case-insensitively as ARM does.
    pub fn path_ends_with(&self, suffix: &str) -> bool {
        self.path
            .to_ascii_lowercase()
            .ends_with(&suffix.to_ascii_lowercase())
    }

    /// The JSON body; panics if the request had none.
    pub fn json(&self) -> &Value {
        self.body
            .as_ref()
            .unwrap_or_else(|| panic!("a JSON body: {self:?}"))
    }
}

/// A fault to inject into the double's next answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer the next `requests` requests with `429 Too Many Requests` and `Retry-After`.
    Throttle {
        /// How many requests to refuse.
        requests: u32,
        /// The `Retry-After` value, seconds.
        retry_after_secs: u64,
    },
    /// Answer the next `requests` requests with `503 Service Unavailable` and `Retry-After`.
    ServerError {
        /// How many requests to refuse.
        requests: u32,
        /// The `Retry-After` value, seconds.
        retry_after_secs: u64,
    },
    /// Answer the next `requests` requests with `401 ExpiredAuthenticationToken`.
    ExpireToken {
        /// How many requests to refuse.
        requests: u32,
    },
    /// Accept the next VM create (`201`) but end its operation `Failed` with this error; the VM
    /// stays behind in provisioning state `Failed` together with its OS disk, as on Azure.
    FailVmCreate {
        /// The error code, e.g. `AllocationFailed`.
        code: String,
        /// The error message.
        message: String,
    },
    /// End the next `operations` long-running operations (PUT, PATCH, DELETE or action) with
    /// status `Canceled`: their effect is not applied.
    CancelOperations {
        /// How many operations to cancel.
        operations: u32,
    },
    /// Refuse the next VM create at once (nothing is created). A `429` or `5xx` refusal carries
    /// `Retry-After: 0`, so that a client's retries of it are quick.
    RejectVmCreate {
        /// HTTP status, e.g. 409.
        status: u16,
        /// The error code.
        code: String,
        /// The error message.
        message: String,
    },
}

impl Fault {
    /// Azure's answer when a VM would exceed the regional vCPU quota (`409 OperationNotAllowed`).
    pub fn quota_exceeded(family: &str, region: &str) -> Fault {
        Fault::RejectVmCreate {
            status: 409,
            code: "OperationNotAllowed".into(),
            message: format!(
                "Operation could not be completed as it results in exceeding approved {family} Cores quota. \
                 Additional details - Deployment Model: Resource Manager, Location: {region}, Current Limit: 4, \
                 Current Usage: 4, Additional Required: 2, (Minimum) New Limit Required: 6. Submit a request \
                 for Quota increase by specifying parameters listed in the 'Details' section for deployment to succeed."
            ),
        }
    }

    /// Azure's answer when a size is not offered in a region (`409 SkuNotAvailable`).
    pub fn sku_not_available(size: &str, region: &str) -> Fault {
        Fault::RejectVmCreate {
            status: 409,
            code: "SkuNotAvailable".into(),
            message: format!(
                "The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' \
                 is currently not available in location '{region}'. Please try another size or deploy to a \
                 different location or different zone."
            ),
        }
    }
}

/// A stored resource.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Canonical resource id.
    pub id: String,
    /// Its type.
    pub kind: Kind,
    /// Lower-case resource group name.
    pub group: String,
    /// The body `GET` returns.
    pub body: Value,
}

pub(crate) enum Effect {
    Provisioned(String),
    ProvisionFailed(String),
    Deleted(String),
    Power(String, &'static str),
    GroupDeleted(String),
}

pub(crate) struct Operation {
    pub(crate) polls_left: u32,
    pub(crate) effect: Option<Effect>,
    pub(crate) error: Option<Value>,
    /// Ends `Canceled` (its effect is dropped).
    pub(crate) canceled: bool,
    pub(crate) started: String,
    pub(crate) ended: Option<String>,
}

/// An incoming request, parsed by the HTTP layer.
pub(crate) struct Req {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub body: Option<Value>,
    pub body_invalid: bool,
    pub authorization: Option<String>,
}

/// An answer for the HTTP layer.
pub(crate) struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl Resp {
    pub(crate) fn json(status: u16, body: Value) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub(crate) fn empty(status: u16) -> Resp {
        Resp {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub(crate) fn error(status: u16, code: &str, message: impl Into<String>) -> Resp {
        Resp::json(
            status,
            json!({ "error": { "code": code, "message": message.into() } }),
        )
    }

    pub(crate) fn header(mut self, name: &'static str, value: impl Into<String>) -> Resp {
        self.headers.push((name, value.into()));
        self
    }
}

#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) throttle: u32,
    pub(crate) throttle_retry_after: u64,
    pub(crate) server_errors: u32,
    pub(crate) server_retry_after: u64,
    pub(crate) expired_token: u32,
    /// VM creates to refuse at once: (status, code, message).
    pub(crate) reject_vm: VecDeque<(u16, String, String)>,
    /// VM creates whose operation fails: (code, message).
    pub(crate) fail_vm: VecDeque<(String, String)>,
    /// Long-running operations still to end `Canceled`.
    pub(crate) cancel: u32,
}

/// The whole simulated subscription.
pub(crate) struct Model {
    pub(crate) subscription: String,
    pub(crate) token: String,
    pub(crate) endpoint: String,
    pub(crate) groups: BTreeMap<String, Value>,
    pub(crate) resources: BTreeMap<String, Stored>,
    pub(crate) power: HashMap<String, &'static str>,
    pub(crate) log: Vec<RecordedRequest>,
    pub(crate) polls_before_done: u32,
    pub(crate) list_page_size: usize,
    pub(crate) operation_retry_after: u64,
    /// Long-running operations answer with `Location` only, no `Azure-AsyncOperation`.
    pub(crate) location_only: bool,
    pub(crate) operations: HashMap<String, Operation>,
    pub(crate) faults: Faults,
    pub(crate) next_address: u32,
}

pub(crate) fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

pub(crate) fn decode_segment(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits and decodes a query string.
pub(crate) fn parse_query(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_segment(k), decode_segment(&v.replace('+', " ")))
        })
        .collect()
}

pub(crate) fn tags_of(body: &Value) -> Value {
    match body.get("tags") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => Value::Object(Map::new()),
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

impl Model {
    pub fn new(subscription: String, token: String) -> Model {
        Model {
            subscription,
            token,
            endpoint: String::new(),
            groups: BTreeMap::new(),
            resources: BTreeMap::new(),
            power: HashMap::new(),
            log: Vec::new(),
            polls_before_done: 1,
            list_page_size: 1000,
            operation_retry_after: 0,
            location_only: false,
            operations: HashMap::new(),
            faults: Faults::default(),
            next_address: 10,
        }
    }

    pub fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::Throttle {
                requests,
                retry_after_secs,
            } => {
                self.faults.throttle += requests;
                self.faults.throttle_retry_after = retry_after_secs;
            }
            Fault::ServerError {
                requests,
                retry_after_secs,
            } => {
                self.faults.server_errors += requests;
                self.faults.server_retry_after = retry_after_secs;
            }
            Fault::ExpireToken { requests } => self.faults.expired_token += requests,
            Fault::FailVmCreate { code, message } => self.faults.fail_vm.push_back((code, message)),
            Fault::CancelOperations { operations } => self.faults.cancel += operations,
            Fault::RejectVmCreate {
                status,
                code,
                message,
            } => self.faults.reject_vm.push_back((status, code, message)),
        }
    }

    /// Handles one request and records it.
    pub fn handle(&mut self, req: &Req) -> Resp {
        let resp = self.route(req);
        self.log.push(RecordedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body: req.body.clone(),
            status: resp.status,
        });
        resp
    }

    pub(crate) fn group_id(&self, group: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{group}",
            self.subscription
        )
    }

    pub(crate) fn resource_id(&self, group: &str, kind: Kind, name: &str) -> String {
        format!(
            "{}/providers/{}/{}",
            self.group_id(group),
            kind.full_type(),
            name
        )
    }

    pub(crate) fn route(&mut self, req: &Req) -> Resp {
        if self.faults.throttle > 0 {
            self.faults.throttle -= 1;
            return Resp::error(
                429,
                "SubscriptionRequestsThrottled",
                format!(
                    "Number of requests for subscription '{}' exceeded the limit. Please try again after '{}' seconds.",
                    self.subscription, self.faults.throttle_retry_after
                ),
            )
            .header("Retry-After", self.faults.throttle_retry_after.to_string());
        }
        if self.faults.server_errors > 0 {
            self.faults.server_errors -= 1;
            return Resp::error(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable. Please try again later.",
            )
            .header("Retry-After", self.faults.server_retry_after.to_string());
        }
        match req.authorization.as_deref() {
            None => {
                return Resp::error(
                    401,
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing.",
                );
            }
            Some(h) if h != format!("Bearer {}", self.token) => {
                return Resp::error(
                    401,
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                )
                .header("WWW-Authenticate", "Bearer error=\"invalid_token\"");
            }
            Some(_) => {}
        }
        if self.faults.expired_token > 0 {
            self.faults.expired_token -= 1;
            return Resp::error(
                401,
                "ExpiredAuthenticationToken",
                "The access token expiry UTC time is earlier than current UTC time.",
            );
        }
        if !req.query.contains_key("api-version") {
            return Resp::error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        if req.body_invalid {
            return Resp::error(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized.",
            );
        }
        let segments: Vec<String> = req
            .path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(decode_segment)
            .collect();
        let lowered: Vec<String> = segments.iter().map(|s| lower(s)).collect();
        let l: Vec<&str> = lowered.iter().map(String::as_str).collect();
        let s: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method.as_str();
        match (method, l.as_slice()) {
            (_, ["subscriptions", sub, ..]) if *sub != lower(&self.subscription) => Resp::error(
                404,
                "SubscriptionNotFound",
                format!("The subscription '{}' could not be found.", s[1]),
            ),
            (_, ["subscriptions", _, "resourcegroups", _]) => self
                .api(req, &[RESOURCES_API], "InvalidApiVersionParameter")
                .unwrap_or_else(|| self.group(req, s[3])),
            ("GET", ["subscriptions", _, "resourcegroups", _, "resources"]) => self
                .api(req, &[RESOURCES_API], "InvalidApiVersionParameter")
                .unwrap_or_else(|| self.group_resources(s[3])),
            ("GET", ["subscriptions", _, "resourcegroups", _, "providers", ns, ty]) => {
                match Kind::parse(ns, ty) {
                    Some(kind) => self
                        .api(req, &[kind.api_version()], "NoRegisteredProviderFound")
                        .unwrap_or_else(|| self.group_resources_of(s[3], kind)),
                    None => Self::unknown_type(ns, ty),
                }
            }
            (
                _,
                [
                    "subscriptions",
                    _,
                    "resourcegroups",
                    _,
                    "providers",
                    ns,
                    ty,
                    _,
                ],
            ) => match Kind::parse(ns, ty) {
                Some(kind) => self
                    .api(req, &[kind.api_version()], "NoRegisteredProviderFound")
                    .unwrap_or_else(|| self.resource(req, s[3], kind, s[7])),
                None => Self::unknown_type(ns, ty),
            },
            (
                "POST",
                [
                    "subscriptions",
                    _,
                    "resourcegroups",
                    _,
                    "providers",
                    ns,
                    ty,
                    _,
                    action,
                ],
            ) if Kind::parse(ns, ty) == Some(Kind::VirtualMachine) => self
                .api(req, &[COMPUTE_API], "NoRegisteredProviderFound")
                .unwrap_or_else(|| self.vm_action(s[3], s[7], action)),
            ("GET", ["subscriptions", _, "providers", ns, ty])
                if Kind::parse(ns, ty) == Some(Kind::VirtualMachine) =>
            {
                self.api(req, &[COMPUTE_API], "NoRegisteredProviderFound")
                    .unwrap_or_else(|| self.list_vms(req))
            }
            (
                "GET",
                [
                    "subscriptions",
                    _,
                    "providers",
                    ns,
                    "locations",
                    _,
                    kind @ ("operations" | "operationresults"),
                    id,
                ],
            ) => {
                let versions: &[&str] = if ns.eq_ignore_ascii_case("microsoft.compute") {
                    &[COMPUTE_API, DISKS_API]
                } else {
                    &[NETWORK_API]
                };
                let id = id.to_string();
                let status_view = *kind == "operations";
                self.api(req, versions, "NoRegisteredProviderFound")
                    .unwrap_or_else(|| self.poll(&id, status_view, &req.path, &req.query))
            }
            ("GET", ["subscriptions", _, "operationresults", id]) => {
                let id = id.to_string();
                self.api(req, &[RESOURCES_API], "InvalidApiVersionParameter")
                    .unwrap_or_else(|| self.poll(&id, false, &req.path, &req.query))
            }
            _ => Resp::error(
                404,
                "NotFound",
                format!(
                    "No HTTP resource was found that matches {} {}.",
                    method, req.path
                ),
            ),
        }
    }

    pub(crate) fn unknown_type(ns: &str, ty: &str) -> Resp {
        Resp::error(
            404,
            "InvalidResourceType",
            format!("The resource type '{ty}' could not be found in the namespace '{ns}'."),
        )
    }

    pub(crate) fn api(&self, req: &Req, allowed: &[&str], code: &str) -> Option<Resp> {
        let version = req.query.get("api-version").map(String::as_str)?;
        if allowed.contains(&version) {
            return None;
        }
        Some(Resp::error(
            400,
            code,
            format!(
                "The api-version '{version}' is not supported here. The supported api-versions are '{}'.",
                allowed.join(", ")
            ),
        ))
    }
}
