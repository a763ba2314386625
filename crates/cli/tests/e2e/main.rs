//! End-to-end tests of the `azlin` binary against real local VMs (systemd-nspawn machines with
//! real sshd and cloud-init), a real HTTPS git server and real OpenSSH. They need root, as the
//! nspawn provider does, and the base image (built by `scripts/test.sh`, or on first use).
//! The `azure` module needs neither: it runs the binary against an ARM test double on loopback
//! with a stub `az`.

// Harness code: a failed unwrap is a failed test, with its location.
#![allow(clippy::unwrap_used)]

mod azure;
mod binary;
mod caches;
mod common;
mod day2;
mod defaults;
mod git_server;
mod github_token;
mod gui;
mod interrupt;
mod isolation;
mod keys;
mod limits;
mod local_new;
mod pools;
mod qemu;
mod refusals;
mod run_flags;
mod secrets;
mod snapshots;
mod support;
mod workflows;
