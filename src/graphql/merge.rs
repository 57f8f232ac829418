//! Merging customers and undoing it: the inputs, the payloads and the `MergeRecord`
//! object. The rules are `domain::merge`'s.

use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::customer::Customer;
use super::inputs::id;
use super::loaders::*;
use super::{app, caller, load};
use crate::domain::merge::{self, FieldChoice, MergeInput};
use crate::ids::encode;
use entity::merge_record::Model;
use entity::CustomerId;

pub use crate::domain::merge::MergeField;

/// Which customer's value of a profile field the survivor keeps.
#[derive(InputObject)]
pub struct MergeFieldChoiceInput {
    /// The field.
    pub field: MergeField,
    /// The custom attribute's key, for `CUSTOM_ATTRIBUTE` (only then).
    pub key: Option<String>,
    /// The customer whose value wins: the survivor or one of `mergedIds` (`cus_…`).
    pub customer_id: ID,
}

/// Customers to merge.
#[derive(InputObject)]
pub struct MergeCustomersInput {
    /// The customer that stays (`cus_…`).
    pub survivor_id: ID,
    /// The customers merged into it, at most 20; each stays as a tombstone whose id
    /// resolves to the survivor.
    pub merged_ids: Vec<ID>,
    /// The fields whose value is not the default: the survivor's value when it has one,
    /// else the first merged customer's that has one (custom attributes key by key).
    pub field_choices: Option<Vec<MergeFieldChoiceInput>>,
}

/// What merging answers.
#[derive(SimpleObject)]
pub struct MergeCustomersPayload {
    /// The survivor, with everything of the merged customers.
    pub survivor: Customer,
    /// One record per merged customer, in the order of `mergedIds`.
    pub merges: Vec<MergeRecord>,
}

/// The merge to undo.
#[derive(InputObject)]
pub struct UnmergeCustomerInput {
    /// The merged customer (`cus_…`): the id it had before the merge.
    pub customer_id: ID,
}

/// What unmerging answers.
#[derive(SimpleObject)]
pub struct UnmergeCustomerPayload {
    /// The customer restored.
    pub customer: Customer,
    /// The customer it had been merged into, without what was the restored one's.
    pub survivor: Customer,
    /// The merge undone (with its `unmergedAt`).
    pub merge: MergeRecord,
}

/// Why customers were merged.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum MergeReason {
    /// Someone merged them.
    Manual,
    /// A duplicate suggestion scored at least the workspace's `autoMergeThreshold`.
    Automatic,
}

/// One customer merged into another: who, when, why, and whether it was undone.
pub struct MergeRecord(pub Model);

/// One customer merged into another: who, when, why, and whether it was undone.
#[Object]
impl MergeRecord {
    /// `mrg_…`.
    async fn id(&self) -> ID {
        ID(encode(self.0.id))
    }
    /// The customer the other was merged into.
    async fn survivor(&self, ctx: &Context<'_>) -> Result<Option<Customer>> {
        Ok(load(ctx, CustomerById(self.0.survivor_id))
            .await?
            .map(Customer::new))
    }
    /// The merged customer's own id (`cus_…`; while merged it resolves to the survivor).
    async fn merged_customer_id(&self) -> ID {
        ID(encode(self.0.merged_id))
    }
    /// Someone's decision, or a suggestion above the threshold.
    async fn reason(&self) -> MergeReason {
        match self.0.reason.as_str() {
            "automatic" => MergeReason::Automatic,
            _ => MergeReason::Manual,
        }
    }
    /// The suggestion's score, for an automatic merge.
    async fn score(&self) -> Option<f64> {
        self.0.score
    }
    /// Who merged: the API key's name, or what in Rapport did.
    async fn merged_by(&self) -> Option<String> {
        actor_name(&self.0.actor)
    }
    /// When.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it was undone; `null` while it holds.
    async fn unmerged_at(&self) -> Option<DateTime<Utc>> {
        self.0.unmerged_at
    }
    /// Who undid it.
    async fn unmerged_by(&self) -> Option<String> {
        self.0.unmerged_by.as_ref().and_then(actor_name)
    }
}

fn actor_name(actor: &serde_json::Value) -> Option<String> {
    actor.get("name")?.as_str().map(str::to_owned)
}

pub(super) async fn merge_customers(
    ctx: &Context<'_>,
    input: MergeCustomersInput,
) -> Result<MergeCustomersPayload> {
    let survivor_id = id::<CustomerId>("survivorId", &input.survivor_id)?;
    let merged_ids = input
        .merged_ids
        .iter()
        .enumerate()
        .map(|(index, merged)| id::<CustomerId>(&format!("mergedIds[{index}]"), merged))
        .collect::<crate::Result<Vec<_>>>()?;
    let choices = input
        .field_choices
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(index, choice)| {
            Ok(FieldChoice {
                field: choice.field,
                key: choice.key,
                customer_id: id::<CustomerId>(
                    &format!("fieldChoices[{index}].customerId"),
                    &choice.customer_id,
                )?,
            })
        })
        .collect::<crate::Result<Vec<_>>>()?;
    let input = MergeInput {
        survivor_id,
        merged_ids,
        choices,
    };
    let merged = merge::merge_customers(&app(ctx).db, caller(ctx)?, input).await?;
    Ok(MergeCustomersPayload {
        survivor: Customer::new(merged.survivor),
        merges: merged.records.into_iter().map(MergeRecord).collect(),
    })
}

pub(super) async fn unmerge_customer(
    ctx: &Context<'_>,
    input: UnmergeCustomerInput,
) -> Result<UnmergeCustomerPayload> {
    let customer_id = id::<CustomerId>("customerId", &input.customer_id)?;
    let unmerged = merge::unmerge(&app(ctx).db, caller(ctx)?, customer_id).await?;
    Ok(UnmergeCustomerPayload {
        customer: Customer::new(unmerged.customer),
        survivor: Customer::new(unmerged.survivor),
        merge: MergeRecord(unmerged.record),
    })
}
