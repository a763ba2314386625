//! SSH keys: the user's `azlin_key` (Ed25519, 0600/0644, reused when present) and the per-VM
//! host keys azlin injects through cloud-init.

use crate::shell::RemoteError;
use azlin_core::cloudinit::HostKey;
use russh::keys::ssh_key::{LineEnding, private::Ed25519Keypair};
use russh::keys::{PrivateKey, PublicKey};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The user's SSH identity.
#[derive(Clone)]
pub struct Identity {
    /// The private key file.
    pub private_path: PathBuf,
    /// The loaded private key.
    pub key: Arc<PrivateKey>,
    /// The public key in OpenSSH format (`ssh-ed25519 AAAA… comment`).
    pub public_openssh: String,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Identity")
            .field("private_path", &self.private_path)
            .field("public_openssh", &self.public_openssh)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A key pair that lives only in memory, for a control plane that will never open SSH (a
    /// delete): removing a VM must not depend on the state of the user's key file.
    pub fn ephemeral() -> Result<Self, RemoteError> {
        let key = generate_ed25519("azlin-ephemeral")?;
        let public_openssh = public_openssh(key.public_key())?;
        Ok(Identity {
            private_path: PathBuf::new(),
            key: Arc::new(key),
            public_openssh,
        })
    }
}

/// Whether [`ensure_identity`] made a new key or found one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// A new key pair was generated.
    Created,
    /// An existing key pair was reused.
    Reused,
}

fn key_error(message: String) -> RemoteError {
    RemoteError::Key(message)
}

/// 32 random bytes from the kernel.
fn random_seed() -> Result<[u8; 32], RemoteError> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(|e| RemoteError::io("reading /dev/urandom", e))?;
    Ok(seed)
}

/// Generates a new Ed25519 private key.
pub fn generate_ed25519(comment: &str) -> Result<PrivateKey, RemoteError> {
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&random_seed()?));
    key.set_comment(comment);
    Ok(key)
}

fn public_openssh(key: &PublicKey) -> Result<String, RemoteError> {
    key.to_openssh()
        .map_err(|e| key_error(format!("encoding public key: {e}")))
}

/// Generates a host key pair for a new VM.
pub fn generate_host_key(vm_name: &str) -> Result<HostKey, RemoteError> {
    let key = generate_ed25519(&format!("azlin-host-{vm_name}"))?;
    let private_openssh = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_error(format!("encoding host key: {e}")))?
        .to_string();
    Ok(HostKey {
        private_openssh,
        public_openssh: public_openssh(key.public_key())?,
    })
}

/// Writes `contents` to a new file with exactly `mode`; fails if the file exists.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), RemoteError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| RemoteError::io(format!("creating {}", path.display()), e))?;
    file.write_all(contents)
        .map_err(|e| RemoteError::io(format!("writing {}", path.display()), e))?;
    // The umask may have narrowed the mode; set it exactly.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| RemoteError::io(format!("chmod {}", path.display()), e))
}

/// A name next to `path` that no other process or thread uses (process id and a counter).
fn private_sibling(path: &Path, suffix: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    let serial = NEXT.fetch_add(1, Ordering::Relaxed);
    name.push(format!(".{}-{serial}.{suffix}", std::process::id()));
    path.with_file_name(name)
}

/// Returns the identity at `private_path`, generating an Ed25519 pair (private 0600, public
/// 0644, folder 0700) when there is none. An existing key is reused and never overwritten; if
/// its permissions let others read it, that is reported (as `ssh` itself would), not changed.
///
/// Several azlin processes may start at once on a fresh machine. The key is written to a
/// private temporary file and published with `link(2)`, which is atomic and fails if the name
/// exists: a reader never sees a half-written key, and exactly one process's key wins.
pub fn ensure_identity(private_path: &Path) -> Result<(Identity, KeyOrigin), RemoteError> {
    if private_path.exists() {
        return load_identity(private_path).map(|id| (id, KeyOrigin::Reused));
    }
    if let Some(dir) = private_path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| RemoteError::io(format!("creating {}", dir.display()), e))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| RemoteError::io(format!("chmod {}", dir.display()), e))?;
    }
    let key = generate_ed25519("azlin")?;
    let private_text = key
        .to_openssh(LineEnding::LF)
        .map_err(|e| key_error(format!("encoding key: {e}")))?;
    let public = public_openssh(key.public_key())?;

    let staged = private_sibling(private_path, "tmp");
    write_new(&staged, private_text.as_bytes(), 0o600)?;
    let published = std::fs::hard_link(&staged, private_path);
    let _ = std::fs::remove_file(&staged);
    match published {
        Ok(()) => {}
        // Another azlin process published its key first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return load_identity(private_path).map(|id| (id, KeyOrigin::Reused));
        }
        Err(e) => {
            return Err(RemoteError::io(
                format!("creating {}", private_path.display()),
                e,
            ));
        }
    }

    // The public half is derived from the private key that won, so replacing is safe.
    let public_path = private_path.with_extension("pub");
    let staged = private_sibling(&public_path, "tmp");
    let written = write_new(&staged, format!("{public}\n").as_bytes(), 0o644).and_then(|()| {
        std::fs::rename(&staged, &public_path)
            .map_err(|e| RemoteError::io(format!("creating {}", public_path.display()), e))
    });
    if let Err(e) = written {
        // Leave no half-made pair behind.
        let _ = std::fs::remove_file(&staged);
        let _ = std::fs::remove_file(private_path);
        return Err(e);
    }
    Ok((
        Identity {
            private_path: private_path.to_path_buf(),
            key: Arc::new(key),
            public_openssh: public,
        },
        KeyOrigin::Created,
    ))
}

