//! Environment files: what a step writes to `GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_STATE`
//! (`KEY=value` lines, or `KEY<<DELIMITER` … `DELIMITER` for multi-line values) and
//! `GITHUB_PATH` (one directory a line).

/// A malformed environment file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct FileCommandError {
    /// Which file (`GITHUB_ENV`, …).
    pub file: &'static str,
    /// What is wrong.
    pub message: String,
}

/// Parses `KEY=value` and `KEY<<DELIMITER` entries, in order.
pub fn parse_key_values(
    file: &'static str,
    content: &str,
) -> Result<Vec<(String, String)>, FileCommandError> {
    let fail = |message: String| FileCommandError { file, message };
    let mut out = Vec::new();
    let mut lines = content
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            continue;
        }
        let equals = line.find('=');
        let heredoc = line.find("<<");
        match (equals, heredoc) {
            (Some(e), h) if h.is_none_or(|h| e < h) => {
                let key = &line[..e];
                if key.is_empty() {
                    return Err(fail(format!("invalid line '{line}': the name is empty")));
                }
                out.push((key.to_string(), line[e + 1..].to_string()));
            }
            (_, Some(h)) => {
                let key = &line[..h];
                let delimiter = &line[h + 2..];
                if key.is_empty() || delimiter.is_empty() {
                    return Err(fail(format!(
                        "invalid line '{line}': expected NAME<<DELIMITER"
                    )));
                }
                let mut value: Vec<&str> = Vec::new();
                loop {
                    match lines.next() {
                        Some(l) if l == delimiter => break,
                        Some(l) => value.push(l),
                        None => {
                            return Err(fail(format!(
                                "matching delimiter '{delimiter}' not found for '{key}'"
                            )));
                        }
                    }
                }
                out.push((key.to_string(), value.join("\n")));
            }
            _ => {
                return Err(fail(format!(
                    "invalid line '{line}': expected NAME=value or NAME<<DELIMITER"
                )));
            }
        }
    }
    Ok(out)
}

/// The directories in a `GITHUB_PATH` file, in the order written.
pub fn parse_paths(content: &str) -> Vec<String> {
    content
        .lines()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_values() {
        let content = "KEY=value\nKEY=value=anothervalue\n\nKEY2<<EOF\nvalue2\nEOF\nKEY3<<ghadelimiter_b8273c6d\nline 1\r\nline 2\nghadelimiter_b8273c6d\nEMPTY=\n";
        let got = parse_key_values("GITHUB_ENV", content).unwrap();
        assert_eq!(
            got,
            [
                ("KEY".to_string(), "value".to_string()),
                ("KEY".to_string(), "value=anothervalue".to_string()),
                ("KEY2".to_string(), "value2".to_string()),
                ("KEY3".to_string(), "line 1\nline 2".to_string()),
                ("EMPTY".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn equals_before_heredoc_is_a_plain_value() {
        let got = parse_key_values("GITHUB_OUTPUT", "A=x<<y\n").unwrap();
        assert_eq!(got, [("A".to_string(), "x<<y".to_string())]);
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(parse_key_values("GITHUB_ENV", "novalue\n").is_err());
        assert!(parse_key_values("GITHUB_ENV", "=x\n").is_err());
        let e = parse_key_values("GITHUB_ENV", "K<<EOF\nno end\n").unwrap_err();
        assert!(
            e.to_string().contains("matching delimiter 'EOF' not found"),
            "{e}"
        );
    }

    #[test]
    fn paths_one_per_line() {
        assert_eq!(parse_paths("/a\n\n /b \n"), ["/a", "/b"]);
    }
}
