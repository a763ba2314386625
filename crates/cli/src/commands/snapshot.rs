//! `azlin snapshot create|list|restore|delete` and `azlin clone`: a VM's state kept, put back,
//! and copied into new VMs (through the control plane, in parallel).

use crate::app::App;
use crate::args::{CloneArgs, OutputFormat, SnapshotAction, SnapshotArgs};
use crate::commands::{new, prerequisites};
use crate::failure::Failure;
use crate::output;
use crate::progress::Progress;
use azlin_control::LaunchOptions;
use azlin_core::event::Event;
use azlin_core::{CloneSource, ExitCode, Snapshot, VmName};

fn parse_name(name: &str) -> anyhow::Result<VmName> {
    VmName::parse(name).map_err(|e| Failure::usage(e.to_string()))
}

/// Runs `azlin snapshot …`.
pub async fn run(app: &App, args: &SnapshotArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        SnapshotAction::Create { name, snapshot } => {
            let name = parse_name(name)?;
            let snapshot = snapshot
                .clone()
                .unwrap_or_else(|| format!("snap-{}", azlin_core::compact_timestamp()));
            let (provider, _) = app.locate(&name).await?;
            let progress = Progress::new(app.settings.progress_tty);
            let stage = progress.stage(format!("Snapshot '{snapshot}' of {name}"));
            match provider.snapshot_create(&name, &snapshot).await {
                Ok(taken) => {
                    stage.done(&format!("{} bytes", taken.size_bytes));
                    print(app, &[taken]);
                    Ok(ExitCode::Ok)
                }
                Err(e) => {
                    stage.fail(&e.message);
                    Err(e.into())
                }
            }
        }
        SnapshotAction::List { name } => {
            let every_vm = name.is_none();
            let names = match name {
                Some(name) => vec![parse_name(name)?],
                None => app
                    .store()?
                    .vms()
                    .await?
                    .into_iter()
                    .map(|r| r.name)
                    .collect(),
            };
            let mut all = Vec::new();
            for name in names {
                let (provider, _) = app.locate(&name).await?;
                match provider.snapshot_list(&name).await {
                    Ok(snapshots) => all.extend(snapshots),
                    // Listing every VM's: a provider without snapshots has none.
                    Err(_) if every_vm => {}
                    Err(e) => return Err(e.into()),
                }
            }
            print(app, &all);
            Ok(ExitCode::Ok)
        }
        SnapshotAction::Restore { name, snapshot } => {
            let name = parse_name(name)?;
            let (provider, _) = app.locate(&name).await?;
            let progress = Progress::new(app.settings.progress_tty);
            let stage = progress.stage(format!("Restoring {name} to '{snapshot}'"));
            match provider.snapshot_restore(&name, snapshot).await {
                Ok(vm) => {
                    stage.done(&format!("{}", vm.state));
                    super::vms::await_ssh(app, &progress, &vm).await?;
                    Ok(ExitCode::Ok)
                }
                Err(e) => {
                    stage.fail(&e.message);
                    Err(e.into())
                }
            }
        }
        SnapshotAction::Delete { name, snapshot } => {
            let name = parse_name(name)?;
            let (provider, _) = app.locate(&name).await?;
            provider.snapshot_delete(&name, snapshot).await?;
            eprintln!("deleted snapshot '{snapshot}' of {name}");
            Ok(ExitCode::Ok)
        }
    }
}

fn print(app: &App, snapshots: &[Snapshot]) {
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::json!(snapshots));
        return;
    }
    output::table(
        &["VM", "SNAPSHOT", "CREATED", "SIZE", "MEMORY"],
        snapshots.iter().map(|s| {
            vec![
                s.vm.to_string(),
                s.name.clone(),
                s.created_at.clone(),
                format!("{:.1} MB", s.size_bytes as f64 / 1e6),
                if s.with_memory { "yes" } else { "no" }.to_string(),
            ]
        }),
    );
}

/// Runs `azlin clone NAME NEW [--count N]`: snapshots NAME, then boots NEW (or NEW-1…NEW-N)
/// from that snapshot through the control plane, all at once. Each clone is a new machine: its
/// own machine id, host name and SSH host key.
pub async fn clone(app: &App, args: &CloneArgs) -> anyhow::Result<ExitCode> {
    let CloneArgs { name, new, count } = args;
    let source = parse_name(name)?;
    let (provider, vm) = app.locate(&source).await?;
    if vm.provider != azlin_core::ProviderKind::Nspawn {
        return Err(Failure::usage(format!(
            "cloning is supported for nspawn VMs; '{source}' is a {} VM (take a snapshot with \
             `azlin snapshot create {source}` instead)",
            vm.provider
        )));
    }
    let launch = LaunchOptions {
        provider: Some(vm.provider.to_string()),
        name: Some(new.clone()),
        count: *count,
        ..LaunchOptions::default()
    };
    let mut specs = new::plan(app, &launch)?;
    new::refuse_taken_names(app, &specs).await?;
    let progress = Progress::new(app.settings.progress_tty);
    let snapshot = format!("clone-{}", azlin_core::compact_timestamp());
    let stage = progress.stage(format!("Snapshot '{snapshot}' of {source}"));
    match provider.snapshot_create(&source, &snapshot).await {
        Ok(_) => stage.done(""),
        Err(e) => {
            stage.fail(&e.message);
            return Err(e.into());
        }
    }
    for spec in &mut specs {
        spec.clone_of = Some(Box::new(CloneSource {
            vm: source.clone(),
            snapshot: snapshot.clone(),
        }));
    }
    let identity = prerequisites::preflight(app, &progress, vm.provider, specs[0].image).await?;
    let control = app.control_plane(&identity, specs.len()).await?;
    let requested_by = format!("azlin clone on {}", crate::app::hostname());
    let requests = new::create_requests(&specs, &identity, &requested_by);
    let stage = progress.stage(format!("Booting {} clone(s) of {source}", specs.len()));
    let ended = control
        .orchestrator
        .settle(control.bus.as_ref(), &requests)
        .await;
    control.shutdown().await;
    if let Err(e) = provider.snapshot_delete(&source, &snapshot).await {
        tracing::warn!(vm = %source, %snapshot, "removing the clone snapshot: {e}");
    }
    let ended = ended?;
    let mut made = Vec::new();
    let mut failed = Vec::new();
    for event in ended.into_values() {
        match event {
            Event::CreateComplete(c) => made.push(c.vm),
            Event::CreateFailed(f) => failed.push(format!("{}: {}", f.name, f.error.message)),
            _ => {}
        }
    }
    made.sort_by(|a, b| a.name.cmp(&b.name));
    if failed.is_empty() {
        stage.done(&format!("{} ready", made.len()));
    } else {
        stage.fail(&failed.join("; "));
    }
    if app.settings.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({ "clones": made, "failed": failed })
        );
    } else {
        for vm in &made {
            println!(
                "VM {} is ready (a clone of {source}): azlin connect {}",
                vm.name, vm.name
            );
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::Ok)
    } else {
        Err(Failure::with_code(
            ExitCode::Provision,
            format!("{} clone(s) failed", failed.len()),
        ))
    }
}
