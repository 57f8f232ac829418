//! `rapport documents`: register, list and remove the trusted documents of a workspace,
//! the only operations its trusted-documents-only keys run. A production app registers
//! its operations at deploy, from `.graphql` files or an Apollo persisted-query manifest.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Subcommand;

use rapport::domain::trusted_document::{self, NewDocument, MAX_DOCUMENTS};
use rapport::domain::{self, Caller};
use rapport::App;

#[derive(Subcommand)]
pub enum DocumentsCommand {
    /// Register documents and print each one's hash and name, tab-separated. A `.json`
    /// file is read as an Apollo persisted-query manifest (`operations[].body`); any other
    /// file as one GraphQL document, named after the file. Nothing is registered unless
    /// every document parses.
    Register {
        /// The files: `.graphql` documents, or `.json` manifests.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// List the trusted documents of a workspace: hash, name and registration time.
    List {
        #[arg(long, default_value = "default")]
        workspace: String,
    },
    /// Remove a trusted document by its hash; trusted-only keys cannot run it from then on.
    Remove {
        /// The document's hash, as `documents list` shows it.
        hash: String,
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

/// The documents of one file, each with where it came from (for errors).
fn read(path: &Path) -> anyhow::Result<Vec<(String, NewDocument)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let label = path.display().to_string();
    if path.extension().is_some_and(|ext| ext == "json") {
        return manifest(&label, &text);
    }
    let name = path
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned());
    Ok(vec![(label, NewDocument { name, body: text })])
}

/// An Apollo persisted-query manifest: `{"operations": [{"id", "name", "body"}]}`, where
/// each `id` is the SHA-256 of its `body` (what the client will send).
fn manifest(label: &str, text: &str) -> anyhow::Result<Vec<(String, NewDocument)>> {
    #[derive(serde::Deserialize)]
    struct Manifest {
        operations: Vec<Operation>,
    }
    #[derive(serde::Deserialize)]
    struct Operation {
        id: Option<String>,
        name: Option<String>,
        body: String,
    }
    let manifest: Manifest = serde_json::from_str(text).with_context(|| {
        format!("{label} is not a persisted-query manifest (an object with `operations`)")
    })?;
    manifest
        .operations
        .into_iter()
        .enumerate()
        .map(|(index, operation)| {
            let label = format!("{label}: operations[{index}]");
            let hash = trusted_document::hash(&operation.body);
            if let Some(id) = &operation.id {
                if !id.eq_ignore_ascii_case(&hash) {
                    anyhow::bail!(
                        "{label}: `id` {id} is not the SHA-256 of `body` ({hash}): regenerate the manifest with sha256 ids"
                    );
                }
            }
            Ok((
                label,
                NewDocument {
                    name: operation.name,
                    body: operation.body,
                },
            ))
        })
        .collect()
}

/// Runs a `documents` command: one line per document on stdout, tab-separated.
pub async fn run(app: App, command: DocumentsCommand) -> anyhow::Result<()> {
    match command {
        DocumentsCommand::Register { files, workspace } => {
            let mut documents = Vec::new();
            for path in &files {
                documents.extend(read(path)?);
            }
            // Every document is checked before any is stored, across every call below.
            for (label, document) in &documents {
                trusted_document::check(&document.body)
                    .map_err(|reason| anyhow::anyhow!("{label}: the document {reason}"))?;
                // Names too: a bad one found in a later call would leave the earlier
                // calls' documents registered.
                domain::clean_optional(
                    "name",
                    document.name.clone(),
                    trusted_document::MAX_NAME_CHARS,
                )
                .map_err(|err| anyhow::anyhow!("{label}: {err}"))?;
            }
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            let caller = Caller::owner_without_key(workspace.id, "cli");
            for chunk in documents.chunks(MAX_DOCUMENTS) {
                let batch = chunk.iter().map(|(_, document)| document.clone()).collect();
                for stored in trusted_document::register(&app.db, &caller, batch).await? {
                    println!("{}\t{}", stored.hash, stored.name.unwrap_or_default());
                }
            }
        }
        DocumentsCommand::List { workspace } => {
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            let caller = Caller::owner_without_key(workspace.id, "cli");
            let mut after: Option<String> = None;
            loop {
                let page = trusted_document::list(
                    &app.db,
                    &caller,
                    trusted_document::MAX_PAGE,
                    after.as_deref(),
                )
                .await?;
                for document in &page {
                    println!(
                        "{}\t{}\t{}",
                        document.hash,
                        document.name.as_deref().unwrap_or_default(),
                        document.created_at.to_rfc3339()
                    );
                }
                match page.last() {
                    Some(last) if page.len() == trusted_document::MAX_PAGE => {
                        after = Some(last.hash.clone());
                    }
                    _ => break,
                }
            }
        }
        DocumentsCommand::Remove { hash, workspace } => {
            let workspace = domain::workspace::ensure(&app.db, &workspace).await?;
            let caller = Caller::owner_without_key(workspace.id, "cli");
            trusted_document::remove(&app.db, &caller, &hash).await?;
            eprintln!("removed {hash}");
        }
    }
    Ok(())
}
