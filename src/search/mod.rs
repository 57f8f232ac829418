//! Full-history search: one [`SearchIndex`] trait, two backends with the same behaviour
//! (the contract tests run against both):
//! - [`embedded::Embedded`] (tantivy, files under the data directory), the default;
//! - [`meili::Meili`] (meilisearch-sdk), when `RAPPORT_MEILI_URL` is set.
//!
//! Two indexes: `interactions` and `customers`. Every document carries its workspace and
//! every search is filtered by the caller's workspace. The database stays the truth: the
//! [`indexer`] keeps the indexes in step with the event log, `rapport reindex` rebuilds
//! them. Backends return ids in order; GraphQL loads the rows and highlights the matches
//! itself with [`highlight`], so highlighting is the same whatever the backend.
//!
//! Matching rules (Meilisearch's defaults, reproduced by the embedded backend): every
//! query word must match (in any searchable field); a word of 5 letters or more may have
//! one typo, of 9 or more two; the last word also matches as a prefix; case and accents
//! are folded (`canción` finds `cancion`).

pub mod embedded;
pub mod indexer;
pub mod meili;

use chrono::{DateTime, Utc};
use entity::{ConversationId, CustomerId, InteractionId, WorkspaceId};

use crate::error::{Error, Result};

/// The two indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexName {
    Interactions,
    Customers,
}

impl IndexName {
    pub const ALL: [IndexName; 2] = [IndexName::Interactions, IndexName::Customers];

    pub fn as_str(self) -> &'static str {
        match self {
            IndexName::Interactions => "interactions",
            IndexName::Customers => "customers",
        }
    }

    pub fn parse(name: &str) -> Option<IndexName> {
        IndexName::ALL
            .into_iter()
            .find(|index| index.as_str() == name)
    }
}

/// The searchable fields of the interactions index, most important first.
pub const INTERACTION_TEXT: [&str; 3] = ["text", "subject", "author"];
/// The searchable fields of the customers index.
pub const CUSTOMER_TEXT: [&str; 6] = [
    "names",
    "emails",
    "phones",
    "handles",
    "organization",
    "tags",
];

pub use crate::domain::document::{sentiment_label, CustomerDoc, InteractionDoc};

/// How hits are ordered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchSort {
    #[default]
    Relevance,
    Newest,
    Oldest,
}

/// Filters on interaction hits; empty lists mean "any".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchFilter {
    pub customer_ids: Vec<CustomerId>,
    pub conversation_ids: Vec<ConversationId>,
    pub channels: Vec<String>,
    pub kinds: Vec<String>,
    pub directions: Vec<String>,
    pub statuses: Vec<String>,
    pub languages: Vec<String>,
    /// Sentiment buckets as stored (`domain::document::sentiment_label`).
    pub sentiments: Vec<String>,
    pub sentiment_min: Option<f64>,
    pub sentiment_max: Option<f64>,
    pub occurred_after: Option<DateTime<Utc>>,
    pub occurred_before: Option<DateTime<Utc>>,
    /// Keyset paging of a date-ordered search: only hits strictly after this position in
    /// the query's order, `(occurred_at, id)` (newest: older, or as old with a smaller id;
    /// oldest: the reverse). Ignored by relevance order. A range filter, so a deep page
    /// costs what the first one costs.
    pub after_position: Option<DatePosition>,
}

/// Where a hit stands in a date-ordered search: ties on the millisecond are broken by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatePosition {
    /// Unix milliseconds.
    pub occurred_at: i64,
    pub id: InteractionId,
}

/// The most hits a relevance-ordered search reaches (`offset + limit`), as Meilisearch's
/// default `maxTotalHits`; deeper pages are read in date order with keyset cursors.
/// Backends also clamp `offset` and `limit` to it, so no number from a request can make
/// them allocate more.
pub const MAX_HITS: usize = 1_000;

