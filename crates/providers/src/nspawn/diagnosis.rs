//! What a booted nspawn machine says about itself when it does not become ready: read from the
//! host through the machine's init (`/proc/<init>/root`, `nsenter`), so it works while SSH does
//! not.

use super::machine::{MachineDir, init_pid};
use crate::command::run;
use azlin_core::ErrorKind;
use azlin_core::cloudinit::ADMIN_USER;
use std::path::Path;
use std::time::Duration;

/// How long one look inside may take (a machine stuck in boot can be slow to answer).
const LOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// How many lines of each source are shown.
const LINES: usize = 8;

/// A report on the machine booted by the nspawn process `pid`: the jobs its systemd still
/// waits on, failed units, whether logins are still refused, whether the admin user has its
/// key, cloud-init's warnings and errors, and the end of the console.
pub async fn diagnose(dir: &MachineDir, pid: u32) -> String {
    let mut report = Vec::new();
    match init_pid(pid) {
        None => report.push("the machine's init is not running".to_string()),
        Some(init) => {
            let root = Path::new("/proc").join(init.to_string()).join("root");
            if root.join("run/nologin").exists() {
                report.push(
                    "logins are still refused: /run/nologin exists (boot has not reached \
                     systemd-user-sessions, which waits for cloud-init's network stage)"
                        .to_string(),
                );
            }
            let keys = root.join(format!("home/{ADMIN_USER}/.ssh/authorized_keys"));
            if !keys.exists() {
                report.push(format!(
                    "{ADMIN_USER} has no authorized_keys yet (cloud-init's users-groups stage)"
                ));
            }
            section(
                &mut report,
                "jobs systemd still waits on",
                &systemctl(init, &["list-jobs"]).await,
            );
            section(
                &mut report,
                "failed units",
                &systemctl(init, &["--failed", "--plain"]).await,
            );
            let log =
                std::fs::read_to_string(root.join("var/log/cloud-init.log")).unwrap_or_default();
            section(
                &mut report,
                "cloud-init warnings and errors",
                &last_lines(
                    log.lines()
                        .filter(|l| l.contains("WARNING") || l.contains("ERROR")),
                ),
            );
            section(
                &mut report,
                "cloud-init's last lines",
                &last_lines(log.lines()),
            );
        }
    }
    section(&mut report, "console", &dir.console_tail(LINES));
    report.join("\n")
}

/// Runs `systemctl ARGS` inside the machine, or says why it could not.
async fn systemctl(init: u32, args: &[&str]) -> String {
    let target = init.to_string();
    let mut argv = vec!["--target", &target, "--mount", "--pid"];
    // A machine in its own user namespace answers on its bus only to its own root.
    let own_userns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/user")).ok();
    if own_userns(&target) != own_userns("self") {
        argv.push("--user");
    }
    argv.extend_from_slice(&["--", "systemctl", "--no-pager", "--no-legend"]);
    argv.extend_from_slice(args);
    match tokio::time::timeout(LOOK_TIMEOUT, run(ErrorKind::Internal, "nsenter", &argv)).await {
        Ok(Ok(out)) => last_lines(out.lines()),
        Ok(Err(e)) => e.message,
        Err(_) => format!("no answer within {}s", LOOK_TIMEOUT.as_secs()),
    }
}

/// The last [`LINES`] of `lines`, joined.
fn last_lines<'a>(lines: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(LINES)..].join("\n")
}

/// Adds `title:` and `body` indented, unless the body is empty.
fn section(report: &mut Vec<String>, title: &str, body: &str) {
    if body.trim().is_empty() {
        return;
    }
    report.push(format!("{title}:"));
    report.extend(body.lines().map(|l| format!("  {l}")));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_titled_indented_and_skipped_when_empty() {
        let mut report = Vec::new();
        section(&mut report, "empty", " \n");
        section(
            &mut report,
            "jobs",
            "1 a.service start waiting\n2 b.service",
        );
        assert_eq!(
            report,
            ["jobs:", "  1 a.service start waiting", "  2 b.service"]
        );
    }

    #[test]
    fn only_the_last_lines_are_kept() {
        let text: Vec<String> = (1..=20).map(|i| format!("line {i}")).collect();
        let kept = last_lines(text.iter().map(String::as_str));
        assert_eq!(kept.lines().count(), LINES);
        assert!(kept.ends_with("line 20"));
    }
}
