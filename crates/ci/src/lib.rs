//! azlin as a CI service (the service layer): GitHub webhook events in, the workflows each event
//! triggers, runs queued on the bus for runner workers on any host, and results back to GitHub.
//!
//! - [`webhook`]: a delivery's signature (HMAC-SHA256, constant time) and id.
//! - [`event`]: the webhook events azlin acts on (`push`, `pull_request`, `workflow_dispatch`,
//!   `ping`), read from GitHub's payloads.
//! - [`trigger`]: which workflows an event runs, by GitHub's filters (`branches`, `tags`,
//!   `paths` and their `-ignore` forms, `types`, dispatch inputs) and glob rules.
//! - [`service`]: `POST /webhook` (checked, de-duplicated, queued at once) and `GET /metrics`.
//! - [`queue`]: the streams, buckets and consumers of the CI service on NATS JetStream.
//! - [`fetch`]: a repository fetched at one commit, the token kept out of argv and logs.
//! - [`planner`]: a delivery becomes one queued run per workflow it triggers.
//! - [`runner`]: `azlin worker --runs`: runs taken off the queue and run with this host's VMs.
//! - [`run_event`]: the run request, the workflow events and the log lines on the bus.
//! - [`reporter`]: check runs or commit statuses posted from the workflow events.
//! - [`github`]: the GitHub REST client for check runs and commit statuses, with GitHub's retry
//!   rules (5xx, secondary rate limits, `Retry-After`, `x-ratelimit-reset`).
//! - [`metrics`]: the Prometheus metrics.
//! - [`otlp`]: spans of runs, jobs and steps sent to an OpenTelemetry collector.
//! - [`board`], [`dashboard`]: `GET /`, runs with live step output, VMs, pools and runners.

pub mod board;
pub mod dashboard;
pub mod event;
pub mod fetch;
pub mod github;
pub mod metrics;
pub mod otlp;
pub mod planner;
pub mod queue;
pub mod reporter;
pub mod run_event;
pub mod runner;
pub mod service;
pub mod trigger;
pub mod webhook;
