//! Bus messages: the subjects of seed 001 and their versioned JSON payloads.
//!
//! Every payload carries `schema: 1`. Publisher and consumer share these types, and [`decode`]
//! turns anything else (malformed JSON, an unknown schema, an unknown subject) into a
//! [`DecodeError`] that the consumer moves to dead letters instead of crashing.

use crate::{ErrorKind, ProviderKind, VmName, VmSpec};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The payload schema version this build writes and reads.
pub const SCHEMA: u32 = 1;

/// Subject names (exactly those of seed 001, plus `vm.delete.*` in the same shape).
pub mod subject {
    /// A request to create a VM (work queue).
    pub const CREATE_REQUEST: &str = "vm.create.request";
    /// Progress of a create.
    pub const CREATE_STATUS: &str = "vm.create.status";
    /// A create finished: the VM is ready.
    pub const CREATE_COMPLETE: &str = "vm.create.complete";
    /// A create failed for good.
    pub const CREATE_FAILED: &str = "vm.create.failed";
    /// SSH answered with the expected host key.
    pub const SSH_VERIFIED: &str = "vm.ssh.verified";
    /// cloud-init finished on the VM.
    pub const CLOUDINIT_COMPLETE: &str = "vm.cloudinit.complete";
    /// A request to delete a VM (work queue).
    pub const DELETE_REQUEST: &str = "vm.delete.request";
    /// Progress of a delete.
    pub const DELETE_STATUS: &str = "vm.delete.status";
    /// A delete finished.
    pub const DELETE_COMPLETE: &str = "vm.delete.complete";
    /// A delete failed.
    pub const DELETE_FAILED: &str = "vm.delete.failed";
    /// A pool VM is ready to be taken.
    pub const POOL_READY: &str = "pool.vm.ready";
    /// A pool VM was handed out (it never goes back).
    pub const POOL_TAKEN: &str = "pool.vm.taken";
    /// A pool VM was retired: too old, unhealthy, drained, or its taker is gone.
    pub const POOL_RETIRED: &str = "pool.vm.retired";
    /// A workflow run waiting for a runner (work queue).
    pub const RUN_REQUEST: &str = "workflow.run.request";
    /// Progress of a workflow run (accepted by a runner, fetching, …).
    pub const RUN_STATUS: &str = "workflow.run.status";
    /// A workflow run ended with every job successful.
    pub const RUN_COMPLETE: &str = "workflow.run.complete";
    /// A workflow run ended with a failed job, or could not run.
    pub const RUN_FAILED: &str = "workflow.run.failed";
    /// A job started on its VM.
    pub const JOB_STARTED: &str = "workflow.job.started";
    /// A job ended (or was skipped).
    pub const JOB_COMPLETED: &str = "workflow.job.completed";
    /// A step started.
    pub const STEP_STARTED: &str = "workflow.step.started";
    /// A step ended.
    pub const STEP_COMPLETED: &str = "workflow.step.completed";
    /// Workflow events on the audit trail (their payloads are the CI service's).
    pub const WORKFLOW_EVENTS: [&str; 7] = [
        RUN_STATUS,
        RUN_COMPLETE,
        RUN_FAILED,
        JOB_STARTED,
        JOB_COMPLETED,
        STEP_STARTED,
        STEP_COMPLETED,
    ];
    /// Log chunks of a run go on `workflow.log.<run_id>`.
    pub const LOG_PREFIX: &str = "workflow.log";
    /// Request subjects (consumed by workers).
    pub const REQUESTS: [&str; 2] = [CREATE_REQUEST, DELETE_REQUEST];
    /// Event subjects (the audit trail).
    pub const EVENTS: [&str; 11] = [
        CREATE_STATUS,
        CREATE_COMPLETE,
        CREATE_FAILED,
        SSH_VERIFIED,
        CLOUDINIT_COMPLETE,
        DELETE_STATUS,
        DELETE_COMPLETE,
        DELETE_FAILED,
        POOL_READY,
        POOL_TAKEN,
        POOL_RETIRED,
    ];
}

/// `vm.create.request`: create one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRequested {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// Idempotency key.
    pub request_id: String,
    /// What to create.
    pub spec: VmSpec,
    /// The requester's SSH public key, authorised for the admin user.
    pub ssh_public_key: String,
    /// Who asked (`user@host`).
    pub requested_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// `vm.delete.request`: delete one VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteRequested {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// Idempotency key of this delete.
    pub request_id: String,
    /// The VM to delete.
    pub name: VmName,
    /// Its provider.
    pub provider: ProviderKind,
    /// Who asked.
    pub requested_by: String,
    /// When (RFC 3339).
    pub created_at: String,
}

