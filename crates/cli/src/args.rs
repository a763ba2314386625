//! The command line: one `Args` struct per subcommand, global flags flattened in. Parsing only;
//! nothing here touches the system.

use azlin_core::nats::NatsUrl;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// One command from nothing to a ready Linux machine — on Azure, or on this machine as a
/// container-VM (nspawn) or a real VM (qemu); fleets through an event bus; GitHub Actions
/// workflows on one VM per session.
#[derive(Debug, Parser)]
#[command(
    name = "azlin",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The version line, when the command line is exactly `azlin --version` (or `-V`).
pub fn version_request(mut args: impl Iterator<Item = std::ffi::OsString>) -> Option<String> {
    let _program = args.next();
    let flag = args.next()?;
    (args.next().is_none() && (flag == "--version" || flag == "-V"))
        .then(|| format!("azlin {}", env!("CARGO_PKG_VERSION")))
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum OutputFormat {
    /// Human-readable tables and progress.
    #[default]
    Table,
    /// JSON on stdout (progress goes to stderr).
    Json,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (default: ~/.config/azlin/config.toml).
    #[arg(long, global = true, env = "AZLIN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long = "output",
        global = true,
        value_enum,
        default_value_t
    )]
    pub output: OutputFormat,
    /// More logging (-v info, -vv debug, -vvv trace), on stderr.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// NATS server for the control plane (default: in-process). A password in the URL
    /// (`nats://user:password@host`) is never printed.
    #[arg(long, global = true, env = "AZLIN_NATS_URL", value_name = "URL")]
    pub nats: Option<NatsUrl>,
    /// How to reach the NATS server: TLS and credentials.
    #[command(flatten)]
    pub nats_auth: NatsArgs,
    /// Azure subscription id (default: `[azure] subscription` in the config, else az's default).
    #[arg(long, global = true, value_name = "ID")]
    pub subscription: Option<String>,
}

