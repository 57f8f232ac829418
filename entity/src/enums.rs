//! The closed sets of values stored in text columns (statuses, stages, kinds, roles): each
//! a sea-orm `ActiveEnum` over the stored lowercase name, so a model holds the enum and a
//! row with an unknown name fails to load instead of travelling on as a string. With the
//! `graphql` feature each is also the API's enum of the same name.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Declares an enum stored as its lowercase name in a text column.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            EnumIter, DeriveActiveEnum, Serialize, Deserialize,
        )]
        #[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $(
                #[sea_orm(string_value = $text)]
                #[serde(rename = $text)]
                $variant
            ),+
        }

        impl $name {
            /// The name stored in the database (and in search documents).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Parses a stored name.
            pub fn parse(text: &str) -> Option<$name> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

stored_enum!(
    /// What a key may do: viewers read; agents also work customers, conversations, notes,
    /// deals and interactions; admins also delete customers and manage keys and sources.
    Role { Viewer = "viewer", Agent = "agent", Admin = "admin", Owner = "owner" }
);
stored_enum!(
    /// Where a customer stands in the relationship.
    LifecycleStage {
        Subscriber = "subscriber",
        Lead = "lead",
        Prospect = "prospect",
        Customer = "customer",
        Advocate = "advocate",
        Churned = "churned",
    }
);
stored_enum!(ContactPointKind { Email = "email", Phone = "phone", Address = "address", Website = "website" });
stored_enum!(Direction { Inbound = "inbound", Outbound = "outbound" });
stored_enum!(InteractionKind {
    Mention = "mention",
    Message = "message",
    Comment = "comment",
    Review = "review",
    Email = "email",
    Note = "note",
    Reply = "reply",
    Post = "post",
    Call = "call",
    Meeting = "meeting",
});
stored_enum!(
    /// Where a conversation stands: OPEN to work, PENDING waiting on the customer, SNOOZED
    /// until a time (then OPEN by itself), RESOLVED done.
    ConversationStatus { Open = "open", Pending = "pending", Snoozed = "snoozed", Resolved = "resolved" }
);
stored_enum!(
    /// Where a reply sent from Rapport stands: stored before it is sent, then sent or failed.
    DeliveryStatus { Sending = "sending", Sent = "sent", Failed = "failed" }
);
stored_enum!(Priority { Low = "low", Normal = "normal", High = "high", Urgent = "urgent" });
stored_enum!(DealStage {
    Qualification = "qualification",
    Proposal = "proposal",
    Negotiation = "negotiation",
    Won = "won",
    Lost = "lost",
});
stored_enum!(
    /// How a source is doing.
    SourceStatus { Ok = "ok", BackingOff = "backing_off", RateLimited = "rate_limited", Failing = "failing", Paused = "paused" }
);
