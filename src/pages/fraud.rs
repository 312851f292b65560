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
    /// The run's directory.
    pub dir: PathBuf,
    /// The run's `meta.json`: its fingerprint (claimed model, precisions, temperatures) and
    /// invocations.
    pub meta: Meta,
    /// Every metric's in-sample detection figures.
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
    /// the executor's own weights, so honest replay is bit-exact), and so
    /// are the paths of a run across paths.
    pub fn label(&self) -> String {
        let fp = &self.meta.fingerprint;
        let validator = match fp.validator {
            Precision::F32 => String::new(),
            other => format!(" · validator {}", other.name()),
        };
        // A run across paths says which, and its length cap (its rows sit
        // beside same-path runs of the same model).
        let paths = match (fp.executor_device, fp.validator_device) {
            (None, None) => String::new(),
            (e, v) => {
                let name = |d: Option<crate::engine::device::ComputeDevice>| {
                    d.map_or("--device".to_string(), |d| d.to_string())
                };
                format!(
                    " · made on {}, replayed on {}, ≤ {} tokens",
                    name(e),
                    name(v),
                    fp.max_tokens
                )
            }
        };
        format!(
            "{} · T {}/{}{validator}{paths}",
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

/// What the runs say, generated from them so that it cannot drift: int4
/// per sample against the target (rates beside the design rate and the
/// bound), per node with the disjoint nodes behind each point, the other
/// attacks' best detectors, and what the measured honest rates cost honest
/// nodes under each ejection rule. One markdown bullet each.
pub fn findings(runs: &[FraudRun]) -> Vec<String> {
    let mut out = Vec::new();
    let best = |run: &'_ FraudRun, setting: &str| -> Option<HeldOut> {
        run.held_out
            .iter()
            .find(|h| h.detector == heldout::BEST_SINGLE && h.setting == setting)
            .cloned()
    };
    let pct = |x: f64| format!("{:.1}%", 100.0 * x);
    let int4: Vec<String> = runs
        .iter()
        .filter_map(|run| {
            let h = best(run, "int4")?;
            let (mean, lo, hi) = h.flagged_spread();
            Some(format!(
                "{}: {} of {} caught, {} of {} honest flagged on average ({mean:.2}; {lo}–{hi} \
                 per partition; design rate {}; worst bound {})",
                run.label(),
                pct(h.detection().0),
                h.fraud_n,
                heldout::pct2(h.mean_flag_rate()),
                h.honest_n,
                heldout::pct2(h.design_rate),
                pct(h.worst_flagged().1),
            ))
        })
        .collect();
    if !int4.is_empty() {
        out.push(format!(
            "**int4, per sample** (the best single detector, chosen on training folds; \
             held-out prompts, {} partitions): {}. Target ≥ 95% at ≤ 1% honest flags: see \
             \"Against the targets\"; a rate counts as met only where the design rate is ≤ 1% \
             too, and no run has enough honest samples for an upper bound below 1%.",
            heldout::REPEATS,
            int4.join("; ")
        ));
    }
    let nodes: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            let mut settings: Vec<&str> = run.per_node.iter().map(|p| p.setting.as_str()).collect();
            settings.dedup();
            settings
                .into_iter()
                .filter_map(|setting| node_finding(run, setting))
                .collect::<Vec<_>>()
        })
        .collect();
    if !nodes.is_empty() {
        out.push(format!(
            "**Per node** (fewest samples per node at which a test ejects ≥ 99% of simulated \
             cheating nodes, at a 1% level; the simulated nodes are overlapping draws, so each \
             point gives the disjoint nodes behind it and the exact 95% lower bound on power \
             they allow): {}.",
            nodes.join("; ")
        ));
    }
    let others: Vec<String> = runs
        .iter()
        .flat_map(|run| {
            let mut settings: Vec<&str> = run
                .held_out
                .iter()
                .map(|h| h.setting.as_str())
                .filter(|s| *s != "int4")
                .collect();
            settings.dedup();
            settings
                .into_iter()
                .filter_map(|setting| {
                    let h = run
                        .held_out
                        .iter()
                        .filter(|h| h.setting == setting && h.abstained_fraud == 0)
                        .max_by(|a, b| a.detection().0.total_cmp(&b.detection().0))?;
                    Some(format!(
                        "{} {setting}: {} catches {} of {} (honest {} on average)",
                        run.label(),
                        h.detector,
                        pct(h.detection().0),
                        h.fraud_n,
                        heldout::pct2(h.mean_flag_rate())
                    ))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if !others.is_empty() {
        out.push(format!(
            "**Other attacks, per sample** (the detector with the highest held-out detection): {}.",
            others.join("; ")
        ));
    }
    if let Some(text) = economics_finding(runs) {
        out.push(text);
    }
    out
}

fn node_finding(run: &FraudRun, setting: &str) -> Option<String> {
    let reached = run
        .per_node
        .iter()
        .filter(|p| p.setting == setting)
        .filter_map(|t| t.samples_needed().map(|p| (p, t)))
        .min_by_key(|(p, _)| p.samples);
    Some(match reached {
        Some((p, t)) => format!(
            "{} {setting}: {} samples ({}; {} disjoint nodes, power ≥ {:.1}%)",
            run.label(),
            p.samples,
            t.test.name(),
            t.disjoint_nodes(p.samples),
            100.0 * t.power_lower_bound(p)
        ),
        None => format!(
            "{} {setting}: not reached within the samples measured",
            run.label()
        ),
    })
}

/// False ejections of an honest node per 1,000 node-epochs at each run's
/// measured (mean) honest rate, by rule, from the runs' `economics.csv`.
fn economics_finding(runs: &[FraudRun]) -> Option<String> {
    let mut by_rule: Vec<(String, f64, f64)> = Vec::new();
    for run in runs {
        let Ok(mut reader) = csv::Reader::from_path(run.dir.join("economics.csv")) else {
            continue;
        };
        let Ok(header) = reader.headers().cloned() else {
            continue;
        };
        let col = |name: &str| header.iter().position(|h| h == name);
        let (Some(strategy), Some(rule), Some(catch)) =
            (col("strategy"), col("rule"), col("catch_per_epoch"))
        else {
            continue;
        };
        for record in reader.records().flatten() {
            if record.get(strategy) != Some("honest") {
                continue;
            }
            let (Some(name), Some(rate)) = (
                record.get(rule),
                record.get(catch).and_then(|c| c.parse::<f64>().ok()),
            ) else {
                continue;
            };
            let per_1000 = 1000.0 * rate;
            match by_rule.iter_mut().find(|(r, _, _)| r == name) {
                Some(entry) => {
                    entry.1 = entry.1.min(per_1000);
                    entry.2 = entry.2.max(per_1000);
                }
                None => by_rule.push((name.to_string(), per_1000, per_1000)),
            }
        }
    }
    (!by_rule.is_empty()).then(|| {
        let rules: Vec<String> = by_rule
            .iter()
            .map(|(rule, lo, hi)| format!("{rule}: {lo:.0}–{hi:.0}"))
            .collect();
        format!(
            "**Economics** (each run's `economics.md`: Gonka's deployed distance, or the seed \
             check at bit-exact replay, at the run's mean held-out honest rate): honest nodes \
             ejected per 1,000 node-epochs, across runs — {}.",
            rules.join("; ")
        )
    })
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

/// The runs across paths beside the same-path run of the same settings
/// (model, precisions, temperatures, prompts, length cap): per attack, what
/// Gonka's distance, the best single detector and the seed check catch on
/// held-out prompts, and the honest samples they flag, per (made on,
/// replayed on) pair. Empty when no run crosses paths.
pub fn paths_markdown(runs: &[FraudRun]) -> String {
    let key = |r: &FraudRun| {
        let fp = &r.meta.fingerprint;
        (
            fp.claimed.clone(),
            fp.honest.name(),
            fp.validator.name(),
            fp.temperature_honest.to_bits(),
            fp.temperature_fraud.to_bits(),
            fp.sources.clone(),
            fp.max_tokens,
        )
    };
    let crosses = |r: &FraudRun| {
        let fp = &r.meta.fingerprint;
        fp.executor_device.is_some() || fp.validator_device.is_some()
    };
    let mut groups: Vec<_> = runs.iter().filter(|r| crosses(r)).map(key).collect();
    groups.sort();
    groups.dedup();
    if groups.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "| model · attack · length cap | made on → replayed on | honest · fraud samples | design flag rate | Gonka distance: caught · honest flagged | best single (chosen on train): caught · honest flagged | seed check: AUC · caught · honest flagged |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for group in &groups {
        let mut members: Vec<&FraudRun> = runs.iter().filter(|r| &key(r) == group).collect();
        // The same-path run first, then the pairs by name.
        members.sort_by_key(|r| (crosses(r), path_pair(r)));
        let settings: std::collections::BTreeSet<&String> = members
            .iter()
            .flat_map(|r| r.analysis.settings.iter())
            .collect();
        for setting in settings {
            for run in &members {
                out.push_str(&path_row(run, setting));
            }
        }
    }
    out
}

/// `made on → replayed on` of a run (one path: the run's `--device`).
fn path_pair(run: &FraudRun) -> String {
    let fp = &run.meta.fingerprint;
    match (fp.executor_device, fp.validator_device) {
        (None, None) => "one path (same path)".into(),
        (e, v) => {
            let name = |d: Option<crate::engine::device::ComputeDevice>| {
                d.map_or("--device".to_string(), |d| d.to_string())
            };
            format!("{} → {}", name(e), name(v))
        }
    }
}

/// One (run, attack) row of [`paths_markdown`].
fn path_row(run: &FraudRun, setting: &str) -> String {
    let fp = &run.meta.fingerprint;
    let find = |detector: &str| {
        run.held_out
            .iter()
            .find(|r| r.setting == setting && r.detector == detector)
    };
    let cell = |r: Option<&HeldOut>| {
        r.map_or("–".to_string(), |r| {
            format!(
                "{} · {}",
                heldout::pct2(r.detection().0),
                heldout::pct2(r.mean_flag_rate())
            )
        })
    };
    let Some(any) = find(heldout::BEST_SINGLE).or_else(|| find("gonka_similarity")) else {
        return String::new();
    };
    let seed = find(SEED_MISMATCH).map_or("–".to_string(), |r| {
        format!("{:.3} · {}", r.auc, cell(Some(r)))
    });
    format!(
        "| {} · {setting} · ≤ {} tokens | {} | {} · {} | {} | {} | {} | {seed} |\n",
        fp.claimed,
        fp.max_tokens,
        path_pair(run),
        any.honest_n,
        any.fraud_n,
        heldout::pct2(any.design_rate),
        cell(find("gonka_similarity")),
        cell(find(heldout::BEST_SINGLE)),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(name: &str) -> FraudRun {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/fraud/runs")
            .join(name);
        read_run(dir).expect("a committed run reads")
    }

    #[test]
    fn only_runs_across_paths_get_the_paths_table_and_each_is_one_row_per_attack() {
        // Negative control: a same-path run alone has no table.
        let same = committed("smollm2-135m");
        assert_eq!(paths_markdown(std::slice::from_ref(&same)), "");
        let across = committed("smollm2-135m-int4-candle-to-host");
        let table = paths_markdown(&[same, across]);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        // The same-path run caps at 1100 tokens, not 128: another group, so
        // it does not sit beside the run across paths.
        assert_eq!(rows.len(), 1, "{table}");
        let cells: Vec<&str> = rows[0].split(" | ").collect();
        assert!(
            cells[0].contains("smollm2-135m · int4 · ≤ 128 tokens"),
            "{table}"
        );
        assert_eq!(cells[1], "cpu-candle → cpu", "{table}");
        assert_eq!(cells[2], "100 · 100", "{table}");
        let caught: f64 = cells[4]
            .split('%')
            .next()
            .and_then(|x| x.parse().ok())
            .expect("a percentage");
        assert!(caught > 90.0, "{table}");
    }
}
