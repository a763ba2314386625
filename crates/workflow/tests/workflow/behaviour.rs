//! End-to-end behaviour of steps on a (sim) VM: masking, logs, checkout, actions that cannot
//! run, hashFiles, shells, environment files, the job summary, and the JSON report.

use crate::harness::{Env, assert_all_released, run};
use azlin_workflow::{JobResult, RunAs, SessionManager, StepOutcome};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[tokio::test]
async fn secrets_and_added_masks_never_reach_output_or_logs() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "mask.yml",
        "on: push\njobs:\n  m:\n    runs-on: ubuntu-latest\n    steps:\n      - name: leak\n        run: |\n          echo \"token is ${{ secrets.TOKEN }}\"\n          echo \"env has $TOKEN\"\n          echo '::add-mask::runtime-value-42'\n          echo 'then runtime-value-42 appears'\n        env:\n          TOKEN: ${{ secrets.TOKEN }}\n",
    );
    let mut options = env.options();
    options
        .secrets
        .insert("TOKEN".into(), "hunter2-s3cret".into());
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    let texts = observer.texts();
    assert_eq!(texts, ["token is ***", "env has ***", "then *** appears"]);
    let log = report.workflows[0].jobs[0].steps[0].log.clone().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.contains("hunter2") && !logged.contains("runtime-value-42"),
        "{logged}"
    );
    assert!(logged.contains("token is ***"));
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn every_step_gets_its_own_log_file_under_the_logs_folder() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "logs.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - name: first\n        run: echo one\n      - run: echo two >&2\n",
    );
    let (report, _) = run(&[wf], &env.options(), counting).await;
    let steps = &report.workflows[0].jobs[0].steps;
    let logs: Vec<_> = steps.iter().map(|s| s.log.clone().unwrap()).collect();
    assert!(logs[0].starts_with(env.path("logs").join("logs").join("j")));
    assert_eq!(std::fs::read_to_string(&logs[0]).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(&logs[1]).unwrap(), "two\n");
    assert_ne!(logs[0], logs[1]);
    assert_eq!(steps[1].name, "Run echo two >&2");
}

#[tokio::test]
async fn checkout_copies_the_repository_into_the_workspace() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let repo = env.path("repo");
    std::fs::create_dir_all(repo.join(".github/workflows")).unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(repo.join("src/hello.txt"), "hello from the repo\n").unwrap();
    let wf = repo.join(".github/workflows/ci.yml");
    std::fs::write(
        &wf,
        "on: push\njobs:\n  c:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - run: cat src/hello.txt; echo \"KEY=${{ hashFiles('src/*.txt') }}\"\n      - uses: actions/checkout@v4\n        with:\n          path: sub\n      - run: test -f sub/.github/workflows/ci.yml && echo nested-ok\n",
    )
    .unwrap();
    let mut options = env.options();
    options.repository = None;
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert!(report.success, "{:?} {:?}", report.errors, observer.lines());
    let texts = observer.texts();
    assert!(
        texts.contains(&"hello from the repo".to_string()),
        "{texts:?}"
    );
    assert!(texts.contains(&"nested-ok".to_string()), "{texts:?}");
    let key = texts.iter().find_map(|t| t.strip_prefix("KEY=")).unwrap();
    assert_eq!(key.len(), 64, "hashFiles gives a sha256: {key}");
    // Not a git repository: the repository is local/<folder>.
    assert!(texts.iter().any(|t| t.starts_with("Copying ")));
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn shells_environment_files_and_the_summary() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "shells.yml",
        r###"on: push
env:
  LEVEL: workflow
