//! Every path releases the VM and runs cleanup: a failing step, a timed-out job, a cancelled
//! run, and a run whose future is dropped.

use crate::harness::{Collect, Counting, Env, assert_all_released, run};
use azlin_workflow::{
    JobResult, RunOptions, RunReport, SessionManager, SessionState, StepOutcome, VmScope,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Options whose cleanup command appends to a file outside the VM, and whose setup command
/// proves it ran before the steps.
fn options_with_cleanup(env: &Env) -> azlin_workflow::RunOptions {
    let mut o = env.options();
    let log = env.path("outside").join("cleanup.log");
    o.setup_commands = vec![format!("echo setup >> '{}'", log.display())];
    o.cleanup_commands = vec![format!("echo cleanup >> '{}'", log.display())];
    o
}

fn cleanup_log(env: &Env) -> String {
    std::fs::read_to_string(env.path("outside").join("cleanup.log")).unwrap_or_default()
}

/// Asserts setup and cleanup each ran once, the one session record ended `Released` with
/// `outcome`, and nothing is left allocated.
fn assert_cleaned_up_and_released(env: &Env, counting: &Counting, outcome: SessionState) {
    assert_eq!(cleanup_log(env), "setup\ncleanup\n");
    let r = &env.records()[0];
    assert_eq!(
        (r.state, r.outcome),
        (SessionState::Released, Some(outcome))
    );
    assert_all_released(env, counting);
}

#[tokio::test]
async fn a_failing_step_still_runs_cleanup_and_releases_the_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "fail.yml",
        "on: push\njobs:\n  broken:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo before\n      - run: exit 3\n      - run: echo never\n      - if: always()\n        run: echo always\n",
    );
    let (report, observer) = run(&[wf], &options_with_cleanup(&env), counting.clone()).await;
    assert!(!report.success);
    assert_eq!(report.error_message().unwrap(), "Job 'broken' failed");
    let job = &report.workflows[0].jobs[0];
    assert_eq!(job.result, JobResult::Failure);
    let outcomes: Vec<_> = job.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [
            StepOutcome::Success,
            StepOutcome::Failure,
            StepOutcome::Skipped,
            StepOutcome::Success
        ]
    );
    assert_eq!(job.steps[1].exit_code, Some(3));
    let texts = observer.texts();
    assert!(texts.contains(&"always".to_string()));
    assert!(!texts.contains(&"never".to_string()));
    assert_cleaned_up_and_released(&env, &counting, SessionState::Failed);
}

#[tokio::test]
async fn a_timed_out_job_still_runs_cleanup_and_releases_the_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    // 0.02 minutes = 1.2 s.
    let wf = env.write(
        "slow.yml",
        "on: push\njobs:\n  slow:\n    runs-on: ubuntu-latest\n    timeout-minutes: 0.02\n    steps:\n      - run: echo start; sleep 30; echo never\n      - run: echo after\n",
    );
    let started = Instant::now();
    let (report, observer) = run(&[wf], &options_with_cleanup(&env), counting.clone()).await;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(!report.success);
    assert_eq!(report.errors, ["Job 'slow' failed"]);
    let job = &report.workflows[0].jobs[0];
    assert_eq!(job.result, JobResult::Failure);
    assert!(
        job.error
            .as_deref()
            .unwrap_or("")
            .contains("maximum execution time"),
        "{job:?}"
    );
    assert_eq!(job.steps[1].outcome, StepOutcome::Skipped);
    let texts = observer.texts();
    assert!(texts.contains(&"start".to_string()));
    assert!(!texts.contains(&"never".to_string()));
    assert_cleaned_up_and_released(&env, &counting, SessionState::Failed);
}

#[tokio::test]
async fn a_step_timeout_fails_only_that_step() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "step.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 30\n        timeout-minutes: 0.01\n        continue-on-error: true\n      - run: echo next\n",
    );
    let (report, _) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    let steps = &report.workflows[0].jobs[0].steps;
    assert_eq!(steps[0].outcome, StepOutcome::Failure);
    assert_eq!(steps[0].conclusion, StepOutcome::Success);
    assert!(
        steps[0]
            .error
            .as_deref()
            .unwrap()
            .contains("step has exceeded its timeout")
    );
    assert_eq!(steps[1].outcome, StepOutcome::Success);
    assert_all_released(&env, &counting);
}

const LONG: &str = "on: push\njobs:\n  long:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started; sleep 30; echo never\n      - run: echo after\n";

