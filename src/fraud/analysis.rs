//! What the samples say: per metric and attack, ROC AUC (Mann-Whitney) with
//! a bootstrap interval, detection at zero honest false positives and at
//! fixed false-positive rates, Gonka's calibration of a distance bound on
//! held-out splits, detection by output length, and score histograms.
//!
//! Every metric is oriented so that a larger "fraud score" means more
//! suspicious: similarities are negated.

use std::collections::BTreeMap;

use serde::Serialize;

use super::samples::Sample;
use super::Role;
use crate::results::csv_text::csv_text;
use crate::stats::{auc, Draw, SplitMix64};
use crate::verify::metrics::{self, Better};

/// The columns of [`Analysis::metrics_csv`].
pub const METRICS_CSV_HEADER: [&str; 11] = [
    "setting",
    "metric",
    "honest_n",
    "fraud_n",
    "auc",
    "auc_low",
    "auc_high",
    "zero_fp_threshold",
    "zero_fp_detected",
    "fpr_1e2_detected",
    "fpr_1e3_detected",
];

/// The seed check, scored like a metric.
pub const SEED_MISMATCH: &str = "seed_mismatch";
/// The token-rank uniformity test's p-value, scored like a metric.
pub const RANK_UNIFORMITY: &str = "rank_uniformity_p";
/// Gonka's distance D (the similarity's extra), used for calibration.
pub const GONKA_DISTANCE: &str = "gonka_similarity.distance";
/// Output-length bins of the detection curves (inclusive bounds).
pub const LENGTH_BINS: &[(usize, usize, &str)] = &[
    (0, 32, "≤32"),
    (33, 99, "33-99"),
    (100, 255, "100-255"),
    (256, 1023, "256-1023"),
    (1024, usize::MAX, "≥1024"),
];
const BOOTSTRAP: usize = 1000;
const SEED: u64 = 42;

/// The metrics analyzed, in report order, with their direction.
pub fn metric_directions() -> Vec<(String, Better)> {
    let mut out: Vec<(String, Better)> = metrics::all()
        .iter()
        .map(|m| (m.name().to_string(), m.better()))
        .collect();
    out.push((SEED_MISMATCH.into(), Better::Lower));
    out.push((RANK_UNIFORMITY.into(), Better::Higher));
    out
}

/// A sample's value of `metric`, if it has one.
pub fn value(s: &Sample, metric: &str) -> Option<f64> {
    if s.error.is_some() {
        return None;
    }
    match metric {
        SEED_MISMATCH => s.seed_mismatch,
        RANK_UNIFORMITY => s.rank_uniformity_p,
        m => s.metrics.get(m).copied(),
    }
}

/// Orient a metric so that larger means more suspicious.
pub fn fraud_score(better: Better, value: f64) -> f64 {
    match better {
        Better::Higher => -value,
        Better::Lower => value,
    }
}

/// Percentile bootstrap 95% interval of the AUC, resampling honest and
/// fraud samples separately.
pub fn auc_interval(honest: &[f64], fraud: &[f64], reps: usize, seed: u64) -> Option<(f64, f64)> {
    auc(honest, fraud)?;
    let mut rng = SplitMix64::new(seed);
    let mut draw = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|_| v[rng.below(v.len() as u64) as usize])
            .collect()
    };
    let mut aucs: Vec<f64> = (0..reps)
        .filter_map(|_| {
            let (h, f) = (draw(honest), draw(fraud));
            auc(&h, &f)
        })
        .collect();
    aucs.sort_by(f64::total_cmp);
    let at = |q: f64| aucs[((aucs.len() - 1) as f64 * q).round() as usize];
    Some((at(0.025), at(0.975)))
}

