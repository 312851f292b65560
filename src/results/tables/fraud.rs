//! The fraud-detection table (Gonka-style): per claimed model and attack,
//! the calibrated bounds on the deployed distance, detection at zero false
//! positives and the AUC of every metric with its 95% interval, from the
//! samples of each `nsed simulate-fraud` run under `fraud/runs/`.

use std::path::{Path, PathBuf};

use crate::fraud::analysis::{self, Analysis, MetricRow, SEED_MISMATCH};
use crate::fraud::heldout::{self, HeldOut};
use crate::fraud::pernode::{self, NodePower};
use crate::fraud::plots;
use crate::fraud::samples::{self, Meta, Sample};
use crate::fraud::targets;
use crate::fraud::Precision;

use super::{parse_error, TablesError};
use crate::results::csv_text::csv_text;

/// One simulate-fraud run, analyzed.
pub struct FraudRun {
    pub dir: PathBuf,
    pub meta: Meta,
    pub analysis: Analysis,
    /// Every detector under the held-out protocol.
    pub held_out: Vec<HeldOut>,
    /// The per-node tests' power curves.
    pub per_node: Vec<NodePower>,
    /// The samples behind them (figures and per-run CSVs draw on them).
    pub samples: Vec<Sample>,
}

impl FraudRun {
    /// The claimed model and the sampling temperatures (honest / cheater):
    /// Gonka's setting is 0.99 / 0.7; equal temperatures are the control.
    /// A validator other than the f32 reference is named (`validator q8`:
    /// the executor's own weights, so honest replay is bit-exact).
    pub fn label(&self) -> String {
        let fp = &self.meta.fingerprint;
        let validator = match fp.validator {
            Precision::F32 => String::new(),
            other => format!(" · validator {}", other.name()),
        };
        format!(
            "{} · T {}/{}{validator}",
            fp.claimed, fp.temperature_honest, fp.temperature_fraud
        )
    }
}

/// Every run directory under `<results>/fraud/runs`, by name.
pub fn read_runs(results: &Path) -> Result<Vec<FraudRun>, TablesError> {
    run_dirs(&results.join("fraud").join("runs"))?
        .into_iter()
        .map(read_run)
        .collect()
}

/// One run directory, analyzed under every protocol.
pub fn read_run(dir: PathBuf) -> Result<FraudRun, TablesError> {
    let meta = Meta::read(&dir)?;
    let samples = samples::read(&dir).map_err(|e| parse_error(&dir, e))?;
    Ok(FraudRun {
        analysis: analysis::analyze(&samples),
        held_out: heldout::evaluate(&samples),
        per_node: pernode::evaluate(&samples),
        dir,
        meta,
        samples,
    })
}

