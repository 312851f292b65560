//! The published logprob-distance detectors, side by side, on aligned
//! executor/validator positions: Gonka's deployed distance (Go
//! `customDistance`), its benchmark `distance2` with `matches_ratio`, the
//! stage-2 MAE, the perplexity score against prefill attacks, and the
//! generic ones (top-k Jaccard, argmax agreement, KL/JS on renormalized
//! top-k). Formulas: docs/reference.md §6.1; each is a [`Metric`].

use std::collections::HashMap;

use serde::Serialize;

use crate::stats::mean;

/// One side's record of an output position: the chosen token and the top-k,
/// keyed by a token key (the id as `#123`, or the token string when ids are
/// unknown) so both sides compare the same way.
#[derive(Debug, Clone, PartialEq)]
pub struct PosView {
    /// Key of the chosen token (`#id`, or the token string when ids are unknown).
    pub chosen: String,
    /// Log-probability of the chosen token.
    pub logprob: f64,
    /// Top-k alternatives, as reported (most likely first).
    pub top: Vec<(String, f64)>,
}

/// Which way a metric's value points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Better {
    /// Higher values are better (similarities, agreement).
    Higher,
    /// Lower values are better (distances, divergences).
    Lower,
}

/// A metric's result over a whole artifact.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricValue {
    /// The metric over the whole artifact: the per-position values aggregated.
    pub value: f64,
    /// The per-position contributions (what is aggregated into `value`).
    pub per_position: Vec<f64>,
    /// Secondary figures (e.g. `matches_ratio`).
    pub extra: Vec<(&'static str, f64)>,
}

/// A distance or similarity between executor and validator records.
pub trait Metric {
    /// The metric's name in reports (e.g. `gonka_similarity`).
    fn name(&self) -> &'static str;
    /// Which way a better (more honest-looking) value points.
    fn better(&self) -> Better;
    /// Default bound from docs/reference.md §6.1 (pass iff value is on the `better` side), if it gives one.
    fn default_threshold(&self) -> Option<f64>;
    /// The metric over aligned executor (`exec`) and validator (`val`) positions.
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue;
}

/// All metrics, in report order.
pub fn all() -> Vec<Box<dyn Metric>> {
    vec![
        Box::new(GonkaSimilarity),
        Box::new(GonkaDistance2),
        Box::new(StageTwoMae),
        Box::new(PerplexityScore),
        Box::new(TopKJaccard),
        Box::new(ArgmaxAgreement),
        Box::new(JsDivergence),
        Box::new(KlDivergence),
    ]
}

/// The two lowest values of a map, m1 <= m2 (m2 = None for one value).
fn two_lowest<'a>(values: impl Iterator<Item = &'a f64>) -> Option<(f64, Option<f64>)> {
    let mut sorted: Vec<f64> = values.copied().collect();
    sorted.sort_by(f64::total_cmp);
    let m1 = *sorted.first()?;
    Some((m1, sorted.get(1).copied()))
}

/// Later duplicates win, as in a Go map or Python dict built in order.
fn to_map(top: &[(String, f64)]) -> HashMap<&str, f64> {
    top.iter().map(|(t, v)| (t.as_str(), *v)).collect()
}

// --- Gonka deployed (Go) ----------------------------------------------------

/// Gonka's deployed check: `S = max(0, 1 − D)`, pass iff `S > threshold`.
pub struct GonkaSimilarity;

/// Go `positionDistance`: iterate the VALIDATOR's list, impute missing
/// executor values with `m1 − (m2 − m1)` from the executor's two lowest
/// (`m2 = m1 − 100` when it has one value). `None` = "empty logprobs" error.
pub fn gonka_position_distance(exec: &[(String, f64)], val: &[(String, f64)]) -> Option<f64> {
    if exec.is_empty() || val.is_empty() {
        return None;
    }
    let o = to_map(exec);
    let (m1, m2) = two_lowest(o.values())?;
    let m2 = m2.unwrap_or(m1 - 100.0);
    let imputed = m1 - (m2 - m1);
    let mut d = 0.0;
    for (t, v) in val {
        let ot = o.get(t.as_str()).copied().unwrap_or(imputed);
        let denom = 1e-6 + v.abs() + ot.abs();
        if denom.is_nan() || denom == 0.0 {
            continue;
        }
        let term = (v - ot).abs() / denom / 2.0;
        if !term.is_nan() {
            d += term;
        }
    }
    Some(d)
}

