//! The control plane over a real nats-server (started by each test on a free loopback port,
//! JetStream in a temporary folder): transport, fleets through several workers, dead letters,
//! server restarts and the key-value state store. Requires nats-server ≥ 2.10
//! (`scripts/install-nats.sh`).

mod auth;
mod cluster;
mod dead_letters;
mod fleet;
mod restart;
mod store;
mod support;
mod transport;
mod worker;
