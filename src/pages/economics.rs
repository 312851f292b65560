//! The economics of cheating for a `simulate-fraud` run (`--economics`):
//! its held-out detection rates and honest flag rate fed to the network
//! simulation of `fraud::economics` (status rules, collateral, slashing),
//! written as `economics.md` and `economics.csv` beside the run.

use std::path::Path;

use super::{read_text, TablesError};
use crate::fraud::economics::{self, Network, Rule};
use crate::fraud::variant::VariantReport;
use crate::fraud::{heldout, samples};
use crate::results::csv_text::csv_text;
use crate::results::output::write_atomic;

/// The network a cheating node lives in, and the detector it faces.
#[derive(Debug, Clone)]
pub struct EconomicsSettings {
    /// Inferences the node serves per epoch.
    pub traffic: u64,
    /// Equal-power validators.
    pub validators: usize,
    /// Epochs simulated.
    pub epochs: usize,
    /// Simulated nodes per strategy and rule.
    pub runs: usize,
    /// The honest failure rate the status rules assume.
    pub network_fpr: f64,
    /// The node's true honest failure rate (default: measured, held-out).
    pub honest_fail: Option<f64>,
    /// Cost of an honest inference as a share of its reward.
    pub honest_cost: f64,
    /// Collateral in epochs of honest profit.
    pub collateral_epochs: f64,
    /// Cost of the claimed model's proof prefill relative to decoding.
    pub prefill_cost: f64,
    /// Shares of requests cheated on.
    pub cheat_shares: Vec<f64>,
    /// The per-sample detector whose rates feed the simulation.
    pub detector: String,
}

/// Simulate the network with the run's measured detection rates; writes
/// `economics.md` and `economics.csv` into the run directory and returns the
/// markdown. `note` hears what is being simulated.
pub fn economics_page(
    dir: &Path,
    n: &EconomicsSettings,
    mut note: impl FnMut(&str),
) -> Result<String, TablesError> {
    let samples = samples::read(dir)?;
    let variants_path = dir.join("variants.json");
    let text = read_text(&variants_path)?;
    let variants: Vec<(String, VariantReport)> =
        serde_json::from_str(&text).map_err(|e| TablesError::Parse {
            path: variants_path,
            message: e.to_string(),
        })?;
    let held_out = heldout::evaluate(&samples);
    if held_out.is_empty() {
        return Err(TablesError::TooFewSamples {
            dir: dir.to_path_buf(),
            prompts: 2 * heldout::FOLDS,
        });
    }
    if !held_out.iter().any(|h| h.detector == n.detector) {
        let mut known: Vec<&str> = held_out.iter().map(|h| h.detector.as_str()).collect();
        known.dedup();
        return Err(TablesError::UnknownDetector {
            detector: n.detector.clone(),
            known: known.join(", "),
        });
    }
    let (attacks, flags) = economics::inputs(&held_out, &n.detector, &variants, n.prefill_cost);
    if attacks.is_empty() {
        return Err(TablesError::NoAttacks {
            dir: dir.to_path_buf(),
        });
    }
    let (measured, upper) = (flags.rate(), flags.upper());
    let net = Network {
        traffic: n.traffic,
        validators: n.validators,
        network_fpr: n.network_fpr,
        honest_fail: n.honest_fail.unwrap_or(measured),
        honest_cost: n.honest_cost,
        collateral_epochs: n.collateral_epochs,
        slash: 0.2,
        epochs: n.epochs,
    };
    let rules = [
        Rule::Gonka,
        Rule::Sprt {
            p1: 3.0 * n.network_fpr,
            alpha: 1e-4,
            beta: 0.01,
        },
        Rule::Binomial { alpha: 1e-3 },
    ];
    let strategies = economics::strategies(&attacks, &n.cheat_shares, &[0, 30]);
    note(&format!(
        "simulating {} strategies x {} rules x {} nodes",
        strategies.len(),
        rules.len(),
        n.runs
    ));
    let outcomes = economics::table(&net, &strategies, &rules, n.runs, 42);
    let mut rates = vec![measured, upper];
    rates.extend(n.honest_fail);
    let ejections = economics::false_ejections(&net, &rules, &rates, n.runs, 4242);
    let md = format!(
        "# Economics of cheating · {}\n\n\
         Detector `{}`: detection per attack is its mean held-out detection; the honest failure \
         rate is the mean of honest samples flagged on held-out prompts over {} partitions, \
         {:.2}/{} ({:.2}%; the thresholds' design rate {:.2}%), with the exact 95% upper bound of \
         the worst partition ({}/{}) {:.2}%.\n\n{}\n{}",
        dir.display(),
        n.detector,
        heldout::REPEATS,
        flags.mean,
        flags.n,
        100.0 * measured,
        100.0 * flags.design,
        flags.worst,
        flags.n,
        100.0 * upper,
        economics::markdown(&net, &attacks, &outcomes),
        false_ejection_markdown(&ejections, n.runs, n.epochs),
    );
    write_atomic(&dir.join("economics.md"), md.as_bytes())?;
    let header = [
        "strategy",
        "rule",
        "runs",
        "ejected",
        "ejected_while_honest",
        "catch_per_epoch",
        "caught_first_epoch",
        "median_epochs_to_ejection",
        "profit_vs_honest",
    ];
    let rows = outcomes.iter().map(|o| {
        [
            o.strategy.to_string(),
            o.rule.to_string(),
            o.runs.to_string(),
            o.ejected.to_string(),
            o.ejected_while_honest.to_string(),
            o.catch_per_epoch.to_string(),
            o.caught_first_epoch.to_string(),
            o.median_epochs_to_ejection
                .map_or(String::new(), |m| m.to_string()),
            o.profit_vs_honest.to_string(),
        ]
    });
    let csv = csv_text(&header, rows);
    write_atomic(&dir.join("economics.csv"), csv.as_bytes())?;
    Ok(md)
}

/// False ejections of honest nodes per 1,000 node-epochs, per rule and
/// assumed honest failure rate.
fn false_ejection_markdown(rows: &[(String, f64, f64)], runs: usize, epochs: usize) -> String {
    let mut out = format!(
        "\n## False ejections of honest nodes\n\nPer 1,000 node-epochs served ({runs} simulated \
         honest nodes × up to {epochs} epochs each), at the measured honest failure rate and at \
         its 95% upper bound (and at `--honest-fail` when given).\n\n\
         | rule | honest failure rate | false ejections per 1,000 node-epochs |\n|---|---|---|\n"
    );
    for (rule, rate, per_1000) in rows {
        out.push_str(&format!(
            "| {rule} | {:.2}% | {per_1000:.2} |\n",
            100.0 * rate
        ));
    }
    out
}
