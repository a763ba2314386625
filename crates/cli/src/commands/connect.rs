//! `azlin connect` (step 9 of `new`): the system `ssh` into a tmux session, a login shell, or a
//! single command whose exit code becomes azlin's. Host keys are checked strictly against the
//! key azlin injected.

use crate::app::App;
use crate::args::ConnectArgs;
use crate::failure::Failure;
use azlin_core::event::VmEndpoint;
use azlin_core::{ExitCode, ProviderKind, Vm, VmName, VmState};
use azlin_remote::attach::{Session, SshAccess, known_hosts_path};
use azlin_remote::keys::{ensure_identity, load_identity};
use azlin_remote::ssh::SshShell;
use azlin_remote::{LocalShell, OutputStream, Shell};
use std::io::{IsTerminal, Write};

/// How to reach a VM with the system `ssh`.
pub fn access_for(app: &App, vm: &VmEndpoint) -> SshAccess {
    SshAccess {
        host: vm.address.clone(),
        port: vm.ssh_port,
        user: vm.user.clone(),
        host_key: vm.host_key.clone(),
        key_path: app.settings.paths.ssh_key(),
        known_hosts: known_hosts_path(&app.settings.paths.state_dir, vm.name.as_str()),
    }
}

/// The running VM `name` and how the system `ssh` reaches it, for the commands that need
/// SSH (`cp`, `tunnel`, `logs`): a sim VM is refused (exit 64), a stopped one or one without a
/// recorded host key fails with exit 5.
pub async fn ssh_access_to(app: &App, name: &str) -> anyhow::Result<(Vm, SshAccess)> {
    let name = VmName::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
    let (_, vm) = app.locate(&name).await?;
    if vm.provider == ProviderKind::Sim {
        return Err(Failure::usage(format!(
            "'{name}' is a sim VM: it has no SSH; its files are in {}",
            vm.address
        )));
    }
    require_running(&vm)?;
    require_host_key(&vm)?;
    let access = access_for(app, &vm.endpoint());
    Ok((vm, access))
}

/// Fails with exit 5 (not ready) unless the VM runs, saying how to start it.
pub fn require_running(vm: &Vm) -> anyhow::Result<()> {
    if vm.state == VmState::Running {
        return Ok(());
    }
    let name = &vm.name;
    Err(Failure::with_code(
        ExitCode::Readiness,
        format!(
            "VM '{name}' is {} (start it with `azlin start {name}`)",
            vm.state
        ),
    ))
}

/// Fails with exit 5 unless a host key to check the VM against is known: one recorded at its
/// creation (see `App::locate`; a key read back from cloud resource tags is never trusted).
pub fn require_host_key(vm: &Vm) -> anyhow::Result<()> {
    if vm.provider == ProviderKind::Sim || !vm.host_key.trim().is_empty() {
        return Ok(());
    }
    let name = &vm.name;
    Err(Failure::with_code(
        ExitCode::Readiness,
        format!(
            "no host key of VM '{name}' was recorded when it was created, and azlin does not trust the one in its {} tags: connect from the machine (or the shared NATS state) that created it",
            vm.provider
        ),
    ))
}

/// A command's exit status as azlin's exit code.
fn passed_through(code: i32) -> ExitCode {
    match code {
        0 => ExitCode::Ok,
        code => ExitCode::Command(u8::try_from(code).unwrap_or(1)),
    }
}

/// Opens `session` on the VM `name` through `access`; exit 5 if `ssh` cannot connect (the VM
/// stays up).
pub async fn attach(
    access: &SshAccess,
    name: &VmName,
    session: &Session,
    x11: bool,
) -> anyhow::Result<ExitCode> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let code = access.run(session, x11, tty)?;
    // `ssh` exits 255 when it cannot connect, and also when the remote command does: a fresh
    // login tells the two apart.
    let command_said_255 =
        code == 255 && matches!(session, Session::Command(_)) && ssh_answers(access).await;
    match (code, session) {
        (255, _) if !command_said_255 => Err(Failure::with_code(
            ExitCode::Readiness,
            format!(
                "ssh could not connect to {}; the VM '{name}' is still running (try again with `azlin connect {name}`)",
                access.host
            ),
        )),
        (code, Session::Command(_)) => Ok(passed_through(code)),
        _ => Ok(ExitCode::Ok),
    }
}

/// Whether the VM accepts an SSH login with the azlin key right now (within a few seconds).
async fn ssh_answers(access: &SshAccess) -> bool {
    let Ok(identity) = load_identity(&access.key_path) else {
        return false;
    };
    let target = access.target();
    let login = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        SshShell::connect(&target, &identity),
    );
    matches!(login.await, Ok(Ok(_)))
}

/// Runs `azlin connect`.
pub async fn run(app: &App, args: &ConnectArgs) -> anyhow::Result<ExitCode> {
    let ConnectArgs {
        name,
        x11,
        no_tmux,
        command,
    } = args;
    let name = VmName::parse(name).map_err(|e| Failure::usage(e.to_string()))?;
    let (_, vm) = app.locate(&name).await?;
    require_running(&vm)?;
    require_host_key(&vm)?;
    if vm.provider == ProviderKind::Sim {
        return run_local(&vm.address, command).await;
    }
    let session = match (command.is_empty(), no_tmux) {
        (false, _) => Session::Command(command.clone()),
        (true, true) => Session::Shell,
        (true, false) => Session::Tmux,
    };
    if *x11 {
        prepare_x11(app, &vm).await?;
    }
    let access = access_for(app, &vm.endpoint());
    attach(&access, &vm.name, &session, *x11).await
}

/// X11 forwarding needs `xauth` on the VM: installs it on first use.
pub async fn prepare_x11(app: &App, vm: &Vm) -> anyhow::Result<()> {
    let (identity, _) = ensure_identity(&app.settings.paths.ssh_key())?;
    let shell = azlin_remote::connect(vm, &identity).await?;
    azlin_remote::desktop::ensure_xauth(shell.as_ref()).await?;
    Ok(())
}

/// A sim VM has no SSH: its commands run as local processes in its folder.
async fn run_local(root: &str, command: &[String]) -> anyhow::Result<ExitCode> {
    if command.is_empty() {
        return Err(Failure::usage(
            "sim VMs have no interactive session; pass a command after `--`",
        ));
    }
    let shell = LocalShell::new(root);
    let code = shell
        .exec(
            &azlin_remote::quote::command(command),
            &[],
            &mut |stream, bytes| {
                let _ = match stream {
                    OutputStream::Stdout => std::io::stdout().write_all(bytes),
                    OutputStream::Stderr => std::io::stderr().write_all(bytes),
                };
            },
        )
        .await?;
    Ok(passed_through(code))
}
