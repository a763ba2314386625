//! A step's output as it streams in: split into lines, workflow commands applied, masked values
//! hidden, shown and logged; and the file-command trailer that the step script prints after a
//! unique marker line cut off and kept aside.

use super::command::{self, WorkflowCommand};
use super::mask::Masker;
use azlin_remote::OutputStream;
use serde::{Deserialize, Serialize};
use std::io::Write;

/// An `::error::`, `::warning::` or `::notice::` annotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// `error`, `warning` or `notice`.
    pub level: String,
    /// The message (masked).
    pub message: String,
    /// `file=` property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// `line=` property.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<String>,
}

/// What the workflow commands of one step asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommandEffects {
    /// `::set-output name=K::V`.
    pub outputs: Vec<(String, String)>,
    /// `::set-env name=K::V` (only when `ACTIONS_ALLOW_UNSECURE_COMMANDS` is true).
    pub env: Vec<(String, String)>,
    /// `::add-path::DIR` (same condition).
    pub paths: Vec<String>,
    /// `::save-state name=K::V`.
    pub state: Vec<(String, String)>,
    /// Annotations.
    pub annotations: Vec<Annotation>,
    /// Commands that failed and fail the step (as GitHub does for disabled `set-env`).
    pub failures: Vec<String>,
}

/// Receives each line to show: the stream and the masked text.
pub type Display<'a> = dyn FnMut(OutputStream, &str) + Send + 'a;

/// Processes one step's output.
pub struct StepOutput<'a> {
    marker: Vec<u8>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    blank_pending: bool,
    trailer: Option<Vec<u8>>,
    masker: &'a mut Masker,
    stop_token: Option<String>,
    allow_unsecure: bool,
    debug: bool,
    log: Option<Box<dyn Write + Send + 'a>>,
    display: Box<Display<'a>>,
    effects: CommandEffects,
}

/// What remains once the step has ended.
#[derive(Debug, Default)]
pub struct Finished {
    /// Effects of workflow commands.
    pub effects: CommandEffects,
    /// The bytes after the marker line (`None` when the marker never came: the script was cut
    /// short).
    pub trailer: Option<Vec<u8>>,
}

impl<'a> StepOutput<'a> {
    /// A processor for a step whose script prints `marker` on a line of its own before the
    /// trailer. `allow_unsecure` enables `set-env` and `add-path`; `debug` shows `::debug::`.
    pub fn new(
        marker: &str,
        masker: &'a mut Masker,
        allow_unsecure: bool,
        debug: bool,
        log: Option<Box<dyn Write + Send + 'a>>,
        display: Box<Display<'a>>,
    ) -> Self {
        StepOutput {
            marker: marker.as_bytes().to_vec(),
            stdout: Vec::new(),
            stderr: Vec::new(),
            blank_pending: false,
            trailer: None,
            masker,
            stop_token: None,
            allow_unsecure,
            debug,
            log,
            display,
            effects: CommandEffects::default(),
        }
    }

