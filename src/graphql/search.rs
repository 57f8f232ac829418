//! Search through GraphQL: `search` over interactions (filters, sort, highlights, facets),
//! `searchCustomers` for a search-as-you-type box, `searchStatus`, and the searched
//! `Customer.timeline`. The index gives ids in order; the rows come from the database
//! through the request's DataLoader (scoped to the caller's workspace, so a stale or
//! foreign id in the index can never surface), and matches are highlighted here.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use base64::Engine;
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::inputs::id;
use super::interaction::{Interaction, InteractionConnection, InteractionTotal};
use super::loaders::{CustomerById, InteractionById};
use super::types::Channel;
use super::{app, caller, loader};
use crate::config::MAX_PAGE_SIZE;
use crate::domain::interaction::InteractionFilter;
use crate::domain::{ConversationStatus, Direction, InteractionKind};
use crate::error::Error;
use crate::ids::TypedId;
use crate::search::{self, InteractionQuery, SearchFilter};
use entity::{ConversationId, CustomerId, InteractionId};

/// How search hits are ordered.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum SearchSort {
    /// Best matches first.
    #[default]
    Relevance,
    /// Most recent first (by `occurredAt`, ties by id); pages through every hit.
    Newest,
    /// Earliest first (by `occurredAt`, ties by id); pages through every hit.
    Oldest,
}

/// Narrows a search; every list means "any of these".
#[derive(InputObject, Default)]
pub struct SearchFilterInput {
    /// Interactions with any of these customers (`cus_…`).
    pub customer_ids: Option<Vec<ID>>,
    /// Interactions in any of these conversations (`cnv_…`).
    pub conversation_ids: Option<Vec<ID>>,
    /// On any of these channels (a `channel` facet's `value` fits here).
    pub channels: Option<Vec<Channel>>,
    /// Of any of these kinds (a `kind` facet's `value` fits here).
    pub kinds: Option<Vec<InteractionKind>>,
    /// Either way when left out.
    pub directions: Option<Vec<Direction>>,
    /// The status of the interaction's conversation.
    pub statuses: Option<Vec<ConversationStatus>>,
    /// ISO 639-1 codes (`en`, `es`, …). Every list of this filter takes at most 100 values.
    pub languages: Option<Vec<String>>,
    /// In any of these sentiment buckets (a `sentiment` facet's `value` fits here).
    pub sentiments: Option<Vec<Sentiment>>,
    /// Sentiment at least this (-1 to 1).
    pub sentiment_min: Option<f64>,
    /// Sentiment at most this.
    pub sentiment_max: Option<f64>,
    /// Occurred at or after.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Occurred before.
    pub occurred_before: Option<DateTime<Utc>>,
}

/// The most values one list of a search filter takes.
const MAX_FILTER_VALUES: usize = 100;

fn at_most<T>(field: &str, values: Option<Vec<T>>) -> Result<Vec<T>, Error> {
    let values = values.unwrap_or_default();
    if values.len() > MAX_FILTER_VALUES {
        return Err(Error::field(
            field,
            format!("give at most {MAX_FILTER_VALUES} values"),
        ));
    }
    Ok(values)
}

fn ids<I: TypedId>(field: &str, values: Option<Vec<ID>>) -> Result<Vec<I>, Error> {
    at_most(field, values)?
        .iter()
        .enumerate()
        .map(|(index, value)| id(&format!("{field}[{index}]"), value))
        .collect()
}

