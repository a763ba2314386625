//! `azlin list`, `status`, `start`, `stop` and `delete`.

use crate::app::App;
use crate::args::{DeleteArgs, ListArgs, NameArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;
use crate::progress::Progress;
use azlin_control::ProviderSource;
use azlin_control::store::VmRecord;
use azlin_core::event::{DeleteRequested, Event, Request, SCHEMA};
use azlin_core::{ExitCode, ProviderKind, Vm, VmName, VmState, new_id, now_rfc3339};
use azlin_remote::keys::{Identity, ensure_identity};
use azlin_remote::ready::wait_for_ssh;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, IsTerminal, Write};

/// One row of `azlin list`: what the store recorded, with the provider's live view.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    provider: ProviderKind,
    state: String,
    address: String,
    user: String,
    message: String,
    /// With `--wide`: what the VM reports about itself (running VMs only).
    #[serde(skip_serializing_if = "Option::is_none")]
    health: Option<azlin_remote::health::Health>,
}

fn parse_name(name: &str) -> anyhow::Result<VmName> {
    VmName::parse(name).map_err(|e| Failure::usage(e.to_string()))
}

/// Runs `azlin list`.
pub async fn list(app: &App, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let ListArgs { provider, wide } = args;
    let only: Option<ProviderKind> = provider
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| Failure::usage(format!("{e}")))?;
    let records: Vec<VmRecord> = app
        .store()?
        .vms()
        .await?
        .into_iter()
        .filter(|r| only.is_none_or(|p| r.provider == p))
        .collect();
    // One list call per provider involved: local ones always (cheap), others when they have
    // records or were asked for.
    let mut kinds: BTreeSet<ProviderKind> = records.iter().map(|r| r.provider).collect();
    match only {
        Some(kind) => {
            kinds.insert(kind);
        }
        None => kinds.extend([ProviderKind::Nspawn, ProviderKind::Qemu, ProviderKind::Sim]),
    }
    let mut live: BTreeMap<String, Vm> = BTreeMap::new();
    for kind in kinds {
        let provider = match app.providers.provider(kind) {
            Ok(provider) => provider,
            // Asked for by name: why it cannot be used is the answer, not an empty list.
            Err(e) if only == Some(kind) => return Err(e.into()),
            Err(_) => continue,
        };
        match provider.list().await {
            Ok(vms) => live.extend(vms.into_iter().map(|vm| (vm.name.to_string(), vm))),
            Err(e) if only.is_some() => return Err(e.into()),
            Err(e) => tracing::warn!("listing {kind} VMs: {e}"),
        }
    }
    let notes = app.settings.stop_notes();
    let mut rows: Vec<Row> = records
        .iter()
        .map(|r| {
            let vm = live.remove(r.name.as_str());
            Row {
                name: r.name.to_string(),
                provider: r.provider,
                state: vm
                    .as_ref()
                    .map_or_else(|| r.state.as_str().to_string(), |vm| vm.state.to_string()),
                address: vm
                    .as_ref()
                    .map_or_else(|| r.address.clone(), |vm| vm.address.clone()),
                user: r.user.clone(),
                // Why azlin stopped it, while it stays stopped.
                message: vm
                    .as_ref()
                    .filter(|vm| vm.state == VmState::Stopped)
                    .and_then(|_| notes.read(&r.name))
                    .unwrap_or_else(|| r.message.clone()),
                health: None,
            }
        })
        .collect();
    rows.extend(live.into_values().map(|vm| Row {
        name: vm.name.to_string(),
        provider: vm.provider,
        state: vm.state.to_string(),
        address: vm.address.clone(),
        user: vm.user.clone(),
        message: "not in the state store".into(),
        health: None,
    }));
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if *wide {
        add_health(app, &mut rows).await?;
    }
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(ExitCode::Ok);
    }
    if rows.is_empty() {
        println!("No VMs. Create one with `azlin new`.");
    } else if *wide {
        output::table(
            &[
                "NAME", "PROVIDER", "STATE", "ADDRESS", "LOAD", "TMUX", "MESSAGE",
            ],
            rows.into_iter().map(|r| {
                let (load, tmux) = r.health.as_ref().map_or_else(Default::default, |h| {
                    (format!("{:.2}", h.load[0]), h.tmux_sessions.join(", "))
                });
                vec![
                    r.name,
                    r.provider.to_string(),
                    r.state,
                    r.address,
                    load,
                    tmux,
                    r.message,
                ]
            }),
        );
    } else {
        output::table(
            &["NAME", "PROVIDER", "STATE", "ADDRESS", "USER", "MESSAGE"],
            rows.into_iter().map(|r| {
                vec![
                    r.name,
                    r.provider.to_string(),
                    r.state,
                    r.address,
                    r.user,
                    r.message,
                ]
            }),
        );
    }
    orphans_footer(app);
    Ok(ExitCode::Ok)
}