/// Stages of a create (and of a delete), in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A worker accepted the request.
    Accepted,
    /// The provider is creating the VM.
    Provisioning,
    /// The VM exists and is booting.
    Provisioned,
    /// Waiting for SSH.
    WaitingForSsh,
    /// SSH answered with the expected host key.
    SshReady,
    /// Waiting for `cloud-init status --wait`.
    WaitingForCloudInit,
    /// cloud-init finished.
    CloudInitDone,
    /// Cloning repositories.
    CloningRepos,
    /// Repositories cloned (or warned about).
    ReposDone,
    /// A failed attempt is being retried.
    Retrying,
    /// Cleaning up after a failure.
    CleaningUp,
    /// Deleting a VM.
    Deleting,
}

impl Stage {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Accepted => "accepted",
            Stage::Provisioning => "provisioning",
            Stage::Provisioned => "provisioned",
            Stage::WaitingForSsh => "waiting_for_ssh",
            Stage::SshReady => "ssh_ready",
            Stage::WaitingForCloudInit => "waiting_for_cloud_init",
            Stage::CloudInitDone => "cloud_init_done",
            Stage::CloningRepos => "cloning_repos",
            Stage::ReposDone => "repos_done",
            Stage::Retrying => "retrying",
            Stage::CleaningUp => "cleaning_up",
            Stage::Deleting => "deleting",
        }
    }
}

/// `vm.create.status` and `vm.delete.status`: progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The request this belongs to.
    pub request_id: String,
    /// The VM.
    pub name: VmName,
    /// Where the work is.
    pub stage: Stage,
    /// Human-readable detail.
    pub message: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The worker's id.
    pub worker: String,
    /// When (RFC 3339).
    pub at: String,
    /// Set when this status is a warning (e.g. a failed clone): the work goes on.
    #[serde(default)]
    pub warning: bool,
}

/// How to reach a finished VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmEndpoint {
    /// The VM.
    pub name: VmName,
    /// Its provider.
    pub provider: ProviderKind,
    /// SSH address (for `sim`: its directory).
    pub address: String,
    /// SSH port.
    pub ssh_port: u16,
    /// Login user.
    pub user: String,
    /// SSH host public key.
    pub host_key: String,
}

/// `vm.create.complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateComplete {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The request.
    pub request_id: String,
    /// The ready VM.
    pub vm: VmEndpoint,
    /// Milliseconds per stage (`provision`, `ssh`, `cloud_init`, `repos`).
    pub timings: BTreeMap<String, u64>,
    /// Warnings collected on the way (failed clones).
    #[serde(default)]
    pub warnings: Vec<String>,
    /// Provider-specific facts about the VM.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// An error carried in an event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The message.
    pub message: String,
    /// Whether a retry could help.
    pub retryable: bool,
}

/// `vm.create.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateFailed {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The request.
    pub request_id: String,
    /// The VM.
    pub name: VmName,
    /// What went wrong.
    pub error: EventError,
    /// The attempt that failed last.
    pub attempt: u32,
    /// Whether everything made for the request was removed.
    pub cleaned_up: bool,
    /// What the cleanup removed.
    #[serde(default)]
    pub removed: Vec<String>,
    /// Set when the VM is deliberately left running (readiness failures, exit 5).
    #[serde(default)]
    pub vm_left_running: bool,
    /// The VM left running: its address and the host key injected at creation, which are
    /// what later connections trust (never values read back from cloud resource tags).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm: Option<VmEndpoint>,
}

/// `vm.ssh.verified`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SshVerified {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The request.
    pub request_id: String,
    /// The VM.
    pub name: VmName,
    /// When.
    pub at: String,
}

/// `vm.cloudinit.complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudInitComplete {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The request.
    pub request_id: String,
    /// The VM.
    pub name: VmName,
    /// `done`, or `error` with cloud-init's detail in the status event before it.
    pub status: String,
    /// When.
    pub at: String,
}

/// `vm.delete.complete`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteComplete {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The delete request.
    pub request_id: String,
    /// The VM that is gone.
    pub name: VmName,
    /// What was removed.
    pub removed: Vec<String>,
    /// When.
    pub at: String,
}

/// `vm.delete.failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeleteFailed {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The delete request.
    pub request_id: String,
    /// The VM.
    pub name: VmName,
    /// What went wrong.
    pub error: EventError,
    /// When.
    pub at: String,
}

/// `pool.vm.ready`, `pool.vm.taken` and `pool.vm.retired`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolVm {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The create request of the VM.
    pub request_id: String,
    /// The pool.
    pub pool: String,
    /// The VM.
    pub name: VmName,
    /// Who took it (taken), or why it was retired.
    #[serde(default)]
    pub detail: String,
    /// When.
    pub at: String,
}

