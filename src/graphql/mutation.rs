//! The mutation root: each mutation takes one `input` and returns a payload; the domain
//! checks the caller's role and writes the change and its event in one transaction.
//! The root only names the fields (their order and docs make the SDL); each resolver
//! lives with its noun (`customer::create_customer`, …).

use async_graphql::{Context, Object, Result};

use super::contact_point::{
    AddContactPointInput, ContactPointPayload, RemoveContactPointInput, RemoveContactPointPayload,
};
use super::customer::{
    CreateCustomerInput, CustomerPayload, DeleteCustomerInput, DeleteCustomerPayload,
    UpdateCustomerInput,
};
use super::deal::{CreateDealInput, DealPayload, UpdateDealInput};
use super::import::{ImportCustomersInput, ImportCustomersPayload};
use super::inbox::{
    AddConversationLabelInput, AssignConversationInput, BulkAssignConversationsInput,
    BulkConversationsPayload, BulkLabelConversationsInput, BulkSetConversationStatusInput,
    ConversationPayload, MarkConversationSpamInput, RemoveConversationLabelInput,
    SetConversationPriorityInput, SetConversationStatusInput,
};
use super::interaction::{InteractionPayload, RecordInteractionInput, ReplyToInteractionInput};
use super::note::AddConversationNoteInput;
use super::note::{AddNoteInput, NotePayload};
use super::organization::{CreateOrganizationInput, OrganizationPayload, UpdateOrganizationInput};
use super::reply::{
    CreateSavedReplyInput, DeleteSavedReplyInput, ReplyToConversationInput, RetryReplyInput,
    SavedReplyPayload, UpdateSavedReplyInput,
};
use super::service::{
    BusinessHoursPayload, DeleteSlaRuleInput, DeleteSlaRulePayload, SetBusinessHoursInput,
    SetSlaRuleInput, SlaRulePayload,
};
use super::source::{
    CreateSourceInput, DeleteSourcePayload, SourceIdInput, SourcePayload, SyncSourcePayload,
    UpdateSourceInput,
};
use super::tag::{AddTagInput, RemoveTagInput};
use super::trusted_document::{
    RegisterTrustedDocumentsInput, RegisterTrustedDocumentsPayload, RemoveTrustedDocumentInput,
    RemoveTrustedDocumentPayload,
};
use super::workspace::{UpdateWorkspaceSettingsInput, WorkspacePayload};

pub struct Mutation;

