//! Idmapped bind mounts, so a machine in its own user namespace sees the shared base image
//! owned by its own root: uid/gid `k` on disk appears as `base + k`. nspawn 252 cannot idmap an
//! overlay mount itself, and `--private-users-ownership=chown` would copy every file of the image
//! up into the machine's layer (about a minute and 400 MB per VM), so the image is idmapped below
//! the overlay instead (overlayfs takes idmapped layers since Linux 5.19).

// The new mount API (open_tree, mount_setattr, move_mount) has no safe wrapper in nix.
#![allow(unsafe_code)]

use azlin_core::{ErrorKind, ProviderError};
use nix::libc;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// How many uids and gids each machine gets.
pub const RANGE: u32 = 65536;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn idmap_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

fn c_path(path: &Path) -> Result<CString, ProviderError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| idmap_error(format!("{} contains a NUL byte", path.display())))
}

/// A user namespace mapping 0.. to `base`.., held by a `sleep` in it (killed when dropped).
struct UserNs {
    child: std::process::Child,
    fd: OwnedFd,
}

impl UserNs {
    fn new(base: u32) -> Result<UserNs, ProviderError> {
        let mut child = std::process::Command::new("unshare")
            .args(["--user", "--", "sleep", "60"])
            .spawn()
            .map_err(|e| idmap_error(format!("cannot run unshare: {e}")))?;
        let own = std::fs::read_link("/proc/self/ns/user").ok();
        let ns_path = format!("/proc/{}/ns/user", child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        // Wait until the child has entered its new namespace.
        while std::fs::read_link(&ns_path).ok() == own {
            if Instant::now() > deadline {
                kill(&mut child);
                return Err(idmap_error("unshare did not make a user namespace".into()));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let map = format!("0 {base} {RANGE}\n");
        let written = ["uid_map", "gid_map"]
            .iter()
            .try_for_each(|file| std::fs::write(format!("/proc/{}/{file}", child.id()), &map));
        let fd = written
            .and_then(|()| std::fs::File::open(&ns_path))
            .map_err(|e| idmap_error(format!("mapping the user namespace: {e}")));
        match fd {
            Ok(file) => Ok(UserNs {
                child,
                fd: file.into(),
            }),
            Err(e) => {
                kill(&mut child);
                Err(e)
            }
        }
    }
}

fn kill(child: &mut std::process::Child) {
    if child.kill().is_ok() {
        child.wait().ok();
    }
}

impl Drop for UserNs {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Bind-mounts `src` read-only on `dst` with its owners shifted by `base` (0 → `base`).
pub fn bind(src: &Path, dst: &Path, base: u32) -> Result<(), ProviderError> {
    let userns = UserNs::new(base)?;
    let (src_c, dst_c, empty) = (c_path(src)?, c_path(dst)?, c"");
    let fail = |what: &str| {
        idmap_error(format!(
            "idmapping {} on {} ({what}): {}",
            src.display(),
            dst.display(),
            std::io::Error::last_os_error()
        ))
    };
    // SAFETY: open_tree takes a valid NUL-terminated path and flags; it returns a new fd or -1.
    let raw = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_RECURSIVE as libc::c_uint,
        )
    };
    if raw < 0 {
        return Err(fail("open_tree"));
    }
    let raw = i32::try_from(raw).map_err(|_| fail("open_tree fd"))?;
    // SAFETY: `raw` is a file descriptor open_tree just returned and nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(raw) };
    // Read-only: the image is shared by every machine, and a careless `rm -rf` of a machine's
    // folder must not reach through the mount into it.
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.fd.as_raw_fd()).map_err(|_| fail("userns fd"))?,
    };
    // SAFETY: the tree fd is open, the path is an empty C string with AT_EMPTY_PATH, and `attr`
    // is a live `struct mount_attr` whose size is passed.
    let set = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if set < 0 {
        return Err(fail("mount_setattr"));
    }
    // SAFETY: the tree fd is open; both paths are valid NUL-terminated strings.
    let moved = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if moved < 0 {
        return Err(fail("move_mount"));
    }
    Ok(())
}
