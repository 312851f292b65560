//! The economics of cheating on a Gonka-like network (docs/reference.md §7): reputation
//! by epochs served, validation probability by traffic and reputation, the
//! status rules that eject a node, slashing, and a Monte Carlo of a node's
//! profit under each strategy (honest; cheat on a share of requests with an
//! attack whose detection rate was measured) and each ejection rule
//! (Gonka's consecutive-failure and one-sigma rules, a sequential
//! probability ratio test, an exact binomial test per epoch).

use serde::Serialize;

use super::heldout::HeldOut;
use super::variant::VariantReport;
use crate::stats::{binomial_tail, clopper_pearson_upper, SplitMix64};

/// `rep` in [0, 100] from effective epochs E' (30 epochs to the maximum;
/// `trunc2` keeps two decimals of E'/30).
pub fn reputation(effective_epochs: f64) -> f64 {
    if effective_epochs > 30.0 {
        100.0
    } else if effective_epochs <= 0.0 {
        0.0
    } else {
        (effective_epochs / 30.0 * 100.0).trunc()
    }
}

/// The minimum validation average for a traffic of `t` inferences per epoch.
pub fn min_validation(t: u64) -> f64 {
    let t = t as f64;
    if t >= 10_000.0 {
        0.01
    } else if t >= 5_000.0 {
        0.01 + 0.04 * (10_000.0 - t) / 5_000.0
    } else if t > 100.0 {
        0.05 + 0.95 * (5_000.0 - t) / 4_900.0
    } else {
        1.0
    }
}

/// Probability that at least one of `validators` equal-power validators
/// checks a given inference: each checks with `min(1, target / validators)`.
pub fn validation_probability(rep: f64, traffic: u64, validators: usize) -> f64 {
    let min = min_validation(traffic);
    let target = min + (1.0 - min) * (1.0 - rep / 100.0);
    let v = validators.max(1) as f64;
    let p_v = (target / v).min(1.0);
    1.0 - (1.0 - p_v).powf(v)
}

/// The smallest run of consecutive failures c with `fpr^c < 1e-6`.
pub fn consecutive_limit(fpr: f64) -> usize {
    let mut c = 1;
    while fpr.powi(c as i32) >= 1e-6 && c < 1000 {
        c += 1;
    }
    c
}

/// `z = (I/n − p) / sqrt(p(1−p)/n)`, 0 when undefined.
pub fn z_score(failures: usize, n: usize, p: f64) -> f64 {
    let var = p * (1.0 - p) / n as f64;
    if n == 0 || var <= 0.0 {
        return 0.0;
    }
    (failures as f64 / n as f64 - p) / var.sqrt()
}

/// The ramp-up count of Gonka's `MeasurementsNeeded`: `min(⌈2.618/p⌉, cap)`.
pub fn measurements_needed(p: f64, cap: usize) -> usize {
    (((3.0 + 5f64.sqrt()) / 2.0 / p).ceil() as usize).min(cap)
}

/// Gonka's `ComputeStatus` (x/inference/calculations/status.go): INVALID
/// after a run of failures rarer than 1e-6 under `p`, or when the epoch's
/// z-score exceeds 1 — except while ramping up (first epoch, fewer than
/// `measurements_needed` validations).
pub fn gonka_invalid(
    consecutive: usize,
    failures: usize,
    n: usize,
    p: f64,
    epochs_completed: usize,
) -> bool {
    if consecutive >= consecutive_limit(p) {
        return true;
    }
    if n < measurements_needed(p, RAMP_UP_CAP) && epochs_completed < 1 {
        return false;
    }
    z_score(failures, n, p) > 1.0
}

/// Gonka's `MinRampUpMeasurements`.
const RAMP_UP_CAP: usize = 10;

/// A rule that ejects a node from its sequence of validation outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Rule {
    /// Gonka's status rule, checked after every validation: c consecutive
    /// failures, or the one-sigma z test on the epoch so far.
    Gonka,
    /// Wald's SPRT of failure rate `p0` (the network's FPR) against `p1`:
    /// eject at log(1−β)/α, restart the test at log β/(1−α).
    Sprt {
        /// The failure rate of a cheating node, the alternative hypothesis.
        p1: f64,
        /// Bound on wrongly ejecting an honest node.
        alpha: f64,
        /// Bound on missing a node failing at `p1`.
        beta: f64,
    },
    /// At each epoch's end, eject if P(X ≥ failures | n, p0) < α.
    Binomial {
        /// The test's significance level.
        alpha: f64,
    },
}

