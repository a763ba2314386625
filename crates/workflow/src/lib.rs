//! Running GitHub Actions workflows on azlin VMs, exactly one VM per workflow session (seed 002).
//!
//! The CLI calls [`run_workflows`] with the workflow files, the [`RunOptions`] that mirror
//! `azlin run`'s flags, an [`Allocator`] (the control plane's launch path) and an [`Observer`]
//! (which prints `[job/step] line`), and gets a serialisable [`RunReport`].
//!
//! - [`model`]: the workflow file, parsed with a real YAML parser into typed jobs and steps;
//!   errors name the file, the line and what was expected.
//! - [`expression`]: `${{ }}` templates and `if:` conditions with GitHub's semantics.
//! - [`matrix`]: strategy matrices expanded with GitHub's include/exclude rules.
//! - [`protocol`]: the runner protocol on the VM — the one-round-trip step program, environment
//!   files, workflow commands, masking.
//! - [`session`]: sessions with a global concurrency limit, one VM each, released on every path.
//! - [`repository`]: the workflow's repository (checkout archive, git facts); `hashFiles`
//!   hashes the checked-out copy on the VM.
//! - [`action`]: actions (`action.yml`) and where remote ones and reusable workflows come from:
//!   fetched on the host and cached by commit.
//! - [`inputs`]: `workflow_dispatch` / `workflow_call` inputs typed by their declaration;
//!   [`dotenv`]: the `.env` files of `--env-file` and `--secret-file`.
//! - [`platform`]: which `runs-on` labels a Linux VM stands for.
//! - [`report`], [`observer`], [`options`]: what goes in and comes out.

pub mod action;
pub mod dotenv;
pub mod expression;
pub mod inputs;
pub mod matrix;
pub mod model;
pub mod observer;
pub mod options;
pub mod platform;
pub mod protocol;
pub mod report;
pub mod repository;
pub mod session;

mod context;
mod hash_files;
mod job;
mod run;
mod scheduler;
mod step;
mod workspace;

pub use observer::{NullObserver, Observer, Origin};
pub use options::{ActionSettings, RunOptions, VmScope, local_user};
pub use report::{JobReport, JobResult, RunReport, StepOutcome, StepReport, WorkflowReport};
pub use run::{RunError, check_run, run_workflows, run_workflows_in, session_config};
pub use session::{
    AllocError, Allocation, AllocationRequest, Allocator, LaunchAllocator, ProviderAllocator,
    RunAs, Session, SessionConfig, SessionManager, SessionRecord, SessionState,
};