/// A request a worker consumes.
// A request lives for one message: the size of a delete request next to a create's is of no
// consequence, and a boxed create would cost an allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `vm.create.request`
    Create(CreateRequested),
    /// `vm.delete.request`
    Delete(DeleteRequested),
}

/// An event on the audit trail.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `vm.create.status`
    CreateStatus(Status),
    /// `vm.create.complete`
    CreateComplete(CreateComplete),
    /// `vm.create.failed`
    CreateFailed(CreateFailed),
    /// `vm.ssh.verified`
    SshVerified(SshVerified),
    /// `vm.cloudinit.complete`
    CloudInitComplete(CloudInitComplete),
    /// `vm.delete.status`
    DeleteStatus(Status),
    /// `vm.delete.complete`
    DeleteComplete(DeleteComplete),
    /// `vm.delete.failed`
    DeleteFailed(DeleteFailed),
    /// `pool.vm.ready`
    PoolReady(PoolVm),
    /// `pool.vm.taken`
    PoolTaken(PoolVm),
    /// `pool.vm.retired`
    PoolRetired(PoolVm),
}

/// Why a bus message could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed {subject} message: {reason}")]
    Malformed {
        /// The subject it arrived on.
        subject: String,
        /// What serde said.
        reason: String,
    },
    /// A schema version this build does not read.
    #[error("unknown schema version {version} on {subject} (this azlin reads schema {SCHEMA})")]
    UnknownSchema {
        /// The subject it arrived on.
        subject: String,
        /// The version found (0 when absent).
        version: u64,
    },
    /// A subject azlin does not use.
    #[error("unknown subject {0}")]
    UnknownSubject(String),
}

/// Reads a `schema: 1` JSON payload that arrived on `subject` into `T`.
pub fn decode_payload<T: DeserializeOwned>(subject: &str, bytes: &[u8]) -> Result<T, DecodeError> {
    let malformed = |e: serde_json::Error| DecodeError::Malformed {
        subject: subject.to_string(),
        reason: e.to_string(),
    };
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(malformed)?;
    let version = value
        .get("schema")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    if version != u64::from(SCHEMA) {
        return Err(DecodeError::UnknownSchema {
            subject: subject.to_string(),
            version,
        });
    }
    serde_json::from_value(value).map_err(malformed)
}

fn encode_payload<T: Serialize>(payload: &T) -> Vec<u8> {
    // Serialising these plain structs (strings, numbers, maps with string keys) cannot fail.
    serde_json::to_vec(payload).unwrap_or_default()
}

impl Request {
    /// The subject it is published on.
    pub fn subject(&self) -> &'static str {
        match self {
            Request::Create(_) => subject::CREATE_REQUEST,
            Request::Delete(_) => subject::DELETE_REQUEST,
        }
    }

    /// The idempotency key.
    pub fn request_id(&self) -> &str {
        match self {
            Request::Create(r) => &r.request_id,
            Request::Delete(r) => &r.request_id,
        }
    }

    /// The VM it is about.
    pub fn name(&self) -> &VmName {
        match self {
            Request::Create(r) => &r.spec.name,
            Request::Delete(r) => &r.name,
        }
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Request::Create(r) => encode_payload(r),
            Request::Delete(r) => encode_payload(r),
        }
    }

    /// Reads a request that arrived on `subject`.
    pub fn decode(subject: &str, bytes: &[u8]) -> Result<Request, DecodeError> {
        match subject {
            subject::CREATE_REQUEST => decode_payload(subject, bytes).map(Request::Create),
            subject::DELETE_REQUEST => decode_payload(subject, bytes).map(Request::Delete),
            other => Err(DecodeError::UnknownSubject(other.to_string())),
        }
    }
}

