//! VM names: `[a-z][a-z0-9-]{0,62}`, so that they are valid host names, Azure resource names and
//! parts of file names alike.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;
use std::str::FromStr;

/// A validated VM name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct VmName(String);

/// Why a string is not a valid VM name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid VM name '{name}': {reason} (names match [a-z][a-z0-9-]{{0,62}})")]
pub struct InvalidName {
    name: String,
    reason: &'static str,
}

impl VmName {
    /// Validates `name`.
    pub fn parse(name: &str) -> Result<Self, InvalidName> {
        let fail = |reason| {
            Err(InvalidName {
                name: name.escape_default().to_string(),
                reason,
            })
        };
        let mut chars = name.chars();
        match chars.next() {
            None => return fail("it is empty"),
            Some(c) if !c.is_ascii_lowercase() => {
                return fail("it must start with a lowercase letter");
            }
            Some(_) => {}
        }
        if name.len() > 63 {
            return fail("it is longer than 63 characters");
        }
        if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return fail("only lowercase letters, digits and '-' are allowed");
        }
        Ok(VmName(name.to_string()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name of the `index`-th member (1-based) of a fleet named after this one: `NAME-index`.
    pub fn fleet_member(&self, index: usize) -> Result<VmName, InvalidName> {
        VmName::parse(&format!("{}-{index}", self.0))
    }
}

impl FromStr for VmName {
    type Err = InvalidName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VmName::parse(s)
    }
}

impl<'de> Deserialize<'de> for VmName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        VmName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for VmName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VmName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_names() {
        for ok in ["a", "dev-1", "e2e", &format!("a{}", "b".repeat(62))] {
            assert!(VmName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_invalid_names() {
        for bad in [
            "",
            "1abc",
            "-a",
            "Abc",
            "a_b",
            "a.b",
            "a b",
            "a;rm -rf /",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert!(VmName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn fleet_members_are_numbered() {
        let base = VmName::parse("web").unwrap();
        assert_eq!(base.fleet_member(3).unwrap().as_str(), "web-3");
    }
}