impl GlobalArgs {
    /// The environment that gives a child azlin process (a detached pool refill) the same
    /// config file and NATS connection: every such flag has an environment variable, and
    /// secrets stay out of the child's command line.
    pub fn child_env(&self) -> Vec<(&'static str, std::ffi::OsString)> {
        let NatsArgs {
            nats_ca,
            nats_cert,
            nats_key,
            nats_tls: _,
            nats_creds,
            nats_nkey,
            nats_token_file,
            nats_user,
            nats_password_file,
            nats_replicas,
        } = &self.nats_auth;
        let paths = [
            ("AZLIN_CONFIG", &self.config),
            ("AZLIN_NATS_CA", nats_ca),
            ("AZLIN_NATS_CERT", nats_cert),
            ("AZLIN_NATS_KEY", nats_key),
            ("AZLIN_NATS_CREDS", nats_creds),
            ("AZLIN_NATS_NKEY", nats_nkey),
            ("AZLIN_NATS_TOKEN_FILE", nats_token_file),
            ("AZLIN_NATS_PASSWORD_FILE", nats_password_file),
        ];
        let mut env: Vec<(&'static str, std::ffi::OsString)> = paths
            .into_iter()
            .filter_map(|(name, path)| Some((name, path.as_ref()?.clone().into_os_string())))
            .collect();
        if let Some(url) = &self.nats {
            env.push(("AZLIN_NATS_URL", url.expose().into()));
        }
        if let Some(user) = nats_user {
            env.push(("AZLIN_NATS_USER", user.into()));
        }
        if let Some(replicas) = nats_replicas {
            env.push(("AZLIN_NATS_REPLICAS", replicas.to_string().into()));
        }
        env
    }
}

/// TLS and credentials for the NATS server; each wins over its key in `[nats]` of the config.
/// Secrets come from files (or the environment), never from the command line.
#[derive(Debug, Args)]
#[command(next_help_heading = "NATS connection")]
pub struct NatsArgs {
    /// CA certificate (PEM) that signed the NATS server's certificate (implies TLS).
    #[arg(long, global = true, env = "AZLIN_NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// Client certificate (PEM) for a server that verifies clients (with --nats-key).
    #[arg(long, global = true, env = "AZLIN_NATS_CERT", value_name = "FILE")]
    pub nats_cert: Option<PathBuf>,
    /// Client private key (PEM).
    #[arg(long, global = true, env = "AZLIN_NATS_KEY", value_name = "FILE")]
    pub nats_key: Option<PathBuf>,
    /// Require TLS even for a `nats://` URL.
    #[arg(long, global = true)]
    pub nats_tls: bool,
    /// Credentials file (user JWT and nkey seed, `.creds`).
    #[arg(long, global = true, env = "AZLIN_NATS_CREDS", value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,
    /// File holding an nkey seed.
    #[arg(long, global = true, env = "AZLIN_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// File holding a token (or set AZLIN_NATS_TOKEN).
    #[arg(
        long,
        global = true,
        env = "AZLIN_NATS_TOKEN_FILE",
        value_name = "FILE"
    )]
    pub nats_token_file: Option<PathBuf>,
    /// User name (password from --nats-password-file or the URL).
    #[arg(long, global = true, env = "AZLIN_NATS_USER", value_name = "USER")]
    pub nats_user: Option<String>,
    /// File holding the password of --nats-user.
    #[arg(
        long,
        global = true,
        env = "AZLIN_NATS_PASSWORD_FILE",
        value_name = "FILE"
    )]
    pub nats_password_file: Option<PathBuf>,
    /// Replicas of azlin's streams and buckets (3 on a 3-node JetStream cluster; default 1).
    #[arg(long, global = true, env = "AZLIN_NATS_REPLICAS", value_name = "N")]
    pub nats_replicas: Option<usize>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check prerequisites and show their versions (exit 2 when a required one is missing).
    Doctor(DoctorArgs),
    /// Create a VM (or take one from a warm pool) and connect to it.
    New(NewArgs),
    /// List azlin's VMs.
    #[command(alias = "ls")]
    List(ListArgs),
    /// Show one VM.
    Status(NameArgs),
    /// Start a stopped VM and wait until it answers SSH.
    Start(NameArgs),
    /// Stop a VM, keeping its disk.
    Stop(NameArgs),
    /// Delete a VM and every resource made for it.
    #[command(alias = "rm")]
    Delete(DeleteArgs),
    /// Connect to a VM: a tmux session, or run a command and return its exit code.
    Connect(ConnectArgs),
    /// Open a VNC desktop on a VM through an SSH tunnel.
    Gui(GuiArgs),
    /// Run GitHub Actions workflows, one VM per workflow session.
    Run(RunArgs),
    /// Serve VM launch requests from the bus, or (--runs) run queued workflow runs.
    Worker(WorkerArgs),
    /// Follow the bus, keep the state store and deployment-state.yaml current, keep the warm
    /// pools filled; with --listen, take GitHub webhooks and show a dashboard and metrics.
    Serve(ServeArgs),
    /// Print the audit trail of events.
    Events(EventsArgs),
    /// Manage local base images.
    Image(ImageArgs),
    /// Warm pools: VMs booted ahead, each handed out once.
    Pool(PoolArgs),
    /// Save, list, restore and delete a VM's snapshots.
    Snapshot(SnapshotArgs),
    /// Make new VMs as copies of a VM (each with its own identity), in parallel.
    Clone(CloneArgs),
    /// Copy files between this machine and VMs (NAME:PATH), or between two VMs.
    Cp(CpArgs),
    /// Forward a local port to a VM through SSH, in the background; `tunnel list`, `tunnel close ID`.
    Tunnel(TunnelArgs),
    /// Add every VM to your SSH config as `azlin-NAME` (for ssh, scp and editors).
    SshConfig,
    /// azlin's SSH key: `keys rotate` replaces it on every VM.
    Keys(KeysArgs),
    /// Remove what crashes left behind: resources azlin could not delete, VMs no record
    /// names, networks of VMs that are gone.
    Cleanup(CleanupArgs),
    /// Open VS Code on a VM (over Remote-SSH).
    Code(CodeArgs),
    /// Run a command on many VMs at once.
    Fleet(FleetArgs),
    /// Load, memory, disk, uptime, failed services and tmux sessions of one VM or all.
    Health(HealthArgs),
    /// A VM's system journal, or cloud-init's output.
    Logs(LogsArgs),
    /// The caches workflow jobs saved with actions/cache.
    Cache(CacheArgs),
    /// The artifacts workflow runs uploaded.
    Artifacts(ArtifactsArgs),
    /// Print a shell completion script.
    Completions(CompletionsArgs),
}

