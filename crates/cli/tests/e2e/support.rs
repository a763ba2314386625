//! Running the real `azlin` binary hermetically: every test gets its own `AZLIN_HOME`, a
//! scrubbed environment, and checks of what is left on the host.

pub use crate::common::{Run, new_args};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the shared base image cache lives (the CI script builds it once).
pub fn image_dir() -> PathBuf {
    std::env::var_os("AZLIN_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/azlin/images"))
}

/// One hermetic azlin installation.
pub struct Azlin {
    /// `AZLIN_HOME`.
    pub home: tempfile::TempDir,
    image_dir: PathBuf,
    path: String,
}

/// A test that fails part-way would leave its VMs running on the machine: delete whatever
/// this home still lists (best effort; the failure itself is what the test reports).
impl Drop for Azlin {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(out) = self.command(&["list", "-o", "json"]).output() else {
            return;
        };
        let vms: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_default();
        for name in vms.iter().filter_map(|vm| vm["name"].as_str()) {
            let _ = self.command(&["delete", name, "--yes"]).output();
        }
    }
}

/// A long-running azlin process (`serve`, say) that a failing test must not leave behind:
/// killed when dropped, unless [`Background::interrupt`] ended it.
pub struct Background(Option<std::process::Child>);

impl Background {
    /// Starts `command` with its output piped.
    pub fn spawn(mut command: Command) -> Background {
        let child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("azlin starts");
        Background(Some(child))
    }

    /// Its standard output, to read while it runs (then not part of [`Background::interrupt`]'s
    /// output).
    pub fn take_stdout(&mut self) -> std::process::ChildStdout {
        self.0
            .as_mut()
            .and_then(|child| child.stdout.take())
            .expect("a piped stdout")
    }

    /// Ends it as Ctrl-C would (SIGINT) and returns its output.
    pub fn interrupt(mut self) -> std::process::Output {
        let child = self.0.take().expect("a running process");
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        child.wait_with_output().expect("its output")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }
}

impl Azlin {
    /// A fresh home using the shared image cache.
    pub fn new() -> Azlin {
        Azlin {
            home: tempfile::tempdir().unwrap(),
            image_dir: image_dir(),
            path: std::env::var("PATH").unwrap_or_default(),
        }
    }

    /// The same, with the base images looked for in `dir` instead.
    pub fn with_image_dir(dir: &Path) -> Azlin {
        let mut azlin = Azlin::new();
        azlin.image_dir = dir.to_path_buf();
        azlin
    }

    /// The same, with `PATH` replaced.
    pub fn with_path(path: &str) -> Azlin {
        let mut azlin = Azlin::new();
        azlin.path = path.to_string();
        azlin
    }

    /// The `azlin` command with a scrubbed environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_azlin"));
        cmd.args(args)
            .env_clear()
            .env("PATH", &self.path)
            .env("HOME", self.home.path())
            .env("AZLIN_HOME", self.home.path())
            .env("AZLIN_IMAGE_DIR", &self.image_dir)
            .env("USER", "tester")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs azlin to completion (at most 10 minutes).
    pub fn run(&self, args: &[&str]) -> Run {
        let child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("azlin starts");
        let started = Instant::now();
        let pid = child.id();
        let waiter = std::thread::spawn(move || child.wait_with_output());
        while !waiter.is_finished() {
            if started.elapsed() > Duration::from_secs(600) {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("azlin {args:?} ran for more than 10 minutes");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Run::from(waiter.join().unwrap().unwrap())
    }

    /// Runs `azlin new --provider PROVIDER --name NAME --no-connect`, then `extra`.
    pub fn new_vm(&self, provider: &str, name: &str, extra: &[&str]) -> Run {
        self.run(&new_args(provider, name, extra))
    }

    /// Runs azlin as `nobody` (uid 65534) with this home and environment.
    pub fn run_as_nobody(&self, args: &[&str]) -> Run {
        let inner = self.command(args);
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
            .stdin(Stdio::null());
        Run::from(cmd.output().unwrap())
    }

    /// Asserts `azlin list` shows no VM.
    pub fn assert_no_vms(&self) {
        let listed = self.run(&["list", "-o", "json"]).expect(0).json();
        assert!(listed.as_array().unwrap().is_empty(), "VMs left: {listed}");
    }

    /// The row of `azlin image list -o json` for `provider` and `profile`.
    pub fn image(&self, provider: &str, profile: &str) -> Value {
        let images = self.run(&["image", "list", "-o", "json"]).expect(0).json();
        images
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["provider"] == provider && i["profile"] == profile)
            .unwrap_or_else(|| panic!("no {provider} {profile} image row in {images}"))
            .clone()
    }

    /// Writes the config file.
    pub fn config(&self, toml: &str) {
        let dir = self.home.path().join(".config/azlin");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), toml).unwrap();
    }

    /// The SSH key azlin uses.
    pub fn key(&self) -> PathBuf {
        self.home.path().join(".ssh/azlin_key")
    }

    /// The state dir.
    pub fn state_dir(&self) -> PathBuf {
        self.home.path().join(".local/state/azlin")
    }

    /// Runs `script` with `sh -c` on VM `vm` through `azlin connect`; its trimmed stdout.
    pub fn sh(&self, vm: &str, script: &str) -> String {
        self.run(&["connect", vm, "--", "sh", "-c", script])
            .expect(0)
            .stdout
            .trim()
            .to_string()
    }

    /// `azlin status NAME -o json`'s VM object.
    pub fn vm(&self, name: &str) -> Value {
        self.run(&["status", name, "-o", "json"]).expect(0).json()["vm"].clone()
    }
}

