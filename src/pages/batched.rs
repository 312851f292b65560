//! The batched-decode table of the speed page: aggregate decode tokens/s
//! with B sequences per forward pass, nsed beside llama.cpp's
//! `llama-batched-bench` on the same files, from `perf/batched.jsonl`
//! (written by `scripts/bench-batched.sh`). Only a session with at least
//! [`MIN_ROUNDS`] interleaved rounds of both tools makes a table: each cell
//! is the median over its rounds with their range, and gains and ratios are
//! taken within a round before the median, so the machine's drift between
//! rounds does not enter them.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use super::{read_jsonl, TablesError};
use crate::stats::median;

/// Fewer rounds than this give no table: a single round carries the VM's
/// drift into every ratio.
pub const MIN_ROUNDS: usize = 3;

/// One line of `perf/batched.jsonl`: one tool, one round, one batch size.
#[derive(Debug, Clone, Deserialize)]
pub struct BatchedRow {
    /// `nsed` or `llama.cpp`.
    pub tool: String,
    /// The invocation of the script the row belongs to (absent in rows made
    /// before sessions were recorded; those make no table).
    #[serde(default)]
    pub session: Option<String>,
    /// The model benchmarked (its registry id).
    pub model: String,
    /// Which interleaved round of the session the row comes from.
    pub round: usize,
    /// B: sequences decoded together per forward pass.
    pub batch: usize,
    /// Aggregate decode tokens/s of all B sequences.
    pub decode: f64,
    /// nsed's kernel path.
    #[serde(default)]
    pub kernel: Option<String>,
    /// The nsed build (commit).
    #[serde(default)]
    pub commit: Option<String>,
    /// The CPU's model name (from `lscpu`), when recorded.
    #[serde(default)]
    pub cpu: Option<String>,
    /// llama.cpp's build flavour (`native`, `avx2`).
    #[serde(default)]
    pub isa: Option<String>,
}

/// Every row of `<results>/perf/batched.jsonl`.
pub fn read(results: &Path) -> Result<Vec<BatchedRow>, TablesError> {
    read_jsonl(&results.join("perf").join("batched.jsonl"))
}

/// The latest session in which every model has [`MIN_ROUNDS`] rounds of
/// both tools, with its rows.
fn latest_complete_session(rows: &[BatchedRow]) -> Option<(&str, Vec<&BatchedRow>)> {
    let sessions: BTreeSet<&str> = rows.iter().filter_map(|r| r.session.as_deref()).collect();
    sessions.into_iter().rev().find_map(|session| {
        let of: Vec<&BatchedRow> = rows
            .iter()
            .filter(|r| r.session.as_deref() == Some(session))
            .collect();
        let models: BTreeSet<&str> = of.iter().map(|r| r.model.as_str()).collect();
        let complete = models.iter().all(|m| {
            ["nsed", "llama.cpp"].iter().all(|tool| {
                let rounds: BTreeSet<usize> = of
                    .iter()
                    .filter(|r| r.model == *m && r.tool == *tool)
                    .map(|r| r.round)
                    .collect();
                rounds.len() >= MIN_ROUNDS
            })
        });
        complete.then_some((session, of))
    })
}

/// Median of the rounds with their range, e.g. `26.4 (21.9–30.1)`.
fn cell(values: &[f64], digits: usize, unit: &str) -> String {
    match median(values) {
        None => "–".into(),
        Some(m) => {
            let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            format!("{m:.digits$}{unit} ({lo:.digits$}–{hi:.digits$})")
        }
    }
}

