//! `azlin new` on the nspawn provider, end to end: SSH with the injected keys under strict
//! host-key checking, cloud-init done, the repository cloned from an HTTPS server trusted through
//! `--ca-cert`, `connect -- CMD`, and a delete that leaves nothing behind.

use crate::git_server::GitServer;
use crate::support::{Azlin, HostFootprint, generate_key, strict_ssh};

#[test]
fn new_clones_connects_and_deletes_without_leftovers() {
    let server = GitServer::start();
    let azlin = Azlin::new();
    azlin.config(&server.config());
    // A repository the server does not have: a warning, and the launch goes on (seed 000).
    let missing = server.url.replace("demo.git", "missing.git");
    let run = azlin
        .new_vm(
            "nspawn",
            "e2e",
            &[
                "--repo",
                &server.url,
                "--repo",
                &missing,
                "--ca-cert",
                server.ca_path.to_str().unwrap(),
            ],
        )
        .expect(0);
    assert!(
        run.stderr
            .contains(&format!("⚠ Repositories: cloning {missing} failed")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("1 of 2 repositories cloned"),
        "{}",
        run.stderr
    );
    for stage in [
        "✓ Prerequisites",
        "✓ Authentication",
        "✓ SSH key",
        "✓ Waiting for SSH",
        "✓ Waiting for cloud-init",
    ] {
        assert!(
            run.stderr.contains(stage),
            "missing {stage} in:\n{}",
            run.stderr
        );
    }
    assert!(run.stdout.contains("VM e2e is ready"), "{}", run.stdout);

    let vm = azlin.vm("e2e");
    assert_eq!(vm["state"], "running");
    let footprint = HostFootprint::of(&vm);
    footprint.assert_present();
    let address = vm["address"].as_str().unwrap();
    let host_key = vm["host_key"].as_str().unwrap();

    // The VM answers the system ssh with the azlin key, checked strictly against the host key
    // azlin injected; a different expected host key is refused.
    let known_hosts = azlin.home.path().join("known_hosts.test");
    std::fs::write(&known_hosts, format!("{address} {host_key}\n")).unwrap();
    let out = strict_ssh(
        &azlin.key(),
        &known_hosts,
        &format!("azureuser@{address}"),
        "cloud-init status; sudo -n true && echo sudo-ok; hostname; \
         sudo cloud-init schema --system >/dev/null 2>&1 && echo schema-ok",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("status: done"), "{text}");
    assert!(text.contains("sudo-ok"), "{text}");
    assert!(text.lines().any(|l| l == "e2e"), "{text}");
    // The cloud-config azlin generated passes cloud-init's own schema check.
    assert!(text.contains("schema-ok"), "{text}");
    let other_key = foreign_host_key();
    std::fs::write(&known_hosts, format!("{address} {other_key}\n")).unwrap();
    let out = strict_ssh(
        &azlin.key(),
        &known_hosts,
        &format!("azureuser@{address}"),
        "true",
    );
    assert!(
        !out.status.success(),
        "ssh accepted a host key that is not the injected one"
    );

    // The repository holds the served commit.
    let run = azlin
        .run(&[
            "connect",
            "e2e",
            "--",
            "git",
            "-C",
            "demo",
            "rev-parse",
            "HEAD",
        ])
        .expect(0);
    assert_eq!(run.stdout.trim(), server.commit);
    let run = azlin.run(&["connect", "e2e", "--", "tmux", "-V"]).expect(0);
    assert!(run.stdout.starts_with("tmux "), "{}", run.stdout);
    // The image's Node.js, which JavaScript actions up to `node24` run with, is first on PATH.
    let run = azlin
        .run(&["connect", "e2e", "--", "node", "--version"])
        .expect(0);
    assert!(run.stdout.starts_with("v24."), "{}", run.stdout);
    // A command's exit code comes back as azlin's.
    azlin
        .run(&["connect", "e2e", "--", "sh", "-c", "exit 7"])
        .expect(7);
    // Even 255, which `ssh` also uses for "could not connect".
    azlin
        .run(&["connect", "e2e", "--", "sh", "-c", "exit 255"])
        .expect(255);

    let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "e2e" && v["state"] == "running")
    );

    let run = azlin.run(&["delete", "e2e", "--yes"]).expect(0);
    assert!(
        run.stderr.contains("network namespace azlin-"),
        "{}",
        run.stderr
    );
    footprint.assert_gone();
    azlin.assert_no_vms();
    azlin.run(&["status", "e2e"]).expect(64);
}

/// A host key that is not the VM's.
fn foreign_host_key() -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    generate_key(&path, "foreign");
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn stop_and_start_keep_the_disk() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "cycle", &[]).expect(0);
    azlin
        .run(&["connect", "cycle", "--", "sh", "-c", "echo kept > marker"])
        .expect(0);
    azlin.run(&["stop", "cycle"]).expect(0);
    let vm = azlin.vm("cycle");
    assert_eq!(vm["state"], "stopped");
    azlin.run(&["connect", "cycle", "--", "true"]).expect(5);
    // `start` returns once the VM answers SSH: the next command connects at once.
    let started = azlin
        .run(&["start", "cycle", "-o", "json"])
        .expect(0)
        .json();
    assert_eq!(started["state"], "running", "{started}");
    let footprint = HostFootprint::of(&azlin.vm("cycle"));
    footprint.assert_present();
    let run = azlin
        .run(&["connect", "cycle", "--", "cat", "marker"])
        .expect(0);
    assert_eq!(run.stdout.trim(), "kept");
    azlin.run(&["delete", "cycle", "--yes"]).expect(0);
    footprint.assert_gone();
}

#[test]
fn building_a_cached_image_reports_it_without_rebuilding() {
    let azlin = Azlin::new();
    let minimal = azlin.image("nspawn", "minimal");
    let run = azlin
        .run(&["image", "build", "--provider", "nspawn", "-o", "json"])
        .expect(0);
    let built = run.json();
    assert_eq!(built["cached"], true, "{built}");
    assert_eq!(built["dir"], minimal["dir"], "{built} vs {minimal}");
    assert!(run.stderr.contains("cached at"), "{}", run.stderr);
}
