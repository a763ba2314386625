//! A GitHub token for new VMs (step 6 of the launch): a private repository on the test's HTTPS
//! git server clones with `--gh-token-file`, and fails with a message saying how to give a
//! token without one; the VM's `gh` (a stand-in that records its calls) is logged in with the
//! token on stdin; and the token is in no file azlin wrote.

use crate::common::files_containing;
use crate::git_server::{GitServer, PRIVATE_TOKEN};
use crate::support::Azlin;

/// A stand-in `gh` for the VM: records its arguments and what it read on stdin.
const GH_STUB: &str = r#"#cloud-config
write_files:
  - path: /usr/local/bin/gh
    permissions: "0755"
    content: |
      #!/bin/sh
      echo "$*" >> /tmp/gh-calls
      cat >> /tmp/gh-stdin
"#;

#[test]
fn a_private_repository_clones_with_a_token_and_fails_clearly_without() {
    let server = GitServer::start();
    let azlin = Azlin::new();
    azlin.config(&server.config());
    let ca = server.ca_path.to_str().unwrap();

    let without = azlin
        .new_vm(
            "nspawn",
            "ghnone",
            &["--repo", &server.private_url, "--ca-cert", ca],
        )
        .expect(0);
    assert!(
        without
            .stderr
            .contains(&format!("cloning {} failed", server.private_url)),
        "{}",
        without.stderr
    );
    assert!(
        without.stderr.contains("--gh-token-file"),
        "{}",
        without.stderr
    );
    assert_eq!(
        azlin.sh("ghnone", "test -d demo && echo yes || echo no"),
        "no"
    );
    azlin.run(&["delete", "ghnone", "--yes"]).expect(0);

    let secrets = tempfile::tempdir().unwrap();
    let token_file = secrets.path().join("token");
    std::fs::write(&token_file, format!("{PRIVATE_TOKEN}\n")).unwrap();
    let stub = secrets.path().join("gh.yaml");
    std::fs::write(&stub, GH_STUB).unwrap();
    let with = azlin
        .new_vm(
            "nspawn",
            "ghtoken",
            &[
                "--repo",
                &server.private_url,
                "--ca-cert",
                ca,
                "--gh-token-file",
                token_file.to_str().unwrap(),
                "--cloud-init",
                stub.to_str().unwrap(),
            ],
        )
        .expect(0);
    assert!(
        with.stderr.contains("1 of 1 repositories cloned"),
        "{}",
        with.stderr
    );
    assert!(with.stderr.contains("gh logged in"), "{}", with.stderr);
    assert_eq!(
        azlin.sh("ghtoken", "git -C demo rev-parse HEAD"),
        server.commit
    );
    assert_eq!(
        azlin.sh("ghtoken", "cat /tmp/gh-calls"),
        "auth login --with-token --hostname github.com"
    );
    assert_eq!(azlin.sh("ghtoken", "cat /tmp/gh-stdin"), PRIVATE_TOKEN);
    // The credentials on the VM are the login user's alone.
    assert_eq!(
        azlin.sh("ghtoken", "stat -c %a ~/.config/azlin/git-credentials"),
        "600"
    );
    assert!(!with.stderr.contains(PRIVATE_TOKEN) && !with.stdout.contains(PRIVATE_TOKEN));
    let leaked = files_containing(azlin.home.path(), PRIVATE_TOKEN);
    assert!(leaked.is_empty(), "the token is in {leaked:?}");
    azlin.run(&["delete", "ghtoken", "--yes"]).expect(0);
    azlin.assert_no_vms();
}
