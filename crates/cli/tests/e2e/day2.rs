//! Living with a VM, against real nspawn VMs with the real OpenSSH client: `cp`, `ssh-config`
//! (then plain `ssh` and `scp`), `code` (a stand-in `code` records how it was called), `health`
//! and `logs`; `fleet run` on sim VMs; idle stop by `azlin serve`.

use crate::support::Azlin;
use std::path::Path;
use std::process::Command;

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn random_file(path: &Path, bytes: usize) {
    let out = Command::new("head")
        .args(["-c", &bytes.to_string(), "/dev/urandom"])
        .output()
        .unwrap();
    std::fs::write(path, out.stdout).unwrap();
}

#[test]
fn cp_moves_100_mb_both_ways_and_between_vms_and_folders_with_r() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "cp-a", &[]).expect(0);
    azlin.new_vm("nspawn", "cp-b", &[]).expect(0);
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.bin");
    random_file(&big, 100_000_000);
    let digest = sha256(&big);

    let up = azlin
        .run(&["-o", "json", "cp", big.to_str().unwrap(), "cp-a:big.bin"])
        .expect(0)
        .json();
    assert_eq!(up["bytes"], 100_000_000);
    assert_eq!(
        azlin.sh("cp-a", "sha256sum big.bin | cut -d' ' -f1"),
        digest
    );
    let back = dir.path().join("back.bin");
    azlin
        .run(&["cp", "cp-a:big.bin", back.to_str().unwrap()])
        .expect(0);
    assert_eq!(sha256(&back), digest);
    // VM to VM, to an absolute path.
    azlin
        .run(&["cp", "cp-a:big.bin", "cp-b:/tmp/from-a.bin"])
        .expect(0);
    assert_eq!(
        azlin.sh("cp-b", "sha256sum /tmp/from-a.bin | cut -d' ' -f1"),
        digest
    );
    // A folder needs -r.
    let folder = dir.path().join("tree");
    std::fs::create_dir_all(folder.join("sub")).unwrap();
    std::fs::write(folder.join("top.txt"), "top\n").unwrap();
    std::fs::write(folder.join("sub/deep.txt"), "deep\n").unwrap();
    let refused = azlin
        .run(&["cp", folder.to_str().unwrap(), "cp-b:"])
        .expect(64);
    assert!(refused.stderr.contains("-r"), "{}", refused.stderr);
    azlin
        .run(&["cp", "-r", folder.to_str().unwrap(), "cp-b:"])
        .expect(0);
    assert_eq!(
        azlin.sh("cp-b", "cat tree/top.txt tree/sub/deep.txt"),
        "top\ndeep"
    );
    // Bad input changes nothing and says why.
    azlin.run(&["cp", "/etc/hostname", "/tmp/x"]).expect(64);
    azlin.run(&["cp", "/nonexistent/file", "cp-a:x"]).expect(64);
    azlin.run(&["cp", "/etc/hostname", "nosuchvm:x"]).expect(64);
    for vm in ["cp-a", "cp-b"] {
        azlin.run(&["delete", vm, "--yes"]).expect(0);
    }
    azlin.assert_no_vms();
}

