//! `rapport import customers FILE`: a bulk import of customers from CSV or JSON Lines
//! (`domain::import`). The summary is the result, alone on stdout
//! (`created N, updated N, unchanged N, rejected N`); every rejected row and dropped value
//! is reported on stderr with its line and field, with a progress bar on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Subcommand;

use rapport::domain::import::{self, Format, Progress};
use rapport::App;

use super::owner_of;

#[derive(Subcommand)]
pub enum ImportCommand {
    /// Import customers from a CSV file (header row) or a JSON Lines file. Rows upsert on
    /// `external_id`: importing the same file again changes nothing, and re-running an
    /// interrupted import completes it. Exits non-zero when a row was rejected.
    Customers {
        /// The file; `-` reads standard input.
        file: PathBuf,
        /// csv or jsonl; guessed from the file name or its first character when left out.
        #[arg(long)]
        format: Option<String>,
        /// Rows per transaction.
        #[arg(long, default_value_t = import::DEFAULT_BATCH_ROWS)]
        batch_size: usize,
        /// The workspace slug; created when missing.
        #[arg(long, default_value = "default")]
        workspace: String,
    },
}

pub async fn run(app: App, command: ImportCommand) -> anyhow::Result<()> {
    let ImportCommand::Customers {
        file,
        format,
        batch_size,
        workspace,
    } = command;
    let caller = owner_of(&app, &workspace).await?;
    let (input, total, name): (Box<dyn std::io::Read + Send>, Option<u64>, String) =
        if file.as_os_str() == "-" {
            (Box::new(std::io::stdin()), None, String::new())
        } else {
            let opened = std::fs::File::open(&file)
                .map_err(|err| anyhow::anyhow!("{}: {err}", file.display()))?;
            let size = opened.metadata().ok().map(|m| m.len());
            (Box::new(opened), size, file.display().to_string())
        };
    let mut input = std::io::BufReader::with_capacity(1 << 16, input);
    let format = match format.as_deref() {
        Some("csv") => Format::Csv,
        Some("jsonl" | "ndjson" | "json-lines") => Format::JsonLines,
        Some(other) => anyhow::bail!("--format: `{other}` is not csv or jsonl"),
        None => {
            let start = std::io::BufRead::fill_buf(&mut input)?;
            Format::guess(&name, start)
        }
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = |at: Progress| {
        if !terminal {
            return;
        }
        use std::io::Write;
        match total.filter(|total| *total > 0) {
            Some(total) => {
                let percent = (at.bytes * 100 / total).min(100);
                let filled = (percent / 5) as usize;
                eprint!(
                    "\rimporting [{}{}] {percent:>3}% {} rows",
                    "#".repeat(filled),
                    " ".repeat(20 - filled),
                    at.rows
                );
            }
            None => eprint!("\rimporting {} rows", at.rows),
        }
        let _ = std::io::stderr().flush();
    };
    let started = std::time::Instant::now();
    let summary = import::run(&app.db, &caller, format, input, batch_size, &progress).await?;
    if terminal {
        eprintln!();
    }
    for issue in &summary.issues {
        eprintln!("{issue}");
    }
    eprintln!("imported in {:.1} s", started.elapsed().as_secs_f64());
    println!(
        "created {}, updated {}, unchanged {}, rejected {}",
        summary.created, summary.updated, summary.unchanged, summary.rejected
    );
    if summary.rejected > 0 {
        anyhow::bail!(
            "{} rows rejected (their lines are listed above)",
            summary.rejected
        );
    }
    Ok(())
}
