//! `rapport users`: the people of a workspace (the inbox's agents).

use clap::Subcommand;

use rapport::domain::{self, Role};
use rapport::{ids, App};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Add a user and print its id (usr_…), alone, on stdout.
    Add {
        /// The e-mail address, unique in the workspace (stored lowercased).
        #[arg(long)]
        email: String,
        /// The name shown to the team.
        #[arg(long)]
        name: String,
        /// The user's role: viewer, agent, admin or owner.
        #[arg(long, value_parser = super::keys::parse_role, default_value = "agent")]
        role: Role,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// List the users of a workspace, tab-separated.
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

/// Runs a `users` command: a new id alone on stdout, a listing tab-separated.
pub async fn run(app: App, command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add {
            email,
            name,
            role,
            workspace,
        } => {
            let owner = super::owner_of(&app, &workspace).await?;
            let new = domain::user::NewUser {
                name: &name,
                email: &email,
                role,
            };
            let user = domain::user::create(&app.db, &owner, new).await?;
            println!("{}", ids::encode(user.id));
        }
        UsersCommand::List { workspace } => {
            let owner = super::owner_of(&app, &workspace).await?;
            for user in domain::user::list(&app.db, owner.workspace_id).await? {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    ids::encode(user.id),
                    user.role,
                    user.name,
                    user.email,
                    if user.active { "active" } else { "inactive" }
                );
            }
        }
    }
    Ok(())
}
