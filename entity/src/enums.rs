//! The closed sets of values stored in text columns (statuses, stages, kinds, roles): each
//! a sea-orm `ActiveEnum` over the stored lowercase name, so a model holds the enum and a
//! row with an unknown name fails to load instead of travelling on as a string. With the
//! `graphql` feature each is also the API's enum of the same name.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// Declares an enum stored as its lowercase name in a text column.
macro_rules! stored_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(
            Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
            EnumIter, DeriveActiveEnum, Serialize, Deserialize,
        )]
        #[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name {
            $(
                $(#[$vmeta])*
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
    Role {
        /// Reads everything in the workspace, changes nothing.
        Viewer = "viewer",
        /// Also creates and changes customers, organizations, conversations, notes, deals,
        /// interactions and saved replies, and replies.
        Agent = "agent",
        /// Also deletes customers and manages users, keys, sources and workspace settings.
        Admin = "admin",
        /// What an admin may; only an owner makes or changes owners.
        Owner = "owner",
    }
);
stored_enum!(
    /// Where a customer stands in the relationship.
    LifecycleStage {
        /// Follows or talks to you, no buying interest shown yet; customers first seen on a
        /// channel start here.
        Subscriber = "subscriber",
        /// A possible buyer (the default of `createCustomer`).
        Lead = "lead",
        /// A qualified lead: interest confirmed.
        Prospect = "prospect",
        /// Buys from you.
        Customer = "customer",
        /// A customer who recommends you.
        Advocate = "advocate",
        /// A former customer.
        Churned = "churned",
    }
);
stored_enum!(
    /// What a contact point holds.
    ContactPointKind {
        /// An e-mail address, matched lowercased.
        Email = "email",
        /// A phone number, matched in E.164 form (`+34600123456`).
        Phone = "phone",
        /// A postal address, as entered.
        Address = "address",
        /// A web address.
        Website = "website",
    }
);
stored_enum!(
    /// Which way an interaction went.
    Direction {
        /// From the customer (or the platform) to us.
        Inbound = "inbound",
        /// From us to the customer: our replies and posts.
        Outbound = "outbound",
    }
);
stored_enum!(
    /// What an interaction is.
    InteractionKind {
        /// A public post that names us or our handle.
        Mention = "mention",
        /// A direct or private message.
        Message = "message",
        /// A comment in a public thread.
        Comment = "comment",
        /// A review or rating.
        Review = "review",
        /// An e-mail.
        Email = "email",
        /// A note recorded about the customer.
        Note = "note",
        /// Our answer to an interaction.
        Reply = "reply",
        /// A post of our own.
        Post = "post",
        /// A phone call.
        Call = "call",
        /// A meeting.
        Meeting = "meeting",
    }
);
stored_enum!(
    /// Where a conversation stands: OPEN to work, PENDING waiting on the customer, SNOOZED
    /// until a time (then OPEN by itself), RESOLVED done.
    ConversationStatus {
        /// Waiting on us.
        Open = "open",
        /// Waiting on the customer; their next message reopens it.
        Pending = "pending",
        /// Out of sight until `snoozedUntil`, then OPEN again by itself.
        Snoozed = "snoozed",
        /// Done; a new message from the customer reopens it.
        Resolved = "resolved",
    }
);
stored_enum!(
    /// Where a reply sent from Rapport stands: stored before it is sent, then sent or failed.
    DeliveryStatus {
        /// Stored, and being handed to the platform.
        Sending = "sending",
        /// The platform accepted it.
        Sent = "sent",
        /// The platform refused it or could not be reached; `retryReply` tries again.
        Failed = "failed",
    }
);
stored_enum!(
    /// How urgent a conversation is.
    Priority {
        /// Can wait.
        Low = "low",
        /// The default.
        Normal = "normal",
        /// Before the normal ones.
        High = "high",
        /// Before everything else.
        Urgent = "urgent",
    }
);
stored_enum!(
    /// Where a deal stands in the pipeline; WON and LOST close it.
    DealStage {
        /// Finding out whether there is a fit (the default of a new deal).
        Qualification = "qualification",
        /// An offer has been made.
        Proposal = "proposal",
        /// Terms are being discussed.
        Negotiation = "negotiation",
        /// Closed, and ours.
        Won = "won",
        /// Closed, not ours.
        Lost = "lost",
    }
);
stored_enum!(
    /// How a source is doing.
    SourceStatus {
        /// Its last pull worked.
        Ok = "ok",
        /// Its last pull failed; it tries again later, waiting longer each time
        /// (`nextRunAt`).
        BackingOff = "backing_off",
        /// The platform asked it to slow down; it pulls again at `nextRunAt`.
        RateLimited = "rate_limited",
        /// Refused for its settings or credentials, or failed five times in a row (see
        /// `lastError`); still retried with backoff, but needs someone to fix it.
        Failing = "failing",
        /// Switched off: not pulled until someone resumes it.
        Paused = "paused",
    }
);
stored_enum!(
    /// Where a duplicate suggestion stands.
    DuplicateStatus {
        /// Waiting for someone to merge or dismiss it.
        Pending = "pending",
        /// Someone said the two records are different people: never suggested again.
        Dismissed = "dismissed",
        /// The two were merged into one customer (back to pending if they are unmerged).
        Merged = "merged",
    }
);