/// The ROC curve: (honest flagged share, fraud detected share) as the
/// threshold falls through every distinct score, from (0, 0) to (1, 1).
pub fn roc(honest: &[f64], fraud: &[f64]) -> Vec<(f64, f64)> {
    let mut all: Vec<(f64, bool)> = honest
        .iter()
        .map(|&v| (v, false))
        .chain(fraud.iter().map(|&v| (v, true)))
        .collect();
    all.sort_by(|a, b| b.0.total_cmp(&a.0));
    let (n, m) = (honest.len().max(1) as f64, fraud.len().max(1) as f64);
    let (mut fp, mut tp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    for (i, &(v, is_fraud)) in all.iter().enumerate() {
        if is_fraud {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        // One point per distinct score: ties move both rates at once.
        if all.get(i + 1).is_none_or(|next| next.0 != v) {
            out.push((fp / n, tp / m));
        }
    }
    out
}

/// Detection of fraud at a threshold chosen on the honest scores.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Detection {
    /// Scores strictly above are called fraud.
    pub threshold: f64,
    /// Fraud samples above the threshold.
    pub detected: usize,
    /// Fraud samples scored.
    pub fraud_n: usize,
    /// Honest samples above the threshold (false positives).
    pub honest_flagged: usize,
    /// Honest samples scored.
    pub honest_n: usize,
}

impl Detection {
    /// Share of the fraud samples detected (0 when there are none).
    pub fn rate(&self) -> f64 {
        self.detected as f64 / self.fraud_n.max(1) as f64
    }
}

/// The lowest threshold that flags at most ⌊fpr·n⌋ honest samples. With
/// fewer than 1/fpr honest samples this is the zero-false-positive bound.
pub fn detect_at_fpr(honest: &[f64], fraud: &[f64], fpr: f64) -> Option<Detection> {
    if honest.is_empty() || fraud.is_empty() {
        return None;
    }
    let mut sorted = honest.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * honest.len() as f64).floor() as usize;
    let threshold = sorted[allowed.min(sorted.len() - 1)];
    let above = |v: &[f64]| v.iter().filter(|&&x| x > threshold).count();
    Some(Detection {
        threshold,
        detected: above(fraud),
        fraud_n: fraud.len(),
        honest_flagged: above(honest),
        honest_n: honest.len(),
    })
}

/// One held-out split of Gonka's calibration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    /// The split's number, from 0.
    pub split: usize,
    /// The bound range on the training part: every bound on the grid that
    /// no honest distance exceeds and that reaches the best F1.
    pub lower: f64,
    /// The largest bound of that range: the one tested on the held-out part.
    pub upper: f64,
    /// The best F1 on the training part, reached by every bound in `lower..=upper`.
    pub train_f1: f64,
    /// On the held-out part, with the bound `upper`.
    pub test_detection: f64,
    /// Held-out honest samples above `upper` (false positives).
    pub test_honest_flagged: usize,
    /// Honest samples in the held-out part.
    pub test_honest_n: usize,
    /// Fraud samples in the held-out part.
    pub test_fraud_n: usize,
}

/// Gonka's calibration (`analysis.py`): on a grid of distance bounds L
/// (`step`), keep the bounds no honest training distance exceeds, take
/// those with the best F1 on fraud (flagged iff D > L), and test the
/// largest of them on the held-out 20%; `splits` random 80/20 splits.
pub fn calibrate(honest: &[f64], fraud: &[f64], step: f64, splits: usize, seed: u64) -> Vec<Split> {
    if honest.len() < 5 || fraud.len() < 5 {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(seed);
    (0..splits)
        .map(|split| {
            let (h_train, h_test) = split_80_20(honest, &mut rng);
            let (f_train, f_test) = split_80_20(fraud, &mut rng);
            let max_honest = h_train.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let lowest = (max_honest / step).ceil() * step;
            let f1 = |l: f64| {
                let tp = f_train.iter().filter(|&&d| d > l).count() as f64;
                // No honest training sample is above any bound considered.
                if tp == 0.0 {
                    0.0
                } else {
                    2.0 * tp / (2.0 * tp + (f_train.len() as f64 - tp))
                }
            };
            let best = f1(lowest);
            // F1 only falls as L grows; the best bounds run up to the
            // grid point below the smallest fraud distance above `lowest`.
            let next_fraud = f_train
                .iter()
                .copied()
                .filter(|&d| d > lowest)
                .fold(f64::INFINITY, f64::min);
            let upper = if next_fraud.is_finite() {
                (((next_fraud / step).ceil() - 1.0) * step).max(lowest)
            } else {
                lowest
            };
            let flagged = |v: &[f64]| v.iter().filter(|&&d| d > upper).count();
            Split {
                split,
                lower: lowest,
                upper,
                train_f1: best,
                test_detection: flagged(&f_test) as f64 / f_test.len().max(1) as f64,
                test_honest_flagged: flagged(&h_test),
                test_honest_n: h_test.len(),
                test_fraud_n: f_test.len(),
            }
        })
        .collect()
}

fn split_80_20(v: &[f64], rng: &mut SplitMix64) -> (Vec<f64>, Vec<f64>) {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    rng.shuffle(&mut idx);
    let cut = (v.len() as f64 * 0.8).round() as usize;
    let pick = |ix: &[usize]| ix.iter().map(|&i| v[i]).collect::<Vec<_>>();
    (pick(&idx[..cut]), pick(&idx[cut..]))
}

/// Detection by output length at one threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthBin {
    /// The bin's label, output tokens (e.g. `33-99`, `≥1024`).
    pub bin: &'static str,
    /// Honest samples in the bin.
    pub honest_n: usize,
    /// Honest samples in the bin flagged (false positives).
    pub honest_flagged: usize,
    /// Fraud samples in the bin.
    pub fraud_n: usize,
    /// Fraud samples in the bin flagged.
    pub detected: usize,
}

