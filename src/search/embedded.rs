//! The embedded search backend: tantivy indexes in `data_dir/search/<index>-<generation>`,
//! with `data_dir/search/<index>.current` naming the live generation (a rebuild writes a
//! new generation and swaps the name, so searches never see a half-built index).
//!
//! Text is tokenized into runs of letters and digits, lower-cased and ASCII-folded, for
//! documents and queries alike. A query word matches the terms within its typos (0, 1 or
//! 2 by its length; any term it starts for the last word) in each searchable field; all
//! words are required. tantivy stores and finds the terms; [`eval`] answers the search
//! over each segment with sets of documents (filters, words, counts, facets, date order),
//! using what [`warm`] keeps per segment, refreshed after each commit.
//!
//! One process writes an embedded index (tantivy's lock). Another process over the same
//! data directory still searches it but does not index (its indexer reports why): run
//! several processes with Meilisearch.

mod bits;
mod eval;
mod warm;

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST,
    INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};

use crate::ids::TypedId;
use entity::{CustomerId, InteractionId, WorkspaceId};

use super::{
    Change, Changes, CustomerDoc, DatePosition, Facets, Hits, IndexName, InteractionDoc,
    InteractionQuery, Rebuild, SearchIndex, SearchSort, Submitted, CUSTOMER_TEXT, INTERACTION_TEXT,
    MAX_HITS,
};
use crate::error::{Error, Result};
use eval::{Dfa, Plan, Range, TermSet, Word};
use warm::{NewSegments, Snapshot};

const TOKENIZER: &str = "rapport_folded";
const WRITER_BYTES: usize = 50_000_000;

fn text_options() -> TextOptions {
    let indexing = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::WithFreqsAndPositions);
    TextOptions::default().set_indexing_options(indexing)
}

