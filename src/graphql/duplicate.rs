//! Duplicate suggestions: two customers who may be one person, the score and the reasons,
//! for someone to merge or dismiss (never merged silently).

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::inputs::id;
use super::loaders::*;
use super::types::connection;
use super::{app, caller, load};
use crate::domain::page::PageArgs;
use crate::domain::{self, duplicate};
use crate::ids::encode;
use entity::duplicate_suggestion::Model;
use entity::enums::DuplicateStatus;
use entity::DuplicateSuggestionId;

pub struct DuplicateSuggestion(pub Model);

/// Two customers who may be one person, found by a detector and waiting for someone to
/// merge or dismiss them (never merged silently).
#[Object]
impl DuplicateSuggestion {
    /// `dup_…`.
    async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// How likely the two are one person, from 0 to 1: the reasons' scores together.
    async fn score(&self) -> f64 {
        self.0.score
    }
    /// Why they may be one person: which fields matched and how, strongest first.
    async fn reasons(&self) -> Vec<DuplicateReason> {
        duplicate::reasons(&self.0)
            .into_iter()
            .map(|reason| DuplicateReason {
                field: reason.field,
                kind: reason.kind,
                detail: reason.detail,
                score: reason.score,
            })
            .collect()
    }
    /// One of the two (the order carries no meaning).
    async fn a(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_a))
            .await?
            .map(Customer::new))
    }
    /// The other.
    async fn b(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.customer_b))
            .await?
            .map(Customer::new))
    }
    /// Pending, dismissed (two different people) or merged (one person now).
    async fn status(&self) -> DuplicateStatus {
        self.0.status
    }
    /// When the pair was first suggested.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When its status last changed.
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// Why two customers may be one person.
#[derive(SimpleObject)]
pub struct DuplicateReason {
    /// The field that matched (`identity`).
    pub field: String,
    /// How it matched (`profile_link`: one record's profile links the other's account,
    /// site or address).
    pub kind: String,
    /// What matched, in words.
    pub detail: String,
    /// What this reason alone is worth, from 0 to 1.
    pub score: f64,
}

/// `totalCount` of the suggestion list.
pub struct DuplicateTotal(f64);

#[Object]
impl DuplicateTotal {
    /// How many pending suggestions score at least `minScore`, on every page together.
    async fn total_count(&self, ctx: &Context<'_>) -> Result<u64> {
        Ok(duplicate::count(&app(ctx).db, caller(ctx)?, self.0).await?)
    }
}

pub type DuplicateSuggestionConnection =
    Connection<String, DuplicateSuggestion, DuplicateTotal, EmptyFields>;

pub(super) async fn duplicate_suggestions(
    ctx: &Context<'_>,
    min_score: Option<f64>,
    args: PageArgs,
) -> Result<DuplicateSuggestionConnection> {
    let min_score = min_score.unwrap_or(duplicate::DEFAULT_MIN_SCORE);
    let page = duplicate::list(&app(ctx).db, caller(ctx)?, min_score, &args).await?;
    Ok(connection(
        page,
        DuplicateTotal(min_score),
        duplicate::cursor,
        DuplicateSuggestion,
    ))
}

/// The suggestion to dismiss.
#[derive(InputObject)]
pub struct DismissDuplicateInput {
    /// The suggestion (`dup_…`).
    pub id: ID,
}

/// What dismissing a suggestion answers.
#[derive(SimpleObject)]
pub struct DismissDuplicatePayload {
    /// The suggestion, now dismissed.
    pub duplicate_suggestion: DuplicateSuggestion,
}

pub(super) async fn dismiss_duplicate(
    ctx: &Context<'_>,
    input: DismissDuplicateInput,
) -> Result<DismissDuplicatePayload> {
    let target = id::<DuplicateSuggestionId>("id", &input.id)?;
    let model = domain::duplicate::dismiss(&app(ctx).db, caller(ctx)?, target).await?;
    Ok(DismissDuplicatePayload {
        duplicate_suggestion: DuplicateSuggestion(model),
    })
}