/// Loads an existing identity, refusing keys that others can read or that are encrypted.
pub fn load_identity(private_path: &Path) -> Result<Identity, RemoteError> {
    let meta = std::fs::metadata(private_path)
        .map_err(|e| RemoteError::io(format!("reading {}", private_path.display()), e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(key_error(format!(
            "permissions {mode:04o} on {} are too open: the private key must not be readable by others \
             (fix with: chmod 600 {})",
            private_path.display(),
            private_path.display()
        )));
    }
    let text = std::fs::read_to_string(private_path)
        .map_err(|e| RemoteError::io(format!("reading {}", private_path.display()), e))?;
    let key = PrivateKey::from_openssh(&text).map_err(|e| {
        key_error(format!(
            "{} is not an OpenSSH private key: {e}",
            private_path.display()
        ))
    })?;
    if key.is_encrypted() {
        return Err(key_error(format!(
            "{} is encrypted; azlin needs an unencrypted key (or move it away to let azlin make one)",
            private_path.display()
        )));
    }
    let public_openssh = public_openssh(key.public_key())?;
    Ok(Identity {
        private_path: private_path.to_path_buf(),
        key: Arc::new(key),
        public_openssh,
    })
}

/// Parses an OpenSSH public key line (`ssh-ed25519 AAAA… [comment]`).
pub fn parse_public_key(line: &str) -> Result<PublicKey, RemoteError> {
    PublicKey::from_openssh(line.trim()).map_err(|e| key_error(format!("invalid public key: {e}")))
}

/// Writes a known_hosts file holding exactly `host_key` for `host:port`, for the system `ssh`.
pub fn write_known_hosts(
    path: &Path,
    host: &str,
    port: u16,
    host_key: &str,
) -> Result<(), RemoteError> {
    let pattern = if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| RemoteError::io(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(path, format!("{pattern} {}\n", host_key.trim()))
        .map_err(|e| RemoteError::io(format!("writing {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_then_reuses_with_exact_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ssh/azlin_key");
        let (first, origin) = ensure_identity(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Created);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&path.with_extension("pub")), 0o644);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(first.public_openssh.starts_with("ssh-ed25519 "));
        let before = std::fs::read(&path).unwrap();
        let (second, origin) = ensure_identity(&path).unwrap();
        assert_eq!(origin, KeyOrigin::Reused);
        assert_eq!(second.public_openssh, first.public_openssh);
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn processes_racing_to_create_the_key_agree_on_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".ssh/azlin_key");
        let keys: Vec<String> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| ensure_identity(&path).unwrap().0.public_openssh))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
        assert_eq!(load_identity(&path).unwrap().public_openssh, keys[0]);
        let public = std::fs::read_to_string(path.with_extension("pub")).unwrap();
        assert_eq!(public.trim(), keys[0]);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 2, "temporary files left behind: {left:?}");
    }

    #[test]
    fn open_permissions_are_reported_not_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("azlin_key");
        ensure_identity(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ensure_identity(&path).unwrap_err().to_string();
        assert!(
            err.contains("too open") && err.contains("chmod 600"),
            "{err}"
        );
        assert_eq!(mode(&path), 0o644);
    }

    #[test]
    fn host_keys_are_fresh_and_parse() {
        let a = generate_host_key("a").unwrap();
        let b = generate_host_key("a").unwrap();
        assert_ne!(a.public_openssh, b.public_openssh);
        assert!(
            a.private_openssh
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----")
        );
        parse_public_key(&a.public_openssh).unwrap();
    }
}
