//! `POST /webhooks/{source_id}`: signed deliveries from a platform into ingest. The
//! signature is verified over the raw bytes before anything is parsed; the delivery is
//! stored through the same ingest path as a sync, so replays are stored once.
//!
//! The source's channel decides who reads a delivery: a `webhook` source's is the
//! documented generic payload (`connectors::webhook`); a source whose connector takes
//! deliveries ([`connectors::Connector::webhook`]: GitHub with a `webhook_secret`,
//! Telegram in webhook mode) hands it to its connector, which verifies and maps it as its
//! pull maps the same item; any other source is answered as an unknown address (404).
//! The order is the same for both: the signature first (an unsigned caller learns only
//! that it is refused, not whether the source is paused), then a paused source is 503,
//! then the delivery is read (a connector's mapping, which may call its platform, within
//! `limits.webhook_timeout_secs`).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{reject, HttpState, MediaType, Rejection, JSON};
use crate::domain;
use crate::error::Error;
use crate::ingest::gather::Delivered;

/// `POST /webhooks/{source_id}`: a delivery to a webhook source. The signature is checked
/// over the raw bytes before anything is parsed; a bad signature is 401 and stores
/// nothing; a bad body is 400 naming the field; a replayed `webhook-id` is stored once.
pub(super) async fn deliver(
    State(state): State<HttpState>,
    axum::extract::Path(source_id): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let refuse = |rejection: Rejection| reject(&state, MediaType::Json, rejection);
    let not_found = || Error::not_found("webhook source", source_id.clone());
    let Ok(id) = crate::ids::decode::<entity::SourceId>("source_id", &source_id) else {
        return refuse(not_found().into());
    };
    let source = match domain::source::for_delivery(&state.app().db, id).await {
        Ok(source) => source,
        Err(Error::NotFound { .. }) => return refuse(not_found().into()),
        Err(err) => {
            tracing::error!(error = %err, "looking up a webhook source failed");
            return refuse(err.into());
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!(
                "the delivery is larger than {} bytes",
                state.app().config.limits.max_body_bytes
            );
            return refuse(Rejection::protocol(
                StatusCode::PAYLOAD_TOO_LARGE,
                Error::bad_input(message),
            ));
        }
        Err(_) => return refuse(Rejection::bad("the delivery could not be read")),
    };
    if source.channel != connectors::Channel::Webhook {
        return to_connector(&state, &source_id, &source, &headers, &body).await;
    }
    let secret = source
        .secrets
        .get("secret")
        .and_then(Value::as_str)
        .map(connectors::webhook::Secret::parse);
    let Some(Ok(secret)) = secret else {
        tracing::error!(source = %source_id, "a webhook source has no usable secret");
        return refuse(Error::Internal("webhook source without a secret".into()).into());
    };
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let signature = connectors::webhook::SignatureHeaders {
        webhook_id: header("webhook-id"),
        webhook_timestamp: header("webhook-timestamp"),
        webhook_signature: header("webhook-signature"),
        hub_signature_256: header("x-hub-signature-256"),
    };
    let verified = match secret.verify(&signature, &body, chrono::Utc::now()) {
        Ok(verified) => verified,
        Err(err) => {
            tracing::warn!(source = %source_id, reason = %err, "webhook delivery refused");
            return refuse(Error::Unauthenticated(err.to_string()).into());
        }
    };
    if source.status == domain::source::SourceStatus::Paused {
        // 503, not the 409 of `CONFLICT`: senders retry a 5xx later, and the source
        // takes deliveries again once resumed.
        return refuse(Rejection::protocol(
            StatusCode::SERVICE_UNAVAILABLE,
            Error::Conflict("the source is paused; retry later".into()),
        ));
    }
    // Replays are deduplicated on what the signature covers: the signed `webhook-id`, or
    // the body's hash for GitHub-style signatures (`X-GitHub-Delivery` is not signed).
    let delivery_id = verified.delivery_id();
    let item = match connectors::webhook::parse(&body, &delivery_id, crate::domain::now()) {
        Ok(item) => item,
        Err(err) => return refuse(Error::field(err.field, err.to_string()).into()),
    };
    // Stored normalised (control characters removed): nothing left is no text at all.
    if domain::text::clean(&item.text).is_empty() {
        return refuse(Error::field("text", "text: is required and must not be empty").into());
    }
    // Stored in the next batch of this source's deliveries (`ingest::gather`), answered
    // once that batch committed.
    let delivered = state.app().deliveries.deliver(&source, item).await;
    answer(
        &state,
        &source_id,
        delivered.map(|delivered| vec![delivered]),
    )
}

