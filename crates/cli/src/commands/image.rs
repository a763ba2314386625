//! `azlin image build|list`: local base images.

use crate::app::App;
use crate::args::{ImageAction, ImageArgs, ImageBuildArgs, OutputFormat};
use crate::failure::Failure;
use crate::output;
use crate::progress::Progress;
use azlin_core::{ExitCode, ImageProfile};
use azlin_providers::image::Flavour;

/// Runs `azlin image …`.
pub async fn run(app: &App, args: &ImageArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        ImageAction::Build(build) => build_image(app, build).await,
        ImageAction::List => list(app),
    }
}

async fn build_image(app: &App, args: &ImageBuildArgs) -> anyhow::Result<ExitCode> {
    let ImageBuildArgs { provider, profile } = args;
    let kind = app.settings.provider(provider.as_deref())?;
    let Some(flavour) = Flavour::for_provider(kind) else {
        return Err(Failure::usage(format!(
            "the {kind} provider uses no local base image"
        )));
    };
    let profile: ImageProfile = profile
        .parse()
        .map_err(|e| Failure::usage(format!("{e}")))?;
    let images = app.providers.images();
    let progress = Progress::new(app.settings.progress_tty);
    let stage = progress.stage(format!("Base image '{profile}' for {kind}"));
    let (image, cached) = match images.locate_flavour(flavour, profile) {
        Some(image) => {
            stage.done(&format!(
                "cached at {} (recipe {})",
                image.dir.display(),
                image.digest
            ));
            (image, true)
        }
        None => match images
            .ensure_flavour(flavour, profile, &mut |line: &str| stage.update(line))
            .await
        {
            Ok(image) => {
                stage.done(&format!("built {}", image.dir.display()));
                (image, false)
            }
            Err(e) => {
                stage.fail(&e.message);
                return Err(e.into());
            }
        },
    };
    if app.settings.output == OutputFormat::Json {
        println!(
            "{}",
            serde_json::json!({
                "profile": profile,
                "provider": kind,
                "digest": image.digest,
                "dir": image.dir,
                "cached": cached,
            })
        );
    }
    Ok(ExitCode::Ok)
}

fn list(app: &App) -> anyhow::Result<ExitCode> {
    let images = app.providers.images();
    let rows: Vec<(Flavour, ImageProfile, Option<String>)> = Flavour::ALL
        .into_iter()
        .flat_map(|f| ImageProfile::ALL.into_iter().map(move |p| (f, p)))
        .map(|(f, p)| {
            let built = images
                .locate_flavour(f, p)
                .map(|i| i.dir.display().to_string());
            (f, p, built)
        })
        .collect();
    if app.settings.output == OutputFormat::Json {
        let list: Vec<_> = rows
            .iter()
            .map(|(f, p, dir)| {
                serde_json::json!({
                    "profile": p,
                    "provider": f.provider(),
                    "built": dir.is_some(),
                    "dir": images.flavour_path_for(*f, *p),
                })
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
    } else {
        output::table(
            &["PROFILE", "PROVIDER", "IMAGE"],
            rows.into_iter().map(|(f, p, dir)| {
                vec![
                    p.to_string(),
                    f.provider().to_string(),
                    dir.unwrap_or_else(|| {
                        format!("not built (azlin image build --provider {})", f.provider())
                    }),
                ]
            }),
        );
    }
    Ok(ExitCode::Ok)
}
