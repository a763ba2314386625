//! Idle VMs: which running VMs have had no SSH session and next to no CPU use for long enough to
//! be stopped (`[vm] idle_stop_minutes`, applied by `azlin serve`). Judged from successive
//! [`Health`] readings: CPU use is the growth of the VM's own CPU time between two readings, so
//! a VM is never judged on its first one.

use crate::health::Health;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// CPU use, as a share of one CPU, below which a VM counts as idle.
pub const IDLE_CPU_SHARE: f64 = 0.10;

/// What one reading says about a VM.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Someone is logged in, or it works (or there is nothing to compare with yet).
    Busy,
    /// Idle for this long, not yet long enough.
    Idle(Duration),
    /// Idle for this long, at least the limit: stop it.
    Stop(Duration),
}

/// The last reading of one VM.
#[derive(Debug, Clone, Copy)]
struct Seen {
    cpu_usec: u64,
    at: Instant,
    idle_since: Option<Instant>,
}

/// Follows VMs from reading to reading.
#[derive(Debug)]
pub struct IdleWatch {
    limit: Duration,
    seen: HashMap<String, Seen>,
}

impl IdleWatch {
    /// VMs idle for `limit` are to be stopped.
    pub fn new(limit: Duration) -> IdleWatch {
        IdleWatch {
            limit,
            seen: HashMap::new(),
        }
    }

    /// How often VMs should be read: a third of the limit, between 1 s and a minute.
    pub fn interval(&self) -> Duration {
        (self.limit / 3).clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Takes a reading of VM `name` made at `at`.
    pub fn observe(&mut self, name: &str, health: &Health, at: Instant) -> Verdict {
        let Some(cpu_usec) = health.cpu_usec else {
            // Without its CPU time a VM cannot be judged idle.
            self.seen.remove(name);
            return Verdict::Busy;
        };
        let previous = self.seen.get(name).copied();
        let quiet = previous.is_some_and(|p| {
            let elapsed = at.saturating_duration_since(p.at).as_secs_f64();
            let used = cpu_usec.saturating_sub(p.cpu_usec) as f64 / 1e6;
            elapsed > 0.0 && used / elapsed < IDLE_CPU_SHARE
        });
        // A quiet interval runs from the previous reading: an idle spell starts there.
        let idle_since = previous
            .filter(|_| quiet && health.ssh_sessions == 0)
            .map(|p| p.idle_since.unwrap_or(p.at));
        self.seen.insert(
            name.to_string(),
            Seen {
                cpu_usec,
                at,
                idle_since,
            },
        );
        match idle_since.map(|since| at.saturating_duration_since(since)) {
            None => Verdict::Busy,
            Some(idle) if idle >= self.limit => Verdict::Stop(idle),
            Some(idle) => Verdict::Idle(idle),
        }
    }

    /// Forgets VM `name` (stopped, deleted, or no longer running).
    pub fn forget(&mut self, name: &str) {
        self.seen.remove(name);
    }

    /// Forgets every VM but those in `names`.
    pub fn retain(&mut self, names: &[String]) {
        self.seen.retain(|name, _| names.contains(name));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(ssh_sessions: u32, cpu_usec: u64) -> Health {
        Health {
            ssh_sessions,
            cpu_usec: Some(cpu_usec),
            ..Health::default()
        }
    }

    #[test]
    fn a_quiet_vm_without_sessions_is_stopped_after_the_limit() {
        let mut watch = IdleWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        assert_eq!(
            watch.observe("a", &reading(0, 1_000_000), t0),
            Verdict::Busy
        );
        // 10 ms of CPU in 20 s: idle, counted from the first reading.
        assert_eq!(
            watch.observe("a", &reading(0, 1_010_000), t0 + s(20)),
            Verdict::Idle(s(20))
        );
        assert_eq!(
            watch.observe("a", &reading(0, 1_020_000), t0 + s(40)),
            Verdict::Idle(s(40))
        );
        assert_eq!(
            watch.observe("a", &reading(0, 1_030_000), t0 + s(60)),
            Verdict::Stop(s(60))
        );
    }

    #[test]
    fn a_session_or_work_resets_the_clock() {
        let mut watch = IdleWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let s = Duration::from_secs;
        watch.observe("a", &reading(0, 0), t0);
        assert_eq!(
            watch.observe("a", &reading(0, 0), t0 + s(30)),
            Verdict::Idle(s(30))
        );
        // Someone logs in.
        assert_eq!(
            watch.observe("a", &reading(1, 0), t0 + s(50)),
            Verdict::Busy
        );
        // Logged out, quiet again: counted from the busy reading.
        assert_eq!(
            watch.observe("a", &reading(0, 0), t0 + s(70)),
            Verdict::Idle(s(20))
        );
        // A build uses half a CPU for 20 s.
        assert_eq!(
            watch.observe("a", &reading(0, 10_000_000), t0 + s(90)),
            Verdict::Busy
        );
        // Unknown CPU time: never idle, and the next reading starts over.
        let unknown = Health::default();
        assert_eq!(watch.observe("a", &unknown, t0 + s(200)), Verdict::Busy);
        assert_eq!(
            watch.observe("a", &reading(0, 10_000_000), t0 + s(300)),
            Verdict::Busy
        );
    }

    #[test]
    fn readings_come_a_third_of_the_limit_apart_within_bounds() {
        let s = Duration::from_secs;
        assert_eq!(IdleWatch::new(s(30 * 60)).interval(), s(60));
        assert_eq!(IdleWatch::new(s(90)).interval(), s(30));
        assert_eq!(IdleWatch::new(s(1)).interval(), s(1));
    }
}
