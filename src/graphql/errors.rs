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
/// come from the GraphQL engine without a code: all of them are the caller's input. A
/// syntax error's drawing of the document becomes one line ([`one_line_syntax_error`]).
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
        if let Some(message) = one_line_syntax_error(&error.message, &error.locations) {
            error.message = message;
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

/// The parser's syntax error (a drawing of the offending line with a caret, over several
/// lines) as one line a client can show: `syntax error at line 2, column 17: expected
/// selection set, directive or arguments, found `)``. `None` for any other message.
fn one_line_syntax_error(message: &str, locations: &[async_graphql::Pos]) -> Option<String> {
    let mut lines = message.lines();
    lines.next()?.trim_start().strip_prefix("--> ")?;
    let position = locations.first()?;
    let reason = message
        .lines()
        .rev()
        .find_map(|line| line.trim_start().strip_prefix("= "))?;
    // Grammar rule names (`selection_set`, `type_`) read as words.
    let reason = reason
        .split(", ")
        .map(|part| part.trim_end_matches('_').replace('_', " "))
        .collect::<Vec<_>>()
        .join(", ")
        .replace(", or ", " or ");
    let prefix = format!("{} | ", position.line);
    let found = message
        .lines()
        .find_map(|line| line.trim_start().strip_prefix(&prefix))
        .and_then(|source| source.chars().nth(position.column.checked_sub(1)?))
        .filter(|found| !found.is_whitespace() && !found.is_control());
    let mut one_line = format!(
        "syntax error at line {}, column {}: {reason}",
        position.line, position.column
    );
    if let Some(found) = found {
        one_line.push_str(&format!(", found `{found}`"));
    }
    Some(one_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response_with(errors: Vec<async_graphql::ServerError>) -> async_graphql::Response {
        async_graphql::Response::from_errors(errors)
    }

    fn extension<'a>(
        error: &'a async_graphql::ServerError,
        name: &str,
    ) -> Option<&'a async_graphql::Value> {
        error
            .extensions
            .as_ref()
            .and_then(|extensions| extensions.get(name))
    }

    fn through_question_mark(
        error: impl std::fmt::Display + Send + Sync + 'static,
    ) -> async_graphql::ServerError {
        async_graphql::Error::from(error).into_server_error(async_graphql::Pos::default())
    }

    #[test]
    fn a_domain_error_returned_through_question_mark_gets_its_code_field_and_public_message() {
        let metrics = Metrics::default();
        let response = present(
            response_with(vec![through_question_mark(Error::field(
                "input.name",
                "name: is required",
            ))]),
            &metrics,
        );
        let error = &response.errors[0];
        assert_eq!(error.message, "name: is required");
        assert_eq!(
            extension(error, "code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(
            extension(error, "field"),
            Some(&async_graphql::Value::from("input.name"))
        );
        assert!(metrics
            .render()
            .contains("rapport_graphql_errors_total{code=\"BAD_USER_INPUT\"} 1"));
    }

    #[test]
    fn an_internal_error_is_opaque_also_when_a_loader_shared_it() {
        let metrics = Metrics::default();
        let shared = Arc::new(Error::Internal("SELECT secret FROM api_key".into()));
        let response = present(
            response_with(vec![
                through_question_mark(Error::Internal("SELECT secret FROM api_key".into())),
                through_question_mark(shared),
            ]),
            &metrics,
        );
        for error in &response.errors {
            assert!(!error.message.contains("SELECT"), "{}", error.message);
            assert!(
                error.message.starts_with("internal error;"),
                "{}",
                error.message
            );
            assert_eq!(
                extension(error, "code"),
                Some(&async_graphql::Value::from("INTERNAL"))
            );
        }
        assert!(metrics
            .render()
            .contains("rapport_graphql_errors_total{code=\"INTERNAL\"} 2"));
    }

    #[test]
    fn an_engine_error_without_a_code_is_the_callers_input_and_keeps_a_given_code() {
        let metrics = Metrics::default();
        let coded = request_error("too deep".into(), Code::BadUserInput, |extensions| {
            extensions.set("limit", 3);
        });
        let response = present(
            response_with(vec![
                async_graphql::ServerError::new("Unknown field \"nope\"", None),
                coded,
            ]),
            &metrics,
        );
        assert_eq!(
            extension(&response.errors[0], "code"),
            Some(&async_graphql::Value::from("BAD_USER_INPUT"))
        );
        assert_eq!(
            extension(&response.errors[1], "limit"),
            Some(&async_graphql::Value::from(3))
        );
        assert!(metrics
            .render()
            .contains("rapport_graphql_errors_total{code=\"BAD_USER_INPUT\"} 2"));
    }

    fn syntax_error(query: &str) -> async_graphql::ServerError {
        async_graphql::parser::parse_query(query)
            .expect_err("a syntax error")
            .into()
    }

    #[test]
    fn a_syntax_error_is_one_line_naming_the_position_and_keeps_its_location() {
        let metrics = Metrics::default();
        let response = present(
            response_with(vec![
                syntax_error("query {\n  viewer { role ) }\n}"),
                syntax_error("{ viewer { "),
                syntax_error("query Q($x: ) { a }"),
            ]),
            &metrics,
        );
        let messages: Vec<&str> = response.errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "syntax error at line 2, column 17: expected selection set, selection, directive or arguments, found `)`",
                "syntax error at line 1, column 12: expected selection",
                "syntax error at line 1, column 13: expected type, found `)`",
            ]
        );
        assert_eq!(
            response.errors[0].locations,
            [async_graphql::Pos {
                line: 2,
                column: 17
            }]
        );
        for error in &response.errors {
            assert_eq!(
                extension(error, "code"),
                Some(&async_graphql::Value::from("BAD_USER_INPUT"))
            );
        }
    }

    #[test]
    fn other_messages_are_left_as_they_are() {
        let pos = [async_graphql::Pos { line: 1, column: 1 }];
        assert_eq!(one_line_syntax_error("Unknown field \"nope\"", &pos), None);
        assert_eq!(
            one_line_syntax_error(" --> 1:1\n  = expected name", &[]),
            None
        );
    }
}
