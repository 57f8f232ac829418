//! The Telegram channel (pull + reply) for a bot, over the Bot API
//! (<https://core.telegram.org/bots/api>).
//!
//! Plain calls through the guarded client rather than `teloxide` or `frankenstein`: the
//! connector uses three methods (`getMe`, `getUpdates`, `sendMessage`), each a small JSON
//! body; those crates build their own HTTP clients (so their connections would not all go
//! through the outbound guard), and handle `retry_after` and errors their own way where the
//! scheduler needs them as "not before" times and [`ConnectorError`]s.
//!
//! - Every method is `POST {base_url}/bot{bot_token}/{method}` with a JSON body. The token
//!   is part of the URL path, so no message this connector makes names a URL: transport
//!   errors name the host only, and every description Telegram sends back is scrubbed of
//!   the token before it is shown.
//! - Listening, `mode: "webhook"`: the server's `/webhooks/{source_id}` takes the updates
//!   Telegram POSTs (one `Update` a request), each with the header
//!   `X-Telegram-Bot-Api-Secret-Token`, compared in constant time with the source's
//!   `webhook_secret` (16 to 256 of `A-Z a-z 0-9 _ -`, required in this mode) before the
//!   body is read; a missing or wrong one is refused (401) and stores nothing. The update
//!   becomes the item a pull makes of it (same id; `getMe` is asked for the bot at most
//!   once per [`ME_TTL`] per source, the server keeping the connector between deliveries
//!   as a sync keeps it between pulls; when it cannot be, the delivery is answered 503 and
//!   Telegram sends it again). Updates from chats not in `chats`, from bots or without
//!   text are answered 200 and stored nothing. A sync in this mode does not call `getUpdates` (Telegram
//!   refuses it while a webhook is set): it calls `setWebhook` with `url` the server's
//!   `[http] public_url` + `/webhooks/{source_id}`, `secret_token` and the same
//!   `allowed_updates`, so the webhook stays set (setting it again is harmless); without
//!   `public_url` the sync fails saying so. Back in `mode: "poll"`, a `getUpdates` refused
//!   for a webhook deletes it (`deleteWebhook`) only when it is this source's own address
//!   (`getWebhookInfo`), then asks again; another program's webhook stays and the error
//!   says so.
//! - Listening, `mode: "poll"` (the default): `getUpdates` with `offset` the last update's `update_id` + 1 (the cursor,
//!   `{"offset": N, "at": unix}`, `at` when the offset last moved), `limit` 100, `timeout`
//!   0 and `allowed_updates` `message`, `edited_message`, `channel_post`. An offset makes
//!   Telegram forget every update before it, so a pull makes one call, from the stored
//!   cursor: the page it returns is confirmed by the next pull, which the sync makes only
//!   once the page and its cursor are committed ([`Connector::confirms_on_read`]). After a
//!   week without updates Telegram numbers the next one at random, often below our
//!   offset: when the offset has not moved for [`QUIET_SECS`], a pull asks without it
//!   (everything still held is then unconfirmed, so new to us). The Bot API keeps
//!   undelivered updates 24 hours and has no history: a first sync takes what `getUpdates`
//!   still holds, at most `backfill_limit` (the newest, with the negative `offset` the API
//!   provides; 0: none, only what comes after). A webhook set on the bot makes
//!   `getUpdates` answer 409: unless it is this source's own (see webhook mode), the
//!   error says to delete it.
//! - Items: a message's external id is `{chat_id}:{message_id}` (message ids are unique per
//!   chat). An edit (`edited_message`) has the same id, so the pipeline drops it: the
//!   first text stored stays. The author's numeric `from.id` is the identity (usernames
//!   change), `@username` the handle, first and last name the display name; a channel post
//!   is by the channel (`sender_chat`). Messages by bots (`from.is_bot`, also the
//!   anonymous group admin's stand-in) are skipped; our own bot's messages never come back
//!   through `getUpdates`. Messages without text or caption (stickers, joins) are skipped.
//!   `reply_to_message` makes `in_reply_to` `{chat_id}:{message_id}`; the thread is the
//!   forum topic (`{chat_id}:{message_thread_id}`, the topic's first message) or the chat.
//!   Kind: a private chat's message is a `message`, a group message naming the bot
//!   (`mention` entity `@botname`, or `text_mention` of the bot) a `mention`, an answer to
//!   one of the bot's messages a `reply`, else a `message`. `chats`, when given, keeps only
//!   those chat ids (the others are read past).
//! - Replies: `sendMessage` with `chat_id`, `text`, `reply_parameters` (`message_id`,
//!   `allow_sending_without_reply: true`) and, in a forum topic, `message_thread_id`; at
//!   most [`MAX_REPLY_UNITS`] UTF-16 code units (Telegram counts so), checked before
//!   sending. The Bot API has no idempotency key and cannot read a chat's history back: when
//!   the answer to `sendMessage` is lost (a timeout or a 5xx), the reply is FAILED although
//!   Telegram may have sent it, and a retry sends it a second time.
//! - Errors: Telegram answers `{"ok": false, "error_code", "description", "parameters":
//!   {"retry_after"}}`. 429 is a rate limit (`retry_after` seconds; a pull keeps what it read
//!   and comes back then), 401 a refused token, 403 (the bot blocked, or removed from the
//!   chat) a refused reply, 409 a webhook or another poller in the way, other 4xx a payload
//!   error, 5xx a transport error. The description is cut to 200 characters; an
//!   `error_code` that is no HTTP status gives way to the answer's status.

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::http::{self, MAX_BODY_BYTES};
use crate::{
    Author, Capabilities, Channel, Connector, ConnectorError, Cursor, InboundItem, Pull,
    ReplyLimit, ReplyTarget, Sent,
};

