//! Launch planning: what a user asked for (flags), a template and the config, turned into
//! validated [`VmSpec`]s, one per VM. `azlin new`, `azlin run`'s session VMs and the warm pools
//! all plan here, so a VM means the same thing whichever command makes it. Everything a user can
//! get wrong is refused here, before anything is made.

use crate::store::POOL_TAG;
use azlin_core::config::{Config, PoolConfig};
use azlin_core::{ImageProfile, ProviderKind, Region, RepoUrl, Size, VmName, VmSpec};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The largest fleet one command launches.
pub const MAX_COUNT: usize = 1000;

/// A launch request that cannot be planned (always the user's input: exit 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// What the user asked for; `None` and empty fields take the template's or the config's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchOptions {
    /// Provider name.
    pub provider: Option<String>,
    /// VM name (the fleet's base name with `count` > 1); generated when absent.
    pub name: Option<String>,
    /// Repositories to clone (in addition to the template's and the config's).
    pub repos: Vec<String>,
    /// Size.
    pub size: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Resource group (Azure).
    pub resource_group: Option<String>,
    /// Image profile.
    pub image: Option<String>,
    /// Template name.
    pub template: Option<String>,
    /// A cloud-config file merged into the generated one.
    pub cloud_init: Option<PathBuf>,
    /// PEM files of CA certificates the VM trusts (in addition to the config's).
    pub ca_certs: Vec<PathBuf>,
    /// `K=V` tags.
    pub tags: Vec<String>,
    /// How many VMs.
    pub count: usize,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        LaunchOptions {
            provider: None,
            name: None,
            repos: Vec::new(),
            size: None,
            region: None,
            resource_group: None,
            image: None,
            template: None,
            cloud_init: None,
            ca_certs: Vec::new(),
            tags: Vec::new(),
            count: 1,
        }
    }
}

/// Plans launches against one config.
#[derive(Debug, Clone)]
pub struct Planner<'a> {
    config: &'a Config,
    local_default: ProviderKind,
}

fn usage(message: impl Into<String>) -> PlanError {
    PlanError(message.into())
}

fn read_file(path: &std::path::Path, what: &str) -> Result<String, PlanError> {
    std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {what} {}: {e}", path.display())))
}

impl<'a> Planner<'a> {
    /// Plans with `config`; `local_default` is the provider when neither flag, template nor
    /// config names one.
    pub fn new(config: &'a Config, local_default: ProviderKind) -> Self {
        Planner {
            config,
            local_default,
        }
    }

    /// The provider named by `name`, else the config's, else the local default.
    pub fn provider(&self, name: Option<&str>) -> Result<ProviderKind, PlanError> {
        match name.or(self.config.provider.as_deref()) {
            Some(name) => name.parse().map_err(|e| usage(format!("{e}"))),
            None => Ok(self.local_default),
        }
    }

