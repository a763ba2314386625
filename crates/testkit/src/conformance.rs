//! The act conformance corpus (`tests/conformance/act`, an unchanged copy of the cases from
//! nektos/act's test data): its manifest, and how an outcome is judged against it. Shared by the
//! corpus run on `sim` (workflow crate) and on real nspawn VMs (through the CLI).

use std::path::{Path, PathBuf};

/// One case of the manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Case {
    /// Folder name under the corpus (`steps-context/outcome`).
    pub name: String,
    /// The event to run it with.
    pub event: String,
    /// The text the run's error must contain; empty when every job must succeed.
    pub expected_error: String,
    /// Secrets passed to this case only (`K=V`).
    pub secrets: Vec<(String, String)>,
}

/// Cases whose expected text may differ from azlin's error in letter case only, and why.
pub const CASE_ONLY: &[(&str, &str)] = &[(
    "job-status-check",
    "act's wording is `Job '%s' failed` in every case (handleFailure in pkg/runner/runner.go); \
     the lowercase `job 'fail' failed` comes from an entry of act's test table that its harness \
     never compared (`assert.Error(t, err, msg)` takes msg as the assertion's message), and later \
     act versions corrected it to `Job 'fail' failed`. azlin reports act's real wording.",
)];

/// The corpus folder of this repository.
pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/act")
}

/// Every case of the manifest, in its order.
pub fn cases() -> Vec<Case> {
    let manifest = std::fs::read_to_string(corpus_dir().join("manifest.tsv")).unwrap_or_default();
    manifest
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            Case {
                name: cols[0].to_string(),
                event: cols.get(1).copied().unwrap_or("push").to_string(),
                expected_error: cols.get(2).copied().unwrap_or("").trim().to_string(),
                secrets: cols
                    .get(3)
                    .copied()
                    .unwrap_or("")
                    .split_whitespace()
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            }
        })
        .collect()
}

impl Case {
    /// The case's folder.
    pub fn dir(&self) -> PathBuf {
        corpus_dir().join(&self.name)
    }

    /// Its event payload: the case's `event.json`, or an empty object (act's `--eventpath`).
    pub fn event_payload(&self) -> serde_json::Value {
        std::fs::read_to_string(self.dir().join("event.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    }

    /// Its workflow files (`*.yml`, `*.yaml`), sorted.
    pub fn workflow_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        files.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"));
        files.sort();
        files
    }

    /// Whether a run that ended with `success` and `error` is the outcome the manifest expects.
    pub fn matches(&self, success: bool, error: &str) -> bool {
        if self.expected_error.is_empty() {
            return success;
        }
        let case_only = CASE_ONLY.iter().any(|(c, _)| *c == self.name);
        !success
            && if case_only {
                error
                    .to_lowercase()
                    .contains(&self.expected_error.to_lowercase())
            } else {
                error.contains(&self.expected_error)
            }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_lists_every_case_with_a_workflow() {
        let cases = cases();
        assert_eq!(cases.len(), 60);
        for case in &cases {
            assert!(!case.workflow_files().is_empty(), "{}", case.name);
        }
        let check = cases.iter().find(|c| c.name == "job-status-check").unwrap();
        assert!(check.matches(false, "Job 'fail' failed"));
        assert!(!check.matches(true, ""));
        let exitcode = cases.iter().find(|c| c.name == "matrix-exitcode").unwrap();
        assert!(!exitcode.matches(false, "job 'test' failed"));
        let uses = cases.iter().find(|c| c.name == "uses-workflow").unwrap();
        assert_eq!(uses.secrets, [("secret".into(), "keep_it_private".into())]);
        let dispatch = cases
            .iter()
            .find(|c| c.name == "workflow_dispatch")
            .unwrap();
        assert_eq!(
            dispatch.event_payload()["inputs"]["required"],
            "required input"
        );
    }
}
