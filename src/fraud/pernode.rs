//! Per-node tests: a validator that has seen `n` samples from one node
//! decides whether the node runs the claimed model, at a fixed false
//! ejection rate for honest nodes. This module owns the two tests and their
//! power curves (power against samples per node).
//!
//! - **Mean score:** the combined per-sample detector (logistic regression
//!   over every metric, fit on training prompts) averaged over the node's
//!   samples.
//! - **MMD:** Model Equality Testing's statistic (Gao, Liang, Guestrin,
//!   ICLR 2025), the maximum mean discrepancy between the node's samples and
//!   a reference set of honest samples, here over each sample's replay
//!   metrics (standardized on the training honest samples; Gaussian kernel,
//!   median-distance bandwidth). It needs no fraud examples to fit.
//!
//! - **Token-rank uniformity:** every token of the node's samples placed in
//!   the validator's sampling distribution (randomized PIT,
//!   [`crate::verify::uniformity`]), pooled, and tested against the uniform
//!   law (Kolmogorov-Smirnov). It needs no reference and no fitting: uniform
//!   holds exactly only when the validator replays the executor's own
//!   distribution, so at cross-precision replay its honest ejection is
//!   measured, not guaranteed.
//!
//! The first two are two-sample tests of the node's samples against a reference set
//! of honest samples, with permutation p-values ([`PERMUTATIONS`]): under
//! the null (the node is honest) node and reference samples are
//! exchangeable, so an honest node is ejected at most [`FALSE_EJECTION`] of
//! the time whatever n, and the finite reference's own noise is accounted
//! for. Protocol: prompts are split in random halves ([`SPLITS`] times). On
//! the training half the logistic detector is fit (on half of its honest
//! samples and all its fraud samples; the other honest half is the mean
//! score's reference, so the reference is not scored in-sample) and the MMD
//! kernel is standardized (its reference: every training honest sample).
//! Nodes of each kind are drawn without replacement from the test half, so
//! power and honest ejection are measured on prompts the tests never saw.

use serde::Serialize;

use super::heldout::{rows_by_setting, Logistic, Row, Standardizer};
use super::samples::Sample;
use crate::stats::{
    clopper_pearson_lower, clopper_pearson_upper, ks_uniform, mean, Draw, SplitMix64,
};

/// The honest ejection rate the thresholds are set for.
pub const FALSE_EJECTION: f64 = 0.01;
/// The power the "samples needed" column asks for.
pub const TARGET_POWER: f64 = 0.99;
/// Samples per node at which power is measured.
pub const SAMPLES_PER_NODE: [usize; 6] = [1, 2, 5, 10, 20, 50];
/// Random train/test halvings of the prompts.
pub const SPLITS: usize = 5;
/// Permutations per p-value: with 199, p ≤ 1% needs the node to beat all
/// but one.
pub const PERMUTATIONS: usize = 199;
/// Simulated test nodes per kind, size and split.
pub const TEST_NODES: usize = 100;
const SEED: u64 = 11;

/// The per-node tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NodeTest {
    /// Permutation test of the node's mean combined (logistic) score against the honest reference.
    MeanScore,
    /// Permutation test of the MMD between the node's samples and the honest reference.
    Mmd,
    /// Kolmogorov-Smirnov test of the pooled token ranks (PIT) against the uniform law.
    RankUniformity,
}

impl NodeTest {
    /// Every test, in table order.
    pub const ALL: [NodeTest; 3] = [NodeTest::MeanScore, NodeTest::Mmd, NodeTest::RankUniformity];

    /// The test's label in tables and figures.
    pub fn name(self) -> &'static str {
        match self {
            NodeTest::MeanScore => "mean combined score",
            NodeTest::Mmd => "MMD to honest reference",
            NodeTest::RankUniformity => "token-rank uniformity (KS)",
        }
    }
}

