//! `azlin pool status|fill|drain`: warm pools of VMs booted ahead; and the detached refill
//! `azlin run` starts after taking a pool VM.

use crate::app::{App, ControlPlane};
use crate::args::{OutputFormat, PoolAction, PoolArgs};
use crate::commands::prerequisites;
use crate::failure::Failure;
use crate::output;
use crate::progress::Progress;
use crate::settings::Settings;
use azlin_control::pool::{HealthCheck, Maintenance, Pools};
use azlin_control::{PoolStatus, ProviderSource};
use azlin_core::{ExitCode, VmState};
use azlin_remote::Identity;
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::sync::Arc;

/// Most pool VMs one process boots at once.
const MAX_PARALLEL_BOOTS: usize = 4;

/// Runs `azlin pool …`.
pub async fn run(app: &App, args: &PoolArgs) -> anyhow::Result<ExitCode> {
    let (action, name) = match &args.action {
        PoolAction::Status(a) => ("status", &a.name),
        PoolAction::Fill(a) => ("fill", &a.name),
        PoolAction::Drain(a) => ("drain", &a.name),
    };
    let names = selected(app, name.as_deref())?;
    match action {
        "status" => status(app, &names).await,
        "fill" => fill(app, &names).await,
        _ => drain(app, &names).await,
    }
}

/// The pools a command works on: the one named, or every configured pool.
fn selected(app: &App, name: Option<&str>) -> anyhow::Result<Vec<String>> {
    let planner = app.settings.planner();
    planner.check_pools().map_err(|e| Failure::usage(e.0))?;
    match name {
        Some(name) => {
            planner.pool(name).map_err(|e| Failure::usage(e.0))?;
            Ok(vec![name.to_string()])
        }
        None if app.settings.config.pool.is_empty() => Err(Failure::usage(
            "no pool is configured: add a [pool.NAME] table to the config file \
             (provider, image, size, min_ready, max, labels)",
        )),
        None => Ok(app.settings.config.pool.keys().cloned().collect()),
    }
}

async fn status(app: &App, names: &[String]) -> anyhow::Result<ExitCode> {
    let records = app.store()?.vms().await?;
    let statuses: Vec<PoolStatus> = names
        .iter()
        .map(|name| PoolStatus::of(name, &app.settings.config.pool[name], &records))
        .collect();
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::to_string(&statuses)?);
        return Ok(ExitCode::Ok);
    }
    output::table(
        &[
            "POOL",
            "READY",
            "BOOTING",
            "TAKEN",
            "MIN READY",
            "MAX",
            "LABELS",
        ],
        statuses.iter().map(|s| {
            vec![
                s.name.clone(),
                s.ready.to_string(),
                s.booting.to_string(),
                s.taken.to_string(),
                s.min_ready.to_string(),
                s.max.to_string(),
                s.labels.join(","),
            ]
        }),
    );
    Ok(ExitCode::Ok)
}

/// The control plane and pools of this process, after the prerequisites of every provider the
/// pools `names` use.
async fn open(app: &App, names: &[String]) -> anyhow::Result<(ControlPlane, Pools)> {
    let planner = app.settings.planner();
    let mut kinds = Vec::new();
    let mut concurrency = 1;
    for name in names {
        let spec = planner.pool_vm(name).map_err(|e| Failure::usage(e.0))?;
        if !kinds.contains(&(spec.provider, spec.image)) {
            kinds.push((spec.provider, spec.image));
        }
        concurrency = concurrency.max(app.settings.config.pool[name].max_vms());
    }
    let progress = Progress::new(app.settings.progress_tty);
    let mut identity = None;
    for (kind, image) in kinds {
        identity = Some(prerequisites::preflight(app, &progress, kind, image).await?);
    }
    let identity = identity.ok_or_else(|| Failure::usage("no pool selected"))?;
    // Boots beyond a few at once only slow each other down on a small host (and past SSH
    // timeouts): the rest wait in the queue.
    let concurrency = concurrency.min(MAX_PARALLEL_BOOTS);
    let control = app.control_plane(&identity, concurrency).await?;
    let pools = pools(app, &control, &identity);
    Ok((control, pools))
}

/// The pools of `app`, worked through `control`.
pub fn pools(app: &App, control: &ControlPlane, identity: &Identity) -> Pools {
    Pools::new(
        control.bus.clone(),
        control.orchestrator.clone(),
        identity.public_openssh.clone(),
        format!("azlin pool keeper on {}", crate::app::hostname()),
        crate::app::hostname(),
        &app.settings.paths.state_dir,
    )
}