    /// The specs of the VMs `options` asks for (one, or a fleet of `count`).
    pub fn plan(&self, options: &LaunchOptions) -> Result<Vec<VmSpec>, PlanError> {
        let config = self.config;
        let template = match &options.template {
            Some(t) => Some(config.templates.get(t).ok_or_else(|| {
                let known: Vec<&str> = config.templates.keys().map(String::as_str).collect();
                usage(format!(
                    "unknown template '{t}' (known: {})",
                    known.join(", ")
                ))
            })?),
            None => None,
        };
        let provider = self.provider(
            options
                .provider
                .as_deref()
                .or(template.and_then(|t| t.provider.as_deref())),
        )?;
        let size = options
            .size
            .clone()
            .or_else(|| template.and_then(|t| t.size.clone()))
            .or_else(|| config.size.clone())
            .unwrap_or_else(|| Size::DEFAULT.to_string());
        Size::lookup(&size).map_err(|e| usage(e.to_string()))?;
        let default_region = if provider == ProviderKind::Azure {
            Region::DEFAULT_AZURE
        } else {
            Region::LOCAL
        };
        let region = options
            .region
            .clone()
            .or_else(|| template.and_then(|t| t.region.clone()))
            .or_else(|| config.region.clone())
            .unwrap_or_else(|| default_region.to_string());
        Region::parse(&region).map_err(|e| usage(e.to_string()))?;
        let image: ImageProfile = options
            .image
            .as_deref()
            .or(template.and_then(|t| t.image.as_deref()))
            .or(config.image.as_deref())
            .map(str::parse)
            .transpose()
            .map_err(|e| usage(format!("{e}")))?
            .unwrap_or_default();
        let mut repos: Vec<RepoUrl> = Vec::new();
        for raw in &options.repos {
            repos.push(RepoUrl::parse(raw).map_err(|e| usage(e.to_string()))?);
        }
        for repo in template
            .map(|t| t.repos.as_slice())
            .unwrap_or_default()
            .iter()
            .chain(&config.repos)
        {
            if !repos.contains(repo) {
                repos.push(repo.clone());
            }
        }
        let cloud_init = match options
            .cloud_init
            .as_ref()
            .or(template.and_then(|t| t.cloud_init.as_ref()))
        {
            Some(path) => {
                let text = read_file(path, "cloud-init file")?;
                azlin_core::cloudinit::check_user_config(&text)
                    .map_err(|e| usage(format!("{}: {e}", path.display())))?;
                Some(text)
            }
            None => None,
        };
        let mut ca_certs = Vec::new();
        for path in options.ca_certs.iter().chain(&config.ca_certs) {
            let pem = read_file(path, "CA certificate")?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                return Err(usage(format!(
                    "{} is not a PEM certificate",
                    path.display()
                )));
            }
            ca_certs.push(pem);
        }
        let mut tags: BTreeMap<String, String> =
            template.map(|t| t.tags.clone()).unwrap_or_default();
        for tag in &options.tags {
            match tag.split_once('=') {
                Some((k, v)) if !k.is_empty() => {
                    tags.insert(k.to_string(), v.to_string());
                }
                _ => return Err(usage(format!("tag '{tag}' is not K=V"))),
            }
        }
        let count = options.count;
        if count == 0 || count > MAX_COUNT {
            return Err(usage(format!("--count must be between 1 and {MAX_COUNT}")));
        }
        let base = match &options.name {
            Some(n) => VmName::parse(n),
            None => VmName::parse(&format!("azlin-{}", azlin_core::compact_timestamp())),
        }
        .map_err(|e| usage(e.to_string()))?;
        let names: Vec<VmName> = if count == 1 {
            vec![base]
        } else {
            (1..=count)
                .map(|i| base.fleet_member(i).map_err(|e| usage(e.to_string())))
                .collect::<Result<_, _>>()?
        };
        let resource_group = options
            .resource_group
            .clone()
            .or_else(|| config.resource_group.clone())
            .unwrap_or_else(|| "azlin".into());
        Ok(names
            .into_iter()
            .map(|name| VmSpec {
                name,
                provider,
                size: size.clone(),
                region: region.clone(),
                resource_group: resource_group.clone(),
                image,
                repos: repos.clone(),
                cloud_init: cloud_init.clone(),
                ca_certs: ca_certs.clone(),
                tags: tags.clone(),
                clone_of: None,
            })
            .collect())
    }

    /// The configured pool `name`, or a usage error naming the known ones.
    pub fn pool(&self, name: &str) -> Result<&'a PoolConfig, PlanError> {
        self.config.pool.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.config.pool.keys().map(String::as_str).collect();
            usage(if known.is_empty() {
                format!("unknown pool '{name}': no [pool.NAME] is configured")
            } else {
                format!("unknown pool '{name}' (known: {})", known.join(", "))
            })
        })
    }

    /// The spec of a new VM for pool `name`: the pool's provider, image and size over the
    /// config's defaults, a fresh name `pool-NAME-XXXXXXXX`, and the pool's tag.
    pub fn pool_vm(&self, name: &str) -> Result<VmSpec, PlanError> {
        let pool = self.pool(name)?;
        check_pool_name(name)?;
        let vm_name = format!("pool-{name}-{}", &azlin_core::new_id()[..8]);
        let mut spec = self
            .plan(&LaunchOptions {
                provider: pool.provider.clone(),
                name: Some(vm_name),
                size: pool.size.clone(),
                image: pool.image.clone(),
                ..LaunchOptions::default()
            })?
            .remove(0);
        spec.tags.insert(POOL_TAG.to_string(), name.to_string());
        Ok(spec)
    }

    /// Checks every configured pool: its name, its settings, and that its VMs can be planned.
    pub fn check_pools(&self) -> Result<(), PlanError> {
        for (name, pool) in &self.config.pool {
            self.pool_vm(name)?;
            if pool.max.is_some_and(|max| max < pool.min_ready) {
                return Err(usage(format!(
                    "[pool.{name}]: max ({}) is below min_ready ({})",
                    pool.max.unwrap_or_default(),
                    pool.min_ready
                )));
            }
        }
        Ok(())
    }
}