#[test]
fn ssh_config_lets_plain_ssh_and_scp_reach_a_vm_and_code_opens_it() {
    // A stand-in for VS Code's `code`, first on PATH: it records its arguments.
    let bin = tempfile::tempdir().unwrap();
    let called = bin.path().join("called");
    let code = bin.path().join("code");
    std::fs::write(
        &code,
        format!("#!/bin/sh\necho \"$@\" > {}\n", called.display()),
    )
    .unwrap();
    Command::new("chmod")
        .arg("755")
        .arg(&code)
        .status()
        .unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let azlin = Azlin::with_path(&path);
    azlin.new_vm("nspawn", "cfg", &[]).expect(0);
    azlin.run(&["ssh-config"]).expect(0);
    azlin.run(&["ssh-config"]).expect(0);
    let ssh_dir = azlin.home.path().join(".ssh");
    let config = ssh_dir.join("config");
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(text.matches("Include").count(), 1, "{text}");

    // The real ssh and scp, with nothing but the config file.
    let ssh = Command::new("ssh")
        .args([
            "-F",
            config.to_str().unwrap(),
            "azlin-cfg",
            "echo",
            "reached",
        ])
        .env("HOME", azlin.home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&ssh.stdout).trim(),
        "reached",
        "{}",
        String::from_utf8_lossy(&ssh.stderr)
    );
    let scp = Command::new("scp")
        .args([
            "-F",
            config.to_str().unwrap(),
            "/etc/hostname",
            "azlin-cfg:copied",
        ])
        .env("HOME", azlin.home.path())
        .output()
        .unwrap();
    assert!(
        scp.status.success(),
        "{}",
        String::from_utf8_lossy(&scp.stderr)
    );
    assert_eq!(
        azlin.sh("cfg", "cat copied"),
        std::fs::read_to_string("/etc/hostname").unwrap().trim()
    );

    azlin.run(&["code", "cfg", "/tmp"]).expect(0);
    assert_eq!(
        std::fs::read_to_string(&called).unwrap().trim(),
        "--remote ssh-remote+azlin-cfg /tmp"
    );
    // Without `code` on PATH: a prerequisite is missing (2), and it says what to do.
    let missing = Azlin::with_path("/usr/sbin:/usr/bin:/sbin:/bin");
    missing.new_vm("nspawn", "nocode", &[]).expect(0);
    let run = missing.run(&["code", "nocode"]).expect(2);
    assert!(run.stderr.contains("install VS Code"), "{}", run.stderr);
    missing.run(&["delete", "nocode", "--yes"]).expect(0);
    azlin.run(&["delete", "cfg", "--yes"]).expect(0);
}

#[test]
fn health_shows_tmux_sessions_and_logs_show_the_journal_and_cloud_init() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "hl", &[]).expect(0);
    azlin.sh("hl", "tmux new-session -d -s build sleep 600");
    let one = azlin.run(&["-o", "json", "health", "hl"]).expect(0).json();
    let health = &one[0]["health"];
    assert_eq!(health["tmux_sessions"], serde_json::json!(["build"]));
    assert!(health["memory_total"].as_u64().unwrap() > 0, "{health}");
    assert!(health["disk_total"].as_u64().unwrap() > 0, "{health}");
    // The VM's own uptime, not the host's.
    assert!(health["uptime_secs"].as_u64().unwrap() < 600, "{health}");
    // No SSH session but the reading's own; the VM's own CPU time (its cgroup's).
    assert_eq!(health["ssh_sessions"], 0, "{health}");
    assert!(health["cpu_usec"].as_u64().unwrap() > 0, "{health}");
    let all = azlin.run(&["-o", "json", "health"]).expect(0).json();
    assert_eq!(all[0]["name"], "hl");
    let table = azlin.run(&["health"]).expect(0);
    assert!(table.stdout.contains("build"), "{}", table.stdout);
    let wide = azlin
        .run(&["-o", "json", "list", "--wide"])
        .expect(0)
        .json();
    assert_eq!(
        wide[0]["health"]["tmux_sessions"],
        serde_json::json!(["build"])
    );
    let wide = azlin.run(&["list", "--wide"]).expect(0);
    assert!(
        wide.stdout.contains("TMUX") && wide.stdout.contains("build"),
        "{}",
        wide.stdout
    );

    let cloud_init = azlin.run(&["logs", "hl", "--cloud-init"]).expect(0);
    assert!(
        cloud_init.stdout.contains("Cloud-init v."),
        "{}",
        cloud_init.stdout
    );
    let journal = azlin.run(&["logs", "hl", "--boot"]).expect(0);
    assert!(journal.stdout.contains("sshd"), "{}", journal.stdout);
    azlin.run(&["delete", "hl", "--yes"]).expect(0);
}

