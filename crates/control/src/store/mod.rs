//! The state store: what azlin knows about its VMs, kept current from the events. An embedded
//! SQLite database on one machine ([`SqliteStore`]); JetStream key-value when NATS is used.

pub mod kv;
pub mod sqlite;

pub use kv::KvStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use azlin_core::event::{Event, Request};
use azlin_core::{ProviderKind, VmName};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create request names a VM the store already has a record of, made for another
    /// request: one name, one VM.
    #[error(
        "a VM named '{name}' already exists ({state}, request {request_id}); see `azlin list`, \
         or `azlin delete {name}`"
    )]
    NameTaken {
        /// The name asked for.
        name: VmName,
        /// The request the existing record belongs to.
        request_id: String,
        /// The state of the existing record.
        state: RecordState,
    },
    /// The store could not be read or written.
    #[error("state store: {0}")]
    Backend(String),
    /// The store's server could not be reached, or refused the credentials.
    #[error("state store: {0}")]
    Bus(crate::bus::BusError),
}

impl StoreError {
    /// A failure of the store's backend (database, key-value bucket, file), from its message.
    pub fn backend(e: impl std::fmt::Display) -> Self {
        StoreError::Backend(e.to_string())
    }

    /// The failure of recording a request for a name `existing` already holds.
    pub fn name_taken(existing: VmRecord) -> Self {
        StoreError::NameTaken {
            name: existing.name,
            request_id: existing.request_id,
            state: existing.state,
        }
    }
}

/// Where a VM is in its life, as the events tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordState {
    /// A create was requested and is under way.
    Creating,
    /// The VM is ready (SSH and cloud-init done).
    Ready,
    /// A pool VM, ready and waiting to be taken.
    Pooled,
    /// The create failed; nothing is left, or the VM was left running (see the message).
    Failed,
    /// A delete was requested.
    Deleting,
}

impl std::fmt::Display for RecordState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RecordState {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordState::Creating => "creating",
            RecordState::Ready => "ready",
            RecordState::Pooled => "pooled",
            RecordState::Failed => "failed",
            RecordState::Deleting => "deleting",
        }
    }
}

/// What the store holds about one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    /// The VM.
    pub name: VmName,
    /// Its provider.
    pub provider: ProviderKind,
    /// Its state.
    pub state: RecordState,
    /// The last stage reported.
    pub stage: String,
    /// The last message.
    pub message: String,
    /// The create request.
    pub request_id: String,
    /// SSH address ("" until known).
    pub address: String,
    /// SSH port.
    pub ssh_port: u16,
    /// Login user.
    pub user: String,
    /// SSH host key.
    pub host_key: String,
    /// Milliseconds per stage.
    #[serde(default)]
    pub timings: BTreeMap<String, u64>,
    /// Provider details.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
    /// Whether a failed VM was left running.
    #[serde(default)]
    pub left_running: bool,
    /// When the record last changed (RFC 3339).
    pub updated_at: String,
    /// The warm pool it was booted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Who took it from its pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<Claim>,
    /// The tags it was created with (`--tag K=V`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// Who took a pool VM: a workflow session (released when the session ends; reaped when its
/// process dies first) or a user (`new --pool`; the VM is theirs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The taker: a session id, or a user.
    pub by: String,
    /// The host of the process that took it.
    pub host: String,
    /// That process.
    pub pid: u32,
    /// Whether the VM now belongs to a user (never reaped).
    #[serde(default)]
    pub handed_over: bool,
    /// When (RFC 3339).
    pub at: String,
}

impl Claim {
    /// A claim by this process for `by`.
    pub fn by_this_process(by: impl Into<String>, host: impl Into<String>) -> Claim {
        Claim {
            by: by.into(),
            host: host.into(),
            pid: std::process::id(),
            handed_over: false,
            at: azlin_core::now_rfc3339(),
        }
    }
}

