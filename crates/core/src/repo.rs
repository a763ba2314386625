//! Repository URLs accepted by `--repo`: `https://` only, nothing a shell or git could read as
//! anything but a URL.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// A validated `https://` repository URL and the directory name it is cloned into.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct RepoUrl(String);

/// Why a repository URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing repository URL '{url}': {reason}")]
pub struct InvalidRepoUrl {
    url: String,
    reason: &'static str,
}

/// Characters that mean something to a shell; none may appear in a repository URL.
const SHELL_METACHARACTERS: &[char] = &[
    ';', '|', '&', '$', '`', '<', '>', '(', ')', '{', '}', '\'', '"', '\\', '*', '?', '!', '[',
    ']', '#', '~', '^', ' ', '\t', '\n', '\r',
];

impl RepoUrl {
    /// Validates `raw`: an `https://` URL with a host and a path, no credentials, no shell
    /// metacharacters, and nothing git could take as an option (`--upload-pack=…`).
    pub fn parse(raw: &str) -> Result<Self, InvalidRepoUrl> {
        let fail = |reason| {
            Err(InvalidRepoUrl {
                url: raw.escape_default().to_string(),
                reason,
            })
        };
        // Whitespace is refused below, so only a leading dash can make git read this as an option;
        // a `--` inside a URL (`https://host/my--repo`) is an ordinary path.
        if raw.starts_with('-') {
            return fail("it looks like a git option");
        }
        if raw.contains(SHELL_METACHARACTERS) || raw.chars().any(|c| c.is_control()) {
            return fail("it contains shell metacharacters or whitespace");
        }
        let Ok(url) = url::Url::parse(raw) else {
            return fail("it is not a URL");
        };
        if url.scheme() != "https" {
            return fail("only https:// URLs are allowed");
        }
        if crate::network::has_credentials(&url) {
            return fail(
                "credentials in the URL are not allowed (use a credential helper on the VM)",
            );
        }
        // `https:/host` and `https:///host` parse as URLs with a host; refuse them as git
        // would. (The first 8 bytes are checked as ASCII before the rest is looked at.)
        let after_scheme = raw
            .get(..8)
            .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
            .map(|_| &raw[8..]);
        if url.host_str().is_none_or(str::is_empty)
            || after_scheme.is_none_or(|rest| rest.starts_with('/'))
        {
            return fail("it has no host");
        }
        if url.query().is_some() {
            return fail("query strings are not allowed");
        }
        let repo = RepoUrl(raw.to_string());
        if repo.dir_name().is_none() {
            return fail("it has no repository name in its path");
        }
        Ok(repo)
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The directory the repository is cloned into: the last path segment without `.git`.
    pub fn dir_name(&self) -> Option<&str> {
        let path = self.0.split_once("://")?.1.split_once('/')?.1;
        let last = path.trim_end_matches('/').rsplit('/').next()?;
        let name = last.strip_suffix(".git").unwrap_or(last);
        let valid = !name.is_empty()
            && name != "."
            && name != ".."
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        valid.then_some(name)
    }
}

impl FromStr for RepoUrl {
    type Err = InvalidRepoUrl;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RepoUrl::parse(s)
    }
}

impl<'de> Deserialize<'de> for RepoUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoUrl::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_https_repositories() {
        let repo = RepoUrl::parse("https://github.com/rysweet/azlin.git").unwrap();
        assert_eq!(repo.dir_name(), Some("azlin"));
        let repo = RepoUrl::parse("https://127.0.0.1:8443/git/demo").unwrap();
        assert_eq!(repo.dir_name(), Some("demo"));
        let repo = RepoUrl::parse("https://example.com/a/b/demo.git/").unwrap();
        assert_eq!(repo.dir_name(), Some("demo"));
        let repo = RepoUrl::parse("https://example.com/team/my--repo.git").unwrap();
        assert_eq!(repo.dir_name(), Some("my--repo"));
        let repo = RepoUrl::parse("HTTPS://example.com/team/upper.git").unwrap();
        assert_eq!(repo.dir_name(), Some("upper"));
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "http://github.com/a/b.git",
            "git@github.com:a/b.git",
            "ssh://github.com/a/b.git",
            "file:///etc/passwd",
            "--upload-pack=touch /tmp/pwned",
            "https://github.com/a/b.git --upload-pack=evil",
            "https://github.com/a/b.git;rm -rf ~",
            "https://github.com/a/$(id).git",
            "https://user:token@github.com/a/b.git",
            "https://github.com",
            "https://github.com/",
            "https://github.com/a/..",
            "https:///a/b.git",
            "-https://github.com/a/b.git",
            "https://github.com/a/b.git\t--upload-pack=evil",
            // Found by the bus_decode fuzz target: a single slash and a multi-byte character
            // where the host would start once panicked (a byte index inside a character).
            "https:/\u{452}ithcu/o.mbocteol/hlo",
            "https:/github.com/a/b.git",
        ] {
            assert!(RepoUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