    /// Feeds a chunk of output.
    pub fn feed(&mut self, stream: OutputStream, bytes: &[u8]) {
        match stream {
            OutputStream::Stderr => {
                self.stderr.extend_from_slice(bytes);
                while let Some(i) = self.stderr.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.stderr.drain(..=i).collect();
                    self.line(OutputStream::Stderr, &line[..line.len() - 1]);
                }
            }
            OutputStream::Stdout => {
                if let Some(trailer) = &mut self.trailer {
                    trailer.extend_from_slice(bytes);
                    return;
                }
                self.stdout.extend_from_slice(bytes);
                while let Some(i) = self.stdout.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = self.stdout.drain(..=i).collect();
                    let line = &line[..line.len() - 1];
                    if line == self.marker.as_slice() {
                        // The blank line before the marker is the script's own separator.
                        self.blank_pending = false;
                        self.trailer = Some(std::mem::take(&mut self.stdout));
                        return;
                    }
                    if line.is_empty() || line == b"\r" {
                        if self.blank_pending {
                            self.line(OutputStream::Stdout, b"");
                        }
                        self.blank_pending = true;
                        continue;
                    }
                    if self.blank_pending {
                        self.blank_pending = false;
                        self.line(OutputStream::Stdout, b"");
                    }
                    self.line(OutputStream::Stdout, line);
                }
            }
        }
    }

    /// Flushes partial lines and returns what the step asked for.
    pub fn finish(mut self) -> Finished {
        if self.blank_pending {
            self.blank_pending = false;
            self.line(OutputStream::Stdout, b"");
        }
        for stream in [OutputStream::Stdout, OutputStream::Stderr] {
            let rest = match stream {
                OutputStream::Stdout => std::mem::take(&mut self.stdout),
                OutputStream::Stderr => std::mem::take(&mut self.stderr),
            };
            if !rest.is_empty() {
                self.line(stream, &rest);
            }
        }
        if let Some(log) = &mut self.log {
            let _ = log.flush();
        }
        Finished {
            effects: std::mem::take(&mut self.effects),
            trailer: self.trailer.take(),
        }
    }

    /// Shows (and logs) a line the runner itself writes, masked.
    pub fn note(&mut self, text: &str) {
        self.show(OutputStream::Stderr, text);
    }

    fn show(&mut self, stream: OutputStream, text: &str) {
        let masked = self.masker.mask(text);
        if let Some(log) = &mut self.log {
            let _ = writeln!(log, "{masked}");
        }
        (self.display)(stream, &masked);
    }

    fn line(&mut self, stream: OutputStream, raw: &[u8]) {
        let text = String::from_utf8_lossy(raw);
        let text = text.strip_suffix('\r').unwrap_or(&text).to_string();
        if let Some(token) = &self.stop_token {
            if text.trim() == format!("::{token}::") {
                self.stop_token = None;
                return;
            }
            self.show(stream, &text);
            return;
        }
        match command::parse(&text) {
            Some(c) => self.command(stream, c, &text),
            None => self.show(stream, &text),
        }
    }

    fn command(&mut self, stream: OutputStream, c: WorkflowCommand, raw: &str) {
        let name_prop = c.property("name").map(str::to_string);
        match c.name.as_str() {
            "add-mask" => self.masker.add(&c.data),
            "set-output" => match name_prop {
                Some(name) => self.effects.outputs.push((name, c.data)),
                None => self.warn("::set-output:: needs a name property"),
            },
            "save-state" => match name_prop {
                Some(name) => self.effects.state.push((name, c.data)),
                None => self.warn("::save-state:: needs a name property"),
            },
            "set-env" | "add-path" if !self.allow_unsecure => {
                let message = format!(
                    "Unable to process command '{}' successfully. The `{}` command is disabled. Please upgrade to using Environment Files or opt into unsecure command execution by setting the `ACTIONS_ALLOW_UNSECURE_COMMANDS` environment variable to `true`.",
                    self.masker.mask(raw),
                    c.name
                );
                self.note(&format!("Error: {message}"));
                self.effects.annotations.push(Annotation {
                    level: "error".into(),
                    message: self.masker.mask(&message),
                    file: None,
                    line: None,
                });
                self.effects.failures.push(message);
            }
            "set-env" => match name_prop {
                Some(name) => self.effects.env.push((name, c.data)),
                None => self.warn("::set-env:: needs a name property"),
            },
            "add-path" => self.effects.paths.push(c.data),
            "stop-commands" => {
                if !c.data.is_empty() {
                    self.stop_token = Some(c.data);
                }
            }
            "group" => self.show(stream, &format!("▶ {}", c.data)),
            "endgroup" | "echo" => {}
            "debug" => {
                if self.debug {
                    self.show(stream, &format!("Debug: {}", c.data));
                }
            }
            "error" | "warning" | "notice" => {
                let mut label = format!("{}{}", c.name[..1].to_uppercase(), &c.name[1..]);
                if let Some(file) = c.property("file") {
                    let line = c
                        .property("line")
                        .map(|l| format!(":{l}"))
                        .unwrap_or_default();
                    label = format!("{label} ({file}{line})");
                }
                self.show(stream, &format!("{label}: {}", c.data));
                self.effects.annotations.push(Annotation {
                    level: c.name.clone(),
                    message: self.masker.mask(&c.data),
                    file: c.property("file").map(str::to_string),
                    line: c.property("line").map(str::to_string),
                });
            }
            // Unknown commands are output like any other line, as GitHub does.
            _ => self.show(stream, raw),
        }
    }

    fn warn(&mut self, message: &str) {
        self.note(&format!("Warning: {message}"));
        self.effects.annotations.push(Annotation {
            level: "warning".into(),
            message: message.to_string(),
            file: None,
            line: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn run(chunks: &[(OutputStream, &str)], allow: bool) -> (Vec<String>, Finished) {
        let shown = Arc::new(Mutex::new(Vec::new()));
        let sink = shown.clone();
        let mut masker = Masker::new();
        masker.add("s3cret");
        let mut out = StepOutput::new(
            "__M__",
            &mut masker,
            allow,
            false,
            None,
            Box::new(move |_, line| sink.lock().unwrap().push(line.to_string())),
        );
        for (stream, text) in chunks {
            out.feed(*stream, text.as_bytes());
        }
        let finished = out.finish();
        let lines = shown.lock().unwrap().clone();
        (lines, finished)
    }

    #[test]
    fn splits_lines_across_chunks_and_cuts_the_trailer() {
        let (lines, f) = run(
            &[
                (OutputStream::Stdout, "hel"),
                (OutputStream::Stdout, "lo\nwor"),
                (OutputStream::Stderr, "oops\n"),
                (OutputStream::Stdout, "ld\n\n__M__\n3\nK=v"),
                (OutputStream::Stdout, "\n0\n"),
            ],
            false,
        );
        assert_eq!(lines, ["hello", "oops", "world"]);
        assert_eq!(f.trailer.unwrap(), b"3\nK=v\n0\n");
    }

    #[test]
    fn keeps_blank_lines_that_are_output() {
        let (lines, f) = run(&[(OutputStream::Stdout, "a\n\n\nb\n\n__M__\n")], false);
        assert_eq!(lines, ["a", "", "", "b"]);
        assert_eq!(f.trailer.unwrap(), b"");
        let (lines, f) = run(&[(OutputStream::Stdout, "no newline")], false);
        assert_eq!(lines, ["no newline"]);
        assert!(f.trailer.is_none());
    }

    #[test]
    fn applies_commands_and_masks() {
        let (lines, f) = run(
            &[(
                OutputStream::Stdout,
                "::add-mask::hunter2\nmy hunter2 and s3cret\n::set-output name=zoo::zar\n::group::Build\n::endgroup::\n::warning file=a.js,line=3::careful s3cret\n::set-env name=foo::bar\n",
            )],
            false,
        );
        assert_eq!(
            lines[..3],
            ["my *** and ***", "▶ Build", "Warning (a.js:3): careful ***"]
        );
        assert!(
            lines[3].contains("The `set-env` command is disabled"),
            "{lines:?}"
        );
        assert_eq!(f.effects.outputs, [("zoo".to_string(), "zar".to_string())]);
        assert_eq!(f.effects.annotations[0].message, "careful ***");
        assert_eq!(f.effects.failures.len(), 1);
        assert!(f.effects.env.is_empty());
    }

    #[test]
    fn unsecure_commands_when_allowed_and_stop_commands() {
        let (lines, f) = run(
            &[(
                OutputStream::Stdout,
                "::set-env name=foo::bar\n::add-path::/zip\n::stop-commands::tok\n::set-env name=foo::baz\n::tok::\n::set-env name=foo::qux\n",
            )],
            true,
        );
        assert_eq!(lines, ["::set-env name=foo::baz"]);
        assert_eq!(
            f.effects.env,
            [
                ("foo".to_string(), "bar".to_string()),
                ("foo".to_string(), "qux".to_string())
            ]
        );
        assert_eq!(f.effects.paths, ["/zip"]);
        assert!(f.effects.failures.is_empty());
    }
}
