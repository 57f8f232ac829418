//! `rapport schema` and `rapport migrate`: the schema of the API and of the database.

use rapport::config::Config;
use rapport::App;

/// Prints the GraphQL schema (SDL) on stdout.
pub fn print_sdl() {
    print!("{}", rapport::graphql::sdl());
}

/// Applies pending migrations ([`App::start`] does) and exits.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    App::start(config).await?;
    eprintln!("migrations applied");
    Ok(())
}
