//! GraphiQL, served whole from the binary: `GET /graphql` from a browser gets a page whose
//! scripts and styles all come from `/graphiql/…` on this server (production builds of
//! GraphiQL and React at pinned versions, embedded gzip-compressed by `build.rs`), under a
//! Content-Security-Policy that allows nothing else. It works offline, behind a strict
//! proxy, and never runs code from a CDN. When `serve --demo` printed an API key, the
//! headers editor starts with it.

use axum::extract::{Path, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// One embedded file, as `build.rs` compressed it.
struct Asset {
    name: &'static str,
    gzip: &'static [u8],
}

mod embedded {
    use super::Asset;
    include!(concat!(env!("OUT_DIR"), "/graphiql_assets.rs"));
}

/// Rapport's own start-up script and styles (small: served as they are).
const START: &str = include_str!("graphiql/rapport-graphiql.js");
const STYLE: &str = include_str!("graphiql/rapport-graphiql.css");

/// The page's policy: its own scripts and styles, requests to this server, and nothing
/// else (no inline script, no other origin, no frames, no forms).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The GraphiQL page for a browser. `key` is the demo's key, put in the headers editor
/// only for a page opened as a window of this machine ([`opened_here`]).
pub(super) fn page(key: Option<&str>, request: &HeaderMap) -> Response {
    let key = key.filter(|_| opened_here(request));
    if let Some(missing) = embedded::MISSING {
        let text = format!(
            "GraphiQL is not in this build of Rapport: its assets could not be fetched when it was built ({missing}). Build again where `npm` reaches the npm registry, or point RAPPORT_GRAPHIQL_TARBALLS at a directory holding the pinned tarballs (build.rs names them). The API itself works: POST queries to /graphql."
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            text,
        )
            .into_response();
    }
    let headers = json!({ "Authorization": format!("Bearer {}", key.unwrap_or("<your API key>")) });
    let config = json!({
        "endpoint": "/graphql",
        "key": key,
        "headers": serde_json::to_string_pretty(&headers).unwrap_or_default(),
    });
    // A JSON data block, never run as script; `<` escaped so no text in it can end it.
    let config = config.to_string().replace('<', "\\u003c");
    let html = format!(
        r#"<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <meta name="robots" content="noindex">
    <link rel="icon" href="data:,">
    <title>Rapport GraphiQL</title>
    <link rel="stylesheet" href="/graphiql/graphiql-4.1.2.min.css">
    <link rel="stylesheet" href="/graphiql/rapport-graphiql.css">
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL…</div>
    <script id="rapport-graphiql-config" type="application/json">{config}</script>
    <script src="/graphiql/react-18.3.1.production.min.js"></script>
    <script src="/graphiql/react-dom-18.3.1.production.min.js"></script>
    <script src="/graphiql/graphiql-4.1.2.min.js"></script>
    <script src="/graphiql/rapport-graphiql.js"></script>
  </body>
</html>
"#
    );
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page may hold the demo's key: never kept by a cache.
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response();
    secure(response.headers_mut());
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(POLICY),
    );
    response
}

/// Whether a request is a browser window opening the page on this machine: the address
/// typed is a loopback one (not a name rebound to 127.0.0.1 by another site's DNS), and it
/// is a navigation the user made, not another page's script fetching it (`Sec-Fetch-*`,
/// which scripts cannot set; clients without them, such as curl, are not browsers).
fn opened_here(request: &HeaderMap) -> bool {
    let text = |name: &str| request.get(name).and_then(|value| value.to_str().ok());
    let host = text("host").unwrap_or_default();
    let hostname = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or_default(),
        None => host.split(':').next().unwrap_or_default(),
    };
    let loopback = hostname.eq_ignore_ascii_case("localhost")
        || hostname
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let navigation = text("sec-fetch-mode").is_none_or(|mode| mode == "navigate");
    let own = text("sec-fetch-site").is_none_or(|site| site == "none" || site == "same-origin");
    loopback && navigation && own
}

/// Pages are for windows of their own origin: no CORS header lets another origin's script
/// read one (the demo's GraphiQL page holds its key). Runs outside the CORS layer.
pub(super) async fn unshared(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if page {
        let headers = response.headers_mut();
        headers.remove(header::ACCESS_CONTROL_ALLOW_ORIGIN);
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        headers.remove(header::ACCESS_CONTROL_EXPOSE_HEADERS);
    }
    response
}

