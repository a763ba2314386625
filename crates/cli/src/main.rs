//! The `azlin` command: parse, run, exit with the code of the contract.

mod app;
mod args;
mod commands;
mod failure;
mod interrupt;
mod notify;
mod output;
mod progress;
mod settings;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `azlin --version` is what scripts call to check for azlin: answer it before building the
    // whole command tree (clap prints the same line; a test keeps them equal).
    if let Some(line) = args::version_request(std::env::args_os()) {
        println!("{line}");
        return ExitCode::SUCCESS;
    }
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; every other parse failure is a usage error (64).
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(azlin_core::ExitCode::Usage.code()),
            };
        }
    };
    init_logging(cli.global.verbose);
    let code = match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("azlin: {error:#}");
            failure::exit_code(&error)
        }
    };
    ExitCode::from(code.code())
}

fn run(cli: args::Cli) -> anyhow::Result<azlin_core::ExitCode> {
    let settings = settings::Settings::resolve(&cli.global)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let app = app::App::new(settings);
        commands::dispatch(&app, &cli.command).await
    })
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("AZLIN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
