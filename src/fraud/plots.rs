//! The figures of a fraud run: ROC curves per attack, detection by output
//! length, and perplexity-score distributions of honest vs each attack.

use std::path::Path;

use super::analysis::{self, Analysis, LENGTH_BINS};
use super::pernode::{NodePower, SAMPLES_PER_NODE};
use super::samples::Sample;
use super::Role;
use crate::results::csv_text::csv_text;
use crate::results::figure::{self, FigureError, LineChart, Series};

/// Metrics drawn in the ROC and length figures.
const DRAWN: &[&str] = &[
    "gonka_similarity",
    "stage2_mae",
    "js_divergence",
    "perplexity_score",
    analysis::SEED_MISMATCH,
];
const PPL_BINS: usize = 20;

/// The per-node power figure (`power-per-node`): power against samples per
/// node, one line per attack and test, at the fixed honest ejection rate.
pub fn write_power(dir: &Path, results: &[NodePower]) -> Result<(), FigureError> {
    let names: Vec<String> = SAMPLES_PER_NODE.iter().map(|n| n.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let chart = LineChart {
        title: "Per-node tests: power against samples per node (≤ 1% honest nodes ejected)".into(),
        x_label: "samples per node",
        y_label: "cheating nodes ejected (95% interval over disjoint nodes)",
        x_range: (-0.3, SAMPLES_PER_NODE.len() as f64 - 0.7),
        y_range: (0.0, 1.02),
        x_names: Some(&names),
        diagonal: false,
    };
    let series: Vec<Series> = results
        .iter()
        .map(|r| Series {
            name: format!("{} · {}", r.setting, r.test.name()),
            points: r
                .curve
                .iter()
                .filter_map(|p| {
                    let x = SAMPLES_PER_NODE.iter().position(|&n| n == p.samples)?;
                    Some((x as f64, p.power))
                })
                .collect(),
            intervals: r
                .curve
                .iter()
                .filter(|p| SAMPLES_PER_NODE.contains(&p.samples))
                .map(|p| r.power_interval(p))
                .collect(),
            unjoined: false,
        })
        .collect();
    figure::lines(&dir.join("power-per-node"), &chart, &series)
}

/// A setting's name as it appears in figure file names.
pub fn slug(setting: &str) -> String {
    setting.replace([':', '/', ' '], "-")
}

/// Write every figure into `dir`; returns the stems written.
pub fn write(dir: &Path, samples: &[Sample], a: &Analysis) -> Result<Vec<String>, FigureError> {
    let mut written = Vec::new();
    for setting in &a.settings {
        let stem = format!("roc-{}", slug(setting));
        figure::lines(
            &dir.join(&stem),
            &roc_chart(setting),
            &roc_series(samples, setting),
        )?;
        written.push(stem);
        let stem = format!("length-{}", slug(setting));
        let names: Vec<&str> = LENGTH_BINS.iter().map(|b| b.2).collect();
        let chart = LineChart {
            title: format!("{setting}: detection at zero honest false positives, by output length"),
            x_label: "output tokens",
            y_label: "fraud detected",
            x_range: (-0.3, LENGTH_BINS.len() as f64 - 0.7),
            y_range: (0.0, 1.02),
            x_names: Some(&names),
            diagonal: false,
        };
        figure::lines(&dir.join(&stem), &chart, &length_series(a, setting))?;
        written.push(stem);
    }
    let chart = LineChart {
        title: "Perplexity score (1 - exp(mean clamped logprob)) by setting".into(),
        x_label: "perplexity score",
        y_label: "share of samples",
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        x_names: None,
        diagonal: false,
    };
    figure::lines(
        &dir.join("perplexity"),
        &chart,
        &perplexity_series(samples, a),
    )?;
    written.push("perplexity".into());
    Ok(written)
}

fn roc_chart(setting: &str) -> LineChart<'static> {
    LineChart {
        title: format!("ROC: honest vs {setting}"),
        x_label: "honest flagged (false positive rate)",
        y_label: "fraud detected (true positive rate)",
        x_range: (0.0, 1.0),
        y_range: (0.0, 1.0),
        x_names: None,
        diagonal: true,
    }
}

fn scores(
    samples: &[Sample],
    pick: impl Fn(&Sample) -> bool,
    metric: &str,
    better: crate::verify::metrics::Better,
) -> Vec<f64> {
    samples
        .iter()
        .filter(|s| pick(s))
        .filter_map(|s| Some(analysis::fraud_score(better, analysis::value(s, metric)?)))
        .collect()
}

fn roc_series(samples: &[Sample], setting: &str) -> Vec<Series> {
    analysis::metric_directions()
        .into_iter()
        .filter(|(m, _)| DRAWN.contains(&m.as_str()))
        .filter_map(|(metric, better)| {
            let h = scores(samples, |s| s.role == Role::Honest, &metric, better);
            let f = scores(samples, |s| s.setting == setting, &metric, better);
            let auc = crate::stats::auc(&h, &f)?;
            Some(Series {
                name: format!("{metric} (AUC {auc:.3})"),
                points: analysis::roc(&h, &f),
                ..Default::default()
            })
        })
        .collect()
}

fn length_series(a: &Analysis, setting: &str) -> Vec<Series> {
    DRAWN
        .iter()
        .filter_map(|metric| {
            let bins = a.lengths.get(&(setting.to_string(), metric.to_string()))?;
            let points = bins
                .iter()
                .enumerate()
                .filter(|(_, b)| b.fraud_n > 0)
                .map(|(i, b)| (i as f64, b.detected as f64 / b.fraud_n as f64))
                .collect();
            Some(Series {
                name: metric.to_string(),
                points,
                ..Default::default()
            })
        })
        .collect()
}

/// Share of samples per perplexity-score bin, honest and each setting.
pub fn perplexity_histograms(samples: &[Sample], a: &Analysis) -> Vec<(String, Vec<f64>)> {
    let groups = std::iter::once("honest".to_string()).chain(a.settings.iter().cloned());
    groups
        .map(|g| {
            let v: Vec<f64> = samples
                .iter()
                .filter(|s| s.setting == g)
                .filter_map(|s| analysis::value(s, "perplexity_score"))
                .collect();
            let counts = analysis::histogram(&v, PPL_BINS, 0.0, 1.0);
            let n = v.len().max(1) as f64;
            (g, counts.iter().map(|&c| c as f64 / n).collect())
        })
        .collect()
}

fn perplexity_series(samples: &[Sample], a: &Analysis) -> Vec<Series> {
    perplexity_histograms(samples, a)
        .into_iter()
        .map(|(name, shares)| Series {
            name,
            points: shares
                .iter()
                .enumerate()
                .map(|(i, &s)| ((i as f64 + 0.5) / PPL_BINS as f64, s))
                .collect(),
            ..Default::default()
        })
        .collect()
}

/// CSV of [`perplexity_histograms`]: bin bounds and one column per group.
pub fn perplexity_csv(samples: &[Sample], a: &Analysis) -> String {
    let h = perplexity_histograms(samples, a);
    let header: Vec<&str> = ["bin_low", "bin_high"]
        .into_iter()
        .chain(h.iter().map(|(name, _)| name.as_str()))
        .collect();
    let rows = (0..PPL_BINS).map(|i| {
        let bounds = [i, i + 1].map(|edge| format!("{:.2}", edge as f64 / PPL_BINS as f64));
        let shares = h.iter().map(move |(_, shares)| format!("{:.4}", shares[i]));
        bounds.into_iter().chain(shares).collect::<Vec<_>>()
    });
    csv_text(&header, rows)
}