/// Updates asked for per request (the Bot API's maximum).
pub const PAGE: usize = 100;

/// Items a first sync takes when the source does not say.
pub const DEFAULT_BACKFILL_LIMIT: u64 = 1_000;

/// The most a source may ask a first sync to take.
pub const MAX_BACKFILL_LIMIT: u64 = 100_000;

/// The longest message `sendMessage` takes, in UTF-16 code units.
pub const MAX_REPLY_UNITS: usize = 4_096;

/// The chats a source may name.
pub const MAX_CHATS: usize = 1_000;

/// The default API.
pub const API: &str = "https://api.telegram.org";

/// The updates listened to.
const ALLOWED_UPDATES: [&str; 3] = ["message", "edited_message", "channel_post"];

fn default_backfill_limit() -> u64 {
    DEFAULT_BACKFILL_LIMIT
}

fn default_base_url() -> String {
    API.to_owned()
}

fn default_mode() -> String {
    "poll".to_owned()
}

/// A source's settings. `bot_token` is a secret: stored apart, never returned, bound to
/// `base_url`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramConfig {
    /// The Bot API (`https://api.telegram.org`, or a local Bot API server).
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The token @BotFather gave (`123456789:AA…`).
    pub bot_token: String,
    /// `poll` (getUpdates) or `webhook` (setWebhook; needs `webhook_secret`).
    #[serde(default = "default_mode")]
    pub mode: String,
    /// The `secret_token` Telegram sends with every webhook delivery (16 to 256 of
    /// `A-Z a-z 0-9 _ -`); a secret like `bot_token`. Required in webhook mode.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// Chat ids listened to (none: every chat the bot is in).
    #[serde(default)]
    pub chats: Vec<i64>,
    /// Items a first sync takes of what Telegram still holds (0: only what comes after).
    #[serde(default = "default_backfill_limit")]
    pub backfill_limit: u64,
}

impl std::fmt::Debug for TelegramConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramConfig")
            .field("base_url", &self.base_url)
            .field("bot_token", &"***")
            .field("mode", &self.mode)
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "***"),
            )
            .field("chats", &self.chats)
            .field("backfill_limit", &self.backfill_limit)
            .finish()
    }
}