impl SearchFilterInput {
    fn into_filter(self) -> Result<SearchFilter, Error> {
        for (name, value) in [
            ("sentimentMin", self.sentiment_min),
            ("sentimentMax", self.sentiment_max),
        ] {
            if value.is_some_and(|v| !(-1.0..=1.0).contains(&v)) {
                return Err(Error::field(
                    format!("filter.{name}"),
                    "sentiment lies between -1 and 1",
                ));
            }
        }
        Ok(SearchFilter {
            customer_ids: ids::<CustomerId>("filter.customerIds", self.customer_ids)?,
            conversation_ids: ids::<ConversationId>(
                "filter.conversationIds",
                self.conversation_ids,
            )?,
            channels: at_most("filter.channels", self.channels)?
                .into_iter()
                .map(|c| c.as_str().to_owned())
                .collect(),
            kinds: at_most("filter.kinds", self.kinds)?
                .into_iter()
                .map(|k| k.as_str().to_owned())
                .collect(),
            directions: at_most("filter.directions", self.directions)?
                .into_iter()
                .map(|d| d.as_str().to_owned())
                .collect(),
            statuses: at_most("filter.statuses", self.statuses)?
                .into_iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            languages: at_most("filter.languages", self.languages)?
                .iter()
                .enumerate()
                .map(|(index, language)| {
                    crate::domain::text::check_lookup(
                        &format!("filter.languages[{index}]"),
                        language,
                        35,
                    )
                    .map(|language| language.to_lowercase())
                })
                .collect::<Result<_, Error>>()?,
            sentiments: at_most("filter.sentiments", self.sentiments)?
                .into_iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            sentiment_min: self.sentiment_min,
            sentiment_max: self.sentiment_max,
            occurred_after: self.occurred_after,
            occurred_before: self.occurred_before,
            after_position: None,
        })
    }
}

/// Where a match is in a field: a character offset and a length.
#[derive(SimpleObject, Clone)]
pub struct MatchPosition {
    /// Where the match starts in the whole field (not the snippet), in characters
    /// (Unicode scalar values) from 0.
    pub start: i32,
    /// How many characters it spans.
    pub length: i32,
}

/// A field's text around its matches, matches marked `<mark>…</mark>`.
#[derive(SimpleObject, Clone)]
pub struct Highlight {
    /// `text` or `subject` (interactions), `displayName` (customers).
    pub field: String,
    /// About 160 characters of the field around its first match, `…` where cut, each
    /// match wrapped in `<mark>…</mark>`. The rest is the field's text as stored, not
    /// escaped: escape it before rendering as HTML, keeping only the marks.
    pub snippet: String,
    /// Every match in the whole field, in order (`snippet` shows those within it).
    pub matches: Vec<MatchPosition>,
}

impl From<search::Highlight> for Highlight {
    fn from(h: search::Highlight) -> Self {
        Highlight {
            field: h.field.to_owned(),
            snippet: h.snippet,
            matches: h
                .matches
                .into_iter()
                .map(|(start, length)| MatchPosition {
                    start: start as i32,
                    length: length as i32,
                })
                .collect(),
        }
    }
}

/// One interaction found.
#[derive(SimpleObject)]
pub struct SearchHit {
    /// The interaction found.
    pub interaction: Interaction,
    /// Its fields that matched, with the matches marked; empty for an empty query.
    pub highlights: Vec<Highlight>,
}

/// How many hits are on one channel. `value` is what `SearchFilterInput.channels` takes,
/// so a facet fed back as a filter narrows the search to these `count` hits.
#[derive(SimpleObject, Debug, PartialEq)]
pub struct ChannelFacetCount {
    /// The channel.
    pub value: Channel,
    /// Hits on it, among every hit of the search (not only this page).
    pub count: u64,
}

/// How many hits are of one kind. `value` is what `SearchFilterInput.kinds` takes.
#[derive(SimpleObject, Debug, PartialEq)]
pub struct KindFacetCount {
    /// The kind of interaction.
    pub value: InteractionKind,
    /// Hits of it, among every hit of the search (not only this page).
    pub count: u64,
}

/// The sentiment bucket of an interaction's score (from -1, negative, to 1, positive).
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum Sentiment {
    /// A score of -0.05 or less.
    Negative,
    /// A score between -0.05 and 0.05, both excluded.
    Neutral,
    /// A score of 0.05 or more.
    Positive,
    /// No score: the interaction has no words to judge (an empty text, only symbols).
    Unknown,
}

impl Sentiment {
    const ALL: [Sentiment; 4] = [
        Sentiment::Negative,
        Sentiment::Neutral,
        Sentiment::Positive,
        Sentiment::Unknown,
    ];

    /// The bucket as the search index stores it (`domain::document::sentiment_label`).
    fn as_str(self) -> &'static str {
        match self {
            Sentiment::Negative => "negative",
            Sentiment::Neutral => "neutral",
            Sentiment::Positive => "positive",
            Sentiment::Unknown => "unknown",
        }
    }

    fn parse(label: &str) -> Option<Sentiment> {
        Sentiment::ALL.into_iter().find(|s| s.as_str() == label)
    }
}

