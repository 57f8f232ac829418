//! How a domain [`Error`] looks in GraphQL: its public message and `extensions.code` (plus
//! `field` for input errors and `retryAfter` for rate limits), all read from the table in
//! [`crate::error`]. Resolvers return [`Error`] through `?` (async-graphql keeps it as the
//! error's source); [`present`] maps every error of a response once, inside
//! [`super::execute`], so every transport sees the same errors.

use std::sync::Arc;

use async_graphql::{ErrorExtensionValues, ErrorExtensions};

use crate::error::{Code, Error};
use crate::metrics::Metrics;

/// The GraphQL error a caller sees for `error`, with `extensions.code` (and `field` for
/// input errors). Internal errors are logged here, inside the request's span.
pub fn to_graphql(error: &Error) -> async_graphql::Error {
    if error.code() == Code::Internal {
        tracing::error!(error = %error, "internal error");
    }
    async_graphql::Error::new(error.public_message()).extend_with(|_, extensions| {
        extensions.set("code", error.code().as_str());
        if let Error::BadInput {
            field: Some(field), ..
        } = error
        {
            extensions.set("field", field.as_str());
        }
        if let Error::RateLimited { retry_after_secs } = error {
            extensions.set("retryAfter", *retry_after_secs);
        }
    })
}

/// A request-level error with `code` and further `extensions` (a cost refusal's measure,
/// the number of omitted errors), for errors that are not a domain [`Error`].
pub(super) fn request_error(
    message: String,
    code: Code,
    extra: impl FnOnce(&mut ErrorExtensionValues),
) -> async_graphql::ServerError {
    let mut error = async_graphql::ServerError::new(message, None);
    let mut extensions = ErrorExtensionValues::default();
    extensions.set("code", code.as_str());
    extra(&mut extensions);
    error.extensions = Some(extensions);
    error
}

/// Maps every error of `response` to what a caller sees, and counts it in `metrics`.
///
/// A domain error that reached GraphQL through `?` (directly, or shared by a DataLoader as
/// an `Arc`): its code, field and public message replace the raw text (which, for
/// internal errors, may hold SQL). Parse, validation, limit and variable-coercion errors
/// come from the GraphQL engine without a code: all of them are the caller's input.
pub(super) fn present(
    mut response: async_graphql::Response,
    metrics: &Metrics,
) -> async_graphql::Response {
    for error in &mut response.errors {
        let domain = error
            .source::<Error>()
            .or_else(|| error.source::<Arc<Error>>().map(|shared| &**shared));
        if let Some(domain) = domain {
            let graphql = to_graphql(domain);
            error.message = graphql.message;
            if graphql.extensions.is_some() {
                error.extensions = graphql.extensions;
            }
        }
        let extensions = error.extensions.get_or_insert_with(Default::default);
        let code = match extensions.get("code") {
            Some(async_graphql::Value::String(code)) => Code::parse(code),
            Some(_) => Code::Internal,
            None => {
                extensions.set("code", Code::BadUserInput.as_str());
                Code::BadUserInput
            }
        };
        metrics.record_error(code.as_str());
    }
    response
}
