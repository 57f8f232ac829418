//! `rapport sources`: add, list and remove the sources (connector instances) of a
//! workspace.

use clap::Subcommand;

use rapport::domain;
use rapport::{ids, App};

use super::owner_of;

#[derive(Subcommand)]
pub enum SourcesCommand {
    /// Add a source and print its id, alone, on stdout.
    Add {
        /// The channel: rss, mastodon, email or webhook.
        #[arg(long)]
        channel: String,
        /// A name unique in the workspace.
        #[arg(long)]
        name: String,
        /// The channel's settings as JSON, e.g. '{"url": "https://…/feed.xml"}' for rss,
        /// '{"secret": "whsec_…"}' for a webhook (README lists every channel's settings).
        #[arg(long)]
        config: String,
        /// Seconds between two pulls (30 to 86400; default 300).
        #[arg(long)]
        schedule: Option<i32>,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// List the sources of a workspace: id, channel, name, status, items ingested (never secrets).
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Remove a source by its id (src_…); what it ingested stays.
    Remove {
        id: String,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

/// Runs a `sources` command as the owner of the workspace: a new source's id alone on
/// stdout, a listing tab-separated; a bad setting names its flag (`--config`, …).
pub async fn run(app: App, command: SourcesCommand) -> anyhow::Result<()> {
    match command {
        SourcesCommand::Add {
            channel,
            name,
            config,
            schedule,
            workspace,
        } => {
            let channel = connectors::Channel::parse(&channel).ok_or_else(|| {
                anyhow::anyhow!(
                    "--channel: `{channel}` is not a channel (webhook, rss, mastodon, email, …)"
                )
            })?;
            let config: serde_json::Value = serde_json::from_str(&config)
                .map_err(|err| anyhow::anyhow!("--config: not valid JSON: {err}"))?;
            let caller = owner_of(&app, &workspace).await?;
            let new = domain::source::NewSource {
                channel,
                name,
                config,
                schedule_secs: schedule,
            };
            let source = domain::source::create(&app.db, &caller, new)
                .await
                .map_err(|err| match &err {
                    rapport::Error::BadInput {
                        field: Some(field), ..
                    } => anyhow::anyhow!("--{}: {err}", field.split('.').next().unwrap_or(field)),
                    _ => anyhow::anyhow!("{err}"),
                })?;
            println!("{}", ids::encode(source.id));
        }
        SourcesCommand::List { workspace } => {
            let caller = owner_of(&app, &workspace).await?;
            for source in domain::source::list(&app.db, &caller).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    ids::encode(source.id),
                    source.channel,
                    source.name,
                    source.status,
                    source.items_ingested
                );
            }
        }
        SourcesCommand::Remove { id, workspace } => {
            let source = ids::decode::<entity::SourceId>("id", &id)?;
            let caller = owner_of(&app, &workspace).await?;
            rapport::ingest::unlisten::delete(&app, &caller, source).await?;
            eprintln!("removed {id}");
        }
    }
    Ok(())
}