/// Every change: each takes one `input` and returns a payload. The caller's role decides
/// what it may do (`FORBIDDEN` otherwise); input problems are `BAD_USER_INPUT` naming the
/// field, missing objects `NOT_FOUND`, duplicates `CONFLICT`.
#[Object]
impl Mutation {
    /// Creates a customer with contact points and tags, all or nothing.
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new customer.")] input: CreateCustomerInput,
    ) -> Result<CustomerPayload> {
        super::customer::create_customer(ctx, input).await
    }

    /// Changes a customer's profile (agent role): fields left out stay, `null` clears a
    /// nullable one. `CONFLICT` when `externalId` is another customer's.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer and the fields to change.")] input: UpdateCustomerInput,
    ) -> Result<CustomerPayload> {
        super::customer::update_customer(ctx, input).await
    }

    /// Deletes a customer with their identities, contact points, conversations,
    /// interactions and notes (admin role). Their items are tombstoned: a re-pull of the
    /// source does not store them again (a new item of theirs makes a new customer; to
    /// keep the person out too, erase them with `eraseCustomer`).
    async fn delete_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer to delete.")] input: DeleteCustomerInput,
    ) -> Result<DeleteCustomerPayload> {
        super::customer::delete_customer(ctx, input).await
    }

    /// Erases a customer (admin role, GDPR): them and everything that identifies them —
    /// identities, contact points, tags, interactions with their raw payloads, the
    /// conversations only they wrote in, notes, deals of no organization, duplicate
    /// suggestions, the events about them, their search documents — leaving an audit entry
    /// without personal data, and hashed tombstones so a re-pull of their items, or their
    /// platform ids and addresses arriving again, do not bring them back (see the
    /// workspace setting `newContactAfterErasure`). `NOT_FOUND` when the workspace has no
    /// such customer.
    async fn erase_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer to erase.")] input: super::gdpr::EraseCustomerInput,
    ) -> Result<super::gdpr::EraseCustomerPayload> {
        super::gdpr::erase_customer(ctx, input).await
    }
    /// Imports customers from CSV or JSON Lines sent inline (agent role), upserting on
    /// `external_id`: a second import of the same data changes nothing. Bad values are
    /// dropped and bad rows left out, each reported with its line.
    async fn import_customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The format and the rows.")] input: ImportCustomersInput,
    ) -> Result<ImportCustomersPayload> {
        super::import::import_customers(ctx, input).await
    }

    /// Adds an e-mail, phone, address or website to a customer (agent role); the first of
    /// its kind becomes primary. `BAD_USER_INPUT` naming `contactPoint.value` when it does
    /// not parse (a phone needs its country code), `CONFLICT` when the workspace has it
    /// already, on any customer.
    async fn add_contact_point(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer and the contact point to add.")] input: AddContactPointInput,
    ) -> Result<ContactPointPayload> {
        super::contact_point::add_contact_point(ctx, input).await
    }

    /// Removes a contact point (agent role); when it was primary, the oldest remaining one
    /// of its kind becomes primary. `NOT_FOUND` when the workspace has no such contact point.
    async fn remove_contact_point(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The contact point to remove.")] input: RemoveContactPointInput,
    ) -> Result<RemoveContactPointPayload> {
        super::contact_point::remove_contact_point(ctx, input).await
    }

    /// Tags a customer (a no-op when already tagged).
    async fn add_tag(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer and the tag to put on them.")] input: AddTagInput,
    ) -> Result<CustomerPayload> {
        super::tag::add_tag(ctx, input).await
    }

    /// Takes a tag off a customer (agent role); the tag stays in the workspace. `NOT_FOUND`
    /// when the customer does not carry it.
    async fn remove_tag(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer and the tag to take off.")] input: RemoveTagInput,
    ) -> Result<CustomerPayload> {
        super::tag::remove_tag(ctx, input).await
    }

    /// Creates an organization (agent role). `CONFLICT` when its domain is another
    /// organization's.
    async fn create_organization(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new organization.")] input: CreateOrganizationInput,
    ) -> Result<OrganizationPayload> {
        super::organization::create_organization(ctx, input).await
    }

    /// Changes an organization (agent role): fields left out stay, `null` clears a nullable
    /// one. `CONFLICT` when the new domain is another organization's.
    async fn update_organization(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The organization and the fields to change.")]
        input: UpdateOrganizationInput,
    ) -> Result<OrganizationPayload> {
        super::organization::update_organization(ctx, input).await
    }

    /// Creates a deal for a customer and/or an organization (agent role). `BAD_USER_INPUT`
    /// naming `amount` for an amount that is negative or has more than two fraction digits.
    async fn create_deal(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new deal.")] input: CreateDealInput,
    ) -> Result<DealPayload> {
        super::deal::create_deal(ctx, input).await
    }

    /// Changes a deal (agent role), such as moving it to another stage: fields left out
    /// stay, `null` clears a nullable one.
    async fn update_deal(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The deal and the fields to change.")] input: UpdateDealInput,
    ) -> Result<DealPayload> {
        super::deal::update_deal(ctx, input).await
    }

    /// Puts an internal note on a customer (agent role), written by the calling key's
    /// name; never sent to any platform.
    async fn add_note(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The customer and the note.")] input: AddNoteInput,
    ) -> Result<NotePayload> {
        super::note::add_note(ctx, input).await
    }

    /// Logs a call, meeting or e-mail by hand on a customer's timeline.
    async fn record_interaction(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The interaction to record.")] input: RecordInteractionInput,
    ) -> Result<InteractionPayload> {
        super::interaction::record_interaction(ctx, input).await
    }

    /// Adds a source (admin role). Its secrets are stored apart and never returned.
    async fn create_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new source: its channel, name and settings.")]
        input: CreateSourceInput,
    ) -> Result<SourcePayload> {
        super::source::create_source(ctx, input).await
    }

    /// Renames a source, changes its schedule or replaces its settings (admin role).
    /// Changing a setting a secret is bound to (Mastodon `base_url`, e-mail `imap_host`,
    /// webhook `reply_url`, …) needs the secret again: `BAD_USER_INPUT` naming
    /// `config.<secret>` otherwise.
    async fn update_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source and the fields to change.")] input: UpdateSourceInput,
    ) -> Result<SourcePayload> {
        super::source::update_source(ctx, input).await
    }

    /// Stops a source: pulls stop, webhook deliveries are refused with 503 until resumed.
    async fn pause_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source.")] input: SourceIdInput,
    ) -> Result<SourcePayload> {
        super::source::pause_source(ctx, input).await
    }

    /// Resumes a paused source (admin role): status OK, and a pull source is due at once.
    /// A source that is not paused is returned as it is.
    async fn resume_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source.")] input: SourceIdInput,
    ) -> Result<SourcePayload> {
        super::source::resume_source(ctx, input).await
    }

    /// Syncs a pull source now (admin role) and reports what landed. `CONFLICT` while the
    /// scheduler (of any process) is running it; a platform error is not a GraphQL error
    /// but the payload's `error` and the source's `status`/`lastError`.
    async fn sync_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source.")] input: SourceIdInput,
    ) -> Result<SyncSourcePayload> {
        super::source::sync_source(ctx, input).await
    }

    /// Answers an ingested interaction on its own channel (agent role): a Mastodon reply,
    /// an e-mail with the threading headers, a POST to a webhook source's reply URL. The
    /// answer is stored as an outbound interaction in the same conversation. Retrying with
    /// the same `idempotencyKey` (or the same text) sends and stores it once.
    async fn reply_to_interaction(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The interaction to answer and the answer.")]
        input: ReplyToInteractionInput,
    ) -> Result<InteractionPayload> {
        super::interaction::reply_to_interaction(ctx, input).await
    }

    /// Assigns a conversation to a user of the workspace, or unassigns it with a null
    /// `assigneeId` (agent role).
    async fn assign_conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and its new assignee.")] input: AssignConversationInput,
    ) -> Result<ConversationPayload> {
        super::inbox::assign_conversation(ctx, input).await
    }

    /// Sets a conversation's status (agent role). SNOOZED needs `snoozedUntil` in the
    /// future; the conversation is OPEN again from then on.
    async fn set_conversation_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and its new status.")] input: SetConversationStatusInput,
    ) -> Result<ConversationPayload> {
        super::inbox::set_conversation_status(ctx, input).await
    }

    /// Sets a conversation's priority (agent role).
    async fn set_conversation_priority(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and its new priority.")]
        input: SetConversationPriorityInput,
    ) -> Result<ConversationPayload> {
        super::inbox::set_conversation_priority(ctx, input).await
    }

    /// Puts a label on a conversation (a no-op when it is there already).
    async fn add_conversation_label(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and the label.")] input: AddConversationLabelInput,
    ) -> Result<ConversationPayload> {
        super::inbox::add_conversation_label(ctx, input).await
    }

    /// Takes a label off a conversation; `NOT_FOUND` when the workspace has no such label.
    async fn remove_conversation_label(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and the label.")] input: RemoveConversationLabelInput,
    ) -> Result<ConversationPayload> {
        super::inbox::remove_conversation_label(ctx, input).await
    }

    /// Marks a conversation as spam, hiding it and its customer's other and future
    /// conversations from the inbox, or (`spam: false`, on any conversation hidden as
    /// spam) takes the mark off the customer and all their conversations.
    async fn mark_conversation_spam(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation, and whether it is spam.")]
        input: MarkConversationSpamInput,
    ) -> Result<ConversationPayload> {
        super::inbox::mark_conversation_spam(ctx, input).await
    }

    /// Sets the status of up to 100 conversations, all or nothing.
    async fn bulk_set_conversation_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversations and their new status.")]
        input: BulkSetConversationStatusInput,
    ) -> Result<BulkConversationsPayload> {
        super::inbox::bulk_set_conversation_status(ctx, input).await
    }

    /// Assigns (or unassigns) up to 100 conversations, all or nothing.
    async fn bulk_assign_conversations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversations and their new assignee.")]
        input: BulkAssignConversationsInput,
    ) -> Result<BulkConversationsPayload> {
        super::inbox::bulk_assign_conversations(ctx, input).await
    }

    /// Puts a label on (or, with `remove`, takes it off) up to 100 conversations, all or
    /// nothing.
    async fn bulk_label_conversations(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversations and the label.")] input: BulkLabelConversationsInput,
    ) -> Result<BulkConversationsPayload> {
        super::inbox::bulk_label_conversations(ctx, input).await
    }

    /// Renames a user, changes their role, or deactivates (`active: false`) or reactivates
    /// them (admin role; an owner only by an owner). A deactivated user's keys stop working
    /// at once and they cannot be assigned.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user and the fields to change.")] input: super::user::UpdateUserInput,
    ) -> Result<super::user::UserPayload> {
        super::user::update_user(ctx, input).await
    }

    /// Deletes a source; what it ingested stays.
    async fn delete_source(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source.")] input: SourceIdInput,
    ) -> Result<DeleteSourcePayload> {
        super::source::delete_source(ctx, input).await
    }

    /// Answers a conversation through its source (agent role), in reply to `inReplyToId`
    /// or the conversation's latest inbound message, with `text` or a saved reply. Text
    /// over the platform's limit (Mastodon: the instance's, 500 characters by default) is
    /// refused before anything is sent. The reply is stored before it is sent: the same
    /// `idempotencyKey` returns it again and sends nothing; a platform's refusal leaves it
    /// FAILED with the platform's error (`retryReply` sends it again); once SENT it holds
    /// the platform's id, and the first one is the conversation's first response.
    async fn reply_to_conversation(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and the reply.")] input: ReplyToConversationInput,
    ) -> Result<InteractionPayload> {
        super::reply::reply_to_conversation(ctx, input).await
    }

    /// Sends a FAILED reply again with its idempotency key (agent role), or a SENDING one
    /// left for two minutes by a process that stopped while sending it; a SENT one is
    /// returned as it is.
    async fn retry_reply(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The failed reply.")] input: RetryReplyInput,
    ) -> Result<InteractionPayload> {
        super::reply::retry_reply(ctx, input).await
    }

    /// Puts an internal note on a conversation (agent role); never sent to any platform.
    async fn add_conversation_note(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The conversation and the note.")] input: AddConversationNoteInput,
    ) -> Result<NotePayload> {
        super::note::add_conversation_note(ctx, input).await
    }

    /// Saves a reply agents reuse (agent role); an unknown placeholder is refused here.
    async fn create_saved_reply(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new saved reply.")] input: CreateSavedReplyInput,
    ) -> Result<SavedReplyPayload> {
        super::reply::create_saved_reply(ctx, input).await
    }

    /// Renames or rewrites a saved reply (agent role).
    async fn update_saved_reply(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The saved reply and the fields to change.")] input: UpdateSavedReplyInput,
    ) -> Result<SavedReplyPayload> {
        super::reply::update_saved_reply(ctx, input).await
    }

    /// Deletes a saved reply (agent role); returns it as it was.
    async fn delete_saved_reply(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The saved reply to delete.")] input: DeleteSavedReplyInput,
    ) -> Result<SavedReplyPayload> {
        super::reply::delete_saved_reply(ctx, input).await
    }

    /// Says the two customers of a duplicate suggestion are different people (agent
    /// role): it leaves the lists and the pair is not suggested again.
    async fn dismiss_duplicate(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The suggestion to dismiss.")]
        input: super::duplicate::DismissDuplicateInput,
    ) -> Result<super::duplicate::DismissDuplicatePayload> {
        super::duplicate::dismiss_duplicate(ctx, input).await
    }

    /// Merges customers who are one person into the survivor (agent role), in one
    /// transaction: their identities, contact points, interactions, conversations, deals,
    /// notes and tags become the survivor's; each profile field keeps the value
    /// `fieldChoices` names, else the survivor's, else a merged one's. A merged customer's
    /// id still resolves to the survivor; `unmergeCustomer` undoes the merge.
    async fn merge_customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The survivor, the customers to merge into it, and the field choices.")]
        input: super::merge::MergeCustomersInput,
    ) -> Result<super::merge::MergeCustomersPayload> {
        super::merge::merge_customers(ctx, input).await
    }

    /// Undoes the latest merge of a customer (agent role): it and everything that was
    /// theirs are back as they were, with what arrived since through their identities.
    async fn unmerge_customer(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The merged customer to restore.")]
        input: super::merge::UnmergeCustomerInput,
    ) -> Result<super::merge::UnmergeCustomerPayload> {
        super::merge::unmerge_customer(ctx, input).await
    }

    /// Changes the workspace's settings (admin role).
    async fn update_workspace_settings(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The settings to change.")] input: UpdateWorkspaceSettingsInput,
    ) -> Result<WorkspacePayload> {
        super::workspace::update_workspace_settings(ctx, input).await
    }

    /// Sets the SLA rule of a channel, or of every channel without its own (admin role);
    /// it replaces the rule the channel had for waits from now on (the change is logged
    /// with the rule it replaced; waits already started keep the earlier rule).
    async fn set_sla_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The channel and its targets.")] input: SetSlaRuleInput,
    ) -> Result<SlaRulePayload> {
        super::service::set_sla_rule(ctx, input).await
    }

    /// Deletes the SLA rule of a channel, or the any-channel rule (admin role), for waits
    /// from now on (logged, as `setSlaRule`).
    async fn delete_sla_rule(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The channel whose rule goes.")] input: DeleteSlaRuleInput,
    ) -> Result<DeleteSlaRulePayload> {
        super::service::delete_sla_rule(ctx, input).await
    }

    /// Replaces the workspace's time zone and business hours (admin role): the hours count
    /// for SLA waits from now on (logged, as `setSlaRule`), the zone for every day and week
    /// of `serviceMetrics`.
    /// `BAD_USER_INPUT` naming `timeZone` or `hours[i]` for an unknown zone, an interval
    /// that does not close after it opens, or two that overlap.
    async fn set_business_hours(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The time zone and the weekly hours.")] input: SetBusinessHoursInput,
    ) -> Result<BusinessHoursPayload> {
        super::service::set_business_hours(ctx, input).await
    }

    /// Registers GraphQL documents as trusted (admin role): the workspace's
    /// trusted-documents-only keys run these and nothing else. Registering a text again
    /// is harmless (it keeps its first name). At most 100 documents of 64 KiB each a
    /// call; `BAD_USER_INPUT` naming `documents[i]` for one that does not parse, and then
    /// none is registered.
    async fn register_trusted_documents(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The documents to register, at most 100.")]
        input: RegisterTrustedDocumentsInput,
    ) -> Result<RegisterTrustedDocumentsPayload> {
        super::trusted_document::register_trusted_documents(ctx, input).await
    }

    /// Removes a trusted document by its hash (admin role): trusted-documents-only keys
    /// cannot run it from then on. `NOT_FOUND` when the workspace has none.
    async fn remove_trusted_document(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The hash of the document to remove.")] input: RemoveTrustedDocumentInput,
    ) -> Result<RemoveTrustedDocumentPayload> {
        super::trusted_document::remove_trusted_document(ctx, input).await
    }
}
