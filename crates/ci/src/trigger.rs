//! Which workflows an event runs, by GitHub's documented rules ("Workflow syntax for GitHub
//! Actions": `on.<push|pull_request>.<branches|tags|paths>` and their `-ignore` forms, `types`,
//! and the filter pattern cheat sheet).
//!
//! - The event must be in `on`. A ping runs nothing.
//! - `push`: `branches`/`branches-ignore` filter branch names (without `refs/heads/`),
//!   `tags`/`tags-ignore` tag names. With only branch filters a tag push does not run, and the
//!   other way round; with neither, both run. Path filters are not evaluated for tag pushes.
//!   A push that deletes its ref runs nothing (GitHub sends a `delete` event for that, and
//!   there is no commit to check out).
//! - `pull_request`: `types` (by default `opened`, `synchronize`, `reopened`) hold the
//!   activity; `branches`/`branches-ignore` filter the base branch.
//! - `paths` runs when at least one changed file is selected, `paths-ignore` unless every
//!   changed file is ignored (so a change of no files runs neither). When the changed files
//!   are unknown or incomplete ([`Event::changed_files`] is `None`), path filters pass, as
//!   GitHub runs the workflow when it cannot diff. GitHub's cut at 300 files of its own diff is
//!   not copied: every file given is looked at.
//! - A filter and its `-ignore` form cannot both be given. Within a list, patterns apply in
//!   order and the last one that matches decides: a `!pattern` excludes, a later positive
//!   pattern includes again. In an `-ignore` list a `!pattern` therefore un-ignores. A
//!   selecting list (`branches`, `tags`, `paths`) without a positive pattern selects nothing.
//! - A push whose head commit message holds `[skip ci]`, `[ci skip]`, `[no ci]`,
//!   `[skip actions]` or `[actions skip]`, or ends with a `skip-checks: true` trailer, runs
//!   nothing. A pull request's head commit message is not in its payload: the service can ask
//!   [`skip_marker`] itself.
//! - `workflow_dispatch` runs the workflow it names, if that workflow declares the event.
//!
//! Patterns come from repositories azlin does not control, so [`Pattern`] matching runs in
//! time proportional to pattern length times subject length, whatever the pattern.

use crate::event::{Dispatch, Event, PullRequest, Push};
use azlin_workflow::expression::{Object, Value};
use azlin_workflow::model::Workflow;
use std::path::{Path, PathBuf};

/// Whether a workflow runs for an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It runs.
    Run,
    /// It does not, and why (for logs).
    Skip(String),
}

impl Decision {
    /// Whether the workflow runs.
    pub fn runs(&self) -> bool {
        matches!(self, Decision::Run)
    }
}

/// The activity types a `pull_request` workflow runs for when it gives no `types`.
pub const DEFAULT_PULL_REQUEST_TYPES: [&str; 3] = ["opened", "synchronize", "reopened"];

/// The commit message markers that skip `push` and `pull_request` workflows.
pub const SKIP_MARKERS: [&str; 5] = [
    "[skip ci]",
    "[ci skip]",
    "[no ci]",
    "[skip actions]",
    "[actions skip]",
];

/// A workflow's `on:` filters that GitHub would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TriggerError {
    /// A filter and its `-ignore` form given together.
    #[error("{}: on.{event}: `{key}` and `{key}-ignore` cannot both be given", file.display())]
    Conflict {
        /// The workflow file.
        file: PathBuf,
        /// The event (`push`, `pull_request`).
        event: String,
        /// The filter (`branches`, `tags`, `paths`).
        key: &'static str,
    },
    /// A pattern that cannot be read.
    #[error("{}: {at}: {error}", file.display())]
    Pattern {
        /// The workflow file.
        file: PathBuf,
        /// Where, e.g. `on.push.branches`.
        at: String,
        /// What is wrong with the pattern.
        error: PatternError,
    },
    /// A setting of the wrong shape, or a key the event does not have.
    #[error("{}: {at}: {message}", file.display())]
    Invalid {
        /// The workflow file.
        file: PathBuf,
        /// Where, e.g. `on.pull_request.types`.
        at: String,
        /// What was expected.
        message: String,
    },
}

/// A filter pattern that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern '{pattern}': {reason} (at character {position})")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// 1-based position of the offending character in the pattern.
    pub position: usize,
    /// What is wrong.
    pub reason: &'static str,
}

/// Whether `workflow` runs for `event` (a convenience over [`Triggers`]).
pub fn decide(workflow: &Workflow, event: &Event) -> Result<Decision, TriggerError> {
    Ok(Triggers::from_workflow(workflow)?.decide(event))
}

/// The skip marker a commit message holds, if any: one of [`SKIP_MARKERS`], or a last line
/// `skip-checks:true` / `skip-checks: true` after the subject (a trailer). Matched as GitHub
/// documents them, case included.
pub fn skip_marker(message: &str) -> Option<&'static str> {
    if let Some(marker) = SKIP_MARKERS.into_iter().find(|m| message.contains(m)) {
        return Some(marker);
    }
    let mut lines = message.lines().map(str::trim).filter(|l| !l.is_empty());
    let last = lines.next_back()?;
    let has_subject = lines.next().is_some();
    match last {
        "skip-checks:true" | "skip-checks: true" if has_subject => Some("skip-checks: true"),
        _ => None,
    }
}

/// A workflow's triggers with its filters read and checked once, ready to decide for any event.
#[derive(Debug, Clone)]
pub struct Triggers {
    file: PathBuf,
    events: Vec<String>,
    push: Option<PushFilters>,
    pull_request: Option<PullRequestFilters>,
    dispatch: bool,
}

#[derive(Debug, Clone)]
struct PushFilters {
    branches: Option<Filter>,
    tags: Option<Filter>,
    paths: Option<Filter>,
}

#[derive(Debug, Clone)]
struct PullRequestFilters {
    /// `None`: the default types.
    types: Option<Vec<String>>,
    branches: Option<Filter>,
    paths: Option<Filter>,
}