/// How many hits are in one sentiment bucket. `value` is what `SearchFilterInput.sentiments`
/// takes.
#[derive(SimpleObject, Debug, PartialEq)]
pub struct SentimentFacetCount {
    /// The bucket.
    pub value: Sentiment,
    /// Hits in it, among every hit of the search (not only this page).
    pub count: u64,
}

/// How many hits are in one language. `value` is what `SearchFilterInput.languages`
/// takes.
#[derive(SimpleObject, Debug, PartialEq)]
pub struct FacetCount {
    /// An ISO 639-1 code (`en`, `es`, …), lowercase.
    pub value: String,
    /// Hits in it, among every hit of the search (not only this page).
    pub count: u64,
}

/// Hit counts by channel, kind, sentiment and language, over every hit of the search
/// (not only this page); most hits first, ties in a stable order. Values with no hit are
/// left out.
#[derive(SimpleObject, Default, Debug, PartialEq)]
pub struct SearchFacets {
    /// By channel.
    pub channel: Vec<ChannelFacetCount>,
    /// By kind of interaction.
    pub kind: Vec<KindFacetCount>,
    /// By sentiment bucket.
    pub sentiment: Vec<SentimentFacetCount>,
    /// By detected language; interactions without one are not counted.
    pub language: Vec<FacetCount>,
}

/// The counts of one facet whose stored values `parse` knows. A value it does not know
/// (stored by a newer version with a channel or kind this one lacks, or by an index
/// written before a rename) is left out with a warning: one odd document must not make
/// every search that asks for facets fail.
fn typed_counts<T, C>(
    facet: &str,
    list: &[(String, u64)],
    parse: impl Fn(&str) -> Option<T>,
    count: impl Fn(T, u64) -> C,
) -> Vec<C> {
    list.iter()
        .filter_map(|(value, n)| match parse(value) {
            Some(known) => Some(count(known, *n)),
            None => {
                tracing::warn!(facet, value = %value, "a search facet value this version does not know is left out");
                None
            }
        })
        .collect()
}

impl From<&search::Facets> for SearchFacets {
    fn from(f: &search::Facets) -> SearchFacets {
        SearchFacets {
            channel: typed_counts("channel", &f.channel, Channel::parse, |value, count| {
                ChannelFacetCount { value, count }
            }),
            kind: typed_counts("kind", &f.kind, InteractionKind::parse, |value, count| {
                KindFacetCount { value, count }
            }),
            sentiment: typed_counts(
                "sentiment",
                &f.sentiment,
                Sentiment::parse,
                |value, count| SentimentFacetCount { value, count },
            ),
            language: f
                .language
                .iter()
                .map(|(value, count)| FacetCount {
                    value: value.clone(),
                    count: *count,
                })
                .collect(),
        }
    }
}

/// `estimatedTotal` and `facets` of a search.
pub struct SearchExtra {
    estimated_total: u64,
    facets: Option<search::Facets>,
}

#[Object]
impl SearchExtra {
    /// How many interactions match, as the index estimates it.
    async fn estimated_total(&self) -> u64 {
        self.estimated_total
    }
    /// Hit counts by channel, kind, sentiment and language; empty lists when the backend
    /// gave none.
    async fn facets(&self) -> SearchFacets {
        self.facets
            .as_ref()
            .map(SearchFacets::from)
            .unwrap_or_default()
    }
}

pub type SearchConnection =
    Connection<String, SearchHit, SearchExtra, async_graphql::connection::EmptyFields>;

/// A customer found by `searchCustomers`.
#[derive(SimpleObject)]
pub struct CustomerSearchHit {
    /// The customer found.
    pub customer: Customer,
    /// Their `displayName` with the matches marked; empty when the match was elsewhere
    /// (an e-mail, a handle, a tag).
    pub highlights: Vec<Highlight>,
}

/// How the search index is doing.
#[derive(SimpleObject)]
pub struct SearchStatusInfo {
    /// `embedded` or `meilisearch`.
    pub backend: String,
    /// This workspace's changes not indexed yet (events of other workspaces are not
    /// counted).
    pub lag: i64,
    /// Set while indexing keeps failing; the reason is in the server log only.
    pub last_error: Option<String>,
}

