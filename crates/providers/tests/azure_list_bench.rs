//! Benchmark of the `azure` provider's `list` with 50 VMs in the ARM test double, next to what
//! the az-CLI approach costs. Run by `bench/azure_list.sh` (ignored in normal test runs).

use azlin_core::VmProvider;
use azlin_providers::azure::{AzureProvider, AzureSettings};
use azlin_testkit::{ArmDouble, AzAccount, StubAz};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const VMS: usize = 50;
const RUNS: usize = 50;
const SPAWNS: usize = 20;

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn median_p95(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[(v.len() * 95 / 100).min(v.len() - 1)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run bench/azure_list.sh"]
async fn azure_list_with_50_vms() {
    let double = ArmDouble::start().await.expect("ARM double starts");
    let az = StubAz::logged_in(&AzAccount::for_double(&double)).expect("stub az");
    for i in 0..VMS {
        let name = format!("bench-{i:02}");
        let tags = BTreeMap::from([
            ("azlin-managed".to_string(), "true".to_string()),
            ("azlin-vm".to_string(), name.clone()),
            ("azlin-request".to_string(), format!("req-{i}")),
            ("azlin-ip".to_string(), format!("198.51.100.{}", i + 1)),
            (
                "azlin-host-key".to_string(),
                "ssh-ed25519 AAAAhost".to_string(),
            ),
        ]);
        double.insert_vm("azlin", &name, "westus2", &tags);
    }
    let path = az.path_first(std::env::var_os("PATH").as_deref());
    let provider = AzureProvider::new(AzureSettings {
        endpoint: double.endpoint().to_string(),
        search_path: Some(path.clone()),
        ..AzureSettings::default()
    })
    .expect("valid settings");

    // Cold: az account show + az account get-access-token, then one ARM request.
    let started = Instant::now();
    let vms = provider.list().await.expect("list");
    let cold = started.elapsed();
    assert_eq!(vms.len(), VMS);
    let cold_requests = double.request_count();

    let mut warm = Vec::new();
    for _ in 0..RUNS {
        double.clear_requests();
        let started = Instant::now();
        let vms = provider.list().await.expect("list");
        warm.push(started.elapsed());
        assert_eq!(vms.len(), VMS);
        assert_eq!(double.request_count(), 1, "one HTTP request per list");
    }
    let (median, p95) = median_p95(warm);

    // Baseline: what one `az` process costs here. The stub is a shell script, so this is only
    // the process-spawn floor; the real az is a Python program that also does its own HTTPS.
    let mut spawns = Vec::new();
    for _ in 0..SPAWNS {
        let started = Instant::now();
        let out = std::process::Command::new(az.program())
            .args(["account", "show", "-o", "json"])
            .env("PATH", &path)
            .output()
            .expect("stub az runs");
        spawns.push(started.elapsed());
        assert!(out.status.success());
    }
    let (spawn_median, _) = median_p95(spawns);

    println!();
    println!("azure provider `list`, {VMS} azlin VMs in the ARM test double (HTTP on 127.0.0.1):");
    println!("  HTTP requests per list:                 1 (cold list: {cold_requests})");
    println!("  cold list (2 az runs + 1 HTTP request): {}", ms(cold));
    println!(
        "  warm list, median of {RUNS}:              {} (p95 {})",
        ms(median),
        ms(p95)
    );
    println!("baseline, the az-CLI approach:");
    println!(
        "  rysweet/azlin spawns `az` for its list: ~3 s per list on Azure (their figure, not measured here)"
    );
    println!(
        "  one stub-az process here, median of {SPAWNS}: {} (process-spawn floor only: the stub is a shell script, the real az is Python and calls Azure itself)",
        ms(spawn_median)
    );
}