/// Gonka's pre-checks: `Some(reason)` when validation fails before any distance.
pub fn gonka_precheck(exec: &[PosView], val: &[PosView]) -> Option<String> {
    if val.len() < exec.len() {
        return Some(format!(
            "different length: the validator has {} positions, the executor {}",
            val.len(),
            exec.len()
        ));
    }
    exec.iter()
        .zip(val)
        .position(|(e, v)| e.chosen != v.chosen)
        .map(|i| {
            format!(
                "different tokens at position {i}: executor {:?}, validator {:?}",
                exec[i].chosen, val[i].chosen
            )
        })
}

/// `D = Σ d_i / (max(100, N) · k)`, `k = |O_1|`; an empty list anywhere
/// makes D infinite (Go returns an error and S = 0).
pub fn gonka_distance(exec: &[PosView], val: &[PosView]) -> (f64, Vec<f64>) {
    if exec.is_empty() {
        return (0.0, Vec::new());
    }
    let mut per = Vec::with_capacity(exec.len());
    for (e, v) in exec.iter().zip(val) {
        match gonka_position_distance(&e.top, &v.top) {
            Some(d) => per.push(d),
            None => return (f64::INFINITY, per),
        }
    }
    let k = exec[0].top.len().max(1);
    let total: f64 = per.iter().sum();
    (total / (exec.len().max(100) * k) as f64, per)
}

impl Metric for GonkaSimilarity {
    fn name(&self) -> &'static str {
        "gonka_similarity"
    }
    fn better(&self) -> Better {
        Better::Higher
    }
    fn default_threshold(&self) -> Option<f64> {
        Some(0.99)
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        if gonka_precheck(exec, val).is_some() {
            return MetricValue {
                value: 0.0,
                per_position: Vec::new(),
                extra: vec![("distance", f64::INFINITY)],
            };
        }
        let (d, per) = gonka_distance(exec, val);
        let s = if d.is_finite() {
            (1.0 - d).max(0.0)
        } else {
            0.0
        };
        MetricValue {
            value: s,
            per_position: per,
            extra: vec![("distance", d)],
        }
    }
}

// --- Gonka benchmark (Python distance2) -------------------------------------

/// Gonka's benchmark `distance2`, with `matches_ratio` as an extra.
pub struct GonkaDistance2;

/// Python `token_distance2`: iterate the EXECUTOR's tokens, impute missing
/// validator values from the validator's two lowest (`m2 = m1 − 1` for one
/// value); an empty validator map costs `|O_i|`. Returns (d_i, matches).
pub fn distance2_position(exec: &[(String, f64)], val: &[(String, f64)]) -> (f64, usize) {
    let o = to_map(exec);
    let v = to_map(val);
    let Some((m1, m2)) = two_lowest(v.values()) else {
        return (o.len() as f64, 0);
    };
    let m2 = m2.unwrap_or(m1 - 1.0);
    let imputed = m1 - (m2 - m1);
    let mut d = 0.0;
    let mut matches = 0;
    for (t, _) in exec {
        // Iterate in the executor's order over its distinct tokens.
        let Some(&ot) = o.get(t.as_str()) else {
            continue;
        };
        let vt = match v.get(t.as_str()) {
            Some(&x) => {
                matches += 1;
                x
            }
            None => imputed,
        };
        d += (ot - vt).abs() / (1e-10 + ot.abs() + vt.abs()) / 2.0;
    }
    (d, matches)
}