impl Rule {
    /// The rule with its parameters, as tables show it (e.g. `SPRT p1=0.15 α=0.01 β=0.1`).
    pub fn name(&self) -> String {
        match self {
            Self::Gonka => "gonka (consecutive + one-sigma)".into(),
            Self::Sprt { p1, alpha, beta } => format!(
                "SPRT p1={} α={} β={}",
                short(*p1),
                short(*alpha),
                short(*beta)
            ),
            Self::Binomial { alpha } => format!("exact binomial per epoch α={}", short(*alpha)),
        }
    }
}

/// A parameter as a reader writes it: at most 4 decimals and no trailing
/// zeros (0.15, not 0.15000000000000002); small values in e-notation (1e-5).
fn short(x: f64) -> String {
    if x != 0.0 && x.abs() < 1e-3 {
        return format!("{x:e}");
    }
    let s = format!("{x:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// The state of a rule over one node's life.
struct Monitor {
    rule: Rule,
    p0: f64,
    run: usize,
    epochs_completed: usize,
    llr: f64,
    epoch_n: usize,
    epoch_failures: usize,
}

impl Monitor {
    fn new(rule: Rule, p0: f64) -> Self {
        Self {
            rule,
            p0,
            run: 0,
            epochs_completed: 0,
            llr: 0.0,
            epoch_n: 0,
            epoch_failures: 0,
        }
    }

    /// One validated inference; true means eject now.
    fn observe(&mut self, failed: bool) -> bool {
        self.epoch_n += 1;
        self.epoch_failures += failed as usize;
        self.run = if failed { self.run + 1 } else { 0 };
        match self.rule {
            Rule::Gonka => gonka_invalid(
                self.run,
                self.epoch_failures,
                self.epoch_n,
                self.p0,
                self.epochs_completed,
            ),
            Rule::Sprt { p1, alpha, beta } => {
                self.llr += if failed {
                    (p1 / self.p0).ln()
                } else {
                    ((1.0 - p1) / (1.0 - self.p0)).ln()
                };
                if self.llr <= (beta / (1.0 - alpha)).ln() {
                    self.llr = 0.0;
                }
                self.llr >= ((1.0 - beta) / alpha).ln()
            }
            Rule::Binomial { .. } => false,
        }
    }

    /// The epoch ends; true means eject.
    fn end_epoch(&mut self) -> bool {
        let eject = match self.rule {
            Rule::Binomial { alpha } => {
                binomial_tail(self.epoch_failures, self.epoch_n, self.p0) < alpha
            }
            _ => false,
        };
        self.epoch_n = 0;
        self.epoch_failures = 0;
        self.epochs_completed += 1;
        eject
    }
}

/// The network around the node.
#[derive(Debug, Clone, Serialize)]
pub struct Network {
    /// Inferences the node serves per epoch.
    pub traffic: u64,
    /// Equal-power validators that may check each inference.
    pub validators: usize,
    /// The honest failure rate the status rules assume (Gonka: 0.05).
    pub network_fpr: f64,
    /// The node's true failure rate when honest (measured).
    pub honest_fail: f64,
    /// Cost of an honest inference, as a share of its reward.
    pub honest_cost: f64,
    /// Collateral, in epochs of honest profit.
    pub collateral_epochs: f64,
    /// Share of collateral slashed when the node is ruled INVALID.
    pub slash: f64,
    /// Epochs simulated per node: the horizon.
    pub epochs: usize,
}

/// How a node behaves.
#[derive(Debug, Clone, Serialize)]
pub struct Strategy {
    /// How the strategy is shown (e.g. `honest`, `int4 on 10% from epoch 5`).
    pub name: String,
    /// Share of requests served by the cheap path once cheating.
    pub cheat_share: f64,
    /// Epochs of honest service before cheating starts (to build reputation).
    pub cheat_after: usize,
    /// Probability that a validated cheated inference fails validation.
    pub detection: f64,
    /// Cost of a cheated inference relative to an honest one.
    pub cost_ratio: f64,
}

/// Monte Carlo summary of one strategy under one rule.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The strategy's name.
    pub strategy: String,
    /// The ejection rule's name ([`Rule::name`]).
    pub rule: String,
    /// Nodes simulated.
    pub runs: usize,
    /// Share of runs ejected within the horizon.
    pub ejected: f64,
    /// Share ejected before the strategy started cheating (false ejections).
    pub ejected_while_honest: f64,
    /// Share ejected in the first epoch of cheating (or of service, honest).
    pub caught_first_epoch: f64,
    /// Ejections per epoch at risk (from the first cheating epoch on): the
    /// per-epoch catch probability.
    pub catch_per_epoch: f64,
    /// Median epochs from the start of cheating to ejection, ejected runs only.
    pub median_epochs_to_ejection: Option<f64>,
    /// Mean total profit over the horizon / an honest node's that is never ejected.
    pub profit_vs_honest: f64,
}

/// Simulate `runs` nodes for `net.epochs` epochs.
pub fn simulate(net: &Network, s: &Strategy, rule: Rule, runs: usize, seed: u64) -> Outcome {
    let mut rng = SplitMix64::new(seed);
    let honest_epoch = net.traffic as f64 * (1.0 - net.honest_cost);
    let ideal = honest_epoch * net.epochs as f64;
    let mut ejected_at = Vec::new();
    let (mut first, mut before, mut at_risk) = (0, 0, 0usize);
    let mut total = 0.0;
    // Time to ejection counts from the first cheating epoch.
    let start = if s.cheat_share > 0.0 {
        s.cheat_after
    } else {
        0
    };
    for _ in 0..runs {
        let (profit, eject) = one_node(net, s, rule, honest_epoch, &mut rng);
        total += profit;
        match eject {
            // Ejected while still honest: a false ejection, not a catch.
            Some(e) if e < start => before += 1,
            Some(e) => {
                let since = e - start;
                first += (since == 0) as usize;
                at_risk += since + 1;
                ejected_at.push(since as f64 + 1.0);
            }
            None => at_risk += net.epochs.saturating_sub(start),
        }
    }
    ejected_at.sort_by(f64::total_cmp);
    let n = runs.max(1) as f64;
    Outcome {
        strategy: s.name.clone(),
        rule: rule.name(),
        runs,
        ejected: (ejected_at.len() + before) as f64 / n,
        ejected_while_honest: before as f64 / n,
        caught_first_epoch: first as f64 / n,
        catch_per_epoch: ejected_at.len() as f64 / at_risk.max(1) as f64,
        median_epochs_to_ejection: (!ejected_at.is_empty())
            .then(|| ejected_at[ejected_at.len() / 2]),
        profit_vs_honest: total / n / ideal,
    }
}

/// One node's life: its total profit and the epoch it was ejected in.
fn one_node(
    net: &Network,
    s: &Strategy,
    rule: Rule,
    honest_epoch: f64,
    rng: &mut SplitMix64,
) -> (f64, Option<usize>) {
    let mut monitor = Monitor::new(rule, net.network_fpr);
    let mut profit = 0.0;
    for epoch in 0..net.epochs {
        let rep = reputation(epoch as f64);
        let p_val = validation_probability(rep, net.traffic, net.validators);
        let x = if epoch >= s.cheat_after {
            s.cheat_share
        } else {
            0.0
        };
        let (failed, eject) = validate_epoch(net, s, x, p_val, &mut monitor, rng);
        let eject = eject || monitor.end_epoch();
        if eject {
            // INVALID: the epoch's rewards are forfeited and collateral slashed.
            profit -= net.slash * net.collateral_epochs * honest_epoch;
            return (profit, Some(epoch));
        }
        let t = net.traffic as f64;
        let cost = t * net.honest_cost * ((1.0 - x) + x * s.cost_ratio);
        profit += t - failed as f64 - cost;
    }
    (profit, None)
}

/// The validated inferences of one epoch, in order: returns the failures
/// and whether the rule ejected the node mid-epoch.
fn validate_epoch(
    net: &Network,
    s: &Strategy,
    cheat_share: f64,
    p_val: f64,
    monitor: &mut Monitor,
    rng: &mut SplitMix64,
) -> (usize, bool) {
    let mut failed = 0;
    let mut i = next_validated(0, p_val, rng);
    while i < net.traffic {
        let cheated = rng.unit() < cheat_share;
        let p_fail = if cheated {
            s.detection + (1.0 - s.detection) * net.honest_fail
        } else {
            net.honest_fail
        };
        let fail = rng.unit() < p_fail;
        failed += fail as usize;
        if monitor.observe(fail) {
            return (failed, true);
        }
        i = next_validated(i + 1, p_val, rng);
    }
    (failed, false)
}

/// The index of the next validated inference at or after `from`: a
/// geometric gap, so the work follows the validations, not the traffic.
fn next_validated(from: u64, p: f64, rng: &mut SplitMix64) -> u64 {
    if p >= 1.0 {
        return from;
    }
    if p <= 0.0 {
        return u64::MAX;
    }
    let u = rng.unit().max(f64::MIN_POSITIVE);
    let gap = (u.ln() / (1.0 - p).ln()).floor();
    from.saturating_add(gap.min(u64::MAX as f64 / 2.0) as u64)
}

/// An attack as the simulation sees it.
#[derive(Debug, Clone, Serialize)]
pub struct AttackInputs {
    /// The attack's label (e.g. `int4`, `prefill:<model>`).
    pub label: String,
    /// Probability a validated cheated inference fails: the detector's mean
    /// held-out detection (threshold fit on training prompts).
    pub detection: f64,
    /// Cost of a cheated inference over an honest one (weight bytes read
    /// per token; prefill adds `prefill_cost` of the claimed model).
    pub cost_ratio: f64,
}

/// A detector's honest flags on held-out prompts, as the simulation takes
/// them: the mean count over partitions (the rate) and the worst
/// partition's count (for the exact upper bound), of `n` honest samples.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HonestFlags {
    /// Honest samples flagged, mean over the partitions.
    pub mean: f64,
    /// The most honest samples flagged in any one partition.
    pub worst: usize,
    /// Honest samples judged in each partition.
    pub n: usize,
    /// The thresholds' design rate k/(n + 1).
    pub design: f64,
}

