//! The runner side of the CI service (`azlin worker --runs`): takes runs off the shared queue,
//! at most `concurrency` at a time, unpacks the repository snapshot, runs the workflow with this
//! host's session VMs, and publishes the run's events and log lines. While a run goes on its
//! message is kept alive with progress acknowledgements; a runner that dies stops them, and the
//! run is delivered to another runner. A run that has ended is never run again.

use crate::planner::unpack;
use crate::queue::{CiBus, RunState, RunnerBeat, Taker, attempt, log_line};
use crate::run_event::{
    JobEvent, RunEnded, RunEvent, RunRequested, RunStatus, SCHEMA, StepEvent, StepLine,
};
use async_nats::jetstream::{AckKind, Message};
use azlin_control::bus::BusError;
use azlin_remote::OutputStream;
use azlin_workflow::session::VmOrigin;
use azlin_workflow::{
    JobReport, Observer, Origin, RunOptions, SessionManager, StepReport, run_workflows_in,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

/// How a runner works.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Its id in events and heartbeats.
    pub worker: String,
    /// `runs-on` labels it serves beyond the Linux ones.
    pub labels: Vec<String>,
    /// Runs at once.
    pub concurrency: usize,
    /// How often a run in progress is reported alive.
    pub progress_interval: Duration,
    /// Where snapshots are unpacked and logs kept.
    pub work_dir: PathBuf,
    /// The most runs all runners together hold at once (none: no limit beyond each one's).
    pub max_in_flight: Option<u32>,
}

/// A runner worker.
pub struct Runner {
    bus: CiBus,
    manager: Arc<SessionManager>,
    base: RunOptions,
    settings: RunnerSettings,
    running: AtomicUsize,
}

impl Runner {
    /// A runner running workflows through `manager`, with `base` as the options of every run.
    pub fn new(
        bus: CiBus,
        manager: Arc<SessionManager>,
        base: RunOptions,
        settings: RunnerSettings,
    ) -> Arc<Runner> {
        Arc::new(Runner {
            bus,
            manager,
            base,
            settings,
            running: AtomicUsize::new(0),
        })
    }

