//! `.env` files (`--env-file`, `--secret-file`), read as act reads them with
//! [godotenv](https://github.com/joho/godotenv): `KEY=value`, `export KEY=value` or `KEY: value`;
//! `#` comments; single quotes literal; double quotes with `\n`-style escapes, spanning lines;
//! `$VAR` and `${VAR}` expanded from earlier keys of the same file (not in single quotes).

/// A line of a `.env` file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    /// The line (from 1) where the bad entry starts.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// The entries of `text` in file order (a later entry of the same key repeats it).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let mut reader = Reader {
        rest: text,
        line: 1,
    };
    while let Some((line, statement)) = reader.next_statement() {
        let fail = |message: String| DotenvError { line, message };
        let statement = statement
            .strip_prefix("export")
            .filter(|s| s.starts_with([' ', '\t']))
            .map_or(statement, str::trim_start);
        let first_line = statement.split('\n').next().unwrap_or_default();
        let Some(split) = first_line.find(['=', ':']) else {
            return Err(fail(format!("'{}' is not KEY=value", first_line.trim())));
        };
        let key = statement[..split].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(fail(format!("invalid variable name '{key}'")));
        }
        let after = statement[split + 1..].trim_start_matches([' ', '\t']);
        reader.rest = after;
        let value = match after.chars().next() {
            Some(quote @ ('\'' | '"')) => reader.quoted(quote, &entries).map_err(fail)?,
            _ => reader.unquoted(&entries),
        };
        entries.push((key.to_string(), value));
    }
    Ok(entries)
}

/// The text not read yet and the line it starts on.
struct Reader<'a> {
    rest: &'a str,
    line: usize,
}

impl<'a> Reader<'a> {
    /// Skips blank and comment lines; the next statement and its line.
    fn next_statement(&mut self) -> Option<(usize, &'a str)> {
        loop {
            let trimmed = self.rest.trim_start_matches([' ', '\t', '\r']);
            if trimmed.is_empty() {
                return None;
            }
            if trimmed.starts_with('\n') || trimmed.starts_with('#') {
                let end = trimmed.find('\n').map_or(trimmed.len(), |i| i + 1);
                self.advance(&trimmed[end..]);
                continue;
            }
            self.rest = trimmed;
            return Some((self.line, trimmed));
        }
    }

    /// Moves to `rest`, a suffix of the text not read yet, counting the lines passed.
    fn advance(&mut self, rest: &'a str) {
        let passed = &self.rest[..self.rest.len() - rest.len()];
        self.line += passed.matches('\n').count();
        self.rest = rest;
    }

    /// An unquoted value: to the end of the line or a ` #` comment, trimmed, expanded.
    fn unquoted(&mut self, earlier: &[(String, String)]) -> String {
        let end = self.rest.find('\n').unwrap_or(self.rest.len());
        let line = &self.rest[..end];
        let value = line
            .char_indices()
            .find(|&(i, c)| c == '#' && i > 0 && line[..i].ends_with([' ', '\t']))
            .map_or(line, |(i, _)| &line[..i]);
        let value = expand(value.trim(), earlier);
        self.advance(&self.rest[end..]);
        value
    }

