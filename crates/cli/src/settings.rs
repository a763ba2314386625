//! Settings resolved once from flags, environment and config file, then passed by reference.

use crate::args::{GlobalArgs, NatsArgs, OutputFormat};
use crate::failure::Failure;
use azlin_control::{OrphanStore, Planner};
use azlin_core::config::{Config, PathInputs};
use azlin_core::nats::{NatsConfig, NatsConnection, NatsInputs, NatsUrl, Secret};
use azlin_core::{Paths, ProviderKind};
use azlin_providers::image::DEFAULT_MIRROR;
use azlin_providers::sim::SimSettings;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

/// Everything a command needs to know about its environment. `Debug` hides the credentials a
/// NATS URL may carry.
#[derive(Clone)]
pub struct Settings {
    /// Where azlin keeps things.
    pub paths: Paths,
    /// The config file's contents.
    pub config: Config,
    /// Output format.
    pub output: OutputFormat,
    /// The NATS server and how to reach it, if the control plane runs over NATS.
    pub nats: Option<NatsConnection>,
    /// Azure subscription from `--subscription`; wins over `[azure] subscription`.
    pub azure_subscription: Option<String>,
    /// Where base images are cached.
    pub image_dir: PathBuf,
    /// Debian mirror for image builds.
    pub mirror: String,
    /// Sim provider settings.
    pub sim: SimSettings,
    /// Probability (0..=1) that a sim delete fails (`AZLIN_SIM_DELETE_FAIL_RATE`; tests).
    pub sim_delete_fail_rate: f64,
    /// How long to wait for SSH.
    pub ssh_timeout: Duration,
    /// How long to wait for cloud-init.
    pub cloud_init_timeout: Duration,
    /// Whether stdin and stdout are a terminal (interactive use).
    pub interactive: bool,
    /// Whether stderr is a terminal (live progress).
    pub progress_tty: bool,
    /// What a child azlin process needs in its environment to use the same config and NATS
    /// connection (may hold a NATS password: never printed).
    pub child_env: Vec<(&'static str, std::ffi::OsString)>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Resolves settings: flags win over environment, environment over the config file.
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Settings> {
        let GlobalArgs {
            config,
            output,
            verbose: _,
            nats,
            nats_auth,
            subscription,
        } = global;
        let paths = Paths::resolve(&PathInputs::from_process_env());
        let config = match config {
            Some(path) => Config::load(path, true)?,
            None => Config::load(&paths.config_file(), false)?,
        };
        let parse_env = |name: &str| -> anyhow::Result<Option<f64>> {
            env(name)
                .map(|v| {
                    v.parse::<f64>()
                        .map_err(|_| Failure::usage(format!("{name}={v} is not a number")))
                })
                .transpose()
        };
        let boot_ms = parse_env("AZLIN_SIM_BOOT_MS")?
            .map(|v| v as u64)
            .or(config.sim.boot_ms)
            .unwrap_or(0);
        let fail_rate = parse_env("AZLIN_SIM_FAIL_RATE")?
            .or(config.sim.fail_rate)
            .unwrap_or(0.0);
        let sim_delete_fail_rate = parse_env("AZLIN_SIM_DELETE_FAIL_RATE")?.unwrap_or(0.0);
        for rate in [fail_rate, sim_delete_fail_rate] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(Failure::usage(format!(
                    "sim fail rate {rate} is not between 0 and 1"
                )));
            }
        }
        let image_dir = env("AZLIN_IMAGE_DIR")
            .map(PathBuf::from)
            .or_else(|| config.image_dir.clone())
            .unwrap_or_else(|| default_image_dir(&paths));
        let nats = resolve_nats(nats.as_ref(), nats_auth, &config)?;
        Ok(Settings {
            nats,
            azure_subscription: subscription.clone(),
            image_dir,
            mirror: env("AZLIN_DEBIAN_MIRROR").unwrap_or_else(|| DEFAULT_MIRROR.to_string()),
            sim: SimSettings {
                boot: Duration::from_millis(boot_ms),
                fail_rate,
            },
            sim_delete_fail_rate,
            ssh_timeout: Duration::from_secs(config.ssh_timeout_secs.unwrap_or(300)),
            cloud_init_timeout: Duration::from_secs(config.cloud_init_timeout_secs.unwrap_or(900)),
            interactive: std::io::stdin().is_terminal() && std::io::stdout().is_terminal(),
            progress_tty: std::io::stderr().is_terminal() && *output == OutputFormat::Table,
            child_env: global.child_env(),
            output: *output,
            paths,
            config,
        })
    }

    /// The provider named by a flag, else the config, else the local default.
    pub fn provider(&self, flag: Option<&str>) -> anyhow::Result<ProviderKind> {
        self.planner()
            .provider(flag)
            .map_err(|e| Failure::usage(e.0))
    }

    /// The launch planner of this config. The local default provider is `nspawn` for root,
    /// `qemu` otherwise; `sim` is never a default.
    pub fn planner(&self) -> Planner<'_> {
        let local_default = if nix_is_root() {
            ProviderKind::Nspawn
        } else {
            ProviderKind::Qemu
        };
        Planner::new(&self.config, local_default)
    }

    /// Why azlin stopped VMs on its own (idle stops).
    pub fn stop_notes(&self) -> azlin_control::StopNotes {
        azlin_control::StopNotes::new(self.paths.state_dir.join("stopped"))
    }

    /// Where caches and artifacts are kept (`azlin cache`, `azlin artifacts`, the services).
    pub fn services_dir(&self) -> PathBuf {
        self.paths.state_dir.join("services")
    }

    /// The cache and artifact services as configured: listening on loopback (`sim` and QEMU
    /// VMs reach it) and on `host.azlin.internal` (nspawn VMs).
    pub fn services_config(&self) -> azlin_services::ServicesConfig {
        const MIB: u64 = 1 << 20;
        let defaults = azlin_services::Limits::default();
        let Config {
            cache, artifacts, ..
        } = &self.config;
        azlin_services::ServicesConfig {
            dir: self.services_dir(),
            limits: azlin_services::Limits {
                cache_bytes: cache
                    .size_limit_mb
                    .map_or(defaults.cache_bytes, |mb| mb.saturating_mul(MIB)),
                artifact_bytes: artifacts
                    .max_size_mb
                    .map_or(defaults.artifact_bytes, |mb| mb.saturating_mul(MIB)),
                artifact_retention: artifacts
                    .retention_days
                    .map_or(defaults.artifact_retention, |days| {
                        Duration::from_secs(days.saturating_mul(24 * 60 * 60))
                    }),
            },
            cache_protocol: cache.protocol,
            addresses: vec![
                std::net::Ipv4Addr::LOCALHOST.into(),
                azlin_providers::network::HOST_ALIAS.into(),
            ],
            port: None,
        }
    }

    /// The state database.
    pub fn state_db(&self) -> PathBuf {
        self.paths.state_dir.join("state.db")
    }

    /// The readable deployment state file.
    pub fn deployment_state(&self) -> PathBuf {
        self.paths.state_dir.join("deployment-state.yaml")
    }

    /// The records of resources azlin could not remove.
    pub fn orphans(&self) -> OrphanStore {
        OrphanStore::in_state_dir(&self.paths.state_dir)
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Field by field, without `..`: a new field cannot be left out (or leak) unnoticed.
        let Settings {
            paths,
            config,
            output,
            nats,
            azure_subscription,
            image_dir,
            mirror,
            sim,
            sim_delete_fail_rate,
            ssh_timeout,
            cloud_init_timeout,
            interactive,
            progress_tty,
            child_env,
        } = self;
        f.debug_struct("Settings")
            .field("paths", paths)
            .field("config", config)
            .field("output", output)
            .field("nats", nats)
            .field("azure_subscription", azure_subscription)
            .field("image_dir", image_dir)
            .field("mirror", mirror)
            .field("sim", sim)
            .field("sim_delete_fail_rate", sim_delete_fail_rate)
            .field("ssh_timeout", ssh_timeout)
            .field("cloud_init_timeout", cloud_init_timeout)
            .field("interactive", interactive)
            .field("progress_tty", progress_tty)
            .field(
                "child_env",
                &child_env.iter().map(|(name, _)| *name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The NATS connection: `--nats` (or `AZLIN_NATS_URL`), else `[nats] url`, else `nats_url`;
/// each `--nats-*` flag wins over its `[nats]` key; a token may come from `AZLIN_NATS_TOKEN`.
fn resolve_nats(
    flag: Option<&NatsUrl>,
    args: &NatsArgs,
    config: &Config,
) -> anyhow::Result<Option<NatsConnection>> {
    let NatsArgs {
        nats_ca,
        nats_cert,
        nats_key,
        nats_tls,
        nats_creds,
        nats_nkey,
        nats_token_file,
        nats_user,
        nats_password_file,
        nats_replicas,
    } = args;
    let url = flag
        .or(config.nats.url.as_ref())
        .or(config.nats_url.as_ref())
        .cloned();
    let Some(url) = url else {
        let given = nats_ca.is_some()
            || nats_cert.is_some()
            || nats_key.is_some()
            || *nats_tls
            || nats_creds.is_some()
            || nats_nkey.is_some()
            || nats_token_file.is_some()
            || nats_user.is_some()
            || nats_password_file.is_some()
            || nats_replicas.is_some();
        if given {
            return Err(Failure::usage(
                "--nats-* connection flags need a NATS server: --nats URL, AZLIN_NATS_URL or \
                 [nats] url in the config",
            ));
        }
        return Ok(None);
    };
    let file = config.nats.clone();
    let merged = NatsConfig {
        url: None,
        replicas: nats_replicas.or(file.replicas),
        ca_file: nats_ca.clone().or(file.ca_file),
        cert_file: nats_cert.clone().or(file.cert_file),
        key_file: nats_key.clone().or(file.key_file),
        tls: if *nats_tls { Some(true) } else { file.tls },
        creds_file: nats_creds.clone().or(file.creds_file),
        nkey_file: nats_nkey.clone().or(file.nkey_file),
        token_file: nats_token_file.clone().or(file.token_file),
        user: nats_user.clone().or(file.user),
        password_file: nats_password_file.clone().or(file.password_file),
    };
    NatsConnection::resolve(NatsInputs {
        url,
        config: merged,
        token: env("AZLIN_NATS_TOKEN").map(Secret::new),
    })
    .map(Some)
    .map_err(|e| Failure::usage(e.to_string()))
}

/// Base images are big and the same for everyone: root (who runs nspawn VMs) keeps them in
/// `/var/cache/azlin/images`, unless `AZLIN_HOME` asks for everything under one folder; other
/// users keep them in their cache dir.
fn default_image_dir(paths: &Paths) -> PathBuf {
    if nix_is_root() && env("AZLIN_HOME").is_none() {
        PathBuf::from(SYSTEM_IMAGE_DIR)
    } else {
        paths.cache_dir.join("images")
    }
}

/// Where root keeps base images by default.
const SYSTEM_IMAGE_DIR: &str = "/var/cache/azlin/images";

pub(crate) fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    })
}

