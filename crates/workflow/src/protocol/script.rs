//! The one program a step is on the VM. Each step is ONE `exec` round trip: the command is a
//! constant `sh -s` (through `sudo -n` when steps run as root and the login user is not), and
//! its standard input is a POSIX shell program that
//!
//! 1. exports the step's environment (every value quoted as data),
//! 2. creates fresh `GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_PATH`, `GITHUB_STATE` and
//!    `GITHUB_STEP_SUMMARY` files,
//! 3. writes the step's script to a file (with the `printf` builtin, the script quoted as data),
//! 4. runs it with the step's shell in its working directory, with standard input from
//!    `/dev/null`,
//! 5. prints a unique marker line and then the five files, each preceded by its size, and
//! 6. exits with the step's exit code.
//!
//! On the common path the program starts no process but the step's shell: directories exist
//! after the job's setup, files are created and written by builtins, and empty files are
//! reported by `[ -s ]`; only files a step wrote cost a `wc` and a `cat`.
//!
//! [`super::output::StepOutput`] cuts everything from the marker on out of the visible output,
//! and [`parse_trailer`] reads the files back from it. No second round trip is needed to read
//! what the step wrote.

use azlin_remote::quote::sh;

/// How a step's script is run: a command template with `{0}` for the script path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellCommand {
    /// The template, e.g. `bash --noprofile --norc -eo pipefail {0}`.
    pub template: String,
    /// The script file's extension (`sh`, `py`, `ps1`).
    pub extension: &'static str,
}

/// A `shell:` azlin cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShellError(pub String);

impl ShellCommand {
    /// The command for `shell:` (`None`: GitHub's default, `bash -e {0}`, or `sh -e {0}` when
    /// the VM has no bash).
    pub fn resolve(shell: Option<&str>, bash_available: bool) -> Result<ShellCommand, ShellError> {
        let (template, extension) = match shell.map(str::trim) {
            None | Some("") if bash_available => ("bash -e {0}", "sh"),
            None | Some("") => ("sh -e {0}", "sh"),
            Some("bash") => ("bash --noprofile --norc -eo pipefail {0}", "sh"),
            Some("sh") => ("sh -e {0}", "sh"),
            Some("python") => ("python3 {0}", "py"),
            Some("pwsh") => ("pwsh -command \". '{0}'\"", "ps1"),
            Some("powershell") | Some("cmd") => {
                return Err(ShellError(format!(
                    "shell '{}' is a Windows shell; a Linux VM runs bash, sh, python, pwsh or a template with {{0}}",
                    shell.unwrap_or_default()
                )));
            }
            Some(custom) if custom.contains("{0}") => {
                let first = custom.split_whitespace().next().unwrap_or_default();
                let extension = if first.starts_with("python") {
                    "py"
                } else {
                    "sh"
                };
                return Ok(ShellCommand {
                    template: custom.to_string(),
                    extension,
                });
            }
            Some(other) => {
                return Err(ShellError(format!(
                    "shell '{other}' is not supported: use bash, sh, python, pwsh, or a command template containing {{0}} for the script path"
                )));
            }
        };
        Ok(ShellCommand {
            template: template.to_string(),
            extension,
        })
    }

