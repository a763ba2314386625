//! `azlin run`'s input flags on the fast `sim` provider: `--input` typed by the workflow's
//! declaration, `--eventpath`, `--secret` from the environment, `--secret-file` and
//! `--env-file` (`.env` files), `-C` for what `actions/checkout` copies, and the refusals of
//! bad ones before anything is made.

use crate::support::{Azlin, Run};
use std::path::{Path, PathBuf};

const DISPATCH: &str = r#"on:
  workflow_dispatch:
    inputs:
      flag:
        type: boolean
        default: false
      name:
        default: world
jobs:
  show:
    runs-on: ubuntu-latest
    steps:
      - run: echo "flag=${{ inputs.flag == true }} event=${{ github.event.inputs.flag }} name=${{ inputs.name }}"
"#;

/// Writes `name` under the test's home with `text`.
fn file(azlin: &Azlin, name: &str, text: &str) -> PathBuf {
    let path = azlin.home.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// `azlin run WORKFLOW --provider sim` with `extra`.
fn run_on_sim(azlin: &Azlin, workflow: &Path, extra: &[&str]) -> Run {
    let args = [
        &["run", workflow.to_str().unwrap(), "--provider", "sim"],
        extra,
    ]
    .concat();
    azlin.run(&args)
}

#[test]
fn bad_run_flags_exit_64_before_anything_is_made() {
    let azlin = Azlin::new();
    let workflow = file(&azlin, "dispatch.yml", DISPATCH);
    let broken = file(&azlin, "broken.json", "{\"pull_request\": ");
    let unterminated = file(&azlin, "bad.env", "A=1\nB=\"open\n");
    let missing = azlin.home.path().join("nowhere");
    let cases: &[(&[&str], String)] = &[
        (
            &["--event", "workflow_dispatch", "--input", "x=1"],
            "declares no input 'x' (declared: flag, name)".to_string(),
        ),
        (
            &["--input", "x=1"],
            "declares no input 'x' (declared: flag, name)".to_string(),
        ),
        (
            &["--event", "workflow_dispatch", "--input", "flag=maybe"],
            "input 'flag' is a boolean: 'maybe' is not one".to_string(),
        ),
        (
            &["--secret", "AZLIN_TEST_UNSET"],
            "the environment variable AZLIN_TEST_UNSET is not set".to_string(),
        ),
        (
            &["--eventpath", broken.to_str().unwrap()],
            format!("--eventpath {}: not valid JSON", broken.display()),
        ),
        (
            &["--eventpath", missing.to_str().unwrap()],
            format!("--eventpath {}: cannot read it", missing.display()),
        ),
        (
            &["--env-file", unterminated.to_str().unwrap()],
            "line 2: unterminated quoted value".to_string(),
        ),
        (
            &["-C", missing.to_str().unwrap()],
            "-C/--directory: no folder".to_string(),
        ),
        (
            &["--action-override", "octo/act=dir"],
            "is not OWNER/REPO@REF=DIR".to_string(),
        ),
        (
            &["--actions-url", "http://example.com"],
            "http:// is only allowed on loopback".to_string(),
        ),
    ];
    for (extra, message) in cases {
        let run = run_on_sim(&azlin, &workflow, extra).expect(64);
        assert!(
            run.stderr.contains(message.as_str()),
            "{extra:?}: expected {message:?} in:\n{}",
            run.stderr
        );
    }
    assert!(!azlin.state_dir().join("sessions").exists());
    azlin.assert_no_vms();
}

#[test]
fn a_dispatch_input_is_typed_by_its_declaration() {
    let azlin = Azlin::new();
    let workflow = file(&azlin, "dispatch.yml", DISPATCH);
    let run = run_on_sim(
        &azlin,
        &workflow,
        &["--event", "workflow_dispatch", "--input", "flag=TRUE"],
    )
    .expect(0);
    assert!(
        run.stdout.contains("flag=true event=true name=world"),
        "{}",
        run.stdout
    );
    // The sim provider says first that steps run on this machine.
    assert!(
        run.stderr
            .lines()
            .next()
            .is_some_and(|l| l.contains("runs steps as processes on this machine")),
        "{}",
        run.stderr
    );
    azlin.assert_no_vms();
}

#[test]
fn secrets_from_the_environment_and_a_file_are_masked_and_env_files_reach_steps() {
    let azlin = Azlin::new();
    let workflow = file(
        &azlin,
        "secrets.yml",
        r#"on: push
jobs:
  use:
    runs-on: ubuntu-latest
    steps:
      - env:
          TOKEN: ${{ secrets.FROM_ENV }}
          CERT: ${{ secrets.CERT }}
          OVER: ${{ secrets.OVER }}
        run: |
          echo "token=$TOKEN"
          printf '%s\n' "$CERT"
          [ "$(printf '%s\n' "$CERT" | wc -l)" = 2 ] && echo cert-has-two-lines
          [ "$OVER" = from-flag ] && echo flag-wins
          echo "msg=$MSG"
"#,
    );
    let secrets = file(
        &azlin,
        "secrets.env",
        "# certificates\nCERT=\"first-line-a1\nsecond-line-b2\"\nOVER=from-file\n",
    );
    let env = file(
        &azlin,
        "vars.env",
        "GREETING=hello\nexport WHO='the world'\nMSG=\"${GREETING}, $WHO\" # greeting\n",
    );
    let mut cmd = azlin.command(&[
        "run",
        workflow.to_str().unwrap(),
        "--provider",
        "sim",
        "--secret",
        "FROM_ENV",
        "--secret-file",
        secrets.to_str().unwrap(),
        "--secret",
        "OVER=from-flag",
        "--env-file",
        env.to_str().unwrap(),
    ]);
    cmd.env("FROM_ENV", "hunter2-token");
    let run = Run::from(cmd.output().unwrap()).expect(0);
    let out = &run.stdout;
    assert!(out.contains("token=***"), "{out}");
    assert!(out.contains("cert-has-two-lines"), "{out}");
    assert!(out.contains("flag-wins"), "{out}");
    assert!(out.contains("msg=hello, the world"), "{out}");
    for secret in ["hunter2-token", "first-line-a1", "second-line-b2"] {
        assert!(!out.contains(secret), "{secret} shown in:\n{out}");
        assert!(
            !run.stderr.contains(secret),
            "{secret} shown in:\n{}",
            run.stderr
        );
    }
    azlin.assert_no_vms();
}

#[test]
fn a_pull_request_payload_and_a_directory_shape_the_run() {
    let azlin = Azlin::new();
    let repo = azlin.home.path().join("elsewhere");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("marker.txt"), "copied-from-elsewhere\n").unwrap();
    let workflow = file(
        &azlin,
        "pr.yml",
        r#"on: pull_request
jobs:
  pr:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: cat marker.txt
      - run: echo "head=${{ github.head_ref }} base=$GITHUB_BASE_REF ref=$GITHUB_REF title=${{ github.event.pull_request.title }}"
"#,
    );
    let payload = file(
        &azlin,
        "event.json",
        r#"{"number": 7, "pull_request": {"number": 7, "title": "Add x",
            "head": {"ref": "feature-x"}, "base": {"ref": "main"}}}"#,
    );
    let run = run_on_sim(
        &azlin,
        &workflow,
        &[
            "--event",
            "pull_request",
            "--eventpath",
            payload.to_str().unwrap(),
            "-C",
            repo.to_str().unwrap(),
        ],
    )
    .expect(0);
    let out = &run.stdout;
    assert!(out.contains("copied-from-elsewhere"), "{out}");
    assert!(
        out.contains("head=feature-x base=main ref=refs/pull/7/merge title=Add x"),
        "{out}"
    );
    azlin.assert_no_vms();
}

#[test]
fn keep_failed_keeps_the_vm_of_a_failed_session_and_says_how_to_reach_it() {
    let azlin = Azlin::new();
    let failing = file(
        &azlin,
        "failing.yml",
        "on: push\njobs:\n  broken:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo evidence > $HOME/evidence.txt && exit 1\n",
    );
    let run = run_on_sim(&azlin, &failing, &["--keep-failed"]).expect(1);
    let kept = run
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("⚠ kept VM "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no kept VM in:\n{}", run.stderr))
        .to_string();
    assert!(run.stderr.contains(&format!("azlin connect {kept}")));
    let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
    assert!(listed.to_string().contains(&kept), "{listed}");
    // The VM is as the failed step left it.
    let evidence = azlin
        .run(&["connect", &kept, "--", "cat", "evidence.txt"])
        .expect(0);
    assert_eq!(evidence.stdout.trim(), "evidence");
    azlin.run(&["delete", &kept, "--yes"]).expect(0);
    azlin.assert_no_vms();
    // Without the flag the failed session's VM is released as always.
    run_on_sim(&azlin, &failing, &[]).expect(1);
    azlin.assert_no_vms();
}