    /// Takes runs until `stopped` turns true, then waits for those in flight.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) -> Result<(), BusError> {
        let queue: Arc<Taker> = Arc::new(self.bus.runner_queue(self.settings.max_in_flight).await?);
        let heartbeat = tokio::spawn(self.clone().heartbeats(stopped.clone()));
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.max(1)));
        let mut in_flight = JoinSet::new();
        loop {
            let permit = tokio::select! {
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let message = tokio::select! {
                message = queue.next() => message,
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            while in_flight.try_join_next().is_some() {}
            let Some(message) = message else { continue };
            let runner = self.clone();
            in_flight.spawn(async move {
                runner.take(message).await;
                drop(permit);
            });
        }
        while in_flight.join_next().await.is_some() {}
        heartbeat.abort();
        self.bus.leave(&self.settings.worker).await;
        Ok(())
    }

    async fn heartbeats(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let every = crate::queue::HEARTBEAT_TTL / 3;
        loop {
            let beat = RunnerBeat {
                worker: self.settings.worker.clone(),
                labels: self.settings.labels.clone(),
                running: self.running.load(Ordering::Relaxed),
                capacity: self.settings.concurrency,
            };
            if let Err(e) = self.bus.heartbeat(&beat).await {
                tracing::debug!("{e}");
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stopped.wait_for(|stop| *stop) => return,
            }
        }
    }

    async fn take(&self, message: Message) {
        let attempt = attempt(&message);
        let request = match RunRequested::decode(&message.payload) {
            Ok(request) => request,
            Err(e) => {
                self.bus.dead_letter(&message, e.to_string(), attempt).await;
                ack(&message, AckKind::Term).await;
                return;
            }
        };
        match self.bus.run_state(&request.run_id).await {
            Ok(Some(state)) if state.state == "ended" => {
                ack(&message, AckKind::Ack).await;
                return;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("reading run {}: {e}", request.run_id);
                ack(&message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
                return;
            }
        }
        let traceparent = message
            .headers
            .as_ref()
            .and_then(|h| h.get(azlin_control::bus::nats::topology::TRACEPARENT_HEADER))
            .map(|v| v.to_string())
            .unwrap_or_default();
        if let Some(label) = request
            .labels
            .iter()
            .find(|label| !self.settings.labels.contains(label))
        {
            let settings = self.bus.control().settings();
            // A runner alive that serves the label takes the run soon: hand it back at once.
            let served = match self.bus.runners().await {
                Ok(beats) => beats.iter().any(|beat| beat.labels.contains(label)),
                Err(e) => {
                    tracing::debug!("{e}");
                    false
                }
            };
            if i64::from(attempt) + 1 >= settings.max_deliver {
                // Its last delivery: no runner that serves the label took it in all this time.
                let error = if served {
                    format!(
                        "the runners that serve runs-on label '{label}' stayed busy through \
                         {attempt} deliveries of the run"
                    )
                } else {
                    format!(
                        "no runner serves runs-on label '{label}': start one with \
                         `azlin worker --runs --labels {label}`"
                    )
                };
                let ended = self.ended(&request, "failure", Some(error));
                self.finish(&message, &request, ended, &traceparent).await;
                return;
            }
            tracing::info!(
                run = %request.run_id,
                "not taking the run: it needs runs-on label '{label}', which this runner does not serve"
            );
            // Left for a runner that serves the label: at once when one is alive, otherwise
            // longer each time, for one to start.
            let delay = if served {
                Duration::from_secs(1)
            } else {
                settings.ack_wait.saturating_mul(attempt)
            };
            ack(&message, AckKind::Nak(Some(delay))).await;
            return;
        }
        self.running.fetch_add(1, Ordering::Relaxed);
        let alive = {
            let message = message.clone();
            let every = self.settings.progress_interval;
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = message.ack_with(AckKind::Progress).await {
                        tracing::debug!("progress: {e}");
                    }
                }
            })
        };
        let ended = self.execute(&request, attempt, &traceparent).await;
        alive.abort();
        self.running.fetch_sub(1, Ordering::Relaxed);
        self.finish(&message, &request, ended, &traceparent).await;
    }

    /// How `request` ended, as its end event says it.
    fn ended(&self, request: &RunRequested, conclusion: &str, error: Option<String>) -> RunEnded {
        RunEnded {
            schema: SCHEMA,
            run_id: request.run_id.clone(),
            repository: request.repository.clone(),
            workflow: request.workflow.clone(),
            conclusion: conclusion.to_string(),
            error,
            worker: self.settings.worker.clone(),
            at: azlin_core::now_rfc3339(),
        }
    }

    /// Announces the end of a run, records it as ended and acknowledges its message (or hands
    /// it back when that could not be recorded).
    async fn finish(
        &self,
        message: &Message,
        request: &RunRequested,
        ended: RunEnded,
        traceparent: &str,
    ) {
        let conclusion = ended.conclusion.clone();
        let end = if conclusion == "success" {
            RunEvent::Complete(ended)
        } else {
            RunEvent::Failed(ended)
        };
        let recorded = async {
            self.bus.publish_event(&end, traceparent).await?;
            self.bus
                .set_run_state(
                    &request.run_id,
                    &RunState {
                        state: "ended".into(),
                        conclusion: Some(conclusion),
                        worker: self.settings.worker.clone(),
                        repository: request.repository.clone(),
                        workflow: request.workflow.clone(),
                        sha: request.sha.clone(),
                        received_ms: request.received_ms,
                    },
                )
                .await
        };
        match recorded.await {
            Ok(()) => ack(message, AckKind::Ack).await,
            Err(e) => {
                tracing::warn!("recording the end of run {}: {e}", request.run_id);
                ack(message, AckKind::Nak(Some(Duration::from_secs(1)))).await;
            }
        }
    }

    /// Runs the workflow; says how it ended.
    async fn execute(&self, request: &RunRequested, attempt: u32, traceparent: &str) -> RunEnded {
        let worker = self.settings.worker.clone();
        let ended =
            |conclusion: &str, error: Option<String>| self.ended(request, conclusion, error);
        let status = RunEvent::Status(RunStatus {
            schema: SCHEMA,
            run_id: request.run_id.clone(),
            worker: worker.clone(),
            attempt,
            message: format!("taken by {worker}"),
            at: azlin_core::now_rfc3339(),
        });
        if let Err(e) = self.bus.publish_event(&status, traceparent).await {
            tracing::warn!("{e}");
        }
        let queued = RunState {
            state: "running".into(),
            conclusion: None,
            worker: worker.clone(),
            repository: request.repository.clone(),
            workflow: request.workflow.clone(),
            sha: request.sha.clone(),
            received_ms: request.received_ms,
        };
        if let Err(e) = self.bus.set_run_state(&request.run_id, &queued).await {
            tracing::warn!("{e}");
        }
        let work = match self.unpack(request).await {
            Ok(work) => work,
            Err(e) => return ended("failure", Some(e)),
        };
        let repo = work.path().join("repo");
        let mut options = self.base.clone();
        options.event = request.event.clone();
        options.event_payload = request.payload.clone();
        options.repository = Some(request.repository.clone());
        options.repo_dir = Some(repo.clone());
        options.logs_dir = work.path().join("logs");
        options
            .runner_labels
            .extend(self.settings.labels.iter().cloned());
        options.cancel = tokio_util::sync::CancellationToken::new();
        let (tx, rx) = mpsc::unbounded_channel();
        let publisher = tokio::spawn(publish_all(
            self.bus.clone(),
            rx,
            request.run_id.clone(),
            traceparent.to_string(),
        ));
        let observer = Arc::new(EventObserver {
            tx,
            request: request.clone(),
            worker: worker.clone(),
        });
        let outcome = run_workflows_in(
            &self.manager,
            &[repo.join(&request.workflow)],
            &options,
            observer,
        )
        .await;
        // Every event of the run is stored before its end is announced.
        if let Err(e) = publisher.await {
            tracing::warn!("publishing the events of run {}: {e}", request.run_id);
        }
        match outcome {
            Ok(report) if report.success => ended("success", None),
            Ok(report) => ended("failure", report.error_message()),
            Err(e) => ended("failure", Some(e.to_string())),
        }
    }

    /// Unpacks the run's snapshot into a fresh folder (`repo/` inside it).
    async fn unpack(&self, request: &RunRequested) -> Result<tempfile::TempDir, String> {
        std::fs::create_dir_all(&self.settings.work_dir)
            .map_err(|e| format!("{}: {e}", self.settings.work_dir.display()))?;
        let work = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&self.settings.work_dir)
            .map_err(|e| format!("{}: {e}", self.settings.work_dir.display()))?;
        let tarball = work.path().join("repo.tar");
        self.bus
            .get_object(&request.snapshot, &tarball)
            .await
            .map_err(|e| format!("the repository snapshot: {e}"))?;
        let repo = work.path().join("repo");
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir(&repo).map_err(|e| e.to_string())?;
            unpack(&tarball, &repo)?;
            std::fs::remove_file(&tarball).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(work)
    }
}

