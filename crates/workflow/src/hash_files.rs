//! `hashFiles(patterns…)`, computed over the job's workspace on the VM, as GitHub computes it on
//! the runner: it sees what `actions/checkout` copied there (wherever `path:` put it) and what
//! earlier steps created or changed, and nothing when nothing was checked out.
//!
//! Expressions are evaluated synchronously, so a step's `hashFiles` calls are found before its
//! fields are evaluated and answered from the VM first: one round trip lists the workspace's
//! files, and one more hashes those the patterns select (`sha256sum`). Both are kept for the rest
//! of the step's evaluation, and start afresh at the next step, whose files may differ.
//!
//! As on GitHub, `hashFiles` is available in a step's fields only; job-level fields are evaluated
//! before there is a workspace.

use crate::session::Session;
use azlin_remote::OutputStream;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// How long listing or hashing the workspace may take (GitHub's `hashFiles` gives up after
/// 120 seconds too).
const TIMEOUT: Duration = Duration::from_secs(120);

/// Lists the workspace's files (`$1`), NUL-separated, without `.git`; nothing when the workspace
/// does not exist yet.
const LIST: &str = "cd \"$1\" 2>/dev/null || exit 0\nfind . -name .git -prune -o -type f -print0";

/// Hashes the NUL-separated files on standard input, relative to the workspace (`$1`).
const HASH: &str = "cd \"$1\" && xargs -0 -r sha256sum --";

/// Why `hashFiles` is refused outside a step's fields.
pub(crate) const ONLY_IN_STEPS: &str = "hashFiles is only available in a step's fields (jobs.<job_id>.steps), where the job's workspace exists";

/// A file's SHA-256.
type Digest32 = [u8; 32];

/// The `hashFiles` results of one step, computed on its VM.
#[derive(Debug, Default)]
pub(crate) struct WorkspaceHashes {
    /// The workspace's files, once listed.
    files: Option<Vec<String>>,
    /// Each file's SHA-256, once hashed.
    digests: HashMap<String, Digest32>,
    /// Each pattern list's result.
    results: HashMap<Vec<String>, String>,
}

impl WorkspaceHashes {
    /// Computes, on `session`'s VM, the result of `hashFiles` for each of `calls` (pattern
    /// lists) not computed yet, over the files under `workspace`.
    pub async fn compute(
        &mut self,
        session: &Session,
        workspace: &str,
        calls: Vec<Vec<String>>,
    ) -> Result<(), String> {
        let mut missing: Vec<Vec<String>> = Vec::new();
        for patterns in calls {
            if !self.results.contains_key(&patterns) && !missing.contains(&patterns) {
                missing.push(patterns);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        if self.files.is_none() {
            let listing = remote(session, LIST, workspace, &[], "list").await?;
            self.files = Some(parse_listing(&listing));
        }
        let files = self.files.as_deref().unwrap_or_default();
        let selections: Vec<Vec<String>> = missing.iter().map(|p| select(p, files)).collect();
        let mut seen = HashSet::new();
        let unhashed: Vec<&str> = selections
            .iter()
            .flatten()
            .map(String::as_str)
            .filter(|f| !self.digests.contains_key(*f) && seen.insert(*f))
            .collect();
        if !unhashed.is_empty() {
            let input: Vec<u8> = unhashed
                .iter()
                .flat_map(|f| [f.as_bytes(), b"\0"].concat())
                .collect();
            let output = remote(session, HASH, workspace, &input, "hash").await?;
            let digests = parse_digests(&String::from_utf8_lossy(&output), unhashed.len())?;
            for (file, digest) in unhashed.iter().zip(digests) {
                self.digests.insert((*file).to_string(), digest);
            }
        }
        for (patterns, selected) in missing.into_iter().zip(selections) {
            let digests = selected.iter().filter_map(|f| self.digests.get(f));
            self.results.insert(patterns, combine(digests));
        }
        Ok(())
    }

    /// The result of `hashFiles(patterns…)`, once computed.
    pub fn get(&self, patterns: &[String]) -> Result<String, String> {
        self.results.get(patterns).cloned().ok_or_else(|| {
            format!(
                "hashFiles('{}') was not computed before the step's fields were evaluated",
                patterns.join("', '")
            )
        })
    }
}

/// Runs `script` on the VM with the workspace as `$1` and `input` on standard input; its
/// standard output, or why it failed (`what` names the stage in messages).
async fn remote(
    session: &Session,
    script: &str,
    workspace: &str,
    input: &[u8],
    what: &str,
) -> Result<Vec<u8>, String> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut sink = |stream, bytes: &[u8]| match stream {
        OutputStream::Stdout => out.extend_from_slice(bytes),
        OutputStream::Stderr => err.extend_from_slice(bytes),
    };
    let args = [workspace];
    let run = session.run_with_input(script, &args, input, &mut sink);
    let code = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "hashFiles couldn't {what} the files of {workspace} within {} seconds",
                TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("hashFiles couldn't {what} the files of {workspace}: {e}"))?;
    if code != 0 {
        return Err(format!(
            "hashFiles couldn't {what} the files of {workspace} (exit code {code}): {}",
            String::from_utf8_lossy(&err).trim()
        ));
    }
    Ok(out)
}

/// The paths in `find -print0` output, without their leading `./`.
fn parse_listing(output: &[u8]) -> Vec<String> {
    output
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let p = String::from_utf8_lossy(p);
            p.strip_prefix("./").unwrap_or(&p).to_string()
        })
        .collect()
}