/// Bin (length, score) pairs and count what `threshold` flags in each bin.
pub fn by_length(
    honest: &[(usize, f64)],
    fraud: &[(usize, f64)],
    threshold: f64,
) -> Vec<LengthBin> {
    LENGTH_BINS
        .iter()
        .map(|&(lo, hi, bin)| {
            let inside = |v: &[(usize, f64)]| -> Vec<f64> {
                v.iter()
                    .filter(|(n, _)| (lo..=hi).contains(n))
                    .map(|&(_, s)| s)
                    .collect()
            };
            let (h, f) = (inside(honest), inside(fraud));
            let over = |v: &[f64]| v.iter().filter(|&&s| s > threshold).count();
            LengthBin {
                bin,
                honest_n: h.len(),
                honest_flagged: over(&h),
                fraud_n: f.len(),
                detected: over(&f),
            }
        })
        .collect()
}

/// Counts of `values` in `bins` equal bins over [lo, hi] (outside values
/// go to the end bins).
pub fn histogram(values: &[f64], bins: usize, lo: f64, hi: f64) -> Vec<usize> {
    let mut out = vec![0; bins];
    for &v in values {
        let x = ((v - lo) / (hi - lo) * bins as f64).floor();
        out[(x.max(0.0) as usize).min(bins - 1)] += 1;
    }
    out
}

/// One metric against one attack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricRow {
    /// The attack's label (e.g. `int4`, `substitute:<model>`).
    pub setting: String,
    /// The metric's name: a [`crate::verify::metrics`] name or [`SEED_MISMATCH`].
    pub metric: String,
    /// Honest samples with a value of the metric.
    pub honest_n: usize,
    /// Fraud samples with a value of the metric.
    pub fraud_n: usize,
    /// ROC AUC of the metric's fraud score, fraud against honest (1: perfect separation).
    pub auc: f64,
    /// Lower bound of the bootstrap 95% interval of the AUC.
    pub auc_low: f64,
    /// Upper bound of the bootstrap 95% interval of the AUC.
    pub auc_high: f64,
    /// Detection at the threshold that flags no honest sample.
    pub zero_fp: Detection,
    /// Detection at a false-positive rate of at most 10⁻².
    pub fpr_1e2: Detection,
    /// Detection at a false-positive rate of at most 10⁻³.
    pub fpr_1e3: Detection,
}

/// Everything the report shows for one run directory.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Analysis {
    /// Honest samples without error.
    pub honest_n: usize,
    /// Samples that could not be produced (they carry an error, no metrics).
    pub failed: usize,
    /// The attacks' labels (settings of the fraud samples), sorted.
    pub settings: Vec<String>,
    /// One row per (attack, metric) with enough samples on both sides.
    pub rows: Vec<MetricRow>,
    /// Per attack: Gonka's calibration of the deployed distance.
    pub calibration: BTreeMap<String, Vec<Split>>,
    /// Per (attack, metric): detection by length at the zero-FP threshold.
    pub lengths: BTreeMap<(String, String), Vec<LengthBin>>,
}

