//! Saved replies: named answers of a workspace that agents reuse, with placeholders filled
//! in for the conversation's customer and the agent who sends it. Placeholders are
//! checked when a saved reply is written (an unknown one is `BAD_USER_INPUT` then, not
//! when an agent is answering a customer); a value that is missing renders as "".
//!
//! Agents create, change and delete them: they are the team's working material, like
//! notes and labels, not workspace configuration.
//!
//! On a social network a value put in for a placeholder is text, never markup of the
//! platform: a customer's name comes from the platform's own profile, where anyone can
//! call themselves `@everyone@instance.example` or `#giveaway https://phish.example`, and a
//! reply must not mention, tag or link what the customer chose. So a word joiner (U+2060,
//! invisible) goes after every `@`, `#`, `!` (and their full-width forms) and inside
//! `://` of a value, and before a value that the saved reply's own `@`, `#` or `:` would
//! join into one: the platforms' mention, hashtag and link detection stops there and the
//! text reads as it did. E-mail and webhook replies have no such markup and get the
//! values as they are (an address stays copyable, an SMS gateway sees no extra character).

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    TransactionTrait,
};

use super::event::{Actor, Event, SavedReplyChange};
use super::page::{Page, PageArgs, Sort, SortKind};
use super::{Caller, Role};
use crate::error::{Error, Result};
use crate::ids;
use entity::saved_reply::{self, Column, Entity, Model};
use entity::{CustomerId, SavedReplyId};

/// The placeholders a saved reply may use.
pub const PLACEHOLDERS: &[&str] = &[
    "customer.givenName",
    "customer.familyName",
    "customer.displayName",
    "agent.name",
];

const MAX_NAME_CHARS: usize = 100;
const MAX_BODY_CHARS: usize = 10_000;

