//! How the embedded backend answers a search. Per segment, every required clause (the
//! workspace, each filter, each query word) becomes a set of documents ([`Bits`]), the
//! rarest clause first; a clause that meets only a few candidates is checked by seeking
//! its postings rather than reading them whole. The count, the facet counts and the best
//! hits are then read off the final set: relevance from which (word, field) pairs each
//! hit matched, date order by walking the segment's documents sorted by date (built once
//! when the segment appears, see [`super::warm`]). So a search costs about what its rarest
//! clause costs, not what its most common word costs, and a million hits are counted
//! word-wise rather than scored one by one.
//!
//! Ranking: a hit scores one point per query word per searchable field it matches (typos
//! and prefixes included, as before); filters never rank. Ties go in index order.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, OnceLock};

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use tantivy::columnar::{Column, StrColumn};
use tantivy::index::InvertedIndexReader;
use tantivy::postings::TermInfo;
use tantivy::query::AutomatonWeight;
use tantivy::schema::{Field, IndexRecordOption, Term};
use tantivy::{DocId, DocSet, SegmentReader, TERMINATED};
use uuid::Uuid;

use super::bits::{Bits, BitsOf};
use super::warm::{SegmentView, Snapshot};
use super::{internal, Result};
use crate::search::{DatePosition, SearchSort};

/// A clause meeting fewer candidates than its postings hold over this ratio is checked
/// by seeking (about a block decode per candidate) rather than read whole (per posting).
const SEEK_RATIO: u64 = 64;

/// Candidates below which a date-ordered segment is sorted directly rather than walked
/// in its date order.
const FEW_FOR_DATE: u64 = 4_096;

/// A Levenshtein automaton over a query word: the word within its allowed typos, or (for
/// the last word) any term starting with such a word.
pub struct Dfa(DFA);

impl Dfa {
    pub fn new(word: &str, typos: u8, prefix: bool) -> Dfa {
        static BUILDERS: [OnceLock<LevenshteinAutomatonBuilder>; 3] =
            [OnceLock::new(), OnceLock::new(), OnceLock::new()];
        let typos = typos.min(2);
        // A transposition is one typo, as in Meilisearch.
        let builder =
            BUILDERS[typos as usize].get_or_init(|| LevenshteinAutomatonBuilder::new(typos, true));
        Dfa(if prefix {
            builder.build_prefix_dfa(word)
        } else {
            builder.build_dfa(word)
        })
    }
}

impl tantivy_fst::Automaton for Dfa {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// One query word and the fields it is looked for in.
pub struct Word {
    pub fields: Vec<Field>,
    pub dfa: Arc<Dfa>,
}

/// A required filter: the raw field holds one of `values`.
pub struct TermSet {
    pub field: Field,
    pub values: Vec<String>,
}

/// A required range over a fast field (documents without a value are left out).
pub enum Range {
    I64 {
        field: &'static str,
        lower: Bound<i64>,
        upper: Bound<i64>,
    },
    F64 {
        field: &'static str,
        lower: Bound<f64>,
        upper: Bound<f64>,
    },
}

/// A search ready to run on each segment: every set, word and range is required.
#[derive(Default)]
pub struct Plan {
    pub sets: Vec<TermSet>,
    pub words: Vec<Word>,
    pub ranges: Vec<Range>,
}

/// The documents of one segment that match.
pub struct Matched {
    pub bits: Bits,
    /// One set per (word, field) that matched here (relevance only): a hit scores as many
    /// points as sets holding it.
    pub planes: Vec<Bits>,
}

/// A clause resolved against one segment.
enum Clause<'a> {
    /// A filter: cached dense sets, and postings for its other values.
    Set {
        cached: Vec<&'a Bits>,
        field: Field,
        postings: Vec<TermInfo>,
    },
    /// A query word: the matching terms of each field.
    Word(Vec<(Field, Vec<TermInfo>)>),
}

