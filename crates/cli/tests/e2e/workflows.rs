//! `azlin run` on real nspawn VMs: the act conformance corpus (its remote actions served by an
//! HTTPS git server on loopback with the test's own CA), one VM per session, and the VM released
//! when the run is interrupted.

use crate::support::{Azlin, nspawn_processes};
use azlin_testkit::{ActionRepos, GitServer, conformance};
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// Cases that cannot pass here for a reason outside the runner, with that reason. Empty: every
/// case runs on real VMs.
const EXCLUDED: &[(&str, &str)] = &[];

/// How many cases run at once (each on its own VM).
const PARALLEL: usize = 4;

fn assert_no_vm_left(azlin: &Azlin) {
    let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
    assert!(listed.as_array().unwrap().is_empty(), "VMs left: {listed}");
    assert!(nspawn_processes(&azlin.home.path().display().to_string()).is_empty());
}

#[test]
fn act_corpus_on_nspawn_vms() {
    let cases: Vec<_> = conformance::cases()
        .into_iter()
        .filter(|c| !EXCLUDED.iter().any(|(n, _)| *n == c.name))
        .collect();
    assert_eq!(
        cases.len() + EXCLUDED.len(),
        60,
        "the corpus at {}",
        conformance::corpus_dir().display()
    );
    let azlin = Azlin::new();
    let repos = ActionRepos::new();
    let server = GitServer::serve(repos.root(), "127.0.0.1".parse().unwrap(), "localhost");
    let mut failures = Vec::new();
    let mut passed = 0;
    for chunk in cases.chunks(PARALLEL) {
        let runs: Vec<_> = chunk
            .iter()
            .map(|case| {
                let mut args: Vec<String> = vec!["run".into()];
                args.extend(
                    case.workflow_files()
                        .iter()
                        .map(|f| f.display().to_string()),
                );
                args.extend(
                    [
                        "--provider",
                        "nspawn",
                        "--event",
                        &case.event,
                        "--actor",
                        "nektos/act",
                        "--repository",
                        "nektos/act",
                        "-C",
                        &conformance::corpus_dir().display().to_string(),
                        "--actions-url",
                        &server.url,
                        "--actions-ca-cert",
                        &server.ca_path.display().to_string(),
                    ]
                    .map(String::from),
                );
                for (name, value) in &case.secrets {
                    args.extend(["--secret".to_string(), format!("{name}={value}")]);
                }
                let payload = case.dir().join("event.json");
                if payload.is_file() {
                    args.extend(["--eventpath".to_string(), payload.display().to_string()]);
                }
                let child = azlin
                    .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                (case, child)
            })
            .collect();
        for (case, child) in runs {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            if case.matches(out.status.success(), &stderr) {
                passed += 1;
            } else {
                let tail: Vec<&str> = stderr
                    .lines()
                    .rev()
                    .take(60)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                failures.push(format!(
                    "{}: expected {:?}, exit {:?}\n{}\n{}",
                    case.name,
                    if case.expected_error.is_empty() {
                        "success"
                    } else {
                        &case.expected_error
                    },
                    out.status.code(),
                    String::from_utf8_lossy(&out.stdout),
                    tail.join("\n")
                ));
            }
        }
    }
    println!(
        "conformance on nspawn: {passed} of {} cases passed ({} excluded)",
        cases.len(),
        EXCLUDED.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert_no_vm_left(&azlin);
}

#[test]
fn five_steps_run_on_one_vm_that_is_released() {
    let azlin = Azlin::new();
    let workflow = azlin.home.path().join("five.yml");
    let steps: String = (1..=5)
        .map(|i| format!("      - run: echo \"step {i} on $(hostname)\"\n"))
        .collect();
    std::fs::write(
        &workflow,
        format!("on: push\njobs:\n  five:\n    runs-on: ubuntu-latest\n    steps:\n{steps}"),
    )
    .unwrap();
    let run = azlin
        .run(&["run", workflow.to_str().unwrap(), "--provider", "nspawn"])
        .expect(0);
    let hosts: Vec<&str> = run
        .stdout
        .lines()
        .filter_map(|l| l.split_once("] step ").map(|(_, rest)| rest))
        .map(|rest| rest.rsplit(" on ").next().unwrap())
        .collect();
    assert_eq!(hosts.len(), 5, "{}", run.stdout);
    assert!(
        hosts.iter().all(|h| *h == hosts[0] && h.starts_with("wf-")),
        "{hosts:?}"
    );
    // One VM was made for the session and deleted after it: the audit trail says so.
    let events = azlin.run(&["events", "-o", "json"]).expect(0);
    let subjects: Vec<String> = events
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e["subject"].as_str().map(String::from))
        .collect();
    assert_eq!(
        subjects
            .iter()
            .filter(|s| *s == "vm.create.complete")
            .count(),
        1,
        "{subjects:?}"
    );
    assert_eq!(
        subjects
            .iter()
            .filter(|s| *s == "vm.delete.complete")
            .count(),
        1,
        "{subjects:?}"
    );
    assert_no_vm_left(&azlin);
}

/// Runs `azlin run WORKFLOW --provider PROVIDER`, calling `on_line` with each stderr line as it
/// comes (and the child, to signal it), for at most `limit`. Returns the exit status and the
/// lines seen.
fn run_watching(
    azlin: &Azlin,
    workflow: &std::path::Path,
    provider: &str,
    limit: Duration,
    mut on_line: impl FnMut(&str, &mut std::process::Child, &[String]),
) -> (std::process::ExitStatus, Vec<String>) {
    let mut child = azlin
        .command(&["run", workflow.to_str().unwrap(), "--provider", provider])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let mut seen = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push(line.clone());
        on_line(&line, &mut child, &seen);
        assert!(started.elapsed() < limit, "{seen:?}");
    }
    (child.wait().unwrap(), seen)
}

