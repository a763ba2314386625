//! A VM's health in one round trip: load, memory, disk, uptime, failed systemd units and tmux
//! sessions, read by a small shell script over SSH.

use crate::keys::Identity;
use crate::shell::{RemoteError, Shell};
use azlin_core::Vm;
use futures::StreamExt;
use serde::Serialize;

/// The script: one `key=value` line per fact. tmux sessions are the login user's (those
/// `azlin connect` attaches to). CPU time is the root cgroup's: the whole machine in a real
/// VM, the machine's own cgroup in an nspawn VM (in the `unified` hierarchy on a host that
/// mixes cgroup versions, where the v1 `cpuacct` shows the host's).
const SCRIPT: &str = r#"read -r l1 l5 l15 _ < /proc/loadavg; echo "load=$l1 $l5 $l15"
awk '/^MemTotal:/{t=$2} /^MemAvailable:/{a=$2} END{printf "memory=%.0f %.0f\n", (t-a)*1024, t*1024}' /proc/meminfo
df -P -B1 / | awk 'NR==2{printf "disk=%.0f %.0f\n", $3, $2}'
echo "uptime=$(ps -o etimes= -p 1 | tr -d ' ')"
echo "failed=$(systemctl list-units --state=failed --no-legend --plain 2>/dev/null | awk '{print $1}' | paste -sd, -)"
echo "tmux=$(tmux list-sessions -F '#S' 2>/dev/null | paste -sd, -)"
echo "ssh=$(pgrep -c -f '^sshd: [^ ]+@' 2>/dev/null)"
echo "cpu=$(cat /sys/fs/cgroup/cpu.stat /sys/fs/cgroup/unified/cpu.stat 2>/dev/null | awk '/^usage_usec/{print $2; exit}')"
"#;

/// What one VM reports.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Health {
    /// Load averages over 1, 5 and 15 minutes.
    pub load: [f64; 3],
    /// Memory in use (total minus available), bytes.
    pub memory_used: u64,
    /// Memory, bytes.
    pub memory_total: u64,
    /// Space used on `/`, bytes.
    pub disk_used: u64,
    /// Size of `/`, bytes.
    pub disk_total: u64,
    /// Seconds since the VM's init started.
    pub uptime_secs: u64,
    /// Failed systemd units.
    pub failed_units: Vec<String>,
    /// The login user's tmux sessions.
    pub tmux_sessions: Vec<String>,
    /// SSH sessions open on the VM, besides the one that read this.
    pub ssh_sessions: u32,
    /// CPU time the VM has used (its cgroup's `usage_usec`), microseconds; `None` where the
    /// VM does not show it.
    pub cpu_usec: Option<u64>,
}

fn numbers<const N: usize, T: std::str::FromStr + Default + Copy>(text: &str) -> [T; N] {
    let mut out = [T::default(); N];
    for (slot, word) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = word.parse().unwrap_or_default();
    }
    out
}

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

impl Health {
    /// Parses the script's output.
    pub fn parse(text: &str) -> Health {
        let mut health = Health::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            match key {
                "load" => health.load = numbers(value),
                "memory" => [health.memory_used, health.memory_total] = numbers(value),
                "disk" => [health.disk_used, health.disk_total] = numbers(value),
                "uptime" => health.uptime_secs = value.trim().parse().unwrap_or_default(),
                "failed" => health.failed_units = list(value),
                "tmux" => health.tmux_sessions = list(value),
                // The session that ran the script is one of them.
                "ssh" => {
                    health.ssh_sessions = value
                        .trim()
                        .parse::<u32>()
                        .unwrap_or_default()
                        .saturating_sub(1);
                }
                "cpu" => health.cpu_usec = value.trim().parse().ok(),
                _ => {}
            }
        }
        health
    }

    /// The health of each VM, read over its own connection, eight at a time; a VM that
    /// cannot be read gives why.
    pub async fn read_all(vms: &[Vm], identity: &Identity) -> Vec<Result<Health, String>> {
        let reads = vms.iter().map(|vm| async move {
            let shell = crate::connect(vm, identity)
                .await
                .map_err(|e| e.to_string())?;
            Health::read(shell.as_ref())
                .await
                .map_err(|e| e.to_string())
        });
        futures::stream::iter(reads).buffered(8).collect().await
    }

    /// Reads the health of the VM behind `shell`.
    pub async fn read(shell: &dyn Shell) -> Result<Health, RemoteError> {
        let out = shell.capture(SCRIPT).await?;
        Ok(Health::parse(&out.stdout_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_lines_become_a_health_report() {
        let text = "load=0.52 0.31 0.10\nmemory=104857600 2147483648\ndisk=1000 8000\n\
                    uptime=3600\nfailed=ssh.service,cron.service\ntmux=azlin,build\n\
                    ssh=3\ncpu=123456\n";
        let health = Health::parse(text);
        assert_eq!(health.load, [0.52, 0.31, 0.10]);
        assert_eq!(
            (health.memory_used, health.memory_total),
            (104857600, 2147483648)
        );
        assert_eq!((health.disk_used, health.disk_total), (1000, 8000));
        assert_eq!(health.uptime_secs, 3600);
        assert_eq!(health.failed_units, ["ssh.service", "cron.service"]);
        assert_eq!(health.tmux_sessions, ["azlin", "build"]);
        assert_eq!(health.ssh_sessions, 2);
        assert_eq!(health.cpu_usec, Some(123456));
        let quiet = Health::parse("failed=\ntmux=\nssh=1\ncpu=\n");
        assert!(quiet.failed_units.is_empty() && quiet.tmux_sessions.is_empty());
        assert_eq!((quiet.ssh_sessions, quiet.cpu_usec), (0, None));
    }
}