/// Analyze every attack of a run against its honest samples.
pub fn analyze(samples: &[Sample]) -> Analysis {
    let ok: Vec<&Sample> = samples.iter().filter(|s| s.error.is_none()).collect();
    let honest: Vec<&Sample> = ok
        .iter()
        .copied()
        .filter(|s| s.role == Role::Honest)
        .collect();
    let mut settings: Vec<String> = ok
        .iter()
        .filter(|s| s.role == Role::Fraud)
        .map(|s| s.setting.clone())
        .collect();
    settings.sort();
    settings.dedup();
    let mut out = Analysis {
        honest_n: honest.len(),
        failed: samples.len() - ok.len(),
        settings: settings.clone(),
        ..Default::default()
    };
    for setting in &settings {
        let fraud: Vec<&Sample> = ok
            .iter()
            .copied()
            .filter(|s| &s.setting == setting)
            .collect();
        for (metric, better) in metric_directions() {
            let scored = |v: &[&Sample]| -> Vec<(usize, f64)> {
                v.iter()
                    .filter_map(|s| Some((s.tokens, fraud_score(better, value(s, &metric)?))))
                    .collect()
            };
            let (h, f) = (scored(&honest), scored(&fraud));
            let (hs, fs): (Vec<f64>, Vec<f64>) = (
                h.iter().map(|x| x.1).collect(),
                f.iter().map(|x| x.1).collect(),
            );
            let (Some(a), Some((lo, hi))) =
                (auc(&hs, &fs), auc_interval(&hs, &fs, BOOTSTRAP, SEED))
            else {
                continue;
            };
            let det = |fpr| detect_at_fpr(&hs, &fs, fpr);
            let (Some(zero), Some(p2), Some(p3)) = (det(0.0), det(1e-2), det(1e-3)) else {
                continue;
            };
            out.lengths.insert(
                (setting.clone(), metric.clone()),
                by_length(&h, &f, zero.threshold),
            );
            out.rows.push(MetricRow {
                setting: setting.clone(),
                metric,
                honest_n: hs.len(),
                fraud_n: fs.len(),
                auc: a,
                auc_low: lo,
                auc_high: hi,
                zero_fp: zero,
                fpr_1e2: p2,
                fpr_1e3: p3,
            });
        }
        let dist = |v: &[&Sample]| -> Vec<f64> {
            v.iter().filter_map(|s| value(s, GONKA_DISTANCE)).collect()
        };
        out.calibration.insert(
            setting.clone(),
            calibrate(&dist(&honest), &dist(&fraud), 1e-4, 5, SEED),
        );
    }
    out
}

/// Metrics shown in the length table (the full per-metric table has all).
const LENGTH_METRICS: &[&str] = &[
    "gonka_similarity",
    "stage2_mae",
    "perplexity_score",
    SEED_MISMATCH,
];

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn detection_cell(d: &Detection) -> String {
    format!("{} ({}/{})", pct(d.rate()), d.detected, d.fraud_n)
}

impl Analysis {
    /// The markdown report: a Gonka-style summary, then per attack every
    /// metric, the calibration splits and detection by length.
    pub fn markdown(&self, model: &str) -> String {
        let mut out = String::new();
        out.push_str(
            "| model | setting | calibrated bounds on D | fraud accuracy (held-out, mean) | honest flagged (held-out) | AUC D | AUC perplexity | AUC seed |\n|---|---|---|---|---|---|---|---|\n",
        );
        for setting in &self.settings {
            let auc_of = |m: &str| {
                self.row(setting, m)
                    .map_or("–".into(), |r| format!("{:.3}", r.auc))
            };
            let (bounds, acc, flagged) = self.calibration_summary(setting);
            out.push_str(&format!(
                "| {model} | {setting} | {bounds} | {acc} | {flagged} | {} | {} | {} |\n",
                auc_of("gonka_similarity"),
                auc_of("perplexity_score"),
                auc_of(SEED_MISMATCH)
            ));
        }
        for setting in &self.settings {
            out.push_str(&self.setting_markdown(setting));
        }
        out
    }

    /// The row of `metric` against the attack `setting`, if the analysis has one.
    pub fn row(&self, setting: &str, metric: &str) -> Option<&MetricRow> {
        self.rows
            .iter()
            .find(|r| r.setting == setting && r.metric == metric)
    }

    /// (bounds "lo–hi", mean held-out detection, honest flagged k/n).
    pub fn calibration_summary(&self, setting: &str) -> (String, String, String) {
        let Some(splits) = self.calibration.get(setting).filter(|s| !s.is_empty()) else {
            return ("–".into(), "–".into(), "–".into());
        };
        let lo = splits.iter().map(|s| s.lower).fold(f64::INFINITY, f64::min);
        let hi = splits
            .iter()
            .map(|s| s.upper)
            .fold(f64::NEG_INFINITY, f64::max);
        let acc = splits.iter().map(|s| s.test_detection).sum::<f64>() / splits.len() as f64;
        let flagged: usize = splits.iter().map(|s| s.test_honest_flagged).sum();
        let n: usize = splits.iter().map(|s| s.test_honest_n).sum();
        (
            format!("{lo:.4}–{hi:.4}"),
            pct(acc),
            format!("{flagged}/{n}"),
        )
    }

