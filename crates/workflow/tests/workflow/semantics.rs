//! GitHub's semantics where they are easy to get subtly wrong: boolean settings written as YAML
//! booleans, status functions after a cancellation or a timeout, `continue-on-error` jobs and
//! the jobs that need them, `if:` conditions that mix text and expressions, and `hashFiles`
//! over the VM's workspace.

use crate::harness::{Env, assert_all_released, run};
use azlin_workflow::{JobReport, JobResult, RunReport, StepOutcome};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// The runs of job `id`, in order.
fn runs<'r>(report: &'r RunReport, id: &str) -> Vec<&'r JobReport> {
    report.jobs().filter(|j| j.id == id).collect()
}

/// The one run of job `id`.
fn job<'r>(report: &'r RunReport, id: &str) -> &'r JobReport {
    match runs(report, id).as_slice() {
        [one] => one,
        other => panic!("job {id}: {} runs", other.len()),
    }
}

/// `(outcome, conclusion)` of every step of `job`.
fn step_results(job: &JobReport) -> Vec<(StepOutcome, StepOutcome)> {
    job.steps
        .iter()
        .map(|s| (s.outcome, s.conclusion))
        .collect()
}

#[tokio::test]
async fn yaml_false_turns_continue_on_error_and_fail_fast_off() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "flags.yml",
        r#"on: push
jobs:
  step_false:
    runs-on: ubuntu-latest
    steps:
      - run: exit 1
        continue-on-error: false
      - run: echo unreachable
  matrix:
    runs-on: ubuntu-latest
    continue-on-error: false
    strategy:
      fail-fast: false
      matrix:
        n: [1, 2, 3]
    steps:
      - run: test ${{ matrix.n }} -ne 1
  expr:
    runs-on: ubuntu-latest
    steps:
      - run: exit 1
        continue-on-error: ${{ github.event_name == 'push' }}
      - run: exit 1
        continue-on-error: ${{ github.event_name == 'pull_request' }}
