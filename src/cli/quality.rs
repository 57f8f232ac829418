//! `rapport quality`: the data-quality report of a workspace (`domain::quality`), as a
//! table on stdout or, with `--json`, as the JSON `dataQuality` stores in its snapshots;
//! it records the report as today's (UTC) snapshot unless `--no-record`.

use clap::Args;

use rapport::domain::quality::{self, QualityReport};
use rapport::domain::{self, Caller};
use rapport::App;

#[derive(Args)]
pub struct QualityArgs {
    /// The workspace: its slug or id (wsp_…); it must exist.
    #[arg(long, default_value = "default")]
    workspace: String,
    /// Print the report as JSON (one object) instead of a table.
    #[arg(long)]
    json: bool,
    /// Do not record the report as the workspace's snapshot of today.
    #[arg(long)]
    no_record: bool,
}

pub async fn run(app: App, args: QualityArgs) -> anyhow::Result<()> {
    let workspace = domain::workspace::find(&app.db, &args.workspace).await?;
    let caller = Caller::owner_without_key(workspace.id, "cli");
    let now = domain::now();
    let report = quality::report(&app.db, &caller, now).await?;
    if !args.no_record {
        quality::record(&app.db, &caller, now.date_naive(), &report).await?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&workspace.slug, &report));
    }
    Ok(())
}

/// The report as a plain-text table.
fn table(slug: &str, report: &QualityReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "data quality of {slug} at {}",
        report.computed_at.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(out, "{:<24}{:>10}", "customers", report.customers);
    let _ = writeln!(out, "{:<24}{:>10.3}", "score", report.score);
    let _ = writeln!(
        out,
        "{:<24}{:>10}",
        "pending duplicates", report.pending_duplicates
    );
    let _ = writeln!(
        out,
        "{:<24}{:>10}",
        "without contact point", report.without_contact_point
    );
    let _ = writeln!(
        out,
        "{:<24}{:>10}",
        format!("stale ({} days)", report.stale_after_days),
        report.stale
    );
    let _ = writeln!(
        out,
        "{:<24}{:>10}",
        "with invalid values", report.with_invalid_values
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<24}{:>10}{:>10}", "field", "filled", "ratio");
    for field in &report.completeness {
        let _ = writeln!(
            out,
            "{:<24}{:>10}{:>9.1}%",
            field.field.as_str(),
            field.filled,
            field.ratio * 100.0
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "{:<24}{:>10}{:>10}", "field", "invalid", "dropped");
    for field in &report.invalid_values {
        let dropped = report
            .dropped_values
            .iter()
            .find(|d| d.field == field.field)
            .map_or(0, |d| d.count);
        let _ = writeln!(
            out,
            "{:<24}{:>10}{:>10}",
            field.field.as_str(),
            field.count,
            dropped
        );
    }
    // Drops of a field the validity check does not list (organization).
    for dropped in &report.dropped_values {
        if !report
            .invalid_values
            .iter()
            .any(|f| f.field == dropped.field)
        {
            let _ = writeln!(
                out,
                "{:<24}{:>10}{:>10}",
                dropped.field.as_str(),
                "-",
                dropped.count
            );
        }
    }
    out
}
