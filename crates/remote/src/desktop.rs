//! The VNC desktop of seed 000 (`azlin gui`): TigerVNC with Xfce on the VM, bound to the VM's
//! localhost only, a random password per session (never stored on this machine), reached through
//! an SSH tunnel, and stopped when the session ends.

use crate::shell::{RemoteError, Shell};
use std::io::Read;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Packages the desktop needs on the VM (Debian/Ubuntu names).
pub const PACKAGES: &[&str] = &[
    "tigervnc-standalone-server",
    "tigervnc-tools",
    "xfce4",
    "xfce4-terminal",
    "dbus-x11",
];

/// The X display the desktop runs on; its VNC port is 5900 + display.
pub const DISPLAY: u16 = 1;

/// The VNC port of [`DISPLAY`] on the VM.
pub const VNC_PORT: u16 = 5900 + DISPLAY;

/// A command failed on the VM.
fn failed(what: &str, out: &crate::Captured) -> RemoteError {
    RemoteError::Io {
        context: format!("{what} on the VM failed (exit {})", out.code),
        source: std::io::Error::other(out.stderr_text().trim().to_string()),
    }
}

/// Whether the desktop packages are installed.
pub async fn installed(shell: &dyn Shell) -> Result<bool, RemoteError> {
    let probe = "command -v vncserver >/dev/null && command -v vncpasswd >/dev/null && command -v startxfce4 >/dev/null";
    Ok(shell.capture(probe).await?.code == 0)
}

/// Installs the desktop packages with apt (minutes the first time).
pub async fn install(shell: &dyn Shell) -> Result<(), RemoteError> {
    let command = format!(
        "sudo -n sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {}'",
        PACKAGES.join(" ")
    );
    let out = shell.capture(&command).await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(failed("installing the desktop packages", &out))
    }
}

/// Makes sure `xauth` is on the VM, which X11 forwarding (`ssh -Y`) needs: installed on first
/// use, as seed 000 says.
pub async fn ensure_xauth(shell: &dyn Shell) -> Result<(), RemoteError> {
    let command = "command -v xauth >/dev/null || sudo -n sh -c 'apt-get update -qq && \
                   DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends xauth'";
    let out = shell.capture(command).await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(failed("installing xauth", &out))
    }
}

/// A random 8-character password (VNC passwords have at most 8).
pub fn random_password() -> Result<String, RemoteError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| RemoteError::io("reading /dev/urandom", e))?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Starts the desktop with `password` (replacing one left by an earlier session), listening on
/// the VM's localhost only.
pub async fn start(shell: &dyn Shell, password: &str) -> Result<(), RemoteError> {
    let setup = format!(
        "umask 077 && mkdir -p ~/.vnc && (vncserver -kill :{DISPLAY} >/dev/null 2>&1; true) && vncpasswd -f > ~/.vnc/passwd"
    );
    // The password goes in on stdin, never on a command line.
    let mut err = Vec::new();
    let code = shell
        .exec(&setup, format!("{password}\n").as_bytes(), &mut |_, b| {
            err.extend_from_slice(b)
        })
        .await?;
    if code != 0 {
        return Err(RemoteError::Io {
            context: "setting the VNC password failed".into(),
            source: std::io::Error::other(String::from_utf8_lossy(&err).trim().to_string()),
        });
    }
    let start = format!(
        "vncserver :{DISPLAY} -localhost yes -geometry 1600x900 -depth 24 -SecurityTypes VncAuth \
         -PasswordFile ~/.vnc/passwd -- startxfce4"
    );
    let out = shell.capture(&start).await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(failed("starting the VNC server", &out))
    }
}

/// The obfuscated password file (for a viewer's `-passwd`), read back from the VM.
pub async fn password_file(shell: &dyn Shell) -> Result<Vec<u8>, RemoteError> {
    let out = shell.capture("cat ~/.vnc/passwd").await?;
    if out.code == 0 {
        Ok(out.stdout)
    } else {
        Err(failed("reading the VNC password file", &out))
    }
}

/// Stops the desktop and removes its password.
///
/// The desktop is the X server and its session: the session script (`Xtigervnc-session`, a
/// session leader of its own) and what it started. `vncserver -kill` only signals the X server,
/// and the session winds down after it by itself; on a busy VM either can outlive the command,
/// so this waits (up to 10 s) until all of them have exited, then kills what is left and waits
/// (up to 5 s) again. Their pids are taken before anything is signalled, because a process that
/// is exiting has lost its command line and no longer matches a pattern on it; exited means a
/// zombie or no process. (`[X]` keeps the patterns from matching the shell running this script.)
pub async fn stop(shell: &dyn Shell) -> Result<(), RemoteError> {
    let out = shell
        .capture(&format!(
            "uid=$(id -u); \
             sessions=$(for p in $(pgrep -u \"$uid\" -f '[X]tigervnc-session'); do \
               grep -qxz 'DISPLAY=:{DISPLAY}' /proc/$p/environ 2>/dev/null && ps -o sid= -p $p; done); \
             pids=$({{ pgrep -u \"$uid\" -f '[X]tigervnc :{DISPLAY}( |$)'; \
               for s in $sessions; do pgrep -s $s; done; }} | sort -u | paste -sd, -); \
             live() {{ [ -n \"$pids\" ] && ps -o stat= -p \"$pids\" | grep -qv '^Z'; }}; \
             vncserver -kill :{DISPLAY} >/dev/null 2>&1; \
             for _ in $(seq 100); do live || break; sleep 0.1; done; \
             if live; then kill -KILL $(echo \"$pids\" | tr , ' ') 2>/dev/null; fi; \
             for _ in $(seq 50); do live || break; sleep 0.1; done; \
             rm -f ~/.vnc/passwd"
        ))
        .await?;
    if out.code == 0 {
        Ok(())
    } else {
        Err(failed("stopping the VNC server", &out))
    }
}

/// Waits until a VNC server answers on `127.0.0.1:port` with its protocol banner (`RFB …`).
pub async fn wait_for_rfb(port: u16, timeout: Duration) -> Result<String, RemoteError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            let mut banner = [0u8; 12];
            let read =
                tokio::time::timeout(Duration::from_secs(2), stream.read_exact(&mut banner)).await;
            if matches!(read, Ok(Ok(_))) && banner.starts_with(b"RFB ") {
                return Ok(String::from_utf8_lossy(&banner).trim().to_string());
            }
        }
        if Instant::now() >= deadline {
            return Err(RemoteError::Timeout(format!(
                "no VNC server answered through the tunnel on 127.0.0.1:{port} within {}s",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_fresh_and_eight_characters() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_eq!(a.len(), 8);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
