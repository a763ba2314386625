//! `azlin gui`: the VNC desktop of seed 000 — TigerVNC and Xfce on the VM (installed on first
//! use), bound to the VM's localhost, a random password per session, an SSH tunnel from a local
//! port, a viewer when one is installed; everything stopped when the session ends.

use crate::app::App;
use crate::args::{GuiArgs, OutputFormat};
use crate::commands::connect::{access_for, require_host_key, require_running};
use crate::failure::Failure;
use crate::progress::Progress;
use azlin_core::{ExitCode, ProviderKind, VmName};
use azlin_providers::tools::which;
use azlin_remote::keys::ensure_identity;
use azlin_remote::{Shell, desktop};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

/// The SSH tunnel process, killed when dropped.
struct Tunnel(std::process::Child);

impl Drop for Tunnel {
    fn drop(&mut self) {
        if let Err(e) = self.0.kill() {
            tracing::warn!("stopping the SSH tunnel (pid {}): {e}", self.0.id());
        }
        if let Err(e) = self.0.wait() {
            tracing::warn!("waiting for the SSH tunnel (pid {}): {e}", self.0.id());
        }
    }
}

/// A local file holding the session's obfuscated VNC password, removed when dropped.
struct PasswordFile(PathBuf);

impl Drop for PasswordFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Runs `azlin gui`.
pub async fn run(app: &App, args: &GuiArgs) -> anyhow::Result<ExitCode> {
    let GuiArgs {
        name,
        port,
        no_viewer,
    } = args;
    let name = VmName::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
    let (_, vm) = app.locate(&name).await?;
    if vm.provider == ProviderKind::Sim {
        return Err(Failure::usage("sim VMs have no display"));
    }
    require_running(&vm)?;
    require_host_key(&vm)?;
    let progress = Progress::new(app.settings.progress_tty);
    let (identity, _) = ensure_identity(&app.settings.paths.ssh_key())?;
    let shell = azlin_remote::connect(&vm, &identity).await?;

    let stage = progress.stage("Desktop packages");
    if desktop::installed(shell.as_ref()).await? {
        stage.done("installed");
    } else {
        stage.update(&format!(
            "installing {} (first use; minutes)",
            desktop::PACKAGES.join(" ")
        ));
        desktop::install(shell.as_ref()).await?;
        stage.done("installed");
    }
    let stage = progress.stage("VNC server");
    let password = desktop::random_password()?;
    desktop::start(shell.as_ref(), &password).await?;
    stage.done(&format!(
        "display :{} on the VM's localhost",
        desktop::DISPLAY
    ));

    let session = session(
        app,
        &progress,
        shell.as_ref(),
        &vm,
        *port,
        *no_viewer,
        &password,
    )
    .await;
    // The desktop stops with the session, whatever ended it.
    let stage = progress.stage("Stopping the VNC server");
    match desktop::stop(shell.as_ref()).await {
        Ok(()) => stage.done("stopped; its password removed"),
        Err(e) => stage.fail(&e.to_string()),
    }
    session
}

/// The tunnel and the viewer (or a wait for Ctrl-C), while the VNC server runs.
async fn session(
    app: &App,
    progress: &Progress,
    shell: &dyn Shell,
    vm: &azlin_core::Vm,
    port: Option<u16>,
    no_viewer: bool,
    password: &str,
) -> anyhow::Result<ExitCode> {
    let local_port = match port {
        Some(p) => p,
        None => free_port()?,
    };
    let stage = progress.stage("SSH tunnel");
    let access = access_for(app, &vm.endpoint());
    let _tunnel = Tunnel(access.tunnel(local_port, desktop::VNC_PORT)?);
    let banner = desktop::wait_for_rfb(local_port, Duration::from_secs(30)).await?;
    stage.done(&format!(
        "127.0.0.1:{local_port} → VM 127.0.0.1:{} ({banner})",
        desktop::VNC_PORT
    ));

    let viewer = if no_viewer { None } else { which("vncviewer") };
    if let Some(viewer) = viewer {
        let file =
            PasswordFile(std::env::temp_dir().join(format!("azlin-vnc-{}", std::process::id())));
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file.0)?;
        out.write_all(&desktop::password_file(shell).await?)?;
        drop(out);
        progress.note(&format!(
            "► viewer: {} (close it to end the session)",
            viewer.display()
        ));
        let mut child = tokio::process::Command::new(viewer)
            .arg("-passwd")
            .arg(&file.0)
            .arg(format!("127.0.0.1::{local_port}"))
            .kill_on_drop(true)
            .spawn()?;
        // Ctrl-C while the viewer runs must not end azlin before the tunnel is closed and the
        // VNC server stopped: returning drops the viewer, the tunnel and the password file,
        // and the caller stops the server.
        let status = tokio::select! {
            status = child.wait() => status?,
            signal = tokio::signal::ctrl_c() => {
                signal?;
                progress.note("⚠ interrupted: closing the viewer and the SSH tunnel, stopping the VNC server…");
                if let Err(e) = child.kill().await {
                    tracing::warn!("stopping the VNC viewer: {e}");
                }
                return Ok(ExitCode::Interrupted);
            }
        };
        return Ok(if status.success() {
            ExitCode::Ok
        } else {
            ExitCode::Command(
                status
                    .code()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(1),
            )
        });
    }
    if app.settings.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({"vm": vm.name, "vnc": format!("127.0.0.1:{local_port}"), "port": local_port, "password": password})
        );
    } else {
        println!(
            "VNC desktop of {}: 127.0.0.1:{local_port} (e.g. vncviewer 127.0.0.1::{local_port})",
            vm.name
        );
        println!("password for this session: {password}");
    }
    progress.note("Press Ctrl-C to end the session.");
    tokio::signal::ctrl_c().await?;
    Ok(ExitCode::Ok)
}
