//! The `rapport` command: serve the API, migrate, seed demo data, manage keys and sources,
//! sync, reindex, report data quality, benchmark, print the schema. This file parses the
//! command line and dispatches; each command family lives in `cli/`. Results go to stdout
//! (a key, the SDL) so scripts can capture them; logs and progress go to stderr.

mod cli;

use clap::Parser;

use cli::{Cli, Command};
use rapport::App;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.config()?;
    rapport::telemetry::init(config.log_format);
    match cli.command {
        Some(Command::Schema) => {
            cli::schema::print_sdl();
            Ok(())
        }
        Some(Command::Migrate) => cli::schema::migrate(config).await,
        Some(Command::Demo) => cli::demo::run(config).await,
        Some(Command::Keys(command)) => cli::keys::run(App::start(config).await?, command).await,
        Some(Command::Documents(command)) => {
            cli::documents::run(App::start(config).await?, command).await
        }
        Some(Command::Users(command)) => cli::users::run(App::start(config).await?, command).await,
        Some(Command::Import(command)) => {
            cli::import::run(App::start(config).await?, command).await
        }
        Some(Command::Bench(args)) => cli::bench::run(config, args).await,
        Some(Command::Dedupe(args)) if !cli::dedupe::needs_database(&args) => {
            cli::dedupe::evaluate(&args)
        }
        Some(Command::Dedupe(args)) => cli::dedupe::run(App::start(config).await?, args).await,
        Some(Command::Sources(command)) => {
            cli::sources::run(App::start(config).await?, command).await
        }
        Some(Command::Sync {
            source_id,
            workspace,
        }) => cli::sync::run(App::start(config).await?, source_id, &workspace).await,
        Some(Command::Reindex { index }) => {
            cli::reindex::run(App::start(config).await?, index).await
        }
        Some(Command::Quality(args)) => cli::quality::run(App::start(config).await?, args).await,
        Some(Command::Serve(args)) => cli::serve::run(config, &args).await,
        None => cli::serve::run(config, &cli::serve::ServeArgs::default()).await,
    }
}
