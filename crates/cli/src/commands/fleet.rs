//! Commands over running VMs: `azlin fleet run` (one command on many), `azlin health` (load,
//! memory, disk, uptime, failed units, tmux sessions) and `azlin logs`.

use crate::app::App;
use crate::args::{FleetAction, FleetArgs, HealthArgs, LogsArgs, OutputFormat};
use crate::commands::connect::{attach, require_host_key, require_running, ssh_access_to};
use crate::failure::Failure;
use crate::output;
use azlin_core::{ExitCode, Vm, VmName, VmState};
use azlin_remote::attach::Session;
use azlin_remote::fleet::{FleetResult, glob_match, run_on_all};
use azlin_remote::health::Health;
use azlin_remote::keys::ensure_identity;
use azlin_remote::{OutputStream, quote};
use std::collections::BTreeMap;
use std::io::Write;

/// The running VMs of the state store that `keep` selects (by record), as they are now.
pub(crate) async fn running_vms(
    app: &App,
    keep: impl Fn(&azlin_control::VmRecord) -> bool,
) -> anyhow::Result<Vec<Vm>> {
    let mut vms = Vec::new();
    for (record, found) in app.locate_recorded(keep).await? {
        match found {
            Ok(vm) if vm.state == VmState::Running && require_host_key(&vm).is_ok() => {
                vms.push(vm);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(vm = %record.name, "left out: {e}"),
        }
    }
    Ok(vms)
}

fn parse_tags(tags: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    tags.iter()
        .map(|t| {
            t.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| Failure::usage(format!("--tag {t}: expected KEY=VALUE")))
        })
        .collect()
}

/// Runs `azlin fleet …`.
pub async fn fleet(app: &App, args: &FleetArgs) -> anyhow::Result<ExitCode> {
    let FleetAction::Run {
        pattern,
        tags,
        parallel,
        command,
    } = &args.action;
    if *parallel == 0 {
        return Err(Failure::usage("--parallel must be at least 1"));
    }
    let tags = parse_tags(tags)?;
    let vms = running_vms(app, |record| {
        pattern
            .as_deref()
            .is_none_or(|p| glob_match(p, record.name.as_str()))
            && tags.iter().all(|(k, v)| record.tags.get(k) == Some(v))
    })
    .await?;
    if vms.is_empty() {
        return Err(Failure::usage("no running VM matches"));
    }
    let (identity, _) = ensure_identity(&app.settings.paths.ssh_key())?;
    let json = app.settings.output == OutputFormat::Json;
    let width = vms
        .iter()
        .map(|vm| vm.name.as_str().len())
        .max()
        .unwrap_or(0);
    let sink = move |name: &str, stream: OutputStream, line: &str| {
        let text = format!("[{name:width$}] {line}\n");
        // With -o json the summary owns stdout, so the VMs' output goes to stderr.
        let _ = match (stream, json) {
            (OutputStream::Stdout, false) => std::io::stdout().write_all(text.as_bytes()),
            _ => std::io::stderr().write_all(text.as_bytes()),
        };
    };
    let results = run_on_all(&vms, &identity, &quote::command(command), *parallel, &sink).await;
    print_results(app, &results)?;
    if results.iter().all(FleetResult::succeeded) {
        Ok(ExitCode::Ok)
    } else {
        let failed = results.iter().filter(|r| !r.succeeded()).count();
        Err(Failure::with_code(
            ExitCode::Error,
            format!("the command failed on {failed} of {} VMs", results.len()),
        ))
    }
}

fn print_results(app: &App, results: &[FleetResult]) -> anyhow::Result<()> {
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(results)?);
        return Ok(());
    }
    println!();
    output::table(
        &["VM", "EXIT", "DURATION", "ERROR"],
        results.iter().map(|r| {
            vec![
                r.name.clone(),
                r.exit_code.map_or("-".to_string(), |c| c.to_string()),
                format!("{:.1}s", r.duration_ms as f64 / 1000.0),
                r.error.clone().unwrap_or_default(),
            ]
        }),
    );
    Ok(())
}

/// The health of each VM in `vms`, read in parallel (an error for a VM that cannot be read).
pub async fn read_health(app: &App, vms: &[Vm]) -> anyhow::Result<Vec<Result<Health, String>>> {
    let (identity, _) = ensure_identity(&app.settings.paths.ssh_key())?;
    Ok(Health::read_all(vms, &identity).await)
}

