//! Trusted documents: the GraphQL documents a workspace registers ahead of time (a
//! production app's operations, at deploy), each under the SHA-256 of its exact text. A
//! key created trusted-documents-only runs nothing else: a request names a registered
//! document by its hash (the persisted-query shape) or sends a text whose hash is
//! registered. The key of an app ships in every copy of the app, so whoever extracts it
//! can still run only what the app runs.
//!
//! Registering, listing and removing are the admin role's, like the keys themselves. The
//! same text registered twice is the same document (the primary key decides); its first
//! name stays.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use sha2::{Digest, Sha256};

use super::{Caller, Role};
use crate::error::{Error, Result};
use entity::trusted_document::{self, Column, Entity, Model};
use entity::WorkspaceId;

/// Documents one call registers at most.
pub const MAX_DOCUMENTS: usize = 100;
/// Bytes of one document's text at most.
pub const MAX_BYTES: usize = 64 * 1024;
/// Characters of a document's name at most.
pub const MAX_NAME_CHARS: usize = 200;
/// Documents one page of a listing holds at most.
pub const MAX_PAGE: usize = 500;

/// The lowercase hex SHA-256 of `text`, as Apollo's persisted-query link and manifest
/// generator compute it: of the exact bytes, nothing normalised.
pub fn hash(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Whether `text` reads as a [`hash`]: 64 hex digits, either case.
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// `text` as a stored hash (64 hex digits, lowercased), or `BAD_USER_INPUT` on `field`: what
/// a caller gives as a hash reaches no statement unchecked (PostgreSQL refuses a NUL in
/// text, which would read as an internal error).
fn hash_of(field: &str, text: &str) -> Result<String> {
    if is_hash(text) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(Error::field(
            field,
            "not a trusted document's hash (64 hex digits, the SHA-256 of its text)",
        ))
    }
}

/// A document to register.
#[derive(Clone, Debug)]
pub struct NewDocument {
    pub name: Option<String>,
    pub body: String,
}

/// Why `body` cannot be a trusted document, if it cannot: longer than [`MAX_BYTES`],
/// not a GraphQL document, or without an operation. Completes "document i …".
pub fn check(body: &str) -> Result<(), String> {
    if body.len() > MAX_BYTES {
        return Err(format!("is longer than {MAX_BYTES} bytes: split it"));
    }
    let document = async_graphql::parser::parse_query(body).map_err(|err| {
        let err = err.to_string();
        let line = err.lines().next().unwrap_or_default().to_owned();
        format!("is not a GraphQL document: {line}")
    })?;
    if document.operations.iter().next().is_none() {
        return Err("has no operation (only fragments): nothing could run it".to_owned());
    }
    Ok(())
}

/// Registers `documents` in the caller's workspace (admin role) and returns them in the
/// order given, as stored: a text already registered keeps its first name. Every
/// document is checked before any is stored, so a bad one registers none.
pub async fn register(
    db: &impl ConnectionTrait,
    caller: &Caller,
    documents: Vec<NewDocument>,
) -> Result<Vec<Model>> {
    caller.require(Role::Admin, "registering trusted documents")?;
    unrestricted(caller, "register")?;
    if documents.is_empty() {
        return Err(Error::field("documents", "give at least one document"));
    }
    if documents.len() > MAX_DOCUMENTS {
        return Err(Error::field(
            "documents",
            format!(
                "{} documents in one call (at most {MAX_DOCUMENTS}): register them in several calls",
                documents.len()
            ),
        ));
    }
    let now = super::now();
    let mut rows = Vec::with_capacity(documents.len());
    let mut hashes = Vec::with_capacity(documents.len());
    for (index, document) in documents.into_iter().enumerate() {
        check(&document.body).map_err(|reason| {
            Error::field(
                format!("documents[{index}].query"),
                format!("document {index} {reason}"),
            )
        })?;
        let name = super::clean_optional(
            &format!("documents[{index}].name"),
            document.name,
            MAX_NAME_CHARS,
        )?;
        let hash = hash(&document.body);
        // One statement may not name the same key twice on every backend.
        if !hashes.contains(&hash) {
            rows.push(trusted_document::ActiveModel {
                workspace_id: Set(caller.workspace_id),
                hash: Set(hash.clone()),
                name: Set(name),
                body: Set(document.body),
                created_at: Set(now),
            });
        }
        hashes.push(hash);
    }
    Entity::insert_many(rows)
        .on_conflict(
            OnConflict::columns([Column::WorkspaceId, Column::Hash])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    let stored = super::scoped::<Entity>(caller.workspace_id)
        .filter(Column::Hash.is_in(hashes.clone()))
        .all(db)
        .await?;
    hashes
        .iter()
        .map(|hash| {
            stored
                .iter()
                .find(|model| &model.hash == hash)
                .cloned()
                .ok_or_else(|| Error::Internal(format!("trusted document {hash} vanished")))
        })
        .collect()
}

/// The text registered under `hash` in `workspace_id`, if any: what a trusted-only key
/// may run.
pub async fn find(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    hash: &str,
) -> Result<Option<String>> {
    // Not a hash at all: registered under no hash either.
    let Ok(hash) = hash_of("hash", hash) else {
        return Ok(None);
    };
    Ok(super::scoped::<Entity>(workspace_id)
        .select_only()
        .column(Column::Body)
        .filter(Column::Hash.eq(hash))
        .into_tuple::<String>()
        .one(db)
        .await?)
}

/// The caller's workspace's trusted documents by hash (admin role), at most `first`
/// ([`MAX_PAGE`]) after the hash `after`.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    first: usize,
    after: Option<&str>,
) -> Result<Vec<Model>> {
    caller.require(Role::Admin, "listing trusted documents")?;
    if first > MAX_PAGE {
        return Err(Error::field(
            "first",
            format!("ask for at most {MAX_PAGE} documents at once"),
        ));
    }
    let mut select = super::scoped::<Entity>(caller.workspace_id);
    if let Some(after) = after {
        select = select.filter(Column::Hash.gt(hash_of("after", after)?));
    }
    Ok(select
        .order_by_asc(Column::Hash)
        .limit(first as u64)
        .all(db)
        .await?)
}

/// A trusted-documents-only key never changes the list it is held to: were a registering
/// mutation ever registered (an admin console's, say), such a key could otherwise add any
/// document and run it.
fn unrestricted(caller: &Caller, what: &str) -> Result<()> {
    if caller.trusted_documents_only {
        return Err(Error::Forbidden(format!(
            "a trusted-documents-only key cannot {what} trusted documents: use an admin key without that restriction"
        )));
    }
    Ok(())
}

/// Removes the document registered under `hash` (admin role): trusted-only keys cannot
/// run it from then on. `NOT_FOUND` when the workspace has none.
pub async fn remove(db: &impl ConnectionTrait, caller: &Caller, hash: &str) -> Result<()> {
    caller.require(Role::Admin, "removing trusted documents")?;
    unrestricted(caller, "remove")?;
    let hash = hash_of("input.hash", hash)?;
    let result = Entity::delete_many()
        .filter(Column::WorkspaceId.eq(caller.workspace_id))
        .filter(Column::Hash.eq(hash.as_str()))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(Error::not_found("trusted document", hash));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_must_parse_and_hold_an_operation() {
        assert!(check("{ viewer { role } }").is_ok());
        assert!(check("{ viewer { ").is_err());
        assert!(check("fragment F on Viewer { role }").is_err());
        assert!(check(&"#".repeat(MAX_BYTES + 1)).is_err());
    }
}