impl Metric for GonkaDistance2 {
    fn name(&self) -> &'static str {
        "gonka_distance2"
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn default_threshold(&self) -> Option<f64> {
        // QwQ-32B's published bound (docs/reference.md §6.1, lower end); model-specific.
        Some(0.0357)
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        let n = exec.len();
        let k = exec.first().map_or(1, |p| p.top.len().max(1));
        let mut per = Vec::with_capacity(n);
        let mut matches = 0;
        for (i, e) in exec.iter().enumerate() {
            let (d, m) = match val.get(i) {
                Some(v) => distance2_position(&e.top, &v.top),
                None => (e.top.len() as f64, 0),
            };
            per.push(d);
            matches += m;
        }
        let total: f64 = per.iter().sum();
        let value = (total + 1.0) / ((n.max(100) * k) as f64 + 1.0);
        let ratio = matches as f64 / ((n * k).max(1)) as f64;
        MetricValue {
            value,
            per_position: per,
            extra: vec![("matches_ratio", ratio)],
        }
    }
}

// --- Stage-2 MAE -------------------------------------------------------------

/// `mean_i (1/|E_i|) Σ_{t ∈ E_i} (|e_t − v_t| if t ∈ V_i else 10)`; 10 for a
/// length mismatch.
pub struct StageTwoMae;

const MAE_MISSING: f64 = 10.0;

impl Metric for StageTwoMae {
    fn name(&self) -> &'static str {
        "stage2_mae"
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn default_threshold(&self) -> Option<f64> {
        Some(0.25)
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        if exec.len() != val.len() || exec.is_empty() {
            return MetricValue {
                value: MAE_MISSING,
                per_position: Vec::new(),
                extra: Vec::new(),
            };
        }
        let per: Vec<f64> = exec
            .iter()
            .zip(val)
            .map(|(e, v)| {
                let vm = to_map(&v.top);
                let em = to_map(&e.top);
                if em.is_empty() {
                    return 0.0;
                }
                let sum: f64 = em
                    .iter()
                    .map(|(t, et)| vm.get(t).map_or(MAE_MISSING, |vt| (et - vt).abs()))
                    .sum();
                sum / em.len() as f64
            })
            .collect();
        MetricValue {
            value: mean(&per),
            per_position: per,
            extra: Vec::new(),
        }
    }
}

// --- Perplexity score ---------------------------------------------------------

/// `1 − exp(mean_i lp_i)`, `lp_i` the validator's logprob of the chosen token
/// if in its top-k, else −10, clamped at −10: high when the tokens are
/// unlikely under the claimed model (a prefill attack).
pub struct PerplexityScore;

const LP_FLOOR: f64 = -10.0;

/// The score of one side's record of its own chosen tokens.
pub fn perplexity_score(side: &[PosView]) -> (f64, Vec<f64>) {
    let per: Vec<f64> = side
        .iter()
        .map(|p| {
            let in_top = p.top.iter().any(|(t, _)| *t == p.chosen);
            if in_top {
                p.logprob.max(LP_FLOOR)
            } else {
                LP_FLOOR
            }
        })
        .collect();
    (1.0 - mean(&per).exp(), per)
}

impl Metric for PerplexityScore {
    fn name(&self) -> &'static str {
        "perplexity_score"
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn default_threshold(&self) -> Option<f64> {
        // docs/reference.md §6.1 gives no threshold, only the blog's observation (honest
        // Qwen2.5-7B mostly < 0.2, 3B text with 7B proofs > 0.4); with k = 5
        // and a small model sampling at temperature ~1, honest text scores
        // far higher. Report only until calibrated (`--threshold` sets one).
        None
    }
    fn compute(&self, _exec: &[PosView], val: &[PosView]) -> MetricValue {
        let (value, per) = perplexity_score(val);
        MetricValue {
            value,
            per_position: per,
            extra: Vec::new(),
        }
    }
}

// --- Generic ------------------------------------------------------------------

/// Mean Jaccard overlap of the two top-k sets.
pub struct TopKJaccard;

