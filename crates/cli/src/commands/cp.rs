//! `azlin cp SRC DST [-r]`: copies between this machine and VMs, or between two VMs, over
//! azlin's SSH key with each VM's host key checked strictly.

use crate::app::App;
use crate::args::{CpArgs, OutputFormat};
use crate::commands::connect::ssh_access_to;
use crate::failure::Failure;
use azlin_core::ExitCode;
use azlin_remote::copy::{CopyEnd, Operand};
use azlin_remote::keys::ensure_identity;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

/// One side of the copy as scp will see it, and the VM behind it (for sizes).
async fn resolve(app: &App, operand: Operand) -> anyhow::Result<(CopyEnd, Option<azlin_core::Vm>)> {
    match operand {
        Operand::Local(path) => Ok((CopyEnd::Local(path), None)),
        Operand::Vm { name, path } => {
            let (vm, access) = ssh_access_to(app, &name).await?;
            Ok((CopyEnd::Remote { access, path }, Some(vm)))
        }
    }
}

/// Bytes under `path` (a file or a folder).
fn local_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| local_size(&e.path())).sum())
        .unwrap_or(0)
}

/// Bytes under `path` on `vm` (`du`), 0 if it cannot be told.
async fn remote_size(app: &App, vm: &azlin_core::Vm, path: &str) -> u64 {
    let Ok((identity, _)) = ensure_identity(&app.settings.paths.ssh_key()) else {
        return 0;
    };
    let Ok(shell) = azlin_remote::connect(vm, &identity).await else {
        return 0;
    };
    let path = if path.is_empty() { "." } else { path };
    let command = format!(
        "du -sb --apparent-size -- {} | cut -f1",
        azlin_remote::quote::sh(path)
    );
    match shell.capture(&command).await {
        Ok(out) if out.code == 0 => out.stdout_text().trim().parse().unwrap_or(0),
        _ => 0,
    }
}

/// Runs `azlin cp`.
pub async fn run(app: &App, args: &CpArgs) -> anyhow::Result<ExitCode> {
    let (from, from_vm) = resolve(app, Operand::parse(&args.source)).await?;
    let (to, _) = resolve(app, Operand::parse(&args.destination)).await?;
    if let (CopyEnd::Local(_), CopyEnd::Local(_)) = (&from, &to) {
        return Err(Failure::usage(
            "one side must be a VM: NAME:PATH (for example dev:~/data or dev:/tmp/file)",
        ));
    }
    if let CopyEnd::Local(path) = &from {
        if !path.exists() {
            return Err(Failure::usage(format!(
                "no file or folder {}",
                path.display()
            )));
        }
        if path.is_dir() && !args.recursive {
            return Err(Failure::usage(format!(
                "{} is a folder: copy it with -r",
                path.display()
            )));
        }
    }
    let json = app.settings.output == OutputFormat::Json;
    let progress = !json && std::io::stdout().is_terminal();
    let started = Instant::now();
    let (from_end, to_end, recursive) = (from.clone(), to.clone(), args.recursive);
    tokio::task::spawn_blocking(move || {
        azlin_remote::copy::copy(&from_end, &to_end, recursive, progress)
    })
    .await??;
    let seconds = started.elapsed().as_secs_f64();
    let bytes = match (&from, &from_vm) {
        (CopyEnd::Local(path), _) => local_size(path),
        (CopyEnd::Remote { path, .. }, Some(vm)) => remote_size(app, vm, path).await,
        (CopyEnd::Remote { .. }, None) => 0,
    };
    let rate = bytes as f64 / 1e6 / seconds.max(0.001);
    if json {
        println!(
            "{}",
            serde_json::json!({
                "source": args.source,
                "destination": args.destination,
                "bytes": bytes,
                "seconds": seconds,
                "mb_per_s": rate,
            })
        );
    } else {
        println!(
            "copied {} → {}: {:.1} MB in {seconds:.1} s ({rate:.0} MB/s)",
            args.source,
            args.destination,
            bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::Ok)
}
