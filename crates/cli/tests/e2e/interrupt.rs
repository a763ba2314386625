//! Ctrl-C during `azlin new` (sim provider with a long boot): the launch is cancelled, what it
//! made is removed and named, and azlin exits 130; a second Ctrl-C leaves at once and names
//! what remains.

use crate::support::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// `azlin new` of a sim VM that takes a minute to boot, running in the background.
struct Launch {
    child: Child,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Launch {
    fn start(azlin: &Azlin, name: &str, env: &[(&str, &str)]) -> Launch {
        let dir = tempfile::tempdir().unwrap();
        let stderr = dir.path().join("stderr");
        let child = azlin
            .command(&new_args("sim", name, &[]))
            .env("AZLIN_SIM_BOOT_MS", "60000")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Launch {
            child,
            stderr,
            _dir: dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn interrupt(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT).unwrap();
    }

    /// Waits until `check` holds (polling), or panics with `what` after 30 s.
    fn wait_until(&self, what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check() {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit (at most 30 s): its code and stderr.
    fn finish(mut self) -> (i32, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code().unwrap_or(-1), self.stderr());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("azlin new still running\n{}", self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn sim_folder(azlin: &Azlin, name: &str) -> PathBuf {
    azlin.home.path().join(".local/state/azlin/sim").join(name)
}

#[test]
fn ctrl_c_during_new_removes_the_vm_and_exits_130() {
    let azlin = Azlin::new();
    let launch = Launch::start(&azlin, "cut", &[]);
    let folder = sim_folder(&azlin, "cut");
    launch.wait_until("the sim VM to be provisioning", || {
        folder.join("vm.json").exists()
    });
    launch.interrupt();
    let (code, stderr) = launch.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains(&format!("removed sim VM folder {}", folder.display())),
        "{stderr}"
    );
    assert!(stderr.contains("nothing is left behind"), "{stderr}");
    assert!(!folder.exists(), "the sim VM folder is gone");
    azlin.assert_no_vms();
}

#[test]
fn a_delete_that_fails_after_ctrl_c_is_named_and_recorded_as_an_orphan() {
    let azlin = Azlin::new();
    let launch = Launch::start(&azlin, "stuck", &[("AZLIN_SIM_DELETE_FAIL_RATE", "1")]);
    let folder = sim_folder(&azlin, "stuck");
    launch.wait_until("the sim VM to be provisioning", || {
        folder.join("vm.json").exists()
    });
    launch.interrupt();
    let (code, stderr) = launch.finish();
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("could not remove VM 'stuck'"), "{stderr}");
    assert!(stderr.contains("azlin delete stuck"), "{stderr}");
    let orphans =
        std::fs::read_to_string(azlin.home.path().join(".local/state/azlin/orphans.jsonl"))
            .unwrap();
    let records: Vec<serde_json::Value> = orphans
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 1, "{orphans}");
    assert_eq!(records[0]["name"], "stuck");
    assert_eq!(records[0]["provider"], "sim");
    assert!(
        records[0]["failure"]
            .as_str()
            .unwrap()
            .contains("simulated delete failure"),
        "{orphans}"
    );
    let list = azlin.run(&["list"]).expect(0);
    assert!(
        list.stdout.contains("1 orphaned resource(s)"),
        "{}",
        list.stdout
    );
}

#[test]
fn a_second_ctrl_c_leaves_at_once_naming_what_remains() {
    let azlin = Azlin::new();
    // Every delete fails, so the cleanup is still retrying when the second Ctrl-C comes.
    let launch = Launch::start(&azlin, "twice", &[("AZLIN_SIM_DELETE_FAIL_RATE", "1")]);
    let folder = sim_folder(&azlin, "twice");
    launch.wait_until("the sim VM to be provisioning", || {
        folder.join("vm.json").exists()
    });
    launch.interrupt();
    launch.wait_until("the first interrupt to be taken", || {
        launch.stderr().contains("Ctrl-C again")
    });
    let asked = Instant::now();
    launch.interrupt();
    let (code, stderr) = launch.finish();
    assert!(asked.elapsed() < Duration::from_secs(1), "left at once");
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("interrupted again"), "{stderr}");
    assert!(
        stderr.contains("left behind: VM 'twice' (remove it with `azlin delete twice --yes`)"),
        "{stderr}"
    );
    assert!(
        folder.exists(),
        "the VM the second Ctrl-C left is still there"
    );
    // Still listed, so that `azlin delete twice` finds it.
    let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
    assert_eq!(listed[0]["name"], "twice", "{listed}");
}
