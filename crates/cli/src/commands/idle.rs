//! Idle stop, run by `azlin serve` when `[vm] idle_stop_minutes` is set: running VMs of users
//! (not warm pool VMs, not workflow sessions) that had no SSH session and next to no CPU use
//! for that long are stopped, and why is noted for `azlin list`.

use crate::app::App;
use crate::commands::fleet::{read_health, running_vms};
use azlin_control::ProviderSource;
use azlin_core::ProviderKind;
use azlin_remote::idle::{IDLE_CPU_SHARE, IdleWatch, Verdict};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Watches VMs until `stopped`; returns at once when idle stop is not configured.
pub async fn watch_idle(app: &App, limit: Option<Duration>, mut stopped: watch::Receiver<bool>) {
    let Some(limit) = limit else { return };
    let mut watch = IdleWatch::new(limit);
    eprintln!(
        "azlin serve: stopping VMs idle for {} (no SSH session, CPU under {:.0} % of one CPU)",
        minutes(limit),
        IDLE_CPU_SHARE * 100.0
    );
    loop {
        if let Err(e) = sweep(app, &mut watch, limit).await {
            tracing::warn!("idle stop: {e:#}");
        }
        tokio::select! {
            () = tokio::time::sleep(watch.interval()) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
    }
}

/// One round: reads every eligible VM and stops those idle for `limit`.
async fn sweep(app: &App, watch: &mut IdleWatch, limit: Duration) -> anyhow::Result<()> {
    // A user's VM: never a warm pool VM waiting to be taken, nor one a workflow session holds.
    let vms = running_vms(app, |r| {
        r.provider != ProviderKind::Sim
            && (r.pool.is_none() || r.claim.as_ref().is_some_and(|c| c.handed_over))
    })
    .await?;
    watch.retain(&vms.iter().map(|vm| vm.name.to_string()).collect::<Vec<_>>());
    let healths = read_health(app, &vms).await?;
    let at = Instant::now();
    for (vm, health) in vms.iter().zip(healths) {
        let name = vm.name.as_str();
        let health = match health {
            Ok(health) => health,
            Err(e) => {
                tracing::debug!(vm = name, "idle stop: cannot read it: {e}");
                watch.forget(name);
                continue;
            }
        };
        let Verdict::Stop(idle) = watch.observe(name, &health, at) else {
            continue;
        };
        watch.forget(name);
        let reason = format!(
            "stopped by azlin serve at {}: idle for {} (limit {}; no SSH session, next to no CPU use)",
            azlin_core::now_rfc3339(),
            minutes(idle),
            minutes(limit)
        );
        let stop = async {
            let provider = app.providers.provider(vm.provider)?;
            provider.stop(&vm.name).await?;
            app.settings.stop_notes().record(&vm.name, &reason)?;
            anyhow::Ok(())
        };
        match stop.await {
            Ok(()) => eprintln!("azlin serve: {name} {reason}"),
            Err(e) => tracing::warn!(vm = name, "idle stop failed: {e:#}"),
        }
    }
    Ok(())
}

/// `d` as minutes, or seconds when under a minute.
fn minutes(d: Duration) -> String {
    if d >= Duration::from_secs(60) {
        format!("{:.1} min", d.as_secs_f64() / 60.0)
    } else {
        format!("{} s", d.as_secs())
    }
}
