//! `azlin ssh-config` and `azlin code`: azlin's VMs as `Host azlin-NAME` entries of the user's
//! OpenSSH configuration, for `ssh`, `scp` and VS Code Remote-SSH.

use crate::app::App;
use crate::args::{CodeArgs, OutputFormat};
use crate::commands::connect::{access_for, require_host_key};
use crate::failure::Failure;
use azlin_core::{ExitCode, ProviderKind, VmName};
use azlin_remote::attach::SshAccess;
use azlin_remote::ssh_config;

/// Every VM that SSH can reach (not `sim`) with a recorded host key, and how.
async fn reachable_vms(app: &App) -> anyhow::Result<Vec<(String, SshAccess)>> {
    let mut vms = Vec::new();
    for (record, found) in app
        .locate_recorded(|r| r.provider != ProviderKind::Sim)
        .await?
    {
        match found {
            Ok(vm) if require_host_key(&vm).is_ok() => {
                vms.push((vm.name.to_string(), access_for(app, &vm.endpoint())));
            }
            Ok(_) => tracing::info!(vm = %record.name, "no recorded host key: left out"),
            Err(e) => tracing::warn!(vm = %record.name, "left out: {e}"),
        }
    }
    Ok(vms)
}

/// Writes the entries; returns how many.
async fn write_entries(app: &App) -> anyhow::Result<(usize, ssh_config::Written)> {
    let vms = reachable_vms(app).await?;
    let ssh_dir = app
        .settings
        .paths
        .ssh_key()
        .parent()
        .map(std::path::Path::to_path_buf)
        .ok_or_else(|| anyhow::anyhow!("the SSH key has no folder"))?;
    let written = ssh_config::write(&ssh_dir, &vms)?;
    Ok((vms.len(), written))
}

/// Runs `azlin ssh-config`.
pub async fn ssh_config(app: &App) -> anyhow::Result<ExitCode> {
    let (count, written) = write_entries(app).await?;
    if app.settings.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({
                "entries": count,
                "include_file": written.include_file,
                "include_added": written.include_added,
            })
        );
    } else {
        println!(
            "{count} VM(s) in {}{}: `ssh azlin-NAME` reaches each",
            written.include_file.display(),
            if written.include_added {
                " (included from your ssh config)"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::Ok)
}

/// The `code` program (`AZLIN_CODE` overrides it, for tests and other editors' CLIs).
fn code_program() -> String {
    std::env::var("AZLIN_CODE").unwrap_or_else(|_| "code".to_string())
}

/// Runs `azlin code NAME [PATH]`.
pub async fn code(app: &App, args: &CodeArgs) -> anyhow::Result<ExitCode> {
    let name = VmName::parse(&args.name).map_err(|e| Failure::usage(e.to_string()))?;
    let (_, vm) = app.locate(&name).await?;
    if vm.provider == ProviderKind::Sim {
        return Err(Failure::usage(format!(
            "'{name}' is a sim VM: it has no SSH"
        )));
    }
    require_host_key(&vm)?;
    let program = code_program();
    if azlin_providers::tools::which(&program).is_none() {
        return Err(Failure::with_code(
            ExitCode::Prerequisites,
            format!(
                "VS Code's `{program}` command is not on PATH: install VS Code and run \"Shell Command: Install 'code' command in PATH\" from its command palette, then try again"
            ),
        ));
    }
    write_entries(app).await?;
    let path = args
        .path
        .clone()
        .unwrap_or_else(|| format!("/home/{}", vm.user));
    let remote = format!("ssh-remote+{}", ssh_config::host_alias(name.as_str()));
    let status = std::process::Command::new(&program)
        .args(["--remote", &remote, &path])
        .status()
        .map_err(|e| anyhow::anyhow!("running {program}: {e}"))?;
    Ok(match status.code() {
        Some(0) => ExitCode::Ok,
        code => ExitCode::Command(u8::try_from(code.unwrap_or(1)).unwrap_or(1)),
    })
}