/// The placeholders of `body` in order (`{{ name }}`, spaces inside allowed); an unclosed
/// `{{` or an unknown name is `BAD_USER_INPUT` on `field`.
fn placeholders<'a>(field: &str, body: &'a str) -> Result<Vec<(usize, usize, &'a str)>> {
    let mut found = Vec::new();
    let mut rest = 0;
    while let Some(open) = body[rest..].find("{{").map(|at| rest + at) {
        let Some(close) = body[open + 2..].find("}}").map(|at| open + 2 + at) else {
            return Err(Error::field(
                field,
                "a placeholder opened with {{ is not closed with }}",
            ));
        };
        let name = body[open + 2..close].trim();
        if !PLACEHOLDERS.contains(&name) {
            return Err(Error::field(
                field,
                format!(
                    "unknown placeholder {{{{{name}}}}}; known: {}",
                    PLACEHOLDERS
                        .iter()
                        .map(|name| format!("{{{{{name}}}}}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        found.push((open, close + 2, name));
        rest = close + 2;
    }
    Ok(found)
}

/// U+2060 WORD JOINER: zero width, no break, and not a word character, so `@` + it + a
/// name is no mention on any platform.
const WORD_JOINER: char = '\u{2060}';

/// Characters that start a mention, a hashtag or a room/community link on some platform
/// (Mastodon takes the full-width `＃` for a hashtag; twitter-text style parsers `＠`).
const MARKUP_STARTS: [char; 5] = ['@', '#', '!', '＠', '＃'];

/// Whether replies on `channel` have markup a value could start (mentions, hashtags,
/// links the platform makes of text): the social networks, not e-mail or webhooks.
fn has_markup(channel: connectors::Channel) -> bool {
    !matches!(
        channel,
        connectors::Channel::Email | connectors::Channel::Webhook
    )
}

/// `value` as plain text in a post that follows `before` (the saved reply's text up to
/// it): no mention, hashtag or link can start inside it or join it to `before`.
fn inert(before: &str, value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let joins =
        before.ends_with(MARKUP_STARTS) || (before.ends_with(':') && value.starts_with('/'));
    if joins && !value.is_empty() {
        out.push(WORD_JOINER);
    }
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if MARKUP_STARTS.contains(&c) || (c == ':' && chars.peek() == Some(&'/')) {
            out.push(WORD_JOINER);
        }
    }
    out
}

/// `body` with each placeholder replaced by `value(name)` ("" when `None`), made
/// [`inert`] when `markup` says the channel has markup.
fn render(
    body: &str,
    markup: bool,
    value: impl Fn(&str) -> Result<Option<String>>,
) -> Result<String> {
    let mut out = String::with_capacity(body.len());
    let mut at = 0;
    for (start, end, name) in placeholders("body", body)? {
        out.push_str(&body[at..start]);
        let value = value(name)?.unwrap_or_default();
        if markup {
            let inert = inert(&out, &value);
            out.push_str(&inert);
        } else {
            out.push_str(&value);
        }
        at = end;
    }
    out.push_str(&body[at..]);
    Ok(out)
}

fn checked(name: &str, body: &str) -> Result<(String, String)> {
    let name = super::clean_required("name", name, MAX_NAME_CHARS)?;
    let body = super::clean_required("body", body, MAX_BODY_CHARS)?;
    placeholders("body", &body)?;
    Ok((name, body))
}

fn name_taken(name: &str) -> String {
    format!("this workspace already has a saved reply called {name}; pick another name")
}

/// The name a caller writes as: their user's name, else their key's.
async fn author(db: &impl ConnectionTrait, caller: &Caller) -> Result<String> {
    Ok(match caller.user_id {
        Some(user) => super::user::get(db, caller.workspace_id, user).await?.name,
        None => caller.key_name.clone(),
    })
}

async fn record(
    db: &impl ConnectionTrait,
    caller: &Caller,
    model: &Model,
    event: for<'a> fn(&'a SavedReplyChange) -> Event<'a>,
) -> Result<()> {
    let change = SavedReplyChange {
        saved_reply: model.clone(),
        actor: Actor::of(caller),
    };
    super::event::append(db, caller.workspace_id, event(&change)).await
}

/// Creates a saved reply (agent role); a name the workspace has is `CONFLICT`.
pub async fn create(
    db: &impl TransactionTrait,
    caller: &Caller,
    name: &str,
    body: &str,
) -> Result<Model> {
    caller.require(Role::Agent, "creating a saved reply")?;
    let (name, body) = checked(name, body)?;
    let txn = super::begin_write(db).await?;
    let now = super::now();
    let row = saved_reply::ActiveModel {
        id: Set(SavedReplyId::new()),
        workspace_id: Set(caller.workspace_id),
        name: Set(name.clone()),
        body: Set(body),
        created_by: Set(author(&txn, caller).await?),
        created_at: Set(now),
        updated_at: Set(now),
    };
    let model = row
        .insert(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || name_taken(&name)))?;
    record(&txn, caller, &model, |change| {
        Event::SavedReplyCreated(change)
    })
    .await?;
    txn.commit().await?;
    Ok(model)
}

/// A saved reply of the caller's workspace, or `NOT_FOUND`.
pub async fn get(db: &impl ConnectionTrait, caller: &Caller, id: SavedReplyId) -> Result<Model> {
    super::scoped::<Entity>(caller.workspace_id)
        .filter(Column::Id.eq(id))
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found("saved reply", ids::encode(id)))
}

/// Changes a saved reply's name and/or body (agent role).
pub async fn update(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: SavedReplyId,
    name: Option<&str>,
    body: Option<&str>,
) -> Result<Model> {
    caller.require(Role::Agent, "changing a saved reply")?;
    let txn = super::begin_write(db).await?;
    let current = get(&txn, caller, id).await?;
    let (name, body) = checked(name.unwrap_or(&current.name), body.unwrap_or(&current.body))?;
    let mut row: saved_reply::ActiveModel = current.into();
    row.name = Set(name.clone());
    row.body = Set(body);
    row.updated_at = Set(super::now());
    let model = row
        .update(&txn)
        .await
        .map_err(|err| Error::on_unique(err, || name_taken(&name)))?;
    record(&txn, caller, &model, |change| {
        Event::SavedReplyUpdated(change)
    })
    .await?;
    txn.commit().await?;
    Ok(model)
}

/// Deletes a saved reply (agent role); returns it as it was.
pub async fn delete(
    db: &impl TransactionTrait,
    caller: &Caller,
    id: SavedReplyId,
) -> Result<Model> {
    caller.require(Role::Agent, "deleting a saved reply")?;
    let txn = super::begin_write(db).await?;
    let current = get(&txn, caller, id).await?;
    Entity::delete_many()
        .filter(Column::WorkspaceId.eq(caller.workspace_id))
        .filter(Column::Id.eq(id))
        .exec(&txn)
        .await?;
    record(&txn, caller, &current, |change| {
        Event::SavedReplyDeleted(change)
    })
    .await?;
    txn.commit().await?;
    Ok(current)
}

fn sort() -> Sort<Entity> {
    Sort {
        name: "name",
        column: Column::Name,
        id: Column::Id,
        descending: false,
        kind: SortKind::Text,
    }
}

/// The opaque cursor of a saved reply in [`list`].
pub fn cursor(model: &Model) -> String {
    super::page::encode("name", model.name.clone(), model.id)
}

/// One page of the workspace's saved replies, by name.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Caller,
    args: &PageArgs,
) -> Result<Page<Model>> {
    let sort = sort();
    let window = args.window(sort.name)?;
    let select = sort.between(super::scoped::<Entity>(caller.workspace_id), &window)?;
    let rows = sort.order_and_limit(select, &window).all(db).await?;
    Ok(super::page::finish(rows, &window))
}

/// The saved reply `id` rendered on `channel` for `customer` and the caller: a placeholder
/// of the agent when the caller's key has no user, or of the customer when the answered
/// item is no customer's (our own publication), is `BAD_USER_INPUT`.
pub async fn render_for(
    db: &impl ConnectionTrait,
    caller: &Caller,
    id: SavedReplyId,
    channel: connectors::Channel,
    customer: Option<CustomerId>,
) -> Result<String> {
    let saved = get(db, caller, id).await?;
    let customer = match customer {
        Some(id) => Some(super::customer::get(db, caller, id).await?),
        None => None,
    };
    let customer = |name: &str| {
        customer.as_ref().ok_or_else(|| {
            Error::field(
                "savedReplyId",
                format!("this saved reply names the customer ({{{{{name}}}}}), but the answered item is no customer's; use a text"),
            )
        })
    };
    let agent = match caller.user_id {
        Some(user) => Some(super::user::get(db, caller.workspace_id, user).await?.name),
        None => None,
    };
    render(&saved.body, has_markup(channel), |name| {
        Ok(match name {
            "customer.givenName" => customer(name)?.given_name.clone(),
            "customer.familyName" => customer(name)?.family_name.clone(),
            "customer.displayName" => Some(customer(name)?.display_name.clone()),
            "agent.name" => Some(agent.clone().ok_or_else(|| {
                Error::field(
                    "savedReplyId",
                    "this saved reply names the agent ({{agent.name}}), but this API key belongs to no user; use a user's key or a text",
                )
            })?),
            _ => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_unknown_ones_are_refused() {
        let rendered = render(
            "Hi {{customer.givenName}}, {{ agent.name }} here{{customer.familyName}}.",
            true,
            |name| {
                Ok(match name {
                    "customer.givenName" => Some("Maya".to_owned()),
                    "agent.name" => Some("Ana".to_owned()),
                    _ => None,
                })
            },
        )
        .unwrap();
        assert_eq!(rendered, "Hi Maya, Ana here.");
        let err = placeholders("body", "Hi {{customer.email}}").unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown placeholder {{customer.email}}"),
            "{err}"
        );
        assert!(placeholders("body", "Hi {{customer.givenName").is_err());
        // A value is text: what the customer called themselves mentions, tags and links
        // nobody, while the saved reply's own text keeps its markup.
        let value = "@everyone@m.example #win ＃promo ＠all https://phish.example !room";
        let rendered = render(
            "Hi {{customer.displayName}}, see https://help.example @team",
            true,
            |_| Ok(Some(value.to_owned())),
        )
        .unwrap();
        assert_eq!(
            rendered,
            "Hi @\u{2060}everyone@\u{2060}m.example #\u{2060}win ＃\u{2060}promo ＠\u{2060}all https:\u{2060}//phish.example !\u{2060}room, see https://help.example @team"
        );
        assert_eq!(rendered.chars().filter(|c| *c == WORD_JOINER).count(), 7);
        // The saved reply's own @, # or scheme cannot join a value into a mention, a tag
        // or a link either.
        for (body, name, expected) in [
            (
                "@{{customer.displayName}} thanks",
                "everyone@evil.example",
                "@\u{2060}everyone@\u{2060}evil.example thanks",
            ),
            ("#{{customer.displayName}}", "promo", "#\u{2060}promo"),
            (
                "https:{{customer.displayName}}",
                "//phish.example",
                "https:\u{2060}//phish.example",
            ),
            ("Hi {{customer.displayName}}", "Maya", "Hi Maya"),
        ] {
            let rendered = render(body, true, |_| Ok(Some(name.to_owned()))).unwrap();
            assert_eq!(rendered, expected, "{body}");
        }
        // E-mail and webhooks have no such markup: values go in as they are.
        let plain = render("Hi {{customer.displayName}}", false, |_| {
            Ok(Some("ana@example.com".to_owned()))
        })
        .unwrap();
        assert_eq!(plain, "Hi ana@example.com");
        assert!(
            !has_markup(connectors::Channel::Email) && !has_markup(connectors::Channel::Webhook)
        );
        assert!(
            has_markup(connectors::Channel::Mastodon) && has_markup(connectors::Channel::Bluesky)
        );
        assert_eq!(
            placeholders("body", "no placeholder { here }")
                .unwrap()
                .len(),
            0
        );
    }
}
