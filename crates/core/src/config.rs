//! Where azlin keeps things ([`Paths`]) and what the user configured ([`Config`]).
//!
//! Both are resolved once, at the CLI edge, from explicit inputs; nothing below reads the process
//! environment or `HOME` on its own.

use crate::RepoUrl;
use crate::nats::{NatsConfig, NatsUrl};
use crate::network::NetworkConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The directories azlin uses (XDG layout; everything under one folder when `AZLIN_HOME` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// `~/.config/azlin`: `config.toml`.
    pub config_dir: PathBuf,
    /// `~/.local/state/azlin`: the state store, VM folders, logs.
    pub state_dir: PathBuf,
    /// `~/.cache/azlin`: base images and other rebuildable things.
    pub cache_dir: PathBuf,
    /// `~/.ssh`: where `azlin_key` lives.
    pub ssh_dir: PathBuf,
}

/// The environment variables that decide [`Paths`], read once by the caller.
#[derive(Debug, Clone, Default)]
pub struct PathInputs {
    /// `AZLIN_HOME`: a folder standing in for `HOME`, for every azlin path.
    pub azlin_home: Option<PathBuf>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `XDG_CONFIG_HOME`.
    pub xdg_config_home: Option<PathBuf>,
    /// `XDG_STATE_HOME`.
    pub xdg_state_home: Option<PathBuf>,
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<PathBuf>,
}

impl PathInputs {
    /// Reads the variables from the process environment (for the CLI edge only).
    pub fn from_process_env() -> Self {
        let var = |name| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        PathInputs {
            azlin_home: var("AZLIN_HOME"),
            home: var("HOME"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            xdg_state_home: var("XDG_STATE_HOME"),
            xdg_cache_home: var("XDG_CACHE_HOME"),
        }
    }
}

impl Paths {
    /// Resolves the directories. `AZLIN_HOME` wins over everything; otherwise XDG variables,
    /// then their defaults under `HOME`.
    pub fn resolve(inputs: &PathInputs) -> Paths {
        if let Some(root) = &inputs.azlin_home {
            return Paths::under(root);
        }
        let home = inputs
            .home
            .clone()
            .unwrap_or_else(|| PathBuf::from("/root"));
        let xdg = |var: &Option<PathBuf>, default: &str| {
            var.clone().unwrap_or_else(|| home.join(default))
        };
        Paths {
            config_dir: xdg(&inputs.xdg_config_home, ".config").join("azlin"),
            state_dir: xdg(&inputs.xdg_state_home, ".local/state").join("azlin"),
            cache_dir: xdg(&inputs.xdg_cache_home, ".cache").join("azlin"),
            ssh_dir: home.join(".ssh"),
        }
    }

    /// Every directory under `root`, laid out as under a home directory.
    pub fn under(root: &Path) -> Paths {
        Paths {
            config_dir: root.join(".config/azlin"),
            state_dir: root.join(".local/state/azlin"),
            cache_dir: root.join(".cache/azlin"),
            ssh_dir: root.join(".ssh"),
        }
    }

    /// The default config file.
    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }

    /// The azlin SSH private key (`azlin_key`; the public key is `azlin_key.pub`).
    pub fn ssh_key(&self) -> PathBuf {
        self.ssh_dir.join("azlin_key")
    }
}

/// Sim provider settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Boot latency in milliseconds.
    pub boot_ms: Option<u64>,
    /// Probability (0..=1) that a create fails.
    pub fail_rate: Option<f64>,
}

/// Where `azlin run` fetches remote actions (`uses: OWNER/REPO@REF`) from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// Action repositories are `<url>/OWNER/REPO`; `https://github.com` when absent.
    pub url: Option<String>,
}

/// Which of GitHub's cache protocols jobs are pointed at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheProtocol {
    /// The REST API under `ACTIONS_CACHE_URL`.
    V1,
    /// The Twirp service under `ACTIONS_RESULTS_URL`, what GitHub serves today.
    #[default]
    V2,
}

/// The cache service jobs use (`[cache]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `"v1"` or `"v2"` (the default).
    #[serde(default)]
    pub protocol: CacheProtocol,
    /// MiB of caches kept per repository, the least recently used evicted first; 10240 (10
    /// GiB, as on GitHub) when absent.
    pub size_limit_mb: Option<u64>,
}