/// `azlin doctor`
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Check for this provider (default: the configured one).
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
}

/// `azlin new`
#[derive(Debug, Args)]
pub struct NewArgs {
    /// Provider: nspawn, qemu, azure or sim.
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// VM name ([a-z][a-z0-9-]{0,62}); generated when absent.
    #[arg(long, value_name = "N")]
    pub name: Option<String>,
    /// Repository to clone into ~/<repo> (https only; repeatable).
    #[arg(long = "repo", value_name = "URL")]
    pub repos: Vec<String>,
    /// VM size (Azure name like Standard_B2s, or xs/s/m/l/xl).
    #[arg(long, value_name = "S")]
    pub size: Option<String>,
    /// Region.
    #[arg(long, value_name = "R")]
    pub region: Option<String>,
    /// Azure resource group.
    #[arg(long, value_name = "RG")]
    pub resource_group: Option<String>,
    /// Image profile: minimal or dev.
    #[arg(long, value_name = "PROFILE")]
    pub image: Option<String>,
    /// Template from the config file.
    #[arg(long, value_name = "T")]
    pub template: Option<String>,
    /// Extra cloud-config merged into azlin's.
    #[arg(long, value_name = "FILE")]
    pub cloud_init: Option<PathBuf>,
    /// A CA certificate (PEM) the VM should trust, e.g. for an internal git server (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Tag K=V (repeatable).
    #[arg(long = "tag", value_name = "K=V")]
    pub tags: Vec<String>,
    /// Create N VMs named NAME-1..N in parallel.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: usize,
    /// Do not open an SSH session at the end.
    #[arg(long)]
    pub no_connect: bool,
    /// Forward X11 in the SSH session.
    #[arg(long)]
    pub x11: bool,
    /// Azure without `[azure] ssh_source_prefix`: accept an NSG that opens SSH to any address.
    #[arg(long)]
    pub allow_ssh_from_anywhere: bool,
    /// Take a ready VM from this warm pool (`[pool.NAME]`) instead of booting one: it is yours
    /// at once, keeps the name it was booted with, and the pool boots a replacement.
    #[arg(long, value_name = "NAME")]
    pub pool: Option<String>,
    /// A file holding a GitHub token for the VM: its git (private repositories clone) and its
    /// `gh` are logged in with it. Default: `[github] token_file`, else `gh auth token` here.
    #[arg(long, value_name = "FILE")]
    pub gh_token_file: Option<PathBuf>,
}

/// `azlin list`
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only VMs of this provider.
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// Also each running VM's load and tmux sessions (reads them over SSH).
    #[arg(long)]
    pub wide: bool,
}

/// Commands taking one VM name.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// The VM.
    pub name: String,
}

/// `azlin delete`
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The VM.
    pub name: String,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// `azlin connect`
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The VM.
    pub name: String,
    /// Forward X11 (ssh -Y).
    #[arg(long)]
    pub x11: bool,
    /// A plain login shell instead of the tmux session.
    #[arg(long)]
    pub no_tmux: bool,
    /// Command to run instead of a session; its exit code becomes azlin's.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `azlin gui`
#[derive(Debug, Args)]
pub struct GuiArgs {
    /// The VM.
    pub name: String,
    /// Local port of the tunnel (default: a free one).
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// Start no viewer: print the address and password, keep the tunnel open until Ctrl-C.
    #[arg(long)]
    pub no_viewer: bool,
}

/// VM scope of a workflow run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum VmScope {
    /// One VM for the whole workflow; jobs run in `needs` order.
    #[default]
    Workflow,
    /// One VM per job; independent jobs run in parallel.
    Job,
}

