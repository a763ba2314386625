//! `azlin cache list|delete` and `azlin artifacts list|download`: what workflow jobs saved in
//! the cache and artifact services, read from their store.

use crate::app::App;
use crate::args::{ArtifactsAction, ArtifactsArgs, CacheAction, CacheArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;
use azlin_core::ExitCode;
use azlin_services::Store;

/// The store, or `None` when no run has used the services yet (nothing is created to list).
fn open_store(app: &App) -> anyhow::Result<Option<Store>> {
    let dir = app.settings.services_dir();
    if !dir.join("index.sqlite").exists() {
        return Ok(None);
    }
    Ok(Some(Store::open(&dir)?))
}

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn local_time(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| {
            t.to_zoned(jiff::tz::TimeZone::system())
                .strftime("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default()
}

/// Runs `azlin cache …`.
pub fn cache(app: &App, args: &CacheArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(app)?;
    let json = app.settings.output == OutputFormat::Json;
    match &args.action {
        CacheAction::List { repository } => {
            let caches = match &store {
                Some(store) => store.caches(repository.as_deref())?,
                None => Vec::new(),
            };
            if json {
                println!("{}", serde_json::to_string(&caches)?);
            } else {
                output::table(
                    &["REPOSITORY", "REF", "KEY", "SIZE", "CREATED", "LAST USED"],
                    caches.iter().map(|c| {
                        vec![
                            c.repository.clone(),
                            c.git_ref.clone(),
                            c.key.clone(),
                            megabytes(c.size),
                            local_time(c.created_at),
                            local_time(c.last_used),
                        ]
                    }),
                );
            }
            Ok(ExitCode::Ok)
        }
        CacheAction::Delete { key, repository } => {
            let deleted = match &store {
                Some(store) => store.delete_caches(repository.as_deref(), key)?,
                None => Vec::new(),
            };
            if deleted.is_empty() {
                return Err(Failure::usage(format!("no cache with key '{key}'")));
            }
            if json {
                println!("{}", serde_json::to_string(&deleted)?);
            } else {
                for c in &deleted {
                    println!(
                        "deleted cache '{}' of {} on {}",
                        c.key, c.repository, c.git_ref
                    );
                }
            }
            Ok(ExitCode::Ok)
        }
    }
}

/// Runs `azlin artifacts …`.
pub fn artifacts(app: &App, args: &ArtifactsArgs) -> anyhow::Result<ExitCode> {
    let store = open_store(app)?;
    let json = app.settings.output == OutputFormat::Json;
    let (ArtifactsAction::List { run } | ArtifactsAction::Download { run, .. }) = &args.action;
    let all = match &store {
        Some(store) => store.artifacts(None, run)?,
        None => Vec::new(),
    };
    match &args.action {
        ArtifactsAction::List { .. } => {
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                output::table(
                    &["NAME", "REPOSITORY", "SIZE", "CREATED", "EXPIRES"],
                    all.iter().map(|a| {
                        vec![
                            a.name.clone(),
                            a.repository.clone(),
                            megabytes(a.size),
                            local_time(a.created_at),
                            local_time(a.expires_at),
                        ]
                    }),
                );
            }
            Ok(ExitCode::Ok)
        }
        ArtifactsAction::Download { name, dir, .. } => {
            let chosen: Vec<_> = all
                .iter()
                .filter(|a| name.as_ref().is_none_or(|n| &a.name == n))
                .collect();
            let (Some(store), false) = (&store, chosen.is_empty()) else {
                return Err(Failure::usage(match name {
                    Some(name) => format!("run {run} has no artifact '{name}'"),
                    None => format!("run {run} has no artifacts"),
                }));
            };
            let mut downloaded = Vec::new();
            for artifact in chosen {
                // One artifact asked for by name goes into the folder itself, several into a
                // folder each (as download-artifact does).
                let target = match name {
                    Some(_) => dir.clone(),
                    None => dir.join(&artifact.name),
                };
                let files = azlin_services::extract(store, artifact, &target)?;
                if !json {
                    println!(
                        "{}: {} files, {} → {}",
                        artifact.name,
                        files.len(),
                        megabytes(artifact.size),
                        target.display()
                    );
                }
                downloaded.push(serde_json::json!({
                    "name": artifact.name,
                    "dir": target,
                    "files": files,
                    "size": artifact.size,
                }));
            }
            if json {
                println!("{}", serde_json::to_string(&downloaded)?);
            }
            Ok(ExitCode::Ok)
        }
    }
}
