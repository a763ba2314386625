//! `azlin gui` on a real nspawn VM: TigerVNC and Xfce installed on first use, the desktop reached
//! through the SSH tunnel with the session's password (a real VNC authentication), and the VNC
//! server, its password and the tunnel gone when the session ends — also when Ctrl-C comes
//! while a viewer runs. Also `connect --x11` installing xauth.

use crate::support::{Azlin, Background};
use des::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Performs the RFB 3.8 handshake with VNC authentication; returns whether the server accepted
/// `password`.
fn vnc_authenticates(port: u16, password: &str) -> bool {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut banner = [0u8; 12];
    stream.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"RFB 003.008\n");
    stream.write_all(b"RFB 003.008\n").unwrap();
    let mut count = [0u8; 1];
    stream.read_exact(&mut count).unwrap();
    let mut types = vec![0u8; usize::from(count[0])];
    stream.read_exact(&mut types).unwrap();
    assert!(types.contains(&2), "VNC authentication offered: {types:?}");
    stream.write_all(&[2]).unwrap();
    let mut challenge = [0u8; 16];
    stream.read_exact(&mut challenge).unwrap();
    // VNC's DES key is the password with each byte's bits reversed.
    let mut key = [0u8; 8];
    for (slot, byte) in key.iter_mut().zip(password.bytes()) {
        *slot = byte.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).unwrap();
    for block in challenge.chunks_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(block));
    }
    stream.write_all(&challenge).unwrap();
    let mut result = [0u8; 4];
    stream.read_exact(&mut result).unwrap();
    u32::from_be_bytes(result) == 0
}

#[test]
fn gui_serves_a_password_protected_desktop_through_a_tunnel_and_stops_it() {
    let azlin = Azlin::new();
    azlin.new_vm("nspawn", "desk", &[]).expect(0);
    let mut gui = Background::spawn(azlin.command(&["gui", "desk", "--no-viewer", "-o", "json"]));
    let mut first = String::new();
    BufReader::new(gui.take_stdout())
        .read_line(&mut first)
        .unwrap();
    let session: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first:?}"));
    let port = u16::try_from(session["port"].as_u64().unwrap()).unwrap();
    let password = session["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 8);

    assert!(
        vnc_authenticates(port, &password),
        "the session password was refused"
    );
    assert!(
        !vnc_authenticates(port, "wrong-pw"),
        "a wrong password was accepted"
    );
    // The VNC server listens on the VM's localhost only.
    let vm = azlin.vm("desk");
    let open = TcpStream::connect_timeout(
        &format!("{}:5901", vm["address"].as_str().unwrap())
            .parse()
            .unwrap(),
        Duration::from_secs(2),
    );
    assert!(open.is_err(), "VNC is reachable from outside the VM");

    let out = gui.interrupt();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("✓ Stopping the VNC server"), "{stderr}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the tunnel is still open"
    );
    // Live X servers only: a killed one may stay a zombie until its parent reaps it.
    let left = azlin.run(&[
        "connect",
        "desk",
        "--",
        "sh",
        "-c",
        "pgrep -c -r D,R,S,T Xtigervnc; test -e ~/.vnc/passwd && echo passwd-left; \
         for pid in $(pgrep Xtigervnc); do ps -o pid=,ppid=,stat=,etimes=,args= -p $pid; done; true",
    ]);
    // The count first; what is left (if anything) after it, for the failure message.
    let mut lines = left.stdout.lines();
    let count = lines.next().unwrap_or_default().trim();
    assert!(
        count == "0" && !lines.any(|l| l == "passwd-left"),
        "left on the VM after the session: {}",
        left.stdout
    );

    viewer_session_ends_cleanly_on_ctrl_c(&azlin);

    // X11 forwarding installs xauth on first use.
    let run = azlin
        .run(&[
            "connect",
            "desk",
            "--x11",
            "--",
            "sh",
            "-c",
            "command -v xauth",
        ])
        .expect(0);
    assert_eq!(run.stdout.trim(), "/usr/bin/xauth");
    azlin.run(&["delete", "desk", "--yes"]).expect(0);
}

/// A session with a viewer, ended by Ctrl-C while the viewer runs: azlin closes the viewer,
/// the tunnel and the password file, stops the VNC server, and exits 130. The viewer is a
/// stand-in script named `vncviewer` (a real one needs a display): it records its arguments
/// and the mode of the password file it was given, then waits.
fn viewer_session_ends_cleanly_on_ctrl_c(azlin: &Azlin) {
    let bin = tempfile::tempdir().unwrap();
    let record = bin.path().join("viewer-args");
    let script = format!(
        "#!/bin/sh\n# stand-in for vncviewer\necho $$ > {}.pid\necho \"$* $(stat -c %a \"$2\")\" > {}\nexec sleep 600\n",
        record.display(),
        record.display()
    );
    let viewer = bin.path().join("vncviewer");
    std::fs::write(&viewer, script).unwrap();
    std::fs::set_permissions(&viewer, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = azlin.command(&["gui", "desk"]);
    command.env("PATH", path);
    let gui = Background::spawn(command);
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let args = loop {
        if let Ok(args) = std::fs::read_to_string(&record)
            && !args.is_empty()
        {
            break args;
        }
        assert!(std::time::Instant::now() < deadline, "the viewer never ran");
        std::thread::sleep(Duration::from_millis(100));
    };
    // `-passwd FILE 127.0.0.1::PORT MODE`: a private password file and the tunnel's port.
    let fields: Vec<&str> = args.split_whitespace().collect();
    assert_eq!(fields.len(), 4, "{args}");
    assert_eq!(fields[0], "-passwd", "{args}");
    assert_eq!(fields[3], "600", "{args}");
    let password_file = fields[1].to_string();
    let port: u16 = fields[2]
        .strip_prefix("127.0.0.1::")
        .unwrap()
        .parse()
        .unwrap();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok(), "no tunnel");

    let out = gui.interrupt();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(stderr.contains("✓ Stopping the VNC server"), "{stderr}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "the tunnel is still open"
    );
    assert!(
        !std::path::Path::new(&password_file).exists(),
        "the password file is left"
    );
    let viewer_pid = std::fs::read_to_string(format!("{}.pid", record.display())).unwrap();
    assert!(
        !std::path::Path::new(&format!("/proc/{}", viewer_pid.trim())).exists(),
        "the viewer still runs"
    );
    let left = azlin.run(&[
        "connect",
        "desk",
        "--",
        "sh",
        "-c",
        "pgrep -c -r D,R,S,T Xtigervnc; true",
    ]);
    assert_eq!(left.stdout.trim(), "0", "{}", left.stdout);
}