/// The artifact service jobs use (`[artifacts]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactsConfig {
    /// Days artifacts are kept; 90 when absent.
    pub retention_days: Option<u64>,
    /// The largest artifact accepted, in MiB; 10240 when absent.
    pub max_size_mb: Option<u64>,
}

/// Living VMs (`[vm]`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmConfig {
    /// `azlin serve` stops running VMs that had no SSH session and next to no CPU use for
    /// this many minutes (fractions allowed); never when absent.
    pub idle_stop_minutes: Option<f64>,
}

impl VmConfig {
    /// How long a VM may idle before it is stopped, if it may be stopped at all; an error for
    /// a value that is not a positive number of minutes.
    pub fn idle_stop(&self) -> Result<Option<std::time::Duration>, String> {
        match self.idle_stop_minutes {
            None => Ok(None),
            Some(m) if m.is_finite() && m > 0.0 && m < 1e9 => {
                Ok(Some(std::time::Duration::from_secs_f64(m * 60.0)))
            }
            Some(m) => Err(format!(
                "[vm] idle_stop_minutes = {m}: expected a positive number of minutes"
            )),
        }
    }
}

/// How results of CI runs go back to GitHub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportMode {
    /// A check run per job (the default).
    #[default]
    Checks,
    /// A commit status per job.
    Statuses,
}

/// GitHub access of new VMs (`[github]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubConfig {
    /// The file holding a token that new VMs get for git and `gh` (private repositories
    /// clone); `gh auth token` of this machine when absent and `gh` is logged in.
    pub token_file: Option<PathBuf>,
}

/// `azlin serve` as a CI service (`[serve]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// The file holding the secret GitHub signs webhook deliveries with; `POST /webhook`
    /// refuses every delivery when absent.
    pub webhook_secret_file: Option<PathBuf>,
    /// Where a repository is fetched from: `{repository}` stands for `OWNER/NAME`;
    /// `https://github.com/{repository}.git` when absent.
    pub repo_url: Option<String>,
    /// The file holding the token used to fetch repositories and post results.
    pub token_file: Option<PathBuf>,
    /// GitHub's REST API; `https://api.github.com` when absent.
    pub api_url: Option<String>,
    /// Check runs (the default) or commit statuses.
    #[serde(default)]
    pub report: ReportMode,
    /// The file holding the token the dashboard asks for when it listens beyond loopback.
    pub dashboard_token_file: Option<PathBuf>,
    /// An OpenTelemetry collector's OTLP/HTTP base URL: spans of runs, jobs and steps go there.
    pub otlp_endpoint: Option<String>,
}

/// Azure provider settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureConfig {
    /// Subscription id; the `az` default when absent.
    pub subscription: Option<String>,
    /// ARM endpoint (`https://management.azure.com` unless a test double stands in).
    pub endpoint: Option<String>,
    /// Image URN `publisher:offer:sku:version`.
    pub image: Option<String>,
    /// Address or CIDR allowed to reach SSH on Azure VMs; anywhere (`*`) when absent.
    pub ssh_source_prefix: Option<String>,
    /// The Azure CLI program (name on `PATH` or path); `az` when absent.
    pub az_program: Option<PathBuf>,
}

/// A named set of defaults for `new --template NAME` (seed 000, "VM Templates").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Provider.
    pub provider: Option<String>,
    /// Size.
    pub size: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Image profile.
    pub image: Option<String>,
    /// Repositories to clone.
    #[serde(default)]
    pub repos: Vec<RepoUrl>,
    /// A cloud-config file merged into the generated one.
    pub cloud_init: Option<PathBuf>,
    /// Tags.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A warm pool (`[pool.NAME]`): VMs booted ahead, SSH-verified and cloud-init-done, each handed
/// out once (to a workflow session whose `runs-on` its labels match, or by `new --pool`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Provider of its VMs; the default provider when absent.
    pub provider: Option<String>,
    /// Image profile.
    pub image: Option<String>,
    /// Size.
    pub size: Option<String>,
    /// How many VMs to keep ready.
    #[serde(default = "PoolConfig::default_min_ready")]
    pub min_ready: usize,
    /// Most VMs of the pool at once: booting, ready, and handed out but not yet gone.
    pub max: Option<usize>,
    /// The `runs-on` labels it serves: a job runs on it when every label of its `runs-on` is
    /// here.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Ready VMs older than this are retired and replaced (fresh clocks, fresh packages).
    #[serde(default = "PoolConfig::default_max_age_minutes")]
    pub max_age_minutes: u64,
}

