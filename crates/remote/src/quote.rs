//! Quoting data for a POSIX shell, so that nothing sent to a remote shell is ever spliced into a
//! command line as code.

/// Quotes `value` as one single-quoted shell word: `it's` becomes `'it'\''s'`.
pub fn sh(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quotes each word and joins them with spaces: a command line that runs exactly `words`.
pub fn command<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| sh(w.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_survive_a_real_shell() {
        let nasty = "a'b\"c $(id) `id` ; rm -rf / \\ \n end";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", sh(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }

    #[test]
    fn command_quotes_every_word() {
        assert_eq!(
            command(&["git", "clone", "--", "x y"]),
            "'git' 'clone' '--' 'x y'"
        );
    }
}
