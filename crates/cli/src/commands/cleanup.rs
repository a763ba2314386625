//! `azlin cleanup [--dry-run]`: removes what crashes left behind, and only what azlin provably
//! made: the resources recorded as orphans when a delete failed, the VMs of workflow sessions
//! whose process was killed, local VMs that no record names (a create killed half-way), Azure resources whose VM is gone, and the networks of
//! nspawn VMs whose folder is gone.

use crate::app::App;
use crate::args::{CleanupArgs, OutputFormat};
use azlin_control::ProviderSource;
use azlin_control::orphans::{
    Retry, abandoned_requests, delete_with_retry, forget_mark, requests_under_way,
};
use azlin_core::{ExitCode, ProviderKind, VmName, VmProvider};
use azlin_workflow::SessionState;
use azlin_workflow::session::SessionStore;
use std::collections::BTreeSet;

/// Runs `azlin cleanup`.
pub async fn run(app: &App, args: &CleanupArgs) -> anyhow::Result<ExitCode> {
    let dry_run = args.dry_run;
    let mut removed: Vec<String> = Vec::new();
    let mut failed: Vec<String> = Vec::new();

    // Recorded orphans: delete again; keep the records of what still fails.
    let orphans = app.settings.orphans();
    let mut remaining = Vec::new();
    for orphan in orphans.list()? {
        let what = format!("{} {} '{}'", orphan.provider, orphan.kind, orphan.name);
        if dry_run {
            removed.push(what);
            remaining.push(orphan);
            continue;
        }
        let name = azlin_core::VmName::parse(&orphan.name);
        let provider = app.providers.provider(orphan.provider);
        match (name, provider) {
            (Ok(name), Ok(provider)) => {
                match delete_with_retry(provider.as_ref(), &name, Retry::default()).await {
                    Ok(_) => removed.push(what),
                    Err(e) => {
                        failed.push(format!("{what}: {}", e.message));
                        remaining.push(orphan);
                    }
                }
            }
            _ => {
                failed.push(format!("{what}: cannot be reached from here"));
                remaining.push(orphan);
            }
        }
    }
    if !dry_run {
        orphans.replace(&remaining)?;
    }

    reclaim_sessions(app, dry_run, &mut removed, &mut failed).await?;

    // Launches whose process was killed outright (their records say "creating" forever).
    let store = app.store()?;
    let records = store.vms().await?;
    for (request_id, mark) in abandoned_requests(&app.settings.paths.state_dir) {
        let Some(record) = records.iter().find(|r| r.request_id == request_id) else {
            if !dry_run {
                forget_mark(&mark);
            }
            continue;
        };
        let what = format!(
            "{} VM '{}' (its launch was killed)",
            record.provider, record.name
        );
        if dry_run {
            removed.push(what);
            continue;
        }
        let deleted = match app.providers.provider(record.provider) {
            Ok(provider) => delete_with_retry(provider.as_ref(), &record.name, Retry::default())
                .await
                .map_err(|e| e.message),
            Err(e) => Err(e.to_string()),
        };
        match deleted {
            Ok(report) => {
                store.forget(&record.name).await?;
                forget_mark(&mark);
                removed.push(what);
                removed.extend(report.removed);
            }
            Err(e) => failed.push(format!("{what}: {e}")),
        }
    }

    // Local VMs that no record names (the records read above: a killed launch's VM, forgotten
    // since, is gone with it).
    let recorded: BTreeSet<String> = records.iter().map(|r| r.name.to_string()).collect();
    for kind in [ProviderKind::Nspawn, ProviderKind::Qemu, ProviderKind::Sim] {
        let Ok(provider) = app.providers.provider(kind) else {
            continue;
        };
        let Ok(vms) = provider.list().await else {
            continue;
        };
        for vm in vms
            .into_iter()
            .filter(|vm| !recorded.contains(vm.name.as_str()))
        {
            let what = format!("{kind} VM '{}' (no record names it)", vm.name);
            delete_found(
                provider.as_ref(),
                &vm.name,
                what,
                dry_run,
                &mut removed,
                &mut failed,
            )
            .await;
        }
    }

    // Resources an Azure VM that is gone left behind (when Azure is in use here).
    let azure_in_use = records.iter().any(|r| r.provider == ProviderKind::Azure)
        || app.settings.config.provider.as_deref() == Some("azure")
        || app.settings.config.azure != Default::default();
    if azure_in_use {
        let under_way = requests_under_way(&app.settings.paths.state_dir);
        let provider = app.providers.provider(ProviderKind::Azure)?;
        for name in provider.orphans(&under_way).await? {
            let what = format!("azure resources of VM '{name}', which is gone");
            delete_found(
                provider.as_ref(),
                &name,
                what,
                dry_run,
                &mut removed,
                &mut failed,
            )
            .await;
        }
    }

    // Networks of nspawn VMs whose folder is gone (any azlin home on this machine).
    if crate::settings::nix_is_root() {
        removed.extend(azlin_providers::nspawn::remove_orphans(dry_run).await);
    }

    if app.settings.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({ "dry_run": dry_run, "removed": removed, "failed": failed })
        );
    } else if removed.is_empty() && failed.is_empty() {
        println!("nothing to clean up");
    } else {
        let verb = if dry_run { "would remove" } else { "removed" };
        for what in &removed {
            println!("{verb}: {what}");
        }
        for what in &failed {
            println!("could not remove: {what}");
        }
    }
    Ok(if failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Error
    })
}

/// Deletes the VMs of workflow sessions whose process was killed (an `azlin run` or a runner
/// worker): nothing else would ever release them. Their records end as released.
pub async fn reclaim_sessions(
    app: &App,
    dry_run: bool,
    removed: &mut Vec<String>,
    failed: &mut Vec<String>,
) -> anyhow::Result<()> {
    let sessions = SessionStore::new(app.settings.paths.state_dir.join("sessions"));
    let store = app.store()?;
    for mut record in sessions.list()?.into_iter().filter(|r| r.abandoned()) {
        let Some(vm) = record.vm.clone() else {
            continue;
        };
        let what = format!(
            "{} VM '{}' of session {} (its process was killed)",
            vm.provider, vm.name, record.id
        );
        let (Ok(kind), Ok(name)) = (vm.provider.parse::<ProviderKind>(), VmName::parse(&vm.name))
        else {
            failed.push(format!("{what}: not a VM azlin can name"));
            continue;
        };
        let before = failed.len();
        match app.providers.provider(kind) {
            Ok(provider) => {
                delete_found(provider.as_ref(), &name, what, dry_run, removed, failed).await
            }
            Err(e) => failed.push(format!("{what}: {e}")),
        }
        if dry_run || failed.len() > before {
            continue;
        }
        if let Err(e) = store.forget(&name).await {
            tracing::warn!("forgetting VM {name}: {e}");
        }
        record.enter(
            SessionState::Released,
            "its process was killed; VM deleted by cleanup",
        );
        sessions.save(&record)?;
    }
    Ok(())
}

/// Deletes VM `name` that cleanup found (`what` says how) and notes what went in `removed`,
/// or why not in `failed`; in a dry run, only notes it.
async fn delete_found(
    provider: &dyn VmProvider,
    name: &VmName,
    what: String,
    dry_run: bool,
    removed: &mut Vec<String>,
    failed: &mut Vec<String>,
) {
    if dry_run {
        removed.push(what);
        return;
    }
    match delete_with_retry(provider, name, Retry::default()).await {
        Ok(report) => {
            removed.push(what);
            removed.extend(report.removed);
        }
        Err(e) => failed.push(format!("{what}: {}", e.message)),
    }
}
