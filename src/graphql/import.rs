//! `importCustomers`: the bulk import of `rapport import customers` for data sent inline
//! (CSV with a header row, or JSON Lines), at most 5,000 rows and, like every request,
//! within the HTTP body limit (1 MiB by default). `domain::import` holds the rules.

use async_graphql::{Context, Enum, InputObject, Result, SimpleObject};

use super::{app, caller};
use crate::domain::import::{self, Format};

/// How `importCustomers` data is written.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum ImportFormat {
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// One JSON object a line.
    JsonLines,
}

/// Customers to import. Columns (CSV header or JSON keys): `external_id` (required: rows
/// upsert on it), `given_name`, `family_name`, `display_name`, `email`, `phone`, `street`,
/// `street2`, `locality`, `region`, `postal_code`, `country`, `birth_date` (YYYY-MM-DD),
/// `organization` (a name; created when missing), `tags` (separated by `;`, `,` or `|`,
/// or a JSON array) and `lifecycle_stage`; any other column becomes a custom attribute.
/// Empty values leave what is stored.
#[derive(InputObject)]
pub struct ImportCustomersInput {
    /// How `data` is written.
    pub format: ImportFormat,
    /// The rows, at most 5,000 (more is `BAD_USER_INPUT` naming `data` and nothing is
    /// imported: a larger file goes through `rapport import customers`).
    pub data: String,
}

/// A rejected row or a dropped value.
#[derive(SimpleObject)]
pub struct ImportIssue {
    /// The line of the data where the row starts (1 is a CSV's header).
    pub line: u64,
    /// The column at fault, when one value is.
    pub field: Option<String>,
    /// What is wrong, in words.
    pub message: String,
    /// The whole row was left out (else only the value was dropped).
    pub rejected: bool,
}

/// What an import did.
#[derive(SimpleObject)]
pub struct ImportCustomersPayload {
    /// Rows that made a new customer.
    pub created: u64,
    /// Rows that changed a customer (a value, or a new contact point or tag).
    pub updated: u64,
    /// Rows whose customer already was as they say.
    pub unchanged: u64,
    /// Rows left out (see `issues`).
    pub rejected: u64,
    /// Every rejected row and dropped value, in line order.
    pub issues: Vec<ImportIssue>,
}

pub(super) async fn import_customers(
    ctx: &Context<'_>,
    input: ImportCustomersInput,
) -> Result<ImportCustomersPayload> {
    let format = match input.format {
        ImportFormat::Csv => Format::Csv,
        ImportFormat::JsonLines => Format::JsonLines,
    };
    let summary = import::run_inline(&app(ctx).db, caller(ctx)?, format, &input.data).await?;
    Ok(ImportCustomersPayload {
        created: summary.created,
        updated: summary.updated,
        unchanged: summary.unchanged,
        rejected: summary.rejected,
        issues: summary
            .issues
            .into_iter()
            .map(|issue| ImportIssue {
                line: issue.line,
                field: issue.field,
                message: issue.message,
                rejected: issue.rejected,
            })
            .collect(),
    })
}
