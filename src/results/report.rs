//! Method summaries for results: accuracy with its Wilson 95% interval,
//! paired comparisons with the exact McNemar test (both from
//! [`crate::stats`]), and the markdown / CSV summaries `nsed bench` writes.

use serde::Serialize;

use super::csv_text::csv_text;
use crate::stats::{mcnemar_exact, wilson};

/// One method's results over a run; `M` names the method (a bench's
/// `MethodKey`, or any label).
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary<M = String> {
    /// The method summarized.
    pub method: M,
    /// Items summarized.
    pub n: usize,
    /// Items answered correctly.
    pub correct: usize,
    /// Items where no answer was found.
    pub no_answer: usize,
    /// Cut at the token limit without a boxed answer (counted as wrong).
    pub truncated: usize,
    /// `correct / n`, as a fraction (0 with no items).
    pub accuracy: f64,
    /// Lower bound of the accuracy's Wilson 95% interval, as a fraction.
    pub ci_low: f64,
    /// Upper bound of the accuracy's Wilson 95% interval, as a fraction.
    pub ci_high: f64,
    /// Mean prompt tokens per item.
    pub prompt_tokens_per_item: f64,
    /// Mean generated tokens per item.
    pub generated_tokens_per_item: f64,
    /// Mean inference seconds (prefill + decode) per item.
    pub seconds_per_item: f64,
}

/// A paired comparison against the reference method.
#[derive(Debug, Clone, Serialize)]
pub struct Paired<M = String> {
    /// The method compared.
    pub method: M,
    /// The method it is compared with.
    pub reference: M,
    /// Items paired (the shorter of the two lists).
    pub n: usize,
    /// Items the reference got right and this method wrong.
    pub reference_only: usize,
    /// Items this method got right and the reference wrong.
    pub method_only: usize,
    /// Reference accuracy minus this method's, in points.
    pub difference_points: f64,
    /// Two-sided exact McNemar p-value of the discordant counts (1 when there are none).
    pub p_value: f64,
}

/// One method's outcome on one item.
#[derive(Debug, Clone, Copy)]
pub struct ItemOutcome {
    /// The answer was graded correct.
    pub correct: bool,
    /// No answer was found.
    pub no_answer: bool,
    /// Cut at the token limit without a boxed answer (counted as wrong).
    pub truncated: bool,
    /// Prompt tokens the method spent on the item.
    pub prompt_tokens: usize,
    /// Tokens the method generated for the item.
    pub generated_tokens: usize,
    /// Inference seconds (prefill + decode) the method spent on the item.
    pub seconds: f64,
}

/// Summarize one method's outcomes: accuracy with its Wilson interval and per-item means.
pub fn summarize<M>(method: M, rows: &[ItemOutcome]) -> MethodSummary<M> {
    let n = rows.len();
    let correct = rows.iter().filter(|r| r.correct).count();
    let mean = |f: &dyn Fn(&ItemOutcome) -> f64| {
        if n == 0 {
            0.0
        } else {
            rows.iter().map(f).sum::<f64>() / n as f64
        }
    };
    let (ci_low, ci_high) = wilson(correct, n);
    MethodSummary {
        method,
        n,
        correct,
        no_answer: rows.iter().filter(|r| r.no_answer).count(),
        truncated: rows.iter().filter(|r| r.truncated).count(),
        accuracy: if n == 0 {
            0.0
        } else {
            correct as f64 / n as f64
        },
        ci_low,
        ci_high,
        prompt_tokens_per_item: mean(&|r| r.prompt_tokens as f64),
        generated_tokens_per_item: mean(&|r| r.generated_tokens as f64),
        seconds_per_item: mean(&|r| r.seconds),
    }
}

/// Pair two methods' per-item correctness (same items, same order).
pub fn paired<M>(reference: (M, &[bool]), method: (M, &[bool])) -> Paired<M> {
    let n = reference.1.len().min(method.1.len());
    let pairs = reference.1.iter().zip(method.1);
    let reference_only = pairs.clone().filter(|(r, m)| **r && !**m).count();
    let method_only = pairs.filter(|(r, m)| !**r && **m).count();
    Paired {
        method: method.0,
        reference: reference.0,
        n,
        reference_only,
        method_only,
        difference_points: if n == 0 {
            0.0
        } else {
            100.0 * (reference_only as f64 - method_only as f64) / n as f64
        },
        p_value: mcnemar_exact(reference_only, method_only),
    }
}

/// The markdown summary: one row per method, then the paired comparisons, if any, against
/// the first pair's reference.
pub fn markdown<M: std::fmt::Display>(
    summaries: &[MethodSummary<M>],
    pairs: &[Paired<M>],
) -> String {
    let mut s = String::from(
        "| method | accuracy | 95% CI (Wilson) | n | no answer | truncated | prompt tok/item | generated tok/item | s/item |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for m in summaries {
        s.push_str(&format!(
            "| {} | {:.1}% ({}/{}) | {:.1}–{:.1}% | {} | {} | {} | {:.0} | {:.0} | {:.1} |\n",
            m.method,
            100.0 * m.accuracy,
            m.correct,
            m.n,
            100.0 * m.ci_low,
            100.0 * m.ci_high,
            m.n,
            m.no_answer,
            m.truncated,
            m.prompt_tokens_per_item,
            m.generated_tokens_per_item,
            m.seconds_per_item
        ));
    }
    if !pairs.is_empty() {
        s.push_str(&format!(
            "\nPaired vs {} (exact McNemar): \n\n| method | {} right only | method right only | {} − method (points) | p |\n|---|---|---|---|---|\n",
            pairs[0].reference, pairs[0].reference, pairs[0].reference
        ));
        for p in pairs {
            s.push_str(&format!(
                "| {} | {} | {} | {:+.1} | {:.3} |\n",
                p.method, p.reference_only, p.method_only, p.difference_points, p.p_value
            ));
        }
    }
    s
}

/// The CSV summary: [`SUMMARY_CSV_HEADER`], then one row per method.
pub fn csv<M: std::fmt::Display>(summaries: &[MethodSummary<M>]) -> String {
    csv_text(&SUMMARY_CSV_HEADER, summaries.iter().map(summary_csv_row))
}

/// The columns of [`csv()`].
pub const SUMMARY_CSV_HEADER: [&str; 11] = [
    "method",
    "n",
    "correct",
    "no_answer",
    "accuracy",
    "ci_low",
    "ci_high",
    "prompt_tokens_per_item",
    "generated_tokens_per_item",
    "seconds_per_item",
    "truncated",
];

/// One method's cells of [`csv()`].
pub fn summary_csv_row<M: std::fmt::Display>(m: &MethodSummary<M>) -> [String; 11] {
    [
        m.method.to_string(),
        m.n.to_string(),
        m.correct.to_string(),
        m.no_answer.to_string(),
        format!("{:.6}", m.accuracy),
        format!("{:.6}", m.ci_low),
        format!("{:.6}", m.ci_high),
        format!("{:.1}", m.prompt_tokens_per_item),
        format!("{:.1}", m.generated_tokens_per_item),
        format!("{:.3}", m.seconds_per_item),
        m.truncated.to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_counts_discordant_items() {
        let r = [true, true, false, false, true];
        let m = [true, false, true, false, false];
        let p = paired(("nsed", &r), ("plurality", &m));
        assert_eq!((p.reference_only, p.method_only, p.n), (2, 1, 5));
        assert!((p.difference_points - 20.0).abs() < 1e-12);
    }
}