/// `azlin run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Workflow files; several run as parallel sessions.
    #[arg(required = true, value_name = "WORKFLOW.yml")]
    pub workflows: Vec<PathBuf>,
    /// Provider for the session VMs (`sim` runs steps as processes on this machine, not in a
    /// VM: for tests only).
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// Event that triggered the run.
    #[arg(long, value_name = "E", default_value = "push")]
    pub event: String,
    /// JSON file with the event's payload (github.event), e.g. a pull_request webhook body.
    #[arg(long, value_name = "FILE")]
    pub eventpath: Option<PathBuf>,
    /// Input K=V of a workflow_dispatch or workflow_call workflow (repeatable).
    #[arg(long = "input", value_name = "K=V")]
    pub inputs: Vec<String>,
    /// Run only this job (and what it needs).
    #[arg(long, value_name = "ID")]
    pub job: Option<String>,
    /// Secret K=V, or K alone to take the value of the environment variable K (repeatable).
    /// Secrets are masked in all output.
    #[arg(long = "secret", value_name = "K=V|K")]
    pub secrets: Vec<String>,
    /// .env file of secrets (KEY=value lines); --secret values win over it.
    #[arg(long, value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// .env file of variables (KEY=value lines) every step gets.
    #[arg(long, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Variable K=V for the vars context (repeatable).
    #[arg(long = "var", value_name = "K=V")]
    pub vars: Vec<String>,
    /// GITHUB_ACTOR (default: the local user).
    #[arg(long, value_name = "A")]
    pub actor: Option<String>,
    /// GITHUB_REPOSITORY as OWNER/NAME (default: from the git remote).
    #[arg(long, value_name = "OWNER/NAME")]
    pub repository: Option<String>,
    /// The repository folder that actions/checkout copies (default: the repository the
    /// workflow file is in).
    #[arg(short = 'C', long, value_name = "DIR")]
    pub directory: Option<PathBuf>,
    /// Where actions come from: `uses: OWNER/REPO@REF` is the git repository URL/OWNER/REPO
    /// (default: the config's [actions] url, else https://github.com).
    #[arg(long, value_name = "URL")]
    pub actions_url: Option<String>,
    /// A CA certificate (PEM) to trust for --actions-url, e.g. that of an internal git server.
    #[arg(long = "actions-ca-cert", value_name = "FILE")]
    pub actions_ca_cert: Option<PathBuf>,
    /// Use only actions fetched before; fetch nothing.
    #[arg(long)]
    pub actions_offline: bool,
    /// Use the local folder DIR for the action OWNER/REPO@REF (repeatable).
    #[arg(long = "action-override", value_name = "OWNER/REPO@REF=DIR")]
    pub action_overrides: Vec<String>,
    /// Most sessions (VMs) at once.
    #[arg(long, value_name = "N")]
    pub max_concurrent: Option<usize>,
    /// One VM per workflow (default) or per job.
    #[arg(long, value_enum, default_value_t)]
    pub vm_scope: VmScope,
    /// Folder for per-step logs (default: the state dir).
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
    /// Command run on each session's VM before its first step (repeatable, in order); a
    /// failing one fails the session.
    #[arg(long = "setup", value_name = "CMD")]
    pub setup_commands: Vec<String>,
    /// Command run on each session's VM after its last step, whatever happened (repeatable);
    /// a failing one is reported, and the VM is released anyway.
    #[arg(long = "cleanup", value_name = "CMD")]
    pub cleanup_commands: Vec<String>,
    /// Keep the VM of a failed session for debugging (prints how to connect); the default
    /// releases every VM.
    #[arg(long)]
    pub keep_failed: bool,
}

