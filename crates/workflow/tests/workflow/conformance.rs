//! The act conformance corpus (`shared/conformance/act`), run on the sim provider with act's
//! harness conventions: actor and repository `nektos/act`, the manifest's event with an empty
//! payload, `ubuntu-latest`/`self-hosted` as Linux and other platforms skipped. Each case must end
//! as the manifest says: success, or an error containing the expected text.
//!
//! The expected text must appear exactly, except for the cases in [`CASE_ONLY`], where it may
//! differ in case, for the reason given there.
//!
//! Steps run as local processes on this host, as root. Side effects stay in the case's temp dir:
//! `TMPDIR` points there, and HOME is the sim VM's folder.

use crate::harness::{Env, assert_all_released, run};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Cases that cannot pass here for a reason outside the runner, with that reason. Empty: every
/// case runs.
const EXCLUDED: &[(&str, &str)] = &[];

/// Cases whose expected text may differ from azlin's error in case only, and why.
const CASE_ONLY: &[(&str, &str)] = &[(
    "job-status-check",
    "act's wording is `Job '%s' failed` in every case (handleFailure in pkg/runner/runner.go); \
     the lowercase `job 'fail' failed` comes from an entry of act's test table that its harness \
     never compared (`assert.Error(t, err, msg)` takes msg as the assertion's message), and later \
     act versions corrected it to `Job 'fail' failed`. azlin reports act's real wording.",
)];

fn corpus() -> Option<PathBuf> {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/conformance/act"))
        .chain(
            here.ancestors()
                .map(|a| a.join("../shared/conformance/act")),
        )
        .find(|p| p.join("manifest.tsv").is_file())
}

fn workflow_files(case: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(case)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn act_corpus_on_sim() {
    let Some(root) = corpus() else {
        panic!("the conformance corpus (shared/conformance/act) was not found");
    };
    let manifest = std::fs::read_to_string(root.join("manifest.tsv")).unwrap();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    let mut total = 0;
    for line in manifest.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (case, event) = (cols[0], cols.get(1).copied().unwrap_or("push"));
        let expected = cols.get(2).copied().unwrap_or("").trim();
        total += 1;
        if let Some((_, why)) = EXCLUDED.iter().find(|(c, _)| *c == case) {
            println!("conformance: {case}: excluded: {why}");
            continue;
        }
        let env = Env::new();
        let counting = env.allocator(Duration::ZERO);
        let mut options = env.options();
        options.actor = Some("nektos/act".into());
        options.repository = Some("nektos/act".into());
        options.event = event.to_string();
        let files = workflow_files(&root.join(case));
        assert!(!files.is_empty(), "{case}: no workflow file");
        let (report, observer) = run(&files, &options, counting.clone()).await;
        let error = report.error_message().unwrap_or_default();
        let case_only = CASE_ONLY.iter().any(|(c, _)| *c == case);
        let ok = if expected.is_empty() {
            report.success
        } else if case_only {
            !report.success && error.to_lowercase().contains(&expected.to_lowercase())
        } else {
            !report.success && error.contains(expected)
        };
        assert_all_released(&env, &counting);
        if std::env::var_os("AZLIN_CONFORMANCE_VERBOSE").is_some() {
            for j in report.jobs() {
                let steps: Vec<&str> = j.steps.iter().map(|s| s.outcome.as_str()).collect();
                println!(
                    "  {case}: {} [{}] {steps:?} {}",
                    j.name,
                    j.result.as_str(),
                    j.skip_reason.clone().unwrap_or_default()
                );
            }
            println!("  {case}: error {error:?}");
        }
        if ok {
            passed.push(case.to_string());
        } else {
            let jobs: Vec<String> = report
                .jobs()
                .map(|j| {
                    format!(
                        "{} [{}] {}",
                        j.name,
                        j.result.as_str(),
                        j.error
                            .clone()
                            .or(j.skip_reason.clone())
                            .unwrap_or_default()
                    )
                })
                .collect();
            let tail: Vec<String> = observer
                .lines()
                .iter()
                .rev()
                .take(15)
                .rev()
                .map(|l| format!("  [{}/{}] {}", l.job, l.step, l.text))
                .collect();
            failed.push(format!(
                "{case}: expected {:?}, got {:?}\n jobs: {jobs:?}\n{}",
                if expected.is_empty() {
                    "success"
                } else {
                    expected
                },
                if report.success {
                    "success"
                } else {
                    error.as_str()
                },
                tail.join("\n")
            ));
        }
    }
    println!(
        "conformance on sim: {} passed, {} failed ({} cases, {} excluded)",
        passed.len(),
        failed.len(),
        total,
        EXCLUDED.len()
    );
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n\n"));
    assert_eq!(passed.len() + EXCLUDED.len(), total);
}