fn schema_of(index: IndexName) -> Schema {
    let mut builder = Schema::builder();
    builder.add_text_field("id", STRING | STORED | FAST);
    builder.add_text_field("workspace_id", STRING);
    let searchable: &[&str] = match index {
        IndexName::Interactions => {
            for name in ["customer_id", "conversation_id"] {
                builder.add_text_field(name, STRING);
            }
            for name in [
                "channel",
                "kind",
                "direction",
                "status",
                "sentiment_label",
                "language",
            ] {
                builder.add_text_field(name, STRING | FAST);
            }
            builder.add_f64_field("sentiment", NumericOptions::default() | INDEXED | FAST);
            builder.add_i64_field("occurred_at", NumericOptions::default() | INDEXED | FAST);
            &INTERACTION_TEXT
        }
        IndexName::Customers => {
            builder.add_i64_field("last_seen_at", NumericOptions::default() | INDEXED | FAST);
            &CUSTOMER_TEXT
        }
    };
    for name in searchable {
        builder.add_text_field(name, text_options());
    }
    builder.build()
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn internal(err: impl std::fmt::Display) -> Error {
    Error::Internal(format!("embedded search index: {err}"))
}

/// One live tantivy index, its writer (taken on first write) and the snapshot searches use.
struct Live {
    index: Index,
    name: IndexName,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    /// The searcher of the last commit with its segments' caches, swapped whole.
    snapshots: Arc<Snapshots>,
    generation: u64,
}

/// The current snapshot, and the lock under which a new one is made from it and swapped
/// in: by the writer after a commit and by the thread that builds a segment's cache aside,
/// so neither loses what the other put in.
#[derive(Default)]
struct Snapshots {
    current: RwLock<Option<Arc<Snapshot>>>,
    swap: Mutex<()>,
}

impl Snapshots {
    fn current(&self) -> Arc<Snapshot> {
        self.current
            .read()
            .expect("never poisoned")
            .clone()
            .expect("set when opened")
    }

    /// Swaps in what `make` makes from the current snapshot, when it makes one.
    fn replace<T>(
        &self,
        make: impl FnOnce(Option<&Snapshot>) -> Result<(Option<Snapshot>, T)>,
    ) -> Result<(Arc<Snapshot>, T)> {
        let _swap = self.swap.lock().expect("never poisoned");
        let previous = self.current.read().expect("never poisoned").clone();
        let (next, made) = make(previous.as_deref())?;
        let next = match (next, previous) {
            (Some(next), _) => Arc::new(next),
            (None, Some(previous)) => return Ok((previous, made)),
            (None, None) => return Err(internal("no snapshot to keep")),
        };
        *self.current.write().expect("never poisoned") = Some(next.clone());
        Ok((next, made))
    }
}

impl Live {
    fn open(dir: &Path, index_name: IndexName, generation: u64) -> Result<Live> {
        let path = dir.join(format!("{}-{generation}", index_name.as_str()));
        std::fs::create_dir_all(&path).map_err(internal)?;
        let schema = schema_of(index_name);
        let directory = tantivy::directory::MmapDirectory::open(&path).map_err(internal)?;
        let index = Index::open_or_create(directory, schema).map_err(internal)?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader: IndexReader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(internal)?;
        let snapshots = Arc::new(Snapshots::default());
        snapshots.replace(|_| {
            let (snapshot, _) =
                warm::warm(index_name, reader.searcher(), None, NewSegments::Build)?;
            Ok((Some(snapshot), ()))
        })?;
        Ok(Live {
            index,
            name: index_name,
            reader,
            writer: Mutex::new(None),
            snapshots,
            generation,
        })
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.current()
    }

    /// Builds the caches of `cold` segments of `snapshot` on a thread of their own, then
    /// swaps them into the current snapshot. Without them (no thread, a failed build) the
    /// segments are still searched, without a cache: the same answers, slower.
    fn build_aside(&self, snapshot: Arc<Snapshot>, cold: Vec<tantivy::index::SegmentId>) {
        let name = self.name;
        let snapshots = self.snapshots.clone();
        let spawned = std::thread::Builder::new()
            .name("search-cache".into())
            .spawn(move || {
                let built = warm::build_cold(name, &snapshot, &cold);
                drop(snapshot);
                let installed = built.and_then(|built| {
                    snapshots.replace(|current| {
                        let current = current.expect("set when opened");
                        Ok((warm::with_caches(current, &built), ()))
                    })
                });
                if let Err(err) = installed {
                    tracing::warn!(index = name.as_str(), error = %err, "cannot build a search segment's cache");
                }
            });
        if let Err(err) = spawned {
            tracing::warn!(index = name.as_str(), error = %err, "no thread to build a search segment's cache");
        }
    }

    /// Runs `write` with the writer, commits, and makes the result searchable.
    fn write(
        &self,
        write: impl FnOnce(&IndexWriter<TantivyDocument>, &Schema) -> Result<()>,
    ) -> Result<()> {
        let mut guard = self
            .writer
            .lock()
            .expect("the writer lock is never poisoned");
        if guard.is_none() {
            let writer = self.index.writer(WRITER_BYTES).map_err(|err| match err {
                tantivy::TantivyError::LockFailure(..) => Error::Internal(
                    "another process writes this embedded search index (use Meilisearch to run several processes)".into(),
                ),
                other => internal(other),
            })?;
            *guard = Some(writer);
        }
        let writer = guard.as_mut().expect("set above");
        let schema = self.index.schema();
        if let Err(err) = write(writer, &schema) {
            let _ = writer.rollback();
            return Err(err);
        }
        writer.commit().map_err(internal)?;
        self.reader.reload().map_err(internal)?;
        // A large new segment (a merge's) is searched without its cache until the cache,
        // built aside, replaces it: building it here would hold this batch back.
        let (next, cold) = self.snapshots.replace(|previous| {
            let (next, cold) = warm::warm(
                self.name,
                self.reader.searcher(),
                previous,
                NewSegments::Defer,
            )?;
            Ok((Some(next), cold))
        })?;
        if !cold.is_empty() {
            self.build_aside(next, cold);
        }
        Ok(())
    }
}

impl Live {
    /// Follows the commits another process makes to this index (the one holding the
    /// indexer's lease, over a shared data directory): gives up this process's writer if
    /// it had one (its lease is gone; the directory's lock goes to the new holder), then
    /// reloads the reader and swaps in a new snapshot when the segments or their
    /// deletions changed.
    fn refresh(&self) -> Result<()> {
        // Under the writer's lock, as in `write`: snapshots are made one at a time.
        let mut guard = self
            .writer
            .lock()
            .expect("the writer lock is never poisoned");
        if let Some(writer) = guard.take() {
            // Waits for its merges; what it committed stays.
            drop(writer);
        }
        self.reader.reload().map_err(internal)?;
        let searcher = self.reader.searcher();
        let shape = |searcher: &tantivy::Searcher| -> Vec<(tantivy::index::SegmentId, u32)> {
            searcher
                .segment_readers()
                .iter()
                .map(|reader| (reader.segment_id(), reader.num_deleted_docs()))
                .collect()
        };
        if shape(&searcher) == shape(&self.snapshot().searcher) {
            return Ok(());
        }
        // As after a commit here: large new segments are cached aside.
        let (next, cold) = self.snapshots.replace(|previous| {
            let (next, cold) = warm::warm(self.name, searcher, previous, NewSegments::Defer)?;
            Ok((Some(next), cold))
        })?;
        if !cold.is_empty() {
            self.build_aside(next, cold);
        }
        Ok(())
    }
}

/// The embedded backend.
pub struct Embedded {
    dir: PathBuf,
    interactions: Slot,
    customers: Slot,
}

/// The live generation of one index, swapped whole by a rebuild.
type Slot = Arc<RwLock<Arc<Live>>>;

fn current_generation(dir: &Path, index: IndexName) -> u64 {
    std::fs::read_to_string(dir.join(format!("{}.current", index.as_str())))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(1)
}

impl Embedded {
    /// Opens (creating when missing) the indexes under `dir`.
    pub fn open(dir: &Path) -> anyhow::Result<Embedded> {
        std::fs::create_dir_all(dir).map_err(|err| {
            anyhow::anyhow!(
                "cannot create the search directory {}: {err}",
                dir.display()
            )
        })?;
        let open = |index| -> anyhow::Result<Live> {
            Live::open(dir, index, current_generation(dir, index))
                .map_err(|err| anyhow::anyhow!("cannot open the {} index: {err}", index.as_str()))
        };
        Ok(Embedded {
            dir: dir.to_owned(),
            interactions: Arc::new(RwLock::new(Arc::new(open(IndexName::Interactions)?))),
            customers: Arc::new(RwLock::new(Arc::new(open(IndexName::Customers)?))),
        })
    }

    fn slot(&self, index: IndexName) -> &Slot {
        match index {
            IndexName::Interactions => &self.interactions,
            IndexName::Customers => &self.customers,
        }
    }

    fn live(&self, index: IndexName) -> Arc<Live> {
        self.slot(index).read().expect("never poisoned").clone()
    }

    /// Waits until no segment's cache is being built aside (tests: the cached paths run).
    #[cfg(test)]
    async fn settled(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        for index in IndexName::ALL {
            while self.live(index).snapshot().is_cold() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "a segment's cache was never built"
                );
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    }

    /// Replaces the documents of `docs`' ids by `docs`, in one commit.
    async fn upsert<D: Indexed>(&self, docs: Vec<D>) -> Result<()> {
        if docs.is_empty() {
            return Ok(());
        }
        self.blocking(D::INDEX, move |live| {
            live.write(|writer, schema| {
                delete_where(writer, schema, "id", docs.iter().map(Indexed::id));
                add_all(writer, schema, &docs)
            })
        })
        .await
    }

    /// Deletes the documents of `index` whose `name` field holds one of `ids`.
    async fn delete<I: std::fmt::Display + Send + 'static>(
        &self,
        index: IndexName,
        name: &'static str,
        ids: Vec<I>,
    ) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.blocking(index, move |live| {
            live.write(|writer, schema| {
                delete_where(writer, schema, name, ids);
                Ok(())
            })
        })
        .await
    }

    /// Applies `changes` (writes to `index`) in order, in one commit.
    async fn apply(&self, index: IndexName, changes: Vec<Change>) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        self.blocking(index, move |live| {
            live.write(|writer, schema| {
                for change in &changes {
                    match change {
                        Change::UpsertInteractions(docs) => {
                            delete_where(writer, schema, "id", docs.iter().map(Indexed::id));
                            add_all(writer, schema, docs)?;
                        }
                        Change::DeleteInteractions(ids) => {
                            delete_where(writer, schema, "id", ids);
                        }
                        Change::DeleteInteractionsOf(ids) => {
                            delete_where(writer, schema, "customer_id", ids);
                        }
                        Change::UpsertCustomers(docs) => {
                            delete_where(writer, schema, "id", docs.iter().map(Indexed::id));
                            add_all(writer, schema, docs)?;
                        }
                        Change::DeleteCustomers(ids) => {
                            delete_where(writer, schema, "id", ids);
                        }
                    }
                }
                Ok(())
            })
        })
        .await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        index: IndexName,
        work: impl FnOnce(&Live) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let live = self.live(index);
        tokio::task::spawn_blocking(move || work(&live))
            .await
            .map_err(internal)?
    }
}

