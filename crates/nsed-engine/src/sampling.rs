//! Seed-bound, deterministic sampling: the counter-based SHA-256 RNG and the
//! per-position pipeline of docs/reference.md §6.1 (temperature → max-shifted softmax →
//! top-k → top-p → min-p → integer weights → unbiased draw), so a validator
//! holding the same logits can re-derive every sampled token.
//!
//! Everything after the logits is integer or fixed-order f64 arithmetic, so a
//! draw depends only on (logits, params, seed, inference id, counter), never
//! on thread count.

use sha2::{Digest, Sha256};

use crate::digest::hex;
use nsed_stats::{Draw, SplitMix64};

/// Version tag of the seed derivation (docs/reference.md §6.1, "contract v1.0.0").
pub const SEED_DOMAIN: &str = "gonka-deterministic-sampling-v1";
/// ln(2^17): see [`candidates`].
const NEGLIGIBLE_LOG: f64 = 11.783_502_069_519_04;
/// Probabilities become integer weights on this scale before the draw.
const WEIGHT_SCALE: f64 = 65536.0;

/// The seed string: `hex(SHA256("<domain>\nuser_seed_len=<n>\n<seed>\ninference_id_len=<m>\n<id>"))`.
pub fn seed_string(user_seed: &str, inference_id: &str) -> String {
    let material = format!(
        "{SEED_DOMAIN}\nuser_seed_len={}\n{user_seed}\ninference_id_len={}\n{inference_id}",
        user_seed.len(),
        inference_id.len()
    );
    hex(&Sha256::digest(material.as_bytes()))
}

/// `u64 = BE(SHA256(seed_bytes ‖ BE64(counter))[0..8])`, counter from 0.
/// `seed_bytes` are the UTF-8 bytes of the seed string.
#[derive(Debug, Clone)]
pub struct Sha256CounterRng {
    seed: Vec<u8>,
    counter: u64,
}

impl Sha256CounterRng {
    /// The stream keyed by `seed_string` (from [`seed_string`]), counter at 0.
    pub fn new(seed_string: &str) -> Self {
        Self {
            seed: seed_string.as_bytes().to_vec(),
            counter: 0,
        }
    }

    /// Draws made so far (a validator replays from the same counter).
    pub fn counter(&self) -> u64 {
        self.counter
    }

    /// The next value of the stream; advances the counter by one.
    pub fn next_u64(&mut self) -> u64 {
        let mut h = Sha256::new();
        h.update(&self.seed);
        h.update(self.counter.to_be_bytes());
        self.counter += 1;
        let digest = h.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first)
    }
}

/// Unbiased draws (`below`, rejection sampling) over the counter stream:
/// the token draw of the contract.
impl Draw for Sha256CounterRng {
    fn next_u64(&mut self) -> u64 {
        Sha256CounterRng::next_u64(self)
    }
}

/// Sampling settings. `temperature == 0` is greedy (argmax, lowest id on ties).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// Softmax temperature; 0 (or below) is greedy decoding.
    pub temperature: f64,
    /// 0 disables.
    pub top_k: usize,
    /// 1.0 disables.
    pub top_p: f64,
    /// 0.0 disables.
    pub min_p: f64,
    /// 1.0 disables; llama.cpp's rule (divide positive logits, multiply negative).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalty looks at.
    pub repeat_last_n: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
        }
    }
}

impl SamplingParams {
    /// Whether this is greedy decoding (temperature <= 0): argmax, no draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }
}

/// `(max, ln Σ exp(v - max))` of a logit row, accumulated in f64: the shift
/// and normalizer of a log-softmax, `log p(i) = v_i - max - log_sum`.
pub fn log_softmax_shift(logits: &[f32]) -> (f64, f64) {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    (max, sum.ln())
}

/// What a record needs from one logit row: the chosen token's log-probability
/// and the top `k` (largest logit first, lowest id on ties), each
/// `l − max − ln Σ exp(l − max)` computed in f64 and stored as f32. One pass
/// of exp and a streaming selection: never a whole log-softmax row. The
/// executor and the validator both use this, so their values agree bit for
/// bit on equal logits.
#[derive(Debug, Clone, PartialEq)]
pub struct RowLogprobs {
    /// Log-probability of the chosen token (negative infinity if its id is outside the row).
    pub chosen: f32,
    /// The `k` most likely tokens as `(id, log-probability)`, largest logit first, lowest id
    /// on ties.
    pub top: Vec<(u32, f32)>,
}