fn gigabytes(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1u64 << 30) as f64)
}

fn duration(secs: u64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d{}h", s / 86_400, s % 86_400 / 3_600),
        s if s >= 3_600 => format!("{}h{}m", s / 3_600, s % 3_600 / 60),
        s => format!("{}m{}s", s / 60, s % 60),
    }
}

/// Runs `azlin health [NAME]`.
pub async fn health(app: &App, args: &HealthArgs) -> anyhow::Result<ExitCode> {
    let vms = match &args.name {
        Some(name) => {
            let name = VmName::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
            let (_, vm) = app.locate(&name).await?;
            require_running(&vm)?;
            require_host_key(&vm)?;
            vec![vm]
        }
        None => running_vms(app, |_| true).await?,
    };
    let healths = read_health(app, &vms).await?;
    if app.settings.output == OutputFormat::Json {
        let rows: Vec<serde_json::Value> = vms
            .iter()
            .zip(&healths)
            .map(|(vm, health)| match health {
                Ok(h) => serde_json::json!({ "name": vm.name, "health": h }),
                Err(e) => serde_json::json!({ "name": vm.name, "error": e }),
            })
            .collect();
        println!("{}", serde_json::to_string(&rows)?);
    } else {
        output::table(
            &[
                "VM",
                "LOAD",
                "MEMORY GiB",
                "DISK GiB",
                "UP",
                "FAILED UNITS",
                "TMUX",
            ],
            vms.iter().zip(&healths).map(|(vm, health)| match health {
                Ok(h) => vec![
                    vm.name.to_string(),
                    format!("{:.2} {:.2} {:.2}", h.load[0], h.load[1], h.load[2]),
                    format!("{}/{}", gigabytes(h.memory_used), gigabytes(h.memory_total)),
                    format!("{}/{}", gigabytes(h.disk_used), gigabytes(h.disk_total)),
                    duration(h.uptime_secs),
                    h.failed_units.join(", "),
                    h.tmux_sessions.join(", "),
                ],
                Err(e) => vec![vm.name.to_string(), format!("unreachable: {e}")],
            }),
        );
    }
    Ok(if healths.iter().all(Result::is_ok) {
        ExitCode::Ok
    } else {
        ExitCode::Error
    })
}

/// The command that shows what `args` asks for on the VM.
fn logs_command(args: &LogsArgs) -> String {
    let follow = if args.follow { " -f" } else { "" };
    if args.cloud_init {
        let lines = if args.follow { "-n +1 -f" } else { "-n +1" };
        return format!("sudo -n tail {lines} /var/log/cloud-init-output.log");
    }
    let range = if args.boot { "-b" } else { "-b -n 200" };
    format!("sudo -n journalctl --no-pager {range}{follow}")
}

/// Runs `azlin logs NAME [--cloud-init] [--boot] [-f]`.
pub async fn logs(app: &App, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let (vm, access) = ssh_access_to(app, &args.name).await?;
    let command = vec!["sh".to_string(), "-c".to_string(), logs_command(args)];
    attach(&access, &vm.name, &Session::Command(command), false).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cloud_init: bool, boot: bool, follow: bool) -> LogsArgs {
        LogsArgs {
            name: "dev".into(),
            cloud_init,
            boot,
            follow,
        }
    }

    #[test]
    fn logs_read_the_journal_or_cloud_inits_output() {
        assert_eq!(
            logs_command(&args(false, false, false)),
            "sudo -n journalctl --no-pager -b -n 200"
        );
        assert_eq!(
            logs_command(&args(false, true, true)),
            "sudo -n journalctl --no-pager -b -f"
        );
        assert_eq!(
            logs_command(&args(true, false, true)),
            "sudo -n tail -n +1 -f /var/log/cloud-init-output.log"
        );
    }

    #[test]
    fn tags_are_key_value_pairs() {
        assert_eq!(
            parse_tags(&["team=ci".into()]).unwrap(),
            BTreeMap::from([("team".to_string(), "ci".to_string())])
        );
        assert!(parse_tags(&["team".into()]).is_err());
    }
}