jobs:
  s:
    runs-on: ubuntu-latest
    env:
      LEVEL: job
    outputs:
      greeting: ${{ steps.py.outputs.greeting }}
    steps:
      - id: py
        shell: python
        run: |
          import os
          with open(os.environ["GITHUB_OUTPUT"], "a") as f:
              f.write("greeting<<EOF\nhello\nworld\nEOF\n")
          print("python", os.environ["LEVEL"])
      - shell: bash
        run: |
          [[ -o pipefail ]] && echo pipefail-on
          echo "## Summary" >> "$GITHUB_STEP_SUMMARY"
          echo "STATE_X=1" >> "$GITHUB_STATE"
      - shell: perl {0}
        run: print "perl ok\n";
        if: ${{ false }}
      - run: |
          [ "${{ steps.py.outputs.greeting }}" = "$(printf 'hello\nworld')" ] && echo multi-line-ok
          echo "RUNNER_OS=$RUNNER_OS CI=$CI ACTIONS=$GITHUB_ACTIONS WS=$GITHUB_WORKSPACE"
          test "$(pwd)" = "$GITHUB_WORKSPACE" && echo in-workspace
          test -s "$GITHUB_EVENT_PATH" && cat "$GITHUB_EVENT_PATH"
"###,
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(report.success, "{:?} {:?}", report.errors, observer.lines());
    let texts = observer.texts();
    assert!(texts.contains(&"python job".to_string()), "{texts:?}");
    assert!(texts.contains(&"pipefail-on".to_string()), "{texts:?}");
    assert!(texts.contains(&"multi-line-ok".to_string()), "{texts:?}");
    assert!(texts.contains(&"in-workspace".to_string()), "{texts:?}");
    assert!(
        texts.contains(&"{}".to_string()),
        "empty event payload: {texts:?}"
    );
    let env_line = texts.iter().find(|t| t.starts_with("RUNNER_OS=")).unwrap();
    assert!(env_line.starts_with("RUNNER_OS=Linux CI=true ACTIONS=true WS="));
    assert!(env_line.ends_with("/work/test/test"), "{env_line}");
    let job = &report.workflows[0].jobs[0];
    assert_eq!(job.steps[1].summary, "## Summary\n");
    assert_eq!(job.steps[2].outcome, StepOutcome::Skipped);
    assert_eq!(job.outputs["greeting"], "hello\nworld");
    // The report serialises for `-o json`.
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["success"], true);
    assert_eq!(json["workflows"][0]["jobs"][0]["result"], "success");
    assert_eq!(
        json["workflows"][0]["jobs"][0]["steps"][2]["outcome"],
        "skipped"
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn set_env_is_refused_unless_unsecure_commands_are_allowed() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "setenv.yml",
        "on: push\njobs:\n  e:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo '::set-env name=FOO::bar'\n",
    );
    let (report, _) = run(&[wf], &env.options(), counting).await;
    assert_eq!(report.errors, ["Job 'e' failed"]);
    let step = &report.workflows[0].jobs[0].steps[0];
    assert_eq!(step.exit_code, Some(0));
    assert!(
        step.error
            .as_deref()
            .unwrap()
            .contains("`set-env` command is disabled")
    );
}

#[tokio::test]
async fn job_outputs_needs_and_job_level_if() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "needs.yml",
        r#"on: push
jobs:
  first:
    runs-on: ubuntu-latest
    outputs:
      v: ${{ steps.s.outputs.v }}
    steps:
      - id: s
        run: echo "v=42" >> "$GITHUB_OUTPUT"
  second:
    needs: first
    if: needs.first.outputs.v == 42
    runs-on: ubuntu-latest
    steps:
      - run: echo "got ${{ needs.first.outputs.v }} from a ${{ needs.first.result }} job"
  never:
    needs: first
    if: github.event_name == 'pull_request'
    runs-on: ubuntu-latest
    steps:
      - run: exit 1
  mac:
    runs-on: macos-latest
    steps:
      - run: exit 1
"#,
    );
    let (report, observer) = run(&[wf], &env.options(), counting).await;
    assert!(report.success, "{:?}", report.errors);
    let texts = observer.texts();
    assert!(
        texts.contains(&"got 42 from a success job".to_string()),
        "{texts:?}"
    );
    let result = |id: &str| {
        report.workflows[0]
            .jobs
            .iter()
            .find(|j| j.id == id)
            .unwrap()
            .result
    };
    assert_eq!(result("never"), JobResult::Skipped);
    assert_eq!(result("mac"), JobResult::Skipped);
}

