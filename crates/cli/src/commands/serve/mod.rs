//! `azlin serve`: follows the events into the state store and keeps `deployment-state.yaml`
//! current; with `--listen ADDR`, answers `GET /healthz` and `GET /vms` (JSON), `GET /metrics`,
//! and takes GitHub webhooks (`POST /webhook`) whose runs it queues for `azlin worker --runs`
//! and whose results it posts back to GitHub (see [`ci`]). With warm pools configured, it is
//! also their keeper; with `[vm] idle_stop_minutes`, it stops idle VMs. It runs the cache and
//! artifact services for as long as it runs, shared by the workflow runs it serves.
//!
//! With NATS it follows the events stream through a durable consumer, so a restarted `serve`
//! goes on where it stopped. In-process, the events are recorded by the commands that produce
//! them (in the SQLite store), and `serve` keeps the state file and the HTTP view current.

mod ci;

use crate::app::App;
use crate::args::ServeArgs;
use crate::failure::Failure;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use azlin_ci::queue::CiBus;
use azlin_control::bus::nats::ServeFeed;
use azlin_control::{NatsBus, Orchestrator, StateStore};
use azlin_core::ExitCode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

/// How long a burst of events may go on before the state file is written anyway.
const STATE_DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the in-process store is looked at.
const POLL: Duration = Duration::from_millis(500);

/// What the HTTP endpoints share.
struct Shared {
    store: Arc<dyn StateStore>,
    transport: &'static str,
    recorded: AtomicU64,
    started_at: String,
    /// The port of the cache and artifact services.
    services_port: u16,
}

async fn healthz(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    Json(serde_json::json!({
        "status": "ok",
        "transport": shared.transport,
        "events_recorded": shared.recorded.load(Ordering::Relaxed),
        "started_at": shared.started_at,
        "services_port": shared.services_port,
    }))
}

async fn vms(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    match shared.store.vms().await {
        Ok(records) => (StatusCode::OK, Json(serde_json::json!(records))),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "error": e.to_string() })),
        ),
    }
}

fn parse_listen(listen: Option<&str>) -> anyhow::Result<Option<SocketAddr>> {
    listen
        .map(|addr| {
            addr.parse::<SocketAddr>().map_err(|_| {
                Failure::usage(format!(
                    "--listen {addr}: expected an address and port such as 127.0.0.1:8080"
                ))
            })
        })
        .transpose()
}

/// Runs `azlin serve`.
pub async fn run(app: &App, args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs { listen } = args;
    let listen = parse_listen(listen.as_deref())?;
    let idle_stop = app.settings.config.vm.idle_stop().map_err(Failure::usage)?;
    let orchestrator = app.orchestrator()?;
    let services = azlin_services::Services::start(app.settings.services_config())
        .await
        .map_err(|e| Failure::with_code(ExitCode::Error, e.to_string()))?;
    let shared = Arc::new(Shared {
        store: orchestrator.store().clone(),
        transport: if app.settings.nats.is_some() {
            "nats"
        } else {
            "in-process"
        },
        recorded: AtomicU64::new(0),
        started_at: azlin_core::now_rfc3339(),
        services_port: services.port(),
    });
    let (stop, stopped_rx) = watch::channel(false);
    let mut stopped = stopped_rx.clone();
    // Connect (and fail) before serving anything. The durable feed is set up before
    // "recording events" is announced: it delivers only events published after its creation,
    // so announcing first lost the events of a launch started right after the announcement.
    let feed = match &app.settings.nats {
        Some(nats) => {
            let bus = Arc::new(NatsBus::connect_with(nats, app.nats_settings()).await?);
            let feed = bus.serve_feed().await?;
            Some((CiBus::on(bus).await?, feed))
        }
        None => None,
    };
    let ci = ci::Ci::start(
        app,
        feed.as_ref().map(|(bus, _)| bus.clone()),
        listen,
        stopped_rx.clone(),
    )?;
    orchestrator.write_state().await?;

    tokio::spawn(async move {
        crate::commands::events::interrupted().await;
        stop.send_replace(true);
    });
    let keeper = crate::commands::pool::keeper(app, stopped.clone()).await?;
    let http = match listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
            let bound = listener.local_addr()?;
            eprintln!("azlin serve: listening on http://{bound}");
            let router = axum::Router::new()
                .route("/healthz", get(healthz))
                .route("/vms", get(vms))
                .with_state(shared.clone())
                .merge(ci.service.routes())
                .merge(ci.dashboard.routes());
            let mut stopped = stopped.clone();
            Some(tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                axum::serve(listener, router)
                    .with_graceful_shutdown(shutdown)
                    .await
            }))
        }
        None => None,
    };
    eprintln!(
        "azlin serve: recording events ({}) into the state store; state file {}; caches and artifacts for workflow jobs on port {}",
        shared.transport,
        app.settings.deployment_state().display(),
        services.port()
    );
    let idle = crate::commands::idle::watch_idle(app, idle_stop, stopped.clone());
    let follow = async {
        match feed {
            Some((_bus, mut feed)) => {
                follow_nats(&mut feed, &orchestrator, &shared, &ci, &mut stopped).await
            }
            None => follow_store(&orchestrator, &shared, &mut stopped).await,
        }
    };
    let (followed, ()) = tokio::join!(follow, idle);
    followed?;
    ci.stop().await;
    if let Some(http) = http {
        http.await??;
    }
    services.shutdown().await;
    if let Some(keeper) = keeper
        && let Err(e) = keeper.await
    {
        tracing::warn!("the pool keeper ended abnormally: {e}");
    }
    Ok(ExitCode::Ok)
}