impl Event {
    /// The subject it is published on.
    pub fn subject(&self) -> &'static str {
        match self {
            Event::CreateStatus(_) => subject::CREATE_STATUS,
            Event::CreateComplete(_) => subject::CREATE_COMPLETE,
            Event::CreateFailed(_) => subject::CREATE_FAILED,
            Event::SshVerified(_) => subject::SSH_VERIFIED,
            Event::CloudInitComplete(_) => subject::CLOUDINIT_COMPLETE,
            Event::DeleteStatus(_) => subject::DELETE_STATUS,
            Event::DeleteComplete(_) => subject::DELETE_COMPLETE,
            Event::DeleteFailed(_) => subject::DELETE_FAILED,
            Event::PoolReady(_) => subject::POOL_READY,
            Event::PoolTaken(_) => subject::POOL_TAKEN,
            Event::PoolRetired(_) => subject::POOL_RETIRED,
        }
    }

    /// The request it belongs to.
    pub fn request_id(&self) -> &str {
        match self {
            Event::CreateStatus(e) | Event::DeleteStatus(e) => &e.request_id,
            Event::CreateComplete(e) => &e.request_id,
            Event::CreateFailed(e) => &e.request_id,
            Event::SshVerified(e) => &e.request_id,
            Event::CloudInitComplete(e) => &e.request_id,
            Event::DeleteComplete(e) => &e.request_id,
            Event::DeleteFailed(e) => &e.request_id,
            Event::PoolReady(e) | Event::PoolTaken(e) | Event::PoolRetired(e) => &e.request_id,
        }
    }

    /// The VM it is about.
    pub fn name(&self) -> &VmName {
        match self {
            Event::CreateStatus(e) | Event::DeleteStatus(e) => &e.name,
            Event::CreateComplete(e) => &e.vm.name,
            Event::CreateFailed(e) => &e.name,
            Event::SshVerified(e) => &e.name,
            Event::CloudInitComplete(e) => &e.name,
            Event::DeleteComplete(e) => &e.name,
            Event::DeleteFailed(e) => &e.name,
            Event::PoolReady(e) | Event::PoolTaken(e) | Event::PoolRetired(e) => &e.name,
        }
    }

    /// Whether this event ends its request (complete or failed).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::CreateComplete(_)
                | Event::CreateFailed(_)
                | Event::DeleteComplete(_)
                | Event::DeleteFailed(_)
        )
    }

    /// JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Event::CreateStatus(e) | Event::DeleteStatus(e) => encode_payload(e),
            Event::CreateComplete(e) => encode_payload(e),
            Event::CreateFailed(e) => encode_payload(e),
            Event::SshVerified(e) => encode_payload(e),
            Event::CloudInitComplete(e) => encode_payload(e),
            Event::DeleteComplete(e) => encode_payload(e),
            Event::DeleteFailed(e) => encode_payload(e),
            Event::PoolReady(e) | Event::PoolTaken(e) | Event::PoolRetired(e) => encode_payload(e),
        }
    }

    /// The payload as a JSON value (for `-o json` output).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.encode()).unwrap_or(serde_json::Value::Null)
    }

    /// Reads an event that arrived on `subject`.
    pub fn decode(subject: &str, bytes: &[u8]) -> Result<Event, DecodeError> {
        match subject {
            subject::CREATE_STATUS => decode_payload(subject, bytes).map(Event::CreateStatus),
            subject::CREATE_COMPLETE => decode_payload(subject, bytes).map(Event::CreateComplete),
            subject::CREATE_FAILED => decode_payload(subject, bytes).map(Event::CreateFailed),
            subject::SSH_VERIFIED => decode_payload(subject, bytes).map(Event::SshVerified),
            subject::CLOUDINIT_COMPLETE => {
                decode_payload(subject, bytes).map(Event::CloudInitComplete)
            }
            subject::DELETE_STATUS => decode_payload(subject, bytes).map(Event::DeleteStatus),
            subject::DELETE_COMPLETE => decode_payload(subject, bytes).map(Event::DeleteComplete),
            subject::DELETE_FAILED => decode_payload(subject, bytes).map(Event::DeleteFailed),
            subject::POOL_READY => decode_payload(subject, bytes).map(Event::PoolReady),
            subject::POOL_TAKEN => decode_payload(subject, bytes).map(Event::PoolTaken),
            subject::POOL_RETIRED => decode_payload(subject, bytes).map(Event::PoolRetired),
            other => Err(DecodeError::UnknownSubject(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec::new(VmName::parse("dev").unwrap(), ProviderKind::Sim)
    }

    #[test]
    fn requests_round_trip() {
        let request = Request::Create(CreateRequested {
            schema: SCHEMA,
            request_id: "r1".into(),
            spec: spec(),
            ssh_public_key: "ssh-ed25519 AAAA".into(),
            requested_by: "me@host".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
        });
        let bytes = request.encode();
        assert_eq!(
            Request::decode(subject::CREATE_REQUEST, &bytes).unwrap(),
            request
        );
    }

    #[test]
    fn malformed_and_unknown_schema_are_told_apart() {
        let err = Request::decode(subject::CREATE_REQUEST, b"{not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }));
        let err = Request::decode(subject::CREATE_REQUEST, br#"{"schema":7}"#).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnknownSchema {
                subject: subject::CREATE_REQUEST.into(),
                version: 7
            }
        );
        let err = Request::decode(subject::CREATE_REQUEST, br#"{"schema":1}"#).unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    }

    #[test]
    fn stages_are_ordered() {
        assert!(Stage::Accepted < Stage::Provisioning);
        assert!(Stage::SshReady < Stage::CloudInitDone);
        assert!(Stage::CloudInitDone < Stage::ReposDone);
    }
}
