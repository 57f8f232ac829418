//! Duplicate suggestions: pairs of customers who may be one person, each with a score in
//! [0, 1] and its reasons, stored once per pair (UNIQUE, `ON CONFLICT DO NOTHING`) so
//! every detector and every process share one list, and never merged silently.
//!
//! The detector here reads profile links. An identity's profile shows links (a Mastodon
//! profile field with a GitHub address, a website or an e-mail address in a bio); each is
//! normalised into a key and stored (`identity_link`). Every identity also has the key of
//! what it is (`identity.profile_key`: its profile address, `https://{handle}` for a
//! Bluesky handle, which is a domain). A link whose key is another customer's identity,
//! e-mail address or website makes a suggestion. Both directions are checked as records
//! arrive: a new link against the stored identities and contact points, a new identity or
//! contact point against the stored links. Blocking is by key: every lookup is one probe
//! of an index, never a comparison of all pairs.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QuerySelect,
};
use serde::{Deserialize, Serialize};

pub use super::merge::AutoMerge;
use super::page::{Page, PageArgs, Sort, SortKind};
use super::{Caller, ContactPointKind, Role};
use crate::error::{Error, Result};
use entity::duplicate_suggestion::{ActiveModel, Column, Entity, Model};
use entity::enums::DuplicateStatus;
use entity::{contact_point, identity, identity_link};
use entity::{CustomerId, DuplicateSuggestionId, IdentityId, WorkspaceId};

/// What one profile link is worth as evidence: a link the platform verified (the linked
/// page links back) is nearly proof; a profile field is the person's own claim; a bio's
/// address may name someone else.
const VERIFIED_SCORE: f64 = 0.95;
const FIELD_SCORE: f64 = 0.85;
const BIO_SCORE: f64 = 0.8;
/// A Bluesky handle on the domain of another customer's website.
const HANDLE_SCORE: f64 = 0.9;
/// The default `minScore` of the list.
pub const DEFAULT_MIN_SCORE: f64 = 0.5;
/// Keys looked up per statement.
const CHUNK: usize = 500;

/// Why two customers may be one person.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reason {
    /// The field that matched (`identity`).
    pub field: String,
    /// How it matched (`profile_link`).
    pub kind: String,
    /// What matched, in words.
    pub detail: String,
    /// What this reason alone is worth.
    pub score: f64,
}

/// The reasons of a stored suggestion.
pub fn reasons(row: &Model) -> Vec<Reason> {
    serde_json::from_str(&row.reasons).unwrap_or_default()
}

/// The key of a link as a profile writes it, `None` for anything that is not one:
/// - a web address lowercased, written `https://{host}{path}` without `www.`, the
///   trailing slash of its path dropped, its query and fragment kept (they name the
///   person on `matrix.to/#/@ana:example.org` and `news.ycombinator.com/user?id=ana`);
///   `twitter.com` is `x.com`;
/// - a Bluesky profile address (`bsky.app/profile/{handle}`) as the handle's domain;
/// - a fediverse handle `@name@host` as the address Mastodon gives it,
///   `https://host/@name`;
/// - an e-mail address (or `mailto:`) as a contact point normalises it.
pub fn link_key(raw: &str) -> Option<String> {
    let lower = raw.trim().to_lowercase();
    if lower.is_empty()
        || lower.len() > 2_048
        || lower.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    if let Some(address) = lower.strip_prefix("mailto:") {
        let address = address.split('?').next().unwrap_or_default();
        return email_key(address);
    }
    if let Some(handle) = lower.strip_prefix('@') {
        let (name, host) = handle.split_once('@')?;
        let host = host.strip_prefix("www.").unwrap_or(host);
        return (!name.is_empty() && is_host(host) && !name.contains(['/', '?', '#']))
            .then(|| format!("https://{host}/@{name}"));
    }
    let rest = match lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    {
        Some(rest) => rest,
        None if lower.contains('@') => return email_key(&lower),
        None => &lower,
    };
    let split = rest.find(['?', '#']).unwrap_or(rest.len());
    let (address, tail) = rest.split_at(split);
    let address = address.trim_end_matches('/');
    let (host, path) = address.split_at(address.find('/').unwrap_or(address.len()));
    let host = host.strip_prefix("www.").unwrap_or(host);
    if !is_host(host) {
        return None;
    }
    let host = match host {
        "twitter.com" | "mobile.twitter.com" => "x.com",
        other => other,
    };
    if host == "bsky.app" {
        let handle = path.strip_prefix("/profile/")?.split('/').next()?;
        return (!handle.starts_with("did:") && is_host(handle))
            .then(|| format!("https://{handle}"));
    }
    // An empty query or fragment says nothing.
    let tail = tail.trim_end_matches(['?', '#']);
    Some(format!("https://{host}{path}{tail}"))
}