/// The secret held by the file `path` that `origin` (a flag or config key) names, surrounding
/// white space dropped; a usage error when it cannot be read or holds nothing.
pub fn read_secret(origin: &str, path: &std::path::Path) -> anyhow::Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::failure::Failure::usage(format!("{origin}: cannot read {}: {e}", path.display()))
    })?;
    let value = text.trim();
    if value.is_empty() {
        return Err(crate::failure::Failure::usage(format!(
            "{origin}: {} is empty",
            path.display()
        )));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_nats_credentials() {
        let paths = Paths::resolve(&PathInputs {
            azlin_home: Some("/t".into()),
            ..PathInputs::default()
        });
        let settings = Settings {
            config: Config::parse("nats_url = \"nats://cfg-user:cfg-pass@h:4222\"\n")
                .expect("config"),
            output: OutputFormat::Table,
            nats: Some(
                NatsConnection::from_url("nats://flag-user:flag-pass@h:4222").expect("nats"),
            ),
            azure_subscription: None,
            image_dir: paths.cache_dir.join("images"),
            mirror: DEFAULT_MIRROR.into(),
            sim: SimSettings::default(),
            sim_delete_fail_rate: 0.0,
            ssh_timeout: Duration::from_secs(1),
            cloud_init_timeout: Duration::from_secs(1),
            interactive: false,
            progress_tty: false,
            paths,
            child_env: Vec::new(),
        };
        let shown = format!("{settings:?}");
        for secret in ["cfg-pass", "flag-pass"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        // User names are no secret; passwords are.
        assert!(shown.contains("nats://flag-user:***@h:4222"), "{shown}");
    }
}