/// The chosen token's log-probability and the top `k` of one logit row (see
/// [`RowLogprobs`]).
pub fn row_logprobs(logits: &[f32], chosen: u32, k: usize) -> RowLogprobs {
    let (max, log_sum) = log_softmax_shift(logits);
    let lp = |v: f32| (v as f64 - max - log_sum) as f32;
    // Kept sorted, best first; a later id never displaces an equal value.
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k > 0 {
        for (i, &v) in logits.iter().enumerate() {
            if best.len() == k && v.total_cmp(&best[k - 1].1).is_le() {
                continue;
            }
            let at = best.partition_point(|&(_, b)| b.total_cmp(&v).is_ge());
            best.insert(at, (i as u32, v));
            best.truncate(k);
        }
    }
    RowLogprobs {
        chosen: logits
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |&v| lp(v)),
        top: best.into_iter().map(|(i, v)| (i, lp(v))).collect(),
    }
}

/// Log-probabilities of a whole logit row.
pub fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let (max, log_sum) = log_softmax_shift(logits);
    logits
        .iter()
        .map(|&v| (v as f64 - max - log_sum) as f32)
        .collect()
}

/// Apply the repetition penalty in place to the logits of recent tokens.
pub fn apply_repeat_penalty(logits: &mut [f32], recent: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    let mut seen = std::collections::HashSet::new();
    for &t in recent {
        if !seen.insert(t) {
            continue;
        }
        if let Some(l) = logits.get_mut(t as usize) {
            *l = if *l > 0.0 { *l / penalty } else { *l * penalty };
        }
    }
}

/// Index of the largest logit, lowest index on ties.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// The candidates left after the filters, with integer weights summing to `total`.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidates {
    /// Token ids left after the filters, most likely first (lowest id on ties).
    pub ids: Vec<u32>,
    /// Integer weight of each id, `round(p * 65536)` with the rounding residual on the first;
    /// they sum to 65536.
    pub weights: Vec<u64>,
}