/// Sum of postings lengths: what reading the clause whole costs.
fn cost(clause: &Clause<'_>) -> u64 {
    match clause {
        Clause::Set {
            cached, postings, ..
        } => {
            cached.iter().map(|bits| bits.count()).sum::<u64>()
                + postings.iter().map(|t| u64::from(t.doc_freq)).sum::<u64>()
        }
        Clause::Word(fields) => fields
            .iter()
            .flat_map(|(_, terms)| terms)
            .map(|t| u64::from(t.doc_freq))
            .sum(),
    }
}

fn io(err: std::io::Error) -> crate::error::Error {
    internal(err)
}

/// Adds every document of `terms`' postings to `out`.
fn read_all(inverted: &InvertedIndexReader, terms: &[TermInfo], out: &mut Bits) -> Result<()> {
    for term in terms {
        let mut block = inverted
            .read_block_postings_from_terminfo(term, IndexRecordOption::Basic)
            .map_err(io)?;
        loop {
            let docs = block.docs();
            if docs.is_empty() {
                break;
            }
            for &doc in docs {
                out.insert(doc);
            }
            block.advance();
        }
    }
    Ok(())
}

/// Adds to `out` the documents of `candidates` found in `terms`' postings, seeking
/// forward only: a candidate below the postings' current document is not in them (a seek
/// lands on the first document at or past its target), and tantivy's `seek` may not go
/// back.
fn read_among(
    inverted: &InvertedIndexReader,
    terms: &[TermInfo],
    candidates: &Bits,
    out: &mut Bits,
) -> Result<()> {
    for term in terms {
        let mut postings = inverted
            .read_postings_from_terminfo(term, IndexRecordOption::Basic)
            .map_err(io)?;
        let mut at = postings.doc();
        for doc in candidates.iter() {
            if at < doc {
                at = postings.seek(doc);
            }
            if at == TERMINATED {
                break;
            }
            if at == doc {
                out.insert(doc);
            }
        }
    }
    Ok(())
}

/// Evaluates `plan` on one segment: `None` when nothing matches there.
pub fn evaluate(
    reader: &SegmentReader,
    view: &SegmentView,
    plan: &Plan,
    scored: bool,
) -> Result<Option<Matched>> {
    let max_doc = reader.max_doc();
    if max_doc == 0 {
        return Ok(None);
    }
    let mut clauses = Vec::with_capacity(plan.sets.len() + plan.words.len());
    for set in &plan.sets {
        let inverted = reader.inverted_index(set.field).map_err(internal)?;
        let mut cached = Vec::new();
        let mut postings = Vec::new();
        for value in &set.values {
            if let Some(bits) = view.cache.dense(set.field, value) {
                cached.push(bits);
            } else if let Some(info) = inverted
                .get_term_info(&Term::from_field_text(set.field, value))
                .map_err(io)?
            {
                postings.push(info);
            }
        }
        if cached.is_empty() && postings.is_empty() {
            return Ok(None);
        }
        clauses.push(Clause::Set {
            cached,
            field: set.field,
            postings,
        });
    }
    for word in &plan.words {
        let mut fields = Vec::new();
        for &field in &word.fields {
            let terms = AutomatonWeight::<Dfa>::new(field, word.dfa.clone())
                .get_match_term_infos(reader)
                .map_err(internal)?;
            if !terms.is_empty() {
                fields.push((field, terms));
            }
        }
        if fields.is_empty() {
            return Ok(None);
        }
        clauses.push(Clause::Word(fields));
    }
    clauses.sort_by_key(cost);

    let mut candidates: Option<Bits> = None;
    let mut planes = Vec::new();
    for clause in &clauses {
        let sparse = candidates
            .as_ref()
            .is_some_and(|c| c.count().saturating_mul(SEEK_RATIO) < cost(clause));
        let matched = match clause {
            Clause::Set {
                cached,
                field,
                postings,
            } => {
                if let ([only], true) = (cached.as_slice(), postings.is_empty()) {
                    // One dense value: intersect in place, or start from a copy.
                    match candidates.as_mut() {
                        Some(bits) => bits.and(only),
                        None => candidates = Some((*only).clone()),
                    }
                    if candidates.as_ref().is_some_and(Bits::is_empty) {
                        return Ok(None);
                    }
                    continue;
                }
                let mut bits = Bits::empty(max_doc);
                for dense in cached {
                    bits.or(dense);
                }
                if !postings.is_empty() {
                    let inverted = reader.inverted_index(*field).map_err(internal)?;
                    match (&candidates, sparse) {
                        (Some(among), true) => read_among(&inverted, postings, among, &mut bits)?,
                        _ => read_all(&inverted, postings, &mut bits)?,
                    }
                }
                bits
            }
            Clause::Word(fields) => {
                let mut union = Bits::empty(max_doc);
                for (field, terms) in fields {
                    let inverted = reader.inverted_index(*field).map_err(internal)?;
                    let mut bits = Bits::empty(max_doc);
                    match (&candidates, sparse) {
                        (Some(among), true) => read_among(&inverted, terms, among, &mut bits)?,
                        _ => read_all(&inverted, terms, &mut bits)?,
                    }
                    union.or(&bits);
                    if scored {
                        planes.push(bits);
                    }
                }
                union
            }
        };
        match candidates.as_mut() {
            Some(bits) => bits.and(&matched),
            None => candidates = Some(matched),
        }
        if candidates.as_ref().is_some_and(Bits::is_empty) {
            return Ok(None);
        }
    }
    let mut bits = candidates.unwrap_or_else(|| Bits::full(max_doc));
    if let Some(alive) = &view.alive {
        bits.and(alive);
    }
    for range in &plan.ranges {
        match range {
            Range::I64 {
                field,
                lower,
                upper,
            } => {
                let column: Column<i64> = reader.fast_fields().i64(field).map_err(internal)?;
                bits.retain(|doc| {
                    column
                        .first(doc)
                        .is_some_and(|v| (*lower, *upper).contains(&v))
                });
            }
            Range::F64 {
                field,
                lower,
                upper,
            } => {
                let column: Column<f64> = reader.fast_fields().f64(field).map_err(internal)?;
                bits.retain(|doc| {
                    column
                        .first(doc)
                        .is_some_and(|v| (*lower, *upper).contains(&v))
                });
            }
        }
    }
    if bits.is_empty() {
        return Ok(None);
    }
    Ok(Some(Matched { bits, planes }))
}

