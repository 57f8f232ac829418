//! What the HTTP connectors share: bodies read with a size cap, status codes mapped to
//! [`ConnectorError`]s, and the platforms' rate-limit headers read into "not before" times.

use chrono::{DateTime, TimeZone, Utc};
use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};

use crate::ConnectorError;

/// The largest response body a connector reads; a larger one is a payload error.
pub const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Turns a reqwest failure into a transport error that names no secret (reqwest errors
/// carry the URL, never headers), or into [`ConnectorError::Refused`] when the outbound
/// guard refused the address.
pub fn transport(err: reqwest::Error) -> ConnectorError {
    // The outbound guard refused the connection (or a redirect hop): one message, which
    // says nothing about whether anything listens there.
    if let Some(refused) = crate::outbound::refusal_in(&err) {
        return ConnectorError::Refused(refused.host.clone());
    }
    let what = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "broke off the response body"
    } else {
        "failed"
    };
    let host = err
        .url()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    ConnectorError::Transport(format!("the request to {host} {what}"))
}

/// Reads a body of at most `limit` bytes, chunk by chunk, so a huge or endless body
/// costs at most `limit` bytes of memory.
pub async fn read_capped(mut response: Response, limit: usize) -> Result<Vec<u8>, ConnectorError> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(too_large(limit));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(limit: usize) -> ConnectorError {
    ConnectorError::Payload(format!(
        "the response is larger than {} MiB",
        limit / (1024 * 1024)
    ))
}

/// Fails on a status other than 2xx or 304, with the error the scheduler needs: 429 and
/// rate-limit headers are [`ConnectorError::RateLimited`], 401/403 `Unauthorized`, 5xx a
/// transport error (retried), other 4xx a payload error.
pub fn check_status(response: &Response, now: DateTime<Utc>) -> Result<(), ConnectorError> {
    let status = response.status();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    let host = response.url().host_str().unwrap_or_default().to_owned();
    let code = status.as_u16();
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => ConnectorError::RateLimited {
            retry_after_secs: not_before(response.headers(), now)
                .map(|at| (at - now).num_seconds().max(1) as u64),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::Unauthorized(format!(
            "{host} answered {code}: check the source's credentials"
        )),
        status if status.is_server_error() => {
            ConnectorError::Transport(format!("{host} answered {code}"))
        }
        _ => ConnectorError::Payload(format!("{host} answered {code}")),
    })
}

/// Moves `not_before` to the end of a rate-limit wait met in a pull (`retry_after_secs`
/// as the platform gave it, 60 s when it gave none, a day at most), keeping the later of
/// the two: the pull keeps what it read and asks nothing more until then.
pub fn wait_out(not_before: &mut Option<DateTime<Utc>>, retry_after_secs: Option<u64>) {
    let secs = retry_after_secs.unwrap_or(60).min(86_400);
    let at = Utc::now() + chrono::Duration::seconds(secs as i64);
    *not_before = Some(not_before.map_or(at, |old| old.max(at)));
}

/// When the platform asks us to come back, from `Retry-After` (seconds or an HTTP date),
/// `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset` (epoch seconds, seconds from now, or
/// an ISO 8601 time as Mastodon sends), or the IETF `RateLimit-Remaining`/`RateLimit-Reset`
/// (seconds from now) and combined `RateLimit: remaining=0, reset=N` forms. Whatever the
/// form, the time is at most a day ahead (a platform's clock or a hostile server cannot
/// park a source for years) and never before `now`.
pub fn not_before(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    asked_time(headers, now).map(|at| at.clamp(now, now + chrono::Duration::days(1)))
}

fn asked_time(headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    if let Some(value) = header("retry-after") {
        if let Ok(secs) = value.parse::<i64>() {
            return Some(now + chrono::Duration::seconds(secs.clamp(0, 86_400)));
        }
        if let Ok(at) = DateTime::parse_from_rfc2822(value) {
            return Some(at.with_timezone(&Utc));
        }
    }
    let exhausted = |name: &str| header(name).and_then(|v| v.parse::<f64>().ok()) == Some(0.0);
    if exhausted("x-ratelimit-remaining") {
        if let Some(reset) = header("x-ratelimit-reset") {
            return parse_reset(reset, now);
        }
    }
    if exhausted("ratelimit-remaining") {
        if let Some(reset) = header("ratelimit-reset").and_then(|v| v.parse::<i64>().ok()) {
            return Some(now + chrono::Duration::seconds(reset.clamp(0, 86_400)));
        }
    }
    if let Some(combined) = header("ratelimit") {
        let field = |key: &str| {
            combined.split([',', ';']).find_map(|part| {
                let (name, value) = part.trim().split_once('=')?;
                (name.trim() == key).then(|| value.trim().parse::<i64>().ok())?
            })
        };
        if field("remaining") == Some(0) {
            if let Some(reset) = field("reset") {
                return Some(now + chrono::Duration::seconds(reset.clamp(0, 86_400)));
            }
        }
    }
    None
}