/// The answer to a delivery once what it held was stored (one answer per item, in order;
/// none for an ignored event).
fn answer(
    state: &HttpState,
    source_id: &str,
    delivered: crate::error::Result<Vec<Delivered>>,
) -> Response {
    let refuse = |rejection: Rejection| reject(state, MediaType::Json, rejection);
    match delivered {
        // 422, not 400: the delivery is well formed, its content cannot be stored, and
        // senders do not retry a 4xx.
        Ok(delivered) if delivered.contains(&Delivered::Refused) => refuse(Rejection::protocol(
            StatusCode::UNPROCESSABLE_ENTITY,
            Error::bad_input("the delivery's content cannot be stored; do not retry it unchanged"),
        )),
        Ok(delivered) => {
            crate::failpoint::failpoint("webhook.after_commit");
            let interaction = delivered.iter().find_map(|delivered| match delivered {
                Delivered::New(id) => Some(crate::ids::encode(*id)),
                _ => None,
            });
            let duplicate = !delivered.is_empty()
                && delivered
                    .iter()
                    .all(|delivered| *delivered == Delivered::Duplicate);
            let body =
                json!({ "accepted": true, "duplicate": duplicate, "interactionId": interaction });
            ok(body)
        }
        Err(err) => {
            // Only a server-side failure is a 5xx (the sender retries); an error about the
            // delivery itself keeps its 4xx status.
            let rejection = Rejection::from(err);
            if rejection.0.is_server_error() {
                tracing::error!(source = %source_id, error = %rejection.1, "storing a webhook delivery failed");
            }
            refuse(rejection)
        }
    }
}

fn ok(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, JSON)],
        body.to_string(),
    )
        .into_response()
}

/// A delivery to a source of a platform channel: its connector verifies it (a connector
/// without webhooks, or not configured for them, is answered as an unknown address) and
/// maps it; its items are stored as a webhook source's are, in the source's next batch.
async fn to_connector(
    state: &HttpState,
    source_id: &str,
    source: &entity::source::Model,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let refuse = |rejection: Rejection| reject(state, MediaType::Json, rejection);
    let not_found = || Error::not_found("webhook source", source_id.to_owned());
    let app = state.app();
    let connector = match state.hooked.get(app, source) {
        Ok(connector) if connector.capabilities().webhook => connector,
        // Unknown channels, sources without webhooks, and sources whose stored settings
        // no longer build: all look like no address at all to a sender.
        _ => return refuse(not_found().into()),
    };
    let request = connectors::WebhookRequest { headers };
    // Verified before anything else is looked at: an unsigned caller gets the same 401
    // whether the source is paused or not, and learns nothing about it.
    if let Err(err) = connector.verify(&request, body) {
        return refused(state, source, source_id, err);
    }
    // Checked before mapping: a paused source makes no call to its platform (GitHub's
    // `GET /user`, Telegram's `getMe`) however many deliveries arrive.
    if source.status == domain::source::SourceStatus::Paused {
        return refuse(Rejection::protocol(
            StatusCode::SERVICE_UNAVAILABLE,
            Error::Conflict("the source is paused; retry later".into()),
        ));
    }
    // A platform that does not answer the mapping's calls must not hold the delivery
    // past the sender's own patience (GitHub gives up after 10 s): 503, it retries.
    let budget = std::time::Duration::from_secs(app.config.limits.webhook_timeout_secs.max(1));
    let hooked = match tokio::time::timeout(budget, connector.webhook(&request, body)).await {
        Ok(Ok(hooked)) => hooked,
        Ok(Err(err)) => return refused(state, source, source_id, err),
        Err(_) => {
            tracing::warn!(source = %source_id, secs = budget.as_secs(), "mapping a webhook delivery timed out");
            return refuse(Rejection::protocol(
                StatusCode::SERVICE_UNAVAILABLE,
                Error::Conflict("the delivery could not be mapped now; retry later".into()),
            ));
        }
    };
    let items = match hooked {
        connectors::Hooked::Ignored(reason) => {
            return ok(json!({
                "accepted": true, "duplicate": false, "interactionId": null, "ignored": reason
            }))
        }
        connectors::Hooked::Items(items) => items,
    };
    let mut delivered = Vec::with_capacity(items.len());
    for item in items {
        match app.deliveries.deliver(source, item).await {
            Ok(one) => delivered.push(one),
            Err(err) => return answer(state, source_id, Err(err)),
        }
    }
    answer(state, source_id, Ok(delivered))
}