/// Sends SIGINT (Ctrl-C) to `child`.
fn interrupt(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_interrupted_run_runs_cleanup_and_releases_its_vm() {
    let azlin = Azlin::new();
    let workflow = azlin.home.path().join("long.yml");
    std::fs::write(
        &workflow,
        "on: push\njobs:\n  long:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo started\n      - run: sleep 300\n",
    )
    .unwrap();
    let started = Instant::now();
    let (status, seen) = run_watching(
        &azlin,
        &workflow,
        "nspawn",
        Duration::from_secs(180),
        |line, child, _| {
            if line.contains("► [long] Run sleep 300") {
                std::thread::sleep(Duration::from_millis(500));
                interrupt(child);
            }
        },
    );
    assert!(
        !status.success(),
        "an interrupted run must not succeed: {seen:?}"
    );
    assert!(seen.iter().any(|l| l.contains("interrupted")), "{seen:?}");
    assert!(seen.iter().any(|l| l.contains("cancelled")), "{seen:?}");
    assert!(
        started.elapsed() < Duration::from_secs(120),
        "the sleep was not stopped"
    );
    assert_no_vm_left(&azlin);
}

/// The CLI around the workflow runner on the fast `sim` provider: setup and cleanup commands
/// on the session's VM, act's failure wording, the summary table and JSON report, and the VM
/// released after a failing job.
#[test]
fn a_failing_run_reports_the_job_runs_cleanup_and_releases_on_sim() {
    let azlin = Azlin::new();
    let workflow = azlin.home.path().join("fails.yml");
    let cleaned = azlin.home.path().join("cleaned");
    let marker = azlin.home.path().join("setup-marker");
    std::fs::write(
        &workflow,
        format!("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n      - name: sees setup\n        run: cat {}\n      - name: breaks\n        run: exit 3\n      - name: never\n        run: echo unreachable\n", marker.display()),
    )
    .unwrap();
    let setup = format!("echo from-setup > {}", marker.display());
    let cleanup = format!("echo cleaned >> {}", cleaned.display());
    let run = azlin.run(&[
        "run",
        workflow.to_str().unwrap(),
        "--provider",
        "sim",
        "--setup",
        &setup,
        "--cleanup",
        &cleanup,
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("Job 'build' failed"), "{}", run.stderr);
    assert!(
        run.stdout.contains("[build/sees setup] from-setup"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("unreachable"), "{}", run.stdout);
    // The summary table names each step's outcome.
    let table: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("breaks"))
        .collect();
    assert!(
        table.iter().any(|l| l.contains("failure")),
        "{}",
        run.stdout
    );
    assert_eq!(std::fs::read_to_string(&cleaned).unwrap(), "cleaned\n");
    azlin.assert_no_vms();

    // The same run for a script: the report on stdout, step output on stderr. A failing
    // cleanup command is reported, and the VM is released anyway.
    let run = azlin.run(&[
        "run",
        workflow.to_str().unwrap(),
        "--provider",
        "sim",
        "-o",
        "json",
        "--cleanup",
        "echo disk busy; exit 9",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("⚠ cleanup on VM"), "{}", run.stderr);
    let report = run.json();
    let failures = &report["workflows"][0]["sessions"][0]["cleanup_failures"];
    assert!(
        failures[0]
            .as_str()
            .unwrap()
            .contains("exited with 9: disk busy"),
        "{report}"
    );
    let job = &report["workflows"][0]["jobs"][0];
    assert_eq!(job["result"], "failure", "{report}");
    assert_eq!(job["steps"][1]["exit_code"], 3, "{report}");
    assert_eq!(job["steps"][2]["outcome"], "skipped", "{report}");
    assert_eq!(
        report["workflows"][0]["sessions"][0]["released"], true,
        "{report}"
    );
    azlin.assert_no_vms();
}

/// A first Ctrl-C cancels as GitHub does, so an `always()` step keeps running; a second one
/// abandons it at once. The VM is released and the step's process is gone either way.
#[test]
fn a_second_interrupt_abandons_an_always_step_and_still_releases_on_sim() {
    let azlin = Azlin::new();
    let workflow = azlin.home.path().join("stubborn.yml");
    std::fs::write(
        &workflow,
        "on: push\njobs:\n  stubborn:\n    runs-on: ubuntu-latest\n    steps:\n      - if: always()\n        run: sleep 317\n",
    )
    .unwrap();
    let started = Instant::now();
    let (status, seen) = run_watching(
        &azlin,
        &workflow,
        "sim",
        Duration::from_secs(60),
        |line, child, seen| {
            if line.contains("► [stubborn] Run sleep 317") {
                std::thread::sleep(Duration::from_millis(300));
                interrupt(child);
            }
            if line.contains("Ctrl-C again") {
                // The always() step outlives the first interrupt.
                std::thread::sleep(Duration::from_millis(500));
                assert!(child.try_wait().unwrap().is_none(), "{seen:?}");
                interrupt(child);
            }
        },
    );
    assert_eq!(status.code(), Some(1), "{seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("interrupted twice")),
        "{seen:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{seen:?}");
    azlin.assert_no_vms();
    assert!(
        crate::support::live_processes("sleep", "317").is_empty(),
        "the abandoned step's process is still running"
    );
}
