//! One nspawn machine on the host: its copy-on-write root (an overlay of the base image), its
//! NoCloud seed, and the `systemd-nspawn` process that boots it.

use super::idmap;
use crate::process::{self, alive, signal, wait_gone};
use azlin_core::{ErrorKind, ProviderError};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::signal::Signal;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// How long a booting machine may take to start its init before the boot counts as failed.
const INIT_START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an orderly shutdown may take before the machine is killed.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(15);
/// Polling interval while waiting on processes.
const POLL: Duration = Duration::from_millis(10);

fn machine_error(message: String) -> ProviderError {
    ProviderError::new(ErrorKind::Provision, message)
}

/// The folder of one machine: `upper/` and `work/` of the overlay, `rootfs/` where it is
/// mounted, and `console.log`.
#[derive(Debug, Clone)]
pub struct MachineDir(pub PathBuf);

impl MachineDir {
    /// The overlay's upper layer: what the machine changed.
    pub fn upper(&self) -> PathBuf {
        self.0.join("upper")
    }

    /// The overlay's work folder.
    pub fn work(&self) -> PathBuf {
        self.0.join("work")
    }

    /// Where the base image is bind-mounted idmapped (machines in their own user namespace).
    fn idmapped_lower(&self) -> PathBuf {
        self.0.join("lower")
    }

    /// Where the machine's root is mounted.
    pub fn rootfs(&self) -> PathBuf {
        self.0.join("rootfs")
    }

    /// The machine's console output.
    pub fn console_log(&self) -> PathBuf {
        self.0.join("console.log")
    }

    /// Whether the overlay is mounted on `rootfs/`.
    pub fn is_mounted(&self) -> bool {
        mounted(&self.rootfs())
    }

