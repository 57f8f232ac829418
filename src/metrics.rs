//! Process metrics in the Prometheus text format: HTTP requests by route and status, a
//! request latency histogram, GraphQL errors by code, and database statements.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const LATENCY_BUCKETS: [f64; 11] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    statements: AtomicU64,
    failed_statements: AtomicU64,
    statement_micros: AtomicU64,
    validations_skipped: AtomicU64,
}

#[derive(Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// Counts one HTTP request to `route` answered with `status` after `elapsed`.
    pub fn record_request(&self, route: &str, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        *lock(&self.requests)
            .entry((route.to_owned(), status))
            .or_default() += 1;
        let mut latency = lock(&self.latency);
        let histogram = latency.entry(route.to_owned()).or_default();
        for (bucket, bound) in histogram.buckets.iter_mut().zip(LATENCY_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Counts one error returned to a caller, by its `extensions.code`.
    pub fn record_error(&self, code: &'static str) {
        *lock(&self.errors).entry(code).or_default() += 1;
    }

    pub fn record_statement(&self, elapsed: Duration, failed: bool) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.statement_micros
            .fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
        if failed {
            self.failed_statements.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Statements run since start.
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Counts one GraphQL request that ran without the engine's whole validation (its
    /// document passed it before and its variables could not fail it).
    pub fn record_validation_skipped(&self) {
        self.validations_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests that ran without the engine's whole validation since start.
    pub fn validations_skipped(&self) -> u64 {
        self.validations_skipped.load(Ordering::Relaxed)
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP rapport_http_requests_total HTTP requests by route and status.\n");
        out.push_str("# TYPE rapport_http_requests_total counter\n");
        for ((route, status), count) in lock(&self.requests).iter() {
            let _ = writeln!(
                out,
                "rapport_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        out.push_str("# HELP rapport_http_request_duration_seconds HTTP request latency.\n");
        out.push_str("# TYPE rapport_http_request_duration_seconds histogram\n");
        for (route, histogram) in lock(&self.latency).iter() {
            for (bound, count) in LATENCY_BUCKETS.iter().zip(histogram.buckets) {
                let _ = writeln!(out, "rapport_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "rapport_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(
                out,
                "rapport_http_request_duration_seconds_sum{{route=\"{route}\"}} {}",
                histogram.sum
            );
            let _ = writeln!(
                out,
                "rapport_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                histogram.count
            );
        }
        out.push_str(
            "# HELP rapport_graphql_errors_total Errors returned to callers by extensions.code.\n",
        );
        out.push_str("# TYPE rapport_graphql_errors_total counter\n");
        for (code, count) in lock(&self.errors).iter() {
            let _ = writeln!(
                out,
                "rapport_graphql_errors_total{{code=\"{code}\"}} {count}"
            );
        }
        out.push_str("# HELP rapport_graphql_validations_skipped_total GraphQL requests run without the engine's whole validation (their document passed it before).\n");
        out.push_str("# TYPE rapport_graphql_validations_skipped_total counter\n");
        let _ = writeln!(
            out,
            "rapport_graphql_validations_skipped_total {}",
            self.validations_skipped()
        );
        out.push_str("# HELP rapport_db_statements_total SQL statements executed.\n");
        out.push_str("# TYPE rapport_db_statements_total counter\n");
        let _ = writeln!(out, "rapport_db_statements_total {}", self.statements());
        out.push_str("# HELP rapport_db_statement_errors_total SQL statements that failed.\n");
        out.push_str("# TYPE rapport_db_statement_errors_total counter\n");
        let _ = writeln!(
            out,
            "rapport_db_statement_errors_total {}",
            self.failed_statements.load(Ordering::Relaxed)
        );
        out.push_str("# HELP rapport_db_statement_seconds_total Time spent in SQL statements.\n");
        out.push_str("# TYPE rapport_db_statement_seconds_total counter\n");
        let seconds = self.statement_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "rapport_db_statement_seconds_total {seconds}");
        out.push_str("# HELP rapport_invalid_values_dropped_total Invalid e-mails and phones ingestion dropped (the items were kept).\n");
        out.push_str("# TYPE rapport_invalid_values_dropped_total counter\n");
        let _ = writeln!(
            out,
            "rapport_invalid_values_dropped_total {}",
            crate::domain::validate::dropped_values()
        );
        out
    }
}

/// A poisoned metrics lock only means a panic elsewhere; the counts are still usable.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