/// Power and false ejection at one node size, averaged over splits.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PowerAt {
    /// Samples per node.
    pub samples: usize,
    /// Share of simulated cheating nodes ejected.
    pub power: f64,
    /// Share of simulated honest nodes ejected.
    pub false_ejection: f64,
}

/// One test's curve for one attack.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodePower {
    /// The attack's label (e.g. `int4`).
    pub setting: String,
    /// The per-node test.
    pub test: NodeTest,
    /// Distinct samples behind the curve (each kind's test halves draw on
    /// them).
    pub honest_n: usize,
    /// Distinct fraud samples behind the curve.
    pub fraud_n: usize,
    /// Power and false ejection at each of [`SAMPLES_PER_NODE`], in order.
    pub curve: Vec<PowerAt>,
}

impl NodePower {
    /// The fewest samples per node (of [`SAMPLES_PER_NODE`]) reaching
    /// [`TARGET_POWER`].
    pub fn samples_needed(&self) -> Option<&PowerAt> {
        self.curve.iter().find(|p| p.power >= TARGET_POWER)
    }

    /// How many nodes of `samples` each the fraud samples make without
    /// sharing one: the independent evidence behind a power at that size
    /// (the simulated nodes are overlapping draws from the same samples).
    pub fn disjoint_nodes(&self, samples: usize) -> usize {
        self.fraud_n / samples.max(1)
    }

    /// The exact 95% lower bound on power that the disjoint nodes allow,
    /// counting ⌊power × nodes⌋ of them as ejected.
    pub fn power_lower_bound(&self, at: &PowerAt) -> f64 {
        self.power_interval(at).0
    }

    /// The exact (Clopper-Pearson) 95% interval on power that the disjoint
    /// nodes allow, counting ⌊power × nodes⌋ of them as ejected.
    pub fn power_interval(&self, at: &PowerAt) -> (f64, f64) {
        let nodes = self.disjoint_nodes(at.samples);
        let ejected = ((at.power * nodes as f64 + 1e-9).floor() as usize).min(nodes);
        (
            clopper_pearson_lower(ejected, nodes),
            clopper_pearson_upper(ejected, nodes),
        )
    }
}

/// Both tests for every attack of a run.
pub fn evaluate(samples: &[Sample]) -> Vec<NodePower> {
    let mut out = Vec::new();
    for (setting, rows) in rows_by_setting(samples) {
        for test in NodeTest::ALL {
            if let Some(p) = curve(&setting, test, &rows) {
                out.push(p);
            }
        }
    }
    out
}

