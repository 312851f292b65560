//! Statistics and tables for results: Wilson 95% intervals, the exact McNemar
//! test on paired outcomes, and the markdown / CSV summaries `nsed bench`
//! writes.

use serde::Serialize;

use super::csv_text::csv_text;
use statrs::distribution::{Binomial, DiscreteCDF};

/// The 97.5% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for k successes in n trials, 95%.
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Exact (binomial) two-sided McNemar p-value for `b` items right only under
/// method 1 and `c` right only under method 2.
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let Ok(bin) = Binomial::new(0.5, n as u64) else {
        return 1.0;
    };
    (2.0 * bin.cdf(b.min(c) as u64)).min(1.0)
}

/// P(positive score > negative score) + ½ P(tie): the Mann-Whitney U
/// statistic over n·m, computed from mid-ranks. `None` without both kinds.
pub fn auc(negatives: &[f64], positives: &[f64]) -> Option<f64> {
    if negatives.is_empty() || positives.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = negatives
        .iter()
        .map(|&v| (v, false))
        .chain(positives.iter().map(|&v| (v, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut positive_rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        positive_rank_sum += mid_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (n, m) = (negatives.len() as f64, positives.len() as f64);
    Some((positive_rank_sum - m * (m + 1.0) / 2.0) / (n * m))
}

/// One method's results over a run; `M` names the method (a bench's
/// `MethodKey`, or any label).
#[derive(Debug, Clone, Serialize)]
pub struct MethodSummary<M = String> {
    pub method: M,
    pub n: usize,
    pub correct: usize,
    pub no_answer: usize,
    /// Cut at the token limit without a boxed answer (counted as wrong).
    pub truncated: usize,
    pub accuracy: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub prompt_tokens_per_item: f64,
    pub generated_tokens_per_item: f64,
    pub seconds_per_item: f64,
}

/// A paired comparison against the reference method.
#[derive(Debug, Clone, Serialize)]
pub struct Paired<M = String> {
    pub method: M,
    pub reference: M,
    pub n: usize,
    /// Items the reference got right and this method wrong.
    pub reference_only: usize,
    /// Items this method got right and the reference wrong.
    pub method_only: usize,
    /// Reference accuracy minus this method's, in points.
    pub difference_points: f64,
    pub p_value: f64,
}

/// One method's outcome on one item.
#[derive(Debug, Clone, Copy)]
pub struct ItemOutcome {
    pub correct: bool,
    pub no_answer: bool,
    pub truncated: bool,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub seconds: f64,
}

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
    fn wilson_matches_reference_values() {
        // 8/10: (0.4902, 0.9433); 0/30: (0, 0.1135) — standard tables.
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 30);
        assert!(lo == 0.0 && (hi - 0.1135).abs() < 1e-4, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_exact_values() {
        // b=1, c=9: 2·P(X≤1 | n=10) = 2·11/1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert!((mcnemar_exact(0, 5) - 2.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn paired_counts_discordant_items() {
        let r = [true, true, false, false, true];
        let m = [true, false, true, false, false];
        let p = paired(("nsed", &r), ("plurality", &m));
        assert_eq!((p.reference_only, p.method_only, p.n), (2, 1, 5));
        assert!((p.difference_points - 20.0).abs() < 1e-12);
    }
}
