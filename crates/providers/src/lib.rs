//! [`VmProvider`](azlin_core::VmProvider) implementations: `nspawn`, `qemu`, `azure` and `sim`.
//!
//! This is the only layer that runs cloud CLIs, `systemd-nspawn`, `qemu` or `ip`.

pub mod azure;
pub mod command;
pub mod image;
mod local;
pub mod lock;
pub mod network;
pub mod nspawn;
mod process;
pub mod qemu;
pub mod record;
pub mod sim;
pub mod tools;
