//! Opaque, typed GraphQL ids: a prefix naming the kind (`cus_`, `org_`, …) and the row's
//! UUIDv7 in hex, so `node(id:)` can resolve any object and ids of different kinds cannot
//! be mixed up.

use entity::{
    ApiKeyId, ContactPointId, ConversationId, CustomerId, DealId, DuplicateSuggestionId,
    IdentityId, InteractionId, MergeRecordId, NoteId, OrganizationId, SavedReplyId, SourceId,
    TagId, UserId, WorkspaceId,
};
use uuid::Uuid;

use crate::error::{Error, Result};

/// A row id that has a GraphQL id: the newtype of one table tied to its [`Kind`], so
/// [`encode`] and [`decode`] know the prefix from the type.
pub trait TypedId: Copy {
    /// The kind of object the id names.
    const KIND: Kind;
    /// The id of the row whose key is `uuid`.
    fn from_uuid(uuid: Uuid) -> Self;
    /// The row's key.
    fn uuid(self) -> Uuid;
}

/// Declares the kinds of object an id can name: each with its typed id, its prefix and
/// the noun used in messages (`no customer with id …`).
macro_rules! kinds {
    ($($kind:ident($id:ident) = $prefix:literal, $noun:literal;)+) => {
        /// The kinds of object an id can name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Kind { $($kind),+ }

        impl Kind {
            const ALL: &'static [Kind] = &[$(Kind::$kind),+];

            pub fn prefix(self) -> &'static str {
                match self { $(Kind::$kind => $prefix),+ }
            }

            /// The noun used in messages (`no customer with id …`).
            pub fn noun(self) -> &'static str {
                match self { $(Kind::$kind => $noun),+ }
            }
        }

        /// An id of any kind, typed by the kind its prefix names (what `node(id:)` resolves).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum AnyId { $($kind($id)),+ }

        impl AnyId {
            fn new(kind: Kind, uuid: Uuid) -> AnyId {
                match kind { $(Kind::$kind => AnyId::$kind($id::from_uuid(uuid))),+ }
            }
        }

        $(
            impl TypedId for $id {
                const KIND: Kind = Kind::$kind;

                fn from_uuid(uuid: Uuid) -> Self {
                    $id::from_uuid(uuid)
                }

                fn uuid(self) -> Uuid {
                    $id::uuid(self)
                }
            }
        )+
    };
}

kinds! {
    Workspace(WorkspaceId) = "wsp", "workspace";
    Customer(CustomerId) = "cus", "customer";
    Organization(OrganizationId) = "org", "organization";
    Identity(IdentityId) = "idn", "identity";
    ContactPoint(ContactPointId) = "cpt", "contact point";
    Interaction(InteractionId) = "int", "interaction";
    Conversation(ConversationId) = "cnv", "conversation";
    Deal(DealId) = "dea", "deal";
    Note(NoteId) = "not", "note";
    Tag(TagId) = "tag", "tag";
    ApiKey(ApiKeyId) = "key", "API key";
    Source(SourceId) = "src", "source";
    User(UserId) = "usr", "user";
    SavedReply(SavedReplyId) = "svr", "saved reply";
    DuplicateSuggestion(DuplicateSuggestionId) = "dup", "duplicate suggestion";
    MergeRecord(MergeRecordId) = "mrg", "merge record";
}

/// Formats a row's id: the prefix of its kind and its UUID in hex.
pub fn encode<I: TypedId>(id: I) -> String {
    format!("{}_{}", I::KIND.prefix(), id.uuid().simple())
}

/// Parses any id into its kind and UUID; `BAD_USER_INPUT` naming `field` when malformed.
fn parse(field: &str, id: &str) -> Result<(Kind, Uuid)> {
    let invalid = || {
        Error::field(
            field,
            format!("`{id}` is not a valid Rapport id (expected e.g. cus_0190…)"),
        )
    };
    let (prefix, hex) = id.split_once('_').ok_or_else(invalid)?;
    let kind = Kind::ALL
        .iter()
        .copied()
        .find(|kind| kind.prefix() == prefix)
        .ok_or_else(invalid)?;
    if hex.len() != 32 {
        return Err(invalid());
    }
    let uuid = Uuid::try_parse(hex).map_err(|_| invalid())?;
    Ok((kind, uuid))
}

/// Parses an id of any kind; `BAD_USER_INPUT` naming `field` when malformed.
pub fn decode_any(field: &str, id: &str) -> Result<AnyId> {
    let (kind, uuid) = parse(field, id)?;
    Ok(AnyId::new(kind, uuid))
}

/// Parses an id that must be of the kind of `I`; `BAD_USER_INPUT` naming `field` otherwise.
pub fn decode<I: TypedId>(field: &str, id: &str) -> Result<I> {
    let (found, uuid) = parse(field, id)?;
    if found != I::KIND {
        return Err(Error::field(
            field,
            format!(
                "`{id}` is the id of {}, not of {}",
                with_article(found.noun()),
                with_article(I::KIND.noun())
            ),
        ));
    }
    Ok(I::from_uuid(uuid))
}

fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u', 'A']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_the_wrong_kind() {
        let customer = CustomerId::new();
        let id = encode(customer);
        assert!(id.starts_with("cus_"));
        assert_eq!(decode::<CustomerId>("id", &id).unwrap(), customer);
        assert_eq!(decode_any("id", &id).unwrap(), AnyId::Customer(customer));
        let err = decode::<DealId>("id", &id).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`{id}` is the id of a customer, not of a deal")
        );
        let key = encode(ApiKeyId::new());
        let err = decode::<OrganizationId>("id", &key).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("`{key}` is the id of an API key, not of an organization")
        );
        for bad in [
            "",
            "cus_",
            "cus_xyz",
            "zzz_0190",
            "cus-0190",
            &format!("cus_{}", customer.uuid().hyphenated()),
        ] {
            assert!(decode_any("id", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_kind_has_its_own_prefix() {
        for (i, kind) in Kind::ALL.iter().enumerate() {
            assert!(Kind::ALL[..i]
                .iter()
                .all(|other| other.prefix() != kind.prefix()));
        }
    }
}