/// The connectors of sources that take deliveries, one per source, kept while the
/// source's settings and secrets are unchanged: what a connector learns from its platform
/// for mapping (GitHub's token account, cached for a few minutes) then serves the next
/// deliveries rather than being asked again for each (a replayed burst included). Not
/// keyed by `updated_at`, which every stored batch moves. A changed source gets a new
/// connector; at [`Connectors::MAX`] sources the map starts over.
#[derive(Default)]
pub(super) struct Connectors(Mutex<HashMap<entity::SourceId, Built>>);

/// A source's connector and the settings and secrets it was built from.
struct Built {
    config: Value,
    secrets: Value,
    connector: Arc<dyn connectors::Connector>,
}

impl Connectors {
    const MAX: usize = 10_000;

    /// The connector of `source` as it is now.
    fn get(
        &self,
        app: &crate::App,
        source: &entity::source::Model,
    ) -> Result<Arc<dyn connectors::Connector>, connectors::ConnectorError> {
        if let Ok(built) = self.0.lock() {
            if let Some(built) = built.get(&source.id) {
                if built.config == source.config && built.secrets == source.secrets {
                    return Ok(built.connector.clone());
                }
            }
        }
        let connector: Arc<dyn connectors::Connector> = Arc::from(crate::ingest::connector(
            source,
            &app.outbound,
            app.config.http.public_url.as_deref(),
        )?);
        if let Ok(mut built) = self.0.lock() {
            if built.len() >= Self::MAX {
                built.clear();
            }
            let entry = Built {
                config: source.config.clone(),
                secrets: source.secrets.clone(),
                connector: connector.clone(),
            };
            built.insert(source.id, entry);
        }
        Ok(connector)
    }
}

/// The answer to a delivery a connector did not take (see [`connectors::WebhookError`]).
fn refused(
    state: &HttpState,
    source: &entity::source::Model,
    source_id: &str,
    err: connectors::WebhookError,
) -> Response {
    let refuse = |rejection: Rejection| reject(state, MediaType::Json, rejection);
    match err {
        connectors::WebhookError::Unsupported => {
            refuse(Error::not_found("webhook source", source_id.to_owned()).into())
        }
        connectors::WebhookError::Unauthenticated(reason) => {
            tracing::warn!(source = %source_id, %reason, "webhook delivery refused");
            refuse(Error::Unauthenticated(reason).into())
        }
        connectors::WebhookError::Payload { field, message } => {
            refuse(Error::field(field, format!("{field}: {message}")).into())
        }
        connectors::WebhookError::Connector(err) => {
            // The platform could not be asked what the delivery needs (the token's own
            // account): 503, so a sender that retries (Telegram) comes back. Its error may
            // quote the platform, which may quote our token: scrubbed like a sync's, and
            // kept out of the answer, which the sender shows its own users.
            let error = domain::source::scrub(source, err.to_string());
            tracing::warn!(source = %source_id, %error, "mapping a webhook delivery failed");
            refuse(Rejection::protocol(
                StatusCode::SERVICE_UNAVAILABLE,
                Error::Conflict("the delivery could not be mapped now; retry later".into()),
            ))
        }
    }
}
