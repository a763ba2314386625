//! azlin as a CI service (the service layer): GitHub webhook events in, the workflows each event
//! triggers, and results back to GitHub.
//!
//! - [`event`]: the webhook events azlin acts on (`push`, `pull_request`, `workflow_dispatch`,
//!   `ping`), read from GitHub's payloads.
//! - [`trigger`]: which workflows an event runs, by GitHub's filters (`branches`, `tags`,
//!   `paths` and their `-ignore` forms, `types`, dispatch inputs) and glob rules.
//! - [`github`]: the GitHub REST client for check runs and commit statuses, with GitHub's retry
//!   rules (5xx, secondary rate limits, `Retry-After`, `x-ratelimit-reset`).

pub mod event;
pub mod github;
pub mod trigger;