/// Reads the health of the rows' running VMs (not `sim`) in parallel, into the rows.
async fn add_health(app: &App, rows: &mut [Row]) -> anyhow::Result<()> {
    let mut vms = Vec::new();
    for row in rows.iter() {
        if row.state != VmState::Running.to_string() || row.provider == ProviderKind::Sim {
            continue;
        }
        if let Ok(name) = VmName::parse(&row.name)
            && let Ok((_, vm)) = app.locate(&name).await
            && !vm.host_key.is_empty()
        {
            vms.push(vm);
        }
    }
    let healths = crate::commands::fleet::read_health(app, &vms).await?;
    for (vm, health) in vms.iter().zip(healths) {
        if let (Some(row), Ok(health)) =
            (rows.iter_mut().find(|r| r.name == vm.name.as_str()), health)
        {
            row.health = Some(health);
        }
    }
    Ok(())
}

/// Under the table: how many resources azlin failed to remove, and where they are listed.
fn orphans_footer(app: &App) {
    let orphans = app.settings.orphans();
    match orphans.list() {
        Ok(list) if list.is_empty() => {}
        Ok(list) => println!(
            "{} orphaned resource(s) azlin could not remove are recorded in {} (`azlin cleanup` removes them)",
            list.len(),
            orphans.path().display()
        ),
        Err(e) => tracing::warn!("{e}"),
    }
}

/// Runs `azlin status NAME`.
pub async fn status(app: &App, args: &NameArgs) -> anyhow::Result<ExitCode> {
    let name = parse_name(&args.name)?;
    let (_, vm) = app.locate(&name).await?;
    let record = app.store()?.vm(&name).await?;
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::json!({"vm": vm, "record": record}));
        return Ok(ExitCode::Ok);
    }
    let mut rows = vec![
        vec!["name".to_string(), vm.name.to_string()],
        vec!["provider".into(), vm.provider.to_string()],
        vec!["state".into(), vm.state.to_string()],
        vec!["address".into(), format!("{}:{}", vm.address, vm.ssh_port)],
        vec!["user".into(), vm.user.clone()],
        vec!["host key".into(), vm.host_key.clone()],
        vec!["request".into(), vm.request_id.clone()],
    ];
    rows.extend(vm.details.iter().map(|(k, v)| vec![k.clone(), v.clone()]));
    if let Some(record) = record {
        let timings: Vec<String> = record
            .timings
            .iter()
            .map(|(k, v)| format!("{k} {:.1}s", *v as f64 / 1000.0))
            .collect();
        rows.push(vec!["timings".into(), timings.join(", ")]);
        rows.push(vec![
            "last event".into(),
            format!("{} ({})", record.message, record.updated_at),
        ]);
    }
    output::table(&["FIELD", "VALUE"], rows);
    Ok(ExitCode::Ok)
}

/// Runs `azlin start NAME`.
pub async fn start(app: &App, args: &NameArgs) -> anyhow::Result<ExitCode> {
    let name = parse_name(&args.name)?;
    let (provider, _) = app.locate(&name).await?;
    let progress = Progress::new(app.settings.progress_tty);
    let stage = progress.stage(format!("Starting {name}"));
    let vm = provider.start(&name).await?;
    forget_stop_note(app, &name);
    stage.done(&format!("{} at {}", vm.state, vm.address));
    await_ssh(app, &progress, &vm).await?;
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(&vm)?);
    }
    Ok(ExitCode::Ok)
}