    /// Mounts the base image `lower` with this machine's upper layer on `rootfs/`. With
    /// `uid_base`, the image is seen through an idmapped bind mount (owner `k` → `uid_base + k`)
    /// and the upper layer belongs to `uid_base`, for a machine in its own user namespace.
    pub fn mount(&self, lower: &Path, uid_base: Option<u32>) -> Result<(), ProviderError> {
        if self.is_mounted() {
            return Ok(());
        }
        for dir in [self.upper(), self.work(), self.rootfs()] {
            std::fs::create_dir_all(&dir)
                .map_err(|e| machine_error(format!("creating {}: {e}", dir.display())))?;
        }
        let lower = match uid_base {
            None => lower.to_path_buf(),
            Some(base) => {
                let mapped = self.idmapped_lower();
                std::fs::create_dir_all(&mapped)
                    .map_err(|e| machine_error(format!("creating {}: {e}", mapped.display())))?;
                if !mounted(&mapped) {
                    idmap::bind(lower, &mapped, base)?;
                }
                chown(&self.upper(), base)?;
                mapped
            }
        };
        let paths = [lower, self.upper(), self.work()];
        if let Some(bad) = paths
            .iter()
            .find(|p| p.to_string_lossy().contains([',', ':']))
        {
            return Err(machine_error(format!(
                "{} contains ',' or ':', which overlay mounts cannot take",
                bad.display()
            )));
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            paths[0].display(),
            paths[1].display(),
            paths[2].display()
        );
        mount(
            Some("overlay"),
            &self.rootfs(),
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .map_err(|e| {
            machine_error(format!(
                "mounting the overlay on {}: {e}",
                self.rootfs().display()
            ))
        })
    }

    /// Unmounts `rootfs/` (and the idmapped image below it) if mounted, lazily if something
    /// still holds them.
    pub fn unmount(&self) -> Result<bool, ProviderError> {
        let mut unmounted = false;
        for target in [self.rootfs(), self.idmapped_lower()] {
            if !mounted(&target) {
                continue;
            }
            umount2(&target, MntFlags::empty())
                .or_else(|_| umount2(&target, MntFlags::MNT_DETACH))
                .map_err(|e| {
                    ProviderError::new(
                        ErrorKind::Internal,
                        format!("unmounting {}: {e}", target.display()),
                    )
                })?;
            unmounted = true;
        }
        Ok(unmounted)
    }

    /// Writes the NoCloud seed (`meta-data`, `user-data`) into the mounted root, owned by the
    /// machine's root (`uid_base` for a machine in its own user namespace).
    pub fn write_seed(
        &self,
        meta_data: &str,
        user_data: &str,
        uid_base: Option<u32>,
    ) -> Result<(), ProviderError> {
        let seed = self.rootfs().join("var/lib/cloud/seed/nocloud");
        std::fs::create_dir_all(&seed)
            .map_err(|e| machine_error(format!("creating {}: {e}", seed.display())))?;
        for (file, content) in [("meta-data", meta_data), ("user-data", user_data)] {
            std::fs::write(seed.join(file), content)
                .map_err(|e| machine_error(format!("writing seed {file}: {e}")))?;
        }
        if let Some(base) = uid_base {
            // Folders made above belong to host root, which the machine does not know.
            for path in [
                self.rootfs().join("var/lib/cloud"),
                self.rootfs().join("var/lib/cloud/seed"),
                seed.clone(),
                seed.join("meta-data"),
                seed.join("user-data"),
            ] {
                chown(&path, base)?;
            }
        }
        // The user data carries the private host key: root-only.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            seed.join("user-data"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| machine_error(format!("chmod seed: {e}")))
    }

    /// The last lines of the console log, for error messages.
    pub fn console_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(self.console_log()).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn mounted(target: &Path) -> bool {
    let target = target.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

fn chown(path: &Path, base: u32) -> Result<(), ProviderError> {
    std::os::unix::fs::lchown(path, Some(base), Some(base))
        .map_err(|e| machine_error(format!("chown {}: {e}", path.display())))
}

/// Boots the machine: `systemd-nspawn -b` in the network namespace at `netns_path`, detached
/// from azlin (its own process group, output to the console log), in its own user namespace
/// (uids `uid_base`.. on the host) when `uid_base` is given. Returns the nspawn pid once the
/// machine's init runs, or an error with the console output if nspawn gave up.
pub async fn boot(
    dir: &MachineDir,
    machine: &str,
    hostname: &str,
    netns_path: &str,
    uid_base: Option<u32>,
    limits: Option<Limits>,
) -> Result<u32, ProviderError> {
    let console = std::fs::File::create(dir.console_log())
        .map_err(|e| machine_error(format!("creating {}: {e}", dir.console_log().display())))?;
    let console_err = console
        .try_clone()
        .map_err(|e| machine_error(format!("console log: {e}")))?;
    let rootfs = dir.rootfs().display().to_string();
    let net_arg = format!("--network-namespace-path={netns_path}");
    let net_enter = format!("--net={netns_path}");
    let (program, lead): (&str, Vec<String>) = match uid_base {
        // nspawn 252 joins `--network-namespace-path` from inside the new user namespace,
        // which the kernel refuses (the network namespace belongs to the host's): nspawn is
        // started in the VM's network namespace instead (nsenter execs it, keeping the pid),
        // and the machine shares it. The image is idmapped below the overlay already, so
        // nspawn must not chown it.
        Some(base) => (
            "nsenter",
            vec![
                net_enter,
                "--".to_string(),
                "systemd-nspawn".to_string(),
                format!("--private-users={base}:{}", idmap::RANGE),
                "--private-users-ownership=off".to_string(),
            ],
        ),
        None => ("systemd-nspawn", vec![net_arg]),
    };
    let mut command = tokio::process::Command::new(program);
    if uid_base.is_some() {
        // The machine's systemd, root of its user namespace only, must own its cgroup: nspawn
        // (with --keep-unit on a host without systemd) keeps the cgroup it starts in, so it
        // starts in a group of its own, entered by a shell that then execs it (same pid).
        let groups = create_cgroups(machine, limits)?;
        let enter: String = groups
            .iter()
            .map(|g| format!("echo $$ > {}/cgroup.procs || exit 1; ", g.display()))
            .collect();
        command = tokio::process::Command::new("sh");
        command.args(["-c", &format!("{enter}exec \"$0\" \"$@\""), program]);
    }
    let mut child = command
        .args(lead)
        .args([
            "--quiet",
            "--boot",
            "--directory",
            &rootfs,
            // The host has no systemd: no machined registration, no scope unit.
            "--register=no",
            "--keep-unit",
            "--machine",
            machine,
            "--hostname",
            hostname,
            "--console=read-only",
            "--link-journal=no",
        ])
        .stdin(Stdio::null())
        .stdout(console)
        .stderr(console_err)
        // Its own process group: a Ctrl-C in azlin's terminal must not stop the VM.
        .process_group(0)
        .spawn()
        .map_err(|e| {
            ProviderError::new(
                ErrorKind::Prerequisites,
                format!("cannot run systemd-nspawn: {e}"),
            )
        })?;
    let pid = child
        .id()
        .ok_or_else(|| machine_error("systemd-nspawn exited at once".to_string()))?;
    let deadline = Instant::now() + INIT_START_TIMEOUT;
    loop {
        // While booting, the child handle (not /proc, whose command line is briefly empty
        // right after exec) tells whether nspawn gave up.
        if let Ok(Some(status)) = child.try_wait() {
            return Err(machine_error(format!(
                "systemd-nspawn exited ({status}) while booting the machine:\n{}",
                dir.console_tail(12)
            )));
        }
        if init_pid(pid).is_some_and(|init| comm(init).as_deref() == Some("systemd")) {
            // Dropping the handle neither waits for nor kills the machine; tokio reaps it if
            // it ends while azlin still runs.
            drop(child);
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            stop_now(pid).await;
            return Err(machine_error(format!(
                "the machine's init did not start within {}s:\n{}",
                INIT_START_TIMEOUT.as_secs(),
                dir.console_tail(12)
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Where the host's cgroup file systems are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What a machine may use, from its VM size: CPU time, memory and processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPUs' worth of time per period.
    pub cpus: u32,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// Processes and threads.
    pub pids: u32,
}

impl Limits {
    /// The limits of a VM of `size`.
    pub fn of(size: &azlin_core::Size) -> Limits {
        Limits {
            cpus: size.vcpus,
            memory_mib: u64::from(size.memory_mib),
            pids: 4096 * size.vcpus,
        }
    }

    /// The files that set these limits in `group`, and their values: cgroup v2's `cpu.max`,
    /// `memory.max` and `pids.max`, or v1's equivalents, by the hierarchy `group` is in.
    fn files(&self, group: &Path) -> Vec<(PathBuf, String)> {
        const PERIOD_US: u64 = 100_000;
        let quota = PERIOD_US * u64::from(self.cpus);
        let memory = (self.memory_mib * 1024 * 1024).to_string();
        // A v1 group is `/sys/fs/cgroup/CONTROLLER/azlin/MACHINE`.
        let hierarchy = group
            .strip_prefix(CGROUP_ROOT)
            .ok()
            .and_then(|rest| rest.components().next())
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        let v1 = |controller: &str| hierarchy.as_deref() == Some(controller);
        if group.join("cgroup.controllers").exists() {
            return vec![
                (group.join("cpu.max"), format!("{quota} {PERIOD_US}")),
                (group.join("memory.max"), memory),
                (group.join("pids.max"), self.pids.to_string()),
            ];
        }
        if v1("cpu") {
            vec![
                (group.join("cpu.cfs_period_us"), PERIOD_US.to_string()),
                (group.join("cpu.cfs_quota_us"), quota.to_string()),
            ]
        } else if v1("memory") {
            vec![(group.join("memory.limit_in_bytes"), memory)]
        } else if v1("pids") {
            vec![(group.join("pids.max"), self.pids.to_string())]
        } else {
            Vec::new()
        }
    }
}

/// The cgroups of a machine in its own user namespace: `azlin/MACHINE` in the unified
/// hierarchy; on a host with cgroup v1, in the named `systemd` one, the `unified` one of a
/// hybrid host, the `freezer` one (which pauses it for a snapshot), and the `cpu`, `memory` and
/// `pids` ones that hold its limits.
fn cgroups(machine: &str) -> Vec<PathBuf> {
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.procs").exists() {
        return vec![root.join("azlin").join(machine)];
    }
    ["systemd", "unified", "freezer", "cpu", "memory", "pids"]
        .iter()
        .map(|h| root.join(h))
        .filter(|h| h.join("cgroup.procs").exists())
        .map(|h| h.join("azlin").join(machine))
        .collect()
}

/// Kills every process left in the machine's cgroups (a machine whose `systemd-nspawn` was
/// killed outright keeps running without it); returns how many.
pub fn kill_leftover_processes(machine: &str) -> usize {
    fn pids_in(group: &Path, out: &mut Vec<u32>) {
        if let Ok(text) = std::fs::read_to_string(group.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(group) {
            for entry in entries.flatten().filter(|e| e.path().is_dir()) {
                pids_in(&entry.path(), out);
            }
        }
    }
    let mut pids = Vec::new();
    for group in cgroups(machine) {
        pids_in(&group, &mut pids);
    }
    pids.sort_unstable();
    pids.dedup();
    for pid in &pids {
        signal(*pid, Signal::SIGKILL);
    }
    pids.len()
}

/// The machines (`azlin-N`) that have a cgroup of azlin's on this host.
pub fn machines_with_cgroups() -> Vec<String> {
    let mut names: Vec<String> = cgroups("")
        .iter()
        .filter_map(|parent| std::fs::read_dir(parent).ok())
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| {
            n.strip_prefix("azlin-")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Creates the machine's cgroups with its `limits` set.
fn create_cgroups(machine: &str, limits: Option<Limits>) -> Result<Vec<PathBuf>, ProviderError> {
    let groups = cgroups(machine);
    let root = Path::new(CGROUP_ROOT);
    if limits.is_some() && root.join("cgroup.controllers").exists() {
        // cgroup v2: the controllers must be enabled down to the machine's group (a controller
        // the host does not delegate stays off, and setting its limit fails below).
        let azlin = root.join("azlin");
        std::fs::create_dir_all(&azlin)
            .map_err(|e| machine_error(format!("creating cgroup {}: {e}", azlin.display())))?;
        for group in [root, azlin.as_path()] {
            std::fs::write(group.join("cgroup.subtree_control"), "+cpu +memory +pids").ok();
        }
    }
    for group in &groups {
        std::fs::create_dir_all(group)
            .map_err(|e| machine_error(format!("creating cgroup {}: {e}", group.display())))?;
        // A hierarchy without the controller has no such file (the `unified` one of a hybrid
        // host holds none): the limit is set where the controller is.
        let files = limits.iter().flat_map(|l| l.files(group));
        for (file, value) in files.filter(|(file, _)| file.exists()) {
            std::fs::write(&file, &value).map_err(|e| {
                machine_error(format!("setting {} to {value}: {e}", file.display()))
            })?;
        }
    }
    Ok(groups)
}

/// Removes the cgroups of a machine that is gone (with the groups its systemd made inside),
/// returning what was removed.
pub async fn remove_cgroups(machine: &str) -> Vec<String> {
    let mut removed = Vec::new();
    for group in cgroups(machine).into_iter().filter(|g| g.exists()) {
        // The last processes of a killed machine leave their groups a moment later.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match remove_tree(&group) {
                Ok(()) => {
                    removed.push(format!("cgroup {}", group.display()));
                    break;
                }
                Err(e) if Instant::now() >= deadline => {
                    tracing::warn!("removing cgroup {}: {e}", group.display());
                    break;
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
        // The shared `azlin` group goes with its last machine (a busy one stays).
        if let Some(parent) = group.parent() {
            std::fs::remove_dir(parent).ok();
        }
    }
    removed
}

/// Pauses (`frozen`) or resumes every process of a machine in its own user namespace, through
/// its cgroup: `cgroup.freeze` (v2) or `freezer.state` (v1). Returns once the kernel says the
/// machine is frozen (or thawed); fails when the machine has no freezer.
pub async fn freeze(machine: &str, frozen: bool) -> Result<(), ProviderError> {
    let groups = cgroups(machine);
    let (file, value, settled) = match groups.iter().find(|g| g.join("cgroup.freeze").exists()) {
        Some(group) => (
            group.join("cgroup.freeze"),
            if frozen { "1" } else { "0" },
            (
                group.join("cgroup.events"),
                if frozen { "frozen 1" } else { "frozen 0" },
            ),
        ),
        None => {
            let group = groups
                .iter()
                .find(|g| g.join("freezer.state").exists())
                .ok_or_else(|| machine_error(format!("machine {machine} has no freezer cgroup")))?;
            let state = if frozen { "FROZEN" } else { "THAWED" };
            (
                group.join("freezer.state"),
                state,
                (group.join("freezer.state"), state),
            )
        }
    };
    std::fs::write(&file, value)
        .map_err(|e| machine_error(format!("writing {}: {e}", file.display())))?;
    let (watched, wanted) = settled;
    let done = wait_gone(Duration::from_secs(10), POLL, || {
        !std::fs::read_to_string(&watched).is_ok_and(|s| s.lines().any(|l| l.trim() == wanted))
    })
    .await;
    if done {
        Ok(())
    } else {
        Err(machine_error(format!(
            "machine {machine} did not {} within 10 s",
            if frozen { "freeze" } else { "thaw" }
        )))
    }
}

/// Removes a cgroup and the groups below it, deepest first (cgroup folders hold only the
/// kernel's files, which go with `rmdir`).
fn remove_tree(group: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(group)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    std::fs::remove_dir(group)
}

fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The machine's init: the child of the nspawn process.
pub(super) fn init_pid(nspawn: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Whether `pid` is a live `systemd-nspawn` booting `rootfs` (and not a reused pid).
pub fn is_nspawn(pid: u32, rootfs: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    alive(pid)
        && args.first().is_some_and(|a| a.ends_with(b"systemd-nspawn"))
        && args.contains(&rootfs.as_bytes())
}

/// The `systemd-nspawn` processes running the machine at `rootfs` (found by their command
/// line, for a machine whose pid was never recorded).
pub fn nspawn_processes(rootfs: &str) -> Vec<u32> {
    process::pids_where(|pid| is_nspawn(pid, rootfs))
}

/// Kills the machine at once: its init (which takes every process of the machine with it) and
/// the nspawn process.
pub async fn stop_now(pid: u32) {
    if let Some(init) = init_pid(pid) {
        signal(init, Signal::SIGKILL);
    }
    signal(pid, Signal::SIGKILL);
    wait_gone(Duration::from_secs(5), POLL, || {
        alive(pid) && comm(pid).as_deref() == Some("systemd-nspawn")
    })
    .await;
}

/// Shuts the machine down in order (nspawn turns SIGTERM into a poweroff request), killing it
/// if it does not finish in time.
pub async fn poweroff(pid: u32, rootfs: &str) {
    signal(pid, Signal::SIGTERM);
    if !wait_gone(POWEROFF_TIMEOUT, POLL, || is_nspawn(pid, rootfs)).await {
        stop_now(pid).await;
    }
}
