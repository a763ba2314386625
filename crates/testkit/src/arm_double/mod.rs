//! [`ArmDouble`]: a test double of Azure Resource Manager, served over HTTP on loopback.
//!
//! Azure is not reachable from the machines azlin is built and tested on, so the `azure` provider
//! is tested against this double, which speaks the documented ARM wire contract (see
//! `model.rs` for the details followed): real resource paths under
//! `/subscriptions/{sub}/resourceGroups/{rg}/providers/…`, the `api-version` query, `201`/`202`
//! answers with `Azure-AsyncOperation`, `Location` and `Retry-After`, operation status bodies,
//! `provisioningState`, `404`/`409`/`429`, and Azure's refusals to delete resources still in use.
//! Operations can answer with `Location` only ([`ArmDouble::set_location_only`]) and be canceled
//! ([`Fault::CancelOperations`]).
//! It keeps an in-memory resource table and a log of every request, and can inject faults.
//!
//! It is a double, not an emulator: it checks the fields azlin relies on and Azure requires, and
//! accepts the rest as given.

pub mod checks;
mod model;
mod operations;
mod validate;

pub use model::{COMPUTE_API, DISKS_API, Fault, Kind, NETWORK_API, RESOURCES_API, RecordedRequest};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use model::{Model, Req};
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

/// A resource the double holds.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSnapshot {
    /// Its resource id.
    pub id: String,
    /// Its type, e.g. `Microsoft.Network/networkInterfaces`.
    pub resource_type: String,
    /// The body `GET` would return.
    pub body: Value,
}

impl ResourceSnapshot {
    /// The value of tag `key`, if set.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.body.get("tags")?.get(key)?.as_str()
    }
}

/// A test double of Azure Resource Manager on `127.0.0.1`, stopped when dropped.
pub struct ArmDouble {
    endpoint: String,
    subscription_id: String,
    tenant_id: String,
    token: String,
    model: Arc<Mutex<Model>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for ArmDouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArmDouble")
            .field("endpoint", &self.endpoint)
            .field("subscription_id", &self.subscription_id)
            .finish_non_exhaustive()
    }
}

async fn serve(
    State(model): State<Arc<Mutex<Model>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (parsed, invalid) = if body.is_empty() {
        (None, false)
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(v) => (Some(v), false),
            Err(_) => (None, true),
        }
    };
    let req = Req {
        method: method.as_str().to_string(),
        path: uri.path().to_string(),
        query: model::parse_query(uri.query().unwrap_or("")),
        body: parsed,
        body_invalid: invalid,
        authorization: headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let resp = lock(&model).handle(&req);
    let status = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut out = match resp.body {
        Some(body) => (
            status,
            [(
                axum::http::header::CONTENT_TYPE,
                "application/json; charset=utf-8",
            )],
            body.to_string(),
        )
            .into_response(),
        None => status.into_response(),
    };
    for (name, value) in resp.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            out.headers_mut().insert(name, v);
        }
    }
    out.headers_mut().insert(
        "x-ms-request-id",
        HeaderValue::from_str(&uuid::Uuid::new_v4().to_string())
            .unwrap_or(HeaderValue::from_static("0")),
    );
    out
}

fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    // A panic while holding the lock poisons it; the data is still usable for assertions.
    model.lock().unwrap_or_else(|e| e.into_inner())
}