#[test]
fn fleet_run_prefixes_output_summarises_exit_codes_and_fails_if_any_vm_failed() {
    let azlin = Azlin::new();
    for (name, role) in [
        ("web-1", "web"),
        ("web-2", "web"),
        ("web-3", "web"),
        ("db-1", "db"),
    ] {
        azlin
            .new_vm("sim", name, &["--tag", &format!("role={role}")])
            .expect(0);
    }
    let webs = azlin
        .run(&["fleet", "run", "--match", "web-*", "--", "echo", "hello"])
        .expect(0);
    for vm in ["web-1", "web-2", "web-3"] {
        assert!(
            webs.stdout.contains(&format!("[{vm}] hello")),
            "{}",
            webs.stdout
        );
    }
    assert!(!webs.stdout.contains("db-1"), "{}", webs.stdout);
    let by_tag = azlin
        .run(&[
            "-o", "json", "fleet", "run", "--tag", "role=db", "--", "true",
        ])
        .expect(0)
        .json();
    assert_eq!(by_tag.as_array().unwrap().len(), 1);
    assert_eq!(by_tag[0]["name"], "db-1");
    // One VM fails: azlin fails, and the summary says where and how.
    let mixed = azlin
        .run(&[
            "-o",
            "json",
            "fleet",
            "run",
            "--parallel",
            "2",
            "--",
            "sh",
            "-c",
            "case \"$PWD\" in *db-1*) exit 3;; esac",
        ])
        .expect(1);
    let results = mixed.json();
    let mut codes: Vec<(String, i64)> = results
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["exit_code"].as_i64().unwrap(),
            )
        })
        .collect();
    codes.sort();
    assert_eq!(
        codes,
        [
            ("db-1".to_string(), 3),
            ("web-1".to_string(), 0),
            ("web-2".to_string(), 0),
            ("web-3".to_string(), 0)
        ]
    );
    azlin
        .run(&["fleet", "run", "--match", "nothing-*", "--", "true"])
        .expect(64);
    azlin
        .run(&["fleet", "run", "--tag", "role", "--", "true"])
        .expect(64);
}

/// An HTTP GET of `path` on `addr`; the body, or `None` when nothing answers.
fn http_body(addr: &str, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

#[test]
fn a_tunnel_runs_in_the_background_until_closed() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "tun", &[]).expect(0);
    azlin.sh(
        "tun",
        "cd /tmp && echo served-by-the-vm > page && (nohup python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1 &) && for i in $(seq 50); do curl -s localhost:8000/page >/dev/null && break; sleep 0.1; done",
    );
    let port = azlin_testkit::free_port(std::net::Ipv4Addr::LOCALHOST.into());
    let forward = format!("{port}:localhost:8000");
    let opened = azlin
        .run(&["-o", "json", "tunnel", "tun", &forward])
        .expect(0)
        .json();
    let id = opened["id"].as_str().unwrap().to_string();
    // azlin has exited; the tunnel runs on, on loopback.
    let addr = format!("127.0.0.1:{port}");
    assert_eq!(
        http_body(&addr, "/page").as_deref(),
        Some("served-by-the-vm\n")
    );
    let listed = azlin
        .run(&["-o", "json", "tunnel", "list"])
        .expect(0)
        .json();
    assert_eq!(listed[0]["id"], id.as_str());
    // The same local port again is refused, and changes nothing.
    azlin.run(&["tunnel", "tun", &forward]).expect(64);
    azlin.run(&["tunnel", "close", &id]).expect(0);
    crate::support::assert_nothing_left(|| {
        http_body(&addr, "/page")
            .map(|_| vec![format!("a listener on {addr}")])
            .unwrap_or_default()
    });
    azlin.run(&["tunnel", "close", &id]).expect(64);
    azlin.run(&["tunnel", "tun", "80"]).expect(64);
    azlin.run(&["delete", "tun", "--yes"]).expect(0);
}

