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
//! the test's honest ejection rather than assume it. The test itself is
//! [`crate::stats::ks_uniform`].

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ks_uniform, SplitMix64};

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
}