fn curve(setting: &str, test: NodeTest, rows: &[Row]) -> Option<NodePower> {
    // Samples made before ranks were recorded (or greedy ones) lack them:
    // the rank test uses the others, and its n says how many.
    let with_ranks: Vec<Row>;
    let rows = if test == NodeTest::RankUniformity {
        with_ranks = rows.iter().filter(|r| !r.pit.is_empty()).cloned().collect();
        &with_ranks[..]
    } else {
        rows
    };
    let mut groups: Vec<usize> = rows.iter().map(|r| r.group).collect();
    groups.sort_unstable();
    groups.dedup();
    if groups.len() < 8 {
        return None;
    }
    let mut rng = SplitMix64::new(SEED);
    let sizes = SAMPLES_PER_NODE.len();
    // Per size: (sum of power, sum of honest ejection, splits measured).
    let mut sums = vec![(0.0, 0.0, 0usize); sizes];
    for _ in 0..SPLITS {
        let train_half = random_half(&groups, &mut rng);
        let (train, held): (Vec<&Row>, Vec<&Row>) = rows
            .iter()
            .partition(|r| train_half.binary_search(&r.group).is_ok());
        let Some(scorer) = Scorer::fit(test, &train, &mut rng) else {
            continue;
        };
        let honest: Vec<&Row> = held.iter().copied().filter(|r| !r.fraud).collect();
        let fraud: Vec<&Row> = held.iter().copied().filter(|r| r.fraud).collect();
        for (k, &n) in SAMPLES_PER_NODE.iter().enumerate() {
            if n > honest.len() || n > fraud.len() {
                continue;
            }
            let mut share = |pool: &[&Row]| {
                let ejected = (0..TEST_NODES)
                    .filter(|_| scorer.ejects(&draw(pool, n, &mut rng), &mut rng))
                    .count();
                ejected as f64 / TEST_NODES as f64
            };
            let (p, e) = (share(&fraud), share(&honest));
            sums[k] = (sums[k].0 + p, sums[k].1 + e, sums[k].2 + 1);
        }
    }
    let curve: Vec<PowerAt> = SAMPLES_PER_NODE
        .iter()
        .zip(&sums)
        .filter(|(_, s)| s.2 > 0)
        .map(|(&n, &(p, e, splits))| PowerAt {
            samples: n,
            power: p / splits as f64,
            false_ejection: e / splits as f64,
        })
        .collect();
    if curve.is_empty() {
        return None;
    }
    let count = |fraud: bool| rows.iter().filter(|r| r.fraud == fraud).count();
    Some(NodePower {
        setting: setting.into(),
        test,
        honest_n: count(false),
        fraud_n: count(true),
        curve,
    })
}
/// Half of the prompt groups, sorted.
fn random_half(groups: &[usize], rng: &mut SplitMix64) -> Vec<usize> {
    let mut shuffled = groups.to_vec();
    rng.shuffle(&mut shuffled);
    let mut half = shuffled[..shuffled.len() / 2].to_vec();
    half.sort_unstable();
    half
}

/// `n` distinct rows of `pool` (n ≤ its size).
fn draw<'a>(pool: &[&'a Row], n: usize, rng: &mut SplitMix64) -> Vec<&'a Row> {
    let mut picked = pool.to_vec();
    rng.choose_first(&mut picked, n).to_vec()
}

/// A fitted per-node test: the detector (or kernel) and the honest
/// reference the node is compared with.
enum Scorer {
    MeanScore {
        /// The reference's combined scores.
        reference: Vec<f64>,
        model: Logistic,
    },
    Mmd {
        kernel: Kernel,
        reference: Vec<Vec<f64>>,
    },
    /// Nothing to fit: the null law is uniform.
    RankUniformity,
}

impl Scorer {
    fn fit(test: NodeTest, train: &[&Row], rng: &mut SplitMix64) -> Option<Self> {
        let mut honest: Vec<&Row> = train.iter().copied().filter(|r| !r.fraud).collect();
        if honest.len() < 4 {
            return None;
        }
        match test {
            NodeTest::MeanScore => {
                rng.shuffle(&mut honest);
                let reference = honest.split_off(honest.len() / 2);
                let fit_on: Vec<&Row> = honest
                    .into_iter()
                    .chain(train.iter().copied().filter(|r| r.fraud))
                    .collect();
                let model = Logistic::fit(&fit_on)?;
                Some(Scorer::MeanScore {
                    reference: reference.iter().map(|r| model.score(r)).collect(),
                    model,
                })
            }
            NodeTest::Mmd => {
                let kernel = Kernel::fit(&honest);
                let reference = honest.iter().map(|r| kernel.embed(r)).collect();
                Some(Scorer::Mmd { kernel, reference })
            }
            NodeTest::RankUniformity => Some(Scorer::RankUniformity),
        }
    }

