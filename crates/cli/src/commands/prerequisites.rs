//! `azlin doctor` and step 1 of `new`: the programs azlin needs, with their versions.

use crate::app::App;
use crate::args::{DoctorArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;
use crate::progress::Progress;
use azlin_control::ProviderSource;
use azlin_core::{ExitCode, ImageProfile, ProviderKind, Tool};
use azlin_providers::image::Flavour;
use azlin_providers::tools::{ToolStatus, probe};
use azlin_remote::Identity;
use azlin_remote::attach::SSH_TOOL;
use azlin_remote::keys::{KeyOrigin, ensure_identity};

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

/// Steps 1–3 of seed 000 before VMs of `kind` are launched: prerequisites (exit 2),
/// authentication (exit 3), the SSH key (exit 4), and — for local VMs launched in this
/// process — the base image, built with progress if missing. With a NATS control plane the
/// provider runs in the workers, which check their own side.
pub async fn preflight(
    app: &App,
    progress: &Progress,
    kind: ProviderKind,
    image: ImageProfile,
) -> anyhow::Result<Identity> {
    let in_process = app.settings.nats.is_none();
    let stage = progress.stage("Prerequisites");
    let summary = require(app, in_process.then_some(kind))?;
    stage.done(&summary);
    let stage = progress.stage("Authentication");
    if in_process {
        match app.providers.provider(kind)?.authenticate().await {
            Ok(identity) => stage.done(&identity),
            Err(e) => {
                stage.fail(&e.message);
                return Err(e.into());
            }
        }
    } else {
        stage.done("delegated to the workers on the bus");
    }
    let stage = progress.stage("SSH key");
    let (identity, origin) = ensure_identity(&app.settings.paths.ssh_key())?;
    let verb = if origin == KeyOrigin::Created {
        "created"
    } else {
        "reused"
    };
    stage.done(&format!("{verb} {}", identity.private_path.display()));
    if let Some(flavour) = Flavour::for_provider(kind).filter(|_| in_process) {
        let images = app.providers.images();
        if images.locate_flavour(flavour, image).is_none() {
            let stage = progress.stage(format!(
                "Base image '{image}' for {kind} (first use builds it; minutes)"
            ));
            match images
                .ensure_flavour(flavour, image, &mut |line: &str| stage.update(line))
                .await
            {
                Ok(built) => stage.done(&built.dir.display().to_string()),
                Err(e) => {
                    stage.fail(&e.message);
                    return Err(e.into());
                }
            }
        }
    }
    Ok(identity)
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