/// A ready pool VM is healthy when its provider still has it running.
pub fn health_check(app: &App) -> Arc<HealthCheck> {
    let providers = app.providers.clone();
    Arc::new(move |record| {
        let providers = providers.clone();
        let (kind, name) = (record.provider, record.name.clone());
        Box::pin(async move {
            let Ok(provider) = providers.provider(kind) else {
                return false;
            };
            matches!(provider.get(&name).await, Ok(Some(vm)) if vm.state == VmState::Running)
        })
    })
}

async fn fill(app: &App, names: &[String]) -> anyhow::Result<ExitCode> {
    let (control, pools) = open(app, names).await?;
    let planner = app.settings.planner();
    let health = health_check(app);
    let mut results = Vec::new();
    let mut failed = false;
    for name in names {
        let done = pools.maintain(&planner, name, health.as_ref()).await;
        match done {
            Ok(done) => {
                if done.busy {
                    eprintln!("pool '{name}': another azlin process is filling it");
                }
                tell(&format!("pool '{name}'"), &done);
                failed |= !done.failed.is_empty();
                results.push(serde_json::json!({ "pool": name, "result": done }));
            }
            Err(e) => {
                control.shutdown().await;
                return Err(e.into());
            }
        }
    }
    control.shutdown().await;
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::Value::Array(results));
    } else {
        status(app, names).await?;
    }
    if failed {
        return Err(Failure::with_code(
            ExitCode::Provision,
            "some pool VMs failed to boot",
        ));
    }
    Ok(ExitCode::Ok)
}

/// Says on stderr what a pool's maintenance did, each line led by `who`.
fn tell(who: &str, done: &Maintenance) {
    for vm in &done.booted {
        eprintln!("{who}: {vm} is ready");
    }
    for retired in &done.retired {
        eprintln!("{who}: retired {retired}");
    }
    for failure in &done.failed {
        eprintln!("{who}: a boot failed: {failure}");
    }
}

async fn drain(app: &App, names: &[String]) -> anyhow::Result<ExitCode> {
    let (control, pools) = open(app, names).await?;
    let mut retired = Vec::new();
    for name in names {
        match pools.drain(name).await {
            Ok(vms) => {
                for vm in &vms {
                    eprintln!("pool '{name}': deleted {vm}");
                }
                retired.push(serde_json::json!({ "pool": name, "deleted": vms }));
            }
            Err(e) => {
                control.shutdown().await;
                return Err(e.into());
            }
        }
    }
    control.shutdown().await;
    if app.settings.output == OutputFormat::Json {
        println!("{}", serde_json::Value::Array(retired));
    }
    Ok(ExitCode::Ok)
}

/// How often the pool keeper of `azlin serve` looks at the pools.
const KEEPER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// The pool keeper of `azlin serve`: keeps every configured pool filled, retires stale VMs and
/// reaps VMs of dead takers, every [`KEEPER_INTERVAL`] until `stopped`. `None` when no pool is
/// configured.
pub async fn keeper(
    app: &App,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if app.settings.config.pool.is_empty() {
        return Ok(None);
    }
    let names = selected(app, None)?;
    let (control, pools) = open(app, &names).await?;
    let settings = app.settings.clone();
    let health = health_check(app);
    Ok(Some(tokio::spawn(async move {
        let planner = settings.planner();
        loop {
            for name in &names {
                match pools.maintain(&planner, name, health.as_ref()).await {
                    Ok(done) => tell(&format!("azlin serve: pool '{name}'"), &done),
                    Err(error) => tracing::warn!(pool = %name, %error, "pool maintenance failed"),
                }
            }
            tokio::select! {
                () = tokio::time::sleep(KEEPER_INTERVAL) => {}
                _ = stopped.wait_for(|stop| *stop) => break,
            }
        }
        control.shutdown().await;
    })))
}

/// Starts `azlin pool fill NAME` as a process of its own that outlives this one (its own
/// session, no terminal), logging to `logs/pool-NAME.log` in the state directory. The caller
/// never waits for it; a fill already under way makes it return at once.
pub fn spawn_refill(settings: &Settings, name: &str) {
    let started = (|| -> std::io::Result<u32> {
        let logs = settings.paths.state_dir.join("logs");
        std::fs::create_dir_all(&logs)?;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(logs.join(format!("pool-{name}.log")))?;
        let mut command = std::process::Command::new(std::env::current_exe()?);
        command
            .args(["pool", "fill", name])
            .envs(settings.child_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command.spawn()?;
        Ok(child.id())
    })();
    match started {
        Ok(pid) => tracing::info!(pool = name, pid, "refilling the pool in the background"),
        Err(error) => {
            tracing::warn!(pool = name, %error, "cannot start the pool refill; run `azlin pool fill`")
        }
    }
}