/// One search over interactions.
#[derive(Clone, Debug, PartialEq)]
pub struct InteractionQuery {
    pub workspace_id: WorkspaceId,
    pub text: String,
    pub filter: SearchFilter,
    pub sort: SearchSort,
    pub offset: usize,
    pub limit: usize,
    pub facets: bool,
    /// Whether the answer shows `estimated_total`. A page after a date-ordered cursor
    /// may cost a backend a second search for it (Meilisearch counts what its filter
    /// leaves); the embedded index counts the whole search either way.
    pub totals: bool,
}

/// Counts of hits by value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facets {
    pub channel: Vec<(String, u64)>,
    pub kind: Vec<(String, u64)>,
    pub sentiment: Vec<(String, u64)>,
    pub language: Vec<(String, u64)>,
}

/// Ids in order (of interactions or of customers), with the estimated number of hits in all.
#[derive(Clone, Debug, PartialEq)]
pub struct Hits<I> {
    pub ids: Vec<I>,
    pub estimated_total: u64,
    pub facets: Option<Facets>,
    /// For date-ordered searches, the `occurred_at` (Unix milliseconds) of each hit, in
    /// the order of `ids` (for keyset cursors); empty for relevance order.
    pub occurred_at: Vec<i64>,
}

impl<I> Default for Hits<I> {
    fn default() -> Self {
        Hits {
            ids: Vec::new(),
            estimated_total: 0,
            facets: None,
            occurred_at: Vec::new(),
        }
    }
}

impl Hits<InteractionId> {
    /// The position of each hit of a date-ordered search.
    pub fn positions(&self) -> Vec<DatePosition> {
        self.ids
            .iter()
            .zip(&self.occurred_at)
            .map(|(id, at)| DatePosition {
                occurred_at: *at,
                id: *id,
            })
            .collect()
    }
}

/// Orders date positions in a search's date order (newest: descending).
pub fn date_order(sort: SearchSort, a: &DatePosition, b: &DatePosition) -> std::cmp::Ordering {
    match sort {
        SearchSort::Oldest => a.cmp(b),
        _ => b.cmp(a),
    }
}

/// One write of a batch of [`Changes`].
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    UpsertInteractions(Vec<InteractionDoc>),
    DeleteInteractions(Vec<InteractionId>),
    /// Every interaction of these customers.
    DeleteInteractionsOf(Vec<CustomerId>),
    UpsertCustomers(Vec<CustomerDoc>),
    DeleteCustomers(Vec<CustomerId>),
}

impl Change {
    /// Whether the write touches nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            Change::UpsertInteractions(docs) => docs.is_empty(),
            Change::DeleteInteractions(ids) => ids.is_empty(),
            Change::DeleteInteractionsOf(ids) | Change::DeleteCustomers(ids) => ids.is_empty(),
            Change::UpsertCustomers(docs) => docs.is_empty(),
        }
    }
}

/// Writes applied in their order (a delete after an upsert of the same id deletes it).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes(pub Vec<Change>);

impl Changes {
    /// Adds a write (nothing when it touches nothing).
    pub fn push(&mut self, change: Change) {
        if !change.is_empty() {
            self.0.push(change);
        }
    }
}

/// Writes a backend accepted: the ids of its tasks still to check (Meilisearch), none
/// when they were applied before [`SearchIndex::submit`] returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Submitted {
    pub tasks: Vec<u64>,
}

/// Where submitted writes stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// All applied: searchable.
    Applied,
    /// Some still queued or running.
    Applying,
    /// One failed, with the backend's reason; the writes after it may have been applied.
    Failed(String),
}