/// `GET /graphiql/{file}`: an embedded asset. The vendored files carry their version in
/// their name and are cached for a year; Rapport's own two are revalidated.
pub(super) async fn asset(Path(file): Path<String>, request: HeaderMap) -> Response {
    let own = match file.as_str() {
        "rapport-graphiql.js" => Some(START),
        "rapport-graphiql.css" => Some(STYLE),
        _ => None,
    };
    let content_type = content_type(&file);
    if let Some(text) = own {
        let mut response = (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            text,
        )
            .into_response();
        secure(response.headers_mut());
        return response;
    }
    let Some(asset) = embedded::ASSETS.iter().find(|asset| asset.name == file) else {
        return super::no_such_route();
    };
    let gzip_ok = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(accepts_gzip);
    let mut response = if gzip_ok {
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CONTENT_ENCODING, "gzip"),
            ],
            asset.gzip,
        )
            .into_response()
    } else {
        match inflate(asset.gzip) {
            Ok(bytes) => ([(header::CONTENT_TYPE, content_type)], bytes).into_response(),
            Err(err) => {
                tracing::error!(file, %err, "an embedded GraphiQL asset did not inflate");
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    secure(headers);
    response
}

/// Whether one `Accept-Encoding` entry accepts gzip (`gzip`, `x-gzip` or `*`, not `q=0`).
fn accepts_gzip(entry: &str) -> bool {
    let mut parts = entry.split(';').map(str::trim);
    let coding = parts.next().unwrap_or_default().to_ascii_lowercase();
    let refused = parts.any(|param| {
        param
            .strip_prefix("q=")
            .and_then(|q| q.trim().parse::<f32>().ok())
            .is_some_and(|q| q <= 0.0)
    });
    matches!(coding.as_str(), "gzip" | "x-gzip" | "*") && !refused
}

fn inflate(gzip: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(gzip).read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn content_type(file: &str) -> &'static str {
    if file.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    }
}

/// No type sniffing, no framing, no referrer sent elsewhere.
fn secure(headers: &mut HeaderMap) {
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_encoding_entries() {
        assert!(accepts_gzip("gzip"));
        assert!(accepts_gzip(" GZIP ;q=0.5"));
        assert!(accepts_gzip("*"));
        assert!(!accepts_gzip("gzip;q=0"));
        assert!(!accepts_gzip("br"));
        assert!(!accepts_gzip("identity"));
    }

    #[test]
    fn the_key_goes_only_to_a_window_opened_on_this_machine() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        let window = [("sec-fetch-mode", "navigate"), ("sec-fetch-site", "none")];
        for host in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "127.0.0.1",
            "LOCALHOST",
        ] {
            let mut pairs = vec![("host", host)];
            pairs.extend(window);
            assert!(opened_here(&headers(&pairs)), "{host}");
        }
        assert!(
            opened_here(&headers(&[("host", "127.0.0.1:8080")])),
            "curl on this machine"
        );
        for host in [
            "evil.example:8080",
            "192.168.1.4:8080",
            "127.0.0.1.evil.example",
            "",
        ] {
            let mut pairs = vec![("host", host)];
            pairs.extend(window);
            assert!(!opened_here(&headers(&pairs)), "{host}");
        }
        let fetched = [
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-mode", "cors"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert!(!opened_here(&headers(&fetched)));
        let framed = [
            ("host", "127.0.0.1:8080"),
            ("sec-fetch-mode", "navigate"),
            ("sec-fetch-site", "cross-site"),
        ];
        assert!(!opened_here(&headers(&framed)));
    }

    #[test]
    fn every_page_asset_is_embedded() {
        if embedded::MISSING.is_some() {
            eprintln!("skipped: this build has no GraphiQL assets");
            return;
        }
        let html = page(None, &HeaderMap::new());
        assert_eq!(html.status(), StatusCode::OK);
        for asset in embedded::ASSETS {
            let bytes = inflate(asset.gzip).expect("an embedded asset inflates");
            assert!(bytes.len() > 1_000, "{} is too small", asset.name);
        }
        assert_eq!(embedded::ASSETS.len(), 4);
    }
}
