//! Deals: opportunities with a customer or an organization. Amounts are exact decimals
//! with at most two fraction digits, stored as hundredths, never as floating point.

use std::collections::HashMap;

use chrono::NaiveDate;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, TransactionTrait};

use super::event::Event;
use super::{Caller, DealStage, Role};
use crate::error::{Error, Result};
use entity::deal::{self, Entity, Model};
use entity::{CustomerId, DealId, OrganizationId, WorkspaceId};

pub struct NewDeal {
    pub title: String,
    pub customer_id: Option<CustomerId>,
    pub organization_id: Option<OrganizationId>,
    pub amount: Option<String>,
    pub currency: Option<String>,
    pub stage: Option<DealStage>,
    pub close_date: Option<NaiveDate>,
}

/// Changes to a deal: `None` leaves a field alone, `Some(None)` clears it.
#[derive(Default)]
pub struct DealChanges {
    pub title: Option<String>,
    pub customer_id: Option<Option<CustomerId>>,
    pub organization_id: Option<Option<OrganizationId>>,
    pub amount: Option<Option<String>>,
    pub currency: Option<String>,
    pub stage: Option<DealStage>,
    pub close_date: Option<Option<NaiveDate>>,
}

/// `"1234.5"` → `123450` hundredths. Negative, over two decimals or absurdly large is refused.
pub fn parse_amount(text: &str) -> Result<i64> {
    let invalid = || {
        Error::field(
            "amount",
            format!("`{text}` is not an amount such as 1250.00 (at most two decimals)"),
        )
    };
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if whole.is_empty()
        || !digits(whole)
        || !digits(fraction)
        || fraction.len() > 2
        || whole.len() > 15
    {
        return Err(invalid());
    }
    let whole: i64 = whole.parse().map_err(|_| invalid())?;
    let fraction: i64 = format!("{fraction:0<2}").parse().map_err(|_| invalid())?;
    Ok(whole * 100 + fraction)
}

/// `123450` → `"1234.50"`.
pub fn format_amount(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

fn parse_currency(text: &str) -> Result<String> {
    let upper = text.trim().to_ascii_uppercase();
    if upper.len() == 3 && upper.chars().all(|c| c.is_ascii_uppercase()) {
        Ok(upper)
    } else {
        Err(Error::field(
            "currency",
            format!("`{text}` is not an ISO 4217 currency code such as EUR"),
        ))
    }
}

async fn check_links(
    db: &impl ConnectionTrait,
    caller: &Caller,
    customer: Option<CustomerId>,
    organization: Option<OrganizationId>,
) -> Result<()> {
    if let Some(customer) = customer {
        super::customer::get_live(db, caller, customer).await?;
    }
    if let Some(organization) = organization {
        super::organization::get(db, caller, organization).await?;
    }
    Ok(())
}

pub async fn create(db: &impl TransactionTrait, caller: &Caller, input: NewDeal) -> Result<Model> {
    caller.require(Role::Agent, "creating a deal")?;
    let title = super::clean_required("title", &input.title, 300)?;
    if input.customer_id.is_none() && input.organization_id.is_none() {
        return Err(Error::field(
            "customerId",
            "a deal needs a customerId, an organizationId or both",
        ));
    }
    let amount = input.amount.as_deref().map(parse_amount).transpose()?;
    let currency = parse_currency(input.currency.as_deref().unwrap_or("EUR"))?;
    let now = super::now();
    let row = deal::ActiveModel {
        id: Set(DealId::new()),
        workspace_id: Set(caller.workspace_id),
        customer_id: Set(input.customer_id),
        organization_id: Set(input.organization_id),
        title: Set(title),
        amount_minor: Set(amount),
        currency: Set(currency),
        stage: Set(input.stage.unwrap_or(DealStage::Qualification)),
        close_date: Set(input.close_date),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let txn = super::begin_write(db).await?;
    check_links(&txn, caller, input.customer_id, input.organization_id).await?;
    let model = row.insert(&txn).await?;
    super::event::append(&txn, caller.workspace_id, Event::DealCreated(&model)).await?;
    txn.commit().await?;
    Ok(model)
}

pub async fn update(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: DealId,
    changes: DealChanges,
) -> Result<Model> {
    let how = super::Update {
        role: Role::Agent,
        action: "updating a deal",
        taken: None,
        event: |model| Event::DealUpdated(model),
    };
    super::update(db, caller, id, how, async |txn, current, row| {
        let customer = changes.customer_id.unwrap_or(current.customer_id);
        let organization = changes.organization_id.unwrap_or(current.organization_id);
        if customer.is_none() && organization.is_none() {
            return Err(Error::field(
                "customerId",
                "a deal needs a customerId, an organizationId or both",
            ));
        }
        check_links(
            txn,
            caller,
            changes.customer_id.flatten(),
            changes.organization_id.flatten(),
        )
        .await?;
        row.customer_id = Set(customer);
        row.organization_id = Set(organization);
        if let Some(title) = changes.title {
            row.title = Set(super::clean_required("title", &title, 300)?);
        }
        if let Some(amount) = changes.amount {
            row.amount_minor = Set(amount.as_deref().map(parse_amount).transpose()?);
        }
        if let Some(currency) = changes.currency {
            row.currency = Set(parse_currency(&currency)?);
        }
        if let Some(stage) = changes.stage {
            row.stage = Set(stage);
        }
        if let Some(close_date) = changes.close_date {
            row.close_date = Set(close_date);
        }
        Ok(())
    })
    .await
}

/// A deal of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: DealId) -> Result<Model> {
    super::find_scoped(db, caller.workspace_id, id).await
}

/// The deals of each customer, newest first.
pub async fn of_customers(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, Vec<Model>>> {
    super::children_of::<Entity, _>(
        db,
        workspace_id,
        "customer_id",
        customers,
        "created_at",
        true,
        |d| d.customer_id,
    )
    .await
}

/// The deals of each organization, newest first.
pub async fn of_organizations(
    db: &impl ConnectionTrait,
    workspace_id: WorkspaceId,
    organizations: &[OrganizationId],
) -> Result<HashMap<OrganizationId, Vec<Model>>> {
    super::children_of::<Entity, _>(
        db,
        workspace_id,
        "organization_id",
        organizations,
        "created_at",
        true,
        |d| d.organization_id,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_exact_hundredths() {
        assert_eq!(parse_amount("1234.5").unwrap(), 123_450);
        assert_eq!(parse_amount("0.07").unwrap(), 7);
        assert_eq!(parse_amount("42").unwrap(), 4_200);
        assert_eq!(format_amount(123_450), "1234.50");
        for bad in ["", "-1", "1.234", "1,5", "abc", "1e5", ".5"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }
}