/// Temperature → softmax → top-k → top-p (inclusive) → min-p → integer weights.
pub fn candidates(logits: &[f32], p: &SamplingParams) -> Candidates {
    let t = p.temperature;
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    // Tokens below 2^-17 of the most likely one are left out from the
    // start: the filters only renormalize by a mass >= the top probability,
    // so such a token would end below 2^-17 = half a weight unit and round
    // to 0. Leaving them out of the sums too is part of the contract (both
    // sides run this code); it spares a step sorting the whole vocabulary.
    let mut probs: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter_map(|(i, &l)| {
            let z = (l as f64 - max) / t;
            (z >= -NEGLIGIBLE_LOG).then(|| (i as u32, z.exp()))
        })
        .collect();
    if probs.is_empty() {
        // Only NaN or -inf logits (a broken model): nothing to sample from.
        return Candidates {
            ids: vec![argmax(logits)],
            weights: vec![WEIGHT_SCALE as u64],
        };
    }
    // Descending probability, ascending id on ties: a total, reproducible order.
    probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    normalize(&mut probs);
    if p.top_k > 0 && probs.len() > p.top_k {
        probs.truncate(p.top_k);
        normalize(&mut probs);
    }
    if p.top_p < 1.0 {
        let mut cum = 0.0;
        let keep = probs
            .iter()
            .position(|(_, q)| {
                cum += q;
                cum >= p.top_p
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep.max(1));
        normalize(&mut probs);
    }
    if p.min_p > 0.0 {
        let floor = probs[0].1 * p.min_p;
        probs.retain(|(_, q)| *q >= floor);
        normalize(&mut probs);
    }
    integer_weights(&probs)
}

fn normalize(probs: &mut [(u32, f64)]) {
    let sum: f64 = probs.iter().map(|(_, q)| q).sum();
    for (_, q) in probs.iter_mut() {
        *q /= sum;
    }
}

/// `round(p * 65536)`, dropping zero weights; the rounding residual goes to
/// the largest weight (lowest id on ties) so the total is exactly 65536.
fn integer_weights(probs: &[(u32, f64)]) -> Candidates {
    let mut ids = Vec::with_capacity(probs.len());
    let mut weights = Vec::with_capacity(probs.len());
    for &(id, q) in probs {
        let w = (q * WEIGHT_SCALE).round() as u64;
        if w > 0 {
            ids.push(id);
            weights.push(w);
        }
    }
    if ids.is_empty() {
        // Every weight rounded to zero: fall back to the most likely token.
        return Candidates {
            ids: vec![probs[0].0],
            weights: vec![WEIGHT_SCALE as u64],
        };
    }
    let total: i64 = weights.iter().sum::<u64>() as i64;
    let residual = WEIGHT_SCALE as i64 - total;
    // probs are sorted by descending p then id, so index 0 is the max weight.
    let adjusted = weights[0] as i64 + residual;
    weights[0] = adjusted.max(1) as u64;
    Candidates { ids, weights }
}

/// Draw one token: cumulative scan over the integer weights.
pub fn draw(c: &Candidates, rng: &mut Sha256CounterRng) -> u32 {
    let total: u64 = c.weights.iter().sum();
    let mut x = rng.below(total);
    for (id, &w) in c.ids.iter().zip(&c.weights) {
        if x < w {
            return *id;
        }
        x -= w;
    }
    c.ids[c.ids.len() - 1]
}

/// One sampling step: greedy or a seeded draw.
pub fn sample(logits: &[f32], p: &SamplingParams, rng: &mut Sha256CounterRng) -> u32 {
    if p.is_greedy() {
        argmax(logits)
    } else {
        draw(&candidates(logits, p), rng)
    }
}

/// Which sampler draws the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// The seed-bound contract: integer weights and the SHA-256 counter RNG.
    #[default]
    SeedBound,
    /// A conventional float sampler (f32 softmax, a SplitMix64 uniform):
    /// the baseline the deterministic path's cost is measured against.
    Plain,
}

/// The conventional sampler: same filters in f32, one uniform per draw.
#[derive(Debug, Clone)]
pub struct PlainSampler {
    rng: SplitMix64,
}

