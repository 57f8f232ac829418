//! `rapport dedupe`: duplicate detection over a whole workspace (`domain::dedupe::run`):
//! rebuilds every live customer's blocking keys, compares the customers sharing one and
//! stores the suggestions, with a progress bar on a terminal; the counts are the result,
//! alone on stdout. `--evaluate N` measures the detector instead, on a generated registry
//! of N people with known true pairs (`bench::dedupe`), and touches no database.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use clap::Args;

use rapport::bench::dedupe as quality;
use rapport::domain::{dedupe, duplicate};
use rapport::App;

#[derive(Args)]
pub struct DedupeArgs {
    /// The workspace slug.
    #[arg(long, default_value = "default")]
    workspace: String,
    /// Measure precision and recall on a generated registry of this many people (about
    /// 1.4 records each) instead, printing a Markdown table; no database is touched.
    #[arg(long, value_name = "PEOPLE")]
    evaluate: Option<usize>,
    /// The generator's seed (with --evaluate).
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Whether the command needs the database (`--evaluate` does not).
pub fn needs_database(args: &DedupeArgs) -> bool {
    args.evaluate.is_none()
}

pub fn evaluate(args: &DedupeArgs) -> anyhow::Result<()> {
    let people = args.evaluate.unwrap_or_default();
    if people == 0 {
        anyhow::bail!("--evaluate: give a number of people above 0");
    }
    let started = Instant::now();
    let registry = quality::generate(people, args.seed);
    let generated = started.elapsed();
    let started = Instant::now();
    let rows = quality::evaluate_at(&registry, &[0.45, 0.5, 0.6, 0.7, 0.8, 0.9]);
    let took = started.elapsed();
    let first = &rows[0];
    println!(
        "{} records of {people} people, {} true pairs (seed {}); blocking: {} keys, {} blocks, \
         {} over {} customers skipped, {} pairs compared ({:.1} per record, all pairs would be {}); \
         generated in {:.1} s, detected in {:.1} s\n",
        first.records,
        first.true_pairs,
        args.seed,
        first.stats.keys,
        first.stats.blocks,
        first.stats.skipped_blocks,
        dedupe::MAX_BLOCK,
        first.stats.compared,
        first.stats.compared as f64 / first.records.max(1) as f64,
        (first.records as u128) * (first.records as u128).saturating_sub(1) / 2,
        generated.as_secs_f64(),
        took.as_secs_f64(),
    );
    println!("| threshold | suggested | true | false | missed | precision | recall |");
    println!("|---|---|---|---|---|---|---|");
    for row in &rows {
        println!(
            "| {:.2}{} | {} | {} | {} | {} | {:.4} | {:.4} |",
            row.threshold,
            if (row.threshold - duplicate::DEFAULT_MIN_SCORE).abs() < 1e-9 {
                " (default)"
            } else {
                ""
            },
            row.true_positives + row.false_positives,
            row.true_positives,
            row.false_positives,
            row.false_negatives,
            row.precision,
            row.recall
        );
    }
    Ok(())
}

pub async fn run(app: App, args: DedupeArgs) -> anyhow::Result<()> {
    let caller = super::owner_of(&app, &args.workspace).await?;
    let terminal = std::io::stderr().is_terminal();
    let mut progress = |phase: &str, done: u64, total: u64| {
        if !terminal {
            return;
        }
        let percent = (done * 100).checked_div(total).unwrap_or(100).min(100);
        let filled = (percent / 5) as usize;
        let what = match phase {
            "keys" => "reading customers",
            "compare" => "comparing",
            _ => "storing",
        };
        eprint!(
            "\r{what:<17} [{}{}] {percent:>3}% {done}/{total}   ",
            "#".repeat(filled),
            " ".repeat(20 - filled)
        );
        let _ = std::io::stderr().flush();
    };
    let started = Instant::now();
    let report = dedupe::run(&app.db, caller.workspace_id, &mut progress).await?;
    if terminal {
        eprintln!();
    }
    eprintln!(
        "{} customers, {} keys, {} blocks ({} over {} skipped), {} pairs compared in {:.1} s",
        report.stats.customers,
        report.stats.keys,
        report.stats.blocks,
        report.stats.skipped_blocks,
        dedupe::MAX_BLOCK,
        report.stats.compared,
        started.elapsed().as_secs_f64()
    );
    println!(
        "found {}, new {}, updated {}, merged {}",
        report.found, report.new, report.updated, report.merged
    );
    Ok(())
}
