//! `azlin events [--follow]`: the audit trail, oldest first — the NATS events stream, or the
//! SQLite store's trail in-process. A table, or JSON lines with `-o json`; `--follow` keeps
//! printing new events until interrupted.

use crate::app::App;
use crate::args::{EventsArgs, OutputFormat};
use azlin_control::NatsBus;
use azlin_control::bus::nats::{Range, logged};
use azlin_control::store::LoggedEvent;
use azlin_core::ExitCode;
use serde_json::Value;
use std::io::Write;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How often the in-process trail is looked at with `--follow`.
const POLL: Duration = Duration::from_millis(300);

/// Resolves at the first SIGINT or SIGTERM.
pub async fn interrupted() {
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

fn text(value: &Value, path: &[&str]) -> String {
    let mut at = value;
    for key in path {
        at = &at[*key];
    }
    match at {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The run, time and one-line detail of a workflow event.
fn workflow_summary(event: &LoggedEvent) -> (String, String, String) {
    let p = &event.payload;
    let (job, step) = (text(p, &["job"]), text(p, &["step"]));
    let detail = match event.subject.as_str() {
        "workflow.run.status" => text(p, &["message"]),
        "workflow.run.complete" | "workflow.run.failed" => {
            let error = text(p, &["error"]);
            let error = if error.is_empty() {
                error
            } else {
                format!(": {error}")
            };
            format!(
                "{} {}{error}",
                text(p, &["workflow"]),
                text(p, &["conclusion"])
            )
        }
        "workflow.job.started" => format!("job {job} started on {}", text(p, &["vm"])),
        "workflow.job.completed" => format!("job {job}: {}", text(p, &["conclusion"])),
        "workflow.step.started" => format!("{job} / {step} started"),
        "workflow.step.completed" => format!("{job} / {step}: {}", text(p, &["conclusion"])),
        _ => p.to_string(),
    };
    (text(p, &["run_id"]), text(p, &["at"]), detail)
}

/// The VM (or run), time and one-line detail of an event.
fn summary(event: &LoggedEvent) -> (String, String, String) {
    if event.subject.starts_with("workflow.") {
        return workflow_summary(event);
    }
    let p = &event.payload;
    let name = match text(p, &["name"]) {
        n if n.is_empty() => text(p, &["vm", "name"]),
        n => n,
    };
    let detail = match event.subject.rsplit('.').next().unwrap_or_default() {
        "status" => {
            let warning = if p["warning"].as_bool() == Some(true) {
                "warning: "
            } else {
                ""
            };
            format!(
                "{}: {warning}{} (attempt {})",
                text(p, &["stage"]),
                text(p, &["message"]),
                text(p, &["attempt"])
            )
        }
        "complete" if event.subject == "vm.create.complete" => {
            format!(
                "ready at {}:{}",
                text(p, &["vm", "address"]),
                text(p, &["vm", "ssh_port"])
            )
        }
        "complete" if event.subject == "vm.cloudinit.complete" => {
            format!("cloud-init {}", text(p, &["status"]))
        }
        "complete" => match p["removed"].as_array() {
            Some(removed) => format!(
                "removed {}",
                removed
                    .iter()
                    .map(|r| r.as_str().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            None => "done".into(),
        },
        "failed" => text(p, &["error", "message"]),
        "verified" => "SSH answered with the expected host key".into(),
        _ => p.to_string(),
    };
    (name, text(p, &["at"]), detail)
}

/// Prints events as they come: a header, then one row each; or JSON lines.
struct Printer {
    json: bool,
    rows: usize,
}

impl Printer {
    /// Prints one event; `false` when stdout was closed (`azlin events | head`): stop quietly.
    fn print(&mut self, event: &LoggedEvent, stored_at: Option<&str>) -> std::io::Result<bool> {
        match self.write(event, stored_at) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn write(&mut self, event: &LoggedEvent, stored_at: Option<&str>) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            let mut line = serde_json::json!({
                "seq": event.seq,
                "subject": event.subject,
                "payload": event.payload,
            });
            if let Some(traceparent) = &event.traceparent {
                line["traceparent"] = traceparent.as_str().into();
            }
            if let Some(at) = stored_at {
                line["stored_at"] = Value::String(at.to_string());
            }
            writeln!(out, "{line}")?;
        } else {
            if self.rows == 0 {
                writeln!(
                    out,
                    "{:>6}  {:<30}  {:<21}  {:<18}  {:<8}  DETAIL",
                    "SEQ", "TIME", "SUBJECT", "VM OR RUN", "REQUEST"
                )?;
            }
            let (name, at, detail) = summary(event);
            let at = if at.is_empty() {
                stored_at.unwrap_or_default().to_string()
            } else {
                at
            };
            let request: String = text(&event.payload, &["request_id"])
                .chars()
                .take(8)
                .collect();
            writeln!(
                out,
                "{:>6}  {:<30}  {:<21}  {:<18}  {:<8}  {detail}",
                event.seq, at, event.subject, name, request
            )?;
        }
        self.rows += 1;
        out.flush()
    }
}

/// Runs `azlin events`.
pub async fn run(app: &App, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let EventsArgs { follow } = args;
    let mut printer = Printer {
        json: app.settings.output == OutputFormat::Json,
        rows: 0,
    };
    match &app.settings.nats {
        Some(url) => {
            let bus = NatsBus::connect_with(url, app.nats_settings()).await?;
            let range = if *follow {
                Range::Follow { after: 0 }
            } else {
                Range::UntilEnd { after: 0 }
            };
            let mut stored = bus.audit(range).await?;
            let interrupted = interrupted();
            tokio::pin!(interrupted);
            loop {
                let next = tokio::select! {
                    next = stored.recv() => next,
                    () = &mut interrupted => break,
                };
                let Some(message) = next else { break };
                if !printer.print(&logged(&message), Some(&message.stored_at))? {
                    break;
                }
            }
        }
        None => {
            let store = app.store()?;
            let mut after = 0;
            let interrupted = interrupted();
            tokio::pin!(interrupted);
            loop {
                let mut open = true;
                for event in store.events(after).await? {
                    after = event.seq;
                    open = printer.print(&event, None)?;
                    if !open {
                        break;
                    }
                }
                if !follow || !open {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep(POLL) => {}
                    () = &mut interrupted => break,
                }
            }
        }
    }
    if printer.rows == 0 && !printer.json && !follow {
        eprintln!("No events yet.");
    }
    Ok(ExitCode::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(subject: &str, payload: Value) -> LoggedEvent {
        LoggedEvent {
            seq: 1,
            subject: subject.into(),
            payload,
            traceparent: None,
        }
    }

    #[test]
    fn summaries() {
        let status = event(
            "vm.create.status",
            serde_json::json!({"name": "a", "stage": "provisioning", "message": "creating sim VM", "attempt": 1, "at": "T"}),
        );
        assert_eq!(
            summary(&status),
            (
                "a".into(),
                "T".into(),
                "provisioning: creating sim VM (attempt 1)".into()
            )
        );
        let complete = event(
            "vm.create.complete",
            serde_json::json!({"vm": {"name": "b", "address": "10.0.0.2", "ssh_port": 22}}),
        );
        assert_eq!(summary(&complete).0, "b");
        assert_eq!(summary(&complete).2, "ready at 10.0.0.2:22");
        let failed = event(
            "vm.create.failed",
            serde_json::json!({"name": "c", "error": {"message": "boom"}}),
        );
        assert_eq!(summary(&failed).2, "boom");
        let deleted = event(
            "vm.delete.complete",
            serde_json::json!({"name": "d", "removed": ["x", "y"]}),
        );
        assert_eq!(summary(&deleted).2, "removed x, y");
        let job = event(
            "workflow.job.completed",
            serde_json::json!({"run_id": "d1-ab", "job": "build", "conclusion": "failure", "at": "T"}),
        );
        assert_eq!(
            summary(&job),
            ("d1-ab".into(), "T".into(), "job build: failure".into())
        );
        let run = event(
            "workflow.run.failed",
            serde_json::json!({"run_id": "d1-ab", "workflow": "ci.yml", "conclusion": "failure", "error": "exit 3"}),
        );
        assert_eq!(summary(&run).2, "ci.yml failure: exit 3");
    }
}