impl Triggers {
    /// Reads `on:` of `workflow`: the events, and the filters of `push` and `pull_request`
    /// (refused when GitHub would refuse them, whichever event is asked about later).
    pub fn from_workflow(workflow: &Workflow) -> Result<Triggers, TriggerError> {
        let reader = Reader {
            file: &workflow.path,
        };
        let on = |event: &str| workflow.triggered_by(event);
        let push = if on("push") {
            let s = reader.settings(workflow, "push", PUSH_KEYS)?;
            Some(PushFilters {
                branches: reader.filter(s, "push", "branches")?,
                tags: reader.filter(s, "push", "tags")?,
                paths: reader.filter(s, "push", "paths")?,
            })
        } else {
            None
        };
        let pull_request = if on("pull_request") {
            let s = reader.settings(workflow, "pull_request", PULL_REQUEST_KEYS)?;
            Some(PullRequestFilters {
                types: match s.and_then(|s| exact(s, "types")) {
                    Some(v) => Some(reader.strings("on.pull_request.types", v)?),
                    None => None,
                },
                branches: reader.filter(s, "pull_request", "branches")?,
                paths: reader.filter(s, "pull_request", "paths")?,
            })
        } else {
            None
        };
        Ok(Triggers {
            file: workflow.path.clone(),
            events: workflow.events.clone(),
            push,
            pull_request,
            dispatch: on("workflow_dispatch"),
        })
    }

    /// Whether the workflow runs for `event`.
    pub fn decide(&self, event: &Event) -> Decision {
        match event {
            Event::Push(push) => match &self.push {
                Some(filters) => filters.decide(push),
                None => self.not_on("push"),
            },
            Event::PullRequest(pr) => match &self.pull_request {
                Some(filters) => filters.decide(pr),
                None => self.not_on("pull_request"),
            },
            Event::WorkflowDispatch(dispatch) => {
                if !self.dispatch {
                    self.not_on("workflow_dispatch")
                } else if dispatches(&self.file, dispatch) {
                    Decision::Run
                } else {
                    Decision::Skip(format!(
                        "the dispatch is for {}, not {}",
                        dispatch.workflow,
                        self.file.display()
                    ))
                }
            }
            Event::Ping(_) => Decision::Skip("a ping runs no workflows".to_string()),
        }
    }

    /// Whether deciding for `event` looks at changed files (a `paths`/`paths-ignore` filter
    /// applies to it), so the service knows when computing a diff is worth it.
    pub fn filters_paths(&self, event: &Event) -> bool {
        match event {
            Event::Push(push) => self
                .push
                .as_ref()
                .is_some_and(|f| f.paths.is_some() && !push.deleted && push.tag().is_none()),
            Event::PullRequest(_) => self
                .pull_request
                .as_ref()
                .is_some_and(|f| f.paths.is_some()),
            _ => false,
        }
    }

    fn not_on(&self, event: &str) -> Decision {
        Decision::Skip(format!(
            "the workflow does not run on {event} (on: {})",
            self.events.join(", ")
        ))
    }
}

/// Whether `dispatch` names the workflow at `file`. `file` may be absolute (a checkout's
/// path): the dispatch's repository-relative path is compared with its last components.
fn dispatches(file: &Path, dispatch: &Dispatch) -> bool {
    let named = Path::new(&dispatch.workflow);
    named.components().next().is_some() && file.ends_with(named)
}

impl PushFilters {
    fn decide(&self, push: &Push) -> Decision {
        if push.deleted {
            return Decision::Skip(format!(
                "the push deletes {}: a deletion runs no push workflows",
                push.git_ref
            ));
        }
        if let Some(marker) = push.head_commit_message.as_deref().and_then(skip_marker) {
            return Decision::Skip(format!("the head commit's message says `{marker}`"));
        }
        if let Some(name) = push.branch() {
            let refused = refuse_ref(self.branches.as_ref(), self.tags.as_ref(), "branch", name);
            if let Some(reason) = refused {
                return Decision::Skip(reason);
            }
        } else if let Some(name) = push.tag() {
            let refused = refuse_ref(self.tags.as_ref(), self.branches.as_ref(), "tag", name);
            // GitHub does not evaluate path filters for pushes of tags.
            return refused.map_or(Decision::Run, Decision::Skip);
        } else if self.branches.is_some() || self.tags.is_some() {
            return Decision::Skip(format!(
                "{} is neither a branch nor a tag, and the workflow filters them",
                push.git_ref
            ));
        }
        match &self.paths {
            Some(filter) => filter.decide_files(push.known_changed_files()),
            None => Decision::Run,
        }
    }
}

/// Why a push of the `what` (branch or tag) `name` does not run: refused by its own filter
/// `own`, or pushed when only the `other` kind of ref is filtered.
fn refuse_ref(
    own: Option<&Filter>,
    other: Option<&Filter>,
    what: &str,
    name: &str,
) -> Option<String> {
    match (own, other) {
        (Some(filter), _) => filter.refuses(what, name),
        (None, Some(other)) => Some(format!(
            "{what} '{name}' is pushed and the workflow filters only {}",
            other.at
        )),
        (None, None) => None,
    }
}

impl PullRequestFilters {
    fn decide(&self, pr: &PullRequest) -> Decision {
        let selected = match &self.types {
            Some(types) => types.contains(&pr.action),
            None => DEFAULT_PULL_REQUEST_TYPES.contains(&pr.action.as_str()),
        };
        if !selected {
            let listed = match &self.types {
                Some(types) => format!("on.pull_request.types: {}", types.join(", ")),
                None => format!("by default {}", DEFAULT_PULL_REQUEST_TYPES.join(", ")),
            };
            return Decision::Skip(format!(
                "pull request activity '{}' is not one the workflow runs for ({listed})",
                pr.action
            ));
        }
        if let Some(reason) = self
            .branches
            .as_ref()
            .and_then(|f| f.refuses("base branch", &pr.base_ref))
        {
            return Decision::Skip(reason);
        }
        match &self.paths {
            Some(filter) => filter.decide_files(pr.changed_files.as_deref()),
            None => Decision::Run,
        }
    }
}

/// One filter: `branches`, `tags` or `paths`, or its `-ignore` form.
#[derive(Debug, Clone)]
struct Filter {
    /// Where it is written, e.g. `on.push.branches-ignore`.
    at: String,
    /// The `-ignore` form.
    ignore: bool,
    patterns: PatternList,
}

impl Filter {
    /// Whether `name` gets through: selected by a selecting list, not ignored by an ignore list.
    fn admits(&self, name: &str) -> bool {
        self.patterns.selects(name) != self.ignore
    }

    /// Why the `what` (branch, tag) `name` is refused, if it is.
    fn refuses(&self, what: &str, name: &str) -> Option<String> {
        if self.admits(name) {
            None
        } else if self.ignore {
            Some(format!("{what} '{name}' is ignored by {}", self.at))
        } else if !self.patterns.has_positive() {
            Some(format!(
                "{} has no pattern without `!`, so it selects nothing",
                self.at
            ))
        } else {
            Some(format!("{what} '{name}' is not selected by {}", self.at))
        }
    }