/// Waits until a VM that was just (re)booted answers SSH: started means usable, and
/// `azlin connect` right after must not meet a closed port.
pub async fn await_ssh(app: &App, progress: &Progress, vm: &Vm) -> anyhow::Result<()> {
    if vm.provider == ProviderKind::Sim || vm.state != VmState::Running {
        return Ok(());
    }
    let stage = progress.stage("Waiting for SSH");
    let (identity, _) = ensure_identity(&app.settings.paths.ssh_key())?;
    let target = azlin_remote::ssh_target(vm);
    wait_for_ssh(&target, &identity, app.settings.ssh_timeout)
        .await
        .map_err(|e| {
            Failure::with_code(
                ExitCode::Readiness,
                format!("{e}; the VM '{}' is left running", vm.name),
            )
        })?;
    stage.done(&format!("{}@{}", vm.user, vm.address));
    Ok(())
}

/// Runs `azlin stop NAME`.
pub async fn stop(app: &App, args: &NameArgs) -> anyhow::Result<ExitCode> {
    let name = parse_name(&args.name)?;
    let (provider, _) = app.locate(&name).await?;
    let progress = Progress::new(app.settings.progress_tty);
    let stage = progress.stage(format!("Stopping {name}"));
    provider.stop(&name).await?;
    // Stopped by its user now, not by azlin.
    forget_stop_note(app, &name);
    stage.done("stopped; its disk is kept");
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::json!({"name": name, "state": "stopped"}));
    }
    Ok(ExitCode::Ok)
}

/// Forgets why azlin stopped `name` (it started, was stopped by hand, or is gone).
fn forget_stop_note(app: &App, name: &VmName) {
    if let Err(e) = app.settings.stop_notes().clear(name) {
        tracing::warn!("forgetting why '{name}' was stopped: {e}");
    }
}

/// Asks on the terminal; refuses outright when there is none.
fn confirm(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{question}: not asking without a terminal; pass --yes"
        )));
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

/// Runs `azlin delete NAME [--yes]`: a `vm.delete.request` through the control plane.
pub async fn delete(app: &App, args: &DeleteArgs) -> anyhow::Result<ExitCode> {
    let DeleteArgs { name, yes } = args;
    let name = parse_name(name)?;
    let (_, vm) = app.locate(&name).await?;
    if !yes
        && !confirm(&format!(
            "Delete {} VM '{name}' and everything made for it?",
            vm.provider
        ))?
    {
        eprintln!("Nothing deleted.");
        return Ok(ExitCode::Ok);
    }
    let progress = Progress::new(app.settings.progress_tty);
    let stage = progress.stage(format!("Deleting {name}"));
    // A delete never opens SSH, so a key with wrong permissions must not stand in its way.
    let control = app.control_plane(&Identity::ephemeral()?, 1).await?;
    let request = Request::Delete(DeleteRequested {
        schema: SCHEMA,
        request_id: new_id(),
        name: name.clone(),
        provider: vm.provider,
        requested_by: crate::app::hostname(),
        created_at: now_rfc3339(),
    });
    let ended = control
        .orchestrator
        .settle(control.bus.as_ref(), &[request])
        .await;
    control.shutdown().await;
    match ended?.into_values().next() {
        Some(Event::DeleteComplete(done)) => {
            let _ = std::fs::remove_file(azlin_remote::attach::known_hosts_path(
                &app.settings.paths.state_dir,
                name.as_str(),
            ));
            forget_stop_note(app, &name);
            stage.done(&format!("removed {}", done.removed.join(", ")));
            if app.settings.output == OutputFormat::Json {
                println!(
                    "{}",
                    serde_json::json!({"name": name, "removed": done.removed})
                );
            }
            Ok(ExitCode::Ok)
        }
        Some(Event::DeleteFailed(failed)) => {
            stage.fail(&failed.error.message);
            Err(Failure::with_code(
                failed.error.kind.exit_code(),
                failed.error.message,
            ))
        }
        _ => {
            stage.fail("the control plane stopped");
            Err(Failure::with_code(
                ExitCode::Error,
                "the delete did not finish",
            ))
        }
    }
}