    /// Whether the permutation p-value of the node against the reference
    /// is at most [`FALSE_EJECTION`].
    fn ejects(&self, node: &[&Row], rng: &mut SplitMix64) -> bool {
        let p = match self {
            Scorer::MeanScore { reference, model } => {
                let xs: Vec<f64> = node.iter().map(|r| model.score(r)).collect();
                permutation_p(xs.len(), &pooled(xs, reference), rng, |pool, n| {
                    mean(&pool[..n]) - mean(&pool[n..])
                })
            }
            Scorer::Mmd { kernel, reference } => {
                let xs: Vec<Vec<f64>> = node.iter().map(|r| kernel.embed(r)).collect();
                let pool = pooled(xs, reference);
                let sums = GramSums::new(kernel.gram(&pool));
                let n = node.len();
                let mut order: Vec<usize> = (0..pool.len()).collect();
                let observed = sums.mmd2(&order, n);
                let mut beaten = 0;
                for _ in 0..PERMUTATIONS {
                    rng.shuffle(&mut order);
                    if at_least(sums.mmd2(&order, n), observed) {
                        beaten += 1;
                    }
                }
                (1 + beaten) as f64 / (1 + PERMUTATIONS) as f64
            }
            Scorer::RankUniformity => {
                let pooled: Vec<f64> = node
                    .iter()
                    .flat_map(|r| r.pit.iter().map(|&u| f64::from(u)))
                    .collect();
                ks_uniform(&pooled).map_or(1.0, |k| k.p)
            }
        };
        p <= FALSE_EJECTION
    }
}

/// The node's items, then the reference's.
fn pooled<T: Clone>(node: Vec<T>, reference: &[T]) -> Vec<T> {
    let mut pool = node;
    pool.extend_from_slice(reference);
    pool
}

/// One-sided permutation p-value of `statistic(pool, n)`, the node being
/// the first n items of `pool`.
fn permutation_p(
    n: usize,
    pool: &[f64],
    rng: &mut SplitMix64,
    statistic: impl Fn(&[f64], usize) -> f64,
) -> f64 {
    let observed = statistic(pool, n);
    let mut shuffled = pool.to_vec();
    let beaten = (0..PERMUTATIONS)
        .filter(|_| {
            rng.shuffle(&mut shuffled);
            at_least(statistic(&shuffled, n), observed)
        })
        .count();
    (1 + beaten) as f64 / (1 + PERMUTATIONS) as f64
}

/// Whether a permutation's statistic is at least the observed one, up to
/// rounding. A permutation that puts the node's own samples back in the
/// node's place (with one sample, one in about m + 1) gives the same
/// statistic summed in another order, a few ulps either side: compared
/// exactly, half of those ties would count as beaten by the node, which
/// drives the p-value below its floor of about 1 / (m + 1) and ejects
/// single samples that no test of one sample can justify.
fn at_least(statistic: f64, observed: f64) -> bool {
    statistic >= observed - TIE_TOLERANCE * (1.0 + observed.abs())
}

/// Relative slack of [`at_least`]: far above the rounding of sums of a
/// few hundred kernel values or scores (~1e-14), far below any real
/// difference between two statistics.
const TIE_TOLERANCE: f64 = 1e-9;

/// A Gram matrix with its row sums and total, so that the MMD² of any split
/// costs the pairs of its smaller side, not every pair of the pool: a
/// permutation test draws 199 splits of one pool.
struct GramSums {
    gram: Vec<Vec<f64>>,
    /// Each item's kernel values with the others (the diagonal left out).
    row: Vec<f64>,
    /// Every pair's kernel value, each pair once.
    total: f64,
}

impl GramSums {
    fn new(gram: Vec<Vec<f64>>) -> Self {
        let row: Vec<f64> = gram
            .iter()
            .enumerate()
            .map(|(i, r)| {
                r.iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .map(|(_, v)| v)
                    .sum()
            })
            .collect();
        let total = row.iter().sum::<f64>() / 2.0;
        Self { gram, row, total }
    }

    /// The kernel values of the pairs within `s`, each pair once.
    fn within(&self, s: &[usize]) -> f64 {
        let mut sum = 0.0;
        for (a, &i) in s.iter().enumerate() {
            for &j in &s[a + 1..] {
                sum += self.gram[i][j];
            }
        }
        sum
    }