    /// The command line running `script_path`: the template split into words (single and
    /// double quotes group words), `{0}` replaced, every word quoted for the shell.
    pub fn command_line(&self, script_path: &str) -> String {
        split_words(&self.template)
            .iter()
            .map(|w| sh(&w.replace("{0}", script_path)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn split_words(template: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in template.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(current);
    }
    words
}

/// The environment-file paths of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCommandPaths {
    /// `GITHUB_ENV`.
    pub env: String,
    /// `GITHUB_OUTPUT`.
    pub output: String,
    /// `GITHUB_PATH`.
    pub path: String,
    /// `GITHUB_STATE`.
    pub state: String,
    /// `GITHUB_STEP_SUMMARY`.
    pub summary: String,
}

impl FileCommandPaths {
    /// Fresh files for one step under `dir` (unique names per step, as GitHub's runner does).
    pub fn in_dir(dir: &str, unique: &str) -> Self {
        let f = |name: &str| format!("{dir}/{name}_{unique}");
        FileCommandPaths {
            env: f("set_env"),
            output: f("set_output"),
            path: f("add_path"),
            state: f("save_state"),
            summary: f("step_summary"),
        }
    }

    fn all(&self) -> [&str; 5] {
        [
            &self.env,
            &self.output,
            &self.path,
            &self.state,
            &self.summary,
        ]
    }

    /// The variables pointing at the files.
    pub fn variables(&self) -> [(&'static str, &str); 5] {
        [
            ("GITHUB_ENV", &self.env),
            ("GITHUB_OUTPUT", &self.output),
            ("GITHUB_PATH", &self.path),
            ("GITHUB_STATE", &self.state),
            ("GITHUB_STEP_SUMMARY", &self.summary),
        ]
    }
}

/// What the five environment files held after the step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileContents {
    /// `GITHUB_ENV`.
    pub env: String,
    /// `GITHUB_OUTPUT`.
    pub output: String,
    /// `GITHUB_PATH`.
    pub path: String,
    /// `GITHUB_STATE`.
    pub state: String,
    /// `GITHUB_STEP_SUMMARY`.
    pub summary: String,
}

/// One step, ready to be rendered into the program sent on standard input.
#[derive(Debug, Clone)]
pub struct StepScript<'a> {
    /// The full environment of the step, in order (later entries win).
    pub env: &'a [(String, String)],
    /// Directories to put in front of `PATH`, first one first.
    pub path_prepend: &'a [String],
    /// The environment files.
    pub files: &'a FileCommandPaths,
    /// Where to write the script.
    pub script_path: &'a str,
    /// The script (expressions already substituted).
    pub script: &'a str,
    /// The working directory.
    pub working_directory: &'a str,
    /// How to run the script.
    pub shell: &'a ShellCommand,
    /// The marker line that separates output from the trailer.
    pub marker: &'a str,
}

fn is_shell_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl StepScript<'_> {
    /// The program for `sh -s`.
    pub fn render(&self) -> String {
        let mut p = String::with_capacity(self.script.len() + 4096);
        // SHELL is the login shell's, not the step's: act's containers have none, and bash sets
        // it for itself (act's defaults-run case tells the two shells apart by it).
        p.push_str("unset SHELL\n");
        let mut odd = Vec::new();
        for (k, v) in self.env {
            if is_shell_name(k) {
                p.push_str(&format!("export {}\n", sh(&format!("{k}={v}"))));
            } else {
                odd.push(sh(&format!("{k}={v}")));
            }
        }
        if !self.path_prepend.is_empty() {
            let joined = self.path_prepend.join(":");
            p.push_str(&format!("export PATH={}:\"$PATH\"\n", sh(&joined)));
        }
        let files = self.files.all();
        // Only builtins on the common path: every process started here is a fork and exec on
        // the VM, and each costs about a millisecond.
        let dirs: std::collections::BTreeSet<String> = files
            .iter()
            .chain(std::iter::once(&self.script_path))
            .filter_map(|f| f.rsplit_once('/').map(|(d, _)| d.to_string()))
            .filter(|d| !d.is_empty())
            .collect();
        for d in dirs {
            let d = sh(&d);
            p.push_str(&format!("[ -d {d} ] || mkdir -p {d}\n"));
        }
        for f in files {
            p.push_str(&format!(": > {}\n", sh(f)));
        }
        p.push_str(&format!(
            "printf '%s' {} > {}\n",
            sh(self.script),
            sh(self.script_path)
        ));
        let env_prefix = if odd.is_empty() {
            String::new()
        } else {
            format!("env {} ", odd.join(" "))
        };
        let wd = sh(self.working_directory);
        p.push_str(&format!(
            "if cd {wd} 2>/dev/null; then\n  {env_prefix}{} </dev/null\n  __azlin_rc=$?\nelse\n  printf '%s\\n' {} >&2\n  __azlin_rc=1\nfi\n",
            self.shell.command_line(self.script_path),
            sh(&format!(
                "An error occurred trying to start the step: working directory '{}' does not exist",
                self.working_directory
            )),
        ));
        p.push_str(&format!("printf '\\n%s\\n' {}\n", sh(self.marker)));
        p.push_str(&format!(
            "for __azlin_f in {}; do\n  if [ -s \"$__azlin_f\" ]; then __azlin_n=$(wc -c < \"$__azlin_f\"); printf '%s\\n' $__azlin_n; cat \"$__azlin_f\"; else printf '0\\n'; fi\ndone\n",
            files.map(sh).join(" ")
        ));
        p.push_str("exit $__azlin_rc\n");
        p
    }
}

/// Reads the five files back from the trailer (`size\n` then that many bytes, five times).
pub fn parse_trailer(trailer: &[u8]) -> Result<FileContents, String> {
    let mut rest = trailer;
    let mut next = || -> Result<String, String> {
        let nl = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("the step's file-command trailer is cut short")?;
        let size: usize = std::str::from_utf8(&rest[..nl])
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or("the step's file-command trailer is malformed")?;
        let body = rest
            .get(nl + 1..nl + 1 + size)
            .ok_or("the step's file-command trailer is cut short")?;
        rest = &rest[nl + 1 + size..];
        Ok(String::from_utf8_lossy(body).into_owned())
    };
    Ok(FileContents {
        env: next()?,
        output: next()?,
        path: next()?,
        state: next()?,
        summary: next()?,
    })
}

