//! The progress display of seed 000: stages marked ► (started), … (working), ✓ (done),
//! ✗ (failed) and ⚠ (warning), with elapsed time. Live spinners on a terminal; plain lines
//! otherwise. Always on stderr, so stdout carries only results.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The display for one command.
#[derive(Clone)]
pub struct Progress {
    live: Option<MultiProgress>,
}

/// One stage (or, in a fleet, one VM's line).
pub struct Stage {
    bar: Option<ProgressBar>,
    label: String,
    started: Instant,
    /// When the last plain update line was printed (plain output is throttled).
    last_line: Mutex<Option<Instant>>,
}

/// Least time between two plain `…` lines of one stage.
const PLAIN_UPDATE_INTERVAL: Duration = Duration::from_secs(2);

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

impl Progress {
    /// Live spinners when `tty`, plain lines otherwise.
    pub fn new(tty: bool) -> Self {
        Progress {
            live: tty.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Prints a line between stages.
    pub fn note(&self, line: &str) {
        match &self.live {
            Some(multi) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    /// Starts a stage: `► label…`.
    pub fn stage(&self, label: impl Into<String>) -> Stage {
        let label = label.into();
        let bar = self.live.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} ► {prefix} … {msg} [{elapsed}]")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        if bar.is_none() {
            eprintln!("► {label}…");
        }
        Stage {
            bar,
            label,
            started: Instant::now(),
            last_line: Mutex::new(None),
        }
    }
}

impl Stage {
    /// Shows what the stage is doing now (on plain output, at most every 2 s).
    pub fn update(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
            return;
        }
        let Ok(mut last) = self.last_line.lock() else {
            return;
        };
        if last.is_none_or(|t| t.elapsed() >= PLAIN_UPDATE_INTERVAL) {
            *last = Some(Instant::now());
            eprintln!("  … {}: {message}", self.label);
        }
    }

    /// A warning inside the stage: `⚠ message`; the stage goes on.
    pub fn warn(&self, message: &str) {
        let line = format!("⚠ {}: {message}", self.label);
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn finish(self, mark: &str, message: &str) {
        let detail = if message.is_empty() {
            String::new()
        } else {
            format!(": {message}")
        };
        let line = format!(
            "{mark} {}{detail} ({})",
            self.label,
            seconds(self.started.elapsed())
        );
        match self.bar {
            Some(bar) => {
                bar.println(line);
                bar.finish_and_clear();
            }
            None => eprintln!("{line}"),
        }
    }

    /// The stage succeeded: `✓ label: message (1.2s)`.
    pub fn done(self, message: &str) {
        self.finish("✓", message);
    }

    /// The stage failed: `✗ label: message (1.2s)`.
    pub fn fail(self, message: &str) {
        self.finish("✗", message);
    }

    /// The stage ended with a warning: `⚠ label: message (1.2s)`.
    pub fn done_with_warning(self, message: &str) {
        self.finish("⚠", message);
    }
}