fn field(schema: &Schema, name: &str) -> Field {
    schema
        .get_field(name)
        .expect("the schema has every field it names")
}

fn add_text(doc: &mut TantivyDocument, schema: &Schema, name: &str, value: &str) {
    doc.add_text(field(schema, name), value);
}

/// A document of one of the two indexes.
trait Indexed: Send + 'static {
    const INDEX: IndexName;
    type Id: std::fmt::Display;
    fn id(&self) -> Self::Id;
    fn document(&self, schema: &Schema) -> TantivyDocument;
}

impl Indexed for InteractionDoc {
    const INDEX: IndexName = IndexName::Interactions;
    type Id = InteractionId;
    fn id(&self) -> InteractionId {
        self.id
    }
    fn document(&self, schema: &Schema) -> TantivyDocument {
        interaction_document(schema, self)
    }
}

impl Indexed for CustomerDoc {
    const INDEX: IndexName = IndexName::Customers;
    type Id = CustomerId;
    fn id(&self) -> CustomerId {
        self.id
    }
    fn document(&self, schema: &Schema) -> TantivyDocument {
        customer_document(schema, self)
    }
}

/// Adds `docs` to the index `writer` writes.
fn add_all<D: Indexed>(
    writer: &IndexWriter<TantivyDocument>,
    schema: &Schema,
    docs: &[D],
) -> Result<()> {
    for doc in docs {
        writer
            .add_document(doc.document(schema))
            .map_err(internal)?;
    }
    Ok(())
}

fn interaction_document(schema: &Schema, d: &InteractionDoc) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    add_text(&mut doc, schema, "id", &d.id.to_string());
    add_text(
        &mut doc,
        schema,
        "workspace_id",
        &d.workspace_id.to_string(),
    );
    // A publication has none: no customer filter ever matches it.
    if let Some(customer) = d.customer_id {
        add_text(&mut doc, schema, "customer_id", &customer.to_string());
    }
    if let Some(conversation) = d.conversation_id {
        add_text(
            &mut doc,
            schema,
            "conversation_id",
            &conversation.to_string(),
        );
    }
    for (name, value) in [
        ("channel", &d.channel),
        ("kind", &d.kind),
        ("direction", &d.direction),
        ("status", &d.status),
        ("sentiment_label", &d.sentiment_label),
        ("language", &d.language),
        ("text", &d.text),
        ("subject", &d.subject),
        ("author", &d.author),
    ] {
        add_text(&mut doc, schema, name, value);
    }
    if let Some(sentiment) = d.sentiment {
        doc.add_f64(field(schema, "sentiment"), sentiment);
    }
    doc.add_i64(field(schema, "occurred_at"), d.occurred_at);
    doc
}

