//! Every exit code of the contract, triggered for real, and input that must be refused with
//! nothing changed.

use crate::support::{Azlin, HostFootprint, new_args, nspawn_processes};
use std::os::unix::fs::PermissionsExt;

/// Asserts that `azlin` made nothing: no VM folder, no process, no record.
fn assert_nothing_made(azlin: &Azlin) {
    let nspawn = azlin.state_dir().join("nspawn");
    let folders: Vec<_> = std::fs::read_dir(&nspawn)
        .map(|d| {
            d.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    assert!(folders.is_empty(), "VM folders were made: {folders:?}");
    assert!(nspawn_processes(&azlin.home.path().display().to_string()).is_empty());
    azlin.assert_no_vms();
}

/// `azlin new` of a valid nspawn VM `ok`, then `extra`: what makes the request wrong.
fn new_ok_with<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    [&["new", "--provider", "nspawn", "--name", "ok"], extra].concat()
}

#[test]
fn bad_input_is_refused_with_64_before_anything_is_made() {
    let azlin = Azlin::new();
    let cases: &[(Vec<&str>, &str)] = &[
        (
            vec!["new", "--provider", "nspawn", "--name", "Bad_Name"],
            "invalid VM name 'Bad_Name'",
        ),
        (
            vec!["new", "--provider", "nspawn", "--name", "1abc"],
            "must start with a lowercase letter",
        ),
        (
            new_ok_with(&["--repo", "http://example.com/a/b.git"]),
            "only https:// URLs are allowed",
        ),
        (
            new_ok_with(&["--repo", "git@github.com:a/b.git"]),
            "refusing repository URL",
        ),
        (
            new_ok_with(&["--repo=--upload-pack=touch /tmp/azlin-pwned"]),
            "looks like a git option",
        ),
        (
            new_ok_with(&[
                "--repo",
                "https://example.com/a/b.git --upload-pack=touch /tmp/x",
            ]),
            "shell metacharacters or whitespace",
        ),
        (
            new_ok_with(&["--repo", "https://example.com/a/$(id).git"]),
            "shell metacharacters",
        ),
        (
            new_ok_with(&["--repo", "https://user:secret@example.com/a/b.git"]),
            "credentials",
        ),
        (
            vec!["new", "--provider", "docker", "--name", "ok"],
            "unknown provider 'docker'",
        ),
        (
            new_ok_with(&["--size", "Standard_Huge"]),
            "unknown size 'Standard_Huge'",
        ),
        (
            new_ok_with(&["--region", "mars-north"]),
            "unknown region 'mars-north'",
        ),
        (
            new_ok_with(&["--image", "gui"]),
            "unknown image profile 'gui'",
        ),
        (new_ok_with(&["--count", "0"]), "--count must be between"),
        (new_ok_with(&["--tag", "novalue"]), "is not K=V"),
        (
            new_ok_with(&["--cloud-init", "/nonexistent/file"]),
            "cannot read cloud-init file",
        ),
        (vec!["new", "--no-such-flag"], "unexpected argument"),
        (vec!["connect", "Bad!"], "invalid VM name"),
        (vec!["delete", "ghost", "--yes"], "no VM named 'ghost'"),
    ];
    for (args, message) in cases {
        let run = azlin.run(args).expect(64);
        assert!(
            run.stderr.contains(message),
            "{args:?}: expected {message:?} in:\n{}",
            run.stderr
        );
    }
    // A cloud-init file that is YAML but not a cloud-config mapping is caught before any VM.
    let not_a_mapping = azlin.home.path().join("list.yaml");
    std::fs::write(&not_a_mapping, "#cloud-config\n- runcmd\n").unwrap();
    let run = azlin
        .run(&new_ok_with(&[
            "--cloud-init",
            not_a_mapping.to_str().unwrap(),
        ]))
        .expect(64);
    assert!(
        run.stderr.contains("must be a YAML mapping"),
        "{}",
        run.stderr
    );
    assert!(!std::path::Path::new("/tmp/azlin-pwned").exists());
    assert_nothing_made(&azlin);
}

#[test]
fn a_broken_config_file_is_a_usage_error() {
    let azlin = Azlin::new();
    azlin.config("provdier = \"nspawn\"\n");
    let run = azlin.run(&["list"]).expect(64);
    assert!(run.stderr.contains("provdier"), "{}", run.stderr);
    let run = azlin
        .run(&["--config", "/nonexistent.toml", "list"])
        .expect(64);
    assert!(
        run.stderr.contains("cannot read config file"),
        "{}",
        run.stderr
    );
}

#[test]
fn missing_tool_exits_2_naming_it() {
    let bin = tempfile::tempdir().unwrap();
    // A PATH with ssh but without systemd-nspawn, ip, nft or debootstrap.
    std::os::unix::fs::symlink("/usr/bin/ssh", bin.path().join("ssh")).unwrap();
    let azlin = Azlin::with_path(bin.path().to_str().unwrap());
    let run = azlin.new_vm("nspawn", "tools", &[]).expect(2);
    assert!(
        run.stderr.contains("systemd-nspawn")
            && run.stderr.contains("apt-get install systemd-container"),
        "{}",
        run.stderr
    );
    let run = azlin.run(&["doctor", "--provider", "nspawn"]).expect(2);
    assert!(run.stdout.contains("✗ systemd-nspawn"), "{}", run.stdout);
    assert_nothing_made(&azlin);
}

#[test]
fn without_root_nspawn_exits_3() {
    let azlin = Azlin::new();
    std::fs::set_permissions(azlin.home.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = azlin
        .run_as_nobody(&new_args("nspawn", "noroot", &[]))
        .expect(3);
    assert!(run.stderr.contains("needs root"), "{}", run.stderr);
    assert_nothing_made(&azlin);
}

#[test]
fn a_broken_image_exits_4_after_cleaning_up() {
    // A base image that is not bootable, where azlin looks for the real one.
    let images = tempfile::tempdir().unwrap();
    let azlin = Azlin::with_image_dir(images.path());
    let expected = azlin.image("nspawn", "minimal");
    let dir = expected["dir"].as_str().unwrap();
    std::fs::create_dir_all(format!("{dir}/rootfs/etc")).unwrap();
    std::fs::write(format!("{dir}/rootfs/etc/os-release"), "ID=broken\n").unwrap();

    let run = azlin.new_vm("nspawn", "broken", &[]).expect(4);
    assert!(run.stderr.contains("cleaned up: removed"), "{}", run.stderr);
    assert!(
        run.stderr.contains("nothing is left behind"),
        "{}",
        run.stderr
    );
    // Whatever slot the attempts used, its network is gone — or taken since by a VM of a test
    // running alongside, which then runs a machine in it.
    for slot in run.stderr.split("network namespace azlin-").skip(1) {
        let slot: String = slot.chars().take_while(char::is_ascii_digit).collect();
        assert_slot_released(&slot);
    }
    HostFootprint::of_folder(&azlin.state_dir().join("nspawn/broken")).assert_gone();
    assert_nothing_made(&azlin);
}

#[test]
fn ssh_never_coming_up_exits_5_and_leaves_the_vm_running() {
    let azlin = Azlin::new();
    // Long enough for a boot on a loaded machine to reach cloud-init and sshd's failure, which
    // the diagnosis below must name.
    azlin.config("ssh_timeout_secs = 30\n");
    let cloud_init = azlin.home.path().join("no-sshd.yaml");
    // Runs before sshd starts: without its binary, sshd never listens.
    std::fs::write(
        &cloud_init,
        "#cloud-config\nbootcmd:\n  - rm -f /usr/sbin/sshd\n",
    )
    .unwrap();
    let run = azlin
        .new_vm(
            "nspawn",
            "nossh",
            &["--cloud-init", cloud_init.to_str().unwrap()],
        )
        .expect(5);
    assert!(run.stderr.contains("left running"), "{}", run.stderr);
    // What the VM says about its boot names the unit that failed: in its failed units once
    // systemd gave up restarting it, or in the console while it still retries (how far it got
    // within the timeout depends on the machine's load).
    let said = run
        .stderr
        .split("what the VM says:")
        .nth(1)
        .unwrap_or_else(|| panic!("no diagnosis in:\n{}", run.stderr));
    let failed_unit = said
        .split("failed units:")
        .nth(1)
        .is_some_and(|units| units.contains("ssh.service"));
    assert!(
        failed_unit || said.contains("Failed to start ssh.service"),
        "{said}"
    );
    let vm = azlin.vm("nossh");
    assert_eq!(vm["state"], "running");
    let footprint = HostFootprint::of(&vm);
    footprint.assert_present();
    azlin.run(&["delete", "nossh", "--yes"]).expect(0);
    footprint.assert_gone();
}

#[test]
fn of_two_launches_racing_for_one_name_one_wins_and_the_other_is_a_usage_error() {
    let azlin = Azlin::new();
    azlin.config("[sim]\nboot_ms = 300\n");
    for round in 0..5 {
        let name = format!("raced{round}");
        let runs: Vec<_> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..2)
                .map(|_| scope.spawn(|| azlin.new_vm("sim", &name, &[])))
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let mut codes: Vec<i32> = runs.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        let stderr: Vec<&str> = runs.iter().map(|r| r.stderr.as_str()).collect();
        assert_eq!(codes, [0, 64], "{stderr:?}");
        assert!(
            stderr.iter().any(|e| e.contains("already exists")),
            "{stderr:?}"
        );
        azlin.run(&["delete", &name, "--yes"]).expect(0);
    }
    azlin.assert_no_vms();
}

/// Asserts that network slot `slot` is free, or holds a running machine (another test's VM
/// that took the slot after it was released) within 5 s: a namespace left behind by a failed
/// create has no process in it and stays.
fn assert_slot_released(slot: &str) {
    let netns = format!("azlin-{slot}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if !std::path::Path::new(&format!("/run/netns/{netns}")).exists() {
            return;
        }
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &netns])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        if !pids.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "network namespace {netns} was left behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