/// A program that kills every process of a step, found by the unique `AZLIN_STEP` value in its
/// environment (children inherit it), for timeouts and cancellation.
pub fn kill_program(step_token: &str) -> String {
    kill_matching("AZLIN_STEP", step_token)
}

/// A program that kills every process whose environment has `name=value`.
pub fn kill_matching(name: &str, value: &str) -> String {
    let needle = sh(&format!("{name}={value}"));
    format!(
        "for __azlin_p in /proc/[0-9]*; do\n  if tr '\\0' '\\n' < \"$__azlin_p/environ\" 2>/dev/null | grep -qxF {needle}; then kill -9 \"${{__azlin_p#/proc/}}\" 2>/dev/null; fi\ndone\nexit 0\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shells_follow_github_defaults() {
        let t = |s: Option<&str>| ShellCommand::resolve(s, true).unwrap().template;
        assert_eq!(t(None), "bash -e {0}");
        assert_eq!(t(Some("bash")), "bash --noprofile --norc -eo pipefail {0}");
        assert_eq!(t(Some("sh")), "sh -e {0}");
        assert_eq!(t(Some("python")), "python3 {0}");
        assert_eq!(t(Some("perl {0}")), "perl {0}");
        assert_eq!(
            ShellCommand::resolve(None, false).unwrap().template,
            "sh -e {0}"
        );
        assert!(ShellCommand::resolve(Some("cmd"), true).is_err());
        assert!(ShellCommand::resolve(Some("zsh"), true).is_err());
        assert_eq!(
            ShellCommand::resolve(Some("python"), true)
                .unwrap()
                .extension,
            "py"
        );
    }

    #[test]
    fn command_lines_quote_every_word() {
        let c = ShellCommand::resolve(Some("bash"), true).unwrap();
        assert_eq!(
            c.command_line("/t/a b.sh"),
            "'bash' '--noprofile' '--norc' '-eo' 'pipefail' '/t/a b.sh'"
        );
        let c = ShellCommand::resolve(Some("pwsh"), true).unwrap();
        assert_eq!(
            c.command_line("/t/s.ps1"),
            "'pwsh' '-command' '. '\\''/t/s.ps1'\\'''"
        );
    }

    #[test]
    fn trailer_round_trip() {
        let t = b"4\nA=1\n0\n6\n/a\n/b\n0\n2\nhi";
        let got = parse_trailer(t).unwrap();
        assert_eq!(got.env, "A=1\n");
        assert_eq!(got.output, "");
        assert_eq!(got.path, "/a\n/b\n");
        assert_eq!(got.summary, "hi");
        assert!(parse_trailer(b"3\nA=").is_err());
        assert!(parse_trailer(b"x\n").is_err());
    }

    #[test]
    fn the_program_runs_in_a_real_shell() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let files = FileCommandPaths::in_dir(&format!("{d}/fc"), "1");
        let env = vec![
            ("GREETING".to_string(), "it's \"quoted\" $HOME".to_string()),
            ("odd-name".to_string(), "v".to_string()),
            ("GITHUB_OUTPUT".to_string(), files.output.clone()),
        ];
        let shell = ShellCommand::resolve(Some("sh"), false).unwrap();
        let script = "printf '%s\\n' \"$GREETING\"\necho 1\necho K=v >> \"$GITHUB_OUTPUT\"\nprintf 'no newline'\nexit 3";
        let program = StepScript {
            env: &env,
            path_prepend: &["/opt/x".to_string()],
            files: &files,
            script_path: &format!("{d}/s.sh"),
            script,
            working_directory: &d,
            shell: &shell,
            marker: "__MARK__",
        }
        .render();
        let out = std::process::Command::new("sh")
            .arg("-s")
            .stdin(
                std::fs::File::open({
                    let p = dir.path().join("prog");
                    std::fs::write(&p, &program).unwrap();
                    p
                })
                .unwrap(),
            )
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        let (visible, trailer) = stdout.split_once("\n__MARK__\n").unwrap();
        assert_eq!(visible, "it's \"quoted\" $HOME\n1\nno newline");
        let files = parse_trailer(trailer.as_bytes()).unwrap();
        assert_eq!(files.output, "K=v\n");
        assert_eq!(files.env, "");
    }

    #[test]
    fn a_missing_working_directory_fails_the_step_with_a_message() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display().to_string();
        let files = FileCommandPaths::in_dir(&format!("{d}/fc"), "2");
        let shell = ShellCommand::resolve(Some("sh"), false).unwrap();
        let program = StepScript {
            env: &[],
            path_prepend: &[],
            files: &files,
            script_path: &format!("{d}/s.sh"),
            script: "echo never",
            working_directory: "/nonexistent/dir",
            shell: &shell,
            marker: "__MARK__",
        }
        .render();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&program)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("never"));
    }
}
