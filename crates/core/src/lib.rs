//! Domain types shared by every azlin layer.
//!
//! Nothing here performs I/O beyond reading a config file: providers, the control plane, the
//! workflow runner and the CLI all speak in these types, and the [`VmProvider`] trait lives here so
//! that upper layers depend on the trait and never on a concrete provider.

pub mod cloudinit;
pub mod config;
pub mod event;
pub mod exit;
pub mod name;
pub mod nats;
pub mod network;
pub mod provider;
pub mod repo;
pub mod spec;
pub mod vm;

pub use config::{CacheProtocol, Config, Paths};
pub use exit::{ErrorKind, ExitCode};
pub use name::VmName;
pub use network::{Egress, Ipv4Cidr, NetworkConfig};
pub use provider::{CreateRequest, DeleteReport, ProviderError, Snapshot, Tool, VmProvider};
pub use repo::RepoUrl;
pub use spec::{CloneSource, ImageProfile, ProviderKind, Region, Size, VmSpec};
pub use vm::{Vm, VmState};

/// The current time as an RFC 3339 timestamp, the format of every `at` and `created_at` field.
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().to_string()
}

/// The current UTC time as `YYYYMMDD-HHMMSS`, for generated names.
pub fn compact_timestamp() -> String {
    jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string()
}

/// A fresh unique id (UUID v4), used for request ids, session ids and run ids.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
