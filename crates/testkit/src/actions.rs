//! TEMPORARY: replaced by the helper's version.
#![allow(missing_docs, clippy::unwrap_used)]
use std::path::Path;
use std::process::Command;

pub struct ActionRepos {
    dir: tempfile::TempDir,
}

impl ActionRepos {
    pub fn new() -> ActionRepos {
        let dir = tempfile::tempdir().unwrap();
        let bundles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/conformance/actions");
        for (b, r) in [
            ("nektos-act-test-actions.bundle", "nektos/act-test-actions"),
            (
                "actions-hello-world-javascript-action.bundle",
                "actions/hello-world-javascript-action",
            ),
            ("cloudposse-actions.bundle", "cloudposse/actions"),
            ("actions-cache.bundle", "actions/cache"),
        ] {
            let st = Command::new("git")
                .args(["clone", "-q", "--mirror"])
                .arg(bundles.join(b))
                .arg(dir.path().join(format!("{r}.git")))
                .status()
                .unwrap();
            assert!(st.success());
        }
        ActionRepos { dir }
    }
    pub fn file_url(&self) -> String {
        format!("file://{}", self.dir.path().display())
    }
}
