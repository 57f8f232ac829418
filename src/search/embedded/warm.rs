//! What the embedded backend keeps per segment so searches need not rebuild it: the
//! documents of each common filter value (a workspace, a channel, …) as [`Bits`], the
//! interactions sorted by date, and the live documents. Segments never change once
//! written, so this is computed once per segment, never in a search's path; only the live
//! set is redone when a segment gains deletions. A [`Snapshot`] pairs one searcher with
//! these, and is swapped whole after each commit.
//!
//! A large segment new to a commit (a background merge's, mostly) is built aside: the
//! commit's snapshot searches it without its cache (the same answers, as for a small
//! segment, only slower) and a snapshot with the cache replaces it once built. Building it
//! in the writer's path held every later batch back from being searchable for as long.

use std::collections::HashMap;
use std::sync::Arc;

use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::schema::{Field, IndexRecordOption, Schema};
use tantivy::{DocId, Searcher, SegmentReader};

use super::bits::Bits;
use super::{internal, Result};
use crate::search::IndexName;

/// Segments smaller than this are searched without caches (cheap either way).
pub const CACHED_MIN_DOCS: u32 = 8_192;

/// A value is cached when at least this share (1 / n) of the segment holds it: at most
/// 32 values per field, so at most 4 bytes per document per field.
const DENSE_SHARE: u32 = 32;

/// The raw fields whose common values are kept as sets.
fn cached_fields(index: IndexName) -> &'static [&'static str] {
    match index {
        IndexName::Interactions => &[
            "workspace_id",
            "channel",
            "kind",
            "direction",
            "status",
            "sentiment_label",
            "language",
        ],
        IndexName::Customers => &["workspace_id"],
    }
}

/// What one segment's content gives, computed once.
#[derive(Default)]
pub struct SegmentCache {
    dense: HashMap<Field, HashMap<String, Bits>>,
    /// Interactions: every document, ascending by `(occurred_at, id)`.
    pub by_date: Option<Vec<DocId>>,
}

impl SegmentCache {
    /// The documents holding `value` in `field`, when it is a common value.
    pub fn dense(&self, field: Field, value: &str) -> Option<&Bits> {
        self.dense.get(&field)?.get(value)
    }

    fn build(reader: &SegmentReader, schema: &Schema, index: IndexName) -> Result<SegmentCache> {
        let max_doc = reader.max_doc();
        let mut cache = SegmentCache::default();
        if max_doc < CACHED_MIN_DOCS {
            return Ok(cache);
        }
        for name in cached_fields(index) {
            let field = schema.get_field(name).map_err(internal)?;
            let inverted = reader.inverted_index(field).map_err(internal)?;
            let mut terms = inverted.terms().stream().map_err(internal)?;
            let mut values = HashMap::new();
            while terms.advance() {
                let info = terms.value();
                if info.doc_freq.saturating_mul(DENSE_SHARE) < max_doc {
                    continue;
                }
                let Ok(value) = std::str::from_utf8(terms.key()) else {
                    continue;
                };
                let mut bits = Bits::empty(max_doc);
                let mut block = inverted
                    .read_block_postings_from_terminfo(info, IndexRecordOption::Basic)
                    .map_err(internal)?;
                loop {
                    let docs = block.docs();
                    if docs.is_empty() {
                        break;
                    }
                    for &doc in docs {
                        bits.insert(doc);
                    }
                    block.advance();
                }
                values.insert(value.to_owned(), bits);
            }
            cache.dense.insert(field, values);
        }
        if index == IndexName::Interactions {
            let at: Column<i64> = reader.fast_fields().i64("occurred_at").map_err(internal)?;
            let ids = super::eval::Ids::open(reader)?;
            let mut keyed: Vec<(i64, u64, DocId)> = (0..max_doc)
                .map(|doc| (at.first(doc).unwrap_or(i64::MIN), ids.ord(doc), doc))
                .collect();
            keyed.sort_unstable();
            cache.by_date = Some(keyed.into_iter().map(|(_, _, doc)| doc).collect());
        }
        Ok(cache)
    }
}

