//! Finding the line of a key path (`jobs.build.steps[2].run`) in a workflow's text, for errors
//! found after parsing (an unknown `needs` target, a cycle, a step with neither `run` nor
//! `uses`). The YAML parser reports lines for malformed YAML and wrong shapes itself; this covers
//! what only shows once the whole file is read. It understands block-style YAML, which is how
//! workflows are written; for anything it cannot follow it returns the deepest line it found.

/// One segment of a key path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seg<'a> {
    /// A mapping key.
    Key(&'a str),
    /// A sequence item (0-based).
    Item(usize),
}

#[derive(Debug)]
struct Entry {
    line: usize,
    indent: usize,
    key: Option<String>,
    item: bool,
}

fn key_of(text: &str) -> Option<String> {
    let (name, rest) = if let Some(q) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let end = text[1..].find(q)? + 1;
        (&text[1..end], &text[end + 1..])
    } else {
        let colon = text.find(':')?;
        (&text[..colon], &text[colon..])
    };
    let rest = rest.trim_start();
    let after = rest.strip_prefix(':')?;
    (after.is_empty() || after.starts_with([' ', '\t'])).then(|| name.trim().to_string())
}

fn entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let mut indent = raw.len() - trimmed.len();
        let mut rest = trimmed;
        while let Some(after) = rest
            .strip_prefix("- ")
            .or_else(|| (rest == "-").then_some(""))
        {
            out.push(Entry {
                line: n + 1,
                indent,
                key: None,
                item: true,
            });
            let stripped = after.trim_start();
            indent += rest.len() - stripped.len();
            rest = stripped;
            if rest.is_empty() {
                break;
            }
        }
        if !rest.is_empty() {
            out.push(Entry {
                line: n + 1,
                indent,
                key: key_of(rest),
                item: false,
            });
        }
    }
    out
}

/// The 1-based line of `path` in `text`, or of the deepest part of it that was found.
pub fn line_of(text: &str, path: &[Seg<'_>]) -> Option<usize> {
    let all = entries(text);
    let (mut lo, mut hi) = (0, all.len());
    let mut found = None;
    for seg in path {
        let level = all[lo..hi].iter().map(|e| e.indent).min()?;
        let at_level = (lo..hi).filter(|&i| all[i].indent == level);
        let hit = match seg {
            Seg::Key(k) => at_level
                .into_iter()
                .find(|&i| all[i].key.as_deref() == Some(*k)),
            Seg::Item(n) => at_level.into_iter().filter(|&i| all[i].item).nth(*n),
        };
        let Some(i) = hit else {
            return found;
        };
        found = Some(all[i].line);
        // A key's block sequence may sit at the key's own indentation.
        let end = (i + 1..hi)
            .find(|&j| {
                all[j].indent < all[i].indent
                    || (all[j].indent == all[i].indent && (all[i].item || !all[j].item))
            })
            .unwrap_or(hi);
        (lo, hi) = (i + 1, end);
        if lo >= hi {
            break;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    needs: [a]
    steps:
      - run: echo 1
      # a comment
      - name: two
        run: |
          echo 2
  test:
    needs:
      - build
    steps:
    - uses: actions/checkout@v4
    - 'run': x
";

    #[test]
    fn finds_keys_and_items() {
        use Seg::*;
        assert_eq!(line_of(TEXT, &[Key("jobs")]), Some(2));
        assert_eq!(line_of(TEXT, &[Key("jobs"), Key("build")]), Some(3));
        assert_eq!(
            line_of(TEXT, &[Key("jobs"), Key("build"), Key("needs")]),
            Some(5)
        );
        assert_eq!(
            line_of(TEXT, &[Key("jobs"), Key("build"), Key("steps"), Item(1)]),
            Some(9)
        );
        assert_eq!(
            line_of(
                TEXT,
                &[Key("jobs"), Key("build"), Key("steps"), Item(1), Key("run")]
            ),
            Some(10)
        );
        assert_eq!(
            line_of(TEXT, &[Key("jobs"), Key("test"), Key("needs")]),
            Some(13)
        );
        assert_eq!(
            line_of(
                TEXT,
                &[Key("jobs"), Key("test"), Key("steps"), Item(1), Key("run")]
            ),
            Some(17)
        );
        // Not found: the deepest line that was.
        assert_eq!(
            line_of(TEXT, &[Key("jobs"), Key("test"), Key("nope")]),
            Some(12)
        );
        assert_eq!(line_of(TEXT, &[Key("nope")]), None);
    }
}