impl ArmDouble {
    /// Starts the double on `127.0.0.1` (a free port) with a fresh subscription id and token.
    pub async fn start() -> std::io::Result<ArmDouble> {
        let subscription_id = uuid::Uuid::new_v4().to_string();
        let tenant_id = uuid::Uuid::new_v4().to_string();
        let token = format!(
            "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.azlin-arm-double.{}",
            uuid::Uuid::new_v4().simple()
        );
        let model = Arc::new(Mutex::new(Model::new(
            subscription_id.clone(),
            token.clone(),
        )));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        lock(&model).endpoint = endpoint.clone();
        let app = axum::Router::new()
            .fallback(serve)
            .with_state(model.clone());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let shutdown = async {
                let _ = rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
            {
                tracing::warn!(error = %e, "ARM double stopped with an error");
            }
        });
        Ok(ArmDouble {
            endpoint,
            subscription_id,
            tenant_id,
            token,
            model,
            shutdown: Some(tx),
        })
    }

    /// The base URL to give the provider instead of `https://management.azure.com`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The subscription the double simulates.
    pub fn subscription_id(&self) -> &str {
        &self.subscription_id
    }

    /// The tenant of that subscription.
    pub fn tenant_id(&self) -> &str {
        &self.tenant_id
    }

    /// The only bearer token the double accepts (what the stub `az` hands out).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.model).log.clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        lock(&self.model).log.len()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        lock(&self.model).log.clear();
    }

    /// Every resource held (not resource groups), ordered by id.
    pub fn resources(&self) -> Vec<ResourceSnapshot> {
        lock(&self.model)
            .resources
            .values()
            .map(|r| ResourceSnapshot {
                id: r.id.clone(),
                resource_type: r.kind.full_type(),
                body: r.body.clone(),
            })
            .collect()
    }

    /// The ids of the resources held that azlin made (tagged `azlin-managed=true`), and of every
    /// managed disk (Azure makes one for each VM, untagged until azlin tags it, so the disk of a
    /// failed create may have no tags), ordered by id.
    pub fn azlin_resources(&self) -> Vec<String> {
        self.resources()
            .into_iter()
            .filter(|r| {
                r.tag("azlin-managed") == Some("true")
                    || r.resource_type == "Microsoft.Compute/disks"
            })
            .map(|r| r.id)
            .collect()
    }

    /// The names of the resource groups held.
    pub fn resource_groups(&self) -> Vec<String> {
        lock(&self.model)
            .groups
            .values()
            .filter_map(|g| g.get("name").and_then(Value::as_str).map(str::to_string))
            .collect()
    }

    /// The power state (`running`, `deallocated`, …) of the VM with resource id `id`.
    pub fn power_state(&self, id: &str) -> Option<String> {
        lock(&self.model)
            .power
            .get(&id.to_ascii_lowercase())
            .map(|s| s.to_string())
    }

    /// Sets tag `key` to `value` on every resource whose id ends with `suffix`, as anyone with
    /// tag-write permission on the resource could (azlin must not trust what tags say).
    /// Returns how many resources were changed.
    pub fn set_tag(&self, suffix: &str, key: &str, value: &str) -> usize {
        let mut model = lock(&self.model);
        let suffix = suffix.to_ascii_lowercase();
        let mut changed = 0;
        for stored in model.resources.values_mut() {
            if !stored.id.to_ascii_lowercase().ends_with(&suffix) {
                continue;
            }
            if !stored.body["tags"].is_object() {
                stored.body["tags"] = Value::Object(serde_json::Map::new());
            }
            stored.body["tags"][key] = Value::String(value.to_string());
            changed += 1;
        }
        changed
    }

    /// Deletes every resource whose id ends with `suffix` at once, as Azure would (a VM lets
    /// go of its disk), leaving the rest: what a delete cut short after its first resource
    /// leaves. Returns how many resources went.
    pub fn drop_resources(&self, suffix: &str) -> usize {
        let mut model = lock(&self.model);
        let suffix = suffix.to_ascii_lowercase();
        let keys: Vec<_> = model
            .resources
            .iter()
            .filter(|(_, stored)| stored.id.to_ascii_lowercase().ends_with(&suffix))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &keys {
            model.apply(model::Effect::Deleted(key.clone()));
        }
        keys.len()
    }

    /// Injects a fault into the next answers.
    pub fn inject(&self, fault: Fault) {
        lock(&self.model).inject(fault);
    }

    /// How many times an operation is polled `InProgress` before it ends (default 1).
    pub fn set_polls_before_done(&self, polls: u32) {
        lock(&self.model).polls_before_done = polls;
    }

    /// The `Retry-After` (seconds) of long-running operation answers (default 0).
    pub fn set_operation_retry_after(&self, secs: u64) {
        lock(&self.model).operation_retry_after = secs;
    }

    /// Whether long-running operations answer with a `Location` header only, without
    /// `Azure-AsyncOperation` (default: both, as for DELETE and actions; PUT gives only
    /// `Azure-AsyncOperation`).
    pub fn set_location_only(&self, location_only: bool) {
        lock(&self.model).location_only = location_only;
    }

    /// How many VMs one page of the subscription VM list holds before a `nextLink` (default 1000).
    pub fn set_list_page_size(&self, size: usize) {
        lock(&self.model).list_page_size = size.max(1);
    }

    /// Adds a resource group as if the user had made it beforehand.
    pub fn add_resource_group(&self, name: &str, location: &str, tags: &BTreeMap<String, String>) {
        lock(&self.model).add_group(name, location, tags_value(tags));
    }

    /// Adds a running VM as if made earlier (no NIC or disk), creating its group if missing.
    /// Returns its resource id.
    pub fn insert_vm(
        &self,
        resource_group: &str,
        name: &str,
        location: &str,
        tags: &BTreeMap<String, String>,
    ) -> String {
        lock(&self.model).insert_vm(resource_group, name, location, tags_value(tags))
    }

    /// Adds a managed disk as if a user had made it, attached to the VM with resource id
    /// `managed_by` or unattached, creating its group if missing. Returns its resource id.
    pub fn insert_disk(
        &self,
        resource_group: &str,
        name: &str,
        location: &str,
        tags: &BTreeMap<String, String>,
        managed_by: Option<&str>,
    ) -> String {
        lock(&self.model).insert_disk(resource_group, name, location, tags_value(tags), managed_by)
    }
}

fn tags_value(tags: &BTreeMap<String, String>) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

impl Drop for ArmDouble {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
