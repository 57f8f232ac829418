//! sea-orm entities, one module per table, and no logic: the rules live in `rapport::domain`.

pub mod api_key;
pub mod consumer_offset;
pub mod contact_point;
pub mod conversation;
pub mod conversation_label;
pub mod customer;
pub mod customer_match_key;
pub mod customer_tag;
pub mod deal;
pub mod dropped_value;
pub mod duplicate_suggestion;
pub mod enums;
pub mod erasure;
pub mod erasure_tombstone;
pub mod event;
pub mod id;
pub mod identity;
pub mod identity_link;
pub mod interaction;
pub mod merge_moved;
pub mod merge_record;
pub mod note;
pub mod organization;
pub mod quality_snapshot;
pub mod saved_reply;
pub mod service_settings;
pub mod sla_rule;
pub mod source;
pub mod spam_author;
pub mod tag;
pub mod trusted_document;
pub mod user;
pub mod workspace;

pub use id::{
    ApiKeyId, ContactPointId, ConversationId, CustomerId, DealId, DuplicateSuggestionId,
    IdentityId, InteractionId, MergeRecordId, NoteId, OrganizationId, SavedReplyId, SourceId,
    TagId, UserId, WorkspaceId,
};