/// `azlin worker`
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Requests processed at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrency: usize,
    /// Attempts per request before it is dead-lettered.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_attempts: u32,
    /// Seconds without word from a worker before its request goes to another worker (doubled
    /// for each redelivery; a worker reports progress four times per period). Applies to the
    /// consumer all workers share: the last worker started sets it.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub ack_wait: u64,
    /// Run workflow runs queued by `azlin serve` (from GitHub webhooks) on this host's VMs,
    /// instead of serving VM launch requests.
    #[arg(long)]
    pub runs: bool,
    /// With --runs: the `runs-on` labels this host serves beyond the Linux ones (a run whose
    /// jobs ask for a label is left to a worker that declares it).
    #[arg(long, value_name = "L,...", value_delimiter = ',', requires = "runs")]
    pub labels: Vec<String>,
    /// With --runs: the most runs all runner workers together hold at once (a limit of the
    /// queue they share: the last runner started sets it).
    #[arg(long, value_name = "N", requires = "runs")]
    pub max_in_flight: Option<u32>,
}

/// `azlin serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to answer HTTP on: POST /webhook (GitHub deliveries), GET /metrics, /vms,
    /// /healthz.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
}

/// `azlin events`
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep printing new events.
    #[arg(long, short = 'f')]
    pub follow: bool,
}

/// `azlin image`
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ImageAction,
}

/// `azlin image …`
#[derive(Debug, Subcommand)]
pub enum ImageAction {
    /// Build (or find cached) the base image.
    Build(ImageBuildArgs),
    /// List built images.
    List,
}

/// `azlin image build`
#[derive(Debug, Args)]
pub struct ImageBuildArgs {
    /// Provider the image is for (nspawn or qemu).
    #[arg(long, value_name = "P")]
    pub provider: Option<String>,
    /// Tool set: minimal or dev.
    #[arg(long, value_name = "PROFILE", default_value = "minimal")]
    pub profile: String,
}

/// `azlin snapshot`
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SnapshotAction,
}

/// `azlin snapshot …`
#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Save the VM's state (a running VM is paused while its disk is copied).
    Create {
        /// The VM.
        name: String,
        /// The snapshot's name (default: snap-TIMESTAMP).
        snapshot: Option<String>,
    },
    /// List a VM's snapshots (every VM's when no name is given).
    List {
        /// The VM.
        name: Option<String>,
    },
    /// Put a VM back to a snapshot; it keeps its name, address and host key.
    Restore {
        /// The VM.
        name: String,
        /// The snapshot.
        snapshot: String,
    },
    /// Delete a snapshot.
    Delete {
        /// The VM.
        name: String,
        /// The snapshot.
        snapshot: String,
    },
}

/// `azlin cp`
#[derive(Debug, Args)]
pub struct CpArgs {
    /// What to copy: a local path, or NAME:PATH on a VM (relative to its home folder).
    pub source: String,
    /// Where to: a local path, or NAME:PATH on a VM.
    pub destination: String,
    /// Copy folders and what they hold.
    #[arg(short = 'r', long)]
    pub recursive: bool,
}

/// `azlin tunnel`
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct TunnelArgs {
    /// `list` or `close ID` (without one: open a tunnel).
    #[command(subcommand)]
    pub action: Option<TunnelAction>,
    /// The VM.
    pub name: Option<String>,
    /// LOCAL_PORT:REMOTE_HOST:REMOTE_PORT (REMOTE_HOST as the VM sees it: localhost is the VM).
    #[arg(value_name = "LOCAL_PORT:REMOTE_HOST:REMOTE_PORT")]
    pub forward: Option<String>,
    /// The local address to listen on (default 127.0.0.1: this machine only).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

/// `azlin tunnel …`
#[derive(Debug, Subcommand)]
pub enum TunnelAction {
    /// The tunnels running in the background.
    List,
    /// Stop a tunnel.
    Close {
        /// Its id (from `tunnel list`).
        id: String,
    },
}

/// `azlin cleanup`
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// Only list what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

/// `azlin keys`
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: KeysAction,
}

/// `azlin keys …`
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// Make a new SSH key, authorize it on every VM and prove it with a login, then remove the
    /// old one. If a VM cannot be reached, nothing changes anywhere.
    Rotate,
}

/// `azlin fleet`
#[derive(Debug, Args)]
pub struct FleetArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: FleetAction,
}

