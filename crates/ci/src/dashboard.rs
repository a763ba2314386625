//! The dashboard, `GET /`: one server-rendered page of runs (jobs, steps, live step output), VMs,
//! warm pools and runner workers, with a small script that follows two event streams (SSE):
//! `/events` (a run changed: its fragment, rendered here) and `/runs/ID/log` (its output lines,
//! from the start of the run, then live). Read-only. On loopback it is open; on any other
//! address every request needs the dashboard token (`?token=` or `Authorization: Bearer`).

use crate::board::{Board, RunView};
use crate::queue::CiBus;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use azlin_control::{RecordState, StateStore, VmRecord};
use azlin_core::nats::Secret;
use futures::{Stream, StreamExt};
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// Who may look.
#[derive(Debug, Clone)]
pub enum Access {
    /// Anyone who can connect (the dashboard listens on loopback).
    Open,
    /// Whoever shows this token.
    Token(Secret),
    /// Nobody: it listens beyond loopback and no token is configured.
    Closed,
}

/// The dashboard's state.
pub struct Dashboard {
    board: Arc<Board>,
    bus: Option<CiBus>,
    store: Arc<dyn StateStore>,
    access: Access,
}

impl Dashboard {
    /// A dashboard of `board`, VMs of `store`, runners and logs of `bus`.
    pub fn new(
        board: Arc<Board>,
        bus: Option<CiBus>,
        store: Arc<dyn StateStore>,
        access: Access,
    ) -> Arc<Dashboard> {
        Arc::new(Dashboard {
            board,
            bus,
            store,
            access,
        })
    }

    /// `GET /`, `GET /events`, `GET /runs/{id}/log`, each behind the access check.
    pub fn routes(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/events", get(changes))
            .route("/runs/{id}/log", get(log))
            .route_layer(middleware::from_fn_with_state(self.clone(), guard))
            .with_state(self.clone())
    }

    /// Whether a request with these headers and `?token=` may look.
    fn allowed(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), (StatusCode, &'static str)> {
        let expected = match &self.access {
            Access::Open => return Ok(()),
            Access::Closed => {
                return Err((
                    StatusCode::FORBIDDEN,
                    "the dashboard listens beyond loopback and needs a token: set [serve] \
                     dashboard_token_file",
                ));
            }
            Access::Token(token) => token,
        };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let given = query_token.or(bearer).unwrap_or_default();
        if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                "the dashboard needs its token (?token=…)",
            ))
        }
    }

    async fn render(&self) -> String {
        let runs: String = self.board.runs().iter().map(run_html).collect();
        let records = self.store.vms().await.unwrap_or_default();
        let runners = match &self.bus {
            Some(bus) => bus.runners().await.unwrap_or_default(),
            None => Vec::new(),
        };
        let runner_rows: String = runners
            .iter()
            .map(|r| {
                row(&[
                    &r.worker,
                    &r.labels.join(", "),
                    &format!("{}/{}", r.running, r.capacity),
                ])
            })
            .collect();
        PAGE.replace("{{runs}}", &runs)
            .replace("{{vms}}", &vm_rows(&records))
            .replace("{{pools}}", &pool_rows(&records))
            .replace("{{runners}}", &runner_rows)
    }
}

/// Text made safe for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn row(cells: &[&str]) -> String {
    let cells: String = cells
        .iter()
        .map(|c| format!("<td>{}</td>", escape(c)))
        .collect();
    format!("<tr>{cells}</tr>")
}

fn state(state: &str) -> String {
    format!(
        "<span class=\"state {}\">{}</span>",
        escape(state),
        escape(state)
    )
}

/// A run's summary: what `/events` sends when it changes, and what the page starts with.
pub fn run_summary(run: &RunView) -> String {
    let sha: String = run.sha.chars().take(7).collect();
    let mut html = format!(
        "<div class=\"head\">{} <b>{}</b> {} <code>{}</code> on {}</div>",
        state(&run.state),
        escape(&run.workflow),
        escape(&run.repository),
        escape(&sha),
        escape(if run.worker.is_empty() {
            "(waiting)"
        } else {
            &run.worker
        }),
    );
    if let Some(error) = &run.error {
        html.push_str(&format!("<div class=\"error\">{}</div>", escape(error)));
    }
    html.push_str("<ul class=\"jobs\">");
    for job in &run.jobs {
        html.push_str(&format!(
            "<li>{} {} <small>{}</small><ul class=\"steps\">",
            state(&job.state),
            escape(&job.name),
            escape(&job.vm)
        ));
        for step in &job.steps {
            html.push_str(&format!(
                "<li>{} {}</li>",
                state(&step.state),
                escape(&step.name)
            ));
        }
        html.push_str("</ul></li>");
    }
    html.push_str("</ul>");
    html
}

fn run_html(run: &RunView) -> String {
    let id = escape(&run.run_id);
    format!(
        "<div class=\"run\" id=\"run-{id}\" data-run=\"{id}\"><div class=\"summary\">{}</div>\
         <pre class=\"log\"></pre></div>",
        run_summary(run)
    )
}

fn vm_rows(records: &[VmRecord]) -> String {
    records
        .iter()
        .map(|r| {
            row(&[
                r.name.as_str(),
                r.provider.as_str(),
                &format!("{:?}", r.state).to_lowercase(),
                &r.address,
                r.pool.as_deref().unwrap_or(""),
            ])
        })
        .collect()
}

