//! The held-out protocol every detector is reported under: a detector's
//! direction and threshold are fit on training prompts only and judged on
//! prompts it never saw.
//!
//! - **Cross-fitting by prompt.** Honest sample i and every attack's sample
//!   i answer prompt i, and folds split distinct prompts (by the recorded
//!   prompt id, which names its text), not sample indices: a prompt that a
//!   source repeats at two indices sits on one side only. With K folds every
//!   sample is tested exactly once per repeat, so a false-positive count has
//!   its true n (each honest sample once) and an exact Clopper-Pearson
//!   bound; [`REPEATS`] partitions drawn with fresh seeds give the spread.
//! - **Honest flags are partly a draw of the partition.** With n training
//!   honest scores the threshold flags a fresh honest sample with
//!   probability k/(n + 1) (the *design rate*) whatever the detector, so one
//!   partition's count is a noisy draw around it: the pages report the mean
//!   over partitions and its range beside the design rate, and the bound of
//!   the worst partition.
//! - **Unseen sources.** Leave-one-source-out: fit on every other prompt
//!   source (GSM8K, MATH-500, LiveCodeBench, the multilingual prompts, a
//!   user's file), test on the one left out.
//! - **Direction on training data.** A metric whose fraud samples score
//!   lower than honest ones on the training folds is flipped there, not
//!   assumed.
//! - **The combined detector:** an L2-regularized logistic regression over
//!   every metric, standardized and fit on the training folds only.
//!
//! - **Abstaining on short outputs.** The best single and the combined
//!   detector also run gated: outputs under [`MIN_JUDGED_TOKENS`] tokens get
//!   no verdict (neither in fitting nor in testing), and the abstentions are
//!   counted on both sides. The gate was chosen after the fact from the
//!   per-length breakdown of the first runs (their honest flags came from
//!   ≤ 32-token outputs), so only runs made after it are a test of it.
//!
//! - **Conformal thresholds.** The threshold is the k-th largest of the n
//!   training honest scores with k = ⌊α·(n + 1)⌋ (α = 1%), flagging scores
//!   above it: for a fresh honest sample exchangeable with the training ones
//!   the flag probability is then at most k/(n + 1) ≤ α. (Flagging ⌊α·n⌋ of
//!   the training samples, the in-sample rule, puts the threshold one order
//!   statistic lower and expects (⌊α·n⌋ + 1)/(n + 1) > α on fresh samples.)
//!   With n + 1 < 1/α no k exists; the threshold is then the largest
//!   training score and the guarantee is only 1/(n + 1).

use std::collections::BTreeMap;

use serde::Serialize;

use super::analysis::{fraud_score, metric_directions, value, LENGTH_BINS};
use super::samples::Sample;
use super::Role;
use crate::stats::{auc, clopper_pearson_upper, Draw, SplitMix64};

/// The honest flag rate the thresholds are fit for.
pub const TARGET_FPR: f64 = 0.01;
/// Folds of one cross-fitting partition.
pub const FOLDS: usize = 5;
/// Partitions with fresh shuffles (partition seeds): enough that the mean
/// honest flag count is not one lucky or unlucky draw.
pub const REPEATS: usize = 20;
/// The name of the logistic-regression detector.
pub const COMBINED: &str = "combined (logistic, all metrics)";
/// The name of the detector that picks one metric per training split.
pub const BEST_SINGLE: &str = "best single metric (chosen on train)";
/// The gated detectors judge outputs of at least this many tokens (the
/// first [`LENGTH_BINS`] bin, ≤ 32 tokens, gets no verdict).
pub const MIN_JUDGED_TOKENS: usize = 33;
/// [`BEST_SINGLE`], abstaining on outputs under [`MIN_JUDGED_TOKENS`].
pub const BEST_SINGLE_GATED: &str = "best single metric, abstains under 33 tokens";
/// [`COMBINED`], abstaining on outputs under [`MIN_JUDGED_TOKENS`].
pub const COMBINED_GATED: &str = "combined, abstains under 33 tokens";
const SEED: u64 = 7;

/// How one detector fares on prompts it was not fit on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeldOut {
    /// The attack's label (e.g. `int4`).
    pub setting: String,
    /// The detector's name: a metric, [`BEST_SINGLE`], [`COMBINED`] or a gated variant.
    pub detector: String,
    /// Distinct honest samples judged (each tested once per repeat).
    pub honest_n: usize,
    /// Distinct fraud samples judged (each tested once per repeat).
    pub fraud_n: usize,
    /// Training folds (of all repeats) that flipped the metric's nominal
    /// direction, out of `fits`.
    pub flipped: usize,
    /// Detector fits made: folds times repeats.
    pub fits: usize,
    /// Mean over folds and repeats of the test fold's AUC.
    pub auc: f64,
    /// Per repeat: fraud samples caught on their test fold (each once).
    pub detected: Vec<usize>,
    /// Per repeat: honest samples flagged on their test fold (each once).
    pub honest_flagged: Vec<usize>,
    /// The flag rate the thresholds are built for, k/(n + 1) with n the
    /// training honest scores of a fit, averaged over fits.
    pub design_rate: f64,
    /// Leave-one-source-out: (source, detected, fraud n, flagged, honest n).
    pub by_source: Vec<SourceResult>,
    /// For [`BEST_SINGLE`]: how many training splits chose each metric.
    pub chosen: BTreeMap<String, usize>,
    /// Detection and honest flags per output-length bin (non-empty bins).
    pub by_length: Vec<LengthResult>,
    /// Gated detectors: distinct honest and fraud samples that got no
    /// verdict (too short); not in `honest_n` / `fraud_n`.
    pub abstained_honest: usize,
    /// Distinct fraud samples that got no verdict (gated detectors only).
    pub abstained_fraud: usize,
}

