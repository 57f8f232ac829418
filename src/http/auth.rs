//! Who is calling, and how often: bearer keys, authentication, and the rate limiters
//! (requests per key, failed authentications per address, deliveries per webhook source).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::{reject, HttpState, MediaType};
use crate::domain;
use crate::error::Error;

/// A client that failed to authenticate too often is refused at `/graphql` for a while
/// without its key being looked at: guessing keys costs a database lookup each, and the
/// failures of one address are bounded like any other work. Health, readiness and metrics
/// stay open to it, and bad webhook signatures are counted apart ([`limit_webhooks`]).
pub(super) async fn limit_auth_failures(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(ip) = super::listener::peer(&request).map(|peer| super::listener::client(peer.ip()))
    else {
        return next.run(request).await;
    };
    if let Err(error) = state.auth_failures.peek(&ip) {
        return reject(&state, MediaType::Json, error);
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        let _ = state.auth_failures.check(ip);
    }
    response
}

/// Webhook deliveries: a client whose deliveries to a source keep failing their signature
/// is refused at that source for a while (senders such as GitHub deliver for every
/// tenant from shared addresses, so one tenant's wrong secret must not lock out another's
/// source), and each source accepts so many signed deliveries a minute. Only deliveries
/// that passed their signature (answered 2xx, or 422 when unstorable) use a source's
/// budget, so junk sent to a known source address cannot lock its real sender out.
pub(super) async fn limit_webhooks(
    State(state): State<HttpState>,
    request: Request,
    next: Next,
) -> Response {
    let ip = super::listener::peer(&request).map(|peer| super::listener::client(peer.ip()));
    let source = request
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .chars()
        .take(64)
        .collect::<String>();
    if let Some(ip) = ip {
        if let Err(error) = state.webhook_failures.peek(&(source.clone(), ip)) {
            return reject(&state, MediaType::Json, error);
        }
    }
    if let Err(error) = state.webhooks.peek(&source) {
        return reject(&state, MediaType::Json, error);
    }
    let response = next.run(request).await;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED {
        if let Some(ip) = ip {
            let _ = state.webhook_failures.check((source, ip));
        }
    } else if status.is_success() || status == StatusCode::UNPROCESSABLE_ENTITY {
        let _ = state.webhooks.check(source);
    }
    response
}

/// The caller of a request: its bearer key, looked up (or known, [`domain::callers`]),
/// within the key's request rate.
pub(super) async fn authenticate(
    state: &HttpState,
    headers: &HeaderMap,
) -> Result<domain::Caller, Error> {
    let key = bearer(headers)?;
    let caller = state.app().callers.authenticate(key).await?;
    state.limiter.check(caller.key_id)?;
    Ok(caller)
}

/// The key of an `Authorization: Bearer <key>` header.
fn bearer(headers: &HeaderMap) -> Result<&str, Error> {
    let value = headers.get(header::AUTHORIZATION).ok_or_else(|| {
        Error::Unauthenticated("send an API key: Authorization: Bearer <key>".into())
    })?;
    value
        .to_str()
        .ok()
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Error::Unauthenticated("the Authorization header must be `Bearer <key>`".into())
        })
}

/// Requests a minute per key (an API key, a client address, a webhook source), as token
/// buckets refilled continuously. In memory and per process: it protects this process, it
/// is not a billing quota. Full buckets are forgotten now and then, so the table holds
/// only keys seen in the last minute or so.
pub(super) struct RateLimiter<K> {
    per_minute: u32,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

/// How many keys a limiter holds before it forgets the ones whose bucket refilled.
const LIMITER_PRUNE_AT: usize = 10_000;

impl<K: std::hash::Hash + Eq> RateLimiter<K> {
    pub(super) fn new(per_minute: u32) -> RateLimiter<K> {
        RateLimiter {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes a token for `key`, or says how long to wait for one.
    pub(super) fn check(&self, key: K) -> Result<(), Error> {
        self.take(key, 1.0)
    }

    /// Whether `key` has a token left, without taking it.
    pub(super) fn peek(&self, key: &K) -> Result<(), Error>
    where
        K: Clone,
    {
        self.take(key.clone(), 0.0)
    }

    fn take(&self, key: K, cost: f64) -> Result<(), Error> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = capacity / 60.0;
        let now = Instant::now();
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= LIMITER_PRUNE_AT {
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < capacity
            });
        }
        let (tokens, last) = buckets.entry(key).or_insert((capacity, now));
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * rate).min(capacity);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= cost;
            Ok(())
        } else {
            let wait = Duration::from_secs_f64((1.0 - *tokens) / rate);
            Err(Error::RateLimited {
                retry_after_secs: wait.as_secs().max(1),
            })
        }
    }
}