/// The best `k` hits of one segment by score (points, highest first), ties in index
/// order: `(points, doc)`. Points are counted 64 documents at a time with bit-sliced
/// counters, so a million hits cost a few thousand word operations per plane.
pub fn best_by_score(matched: &Matched, k: usize) -> Vec<(u32, DocId)> {
    let planes = &matched.planes;
    let top = planes.len();
    if k == 0 {
        return Vec::new();
    }
    let mut tiers: Vec<Vec<DocId>> = vec![Vec::new(); top + 1];
    // Counter bits: enough to count to `top`.
    let width = (usize::BITS - top.leading_zeros()) as usize;
    let mut counter = vec![0u64; width.max(1)];
    for (index, &mask) in matched.bits.words().iter().enumerate() {
        if mask == 0 {
            continue;
        }
        counter.iter_mut().for_each(|c| *c = 0);
        for plane in planes {
            let mut carry = plane.words()[index] & mask;
            for bit in counter.iter_mut() {
                if carry == 0 {
                    break;
                }
                let next = *bit & carry;
                *bit ^= carry;
                carry = next;
            }
        }
        let base = index as u32 * 64;
        for (points, tier) in tiers.iter_mut().enumerate().rev() {
            if tier.len() >= k {
                continue;
            }
            let mut equal = mask;
            for (position, bit) in counter.iter().enumerate() {
                equal &= if points >> position & 1 == 1 {
                    *bit
                } else {
                    !*bit
                };
            }
            for doc in BitsOf(equal) {
                if tier.len() == k {
                    break;
                }
                tier.push(base + doc);
            }
        }
        if tiers[top].len() >= k {
            break;
        }
    }
    tiers
        .into_iter()
        .enumerate()
        .rev()
        .flat_map(|(points, docs)| docs.into_iter().map(move |doc| (points as u32, doc)))
        .take(k)
        .collect()
}

/// Reads the ids of documents from the `id` fast field.
pub struct Ids {
    column: StrColumn,
    text: String,
}

