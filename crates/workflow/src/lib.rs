//! Running GitHub Actions workflows on azlin VMs, one VM per workflow session (seed 002).
//!
//! - [`model`]: the workflow file, parsed with a real YAML parser into typed jobs and steps.
//! - [`expression`]: `${{ }}` templates and `if:` conditions with GitHub's semantics.
//! - [`matrix`]: strategy matrices expanded with GitHub's include/exclude rules.

pub mod expression;
pub mod matrix;
pub mod model;
pub mod observer;
pub mod options;
pub mod platform;
pub mod protocol;
pub mod report;
pub mod repository;
pub mod session;