#[test]
fn keys_rotate_replaces_the_key_everywhere_or_nowhere() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "rot-a", &[]).expect(0);
    azlin.new_vm("nspawn", "rot-b", &[]).expect(0);
    let key = azlin.key();
    let old_key = azlin.home.path().join("old_key");
    std::fs::copy(&key, &old_key).unwrap();
    let old_public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let authorized = |vm: &str| azlin.sh(vm, "cat ~/.ssh/authorized_keys");
    let before = authorized("rot-a");

    // One VM cannot be reached: nothing changes, anywhere.
    azlin.run(&["stop", "rot-b"]).expect(0);
    let refused = azlin.run(&["keys", "rotate"]).expect(1);
    assert!(refused.stderr.contains("not rotated"), "{}", refused.stderr);
    assert_eq!(
        std::fs::read_to_string(key.with_extension("pub")).unwrap(),
        old_public
    );
    assert_eq!(authorized("rot-a"), before);

    azlin.run(&["start", "rot-b"]).expect(0);
    azlin.run(&["keys", "rotate"]).expect(0);
    let new_public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    assert_ne!(new_public, old_public);
    for vm in ["rot-a", "rot-b"] {
        // azlin logs in with the new key, and the VM no longer takes the old one.
        let keys = authorized(vm);
        assert!(
            keys.contains(new_public.split_whitespace().nth(1).unwrap()),
            "{keys}"
        );
        assert!(
            !keys.contains(old_public.split_whitespace().nth(1).unwrap()),
            "{keys}"
        );
        let info = azlin.vm(vm);
        let known_hosts = azlin.state_dir().join("known_hosts.d").join(vm);
        let user_at_host = format!(
            "{}@{}",
            info["user"].as_str().unwrap(),
            info["address"].as_str().unwrap()
        );
        let old_login = crate::support::strict_ssh(&old_key, &known_hosts, &user_at_host, "true");
        assert!(
            !old_login.status.success(),
            "the old key still logs in to {vm}"
        );
        let new_login = crate::support::strict_ssh(&key, &known_hosts, &user_at_host, "true");
        assert!(
            new_login.status.success(),
            "{}",
            String::from_utf8_lossy(&new_login.stderr)
        );
    }
    for vm in ["rot-a", "rot-b"] {
        azlin.run(&["delete", vm, "--yes"]).expect(0);
    }
}

#[test]
fn cleanup_removes_what_crashes_left_and_nothing_else() {
    use crate::support::HostFootprint;
    let azlin = Azlin::new();
    // A bystander VM of another azlin home: cleanup must not touch it.
    let bystander = Azlin::new();
    bystander.new_vm("nspawn", "keep-me", &[]).expect(0);

    // 1. A machine killed and its folder gone: its network and cgroups stay behind.
    azlin.new_vm("nspawn", "crashed", &[]).expect(0);
    let crashed = azlin.vm("crashed");
    let footprint = HostFootprint::of(&crashed);
    footprint.assert_present();
    let folder = crashed["details"]["folder"].as_str().unwrap().to_string();
    for pid in crate::support::nspawn_processes(&folder) {
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    crate::support::assert_nothing_left(|| {
        crate::support::nspawn_processes(&folder)
            .iter()
            .map(|p| format!("process {p}"))
            .collect()
    });
    // Every mount under the folder, innermost first, detached.
    let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&folder))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mount in mounts {
        Command::new("umount")
            .args(["-l", &mount])
            .status()
            .unwrap();
    }
    // Only then may the folder go: a mount left inside it (the base image, mapped) would be
    // emptied through it.
    let still_mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&folder)));
    assert!(!still_mounted, "mounts are left under {folder}");
    std::fs::remove_dir_all(&folder).unwrap();
    // 2. A VM no record names (the state database lost, as by a crash mid-create).
    azlin.new_vm("nspawn", "unnamed", &[]).expect(0);
    let unnamed = HostFootprint::of(&azlin.vm("unnamed"));
    // 3. A recorded orphan: a sim VM whose delete failed.
    azlin.new_vm("sim", "stuck", &[]).expect(0);
    let failed = azlin
        .command(&["delete", "stuck", "--yes"])
        .env("AZLIN_SIM_DELETE_FAIL_RATE", "1")
        .output()
        .unwrap();
    assert!(!failed.status.success());
    for db in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(azlin.state_dir().join(db));
    }

    let dry = azlin
        .run(&["-o", "json", "cleanup", "--dry-run"])
        .expect(0)
        .json();
    let listed = dry["removed"].to_string();
    assert!(listed.contains("stuck"), "{listed}");
    assert!(listed.contains("unnamed"), "{listed}");
    assert!(listed.contains("a VM that is gone"), "{listed}");
    assert!(!listed.contains("keep-me"), "{listed}");
    // A dry run changes nothing.
    unnamed.assert_present();

    let done = azlin.run(&["-o", "json", "cleanup"]).expect(0).json();
    assert_eq!(done["failed"], serde_json::json!([]), "{done}");
    footprint.assert_gone();
    unnamed.assert_gone();
    assert_eq!(
        std::fs::read_to_string(azlin.state_dir().join("orphans.jsonl")).unwrap_or_default(),
        ""
    );
    let again = azlin.run(&["cleanup"]).expect(0);
    assert!(
        again.stdout.contains("nothing to clean up"),
        "{}",
        again.stdout
    );
    // The bystander still answers.
    assert_eq!(bystander.sh("keep-me", "echo alive"), "alive");
    bystander.run(&["delete", "keep-me", "--yes"]).expect(0);
}