/// Runs `wf` with `options`, cancels the run (as Ctrl-C does) once a step printed `started`,
/// and checks that it then ended within seconds.
async fn run_and_cancel(
    wf: PathBuf,
    options: RunOptions,
    counting: &Arc<Counting>,
) -> (RunReport, Arc<Collect>) {
    let cancel = options.cancel.clone();
    let observer = Arc::new(Collect::default());
    let started = Instant::now();
    let task = {
        let (observer, counting) = (observer.clone(), counting.clone());
        tokio::spawn(async move {
            azlin_workflow::run_workflows(&[wf], &options, counting, observer).await
        })
    };
    while !observer.lines().iter().any(|l| l.text == "started") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the step never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let report = task.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    (report, observer)
}

/// The result of job `id`'s one run.
fn result_of(report: &RunReport, id: &str) -> JobResult {
    report.jobs().find(|j| j.id == id).unwrap().result
}

#[tokio::test]
async fn a_cancelled_run_still_runs_cleanup_and_releases_the_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write("long.yml", LONG);
    let (report, _) = run_and_cancel(wf, options_with_cleanup(&env), &counting).await;
    assert!(!report.success);
    assert_eq!(report.errors, ["Job 'long' was cancelled"]);
    let job = &report.workflows[0].jobs[0];
    assert_eq!(job.result, JobResult::Cancelled);
    assert_eq!(job.steps[0].outcome, StepOutcome::Cancelled);
    assert_eq!(job.steps[1].outcome, StepOutcome::Skipped);
    assert_cleaned_up_and_released(&env, &counting, SessionState::Cancelled);
}

/// A job cancelled mid-step, the steps after it, and the jobs that need it.
const CANCELLED_WITH_ALWAYS: &str = r#"on: push
jobs:
  long:
    runs-on: ubuntu-latest
    steps:
      - run: echo started; sleep 30; echo never
      - run: echo skipped-after-cancel
      - if: always()
        run: echo "always-ran ${{ job.status }}"
      - if: cancelled()
        run: echo cancelled-ran
      - if: failure()
        run: echo failure-ran
  cleanup:
    needs: long
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo "cleanup-ran ${{ needs.long.result }}"
      - run: echo cleanup-second-step
  on_cancel:
    needs: long
    if: cancelled()
    runs-on: ubuntu-latest
    steps:
      - run: echo on-cancel-ran
  normal:
    needs: long
    runs-on: ubuntu-latest
    steps:
      - run: echo never-normal
"#;

/// Asserts what [`CANCELLED_WITH_ALWAYS`] must do once cancelled.
fn assert_always_and_cancelled_ran(report: &RunReport, observer: &Collect) {
    let texts = observer.texts();
    for ran in [
        "always-ran cancelled",
        "cancelled-ran",
        "cleanup-ran cancelled",
        "cleanup-second-step",
        "on-cancel-ran",
    ] {
        assert!(texts.contains(&ran.to_string()), "{ran}: {texts:?}");
    }
    for never in [
        "never",
        "skipped-after-cancel",
        "failure-ran",
        "never-normal",
    ] {
        assert!(!texts.contains(&never.to_string()), "{never}: {texts:?}");
    }
    let long = report.jobs().find(|j| j.id == "long").unwrap();
    let outcomes: Vec<_> = long.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [
            StepOutcome::Cancelled,
            StepOutcome::Skipped,
            StepOutcome::Success,
            StepOutcome::Success,
            StepOutcome::Skipped
        ]
    );
    let results: Vec<_> = ["long", "cleanup", "on_cancel", "normal"]
        .iter()
        .map(|id| result_of(report, id))
        .collect();
    assert_eq!(
        results,
        [
            JobResult::Cancelled,
            JobResult::Success,
            JobResult::Success,
            JobResult::Cancelled
        ]
    );
    assert_eq!(
        report.errors,
        ["Job 'long' was cancelled", "Job 'normal' was cancelled"]
    );
}

#[tokio::test]
async fn after_a_cancel_always_and_cancelled_steps_and_jobs_still_run() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write("always.yml", CANCELLED_WITH_ALWAYS);
    let (report, observer) = run_and_cancel(wf, options_with_cleanup(&env), &counting).await;
    assert_always_and_cancelled_ran(&report, &observer);
    assert_cleaned_up_and_released(&env, &counting, SessionState::Cancelled);
}

