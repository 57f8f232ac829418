//! Automatic persisted queries (Apollo's protocol): a client sends the SHA-256 of a query
//! instead of its text; the first time, it is told `PERSISTED_QUERY_NOT_FOUND` and sends
//! both, which registers the text under its hash for the caller's workspace.
//!
//! Kept in memory, per process and per workspace, least recently used first out: each
//! process learns the queries it is sent (a miss costs the client one re-send with the
//! text), and a workspace never sees what another registered. The whole store is bounded
//! too ([`MAX_TOTAL_BYTES`]): when it is full, the workspace holding the most text gives up
//! its least recently used query, so a workspace can push another's entries out only down
//! to its own share. async-graphql's `apollo_persisted_queries` extension keeps one cache for
//! the whole schema, which would share hashes across tenants: hence this store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use entity::WorkspaceId;

/// Queries one workspace keeps registered at once.
pub(crate) const MAX_ENTRIES: usize = 500;
/// Bytes of query text one workspace keeps registered at once. A longer query than this
/// still runs when sent with its text, it is just not registered.
pub(crate) const MAX_BYTES: usize = 2 << 20;
/// Bytes of query text the process keeps registered for all workspaces together.
pub(crate) const MAX_TOTAL_BYTES: usize = 64 << 20;

/// The registered queries of every workspace that sent one.
#[derive(Default)]
pub(crate) struct PersistedQueries {
    workspaces: Mutex<HashMap<WorkspaceId, Entries>>,
}

/// One workspace's queries by hash, with when each was last used.
#[derive(Default)]
struct Entries {
    queries: HashMap<String, (Arc<str>, u64)>,
    bytes: usize,
    clock: u64,
}

/// The lowercase hex SHA-256 of a query, as Apollo's link computes it (the same hash
/// names trusted documents).
pub(crate) use crate::domain::trusted_document::hash;

impl PersistedQueries {
    /// The query `workspace` registered under `hash`, if this process still holds it.
    pub(crate) fn get(&self, workspace: WorkspaceId, hash: &str) -> Option<Arc<str>> {
        let mut workspaces = self.lock();
        let entries = workspaces.get_mut(&workspace)?;
        entries.clock += 1;
        let clock = entries.clock;
        let (query, used) = entries.queries.get_mut(hash)?;
        *used = clock;
        Some(query.clone())
    }

    /// Registers `query` under its hash for `workspace`, making room by forgetting the
    /// workspace's least recently used queries. The caller has checked the hash.
    pub(crate) fn insert(&self, workspace: WorkspaceId, hash: String, query: &str) {
        if query.len() > MAX_BYTES {
            return;
        }
        let mut workspaces = self.lock();
        let entries = workspaces.entry(workspace).or_default();
        entries.clock += 1;
        let clock = entries.clock;
        if let Some((_, used)) = entries.queries.get_mut(&hash) {
            *used = clock;
            return;
        }
        while entries.queries.len() >= MAX_ENTRIES || entries.bytes + query.len() > MAX_BYTES {
            let Some(oldest) = entries
                .queries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(hash, _)| hash.clone())
            else {
                break;
            };
            if let Some((text, _)) = entries.queries.remove(&oldest) {
                entries.bytes -= text.len();
            }
        }
        entries.bytes += query.len();
        entries.queries.insert(hash, (Arc::from(query), clock));
        Self::bound(&mut workspaces, MAX_TOTAL_BYTES);
    }

    /// Keeps the text of every workspace together under `max` bytes: the workspace holding
    /// the most gives up its least recently used query, until the total fits.
    fn bound(workspaces: &mut HashMap<WorkspaceId, Entries>, max: usize) {
        let mut total: usize = workspaces.values().map(|entries| entries.bytes).sum();
        while total > max {
            let Some((&largest, _)) = workspaces.iter().max_by_key(|(_, entries)| entries.bytes)
            else {
                return;
            };
            let entries = workspaces.get_mut(&largest).expect("found just now");
            let Some(oldest) = entries
                .queries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(hash, _)| hash.clone())
            else {
                workspaces.remove(&largest);
                continue;
            };
            if let Some((text, _)) = entries.queries.remove(&oldest) {
                entries.bytes -= text.len();
                total -= text.len();
            }
            if entries.queries.is_empty() {
                workspaces.remove(&largest);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WorkspaceId, Entries>> {
        self.workspaces
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> WorkspaceId {
        WorkspaceId::from_uuid(uuid::Uuid::now_v7())
    }

    #[test]
    fn a_query_is_found_only_in_the_workspace_that_registered_it() {
        let store = PersistedQueries::default();
        let (a, b) = (workspace(), workspace());
        let query = "{ viewer { role } }";
        store.insert(a, hash(query), query);
        assert_eq!(store.get(a, &hash(query)).as_deref(), Some(query));
        assert_eq!(store.get(b, &hash(query)), None);
    }

    #[test]
    fn a_full_workspace_forgets_its_least_recently_used_query() {
        let store = PersistedQueries::default();
        let a = workspace();
        let queries: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("{{ q{i} }}")).collect();
        for query in &queries[..MAX_ENTRIES] {
            store.insert(a, hash(query), query);
        }
        // The first one is used again, so the second is the oldest when room is needed.
        assert!(store.get(a, &hash(&queries[0])).is_some());
        store.insert(a, hash(&queries[MAX_ENTRIES]), &queries[MAX_ENTRIES]);
        assert!(store.get(a, &hash(&queries[0])).is_some());
        assert!(store.get(a, &hash(&queries[1])).is_none());
        assert!(store.get(a, &hash(&queries[MAX_ENTRIES])).is_some());
    }

    #[test]
    fn registered_bytes_stay_under_the_workspace_budget() {
        let store = PersistedQueries::default();
        let a = workspace();
        let big = "x".repeat(MAX_BYTES / 2 + 1);
        let other = "y".repeat(MAX_BYTES / 2 + 1);
        store.insert(a, hash(&big), &big);
        store.insert(a, hash(&other), &other);
        assert!(store.get(a, &hash(&big)).is_none());
        assert!(store.get(a, &hash(&other)).is_some());
        let too_big = "z".repeat(MAX_BYTES + 1);
        store.insert(a, hash(&too_big), &too_big);
        assert!(store.get(a, &hash(&too_big)).is_none());
        assert!(store.get(a, &hash(&other)).is_some());
    }

    #[test]
    fn a_full_store_takes_from_the_workspace_holding_the_most() {
        let store = PersistedQueries::default();
        let (small, large) = (workspace(), workspace());
        let kept = "{ kept }";
        store.insert(small, hash(kept), kept);
        let texts: Vec<String> = (0..4)
            .map(|i| format!("{{ q{i} {} }}", "x".repeat(100)))
            .collect();
        for text in &texts {
            store.insert(large, hash(text), text);
        }
        let mut workspaces = store.lock();
        let max = kept.len() + texts[0].len() * 2;
        PersistedQueries::bound(&mut workspaces, max);
        drop(workspaces);
        assert!(
            store.get(small, &hash(kept)).is_some(),
            "the small workspace keeps its query"
        );
        assert!(store.get(large, &hash(&texts[0])).is_none());
        assert!(store.get(large, &hash(&texts[1])).is_none());
        assert!(store.get(large, &hash(&texts[3])).is_some());
    }

    #[test]
    fn the_hash_is_apollos_lowercase_hex_sha256() {
        assert_eq!(
            hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