/// Held-out detection within one output-length bin ([`LENGTH_BINS`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LengthResult {
    /// The bin's label, output tokens (e.g. `33-99`).
    pub bin: String,
    /// Distinct samples in the bin.
    pub fraud_n: usize,
    /// Distinct honest samples in the bin.
    pub honest_n: usize,
    /// Mean over repeats of the samples caught / flagged on their test fold.
    pub detected: f64,
    /// Mean over repeats of the bin's honest samples flagged on their test fold.
    pub honest_flagged: f64,
}

impl LengthResult {
    /// Mean share of the bin's fraud samples caught (0 when the bin has none).
    pub fn detection_rate(&self) -> f64 {
        self.detected / self.fraud_n.max(1) as f64
    }

    /// Mean share of the bin's honest samples flagged (0 when the bin has none).
    pub fn flag_rate(&self) -> f64 {
        self.honest_flagged / self.honest_n.max(1) as f64
    }
}

/// A detector fit on every other source and tested on this one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceResult {
    /// The prompt source left out of fitting and tested on.
    pub source: String,
    /// Fraud samples of the held-out source caught.
    pub detected: usize,
    /// Fraud samples of the held-out source judged.
    pub fraud_n: usize,
    /// Honest samples of the held-out source flagged.
    pub honest_flagged: usize,
    /// Honest samples of the held-out source judged.
    pub honest_n: usize,
}

impl HeldOut {
    /// Mean detection rate over repeats, and its range.
    pub fn detection(&self) -> (f64, f64, f64) {
        let rates: Vec<f64> = self
            .detected
            .iter()
            .map(|&d| d as f64 / self.fraud_n.max(1) as f64)
            .collect();
        let mean = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
        let lo = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (mean, lo, hi)
    }

    /// Mean detection rate over repeats counting every abstention as a
    /// miss: the share of all fraud samples caught.
    pub fn detection_of_all(&self) -> f64 {
        let (mean, _, _) = self.detection();
        let judged = self.fraud_n as f64;
        mean * judged / (judged + self.abstained_fraud as f64).max(1.0)
    }

    /// The most honest samples any repeat flagged, with the exact 95% upper
    /// bound on the flag rate it allows.
    pub fn worst_flagged(&self) -> (usize, f64) {
        let k = self.honest_flagged.iter().copied().max().unwrap_or(0);
        (k, clopper_pearson_upper(k, self.honest_n))
    }

    /// Honest samples flagged per partition: the mean, the fewest and the
    /// most.
    pub fn flagged_spread(&self) -> (f64, usize, usize) {
        let counts = &self.honest_flagged;
        let mean = counts.iter().sum::<usize>() as f64 / counts.len().max(1) as f64;
        let lo = counts.iter().copied().min().unwrap_or(0);
        let hi = counts.iter().copied().max().unwrap_or(0);
        (mean, lo, hi)
    }

    /// The mean honest flag rate over partitions.
    pub fn mean_flag_rate(&self) -> f64 {
        self.flagged_spread().0 / self.honest_n.max(1) as f64
    }
}

/// The flag rate a conformal threshold is built for with `n` training
/// honest scores ([`nsed_stats::conformal::design_rate`]).
pub fn design_rate(n: usize, alpha: f64) -> f64 {
    nsed_stats::conformal::design_rate(n, alpha)
}

/// One scored sample: its prompt, and the detector inputs.
#[derive(Debug, Clone)]
pub(super) struct Row {
    /// The prompt as folds split it: the first sample index that answered
    /// the same prompt id (a source that repeats a prompt at two indices
    /// gives both one group).
    pub(super) group: usize,
    pub(super) source: String,
    pub(super) fraud: bool,
    /// Every metric's fraud score in [`metric_directions`] order (None when
    /// the sample lacks it).
    pub(super) features: Vec<Option<f64>>,
    /// The sample's token ranks (PIT) in the validator's sampler; empty
    /// where the run did not record them.
    pub(super) pit: Vec<f32>,
    /// Output length in tokens.
    pub(super) tokens: usize,
}

/// Every run's rows per attack: the honest rows, then that attack's.
pub(super) fn rows_by_setting(samples: &[Sample]) -> Vec<(String, Vec<Row>)> {
    let directions = metric_directions();
    let mut first_index: BTreeMap<&str, usize> = BTreeMap::new();
    for s in samples {
        let first = first_index.entry(s.prompt.as_str()).or_insert(s.index);
        *first = (*first).min(s.index);
    }
    let row = |s: &Sample| Row {
        group: first_index[s.prompt.as_str()],
        source: source_of(&s.prompt),
        fraud: s.role == Role::Fraud,
        features: directions
            .iter()
            .map(|(m, better)| value(s, m).map(|v| fraud_score(*better, v)))
            .collect(),
        pit: s.positions.pit.clone(),
        tokens: s.tokens,
    };
    let ok = || samples.iter().filter(|s| s.error.is_none());
    let honest: Vec<Row> = ok().filter(|s| s.role == Role::Honest).map(row).collect();
    let mut settings: Vec<&str> = ok()
        .filter(|s| s.role == Role::Fraud)
        .map(|s| s.setting.as_str())
        .collect();
    settings.sort();
    settings.dedup();
    settings
        .into_iter()
        .map(|setting| {
            let rows = honest
                .iter()
                .cloned()
                .chain(ok().filter(|s| s.setting == setting).map(row))
                .collect();
            (setting.to_string(), rows)
        })
        .collect()
}