    fn setting_markdown(&self, setting: &str) -> String {
        let rows: Vec<&MetricRow> = self.rows.iter().filter(|r| r.setting == setting).collect();
        let fraud_n = rows.first().map_or(0, |r| r.fraud_n);
        let mut out = format!(
            "\n## {setting}: {} honest vs {fraud_n} fraud samples\n\n\
             | metric | AUC [95% bootstrap] | detection at 0 honest FP | at FPR 1e-2 | at FPR 1e-3 | 0-FP threshold (fraud score) |\n\
             |---|---|---|---|---|---|\n",
            self.honest_n
        );
        for r in &rows {
            out.push_str(&format!(
                "| {} | {:.3} [{:.3}, {:.3}] | {} | {} | {} | {:.5} |\n",
                r.metric,
                r.auc,
                r.auc_low,
                r.auc_high,
                detection_cell(&r.zero_fp),
                detection_cell(&r.fpr_1e2),
                detection_cell(&r.fpr_1e3),
                r.zero_fp.threshold
            ));
        }
        if self.honest_n < 1000 {
            out.push_str(&format!(
                "\nWith {} honest samples, FPR 1e-3 allows no false positive (and 1e-2 allows {}): those columns are bounded by the sample, not estimated.\n",
                self.honest_n,
                (1e-2 * self.honest_n as f64).floor()
            ));
        }
        out.push_str(&self.calibration_markdown(setting));
        out.push_str(&self.lengths_markdown(setting));
        out
    }

    fn calibration_markdown(&self, setting: &str) -> String {
        let Some(splits) = self.calibration.get(setting).filter(|s| !s.is_empty()) else {
            return "\nGonka calibration: too few samples (needs ≥ 5 honest and 5 fraud with a distance).\n".into();
        };
        let mut out = String::from(
            "\nGonka calibration of the deployed distance D (grid 1e-4; bounds no honest training sample exceeds, best F1; tested with the upper bound on the held-out 20%; 5 splits, seed 42):\n\n\
             | split | bounds | train F1 | held-out fraud detected | held-out honest flagged |\n|---|---|---|---|---|\n",
        );
        for s in splits {
            out.push_str(&format!(
                "| {} | {:.4}–{:.4} | {:.3} | {} of {} | {}/{} |\n",
                s.split + 1,
                s.lower,
                s.upper,
                s.train_f1,
                pct(s.test_detection),
                s.test_fraud_n,
                s.test_honest_flagged,
                s.test_honest_n
            ));
        }
        out
    }

    fn lengths_markdown(&self, setting: &str) -> String {
        let header: Vec<&str> = LENGTH_BINS.iter().map(|b| b.2).collect();
        let mut out = format!(
            "\nDetection by output length (tokens) at each metric's 0-FP threshold over all lengths; cells: fraud detected/n · honest flagged/n:\n\n| metric | {} |\n|---|{}\n",
            header.join(" | "),
            "---|".repeat(header.len())
        );
        for metric in LENGTH_METRICS {
            let Some(bins) = self.lengths.get(&(setting.to_string(), metric.to_string())) else {
                continue;
            };
            let cells: Vec<String> = bins
                .iter()
                .map(|b| {
                    format!(
                        "{}/{} · {}/{}",
                        b.detected, b.fraud_n, b.honest_flagged, b.honest_n
                    )
                })
                .collect();
            out.push_str(&format!("| {metric} | {} |\n", cells.join(" | ")));
        }
        out
    }

    /// One CSV line per (setting, metric).
    pub fn metrics_csv(&self) -> String {
        csv_text(&METRICS_CSV_HEADER, self.metrics_csv_rows())
    }

    /// The cells of [`Analysis::metrics_csv`], without its header.
    pub fn metrics_csv_rows(&self) -> Vec<Vec<String>> {
        self.rows
            .iter()
            .map(|r| {
                vec![
                    r.setting.to_string(),
                    r.metric.to_string(),
                    r.honest_n.to_string(),
                    r.fraud_n.to_string(),
                    format!("{:.6}", r.auc),
                    format!("{:.6}", r.auc_low),
                    format!("{:.6}", r.auc_high),
                    r.zero_fp.threshold.to_string(),
                    r.zero_fp.detected.to_string(),
                    r.fpr_1e2.detected.to_string(),
                    r.fpr_1e3.detected.to_string(),
                ]
            })
            .collect()
    }