async fn ack(message: &Message, kind: AckKind) {
    if let Err(e) = message.ack_with(kind).await {
        tracing::warn!("acknowledging a run: {e}");
    }
}

/// What the observer hands to the publisher, in order.
enum Outgoing {
    Event(Box<RunEvent>),
    Log(crate::run_event::LogLine),
}

/// Publishes a run's events and log lines in the order they happened.
async fn publish_all(
    bus: CiBus,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    run_id: String,
    traceparent: String,
) {
    while let Some(outgoing) = rx.recv().await {
        match outgoing {
            Outgoing::Event(event) => {
                if let Err(e) = bus.publish_event(&event, &traceparent).await {
                    tracing::warn!("publishing {}: {e}", event.subject());
                }
            }
            Outgoing::Log(line) => bus.publish_log(&run_id, &line).await,
        }
    }
}

/// Turns the executor's progress into run events.
struct EventObserver {
    tx: mpsc::UnboundedSender<Outgoing>,
    request: RunRequested,
    worker: String,
}

impl EventObserver {
    fn send(&self, outgoing: Outgoing) {
        // The publisher outlives the run: a closed channel means the run is over.
        if self.tx.send(outgoing).is_err() {
            tracing::debug!("an event after the run ended");
        }
    }

    fn job(&self, workflow: &str, job: &str) -> JobEvent {
        JobEvent {
            schema: SCHEMA,
            run_id: self.request.run_id.clone(),
            job: job.to_string(),
            workflow: workflow.to_string(),
            repository: self.request.repository.clone(),
            sha: self.request.sha.clone(),
            worker: self.worker.clone(),
            vm: String::new(),
            pool: None,
            claim_us: None,
            conclusion: None,
            steps: Vec::new(),
            summary: String::new(),
            error: None,
            received_ms: self.request.received_ms,
            at: azlin_core::now_rfc3339(),
        }
    }

    fn step(&self, at: Origin<'_>, conclusion: Option<String>) -> StepEvent {
        StepEvent {
            schema: SCHEMA,
            run_id: self.request.run_id.clone(),
            job: at.job.to_string(),
            step: at.step.to_string(),
            conclusion,
            received_ms: self.request.received_ms,
            at: azlin_core::now_rfc3339(),
        }
    }
}

impl Observer for EventObserver {
    fn job_started(&self, at: Origin<'_>, vm: &str, origin: &VmOrigin) {
        let mut job = self.job(at.workflow, at.job);
        job.vm = vm.to_string();
        if let VmOrigin::Pool { pool, claim_us } = origin {
            job.pool = Some(pool.clone());
            job.claim_us = Some(*claim_us);
        }
        self.send(Outgoing::Event(Box::new(RunEvent::JobStarted(job))));
    }

    fn step_started(&self, at: Origin<'_>) {
        self.send(Outgoing::Event(Box::new(RunEvent::StepStarted(
            self.step(at, None),
        ))));
    }

    fn output(&self, at: Origin<'_>, _stream: OutputStream, line: &str) {
        self.send(Outgoing::Log(log_line(at.job, at.step, line)));
    }

    fn step_finished(&self, at: Origin<'_>, report: &StepReport) {
        let conclusion = Some(report.conclusion.as_str().to_string());
        self.send(Outgoing::Event(Box::new(RunEvent::StepCompleted(
            self.step(at, conclusion),
        ))));
    }

    fn job_finished(&self, workflow: &str, report: &JobReport) {
        let mut job = self.job(workflow, &report.name);
        job.vm = report.vm.clone().unwrap_or_default();
        job.conclusion = Some(report.conclusion().as_str().to_string());
        job.steps = report
            .steps
            .iter()
            .map(|step| StepLine {
                name: step.name.clone(),
                conclusion: step.conclusion.as_str().to_string(),
                duration_ms: step.duration_ms,
            })
            .collect();
        job.summary = report
            .steps
            .iter()
            .map(|step| step.summary.as_str())
            .filter(|summary| !summary.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
        job.error = report.error.clone().or(report.skip_reason.clone());
        self.send(Outgoing::Event(Box::new(RunEvent::JobCompleted(job))));
    }
}
