//! The token-rank uniformity test: where each claimed token falls in the
//! validator's own sampling distribution, and whether those positions look
//! like draws from it.
//!
//! At each sampled position the validator orders its candidates the way the
//! sampler does (descending probability, ascending id on ties) and takes the
//! randomized probability integral transform (PIT) of the claimed token x:
//! `u = F(before x) + V · p(x)`, with V uniform on [0, 1). If the executor
//! really sampled from the validator's distribution, each u is uniform on
//! [0, 1) and, by the chain rule of an autoregressive model (Rosenblatt's
//! transform), the u of successive positions are independent: a
//! Kolmogorov-Smirnov test against the uniform law needs no honest
//! reference and no seed. A cheater sampling from another distribution
//! (lower temperature, quantized weights, another model) moves the u away
//! from uniform. Replay at another precision than the executor's breaks
//! exact uniformity a little, which is why the fraud experiments measure
//! the test's honest ejection rather than assume it.

use serde::Serialize;

use crate::engine::sampling::Candidates;

/// The PIT of a token outside the validator's candidates (a token its
/// sampler could not have drawn): the far end of the order.
const OUTSIDE_SUPPORT: f64 = 1.0;

/// The randomized PIT of `token` under `c`, with `v` uniform on [0, 1).
pub fn pit(c: &Candidates, token: u32, v: f64) -> f64 {
    let total: u64 = c.weights.iter().sum();
    let mut before = 0u64;
    for (&id, &w) in c.ids.iter().zip(&c.weights) {
        if id == token {
            return (before as f64 + v * w as f64) / total as f64;
        }
        before += w;
    }
    OUTSIDE_SUPPORT
}

/// A one-sample Kolmogorov-Smirnov test of uniformity on [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KsTest {
    /// Values tested.
    pub n: usize,
    /// Largest distance between the empirical and the uniform CDF.
    pub d: f64,
    /// Asymptotic p-value (Kolmogorov's law with Stephens' small-n
    /// correction; within about 1% of the exact value from n = 5).
    pub p: f64,
}

/// Test `values` (each in [0, 1]) against the uniform law; `None` when empty.
pub fn ks_uniform(values: &[f64]) -> Option<KsTest> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len() as f64;
    let d = sorted
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            let above = (i + 1) as f64 / n - u;
            let below = u - i as f64 / n;
            above.max(below)
        })
        .fold(0.0, f64::max);
    let root = n.sqrt();
    let p = kolmogorov_survival(d * (root + 0.12 + 0.11 / root));
    Some(KsTest {
        n: sorted.len(),
        d,
        p,
    })
}

/// P(K > x) for Kolmogorov's distribution: 2 Σ (-1)^(k-1) exp(-2 k² x²).
pub fn kolmogorov_survival(x: f64) -> f64 {
    // Below 0.2 the alternating series converges slowly and P = 1 to 1e-18.
    if x < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = f64::from(k);
        let term = (-2.0 * k * k * x * x).exp();
        sum += if k as u32 % 2 == 1 { term } else { -term };
        if term < 1e-300 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::sampling::SplitMix64;

    fn candidates() -> Candidates {
        // Sorted as the sampler leaves them: descending weight.
        Candidates {
            ids: vec![7, 3, 9],
            weights: vec![32768, 24576, 8192],
        }
    }

    #[test]
    fn pit_spans_each_tokens_share_of_the_order() {
        let c = candidates();
        assert_eq!(pit(&c, 7, 0.0), 0.0);
        assert_eq!(pit(&c, 7, 0.5), 0.25);
        assert_eq!(pit(&c, 3, 0.0), 0.5);
        assert_eq!(pit(&c, 9, 0.5), 0.9375);
        assert_eq!(pit(&c, 1, 0.3), OUTSIDE_SUPPORT);
    }

    #[test]
    fn kolmogorov_survival_matches_tabulated_quantiles() {
        // The 95% and 99% quantiles of Kolmogorov's law: 1.3581, 1.6276.
        assert!((kolmogorov_survival(1.3581) - 0.05).abs() < 1e-4);
        assert!((kolmogorov_survival(1.6276) - 0.01).abs() < 1e-4);
        assert_eq!(kolmogorov_survival(0.0), 1.0);
        assert!(kolmogorov_survival(4.0) < 1e-12);
    }

    /// Draws from the sampler's own distribution give uniform PITs: the test
    /// rejects at 1% about 1% of the time. Draws at a lower temperature (the
    /// top token more often) give low PITs and are rejected.
    #[test]
    fn honest_draws_pass_and_sharpened_draws_fail() {
        let c = candidates();
        let probs = [0.5, 0.375, 0.125];
        let sharpened = [0.8, 0.18, 0.02];
        let mut rng = SplitMix64::new(3);
        let mut uniform = || rng.unit();
        let mut rejections = [0usize; 2];
        for _ in 0..400 {
            for (which, law) in [probs, sharpened].iter().enumerate() {
                let us: Vec<f64> = (0..300)
                    .map(|_| {
                        let x = uniform();
                        let i = if x < law[0] {
                            0
                        } else if x < law[0] + law[1] {
                            1
                        } else {
                            2
                        };
                        pit(&c, c.ids[i], uniform())
                    })
                    .collect();
                let test = ks_uniform(&us).expect("values");
                rejections[which] += usize::from(test.p <= 0.01);
            }
        }
        // Honest: 1% of 400 = 4 expected; 12 would be p < 0.001.
        assert!(rejections[0] <= 12, "honest rejected {}", rejections[0]);
        assert_eq!(rejections[1], 400, "sharpened draws must all be caught");
    }

    #[test]
    fn ks_of_an_even_grid_is_small_and_of_a_cluster_large() {
        let grid: Vec<f64> = (0..100).map(|i| (i as f64 + 0.5) / 100.0).collect();
        let t = ks_uniform(&grid).expect("values");
        assert!((t.d - 0.005).abs() < 1e-12);
        assert!(t.p > 0.99);
        let cluster = vec![0.1; 50];
        let t = ks_uniform(&cluster).expect("values");
        assert!((t.d - 0.9).abs() < 1e-12);
        assert!(t.p < 1e-12);
        assert!(ks_uniform(&[]).is_none());
    }
}
