//! The embedded search backend: tantivy indexes in `data_dir/search/<index>-<generation>`,
//! with `data_dir/search/<index>.current` naming the live generation (a rebuild writes a
//! new generation and swaps the name, so searches never see a half-built index).
//!
//! Text is tokenized into runs of letters and digits, lower-cased and ASCII-folded, for
//! documents and queries alike. A query word becomes a fuzzy term query (0, 1 or 2 typos by
//! its length, a prefix query for the last word) over each searchable field; all words are
//! required. Filters are term and range queries on raw fields, dates sort by a fast field,
//! facet counts are terms aggregations over fast fields.
//!
//! One process writes an embedded index (tantivy's lock). Another process over the same
//! data directory still searches it but does not index (its indexer reports why): run
//! several processes with Meilisearch.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use tantivy::aggregation::agg_req::Aggregations;
use tantivy::aggregation::AggregationCollector;
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, FuzzyTermQuery, Occur, Query, QueryClone, RangeQuery, TermQuery,
};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value, FAST,
    INDEXED, STORED, STRING,
};
use tantivy::tokenizer::{AsciiFoldingFilter, LowerCaser, SimpleTokenizer, TextAnalyzer};
use tantivy::{
    DocAddress, Index, IndexReader, IndexWriter, Order, ReloadPolicy, TantivyDocument, Term,
};
use uuid::Uuid;

use crate::ids::TypedId;
use entity::{CustomerId, InteractionId, WorkspaceId};

use super::{
    CustomerDoc, DatePosition, Facets, Hits, IndexName, InteractionDoc, InteractionQuery, Rebuild,
    SearchIndex, SearchSort, CUSTOMER_TEXT, INTERACTION_TEXT, MAX_HITS,
};
use crate::error::{Error, Result};

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

/// One live tantivy index and its writer (taken on first write).
struct Live {
    index: Index,
    reader: IndexReader,
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    generation: u64,
}