fn customer_document(schema: &Schema, d: &CustomerDoc) -> TantivyDocument {
    let mut doc = TantivyDocument::default();
    add_text(&mut doc, schema, "id", &d.id.to_string());
    add_text(
        &mut doc,
        schema,
        "workspace_id",
        &d.workspace_id.to_string(),
    );
    for (name, values) in [
        ("names", &d.names),
        ("emails", &d.emails),
        ("phones", &d.phones),
        ("handles", &d.handles),
        ("tags", &d.tags),
    ] {
        for value in values {
            add_text(&mut doc, schema, name, value);
        }
    }
    add_text(&mut doc, schema, "organization", &d.organization);
    doc.add_i64(field(schema, "last_seen_at"), d.last_seen_at);
    doc
}

/// Deletes the documents whose `name` field holds one of `ids`.
fn delete_where(
    writer: &IndexWriter<TantivyDocument>,
    schema: &Schema,
    name: &str,
    ids: impl IntoIterator<Item = impl std::fmt::Display>,
) {
    let f = field(schema, name);
    for id in ids {
        writer.delete_term(Term::from_field_text(f, &id.to_string()));
    }
}

/// Ids as their raw fields hold them: the UUID, hyphenated.
fn strings(ids: &[impl std::fmt::Display]) -> Vec<String> {
    ids.iter().map(ToString::to_string).collect()
}

/// The words of `text` (as documents are tokenized), each looked for in `fields` with its
/// typos, the last one also as a prefix.
fn words_of(schema: &Schema, fields: &[&str], text: &str) -> Vec<Word> {
    let fields: Vec<Field> = fields.iter().map(|name| field(schema, name)).collect();
    let mut tokens = Vec::new();
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        tokens.push(token.text.clone());
    }
    let count = tokens.len();
    tokens
        .into_iter()
        .enumerate()
        .map(|(index, word)| Word {
            fields: fields.clone(),
            dfa: Arc::new(Dfa::new(
                &word,
                super::typos_for(word.chars().count()),
                index + 1 == count,
            )),
        })
        .collect()
}

/// The search of `q` as a plan: the workspace, every filter given, the words.
fn plan_of(schema: &Schema, q: &InteractionQuery) -> Plan {
    let f = &q.filter;
    let mut plan = Plan {
        words: words_of(schema, &INTERACTION_TEXT, &q.text),
        ..Plan::default()
    };
    for (name, values) in [
        ("workspace_id", vec![q.workspace_id.to_string()]),
        ("customer_id", strings(&f.customer_ids)),
        ("conversation_id", strings(&f.conversation_ids)),
        ("channel", f.channels.clone()),
        ("kind", f.kinds.clone()),
        ("direction", f.directions.clone()),
        ("status", f.statuses.clone()),
        ("language", f.languages.clone()),
        ("sentiment_label", f.sentiments.clone()),
    ] {
        if !values.is_empty() {
            plan.sets.push(TermSet {
                field: field(schema, name),
                values,
            });
        }
    }
    if f.sentiment_min.is_some() || f.sentiment_max.is_some() {
        plan.ranges.push(Range::F64 {
            field: "sentiment",
            lower: f.sentiment_min.map_or(Bound::Unbounded, Bound::Included),
            upper: f.sentiment_max.map_or(Bound::Unbounded, Bound::Included),
        });
    }
    if f.occurred_after.is_some() || f.occurred_before.is_some() {
        plan.ranges.push(Range::I64 {
            field: "occurred_at",
            lower: f
                .occurred_after
                .map_or(Bound::Unbounded, |t| Bound::Included(t.timestamp_millis())),
            upper: f
                .occurred_before
                .map_or(Bound::Unbounded, |t| Bound::Excluded(t.timestamp_millis())),
        });
    }
    plan
}

/// The best `offset..offset + limit` hits by relevance over every segment's matches,
/// ties in index order, as ids.
fn by_relevance<I: TypedId>(
    snapshot: &Snapshot,
    matched: &[(u32, eval::Matched)],
    offset: usize,
    limit: usize,
) -> Result<Vec<I>> {
    let mut best: Vec<(u32, u32, tantivy::DocId)> = Vec::new();
    for (segment, m) in matched {
        best.extend(
            eval::best_by_score(m, offset + limit)
                .into_iter()
                .map(|(points, doc)| (points, *segment, doc)),
        );
    }
    best.sort_unstable_by_key(|&(points, segment, doc)| (std::cmp::Reverse(points), segment, doc));
    let readers = snapshot.searcher.segment_readers();
    let mut ids: HashMap<u32, eval::Ids> = HashMap::new();
    best.into_iter()
        .skip(offset)
        .take(limit)
        .map(|(_, segment, doc)| {
            let column = match ids.entry(segment) {
                std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
                std::collections::hash_map::Entry::Vacant(entry) => {
                    entry.insert(eval::Ids::open(&readers[segment as usize])?)
                }
            };
            Ok(I::from_uuid(column.uuid(doc)?))
        })
        .collect()
}

