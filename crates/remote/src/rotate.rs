//! Rotating the SSH key azlin logs in with, one VM at a time, without locking anyone out: the
//! new public key goes next to the old one wherever the old one is authorized (the login
//! user's and root's `authorized_keys`), a login with the new key proves it, and only then
//! may the old key be removed.

use crate::keys::Identity;
use crate::quote;
use crate::shell::RemoteError;
use crate::ssh::SshShell;
use azlin_core::Vm;

/// The key material of a public key line (`ssh-ed25519 BLOB comment` → `BLOB`).
fn blob(public_openssh: &str) -> &str {
    public_openssh
        .split_whitespace()
        .nth(1)
        .unwrap_or(public_openssh)
}

/// The `authorized_keys` files a key may be in: the login user's and root's.
const FILES: &str = r#""$HOME/.ssh/authorized_keys" /root/.ssh/authorized_keys"#;

/// Adds `line` to every `authorized_keys` that authorizes `present`, unless it is there.
fn add_script(present: &str, line: &str) -> String {
    format!(
        "for f in {FILES}; do sudo -n test -f \"$f\" || continue; \
         if sudo -n grep -qF {present} \"$f\" && ! sudo -n grep -qF {new} \"$f\"; then \
         printf '%s\\n' {line} | sudo -n tee -a \"$f\" >/dev/null || exit 1; fi; done",
        present = quote::sh(blob(present)),
        new = quote::sh(blob(line)),
        line = quote::sh(line),
    )
}

/// Removes every line holding `gone` from the `authorized_keys` files (keeping their owner and
/// mode: the file is rewritten in place).
fn remove_script(gone: &str) -> String {
    format!(
        "for f in {FILES}; do sudo -n test -f \"$f\" || continue; \
         sudo -n sh -c 'grep -vF \"$1\" \"$2\" > \"$2.azlin-tmp\"; cat \"$2.azlin-tmp\" > \"$2\"; rm -f \"$2.azlin-tmp\"' _ {gone} \"$f\" || exit 1; done",
        gone = quote::sh(blob(gone)),
    )
}

async fn run(vm: &Vm, login: &Identity, script: &str) -> Result<(), RemoteError> {
    let shell = SshShell::connect(&crate::ssh_target(vm), login).await?;
    let out = crate::Shell::capture(&shell, script).await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(RemoteError::Key(format!(
            "updating authorized_keys on {} failed: {}",
            vm.name,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Authorizes `new` on `vm` wherever `old` is, then proves it with a login using `new`.
pub async fn add_and_verify(vm: &Vm, old: &Identity, new: &Identity) -> Result<(), RemoteError> {
    run(
        vm,
        old,
        &add_script(&old.public_openssh, &new.public_openssh),
    )
    .await?;
    let shell = SshShell::connect(&crate::ssh_target(vm), new).await?;
    let out = crate::Shell::capture(&shell, "true").await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(RemoteError::Key(format!(
            "a login to {} with the new key did not work",
            vm.name
        )))
    }
}

/// Removes the key `gone` from `vm`, logged in with `login` (which must stay authorized).
pub async fn remove_key(vm: &Vm, login: &Identity, gone: &Identity) -> Result<(), RemoteError> {
    run(vm, login, &remove_script(&gone.public_openssh)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_match_keys_by_their_material_and_quote_them() {
        let old = "ssh-ed25519 AAAAold azlin";
        let new = "ssh-ed25519 AAAAnew azlin";
        let add = add_script(old, new);
        assert!(add.contains("grep -qF 'AAAAold'"), "{add}");
        assert!(add.contains("! sudo -n grep -qF 'AAAAnew'"), "{add}");
        assert!(
            add.contains("printf '%s\\n' 'ssh-ed25519 AAAAnew azlin'"),
            "{add}"
        );
        let remove = remove_script(old);
        assert!(remove.contains("_ 'AAAAold' \"$f\""), "{remove}");
        assert!(!remove.contains("AAAAnew"));
    }
}
