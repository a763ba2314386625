//! Seed 002's verification matrix: one VM per workflow session, allocated once, used by every
//! step, released after, under a global concurrency limit.

use crate::harness::{Env, assert_all_released, run, vm_echo_workflow};
use azlin_workflow::{SessionState, VmScope};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// `(workflow, vm, home)` for every step of the run.
fn vm_lines(observer: &crate::harness::Collect) -> Vec<(String, String, String)> {
    observer
        .tagged("VM=")
        .into_iter()
        .map(|(wf, rest)| {
            let (vm, home) = rest.split_once(" HOME=").unwrap();
            (wf, vm.to_string(), home.to_string())
        })
        .collect()
}

#[tokio::test]
async fn one_workflow_with_five_steps_allocates_exactly_one_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::from_millis(20));
    let wf = env.write("five.yml", &vm_echo_workflow(5, ""));
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    assert_eq!(counting.allocations(), 1);
    assert_eq!(counting.releases(), 1);
    let lines = vm_lines(&observer);
    assert_eq!(lines.len(), 5);
    let vms: BTreeSet<_> = lines.iter().map(|(_, vm, _)| vm.clone()).collect();
    assert_eq!(vms.len(), 1);
    assert_eq!(vms.iter().next().unwrap(), &counting.vms.lock().unwrap()[0]);
    // The session record went through every state and ended released.
    let records = env.records();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r.state, SessionState::Released);
    assert_eq!(r.outcome, Some(SessionState::Completed));
    assert_eq!(r.allocations, 1);
    let states: Vec<_> = r.history.iter().map(|s| s.state).collect();
    for s in [
        SessionState::Creating,
        SessionState::Active,
        SessionState::Executing,
        SessionState::Completed,
        SessionState::Released,
    ] {
        assert!(states.contains(&s), "{s:?} missing from {states:?}");
    }
    assert!(r.history.iter().all(|s| !s.at.is_empty()));
    assert_eq!(report.workflows[0].sessions.len(), 1);
    assert!(report.workflows[0].sessions[0].released);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn three_workflows_in_parallel_get_three_distinct_vms() {
    let env = Env::new();
    let counting = env.allocator(Duration::from_millis(100));
    let files: Vec<_> = (0..3)
        .map(|i| {
            env.write(
                &format!("wf{i}.yml"),
                &vm_echo_workflow(3 + i * 2, "sleep 0.2"),
            )
        })
        .collect();
    let (report, observer) = run(&files, &env.options(), counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    assert_eq!(counting.allocations(), 3);
    assert!(counting.peak() >= 2, "the workflows ran in parallel");
    let mut by_workflow: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for (wf, vm, home) in vm_lines(&observer) {
        by_workflow.entry(wf).or_default().insert((vm, home));
    }
    assert_eq!(by_workflow.len(), 3);
    let mut all_vms = BTreeSet::new();
    for (wf, seen) in &by_workflow {
        // No cross-use: every step of a workflow ran on the same VM, in that VM's folder.
        assert_eq!(seen.len(), 1, "{wf} ran on {seen:?}");
        let (vm, home) = seen.iter().next().unwrap();
        assert!(
            home.starts_with(&env.path("vms").join(vm).display().to_string()),
            "{home} is not inside VM {vm}"
        );
        all_vms.insert(vm.clone());
    }
    assert_eq!(all_vms.len(), 3, "three distinct VMs");
    assert_eq!(
        report
            .workflows
            .iter()
            .map(|w| w.jobs[0].steps.len())
            .sum::<usize>(),
        3 + 5 + 7
    );
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn two_runs_in_sequence_allocate_and_release_twice() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write("twice.yml", &vm_echo_workflow(2, ""));
    let (first, _) = run(std::slice::from_ref(&wf), &env.options(), counting.clone()).await;
    assert_eq!((counting.allocations(), counting.releases()), (1, 1));
    let (second, _) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(first.success && second.success);
    assert_eq!((counting.allocations(), counting.releases()), (2, 2));
    let vms = counting.vms.lock().unwrap().clone();
    assert_ne!(vms[0], vms[1]);
    assert_eq!(env.records().len(), 2);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn ten_runs_with_a_limit_of_two_never_hold_more_than_two_vms() {
    let env = Env::new();
    let counting = env.allocator(Duration::from_millis(30));
    let files: Vec<_> = (0..10)
        .map(|i| env.write(&format!("w{i}.yml"), &vm_echo_workflow(2, "sleep 0.1")))
        .collect();
    let mut options = env.options();
    options.max_concurrent = 2;
    let (report, observer) = run(&files, &options, counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    assert_eq!(report.workflows.len(), 10);
    assert!(report.workflows.iter().all(|w| w.success));
    assert_eq!(counting.allocations(), 10, "all ten finished, none failed");
    assert!(counting.peak() <= 2, "peak {} VMs at once", counting.peak());
    assert_eq!(counting.peak(), 2, "the limit was used, not serialised");
    assert_eq!(vm_lines(&observer).len(), 20);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn twelve_steps_all_see_the_same_vm() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write("twelve.yml", &vm_echo_workflow(12, ""));
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(report.success);
    let lines = vm_lines(&observer);
    assert_eq!(lines.len(), 12);
    let distinct: BTreeSet<_> = lines.iter().map(|(_, vm, home)| (vm, home)).collect();
    assert_eq!(distinct.len(), 1);
    assert_eq!(counting.allocations(), 1);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn workflow_scope_runs_every_job_on_one_vm_in_needs_order() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let wf = env.write(
        "graph.yml",
        "on: push\njobs:\n  c:\n    needs: [a, b]\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"ORDER=c VM=$AZLIN_VM_NAME\"\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"ORDER=a VM=$AZLIN_VM_NAME\"\n  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo \"ORDER=b VM=$AZLIN_VM_NAME\"\n",
    );
    let (report, observer) = run(&[wf], &env.options(), counting.clone()).await;
    assert!(report.success);
    let order: Vec<String> = observer
        .tagged("ORDER=")
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    assert_eq!(order.len(), 3);
    assert!(order[0].starts_with("a ") && order[1].starts_with("b ") && order[2].starts_with("c "));
    let vms: BTreeSet<_> = order
        .iter()
        .map(|s| s.split_once("VM=").unwrap().1)
        .collect();
    assert_eq!(vms.len(), 1);
    assert_eq!(counting.allocations(), 1);
    assert_all_released(&env, &counting);
}

#[tokio::test]
async fn job_scope_gives_each_job_its_own_vm_and_runs_independent_jobs_in_parallel() {
    let env = Env::new();
    let counting = env.allocator(Duration::from_millis(50));
    let wf = env.write(
        "jobs.yml",
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 0.3; echo \"VM=$AZLIN_VM_NAME HOME=$HOME\"\n  b:\n    runs-on: ubuntu-latest\n    steps:\n      - run: sleep 0.3; echo \"VM=$AZLIN_VM_NAME HOME=$HOME\"\n  c:\n    needs: [a, b]\n    runs-on: ubuntu-latest\n    strategy:\n      matrix:\n        n: [1, 2]\n    steps:\n      - run: echo \"VM=$AZLIN_VM_NAME HOME=$HOME\"\n",
    );
    let mut options = env.options();
    options.vm_scope = VmScope::Job;
    let (report, observer) = run(&[wf], &options, counting.clone()).await;
    assert!(report.success, "{:?}", report.errors);
    assert_eq!(counting.allocations(), 4, "a, b and two runs of c");
    assert!(counting.peak() >= 2, "a and b ran at the same time");
    let vms: BTreeSet<_> = vm_lines(&observer)
        .into_iter()
        .map(|(_, vm, _)| vm)
        .collect();
    assert_eq!(vms.len(), 4);
    assert_eq!(report.workflows[0].sessions.len(), 4);
    assert_all_released(&env, &counting);
}