    /// The unbiased MMD² between the items `order[..n]` and `order[n..]`
    /// (with one node sample, its within term is left out: the same for
    /// every permutation's single item, since k(x, x) = 1). The smaller
    /// side's pairs are summed; the cross and other within sums follow from
    /// the row sums and the total (equal to summing them, up to rounding).
    fn mmd2(&self, order: &[usize], n: usize) -> f64 {
        let (x, y) = order.split_at(n);
        let (small, large) = if x.len() <= y.len() { (x, y) } else { (y, x) };
        let within_small = self.within(small);
        let rows_small: f64 = small.iter().map(|&i| self.row[i]).sum();
        let cross = rows_small - 2.0 * within_small;
        let within_large = self.total - within_small - cross;
        let mean_within = |sum: f64, m: usize| {
            if m < 2 {
                0.0
            } else {
                2.0 * sum / (m * (m - 1)) as f64
            }
        };
        mean_within(within_small, small.len()) + mean_within(within_large, large.len())
            - 2.0 * cross / (x.len() * y.len()).max(1) as f64
    }
}

/// A Gaussian kernel on standardized metric vectors.
struct Kernel {
    standardize: Standardizer,
    /// 2σ², σ the median distance between honest training samples.
    scale: f64,
}

impl Kernel {
    fn fit(honest: &[&Row]) -> Self {
        let mut kernel = Self {
            standardize: Standardizer::fit(honest),
            scale: 1.0,
        };
        let xs: Vec<Vec<f64>> = honest.iter().map(|r| kernel.embed(r)).collect();
        let mut d2: Vec<f64> = Vec::new();
        for (i, a) in xs.iter().enumerate() {
            for b in &xs[i + 1..] {
                d2.push(squared_distance(a, b));
            }
        }
        d2.sort_by(f64::total_cmp);
        let median = d2.get(d2.len() / 2).copied().unwrap_or(1.0);
        kernel.scale = if median > 0.0 { 2.0 * median } else { 1.0 };
        kernel
    }

    /// Standardized features; a missing one sits at the honest mean.
    fn embed(&self, r: &Row) -> Vec<f64> {
        self.standardize.apply(r)
    }

    fn k(&self, a: &[f64], b: &[f64]) -> f64 {
        (-squared_distance(a, b) / self.scale).exp()
    }

    /// Every pair's kernel value (symmetric: each pair computed once).
    fn gram(&self, xs: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let mut gram = vec![vec![0.0; xs.len()]; xs.len()];
        for (i, a) in xs.iter().enumerate() {
            gram[i][i] = self.k(a, a);
            for (j, b) in xs.iter().enumerate().skip(i + 1) {
                let v = self.k(a, b);
                gram[i][j] = v;
                gram[j][i] = v;
            }
        }
        gram
    }
}