/// Every detector of every attack in a run, under the held-out protocol.
pub fn evaluate(samples: &[Sample]) -> Vec<HeldOut> {
    let names: Vec<String> = metric_directions().into_iter().map(|(m, _)| m).collect();
    let mut detectors: Vec<(String, Detector)> = names
        .iter()
        .enumerate()
        .map(|(i, m)| (m.clone(), Detector::Metric(i)))
        .collect();
    detectors.push((BEST_SINGLE.into(), Detector::BestSingle));
    detectors.push((COMBINED.into(), Detector::Combined));
    let gated = [
        (BEST_SINGLE_GATED, Detector::BestSingle),
        (COMBINED_GATED, Detector::Combined),
    ];
    let mut out = Vec::new();
    for (setting, rows) in rows_by_setting(samples) {
        for (name, detector) in &detectors {
            if let Some(h) = held_out(&setting, name, *detector, &rows, &names) {
                out.push(h);
            }
        }
        let (judged, abstained_honest, abstained_fraud) = gate(&rows);
        for (name, detector) in gated {
            if let Some(h) = held_out(&setting, name, detector, &judged, &names) {
                out.push(HeldOut {
                    abstained_honest,
                    abstained_fraud,
                    ..h
                });
            }
        }
    }
    out
}

/// The rows of at least [`MIN_JUDGED_TOKENS`] output tokens, which the gated
/// detectors judge, and how many honest and fraud rows they abstain on.
fn gate(rows: &[Row]) -> (Vec<Row>, usize, usize) {
    let (judged, short): (Vec<Row>, Vec<Row>) = rows
        .iter()
        .cloned()
        .partition(|r| r.tokens >= MIN_JUDGED_TOKENS);
    let fraud = short.iter().filter(|r| r.fraud).count();
    (judged, short.len() - fraud, fraud)
}

/// `gsm8k/17` → `gsm8k`, `file:mine/3` → `file:mine`.
fn source_of(prompt_id: &str) -> String {
    prompt_id
        .split_once('/')
        .map_or(prompt_id, |(s, _)| s)
        .to_string()
}

#[derive(Debug, Clone, Copy)]
enum Detector {
    /// One metric, by index into [`metric_directions`].
    Metric(usize),
    /// The metric that separates the training split best, in the direction
    /// it separates it: the "best per-sample detector" without peeking.
    BestSingle,
    Combined,
}

/// A detector's score of one row (None when it lacks the input).
type ScoreFn = Box<dyn Fn(&Row) -> Option<f64>>;

/// A detector fit on training rows: a score function and its threshold.
struct Fitted {
    score: ScoreFn,
    threshold: f64,
    /// The honest flag rate the threshold is built for.
    design: f64,
    flipped: bool,
    /// The metric a [`Detector::BestSingle`] chose.
    chosen: Option<usize>,
}

/// Metric `i`'s training AUC in its nominal direction.
fn training_auc(train: &[&Row], i: usize) -> Option<f64> {
    let (h, f) = split_scores(train, &|r: &Row| r.features[i]);
    auc(&h, &f)
}

/// Metric `i` as a score, flipped when `flip`.
fn oriented(i: usize, flip: bool) -> ScoreFn {
    let sign = if flip { -1.0 } else { 1.0 };
    Box::new(move |r: &Row| r.features[i].map(|v| sign * v))
}

fn fit(detector: Detector, train: &[&Row]) -> Option<Fitted> {
    let mut chosen = None;
    let (score, flipped): (ScoreFn, bool) = match detector {
        Detector::Metric(i) => {
            let flip = training_auc(train, i)? < 0.5;
            (oriented(i, flip), flip)
        }
        Detector::BestSingle => {
            let width = train.first()?.features.len();
            // Only metrics every training sample has compete: one recorded
            // on a few samples (token ranks, where a run added them late)
            // can separate those few perfectly by chance, and the samples
            // without it could then not be scored.
            let (i, auc) = (0..width)
                .filter(|&i| train.iter().all(|r| r.features[i].is_some()))
                .filter_map(|i| training_auc(train, i).map(|a| (i, a)))
                .max_by(|a, b| (a.1 - 0.5).abs().total_cmp(&(b.1 - 0.5).abs()))?;
            chosen = Some(i);
            (oriented(i, auc < 0.5), auc < 0.5)
        }
        Detector::Combined => {
            let model = Logistic::fit(train)?;
            (Box::new(move |r: &Row| Some(model.score(r))), false)
        }
    };
    let (h, f) = split_scores(train, &score);
    if f.is_empty() {
        return None;
    }
    let threshold = conformal_threshold(&h, TARGET_FPR)?;
    Some(Fitted {
        score,
        threshold,
        design: design_rate(h.len(), TARGET_FPR),
        flipped,
        chosen,
    })
}

/// The split-conformal bound of the honest scores
/// ([`nsed_stats::conformal::upper_threshold`]).
fn conformal_threshold(honest: &[f64], alpha: f64) -> Option<f64> {
    nsed_stats::conformal::upper_threshold(honest, alpha)
}

fn split_scores(rows: &[&Row], score: &dyn Fn(&Row) -> Option<f64>) -> (Vec<f64>, Vec<f64>) {
    let (mut h, mut f) = (Vec::new(), Vec::new());
    for r in rows {
        if let Some(v) = score(r) {
            if r.fraud {
                f.push(v);
            } else {
                h.push(v);
            }
        }
    }
    (h, f)
}

/// Counts of what a fitted detector flags among `test` rows: (fraud
/// caught, fraud scored, honest flagged, honest scored), and the test AUC.
fn judge(fitted: &Fitted, test: &[&Row]) -> (usize, usize, usize, usize, Option<f64>) {
    let (h, f) = split_scores(test, &fitted.score);
    let over = |v: &[f64]| v.iter().filter(|&&x| x > fitted.threshold).count();
    (over(&f), f.len(), over(&h), h.len(), auc(&h, &f))
}