/// Subdirectories holding a `meta.json`, sorted (none if `root` is absent).
pub(crate) fn run_dirs(root: &Path) -> Result<Vec<PathBuf>, TablesError> {
    if !root.exists() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(root).map_err(|source| TablesError::Io {
        path: root.to_path_buf(),
        source,
    })?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("meta.json").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn auc_cell(r: Option<&MetricRow>) -> String {
    r.map_or("–".into(), |r| {
        format!("{:.3} [{:.3}, {:.3}]", r.auc, r.auc_low, r.auc_high)
    })
}

/// The detectors of the headline held-out table (every detector is in each
/// run's report): Gonka's deployed distance, the perplexity score, the seed
/// check, the token-rank uniformity test (runs that recorded ranks), the best
/// single metric and the combined detector, each also abstaining on short
/// outputs.
const HEADLINE_DETECTORS: [&str; 8] = [
    "gonka_similarity",
    "perplexity_score",
    SEED_MISMATCH,
    analysis::RANK_UNIFORMITY,
    heldout::BEST_SINGLE,
    heldout::BEST_SINGLE_GATED,
    heldout::COMBINED,
    heldout::COMBINED_GATED,
];

/// The held-out table: per (model, attack), the headline detectors fit on
/// training prompts and judged on held-out ones.
pub fn held_out_markdown(runs: &[FraudRun]) -> String {
    let mut out = heldout::legend();
    out.push('\n');
    out.push_str(heldout::TABLE_HEADER);
    for run in runs {
        let rows: Vec<HeldOut> = run
            .held_out
            .iter()
            .filter(|r| HEADLINE_DETECTORS.contains(&r.detector.as_str()))
            .cloned()
            .collect();
        out.push_str(&heldout::markdown(&run.label(), &rows));
    }
    out
}

/// The targets table: per (model, attack), the measured figures against
/// the targets and the shortfall where one is missed.
pub fn targets_markdown(runs: &[FraudRun]) -> String {
    let mut out = targets::legend();
    out.push('\n');
    out.push_str(targets::TABLE_HEADER);
    for run in runs {
        out.push_str(&targets::markdown(
            &run.label(),
            &run.held_out,
            &run.per_node,
        ));
    }
    out
}

/// The per-node table: both tests for every (model, attack).
pub fn per_node_markdown(runs: &[FraudRun]) -> String {
    let mut out = pernode::legend();
    out.push('\n');
    out.push_str(pernode::TABLE_HEADER);
    for run in runs {
        out.push_str(&pernode::markdown(&run.label(), &run.per_node));
    }
    out
}

/// The summary table: one row per (model, attack).
pub fn summary_markdown(runs: &[FraudRun]) -> String {
    let mut out = String::from(
        "| claimed model | honest executor / validator | attack | honest n | fraud n | calibrated bounds on D | fraud detected (held-out) | honest flagged (held-out) | detected at 0 FP (S) | AUC S [95% CI] | AUC perplexity | AUC seed |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        let fp = &run.meta.fingerprint;
        let a = &run.analysis;
        for setting in &a.settings {
            let (bounds, detected, flagged) = a.calibration_summary(setting);
            let sim = a.row(setting, "gonka_similarity");
            let zero_fp = sim.map_or("–".into(), |r| {
                format!("{}/{}", r.zero_fp.detected, r.zero_fp.fraud_n)
            });
            out.push_str(&format!(
                "| {} | {} / {} | {setting} | {} | {} | {bounds} | {detected} | {flagged} | {zero_fp} | {} | {} | {} |\n",
                fp.claimed,
                fp.honest.name(),
                fp.validator.name(),
                a.honest_n,
                sim.map_or(0, |r| r.fraud_n),
                auc_cell(sim),
                auc_cell(a.row(setting, "perplexity_score")),
                auc_cell(a.row(setting, SEED_MISMATCH)),
            ));
        }
    }
    out
}

/// Every metric against every attack: AUC with its interval, the zero-FP
/// bound and what it catches, and detection at 1% FPR.
pub fn metrics_markdown(runs: &[FraudRun]) -> String {
    let mut out = String::from(
        "| claimed model | attack | metric | honest n | fraud n | AUC [95% CI] | zero-FP bound | detected at 0 FP | detected at 1% FPR |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for run in runs {
        for r in &run.analysis.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.6} | {}/{} | {}/{} |\n",
                run.meta.fingerprint.claimed,
                r.setting,
                r.metric,
                r.honest_n,
                r.fraud_n,
                auc_cell(Some(r)),
                r.zero_fp.threshold,
                r.zero_fp.detected,
                r.zero_fp.fraud_n,
                r.fpr_1e2.detected,
                r.fpr_1e2.fraud_n,
            ));
        }
    }
    out
}

/// The CSV of every (model, attack, metric): each run's `metrics.csv`
/// lines, prefixed with the claimed model and the honest and validator
/// precisions.
pub fn csv(runs: &[FraudRun]) -> String {
    let header: Vec<&str> = ["model", "honest", "validator"]
        .into_iter()
        .chain(analysis::METRICS_CSV_HEADER)
        .collect();
    let rows = runs.iter().flat_map(|run| {
        let fp = &run.meta.fingerprint;
        let run_cells = [
            fp.claimed.to_string(),
            fp.honest.name().to_string(),
            fp.validator.name().to_string(),
        ];
        run.analysis
            .metrics_csv_rows()
            .into_iter()
            .map(move |metric_cells| {
                run_cells
                    .iter()
                    .cloned()
                    .chain(metric_cells)
                    .collect::<Vec<_>>()
            })
    });
    csv_text(&header, rows)
}

/// Links to each run's ROC figures, relative to the results directory.
pub fn figures_markdown(results: &Path, runs: &[FraudRun]) -> String {
    let mut out = String::new();
    let link = |png: PathBuf| {
        png.exists().then(|| {
            png.strip_prefix(results)
                .unwrap_or(&png)
                .display()
                .to_string()
        })
    };
    for run in runs {
        for setting in &run.analysis.settings {
            let roc = run.dir.join(format!("roc-{}.png", plots::slug(setting)));
            if let Some(rel) = link(roc) {
                out.push_str(&format!("- {} · {setting}: [ROC]({rel})\n", run.label()));
            }
        }
        if let Some(rel) = link(run.dir.join("power-per-node.png")) {
            out.push_str(&format!("- {}: [per-node power]({rel})\n", run.label()));
        }
    }
    out
}