/// Where a page of a search starts, decoded from `after`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Relevance order: the offset of the first hit, below [`search::MAX_HITS`].
    Offset(usize),
    /// Date order: hits strictly after this position.
    After(search::DatePosition),
}

/// A relevance cursor is `o:<position>`; a date cursor `d:<n|o>:<unix ms>:<uuid>`, the
/// letter saying which date order it belongs to. Base64url without padding.
const OFFSET_PREFIX: &str = "o:";
const DATE_PREFIX: &str = "d:";
/// Longer than any cursor this API hands out.
const MAX_CURSOR_CHARS: usize = 128;

fn date_letter(sort: SearchSort) -> &'static str {
    if sort == SearchSort::Oldest {
        "o"
    } else {
        "n"
    }
}

fn encode_offset(offset: usize) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{OFFSET_PREFIX}{offset}"))
}

fn encode_date(sort: SearchSort, position: search::DatePosition) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "{DATE_PREFIX}{}:{}:{}",
        date_letter(sort),
        position.occurred_at,
        position.id
    ))
}

/// Decodes and bounds `after` for a search in `sort` order: malformed, negative,
/// overflowing, past [`search::MAX_HITS`] or of another order is `BAD_USER_INPUT` naming
/// `after`. Never panics, never allocates from the number.
fn decode_start(cursor: Option<&str>, sort: SearchSort) -> Result<Start, Error> {
    let Some(cursor) = cursor else {
        return Ok(Start::Offset(0));
    };
    let invalid = || Error::field("after", "not a cursor of this search");
    if cursor.len() > MAX_CURSOR_CHARS {
        return Err(invalid());
    }
    let text = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(invalid)?;
    let digits = |text: &str| {
        !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit())
    };
    if let Some(offset) = text.strip_prefix(OFFSET_PREFIX) {
        if sort != SearchSort::Relevance {
            return Err(Error::field(
                "after",
                "the cursor belongs to a search in relevance order, not date order",
            ));
        }
        let position = Some(offset)
            .filter(|offset| digits(offset))
            .and_then(|offset| offset.parse::<usize>().ok())
            .ok_or_else(invalid)?;
        let next = position.saturating_add(1);
        if next >= search::MAX_HITS {
            return Err(Error::field(
                "after",
                format!(
                    "a search in relevance order reaches its first {} hits; sort by NEWEST or OLDEST to page further",
                    search::MAX_HITS
                ),
            ));
        }
        return Ok(Start::Offset(next));
    }
    let rest = text.strip_prefix(DATE_PREFIX).ok_or_else(invalid)?;
    let mut parts = rest.splitn(3, ':');
    let (Some(letter), Some(millis), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    if sort == SearchSort::Relevance || letter != date_letter(sort) {
        return Err(Error::field(
            "after",
            "the cursor belongs to a search in another order",
        ));
    }
    let unsigned = millis.strip_prefix('-').unwrap_or(millis);
    let occurred_at = Some(millis)
        .filter(|_| digits(unsigned))
        .and_then(|millis| millis.parse::<i64>().ok())
        .filter(|millis| DateTime::from_timestamp_millis(*millis).is_some())
        .ok_or_else(invalid)?;
    let id = uuid::Uuid::parse_str(id)
        .map(InteractionId::from_uuid)
        .map_err(|_| invalid())?;
    Ok(Start::After(search::DatePosition { occurred_at, id }))
}