fn search_interactions(live: &Live, q: &InteractionQuery) -> Result<Hits<InteractionId>> {
    let schema = live.index.schema();
    let snapshot = live.snapshot();
    let plan = plan_of(&schema, q);
    let matched = eval::evaluate_all(&snapshot, &plan, q.sort == SearchSort::Relevance)?;
    let total: u64 = matched.iter().map(|(_, m)| m.bits.count()).sum();
    // Clamped whatever the caller checked.
    let offset = q.offset.min(MAX_HITS);
    let limit = q.limit.clamp(1, MAX_HITS);
    let readers = snapshot.searcher.segment_readers();
    let (ids, occurred_at) = match q.sort {
        SearchSort::Relevance => (
            by_relevance(&snapshot, &matched, offset, limit)?,
            Vec::new(),
        ),
        SearchSort::Newest | SearchSort::Oldest => {
            let mut positions = Vec::new();
            for (segment, m) in &matched {
                let reader = &readers[*segment as usize];
                let view = &snapshot.segments[*segment as usize];
                let best = eval::best_by_date(
                    reader,
                    view,
                    &m.bits,
                    offset + limit,
                    q.sort,
                    q.filter.after_position,
                )?;
                let mut ids = eval::Ids::open(reader)?;
                for (occurred_at, doc) in best {
                    positions.push(DatePosition {
                        occurred_at,
                        id: InteractionId::from_uuid(ids.uuid(doc)?),
                    });
                }
            }
            positions.sort_by(|a, b| super::date_order(q.sort, a, b));
            let page: Vec<DatePosition> = positions.into_iter().skip(offset).take(limit).collect();
            (
                page.iter().map(|p| p.id).collect(),
                page.iter().map(|p| p.occurred_at).collect(),
            )
        }
    };
    let facets = if q.facets {
        let list = |name: &str, size: usize| -> Result<Vec<(String, u64)>> {
            let f = field(&schema, name);
            let mut counts = HashMap::new();
            for (segment, m) in &matched {
                eval::count_values(
                    &readers[*segment as usize],
                    &snapshot.segments[*segment as usize],
                    &m.bits,
                    f,
                    name,
                    &mut counts,
                )?;
            }
            let mut list: Vec<(String, u64)> = counts.into_iter().collect();
            list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            list.truncate(size);
            Ok(list)
        };
        Some(Facets {
            channel: list("channel", 50)?,
            kind: list("kind", 50)?,
            sentiment: list("sentiment_label", 10)?,
            language: list("language", 100)?,
        })
    } else {
        None
    };
    Ok(Hits {
        ids,
        estimated_total: total,
        facets,
        occurred_at,
    })
}

fn search_customers(
    live: &Live,
    workspace: WorkspaceId,
    text: &str,
    limit: usize,
) -> Result<Hits<CustomerId>> {
    if super::words(text).is_empty() {
        return Ok(Hits::default());
    }
    let schema = live.index.schema();
    let snapshot = live.snapshot();
    let plan = Plan {
        sets: vec![TermSet {
            field: field(&schema, "workspace_id"),
            values: vec![workspace.to_string()],
        }],
        words: words_of(&schema, &CUSTOMER_TEXT, text),
        ranges: Vec::new(),
    };
    let matched = eval::evaluate_all(&snapshot, &plan, true)?;
    let total: u64 = matched.iter().map(|(_, m)| m.bits.count()).sum();
    Ok(Hits {
        ids: by_relevance(&snapshot, &matched, 0, limit.clamp(1, MAX_HITS))?,
        estimated_total: total,
        facets: None,
        occurred_at: Vec::new(),
    })
}

#[async_trait::async_trait]
impl SearchIndex for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
    }

    /// Applies the writes in one commit per index: searchable when it returns.
    async fn submit(&self, changes: Changes) -> Result<Submitted> {
        let (interactions, customers): (Vec<Change>, Vec<Change>) =
            changes.0.into_iter().partition(|change| {
                matches!(
                    change,
                    Change::UpsertInteractions(_)
                        | Change::DeleteInteractions(_)
                        | Change::DeleteInteractionsOf(_)
                )
            });
        // One after the other: side by side, the two commits (each with its indexing
        // threads) only slowed each other down on two cores.
        self.apply(IndexName::Interactions, interactions).await?;
        self.apply(IndexName::Customers, customers).await?;
        Ok(Submitted::default())
    }

    async fn refresh(&self) -> Result<()> {
        for index in IndexName::ALL {
            self.blocking(index, |live| live.refresh()).await?;
        }
        Ok(())
    }

    async fn upsert_interactions(&self, docs: Vec<InteractionDoc>) -> Result<()> {
        self.upsert(docs).await
    }

    async fn delete_interactions(&self, ids: Vec<InteractionId>) -> Result<()> {
        self.delete(IndexName::Interactions, "id", ids).await
    }

    async fn delete_interactions_of(&self, customer_ids: Vec<CustomerId>) -> Result<()> {
        self.delete(IndexName::Interactions, "customer_id", customer_ids)
            .await
    }

    async fn upsert_customers(&self, docs: Vec<CustomerDoc>) -> Result<()> {
        self.upsert(docs).await
    }

    async fn delete_customers(&self, ids: Vec<CustomerId>) -> Result<()> {
        self.delete(IndexName::Customers, "id", ids).await
    }

    async fn search_interactions(&self, query: &InteractionQuery) -> Result<Hits<InteractionId>> {
        let query = query.clone();
        self.blocking(IndexName::Interactions, move |live| {
            search_interactions(live, &query)
        })
        .await
    }

    async fn search_customers(
        &self,
        workspace_id: WorkspaceId,
        text: &str,
        limit: usize,
    ) -> Result<Hits<CustomerId>> {
        let text = text.to_owned();
        self.blocking(IndexName::Customers, move |live| {
            search_customers(live, workspace_id, &text, limit)
        })
        .await
    }

    async fn begin_rebuild(&self, index: IndexName) -> Result<Box<dyn Rebuild>> {
        let generation = self.live(index).generation + 1;
        let path = self.dir.join(format!("{}-{generation}", index.as_str()));
        let _ = std::fs::remove_dir_all(&path);
        let live = Live::open(&self.dir, index, generation)?;
        Ok(Box::new(EmbeddedRebuild {
            index,
            live: Some(live),
            dir: self.dir.clone(),
            slot: self.slot(index).clone(),
        }))
    }

    async fn destroy(&self) -> Result<()> {
        for index in IndexName::ALL {
            self.blocking(index, |live| {
                live.write(|writer, _| {
                    writer.delete_all_documents().map_err(internal)?;
                    Ok(())
                })
            })
            .await?;
        }
        Ok(())
    }
}