impl PlainSampler {
    /// A conventional sampler whose SplitMix64 stream starts from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: SplitMix64::new(seed),
        }
    }

    fn uniform(&mut self) -> f32 {
        (self.rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Draw one token: argmax when greedy, else temperature, top-k, top-p and min-p in f32
    /// and one uniform draw.
    pub fn sample(&mut self, logits: &[f32], p: &SamplingParams) -> u32 {
        if p.is_greedy() {
            return argmax(logits);
        }
        let t = p.temperature as f32;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut probs: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, ((l - max) / t).exp()))
            .collect();
        if p.top_k > 0 && p.top_k < probs.len() {
            probs.select_nth_unstable_by(p.top_k - 1, |a, b| b.1.total_cmp(&a.1));
            probs.truncate(p.top_k);
        }
        if p.top_p < 1.0 || p.min_p > 0.0 {
            probs.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
            let total: f32 = probs.iter().map(|x| x.1).sum();
            let floor = probs[0].1 * p.min_p as f32;
            let mut cum = 0.0;
            let keep = probs
                .iter()
                .position(|x| {
                    cum += x.1 / total;
                    cum >= p.top_p as f32
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep.max(1));
            probs.retain(|x| x.1 >= floor);
        }
        let total: f32 = probs.iter().map(|x| x.1).sum();
        let mut u = self.uniform() * total;
        for &(id, w) in &probs {
            if u < w {
                return id;
            }
            u -= w;
        }
        probs.last().map_or(0, |x| x.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_sha256_of_seed_and_counter() {
        let mut rng = Sha256CounterRng::new("abc");
        let mut h = Sha256::new();
        h.update(b"abc");
        h.update(0u64.to_be_bytes());
        let d = h.finalize();
        let expected = u64::from_be_bytes(d[..8].try_into().expect("8 bytes"));
        assert_eq!(rng.next_u64(), expected);
        assert_eq!(rng.counter(), 1);
    }

    #[test]
    fn seed_string_binds_seed_and_inference_id() {
        let a = seed_string("42", "inf-1");
        assert_eq!(a.len(), 64);
        assert_ne!(a, seed_string("42", "inf-2"));
        assert_ne!(a, seed_string("4", "2inf-1"));
        assert_eq!(a, seed_string("42", "inf-1"));
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Sha256CounterRng::new("s");
        let mut seen = [0usize; 3];
        for _ in 0..300 {
            seen[rng.below(3) as usize] += 1;
        }
        assert!(seen.iter().all(|&c| c > 60), "{seen:?}");
    }

    #[test]
    fn weights_sum_to_scale_and_filters_apply() {
        let logits = [2.0f32, 1.0, 0.5, -1.0, -5.0];
        let p = SamplingParams {
            temperature: 1.0,
            top_k: 3,
            ..Default::default()
        };
        let c = candidates(&logits, &p);
        assert_eq!(c.ids, [0, 1, 2]);
        assert_eq!(c.weights.iter().sum::<u64>(), 65536);
        let p = SamplingParams {
            temperature: 1.0,
            top_p: 0.5,
            ..Default::default()
        };
        assert_eq!(candidates(&logits, &p).ids, [0]);
        let p = SamplingParams {
            temperature: 1.0,
            min_p: 0.3,
            ..Default::default()
        };
        // p(1)/p(0) = e^-1 = 0.37 kept; p(2)/p(0) = e^-1.5 = 0.22 dropped.
        assert_eq!(candidates(&logits, &p).ids, [0, 1]);
    }

    #[test]
    fn row_logprobs_agree_with_the_full_row() {
        let logits = [0.5f32, 2.0, -1.0, 2.0, 1.5, f32::NEG_INFINITY];
        let full = log_softmax(&logits);
        let r = row_logprobs(&logits, 4, 3);
        // Ties (ids 1 and 3) keep the lower id first.
        assert_eq!(r.top, vec![(1, full[1]), (3, full[3]), (4, full[4])]);
        assert_eq!(r.chosen, full[4]);
        assert_eq!(row_logprobs(&logits, 5, 0).top, vec![]);
        assert_eq!(row_logprobs(&logits, 5, 0).chosen, f32::NEG_INFINITY);
        assert_eq!(row_logprobs(&logits, 0, 10).top.len(), 6);
    }

    #[test]
    fn log_softmax_sums_to_one() {
        let lp = log_softmax(&[1.0, 2.0, 3.0]);
        let total: f64 = lp.iter().map(|&v| (v as f64).exp()).sum();
        assert!((total - 1.0).abs() < 1e-6);
        assert!(lp[2] > lp[1] && lp[1] > lp[0]);
        let (max, log_sum) = log_softmax_shift(&[0.5f32; 4]);
        assert!((0.5 - max - log_sum - 0.25f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn nan_logits_do_not_panic() {
        let p = SamplingParams {
            temperature: 1.0,
            min_p: 0.1,
            ..Default::default()
        };
        let c = candidates(&[f32::NAN, f32::NAN], &p);
        assert_eq!(c.weights, [65536]);
    }

    #[test]
    fn greedy_takes_lowest_id_on_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 2.0]), 1);
    }

    #[test]
    fn repeat_penalty_follows_llama_cpp() {
        let mut l = [2.0f32, -2.0, 1.0];
        apply_repeat_penalty(&mut l, &[0, 1, 1], 2.0);
        assert_eq!(l, [1.0, -4.0, 1.0]);
    }

    #[test]
    fn same_seed_same_draws() {
        let logits: Vec<f32> = (0..50).map(|i| (i as f32 * 0.37).sin()).collect();
        let p = SamplingParams {
            temperature: 0.8,
            ..Default::default()
        };
        let run = |seed: &str| {
            let mut rng = Sha256CounterRng::new(seed);
            (0..20)
                .map(|_| sample(&logits, &p, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run("x"), run("x"));
        assert_ne!(run("x"), run("y"));
    }
}
