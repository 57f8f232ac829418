//! What the embedded backend keeps per segment so searches need not rebuild it: the
//! documents of each common filter value (a workspace, a channel, …) as [`Bits`], the
//! interactions sorted by date, and the live documents. Segments never change once
//! written, so this is computed once when a segment first appears (after the commit that
//! made it, or the merge), in the writer's path, never in a search's; only the live set
//! is redone when a segment gains deletions. A [`Snapshot`] pairs one searcher with these,
//! and is swapped whole after each commit.

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
pub struct SegmentView {
    id: SegmentId,
    pub cache: Arc<SegmentCache>,
    /// `None` when nothing was deleted from the segment.
    pub alive: Option<Arc<Bits>>,
    deleted: u32,
}

/// A searcher and what each of its segments keeps, in the searcher's segment order.
pub struct Snapshot {
    pub searcher: Searcher,
    pub segments: Vec<SegmentView>,
}

/// Prepares `searcher` for searching, reusing what `previous` computed for segments they
/// share.
pub fn warm(index: IndexName, searcher: Searcher, previous: Option<&Snapshot>) -> Result<Snapshot> {
    let known: HashMap<SegmentId, &SegmentView> = previous
        .map(|p| p.segments.iter().map(|view| (view.id, view)).collect())
        .unwrap_or_default();
    let schema = searcher.schema().clone();
    let mut segments = Vec::with_capacity(searcher.segment_readers().len());
    for reader in searcher.segment_readers() {
        let id = reader.segment_id();
        let deleted = reader.num_deleted_docs();
        let old = known.get(&id);
        let cache = match old {
            Some(view) => view.cache.clone(),
            None => Arc::new(SegmentCache::build(reader, &schema, index)?),
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
        });
    }
    Ok(Snapshot { searcher, segments })
}
