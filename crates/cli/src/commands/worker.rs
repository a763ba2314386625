//! `azlin worker`: a launch worker serving requests from a NATS server. Several may run, on one
//! machine or many; they share one durable consumer. The first SIGTERM/SIGINT stops taking
//! requests and lets those in flight finish; a second hands them back to the queue at once.

use crate::app::App;
use crate::args::WorkerArgs;
use crate::commands::cleanup::reclaim_sessions;
use crate::commands::run::{Plane, base_options, session_stack};
use crate::failure::Failure;
use azlin_ci::queue::CiBus;
use azlin_ci::runner::{Runner, RunnerSettings};
use azlin_control::{Launcher, NatsBus, NatsSettings, Worker, WorkerSettings};
use azlin_core::ExitCode;
use azlin_core::nats::NatsConnection;
use azlin_remote::keys::ensure_identity;
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// Deliveries a request may use up beyond the worker's own attempts: redeliveries after workers
/// died while holding it. Past that the janitor dead-letters it.
const SPARE_DELIVERIES: u32 = 5;

/// The worker's settings and the transport's, from the flags (over `base`).
fn settings(
    args: &WorkerArgs,
    base: NatsSettings,
) -> anyhow::Result<(WorkerSettings, NatsSettings)> {
    let WorkerArgs {
        concurrency,
        max_attempts,
        ack_wait,
        runs: _,
        labels: _,
        max_in_flight,
    } = args;
    if *max_in_flight == Some(0) {
        return Err(Failure::usage("--max-in-flight must be at least 1"));
    }
    if *concurrency == 0 {
        return Err(Failure::usage("--concurrency must be at least 1"));
    }
    if *max_attempts == 0 {
        return Err(Failure::usage("--max-attempts must be at least 1"));
    }
    if *ack_wait == 0 {
        return Err(Failure::usage("--ack-wait must be at least 1 second"));
    }
    let ack_wait = Duration::from_secs(*ack_wait);
    let worker = WorkerSettings {
        concurrency: *concurrency,
        max_attempts: *max_attempts,
        progress_interval: (ack_wait / 4).max(Duration::from_millis(100)),
        ..WorkerSettings::default()
    };
    let nats = NatsSettings {
        ack_wait,
        max_deliver: i64::from(max_attempts.saturating_add(SPARE_DELIVERIES)),
        ..base
    };
    Ok((worker, nats))
}

/// Runs `azlin worker`.
pub async fn run(app: &App, args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    let (worker_settings, nats_settings) = settings(args, app.nats_settings())?;
    let Some(url) = &app.settings.nats else {
        return Err(Failure::usage(
            "`azlin worker` serves requests from a NATS server: pass --nats URL or set \
             AZLIN_NATS_URL (without NATS, `azlin new` runs its own worker)",
        ));
    };
    if args.runs {
        return serve_runs(app, args, url, worker_settings, nats_settings).await;
    }
    // Workers started together on a fresh home race to create the key; ensure_identity
    // makes the loser use the winner's.
    let (identity, _) = ensure_identity(&app.settings.paths.ssh_key())?;
    let bus = Arc::new(NatsBus::connect_with(url, nats_settings).await?);
    bus.ensure_workers_consumer().await?;
    let launch = app.launch_settings();
    let id = launch.worker_id.clone();
    let launcher = Arc::new(
        Launcher::new(bus.clone(), app.providers.clone(), identity, launch)
            .with_orphans(app.settings.orphans()),
    );
    eprintln!(
        "azlin worker {id}: serving {url} (concurrency {}, max attempts {}, ack wait {}s)",
        worker_settings.concurrency,
        worker_settings.max_attempts,
        bus.settings().ack_wait.as_secs()
    );
    let worker = Worker::new(bus.clone(), launcher, worker_settings);
    let (stop, stopped) = watch::channel(false);
    let janitor = {
        let bus = bus.clone();
        let stopped = stopped.clone();
        tokio::spawn(async move {
            if let Err(e) = bus.run_janitor(stopped).await {
                tracing::warn!("janitor stopped: {e}");
            }
        })
    };
    let signals = tokio::spawn(on_signals(stop.clone(), worker.clone()));
    let served = worker.run(stopped).await;
    bus.release().await;
    stop.send_replace(true);
    let _ = janitor.await;
    signals.abort();
    served?;
    eprintln!("azlin worker {id}: stopped");
    Ok(ExitCode::Ok)
}

