//! The event-driven control plane of seed 001.
//!
//! `azlin new` never calls a provider itself: it submits a `vm.create.request` to a [`Bus`] and
//! follows the events for its request id. A [`Worker`] takes requests off the bus, performs
//! provisioning, readiness and repository setup through a [`Launcher`], and publishes each
//! stage. The bus is in-process by default and NATS JetStream when a server is named: same code
//! path, two transports.

pub mod bus;
pub mod launch;
pub mod orchestrator;
pub mod orphans;
pub mod plan;
pub mod pool;
pub mod stop_notes;
pub mod store;
pub mod worker;

pub use bus::nats::{NatsBus, NatsSettings};
pub use bus::{Bus, BusError, Delivery, Subscription};
pub use launch::{LaunchSettings, Launcher, ProviderSource};
pub use orchestrator::Orchestrator;
pub use orphans::{Orphan, OrphanStore};
pub use plan::{LaunchOptions, PlanError, Planner};
pub use pool::{PoolStatus, Pools};
pub use stop_notes::StopNotes;
pub use store::{Claim, KvStore, RecordState, SqliteStore, StateStore, VmRecord};
pub use worker::{Worker, WorkerSettings};