/// Per [`LENGTH_BINS`] bin: (fraud caught, fraud n, honest flagged, honest
/// n) of the scored test rows.
fn judge_by_length(fitted: &Fitted, test: &[&Row]) -> Vec<[usize; 4]> {
    let mut out = vec![[0; 4]; LENGTH_BINS.len()];
    for r in test {
        let Some(score) = (fitted.score)(r) else {
            continue;
        };
        let Some(bin) = LENGTH_BINS
            .iter()
            .position(|&(lo, hi, _)| (lo..=hi).contains(&r.tokens))
        else {
            continue;
        };
        let hit = usize::from(score > fitted.threshold);
        let side = if r.fraud { 0 } else { 2 };
        out[bin][side] += hit;
        out[bin][side + 1] += 1;
    }
    out
}

fn held_out(
    setting: &str,
    name: &str,
    detector: Detector,
    rows: &[Row],
    metric_names: &[String],
) -> Option<HeldOut> {
    let mut groups: Vec<usize> = rows.iter().map(|r| r.group).collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.len() < 2 * FOLDS {
        return None;
    }
    let mut rng = SplitMix64::new(SEED);
    let mut result = HeldOut {
        setting: setting.into(),
        detector: name.into(),
        honest_n: 0,
        fraud_n: 0,
        flipped: 0,
        fits: 0,
        auc: 0.0,
        detected: Vec::new(),
        honest_flagged: Vec::new(),
        design_rate: 0.0,
        by_source: Vec::new(),
        chosen: BTreeMap::new(),
        by_length: Vec::new(),
        abstained_honest: 0,
        abstained_fraud: 0,
    };
    let mut aucs = Vec::new();
    let mut design = 0.0;
    let mut bins = vec![[0usize; 4]; LENGTH_BINS.len()];
    for _ in 0..REPEATS {
        let fold_of = partition(&groups, &mut rng);
        let (mut caught, mut flagged, mut fraud_n, mut honest_n) = (0, 0, 0, 0);
        for fold in 0..FOLDS {
            let (train, test): (Vec<&Row>, Vec<&Row>) =
                rows.iter().partition(|r| fold_of[&r.group] != fold);
            let fitted = fit(detector, &train)?;
            result.fits += 1;
            design += fitted.design;
            result.flipped += usize::from(fitted.flipped);
            if let Some(name) = fitted.chosen.and_then(|i| metric_names.get(i)) {
                *result.chosen.entry(name.clone()).or_default() += 1;
            }
            let (c, f, h, hn, auc) = judge(&fitted, &test);
            for (sum, add) in bins.iter_mut().zip(judge_by_length(&fitted, &test)) {
                for (a, b) in sum.iter_mut().zip(add) {
                    *a += b;
                }
            }
            (caught, fraud_n, flagged, honest_n) =
                (caught + c, fraud_n + f, flagged + h, honest_n + hn);
            aucs.extend(auc);
        }
        result.detected.push(caught);
        result.honest_flagged.push(flagged);
        (result.fraud_n, result.honest_n) = (fraud_n, honest_n);
    }
    result.auc = aucs.iter().sum::<f64>() / aucs.len().max(1) as f64;
    result.design_rate = design / result.fits.max(1) as f64;
    result.by_source = by_source(detector, rows);
    // Every test row is scored once per repeat.
    let per_repeat = |x: usize| x as f64 / REPEATS as f64;
    result.by_length = LENGTH_BINS
        .iter()
        .zip(&bins)
        .filter(|(_, b)| b[1] + b[3] > 0)
        .map(|(&(_, _, label), b)| LengthResult {
            bin: label.into(),
            fraud_n: b[1] / REPEATS,
            honest_n: b[3] / REPEATS,
            detected: per_repeat(b[0]),
            honest_flagged: per_repeat(b[2]),
        })
        .collect();
    Some(result)
}

/// A random assignment of prompt groups to [`FOLDS`] equal folds.
fn partition(groups: &[usize], rng: &mut SplitMix64) -> BTreeMap<usize, usize> {
    let mut shuffled = groups.to_vec();
    rng.shuffle(&mut shuffled);
    shuffled
        .into_iter()
        .enumerate()
        .map(|(pos, index)| (index, pos % FOLDS))
        .collect()
}

fn by_source(detector: Detector, rows: &[Row]) -> Vec<SourceResult> {
    let mut sources: Vec<&str> = rows.iter().map(|r| r.source.as_str()).collect();
    sources.sort_unstable();
    sources.dedup();
    if sources.len() < 2 {
        return Vec::new();
    }
    sources
        .into_iter()
        .filter_map(|source| {
            let (train, test): (Vec<&Row>, Vec<&Row>) =
                rows.iter().partition(|r| r.source != source);
            let fitted = fit(detector, &train)?;
            let (detected, fraud_n, honest_flagged, honest_n, _) = judge(&fitted, &test);
            Some(SourceResult {
                source: source.into(),
                detected,
                fraud_n,
                honest_flagged,
                honest_n,
            })
        })
        .collect()
}

/// Per-feature mean and standard deviation of some rows: features become
/// z-scores, and a missing one sits at the mean (0).
pub(super) struct Standardizer {
    mean: Vec<f64>,
    sd: Vec<f64>,
}

impl Standardizer {
    pub(super) fn fit(rows: &[&Row]) -> Self {
        let d = rows.first().map_or(0, |r| r.features.len());
        let (mut mean, mut sd) = (vec![0.0; d], vec![1.0; d]);
        for j in 0..d {
            let v: Vec<f64> = rows.iter().filter_map(|r| r.features[j]).collect();
            if v.len() < 2 {
                continue;
            }
            mean[j] = v.iter().sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (x - mean[j]).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
            sd[j] = if var > 0.0 { var.sqrt() } else { 1.0 };
        }
        Self { mean, sd }
    }

