//! One command on many VMs at once, their output line by line as it comes, and how each ended.

use crate::keys::Identity;
use crate::shell::OutputStream;
use azlin_core::Vm;
use futures::StreamExt;
use serde::Serialize;
use std::time::Instant;

/// How the command ended on one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetResult {
    /// The VM.
    pub name: String,
    /// The command's exit code (none when it could not run).
    pub exit_code: Option<i32>,
    /// Why it could not run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall-clock time, connection included.
    pub duration_ms: u64,
}

impl FleetResult {
    /// Whether the command ran and exited 0.
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Receives each complete line of output: the VM's name, the stream, the line.
pub type LineSink = dyn Fn(&str, OutputStream, &str) + Send + Sync;

/// Splits a byte stream into lines (the last one may end without a newline).
#[derive(Default)]
struct Lines {
    pending: [Vec<u8>; 2],
}

impl Lines {
    fn feed(
        &mut self,
        stream: OutputStream,
        bytes: &[u8],
        mut emit: impl FnMut(OutputStream, &str),
    ) {
        let buffer = &mut self.pending[stream as usize];
        buffer.extend_from_slice(bytes);
        while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            emit(
                stream,
                String::from_utf8_lossy(&line[..end]).trim_end_matches('\r'),
            );
        }
    }

    fn finish(&mut self, mut emit: impl FnMut(OutputStream, &str)) {
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let buffer = std::mem::take(&mut self.pending[stream as usize]);
            if !buffer.is_empty() {
                emit(stream, &String::from_utf8_lossy(&buffer));
            }
        }
    }
}

async fn run_one(vm: &Vm, identity: &Identity, command: &str, sink: &LineSink) -> FleetResult {
    let started = Instant::now();
    let name = vm.name.to_string();
    let outcome = async {
        let shell = crate::connect(vm, identity).await?;
        let mut lines = Lines::default();
        let code = shell
            .exec(command, &[], &mut |stream, bytes| {
                lines.feed(stream, bytes, |s, l| sink(&name, s, l));
            })
            .await?;
        lines.finish(|s, l| sink(&name, s, l));
        Ok::<i32, crate::RemoteError>(code)
    }
    .await;
    let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(code) => FleetResult {
            name,
            exit_code: Some(code),
            error: None,
            duration_ms,
        },
        Err(e) => FleetResult {
            name,
            exit_code: None,
            error: Some(e.to_string()),
            duration_ms,
        },
    }
}

/// Runs `command` (a command line for the login shell) on every VM, at most `parallel` at
/// once; results in the order of `vms`.
pub async fn run_on_all(
    vms: &[Vm],
    identity: &Identity,
    command: &str,
    parallel: usize,
    sink: &LineSink,
) -> Vec<FleetResult> {
    let mut results: Vec<(usize, FleetResult)> = futures::stream::iter(vms.iter().enumerate())
        .map(|(i, vm)| async move { (i, run_one(vm, identity, command, sink).await) })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Whether `name` matches the shell-style `pattern` (`*` any run of characters, `?` one).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Classic two-pointer matching with backtracking to the last `*`.
    let (mut i, mut j, mut star, mut mark) = (0, 0, None, 0);
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some(i);
            mark = j;
            i += 1;
        } else if let Some(s) = star {
            i = s + 1;
            mark += 1;
            j = mark;
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_the_shell() {
        assert!(glob_match("web-*", "web-1"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("w?b-*-x", "web-12-x"));
        assert!(!glob_match("web-*", "db-1"));
        assert!(!glob_match("web-?", "web-12"));
        assert!(glob_match("web-1", "web-1"));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn output_is_cut_into_lines_per_stream() {
        let mut lines = Lines::default();
        let mut seen = Vec::new();
        lines.feed(OutputStream::Stdout, b"a\nb", |s, l| {
            seen.push((s, l.to_string()))
        });
        lines.feed(OutputStream::Stderr, b"oops\r\n", |s, l| {
            seen.push((s, l.to_string()))
        });
        lines.feed(OutputStream::Stdout, b"c\n", |s, l| {
            seen.push((s, l.to_string()))
        });
        lines.finish(|s, l| seen.push((s, l.to_string())));
        assert_eq!(
            seen,
            [
                (OutputStream::Stdout, "a".to_string()),
                (OutputStream::Stderr, "oops".to_string()),
                (OutputStream::Stdout, "bc".to_string()),
            ]
        );
    }
}
