//! `rapport keys`: create, list and revoke the API keys of a workspace.

use clap::Subcommand;

use rapport::domain::{self, Role};
use rapport::{ids, App};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it, alone, on stdout. It is shown only this once.
    Create {
        /// What the key may do: viewer (read), agent (work customers, conversations and notes), admin (also delete, keys, sources), owner.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
        /// A name to recognise the key by (shown as the author of its notes).
        #[arg(long, default_value = "cli")]
        name: String,
        /// The user (usr_…, of the same workspace) the key belongs to: "me" in the inbox.
        #[arg(long)]
        user: Option<String>,
        /// The key runs only the workspace's trusted documents (`rapport documents
        /// register`): for a production app, whose key ships inside it.
        #[arg(long)]
        trusted_documents_only: bool,
    },
    /// List the keys of a workspace (never the secrets).
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Revoke a key by its id (key_…); requests with it fail from then on.
    Revoke {
        /// The key's id (key_…), as `keys list` shows it.
        id: String,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

pub(crate) fn parse_role(text: &str) -> Result<Role, String> {
    Role::parse(&text.to_ascii_lowercase())
        .ok_or_else(|| format!("`{text}` is not a role: use viewer, agent, admin or owner"))
}

/// Runs a `keys` command: a new key alone on stdout, a listing tab-separated.
pub async fn run(app: App, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            role,
            workspace,
            name,
            user,
            trusted_documents_only,
        } => {
            let user = user
                .map(|user| ids::decode::<entity::UserId>("user", &user))
                .transpose()?;
            let slug = workspace;
            let workspace = domain::workspace::ensure(&app.db, &slug).await?;
            let (_, key) =
                domain::workspace::create_key_with(
                    &app.db,
                    workspace.id,
                    role,
                    &name,
                    user,
                    trusted_documents_only,
                )
                .await
                    .map_err(|err| match err {
                        rapport::Error::NotFound { .. } => anyhow::anyhow!(
                            "the workspace `{slug}` has no user {}: give a user of the same workspace (`rapport users list --workspace {slug}`)",
                            user.map(ids::encode).unwrap_or_default()
                        ),
                        other => other.into(),
                    })?;
            println!("{key}");
        }
        KeysCommand::List { workspace } => {
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            for key in domain::workspace::list_keys(&app.db, workspace.id).await? {
                let state = key.revoked_at.map_or("active".to_owned(), |at| {
                    format!("revoked {}", at.to_rfc3339())
                });
                let documents = if key.trusted_documents_only {
                    "trusted-documents-only"
                } else {
                    "any-document"
                };
                println!(
                    "{}\t{}\t{}\t{}…\t{}\t{}",
                    ids::encode(key.id),
                    key.role,
                    key.name,
                    key.prefix,
                    state,
                    documents
                );
            }
        }
        KeysCommand::Revoke { id, workspace } => {
            let key = ids::decode::<entity::ApiKeyId>("id", &id)?;
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            domain::workspace::revoke_key(&app.db, workspace.id, key).await?;
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