    pub(super) fn apply(&self, r: &Row) -> Vec<f64> {
        r.features
            .iter()
            .enumerate()
            .map(|(j, v)| v.map_or(0.0, |v| (v - self.mean[j]) / self.sd[j]))
            .collect()
    }
}

/// L2-regularized logistic regression on standardized features, fit by
/// Newton's method; a missing feature is imputed with its training mean
/// (0 after standardizing).
pub(super) struct Logistic {
    scale: Standardizer,
    /// Intercept first.
    weights: Vec<f64>,
}

const RIDGE: f64 = 1.0;
const NEWTON_STEPS: usize = 25;

impl Logistic {
    pub(super) fn fit(train: &[&Row]) -> Option<Self> {
        let d = train.first()?.features.len();
        let mut model = Self {
            scale: Standardizer::fit(train),
            weights: vec![0.0; d + 1],
        };
        let xs: Vec<Vec<f64>> = train.iter().map(|r| model.inputs(r)).collect();
        let ys: Vec<f64> = train.iter().map(|r| f64::from(u8::from(r.fraud))).collect();
        if !ys.contains(&0.0) || !ys.contains(&1.0) {
            return None;
        }
        for _ in 0..NEWTON_STEPS {
            let p = d + 1;
            let mut grad = vec![0.0; p];
            let mut hess = vec![vec![0.0; p]; p];
            for (x, &y) in xs.iter().zip(&ys) {
                let mu = sigmoid(dot(&model.weights, x));
                for a in 0..p {
                    grad[a] += (mu - y) * x[a];
                    for b in 0..p {
                        hess[a][b] += mu * (1.0 - mu) * x[a] * x[b];
                    }
                }
            }
            // The intercept is not penalized.
            for a in 1..p {
                grad[a] += RIDGE * model.weights[a];
                hess[a][a] += RIDGE;
            }
            let step = solve(hess, grad)?;
            for (w, s) in model.weights.iter_mut().zip(&step) {
                *w -= s;
            }
            if step.iter().map(|s| s.abs()).fold(0.0, f64::max) < 1e-9 {
                break;
            }
        }
        Some(model)
    }

    /// 1 (the intercept), then the standardized features.
    fn inputs(&self, r: &Row) -> Vec<f64> {
        std::iter::once(1.0).chain(self.scale.apply(r)).collect()
    }