/// One segment of a snapshot: its content cache and its live documents.
#[derive(Clone)]
pub struct SegmentView {
    id: SegmentId,
    pub cache: Arc<SegmentCache>,
    /// `None` when nothing was deleted from the segment.
    pub alive: Option<Arc<Bits>>,
    deleted: u32,
    /// Its cache is being built aside; `cache` is empty until then.
    cold: bool,
}

/// A searcher and what each of its segments keeps, in the searcher's segment order.
pub struct Snapshot {
    pub searcher: Searcher,
    pub segments: Vec<SegmentView>,
}

impl Snapshot {
    /// Whether a segment's cache is still being built aside.
    #[cfg(test)]
    pub fn is_cold(&self) -> bool {
        self.segments.iter().any(|view| view.cold)
    }
}

/// What `warm` does with a segment it has not seen before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewSegments {
    /// Build its cache now.
    Build,
    /// Leave a large one cold, for [`build_cold`] to build aside.
    Defer,
}

/// Prepares `searcher` for searching, reusing what `previous` computed for segments they
/// share. Returns the snapshot and the segments it left cold that `previous` did not
/// have (a cold segment of `previous` is being built already).
pub fn warm(
    index: IndexName,
    searcher: Searcher,
    previous: Option<&Snapshot>,
    new: NewSegments,
) -> Result<(Snapshot, Vec<SegmentId>)> {
    let known: HashMap<SegmentId, &SegmentView> = previous
        .map(|p| p.segments.iter().map(|view| (view.id, view)).collect())
        .unwrap_or_default();
    let schema = searcher.schema().clone();
    let mut segments = Vec::with_capacity(searcher.segment_readers().len());
    let mut deferred = Vec::new();
    for reader in searcher.segment_readers() {
        let id = reader.segment_id();
        let deleted = reader.num_deleted_docs();
        let old = known.get(&id);
        let (cache, cold) = match old {
            Some(view) => (view.cache.clone(), view.cold),
            None if new == NewSegments::Defer && reader.max_doc() >= CACHED_MIN_DOCS => {
                deferred.push(id);
                (Arc::new(SegmentCache::default()), true)
            }
            None => (
                Arc::new(SegmentCache::build(reader, &schema, index)?),
                false,
            ),
        };
        let alive = match (old, reader.alive_bitset()) {
            (_, None) => None,
            (Some(view), Some(_)) if view.deleted == deleted && view.alive.is_some() => {
                view.alive.clone()
            }
            (_, Some(alive)) => Some(Arc::new(Bits::from_docs(
                reader.max_doc(),
                alive.iter_alive(),
            ))),
        };
        segments.push(SegmentView {
            id,
            cache,
            alive,
            deleted,
            cold,
        });
    }
    Ok((Snapshot { searcher, segments }, deferred))
}

/// Caches built aside for cold segments.
pub type Built = Vec<(SegmentId, Arc<SegmentCache>)>;

/// Builds the caches of `ids`, segments of `snapshot` (whose searcher keeps them open).
pub fn build_cold(index: IndexName, snapshot: &Snapshot, ids: &[SegmentId]) -> Result<Built> {
    let schema = snapshot.searcher.schema().clone();
    let mut built = Vec::with_capacity(ids.len());
    for reader in snapshot.searcher.segment_readers() {
        if ids.contains(&reader.segment_id()) {
            let cache = SegmentCache::build(reader, &schema, index)?;
            built.push((reader.segment_id(), Arc::new(cache)));
        }
    }
    Ok(built)
}

/// `snapshot` with the caches of `built` for those of its segments still cold; `None`
/// when it has none of them (merged away since).
pub fn with_caches(snapshot: &Snapshot, built: &Built) -> Option<Snapshot> {
    let mut segments = snapshot.segments.clone();
    let mut changed = false;
    for view in segments.iter_mut().filter(|view| view.cold) {
        if let Some((_, cache)) = built.iter().find(|(id, _)| *id == view.id) {
            view.cache = cache.clone();
            view.cold = false;
            changed = true;
        }
    }
    changed.then(|| Snapshot {
        searcher: snapshot.searcher.clone(),
        segments,
    })
}
