//! The determinism table (EigenAI-style): per model and thread count, how
//! many runs, the share with identical output and logits hashes, and the
//! seed-bound sampler's overhead, from the `nsed determinism --json` reports
//! in `determinism/`.

use std::path::Path;

use serde::Deserialize;

use crate::verify::determinism::{DeterminismRun, SamplerTiming};

use super::{parse_error, read_text, TablesError};
use crate::results::csv_text::csv_text;

/// One `nsed determinism --json` report.
#[derive(Debug, Clone, Deserialize)]
pub struct DeterminismReport {
    /// The model studied (as given to `nsed determinism`).
    pub model: String,
    /// One study per thread count.
    pub runs: Vec<DeterminismRun>,
    /// Whether every thread count gives the same output and logits hashes.
    pub identical_across_thread_counts: bool,
}

/// Every `determinism/*.json`, sorted by file name.
pub fn read_reports(results: &Path) -> Result<Vec<DeterminismReport>, TablesError> {
    let dir = results.join("determinism");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&dir).map_err(|source| TablesError::Io {
        path: dir.clone(),
        source,
    })?;
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_str(&read_text(p)?).map_err(|e| parse_error(p, e)))
        .collect()
}

/// The determinism table: one row per model and thread count.
pub fn markdown(reports: &[DeterminismReport]) -> String {
    if reports.is_empty() {
        return "No determinism reports yet.\n".into();
    }
    let mut out = String::from(
        "| model | threads | runs | tokens | identical outputs | identical logits | same hashes across thread counts | seed-bound s/run | plain s/run | overhead | sampler µs/token (seed-bound / plain) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for rep in reports {
        for r in &rep.runs {
            let timing = r.timing.as_ref().map_or("- | - | - | -".to_string(), |t| {
                format!(
                    "{:.3} | {:.3} | {:+.2}% | {:.1} / {:.1}",
                    t.seed_bound_seconds,
                    t.plain_seconds,
                    100.0 * t.overhead,
                    t.seed_bound_sampler_us_per_token,
                    t.plain_sampler_us_per_token
                )
            });
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0}% | {:.0}% | {} | {timing} |\n",
                rep.model,
                r.threads,
                r.runs,
                r.tokens,
                100.0 * r.identical_output_share,
                100.0 * r.identical_logits_share,
                if rep.runs.len() < 2 {
                    "(one count)"
                } else if rep.identical_across_thread_counts {
                    "yes"
                } else {
                    "**no**"
                },
            ));
        }
    }
    out
}

/// Every report's runs as CSV, one row per model and thread count.
pub fn csv(reports: &[DeterminismReport]) -> String {
    let header = [
        "model",
        "threads",
        "runs",
        "tokens",
        "identical_output_share",
        "identical_logits_share",
        "identical_across_thread_counts",
        "output_sha256",
        "logits_sha256",
        "seed_bound_seconds",
        "plain_seconds",
        "overhead",
        "seed_bound_sampler_us_per_token",
        "plain_sampler_us_per_token",
    ];
    let rows = reports.iter().flat_map(|rep| {
        rep.runs.iter().map(move |r| {
            let timing = |f: fn(&SamplerTiming) -> f64, digits: usize| {
                r.timing
                    .as_ref()
                    .map_or(String::new(), |t| format!("{:.digits$}", f(t)))
            };
            [
                rep.model.to_string(),
                r.threads.to_string(),
                r.runs.to_string(),
                r.tokens.to_string(),
                r.identical_output_share.to_string(),
                r.identical_logits_share.to_string(),
                rep.identical_across_thread_counts.to_string(),
                r.output_sha256.to_string(),
                r.logits_sha256.to_string(),
                timing(|t| t.seed_bound_seconds, 6),
                timing(|t| t.plain_seconds, 6),
                timing(|t| t.overhead, 6),
                timing(|t| t.seed_bound_sampler_us_per_token, 3),
                timing(|t| t.plain_sampler_us_per_token, 3),
            ]
        })
    });
    csv_text(&header, rows)
}
