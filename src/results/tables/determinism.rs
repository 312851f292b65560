//! The determinism table (EigenAI-style): per model and thread count, how
//! many runs, the share with identical output and logits hashes, and the
//! seed-bound sampler's overhead, from the `nsed determinism --json` reports
//! in `determinism/`.

use std::path::Path;

use serde::Deserialize;

use crate::verify::determinism::DeterminismRun;

use super::{parse_error, read_text, TablesError};
use crate::results::csv_text::csv_text;

/// One `nsed determinism --json` report.
#[derive(Debug, Clone, Deserialize)]
pub struct DeterminismReport {
    pub model: String,
    pub runs: Vec<DeterminismRun>,
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
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.0}% | {:.0}% | {} | {:.3} | {:.3} | {:+.2}% | {:.1} / {:.1} |\n",
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
                r.seed_bound_seconds,
                r.plain_seconds,
                100.0 * r.overhead,
                r.seed_bound_sampler_us_per_token,
                r.plain_sampler_us_per_token
            ));
        }
    }
    out
}

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
                format!("{:.6}", r.seed_bound_seconds),
                format!("{:.6}", r.plain_seconds),
                format!("{:.6}", r.overhead),
                format!("{:.3}", r.seed_bound_sampler_us_per_token),
                format!("{:.3}", r.plain_sampler_us_per_token),
            ]
        })
    });
    csv_text(&header, rows)
}