#[tokio::test]
async fn after_a_cancel_jobs_that_still_run_get_and_release_their_own_vms() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write("always.yml", CANCELLED_WITH_ALWAYS);
    let mut options = env.options();
    options.vm_scope = VmScope::Job;
    let (report, observer) = run_and_cancel(wf, options, &counting).await;
    assert_always_and_cancelled_ran(&report, &observer);
    assert_eq!(counting.allocations(), 3, "long, cleanup and on_cancel");
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn after_a_job_timeout_always_and_cancelled_steps_still_run() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    // 0.02 minutes = 1.2 s.
    let wf = env.write(
        "slow.yml",
        r#"on: push
jobs:
  slow:
    runs-on: ubuntu-latest
    timeout-minutes: 0.02
    steps:
      - run: echo start; sleep 30; echo never
      - run: echo skipped-after-timeout
      - if: always()
        run: echo "always-ran ${{ job.status }}"
      - if: cancelled()
        run: echo cancelled-ran
  after:
    needs: slow
    if: always()
    runs-on: ubuntu-latest
    steps:
      - run: echo "after-ran ${{ needs.slow.result }}"
"#,
    );
    let (report, observer) = run(&[wf], &options_with_cleanup(&env), counting.clone()).await;
    assert_eq!(report.errors, ["Job 'slow' failed"]);
    let slow = report.jobs().find(|j| j.id == "slow").unwrap();
    assert_eq!(slow.result, JobResult::Failure);
    assert!(
        slow.error
            .as_deref()
            .unwrap_or("")
            .contains("maximum execution time"),
        "{slow:?}"
    );
    let outcomes: Vec<_> = slow.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(
        outcomes,
        [
            StepOutcome::Failure,
            StepOutcome::Skipped,
            StepOutcome::Success,
            StepOutcome::Success
        ]
    );
    let texts = observer.texts();
    for ran in ["always-ran cancelled", "cancelled-ran", "after-ran failure"] {
        assert!(texts.contains(&ran.to_string()), "{ran}: {texts:?}");
    }
    assert!(!texts.contains(&"skipped-after-timeout".to_string()));
    assert_eq!(result_of(&report, "after"), JobResult::Success);
    assert_cleaned_up_and_released(&env, &counting, SessionState::Failed);
}

#[tokio::test]
async fn a_dropped_run_future_still_runs_cleanup_and_releases_the_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write("long.yml", LONG);
    let options = options_with_cleanup(&env);
    let manager = SessionManager::new(counting.clone(), azlin_workflow::session_config(&options));
    let observer = Arc::new(Collect::default());
    {
        let files = [wf];
        let run = azlin_workflow::run_workflows_in(&manager, &files, &options, observer.clone());
        tokio::pin!(run);
        let started = Instant::now();
        loop {
            tokio::select! {
                _ = &mut run => panic!("the run ended on its own"),
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
            if observer.started_steps.load(Ordering::SeqCst) > 0
                && observer.lines().iter().any(|l| l.text == "started")
            {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(10));
        }
        // Leaving the block drops the run future, as Ctrl-C would.
    }
    manager.wait_idle().await;
    assert_cleaned_up_and_released(&env, &counting, SessionState::Cancelled);
}

#[tokio::test]
async fn an_invalid_workflow_is_refused_before_any_vm_exists() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let good = env.write(
        "good.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo hi\n",
    );
    let bad = env.write(
        "bad.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: [oops]\n",
    );
    let err = azlin_workflow::run_workflows(
        &[good, bad],
        &env.options(),
        counting.clone(),
        Arc::new(azlin_workflow::NullObserver),
    )
    .await
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("bad.yml:6:"), "{text}");
    assert!(
        text.contains("expected a string, number or boolean"),
        "{text}"
    );
    assert_eq!(err.kind(), azlin_core::ErrorKind::Usage);
    assert_eq!(counting.allocations(), 0);
}

#[tokio::test]
async fn a_step_whose_if_still_holds_goes_on_when_the_run_is_cancelled() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "survive.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - if: always()\n        run: echo started; sleep 1; echo survived\n      - run: echo skipped-after-cancel\n",
    );
    let (report, observer) = run_and_cancel(wf, options_with_cleanup(&env), &counting).await;
    let texts = observer.texts();
    assert_eq!(texts, ["started", "survived"]);
    let job = &report.workflows[0].jobs[0];
    assert_eq!(job.result, JobResult::Cancelled);
    let outcomes: Vec<_> = job.steps.iter().map(|s| s.outcome).collect();
    assert_eq!(outcomes, [StepOutcome::Success, StepOutcome::Skipped]);
    assert_cleaned_up_and_released(&env, &counting, SessionState::Cancelled);
}
