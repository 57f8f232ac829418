//! Opaque, typed GraphQL ids: a prefix naming the kind (`cus_`, `org_`, …) and the row's
//! UUIDv7 in hex, so `node(id:)` can resolve any object and ids of different kinds cannot
//! be mixed up.

use uuid::Uuid;

use crate::error::{Error, Result};

/// The kinds of object an id can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Workspace,
    Customer,
    Organization,
    Identity,
    ContactPoint,
    Interaction,
    Conversation,
    Deal,
    Note,
    Tag,
    ApiKey,
    Source,
}

impl Kind {
    const ALL: [Kind; 12] = [
        Kind::Workspace,
        Kind::Customer,
        Kind::Organization,
        Kind::Identity,
        Kind::ContactPoint,
        Kind::Interaction,
        Kind::Conversation,
        Kind::Deal,
        Kind::Note,
        Kind::Tag,
        Kind::ApiKey,
        Kind::Source,
    ];

    pub fn prefix(self) -> &'static str {
        match self {
            Kind::Workspace => "wsp",
            Kind::Customer => "cus",
            Kind::Organization => "org",
            Kind::Identity => "idn",
            Kind::ContactPoint => "cpt",
            Kind::Interaction => "int",
            Kind::Conversation => "cnv",
            Kind::Deal => "dea",
            Kind::Note => "not",
            Kind::Tag => "tag",
            Kind::ApiKey => "key",
            Kind::Source => "src",
        }
    }

    /// The noun used in messages (`no customer with id …`).
    pub fn noun(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::Customer => "customer",
            Kind::Organization => "organization",
            Kind::Identity => "identity",
            Kind::ContactPoint => "contact point",
            Kind::Interaction => "interaction",
            Kind::Conversation => "conversation",
            Kind::Deal => "deal",
            Kind::Note => "note",
            Kind::Tag => "tag",
            Kind::ApiKey => "API key",
            Kind::Source => "source",
        }
    }
}

/// Formats the id of a `kind` row.
pub fn encode(kind: Kind, id: Uuid) -> String {
    format!("{}_{}", kind.prefix(), id.simple())
}

/// Parses any id into its kind and UUID; `BAD_USER_INPUT` naming `field` when malformed.
pub fn decode_any(field: &str, id: &str) -> Result<(Kind, Uuid)> {
    let invalid = || {
        Error::field(
            field,
            format!("`{id}` is not a valid Rapport id (expected e.g. cus_0190…)"),
        )
    };
    let (prefix, hex) = id.split_once('_').ok_or_else(invalid)?;
    let kind = Kind::ALL
        .into_iter()
        .find(|kind| kind.prefix() == prefix)
        .ok_or_else(invalid)?;
    if hex.len() != 32 {
        return Err(invalid());
    }
    let uuid = Uuid::try_parse(hex).map_err(|_| invalid())?;
    Ok((kind, uuid))
}

/// Parses an id that must be of `kind`; `BAD_USER_INPUT` naming `field` otherwise.
pub fn decode(field: &str, kind: Kind, id: &str) -> Result<Uuid> {
    let (found, uuid) = decode_any(field, id)?;
    if found != kind {
        return Err(Error::field(
            field,
            format!(
                "`{id}` is the id of {}, not of {}",
                with_article(found.noun()),
                with_article(kind.noun())
            ),
        ));
    }
    Ok(uuid)
}

fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u', 'A']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// A new time-ordered primary key.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_the_wrong_kind() {
        let uuid = new_id();
        let id = encode(Kind::Customer, uuid);
        assert!(id.starts_with("cus_"));
        assert_eq!(decode("id", Kind::Customer, &id).unwrap(), uuid);
        assert!(decode("id", Kind::Deal, &id).is_err());
        for bad in [
            "",
            "cus_",
            "cus_xyz",
            "zzz_0190",
            "cus-0190",
            &format!("cus_{}", uuid.hyphenated()),
        ] {
            assert!(decode_any("id", bad).is_err(), "{bad}");
        }
    }
}