impl PoolConfig {
    fn default_min_ready() -> usize {
        1
    }

    fn default_max_age_minutes() -> u64 {
        24 * 60
    }

    /// The cap on the pool's VMs at once: `max`, or twice `min_ready` (room for one refill
    /// while the handed-out VMs are still in use).
    pub fn max_vms(&self) -> usize {
        self.max.unwrap_or(self.min_ready * 2).max(self.min_ready)
    }

    /// Whether a job whose `runs-on` is `runs_on` runs on this pool's VMs.
    pub fn serves(&self, runs_on: &[String]) -> bool {
        runs_on.iter().all(|label| self.labels.contains(label))
    }
}

/// The config file (`config.toml`): defaults for every command. Unknown keys are refused.
/// `Debug` hides credentials in the NATS URL and the notification command.
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Default provider.
    pub provider: Option<String>,
    /// Default size.
    pub size: Option<String>,
    /// Default region.
    pub region: Option<String>,
    /// Default resource group.
    pub resource_group: Option<String>,
    /// Default image profile.
    pub image: Option<String>,
    /// Repositories cloned on every new VM.
    #[serde(default)]
    pub repos: Vec<RepoUrl>,
    /// PEM files of CA certificates every new VM trusts.
    #[serde(default)]
    pub ca_certs: Vec<PathBuf>,
    /// A command run (through `sh -c`) to notify of completion; `AZLIN_NOTIFY_*` variables
    /// carry the details.
    pub notify_command: Option<String>,
    /// NATS server URL; the in-process bus when absent (also `[nats] url`, which wins).
    pub nats_url: Option<NatsUrl>,
    /// NATS connection: TLS, credentials, replicas.
    #[serde(default)]
    pub nats: NatsConfig,
    /// Where base images are cached (shared between users of one machine).
    pub image_dir: Option<PathBuf>,
    /// Seconds to wait for SSH before giving up (exit 5).
    pub ssh_timeout_secs: Option<u64>,
    /// Seconds to wait for cloud-init before giving up (exit 5).
    pub cloud_init_timeout_secs: Option<u64>,
    /// Most workflow sessions (VMs) at once for `azlin run`.
    pub max_concurrent_sessions: Option<usize>,
    /// Sim provider settings.
    #[serde(default)]
    pub sim: SimConfig,
    /// Azure provider settings.
    #[serde(default)]
    pub azure: AzureConfig,
    /// Where `azlin run` fetches actions from.
    #[serde(default)]
    pub actions: ActionsConfig,
    /// What local VMs may reach: ports offered on the host, egress.
    #[serde(default)]
    pub network: NetworkConfig,
    /// The cache service of workflow jobs.
    #[serde(default)]
    pub cache: CacheConfig,
    /// The artifact service of workflow jobs.
    #[serde(default)]
    pub artifacts: ArtifactsConfig,
    /// Named templates.
    #[serde(default)]
    pub templates: BTreeMap<String, Template>,
    /// Warm pools by name (`[pool.NAME]`).
    #[serde(default)]
    pub pool: BTreeMap<String, PoolConfig>,
    /// Living VMs: idle stop.
    #[serde(default)]
    pub vm: VmConfig,
    /// The CI service: webhooks, repositories, results back to GitHub.
    #[serde(default)]
    pub serve: ServeConfig,
    /// GitHub access of new VMs.
    #[serde(default)]
    pub github: GithubConfig,
}