/// What a local VM holds on the host, to check that nothing is left after it is gone. Network
/// objects are identified by more than their slot number, since a parallel test may reuse the
/// slot at once: the namespace by its inode, the veth by its interface index, the filter chain
/// by its handle.
#[derive(Debug)]
pub struct HostFootprint {
    folder: String,
    slot: Option<Slot>,
}

#[derive(Debug)]
struct Slot {
    number: String,
    netns_inode: Option<u64>,
    veth_index: Option<String>,
    filter_handle: Option<String>,
}

impl Slot {
    fn observe(number: &str) -> Slot {
        use std::os::unix::fs::MetadataExt;
        Slot {
            number: number.to_string(),
            netns_inode: std::fs::metadata(format!("/run/netns/azlin-{number}"))
                .ok()
                .map(|m| m.ino()),
            veth_index: std::fs::read_to_string(format!("/sys/class/net/azv{number}/ifindex")).ok(),
            filter_handle: filter_chain_handle(number),
        }
    }
}

/// The handle of the egress filter chain of slot `number`, if there is one.
pub fn filter_chain_handle(number: &str) -> Option<String> {
    let out = Command::new("nft")
        .args(["-a", "list", "chain", "inet", "azlin"])
        .arg(format!("slot-{number}-egress"))
        .output()
        .ok()?;
    let needle = format!("chain slot-{number}-egress {{");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(&needle))
        .and_then(|l| l.rsplit_once("# handle "))
        .map(|(_, h)| h.trim().to_string())
}

impl HostFootprint {
    /// The footprint of VM `vm` (a `status -o json` VM object), observed now.
    pub fn of(vm: &Value) -> HostFootprint {
        HostFootprint {
            folder: vm["details"]["folder"]
                .as_str()
                .expect("folder")
                .to_string(),
            slot: vm["details"]["slot"].as_str().map(Slot::observe),
        }
    }

    /// The footprint of a VM folder whose network is unknown (a failed create).
    pub fn of_folder(folder: &Path) -> HostFootprint {
        HostFootprint {
            folder: folder.display().to_string(),
            slot: None,
        }
    }

    /// Lists what is still there.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        if Path::new(&self.folder).exists() {
            left.push(format!("folder {}", self.folder));
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        left.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&self.folder))
                .map(|l| format!("mount {l}")),
        );
        left.extend(
            nspawn_processes(&self.folder)
                .into_iter()
                .map(|p| format!("process {p}")),
        );
        if let Some(slot) = &self.slot {
            let now = Slot::observe(&slot.number);
            if slot.netns_inode.is_some() && now.netns_inode == slot.netns_inode {
                left.push(format!("netns azlin-{}", slot.number));
            }
            if slot.veth_index.is_some() && now.veth_index == slot.veth_index {
                left.push(format!("veth azv{}", slot.number));
            }
            if slot.filter_handle.is_some() && now.filter_handle == slot.filter_handle {
                left.push(format!("filter chain slot-{}-egress", slot.number));
            }
        }
        left
    }

    /// Waits briefly for exiting processes to be reaped, then asserts nothing is left.
    pub fn assert_gone(&self) {
        assert_nothing_left(|| self.leftovers());
    }

    /// Asserts the footprint was observed (so `assert_gone` checks something).
    pub fn assert_present(&self) {
        let slot = self.slot.as_ref().expect("a network slot");
        assert!(
            slot.netns_inode.is_some() && slot.veth_index.is_some() && slot.filter_handle.is_some(),
            "{self:?}"
        );
        assert!(
            Path::new(&self.folder).exists() && !nspawn_processes(&self.folder).is_empty(),
            "{self:?}"
        );
    }
}

/// Polls `leftovers` for up to 5 s (exiting processes are reaped, ports close) until it lists
/// nothing; panics with what is still there otherwise.
pub fn assert_nothing_left(leftovers: impl Fn() -> Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leftovers();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Live (non-zombie) `systemd-nspawn` processes whose command line mentions `needle`.
pub fn nspawn_processes(needle: &str) -> Vec<u32> {
    live_processes("systemd-nspawn", needle)
}

/// Live (non-zombie) processes whose command line starts with `program` and mentions `needle`.
pub fn live_processes(program: &str, needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !zombie && text.starts_with(program) && text.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// Runs the system `ssh` against a VM with strict host-key checking against `known_hosts`.
pub fn strict_ssh(key: &Path, known_hosts: &Path, user_at_host: &str, command: &str) -> Output {
    Command::new("ssh")
        .args([
            "-i",
            key.to_str().unwrap(),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o",
            "ConnectTimeout=10",
            user_at_host,
            command,
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Makes an Ed25519 key pair without a passphrase at `path` (the public key at `path.pub`).
pub fn generate_key(path: &Path, comment: &str) {
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "ssh-keygen {}", path.display());
}