/// A generation being built; `finish` swaps it in.
struct EmbeddedRebuild {
    index: IndexName,
    live: Option<Live>,
    dir: PathBuf,
    slot: Slot,
}

impl EmbeddedRebuild {
    fn add<D: Indexed>(&self, docs: &[D]) -> Result<()> {
        let live = self.live.as_ref().expect("not finished");
        tokio::task::block_in_place(|| live.write(|writer, schema| add_all(writer, schema, docs)))
    }
}

#[async_trait::async_trait]
impl Rebuild for EmbeddedRebuild {
    async fn add_interactions(&mut self, docs: Vec<InteractionDoc>) -> Result<()> {
        self.add(&docs)
    }

    async fn add_customers(&mut self, docs: Vec<CustomerDoc>) -> Result<()> {
        self.add(&docs)
    }

    async fn finish(mut self: Box<Self>) -> Result<()> {
        let live = self.live.take().expect("finished once");
        let generation = live.generation;
        // Release the new generation's writer: the live slot takes it on its next write.
        *live.writer.lock().expect("never poisoned") = None;
        let marker = self.dir.join(format!("{}.current", self.index.as_str()));
        let temporary = self
            .dir
            .join(format!("{}.current.tmp", self.index.as_str()));
        std::fs::write(&temporary, generation.to_string()).map_err(internal)?;
        std::fs::rename(&temporary, &marker).map_err(internal)?;
        let old = std::mem::replace(
            &mut *self.slot.write().expect("never poisoned"),
            Arc::new(live),
        );
        let old_path = self
            .dir
            .join(format!("{}-{}", self.index.as_str(), old.generation));
        drop(old);
        let _ = std::fs::remove_dir_all(old_path);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::{date_order, SearchFilter};
    use std::collections::BTreeSet;

    const CHANNELS: [&str; 3] = ["mastodon", "bluesky", "email"];

    fn doc(n: usize, workspace: WorkspaceId, customers: &[CustomerId]) -> InteractionDoc {
        let channel = CHANNELS[n % 3];
        InteractionDoc {
            id: InteractionId::new(),
            workspace_id: workspace,
            customer_id: Some(customers[n % customers.len()]),
            conversation_id: None,
            channel: channel.into(),
            kind: if n.is_multiple_of(5) {
                "reply"
            } else {
                "mention"
            }
            .into(),
            direction: "inbound".into(),
            status: "none".into(),
            sentiment: (!n.is_multiple_of(4)).then(|| (n % 7) as f64 / 7.0 - 0.5),
            sentiment_label: crate::search::sentiment_label(
                (!n.is_multiple_of(4)).then(|| (n % 7) as f64 / 7.0 - 0.5),
            )
            .into(),
            language: if n.is_multiple_of(10) { "es" } else { "en" }.into(),
            // Seven documents share each millisecond: ties are ordered by id.
            occurred_at: 1_700_000_000_000 + (n / 7) as i64,
            subject: if n.is_multiple_of(11) {
                "export".into()
            } else {
                String::new()
            },
            text: format!("message {} about the export {}", n % 13, n % 97),
            author: format!("user{}", n % 50),
        }
    }

    struct World {
        index: Embedded,
        workspace: WorkspaceId,
        docs: Vec<InteractionDoc>,
        _dir: tempfile::TempDir,
    }

    /// 12,000 documents of one workspace (and a few of another) in several commits, so
    /// the index has a segment large enough for the cached paths and small ones without;
    /// then some rewritten and deleted.
    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let index = Embedded::open(dir.path()).unwrap();
        // One indexing thread: the first commit's 9,000 documents make one segment, not
        // one per thread too small for the cache.
        let live = index.live(IndexName::Interactions);
        *live.writer.lock().unwrap() =
            Some(live.index.writer_with_num_threads(1, WRITER_BYTES).unwrap());
        drop(live);
        let workspace = WorkspaceId::new();
        let customers: Vec<CustomerId> = (0..40).map(|_| CustomerId::new()).collect();
        let mut docs: Vec<InteractionDoc> =
            (0..12_000).map(|n| doc(n, workspace, &customers)).collect();
        let other = WorkspaceId::new();
        let foreign: Vec<InteractionDoc> = (0..30).map(|n| doc(n, other, &customers)).collect();
        index
            .upsert_interactions(docs[..9_000].to_vec())
            .await
            .unwrap();
        for chunk in docs[9_000..].chunks(1_000) {
            index.upsert_interactions(chunk.to_vec()).await.unwrap();
        }
        index.upsert_interactions(foreign).await.unwrap();
        // Rewrite some (the old versions become deletions) and delete others.
        for doc in docs.iter_mut().step_by(17) {
            doc.text = format!("{} rewritten", doc.text);
        }
        let rewritten: Vec<InteractionDoc> = docs.iter().step_by(17).cloned().collect();
        index.upsert_interactions(rewritten).await.unwrap();
        let deleted: Vec<InteractionId> = docs.iter().skip(5).step_by(23).map(|d| d.id).collect();
        index.delete_interactions(deleted.clone()).await.unwrap();
        docs.retain(|d| !deleted.contains(&d.id));
        index.settled().await;
        assert!(
            index
                .live(IndexName::Interactions)
                .snapshot()
                .segments
                .iter()
                .any(|view| view.cache.by_date.is_some()),
            "a segment with its cache, built aside"
        );
        World {
            index,
            workspace,
            docs,
            _dir: dir,
        }
    }