/// The digests in `sha256sum` output, one a line in input order (a line starts with `\` when
/// the name needed escaping); `expected` of them.
fn parse_digests(output: &str, expected: usize) -> Result<Vec<Digest32>, String> {
    let digests = output
        .lines()
        .map(|line| {
            let hex = line.strip_prefix('\\').unwrap_or(line).get(..64);
            hex.and_then(decode_hex)
                .ok_or_else(|| format!("hashFiles: unexpected sha256sum output: {line}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if digests.len() != expected {
        return Err(format!(
            "hashFiles: sha256sum hashed {} files, not {expected}",
            digests.len()
        ));
    }
    Ok(digests)
}

fn decode_hex(hex: &str) -> Option<Digest32> {
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(digest)
}

/// The files among `files` that `patterns` select, sorted: patterns are relative to the
/// workspace and may hold several lines; `**` matches any number of folders, `*` and `?` work
/// within a name, and a pattern starting with `!` excludes what it matches (later patterns win).
fn select(patterns: &[String], files: &[String]) -> Vec<String> {
    let patterns: Vec<&str> = patterns
        .iter()
        .flat_map(|p| p.lines())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut selected: Vec<String> = files
        .iter()
        .filter(|file| {
            let mut included = false;
            for p in &patterns {
                match p.strip_prefix('!') {
                    Some(neg) => included &= !glob_match(neg.trim_start_matches("./"), file),
                    None => included |= glob_match(p.trim_start_matches("./"), file),
                }
            }
            included
        })
        .cloned()
        .collect();
    selected.sort();
    selected
}

/// The SHA-256 of the files' digests in order, as hex; `''` when there are none.
fn combine<'d>(digests: impl Iterator<Item = &'d Digest32>) -> String {
    let mut outer = Sha256::new();
    let mut any = false;
    for digest in digests {
        outer.update(digest);
        any = true;
    }
    if !any {
        return String::new();
    }
    outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Matches a `/`-separated path against a glob with `**`, `*` and `?`.
fn glob_match(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
    let segs: Vec<&str> = path.split('/').collect();
    match_segments(&pat, &segs)
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|i| match_segments(rest, &segs[i..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, srest)) => {
                match_name(p.as_bytes(), s.as_bytes()) && match_segments(rest, srest)
            }
            None => false,
        },
    }
}

fn match_name(p: &[u8], s: &[u8]) -> bool {
    match p.split_first() {
        None => s.is_empty(),
        Some((b'*', rest)) => (0..=s.len()).any(|i| match_name(rest, &s[i..])),
        Some((b'?', rest)) => !s.is_empty() && match_name(rest, &s[1..]),
        Some((c, rest)) => s.first() == Some(c) && match_name(rest, &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn globs() {
        assert!(glob_match("**/package-lock.json", "package-lock.json"));
        assert!(glob_match("**/package-lock.json", "a/b/package-lock.json"));
        assert!(glob_match("src/*.rs", "src/lib.rs"));
        assert!(!glob_match("src/*.rs", "src/a/lib.rs"));
        assert!(glob_match("src/**/*.rs", "src/a/b/lib.rs"));
        assert!(glob_match("?.txt", "a.txt"));
        assert!(!glob_match("?.txt", "ab.txt"));
    }

    #[test]
    fn patterns_select_sorted_files_with_exclusions() {
        let files = strings(&["z.lock", "a/x.lock", "a/keep/y.lock", "b.txt"]);
        assert_eq!(
            select(&strings(&["**/*.lock"]), &files),
            ["a/keep/y.lock", "a/x.lock", "z.lock"]
        );
        assert_eq!(
            select(&strings(&["**/*.lock", "!a/**", "a/keep/*"]), &files),
            ["a/keep/y.lock", "z.lock"]
        );
        assert_eq!(
            select(&strings(&["./b.txt\n  z.lock  "]), &files),
            ["b.txt", "z.lock"]
        );
        assert!(select(&strings(&["*.none"]), &files).is_empty());
    }

    #[test]
    fn the_result_hashes_the_file_digests_in_order() {
        let (a, b): (Digest32, Digest32) =
            (Sha256::digest(b"1").into(), Sha256::digest(b"2").into());
        let mut outer = Sha256::new();
        outer.update(a);
        outer.update(b);
        let expected: String = outer
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(combine([a, b].iter()), expected);
        assert_ne!(combine([b, a].iter()), expected);
        assert_eq!(combine([].iter()), "");
    }

    #[test]
    fn remote_output_parses() {
        assert_eq!(parse_listing(b"./a/b.txt\0./c\0"), ["a/b.txt", "c"]);
        assert!(parse_listing(b"").is_empty());
        let one = "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b";
        let out = format!("{one}  a.txt\n\\{one}  we\\\\ird\n");
        let digests = parse_digests(&out, 2).unwrap();
        assert_eq!(digests[0], <Digest32>::from(Sha256::digest(b"1")));
        assert_eq!(digests[0], digests[1]);
        assert!(
            parse_digests(&out, 3)
                .unwrap_err()
                .contains("hashed 2 files, not 3")
        );
        assert!(parse_digests("nonsense  x\n", 1).is_err());
    }

    #[test]
    fn only_computed_results_are_answered() {
        let hashes = WorkspaceHashes::default();
        let err = hashes.get(&strings(&["a", "b"])).unwrap_err();
        assert!(err.contains("hashFiles('a', 'b')"), "{err}");
    }
}
