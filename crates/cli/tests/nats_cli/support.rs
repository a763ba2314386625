//! Running the real `azlin` binary hermetically against a nats-server: every installation has
//! its own `AZLIN_HOME` and a scrubbed environment; long-running commands (workers, `serve`)
//! are processes that are killed when dropped.

pub use crate::common::{Run, files_containing, new_args};
use azlin_testkit::netns::Host;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One hermetic azlin installation.
pub struct Azlin {
    /// `AZLIN_HOME`.
    pub home: tempfile::TempDir,
    env: BTreeMap<String, String>,
}

impl Run {
    /// Stdout as JSON lines.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
}

/// A command running in the background; killed when dropped.
pub struct Proc {
    child: Option<Child>,
    stdout: PathBuf,
    stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Its pid.
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// Sends `signal`.
    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// SIGKILL, and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// What it printed on stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    /// What it printed on stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until its stderr contains `text` (or panics after `limit`).
    pub fn wait_for_stderr(&self, text: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let err = self.stderr();
            if err.contains(text) {
                return err;
            }
            assert!(Instant::now() < deadline, "no '{text}' in:\n{err}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for it to exit (or panics after `limit`).
    pub fn wait(mut self, limit: Duration) -> Run {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "still running after {limit:?}\n--- stderr\n{}",
                    std::fs::read_to_string(&self.stderr).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            code: status.code().unwrap_or(-1),
            stdout: std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

impl Azlin {
    /// A fresh installation.
    pub fn new() -> Azlin {
        Azlin {
            home: tempfile::tempdir().unwrap(),
            env: BTreeMap::new(),
        }
    }

    /// Sets an environment variable for every command (e.g. `AZLIN_SIM_BOOT_MS`).
    pub fn env(mut self, key: &str, value: &str) -> Azlin {
        self.env.insert(key.into(), value.into());
        self
    }

    /// Where the sim provider keeps this installation's VMs.
    pub fn sim_dir(&self) -> PathBuf {
        self.home.path().join(".local/state/azlin/sim")
    }

    /// The sim VM records: name → request id.
    pub fn sim_vms(&self) -> BTreeMap<String, String> {
        let mut vms = BTreeMap::new();
        for entry in std::fs::read_dir(self.sim_dir())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Hidden entries are the record store's own (its request index), not VMs.
            if name.starts_with('.') {
                continue;
            }
            let record: Value = std::fs::read(entry.path().join("vm.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null);
            vms.insert(
                name,
                record["request_id"].as_str().unwrap_or("").to_string(),
            );
        }
        vms
    }

    /// The state directory.
    pub fn state_dir(&self) -> PathBuf {
        self.home.path().join(".local/state/azlin")
    }

    /// The `azlin` command with a scrubbed environment.
    pub fn command(&self, args: &[&str]) -> Command {
        self.command_on(None, args)
    }

    /// The same, run on `host` (in its network namespace) when one is given.
    pub fn command_on(&self, host: Option<&Host>, args: &[&str]) -> Command {
        let binary = env!("CARGO_BIN_EXE_azlin");
        let mut cmd = match host {
            Some(host) => host.command(binary),
            None => Command::new(binary),
        };
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.home.path())
            .env("AZLIN_HOME", self.home.path())
            .env("USER", "tester")
            .envs(&self.env)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs azlin to completion (at most 2 minutes).
    pub fn run(&self, args: &[&str]) -> Run {
        self.spawn(args).wait(Duration::from_secs(120))
    }

    /// The same, with extra environment variables.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self
            .command(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        Run::from(out)
    }

    /// Starts azlin in the background.
    pub fn spawn(&self, args: &[&str]) -> Proc {
        self.spawn_env(args, &[])
    }

    /// The same, with extra environment variables.
    pub fn spawn_env(&self, args: &[&str], env: &[(&str, &str)]) -> Proc {
        self.spawn_on(None, args, env)
    }

    /// Starts azlin in the background on `host` (or this machine), with extra environment.
    pub fn spawn_on(&self, host: Option<&Host>, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().unwrap();
        let stdout = dir.path().join("stdout");
        let stderr = dir.path().join("stderr");
        let child = self
            .command_on(host, args)
            .envs(env.iter().copied())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("azlin starts");
        Proc {
            child: Some(child),
            stdout,
            stderr,
            _dir: dir,
        }
    }

    /// Starts `azlin worker` on `url` with extra flags, and waits until it serves.
    pub fn worker(&self, url: &str, flags: &[&str]) -> Proc {
        let mut args = vec!["worker", "--nats", url];
        args.extend_from_slice(flags);
        let worker = self.spawn(&args);
        worker.wait_for_stderr("serving", Duration::from_secs(20));
        worker
    }

    /// The audit trail (`azlin events -o json`).
    pub fn events(&self, url: &str) -> Vec<Value> {
        self.run(&["events", "-o", "json", "--nats", url])
            .expect(0)
            .json_lines()
    }
}

/// The worker id a worker process announced.
pub fn worker_id(worker: &Proc) -> String {
    let err = worker.wait_for_stderr("serving", Duration::from_secs(20));
    err.split("azlin worker ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .unwrap()
        .to_string()
}

/// The events of one subject.
pub fn of<'a>(events: &'a [Value], subject: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["subject"] == subject).collect()
}

/// Each request's terminal events (`vm.create.complete` / `failed`), by request id.
pub fn terminals(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in events {
        let subject = e["subject"].as_str().unwrap();
        if subject == "vm.create.complete" || subject == "vm.create.failed" {
            out.entry(e["payload"]["request_id"].as_str().unwrap().to_string())
                .or_default()
                .push(subject.to_string());
        }
    }
    out
}

/// A config file naming `url` as the NATS server.
pub fn write_nats_config(home: &Path, url: &str) {
    let dir = home.join(".config/azlin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), format!("nats_url = \"{url}\"\n")).unwrap();
}

/// The dead letters on the server at `url`.
pub fn dead_letters(url: &str) -> Vec<azlin_control::bus::DeadLetter> {
    use azlin_control::Bus;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = azlin_control::NatsBus::connect(url, azlin_control::NatsSettings::default())
            .await
            .unwrap();
        // The worker writes the dead letter just after the failure event.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let letters = bus.dead_letters().await.unwrap();
            if !letters.is_empty() || Instant::now() > deadline {
                return letters;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// `GET path` on `addr` over HTTP/1.0: status code and body.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request(addr, "GET", path, &[], b"")
}

/// A request on `addr` over HTTP/1.0 with `headers` and `body`: status code and body.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Stops background commands with SIGTERM, all at once, checks that each exits 0, and returns
/// what they printed.
pub fn stop_all(processes: Vec<Proc>) -> Vec<Run> {
    for process in &processes {
        process.signal(Signal::SIGTERM);
    }
    processes
        .into_iter()
        .map(|process| process.wait(Duration::from_secs(30)).expect(0))
        .collect()
}

/// `azlin serve --listen` running: once it records events, the address it listens on.
pub fn serve_address(serve: &Proc) -> String {
    let err = serve.wait_for_stderr("recording events", Duration::from_secs(30));
    err.split("listening on http://")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .expect("serve says where it listens")
        .to_string()
}

/// Polls `check` until it returns `Some`, or panics with `what` after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