    /// One CSV line per (setting, metric, length bin).
    pub fn lengths_csv(&self) -> String {
        let rows = self.lengths.iter().flat_map(|((setting, metric), bins)| {
            bins.iter().map(move |b| {
                [
                    setting.to_string(),
                    metric.to_string(),
                    b.bin.to_string(),
                    b.honest_n.to_string(),
                    b.honest_flagged.to_string(),
                    b.fraud_n.to_string(),
                    b.detected.to_string(),
                ]
            })
        });
        csv_text(
            &[
                "setting",
                "metric",
                "bin",
                "honest_n",
                "honest_flagged",
                "fraud_n",
                "detected",
            ],
            rows,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_interval_covers_the_auc() {
        let mut rng = SplitMix64::new(7);
        let mut v = |n: usize, shift: f64| -> Vec<f64> {
            (0..n)
                .map(|_| (rng.next_u64() % 20) as f64 + shift)
                .collect()
        };
        let (h, f) = (v(37, 0.0), v(23, 3.0));
        // auc itself is checked against brute force in nsed::stats::rank.
        let point = auc(&h, &f).expect("both classes");
        let (lo, hi) = auc_interval(&h, &f, 500, 1).unwrap();
        assert!(
            lo < point && point < hi && hi - lo < 0.5,
            "{lo} {point} {hi}"
        );
    }

    #[test]
    fn roc_steps_through_distinct_scores() {
        let r = roc(&[1.0, 3.0], &[2.0, 3.0]);
        assert_eq!(r, [(0.0, 0.0), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]);
    }

    #[test]
    fn zero_fp_threshold_is_the_largest_honest_score() {
        let honest = [0.1, 0.5, 0.2, 0.3];
        let fraud = [0.4, 0.6, 0.9, 0.5];
        let d = detect_at_fpr(&honest, &fraud, 0.0).unwrap();
        assert_eq!((d.threshold, d.detected, d.honest_flagged), (0.5, 2, 0));
        // 1% of 4 honest samples is still zero allowed.
        assert_eq!(detect_at_fpr(&honest, &fraud, 1e-2).unwrap(), d);
        // 25% allows one: the threshold drops to the second largest.
        let d = detect_at_fpr(&honest, &fraud, 0.25).unwrap();
        assert_eq!((d.threshold, d.detected, d.honest_flagged), (0.3, 4, 1));
    }

    #[test]
    fn calibration_bounds_sit_between_honest_and_fraud() {
        let honest: Vec<f64> = (0..100).map(|i| 0.01 + i as f64 * 1e-4).collect();
        let fraud: Vec<f64> = (0..50).map(|i| 0.03 + i as f64 * 1e-3).collect();
        let splits = calibrate(&honest, &fraud, 1e-4, 5, 42);
        assert_eq!(splits.len(), 5);
        for s in &splits {
            // The largest honest training distance, rounded up to the grid.
            assert!((0.0190..=0.0200 + 1e-9).contains(&s.lower), "{s:?}");
            // The grid point just below the smallest fraud distance (0.03).
            assert!((s.upper - 0.0299).abs() < 1e-9, "{s:?}");
            assert_eq!(s.train_f1, 1.0);
            assert_eq!((s.test_detection, s.test_honest_flagged), (1.0, 0));
            assert_eq!((s.test_honest_n, s.test_fraud_n), (20, 10));
        }
    }

    #[test]
    fn length_bins_and_histograms_count_everything_once() {
        let honest = [(10, 0.1), (50, 0.2), (2000, 0.1)];
        let fraud = [(10, 0.05), (300, 0.9), (1024, 0.8), (1023, 0.1)];
        let bins = by_length(&honest, &fraud, 0.2);
        let n: Vec<(usize, usize, usize)> = bins
            .iter()
            .map(|b| (b.honest_n, b.fraud_n, b.detected))
            .collect();
        assert_eq!(n, [(1, 1, 0), (1, 0, 0), (0, 0, 0), (0, 2, 1), (1, 1, 1)]);
        assert_eq!(
            histogram(&[-1.0, 0.0, 0.55, 0.99, 1.0, 7.0], 2, 0.0, 1.0),
            [2, 4]
        );
    }
}