/// Pool names go into VM names: `[a-z][a-z0-9-]{0,31}`.
fn check_pool_name(name: &str) -> Result<(), PlanError> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.len() <= 32;
    if valid {
        Ok(())
    } else {
        Err(usage(format!(
            "pool name '{name}' must be a lowercase letter followed by up to 31 lowercase \
             letters, digits or '-'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text).expect("config")
    }

    #[test]
    fn a_pool_vm_takes_the_pools_settings_and_tag() {
        let config = config(
            "size = \"Standard_B1s\"\n[pool.ci]\nprovider = \"sim\"\nsize = \"Standard_B2ms\"\nmin_ready = 2\nlabels = [\"self-hosted\"]\n",
        );
        let planner = Planner::new(&config, ProviderKind::Nspawn);
        let spec = planner.pool_vm("ci").expect("spec");
        assert_eq!(spec.provider, ProviderKind::Sim);
        assert_eq!(spec.size, "Standard_B2ms");
        assert!(spec.name.as_str().starts_with("pool-ci-"), "{}", spec.name);
        assert_eq!(spec.tags.get(POOL_TAG).map(String::as_str), Some("ci"));
        assert_ne!(planner.pool_vm("ci").expect("spec").name, spec.name);
        planner.check_pools().expect("valid pools");
    }

    #[test]
    fn unknown_pools_and_bad_settings_are_refused() {
        let config = config("[pool.ci]\nmin_ready = 3\nmax = 2\n[pool.Bad]\n");
        let planner = Planner::new(&config, ProviderKind::Sim);
        let err = planner.pool_vm("nope").expect_err("unknown");
        assert_eq!(err.0, "unknown pool 'nope' (known: Bad, ci)");
        assert!(
            planner
                .pool_vm("Bad")
                .expect_err("bad name")
                .0
                .contains("lowercase")
        );
        let only_ci = Config::parse("[pool.ci]\nmin_ready = 3\nmax = 2\n").expect("config");
        let err = Planner::new(&only_ci, ProviderKind::Sim)
            .check_pools()
            .expect_err("max below min_ready");
        assert!(err.0.contains("max (2) is below min_ready (3)"), "{err}");
    }

    #[test]
    fn flags_win_over_template_and_config() {
        let config = config(
            "size = \"Standard_B1s\"\nregion = \"local\"\n[templates.big]\nsize = \"Standard_D4s_v5\"\ntags = { team = \"a\" }\n",
        );
        let planner = Planner::new(&config, ProviderKind::Sim);
        let specs = planner
            .plan(&LaunchOptions {
                name: Some("web".into()),
                template: Some("big".into()),
                tags: vec!["team=b".into()],
                count: 2,
                ..LaunchOptions::default()
            })
            .expect("plan");
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[1].name.as_str(), "web-2");
        assert_eq!(specs[0].size, "Standard_D4s_v5");
        assert_eq!(specs[0].tags.get("team").map(String::as_str), Some("b"));
        let err = planner
            .plan(&LaunchOptions {
                count: 0,
                ..LaunchOptions::default()
            })
            .expect_err("count 0");
        assert!(err.0.contains("--count"), "{err}");
    }
}