fn pool_rows(records: &[VmRecord]) -> String {
    let mut pools: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for record in records {
        if let Some(pool) = &record.pool {
            let (ready, taken) = pools.entry(pool).or_default();
            match (&record.claim, record.state == RecordState::Ready) {
                (Some(_), _) => *taken += 1,
                (None, true) => *ready += 1,
                (None, false) => {}
            }
        }
    }
    pools
        .iter()
        .map(|(pool, (ready, taken))| row(&[pool, &ready.to_string(), &taken.to_string()]))
        .collect()
}

/// Lets a request through to the dashboard only if [`Dashboard::allowed`] says so.
async fn guard(State(dashboard): State<Arc<Dashboard>>, request: Request, next: Next) -> Response {
    let token = request.uri().query().and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == "token")
            .map(|(_, value)| value.into_owned())
    });
    match dashboard.allowed(request.headers(), token.as_deref()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
    }
}

async fn page(State(dashboard): State<Arc<Dashboard>>) -> Response {
    Html(dashboard.render().await).into_response()
}

fn sse<S>(stream: S) -> Response
where
    S: Stream<Item = Event> + Send + 'static,
{
    Sse::new(stream.map(Ok::<Event, Infallible>))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(10)))
        .into_response()
}

async fn changes(State(dashboard): State<Arc<Dashboard>>) -> Response {
    let receiver = dashboard.board.subscribe();
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(run) => {
                    let data =
                        serde_json::json!({ "run_id": run.run_id, "html": run_summary(&run) });
                    return Some((Event::default().data(data.to_string()), receiver));
                }
                // A slow page missed changes: the next ones still come.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    sse(stream)
}

async fn log(State(dashboard): State<Arc<Dashboard>>, Path(id): Path<String>) -> Response {
    let Some(bus) = &dashboard.bus else {
        return (StatusCode::NOT_FOUND, "no run logs without NATS").into_response();
    };
    match bus.follow_log(&id).await {
        Ok(lines) => sse(lines
            .map(|line| Event::default().data(serde_json::to_string(&line).unwrap_or_default()))),
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>azlin</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
.run{border:1px solid #d0d7de;border-radius:6px;padding:.5em .8em;margin:.5em 0}
.state{display:inline-block;min-width:5.5em;font-weight:600}
.success{color:#1a7f37}.failure,.cancelled{color:#cf222e}.running{color:#9a6700}.queued,.skipped{color:#57606a}
ul{margin:.2em 0;padding-left:1.4em;list-style:none}
pre.log{background:#f6f8fa;max-height:20em;overflow:auto;margin:.4em 0 0;padding:.4em}
pre.log:empty{display:none}.error{color:#cf222e}
table{border-collapse:collapse}td,th{border-bottom:1px solid #d0d7de;padding:.2em .8em;text-align:left}
</style></head><body>
<h1>azlin</h1>
<h2>Runs</h2><div id="runs">{{runs}}</div>
<h2>VMs</h2><table><tr><th>name</th><th>provider</th><th>state</th><th>address</th><th>pool</th></tr>{{vms}}</table>
<h2>Warm pools</h2><table><tr><th>pool</th><th>ready</th><th>taken</th></tr>{{pools}}</table>
<h2>Runner workers</h2><table><tr><th>worker</th><th>labels</th><th>runs</th></tr>{{runners}}</table>
<script>
const token = new URLSearchParams(location.search).get("token");
const q = token ? "?token=" + encodeURIComponent(token) : "";
const following = new Set();
function follow(run) {
  const id = run.dataset.run;
  if (following.has(id)) return;
  following.add(id);
  const log = run.querySelector("pre.log");
  new EventSource("/runs/" + encodeURIComponent(id) + "/log" + q).onmessage = (e) => {
    const l = JSON.parse(e.data);
    log.textContent += "[" + l.job + "/" + l.step + "] " + l.line + "\n";
    log.scrollTop = log.scrollHeight;
  };
}
document.querySelectorAll(".run").forEach(follow);
new EventSource("/events" + q).onmessage = (e) => {
  const change = JSON.parse(e.data);
  let run = document.getElementById("run-" + change.run_id);
  if (!run) {
    run = document.createElement("div");
    run.className = "run";
    run.id = "run-" + change.run_id;
    run.dataset.run = change.run_id;
    run.innerHTML = '<div class="summary"></div><pre class="log"></pre>';
    document.getElementById("runs").prepend(run);
  }
  run.querySelector(".summary").innerHTML = change.html;
  follow(run);
};
</script>
</body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape(r#"<script>alert("x") & 'y'</script>"#),
            "&lt;script&gt;alert(&quot;x&quot;) &amp; &#39;y&#39;&lt;/script&gt;"
        );
        let run = RunView {
            run_id: "r1".into(),
            repository: "octo/<app>".into(),
            workflow: "CI".into(),
            sha: "abcdef0123".into(),
            state: "running".into(),
            worker: String::new(),
            error: None,
            jobs: Vec::new(),
        };
        let html = run_summary(&run);
        assert!(
            html.contains("octo/&lt;app&gt;") && html.contains("abcdef0<"),
            "{html}"
        );
        assert!(html.contains("(waiting)"));
    }
}