impl Metric for TopKJaccard {
    fn name(&self) -> &'static str {
        "topk_jaccard"
    }
    fn better(&self) -> Better {
        Better::Higher
    }
    fn default_threshold(&self) -> Option<f64> {
        None
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        per_pair(exec, val, |e, v| {
            let em = to_map(&e.top);
            let vm = to_map(&v.top);
            let inter = em.keys().filter(|t| vm.contains_key(*t)).count();
            let union = em.len() + vm.len() - inter;
            if union == 0 {
                1.0
            } else {
                inter as f64 / union as f64
            }
        })
    }
}

/// Share of positions whose most likely token is the same on both sides.
pub struct ArgmaxAgreement;

fn argmax_key(top: &[(String, f64)]) -> Option<&str> {
    let mut best: Option<&(String, f64)> = None;
    for entry in top {
        if best.is_none_or(|b| entry.1 > b.1) {
            best = Some(entry);
        }
    }
    best.map(|(t, _)| t.as_str())
}

impl Metric for ArgmaxAgreement {
    fn name(&self) -> &'static str {
        "argmax_agreement"
    }
    fn better(&self) -> Better {
        Better::Higher
    }
    fn default_threshold(&self) -> Option<f64> {
        None
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        per_pair(exec, val, |e, v| {
            let same = argmax_key(&e.top).is_some() && argmax_key(&e.top) == argmax_key(&v.top);
            f64::from(u8::from(same))
        })
    }
}

/// Both top-k lists renormalized to distributions over the union of their
/// tokens (a token missing from a side has probability 0 there).
fn renormalized(e: &PosView, v: &PosView) -> (Vec<f64>, Vec<f64>) {
    let mut keys: Vec<&str> = e.top.iter().map(|(t, _)| t.as_str()).collect();
    for (t, _) in &v.top {
        if !keys.contains(&t.as_str()) {
            keys.push(t);
        }
    }
    let dist = |top: &[(String, f64)]| {
        let m = to_map(top);
        let max = top.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
        let w: Vec<f64> = keys
            .iter()
            .map(|k| m.get(k).map_or(0.0, |lp| (lp - max).exp()))
            .collect();
        let s: f64 = w.iter().sum();
        w.into_iter()
            .map(|x| if s > 0.0 { x / s } else { 0.0 })
            .collect::<Vec<f64>>()
    };
    (dist(&e.top), dist(&v.top))
}

fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter()
        .zip(q)
        .filter(|(pi, _)| **pi > 0.0)
        .map(|(pi, qi)| pi * (pi / qi).ln())
        .sum()
}

/// Jensen–Shannon divergence (nats, at most ln 2) of the renormalized top-k.
pub struct JsDivergence;

impl Metric for JsDivergence {
    fn name(&self) -> &'static str {
        "js_divergence"
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn default_threshold(&self) -> Option<f64> {
        None
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        per_pair(exec, val, |e, v| {
            let (p, q) = renormalized(e, v);
            let m: Vec<f64> = p.iter().zip(&q).map(|(a, b)| (a + b) / 2.0).collect();
            ((kl(&p, &m) + kl(&q, &m)) / 2.0).max(0.0)
        })
    }
}

/// KL(executor ‖ validator) of the renormalized top-k, each side smoothed by
/// ε = 1e-6 so a token missing on the validator side costs a finite amount.
pub struct KlDivergence;

const KL_EPS: f64 = 1e-6;

impl Metric for KlDivergence {
    fn name(&self) -> &'static str {
        "kl_divergence"
    }
    fn better(&self) -> Better {
        Better::Lower
    }
    fn default_threshold(&self) -> Option<f64> {
        None
    }
    fn compute(&self, exec: &[PosView], val: &[PosView]) -> MetricValue {
        per_pair(exec, val, |e, v| {
            let (p, q) = renormalized(e, v);
            let smooth = |x: Vec<f64>| {
                let z = 1.0 + KL_EPS * x.len() as f64;
                x.into_iter().map(|a| (a + KL_EPS) / z).collect::<Vec<_>>()
            };
            kl(&smooth(p), &smooth(q)).max(0.0)
        })
    }
}