fn parse_reset(value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.with_timezone(&Utc));
    }
    let number = value.parse::<f64>().ok()? as i64;
    if number > 1_000_000_000 {
        Utc.timestamp_opt(number, 0).single()
    } else {
        Some(now + chrono::Duration::seconds(number.clamp(0, 86_400)))
    }
}

/// The URL of the `Link` header entry with relation `rel` (RFC 8288).
pub fn link(headers: &HeaderMap, rel: &str) -> Option<String> {
    headers.get_all("link").iter().find_map(|value| {
        let value = value.to_str().ok()?;
        value.split(',').find_map(|entry| {
            let (target, params) = entry.split_once(';')?;
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            let matches = params.split(';').any(|param| {
                param
                    .trim()
                    .strip_prefix("rel=")
                    .map(|value| value.trim_matches('"'))
                    .is_some_and(|value| value.split_whitespace().any(|r| r == rel))
            });
            matches.then(|| target.to_owned())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_met_in_a_pull_keeps_the_later_end_and_lasts_a_day_at_most() {
        let secs = |at: Option<DateTime<Utc>>| (at.unwrap() - Utc::now()).num_seconds();
        let mut not_before = None;
        wait_out(&mut not_before, None);
        assert!(
            (58..=60).contains(&secs(not_before)),
            "60 s when none is given"
        );
        wait_out(&mut not_before, Some(5));
        assert!(
            secs(not_before) >= 58,
            "an earlier end does not shorten the wait"
        );
        wait_out(&mut not_before, Some(u64::MAX));
        assert!(
            (86_398..=86_400).contains(&secs(not_before)),
            "a day at most"
        );
    }
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn rate_limit_headers_of_every_form_give_a_time() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let in_secs = |secs| Some(now + chrono::Duration::seconds(secs));
        assert_eq!(
            not_before(&headers(&[("retry-after", "120")]), now),
            in_secs(120)
        );
        assert_eq!(
            not_before(
                &headers(&[("retry-after", "Mon, 23 Nov 2026 12:05:00 GMT")]),
                now
            ),
            in_secs(300)
        );
        // Mastodon: an ISO 8601 reset time.
        assert_eq!(
            not_before(
                &headers(&[
                    ("x-ratelimit-limit", "300"),
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "2026-11-23T12:10:00.000Z")
                ]),
                now
            ),
            in_secs(600)
        );
        // GitHub style epoch seconds, and a delta.
        let epoch = (now.timestamp() + 60).to_string();
        assert_eq!(
            not_before(
                &headers(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &epoch)
                ]),
                now
            ),
            in_secs(60)
        );
        assert_eq!(
            not_before(
                &headers(&[("ratelimit-remaining", "0"), ("ratelimit-reset", "30")]),
                now
            ),
            in_secs(30)
        );
        assert_eq!(
            not_before(
                &headers(&[("ratelimit", "limit=100, remaining=0, reset=45")]),
                now
            ),
            in_secs(45)
        );
        // Budget left: no wait.
        assert_eq!(
            not_before(
                &headers(&[("x-ratelimit-remaining", "12"), ("x-ratelimit-reset", "30")]),
                now
            ),
            None
        );
    }

    #[test]
    fn a_time_asked_far_ahead_or_in_the_past_is_held_within_a_day_from_now() {
        let now = Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap();
        let day = Some(now + chrono::Duration::days(1));
        let far_epoch = (now.timestamp() + 10 * 365 * 86_400).to_string();
        for asked in [
            headers(&[("retry-after", "Sun, 23 Nov 2036 12:00:00 GMT")]),
            headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "2036-11-23T12:00:00.000Z"),
            ]),
            headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &far_epoch),
            ]),
        ] {
            assert_eq!(not_before(&asked, now), day, "{asked:?}");
        }
        // A time already past: no wait beyond now.
        assert_eq!(
            not_before(
                &headers(&[("retry-after", "Mon, 23 Nov 2026 11:00:00 GMT")]),
                now
            ),
            Some(now)
        );
    }

    #[test]
    fn link_headers_are_read_by_relation() {
        let map = headers(&[(
            "link",
            "<https://mastodon.example/api/v1/notifications?max_id=34975535>; rel=\"next\", <https://mastodon.example/api/v1/notifications?min_id=34975861>; rel=\"prev\"",
        )]);
        assert_eq!(
            link(&map, "prev").as_deref(),
            Some("https://mastodon.example/api/v1/notifications?min_id=34975861")
        );
        assert_eq!(
            link(&map, "next").as_deref(),
            Some("https://mastodon.example/api/v1/notifications?max_id=34975535")
        );
        assert_eq!(link(&map, "last"), None);
    }
}