#[tokio::test]
async fn fail_fast_cancels_the_rest_of_a_matrix() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "ff.yml",
        "on: push\njobs:\n  t:\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        n: [1, 2, 3]\n    steps:\n      - run: test ${{ matrix.n }} -ne 1\n",
    );
    let (report, _) = run(&[wf], &env.options(), counting.clone()).await;
    let results: Vec<_> = report.workflows[0]
        .jobs
        .iter()
        .map(|j| (j.name.clone(), j.result))
        .collect();
    assert_eq!(
        results,
        [
            ("t (1)".to_string(), JobResult::Failure),
            ("t (2)".to_string(), JobResult::Cancelled),
            ("t (3)".to_string(), JobResult::Cancelled)
        ]
    );
    assert_eq!(report.errors, ["Job 't' failed"]);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn run_as_root_is_a_no_op_when_the_login_user_is_root() {
    // On sim the "login user" is whoever runs the tests; this checks the root path as root.
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipped: needs to run as root");
        return;
    }
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let mut config = azlin_workflow::session_config(&env.options());
    config.run_as = RunAs::Root;
    let manager = SessionManager::new(counting.clone(), config);
    let session = manager
        .open("probe", &[], &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(session.facts().uid, 0);
    assert_eq!(session.facts().runner, "sh -s", "no sudo when already root");
    let mut out = Vec::new();
    let code = session
        .run("id -u", &mut |_, b| out.extend_from_slice(b))
        .await
        .unwrap();
    assert_eq!((code, String::from_utf8_lossy(&out).trim()), (0, "0"));
    session
        .close(azlin_workflow::SessionState::Completed, "done")
        .await;
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn event_payload_inputs_vars_and_job_filter() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "dispatch.yml",
        r#"on:
  workflow_dispatch:
    inputs:
      level:
        default: low
      other:
        default: kept
jobs:
  setup:
    runs-on: ubuntu-latest
    outputs:
      x: ${{ steps.s.outputs.x }}
    steps:
      - id: s
        run: echo "x=from-setup" >> "$GITHUB_OUTPUT"
  main:
    needs: setup
    runs-on: ubuntu-latest
    steps:
      - run: echo "INFO ${{ inputs.level }} ${{ inputs.other }} ${{ github.event.inputs.level }} ${{ vars.COLOR }} ${{ needs.setup.outputs.x }} ${{ github.actor }} ${{ github.event_name }}"
  unrelated:
    runs-on: ubuntu-latest
    steps:
      - run: echo "UNRELATED"
"#,
    );
    // Not triggered by push: nothing runs, nothing is allocated.
    let (report, _) = run(std::slice::from_ref(&wf), &env.options(), counting.clone()).await;
    assert!(report.success && !report.workflows[0].triggered);
    assert_eq!(counting.allocations(), 0);

    let mut options = env.options();
    options.event = "workflow_dispatch".into();
    options.event_payload = serde_json::json!({"inputs": {"level": "high"}});
    options.vars.insert("COLOR".into(), "blue".into());
    options.job = Some("main".into());
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    let texts = observer.texts();
    assert!(
        texts.contains(&"INFO high kept high blue from-setup tester workflow_dispatch".to_string()),
        "{texts:?}"
    );
    assert!(
        !texts.contains(&"UNRELATED".to_string()),
        "--job runs the job and what it needs"
    );
    let ids: Vec<_> = report.workflows[0]
        .jobs
        .iter()
        .map(|j| j.id.as_str())
        .collect();
    assert_eq!(ids, ["setup", "main"]);
    assert_all_released(&env, &counting);

    let mut options = env.options();
    options.job = Some("nope".into());
    let err = azlin_workflow::run_workflows(
        &[env.path("workflows").join("dispatch.yml")],
        &options,
        counting,
        std::sync::Arc::new(azlin_workflow::NullObserver),
    )
    .await
    .unwrap_err();
    assert_eq!(err.to_string(), "no workflow has a job named 'nope'");
}