/// A config file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (with line and column).
        message: String,
    },
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Field by field, without `..`: a new field cannot be left out (or leak) unnoticed.
        let Config {
            provider,
            size,
            region,
            resource_group,
            image,
            repos,
            ca_certs,
            notify_command,
            nats_url,
            image_dir,
            ssh_timeout_secs,
            cloud_init_timeout_secs,
            max_concurrent_sessions,
            sim,
            azure,
            nats,
            actions,
            network,
            cache,
            artifacts,
            templates,
            pool,
            vm,
            serve,
            github,
        } = self;
        f.debug_struct("Config")
            .field("provider", provider)
            .field("size", size)
            .field("region", region)
            .field("resource_group", resource_group)
            .field("image", image)
            .field("repos", repos)
            .field("ca_certs", ca_certs)
            // A notification command may carry a webhook token.
            .field("notify_command", &notify_command.as_ref().map(|_| REDACTED))
            .field("nats_url", nats_url)
            .field("image_dir", image_dir)
            .field("ssh_timeout_secs", ssh_timeout_secs)
            .field("cloud_init_timeout_secs", cloud_init_timeout_secs)
            .field("max_concurrent_sessions", max_concurrent_sessions)
            .field("sim", sim)
            .field("azure", azure)
            .field("nats", nats)
            .field("actions", actions)
            .field("network", network)
            .field("cache", cache)
            .field("artifacts", artifacts)
            .field("templates", templates)
            .field("pool", pool)
            .field("vm", vm)
            .field("serve", serve)
            .field("github", github)
            .finish()
    }
}

/// What `Debug` prints in place of a secret.
pub const REDACTED: &str = "***";

impl Config {
    /// Loads `path`. A missing file is an empty config unless `required` (an explicit `--config`).
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).map_err(|message| ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Parses config text.
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let config = Config::parse(
            "nats_url = \"nats://alice:hunter2@bus.example:4222,tls://s3cr3t-token@b2:4222/x\"\n\
             notify_command = \"curl https://hooks.example/T0K3N\"\n",
        )
        .expect("config");
        let shown = format!("{config:?}");
        // User names are no secret; passwords, tokens and the notify command are.
        for secret in ["hunter2", "s3cr3t-token", "T0K3N"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("***@bus.example:4222"), "{shown}");
    }

    #[test]
    fn azlin_home_puts_everything_under_one_folder() {
        let paths = Paths::resolve(&PathInputs {
            azlin_home: Some("/t".into()),
            home: Some("/home/u".into()),
            ..PathInputs::default()
        });
        assert_eq!(paths.ssh_key(), PathBuf::from("/t/.ssh/azlin_key"));
        assert_eq!(
            paths.config_file(),
            PathBuf::from("/t/.config/azlin/config.toml")
        );
        assert!(paths.state_dir.starts_with("/t"));
    }

    #[test]
    fn xdg_variables_are_honoured() {
        let paths = Paths::resolve(&PathInputs {
            home: Some("/home/u".into()),
            xdg_state_home: Some("/var/st".into()),
            ..PathInputs::default()
        });
        assert_eq!(paths.state_dir, PathBuf::from("/var/st/azlin"));
        assert_eq!(paths.cache_dir, PathBuf::from("/home/u/.cache/azlin"));
    }

    #[test]
    fn config_refuses_unknown_keys_and_bad_repos() {
        assert!(Config::parse("provider = \"sim\"\nsize = \"s\"").is_ok());
        let err = Config::parse("provdier = \"sim\"").unwrap_err();
        assert!(err.contains("provdier"), "{err}");
        assert!(Config::parse("repos = [\"http://x/y.git\"]").is_err());
        let config = Config::parse("[actions]\nurl = \"file:///srv/actions\"").unwrap();
        assert_eq!(config.actions.url.as_deref(), Some("file:///srv/actions"));
        assert!(Config::parse("[actions]\nurl = \"x\"\noffline = true").is_err());
        let config = Config::parse("[network]\nhost_ports = [8443]\negress = \"none\"").unwrap();
        assert_eq!(config.network.host_ports, vec![8443]);
        assert!(Config::parse("[network]\nports = [1]").is_err());
    }

    #[test]
    fn nats_section() {
        let config = Config::parse(
            "nats_url = \"nats://old:4222\"\n[nats]\nurl = \"tls://u:pw@h:4222\"\nreplicas = 3\n\
             ca_file = \"/ca.pem\"\nuser = \"w\"\npassword_file = \"/pw\"",
        )
        .expect("parses");
        assert_eq!(config.nats.replicas, Some(3));
        assert_eq!(config.nats_url.expect("url").expose(), "nats://old:4222");
        assert!(!format!("{:?}", config.nats).contains("pw@"));
        let err = Config::parse("[nats]\ntoken = \"x\"").unwrap_err();
        assert!(err.contains("token"), "{err}");
    }
}
