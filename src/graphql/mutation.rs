//! The mutation root: each mutation takes one `input` and returns a payload; the domain
//! checks the caller's role and writes the change and its event in one transaction.

use async_graphql::{Context, Object, Result};

use super::contact_point::{
    AddContactPointInput, ContactPoint, ContactPointPayload, RemoveContactPointInput,
    RemoveContactPointPayload,
};
use super::customer::{
    CreateCustomerInput, Customer, CustomerPayload, DeleteCustomerInput, DeleteCustomerPayload,
    UpdateCustomerInput,
};
use super::deal::{CreateDealInput, Deal, DealPayload, UpdateDealInput};
use super::inputs::{change, change_id, id, opt_id};
use super::interaction::{
    Interaction, InteractionPayload, RecordInteractionInput, ReplyToInteractionInput,
};
use super::note::{AddNoteInput, Note, NotePayload};
use super::organization::{
    CreateOrganizationInput, Organization, OrganizationPayload, UpdateOrganizationInput,
};
use super::source::{
    CreateSourceInput, DeleteSourcePayload, Source, SourceIdInput, SourcePayload,
    SyncSourcePayload, UpdateSourceInput,
};
use super::tag::{AddTagInput, RemoveTagInput};
use super::{app, caller};
use crate::domain::customer::{CustomerChanges, NewCustomer};
use crate::domain::deal::{DealChanges, NewDeal};
use crate::domain::interaction::NewInteraction;
use crate::domain::organization::{NewOrganization, OrganizationChanges};
use crate::domain::source::{NewSource, SourceChanges};
use crate::domain::{self};
use crate::ids::Kind;

pub struct Mutation;

async fn customer_payload(ctx: &Context<'_>, id: uuid::Uuid) -> Result<Customer> {
    Ok(Customer(
        domain::customer::get(&app(ctx).db, caller(ctx)?, id).await?,
    ))
}