impl Live {
    fn open(dir: &Path, index_name: IndexName, generation: u64) -> Result<Live> {
        let path = dir.join(format!("{}-{generation}", index_name.as_str()));
        std::fs::create_dir_all(&path).map_err(internal)?;
        let schema = schema_of(index_name);
        let directory = tantivy::directory::MmapDirectory::open(&path).map_err(internal)?;
        let index = Index::open_or_create(directory, schema).map_err(internal)?;
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(internal)?;
        Ok(Live {
            index,
            reader,
            writer: Mutex::new(None),
            generation,
        })
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
    add_text(&mut doc, schema, "customer_id", &d.customer_id.to_string());
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

/// `any of values` on a raw field, as a required clause.
fn any_of(schema: &Schema, name: &str, values: &[String]) -> Option<Box<dyn Query>> {
    if values.is_empty() {
        return None;
    }
    let f = field(schema, name);
    let clauses: Vec<(Occur, Box<dyn Query>)> = values
        .iter()
        .map(|value| {
            let query: Box<dyn Query> = Box::new(TermQuery::new(
                Term::from_field_text(f, value),
                IndexRecordOption::Basic,
            ));
            (Occur::Should, query)
        })
        .collect();
    Some(Box::new(BooleanQuery::new(clauses)))
}

/// The required clauses of a search: the workspace, and each word of `text` matching
/// any of the `searchable` fields with the typo and prefix rules.
fn required_clauses(
    schema: &Schema,
    searchable: &[&str],
    workspace: WorkspaceId,
    text: &str,
) -> Vec<(Occur, Box<dyn Query>)> {
    let fields: Vec<Field> = searchable.iter().map(|name| field(schema, name)).collect();
    let mut tokens = Vec::new();
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    while let Some(token) = stream.next() {
        tokens.push(token.text.clone());
    }
    let count = tokens.len();
    let workspace: Box<dyn Query> = Box::new(TermQuery::new(
        Term::from_field_text(field(schema, "workspace_id"), &workspace.to_string()),
        IndexRecordOption::Basic,
    ));
    let words = tokens.into_iter().enumerate().map(|(index, word)| {
        let typos = super::typos_for(word.chars().count());
        let last = index + 1 == count;
        let alternatives: Vec<(Occur, Box<dyn Query>)> = fields
            .iter()
            .map(|f| {
                let term = Term::from_field_text(*f, &word);
                let query: Box<dyn Query> = if last {
                    Box::new(FuzzyTermQuery::new_prefix(term, typos, true))
                } else {
                    Box::new(FuzzyTermQuery::new(term, typos, true))
                };
                (Occur::Should, query)
            })
            .collect();
        let clause: Box<dyn Query> = Box::new(BooleanQuery::new(alternatives));
        (Occur::Must, clause)
    });
    std::iter::once((Occur::Must, workspace))
        .chain(words)
        .collect()
}

fn read_ids<I: TypedId>(
    searcher: &tantivy::Searcher,
    schema: &Schema,
    addresses: &[DocAddress],
) -> Result<Vec<I>> {
    let id = field(schema, "id");
    addresses
        .iter()
        .map(|address| {
            let doc: TantivyDocument = searcher.doc(*address).map_err(internal)?;
            let text = doc
                .get_first(id)
                .and_then(|value| value.as_str())
                .ok_or_else(|| internal("a document without id"))?;
            Uuid::parse_str(text).map(I::from_uuid).map_err(internal)
        })
        .collect()
}

fn search_interactions(live: &Live, q: &InteractionQuery) -> Result<Hits<InteractionId>> {
    let schema = live.index.schema();
    let mut clauses = required_clauses(&schema, &INTERACTION_TEXT, q.workspace_id, &q.text);
    let f = &q.filter;
    for clause in [
        any_of(&schema, "customer_id", &strings(&f.customer_ids)),
        any_of(&schema, "conversation_id", &strings(&f.conversation_ids)),
        any_of(&schema, "channel", &f.channels),
        any_of(&schema, "kind", &f.kinds),
        any_of(&schema, "direction", &f.directions),
        any_of(&schema, "status", &f.statuses),
        any_of(&schema, "language", &f.languages),
    ]
    .into_iter()
    .flatten()
    {
        clauses.push((Occur::Must, clause));
    }
    if f.sentiment_min.is_some() || f.sentiment_max.is_some() {
        let s = field(&schema, "sentiment");
        let bound = |value: Option<f64>| match value {
            Some(v) => Bound::Included(Term::from_field_f64(s, v)),
            None => Bound::Unbounded,
        };
        let range: Box<dyn Query> = Box::new(RangeQuery::new(
            bound(f.sentiment_min),
            bound(f.sentiment_max),
        ));
        clauses.push((Occur::Must, range));
    }
    if f.occurred_after.is_some() || f.occurred_before.is_some() {
        let at = field(&schema, "occurred_at");
        let lower = match f.occurred_after {
            Some(t) => Bound::Included(Term::from_field_i64(at, t.timestamp_millis())),
            None => Bound::Unbounded,
        };
        let upper = match f.occurred_before {
            Some(t) => Bound::Excluded(Term::from_field_i64(at, t.timestamp_millis())),
            None => Bound::Unbounded,
        };
        clauses.push((Occur::Must, Box::new(RangeQuery::new(lower, upper))));
    }
    let query = BooleanQuery::new(clauses);
    let searcher = live.reader.searcher();
    // Clamped whatever the caller checked: tantivy reserves `offset + limit` slots.
    let offset = q.offset.min(MAX_HITS);
    let limit = q.limit.clamp(1, MAX_HITS);
    let (ids, occurred_at, total) = match q.sort {
        SearchSort::Relevance => {
            let top = TopDocs::with_limit(limit).and_offset(offset);
            let (docs, total) = searcher.search(&query, &(top, Count)).map_err(internal)?;
            let addresses: Vec<DocAddress> = docs.into_iter().map(|(_, a)| a).collect();
            (read_ids(&searcher, &schema, &addresses)?, Vec::new(), total)
        }
        SearchSort::Newest | SearchSort::Oldest => {
            let total = searcher.search(&query, &Count).map_err(internal)?;
            let positions = by_date(&searcher, &schema, &query, q, offset, limit)?;
            let ids = positions.iter().map(|p| p.id).collect();
            let at = positions.iter().map(|p| p.occurred_at).collect();
            (ids, at, total)
        }
    };
    let facets = if q.facets {
        let request: Aggregations = serde_json::from_value(serde_json::json!({
            "channel": { "terms": { "field": "channel", "size": 50 } },
            "kind": { "terms": { "field": "kind", "size": 50 } },
            "sentiment": { "terms": { "field": "sentiment_label", "size": 10 } },
            "language": { "terms": { "field": "language", "size": 100 } },
        }))
        .map_err(internal)?;
        let collector = AggregationCollector::from_aggs(request, Default::default());
        let result = searcher.search(&query, &collector).map_err(internal)?;
        let value = serde_json::to_value(&result).map_err(internal)?;
        let buckets = |name: &str| -> Vec<(String, u64)> {
            value[name]["buckets"]
                .as_array()
                .map(|buckets| {
                    buckets
                        .iter()
                        .filter_map(|b| {
                            Some((b["key"].as_str()?.to_owned(), b["doc_count"].as_u64()?))
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        Some(Facets {
            channel: buckets("channel"),
            kind: buckets("kind"),
            sentiment: buckets("sentiment"),
            language: buckets("language"),
        })
    } else {
        None
    };
    Ok(Hits {
        ids,
        estimated_total: total as u64,
        facets,
        occurred_at,
    })
}

/// A page of a date-ordered search in the total order `(occurred_at, id)` (tantivy orders
/// ties on the fast field by document address, which is not stable across pages). The
/// keyset position, when given, is a range filter, so a deep page costs what the first
/// one costs: the best `offset + limit` hits by date are fetched, the group sharing the
/// last millisecond (which the cut may have split) is fetched again ordered by id, and
/// the first `offset` are dropped.
fn by_date(
    searcher: &tantivy::Searcher,
    schema: &Schema,
    base: &BooleanQuery,
    q: &InteractionQuery,
    offset: usize,
    limit: usize,
) -> Result<Vec<DatePosition>> {
    let order = if q.sort == SearchSort::Oldest {
        Order::Asc
    } else {
        Order::Desc
    };
    let at = field(schema, "occurred_at");
    let query: Box<dyn Query> = match q.filter.after_position {
        Some(position) => Box::new(BooleanQuery::new(vec![
            (Occur::Must, base.box_clone()),
            (Occur::Must, beyond(schema, &order, position)),
        ])),
        None => base.box_clone(),
    };
    let want = offset + limit;
    let top: Vec<(i64, DocAddress)> = searcher
        .search(
            &query,
            &TopDocs::with_limit(want).order_by_fast_field::<i64>("occurred_at", order.clone()),
        )
        .map_err(internal)?;
    let addresses: Vec<DocAddress> = top.iter().map(|(_, address)| *address).collect();
    let ids = read_ids(searcher, schema, &addresses)?;
    let mut positions: Vec<DatePosition> = top
        .iter()
        .zip(ids)
        .map(|((occurred_at, _), id)| DatePosition {
            occurred_at: *occurred_at,
            id,
        })
        .collect();
    if let Some(&(last, _)) = top.last().filter(|_| top.len() == want) {
        positions.retain(|p| p.occurred_at != last);
        let exact = Term::from_field_i64(at, last);
        let ties = BooleanQuery::new(vec![
            (Occur::Must, query.box_clone()),
            (
                Occur::Must,
                Box::new(RangeQuery::new(
                    Bound::Included(exact.clone()),
                    Bound::Included(exact),
                )),
            ),
        ]);
        let room = want - positions.len();
        let tied: Vec<(String, DocAddress)> = searcher
            .search(
                &ties,
                &TopDocs::with_limit(room).order_by_string_fast_field("id", order),
            )
            .map_err(internal)?;
        for (id, _) in tied {
            positions.push(DatePosition {
                occurred_at: last,
                id: Uuid::parse_str(&id)
                    .map(InteractionId::from_uuid)
                    .map_err(internal)?,
            });
        }
    }
    positions.sort_by(|a, b| super::date_order(q.sort, a, b));
    Ok(positions.into_iter().skip(offset).take(limit).collect())
}

/// Hits strictly after `position` in date `order`: an earlier (or later) millisecond, or
/// the same one and a smaller (or greater) id.
fn beyond(schema: &Schema, order: &Order, position: DatePosition) -> Box<dyn Query> {
    let at = Term::from_field_i64(field(schema, "occurred_at"), position.occurred_at);
    let id = Term::from_field_text(field(schema, "id"), &position.id.to_string());
    let after = |term: Term| -> Box<dyn Query> {
        match order {
            Order::Desc => Box::new(RangeQuery::new(Bound::Unbounded, Bound::Excluded(term))),
            Order::Asc => Box::new(RangeQuery::new(Bound::Excluded(term), Bound::Unbounded)),
        }
    };
    let same_millisecond: Box<dyn Query> = Box::new(RangeQuery::new(
        Bound::Included(at.clone()),
        Bound::Included(at.clone()),
    ));
    let tie: Box<dyn Query> = Box::new(BooleanQuery::new(vec![
        (Occur::Must, same_millisecond),
        (Occur::Must, after(id)),
    ]));
    Box::new(BooleanQuery::new(vec![
        (Occur::Should, after(at)),
        (Occur::Should, tie),
    ]))
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
    let clauses = required_clauses(&schema, &CUSTOMER_TEXT, workspace, text);
    let query = BooleanQuery::new(clauses);
    let searcher = live.reader.searcher();
    let (docs, total) = searcher
        .search(
            &query,
            &(TopDocs::with_limit(limit.clamp(1, MAX_HITS)), Count),
        )
        .map_err(internal)?;
    let addresses: Vec<DocAddress> = docs.into_iter().map(|(_, a)| a).collect();
    Ok(Hits {
        ids: read_ids(&searcher, &schema, &addresses)?,
        estimated_total: total as u64,
        facets: None,
        occurred_at: Vec::new(),
    })
}

#[async_trait::async_trait]
impl SearchIndex for Embedded {
    fn backend(&self) -> &'static str {
        "embedded"
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
