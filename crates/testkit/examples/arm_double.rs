//! Starts the ARM test double on 127.0.0.1 with N azlin VMs in it and a stub `az` logged in to
//! it, for benchmarks of the real `azlin` binary (`bench/azure_list.sh`).
//!
//! ```text
//! cargo run -p azlin-testkit --example arm_double -- --vms 50
//! ```
//!
//! It prints, one per line, `endpoint URL`, `subscription ID`, `az_bin DIR` (put it first on
//! `PATH`) and `ready`, then answers commands read from stdin, one per line:
//! - `requests`: `requests N az M`, the HTTP requests received and `az` runs since the last `clear`;
//! - `log`: one line per request received since the last `clear` (`METHOD PATH STATUS`), then `end`;
//! - `clear`: forgets the requests and `az` runs so far, then `ok`.
//!
//! It stops, removing the stub `az`, at the end of stdin, on SIGINT or on SIGTERM.

use azlin_testkit::{ArmDouble, AzAccount, StubAz};
use std::collections::BTreeMap;
use std::io::Write;
use tokio::io::AsyncBufReadExt;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: arm_double [--vms N] [--location REGION]";

/// What the command line asked for.
struct Options {
    vms: usize,
    location: String,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        vms: 50,
        location: "westus2".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--vms" => {
                let v = value("--vms")?;
                options.vms = v.parse().map_err(|_| format!("--vms {v}: not a number"))?;
            }
            "--location" => options.location = value("--location")?,
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument '{other}'\n{USAGE}")),
        }
    }
    Ok(options)
}

/// The tags azlin gives a VM it made (`list` reads the address and host key from them). The
/// addresses are on this machine's loopback (127.100.0.0/24), so nothing leaves the machine.
fn azlin_tags(i: usize) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("azlin-managed".to_string(), "true".to_string()),
        ("azlin-vm".to_string(), format!("bench-{i:03}")),
        ("azlin-request".to_string(), format!("bench-request-{i}")),
        ("azlin-ip".to_string(), format!("127.100.0.{}", i % 253 + 1)),
        (
            "azlin-host-key".to_string(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchHostKeyBenchHostKeyBenchHostKey0"
                .to_string(),
        ),
    ])
}

fn say(line: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = match parse_args() {
        Ok(o) => o,
        Err(message) => {
            eprintln!("arm_double: {message}");
            std::process::exit(64);
        }
    };
    let double = ArmDouble::start().await?;
    for i in 0..options.vms {
        let tags = azlin_tags(i);
        double.insert_vm("azlin", &tags["azlin-vm"], &options.location, &tags);
    }
    let az = StubAz::logged_in(&AzAccount::for_double(&double))?;
    say(&format!("endpoint {}", double.endpoint()))?;
    say(&format!("subscription {}", double.subscription_id()))?;
    say(&format!("az_bin {}", az.bin_dir().display()))?;
    say("ready")?;

    let mut az_calls_before = 0;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = tokio::signal::ctrl_c() => None,
            _ = terminate.recv() => None,
        };
        let Some(line) = line else { break };
        match line.trim() {
            "requests" => say(&format!(
                "requests {} az {}",
                double.request_count(),
                az.calls().len().saturating_sub(az_calls_before)
            ))?,
            "log" => {
                for r in double.requests() {
                    say(&format!("{} {} {}", r.method, r.path, r.status))?;
                }
                say("end")?;
            }
            "clear" => {
                double.clear_requests();
                az_calls_before = az.calls().len();
                say("ok")?;
            }
            "" => {}
            other => say(&format!("error unknown command '{other}'"))?,
        }
    }
    // Dropping `az` and `double` removes the stub's folder and stops the server.
    drop(az);
    drop(double);
    Ok(())
}
