//! Per-step overhead on sim: one job of 100 `run: "true"` steps, each one `exec` round trip.
//! On sim a round trip is process spawns (`sh -c`, `sh -s`, `bash`), so this measures the
//! runner's own cost plus local process start-up; the SSH figure comes from the CLI's bench.

use crate::harness::{Env, assert_all_released, run};
use std::time::{Duration, Instant};

#[tokio::test]
async fn one_hundred_trivial_steps() {
    let env = Env::new();
    let counting = env.allocator(Duration::ZERO);
    let mut y = String::from("on: push\njobs:\n  many:\n    runs-on: ubuntu-latest\n    steps:\n");
    for _ in 0..100 {
        y.push_str("      - run: \"true\"\n");
    }
    let wf = env.write("many.yml", &y);
    let started = Instant::now();
    let (report, _) = run(&[wf], &env.options(), counting.clone()).await;
    let total = started.elapsed();
    assert!(report.success, "{:?}", report.errors);
    let steps = &report.workflows[0].jobs[0].steps;
    assert_eq!(steps.len(), 100);
    let step_ms: u64 = steps.iter().map(|s| s.duration_ms).sum();
    println!(
        "100 steps on sim: {:.1} ms a step (step time), {:.1} ms a step (whole run incl. VM and job setup)",
        step_ms as f64 / 100.0,
        total.as_secs_f64() * 1000.0 / 100.0
    );
    // Generous: catches a regression to several round trips a step, not machine noise.
    assert!(step_ms / 100 < 100, "{} ms a step", step_ms / 100);
    assert_all_released(&env, &counting);
}
