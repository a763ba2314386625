//! One module per command; [`dispatch`] routes a parsed command line to it.

pub mod artifacts;
pub mod cleanup;
pub mod connect;
pub mod cp;
pub mod editor;
pub mod events;
pub mod fleet;
pub mod gui;
pub mod idle;
pub mod image;
pub mod keys;
pub mod new;
pub mod pool;
pub mod prerequisites;
pub mod repos;
pub mod run;
pub mod serve;
pub mod snapshot;
pub mod tunnel;
pub mod vms;
pub mod worker;

use crate::app::App;
use crate::args::{Cli, Command};
use azlin_core::ExitCode;
use clap::CommandFactory;

/// Runs the command of `cli` in `app`.
pub async fn dispatch(app: &App, command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Doctor(args) => prerequisites::doctor(app, args),
        Command::New(args) => new::run(app, args).await,
        Command::List(args) => vms::list(app, args).await,
        Command::Status(args) => vms::status(app, args).await,
        Command::Start(args) => vms::start(app, args).await,
        Command::Stop(args) => vms::stop(app, args).await,
        Command::Delete(args) => vms::delete(app, args).await,
        Command::Connect(args) => connect::run(app, args).await,
        Command::Image(args) => image::run(app, args).await,
        Command::Pool(args) => pool::run(app, args).await,
        Command::Snapshot(args) => snapshot::run(app, args).await,
        Command::Clone(args) => snapshot::clone(app, args).await,
        Command::Cp(args) => cp::run(app, args).await,
        Command::Tunnel(args) => tunnel::run(app, args).await,
        Command::SshConfig => editor::ssh_config(app).await,
        Command::Keys(args) => keys::run(app, args).await,
        Command::Cleanup(args) => cleanup::run(app, args).await,
        Command::Code(args) => editor::code(app, args).await,
        Command::Fleet(args) => fleet::fleet(app, args).await,
        Command::Health(args) => fleet::health(app, args).await,
        Command::Logs(args) => fleet::logs(app, args).await,
        Command::Cache(args) => artifacts::cache(app, args),
        Command::Artifacts(args) => artifacts::artifacts(app, args),
        Command::Run(args) => run::run(app, args).await,
        Command::Completions(args) => {
            clap_complete::generate(
                args.shell,
                &mut Cli::command(),
                "azlin",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::Ok)
        }
        Command::Worker(args) => worker::run(app, args).await,
        Command::Serve(args) => serve::run(app, args).await,
        Command::Events(args) => events::run(app, args).await,
        Command::Gui(args) => gui::run(app, args).await,
    }
}
