//! The error policy. Every error a caller can see has a stable [`Code`] from one table
//! ([`Code::spec`]) that also gives its HTTP status and whether its message may be shown;
//! its message names the field or item and says what to do. Internal errors (database,
//! I/O) are logged with the request id and answered with an opaque message: no SQL, no
//! secrets. Unique-constraint violations become `CONFLICT`.
//!
//! The API layer renders this once: `graphql::execute` turns every error of a response
//! into `extensions.code` (see `graphql::errors`), and the HTTP transport takes its status
//! from [`Code::http_status`]. Nothing below the API knows about GraphQL or HTTP.

use sea_orm::{DbErr, SqlErr};

/// The stable error codes of the API (`extensions.code` in GraphQL).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Code {
    BadUserInput,
    Unauthenticated,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    /// A platform a connector talks to failed or refused (a reply could not be sent).
    Upstream,
    /// The request ran past its time budget and was cancelled.
    Timeout,
    Internal,
}

/// What a caller may read of an error's message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Disclosure {
    /// The message is written for the caller: it names the field or item.
    Public,
    /// The message may hold internals (SQL, paths): the caller gets a pointer to the log.
    Opaque,
}

impl Code {
    /// The table: each code's name, the HTTP status of an error that stops a whole
    /// request, and its message policy. Every other mapping reads this one.
    pub const fn spec(self) -> (&'static str, u16, Disclosure) {
        use Disclosure::{Opaque, Public};
        match self {
            Code::BadUserInput => ("BAD_USER_INPUT", 400, Public),
            Code::Unauthenticated => ("UNAUTHENTICATED", 401, Public),
            Code::Forbidden => ("FORBIDDEN", 403, Public),
            Code::NotFound => ("NOT_FOUND", 404, Public),
            Code::Conflict => ("CONFLICT", 409, Public),
            Code::RateLimited => ("RATE_LIMITED", 429, Public),
            Code::Upstream => ("UPSTREAM_ERROR", 502, Public),
            Code::Timeout => ("TIMEOUT", 503, Public),
            Code::Internal => ("INTERNAL", 500, Opaque),
        }
    }

    pub fn as_str(self) -> &'static str {
        self.spec().0
    }

    /// Every code, for metrics labels and for reading a code back.
    pub const ALL: [Code; 9] = [
        Code::BadUserInput,
        Code::Unauthenticated,
        Code::Forbidden,
        Code::NotFound,
        Code::Conflict,
        Code::RateLimited,
        Code::Upstream,
        Code::Timeout,
        Code::Internal,
    ];

    /// The code named `name`; an unknown name is [`Code::Internal`].
    pub fn parse(name: &str) -> Code {
        Code::ALL
            .into_iter()
            .find(|code| code.as_str() == name)
            .unwrap_or(Code::Internal)
    }

    /// The HTTP status for an error that stops a whole request.
    pub fn http_status(self) -> u16 {
        self.spec().1
    }

    /// Whether a caller may read the message of an error with this code.
    pub fn disclosure(self) -> Disclosure {
        self.spec().2
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something invalid; `field` names it when there is one.
    #[error("{message}")]
    BadInput {
        field: Option<String>,
        message: String,
    },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("no {what} with id {id} in this workspace")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests; retry after the number of seconds in the Retry-After header")]
    RateLimited { retry_after_secs: u64 },
    /// A platform failed or refused; the message says which and why (never a secret).
    #[error("{0}")]
    Upstream(String),
    #[error("the request ran longer than its budget of {secs} s and was cancelled: ask for less (smaller pages, fewer fields) or split it")]
    Timeout { secs: u64 },
    #[error("database error: {0}")]
    Database(#[from] DbErr),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A `BAD_USER_INPUT` error about `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::BadInput {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn bad_input(message: impl Into<String>) -> Error {
        Error::BadInput {
            field: None,
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl Into<String>) -> Error {
        Error::NotFound {
            what,
            id: id.into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Error::BadInput { .. } => Code::BadUserInput,
            Error::Unauthenticated(_) => Code::Unauthenticated,
            Error::Forbidden(_) => Code::Forbidden,
            Error::NotFound { .. } => Code::NotFound,
            Error::Conflict(_) => Code::Conflict,
            Error::RateLimited { .. } => Code::RateLimited,
            Error::Upstream(_) => Code::Upstream,
            Error::Timeout { .. } => Code::Timeout,
            Error::Database(_) | Error::Internal(_) => Code::Internal,
        }
    }

    /// Turns a unique-constraint violation into `CONFLICT` with `message`; any other
    /// database error stays internal.
    pub fn on_unique(err: DbErr, message: impl FnOnce() -> String) -> Error {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => Error::Conflict(message()),
            _ => Error::Database(err),
        }
    }

    /// The same error about `prefix.field` (for an item of a list in an input).
    pub fn within(self, prefix: &str) -> Error {
        match self {
            Error::BadInput {
                field: Some(field),
                message,
            } => Error::BadInput {
                field: Some(format!("{prefix}.{field}")),
                message,
            },
            other => other,
        }
    }

    /// The message a caller may see: internal details are replaced by a pointer to the log.
    pub fn public_message(&self) -> String {
        match self.code().disclosure() {
            Disclosure::Opaque => {
                let request_id = crate::telemetry::current_request_id();
                format!(
                    "internal error; the server log has the details under request id {request_id}"
                )
            }
            Disclosure::Public => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_stops_a_request_with_an_error_status() {
        for code in Code::ALL {
            assert_eq!(Code::parse(code.as_str()), code);
            assert!((400..600).contains(&code.http_status()), "{code:?}");
            // Only internal errors hide their message: every other one is written for
            // the caller, and every other one is the caller's (4xx) or a platform's (5xx).
            assert_eq!(
                code.disclosure() == Disclosure::Opaque,
                code == Code::Internal,
                "{code:?}"
            );
        }
        assert_eq!(Code::parse("NO_SUCH_CODE"), Code::Internal);
    }

    #[test]
    fn an_internal_error_answers_with_a_pointer_to_the_log_not_its_text() {
        let error = Error::Internal("SELECT * FROM api_key".into());
        assert!(!error.public_message().contains("SELECT"));
        let error = Error::field("email", "email: is not an address");
        assert_eq!(error.public_message(), "email: is not an address");
    }
}