#[test]
fn cleanup_after_a_launch_killed_mid_provision_leaves_nothing() {
    use crate::support::HostFootprint;
    let azlin = Azlin::new();
    let mut launch = azlin
        .command(&crate::common::new_args("nspawn", "killed", &[]))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the machine is being made: its folder and network exist.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let vm = loop {
        let status = azlin.run(&["status", "killed", "-o", "json"]);
        if status.code == 0 {
            let vm = status.json()["vm"].clone();
            if vm["details"]["slot"].is_string() && vm["details"]["folder"].is_string() {
                break vm;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the launch never began"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    launch.kill().unwrap();
    launch.wait().unwrap();
    let footprint = HostFootprint::of(&vm);

    let cleaned = azlin.run(&["cleanup"]).expect(0);
    assert!(
        cleaned
            .stdout
            .contains("VM 'killed' (its launch was killed)"),
        "{}",
        cleaned.stdout
    );
    footprint.assert_gone();
    azlin.assert_no_vms();
    assert!(
        azlin
            .run(&["cleanup"])
            .expect(0)
            .stdout
            .contains("nothing to clean up")
    );
}

/// `azlin serve` with `[vm] idle_stop_minutes` stops a VM nobody is logged in to and that does
/// nothing, says why in `list`, and leaves a VM with an open SSH session running until that
/// session ends; `start` clears the reason. A limit that is not a positive number is refused.
#[test]
fn serve_stops_idle_vms_and_list_says_why() {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let azlin = Azlin::new();
    azlin.config("[vm]\nidle_stop_minutes = -1\n");
    let refused = azlin.run(&["serve"]).expect(64);
    assert!(
        refused.stderr.contains("idle_stop_minutes"),
        "{}",
        refused.stderr
    );
    azlin.new_vm("nspawn", "idle-a", &[]).expect(0);
    azlin.new_vm("nspawn", "busy-b", &[]).expect(0);
    // Someone stays logged in to busy-b.
    let mut session = azlin
        .command(&["connect", "busy-b", "--no-tmux", "--", "sleep", "600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    azlin.config("[vm]\nidle_stop_minutes = 0.1\n");
    let serve = crate::support::Background::spawn(azlin.command(&["serve"]));
    let state = |name: &str| azlin.vm(name)["state"].as_str().unwrap().to_string();
    let wait_stopped = |name: &str| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while state(name) != "stopped" {
            assert!(Instant::now() < deadline, "{name} was not stopped");
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    wait_stopped("idle-a");
    assert_eq!(state("busy-b"), "running");
    let message = |name: &str| {
        let rows = azlin.run(&["list", "-o", "json"]).expect(0).json();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["message"].as_str().unwrap_or_default().to_string())
            .unwrap()
    };
    let why = message("idle-a");
    assert!(
        why.contains("stopped by azlin serve") && why.contains("idle for"),
        "{why}"
    );
    // The session ends: busy-b goes idle too.
    // azlin and the `ssh` it runs: the whole process group.
    let ended = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", session.id())])
        .status()
        .unwrap();
    assert!(ended.success());
    session.wait().unwrap();
    wait_stopped("busy-b");

    let out = serve.interrupt();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("idle-a stopped by azlin serve"), "{stderr}");

    azlin.run(&["start", "idle-a"]).expect(0);
    assert!(!message("idle-a").contains("stopped by azlin serve"));
    for name in ["idle-a", "busy-b"] {
        azlin.run(&["delete", name, "--yes"]).expect(0);
    }
    azlin.assert_no_vms();
}
