//! The CI service inside `azlin serve`, put together from `[serve]`: webhook intake and metrics,
//! the planner that turns deliveries into queued runs, the reporter that posts results, the
//! dashboard.

use crate::app::App;
use crate::failure::Failure;
use crate::settings::read_secret;
use azlin_ci::board::Board;
use azlin_ci::dashboard::{Access, Dashboard};
use azlin_ci::fetch::{DEFAULT_TEMPLATE, RepoSource};
use azlin_ci::github::{DEFAULT_API_URL, GitHub};
use azlin_ci::metrics::Metrics;
use azlin_ci::otlp::Exporter;
use azlin_ci::planner::Planner;
use azlin_ci::queue::CiBus;
use azlin_ci::reporter::Reporter;
use azlin_ci::run_event::RunEvent;
use azlin_ci::service::CiService;
use azlin_control::bus::nats::FedEvent;
use azlin_core::nats::Secret;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The CI service's parts.
pub struct Ci {
    /// `POST /webhook`, `GET /metrics`.
    pub service: Arc<CiService>,
    /// The runs the dashboard shows.
    pub board: Arc<Board>,
    /// `GET /` and its event streams.
    pub dashboard: Arc<Dashboard>,
    /// Posts results (with NATS: workflow events come only from there).
    pub reporter: Option<Reporter>,
    /// Where spans of runs go, when configured.
    pub otlp: Option<Exporter>,
    planner: Option<JoinHandle<()>>,
}

/// A secret read from `file` (`[serve] KEY`).
fn secret(key: &str, file: &Path) -> anyhow::Result<Secret> {
    read_secret(&format!("[serve] {key}"), file)
}

impl Ci {
    /// Sets the service up from the config; the planner runs (with NATS) until `stopped`.
    pub fn start(
        app: &App,
        bus: Option<CiBus>,
        listen: Option<SocketAddr>,
        stopped: watch::Receiver<bool>,
    ) -> anyhow::Result<Ci> {
        let config = &app.settings.config.serve;
        let webhook_secret = config
            .webhook_secret_file
            .as_deref()
            .map(|file| secret("webhook_secret_file", file))
            .transpose()?;
        let token = config
            .token_file
            .as_deref()
            .map(|file| secret("token_file", file))
            .transpose()?;
        let source = RepoSource::new(
            config.repo_url.as_deref().unwrap_or(DEFAULT_TEMPLATE),
            token.clone(),
        )
        .map_err(|e| Failure::usage(e.to_string()))?;
        let github = match &token {
            Some(token) => Some(
                GitHub::new(
                    config.api_url.as_deref().unwrap_or(DEFAULT_API_URL),
                    token.clone(),
                )
                .map_err(|e| Failure::usage(format!("[serve] api_url: {e}")))?,
            ),
            None => None,
        };
        let access = match (listen, &config.dashboard_token_file) {
            (Some(addr), _) if addr.ip().is_loopback() => Access::Open,
            (_, Some(file)) => Access::Token(secret("dashboard_token_file", file)?),
            (_, None) => Access::Closed,
        };
        let board = Arc::new(Board::default());
        let dashboard = Dashboard::new(board.clone(), bus.clone(), app.store()?, access);
        let metrics = Arc::new(Metrics::new());
        let service = CiService::new(webhook_secret, bus.clone(), metrics.clone(), app.store()?);
        let planner = bus.as_ref().map(|bus| {
            if github.is_none() {
                eprintln!(
                    "azlin serve: results of runs are not posted to GitHub: no [serve] token_file"
                );
            }
            let planner = Planner::new(
                bus.clone(),
                source,
                app.settings.paths.state_dir.join("ci"),
                metrics.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = planner.run(stopped).await {
                    tracing::warn!("the planner stopped: {e}");
                }
            })
        });
        let otlp = config
            .otlp_endpoint
            .as_deref()
            .map(Exporter::start)
            .transpose()
            .map_err(|e| Failure::usage(e.to_string()))?;
        let reporter = bus.map(|bus| Reporter::new(bus, github, config.report, metrics));
        Ok(Ci {
            service,
            board,
            dashboard,
            reporter,
            otlp,
            planner,
        })
    }

    /// Waits for the planner to stop.
    pub async fn stop(self) {
        if let Some(planner) = self.planner
            && let Err(e) = planner.await
        {
            tracing::warn!("the planner ended abnormally: {e}");
        }
    }
}

/// The workflow event `fed` carries, if it is one (one that cannot be read is logged).
pub fn run_event(fed: &FedEvent) -> Option<RunEvent> {
    if !fed.subject().starts_with("workflow.") {
        return None;
    }
    RunEvent::decode(fed.subject(), fed.payload())
        .inspect_err(|e| tracing::warn!("skipping a workflow event that cannot be read: {e}"))
        .ok()
}