/// A search backend. Writes are idempotent upserts and deletes by id; `commit`-style
/// durability is the backend's business. The single writes return only once they are
/// searchable; [`SearchIndex::submit`] may return before, for the indexer to pipeline.
#[async_trait::async_trait]
pub trait SearchIndex: Send + Sync {
    /// `embedded` or `meilisearch`.
    fn backend(&self) -> &'static str;
    /// Hands `changes` to the backend, in order, without waiting for them to be
    /// searchable where the backend queues writes; [`SearchIndex::progress`] says when
    /// they are. Fails when the backend refuses them. By default, applies each write.
    async fn submit(&self, changes: Changes) -> Result<Submitted> {
        for change in changes.0 {
            match change {
                Change::UpsertInteractions(docs) => self.upsert_interactions(docs).await?,
                Change::DeleteInteractions(ids) => self.delete_interactions(ids).await?,
                Change::DeleteInteractionsOf(ids) => self.delete_interactions_of(ids).await?,
                Change::UpsertCustomers(docs) => self.upsert_customers(docs).await?,
                Change::DeleteCustomers(ids) => self.delete_customers(ids).await?,
            }
        }
        Ok(Submitted::default())
    }
    /// Whether the writes of `submitted` are applied (an error when the backend cannot
    /// be asked).
    async fn progress(&self, submitted: &Submitted) -> Result<Progress> {
        let _ = submitted;
        Ok(Progress::Applied)
    }
    /// Catches up with writes another process made to the index, where the backend keeps
    /// a view of its own (the embedded index over a shared directory): the processes that
    /// do not hold the indexer's lease call it as they wait for it, and stop writing.
    async fn refresh(&self) -> Result<()> {
        Ok(())
    }
    async fn upsert_interactions(&self, docs: Vec<InteractionDoc>) -> Result<()>;
    async fn delete_interactions(&self, ids: Vec<InteractionId>) -> Result<()>;
    /// Deletes every interaction of these customers (a customer erased).
    async fn delete_interactions_of(&self, customer_ids: Vec<CustomerId>) -> Result<()>;
    async fn upsert_customers(&self, docs: Vec<CustomerDoc>) -> Result<()>;
    async fn delete_customers(&self, ids: Vec<CustomerId>) -> Result<()>;
    async fn search_interactions(&self, query: &InteractionQuery) -> Result<Hits<InteractionId>>;
    async fn search_customers(
        &self,
        workspace_id: WorkspaceId,
        text: &str,
        limit: usize,
    ) -> Result<Hits<CustomerId>>;
    /// Starts a rebuild of `index`: writes go to a fresh copy until [`Self::finish_rebuild`]
    /// swaps it in; searches keep using the old one meanwhile.
    async fn begin_rebuild(&self, index: IndexName) -> Result<Box<dyn Rebuild>>;
    /// Deletes everything this backend stored (tests' unique indexes).
    async fn destroy(&self) -> Result<()>;
}

/// An index being rebuilt aside.
#[async_trait::async_trait]
pub trait Rebuild: Send {
    async fn add_interactions(&mut self, docs: Vec<InteractionDoc>) -> Result<()>;
    async fn add_customers(&mut self, docs: Vec<CustomerDoc>) -> Result<()>;
    /// Makes the rebuilt index the live one and drops the old.
    async fn finish(self: Box<Self>) -> Result<()>;
}

/// Opens the configured backend: Meilisearch when a URL is set, else the embedded index
/// under `data_dir/search`.
pub async fn open(config: &crate::Config) -> anyhow::Result<std::sync::Arc<dyn SearchIndex>> {
    match &config.meili_url {
        Some(url) => Ok(std::sync::Arc::new(
            meili::Meili::connect(url, config.meili_key.as_deref(), &config.meili_index_prefix)
                .await?,
        )),
        None => Ok(std::sync::Arc::new(embedded::Embedded::open(
            &config.data_dir.join("search"),
        )?)),
    }
}