#[Object]
impl Mutation {
    /// Creates a customer with contact points and tags, all or nothing.
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> Result<CustomerPayload> {
        let new = NewCustomer {
            display_name: input.display_name,
            given_name: input.given_name,
            family_name: input.family_name,
            lifecycle_stage: input.lifecycle_stage,
            external_id: input.external_id,
            organization_id: opt_id(
                "organizationId",
                Kind::Organization,
                input.organization_id.as_ref(),
            )?,
            custom: input.custom_attributes.map(|json| json.0),
            contact_points: input
                .contact_points
                .unwrap_or_default()
                .into_iter()
                .map(Into::into)
                .collect(),
            tags: input.tags.unwrap_or_default(),
        };
        let model = domain::customer::create(&app(ctx).db, caller(ctx)?, new).await?;
        Ok(CustomerPayload {
            customer: Customer(model),
        })
    }

    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        input: UpdateCustomerInput,
    ) -> Result<CustomerPayload> {
        let id = id("id", Kind::Customer, &input.id)?;
        let changes = CustomerChanges {
            display_name: input.display_name,
            given_name: change(input.given_name),
            family_name: change(input.family_name),
            lifecycle_stage: input.lifecycle_stage,
            external_id: change(input.external_id),
            organization_id: change_id(
                "organizationId",
                Kind::Organization,
                input.organization_id,
            )?,
            custom: input.custom_attributes.map(|json| json.0),
        };
        let model = domain::customer::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
        Ok(CustomerPayload {
            customer: Customer(model),
        })
    }

    /// Deletes a customer with their identities, contact points, conversations,
    /// interactions and notes (admin role).
    async fn delete_customer(
        &self,
        ctx: &Context<'_>,
        input: DeleteCustomerInput,
    ) -> Result<DeleteCustomerPayload> {
        let id = id("id", Kind::Customer, &input.id)?;
        domain::customer::delete(&app(ctx).db, caller(ctx)?, id).await?;
        Ok(DeleteCustomerPayload {
            deleted_customer_id: input.id,
        })
    }

    async fn add_contact_point(
        &self,
        ctx: &Context<'_>,
        input: AddContactPointInput,
    ) -> Result<ContactPointPayload> {
        let customer = id("customerId", Kind::Customer, &input.customer_id)?;
        let point = domain::contact_point::add(
            &app(ctx).db,
            caller(ctx)?,
            customer,
            input.contact_point.into(),
        )
        .await?;
        Ok(ContactPointPayload {
            contact_point: ContactPoint(point),
            customer: customer_payload(ctx, customer).await?,
        })
    }

    async fn remove_contact_point(
        &self,
        ctx: &Context<'_>,
        input: RemoveContactPointInput,
    ) -> Result<RemoveContactPointPayload> {
        let point = id("id", Kind::ContactPoint, &input.id)?;
        let customer = domain::contact_point::remove(&app(ctx).db, caller(ctx)?, point).await?;
        Ok(RemoveContactPointPayload {
            removed_contact_point_id: input.id,
            customer: customer_payload(ctx, customer).await?,
        })
    }

    /// Tags a customer (a no-op when already tagged).
    async fn add_tag(&self, ctx: &Context<'_>, input: AddTagInput) -> Result<CustomerPayload> {
        let customer = id("customerId", Kind::Customer, &input.customer_id)?;
        domain::tag::add(
            &app(ctx).db,
            caller(ctx)?,
            customer,
            &input.name,
            input.color,
        )
        .await?;
        Ok(CustomerPayload {
            customer: customer_payload(ctx, customer).await?,
        })
    }

    async fn remove_tag(
        &self,
        ctx: &Context<'_>,
        input: RemoveTagInput,
    ) -> Result<CustomerPayload> {
        let customer = id("customerId", Kind::Customer, &input.customer_id)?;
        domain::tag::remove(&app(ctx).db, caller(ctx)?, customer, &input.name).await?;
        Ok(CustomerPayload {
            customer: customer_payload(ctx, customer).await?,
        })
    }

    async fn create_organization(
        &self,
        ctx: &Context<'_>,
        input: CreateOrganizationInput,
    ) -> Result<OrganizationPayload> {
        let new = NewOrganization {
            name: input.name,
            domain: input.domain,
            custom: input.custom_attributes.map(|json| json.0),
        };
        let model = domain::organization::create(&app(ctx).db, caller(ctx)?, new).await?;
        Ok(OrganizationPayload {
            organization: Organization(model),
        })
    }

    async fn update_organization(
        &self,
        ctx: &Context<'_>,
        input: UpdateOrganizationInput,
    ) -> Result<OrganizationPayload> {
        let id = id("id", Kind::Organization, &input.id)?;
        let changes = OrganizationChanges {
            name: input.name,
            domain: change(input.domain),
            custom: input.custom_attributes.map(|json| json.0),
        };
        let model = domain::organization::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
        Ok(OrganizationPayload {
            organization: Organization(model),
        })
    }

    async fn create_deal(&self, ctx: &Context<'_>, input: CreateDealInput) -> Result<DealPayload> {
        let new = NewDeal {
            title: input.title,
            customer_id: opt_id("customerId", Kind::Customer, input.customer_id.as_ref())?,
            organization_id: opt_id(
                "organizationId",
                Kind::Organization,
                input.organization_id.as_ref(),
            )?,
            amount: input.amount,
            currency: input.currency,
            stage: input.stage,
            close_date: input.close_date,
        };
        let model = domain::deal::create(&app(ctx).db, caller(ctx)?, new).await?;
        Ok(DealPayload { deal: Deal(model) })
    }

    async fn update_deal(&self, ctx: &Context<'_>, input: UpdateDealInput) -> Result<DealPayload> {
        let id = id("id", Kind::Deal, &input.id)?;
        let changes = DealChanges {
            title: input.title,
            customer_id: change_id("customerId", Kind::Customer, input.customer_id)?,
            organization_id: change_id(
                "organizationId",
                Kind::Organization,
                input.organization_id,
            )?,
            amount: change(input.amount),
            currency: input.currency,
            stage: input.stage,
            close_date: change(input.close_date),
        };
        let model = domain::deal::update(&app(ctx).db, caller(ctx)?, id, changes).await?;
        Ok(DealPayload { deal: Deal(model) })
    }

    async fn add_note(&self, ctx: &Context<'_>, input: AddNoteInput) -> Result<NotePayload> {
        let customer = id("customerId", Kind::Customer, &input.customer_id)?;
        let model = domain::note::add(&app(ctx).db, caller(ctx)?, customer, &input.body).await?;
        Ok(NotePayload { note: Note(model) })
    }

    /// Logs a call, meeting or e-mail by hand on a customer's timeline.
    async fn record_interaction(
        &self,
        ctx: &Context<'_>,
        input: RecordInteractionInput,
    ) -> Result<InteractionPayload> {
        let new = NewInteraction {
            customer_id: id("customerId", Kind::Customer, &input.customer_id)?,
            conversation_id: opt_id(
                "conversationId",
                Kind::Conversation,
                input.conversation_id.as_ref(),
            )?,
            channel: input.channel.as_str().to_owned(),
            kind: input.kind,
            direction: input.direction,
            subject: input.subject,
            text: input.text,
            url: input.url,
            language: input.language,
            occurred_at: input.occurred_at,
        };
        let model = domain::interaction::record(&app(ctx).db, caller(ctx)?, new).await?;
        Ok(InteractionPayload {
            interaction: Interaction(model),
        })
    }

    /// Adds a source (admin role). Its secrets are stored apart and never returned.
    async fn create_source(
        &self,
        ctx: &Context<'_>,
        input: CreateSourceInput,
    ) -> Result<SourcePayload> {
        let new = NewSource {
            channel: input.channel.into(),
            name: input.name,
            config: domain::text::check_json("config", &input.config.0)?,
            schedule_secs: input.schedule_secs,
        };
        let model = domain::source::create(&app(ctx).db, caller(ctx)?, new).await?;
        Ok(SourcePayload {
            source: Source(model),
        })
    }

    async fn update_source(
        &self,
        ctx: &Context<'_>,
        input: UpdateSourceInput,
    ) -> Result<SourcePayload> {
        let id = id("id", Kind::Source, &input.id)?;
        let changes = SourceChanges {
            name: input.name,
            config: input
                .config
                .map(|json| domain::text::check_json("config", &json.0))
                .transpose()?,
            schedule_secs: input.schedule_secs,
            paused: None,
        };
        Ok(SourcePayload {
            source: Source(domain::source::update(&app(ctx).db, caller(ctx)?, id, changes).await?),
        })
    }

    /// Stops a source: pulls stop, webhook deliveries are refused with 503 until resumed.
    async fn pause_source(&self, ctx: &Context<'_>, input: SourceIdInput) -> Result<SourcePayload> {
        let id = id("id", Kind::Source, &input.id)?;
        let changes = SourceChanges {
            paused: Some(true),
            ..SourceChanges::default()
        };
        Ok(SourcePayload {
            source: Source(domain::source::update(&app(ctx).db, caller(ctx)?, id, changes).await?),
        })
    }

    async fn resume_source(
        &self,
        ctx: &Context<'_>,
        input: SourceIdInput,
    ) -> Result<SourcePayload> {
        let id = id("id", Kind::Source, &input.id)?;
        let changes = SourceChanges {
            paused: Some(false),
            ..SourceChanges::default()
        };
        Ok(SourcePayload {
            source: Source(domain::source::update(&app(ctx).db, caller(ctx)?, id, changes).await?),
        })
    }

    /// Syncs a pull source now (admin role) and reports what landed. `CONFLICT` while the
    /// scheduler (of any process) is running it; a platform error is not a GraphQL error
    /// but the payload's `error` and the source's `status`/`lastError`.
    async fn sync_source(
        &self,
        ctx: &Context<'_>,
        input: SourceIdInput,
    ) -> Result<SyncSourcePayload> {
        let id = id("id", Kind::Source, &input.id)?;
        let syncer = crate::ingest::sync::Syncer::new(app(ctx));
        let (report, source) = crate::ingest::sync::sync_now(&syncer, caller(ctx)?, id).await?;
        Ok(SyncSourcePayload {
            source: Source(source),
            new_items: report.new as i32,
            duplicates: report.duplicates as i32,
            batches: report.batches as i32,
            error: report.error,
        })
    }

    /// Answers an ingested interaction on its own channel (agent role): a Mastodon reply,
    /// an e-mail with the threading headers, a POST to a webhook source's reply URL. The
    /// answer is stored as an outbound interaction in the same conversation. Retrying with
    /// the same `idempotencyKey` (or the same text) sends and stores it once.
    async fn reply_to_interaction(
        &self,
        ctx: &Context<'_>,
        input: ReplyToInteractionInput,
    ) -> Result<InteractionPayload> {
        let target = id("interactionId", Kind::Interaction, &input.interaction_id)?;
        if let Some(key) = &input.idempotency_key {
            domain::text::check_lookup("idempotencyKey", key, 200)?;
        }
        let syncer = crate::ingest::sync::Syncer::new(app(ctx));
        let model = crate::ingest::reply::reply(
            &syncer,
            caller(ctx)?,
            target,
            &input.text,
            input.idempotency_key,
        )
        .await?;
        Ok(InteractionPayload {
            interaction: Interaction(model),
        })
    }

    /// Deletes a source; what it ingested stays.
    async fn delete_source(
        &self,
        ctx: &Context<'_>,
        input: SourceIdInput,
    ) -> Result<DeleteSourcePayload> {
        let id = id("id", Kind::Source, &input.id)?;
        domain::source::delete(&app(ctx).db, caller(ctx)?, id).await?;
        Ok(DeleteSourcePayload {
            deleted_source_id: input.id,
        })
    }
}