    fn query(world: &World, text: &str, sort: SearchSort) -> InteractionQuery {
        InteractionQuery {
            workspace_id: world.workspace,
            text: text.into(),
            filter: SearchFilter::default(),
            sort,
            offset: 0,
            limit: 50,
            facets: false,
            totals: true,
        }
    }

    fn matches(doc: &InteractionDoc, text: &str) -> bool {
        crate::search::words(text)
            .iter()
            .enumerate()
            .all(|(i, word)| {
                let last = i + 1 == crate::search::words(text).len();
                [&doc.text, &doc.subject, &doc.author].iter().any(|field| {
                    crate::search::words(field)
                        .iter()
                        .any(|token| crate::search::token_matches(token, word, last))
                })
            })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn date_ordered_pages_cover_every_hit_once_in_order_across_segments() {
        let world = world().await;
        for (text, channels) in [
            ("", vec![]),
            ("export", vec!["bluesky".to_owned()]),
            ("rewriten", vec![]),
        ] {
            for sort in [SearchSort::Newest, SearchSort::Oldest] {
                let mut expected: Vec<DatePosition> = world
                    .docs
                    .iter()
                    .filter(|d| channels.is_empty() || channels.contains(&d.channel))
                    .filter(|d| matches(d, text))
                    .map(|d| DatePosition {
                        occurred_at: d.occurred_at,
                        id: d.id,
                    })
                    .collect();
                expected.sort_by(|a, b| date_order(sort, a, b));
                let mut seen = Vec::new();
                let mut after = None;
                loop {
                    let mut q = query(&world, text, sort);
                    q.filter.channels = channels.clone();
                    q.filter.after_position = after;
                    let hits = world.index.search_interactions(&q).await.unwrap();
                    assert_eq!(
                        hits.estimated_total as usize,
                        expected.len(),
                        "{text:?} {sort:?}"
                    );
                    let page = hits.positions();
                    if page.is_empty() {
                        break;
                    }
                    after = page.last().copied();
                    seen.extend(page);
                }
                assert_eq!(
                    seen.len(),
                    expected.len(),
                    "{text:?} {sort:?}: every hit once"
                );
                assert_eq!(
                    seen, expected,
                    "{text:?} {sort:?}: in date order, ties by id"
                );
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn counts_facets_filters_and_relevance_agree_with_every_document_checked() {
        let world = world().await;
        for text in ["", "export", "mesage 7", "abuot", "user4", "nothingatall"] {
            let expected: Vec<&InteractionDoc> =
                world.docs.iter().filter(|d| matches(d, text)).collect();
            let mut q = query(&world, text, SearchSort::Relevance);
            q.facets = true;
            q.limit = 1_000;
            let hits = world.index.search_interactions(&q).await.unwrap();
            assert_eq!(hits.estimated_total as usize, expected.len(), "{text:?}");
            let ids: BTreeSet<InteractionId> = hits.ids.iter().copied().collect();
            assert_eq!(
                ids.len(),
                hits.ids.len().min(expected.len()),
                "{text:?}: no hit twice"
            );
            assert!(
                ids.iter().all(|id| expected.iter().any(|d| d.id == *id)),
                "{text:?}"
            );
            let facets = hits.facets.unwrap();
            let mut by_channel = std::collections::HashMap::new();
            for d in &expected {
                *by_channel.entry(d.channel.clone()).or_insert(0u64) += 1;
            }
            let mut want: Vec<(String, u64)> = by_channel.into_iter().collect();
            want.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            assert_eq!(facets.channel, want, "{text:?}");
            let labelled: u64 = facets.sentiment.iter().map(|(_, n)| n).sum();
            assert_eq!(labelled as usize, expected.len());
        }
        // A hit matching a word in two fields ranks above hits matching it in one.
        let hits = world
            .index
            .search_interactions(&query(&world, "export", SearchSort::Relevance))
            .await
            .unwrap();
        let first = world.docs.iter().find(|d| d.id == hits.ids[0]).unwrap();
        assert_eq!(first.subject, "export");
        // Filters and ranges, and paging by offset covers the same set once.
        let mut q = query(&world, "message", SearchSort::Relevance);
        q.filter.languages = vec!["es".into()];
        q.filter.kinds = vec!["reply".into()];
        q.filter.sentiment_min = Some(-0.2);
        q.filter.occurred_after = chrono::DateTime::from_timestamp_millis(1_700_000_000_100);
        let expected: BTreeSet<InteractionId> = world
            .docs
            .iter()
            .filter(|d| d.language == "es" && d.kind == "reply")
            .filter(|d| d.sentiment.is_some_and(|s| s >= -0.2))
            .filter(|d| d.occurred_at >= 1_700_000_000_100)
            .map(|d| d.id)
            .collect();
        let mut seen = Vec::new();
        for page in 0.. {
            q.offset = page * 7;
            q.limit = 7;
            let hits = world.index.search_interactions(&q).await.unwrap();
            assert_eq!(hits.estimated_total as usize, expected.len());
            if hits.ids.is_empty() {
                break;
            }
            seen.extend(hits.ids);
        }
        assert_eq!(
            seen.len(),
            expected.len(),
            "pages by offset cover each hit once"
        );
        assert_eq!(seen.into_iter().collect::<BTreeSet<_>>(), expected);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_segments_answer_the_same_before_their_caches_are_built_aside() {
        let world = world().await;
        let mut queries = Vec::new();
        for text in ["", "export", "mesage 7", "user4"] {
            for sort in [
                SearchSort::Relevance,
                SearchSort::Newest,
                SearchSort::Oldest,
            ] {
                let mut q = query(&world, text, sort);
                q.facets = true;
                q.limit = 200;
                queries.push(q.clone());
                q.filter.channels = vec!["bluesky".into()];
                q.filter.languages = vec!["en".into()];
                queries.push(q);
            }
        }
        let mut cached = Vec::new();
        for q in &queries {
            cached.push(world.index.search_interactions(q).await.unwrap());
        }
        // The same searcher with its large segments cold, as a commit leaves a merge's
        // until the cache built aside replaces it (none is built here).
        let live = world.index.live(IndexName::Interactions);
        let (cold, _) = live
            .snapshots
            .replace(|_| {
                let (cold, deferred) = warm::warm(
                    IndexName::Interactions,
                    live.reader.searcher(),
                    None,
                    NewSegments::Defer,
                )?;
                Ok((Some(cold), deferred))
            })
            .unwrap();
        assert!(cold.is_cold());
        assert!(cold
            .segments
            .iter()
            .all(|view| view.cache.by_date.is_none()));
        for (q, cached) in queries.iter().zip(&cached) {
            let answer = world.index.search_interactions(q).await.unwrap();
            assert_eq!(&answer, cached, "{:?} {:?}", q.text, q.sort);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_submitted_batch_applies_its_writes_in_order_in_one_commit_per_index() {
        let dir = tempfile::tempdir().unwrap();
        let index = Embedded::open(dir.path()).unwrap();
        let workspace = WorkspaceId::new();
        let customers: Vec<CustomerId> = (0..3).map(|_| CustomerId::new()).collect();
        let docs: Vec<InteractionDoc> = (0..6).map(|n| doc(n, workspace, &customers)).collect();
        let customer = |id: CustomerId| CustomerDoc {
            id,
            workspace_id: workspace,
            names: vec!["Ana Lima".into()],
            emails: Vec::new(),
            phones: Vec::new(),
            handles: Vec::new(),
            organization: String::new(),
            tags: Vec::new(),
            last_seen_at: 0,
        };
        let mut changes = Changes::default();
        changes.push(Change::UpsertInteractions(docs.clone()));
        // Deleted after being written in the same batch: gone.
        changes.push(Change::DeleteInteractions(vec![docs[0].id]));
        // Every interaction of customer 1 (docs 1 and 4) gone with it.
        changes.push(Change::DeleteInteractionsOf(vec![customers[1]]));
        changes.push(Change::UpsertCustomers(vec![
            customer(customers[0]),
            customer(customers[1]),
        ]));
        changes.push(Change::DeleteCustomers(vec![customers[1]]));
        // Written again after its delete: present.
        changes.push(Change::UpsertInteractions(vec![docs[4].clone()]));
        changes.push(Change::UpsertInteractions(Vec::new()));
        assert_eq!(changes.0.len(), 6, "an empty write is dropped");
        let submitted = index.submit(changes).await.unwrap();
        assert_eq!(submitted, Submitted::default(), "nothing left to wait for");
        assert_eq!(
            index.progress(&submitted).await.unwrap(),
            crate::search::Progress::Applied
        );
        let q = InteractionQuery {
            workspace_id: workspace,
            text: String::new(),
            filter: SearchFilter::default(),
            sort: SearchSort::Newest,
            offset: 0,
            limit: 50,
            facets: false,
            totals: true,
        };
        let found: BTreeSet<InteractionId> = index
            .search_interactions(&q)
            .await
            .unwrap()
            .ids
            .into_iter()
            .collect();
        let want: BTreeSet<InteractionId> = [2, 3, 4, 5].iter().map(|&n| docs[n].id).collect();
        assert_eq!(found, want);
        let people = index.search_customers(workspace, "ana", 10).await.unwrap();
        assert_eq!(people.ids, vec![customers[0]]);
    }
}