/// `azlin fleet …`
#[derive(Debug, Subcommand)]
pub enum FleetAction {
    /// Run COMMAND on every running VM that matches; output is prefixed with the VM's name,
    /// then a summary of exit codes. Fails if it failed anywhere.
    Run {
        /// Only VMs whose name matches this pattern (`*` and `?`).
        #[arg(long = "match", value_name = "GLOB")]
        pattern: Option<String>,
        /// Only VMs created with this tag (repeatable: all must match).
        #[arg(long = "tag", value_name = "K=V")]
        tags: Vec<String>,
        /// VMs at once.
        #[arg(long, value_name = "N", default_value_t = 8)]
        parallel: usize,
        /// The command.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
}

/// `azlin health`
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The VM (default: every running VM).
    pub name: Option<String>,
}

/// `azlin logs`
#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The VM.
    pub name: String,
    /// cloud-init's output instead of the system journal.
    #[arg(long)]
    pub cloud_init: bool,
    /// The whole journal of this boot (default: its last 200 lines).
    #[arg(long)]
    pub boot: bool,
    /// Keep printing new lines.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

/// `azlin code`
#[derive(Debug, Args)]
pub struct CodeArgs {
    /// The VM.
    pub name: String,
    /// The folder to open on the VM (default: the login user's home).
    pub path: Option<String>,
}

/// `azlin cache`
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: CacheAction,
}

/// `azlin cache …`
#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// List caches, newest first.
    List {
        /// Only this repository's (OWNER/NAME).
        #[arg(long, value_name = "OWNER/NAME")]
        repository: Option<String>,
    },
    /// Delete the caches with this key.
    Delete {
        /// The cache key.
        key: String,
        /// Only this repository's (OWNER/NAME).
        #[arg(long, value_name = "OWNER/NAME")]
        repository: Option<String>,
    },
}

/// `azlin artifacts`
#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: ArtifactsAction,
}

/// `azlin artifacts …`
#[derive(Debug, Subcommand)]
pub enum ArtifactsAction {
    /// List a run's artifacts (the run id is printed at the end of `azlin run`).
    List {
        /// The run id.
        run: String,
    },
    /// Download a run's artifacts (or one of them) into a folder per artifact.
    Download {
        /// The run id.
        run: String,
        /// Only this artifact.
        name: Option<String>,
        /// Where to put them (default: the current folder).
        #[arg(long, value_name = "D", default_value = ".")]
        dir: PathBuf,
    },
}

/// `azlin clone`
#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The VM to copy.
    pub name: String,
    /// The new VM's name (NEW-1…NEW-N with --count).
    pub new: String,
    /// How many copies.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: usize,
}

/// `azlin pool`
#[derive(Debug, Args)]
pub struct PoolArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: PoolAction,
}

/// `azlin pool …`
#[derive(Debug, Subcommand)]
pub enum PoolAction {
    /// Show how many VMs each pool has ready, booting and handed out.
    Status(PoolNameArgs),
    /// Boot VMs until each pool has its `min_ready` ready; also retire VMs that are too old,
    /// unhealthy, or whose taker is gone.
    Fill(PoolNameArgs),
    /// Delete the ready VMs of a pool (handed-out VMs finish their work).
    Drain(PoolNameArgs),
}

/// A pool, or every configured pool.
#[derive(Debug, Args)]
pub struct PoolNameArgs {
    /// The pool (`[pool.NAME]` in the config); every pool when absent.
    pub name: Option<String>,
}

/// `azlin completions`
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn os(args: &[&str]) -> impl Iterator<Item = std::ffi::OsString> {
        args.iter()
            .map(std::ffi::OsString::from)
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn the_version_fast_path_prints_what_clap_prints() {
        let clap_line = Cli::command().render_version();
        assert_eq!(
            version_request(os(&["azlin", "--version"])).unwrap(),
            clap_line.trim_end()
        );
        assert_eq!(
            version_request(os(&["azlin", "-V"])).unwrap(),
            clap_line.trim_end()
        );
        assert_eq!(version_request(os(&["azlin", "list", "--version"])), None);
        assert_eq!(version_request(os(&["azlin", "--version", "x"])), None);
        assert_eq!(version_request(os(&["azlin"])), None);
    }
}
