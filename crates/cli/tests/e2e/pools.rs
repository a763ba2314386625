//! Warm pools: `azlin pool fill|status|drain`, and `azlin run` taking each session's VM from the
//! pool whose labels match `runs-on` — single-use, refilled in the background, claimed
//! atomically across processes, reaped after a killed taker, and a cold boot when the pool is
//! empty. Real nspawn VMs for the pool's life cycle; `sim` where only the claims matter.

use crate::support::{Azlin, live_processes, nspawn_processes};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A config with one pool `name` of `min_ready` VMs of `provider`, serving `self-hosted`.
fn pool_config(name: &str, provider: &str, min_ready: usize, max: usize) -> String {
    format!(
        "[pool.{name}]\nprovider = \"{provider}\"\nmin_ready = {min_ready}\nmax = {max}\nlabels = [\"self-hosted\", \"linux\"]\n"
    )
}

/// A one-job workflow for the pool's labels, printing its host name.
fn pooled_workflow(azlin: &Azlin, file: &str, step: &str) -> String {
    let path = azlin.home.path().join(file);
    std::fs::write(
        &path,
        format!(
            "on: push\njobs:\n  build:\n    runs-on: [self-hosted, linux]\n    steps:\n      - run: {step}\n"
        ),
    )
    .unwrap();
    path.display().to_string()
}

fn status(azlin: &Azlin, pool: &str) -> Value {
    azlin
        .run(&["pool", "status", pool, "-o", "json"])
        .expect(0)
        .json()[0]
        .clone()
}