    /// Runs when one of `files` gets through; unknown files (`None`) count as getting through.
    fn decide_files(&self, files: Option<&[String]>) -> Decision {
        let Some(files) = files else {
            tracing::debug!(filter = %self.at, "changed files unknown: the path filter passes");
            return Decision::Run;
        };
        if files.iter().any(|f| self.admits(f)) {
            Decision::Run
        } else if files.is_empty() {
            Decision::Skip(format!("no file changed, so {} matches nothing", self.at))
        } else if self.ignore {
            Decision::Skip(format!(
                "every changed file ({}) is ignored by {}",
                files.len(),
                self.at
            ))
        } else if !self.patterns.has_positive() {
            Decision::Skip(format!(
                "{} has no pattern without `!`, so it selects nothing",
                self.at
            ))
        } else {
            Decision::Skip(format!(
                "none of the {} changed files is selected by {}",
                files.len(),
                self.at
            ))
        }
    }
}

const PUSH_KEYS: &[&str] = &[
    "branches",
    "branches-ignore",
    "tags",
    "tags-ignore",
    "paths",
    "paths-ignore",
];

const PULL_REQUEST_KEYS: &[&str] = &[
    "types",
    "branches",
    "branches-ignore",
    "paths",
    "paths-ignore",
];

/// The value under exactly `key`: GitHub's keys are case-sensitive, and `Object::get` falls
/// back to ignoring case.
fn exact<'o>(settings: &'o Object, key: &str) -> Option<&'o Value> {
    settings
        .iter()
        .find(|(name, _)| *name == key)
        .map(|(_, v)| v)
}

/// Reads `on.<event>` settings, naming the file and the setting in errors.
struct Reader<'a> {
    file: &'a Path,
}

impl Reader<'_> {
    fn invalid(&self, at: &str, message: impl Into<String>) -> TriggerError {
        TriggerError::Invalid {
            file: self.file.to_path_buf(),
            at: at.to_string(),
            message: message.into(),
        }
    }

    /// The mapping under `on.<event>` (`None` when the event has no settings), its keys
    /// checked against `keys`.
    fn settings<'w>(
        &self,
        workflow: &'w Workflow,
        event: &str,
        keys: &[&str],
    ) -> Result<Option<&'w Object>, TriggerError> {
        let at = format!("on.{event}");
        let settings = match workflow.event_settings.iter().find(|(e, _)| e == event) {
            None | Some((_, Value::Null)) => return Ok(None),
            Some((_, Value::Object(settings))) => settings,
            Some(_) => return Err(self.invalid(&at, "expected a mapping of filters")),
        };
        if let Some(key) = settings.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(self.invalid(
                &at,
                format!("unexpected key `{key}` (expected {})", keys.join(", ")),
            ));
        }
        Ok(Some(settings))
    }

    /// The filter `key` (or `key-ignore`) of `on.<event>`, if given.
    fn filter(
        &self,
        settings: Option<&Object>,
        event: &str,
        key: &'static str,
    ) -> Result<Option<Filter>, TriggerError> {
        let Some(settings) = settings else {
            return Ok(None);
        };
        let ignore_key = format!("{key}-ignore");
        let (ignore, value, at) = match (exact(settings, key), exact(settings, &ignore_key)) {
            (Some(_), Some(_)) => {
                return Err(TriggerError::Conflict {
                    file: self.file.to_path_buf(),
                    event: event.to_string(),
                    key,
                });
            }
            (Some(v), None) => (false, v, format!("on.{event}.{key}")),
            (None, Some(v)) => (true, v, format!("on.{event}.{ignore_key}")),
            (None, None) => return Ok(None),
        };
        let texts = self.strings(&at, value)?;
        let patterns = PatternList::parse(&texts).map_err(|error| TriggerError::Pattern {
            file: self.file.to_path_buf(),
            at: at.clone(),
            error,
        })?;
        Ok(Some(Filter {
            at,
            ignore,
            patterns,
        }))
    }

    /// A string or a list of strings. Numbers and booleans are refused rather than spelled
    /// back, since YAML has already lost how they were written (`1.10` reads as 1.1).
    fn strings(&self, at: &str, value: &Value) -> Result<Vec<String>, TriggerError> {
        let items = match value {
            Value::String(s) => return Ok(vec![s.clone()]),
            Value::Array(items) => items,
            _ => return Err(self.invalid(at, "expected a string or a list of strings")),
        };
        items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(self.invalid(
                    at,
                    format!(
                        "expected strings, found {} '{}' (quote it)",
                        other.kind(),
                        other.to_display_string()
                    ),
                )),
            })
            .collect()
    }
}

/// A list of patterns applied in order: the last pattern that matches a name decides whether
/// it is selected (a positive pattern) or not (a `!` pattern).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternList {
    patterns: Vec<Pattern>,
}

impl PatternList {
    /// Parses each pattern, in order.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<PatternList, PatternError> {
        let patterns = patterns
            .iter()
            .map(|p| Pattern::parse(p.as_ref()))
            .collect::<Result<_, _>>()?;
        Ok(PatternList { patterns })
    }

    /// Whether `name` is selected: the last pattern matching it is positive. (Patterns are
    /// tried from the last, so the first match found decides.)
    pub fn selects(&self, name: &str) -> bool {
        self.patterns
            .iter()
            .rev()
            .find(|p| p.matches(name))
            .is_some_and(|p| !p.negative)
    }

    /// Whether the list has a pattern without `!` (without one it selects nothing).
    pub fn has_positive(&self) -> bool {
        self.patterns.iter().any(|p| !p.negative)
    }
}

/// A filter pattern, following GitHub's cheat sheet:
///
/// - `*` matches zero or more characters except `/`; `**` zero or more of any character;
///   `**/` zero or more whole directories (so `**/README.md` matches `README.md` and
///   `docs/**/*.md` matches `docs/README.md`).
/// - `?` makes the character or class before it optional; `+` repeats it one or more times.
///   A `?` or `+` with no character or class before it (at the start, after a wildcard or
///   after another `?`/`+`) is refused.
/// - `[…]` matches one character listed or in a range; GitHub allows only letters, digits and
///   the ranges `a-z`, `A-Z`, `0-9` (or parts of them) inside, and so does this.
/// - `\` makes the next character literal; `!` at the very start negates the pattern.
///
/// Matching is case-sensitive, on whole names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    text: String,
    negative: bool,
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One character that `Atom` matches, repeated as `Repeat` says.
    Atom(Atom, Repeat),
    /// `*`.
    Star,
    /// `**`.
    AnyDepth,
    /// `**/`: empty, or anything ending in `/`. Always followed by [`Token::InDirectories`]:
    /// from here the pattern may skip both, or start reading directories.
    Directories,
    /// Inside `**/`, having read part of it: only a `/` can end it.
    InDirectories,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Char(char),
    /// Inclusive ranges (a single character is a range of one).
    Class(Ranges),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Once,
    /// `?`.
    Optional,
    /// `+`.
    OneOrMore,
}

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Char(a) => *a == c,
            Atom::Class(ranges) => ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi),
        }
    }
}

