//! Integration tests of azlin-workflow on the `sim` provider (VMs are folders, steps are local
//! processes), in one test binary split by topic.

mod behaviour;
mod conformance;
mod harness;
mod lifecycle;
mod sessions;