impl TelegramConfig {
    /// Reads and checks a source's settings (the token merged in); the error names the
    /// field.
    pub fn parse(config: &Value) -> Result<TelegramConfig, (String, String)> {
        let mut config: TelegramConfig = crate::read_config(config, "bot_token")?;
        crate::check_http_url("base_url", &config.base_url)?;
        config.base_url = config.base_url.trim().trim_end_matches('/').to_owned();
        config.bot_token = config.bot_token.trim().to_owned();
        if !is_token(&config.bot_token) {
            return Err((
                "bot_token".into(),
                "bot_token must be a bot token as @BotFather gives it (`123456789:AA…`)".into(),
            ));
        }
        match config.mode.trim() {
            "poll" => config.mode = "poll".into(),
            "webhook" => config.mode = "webhook".into(),
            other => {
                return Err((
                    "mode".into(),
                    format!("mode must be `poll` or `webhook` (not `{other}`)"),
                ))
            }
        }
        if let Some(secret) = &config.webhook_secret {
            if !is_secret_token(secret) {
                return Err((
                    "webhook_secret".into(),
                    "webhook_secret must be 16 to 256 characters of A-Z, a-z, 0-9, _ and - (Telegram's secret_token)".into(),
                ));
            }
        } else if config.mode == "webhook" {
            return Err((
                "webhook_secret".into(),
                "mode `webhook` needs a webhook_secret (16 to 256 characters of A-Z, a-z, 0-9, _ and -): Telegram sends it with every delivery".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        config.chats.retain(|chat| seen.insert(*chat));
        if config.chats.len() > MAX_CHATS {
            return Err(("chats".into(), format!("at most {MAX_CHATS} chats")));
        }
        if config.backfill_limit > MAX_BACKFILL_LIMIT {
            return Err((
                "backfill_limit".into(),
                format!("backfill_limit is at most {MAX_BACKFILL_LIMIT}"),
            ));
        }
        Ok(config)
    }
}

/// Whether `secret` is a `secret_token` Telegram takes (16 to 256 of `A-Z a-z 0-9 _ -`)
/// and at least 16 long, as every webhook secret of Rapport: the author of a delivery
/// comes from its body, so a guessable secret lets anyone write as any contact.
fn is_secret_token(secret: &str) -> bool {
    (16..=256).contains(&secret.len())
        && secret
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// Whether `given` equals `secret`, in time that does not depend on where they differ (nor
/// on the secret's length): both are keyed-hashed and the tags compared in constant time.
fn same_secret(secret: &str, given: &str) -> bool {
    use hmac::{Hmac, Mac};
    type HmacSha256 = Hmac<sha2::Sha256>;
    let tag = |key: &str| {
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).expect("any key length");
        mac.update(b"telegram secret_token");
        mac
    };
    tag(secret)
        .verify_slice(&tag(given).finalize().into_bytes())
        .is_ok()
}

/// Whether `token` looks like a bot token: the bot's numeric id, `:`, and a secret of URL-safe
/// characters (it goes into the URL path, so nothing else may be in it).
fn is_token(token: &str) -> bool {
    let Some((id, secret)) = token.split_once(':') else {
        return false;
    };
    !id.is_empty()
        && id.bytes().all(|c| c.is_ascii_digit())
        && !secret.is_empty()
        && secret
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// The stored cursor: the next `offset` to ask (none: nothing seen yet after a first sync)
/// and when it last moved (Unix seconds; none in a cursor written before it was kept).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct TelegramCursor {
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<i64>,
}

/// How long the offset may stay still before a pull asks without it: the Bot API numbers
/// the next update at random after a week without any, so a day short of that.
const QUIET_SECS: i64 = 6 * 86_400;

/// The most of a description from the server kept in an error.
const MAX_DESCRIPTION_CHARS: usize = 200;

/// How long the bot, once asked, is taken as known: a backfill or a burst of deliveries
/// asks once, and a bot given another username is soon seen by it (mentions are told by
/// the username).
const ME_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// The bot, as `getMe` says.
#[derive(Clone, Debug, Default)]
struct Me {
    id: i64,
    username: String,
}

/// A failed call: the error, and whether it is Telegram refusing `getUpdates` because a
/// webhook is set (which poll mode deletes when it is this source's own).
#[derive(Debug)]
struct Failed {
    error: ConnectorError,
    webhook_set: bool,
}

impl From<ConnectorError> for Failed {
    fn from(error: ConnectorError) -> Failed {
        Failed {
            error,
            webhook_set: false,
        }
    }
}

pub struct TelegramConnector {
    client: reqwest::Client,
    config: TelegramConfig,
    /// Where the server takes this source's webhook deliveries (from `public_url`).
    webhook_url: Option<String>,
    /// The bot as `getMe` last answered, and when: asked again only after [`ME_TTL`], so a
    /// sync's pulls (a hundred updates each) and the webhook deliveries of a source (the
    /// server keeps its connector between them) ask once.
    me: crate::known::Known<Me>,
}

impl TelegramConnector {
    pub fn new(client: reqwest::Client, config: TelegramConfig) -> TelegramConnector {
        TelegramConnector {
            client,
            config,
            webhook_url: None,
            me: crate::known::Known::new(ME_TTL),
        }
    }

    fn webhook_mode(&self) -> bool {
        self.config.mode == "webhook"
    }

    /// Webhook mode's sync: the webhook set (again) to this source's address.
    async fn set_webhook(&self) -> Result<Pull, ConnectorError> {
        let url = self.webhook_url.as_ref().ok_or_else(|| {
            ConnectorError::Config(
                "mode `webhook` needs the server's public address: set [http] public_url in the server's configuration (or use mode `poll`)".into(),
            )
        })?;
        let secret = self.config.webhook_secret.as_deref().unwrap_or_default();
        let body = json!({
            "url": url,
            "secret_token": secret,
            "allowed_updates": ALLOWED_UPDATES,
        });
        match self.call("setWebhook", &body).await {
            Ok(_) => Ok(Pull::default()),
            Err(ConnectorError::RateLimited { retry_after_secs }) => {
                let mut not_before = None;
                http::wait_out(&mut not_before, retry_after_secs);
                Ok(Pull {
                    not_before,
                    ..Pull::default()
                })
            }
            Err(err) => Err(err),
        }
    }

    /// Poll mode met a webhook: deletes it when it is this source's own address (left from
    /// webhook mode). Whether it did.
    async fn delete_own_webhook(&self) -> Result<bool, ConnectorError> {
        let Some(url) = &self.webhook_url else {
            return Ok(false);
        };
        let info = self.call("getWebhookInfo", &json!({})).await?;
        if info.get("url").and_then(Value::as_str) != Some(url.as_str()) {
            return Ok(false);
        }
        self.call("deleteWebhook", &json!({ "drop_pending_updates": false }))
            .await?;
        Ok(true)
    }

    /// A delivery's `X-Telegram-Bot-Api-Secret-Token`, compared whole with the
    /// `webhook_secret` in constant time; only in webhook mode.
    fn check_secret(&self, request: &crate::WebhookRequest<'_>) -> Result<(), crate::WebhookError> {
        use crate::WebhookError;
        let secret = match (&self.config.webhook_secret, self.webhook_mode()) {
            (Some(secret), true) => secret,
            _ => return Err(WebhookError::Unsupported),
        };
        let given = request
            .header("x-telegram-bot-api-secret-token")
            .ok_or_else(|| {
                WebhookError::Unauthenticated(
                    "the delivery carries no X-Telegram-Bot-Api-Secret-Token".into(),
                )
            })?;
        if !same_secret(secret, given) {
            return Err(WebhookError::Unauthenticated(
                "the X-Telegram-Bot-Api-Secret-Token does not match the source's webhook_secret"
                    .into(),
            ));
        }
        Ok(())
    }

    /// A webhook delivery (see the module doc).
    async fn hook(
        &self,
        request: &crate::WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<crate::Hooked, crate::WebhookError> {
        use crate::{Hooked, WebhookError};
        self.check_secret(request)?;
        let update: Value = serde_json::from_slice(body).map_err(|_| WebhookError::Payload {
            field: "body",
            message: "not valid JSON".into(),
        })?;
        if update.get("update_id").and_then(Value::as_i64).is_none() {
            return Err(WebhookError::Payload {
                field: "update_id",
                message: "an Update has an update_id".into(),
            });
        }
        let me = self.me().await?;
        Ok(match item(&update, &me, &self.config.chats) {
            Some(item) => Hooked::Items(vec![item]),
            None => Hooked::Ignored(
                "the update holds no message listened to (another chat, a bot's, or without text)"
                    .into(),
            ),
        })
    }

    fn host(&self) -> String {
        reqwest::Url::parse(&self.config.base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Removes the token from a text Telegram (or anything between) sent back.
    fn scrub(&self, text: &str) -> String {
        let token = &self.config.bot_token;
        let mut text = text.replace(token.as_str(), "***");
        if let Some((_, secret)) = token.split_once(':') {
            text = text.replace(secret, "***");
        }
        text
    }

    /// Calls `method` with `body`; the `result` of the answer, or the error it means.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, ConnectorError> {
        self.ask(method, body).await.map_err(|failed| failed.error)
    }

    /// [`Self::call`], saying whether a refusal was for a webhook in the way.
    async fn ask(&self, method: &str, body: &Value) -> Result<Value, Failed> {
        let url = format!(
            "{}/bot{}/{method}",
            self.config.base_url, self.config.bot_token
        );
        let now = Utc::now();
        let response = self
            .client
            .post(url)
            .header("user-agent", concat!("rapport/", env!("CARGO_PKG_VERSION")))
            .json(body)
            .send()
            .await
            .map_err(http::transport)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = http::read_capped(response, MAX_BODY_BYTES).await?;
        let host = self.host();
        let answer: Option<Value> = serde_json::from_slice(&bytes).ok();
        if (200..300).contains(&status) {
            if let Some(answer) = &answer {
                if answer.get("ok") == Some(&Value::Bool(true)) {
                    return answer.get("result").cloned().ok_or_else(|| {
                        ConnectorError::Payload(format!(
                            "{host} answered {method} without a result"
                        ))
                        .into()
                    });
                }
            } else {
                return Err(ConnectorError::Payload(format!(
                    "{host} answered {method} with invalid JSON"
                ))
                .into());
            }
        }
        let answer = answer.unwrap_or(Value::Null);
        let code = answer
            .get("error_code")
            .and_then(Value::as_u64)
            .and_then(|code| u16::try_from(code).ok())
            .unwrap_or(status);
        // Scrubbed whole, then cut: a cut could split the token and let a part through.
        let description = self.scrub(
            answer
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or(""),
        );
        let description = match description.char_indices().nth(MAX_DESCRIPTION_CHARS) {
            Some((end, _)) => format!("{}…", &description[..end]),
            None => description,
        };
        let said = if description.is_empty() {
            format!("{host} answered {method} with {code}")
        } else {
            format!("{host} answered {method} with {code} ({description})")
        };
        // Telegram refuses getUpdates with 409 while a webhook is set (its description
        // names the webhook; another poller's 409 does not).
        let webhook_set = code == 409 && description.to_lowercase().contains("webhook");
        let error = match code {
            429 => ConnectorError::RateLimited {
                retry_after_secs: answer
                    .pointer("/parameters/retry_after")
                    .and_then(Value::as_u64)
                    .or_else(|| {
                        http::not_before(&headers, now)
                            .map(|at| (at - now).num_seconds().max(1) as u64)
                    }),
            },
            401 => ConnectorError::Unauthorized(format!(
                "{said}: the bot token was refused; check bot_token (from @BotFather)"
            )),
            403 => ConnectorError::Unauthorized(format!(
                "{said}: the bot may not write there (blocked by the user, or removed from the chat)"
            )),
            409 if webhook_set => ConnectorError::Config(format!(
                "{said}: a webhook is set for this bot, so getUpdates cannot be used; delete it (the Bot API's deleteWebhook) or give the source another bot"
            )),
            409 => ConnectorError::Transport(format!(
                "{said}: another program is polling this bot's updates; only one may"
            )),
            500.. => ConnectorError::Transport(said),
            _ => ConnectorError::Payload(said),
        };
        Err(Failed { error, webhook_set })
    }

    /// The bot, asked of `getMe` at most once per [`ME_TTL`].
    async fn me(&self) -> Result<Me, ConnectorError> {
        self.me.get_or_ask(self.ask_me()).await
    }

    async fn ask_me(&self) -> Result<Me, ConnectorError> {
        let me = self.call("getMe", &json!({})).await?;
        Ok(Me {
            id: me.get("id").and_then(Value::as_i64).ok_or_else(|| {
                ConnectorError::Payload(format!("{} answered getMe without an id", self.host()))
            })?,
            username: me
                .get("username")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
        })
    }
}

/// The text of `entity` (offsets count UTF-16 code units).
fn entity_text(units: &[u16], entity: &Value) -> Option<String> {
    let offset = entity.get("offset")?.as_u64()? as usize;
    let length = entity.get("length")?.as_u64()? as usize;
    let slice = units.get(offset..offset.checked_add(length)?)?;
    String::from_utf16(slice).ok()
}

/// Whether `message` names the bot: a `mention` entity `@botname` or a `text_mention` of it.
fn mentions(message: &Value, text: &str, me: &Me) -> bool {
    let entities = message
        .get("entities")
        .or_else(|| message.get("caption_entities"))
        .and_then(Value::as_array);
    let Some(entities) = entities else {
        return false;
    };
    let units: Vec<u16> = text.encode_utf16().collect();
    entities
        .iter()
        .any(|entity| match entity.get("type").and_then(Value::as_str) {
            Some("mention") => {
                !me.username.is_empty()
                    && entity_text(&units, entity)
                        .is_some_and(|name| name.eq_ignore_ascii_case(&format!("@{}", me.username)))
            }
            Some("text_mention") => {
                entity.pointer("/user/id").and_then(Value::as_i64) == Some(me.id)
            }
            _ => false,
        })
}

/// The public link of a message: groups and channels with a username only (a private
/// chat's messages have none).
fn message_url(chat: &Value, message_id: i64) -> Option<String> {
    if chat.get("type").and_then(Value::as_str) == Some("private") {
        return None;
    }
    let username = chat.get("username").and_then(Value::as_str)?;
    Some(format!("https://t.me/{username}/{message_id}"))
}

/// An update's message as an item; `None` for what is not one (a bot's, without text).
fn item(update: &Value, me: &Me, chats: &[i64]) -> Option<InboundItem> {
    let message = ALLOWED_UPDATES.iter().find_map(|kind| update.get(*kind))?;
    let chat = message.get("chat")?;
    let chat_id = chat.get("id")?.as_i64()?;
    if !chats.is_empty() && !chats.contains(&chat_id) {
        return None;
    }
    let message_id = message.get("message_id")?.as_i64()?;
    let text = message
        .get("text")
        .or_else(|| message.get("caption"))
        .and_then(Value::as_str)?
        .to_owned();
    let author = match message.get("from") {
        Some(from) => {
            if from.get("is_bot").and_then(Value::as_bool) == Some(true) {
                return None;
            }
            let id = from.get("id")?.as_i64()?;
            let username = from.get("username").and_then(Value::as_str);
            let name = [from.get("first_name"), from.get("last_name")]
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ");
            Author {
                platform_id: id.to_string(),
                handle: username.map(|name| format!("@{name}")),
                display_name: (!name.is_empty()).then_some(name),
                profile_url: username.map(|name| format!("https://t.me/{name}")),
                ..Author::default()
            }
        }
        // A channel post is by the channel itself.
        None => {
            let sender = message.get("sender_chat").unwrap_or(chat);
            let username = sender.get("username").and_then(Value::as_str);
            Author {
                platform_id: sender.get("id")?.as_i64()?.to_string(),
                handle: username.map(|name| format!("@{name}")),
                display_name: sender
                    .get("title")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                profile_url: username.map(|name| format!("https://t.me/{name}")),
                ..Author::default()
            }
        }
    };
    let answered = message.get("reply_to_message");
    let in_reply_to = answered
        .and_then(|answered| answered.get("message_id"))
        .and_then(Value::as_i64)
        .map(|id| format!("{chat_id}:{id}"));
    let topic = message.get("is_topic_message").and_then(Value::as_bool) == Some(true);
    let thread_key = match message.get("message_thread_id").and_then(Value::as_i64) {
        Some(thread) if topic => format!("{chat_id}:{thread}"),
        _ => chat_id.to_string(),
    };
    let private = chat.get("type").and_then(Value::as_str) == Some("private");
    let to_bot = answered
        .and_then(|answered| answered.pointer("/from/id"))
        .and_then(Value::as_i64)
        == Some(me.id);
    let kind = if private {
        "message"
    } else if mentions(message, &text, me) {
        "mention"
    } else if to_bot {
        "reply"
    } else {
        "message"
    };
    let occurred_at = message
        .get("date")
        .and_then(Value::as_i64)
        .and_then(|at| Utc.timestamp_opt(at, 0).single())
        .unwrap_or_else(Utc::now);
    Some(InboundItem {
        external_id: format!("{chat_id}:{message_id}"),
        author,
        outbound: false,
        kind: kind.to_owned(),
        subject: None,
        text,
        html: None,
        url: message_url(chat, message_id),
        language: None,
        occurred_at,
        thread_key: Some(thread_key),
        in_reply_to,
        raw: message.clone(),
    })
}

impl TelegramConnector {
    /// Poll mode's pull (see the module doc).
    async fn poll(&self, cursor: Option<&Cursor>) -> Result<Pull, Failed> {
        let first = cursor.is_none();
        let state: TelegramCursor = cursor
            .and_then(|cursor| serde_json::from_str(&cursor.0).ok())
            .unwrap_or_default();
        let me = self.me().await?;
        let now = Utc::now().timestamp();
        let skip_all = first && self.config.backfill_limit == 0;
        // A first sync starts that many updates from the end of what Telegram holds (a
        // negative offset, which forgets what is before it); with 0 it only reads the
        // newest update's id. After a quiet week Telegram may number the next update
        // below our offset, which would confirm it unseen: past `QUIET_SECS` the ask has
        // no offset, and every update Telegram still holds is one we have not stored.
        let quiet = state
            .at
            .is_some_and(|at| now.saturating_sub(at) > QUIET_SECS);
        let offset = if first {
            Some(-(self.config.backfill_limit.max(1) as i64))
        } else if quiet {
            None
        } else {
            state.offset
        };
        let mut body = json!({
            "limit": if skip_all { 1 } else { PAGE },
            "timeout": 0,
            "allowed_updates": ALLOWED_UPDATES,
        });
        if let Some(offset) = offset {
            body["offset"] = json!(offset);
        }
        let updates = match self.ask("getUpdates", &body).await {
            Ok(updates) => updates,
            Err(Failed {
                error: ConnectorError::RateLimited { retry_after_secs },
                ..
            }) => {
                // Nothing read: the stored cursor stays as it is (a first sync's too).
                let mut not_before = None;
                http::wait_out(&mut not_before, retry_after_secs);
                return Ok(Pull {
                    items: Vec::new(),
                    next_cursor: None,
                    more: true,
                    not_before,
                });
            }
            Err(err) => return Err(err),
        };
        let updates = updates.as_array().ok_or_else(|| {
            ConnectorError::Payload(format!(
                "{} answered getUpdates without a list",
                self.host()
            ))
        })?;
        let mut items = Vec::new();
        let mut last = None;
        for update in updates {
            let id = update
                .get("update_id")
                .and_then(Value::as_i64)
                .ok_or_else(|| {
                    ConnectorError::Payload(format!(
                        "{} answered getUpdates with an update without update_id",
                        self.host()
                    ))
                })?;
            last = Some(id);
            if !skip_all {
                items.extend(item(update, &me, &self.config.chats));
            }
        }
        // The next pull asks from after the last update of this answer (Telegram sends
        // them in order; after a renumbering the new ids may be lower than the old
        // offset), which confirms this page only once the sync has stored it.
        let next = match last {
            Some(id) => TelegramCursor {
                offset: Some(id.checked_add(1).ok_or_else(|| {
                    ConnectorError::Payload(format!(
                        "{} answered getUpdates with update_id {id}",
                        self.host()
                    ))
                })?),
                at: Some(now),
            },
            None if first => TelegramCursor {
                offset: None,
                at: Some(now),
            },
            None => TelegramCursor {
                offset: state.offset,
                at: state.at.or(Some(now)),
            },
        };
        Ok(Pull {
            items,
            next_cursor: Some(Cursor(
                serde_json::to_string(&next).unwrap_or_else(|_| "{}".into()),
            )),
            more: !skip_all && updates.len() >= PAGE,
            not_before: None,
        })
    }
}

#[async_trait::async_trait]
impl Connector for TelegramConnector {
    fn channel(&self) -> Channel {
        Channel::Telegram
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            pull: true,
            webhook: self.webhook_mode(),
            reply: true,
        }
    }

    fn confirms_on_read(&self) -> bool {
        true
    }

    fn verify(
        &self,
        request: &crate::WebhookRequest<'_>,
        _body: &[u8],
    ) -> Result<(), crate::WebhookError> {
        self.check_secret(request)
    }

    async fn webhook(
        &self,
        request: &crate::WebhookRequest<'_>,
        body: &[u8],
    ) -> Result<crate::Hooked, crate::WebhookError> {
        self.hook(request, body).await
    }

    fn listen_at(&mut self, url: &str) {
        self.webhook_url = Some(url.to_owned());
    }

    /// Webhook mode's webhook, deleted when it still is this source's own address.
    async fn unlisten(&self) -> Result<(), ConnectorError> {
        if !self.webhook_mode() {
            return Ok(());
        }
        self.delete_own_webhook().await.map(drop)
    }

    async fn pull(&self, cursor: Option<&Cursor>) -> Result<Pull, ConnectorError> {
        if self.webhook_mode() {
            // Updates arrive on the webhook; getUpdates would be refused while it is set.
            return self.set_webhook().await;
        }
        match self.poll(cursor).await {
            // Left from webhook mode: ours to delete, then poll as asked.
            Err(Failed {
                error,
                webhook_set: true,
            }) => {
                if self.delete_own_webhook().await? {
                    self.poll(cursor).await.map_err(|failed| failed.error)
                } else {
                    Err(error)
                }
            }
            polled => polled.map_err(|failed| failed.error),
        }
    }

    fn default_reply_limit(&self) -> Option<ReplyLimit> {
        Some(ReplyLimit::Characters(MAX_REPLY_UNITS))
    }

    fn reply_length(&self, _to: &ReplyTarget, text: &str, _limit: ReplyLimit) -> usize {
        text.trim().encode_utf16().count()
    }

    async fn reply(&self, to: &ReplyTarget, text: &str) -> Result<Sent, ConnectorError> {
        let text = text.trim();
        let units = text.encode_utf16().count();
        if units > MAX_REPLY_UNITS {
            return Err(ConnectorError::Payload(format!(
                "the reply has {units} UTF-16 code units; Telegram takes at most {MAX_REPLY_UNITS}"
            )));
        }
        let (chat_id, message_id) = to
            .external_id
            .rsplit_once(':')
            .and_then(|(chat, message)| {
                Some((chat.parse::<i64>().ok()?, message.parse::<i64>().ok()?))
            })
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "`{}` is not a Telegram message to answer",
                    to.external_id
                ))
            })?;
        let mut body = json!({
            "chat_id": chat_id,
            "text": text,
            "reply_parameters": { "message_id": message_id, "allow_sending_without_reply": true },
        });
        if to.context.get("is_topic_message").and_then(Value::as_bool) == Some(true) {
            if let Some(thread) = to.context.get("message_thread_id").and_then(Value::as_i64) {
                body["message_thread_id"] = json!(thread);
            }
        }
        let sent = self.call("sendMessage", &body).await?;
        let id = sent
            .get("message_id")
            .and_then(Value::as_i64)
            .ok_or_else(|| {
                ConnectorError::Payload(format!(
                    "{} answered sendMessage without the message's id",
                    self.host()
                ))
            })?;
        let chat = sent.get("chat").cloned().unwrap_or(Value::Null);
        let chat_id = chat.get("id").and_then(Value::as_i64).unwrap_or(chat_id);
        Ok(Sent {
            external_id: format!("{chat_id}:{id}"),
            url: message_url(&chat, id),
            text: text.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "123456789:AAHsecretPartOfTheToken_x";

    fn me() -> Me {
        Me {
            id: 123_456_789,
            username: "acme_bot".into(),
        }
    }

    fn group_message(text: &str, entities: Value) -> Value {
        json!({ "update_id": 10, "message": {
            "message_id": 4, "date": 1_794_042_000, "text": text, "entities": entities,
            "from": { "id": 55, "is_bot": false, "first_name": "Ana", "username": "ana" },
            "chat": { "id": -100_200, "type": "supergroup", "title": "Users" }
        }})
    }

    #[test]
    fn the_config_is_checked_and_never_shows_the_token() {
        let config = TelegramConfig::parse(&json!({ "bot_token": TOKEN })).unwrap();
        assert_eq!(config.base_url, API);
        assert_eq!(config.mode, "poll");
        assert_eq!(config.backfill_limit, DEFAULT_BACKFILL_LIMIT);
        let shown = format!("{config:?}");
        assert!(!shown.contains("secretPart"), "{shown}");
        let (field, message) =
            TelegramConfig::parse(&json!({ "bot_token": TOKEN, "mode": "webhook" })).unwrap_err();
        assert_eq!(field, "webhook_secret");
        assert!(message.contains("needs a webhook_secret"), "{message}");
        let (field, _) =
            TelegramConfig::parse(&json!({ "bot_token": TOKEN, "mode": "push" })).unwrap_err();
        assert_eq!(field, "mode");
        for bad in ["", "Ab_9-z", "has space", "slash/", &"x".repeat(257)] {
            let (field, message) = TelegramConfig::parse(
                &json!({ "bot_token": TOKEN, "mode": "webhook", "webhook_secret": bad }),
            )
            .unwrap_err();
            assert_eq!(field, "webhook_secret");
            assert!(bad.is_empty() || !message.contains(bad), "{message}");
        }
        let hooked = TelegramConfig::parse(
            &json!({ "bot_token": TOKEN, "mode": " webhook ", "webhook_secret": "Ab_9-z0123456789" }),
        )
        .unwrap();
        assert_eq!(hooked.mode, "webhook");
        assert!(!format!("{hooked:?}").contains("Ab_9-z"));
        for bad in ["", "AAH", "12:", "12:a/b", "12:a b", "x1:abc"] {
            let (field, message) = TelegramConfig::parse(&json!({ "bot_token": bad })).unwrap_err();
            assert_eq!(field, "bot_token");
            assert!(bad.is_empty() || !message.contains(bad), "{message}");
        }
        let (field, _) =
            TelegramConfig::parse(&json!({ "bot_token": TOKEN, "backfill_limit": 100_001 }))
                .unwrap_err();
        assert_eq!(field, "backfill_limit");
        let config =
            TelegramConfig::parse(&json!({ "bot_token": TOKEN, "chats": [1, 2, 1] })).unwrap();
        assert_eq!(config.chats, [1, 2]);
    }

    #[test]
    fn a_mention_is_found_by_utf16_offsets_and_only_for_this_bot() {
        // "é🙂 " is 4 UTF-16 code units.
        let named = group_message(
            "é🙂 @ACME_bot hi",
            json!([{ "type": "mention", "offset": 4, "length": 9 }]),
        );
        assert_eq!(item(&named, &me(), &[]).unwrap().kind, "mention");
        let other = group_message(
            "é🙂 @other_bot hi",
            json!([{ "type": "mention", "offset": 4, "length": 10 }]),
        );
        assert_eq!(item(&other, &me(), &[]).unwrap().kind, "message");
        let text_mention = group_message(
            "Acme bot, help",
            json!([{ "type": "text_mention", "offset": 0, "length": 8,
                "user": { "id": 123_456_789, "is_bot": true, "first_name": "Acme" } }]),
        );
        assert_eq!(item(&text_mention, &me(), &[]).unwrap().kind, "mention");
        // Offsets past the text are no mention, and no panic.
        let broken = group_message(
            "@acme_bot",
            json!([{ "type": "mention", "offset": 3, "length": 90 }]),
        );
        assert_eq!(item(&broken, &me(), &[]).unwrap().kind, "message");
    }

    #[test]
    fn an_update_is_an_item_by_its_user_in_its_chat_unless_a_bot_or_without_text() {
        let update = group_message("hello", json!([]));
        let got = item(&update, &me(), &[]).unwrap();
        assert_eq!(got.external_id, "-100200:4");
        assert_eq!(got.thread_key.as_deref(), Some("-100200"));
        assert_eq!(got.author.platform_id, "55");
        assert_eq!(got.author.handle.as_deref(), Some("@ana"));
        assert_eq!(got.author.display_name.as_deref(), Some("Ana"));
        assert_eq!(got.url, None);
        assert!(item(&update, &me(), &[-100_200]).is_some());
        assert!(item(&update, &me(), &[7]).is_none());
        let mut bot = update.clone();
        bot["message"]["from"]["is_bot"] = json!(true);
        assert!(item(&bot, &me(), &[]).is_none());
        let mut sticker = update.clone();
        sticker["message"].as_object_mut().unwrap().remove("text");
        assert!(item(&sticker, &me(), &[]).is_none());
        sticker["message"]["caption"] = json!("look");
        assert_eq!(item(&sticker, &me(), &[]).unwrap().text, "look");
    }

    #[test]
    fn the_secret_token_must_be_equal_whole() {
        assert!(same_secret("Ab_9-z", "Ab_9-z"));
        for other in ["", "Ab_9-", "Ab_9-zz", "ab_9-z", "Ab_9-y"] {
            assert!(!same_secret("Ab_9-z", other), "{other}");
        }
    }

    #[test]
    fn the_token_is_scrubbed_from_what_telegram_says() {
        let connector = TelegramConnector::new(
            reqwest::Client::new(),
            TelegramConfig::parse(&json!({ "bot_token": TOKEN })).unwrap(),
        );
        let said = connector.scrub(&format!(
            "Not Found: /bot{TOKEN}/x and AAHsecretPartOfTheToken_x"
        ));
        assert!(!said.contains("secretPart"), "{said}");
    }
}