impl Pattern {
    /// Parses `text` (with its leading `!`, if any).
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        let fail = |position: usize, reason: &'static str| PatternError {
            pattern: text.to_string(),
            position,
            reason,
        };
        let (negative, body) = match text.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let chars: Vec<char> = body.chars().collect();
        // Positions in messages count from the start of `text`, its `!` included.
        let offset = usize::from(negative) + 1;
        if chars.is_empty() {
            return Err(fail(offset, "the pattern is empty"));
        }
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let at = i + offset;
            match chars[i] {
                '*' if chars.get(i + 1) == Some(&'*') => {
                    if chars.get(i + 2) == Some(&'/') {
                        tokens.push(Token::Directories);
                        tokens.push(Token::InDirectories);
                        i += 3;
                    } else {
                        tokens.push(Token::AnyDepth);
                        i += 2;
                    }
                }
                '*' => {
                    tokens.push(Token::Star);
                    i += 1;
                }
                q @ ('?' | '+') => {
                    let Some(Token::Atom(_, repeat @ Repeat::Once)) = tokens.last_mut() else {
                        return Err(fail(
                            at,
                            "`?` and `+` must follow a character or a `[]` class",
                        ));
                    };
                    *repeat = if q == '?' {
                        Repeat::Optional
                    } else {
                        Repeat::OneOrMore
                    };
                    i += 1;
                }
                '\\' => {
                    let Some(&c) = chars.get(i + 1) else {
                        return Err(fail(at, "`\\` at the end escapes nothing"));
                    };
                    tokens.push(Token::Atom(Atom::Char(c), Repeat::Once));
                    i += 2;
                }
                '[' => {
                    let (class, end) =
                        parse_class(&chars, i).map_err(|(j, reason)| fail(j + offset, reason))?;
                    tokens.push(Token::Atom(Atom::Class(class), Repeat::Once));
                    i = end;
                }
                c => {
                    tokens.push(Token::Atom(Atom::Char(c), Repeat::Once));
                    i += 1;
                }
            }
        }
        Ok(Pattern {
            text: text.to_string(),
            negative,
            tokens,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern starts with `!`.
    pub fn is_negative(&self) -> bool {
        self.negative
    }

    /// Whether the pattern (without its `!`) matches all of `subject`.
    ///
    /// The pattern is run as an automaton over the set of positions it can be at, one
    /// character of `subject` at a time: O(pattern × subject), never backtracking.
    pub fn matches(&self, subject: &str) -> bool {
        let n = self.tokens.len();
        let mut current = vec![false; n + 1];
        let mut next = vec![false; n + 1];
        current[0] = true;
        self.skip_empty(&mut current);
        for c in subject.chars() {
            next.fill(false);
            for (i, token) in self.tokens.iter().enumerate() {
                if !current[i] {
                    continue;
                }
                match token {
                    Token::Star => next[i] |= c != '/',
                    Token::AnyDepth => next[i] = true,
                    Token::Directories => {
                        next[i + 1] = true;
                        next[i + 2] |= c == '/';
                    }
                    Token::InDirectories => {
                        next[i] = true;
                        next[i + 1] |= c == '/';
                    }
                    Token::Atom(atom, repeat) if atom.matches(c) => {
                        next[i + 1] = true;
                        if *repeat == Repeat::OneOrMore {
                            next[i] = true;
                        }
                    }
                    Token::Atom(..) => {}
                }
            }
            self.skip_empty(&mut next);
            if !next.contains(&true) {
                return false;
            }
            std::mem::swap(&mut current, &mut next);
        }
        current[n]
    }

    /// Adds the positions reachable without reading a character. Moves only go forwards, so
    /// one pass in order reaches them all.
    fn skip_empty(&self, states: &mut [bool]) {
        for (i, token) in self.tokens.iter().enumerate() {
            if !states[i] {
                continue;
            }
            match token {
                // Skips its [`Token::InDirectories`] too.
                Token::Directories => states[i + 2] = true,
                Token::Star | Token::AnyDepth | Token::Atom(_, Repeat::Optional) => {
                    states[i + 1] = true;
                }
                Token::InDirectories | Token::Atom(_, Repeat::Once | Repeat::OneOrMore) => {}
            }
        }
    }
}

/// Inclusive character ranges of a `[]` class.
type Ranges = Vec<(char, char)>;

/// The class opening at `chars[start]` (a `[`): its ranges and the index after its `]`, or the
/// index and reason of an error.
fn parse_class(chars: &[char], start: usize) -> Result<(Ranges, usize), (usize, &'static str)> {
    let group = |c: char| {
        if c.is_ascii_lowercase() {
            Some('a')
        } else if c.is_ascii_uppercase() {
            Some('A')
        } else if c.is_ascii_digit() {
            Some('0')
        } else {
            None
        }
    };
    let mut ranges = Vec::new();
    let mut j = start + 1;
    loop {
        match chars.get(j) {
            None => return Err((start, "`[` is not closed by `]`")),
            Some(']') if ranges.is_empty() => return Err((j, "`[]` is empty")),
            Some(']') => return Ok((ranges, j + 1)),
            Some(&lo) if group(lo).is_some() => match (chars.get(j + 1), chars.get(j + 2)) {
                (Some('-'), Some(&hi)) if hi != ']' => {
                    if group(hi) != group(lo) || hi < lo {
                        return Err((j + 1, "a range must go upwards within a-z, A-Z or 0-9"));
                    }
                    ranges.push((lo, hi));
                    j += 3;
                }
                _ => {
                    ranges.push((lo, lo));
                    j += 1;
                }
            },
            Some(_) => {
                return Err((j, "`[]` may hold only letters, digits and ranges of them"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::parse(p).unwrap_or_else(|e| panic!("{e}"))
    }

    fn list(patterns: &[&str]) -> PatternList {
        PatternList::parse(patterns).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks one row of GitHub's cheat sheet: `patterns` select each of `yes` and none of `no`.
    fn row(patterns: &[&str], yes: &[&str], no: &[&str]) {
        let l = list(patterns);
        for name in yes {
            assert!(l.selects(name), "{patterns:?} should match {name:?}");
        }
        for name in no {
            assert!(!l.selects(name), "{patterns:?} should not match {name:?}");
        }
    }

    #[test]
    fn cheat_sheet_branches_and_tags() {
        row(
            &["feature/*"],
            &["feature/my-branch", "feature/your-branch"],
            &["feature/beta-a/my-branch", "feature", "features/x"],
        );
        row(
            &["feature/**"],
            &[
                "feature/beta-a/my-branch",
                "feature/your-branch",
                "feature/mona/the/octocat",
            ],
            &["feature", "main"],
        );
        row(
            &["main", "releases/mona-the-octocat"],
            &["main", "releases/mona-the-octocat"],
            &["mainline", "releases/other", "xmain"],
        );
        row(&["*"], &["main", "releases"], &["releases/10", "a/b"]);
        row(&["**"], &["all/the/branches", "every/tag", "main"], &[]);
        row(
            &["*feature"],
            &["mona-feature", "feature", "ver-10-feature"],
            &["feature-x", "a/feature"],
        );
        row(&["v2*"], &["v2", "v2.0", "v2.9"], &["v3", "v1.2", "v2/x"]);
        row(
            &["v[12].[0-9]+.[0-9]+"],
            &["v1.10.1", "v2.0.0"],
            &["v3.0.0", "v1.x.1", "v1.10", "v1..1", "v12.0.0"],
        );
    }

    #[test]
    fn cheat_sheet_file_paths() {
        row(&["*"], &["README.md", "server.rb"], &["docs/README.md"]);
        row(
            &["*.jsx?"],
            &["page.js", "page.jsx"],
            &["page.jsxx", "page.j", "src/page.js"],
        );
        row(&["**"], &["all/the/files.md", "x"], &[]);
        row(
            &["*.js"],
            &["app.js", "index.js"],
            &["src/app.js", "app.jsx"],
        );
        row(
            &["**.js"],
            &["index.js", "js/index.js", "src/js/app.js"],
            &["index.jsx", "js/index.ts"],
        );
        row(
            &["docs/*"],
            &["docs/README.md", "docs/file.txt"],
            &["docs/mona/octocat.txt", "README.md", "src/docs/a.md"],
        );
        row(
            &["docs/**"],
            &["docs/README.md", "docs/mona/octocat.txt"],
            &["src/docs/a.md", "docsx/a"],
        );
        row(
            &["docs/**/*.md"],
            &[
                "docs/README.md",
                "docs/mona/hello-world.md",
                "docs/a/markdown/file.md",
            ],
            &["docs/a/file.txt", "src/docs/a.md"],
        );
        row(
            &["**/docs/**"],
            &[
                "docs/hello.md",
                "dir/docs/my-file.txt",
                "space/docs/plan/space.doc",
            ],
            &["mydocs/a.md", "docs"],
        );
        row(
            &["**/README.md"],
            &["README.md", "js/README.md"],
            &["README.md.bak", "js/NOT-README.md"],
        );
        row(
            &["**/*src/**"],
            &["a/src/app.js", "my-src/code/js/app.js"],
            &["source/app.js", "src-old/app.js"],
        );
        row(
            &["**/*-post.md"],
            &["my-post.md", "path/their-post.md"],
            &["post.md", "path/their-post.txt"],
        );
        row(
            &["**/migrate-*.sql"],
            &[
                "migrate-10909.sql",
                "db/migrate-v1.0.sql",
                "db/sept/migrate-v1.sql",
            ],
            &["migrate.sql", "db/migrate-1.sql/x"],
        );
        row(
            &["*.md", "!README.md"],
            &["hello.md"],
            &["README.md", "docs/hello.md"],
        );
        row(
            &["*.md", "!README.md", "README*"],
            &["hello.md", "README.md", "README.doc"],
            &["docs/hello.md"],
        );
    }

    #[test]
    fn workflow_syntax_examples_of_negation() {
        // on.push.branches: ['releases/**', '!releases/**-alpha']
        row(
            &["releases/**", "!releases/**-alpha"],
            &["releases/10", "releases/beta/mona"],
            &["releases/10-alpha", "releases/beta/3-alpha", "main"],
        );
        // Only negative patterns select nothing.
        let only_negative = list(&["!main"]);
        assert!(!only_negative.has_positive());
        assert!(!only_negative.selects("main") && !only_negative.selects("dev"));
        // paths: ['sub-project/**', '!sub-project/docs/**']
        row(
            &["sub-project/**", "!sub-project/docs/**"],
            &["sub-project/src/main.rs"],
            &["sub-project/docs/readme.md", "other/x"],
        );
    }

    #[test]
    fn pattern_syntax_escapes_classes_and_quantifiers() {
        assert!(pattern("\\!file").matches("!file"));
        assert!(!pattern("\\!file").is_negative());
        assert!(pattern("escape\\\\backslash").matches("escape\\backslash"));
        assert!(pattern("a\\*b").matches("a*b") && !pattern("a\\*b").matches("axb"));
        assert!(pattern("v1\\.0").matches("v1.0"));
        assert!(!pattern(".yml").matches("fyml"), "`.` is literal");
        assert!(pattern("[CB]at").matches("Cat") && pattern("[CB]at").matches("Bat"));
        assert!(!pattern("[CB]at").matches("cat"), "case-sensitive");
        assert!(pattern("[1-2]00").matches("100") && pattern("[1-2]00").matches("200"));
        assert!(!pattern("[1-2]00").matches("300"));
        assert!(pattern("[0-9a-z]").matches("g") && !pattern("[0-9a-z]").matches("G"));
        assert!(pattern("a[bc]+d").matches("abcbd") && !pattern("a[bc]+d").matches("ad"));
        assert!(pattern("colou?r").matches("color") && pattern("colou?r").matches("colour"));
        assert!(pattern("go+al").matches("gooooal") && !pattern("go+al").matches("gal"));
        assert!(
            pattern("a!b").matches("a!b"),
            "`!` is special only at the start"
        );
        assert!(pattern("ü*").matches("über"));
        let negative = pattern("!docs/**");
        assert!(
            negative.is_negative() && negative.matches("docs/a") && negative.as_str() == "!docs/**"
        );
        assert!(pattern("**/").matches("a/b/"));
        assert!(pattern("a/**/b").matches("a/b") && pattern("a/**/b").matches("a/x/y/b"));
        assert!(!pattern("a/**/b").matches("a/xb"));
    }

    #[test]
    fn invalid_patterns_are_refused_with_the_position() {
        let cases = [
            ("", 1, "empty"),
            ("!", 2, "empty"),
            ("?abc", 1, "`?` and `+` must follow"),
            ("a*+", 3, "`?` and `+` must follow"),
            ("a?+", 3, "`?` and `+` must follow"),
            ("!+x", 2, "`?` and `+` must follow"),
            ("abc\\", 4, "escapes nothing"),
            ("a[bc", 2, "not closed"),
            ("a[]", 3, "empty"),
            ("[a-Z]", 3, "range"),
            ("[z-a]", 3, "range"),
            ("[a-9]", 3, "range"),
            ("[_x]", 2, "only letters, digits"),
            ("[^a]", 2, "only letters, digits"),
            ("[a-]", 3, "only letters, digits"),
        ];
        for (text, position, reason) in cases {
            let e = Pattern::parse(text).expect_err(text);
            assert_eq!(e.position, position, "{text}: {e}");
            assert!(e.reason.contains(reason), "{text}: {e}");
            assert_eq!(e.pattern, text);
        }
        assert_eq!(
            Pattern::parse("a[]").expect_err("empty").to_string(),
            "invalid pattern 'a[]': `[]` is empty (at character 3)"
        );
    }

    #[test]
    fn adversarial_patterns_match_in_linear_time() {
        let evil = format!("{}b", "*a".repeat(200));
        let subject = "a".repeat(20_000);
        let started = std::time::Instant::now();
        assert!(!pattern(&evil).matches(&subject));
        assert!(!pattern(&"**a".repeat(100)).matches(&"a/".repeat(5_000)));
        assert!(!pattern(&"a?".repeat(300)).matches(&"a".repeat(301)));
        assert!(pattern(&"a?".repeat(300)).matches(&"a".repeat(300)));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn skip_markers_in_commit_messages() {
        assert_eq!(skip_marker("Fix typo [skip ci]"), Some("[skip ci]"));
        assert_eq!(skip_marker("[ci skip] docs"), Some("[ci skip]"));
        assert_eq!(skip_marker("x\n\nbody [no ci]"), Some("[no ci]"));
        assert_eq!(skip_marker("[skip actions]"), Some("[skip actions]"));
        assert_eq!(skip_marker("[actions skip]"), Some("[actions skip]"));
        assert_eq!(
            skip_marker("Update docs\n\n\nskip-checks: true\n"),
            Some("skip-checks: true")
        );
        assert_eq!(
            skip_marker("Update docs\n\nskip-checks:true"),
            Some("skip-checks: true")
        );
        assert_eq!(
            skip_marker("skip-checks: true"),
            None,
            "a subject is not a trailer"
        );
        assert_eq!(
            skip_marker("Update docs\n\nskip-checks: true\nSigned-off-by: x"),
            None
        );
        assert_eq!(skip_marker("skip ci please"), None);
        assert_eq!(skip_marker("[Skip CI]"), None, "as documented, lower case");
    }

    mod workflows {
        use super::super::*;
        use crate::event::Event;

        const SHA_A: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
        const SHA_B: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
        const ZEROS: &str = "0000000000000000000000000000000000000000";

        fn workflow(on: &str) -> Workflow {
            workflow_at(".github/workflows/ci.yml", on)
        }

        fn workflow_at(path: &str, on: &str) -> Workflow {
            let text = format!(
                "name: CI\n{on}\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - run: make\n"
            );
            Workflow::parse(Path::new(path), &text).unwrap_or_else(|e| panic!("{e}"))
        }

        fn repository() -> serde_json::Value {
            serde_json::json!({"full_name": "octo/hello", "default_branch": "main"})
        }

        /// A push of `git_ref` whose one commit changes `files`.
        fn push(git_ref: &str, files: &[&str]) -> Event {
            push_with(git_ref, files, |_| {})
        }

        fn push_with(
            git_ref: &str,
            files: &[&str],
            edit: impl FnOnce(&mut serde_json::Value),
        ) -> Event {
            let commit = serde_json::json!({
                "id": SHA_B, "message": "Change things", "distinct": true,
                "added": [], "removed": [], "modified": files
            });
            let mut payload = serde_json::json!({
                "ref": git_ref, "before": SHA_A, "after": SHA_B,
                "created": false, "deleted": false, "forced": false,
                "commits": [commit.clone()], "head_commit": commit,
                "repository": repository(),
                "pusher": {"name": "mona"}, "sender": {"login": "mona"}
            });
            edit(&mut payload);
            Event::parse("push", payload.to_string().as_bytes()).expect("push parses")
        }

        fn pull_request(action: &str, base: &str, files: Option<&[&str]>) -> Event {
            let payload = serde_json::json!({
                "action": action, "number": 7,
                "pull_request": {
                    "number": 7, "draft": false, "merged": false,
                    "base": {"ref": base, "sha": SHA_A, "repo": repository()},
                    "head": {"ref": "topic", "sha": SHA_B, "repo": repository()}
                },
                "repository": repository(), "sender": {"login": "mona"}
            });
            let mut event = Event::parse("pull_request", payload.to_string().as_bytes())
                .expect("pull_request parses");
            if let Some(files) = files {
                event.set_changed_files(files.iter().map(|f| f.to_string()).collect());
            }
            event
        }

        fn dispatch(workflow: &str) -> Event {
            let payload = serde_json::json!({
                "ref": "refs/heads/main", "workflow": workflow,
                "inputs": {"level": "debug"},
                "repository": repository(), "sender": {"login": "mona"}
            });
            Event::parse("workflow_dispatch", payload.to_string().as_bytes())
                .expect("dispatch parses")
        }

        fn runs(wf: &Workflow, event: &Event) -> bool {
            decide(wf, event).unwrap_or_else(|e| panic!("{e}")).runs()
        }

        fn skip_reason(wf: &Workflow, event: &Event) -> String {
            match decide(wf, event).unwrap_or_else(|e| panic!("{e}")) {
                Decision::Skip(reason) => reason,
                Decision::Run => panic!("expected a skip for {event:?}"),
            }
        }

        fn error(on: &str) -> String {
            let wf = workflow(on);
            Triggers::from_workflow(&wf)
                .expect_err("invalid filters")
                .to_string()
        }

        #[test]
        fn the_event_must_be_in_on() {
            let wf = workflow("on: push");
            assert!(runs(&wf, &push("refs/heads/main", &["a"])));
            assert!(
                runs(&wf, &push("refs/tags/v1", &[])),
                "no filters: tags run too"
            );
            let reason = skip_reason(&wf, &pull_request("opened", "main", None));
            assert_eq!(
                reason,
                "the workflow does not run on pull_request (on: push)"
            );

            let wf = workflow("on: [push, pull_request]");
            assert!(runs(&wf, &pull_request("opened", "main", None)));
            assert!(!runs(&wf, &dispatch(".github/workflows/ci.yml")));

            let wf = workflow("on:\n  push:\n  pull_request:\n");
            assert!(runs(&wf, &push("refs/heads/dev", &[])));
            assert!(runs(&wf, &pull_request("reopened", "dev", None)));

            let ping = Event::parse("ping", br#"{"zen": "Design for failure.", "hook_id": 1}"#)
                .expect("ping parses");
            assert_eq!(skip_reason(&wf, &ping), "a ping runs no workflows");
        }

        #[test]
        fn push_branches_and_tags_as_documented() {
            let wf = workflow(
                "on:\n  push:\n    branches:\n      - main\n      - 'mona/octocat'\n      - 'releases/**'\n    tags:\n      - v2\n      - v1.*\n",
            );
            for yes in [
                "refs/heads/main",
                "refs/heads/mona/octocat",
                "refs/heads/releases/10",
                "refs/tags/v2",
                "refs/tags/v1.9.1",
            ] {
                assert!(runs(&wf, &push(yes, &["a"])), "{yes}");
            }
            for no in ["refs/heads/dev", "refs/tags/v3", "refs/tags/v2.0"] {
                assert!(!runs(&wf, &push(no, &["a"])), "{no}");
            }
            assert_eq!(
                skip_reason(&wf, &push("refs/heads/dev", &[])),
                "branch 'dev' is not selected by on.push.branches"
            );

            let wf = workflow(
                "on:\n  push:\n    branches-ignore:\n      - 'mona/octocat'\n      - 'releases/**-alpha'\n    tags-ignore:\n      - v2\n      - v1.*\n",
            );
            for no in [
                "refs/heads/mona/octocat",
                "refs/heads/releases/beta/3-alpha",
                "refs/tags/v2",
                "refs/tags/v1.9",
            ] {
                assert!(!runs(&wf, &push(no, &["a"])), "{no}");
            }
            for yes in ["refs/heads/main", "refs/heads/releases/10", "refs/tags/v3"] {
                assert!(runs(&wf, &push(yes, &["a"])), "{yes}");
            }
            assert_eq!(
                skip_reason(&wf, &push("refs/heads/mona/octocat", &[])),
                "branch 'mona/octocat' is ignored by on.push.branches-ignore"
            );

            let wf = workflow(
                "on:\n  push:\n    branches:\n      - 'releases/**'\n      - '!releases/**-alpha'\n",
            );
            assert!(runs(&wf, &push("refs/heads/releases/10", &["a"])));
            assert!(runs(&wf, &push("refs/heads/releases/beta/mona", &["a"])));
            assert!(!runs(&wf, &push("refs/heads/releases/10-alpha", &["a"])));
            assert!(!runs(
                &wf,
                &push("refs/heads/releases/beta/3-alpha", &["a"])
            ));
        }

        #[test]
        fn only_branch_filters_skip_tags_and_the_other_way_round() {
            let wf = workflow("on:\n  push:\n    branches: [main]\n");
            assert!(runs(&wf, &push("refs/heads/main", &["a"])));
            assert_eq!(
                skip_reason(&wf, &push("refs/tags/v1", &[])),
                "tag 'v1' is pushed and the workflow filters only on.push.branches"
            );
            let wf = workflow("on:\n  push:\n    tags: ['v*']\n");
            assert!(runs(&wf, &push("refs/tags/v1.0.0", &[])));
            assert!(!runs(&wf, &push("refs/heads/main", &["a"])));
            let wf = workflow("on:\n  push:\n    branches-ignore: [wip]\n");
            assert!(
                !runs(&wf, &push("refs/tags/v1", &[])),
                "an ignore filter counts too"
            );
            let wf = workflow("on:\n  push:\n    paths: ['src/**']\n");
            assert!(
                runs(&wf, &push("refs/tags/v1", &["docs/a.md"])),
                "path filters are not evaluated for tags"
            );
            assert!(!runs(&wf, &push("refs/notes/commits", &["docs/a.md"])));
            let wf = workflow("on:\n  push:\n    branches: [main]\n");
            assert!(!runs(&wf, &push("refs/notes/commits", &["a"])));
        }

        #[test]
        fn negative_only_lists_select_nothing() {
            let wf = workflow("on:\n  push:\n    branches: ['!dev']\n");
            assert_eq!(
                skip_reason(&wf, &push("refs/heads/main", &["a"])),
                "on.push.branches has no pattern without `!`, so it selects nothing"
            );
            let wf = workflow("on:\n  push:\n    paths: ['!docs/**']\n");
            assert!(!runs(&wf, &push("refs/heads/main", &["src/a.rs"])));
        }

        #[test]
        fn deletions_and_skip_markers_run_nothing() {
            let wf = workflow("on: push");
            let deletion = push_with("refs/heads/gone", &[], |p| {
                p["after"] = ZEROS.into();
                p["deleted"] = true.into();
                p["commits"] = serde_json::json!([]);
                p["head_commit"] = serde_json::Value::Null;
            });
            assert_eq!(
                skip_reason(&wf, &deletion),
                "the push deletes refs/heads/gone: a deletion runs no push workflows"
            );
            let skipped = push_with("refs/heads/main", &["a"], |p| {
                p["head_commit"]["message"] = "Update README [skip ci]".into();
            });
            assert_eq!(
                skip_reason(&wf, &skipped),
                "the head commit's message says `[skip ci]`"
            );
        }

        #[test]
        fn paths_and_paths_ignore() {
            let wf = workflow("on:\n  push:\n    paths:\n      - '**.js'\n");
            assert!(runs(
                &wf,
                &push("refs/heads/main", &["README.md", "src/app.js"])
            ));
            assert_eq!(
                skip_reason(&wf, &push("refs/heads/main", &["README.md", "docs/a.md"])),
                "none of the 2 changed files is selected by on.push.paths"
            );

            let wf = workflow("on:\n  push:\n    paths-ignore:\n      - 'docs/**'\n");
            assert!(runs(
                &wf,
                &push("refs/heads/main", &["docs/a.md", "src/lib.rs"])
            ));
            assert_eq!(
                skip_reason(&wf, &push("refs/heads/main", &["docs/a.md", "docs/b/c.md"])),
                "every changed file (2) is ignored by on.push.paths-ignore"
            );
            assert!(
                !runs(&wf, &push("refs/heads/main", &[])),
                "no changed file: nothing escapes the ignore list"
            );

            let wf = workflow(
                "on:\n  push:\n    paths:\n      - 'sub-project/**'\n      - '!sub-project/docs/**'\n",
            );
            assert!(!runs(
                &wf,
                &push("refs/heads/main", &["sub-project/docs/readme.md"])
            ));
            assert!(runs(
                &wf,
                &push(
                    "refs/heads/main",
                    &["sub-project/docs/readme.md", "sub-project/src/a.rs"]
                )
            ));

            // A `!` pattern in an ignore list un-ignores.
            let wf = workflow(
                "on:\n  push:\n    paths-ignore:\n      - 'docs/**'\n      - '!docs/api/**'\n",
            );
            assert!(!runs(&wf, &push("refs/heads/main", &["docs/guide.md"])));
            assert!(runs(&wf, &push("refs/heads/main", &["docs/api/v1.md"])));
        }

        #[test]
        fn branches_and_paths_must_both_pass() {
            let wf = workflow("on:\n  push:\n    branches: [main]\n    paths: ['src/**']\n");
            assert!(runs(&wf, &push("refs/heads/main", &["src/a.rs"])));
            assert!(!runs(&wf, &push("refs/heads/main", &["docs/a.md"])));
            assert!(!runs(&wf, &push("refs/heads/dev", &["src/a.rs"])));
        }

        #[test]
        fn unknown_changed_files_pass_path_filters() {
            let wf = workflow(
                "on:\n  push:\n    paths: ['src/**']\n  pull_request:\n    paths-ignore: ['docs/**']\n",
            );
            let cut = push_with("refs/heads/main", &["docs/a.md"], |p| {
                p["size"] = 40.into();
            });
            assert_eq!(cut.changed_files(), None);
            assert!(
                runs(&wf, &cut),
                "GitHub runs the workflow when it cannot diff"
            );
            let triggers = Triggers::from_workflow(&wf).expect("valid");
            assert!(triggers.filters_paths(&cut));
            assert!(!triggers.filters_paths(&push("refs/tags/v1", &[])));

            let unknown = pull_request("opened", "main", None);
            assert!(runs(&wf, &unknown));
            assert!(triggers.filters_paths(&unknown));
            assert!(!runs(
                &wf,
                &pull_request("opened", "main", Some(&["docs/a.md"]))
            ));
            assert!(runs(
                &wf,
                &pull_request("opened", "main", Some(&["docs/a.md", "Makefile"]))
            ));
        }

        #[test]
        fn pull_request_types_and_base_branches() {
            let wf = workflow("on: pull_request");
            for yes in ["opened", "synchronize", "reopened"] {
                assert!(runs(&wf, &pull_request(yes, "main", None)), "{yes}");
            }
            assert_eq!(
                skip_reason(&wf, &pull_request("closed", "main", None)),
                "pull request activity 'closed' is not one the workflow runs for \
                 (by default opened, synchronize, reopened)"
            );
            assert!(!runs(&wf, &pull_request("labeled", "main", None)));

            let wf = workflow("on:\n  pull_request:\n    types: [opened, labeled]\n");
            assert!(runs(&wf, &pull_request("labeled", "main", None)));
            assert!(!runs(&wf, &pull_request("synchronize", "main", None)));
            assert_eq!(
                skip_reason(&wf, &pull_request("closed", "main", None)),
                "pull request activity 'closed' is not one the workflow runs for \
                 (on.pull_request.types: opened, labeled)"
            );
            let wf = workflow("on:\n  pull_request:\n    types: closed\n");
            assert!(runs(&wf, &pull_request("closed", "main", None)));

            let wf = workflow(
                "on:\n  pull_request:\n    branches:\n      - main\n      - 'mona/octocat'\n      - 'releases/**'\n",
            );
            assert!(runs(&wf, &pull_request("opened", "main", None)));
            assert!(runs(&wf, &pull_request("opened", "releases/2.0", None)));
            assert_eq!(
                skip_reason(&wf, &pull_request("opened", "dev", None)),
                "base branch 'dev' is not selected by on.pull_request.branches"
            );
            let wf = workflow(
                "on:\n  pull_request:\n    branches-ignore:\n      - 'mona/octocat'\n      - 'releases/**-alpha'\n",
            );
            assert!(!runs(
                &wf,
                &pull_request("opened", "releases/beta/3-alpha", None)
            ));
            assert!(runs(&wf, &pull_request("opened", "main", None)));
        }

        #[test]
        fn workflow_dispatch_runs_the_workflow_it_names() {
            let wf = workflow(
                "on:\n  workflow_dispatch:\n    inputs:\n      level:\n        type: string\n",
            );
            let event = dispatch(".github/workflows/ci.yml");
            assert!(runs(&wf, &event));
            let Event::WorkflowDispatch(d) = &event else {
                panic!("not a dispatch")
            };
            assert_eq!(d.inputs["level"], serde_json::json!("debug"));
            assert_eq!(
                skip_reason(&wf, &dispatch(".github/workflows/other.yml")),
                "the dispatch is for .github/workflows/other.yml, not .github/workflows/ci.yml"
            );
            let checkout = workflow_at(
                "/srv/repo/.github/workflows/ci.yml",
                "on: workflow_dispatch",
            );
            assert!(
                runs(&checkout, &event),
                "an absolute path ends with the dispatched one"
            );
            let elsewhere = workflow_at(
                "/srv/repo/.github/workflows/ci.yml.bak/x",
                "on: workflow_dispatch",
            );
            assert!(!runs(&elsewhere, &event));
            assert!(!runs(&workflow("on: push"), &event));
        }

        #[test]
        fn invalid_filters_are_errors() {
            assert_eq!(
                error("on:\n  push:\n    branches: [main]\n    branches-ignore: [dev]\n"),
                ".github/workflows/ci.yml: on.push: `branches` and `branches-ignore` cannot both be given"
            );
            assert!(
                error("on:\n  push:\n    tags: [v1]\n    tags-ignore: [v2]\n")
                    .contains("`tags` and `tags-ignore`")
            );
            assert!(
                error("on:\n  pull_request:\n    paths: [a]\n    paths-ignore: [b]\n")
                    .contains("on.pull_request: `paths` and `paths-ignore`")
            );
            assert_eq!(
                error("on:\n  push:\n    branches: ['v[12']\n"),
                ".github/workflows/ci.yml: on.push.branches: invalid pattern 'v[12': \
                 `[` is not closed by `]` (at character 2)"
            );
            assert!(
                error("on:\n  push:\n    branch: [main]\n").contains("unexpected key `branch`")
            );
            assert!(
                error("on:\n  pull_request:\n    tags: [v1]\n")
                    .contains("on.pull_request: unexpected key `tags`")
            );
            assert!(error("on:\n  push: main\n").contains("on.push: expected a mapping"));
            assert!(error("on:\n  push:\n    tags: [1.10]\n").contains("(quote it)"));
            assert!(error("on:\n  push:\n    branches:\n").contains("expected a string or a list"));
            // Invalid filters of one event make the workflow invalid for every event.
            let wf = workflow("on:\n  push:\n    branches: ['[']\n  workflow_dispatch:\n");
            assert!(decide(&wf, &dispatch(".github/workflows/ci.yml")).is_err());
        }
    }
}