impl HonestFlags {
    /// The mean honest flag rate: `mean / n` (0 when `n` is 0).
    pub fn rate(&self) -> f64 {
        self.mean / self.n.max(1) as f64
    }

    /// The exact 95% upper bound of the worst partition.
    pub fn upper(&self) -> f64 {
        clopper_pearson_upper(self.worst, self.n)
    }
}

/// What the simulation takes from a run: each attack's inputs for one
/// detector, and that detector's honest flags on held-out prompts (the
/// attack whose honest rate is highest, where the attacks' honest samples
/// were judged by thresholds fit beside different fraud samples).
pub fn inputs(
    held_out: &[HeldOut],
    detector: &str,
    variants: &[(String, VariantReport)],
    prefill_cost: f64,
) -> (Vec<AttackInputs>, HonestFlags) {
    let bytes = |role: &str| {
        variants
            .iter()
            .find(|(r, _)| r == role)
            .map(|(_, v)| v.weight_bytes as f64)
    };
    let honest_bytes = bytes("honest").unwrap_or(0.0);
    let mut honest = HonestFlags::default();
    let attacks = held_out
        .iter()
        .filter(|h| h.detector == detector)
        .filter_map(|h| {
            let (mean, _, worst) = h.flagged_spread();
            let flags = HonestFlags {
                mean,
                worst,
                n: h.honest_n,
                design: h.design_rate,
            };
            if flags.rate() > honest.rate() || honest.n == 0 {
                honest = flags;
            }
            let own = bytes(&h.setting)? / honest_bytes.max(1.0);
            let cost_ratio = if h.setting.starts_with("prefill:") {
                own + prefill_cost
            } else {
                own
            };
            Some(AttackInputs {
                label: h.setting.clone(),
                detection: h.detection().0,
                cost_ratio,
            })
        })
        .collect();
    (attacks, honest)
}