    /// A quoted value starting at the quote (it may span lines); what follows the closing
    /// quote on its line must be blank or a comment.
    fn quoted(&mut self, quote: char, earlier: &[(String, String)]) -> Result<String, String> {
        let body = &self.rest[1..];
        let mut close = None;
        let mut escaped = false;
        for (i, c) in body.char_indices() {
            match c {
                '\\' if quote == '"' && !escaped => escaped = true,
                c if c == quote && !escaped => {
                    close = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let Some(close) = close else {
            return Err(format!("unterminated quoted value (no closing {quote})"));
        };
        let inner = &body[..close];
        let value = if quote == '"' {
            expand(&unescape(inner), earlier)
        } else {
            inner.to_string()
        };
        let after = &body[close + 1..];
        let end = after.find('\n').unwrap_or(after.len());
        let trailing = after[..end].trim();
        if !trailing.is_empty() && !trailing.starts_with('#') {
            return Err(format!("unexpected '{trailing}' after the quoted value"));
        }
        self.advance(&after[end..]);
        Ok(value)
    }
}

/// `\n`, `\r`, `\t` and `\X` (X itself) inside double quotes. A `\$` stays escaped for
/// [`expand`], which makes it a literal `$`.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('$') => out.push_str("\\$"),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// Replaces `$VAR` and `${VAR}` with the latest earlier value of `VAR` (empty when there is
/// none); `\$` is a literal `$`.
fn expand(text: &str, earlier: &[(String, String)]) -> String {
    let lookup = |name: &str| {
        earlier
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(['$', '\\']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("\\$") {
            out.push('$');
            rest = after;
        } else if let Some(braced) = tail.strip_prefix("${")
            && let Some(end) = braced.find('}')
        {
            out.push_str(lookup(&braced[..end]));
            rest = &braced[end + 1..];
        } else if let Some(named) = tail.strip_prefix('$')
            && named.starts_with(is_name)
        {
            let end = named.find(|c| !is_name(c)).unwrap_or(named.len());
            out.push_str(lookup(&named[..end]));
            rest = &named[end..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn one(text: &str) -> String {
        let mut entries = pairs(text);
        assert_eq!(entries.len(), 1, "{entries:?}");
        entries.remove(0).1
    }

    fn kv(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn plain_export_and_yaml_forms() {
        assert_eq!(
            pairs("A=1\nexport B=2\nC: 3\nexported=4\n"),
            vec![
                kv("A", "1"),
                kv("B", "2"),
                kv("C", "3"),
                kv("exported", "4")
            ]
        );
        assert_eq!(
            one("URL=http://example.com:8080/x"),
            "http://example.com:8080/x"
        );
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let text = "# a comment\n\n  A = spaced value  \n\t# indented comment\nB=x # note\nC=a#b\nD=\nE=#kept\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("A", "spaced value"),
                kv("B", "x"),
                kv("C", "a#b"),
                kv("D", ""),
                kv("E", "#kept")
            ]
        );
        assert_eq!(one("A=1\r\n"), "1");
    }

    #[test]
    fn single_quotes_are_literal() {
        assert_eq!(one(r"A='a \n $B #c'"), r"a \n $B #c");
        assert_eq!(one("A='x' # comment"), "x");
    }

    #[test]
    fn double_quotes_unescape() {
        assert_eq!(
            one(r#"A="a\nb \"q\" c\\d # not a comment""#),
            "a\nb \"q\" c\\d # not a comment"
        );
    }

    #[test]
    fn a_quoted_value_may_span_lines() {
        let text = "KEY=\"-----BEGIN-----\nline two\n-----END-----\"\nNEXT='one\ntwo'\nLAST=3\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("KEY", "-----BEGIN-----\nline two\n-----END-----"),
                kv("NEXT", "one\ntwo"),
                kv("LAST", "3"),
            ]
        );
    }

    #[test]
    fn variables_expand_from_earlier_keys() {
        let text = "A=one\nB=${A}-$A\nC=\"$B and \\$A\"\nD='$A'\nE=$MISSING.$\nA=two\nF=$A\n";
        assert_eq!(
            pairs(text),
            vec![
                kv("A", "one"),
                kv("B", "one-one"),
                kv("C", "one-one and $A"),
                kv("D", "$A"),
                kv("E", ".$"),
                kv("A", "two"),
                kv("F", "two"),
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let err = parse("A=1\n\nB=\"open\nstill open\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("unterminated"), "{err}");
        assert_eq!(parse("A=1\nnot a pair\n").unwrap_err().line, 2);
        assert_eq!(parse("=1").unwrap_err().line, 1);
        assert_eq!(parse("A B=1").unwrap_err().line, 1);
        let err = parse("A=\"x\" y\n").unwrap_err();
        assert!(err.message.contains("after the quoted value"), "{err}");
        let err = parse("A=\"a\nb\"\nC\n").unwrap_err();
        assert_eq!(err.line, 3, "{err}");
    }
}