impl VmRecord {
    /// The VM as its record describes it (for VMs no local provider knows).
    pub fn to_vm(&self) -> azlin_core::Vm {
        use azlin_core::VmState;
        azlin_core::Vm {
            name: self.name.clone(),
            provider: self.provider,
            state: match self.state {
                RecordState::Creating => VmState::Creating,
                RecordState::Ready | RecordState::Pooled => VmState::Running,
                RecordState::Failed if self.left_running => VmState::Running,
                RecordState::Failed => VmState::Failed,
                RecordState::Deleting => VmState::Deleting,
            },
            address: self.address.clone(),
            ssh_port: self.ssh_port,
            user: self.user.clone(),
            host_key: self.host_key.clone(),
            request_id: self.request_id.clone(),
            details: self.details.clone(),
        }
    }
}

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedEvent {
    /// Position in the trail.
    pub seq: u64,
    /// The subject.
    pub subject: String,
    /// The payload.
    pub payload: serde_json::Value,
    /// The W3C trace context it travelled with (workflow events of a webhook's run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Persistent state, shared by every azlin process of a machine (or, with NATS, of a fleet).
#[async_trait]
pub trait StateStore: Send + Sync {
    /// Records that a request was submitted. A create request claims its VM's name: when
    /// several processes record creates of one name at once, exactly one succeeds and the
    /// others fail with [`StoreError::NameTaken`], as does a create of a name already recorded.
    /// Recording the same request again succeeds and changes nothing.
    async fn record_request(&self, request: &Request) -> Result<(), StoreError>;
    /// Applies an event: updates the VM record and appends to the audit trail.
    async fn apply(&self, event: &Event) -> Result<(), StoreError>;
    /// Every VM record, by name.
    async fn vms(&self) -> Result<Vec<VmRecord>, StoreError>;
    /// One VM record.
    async fn vm(&self, name: &VmName) -> Result<Option<VmRecord>, StoreError>;
    /// Takes the oldest ready VM of `pool` (or the VM `only`, if it is ready in `pool`) for
    /// `claim`, atomically: of several takers at once, across processes (and hosts, with NATS),
    /// each VM goes to exactly one. `None` when there is no such ready VM.
    async fn claim(
        &self,
        pool: &str,
        only: Option<&VmName>,
        claim: &Claim,
    ) -> Result<Option<VmRecord>, StoreError>;
    /// Forgets a VM (after it was deleted outside the bus).
    async fn forget(&self, name: &VmName) -> Result<(), StoreError>;
    /// The audit trail after position `after`, oldest first.
    async fn events(&self, after: u64) -> Result<Vec<LoggedEvent>, StoreError>;
}

/// How an event changes a record; `None` means the event does not touch records, and
/// `Some(None)` that the record is gone. Shared by every store implementation.
pub fn next_record(current: Option<VmRecord>, event: &Event) -> Option<Option<VmRecord>> {
    let now = azlin_core::now_rfc3339();
    match event {
        Event::CreateStatus(s) => {
            let mut record = current?;
            if record.request_id != s.request_id {
                return None;
            }
            record.stage = s.stage.as_str().to_string();
            record.message = s.message.clone();
            record.updated_at = now;
            Some(Some(record))
        }
        Event::CreateComplete(c) => {
            let mut record = current?;
            if record.request_id != c.request_id {
                return None;
            }
            // A pool VM waits in its pool until taken; one taken while it booted is ready.
            record.state = if record.pool.is_some() && record.claim.is_none() {
                RecordState::Pooled
            } else {
                RecordState::Ready
            };
            record.stage = "ready".into();
            record.message = if c.warnings.is_empty() {
                "ready".into()
            } else {
                c.warnings.join("; ")
            };
            record.address = c.vm.address.clone();
            record.ssh_port = c.vm.ssh_port;
            record.user = c.vm.user.clone();
            record.host_key = c.vm.host_key.clone();
            record.timings = c.timings.clone();
            record.details = c.details.clone();
            record.updated_at = now;
            Some(Some(record))
        }
        Event::CreateFailed(f) => {
            let mut record = current?;
            if record.request_id != f.request_id {
                return None;
            }
            if f.cleaned_up && !f.vm_left_running {
                return Some(None);
            }
            record.state = RecordState::Failed;
            record.message = f.error.message.clone();
            record.left_running = f.vm_left_running;
            if let Some(vm) = &f.vm {
                record.address.clone_from(&vm.address);
                record.ssh_port = vm.ssh_port;
                record.user.clone_from(&vm.user);
                record.host_key.clone_from(&vm.host_key);
            }
            record.updated_at = now;
            Some(Some(record))
        }
        Event::DeleteStatus(s) => {
            let mut record = current?;
            record.state = RecordState::Deleting;
            record.message = s.message.clone();
            record.updated_at = now;
            Some(Some(record))
        }
        Event::DeleteComplete(_) => Some(None),
        Event::DeleteFailed(f) => {
            let mut record = current?;
            record.message = f.error.message.clone();
            record.updated_at = now;
            Some(Some(record))
        }
        Event::SshVerified(_)
        | Event::CloudInitComplete(_)
        | Event::PoolReady(_)
        | Event::PoolTaken(_)
        | Event::PoolRetired(_) => None,
    }
}

/// Whether `event` can change a record (the others only go to the audit trail).
pub fn changes_records(event: &Event) -> bool {
    !matches!(
        event,
        Event::SshVerified(_)
            | Event::CloudInitComplete(_)
            | Event::PoolReady(_)
            | Event::PoolTaken(_)
            | Event::PoolRetired(_)
    )
}

/// The record a create request starts.
pub fn requested_record(request: &Request) -> Option<VmRecord> {
    let Request::Create(create) = request else {
        return None;
    };
    Some(VmRecord {
        name: create.spec.name.clone(),
        provider: create.spec.provider,
        state: RecordState::Creating,
        stage: "requested".into(),
        message: "waiting for a worker".into(),
        request_id: create.request_id.clone(),
        address: String::new(),
        ssh_port: 22,
        user: String::new(),
        host_key: String::new(),
        timings: BTreeMap::new(),
        details: BTreeMap::new(),
        left_running: false,
        updated_at: azlin_core::now_rfc3339(),
        pool: create.spec.tags.get(POOL_TAG).cloned(),
        claim: None,
        tags: create.spec.tags.clone(),
    })
}

/// The tag that marks a VM booted for a warm pool; its value is the pool's name.
pub const POOL_TAG: &str = "azlin-pool";

/// The oldest pooled record of `pool` among `records` (the one a claim takes), or `only`'s.
pub fn oldest_pooled<'a>(
    records: impl IntoIterator<Item = &'a VmRecord>,
    pool: &str,
    only: Option<&VmName>,
) -> Option<&'a VmRecord> {
    records
        .into_iter()
        .filter(|r| r.state == RecordState::Pooled && r.pool.as_deref() == Some(pool))
        .filter(|r| only.is_none_or(|name| &r.name == name))
        .min_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.name.cmp(&b.name)))
}

/// `record` taken by `claim`.
pub fn claimed(mut record: VmRecord, claim: &Claim) -> VmRecord {
    record.state = RecordState::Ready;
    record.message = format!("taken by {}", claim.by);
    record.claim = Some(claim.clone());
    record.updated_at = azlin_core::now_rfc3339();
    record
}
