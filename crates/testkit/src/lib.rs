//! Test harnesses for azlin: real servers started by tests, and named test doubles for what cannot exist on this machine (Azure ARM, `az`). Every harness cleans up in `Drop`.
//!
//! - [`ArmDouble`]: Azure Resource Manager's REST contract on loopback, with a resource table, a
//!   request log and injectable faults; [`arm_double::checks`] holds the checks of what azlin
//!   sent it that both the provider's tests and the CLI's end-to-end tests make.
//! - [`StubAz`]: a stub `az` program printing the real JSON shapes of `az account show` and
//!   `az account get-access-token` (or az's "not logged in" error).
//! - [`ActionRepos`]: the action repositories of the conformance corpus as bare repositories
//!   (a `file://` actions source); [`GitServer`] serves such a folder over HTTPS with a test CA.
//! - [`conformance`]: the act conformance corpus and how outcomes are judged against it.
//! - [`GitHubDouble`]: GitHub's REST API for check runs and commit statuses on loopback, with a
//!   request log, a bearer token and injectable 5xx and rate-limit faults
//!   ([`github_double::Fault`]).
//! - [`CollectorDouble`]: an OpenTelemetry collector's OTLP/HTTP traces endpoint (JSON) on
//!   loopback, keeping the spans it receives.
//! - [`NatsServer`]: the real `nats-server` with JetStream on a free loopback port, restartable on
//!   the same port and storage; with [`ServerOptions`] (TLS, users, accounts) or as a
//!   [`NatsCluster`]; [`TestPki`] makes the certificates.

pub mod actions;
pub mod arm_double;
pub mod conformance;
pub mod git_server;
pub mod github_double;
pub mod http_thread;
pub mod nats;
pub mod netns;
pub mod otlp_double;
pub mod pki;
pub mod stub_az;

pub use actions::ActionRepos;
pub use arm_double::{ArmDouble, Fault, RecordedRequest, ResourceSnapshot};
pub use git_server::{GitServer, free_port};
pub use github_double::GitHubDouble;
pub use nats::{LAUNCH_MILESTONES, NatsCluster, NatsServer, ServerOptions};
pub use otlp_double::CollectorDouble;
pub use pki::TestPki;
pub use stub_az::{AzAccount, StubAz};
