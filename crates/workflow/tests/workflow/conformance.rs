//! The act conformance corpus (`tests/conformance/act`), run on the sim provider with act's
//! harness conventions: actor and repository `nektos/act`, the manifest's event with the case's
//! `event.json` as payload (empty when it has none), `ubuntu-latest`/`self-hosted` as Linux and other platforms skipped. Each case must end
//! as the manifest says: success, or an error containing the expected text.
//!
//! The expected text must appear exactly, except for the cases in `azlin_testkit::conformance::CASE_ONLY`,
//! where it may differ in letter case, for the reason given there.
//!
//! Steps run as local processes on this host, as root. Side effects stay in the case's temp dir:
//! `TMPDIR` points there, and HOME is the sim VM's folder.

use crate::harness::{Env, assert_all_released, run};
use azlin_testkit::actions::ActionRepos;
use azlin_testkit::conformance;
use std::time::Duration;

/// Cases that cannot pass here for a reason outside the runner, with that reason. Empty: every
/// case runs.
const EXCLUDED: &[(&str, &str)] = &[];

#[tokio::test]
async fn act_corpus_on_sim() {
    let cases = conformance::cases();
    assert!(
        !cases.is_empty(),
        "the conformance corpus was not found at {}",
        conformance::corpus_dir().display()
    );
    let actions = ActionRepos::new();
    let cache = tempfile::tempdir().unwrap();
    let mut passed = Vec::new();
    let mut failed = Vec::new();
    for case in &cases {
        if std::env::var("CASE").is_ok_and(|c| c != case.name) {
            continue;
        }
        if let Some((_, why)) = EXCLUDED.iter().find(|(c, _)| *c == case.name) {
            println!("conformance: {}: excluded: {why}", case.name);
            continue;
        }
        let env = Env::new();
        let counting = env.allocator(Duration::ZERO);
        let mut options = env.options();
        options.actor = Some("nektos/act".into());
        options.repository = Some("nektos/act".into());
        options.event = case.event.clone();
        options.event_payload = case.event_payload();
        options.repo_dir = Some(conformance::corpus_dir());
        options.secrets = case.secrets.iter().cloned().collect();
        options.actions.url = actions.file_url();
        options.actions.cache_dir = cache.path().to_path_buf();
        let files = case.workflow_files();
        assert!(!files.is_empty(), "{}: no workflow file", case.name);
        let (report, observer) = run(&files, &options, counting.clone()).await;
        let error = report.error_message().unwrap_or_default();
        assert_all_released(&env, &counting);
        if case.matches(report.success, &error) {
            passed.push(case.name.clone());
            continue;
        }
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
        let expected = if case.expected_error.is_empty() {
            "success"
        } else {
            &case.expected_error
        };
        let got = if report.success {
            "success"
        } else {
            error.as_str()
        };
        failed.push(format!(
            "{}: expected {expected:?}, got {got:?}\n jobs: {jobs:?}\n{}",
            case.name,
            tail.join("\n")
        ));
    }
    println!(
        "conformance on sim: {} passed, {} failed ({} cases, {} excluded)",
        passed.len(),
        failed.len(),
        cases.len(),
        EXCLUDED.len()
    );
    assert!(failed.is_empty(), "failing cases:\n{}", failed.join("\n\n"));
    assert_eq!(passed.len() + EXCLUDED.len(), cases.len());
}
