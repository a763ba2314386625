//! `azlin doctor` and step 1 of `new`: the programs azlin needs, with their versions.

use crate::app::App;
use crate::args::{DoctorArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;
use azlin_control::ProviderSource;
use azlin_core::{ExitCode, ProviderKind, Tool};
use azlin_providers::tools::{ToolStatus, probe};
use azlin_remote::attach::SSH_TOOL;

/// Tools of the CLI itself plus those of `provider` (when it runs in this process).
fn required(app: &App, provider: Option<ProviderKind>) -> anyhow::Result<Vec<Tool>> {
    let mut tools = vec![SSH_TOOL];
    if let Some(kind) = provider {
        tools.extend(app.providers.provider(kind)?.required_tools());
    }
    Ok(tools)
}

/// Checks the tools for `provider`; fails with exit 2 naming what is missing and how to get it.
pub fn require(app: &App, provider: Option<ProviderKind>) -> anyhow::Result<String> {
    let statuses: Vec<ToolStatus> = required(app, provider)?.iter().map(probe).collect();
    let missing: Vec<String> = statuses
        .iter()
        .filter(|s| !s.found())
        .map(|s| {
            format!(
                "{} ({}; install with: {})",
                s.tool.program, s.tool.purpose, s.tool.install_hint
            )
        })
        .collect();
    if !missing.is_empty() {
        return Err(Failure::with_code(
            ExitCode::Prerequisites,
            format!("missing required tools: {}", missing.join("; ")),
        ));
    }
    Ok(statuses
        .iter()
        .map(|s| s.tool.program)
        .collect::<Vec<_>>()
        .join(", ")
        + " found")
}

/// Runs `azlin doctor`.
pub fn doctor(app: &App, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let DoctorArgs { provider } = args;
    let kind = app.settings.provider(provider.as_deref())?;
    let statuses: Vec<ToolStatus> = required(app, Some(kind))?.iter().map(probe).collect();
    let all_found = statuses.iter().all(ToolStatus::found);
    if app.settings.output == OutputFormat::Json {
        let tools: Vec<_> = statuses
            .iter()
            .map(|s| {
                serde_json::json!({
                    "program": s.tool.program,
                    "found": s.found(),
                    "path": s.path,
                    "version": s.version,
                    "purpose": s.tool.purpose,
                    "install": s.tool.install_hint,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({"provider": kind, "ok": all_found, "tools": tools})
        );
    } else {
        println!("Prerequisites for the {kind} provider:");
        let rows = statuses.iter().map(|s| {
            vec![
                format!("{} {}", if s.found() { "✓" } else { "✗" }, s.tool.program),
                s.version.clone().unwrap_or_else(|| "missing".into()),
                if s.found() {
                    s.tool.purpose.to_string()
                } else {
                    format!("install: {}", s.tool.install_hint)
                },
            ]
        });
        output::table(&["TOOL", "VERSION", "USED FOR"], rows);
    }
    Ok(if all_found {
        ExitCode::Ok
    } else {
        ExitCode::Prerequisites
    })
}
