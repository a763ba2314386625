//! Actions and reusable workflows on a (sim) VM, beyond the act corpus: reusable-only
//! workflows, paths that leave the workspace, what needs Docker, post stages after a failure,
//! and remote actions that are not in the cache.

use crate::harness::{Collect, Counting, Env, assert_all_released, run};
use azlin_workflow::{JobResult, RunOptions, RunReport, StepOutcome, VmScope};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Writes `files` (path, text) under `root`.
fn write_tree(root: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

/// Runs `caller.yml` of a repository made of `files` under `env`, with `options` from
/// `configure`.
async fn run_caller(
    env: &Env,
    counting: Arc<Counting>,
    files: &[(&str, &str)],
    configure: impl FnOnce(&mut RunOptions),
) -> (RunReport, Arc<Collect>) {
    let repo = env.path("repo");
    write_tree(&repo, files);
    let mut options = env.options();
    options.repo_dir = Some(repo.clone());
    configure(&mut options);
    run(
        &[repo.join(".github/workflows/caller.yml")],
        &options,
        counting,
    )
    .await
}

#[tokio::test]
async fn a_workflow_of_reusable_workflow_calls_runs_the_called_jobs() {
    for scope in [VmScope::Workflow, VmScope::Job] {
        let env = Env::new();
        let counting = env.allocator(Duration::ZERO);
        let (report, observer) = run_caller(
            &env,
            counting.clone(),
            &[
                (
                    ".github/workflows/called.yml",
                    "on:\n  workflow_call:\n    inputs:\n      who: {type: string, required: true}\n      twice: {type: boolean, default: false}\n    outputs:\n      said: {value: '${{ jobs.greet.outputs.said }}'}\njobs:\n  greet:\n    runs-on: ubuntu-latest\n    outputs:\n      said: ${{ steps.s.outputs.said }}\n    steps:\n      - id: s\n        run: |\n          echo \"hello ${{ inputs.who }} twice=${{ inputs.twice }} secret=${{ secrets.token }}\"\n          echo said=hello-${{ inputs.who }} >> $GITHUB_OUTPUT\n",
                ),
                (
                    ".github/workflows/caller.yml",
                    "on: push\njobs:\n  first:\n    uses: ./.github/workflows/called.yml\n    with:\n      who: octocat\n      twice: ${{ true }}\n    secrets:\n      token: ${{ secrets.TOKEN }}\n  second:\n    needs: first\n    uses: ./.github/workflows/called.yml\n    with:\n      who: ${{ needs.first.outputs.said }}\n    secrets: inherit\n",
                ),
            ],
            |options| {
                options.vm_scope = scope;
                options.secrets.insert("TOKEN".into(), "t0ken-value".into());
            },
        )
        .await;
        assert!(report.success, "{scope:?}: {:?}", report.errors);
        let jobs: Vec<(&str, &str)> = report
            .jobs()
            .map(|j| (j.id.as_str(), j.name.as_str()))
            .collect();
        assert_eq!(
            jobs,
            [("first", "first / greet"), ("second", "second / greet")]
        );
        let texts = observer.texts();
        assert!(
            texts.contains(&"hello octocat twice=true secret=***".to_string()),
            "{texts:?}"
        );
        // `inherit` passes the caller's secrets (names are case-insensitive, as on GitHub).
        assert!(
            texts.contains(&"hello hello-octocat twice=false secret=***".to_string()),
            "{texts:?}"
        );
        let expected_vms = if scope == VmScope::Workflow { 1 } else { 2 };
        assert_eq!(counting.allocations(), expected_vms, "{scope:?}");
        assert_all_released(&env, &counting);
    }
}

#[tokio::test]
async fn a_call_with_a_missing_required_input_fails_that_job() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let (report, observer) = run_caller(
        &env,
        counting.clone(),
        &[
            (
                ".github/workflows/called.yml",
                "on:\n  workflow_call:\n    inputs:\n      who: {type: string, required: true}\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo never\n",
            ),
            (
                ".github/workflows/caller.yml",
                "on: push\njobs:\n  call:\n    uses: ./.github/workflows/called.yml\n  other:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo other ran\n",
            ),
        ],
        |_| {},
    )
    .await;
    assert_eq!(report.errors, ["Job 'call' failed"]);
    let call = report.jobs().find(|j| j.id == "call").unwrap();
    assert!(call.error.as_deref().unwrap().contains("who"), "{call:?}");
    assert!(observer.texts().contains(&"other ran".to_string()));
    assert!(!observer.texts().contains(&"never".to_string()));
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn paths_that_leave_the_workspace_are_refused_and_nothing_is_touched() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let outside = env.path("outside");
    std::fs::write(outside.join("keep.txt"), "precious").unwrap();
    let wf = env.write(
        "escape.yml",
        &format!(
            "on: push\njobs:\n  checkout:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          path: {}\n  local:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: ./../x\n  dotdot:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n        with:\n          path: a/../../..\n",
            outside.display()
        ),
    );
    let (report, _) = run(&[wf], &env.options(), counting.clone()).await;
    assert_eq!(
        report.errors,
        [
            "Job 'checkout' failed",
            "Job 'local' failed",
            "Job 'dotdot' failed"
        ]
    );
    for job in report.jobs() {
        let error = job.steps[0].error.as_deref().unwrap();
        assert!(
            error.contains("is not under the job's workspace"),
            "{error}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "precious"
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn what_needs_docker_fails_its_job_clearly_and_the_others_go_on() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "docker.yml",
        "on: push\njobs:\n  container:\n    runs-on: ubuntu-latest\n    container: alpine:3\n    steps:\n      - run: echo never\n  services:\n    runs-on: ubuntu-latest\n    services:\n      db: {image: postgres}\n    steps:\n      - run: echo never\n  image:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: docker://alpine:3\n  plain:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo plain ran\n",
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    assert_eq!(
        report.errors,
        [
            "Job 'container' failed",
            "Job 'services' failed",
            "Job 'image' failed"
        ]
    );
    let error_of = |id: &str| {
        let job = report.jobs().find(|j| j.id == id).unwrap();
        job.error
            .clone()
            .or_else(|| job.steps.first().and_then(|s| s.error.clone()))
            .unwrap()
    };
    for id in ["container", "services", "image"] {
        assert!(
            error_of(id).contains("needs Docker on the VM; not supported yet"),
            "{id}: {}",
            error_of(id)
        );
    }
    assert!(observer.texts().contains(&"plain ran".to_string()));
    assert!(!observer.texts().contains(&"never".to_string()));
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn post_stages_run_in_reverse_order_after_a_failure() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let repo = env.path("repo");
    let js_action = |name: &str| {
        format!(
            "name: {name}\ninputs:\n  word: {{default: {name}}}\nruns:\n  using: node20\n  pre: pre.js\n  pre-if: inputs.word == 'b'\n  main: main.js\n  post: post.js\n"
        )
    };
    let (a, b) = (js_action("a"), js_action("b"));
    let pre = "console.log('pre ' + process.env.INPUT_WORD); console.log('::save-state name=seen::' + process.env.INPUT_WORD)\n";
    let main = "console.log('main ' + process.env.INPUT_WORD + ' state=' + (process.env.STATE_seen || ''))\n";
    let post = "console.log('post ' + process.env.INPUT_WORD + ' state=' + (process.env.STATE_seen || ''))\n";
    write_tree(
        &repo,
        &[
            ("a/action.yml", a.as_str()),
            ("a/pre.js", pre),
            ("a/main.js", main),
            ("a/post.js", post),
            ("b/action.yml", b.as_str()),
            ("b/pre.js", pre),
            ("b/main.js", main),
            ("b/post.js", post),
        ],
    );
    let wf = env.write(
        "post.yml",
        "on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/checkout@v4\n      - uses: ./a\n      - uses: ./b\n      - run: exit 3\n      - run: echo skipped\n",
    );
    let mut options = env.options();
    options.repo_dir = Some(repo);
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert_eq!(report.errors, ["Job 'j' failed"]);
    let texts = observer.texts();
    let said: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("pre ") || t.starts_with("main ") || t.starts_with("post "))
        .collect();
    assert_eq!(
        said,
        [
            "main a state=",
            "pre b",
            "main b state=b",
            "post b state=b",
            "post a state="
        ]
    );
    let job = report.jobs().next().unwrap();
    let steps: Vec<(&str, StepOutcome)> = job
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.outcome))
        .collect();
    assert_eq!(
        steps[3..],
        [
            ("Run exit 3", StepOutcome::Failure),
            ("Run echo skipped", StepOutcome::Skipped),
            ("Post Run ./b", StepOutcome::Success),
            ("Post Run ./a", StepOutcome::Success)
        ]
    );
    assert_eq!(job.result, JobResult::Failure);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn a_remote_action_missing_from_the_cache_fails_offline_naming_it() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "offline.yml",
        "on: push\njobs:\n  u:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: actions/setup-node@v4\n        with:\n          node-version: 20\n      - run: echo unreachable\n",
    );
    let mut options = env.options();
    options.actions.offline = true;
    options.actions.cache_dir = env.path("cache");
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert_eq!(report.errors, ["Job 'u' failed"]);
    let step = &report.workflows[0].jobs[0].steps[0];
    assert_eq!(step.outcome, StepOutcome::Failure);
    let error = step.error.as_deref().unwrap();
    assert!(error.contains("actions/setup-node@v4"), "{error}");
    assert!(
        observer
            .lines()
            .iter()
            .any(|l| l.text.contains("actions/setup-node@v4"))
    );
    assert_eq!(
        report.workflows[0].jobs[0].steps[1].outcome,
        StepOutcome::Skipped
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn pwsh_steps_say_when_pwsh_is_missing() {
    if which("pwsh") {
        return;
    }
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "pwsh.yml",
        "on: push\njobs:\n  p:\n    runs-on: ubuntu-latest\n    steps:\n      - shell: pwsh\n        run: Write-Output hi\n",
    );
    let (report, _) = run(&[wf], &env.options(), counting.clone()).await;
    let error = report.workflows[0].jobs[0].steps[0].error.clone().unwrap();
    assert!(error.contains("pwsh was not found on the VM"), "{error}");
    assert_all_released(&env, &counting);
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

#[tokio::test]
async fn an_override_folder_stands_in_for_a_remote_action() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let folder = env.path("override");
    write_tree(
        &folder,
        &[(
            "greet/action.yml",
            "inputs:\n  who: {default: world}\nruns:\n  using: composite\n  steps:\n    - run: echo \"hello ${{ inputs.who }} from $GITHUB_ACTION_REPOSITORY@$GITHUB_ACTION_REF\"\n      shell: bash\n",
        )],
    );
    let wf = env.write(
        "override.yml",
        "on: push\njobs:\n  o:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: someone/tools/greet@v2\n        with:\n          who: override\n",
    );
    let mut options = env.options();
    options.actions.offline = true;
    options.actions.cache_dir = env.path("cache");
    options
        .actions
        .overrides
        .push(("someone/tools@v2".into(), folder));
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    assert!(
        observer
            .texts()
            .contains(&"hello override from someone/tools@v2".to_string()),
        "{:?}",
        observer.texts()
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn reusable_workflows_nest_at_most_ten_levels() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    // A workflow that calls itself: the tenth level is refused, and the run ends.
    let (report, _) = run_caller(
        &env,
        counting.clone(),
        &[(
            ".github/workflows/caller.yml",
            "on: [push, workflow_call]\njobs:\n  again:\n    uses: ./.github/workflows/caller.yml\n",
        )],
        |_| {},
    )
    .await;
    assert_eq!(report.errors, ["Job 'again' failed"]);
    let job = report.jobs().next().unwrap();
    let error = job.error.as_deref().unwrap();
    assert!(error.contains("at most 10 levels"), "{error}");
    assert_eq!(job.name, ["again"; 10].join(" / "));
    assert_eq!(counting.allocations(), 0);
}
