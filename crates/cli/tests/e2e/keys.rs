//! The azlin SSH key (step 3): created Ed25519 with 0600/0644, reused when present, and never
//! silently "fixed" when its permissions are wrong. Uses the fast `sim` provider.

use crate::support::{Azlin, generate_key};
use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_key_is_ed25519_with_strict_permissions() {
    let azlin = Azlin::new();
    let run = azlin.new_vm("sim", "k1", &[]).expect(0);
    assert!(run.stderr.contains("SSH key: created"), "{}", run.stderr);
    let key = azlin.key();
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&key.with_extension("pub")), 0o644);
    assert!(
        std::fs::read_to_string(key.with_extension("pub"))
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    // ssh-keygen agrees it is a valid key pair.
    let out = std::process::Command::new("ssh-keygen")
        .args(["-y", "-f", key.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_existing_key_is_reused_not_overwritten() {
    let azlin = Azlin::new();
    let key = azlin.key();
    std::fs::create_dir_all(key.parent().unwrap()).unwrap();
    generate_key(&key, "mine");
    let before = (
        std::fs::read(&key).unwrap(),
        std::fs::read(key.with_extension("pub")).unwrap(),
    );
    let run = azlin.new_vm("sim", "k2", &[]).expect(0);
    assert!(run.stderr.contains("SSH key: reused"), "{}", run.stderr);
    let after = (
        std::fs::read(&key).unwrap(),
        std::fs::read(key.with_extension("pub")).unwrap(),
    );
    assert_eq!(before, after);
}

#[test]
fn a_key_others_can_read_is_reported_and_left_alone() {
    let azlin = Azlin::new();
    azlin.new_vm("sim", "k3", &[]).expect(0);
    let key = azlin.key();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let run = azlin.new_vm("sim", "k4", &[]).expect(4);
    assert!(
        run.stderr.contains("too open") && run.stderr.contains("chmod 600"),
        "{}",
        run.stderr
    );
    assert_eq!(mode(&key), 0o644);
    let listed = azlin.run(&["list", "-o", "json"]).expect(0).json();
    assert!(
        !listed.as_array().unwrap().iter().any(|v| v["name"] == "k4"),
        "{listed}"
    );
    // Deleting needs no key: a key with the wrong mode does not keep a VM alive.
    azlin.run(&["delete", "k3", "--yes"]).expect(0);
    assert_eq!(mode(&key), 0o644);
    azlin.assert_no_vms();
}