impl Ids {
    pub fn open(reader: &SegmentReader) -> Result<Ids> {
        let column = reader
            .fast_fields()
            .str("id")
            .map_err(internal)?
            .ok_or_else(|| internal("the index has no id column"))?;
        Ok(Ids {
            column,
            text: String::new(),
        })
    }

    /// The id's position among this segment's ids (their text order).
    pub fn ord(&self, doc: DocId) -> u64 {
        self.column.ords().first(doc).unwrap_or(0)
    }

    /// The id text of `doc`.
    pub fn text(&mut self, doc: DocId) -> Result<&str> {
        self.text.clear();
        let ord = self
            .column
            .ords()
            .first(doc)
            .ok_or_else(|| internal("a document without id"))?;
        self.column.ord_to_str(ord, &mut self.text).map_err(io)?;
        Ok(&self.text)
    }

    pub fn uuid(&mut self, doc: DocId) -> Result<Uuid> {
        Uuid::parse_str(self.text(doc)?).map_err(internal)
    }
}

/// The first `k` hits of one segment in date order (`sort` newest or oldest), strictly
/// after `after` when given: `(occurred_at, doc)`, ties on the millisecond by id.
pub fn best_by_date(
    reader: &SegmentReader,
    view: &SegmentView,
    bits: &Bits,
    k: usize,
    sort: SearchSort,
    after: Option<DatePosition>,
) -> Result<Vec<(i64, DocId)>> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let at: Column<i64> = reader.fast_fields().i64("occurred_at").map_err(internal)?;
    let when = |doc: DocId| at.first(doc).unwrap_or(i64::MIN);
    let mut ids = Ids::open(reader)?;
    let after_id = after.map(|p| p.id.to_string());
    let newest = sort != SearchSort::Oldest;
    let order = view.cache.by_date.as_deref();
    if order.is_none() || bits.count() <= FEW_FOR_DATE {
        // Few candidates: sort them.
        let mut found: Vec<(i64, u64, DocId)> = Vec::new();
        for doc in bits.iter() {
            let (time, ord) = (when(doc), ids.ord(doc));
            if let (Some(p), Some(after_id)) = (after, &after_id) {
                let beyond = match time.cmp(&p.occurred_at) {
                    std::cmp::Ordering::Equal => {
                        let id = ids.text(doc)?;
                        if newest {
                            id < after_id.as_str()
                        } else {
                            id > after_id.as_str()
                        }
                    }
                    other => (other == std::cmp::Ordering::Less) == newest,
                };
                if !beyond {
                    continue;
                }
            }
            found.push((time, ord, doc));
        }
        if newest {
            found.sort_unstable_by_key(|&(time, ord, _)| Reverse((time, ord)));
        } else {
            found.sort_unstable_by_key(|&(time, ord, _)| (time, ord));
        }
        return Ok(found
            .into_iter()
            .take(k)
            .map(|(time, _, doc)| (time, doc))
            .collect());
    }
    let order = order.expect("checked above");
    // The walk's bounds in `order` (ascending by date, then id).
    let (start, end) = match (after, &after_id) {
        (Some(p), Some(after_id)) => {
            let low = order.partition_point(|&d| when(d) < p.occurred_at);
            let high = order.partition_point(|&d| when(d) <= p.occurred_at);
            let mut id_below = |d: DocId, or_equal: bool| -> bool {
                match ids.text(d) {
                    Ok(id) if or_equal => id <= after_id.as_str(),
                    Ok(id) => id < after_id.as_str(),
                    Err(_) => false,
                }
            };
            if newest {
                let cut = low + order[low..high].partition_point(|&d| id_below(d, false));
                (0, cut)
            } else {
                let cut = low + order[low..high].partition_point(|&d| id_below(d, true));
                (cut, order.len())
            }
        }
        _ => (0, order.len()),
    };
    let mut found = Vec::with_capacity(k);
    let mut take = |doc: DocId| {
        if bits.contains(doc) {
            found.push((when(doc), doc));
        }
        found.len() < k
    };
    if newest {
        for &doc in order[start..end].iter().rev() {
            if !take(doc) {
                break;
            }
        }
    } else {
        for &doc in &order[start..end] {
            if !take(doc) {
                break;
            }
        }
    }
    Ok(found)
}