/// The indexer's row in `consumer_offset` for the index `config` opens; call it before
/// [`open`], which fills a new embedded directory.
///
/// A Meilisearch index is shared by every process over the database: one row for all of
/// them ([`indexer::CONSUMER`], or `search:<prefix>` for another index prefix), whose lease
/// lets one process at a time index it. An embedded index is its process's own directory:
/// its own row, named by an id kept in the directory, so each process's index reads every
/// event whatever the others did. A directory indexed before these ids existed keeps the
/// shared row, where its offset is.
pub fn consumer(config: &crate::Config) -> anyhow::Result<String> {
    if config.meili_url.is_some() {
        let default = crate::Config::default().meili_index_prefix;
        return Ok(if config.meili_index_prefix == default {
            indexer::CONSUMER.to_owned()
        } else {
            format!("{}:{}", indexer::CONSUMER, config.meili_index_prefix)
        });
    }
    let dir = config.data_dir.join("search");
    let file = dir.join("consumer");
    if let Ok(name) = std::fs::read_to_string(&file) {
        let name = name.trim();
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
    }
    // An index written before these ids existed: its generations' directories or a
    // rebuild's `.current` file (not any file: a crash may leave `consumer.partial`).
    let indexed_before = std::fs::read_dir(&dir).is_ok_and(|entries| {
        entries.flatten().any(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            name.ends_with(".current")
                || IndexName::ALL
                    .iter()
                    .any(|index| name.starts_with(&format!("{}-", index.as_str())))
        })
    });
    let name = if indexed_before {
        indexer::CONSUMER.to_owned()
    } else {
        format!(
            "{}:{}",
            indexer::CONSUMER,
            hex::encode(rand::random::<[u8; 8]>())
        )
    };
    std::fs::create_dir_all(&dir)
        .map_err(|err| anyhow::anyhow!("cannot create {}: {err}", dir.display()))?;
    // Linked into place only if no file is there yet: two processes starting at once
    // over one new directory both use the name that won.
    let partial = dir.join(format!("consumer.{}.partial", std::process::id()));
    std::fs::write(&partial, format!("{name}\n"))
        .map_err(|err| anyhow::anyhow!("cannot write {}: {err}", partial.display()))?;
    let linked = std::fs::hard_link(&partial, &file);
    let _ = std::fs::remove_file(&partial);
    if let Err(err) = linked {
        if err.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(anyhow::anyhow!("cannot write {}: {err}", file.display()));
        }
    }
    let name = std::fs::read_to_string(&file)
        .map_err(|err| anyhow::anyhow!("cannot read {}: {err}", file.display()))?;
    let name = name.trim().to_owned();
    Ok(name)
}

/// Query words: folded (lower case, no accents), split on anything not a letter or digit.
pub fn words(text: &str) -> Vec<String> {
    crate::domain::enrich::fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Typos allowed in a query word of `len` characters: 0 below 5, 1 from 5, 2 from 9.
pub fn typos_for(len: usize) -> u8 {
    match len {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

/// Damerau-Levenshtein (optimal string alignment) distance, stopping early past `max`.
pub fn distance(a: &[char], b: &[char], max: usize) -> usize {
    if a.len().abs_diff(b.len()) > max {
        return max + 1;
    }
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut current = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            current[j] = (prev[j] + 1)
                .min(current[j - 1] + 1)
                .min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                current[j] = current[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, current);
    }
    prev[b.len()]
}

/// Whether a folded token of the text matches a query word under the matching rules.
pub fn token_matches(token: &str, word: &str, prefix: bool) -> bool {
    let allowed = typos_for(word.chars().count()) as usize;
    let token: Vec<char> = token.chars().collect();
    let word: Vec<char> = word.chars().collect();
    if distance(&token, &word, allowed) <= allowed {
        return true;
    }
    prefix && token.len() >= word.len() && distance(&token[..word.len()], &word, allowed) <= allowed
}

/// A highlighted fragment of one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Highlight {
    pub field: &'static str,
    /// Up to ~160 characters around the first match, matches in `<mark>…</mark>`.
    pub snippet: String,
    /// Where the matches are in the whole field: character offset and length.
    pub matches: Vec<(usize, usize)>,
}

/// Marks the words of `field_text` that match `query` (same rules as the search).
pub fn highlight(field: &'static str, field_text: &str, query: &str) -> Option<Highlight> {
    let words = words(query);
    if words.is_empty() {
        return None;
    }
    let chars: Vec<char> = field_text.chars().collect();
    let mut matches = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        if !chars[at].is_alphanumeric() {
            at += 1;
            continue;
        }
        let start = at;
        while at < chars.len() && chars[at].is_alphanumeric() {
            at += 1;
        }
        let token: String = chars[start..at].iter().collect();
        let folded = crate::domain::enrich::fold(&token);
        let hit = words
            .iter()
            .enumerate()
            .any(|(index, word)| token_matches(&folded, word, index + 1 == words.len()));
        if hit {
            matches.push((start, at - start));
        }
    }
    let (first, _) = *matches.first()?;
    const WINDOW: usize = 160;
    let from = first
        .saturating_sub(40)
        .min(chars.len().saturating_sub(WINDOW));
    let from = (0..=from)
        .rev()
        .find(|&i| i == 0 || chars[i - 1].is_whitespace())
        .unwrap_or(0);
    let to = (from + WINDOW).min(chars.len());
    let mut snippet = String::new();
    if from > 0 {
        snippet.push('…');
    }
    let mut cursor = from;
    for &(start, length) in matches.iter().filter(|(s, l)| *s >= from && s + l <= to) {
        snippet.extend(&chars[cursor..start]);
        snippet.push_str("<mark>");
        snippet.extend(&chars[start..start + length]);
        snippet.push_str("</mark>");
        cursor = start + length;
    }
    snippet.extend(&chars[cursor..to]);
    if to < chars.len() {
        snippet.push('…');
    }
    Some(Highlight {
        field,
        snippet,
        matches,
    })
}