    /// The log-odds of fraud.
    pub(super) fn score(&self, r: &Row) -> f64 {
        dot(&self.weights, &self.inputs(r))
    }
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `a⁻¹ b` by Gaussian elimination with partial pivoting (a is small and,
/// with the ridge, positive definite); None if singular.
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        b.swap(col, pivot);
        for row in col + 1..n {
            let f = a[row][col] / a[col][col];
            let (upper, lower) = a.split_at_mut(row);
            for (target, source) in lower[0][col..].iter_mut().zip(&upper[col][col..]) {
                *target -= f * source;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let tail: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - tail) / a[row][row];
    }
    Some(x)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A percentage with two decimals: flag rates near 1% differ in the second.
pub fn pct2(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// How to read [`markdown`]'s table.
pub fn legend() -> String {
    format!(
        "Fit on training prompts, reported on held-out ones ({FOLDS}-fold cross-fitting by prompt, \
         {REPEATS} partitions with fresh seeds; folds split distinct prompts; conformal thresholds: \
         the k-th largest of n training honest scores, k = ⌊{}%·(n + 1)⌋, so a fresh honest \
         sample is flagged with probability k/(n + 1), the design rate, whatever the detector; \
         direction fit on the training folds). Detected: mean over partitions (range). Honest \
         flagged: each honest sample tested once per partition; the mean count over partitions \
         (range), its rate beside the design rate, and the exact 95% upper bound of the worst \
         partition. Unseen source: fit on the other prompt sources, tested on this one (worst \
         source).\n",
        TARGET_FPR * 100.0
    )
}

/// The table header of [`markdown`].
pub const TABLE_HEADER: &str = "| model | attack | detector | direction (train) | held-out AUC | detected | honest flagged: mean (range) · rate · design · 95% upper | worst unseen source: detected · flagged |\n\
     |---|---|---|---|---|---|---|---|\n";

/// The held-out rows of one run (no header).
pub fn markdown(model: &str, results: &[HeldOut]) -> String {
    let mut out = String::new();
    for r in results {
        out.push_str(&format!(
            "| {model} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.setting,
            r.detector,
            direction_cell(r),
            format_args!("{:.3}", r.auc),
            detection_cell(r),
            flagged_cell(r),
            worst_source_cell(r),
        ));
    }
    out
}

/// The detectors whose length breakdown a report shows (every detector's is
/// in [`length_csv`]).
pub const LENGTH_DETECTORS: [&str; 3] = ["gonka_similarity", BEST_SINGLE, COMBINED];

/// Held-out detection per output-length bin for [`LENGTH_DETECTORS`]: each
/// bin's own detection and honest flag rates (mean over repeats) with its n.
/// Every executor has the same token budget, so the bins compare like with
/// like.
pub fn length_markdown(results: &[HeldOut]) -> String {
    let mut out = String::from(
        "| attack | detector | output tokens | fraud n | detected | honest n | honest flagged |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in results
        .iter()
        .filter(|r| LENGTH_DETECTORS.contains(&r.detector.as_str()))
    {
        for b in &r.by_length {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                r.setting,
                r.detector,
                b.bin,
                b.fraud_n,
                if b.fraud_n > 0 {
                    pct(b.detection_rate())
                } else {
                    "–".into()
                },
                b.honest_n,
                if b.honest_n > 0 {
                    pct(b.flag_rate())
                } else {
                    "–".into()
                },
            ));
        }
    }
    out
}

/// The columns of [`length_csv`].
pub const LENGTH_CSV_HEADER: [&str; 7] = [
    "setting",
    "detector",
    "tokens",
    "fraud_n",
    "detected_mean",
    "honest_n",
    "honest_flagged_mean",
];

/// One line per (attack, detector, length bin); counts are means over
/// repeats.
pub fn length_csv(results: &[HeldOut]) -> String {
    let rows = results.iter().flat_map(|r| {
        r.by_length.iter().map(move |b| {
            vec![
                r.setting.clone(),
                r.detector.clone(),
                b.bin.clone(),
                b.fraud_n.to_string(),
                format!("{:.1}", b.detected),
                b.honest_n.to_string(),
                format!("{:.1}", b.honest_flagged),
            ]
        })
    });
    crate::results::csv_text::csv_text(&LENGTH_CSV_HEADER, rows)
}

/// The columns of [`csv()`].
pub const CSV_HEADER: [&str; 16] = [
    "setting",
    "detector",
    "honest_n",
    "fraud_n",
    "flipped_folds",
    "folds",
    "heldout_auc",
    "detected_mean",
    "detected_min",
    "detected_max",
    "honest_flagged_max",
    "honest_flagged_mean",
    "honest_flagged_min",
    "design_rate",
    "abstained_honest",
    "abstained_fraud",
];

/// One line per (attack, detector); `detected_*` are rates over repeats of
/// the judged samples (all but the gated detectors' abstentions).
pub fn csv(results: &[HeldOut]) -> String {
    let rows = results.iter().map(|r| {
        let (mean, lo, hi) = r.detection();
        let (flagged_mean, flagged_min, flagged_max) = r.flagged_spread();
        vec![
            r.setting.clone(),
            r.detector.clone(),
            r.honest_n.to_string(),
            r.fraud_n.to_string(),
            r.flipped.to_string(),
            r.fits.to_string(),
            format!("{:.4}", r.auc),
            format!("{mean:.4}"),
            format!("{lo:.4}"),
            format!("{hi:.4}"),
            flagged_max.to_string(),
            format!("{flagged_mean:.2}"),
            flagged_min.to_string(),
            format!("{:.5}", r.design_rate),
            r.abstained_honest.to_string(),
            r.abstained_fraud.to_string(),
        ]
    });
    crate::results::csv_text::csv_text(&CSV_HEADER, rows)
}

fn direction_cell(r: &HeldOut) -> String {
    match (r.detector.as_str(), r.flipped) {
        (COMBINED | COMBINED_GATED, _) => "fit".into(),
        (BEST_SINGLE | BEST_SINGLE_GATED, _) => {
            let mut picks: Vec<(&String, &usize)> = r.chosen.iter().collect();
            picks.sort_by(|a, b| b.1.cmp(a.1));
            let named: Vec<String> = picks
                .iter()
                .map(|(m, k)| format!("{m} {k}/{}", r.fits))
                .collect();
            format!("chose {}", named.join(", "))
        }
        (_, 0) => "as named".into(),
        (_, k) if k == r.fits => "flipped".into(),
        (_, k) => format!("flipped in {k}/{} folds", r.fits),
    }
}

fn detection_cell(r: &HeldOut) -> String {
    let (mean, lo, hi) = r.detection();
    let cell = format!("{} ({}–{}) of {}", pct(mean), pct(lo), pct(hi), r.fraud_n);
    if r.abstained_fraud == 0 {
        return cell;
    }
    format!(
        "{cell} judged; {} abstained ({} of all)",
        r.abstained_fraud,
        pct(r.detection_of_all())
    )
}

fn flagged_cell(r: &HeldOut) -> String {
    let (mean, lo, hi) = r.flagged_spread();
    let (_, upper) = r.worst_flagged();
    let cell = format!(
        "{mean:.2}/{} ({lo}–{hi}) · {} · design {} · ≤ {}",
        r.honest_n,
        pct2(r.mean_flag_rate()),
        pct2(r.design_rate),
        pct(upper)
    );
    if r.abstained_honest == 0 {
        return cell;
    }
    format!("{cell}; {} abstained", r.abstained_honest)
}

fn worst_source_cell(r: &HeldOut) -> String {
    let rate = |s: &SourceResult| s.detected as f64 / s.fraud_n.max(1) as f64;
    r.by_source
        .iter()
        .filter(|s| s.fraud_n > 0)
        .min_by(|a, b| rate(a).total_cmp(&rate(b)))
        .map_or("–".into(), |s| {
            format!(
                "{} {}/{} · {}/{}",
                s.source, s.detected, s.fraud_n, s.honest_flagged, s.honest_n
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solve_inverts_a_small_system() {
        let a = vec![vec![4.0, 1.0], vec![1.0, 3.0]];
        let x = solve(a, vec![1.0, 2.0]).expect("regular");
        assert!((x[0] - 1.0 / 11.0).abs() < 1e-12 && (x[1] - 7.0 / 11.0).abs() < 1e-12);
        assert!(solve(vec![vec![0.0, 0.0], vec![0.0, 0.0]], vec![1.0, 1.0]).is_none());
    }

    /// Rows with one informative feature (fraud shifted by `shift`,
    /// pointing the "wrong" way when negative) and one pure-noise feature.
    fn rows(n: usize, shift: f64, seed: u64) -> Vec<Row> {
        let mut rng = SplitMix64::new(seed);
        let mut noise = || (rng.next_u64() % 10_000) as f64 / 10_000.0;
        let sources = ["gsm8k", "lcb", "multilingual"];
        let mut out = Vec::new();
        for i in 0..n {
            for fraud in [false, true] {
                let signal = noise() + if fraud { shift } else { 0.0 };
                out.push(Row {
                    group: i,
                    source: sources[i % 3].into(),
                    fraud,
                    features: vec![Some(signal), Some(noise())],
                    pit: Vec::new(),
                    tokens: 20 + 40 * (i % 4),
                });
            }
        }
        out
    }

    fn names() -> Vec<String> {
        vec!["signal".into(), "noise".into()]
    }

    #[test]
    fn the_best_single_metric_is_chosen_on_each_training_split() {
        let rows = rows(60, -2.0, 5);
        let h =
            held_out("int4", BEST_SINGLE, Detector::BestSingle, &rows, &names()).expect("enough");
        assert_eq!(h.chosen.get("signal"), Some(&h.fits), "{:?}", h.chosen);
        assert_eq!(h.flipped, h.fits);
        assert!(h.detected.iter().all(|&d| d == 60));
    }

    #[test]
    fn the_best_single_metric_is_one_every_sample_has() {
        // A third metric separates perfectly but is recorded on 8 of the
        // 60 prompts only: it must not be chosen, and every sample is scored.
        let mut rows = rows(60, 0.5, 7);
        for r in &mut rows {
            let partial = (r.group < 8).then_some(if r.fraud { 10.0 } else { 0.0 });
            r.features.push(partial);
        }
        let names = vec!["signal".into(), "noise".into(), "partial".into()];
        let h = held_out("int4", BEST_SINGLE, Detector::BestSingle, &rows, &names).expect("enough");
        assert_eq!(h.chosen.get("partial"), None, "{:?}", h.chosen);
        assert_eq!(h.chosen.get("signal"), Some(&h.fits), "{:?}", h.chosen);
        assert_eq!((h.honest_n, h.fraud_n), (60, 60));
        // Negative control: alone, the partial metric is a detector of its 8.
        let alone = held_out("int4", "partial", Detector::Metric(2), &rows, &names);
        let scored = alone.as_ref().map(|a| (a.honest_n, a.fraud_n));
        assert!(matches!(scored, None | Some((8, 8))), "{alone:?}");
    }

    fn sample(index: usize, prompt: &str, fraud: bool) -> Sample {
        let (role, setting) = if fraud {
            ("fraud", "int4")
        } else {
            ("honest", "honest")
        };
        serde_json::from_value(serde_json::json!({
            "key": format!("{setting}/{index}"), "role": role, "setting": setting,
            "index": index, "prompt": prompt, "lang": "en", "temperature": 0.99, "seed": 1,
            "inference_id": "x", "tokens": 40, "finish": "eos", "precheck": null,
            "metrics": {"gonka_similarity": 0.5}, "seed_mismatch": null,
            "executor_seconds": 0.0, "validator_seconds": 0.0, "error": null,
            "positions": {"executor_logprob": [], "validator_logprob": [], "gonka_d": []}
        }))
        .expect("sample")
    }

    #[test]
    fn a_prompt_repeated_at_two_indices_is_one_group() {
        let prompts = ["m/a", "m/b", "m/c", "m/a"];
        let samples: Vec<Sample> = [false, true]
            .into_iter()
            .flat_map(|fraud| {
                prompts
                    .iter()
                    .enumerate()
                    .map(move |(i, p)| sample(i, p, fraud))
            })
            .collect();
        let (_, rows) = rows_by_setting(&samples).pop().expect("int4");
        let groups: Vec<usize> = rows.iter().map(|r| r.group).collect();
        assert_eq!(groups, [0, 1, 2, 0, 0, 1, 2, 0]);
        // Negative control: distinct prompts keep their own index.
        let distinct: Vec<Sample> = ["m/a", "m/b"]
            .iter()
            .enumerate()
            .map(|(i, p)| sample(i, p, false))
            .chain([sample(0, "m/a", true), sample(1, "m/b", true)])
            .collect();
        let (_, rows) = rows_by_setting(&distinct).pop().expect("int4");
        assert_eq!(
            rows.iter().map(|r| r.group).collect::<Vec<_>>(),
            [0, 1, 0, 1]
        );
    }

    #[test]
    fn the_design_rate_is_k_over_n_plus_one() {
        // 160 training honest scores: k = 1, 1/161; 80: k = 1 (⌊0.81⌋ = 0,
        // at least 1), 1/81 = 1.23% > 1%; 299: k = 3, 3/300 = 1%.
        assert!((design_rate(160, 0.01) - 1.0 / 161.0).abs() < 1e-12);
        assert!((design_rate(80, 0.01) - 1.0 / 81.0).abs() < 1e-12);
        assert!((design_rate(299, 0.01) - 0.01).abs() < 1e-12);
        let rows = rows(100, 0.3, 5);
        let h = held_out("int4", "m", Detector::Metric(0), &rows, &names()).expect("enough");
        assert!(
            (h.design_rate - 1.0 / 81.0).abs() < 1e-12,
            "{}",
            h.design_rate
        );
        assert_eq!(h.honest_flagged.len(), REPEATS);
        let (mean, lo, hi) = h.flagged_spread();
        assert!(lo as f64 <= mean && mean <= hi as f64);
    }

    #[test]
    fn length_bins_split_the_held_out_counts() {
        // Lengths 20, 60, 100, 140 in turn: bins ≤32, 33-99 and 100-255.
        let rows = rows(60, 0.3, 2);
        let h = held_out("int4", "m", Detector::Metric(0), &rows, &names()).expect("enough");
        let bins: Vec<&str> = h.by_length.iter().map(|b| b.bin.as_str()).collect();
        assert_eq!(bins, ["≤32", "33-99", "100-255"]);
        let fraud: Vec<usize> = h.by_length.iter().map(|b| b.fraud_n).collect();
        assert_eq!(fraud, [15, 15, 30]);
        let total: f64 = h.by_length.iter().map(|b| b.detected).sum();
        let mean = h.detected.iter().sum::<usize>() as f64 / REPEATS as f64;
        assert!((total - mean).abs() < 1e-9, "{total} vs {mean}");
        let flagged: f64 = h.by_length.iter().map(|b| b.honest_flagged).sum();
        let mean = h.honest_flagged.iter().sum::<usize>() as f64 / REPEATS as f64;
        assert!((flagged - mean).abs() < 1e-9);
        assert!(h
            .by_length
            .iter()
            .all(|b| (0.0..=1.0).contains(&b.detection_rate())));
    }

    #[test]
    fn the_gate_abstains_on_short_outputs_and_counts_them() {
        // Short (20-token) honest outputs look like fraud: ungated, the
        // threshold cannot both catch fraud and pass them; gated, they get
        // no verdict and the rest separate cleanly.
        let mut rows = rows(60, 2.0, 3);
        for r in rows.iter_mut().filter(|r| !r.fraud && r.tokens < 33) {
            r.features[0] = r.features[0].map(|v| v + 2.0);
        }
        let plain =
            held_out("int4", BEST_SINGLE, Detector::BestSingle, &rows, &names()).expect("enough");
        let (judged, abstained_honest, abstained_fraud) = gate(&rows);
        let gated = held_out(
            "int4",
            BEST_SINGLE_GATED,
            Detector::BestSingle,
            &judged,
            &names(),
        )
        .expect("enough");
        let gated = HeldOut {
            abstained_honest,
            abstained_fraud,
            ..gated
        };
        assert_eq!((gated.abstained_honest, gated.abstained_fraud), (15, 15));
        assert_eq!((gated.honest_n, gated.fraud_n), (45, 45));
        assert_eq!((plain.abstained_honest, plain.abstained_fraud), (0, 0));
        assert!(
            gated.detected.iter().all(|&d| d == 45),
            "{:?}",
            gated.detected
        );
        // The threshold is the largest of ~36 training honest scores: about
        // 45/37 of the 45 test honest samples cross it per repeat.
        let mean = gated.honest_flagged.iter().sum::<usize>() as f64 / REPEATS as f64;
        assert!(mean <= 2.0, "{:?}", gated.honest_flagged);
        assert!(gated.worst_flagged().0 <= 5, "{:?}", gated.honest_flagged);
        // Negative control: ungated, the disguised short honest outputs
        // cost either detection or honest flags.
        let (mean, _, _) = plain.detection();
        assert!(mean < 0.95 || plain.worst_flagged().0 >= 10, "{plain:?}");
        // An abstention counts as a miss among all fraud samples.
        assert!((gated.detection_of_all() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn every_sample_is_tested_once_per_repeat() {
        let rows = rows(60, 2.0, 1);
        let h = held_out("int4", "m", Detector::Metric(0), &rows, &names()).expect("enough");
        assert_eq!((h.honest_n, h.fraud_n), (60, 60));
        assert_eq!(h.detected.len(), REPEATS);
        assert_eq!(h.fits, REPEATS * FOLDS);
        // Fully separated: everything caught, AUC 1. The threshold is the
        // largest training honest score, so a test honest sample above it
        // is flagged now and then: that is the rate being measured.
        assert!(h.detected.iter().all(|&d| d == 60), "{:?}", h.detected);
        assert!(
            h.honest_flagged.iter().all(|&k| k <= 5),
            "{:?}",
            h.honest_flagged
        );
        assert!(
            h.honest_flagged.iter().any(|&k| k > 0),
            "{:?}",
            h.honest_flagged
        );
        assert_eq!(h.auc, 1.0);
        assert_eq!(h.flipped, 0);
        assert_eq!(h.by_source.len(), 3);
        assert!(h
            .by_source
            .iter()
            .all(|s| s.detected == s.fraud_n && s.fraud_n == 20));
    }

    #[test]
    fn a_metric_pointing_the_wrong_way_is_flipped_on_training_data() {
        let rows = rows(60, -2.0, 2);
        let h = held_out("int4", "m", Detector::Metric(0), &rows, &names()).expect("enough");
        assert_eq!(h.flipped, h.fits, "every training fold sees it reversed");
        assert_eq!(h.auc, 1.0);
        assert!(h.detected.iter().all(|&d| d == 60));
    }

    #[test]
    fn noise_detects_about_its_false_positive_rate() {
        // Negative control: a feature without signal catches few frauds.
        let rows = rows(100, 0.0, 3);
        let h = held_out("int4", "noise", Detector::Metric(1), &rows, &names()).expect("enough");
        let (mean, _, _) = h.detection();
        assert!(mean < 0.1, "noise caught {mean}");
        assert!((h.auc - 0.5).abs() < 0.1, "AUC {}", h.auc);
    }

    #[test]
    fn the_combined_detector_finds_the_informative_feature() {
        let rows = rows(60, 0.6, 4);
        let single = held_out("int4", "m", Detector::Metric(0), &rows, &names()).expect("enough");
        let combined =
            held_out("int4", COMBINED, Detector::Combined, &rows, &names()).expect("enough");
        assert!(combined.auc > 0.85, "AUC {}", combined.auc);
        assert!((combined.auc - single.auc).abs() < 0.05);
        let train: Vec<&Row> = rows.iter().collect();
        let model = Logistic::fit(&train).expect("fit");
        assert!(model.weights[1] > 1.0, "signal weight {:?}", model.weights);
        assert!(
            model.weights[2].abs() < 0.5,
            "noise weight {:?}",
            model.weights
        );
    }

    #[test]
    fn sources_come_from_prompt_ids() {
        assert_eq!(source_of("gsm8k/17"), "gsm8k");
        assert_eq!(source_of("file:mine/sea"), "file:mine");
        assert_eq!(source_of("bare"), "bare");
    }
}