/// Mean of `f` over aligned positions (positions past the shorter side are skipped).
fn per_pair(
    exec: &[PosView],
    val: &[PosView],
    f: impl Fn(&PosView, &PosView) -> f64,
) -> MetricValue {
    let per: Vec<f64> = exec.iter().zip(val).map(|(e, v)| f(e, v)).collect();
    MetricValue {
        value: mean(&per),
        per_position: per,
        extra: Vec::new(),
    }
}

#[cfg(test)]
// One-element slices written as `&[x.clone()]` read better in these cases.
#[allow(clippy::cloned_ref_to_slice_refs)]
mod tests {
    use super::*;

    fn top(entries: &[(&str, f64)]) -> Vec<(String, f64)> {
        entries.iter().map(|(t, v)| (t.to_string(), *v)).collect()
    }

    fn view(chosen: &str, entries: &[(&str, f64)]) -> PosView {
        let t = top(entries);
        let logprob = t.iter().find(|(k, _)| k == chosen).map_or(-20.0, |x| x.1);
        PosView {
            chosen: chosen.into(),
            logprob,
            top: t,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn gonka_position_distance_imputes_from_executor() {
        // O = {a:-1, b:-2, c:-4}: m1=-4, m2=-2, imputed = -4 - 2 = -6.
        let o = top(&[("a", -1.0), ("b", -2.0), ("c", -4.0)]);
        let v = top(&[("a", -1.0), ("b", -3.0), ("x", -5.0)]);
        let want = 0.0 + 1.0 / (1e-6 + 5.0) / 2.0 + 1.0 / (1e-6 + 11.0) / 2.0;
        assert!(close(
            gonka_position_distance(&o, &v).expect("non-empty"),
            want
        ));
    }

    #[test]
    fn gonka_single_value_imputes_100_below() {
        // |O| = 1: m2 = m1 - 100, imputed = m1 + 100 (the quirk: above m1).
        let o = top(&[("a", -1.0)]);
        let v = top(&[("x", -2.0)]);
        let imputed: f64 = -1.0 - ((-101.0) - (-1.0));
        assert_eq!(imputed, 99.0);
        let want = (-2.0f64 - 99.0).abs() / (1e-6 + 2.0 + 99.0) / 2.0;
        assert!(close(
            gonka_position_distance(&o, &v).expect("non-empty"),
            want
        ));
        assert_eq!(gonka_position_distance(&o, &[]), None);
    }

    #[test]
    fn gonka_divisor_is_max_100_n_times_k_of_first() {
        let p = view("a", &[("a", -1.0), ("b", -2.0)]);
        let q = view("a", &[("a", -1.5), ("b", -2.0)]);
        let d_pos = 0.5 / (1e-6 + 2.5) / 2.0;
        // N = 3 < 100: divided by 100 * 2.
        let (d, per) = gonka_distance(&vec![p.clone(); 3], &vec![q.clone(); 3]);
        assert_eq!(per.len(), 3);
        assert!(close(d, 3.0 * d_pos / 200.0));
        // N = 150 > 100: divided by 150 * 2.
        let (d, _) = gonka_distance(&vec![p; 150], &vec![q; 150]);
        assert!(close(d, 150.0 * d_pos / 300.0));
    }

    #[test]
    fn gonka_prechecks_fail_length_and_tokens() {
        let a = view("a", &[("a", -0.1)]);
        let b = view("b", &[("b", -0.1)]);
        let m = GonkaSimilarity;
        assert!(gonka_precheck(&[a.clone(), a.clone()], &[a.clone()])
            .expect("short")
            .contains("different length"));
        assert!(gonka_precheck(&[a.clone()], &[b.clone()])
            .expect("tokens")
            .contains("different tokens"));
        assert_eq!(m.compute(&[a.clone()], &[b]).value, 0.0);
        // A longer validator is not a failure.
        assert_eq!(gonka_precheck(&[a.clone()], &[a.clone(), a.clone()]), None);
        assert_eq!(m.compute(&[a.clone()], &[a]).value, 1.0);
    }

    #[test]
    fn distance2_imputes_from_validator_and_counts_matches() {
        // V = {a:-1, b:-3}: m1=-3, m2=-1, imputed = -3 - 2 = -5.
        let e = top(&[("a", -1.0), ("c", -2.0)]);
        let v = top(&[("a", -1.0), ("b", -3.0)]);
        let (d, m) = distance2_position(&e, &v);
        assert_eq!(m, 1);
        assert!(close(d, 3.0 / (1e-10 + 7.0) / 2.0));
        // Single validator value: m2 = m1 - 1, imputed = m1 + 1.
        let (d, _) = distance2_position(&top(&[("c", -2.0)]), &top(&[("a", -3.0)]));
        assert!(close(d, 0.0 / (1e-10 + 4.0)));
        // Empty validator map: |O_i|.
        assert_eq!(distance2_position(&e, &[]), (2.0, 0));
        let agg = GonkaDistance2.compute(
            &[view("a", &[("a", -1.0), ("c", -2.0)])],
            &[view("a", &[("a", -1.0), ("b", -3.0)])],
        );
        let want = (3.0 / (1e-10 + 7.0) / 2.0 + 1.0) / (200.0 + 1.0);
        assert!(close(agg.value, want));
        assert_eq!(agg.extra, vec![("matches_ratio", 0.5)]);
    }

    #[test]
    fn mae_counts_missing_as_ten_and_length_mismatch() {
        let e = view("a", &[("a", -1.0), ("b", -2.0)]);
        let v = view("a", &[("a", -1.5), ("c", -2.0)]);
        let r = StageTwoMae.compute(&[e.clone()], &[v.clone()]);
        assert!(close(r.value, (0.5 + 10.0) / 2.0));
        assert_eq!(StageTwoMae.compute(&[e.clone(), e], &[v]).value, 10.0);
    }

    #[test]
    fn perplexity_score_floors_and_misses() {
        let inside = view("a", &[("a", -0.5), ("b", -1.0)]);
        let outside = PosView {
            chosen: "z".into(),
            logprob: -2.0,
            top: top(&[("a", -0.1)]),
        };
        let deep = view("a", &[("a", -30.0)]);
        let (s, per) = perplexity_score(&[inside, outside, deep]);
        assert_eq!(per, vec![-0.5, -10.0, -10.0]);
        assert!(close(s, 1.0 - (-20.5f64 / 3.0).exp()));
    }

    #[test]
    fn generic_metrics_on_ties_and_disjoint_sets() {
        let e = view("a", &[("a", -0.693), ("b", -0.693)]);
        let same = JsDivergence.compute(&[e.clone()], &[e.clone()]);
        assert!(same.value.abs() < 1e-12);
        let disjoint = view("c", &[("c", -0.1), ("d", -2.0)]);
        let js = JsDivergence
            .compute(&[e.clone()], &[disjoint.clone()])
            .value;
        assert!((js - 2f64.ln()).abs() < 1e-9, "{js}");
        assert_eq!(
            TopKJaccard.compute(&[e.clone()], &[disjoint.clone()]).value,
            0.0
        );
        assert_eq!(TopKJaccard.compute(&[e.clone()], &[e.clone()]).value, 1.0);
        // A tie keeps the first listed as argmax on both sides.
        assert_eq!(
            ArgmaxAgreement.compute(&[e.clone()], &[e.clone()]).value,
            1.0
        );
        assert_eq!(
            ArgmaxAgreement
                .compute(&[e.clone()], &[disjoint.clone()])
                .value,
            0.0
        );
        let kl = KlDivergence.compute(&[e], &[disjoint]).value;
        assert!(kl > 10.0 && kl.is_finite(), "{kl}");
    }
}
