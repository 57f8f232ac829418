//! The operator's routes: liveness (`/healthz`), readiness (`/readyz`: the database
//! answers), Prometheus metrics (`/metrics`), and the Atom feed `serve --demo` syncs from.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::HttpState;

/// Liveness: the process answers.
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers; 503 with the reason otherwise.
pub(super) async fn readyz(State(state): State<HttpState>) -> Response {
    match crate::db::ready(&state.app().db).await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

/// The process's metrics in the Prometheus text format, with the search indexer's state.
pub(super) async fn metrics(State(state): State<HttpState>) -> Response {
    let mut body = state.app().metrics.render();
    // The search lag is read from the database, so it is right in every process.
    let app = state.app();
    let lag = crate::search::indexer::lag(&app.db, &app.search_consumer)
        .await
        .unwrap_or(-1);
    let indexed = state
        .app()
        .search_status
        .indexed
        .load(std::sync::atomic::Ordering::Relaxed);
    let failing = state
        .app()
        .search_status
        .last_error
        .lock()
        .map(|error| u8::from(error.is_some()))
        .unwrap_or(0);
    let active = u8::from(
        app.search_status
            .active
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    body.push_str(&format!(
        "# HELP rapport_search_lag_events Events written but not yet indexed (-1: unknown).\n\
         # TYPE rapport_search_lag_events gauge\nrapport_search_lag_events {lag}\n\
         # HELP rapport_search_indexed_events_total Events this process has indexed.\n\
         # TYPE rapport_search_indexed_events_total counter\nrapport_search_indexed_events_total {indexed}\n\
         # HELP rapport_search_indexer_failing 1 while the indexer's last attempt failed.\n\
         # TYPE rapport_search_indexer_failing gauge\nrapport_search_indexer_failing {failing}\n\
         # HELP rapport_search_indexer_active 1 while this process holds the index's lease and indexes it (0: another process does, or none runs here).\n\
         # TYPE rapport_search_indexer_active gauge\nrapport_search_indexer_active {active}\n"
    ));
    // The key cache (`domain::callers`): whether it is proven and in use, and how often
    // keys were read all the same.
    let callers = &app.callers;
    body.push_str(&format!(
        "# HELP rapport_key_cache_listening 1 while this process's key cache is proven fresh and read (PostgreSQL, keys asked for in the last minute).\n\
         # TYPE rapport_key_cache_listening gauge\nrapport_key_cache_listening {}\n\
         # HELP rapport_key_lookups_total API keys this process read from the database.\n\
         # TYPE rapport_key_lookups_total counter\nrapport_key_lookups_total {}\n\
         # HELP rapport_key_cache_losses_total Listening connections of the key cache lost (each emptied it).\n\
         # TYPE rapport_key_cache_losses_total counter\nrapport_key_cache_losses_total {}\n",
        u8::from(callers.listening()),
        callers.lookups(),
        callers.losses(),
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response()
}

/// The Atom feed bundled for `serve --demo`'s feed source, with an `ETag` so the demo
/// shows conditional GETs (`304 Not Modified`) too.
pub(super) async fn demo_feed(headers: axum::http::HeaderMap) -> Response {
    const FEED: &str = include_str!("../demo/feed.xml");
    const ETAG: &str = "\"rapport-demo-feed-1\"";
    if headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == ETAG))
    {
        return (StatusCode::NOT_MODIFIED, [(axum::http::header::ETAG, ETAG)]).into_response();
    }
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "application/atom+xml; charset=utf-8",
            ),
            (axum::http::header::ETAG, ETAG),
        ],
        FEED,
    )
        .into_response()
}
