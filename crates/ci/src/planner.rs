//! From a delivery to runs: the repository is fetched at the event's commit, its workflows are
//! matched against the event, a snapshot of the checkout is stored for the runners, and one
//! `workflow.run.request` is queued per workflow that runs.

use crate::event::Event;
use crate::fetch::{FetchError, RepoSource};
use crate::metrics::Metrics;
use crate::queue::{CiBus, QueuedDelivery, attempt};
use crate::run_event::{RunRequested, SCHEMA};
use crate::trigger::Triggers;
use azlin_control::bus::BusError;
use azlin_workflow::model::Workflow;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Deliveries of one delivery before it is given up on.
const MAX_ATTEMPTS: u32 = 5;

/// Why a delivery planned nothing.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The payload is not an event azlin can read: no retry helps.
    #[error("{0}")]
    Event(#[from] crate::event::EventError),
    /// The repository could not be fetched (maybe for now).
    #[error("{0}")]
    Fetch(#[from] FetchError),
    /// The bus failed (maybe for now).
    #[error("{0}")]
    Bus(#[from] BusError),
    /// A local file operation failed.
    #[error("{0}")]
    Io(String),
}

impl PlanError {
    fn retryable(&self) -> bool {
        !matches!(self, PlanError::Event(_))
    }
}

/// Plans the runs of deliveries.
pub struct Planner {
    bus: CiBus,
    source: RepoSource,
    work_dir: PathBuf,
    metrics: Arc<Metrics>,
}

impl Planner {
    /// A planner fetching from `source` into temporary folders under `work_dir`.
    pub fn new(bus: CiBus, source: RepoSource, work_dir: PathBuf, metrics: Arc<Metrics>) -> Self {
        Planner {
            bus,
            source,
            work_dir,
            metrics,
        }
    }

    /// Plans deliveries until `stopped` turns true.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) -> Result<(), BusError> {
        let taker = self.bus.planner().await?;
        loop {
            let message = tokio::select! {
                message = taker.next() => message,
                _ = stopped.wait_for(|stop| *stop) => return Ok(()),
            };
            let Some(message) = message else { continue };
            self.take(message).await;
        }
    }

    async fn take(&self, message: async_nats::jetstream::Message) {
        let attempt = attempt(&message);
        let outcome = match self.bus.read_delivery(&message).await {
            Ok((delivery, body)) => self.plan(&delivery, &body).await,
            Err(e) => Err(e.into()),
        };
        let ack = match outcome {
            Ok(runs) => {
                tracing::info!(queued = runs.len(), "delivery planned");
                message.double_ack().await
            }
            Err(e) if e.retryable() && attempt < MAX_ATTEMPTS => {
                tracing::warn!("planning a delivery (attempt {attempt}): {e}; trying again");
                let delay = Duration::from_secs(u64::from(attempt) * 2);
                message
                    .ack_with(async_nats::jetstream::AckKind::Nak(Some(delay)))
                    .await
            }
            Err(e) => {
                self.bus
                    .dead_letter(&message, format!("planning the delivery: {e}"), attempt)
                    .await;
                message.ack_with(async_nats::jetstream::AckKind::Term).await
            }
        };
        if let Err(e) = ack {
            tracing::warn!("acknowledging a delivery: {e}");
        }
    }

    /// Queues the runs `delivery` calls for; returns them.
    pub async fn plan(
        &self,
        delivery: &QueuedDelivery,
        body: &[u8],
    ) -> Result<Vec<RunRequested>, PlanError> {
        let event = Event::parse(&delivery.event, body)?;
        let (Some(repository), Some(sha), Some(git_ref)) =
            (event.repository(), event.sha(), event.git_ref())
        else {
            return Ok(Vec::new());
        };
        std::fs::create_dir_all(&self.work_dir).map_err(|e| io("creating", &self.work_dir, e))?;
        let checkout = tempfile::Builder::new()
            .prefix("checkout-")
            .tempdir_in(&self.work_dir)
            .map_err(|e| io("creating a folder in", &self.work_dir, e))?;
        self.source.fetch(repository, sha, checkout.path()).await?;
        let snapshot = snapshot_name(repository, sha);
        let mut runs = Vec::new();
        for (relative, workflow) in workflows(checkout.path()) {
            let triggers = match Triggers::from_workflow(&workflow) {
                Ok(triggers) => triggers,
                Err(e) => {
                    tracing::warn!("{repository}@{sha}: {e}");
                    continue;
                }
            };
            let decision = triggers.decide(&event);
            if !decision.runs() {
                tracing::debug!("{relative}: not run: {decision:?}");
                continue;
            }
            runs.push(RunRequested {
                schema: SCHEMA,
                run_id: run_id(&delivery.id, &relative),
                delivery: delivery.id.clone(),
                repository: repository.to_string(),
                workflow: relative,
                event: event.name().to_string(),
                payload: event.payload().clone(),
                sha: sha.to_string(),
                git_ref: git_ref.clone(),
                snapshot: snapshot.clone(),
                labels: custom_labels(&workflow),
                received_ms: delivery.received_ms,
            });
        }
        if runs.is_empty() {
            return Ok(runs);
        }
        if !self.bus.has_object(&snapshot).await {
            let tarball = pack(checkout.path(), &self.work_dir)?;
            let mut file = tokio::fs::File::open(tarball.path())
                .await
                .map_err(|e| io("reading", tarball.path(), e))?;
            self.bus.put_object(&snapshot, &mut file).await?;
        }
        for run in &runs {
            if self.bus.queue_run(run, &delivery.traceparent).await? {
                self.metrics.run_queued();
            }
        }
        Ok(runs)
    }
}

fn io(what: &str, path: &Path, e: std::io::Error) -> PlanError {
    PlanError::Io(format!("{what} {}: {e}", path.display()))
}

/// `<delivery>-<12 hex of the workflow path's hash>`: one run per delivery and workflow.
pub fn run_id(delivery: &str, workflow: &str) -> String {
    let digest = Sha256::digest(workflow.as_bytes());
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("{delivery}-{hex}")
}

/// The object holding `repository` at `sha`.
pub fn snapshot_name(repository: &str, sha: &str) -> String {
    format!("repo/{repository}/{sha}")
}

/// The workflows of a checkout that parse, by path relative to it, sorted. (One that does not
/// parse is logged: GitHub shows it as a failed workflow file and runs nothing of it.)
fn workflows(root: &Path) -> Vec<(String, Workflow)> {
    let dir = root.join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yml" || ext == "yaml")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| match Workflow::load(&path) {
            Ok(workflow) => {
                let relative = path.strip_prefix(root).ok()?.to_string_lossy().into_owned();
                Some((relative, workflow))
            }
            Err(e) => {
                tracing::warn!("{e}");
                None
            }
        })
        .collect()
}

