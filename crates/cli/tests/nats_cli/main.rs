//! The `azlin` binary over a real nats-server (each test starts its own on a free loopback
//! port): worker processes, `new` through the bus, SIGKILLed workers, signals, `serve`,
//! `events` and `list` from the key-value store. Needs nats-server ≥ 2.10
//! (`scripts/install-nats.sh`).

// Harness code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

// The run result and `new` arguments the e2e binary uses too.
mod ci_service;
#[path = "../e2e/common.rs"]
mod common;
mod events;
mod fleet;
mod nspawn;
mod secrets;
mod serve;
mod signals;
mod support;
