//! Finding the programs azlin needs and their versions (`azlin doctor`, step 1 of `new`).

use azlin_core::Tool;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What was found for one tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolStatus {
    /// The tool.
    pub tool: Tool,
    /// Where it is on `PATH`, if anywhere.
    pub path: Option<PathBuf>,
    /// The first line it printed for its version flag.
    pub version: Option<String>,
}

impl ToolStatus {
    /// Whether the tool was found.
    pub fn found(&self) -> bool {
        self.path.is_some()
    }
}

/// Looks `program` up on `PATH` the way a shell would.
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds `tool` and asks it for its version.
pub fn probe(tool: &Tool) -> ToolStatus {
    let path = which(tool.program);
    let version = path.as_ref().and_then(|p| {
        let out = Command::new(p)
            .args(tool.version_args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        text.lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(str::to_string)
    });
    ToolStatus {
        tool: tool.clone(),
        path,
        version,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_misses_nonsense() {
        let sh = Tool {
            program: "sh",
            version_args: &["-c", "echo sh 1.0"],
            purpose: "",
            install_hint: "",
        };
        let status = probe(&sh);
        assert!(status.found());
        assert_eq!(status.version.as_deref(), Some("sh 1.0"));
        let missing = Tool {
            program: "azlin-no-such-tool",
            ..sh
        };
        assert!(!probe(&missing).found());
    }
}