fn is_host(host: &str) -> bool {
    host.contains('.')
        && !host.starts_with('.')
        && !host.ends_with('.')
        && !host.contains(['@', '/', '?', '#'])
}

fn email_key(address: &str) -> Option<String> {
    super::contact_point::normalize(ContactPointKind::Email, address)
        .ok()
        .map(|(_, normalized)| normalized)
}

/// The key of what an identity is: a Bluesky handle as its domain, an e-mail identity as
/// its address, any other as its profile address.
pub fn profile_key(
    channel: connectors::Channel,
    platform_id: &str,
    handle: Option<&str>,
    profile_url: Option<&str>,
) -> Option<String> {
    match channel {
        connectors::Channel::Bluesky => {
            let handle = handle?.trim_start_matches('@');
            link_key(&format!("https://{handle}"))
        }
        connectors::Channel::Email => link_key(&format!("mailto:{platform_id}")),
        _ => link_key(profile_url?),
    }
}

/// Gives the identities stored before profile keys existed the key the migration could
/// not compute (an address with a query or fragment, non-ASCII): one UPDATE per such row,
/// once; identities with a key, or with nothing to key, cost nothing.
pub async fn fill_profile_keys(db: &impl ConnectionTrait, rows: &[identity::Model]) -> Result<()> {
    for row in rows.iter().filter(|row| row.profile_key.is_none()) {
        let key = profile_key(
            row.channel,
            &row.platform_id,
            row.handle.as_deref(),
            row.profile_url.as_deref(),
        );
        if let Some(key) = key {
            identity::Entity::update_many()
                .col_expr(
                    identity::Column::ProfileKey,
                    sea_orm::sea_query::Expr::value(key),
                )
                .filter(identity::Column::WorkspaceId.eq(row.workspace_id))
                .filter(identity::Column::Id.eq(row.id))
                .exec(db)
                .await?;
        }
    }
    Ok(())
}

/// An identity whose author came with profile links, as a batch resolved it.
pub struct Linked<'a> {
    pub identity_id: IdentityId,
    pub customer_id: CustomerId,
    pub channel: connectors::Channel,
    pub links: &'a [connectors::ProfileLink],
}

/// A record a link or an address can name: an identity (by its profile key) or a
/// contact point (an e-mail address or a website, by its key).
#[derive(Clone, Debug, PartialEq)]
pub struct Target {
    pub key: String,
    pub customer_id: CustomerId,
    /// What it is, in words ("the bluesky account @ana.example.com").
    pub what: String,
    /// The identity's channel; `None` for a contact point.
    pub channel: Option<connectors::Channel>,
}

/// The target an identity is, if it has a key.
pub fn identity_target(row: &identity::Model) -> Option<Target> {
    Some(Target {
        key: row.profile_key.clone()?,
        customer_id: row.customer_id,
        what: format!(
            "the {} account {}",
            row.channel.as_str(),
            row.handle.as_deref().unwrap_or(&row.platform_id)
        ),
        channel: Some(row.channel),
    })
}

/// The target a contact point is, for the kinds a link can name.
pub fn contact_point_target(row: &contact_point::Model) -> Option<Target> {
    let what = match row.kind {
        ContactPointKind::Email => format!("the e-mail address {}", row.value),
        ContactPointKind::Website => format!("the website {}", row.value),
        _ => return None,
    };
    Some(Target {
        key: link_key(&row.normalized)?,
        customer_id: row.customer_id,
        what,
        channel: None,
    })
}

/// The stored values a contact point holding `key` may have: contact points keep `www.`.
fn point_values(key: &str) -> Vec<String> {
    let mut values = vec![key.to_owned()];
    if let Some(rest) = key.strip_prefix("https://") {
        values.push(format!("https://www.{rest}"));
    }
    values
}

/// A key naming more records than this (of different customers), or linked by more
/// profiles than this, is no one person's (a shared site, an employer, a platform's home
/// page): it suggests nothing, and the work per key stays bounded.
const MAX_SHARED: usize = 5;

