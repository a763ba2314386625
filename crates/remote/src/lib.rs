//! Reaching azlin VMs: SSH keys, readiness checks, command execution with streamed output,
//! interactive attach and tunnels.
//!
//! This is the only layer that speaks SSH or runs `ssh`. Upper layers get a [`Shell`] for a VM
//! from [`connect`] and never care whether it is an SSH session (nspawn, qemu, azure) or local
//! processes in a directory (sim).

pub mod local;
pub mod quote;
pub mod shell;

pub use local::LocalShell;
pub use shell::{Captured, OutputStream, RemoteError, Shell};