/// A customer search as the index takes it: a phone number typed with spaces, dashes or
/// brackets (`+34 600 123`) becomes its digits, so it matches as one prefix.
pub fn customer_query(text: &str) -> String {
    let phone_like = text
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && text.chars().filter(char::is_ascii_digit).count() >= 3;
    if phone_like {
        text.chars().filter(char::is_ascii_digit).collect()
    } else {
        text.to_owned()
    }
}

/// The longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 500;

/// Checks the search text of argument `field`: at most [`MAX_QUERY_CHARS`] characters and
/// no control character (`BAD_USER_INPUT` naming `field`); returns it trimmed, in NFC.
pub fn check_query(field: &str, text: &str) -> Result<String> {
    if text.len() > MAX_QUERY_CHARS * 4 + 1_024 || text.trim().chars().count() > MAX_QUERY_CHARS {
        return Err(Error::field(
            field,
            format!("the {field} is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    crate::domain::text::check(field, text)?;
    Ok(crate::domain::text::clean(text))
}

/// What the indexer and the search API say about the index, shared with `/metrics`.
#[derive(Default)]
pub struct SearchStatus {
    /// Whether this process's indexer holds the index's lease and indexes it now.
    pub active: std::sync::atomic::AtomicBool,
    pub lag: std::sync::atomic::AtomicI64,
    pub indexed: std::sync::atomic::AtomicU64,
    pub last_error: std::sync::Mutex<Option<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_follow_word_length_and_the_last_word_is_a_prefix() {
        assert!(token_matches("export", "export", false));
        assert!(
            token_matches("export", "exprot", false),
            "a transposition is one typo"
        );
        assert!(
            !token_matches("cats", "cast", false),
            "no typo under 5 letters"
        );
        assert!(
            token_matches("integration", "integartoin", false),
            "two typos from 9 letters"
        );
        assert!(!token_matches("export", "exxpoort", false));
        assert!(token_matches("exportation", "expo", true));
        assert!(!token_matches("exportation", "expo", false));
        assert!(token_matches("cancion", &words("Canción")[0], false));
    }

    #[test]
    fn highlights_mark_matches_with_their_positions() {
        let h = highlight("text", "La canción del verano: ¡qué canción!", "cancion").unwrap();
        assert_eq!(
            h.snippet,
            "La <mark>canción</mark> del verano: ¡qué <mark>canción</mark>!"
        );
        assert_eq!(h.matches, vec![(3, 7), (28, 7)]);
        assert!(highlight("text", "nothing here", "export").is_none());
        let long = format!(
            "{} the export failed {}",
            "word ".repeat(60),
            "tail ".repeat(60)
        );
        let h = highlight("text", &long, "export").unwrap();
        assert!(
            h.snippet.starts_with('…') && h.snippet.ends_with('…'),
            "{}",
            h.snippet
        );
        assert!(h.snippet.contains("<mark>export</mark>"));
    }
}
