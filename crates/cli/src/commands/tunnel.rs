//! `azlin tunnel NAME LOCAL_PORT:REMOTE_HOST:REMOTE_PORT [--bind ADDR]`, `tunnel list` and
//! `tunnel close ID`: port forwards through SSH that run in the background.

use crate::app::App;
use crate::args::{OutputFormat, TunnelAction, TunnelArgs};
use crate::commands::connect::ssh_access_to;
use crate::failure::Failure;
use crate::output;
use azlin_core::ExitCode;
use azlin_remote::tunnel::{Forward, TunnelRecord, TunnelStore};
use std::net::IpAddr;

fn store(app: &App) -> TunnelStore {
    TunnelStore::new(app.settings.paths.state_dir.join("tunnels"))
}

fn print(app: &App, tunnels: &[TunnelRecord]) -> anyhow::Result<()> {
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(tunnels)?);
        return Ok(());
    }
    output::table(
        &["ID", "VM", "LOCAL", "REMOTE", "PID", "OPENED"],
        tunnels.iter().map(|t| {
            vec![
                t.id.clone(),
                t.vm.clone(),
                std::net::SocketAddr::new(t.bind, t.forward.local_port).to_string(),
                format!("{}:{}", t.forward.remote_host, t.forward.remote_port),
                t.pid.to_string(),
                t.opened_at.clone(),
            ]
        }),
    );
    Ok(())
}

/// Runs `azlin tunnel …`.
pub async fn run(app: &App, args: &TunnelArgs) -> anyhow::Result<ExitCode> {
    match (&args.action, &args.name, &args.forward) {
        (Some(TunnelAction::List), ..) => {
            print(app, &store(app).list())?;
            Ok(ExitCode::Ok)
        }
        (Some(TunnelAction::Close { id }), ..) => match store(app).close(id) {
            Some(closed) => {
                if app.settings.output == OutputFormat::Json {
                    println!("{}", serde_json::to_string(&closed)?);
                } else {
                    println!("closed tunnel {id}");
                }
                Ok(ExitCode::Ok)
            }
            None => Err(Failure::usage(format!(
                "no open tunnel '{id}' (see `azlin tunnel list`)"
            ))),
        },
        (None, Some(name), Some(forward)) => {
            let forward: Forward = forward.parse().map_err(Failure::usage)?;
            let bind: IpAddr = args
                .bind
                .as_deref()
                .unwrap_or("127.0.0.1")
                .parse()
                .map_err(|_| Failure::usage("--bind: expected an IP address such as 127.0.0.1"))?;
            let (vm, access) = ssh_access_to(app, name).await?;
            let store = store(app);
            let vm_name = vm.name.to_string();
            let record =
                tokio::task::spawn_blocking(move || store.open(&access, &vm_name, bind, &forward))
                    .await??;
            if app.settings.output == OutputFormat::Json {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                println!(
                    "tunnel {id}: {local} → {host}:{port} on {name} (close it with `azlin tunnel close {id}`)",
                    id = record.id,
                    local = std::net::SocketAddr::new(record.bind, record.forward.local_port),
                    host = record.forward.remote_host,
                    port = record.forward.remote_port
                );
            }
            Ok(ExitCode::Ok)
        }
        _ => Err(Failure::usage(
            "usage: azlin tunnel NAME LOCAL_PORT:REMOTE_HOST:REMOTE_PORT [--bind ADDR] | tunnel list | tunnel close ID",
        )),
    }
}
