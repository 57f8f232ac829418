//! Trusted documents, enforced: a key created trusted-documents-only runs only what its
//! workspace registered (`domain::trusted_document`), on `/graphql` and `/graphql/ws`
//! alike. The document is named by its hash alone (the persisted-query shape, as Apollo's
//! link sends it with a generated manifest) or sent as text whose hash is registered.
//! Nothing is learnt from such a key's requests: the in-memory automatic persisted
//! queries are neither read nor written for it, so the registered list is the whole of
//! what it can run.

use super::HttpState;
use crate::domain::{self, Caller};
use crate::error::Error;

/// The text a trusted-only `caller` may run for a request that sent `query` (its text,
/// if any) and `hash` (a persisted query's hash, if any): `Ok(Some(text))` for a hash
/// alone, looked up; `Ok(None)` when the sent text is itself registered; `FORBIDDEN`
/// otherwise. The caller has checked that a hash sent with a text is the text's.
pub(super) async fn admit(
    state: &HttpState,
    caller: &Caller,
    query: Option<&str>,
    hash: Option<&str>,
) -> Result<Option<String>, Error> {
    let hash = match (query, hash) {
        (Some(query), _) => domain::trusted_document::hash(query),
        (None, Some(hash)) => hash.to_ascii_lowercase(),
        (None, None) => return Err(Error::bad_input("the request has no `query`")),
    };
    match domain::trusted_document::find(&state.app().db, caller.workspace_id, &hash).await? {
        Some(text) => Ok(query.is_none().then_some(text)),
        None => Err(not_trusted(&hash)),
    }
}

/// The refusal of a document the workspace has not registered.
fn not_trusted(hash: &str) -> Error {
    Error::Forbidden(format!(
        "this API key runs only trusted documents, and this workspace has registered none with hash {hash}: register the document first (`registerTrustedDocuments`, or `rapport documents register` at deploy) and send its exact text or its hash as `extensions.persistedQuery.sha256Hash`"
    ))
}