/// `azlin worker --runs`: workflow runs off the queue, on this host's session VMs.
async fn serve_runs(
    app: &App,
    args: &WorkerArgs,
    url: &NatsConnection,
    worker_settings: WorkerSettings,
    nats_settings: NatsSettings,
) -> anyhow::Result<ExitCode> {
    let bus = CiBus::connect(url, nats_settings).await?;
    // The session VMs of a runner that was killed here are released before new runs start.
    let (mut removed, mut failed) = (Vec::new(), Vec::new());
    reclaim_sessions(app, false, &mut removed, &mut failed).await?;
    for what in removed {
        eprintln!("azlin worker: removed {what}");
    }
    for what in failed {
        eprintln!("⚠ azlin worker: could not remove {what}");
    }
    let state = &app.settings.paths.state_dir;
    let mut options = base_options(app, state.join("logs"));
    options.max_concurrent = worker_settings.concurrency;
    let stack = session_stack(app, None, &mut options, Plane::Local).await?;
    let id = app.launch_settings().worker_id;
    let runner = Runner::new(
        bus.clone(),
        stack.manager.clone(),
        options.clone(),
        RunnerSettings {
            worker: id.clone(),
            labels: args.labels.clone(),
            concurrency: worker_settings.concurrency,
            progress_interval: worker_settings.progress_interval,
            work_dir: state.join("runs"),
            max_in_flight: args.max_in_flight,
        },
    );
    let labels = if args.labels.is_empty() {
        String::new()
    } else {
        format!(", labels {}", args.labels.join(","))
    };
    eprintln!(
        "azlin worker {id}: running workflow runs from {url} (concurrency {}{labels})",
        worker_settings.concurrency
    );
    let (stop, stopped) = watch::channel(false);
    let signals = tokio::spawn(async move {
        crate::commands::events::interrupted().await;
        eprintln!("azlin worker: stopping; finishing the runs in flight");
        stop.send_replace(true);
    });
    let served = runner.run(stopped).await;
    signals.abort();
    stack.shutdown(&mut options).await;
    bus.control().release().await;
    served?;
    eprintln!("azlin worker {id}: stopped");
    Ok(ExitCode::Ok)
}

/// First SIGTERM/SIGINT: stop taking requests. Second: hand those in flight back.
async fn on_signals(stop: watch::Sender<bool>, worker: Arc<Worker>) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the worker with SIGKILL");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!(
        "azlin worker: stopping; finishing the requests in flight (signal again to hand them to another worker)"
    );
    stop.send_replace(true);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    eprintln!("azlin worker: handing the requests in flight back to the queue");
    worker.abandon();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Cli;
    use clap::Parser;

    fn args(line: &[&str]) -> WorkerArgs {
        let mut full = vec!["azlin", "worker"];
        full.extend_from_slice(line);
        match Cli::parse_from(full).command {
            crate::args::Command::Worker(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_settings() {
        let (worker, nats) = settings(
            &args(&[
                "--concurrency",
                "16",
                "--max-attempts",
                "5",
                "--ack-wait",
                "8",
            ]),
            NatsSettings::default(),
        )
        .expect("settings");
        assert_eq!(worker.concurrency, 16);
        assert_eq!(worker.max_attempts, 5);
        assert_eq!(worker.progress_interval, Duration::from_secs(2));
        assert_eq!(nats.ack_wait, Duration::from_secs(8));
        assert_eq!(nats.max_deliver, 10);
        let (worker, nats) = settings(&args(&[]), NatsSettings::default()).expect("defaults");
        assert_eq!((worker.concurrency, worker.max_attempts), (4, 3));
        assert_eq!(nats.ack_wait, Duration::from_secs(30));
    }

    #[test]
    fn zeroes_are_refused() {
        for flags in [
            ["--concurrency", "0"],
            ["--max-attempts", "0"],
            ["--ack-wait", "0"],
        ] {
            let err = settings(&args(&flags), NatsSettings::default()).expect_err("refused");
            assert_eq!(
                crate::failure::exit_code(&err),
                ExitCode::Usage,
                "{flags:?}"
            );
        }
    }
}