/// False ejections of an honest node per 1,000 node-epochs served, per
/// rule, at each assumed honest failure rate: (rule, rate, per 1,000).
pub fn false_ejections(
    net: &Network,
    rules: &[Rule],
    rates: &[f64],
    runs: usize,
    seed: u64,
) -> Vec<(String, f64, f64)> {
    let honest = &strategies(&[], &[], &[])[0];
    let mut out = Vec::new();
    for (i, &rate) in rates.iter().enumerate() {
        let net = Network {
            honest_fail: rate,
            ..net.clone()
        };
        for (j, rule) in rules.iter().enumerate() {
            let o = simulate(
                &net,
                honest,
                *rule,
                runs,
                seed + (i * rules.len() + j) as u64,
            );
            out.push((o.rule, rate, 1000.0 * o.catch_per_epoch));
        }
    }
    out
}

/// The strategies compared: honest, and each attack on a share of requests,
/// from the start or after building full reputation (30 epochs).
pub fn strategies(attacks: &[AttackInputs], shares: &[f64], afters: &[usize]) -> Vec<Strategy> {
    let mut out = vec![Strategy {
        name: "honest".into(),
        cheat_share: 0.0,
        cheat_after: 0,
        detection: 0.0,
        cost_ratio: 1.0,
    }];
    for a in attacks {
        for &after in afters {
            for &share in shares {
                out.push(Strategy {
                    name: format!("{} on {}% from epoch {after}", a.label, share * 100.0),
                    cheat_share: share,
                    cheat_after: after,
                    detection: a.detection,
                    cost_ratio: a.cost_ratio,
                });
            }
        }
    }
    out
}

