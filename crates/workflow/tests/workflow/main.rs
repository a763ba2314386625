//! Integration tests of azlin-workflow on the `sim` provider (VMs are folders, steps are local
//! processes), in one test binary split by topic.

// Test helpers outside #[test] functions panic on setup failures on purpose.
#![allow(clippy::unwrap_used)]

mod actions;
mod actions_source;
mod behaviour;
mod conformance;
mod harness;
mod lifecycle;
mod overhead;
mod semantics;
mod sessions;
