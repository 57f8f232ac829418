//! Trusted documents: the operations a workspace registered for its trusted-only keys.
//! The rules and SQL live in `domain::trusted_document`; `/graphql` enforces them.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use super::{app, caller};
use crate::domain::trusted_document::{self, NewDocument};
use entity::trusted_document::Model;

/// A GraphQL document registered ahead of time: keys created trusted-documents-only run
/// only these, by hash (`extensions.persistedQuery.sha256Hash`) or by their exact text.
pub struct TrustedDocument(pub Model);

/// A GraphQL document registered ahead of time: keys created trusted-documents-only run
/// only these, by hash (`extensions.persistedQuery.sha256Hash`) or by their exact text.
#[Object]
impl TrustedDocument {
    /// The lowercase hex SHA-256 of `query`: what a request sends as
    /// `extensions.persistedQuery.sha256Hash`.
    async fn hash(&self) -> &str {
        &self.0.hash
    }
    /// The name it was first registered with (the operation's or the file's), if any.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    /// The document's exact text.
    async fn query(&self) -> &str {
        &self.0.body
    }
    /// When it was first registered.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// One document to register.
#[derive(InputObject)]
pub struct TrustedDocumentInput {
    /// A name to recognise it by (at most 200 characters).
    pub name: Option<String>,
    /// The document's exact text (at most 64 KiB), with at least one operation: its
    /// SHA-256 is computed over these bytes as sent.
    pub query: String,
}

/// Documents to register as trusted.
#[derive(InputObject)]
pub struct RegisterTrustedDocumentsInput {
    /// The documents, at most 100 a call; each must parse.
    pub documents: Vec<TrustedDocumentInput>,
}

/// The documents registered, in the order given.
#[derive(SimpleObject)]
pub struct RegisterTrustedDocumentsPayload {
    /// Each document as stored (a text already registered keeps its first name).
    pub documents: Vec<TrustedDocument>,
}

/// The trusted document to remove.
#[derive(InputObject)]
pub struct RemoveTrustedDocumentInput {
    /// The document's hash, as `trustedDocuments` lists it.
    pub hash: String,
}

/// What `removeTrustedDocument` removed.
#[derive(SimpleObject)]
pub struct RemoveTrustedDocumentPayload {
    /// The hash of the removed document.
    pub hash: String,
}

pub(super) async fn trusted_documents(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Vec<TrustedDocument>> {
    let first = usize::try_from(first.unwrap_or(100))
        .map_err(|_| crate::error::Error::field("first", "`first` must not be negative"))?;
    let documents =
        trusted_document::list(&app(ctx).db, caller(ctx)?, first, after.as_deref()).await?;
    Ok(super::charged(ctx, documents)?
        .into_iter()
        .map(TrustedDocument)
        .collect())
}

pub(super) async fn register_trusted_documents(
    ctx: &Context<'_>,
    input: RegisterTrustedDocumentsInput,
) -> Result<RegisterTrustedDocumentsPayload> {
    let documents = input
        .documents
        .into_iter()
        .map(|document| NewDocument {
            name: document.name,
            body: document.query,
        })
        .collect();
    let documents = trusted_document::register(&app(ctx).db, caller(ctx)?, documents).await?;
    Ok(RegisterTrustedDocumentsPayload {
        documents: documents.into_iter().map(TrustedDocument).collect(),
    })
}

pub(super) async fn remove_trusted_document(
    ctx: &Context<'_>,
    input: RemoveTrustedDocumentInput,
) -> Result<RemoveTrustedDocumentPayload> {
    trusted_document::remove(&app(ctx).db, caller(ctx)?, &input.hash).await?;
    Ok(RemoveTrustedDocumentPayload {
        hash: input.hash.to_ascii_lowercase(),
    })
}