fn page_size(first: Option<i32>, default: i32) -> Result<usize, Error> {
    let first = first.unwrap_or(default);
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(Error::field(
            "first",
            format!("first must be between 0 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(first as usize)
}

/// One interaction search as a field asked for it.
struct Asked<'a> {
    /// The argument holding the text (`query`, `search`), for error messages.
    text_field: &'a str,
    text: &'a str,
    filter: SearchFilter,
    sort: SearchSort,
    first: Option<i32>,
    after: Option<String>,
    facets: bool,
    /// Whether the answer shows the total (`estimatedTotal`, `totalCount`).
    totals: bool,
}

/// Runs an interaction search and loads the hits, in order, with their highlights and
/// cursors.
async fn run(
    ctx: &Context<'_>,
    asked: Asked<'_>,
) -> Result<(Vec<(String, SearchHit)>, search::Hits<InteractionId>, bool)> {
    let Asked {
        text_field,
        text,
        mut filter,
        sort,
        first,
        after,
        facets,
        totals,
    } = asked;
    let caller = caller(ctx)?;
    let text = search::check_query(text_field, text)?;
    let limit = page_size(first, 20)?;
    let start = decode_start(after.as_deref(), sort)?;
    let (offset, limit) = match start {
        // Never past the relevance window, whatever `first` is.
        Start::Offset(offset) => (offset, limit.min(search::MAX_HITS - offset)),
        Start::After(position) => {
            filter.after_position = Some(position);
            (0, limit)
        }
    };
    let query = InteractionQuery {
        workspace_id: caller.workspace_id,
        text: text.clone(),
        filter,
        sort: match sort {
            SearchSort::Relevance => search::SearchSort::Relevance,
            SearchSort::Newest => search::SearchSort::Newest,
            SearchSort::Oldest => search::SearchSort::Oldest,
        },
        offset,
        limit: limit + 1,
        facets,
        totals,
    };
    let mut hits = app(ctx).search.search_interactions(&query).await?;
    let has_next = hits.ids.len() > limit
        && (sort != SearchSort::Relevance || offset + limit < search::MAX_HITS);
    hits.ids.truncate(limit);
    hits.occurred_at.truncate(limit);
    let cursors: Vec<String> = if sort == SearchSort::Relevance {
        (0..hits.ids.len())
            .map(|index| encode_offset(offset + index))
            .collect()
    } else {
        hits.positions()
            .into_iter()
            .map(|position| encode_date(sort, position))
            .collect()
    };
    let keys: Vec<InteractionById> = hits.ids.iter().map(|id| InteractionById(*id)).collect();
    let mut rows = loader(ctx)?.load_many(keys).await?;
    let found = hits
        .ids
        .iter()
        .zip(cursors)
        .filter_map(|(id, cursor)| {
            // A hit whose row is gone (deleted, not yet de-indexed) or not this
            // workspace's is skipped.
            let row = rows.remove(&InteractionById(*id))?;
            let highlights = [
                search::highlight("text", &row.text, &text),
                row.subject
                    .as_deref()
                    .and_then(|subject| search::highlight("subject", subject, &text)),
            ]
            .into_iter()
            .flatten()
            .map(Highlight::from)
            .collect();
            Some((
                cursor,
                SearchHit {
                    interaction: Interaction(row),
                    highlights,
                },
            ))
        })
        .collect();
    Ok((found, hits, has_next))
}

pub async fn search(
    ctx: &Context<'_>,
    query: String,
    filter: Option<SearchFilterInput>,
    sort: Option<SearchSort>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<SearchConnection> {
    let filter = filter.unwrap_or_default().into_filter()?;
    let facets = ctx.look_ahead().field("facets").exists();
    let totals = ctx.look_ahead().field("estimatedTotal").exists();
    let has_previous = after.is_some();
    let (found, hits, has_next) = run(
        ctx,
        Asked {
            text_field: "query",
            text: &query,
            filter,
            sort: sort.unwrap_or_default(),
            first,
            after,
            facets,
            totals,
        },
    )
    .await?;
    // Every match of a field is one item: a text of 100,000 characters can hold tens of
    // thousands of them, so they are charged to the answer before they are built.
    let look = ctx.look_ahead();
    if look
        .field("nodes")
        .field("highlights")
        .field("matches")
        .exists()
        || look
            .field("edges")
            .field("node")
            .field("highlights")
            .field("matches")
            .exists()
    {
        let matches: usize = found
            .iter()
            .flat_map(|(_, hit)| &hit.highlights)
            .map(|highlight| highlight.matches.len())
            .sum();
        super::charge_values(ctx, matches as u64)?;
    }
    let mut connection = Connection::with_additional_fields(
        has_previous,
        has_next,
        SearchExtra {
            estimated_total: hits.estimated_total,
            facets: hits.facets,
        },
    );
    connection.edges = found
        .into_iter()
        .map(|(cursor, hit)| Edge::new(cursor, hit))
        .collect();
    Ok(connection)
}

pub async fn searched_timeline(
    ctx: &Context<'_>,
    customer: CustomerId,
    filter: InteractionFilter,
    text: &str,
    first: Option<i32>,
    after: Option<String>,
) -> Result<InteractionConnection> {
    let has_previous = after.is_some();
    let search_filter = SearchFilter {
        customer_ids: vec![customer],
        channels: filter
            .channels
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        kinds: filter.kinds.iter().map(|k| k.as_str().to_owned()).collect(),
        directions: filter
            .direction
            .iter()
            .map(|d| d.as_str().to_owned())
            .collect(),
        occurred_after: filter.occurred_after,
        occurred_before: filter.occurred_before,
        ..SearchFilter::default()
    };
    let (found, hits, has_next) = run(
        ctx,
        Asked {
            text_field: "search",
            text,
            filter: search_filter,
            sort: SearchSort::Newest,
            first,
            after,
            facets: false,
            totals: ctx.look_ahead().field("totalCount").exists(),
        },
    )
    .await?;
    let mut connection = Connection::with_additional_fields(
        has_previous,
        has_next,
        InteractionTotal(
            InteractionFilter {
                customer_id: Some(customer),
                ..filter
            },
            Some(hits.estimated_total),
        ),
    );
    connection.edges = found
        .into_iter()
        .map(|(cursor, hit)| {
            Edge::new(
                crate::domain::page::Cursor::encoded(cursor),
                super::fast::Fast(hit.interaction),
            )
        })
        .collect();
    Ok(super::fast::FastConnection(connection))
}

pub async fn search_customers(
    ctx: &Context<'_>,
    query: String,
    first: Option<i32>,
) -> Result<Vec<CustomerSearchHit>> {
    let caller = caller(ctx)?;
    let text = search::check_query("query", &query)?;
    let limit = page_size(first, 10)?;
    let hits = app(ctx)
        .search
        .search_customers(caller.workspace_id, &search::customer_query(&text), limit)
        .await?;
    let keys: Vec<CustomerById> = hits.ids.iter().map(|id| CustomerById(*id)).collect();
    let mut rows = loader(ctx)?.load_many(keys).await?;
    Ok(hits
        .ids
        .iter()
        .filter_map(|id| {
            let row = rows.remove(&CustomerById(*id))?;
            let highlights = search::highlight("displayName", &row.display_name, &text)
                .into_iter()
                .map(Highlight::from)
                .collect();
            Some(CustomerSearchHit {
                customer: Customer::new(row),
                highlights,
            })
        })
        .collect())
}

/// The caller's workspace's view of the index: its own events not indexed yet, and
/// whether indexing is failing, without the reason (which may name another workspace's
/// data or the process's internals; the server log has it).
pub async fn search_status(ctx: &Context<'_>) -> Result<SearchStatusInfo> {
    let caller = caller(ctx)?;
    let app = app(ctx);
    let offset = search::indexer::offset(&app.db, &app.search_consumer).await?;
    let lag = crate::domain::event::count_after(&app.db, caller.workspace_id, offset).await?;
    let failing = app
        .search_status
        .last_error
        .lock()
        .map(|error| error.is_some())
        .unwrap_or(false);
    Ok(SearchStatusInfo {
        backend: app.search.backend().to_owned(),
        lag,
        last_error: failing.then(|| {
            "indexing is failing, so recent changes may not be searchable yet; the operator's server log has the reason".to_owned()
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facet_values_the_version_does_not_know_are_left_out() {
        let stored = search::Facets {
            channel: vec![("hacker_news".into(), 3), ("myspace".into(), 2)],
            kind: vec![("mention".into(), 4), ("fax".into(), 1)],
            sentiment: vec![("positive".into(), 2), ("ecstatic".into(), 1)],
            language: vec![("en".into(), 5)],
        };
        assert_eq!(
            SearchFacets::from(&stored),
            SearchFacets {
                channel: vec![ChannelFacetCount {
                    value: Channel::HackerNews,
                    count: 3
                }],
                kind: vec![KindFacetCount {
                    value: InteractionKind::Mention,
                    count: 4
                }],
                sentiment: vec![SentimentFacetCount {
                    value: Sentiment::Positive,
                    count: 2
                }],
                language: vec![FacetCount {
                    value: "en".into(),
                    count: 5
                }],
            }
        );
    }

    #[test]
    fn every_sentiment_bucket_the_index_stores_is_known() {
        for score in [None, Some(-1.0), Some(0.0), Some(1.0)] {
            let label = crate::domain::document::sentiment_label(score);
            assert!(Sentiment::parse(label).is_some(), "{label}");
        }
    }
}