/// Adds to `counts` how many of `bits` hold each value of the raw fast field `name`.
pub fn count_values(
    reader: &SegmentReader,
    view: &SegmentView,
    bits: &Bits,
    field: Field,
    name: &str,
    counts: &mut HashMap<String, u64>,
) -> Result<()> {
    let hits = bits.count();
    if hits.saturating_mul(16) < u64::from(reader.max_doc()) {
        // Few hits: read each one's value.
        let Some(column) = reader.fast_fields().str(name).map_err(internal)? else {
            return Ok(());
        };
        let mut by_ord: HashMap<u64, u64> = HashMap::new();
        for doc in bits.iter() {
            for ord in column.term_ords(doc) {
                *by_ord.entry(ord).or_default() += 1;
            }
        }
        let mut text = String::new();
        for (ord, count) in by_ord {
            text.clear();
            if column.ord_to_str(ord, &mut text).map_err(io)? {
                *counts.entry(text.clone()).or_default() += count;
            }
        }
        return Ok(());
    }
    // Many hits: intersect with each value's documents.
    let inverted = reader.inverted_index(field).map_err(internal)?;
    let mut terms = inverted.terms().stream().map_err(io)?;
    while terms.advance() {
        let Ok(value) = std::str::from_utf8(terms.key()) else {
            continue;
        };
        let count = match view.cache.dense(field, value) {
            Some(dense) => bits.and_count(dense),
            None => {
                let mut count = 0;
                let mut block = inverted
                    .read_block_postings_from_terminfo(terms.value(), IndexRecordOption::Basic)
                    .map_err(io)?;
                loop {
                    let docs = block.docs();
                    if docs.is_empty() {
                        break;
                    }
                    count += docs.iter().filter(|&&doc| bits.contains(doc)).count() as u64;
                    block.advance();
                }
                count
            }
        };
        if count > 0 {
            *counts.entry(value.to_owned()).or_default() += count;
        }
    }
    Ok(())
}

/// Runs `plan` over every segment of `snapshot`.
pub fn evaluate_all(snapshot: &Snapshot, plan: &Plan, scored: bool) -> Result<Vec<(u32, Matched)>> {
    let mut all = Vec::new();
    for (ord, (reader, view)) in snapshot
        .searcher
        .segment_readers()
        .iter()
        .zip(&snapshot.segments)
        .enumerate()
    {
        if let Some(matched) = evaluate(reader, view, plan, scored)? {
            all.push((ord as u32, matched));
        }
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, STRING};
    use tantivy::{doc, Index};

    /// Candidates around a term's documents: only those in its postings are read, and no
    /// seek goes back (tantivy asserts it: a candidate after one the postings skipped
    /// past used to seek below their current document).
    #[test]
    fn reading_among_candidates_seeks_forward_only() {
        let mut schema = Schema::builder();
        let word = schema.add_text_field("word", STRING);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15_000_000).unwrap();
        for n in 0..10u32 {
            let text = if [2, 6, 9].contains(&n) { "yes" } else { "no" };
            writer.add_document(doc!(word => text)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let inverted = searcher.segment_reader(0).inverted_index(word).unwrap();
        let term = inverted
            .get_term_info(&Term::from_field_text(word, "yes"))
            .unwrap()
            .unwrap();
        for (candidates, found) in [
            (vec![0, 1, 3, 4, 6, 7, 9], vec![6, 9]),
            (vec![1, 3, 6], vec![6]),
            (vec![2, 5, 6, 8], vec![2, 6]),
            (vec![0, 1], vec![]),
        ] {
            let candidates = Bits::from_docs(10, candidates);
            let mut out = Bits::empty(10);
            read_among(
                &inverted,
                std::slice::from_ref(&term),
                &candidates,
                &mut out,
            )
            .unwrap();
            assert_eq!(out.iter().collect::<Vec<_>>(), found);
        }
    }
}