/// Where a pair's evidence came from, so one piece of evidence counts once however many
/// records it names (an e-mail author is an identity and a contact point with one key).
type Evidence = String;

/// A link of a profile, with its owner.
struct Owned {
    link: identity_link::Model,
    customer_id: CustomerId,
    channel: connectors::Channel,
    new: bool,
}

/// Stores the links of `linked` identities not stored yet, then suggests every pair that
/// a new link or a new record makes: a link naming another customer's identity, e-mail
/// address or website, and an identity that is another customer's address or website (a
/// Bluesky handle on the domain of a customer's website). Only pairs with something new
/// in this write are looked at. Runs in the caller's transaction.
///
/// Returns the new suggestions that score at least the workspace's auto-merge threshold
/// (none when it has none): the caller merges them ([`merge_above_threshold`]) once it
/// has stored what it was writing, so its rows move with their customer.
pub async fn after_authors(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    linked: &[Linked<'_>],
    targets: &[Target],
    now: DateTime<Utc>,
) -> Result<Vec<AutoMerge>> {
    if linked.is_empty() && targets.is_empty() {
        return Ok(Vec::new());
    }
    let mut stored: HashSet<(IdentityId, String)> = HashSet::new();
    let ids: Vec<IdentityId> = linked.iter().map(|l| l.identity_id).collect();
    for chunk in ids.chunks(CHUNK) {
        let rows = super::scoped::<identity_link::Entity>(workspace_id)
            .filter(identity_link::Column::IdentityId.is_in(chunk.iter().copied()))
            .all(db)
            .await?;
        stored.extend(rows.into_iter().map(|row| (row.identity_id, row.key)));
    }
    let mut links: Vec<Owned> = Vec::new();
    for owner in linked {
        for link in owner.links.iter().take(connectors::MAX_PROFILE_LINKS) {
            let Some(key) = link_key(&link.url) else {
                continue;
            };
            if !stored.insert((owner.identity_id, key.clone())) {
                continue;
            }
            links.push(Owned {
                link: identity_link::Model {
                    identity_id: owner.identity_id,
                    key,
                    workspace_id,
                    url: super::clean(&link.url).chars().take(2_048).collect(),
                    label: link
                        .label
                        .as_deref()
                        .map(|label| super::clean(label).chars().take(200).collect()),
                    verified: link.verified,
                    created_at: now,
                },
                customer_id: owner.customer_id,
                channel: owner.channel,
                new: true,
            });
        }
    }
    if links.is_empty() && targets.is_empty() {
        return Ok(Vec::new());
    }
    // In key order, so two writers inserting overlapping links wait for each other
    // instead of deadlocking.
    links.sort_by(|a, b| (&a.link.key, a.link.identity_id).cmp(&(&b.link.key, b.link.identity_id)));
    for chunk in links.chunks(CHUNK) {
        identity_link::Entity::insert_many(
            chunk
                .iter()
                .map(|owned| identity_link::ActiveModel::from(owned.link.clone())),
        )
        .on_conflict(
            OnConflict::columns([
                identity_link::Column::IdentityId,
                identity_link::Column::Key,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }

    // Every record the keys name: stored, and new in this write.
    let keys: Vec<String> = distinct(
        links
            .iter()
            .map(|owned| owned.link.key.as_str())
            .chain(targets.iter().map(|t| t.key.as_str())),
    );
    lock_keys(db, workspace_id, &keys).await?;
    let mut records: HashMap<String, Vec<(Target, bool)>> = HashMap::new();
    let mut note = |target: Target, new: bool| {
        let list = records.entry(target.key.clone()).or_default();
        match list.iter_mut().find(|(known, _)| *known == target) {
            Some((_, was_new)) => *was_new |= new,
            None => list.push((target, new)),
        }
    };
    for target in targets {
        note(target.clone(), true);
    }
    // Looked up only where a pair can come of it (ingestion pays for each query): a new
    // link may name any account or contact point; a new contact point may be an account's
    // address; a new account may be a contact point only when its key is an address (an
    // e-mail identity) or a domain (a Bluesky handle). Every new record may be linked.
    let link_keys = links.iter().map(|owned| owned.link.key.as_str());
    let account_keys = distinct(
        link_keys.clone().chain(
            targets
                .iter()
                .filter(|t| t.channel.is_none())
                .map(|t| t.key.as_str()),
        ),
    );
    let point_keys = distinct(
        link_keys.chain(
            targets
                .iter()
                .filter(|t| {
                    matches!(
                        t.channel,
                        Some(connectors::Channel::Email | connectors::Channel::Bluesky)
                    )
                })
                .map(|t| t.key.as_str()),
        ),
    );
    for chunk in account_keys.chunks(CHUNK) {
        let identities = super::scoped::<identity::Entity>(workspace_id)
            .filter(identity::Column::ProfileKey.is_in(chunk.iter().cloned()))
            .all(db)
            .await?;
        for target in identities.iter().filter_map(identity_target) {
            note(target, false);
        }
    }
    for chunk in point_keys.chunks(CHUNK) {
        let values: Vec<String> = chunk.iter().flat_map(|key| point_values(key)).collect();
        let points = super::scoped::<contact_point::Entity>(workspace_id)
            .filter(
                contact_point::Column::Kind
                    .is_in([ContactPointKind::Email, ContactPointKind::Website]),
            )
            .filter(contact_point::Column::Normalized.is_in(values))
            .all(db)
            .await?;
        for target in points.iter().filter_map(contact_point_target) {
            note(target, false);
        }
    }
    // The links stored before this write that name a new record.
    let target_keys = distinct(targets.iter().map(|t| t.key.as_str()));
    for chunk in target_keys.chunks(CHUNK) {
        let older: Vec<identity_link::Model> = super::scoped::<identity_link::Entity>(workspace_id)
            .filter(identity_link::Column::Key.is_in(chunk.iter().cloned()))
            .all(db)
            .await?
            .into_iter()
            .filter(|link| {
                !links.iter().any(|owned| {
                    owned.new
                        && owned.link.identity_id == link.identity_id
                        && owned.link.key == link.key
                })
            })
            .collect();
        if older.is_empty() {
            continue;
        }
        let owner_ids: Vec<IdentityId> = distinct_ids(older.iter().map(|l| l.identity_id));
        let owners =
            super::by_ids::<identity::Entity, _>(db, workspace_id, &owner_ids, |row| row.id)
                .await?;
        for link in older {
            if let Some(owner) = owners.get(&link.identity_id) {
                links.push(Owned {
                    customer_id: owner.customer_id,
                    channel: owner.channel,
                    link,
                    new: false,
                });
            }
        }
    }

    let mut found: BTreeMap<(CustomerId, CustomerId), BTreeMap<Evidence, Reason>> = BTreeMap::new();
    let mut add = |x: CustomerId, y: CustomerId, evidence: Evidence, reason: Reason| {
        if x == y {
            return;
        }
        let pair = found.entry((x.min(y), x.max(y))).or_default();
        match pair.get(&evidence) {
            Some(known) if known.score >= reason.score => {}
            _ => {
                pair.insert(evidence, reason);
            }
        }
    };
    let mut links_by_key: HashMap<&str, Vec<&Owned>> = HashMap::new();
    for owned in &links {
        links_by_key.entry(&owned.link.key).or_default().push(owned);
    }
    for key in &keys {
        let named = records.get(key).map(Vec::as_slice).unwrap_or_default();
        if shared(named.iter().map(|(t, _)| t.customer_id)) {
            continue;
        }
        let linking = links_by_key
            .get(key.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !shared(linking.iter().map(|o| o.customer_id)) {
            for owned in linking {
                for (target, new) in named {
                    if owned.new || *new {
                        add(
                            owned.customer_id,
                            target.customer_id,
                            format!("link {} {}", owned.link.identity_id, key),
                            link_reason(owned.channel, &owned.link, &target.what),
                        );
                    }
                }
            }
        }
        // An account that is another customer's address or site.
        for (account, account_new) in named.iter().filter(|(t, _)| t.channel.is_some()) {
            for (point, point_new) in named.iter().filter(|(t, _)| t.channel.is_none()) {
                if *account_new || *point_new {
                    add(
                        account.customer_id,
                        point.customer_id,
                        format!("address {key}"),
                        address_reason(account, point),
                    );
                }
            }
        }
    }
    store(db, workspace_id, found, now).await
}

/// The advisory-lock class of duplicate keys (`pg_advisory_xact_lock(class, key)`).
const LOCK_CLASS: i32 = 0x5241_5044;

/// On PostgreSQL, waits for the other writers holding any of `keys` to commit, and holds
/// them until this transaction ends. Without it, two transactions each storing one side of
/// a pair (one the account, the other the link naming it) would each look for the other
/// before it committed, and the pair would never be suggested. Locked in one statement,
/// in key order (no deadlock between two such writers); a collision of two keys' hashes
/// only makes their writers wait for each other. SQLite has one writer at a time.
pub(super) async fn lock_keys(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    keys: &[String],
) -> Result<()> {
    use sha2::Digest;
    if db.get_database_backend() != sea_orm::DbBackend::Postgres || keys.is_empty() {
        return Ok(());
    }
    let mut hashes: Vec<i32> = keys
        .iter()
        .map(|key| {
            let mut hasher = sha2::Sha256::new();
            hasher.update(workspace_id.uuid().as_bytes());
            hasher.update(key.as_bytes());
            let digest = hasher.finalize();
            i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
        })
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    db.execute(sea_orm::Statement::from_sql_and_values(
        sea_orm::DbBackend::Postgres,
        "SELECT count(pg_advisory_xact_lock($1, k)) FROM \
         (SELECT k FROM unnest($2::int4[]) AS t(k) ORDER BY k) AS ordered",
        [LOCK_CLASS.into(), hashes.into()],
    ))
    .await?;
    Ok(())
}

fn link_reason(channel: connectors::Channel, link: &identity_link::Model, what: &str) -> Reason {
    let place = match link.label.as_deref() {
        Some("bio") => "bio".to_owned(),
        Some(label) => format!("profile field \u{201c}{label}\u{201d}"),
        None => "profile".to_owned(),
    };
    let score = if link.verified {
        VERIFIED_SCORE
    } else if link.label.as_deref() == Some("bio") {
        BIO_SCORE
    } else {
        FIELD_SCORE
    };
    Reason {
        field: "identity".to_owned(),
        kind: "profile_link".to_owned(),
        detail: format!(
            "a {} {place} links {}{}: {what}",
            channel.as_str(),
            link.url,
            if link.verified { " (verified)" } else { "" }
        ),
        score,
    }
}

/// An account whose address is a contact point of another customer: the same e-mail
/// address, or a Bluesky handle on the domain of a customer's website (Bluesky checks the
/// handle against the domain's DNS or a file it serves, so its owner controls the site).
fn address_reason(account: &Target, point: &Target) -> Reason {
    let score = match account.channel {
        Some(connectors::Channel::Email) => VERIFIED_SCORE,
        Some(connectors::Channel::Bluesky) => HANDLE_SCORE,
        _ => FIELD_SCORE,
    };
    Reason {
        field: "identity".to_owned(),
        kind: "profile_address".to_owned(),
        detail: format!("{} is {}", account.what, point.what),
        score,
    }
}

/// Independent reasons add up: 1 − Π(1 − sᵢ), at most 0.99 (only a person is sure).
fn combined(reasons: &[Reason]) -> f64 {
    let doubt: f64 = reasons
        .iter()
        .map(|r| 1.0 - r.score.clamp(0.0, 1.0))
        .product();
    ((1.0 - doubt) * 1_000.0).round().min(990.0) / 1_000.0
}

/// Stores the suggestions `found` by profile links (a pair suggested before stays as it
/// is) and returns those new ones that score at least the workspace's auto-merge threshold.
async fn store(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    found: BTreeMap<(CustomerId, CustomerId), BTreeMap<Evidence, Reason>>,
    now: DateTime<Utc>,
) -> Result<Vec<AutoMerge>> {
    let found = found
        .into_iter()
        .map(|((a, b), evidence)| {
            let reasons: Vec<Reason> = evidence.into_values().collect();
            Found {
                a,
                b,
                score: combined(&reasons),
                reasons,
                detector: Detector::Links,
            }
        })
        .collect();
    store_found(db, workspace_id, found, now).await
}

/// Which detector found a pair: the profile links here, or the profile's fields
/// ([`super::dedupe`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detector {
    Links,
    Fields,
}

/// A pair a detector found, its score and reasons.
#[derive(Clone, Debug)]
pub struct Found {
    pub a: CustomerId,
    pub b: CustomerId,
    pub score: f64,
    pub reasons: Vec<Reason>,
    pub detector: Detector,
}

impl Found {
    /// A pair the field detector scored (either order).
    pub fn scored(x: CustomerId, y: CustomerId, score: f64, reasons: Vec<Reason>) -> Found {
        Found {
            a: x.min(y),
            b: x.max(y),
            score,
            reasons,
            detector: Detector::Fields,
        }
    }
}

/// What [`store_found_counted`] did.
#[derive(Debug, Default)]
pub struct Stored {
    /// Pairs not suggested before.
    pub new: u64,
    /// Pending suggestions whose score or reasons changed.
    pub updated: u64,
    /// New suggestions at or above the workspace's auto-merge threshold.
    pub above: Vec<AutoMerge>,
}

/// The reasons only the link detector gives (it keeps its own; the field detector
/// rewrites the rest).
fn from_links(reason: &Reason) -> bool {
    reason.kind.starts_with("profile_")
}

/// Stores `found` and returns the new suggestions at or above the auto-merge threshold.
pub async fn store_found(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    found: Vec<Found>,
    now: DateTime<Utc>,
) -> Result<Vec<AutoMerge>> {
    Ok(store_found_counted(db, workspace_id, found, now)
        .await?
        .above)
}

/// Stores `found`: a pair not suggested yet is inserted (`ON CONFLICT DO NOTHING`: two
/// writers finding it at once store it once); a pending suggestion the field detector
/// finds again takes its new score and reasons, keeping the profile links' (the two
/// combine as independent evidence); a dismissed or merged pair stays as it is, and so
/// does a pending one the link detector finds again.
pub async fn store_found_counted(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    mut found: Vec<Found>,
    now: DateTime<Utc>,
) -> Result<Stored> {
    let mut outcome = Stored::default();
    found.retain(|f| f.a != f.b);
    if found.is_empty() {
        return Ok(outcome);
    }
    found.sort_by_key(|f| (f.a, f.b));
    found.dedup_by_key(|f| (f.a, f.b));
    let mut existing: HashMap<(CustomerId, CustomerId), Model> = HashMap::new();
    for chunk in found.chunks(CHUNK) {
        let a: Vec<CustomerId> = chunk.iter().map(|f| f.a).collect();
        let b: Vec<CustomerId> = chunk.iter().map(|f| f.b).collect();
        let rows = super::scoped::<Entity>(workspace_id)
            .filter(Column::CustomerA.is_in(a))
            .filter(Column::CustomerB.is_in(b))
            .all(db)
            .await?;
        existing.extend(
            rows.into_iter()
                .map(|row| ((row.customer_a, row.customer_b), row)),
        );
    }
    let mut rows: Vec<ActiveModel> = Vec::new();
    for mut f in found {
        f.reasons.sort_by(|x, y| y.score.total_cmp(&x.score));
        match existing.get(&(f.a, f.b)) {
            None => rows.push(ActiveModel {
                id: Set(DuplicateSuggestionId::new()),
                workspace_id: Set(workspace_id),
                customer_a: Set(f.a),
                customer_b: Set(f.b),
                score: Set(f.score),
                reasons: Set(serde_json::to_string(&f.reasons).unwrap_or_else(|_| "[]".into())),
                status: Set(DuplicateStatus::Pending),
                created_at: Set(now),
                updated_at: Set(now),
            }),
            Some(row)
                if row.status == DuplicateStatus::Pending && f.detector == Detector::Fields =>
            {
                let links: Vec<Reason> = reasons(row).into_iter().filter(from_links).collect();
                let score = if links.is_empty() {
                    f.score
                } else {
                    let doubt = (1.0 - combined(&links)) * (1.0 - f.score);
                    ((1.0 - doubt) * 1_000.0).round().min(990.0) / 1_000.0
                };
                let mut all = links;
                all.extend(f.reasons);
                all.sort_by(|x, y| y.score.total_cmp(&x.score));
                let text = serde_json::to_string(&all).unwrap_or_else(|_| "[]".into());
                if (score - row.score).abs() > 1e-9 || text != row.reasons {
                    Entity::update_many()
                        .col_expr(Column::Score, sea_orm::sea_query::Expr::value(score))
                        .col_expr(Column::Reasons, sea_orm::sea_query::Expr::value(text))
                        .col_expr(Column::UpdatedAt, sea_orm::sea_query::Expr::value(now))
                        .filter(Column::WorkspaceId.eq(workspace_id))
                        .filter(Column::Id.eq(row.id))
                        .filter(Column::Status.eq(DuplicateStatus::Pending))
                        .exec(db)
                        .await?;
                    outcome.updated += 1;
                }
            }
            Some(_) => {}
        }
    }
    for chunk in rows.chunks(CHUNK) {
        Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([Column::WorkspaceId, Column::CustomerA, Column::CustomerB])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
    }
    if rows.is_empty() {
        return Ok(outcome);
    }
    // Ours is stored only where no suggestion of the pair was before: it is new.
    let ids: Vec<DuplicateSuggestionId> = rows
        .iter()
        .filter_map(|row| super::set_value(&row.id).copied())
        .collect();
    let mut stored: HashSet<DuplicateSuggestionId> = HashSet::new();
    for chunk in ids.chunks(CHUNK) {
        stored.extend(
            super::scoped::<Entity>(workspace_id)
                .filter(Column::Id.is_in(chunk.iter().copied()))
                .select_only()
                .column(Column::Id)
                .into_tuple::<DuplicateSuggestionId>()
                .all(db)
                .await?,
        );
    }
    outcome.new = stored.len() as u64;
    let Some(threshold) = super::workspace::settings(db, workspace_id)
        .await?
        .auto_merge_threshold
    else {
        return Ok(outcome);
    };
    outcome.above = rows
        .iter()
        .filter(|row| super::set_value(&row.id).is_some_and(|id| stored.contains(id)))
        .filter(|row| super::set_value(&row.score).is_some_and(|score| *score >= threshold))
        .filter_map(|row| {
            Some(AutoMerge {
                a: *super::set_value(&row.customer_a)?,
                b: *super::set_value(&row.customer_b)?,
                score: *super::set_value(&row.score)?,
            })
        })
        .collect();
    Ok(outcome)
}

/// Merges the pairs [`after_authors`] found above the workspace's threshold, inside the
/// caller's transaction, the older customer surviving (see [`super::merge`]).
pub async fn merge_above_threshold(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    pending: &[AutoMerge],
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    super::merge::merge_automatically(db, workspace_id, pending).await
}

fn distinct(values: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<String> {
    let mut seen = HashSet::new();
    values
        .into_iter()
        .filter_map(|value| {
            let value = value.as_ref().to_owned();
            seen.insert(value.clone()).then_some(value)
        })
        .collect()
}

/// Whether a key names (or is linked by) more customers than one person could be.
fn shared(customers: impl Iterator<Item = CustomerId>) -> bool {
    customers.collect::<HashSet<_>>().len() > MAX_SHARED
}

fn distinct_ids(values: impl IntoIterator<Item = IdentityId>) -> Vec<IdentityId> {
    let mut seen = HashSet::new();
    values.into_iter().filter(|id| seen.insert(*id)).collect()
}

const SORT: &str = "score";

fn sort() -> Sort<Entity> {
    Sort {
        name: SORT,
        column: Column::Score,
        id: Column::Id,
        descending: true,
        kind: SortKind::Number,
    }
}

/// The cursor of a suggestion in the list.
pub fn cursor(row: &Model) -> String {
    super::page::encode(SORT, row.score.to_string(), row.id)
}

fn pending(workspace_id: WorkspaceId, min_score: f64) -> sea_orm::Select<Entity> {
    super::scoped::<Entity>(workspace_id)
        .filter(Column::Status.eq(DuplicateStatus::Pending))
        .filter(Column::Score.gte(min_score))
}

fn check_min_score(min_score: f64) -> Result<f64> {
    if (0.0..=1.0).contains(&min_score) {
        Ok(min_score)
    } else {
        Err(Error::field(
            "minScore",
            format!("minScore must be between 0 and 1, got {min_score}"),
        ))
    }
}

/// The pending suggestions of the caller's workspace scoring at least `min_score`,
/// highest first.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    min_score: f64,
    args: &PageArgs,
) -> Result<Page<Model>> {
    let min_score = check_min_score(min_score)?;
    let sort = sort();
    let window = args.window(SORT)?;
    let select = sort.order_and_limit(
        sort.between(pending(caller.workspace_id, min_score), &window)?,
        &window,
    );
    Ok(super::page::finish(select.all(db).await?, &window))
}

/// How many pending suggestions score at least `min_score`.
pub async fn count(db: &impl ConnectionTrait, caller: &Caller, min_score: f64) -> Result<u64> {
    let min_score = check_min_score(min_score)?;
    Ok(pending(caller.workspace_id, min_score).count(db).await?)
}

/// The pending suggestions naming each customer, highest score first.
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<Model>>> {
    let mut out: HashMap<CustomerId, Vec<Model>> = HashMap::new();
    for chunk in customers.chunks(CHUNK) {
        for (column, first) in [(Column::CustomerA, true), (Column::CustomerB, false)] {
            let rows = pending(workspace_id, 0.0)
                .filter(column.is_in(chunk.iter().copied()))
                .all(db)
                .await?;
            for row in rows {
                let customer = if first {
                    row.customer_a
                } else {
                    row.customer_b
                };
                out.entry(customer).or_default().push(row);
            }
        }
    }
    for rows in out.values_mut() {
        rows.sort_by(|x, y| y.score.total_cmp(&x.score).then(y.id.cmp(&x.id)));
    }
    Ok(out)
}

/// Marks a suggestion as two different people: it leaves the lists and the pair is never
/// suggested again. `NOT_FOUND` for an id of another workspace.
pub async fn dismiss(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: DuplicateSuggestionId,
) -> Result<Model> {
    caller.require(Role::Agent, "dismissing a duplicate suggestion")?;
    let row = super::scoped::<Entity>(caller.workspace_id)
        .filter(Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("duplicate suggestion", crate::ids::encode(id)))?;
    if row.status == DuplicateStatus::Dismissed {
        return Ok(row);
    }
    let now = super::now();
    let mut active: ActiveModel = row.into();
    active.status = Set(DuplicateStatus::Dismissed);
    active.updated_at = Set(now);
    Ok(sea_orm::ActiveModelTrait::update(active, db).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_keyed_as_the_records_they_name() {
        for (raw, key) in [
            ("https://GitHub.com/Ana/", Some("https://github.com/ana")),
            ("http://ana.example.com", Some("https://ana.example.com")),
            ("https://www.ana.dev/about/", Some("https://ana.dev/about")),
            (
                "https://matrix.to/#/@Ana:example.org",
                Some("https://matrix.to#/@ana:example.org"),
            ),
            (
                "https://news.ycombinator.com/user?id=ana",
                Some("https://news.ycombinator.com/user?id=ana"),
            ),
            ("https://ana.dev/?#", Some("https://ana.dev")),
            ("https://twitter.com/Ana", Some("https://x.com/ana")),
            ("https://ana.dev/\u{0}x", None),
            ("github.com/ana", Some("https://github.com/ana")),
            ("@Ana@Social.Example", Some("https://social.example/@ana")),
            ("mailto:Ana@Example.com", Some("ana@example.com")),
            ("Ana@Example.com", Some("ana@example.com")),
            (
                "https://bsky.app/profile/ana.example.com",
                Some("https://ana.example.com"),
            ),
            ("https://bsky.app/profile/did:plc:abc", None),
            ("@ana", None),
            ("not a link", None),
            ("localhost/x", None),
            ("", None),
        ] {
            assert_eq!(link_key(raw).as_deref(), key, "{raw}");
        }
        assert_eq!(
            profile_key(
                connectors::Channel::Bluesky,
                "did:plc:abc",
                Some("@Ana.Example.com"),
                Some("https://bsky.app/profile/did:plc:abc")
            )
            .as_deref(),
            Some("https://ana.example.com")
        );
        assert_eq!(
            profile_key(
                connectors::Channel::Mastodon,
                "https://social.example/users/ana",
                Some("@ana@social.example"),
                Some("https://social.example/@ana")
            )
            .as_deref(),
            link_key("@ana@social.example").as_deref()
        );
        assert_eq!(
            profile_key(connectors::Channel::Email, "Ana@Example.com", None, None).as_deref(),
            Some("ana@example.com")
        );
    }

    #[test]
    fn reasons_add_up_without_reaching_certainty() {
        let reason = |score| Reason {
            field: "identity".into(),
            kind: "profile_link".into(),
            detail: String::new(),
            score,
        };
        assert_eq!(combined(&[reason(0.85)]), 0.85);
        assert_eq!(combined(&[reason(0.8), reason(0.85)]), 0.97);
        assert_eq!(combined(&[reason(0.95), reason(0.95)]), 0.99);
    }
}
