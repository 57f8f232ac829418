//! `rapport serve` (the default command): the start-up itself is [`rapport::server`];
//! this prints what `--demo` set up.

use std::net::SocketAddr;

use clap::Args;

use rapport::config::Config;
use rapport::server::{self, Server};

#[derive(Args, Default)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RAPPORT_ADDR")]
    pub addr: Option<SocketAddr>,
    /// Seed the `default` workspace with demo data if it is empty and print an admin key.
    #[arg(long)]
    pub demo: bool,
}

/// Serves until Ctrl-C or SIGTERM. `config.addr` already holds `--addr`.
pub async fn run(config: Config, args: &ServeArgs) -> anyhow::Result<()> {
    let options = server::Options { demo: args.demo };
    let mut server = Server::start(config, options).await?;
    if let Some(demo) = server.take_demo() {
        let local = server.local_addr();
        super::demo::print_seeded(&demo.seeded);
        eprintln!("Rapport demo is ready.\n  GraphiQL: http://{local}/graphql");
        eprintln!("  Demo feed source: http://{local}/demo/feed.xml, synced every minute");
        super::demo::print_webhook(&format!("http://{local}"), demo.webhook.as_ref());
        eprintln!("  Admin API key (shown once):");
        println!("{}", demo.seeded.key);
    }
    server.run(server::shutdown_signal()).await
}