/// Records events from the durable feed until stopped; the state file is rewritten once a
/// burst of events is over.
async fn follow_nats(
    feed: &mut ServeFeed,
    orchestrator: &Orchestrator,
    shared: &Shared,
    ci: &ci::Ci,
    stopped: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut dirty = false;
    loop {
        let next = tokio::select! {
            next = feed.next() => next,
            () = tokio::time::sleep(STATE_DEBOUNCE), if dirty => {
                orchestrator.write_state().await?;
                dirty = false;
                continue;
            }
            _ = stopped.wait_for(|stop| *stop) => break,
        };
        let Some(fed) = next else { break };
        if let (Some(reporter), Some(run_event)) = (&ci.reporter, ci::run_event(&fed)) {
            if let Err(e) = reporter.handle(&run_event).await {
                // Not acknowledged: the event comes again.
                tracing::warn!("reporting {}: {e}", run_event.subject());
                continue;
            }
            ci.board.apply(&run_event);
            if let Some(otlp) = &ci.otlp {
                otlp.record(&run_event, fed.traceparent());
            }
            shared.recorded.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(event) = &fed.event {
            ci.service.vm_event(event);
            if let Err(e) = orchestrator.store().apply(event).await {
                // Not acknowledged: the event comes again.
                tracing::warn!("recording {}: {e}", event.subject());
                continue;
            }
            shared.recorded.fetch_add(1, Ordering::Relaxed);
            dirty = true;
        }
        if let Err(e) = fed.done().await {
            tracing::warn!("{e}");
        }
    }
    if dirty {
        orchestrator.write_state().await?;
    }
    Ok(())
}

/// Watches the in-process store's audit trail until stopped, rewriting the state file when it
/// grows.
async fn follow_store(
    orchestrator: &Orchestrator,
    shared: &Shared,
    stopped: &mut watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store = orchestrator.store();
    let mut last = store.events(0).await?.last().map_or(0, |e| e.seq);
    loop {
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stopped.wait_for(|stop| *stop) => return Ok(()),
        }
        let new = store.events(last).await?;
        if let Some(event) = new.last() {
            last = event.seq;
            shared
                .recorded
                .fetch_add(u64::try_from(new.len()).unwrap_or(0), Ordering::Relaxed);
            orchestrator.write_state().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_are_checked() {
        assert_eq!(parse_listen(None).expect("none"), None);
        assert_eq!(
            parse_listen(Some("127.0.0.1:8080")).expect("addr"),
            Some("127.0.0.1:8080".parse().expect("addr"))
        );
        let err = parse_listen(Some("localhost")).expect_err("no port");
        assert_eq!(crate::failure::exit_code(&err), ExitCode::Usage);
    }
}