fn squared_distance(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// How to read [`markdown`]'s table.
pub fn legend() -> String {
    format!(
        "Two-sample tests of a node's n samples against honest reference samples from training \
         prompts; the node is ejected when the permutation p-value ({PERMUTATIONS} permutations) \
         is ≤ {}%, so an honest node is ejected at most that often whatever n. The token-rank \
         test pools every token's rank (PIT) in the validator's sampler and ejects when a \
         Kolmogorov-Smirnov test rejects uniform at the same level: exact only when the validator \
         replays the executor's distribution bit for bit, so its honest ejection column is the \
         measurement to read. Power (cheating \
         nodes ejected) and honest ejection are measured on held-out prompts: {SPLITS} random \
         halvings, {TEST_NODES} simulated nodes per kind and n, each n distinct held-out samples \
         (sizes larger than a held-out half are not measured). \"n for {}%\": the fewest samples \
         per node of {:?} reaching {}% power, with the honest ejection measured there, the disjoint \
         nodes its fraud samples make at that size (the simulated nodes are overlapping draws \
         from them) and the exact 95% lower bound on power those allow. At n = 1 \
         the two-sample tests are capped by their permutations, not by the attack: with m \
         reference samples the node's own sample comes back in its place in about {PERMUTATIONS} \
         / (m + 1) permutations, and p ≤ {}% allows at most one, so even a sample beyond every \
         honest one is ejected at most about 41% of the time at m = 100, 10% at m = 50 and 1% at \
         m = 30 (MMD's reference is every training honest sample, the mean score's half of \
         them); a column at that cap says the samples are extreme, not that one suffices.\n",
        FALSE_EJECTION * 100.0,
        TARGET_POWER * 100.0,
        SAMPLES_PER_NODE,
        TARGET_POWER * 100.0,
        FALSE_EJECTION * 100.0,
    )
}

/// The header of [`markdown`]'s table.
pub const TABLE_HEADER: &str = "| model | attack | test | samples honest · fraud | power n=1 | n=5 | n=10 | n=20 | n for 99% (honest ejected there; disjoint nodes, power lower bound) |\n\
     |---|---|---|---|---|---|---|---|---|\n";

/// The per-node rows of one run (no header).
pub fn markdown(model: &str, results: &[NodePower]) -> String {
    let mut out = String::new();
    for r in results {
        let at = |n: usize| {
            r.curve
                .iter()
                .find(|p| p.samples == n)
                .map_or("–".into(), |p| pct(p.power))
        };
        let needed = r.samples_needed().map_or(
            format!(
                "> {} (not reached)",
                r.curve.last().map_or(0, |p| p.samples)
            ),
            |p| {
                format!(
                    "{} ({}; {} nodes, ≥ {})",
                    p.samples,
                    pct(p.false_ejection),
                    r.disjoint_nodes(p.samples),
                    pct(r.power_lower_bound(p))
                )
            },
        );
        out.push_str(&format!(
            "| {model} | {} | {} | {} · {} | {} | {} | {} | {} | {needed} |\n",
            r.setting,
            r.test.name(),
            r.honest_n,
            r.fraud_n,
            at(1),
            at(5),
            at(10),
            at(20)
        ));
    }
    out
}

/// The columns of [`csv()`].
pub const CSV_HEADER: [&str; 9] = [
    "setting",
    "test",
    "honest_n",
    "fraud_n",
    "samples_per_node",
    "power",
    "false_ejection",
    "disjoint_nodes",
    "power_lower_95",
];

/// One line per (attack, test, samples per node).
pub fn csv(results: &[NodePower]) -> String {
    let rows = results.iter().flat_map(|r| {
        r.curve.iter().map(move |p| {
            vec![
                r.setting.clone(),
                r.test.name().to_string(),
                r.honest_n.to_string(),
                r.fraud_n.to_string(),
                p.samples.to_string(),
                format!("{:.4}", p.power),
                format!("{:.4}", p.false_ejection),
                r.disjoint_nodes(p.samples).to_string(),
                format!("{:.4}", r.power_lower_bound(p)),
            ]
        })
    });
    crate::results::csv_text::csv_text(&CSV_HEADER, rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose first feature is shifted by `shift` for fraud; the second
    /// is noise. Each has 20 token ranks: uniform for honest, for fraud
    /// u^(1 + shift) (pulled towards the top of the order, as a cheater at a
    /// lower temperature would be).
    fn rows(n: usize, shift: f64, seed: u64) -> Vec<Row> {
        let mut rng = SplitMix64::new(seed);
        let mut ranks = SplitMix64::new(seed + 1_000);
        let mut out = Vec::new();
        for i in 0..n {
            for fraud in [false, true] {
                let signal = rng.unit() + if fraud { shift } else { 0.0 };
                let exponent = if fraud { 1.0 + shift } else { 1.0 };
                out.push(Row {
                    group: i,
                    source: "gsm8k".into(),
                    fraud,
                    features: vec![Some(signal), Some(rng.unit())],
                    pit: (0..20)
                        .map(|_| ranks.unit().powf(exponent) as f32)
                        .collect(),
                    tokens: 20,
                });
            }
        }
        out
    }

    #[test]
    fn a_weak_per_sample_signal_adds_up_over_a_node() {
        // Uniform noise shifted by 0.3: one sample is caught rarely, twenty
        // almost always.
        let rows = rows(200, 0.3, 1);
        for test in NodeTest::ALL {
            let c = curve("int4", test, &rows).expect("enough");
            let at = |n: usize| c.curve.iter().find(|p| p.samples == n).expect("n");
            assert!(at(1).power < 0.3, "{test:?} n=1 {:?}", at(1));
            assert!(at(50).power > 0.9, "{test:?} n=50 {:?}", at(50));
            assert!(at(20).power > at(1).power);
            assert!(
                c.curve.iter().all(|p| p.false_ejection < 0.04),
                "{test:?} {:?}",
                c.curve
            );
        }
    }

    #[test]
    fn no_signal_gives_power_near_the_ejection_rate() {
        // Negative control: fraud drawn like honest is "caught" about as
        // often as honest nodes are ejected.
        let rows = rows(100, 0.0, 2);
        for test in NodeTest::ALL {
            let c = curve("int4", test, &rows).expect("enough");
            for p in &c.curve {
                assert!(p.power < 0.05, "{test:?} {p:?}");
                assert!(p.false_ejection < 0.05, "{test:?} {p:?}");
            }
        }
    }

    #[test]
    fn the_rank_test_uses_the_samples_that_have_ranks() {
        let mut rows = rows(40, 0.3, 4);
        let all = curve("int4", NodeTest::RankUniformity, &rows).expect("ranks");
        assert_eq!((all.honest_n, all.fraud_n), (40, 40));
        rows[2].pit.clear();
        rows[3].pit.clear();
        let some = curve("int4", NodeTest::RankUniformity, &rows).expect("ranks");
        assert_eq!((some.honest_n, some.fraud_n), (39, 39));
        assert_eq!(
            curve("int4", NodeTest::Mmd, &rows).expect("mmd").honest_n,
            40
        );
        for r in &mut rows {
            r.pit.clear();
        }
        assert!(curve("int4", NodeTest::RankUniformity, &rows).is_none());
    }

    #[test]
    fn mmd_grows_as_the_node_moves_away_from_the_reference() {
        let honest: Vec<Row> = rows(40, 0.0, 3).into_iter().filter(|r| !r.fraud).collect();
        let refs: Vec<&Row> = honest.iter().collect();
        let kernel = Kernel::fit(&refs);
        let reference: Vec<Vec<f64>> = refs.iter().map(|r| kernel.embed(r)).collect();
        let mmd_of = |node: Vec<Vec<f64>>| {
            let pool = pooled(node, &reference[10..]);
            let order: Vec<usize> = (0..pool.len()).collect();
            GramSums::new(kernel.gram(&pool)).mmd2(&order, 10)
        };
        let near = reference[..10].to_vec();
        let far: Vec<Vec<f64>> = near
            .iter()
            .map(|x| x.iter().map(|v| v + 5.0).collect())
            .collect();
        let (near, far) = (mmd_of(near), mmd_of(far));
        assert!(near.abs() < 0.2, "same distribution: {near}");
        assert!(far > 0.5, "shifted: {far}");
    }

    #[test]
    fn one_sample_is_never_ejected_against_a_small_reference() {
        // With 15 reference samples the permutation p-value of a single
        // sample is at least about 1/16 however extreme it is (the node's
        // sample lands back in its own place once in 16 permutations, a
        // tie), so a 1% test must never eject it.
        let honest: Vec<Row> = rows(15, 0.0, 5).into_iter().filter(|r| !r.fraud).collect();
        let refs: Vec<&Row> = honest.iter().collect();
        let kernel = Kernel::fit(&refs);
        let reference = refs.iter().map(|r| kernel.embed(r)).collect();
        let scorer = Scorer::Mmd { kernel, reference };
        let mut rng = SplitMix64::new(9);
        let mut far = honest[0].clone();
        for shift in [0.5, 2.0, 50.0] {
            far.features = vec![Some(1.0 + shift), Some(-shift)];
            let ejected = (0..300)
                .filter(|_| scorer.ejects(&[&far], &mut rng))
                .count();
            assert_eq!(ejected, 0, "shift {shift}");
        }
        // Positive control: ten far samples are ejected every time.
        let node = vec![&far; 10];
        assert!((0..20).all(|_| scorer.ejects(&node, &mut rng)));
    }

    /// MMD² by its definition: every pair of each side and every cross pair.
    fn direct_mmd2(gram: &[Vec<f64>], order: &[usize], n: usize) -> f64 {
        let (x, y) = order.split_at(n);
        let within = |s: &[usize]| {
            if s.len() < 2 {
                return 0.0;
            }
            let mut sum = 0.0;
            for (a, &i) in s.iter().enumerate() {
                for &j in &s[a + 1..] {
                    sum += gram[i][j];
                }
            }
            2.0 * sum / (s.len() * (s.len() - 1)) as f64
        };
        let cross: f64 = x
            .iter()
            .flat_map(|&i| y.iter().map(move |&j| gram[i][j]))
            .sum();
        within(x) + within(y) - 2.0 * cross / (x.len() * y.len()).max(1) as f64
    }

    fn honest_gram(seed: u64) -> Vec<Vec<f64>> {
        let honest: Vec<Row> = rows(40, 0.0, seed)
            .into_iter()
            .filter(|r| !r.fraud)
            .collect();
        let refs: Vec<&Row> = honest.iter().collect();
        let kernel = Kernel::fit(&refs);
        let pool: Vec<Vec<f64>> = refs.iter().map(|r| kernel.embed(r)).collect();
        kernel.gram(&pool)
    }

    #[test]
    fn mmd_from_row_sums_is_mmd_by_its_definition() {
        let gram = honest_gram(6);
        let sums = GramSums::new(gram.clone());
        let mut rng = SplitMix64::new(11);
        let mut order: Vec<usize> = (0..gram.len()).collect();
        for n in [1, 2, 5, 20, 39] {
            for _ in 0..20 {
                rng.shuffle(&mut order);
                let (fast, direct) = (sums.mmd2(&order, n), direct_mmd2(&gram, &order, n));
                assert!((fast - direct).abs() < 1e-12, "n {n}: {fast} vs {direct}");
            }
        }
        // Negative control: another split gives another value.
        let identity: Vec<usize> = (0..gram.len()).collect();
        assert_ne!(sums.mmd2(&identity, 5), sums.mmd2(&identity, 6));
    }

    #[test]
    fn the_node_back_in_its_place_is_a_tie_however_the_sums_round() {
        // The premise of `at_least`: the node's samples back in the node's
        // place, in another order (and the reference's in another order),
        // change MMD² in its last bits, below the observed value as often
        // as not.
        let sums = GramSums::new(honest_gram(6));
        let identity: Vec<usize> = (0..sums.gram.len()).collect();
        let node = 5;
        let observed = sums.mmd2(&identity, node);
        let mut rng = SplitMix64::new(3);
        let mut below = 0;
        for _ in 0..100 {
            let mut order = identity.clone();
            rng.shuffle(&mut order[..node]);
            rng.shuffle(&mut order[node..]);
            let tie = sums.mmd2(&order, node);
            below += usize::from(tie < observed);
            assert!(at_least(tie, observed), "{tie} vs {observed}");
        }
        assert!(below > 0, "no reordering rounded below the observed MMD²");
    }

    #[test]
    fn a_statistic_summed_in_another_order_ties_with_the_observed() {
        let xs: Vec<f64> = (1..=200).map(|i| 1.0 / f64::from(i)).collect();
        let forward: f64 = xs.iter().sum();
        let backward: f64 = xs.iter().rev().sum();
        assert_ne!(forward, backward, "the orders round differently");
        assert!(at_least(forward, backward) && at_least(backward, forward));
        assert!(!at_least(forward - 1e-6, forward));
    }
}