"#,
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    use StepOutcome::{Failure, Skipped, Success};
    let step_false = job(&report, "step_false");
    assert_eq!(step_false.result, JobResult::Failure);
    assert_eq!(
        step_results(step_false),
        [(Failure, Failure), (Skipped, Skipped)]
    );
    assert!(!observer.texts().contains(&"unreachable".to_string()));
    // fail-fast: false lets the other runs go on after the first fails.
    let matrix: Vec<_> = runs(&report, "matrix").iter().map(|j| j.result).collect();
    assert_eq!(
        matrix,
        [JobResult::Failure, JobResult::Success, JobResult::Success]
    );
    let expr = job(&report, "expr");
    assert_eq!(step_results(expr), [(Failure, Success), (Failure, Failure)]);
    assert_eq!(
        report.errors,
        [
            "Job 'step_false' failed",
            "Job 'matrix' failed",
            "Job 'expr' failed"
        ]
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn an_if_mixing_text_and_expressions_is_still_implicitly_under_success() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "mixed.yml",
        r#"on: push
jobs:
  j:
    runs-on: ubuntu-latest
    steps:
      - if: ${{ github.event_name }} == 'pull_request'
        run: echo mixed-before-failure
      - run: exit 1
      - if: ${{ github.event_name }} == 'pull_request'
        run: echo mixed-after-failure
      - if: ${{ failure() }} and more text
        run: echo status-function-in-text
"#,
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    use StepOutcome::{Failure, Skipped, Success};
    assert_eq!(
        step_results(job(&report, "j")),
        [
            (Success, Success),
            (Failure, Failure),
            (Skipped, Skipped),
            (Success, Success)
        ]
    );
    // The text is a non-empty string (GitHub's pitfall), so it ran before the failure.
    assert_eq!(
        observer.texts(),
        ["mixed-before-failure", "status-function-in-text"]
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn a_failed_job_with_continue_on_error_counts_as_a_success_for_its_dependents() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "coe.yml",
        r#"on: push
jobs:
  flaky:
    runs-on: ubuntu-latest
    continue-on-error: true
    steps:
      - run: exit 1
  after:
    needs: flaky
    runs-on: ubuntu-latest
    steps:
      - run: echo "flaky was ${{ needs.flaky.result }}"
  experimental:
    runs-on: ubuntu-latest
    continue-on-error: ${{ matrix.n == 2 }}
    strategy:
      matrix:
        n: [1, 2]
    steps:
      - run: test ${{ matrix.n }} -ne 2
  after_matrix:
    needs: experimental
    runs-on: ubuntu-latest
    steps:
      - run: echo "experimental was ${{ needs.experimental.result }}"
"#,
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    let flaky = job(&report, "flaky");
    assert_eq!(
        (flaky.result, flaky.continue_on_error, flaky.conclusion()),
        (JobResult::Failure, true, JobResult::Success)
    );
    assert_eq!(job(&report, "after").result, JobResult::Success);
    assert_eq!(job(&report, "after_matrix").result, JobResult::Success);
    let texts = observer.texts();
    assert!(
        texts.contains(&"flaky was success".to_string()),
        "{texts:?}"
    );
    assert!(
        texts.contains(&"experimental was success".to_string()),
        "{texts:?}"
    );
    assert_all_released(&env, &counting);
}

/// What `hashFiles` gives for files with these contents, in this order.
fn hash_of(contents: &[&str]) -> String {
    let mut outer = Sha256::new();
    for c in contents {
        outer.update(Sha256::digest(c.as_bytes()));
    }
    outer
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn hash_files_hashes_the_workspace_on_the_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let repo = env.path("repo");
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/a.txt"), "from the repo\n").unwrap();
    let wf = repo.join(".github/workflows/ci.yml");
    std::fs::write(
        &wf,
        r#"on: push
jobs:
  h:
    runs-on: ubuntu-latest
    steps:
      - run: echo "BEFORE=${{ hashFiles('**/*.txt') }}."
      - uses: actions/checkout@v4
        with:
          path: sub
      - run: echo "SUB=${{ hashFiles('sub/src/*.txt') }} ROOT=${{ hashFiles('src/*.txt') }}."
      - run: mkdir -p gen && printf generated > gen/new.txt
      - if: hashFiles('gen/*.txt') != ''
        env:
          GEN: ${{ hashFiles('gen/*.txt') }}
        run: echo "GEN=$GEN ALL=${{ hashFiles('**/*.txt', '!sub/**') }}"
  job_level:
    runs-on: ubuntu-latest
    env:
      KEY: ${{ hashFiles('**') }}
    steps:
      - run: echo unreachable
"#,
    )
    .unwrap();
    let mut options = env.options();
    options.repository = None;
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    let texts = observer.texts();
    let h = job(&report, "h");
    assert_eq!(h.result, JobResult::Success, "{texts:?}");
    // Nothing is checked out yet: nothing to hash.
    assert!(texts.contains(&"BEFORE=.".to_string()), "{texts:?}");
    // The checkout's copy, where `path:` put it.
    let repo_txt = hash_of(&["from the repo\n"]);
    assert!(
        texts.contains(&format!("SUB={repo_txt} ROOT=.")),
        "{texts:?}"
    );
    // A file an earlier step made.
    let generated = hash_of(&["generated"]);
    assert!(
        texts.contains(&format!("GEN={generated} ALL={generated}")),
        "{texts:?}"
    );
    // Job-level fields are evaluated before there is a workspace.
    let job_level = job(&report, "job_level");
    assert_eq!(job_level.result, JobResult::Failure);
    let error = job_level.error.as_deref().unwrap_or("");
    assert!(
        error.contains("hashFiles is only available in a step's fields"),
        "{error}"
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn a_shell_name_may_be_an_expression_as_in_act() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    // From act's `shells/sh` case (its container job left out: no Docker here).
    let wf = env.write(
        "shells.yml",
        r#"on: push
env:
  MY_SHELL: sh
jobs:
  j:
    runs-on: ubuntu-latest
    defaults:
      run:
        shell: ${{ env.MY_SHELL }}
    steps:
      - run: if [ -z ${BASH+x} ]; then echo "I'm sh"; else exit 1; fi
      - shell: ${{ env.MY_SHELL == 'sh' && 'bash' || 'sh' }}
        run: if [[ -n "$BASH" ]]; then echo "I'm bash"; else exit 1; fi
"#,
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    use StepOutcome::Success;
    assert_eq!(
        step_results(job(&report, "j")),
        [(Success, Success), (Success, Success)]
    );
    assert_eq!(observer.texts(), ["I'm sh", "I'm bash"]);
    assert_all_released(&env, &counting);
}
