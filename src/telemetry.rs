//! Logging setup and the request id that ties a request's log lines together.

use tracing_subscriber::{fmt, EnvFilter};

use crate::config::LogFormat;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `future` with `id` as the current request id.
pub async fn with_request_id<F: std::future::Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The id of the request being served, or `-` outside one.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), `format` chooses
/// human text or one JSON object a line. Logs go to stderr so stdout stays for results.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}
