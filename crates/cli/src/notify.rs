//! Step 7 of seed 000: tell the user the launch ended — a configured command, else
//! `notify-send` on a desktop, else nothing (quietly).

use crate::progress::Progress;
use crate::settings::Settings;
use azlin_core::VmName;
use azlin_providers::tools::which;
use tokio::process::Command;

/// Sends the notification; a failing notifier is a warning, never an error.
pub async fn send(
    settings: &Settings,
    progress: &Progress,
    success: bool,
    vm: &VmName,
    message: &str,
) {
    let status = if success { "success" } else { "failure" };
    let mut command = match &settings.config.notify_command {
        Some(script) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(script);
            c
        }
        None if which("notify-send").is_some() && on_a_desktop() => {
            let mut c = Command::new("notify-send");
            c.arg(format!("azlin: {vm}")).arg(message);
            c
        }
        None => return,
    };
    command
        .env("AZLIN_NOTIFY_STATUS", status)
        .env("AZLIN_NOTIFY_VM", vm.as_str())
        .env("AZLIN_NOTIFY_MESSAGE", message)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let outcome = tokio::time::timeout(std::time::Duration::from_secs(10), command.status()).await;
    match outcome {
        Ok(Ok(s)) if s.success() => progress.note(&format!("✓ Notification sent ({status})")),
        Ok(Ok(s)) => progress.note(&format!("⚠ Notification command failed ({s})")),
        Ok(Err(e)) => progress.note(&format!("⚠ Notification command could not run: {e}")),
        Err(_) => progress.note("⚠ Notification command timed out after 10s"),
    }
}

/// Whether a graphical session (X11 or Wayland) can show a desktop notification.
fn on_a_desktop() -> bool {
    ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
}