fn distinct<'a>(
    rows: &[&'a BatchedRow],
    field: impl Fn(&'a BatchedRow) -> Option<&'a str>,
) -> String {
    let set: BTreeSet<&str> = rows.iter().filter_map(|r| field(r)).collect();
    set.into_iter().collect::<Vec<_>>().join(", ")
}

/// The markdown table of the latest complete session (empty when none).
pub fn markdown(rows: &[BatchedRow]) -> String {
    let Some((session, rows)) = latest_complete_session(rows) else {
        return String::new();
    };
    let nsed: Vec<&BatchedRow> = rows.iter().copied().filter(|r| r.tool == "nsed").collect();
    let llama: Vec<&BatchedRow> = rows.iter().copied().filter(|r| r.tool != "nsed").collect();
    let rounds: BTreeSet<usize> = rows.iter().map(|r| r.round).collect();
    let build = distinct(&nsed, |r| r.commit.as_deref().map(|c| &c[..c.len().min(7)]));
    let mut out = format!(
        "Session {session}: {}, 2 threads; nsed on the {} path (build {build}), \
         llama-batched-bench built for {}; 128 prompt + 64 generated tokens per sequence. \
         Aggregate decode tok/s of all B sequences, median of {} interleaved rounds (min–max); \
         gains over B = 1 and the nsed / llama.cpp ratio are taken within each round.\n\n",
        distinct(&rows, |r| r.cpu.as_deref()),
        distinct(&nsed, |r| r.kernel.as_deref()),
        distinct(&llama, |r| r.isa.as_deref()),
        rounds.len(),
    );
    out.push_str("| model | B | nsed tok/s | nsed x B=1 | llama.cpp tok/s | llama.cpp x B=1 | nsed / llama.cpp |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    let models: BTreeSet<&str> = rows.iter().map(|r| r.model.as_str()).collect();
    for model in models {
        let rate = |tool: &str, round: usize, batch: usize| {
            rows.iter()
                .find(|r| {
                    r.model == model
                        && (r.tool == "nsed") == (tool == "nsed")
                        && r.round == round
                        && r.batch == batch
                })
                .map(|r| r.decode)
        };
        let per_round = |f: &dyn Fn(usize) -> Option<f64>| -> Vec<f64> {
            rounds.iter().filter_map(|&r| f(r)).collect()
        };
        let sizes: BTreeSet<usize> = rows
            .iter()
            .filter(|r| r.model == model)
            .map(|r| r.batch)
            .collect();
        for b in sizes {
            let gain = |tool: &'static str| {
                per_round(&move |r| Some(rate(tool, r, b)? / rate(tool, r, 1)?))
            };
            out.push_str(&format!(
                "| {model} | {b} | {} | {} | {} | {} | {} |\n",
                cell(&per_round(&|r| rate("nsed", r, b)), 1, ""),
                cell(&gain("nsed"), 2, "x"),
                cell(&per_round(&|r| rate("llama.cpp", r, b)), 1, ""),
                cell(&gain("llama.cpp"), 2, "x"),
                cell(
                    &per_round(&|r| Some(rate("nsed", r, b)? / rate("llama.cpp", r, b)?)),
                    2,
                    ""
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        tool: &str,
        session: Option<&str>,
        round: usize,
        batch: usize,
        decode: f64,
    ) -> BatchedRow {
        BatchedRow {
            tool: tool.into(),
            session: session.map(String::from),
            model: "m".into(),
            round,
            batch,
            decode,
            kernel: (tool == "nsed").then(|| "avx2".into()),
            commit: (tool == "nsed").then(|| "0123456789".into()),
            cpu: Some("cpu".into()),
            isa: (tool != "nsed").then(|| "avx2".into()),
        }
    }

    /// Three rounds in which the machine slows down: nsed's gain at B = 2 is
    /// 2x in every round, although its raw rates spread widely.
    fn three_rounds(session: &str) -> Vec<BatchedRow> {
        let mut rows = Vec::new();
        for (round, speed) in [(1, 1.0), (2, 0.5), (3, 0.8)] {
            rows.push(row("nsed", Some(session), round, 1, 10.0 * speed));
            rows.push(row("nsed", Some(session), round, 2, 20.0 * speed));
            rows.push(row("llama.cpp", Some(session), round, 1, 10.0 * speed));
            rows.push(row("llama.cpp", Some(session), round, 2, 15.0 * speed));
        }
        rows
    }

    #[test]
    fn gains_are_taken_within_rounds() {
        let md = markdown(&three_rounds("2026-12-06T00:00:00Z"));
        assert!(md.contains("median of 3 interleaved rounds"), "{md}");
        assert!(md.contains("build 0123456"), "{md}");
        assert!(
            md.contains("| m | 2 | 16.0 (10.0–20.0) | 2.00x (2.00–2.00) | 12.0 (7.5–15.0) | 1.50x (1.50–1.50) | 1.33 (1.33–1.33) |"),
            "{md}"
        );
    }

    #[test]
    fn fewer_than_three_rounds_make_no_table() {
        let mut rows = three_rounds("2026-12-06T00:00:00Z");
        rows.retain(|r| r.round < 3);
        assert_eq!(markdown(&rows), "");
        // Old rows without a session never count, however many.
        let old: Vec<BatchedRow> = three_rounds("x")
            .into_iter()
            .map(|mut r| {
                r.session = None;
                r
            })
            .collect();
        assert_eq!(markdown(&old), "");
    }

    #[test]
    fn the_latest_complete_session_is_shown() {
        let mut rows = three_rounds("2026-12-01T00:00:00Z");
        rows.extend(three_rounds("2026-12-06T00:00:00Z"));
        // A later session cut short after one round is skipped.
        rows.push(row("nsed", Some("2026-12-07T00:00:00Z"), 1, 1, 99.0));
        let md = markdown(&rows);
        assert!(md.starts_with("Session 2026-12-06T00:00:00Z"), "{md}");
    }
}