/// Every strategy under every rule (in parallel), seeded per pair.
pub fn table(
    net: &Network,
    strategies: &[Strategy],
    rules: &[Rule],
    runs: usize,
    seed: u64,
) -> Vec<Outcome> {
    use rayon::prelude::*;
    let pairs: Vec<(usize, &Strategy, Rule)> = strategies
        .iter()
        .flat_map(|s| rules.iter().map(move |r| (s, *r)))
        .enumerate()
        .map(|(i, (s, r))| (i, s, r))
        .collect();
    pairs
        .par_iter()
        .map(|&(i, s, r)| simulate(net, s, r, runs, seed.wrapping_add(i as u64)))
        .collect()
}

/// The economics table as markdown.
pub fn markdown(net: &Network, attacks: &[AttackInputs], outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "Network: {} inferences per epoch, {} validators, {} epochs, rules assume FPR {}; honest failure rate {:.4}; honest cost {} of the reward; collateral {} epochs of honest profit, {}% slashed when INVALID.\n\n\
         | attack | detection per validated cheat | cost vs honest |\n|---|---|---|\n",
        net.traffic,
        net.validators,
        net.epochs,
        net.network_fpr,
        net.honest_fail,
        net.honest_cost,
        net.collateral_epochs,
        net.slash * 100.0
    );
    for a in attacks {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} |\n",
            a.label, a.detection, a.cost_ratio
        ));
    }
    out.push_str(
        "\n| strategy | rule | ejected within horizon (while still honest) | caught per epoch | caught in first cheating epoch | median epochs to ejection | profit vs honest |\n|---|---|---|---|---|---|---|\n",
    );
    for o in outcomes {
        out.push_str(&format!(
            "| {} | {} | {:.1}% ({:.1}%) | {:.3} | {:.1}% | {} | {:.3} |\n",
            o.strategy,
            o.rule,
            100.0 * o.ejected,
            100.0 * o.ejected_while_honest,
            o.catch_per_epoch,
            100.0 * o.caught_first_epoch,
            o.median_epochs_to_ejection
                .map_or("–".into(), |m| format!("{m:.0}")),
            o.profit_vs_honest
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_print_parameters_short() {
        let sprt = Rule::Sprt {
            p1: 0.1 + 0.05,
            alpha: 1e-5,
            beta: 0.1,
        };
        assert_eq!(sprt.name(), "SPRT p1=0.15 α=1e-5 β=0.1");
        assert_eq!(short(10.0), "10");
        assert_eq!(short(0.0), "0");
    }

    #[test]
    fn reputation_and_validation_schedules_match_spec() {
        assert_eq!(reputation(0.0), 0.0);
        assert_eq!(reputation(15.0), 50.0);
        assert_eq!(reputation(31.0), 100.0);
        assert_eq!(min_validation(20_000), 0.01);
        assert!((min_validation(7_500) - 0.03).abs() < 1e-12);
        assert!((min_validation(2_550) - 0.525).abs() < 1e-12);
        assert_eq!(min_validation(100), 1.0);
        // New nodes are validated ~100%, mature nodes at high traffic ~1%.
        assert!((validation_probability(0.0, 20_000, 1) - 1.0).abs() < 1e-12);
        assert!((validation_probability(100.0, 20_000, 1) - 0.01).abs() < 1e-12);
    }

    #[test]
    fn status_rules_flag_the_spec_minimums() {
        assert_eq!(consecutive_limit(0.05), 5);
        assert_eq!(
            consecutive_limit(0.01),
            4,
            "p^3 = 1e-6 is not strictly below"
        );
        for (k, n) in [(2, 10), (2, 20), (5, 50), (8, 100), (57, 1000)] {
            assert!(gonka_invalid(0, k, n, 0.05, 0), "{k}/{n}");
            assert!(!gonka_invalid(0, k - 1, n, 0.05, 0), "{}/{n}", k - 1);
        }
        // Ramp-up: 10 validations (⌈2.618/0.05⌉ = 53, capped) in the first
        // epoch only; later one early failure is already z > 1.
        assert_eq!(measurements_needed(0.05, 10), 10);
        assert_eq!(measurements_needed(0.02, 10_000), 131);
        assert!(!gonka_invalid(1, 1, 1, 0.05, 0));
        assert!(gonka_invalid(1, 1, 1, 0.05, 1));
        assert!(gonka_invalid(5, 5, 100, 0.05, 3), "five in a row");
        assert!((z_score(20, 500, 0.02) - 3.194).abs() < 1e-3);
    }

    fn net() -> Network {
        Network {
            traffic: 2_000,
            validators: 10,
            network_fpr: 0.05,
            honest_fail: 0.0,
            honest_cost: 0.5,
            collateral_epochs: 10.0,
            slash: 0.2,
            epochs: 40,
        }
    }

    fn strategy(share: f64, detection: f64, after: usize) -> Strategy {
        Strategy {
            name: format!("cheat {share}"),
            cheat_share: share,
            cheat_after: after,
            detection,
            cost_ratio: 0.5,
        }
    }

    #[test]
    fn honest_nodes_stay_and_blatant_cheats_are_caught_at_once() {
        let honest = simulate(&net(), &strategy(0.0, 0.0, 0), Rule::Gonka, 50, 1);
        assert_eq!(honest.ejected, 0.0);
        assert!((honest.profit_vs_honest - 1.0).abs() < 1e-9);
        let blatant = simulate(&net(), &strategy(1.0, 0.95, 0), Rule::Gonka, 50, 1);
        assert_eq!((blatant.ejected, blatant.caught_first_epoch), (1.0, 1.0));
        assert!(blatant.profit_vs_honest < 0.0, "{blatant:?}");
    }

    #[test]
    fn one_sigma_checked_per_validation_ejects_honest_nodes_the_exact_test_keeps() {
        // An honest node failing 2% of validations (float noise), under a
        // rule that assumes 5%: after the first epoch, one failure among an
        // epoch's first validations is z > 1; a per-epoch exact test at
        // α = 1e-3 rarely fires.
        let mut n = net();
        n.honest_fail = 0.02;
        let honest = strategy(0.0, 0.0, 0);
        let gonka = simulate(&n, &honest, Rule::Gonka, 200, 4);
        let exact = simulate(&n, &honest, Rule::Binomial { alpha: 1e-3 }, 200, 4);
        eprintln!("{gonka:?}\n{exact:?}");
        assert!(gonka.ejected > 0.3, "{gonka:?}");
        assert!(exact.ejected < 0.1, "{exact:?}");
    }

    #[test]
    fn sprt_and_binomial_catch_persistent_cheats() {
        let rules = [
            Rule::Sprt {
                p1: 0.2,
                alpha: 1e-4,
                beta: 0.01,
            },
            Rule::Binomial { alpha: 1e-3 },
        ];
        for rule in rules {
            let o = simulate(&net(), &strategy(0.5, 0.9, 0), rule, 30, 3);
            assert_eq!(o.ejected, 1.0, "{o:?}");
            let h = simulate(&net(), &strategy(0.0, 0.0, 0), rule, 30, 3);
            assert_eq!(h.ejected, 0.0, "{h:?}");
        }
    }
}