/// The `runs-on` labels of a workflow's jobs that only some runners serve: not Linux runner
/// labels, not expressions, not other systems' hosted runners (those jobs are skipped anyway).
fn custom_labels(workflow: &Workflow) -> Vec<String> {
    let mut labels: Vec<String> = workflow
        .jobs
        .iter()
        .flat_map(|job| job.runs_on.iter())
        .filter(|label| {
            let lower = label.to_ascii_lowercase();
            !azlin_workflow::platform::is_linux_label(label)
                && !label.contains("${{")
                && !lower.starts_with("macos")
                && !lower.starts_with("windows")
                && !lower.starts_with("ubuntu")
        })
        .cloned()
        .collect();
    labels.sort();
    labels.dedup();
    labels
}

/// A tar of `root` (work tree and `.git`) in a temporary file under `dir`.
fn pack(root: &Path, dir: &Path) -> Result<tempfile::NamedTempFile, PlanError> {
    let file =
        tempfile::NamedTempFile::new_in(dir).map_err(|e| io("creating a file in", dir, e))?;
    let mut builder = tar::Builder::new(file.as_file());
    builder.follow_symlinks(false);
    builder
        .append_dir_all(".", root)
        .and_then(|()| builder.finish())
        .map_err(|e| io("packing", root, e))?;
    drop(builder);
    Ok(file)
}

/// Unpacks a snapshot made by [`pack`] into `into`.
pub fn unpack(tarball: &Path, into: &Path) -> Result<(), String> {
    let file = std::fs::File::open(tarball).map_err(|e| format!("{}: {e}", tarball.display()))?;
    tar::Archive::new(file)
        .unpack(into)
        .map_err(|e| format!("unpacking the repository: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_stable_per_delivery_and_workflow() {
        let a = run_id("d-1", ".github/workflows/ci.yml");
        assert_eq!(a, run_id("d-1", ".github/workflows/ci.yml"));
        assert_ne!(a, run_id("d-1", ".github/workflows/docs.yml"));
        assert_ne!(a, run_id("d-2", ".github/workflows/ci.yml"));
        assert!(a.starts_with("d-1-") && a.len() == "d-1-".len() + 12, "{a}");
    }

    #[test]
    fn snapshots_pack_and_unpack_with_their_git_folder() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join(".git/refs")).unwrap();
        std::fs::write(root.path().join(".git/HEAD"), "x\n").unwrap();
        std::fs::write(root.path().join("README"), "hi\n").unwrap();
        let work = tempfile::tempdir().unwrap();
        let tarball = pack(root.path(), work.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        unpack(tarball.path(), out.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.path().join("README")).unwrap(),
            "hi\n"
        );
        assert_eq!(
            std::fs::read_to_string(out.path().join(".git/HEAD")).unwrap(),
            "x\n"
        );
    }
}