fn ready_vms(status: &Value) -> BTreeSet<String> {
    status["ready_vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// Waits until the background refill of `pool` is over and `ready` VMs are ready.
fn await_refill(azlin: &Azlin, pool: &str, ready: usize) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = status(azlin, pool);
        let filling = live_processes(env!("CARGO_BIN_EXE_azlin"), &format!("pool fill {pool}"));
        if status["ready"] == ready && status["booting"] == 0 && filling.is_empty() {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "pool {pool} not refilled: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The sessions of a `run -o json` report.
fn sessions(report: &Value) -> Vec<Value> {
    report["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["sessions"].as_array().unwrap().clone())
        .collect()
}

fn subjects(azlin: &Azlin, subject: &str) -> Vec<Value> {
    azlin
        .run(&["events", "-o", "json"])
        .expect(0)
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["subject"] == subject)
        .collect()
}

#[test]
fn a_pool_of_two_nspawn_vms_serves_four_runs_each_on_a_fresh_vm() {
    let azlin = Azlin::new();
    azlin.config(&pool_config("seq", "nspawn", 2, 4));
    let workflow = pooled_workflow(&azlin, "ci.yml", "echo \"on $(hostname)\"");
    azlin.run(&["pool", "fill", "seq"]).expect(0);
    let mut handed_out = BTreeSet::new();
    for run in 1..=4 {
        let before = await_refill(&azlin, "seq", 2);
        let ready_before = ready_vms(&before);
        let report = azlin
            .run(&["run", &workflow, "--provider", "nspawn", "-o", "json"])
            .expect(0);
        let session = sessions(&report.json())[0].clone();
        let vm = session["vm"].as_str().unwrap().to_string();
        assert_eq!(session["vm_origin"], "taken from pool 'seq'", "run {run}");
        assert!(
            ready_before.contains(&vm),
            "run {run} got {vm}, which was not ready before it began: {ready_before:?}"
        );
        assert!(handed_out.insert(vm.clone()), "run {run} reused {vm}");
        assert!(
            report
                .stderr
                .contains(&format!("on VM {vm} (taken from pool 'seq')")),
            "{}",
            report.stderr
        );
        // The step ran on that VM, whose host name is its name (step output goes to stderr
        // when stdout carries JSON).
        assert!(
            report.stderr.contains(&format!("] on {vm}")),
            "{}",
            report.stderr
        );
        // Single-use: released means deleted.
        let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
        assert!(
            !listed.to_string().contains(&format!("\"{vm}\"")),
            "{vm} is still listed after its release: {listed}"
        );
        assert!(nspawn_processes(&vm).is_empty(), "{vm} still runs");
    }
    // Back to two ready VMs, none of them one that was handed out.
    let after = await_refill(&azlin, "seq", 2);
    assert!(ready_vms(&after).is_disjoint(&handed_out), "{after}");
    assert_eq!(subjects(&azlin, "pool.vm.taken").len(), 4);
    assert_eq!(subjects(&azlin, "pool.vm.ready").len(), 6);
    azlin.run(&["pool", "drain", "seq"]).expect(0);
    azlin.assert_no_vms();
    assert!(nspawn_processes(&azlin.home.path().display().to_string()).is_empty());
}

#[test]
fn an_empty_pool_boots_cold_and_concurrent_runs_never_share_a_pool_vm() {
    let azlin = Azlin::new();
    azlin.config(&pool_config("conc", "sim", 2, 8));
    let workflow = pooled_workflow(&azlin, "ci.yml", "echo hi");
    // Nothing is ready yet: the run boots its VM cold, says so, and starts the refill.
    let first = azlin
        .run(&["run", &workflow, "--provider", "sim", "-o", "json"])
        .expect(0);
    assert!(
        first
            .stderr
            .contains("(cold boot: pool 'conc' had no ready VM)"),
        "{}",
        first.stderr
    );
    assert_eq!(
        sessions(&first.json())[0]["vm_origin"],
        "cold boot: pool 'conc' had no ready VM"
    );
    await_refill(&azlin, "conc", 2);
    // Four runs at once: each pool VM goes to one run only; who finds the pool empty boots
    // cold (refills may land in between, so two or more take a pool VM).
    let children: Vec<_> = (0..4)
        .map(|_| {
            azlin
                .command(&["run", &workflow, "--provider", "sim", "-o", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut pooled = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        let session = sessions(&report)[0].clone();
        match session["vm_origin"].as_str().unwrap() {
            "taken from pool 'conc'" => pooled.push(session["vm"].as_str().unwrap().to_string()),
            "cold boot: pool 'conc' had no ready VM" => {}
            other => panic!("unexpected origin {other}"),
        }
    }
    let distinct: BTreeSet<&String> = pooled.iter().collect();
    assert_eq!(
        distinct.len(),
        pooled.len(),
        "a pool VM went to two runs: {pooled:?}"
    );
    assert!(pooled.len() >= 2, "{pooled:?}");
    await_refill(&azlin, "conc", 2);
    azlin.run(&["pool", "drain", "conc"]).expect(0);
    azlin.assert_no_vms();
}

#[test]
fn a_killed_run_leaves_no_pool_vm_taken_forever() {
    let azlin = Azlin::new();
    azlin.config(&pool_config("crash", "sim", 1, 4));
    let workflow = pooled_workflow(&azlin, "long.yml", "sleep 300");
    azlin.run(&["pool", "fill", "crash"]).expect(0);
    let mut child = azlin
        .command(&["run", &workflow, "--provider", "sim"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut taken = None;
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.split_once(" on VM ").map(|(_, r)| r) {
            taken = rest.split_whitespace().next().map(String::from);
        }
        if line.contains("► [build] Run sleep 300") {
            break;
        }
    }
    let taken = taken.expect("the run said which VM it took");
    child.kill().unwrap();
    child.wait().unwrap();
    // The pool's next maintenance (the refill the run started, if it came after the kill, or
    // this fill) sees the taker gone and deletes its VM.
    await_refill(&azlin, "crash", 1);
    azlin.run(&["pool", "fill", "crash"]).expect(0);
    let retired = subjects(&azlin, "pool.vm.retired");
    assert!(
        retired
            .iter()
            .any(|e| e["payload"]["name"] == taken.as_str()
                && e["payload"]["detail"]
                    .as_str()
                    .unwrap()
                    .contains("its taker (process")),
        "{retired:?}"
    );
    let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
    assert!(!listed.to_string().contains(&taken), "{listed}");
    await_refill(&azlin, "crash", 1);
    azlin.run(&["pool", "drain", "crash"]).expect(0);
    azlin.assert_no_vms();
}

#[test]
fn pool_commands_refuse_unknown_pools_and_bad_settings() {
    let azlin = Azlin::new();
    let unconfigured = azlin.run(&["pool", "status"]).expect(64);
    assert!(
        unconfigured.stderr.contains("no pool is configured"),
        "{}",
        unconfigured.stderr
    );
    azlin.config(&pool_config("ci", "sim", 3, 2));
    let bad = azlin.run(&["pool", "fill", "ci"]).expect(64);
    assert!(
        bad.stderr.contains("max (2) is below min_ready (3)"),
        "{}",
        bad.stderr
    );
    azlin.config(&pool_config("ci", "sim", 1, 2));
    let unknown = azlin.run(&["pool", "drain", "nope"]).expect(64);
    assert!(
        unknown.stderr.contains("unknown pool 'nope' (known: ci)"),
        "{}",
        unknown.stderr
    );
    azlin.assert_no_vms();
}

#[test]
fn new_with_a_pool_hands_a_ready_vm_to_the_user_for_good() {
    let azlin = Azlin::new();
    azlin.config(&pool_config("mine", "sim", 1, 3));
    let empty = azlin
        .run(&["new", "--pool", "mine", "--no-connect"])
        .expect(1);
    assert!(
        empty.stderr.contains("pool 'mine' has no ready VM"),
        "{}",
        empty.stderr
    );
    await_refill(&azlin, "mine", 1);
    let refused = azlin
        .run(&[
            "new",
            "--pool",
            "mine",
            "--size",
            "Standard_B1s",
            "--no-connect",
        ])
        .expect(64);
    assert!(
        refused.stderr.contains("--size cannot be used with --pool"),
        "{}",
        refused.stderr
    );
    let ready = ready_vms(&status(&azlin, "mine"));
    let made = azlin
        .run(&["new", "--pool", "mine", "--no-connect", "-o", "json"])
        .expect(0)
        .json();
    let name = made["vms"][0]["name"].as_str().unwrap().to_string();
    assert!(
        ready.contains(&name),
        "{name} was not ready in the pool: {ready:?}"
    );
    // The pool refills; the VM stays the user's through the pool's maintenance.
    await_refill(&azlin, "mine", 1);
    azlin.run(&["pool", "fill", "mine"]).expect(0);
    assert_eq!(azlin.vm(&name)["state"], "running");
    azlin.run(&["delete", &name, "--yes"]).expect(0);
    azlin.run(&["pool", "drain", "mine"]).expect(0);
    azlin.assert_no_vms();
}

#[test]
fn serve_keeps_the_pools_filled() {
    let azlin = Azlin::new();
    azlin.config(&pool_config("kept", "sim", 2, 4));
    let serve = crate::support::Background::spawn(azlin.command(&["serve"]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while status(&azlin, "kept")["ready"] != 2 {
        assert!(Instant::now() < deadline, "serve did not fill the pool");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = serve.interrupt();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("pool 'kept': pool-kept-"), "{stderr}");
    azlin.run(&["pool", "drain", "kept"]).expect(0);
    azlin.assert_no_vms();
}

#[test]
fn a_pool_at_its_max_is_refilled_once_the_taken_vm_is_gone() {
    let azlin = Azlin::new();
    // With max = min_ready, the replacement only fits once the taken VM is deleted.
    azlin.config(&pool_config("full", "sim", 1, 1));
    let workflow = pooled_workflow(&azlin, "ci.yml", "echo hi");
    azlin.run(&["pool", "fill", "full"]).expect(0);
    let before = ready_vms(&status(&azlin, "full"));
    let run = azlin
        .run(&["run", &workflow, "--provider", "sim", "-o", "json"])
        .expect(0);
    assert_eq!(
        sessions(&run.json())[0]["vm_origin"],
        "taken from pool 'full'"
    );
    let after = ready_vms(&await_refill(&azlin, "full", 1));
    assert!(after.is_disjoint(&before), "{before:?} {after:?}");
    azlin.run(&["pool", "drain", "full"]).expect(0);
    azlin.assert_no_vms();
}
