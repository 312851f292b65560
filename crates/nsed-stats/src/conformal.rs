//! Split-conformal thresholds: the bound a fresh exchangeable score exceeds
//! with probability at most a chosen α, from scores of the same kind alone
//! (no distributional assumption). Used wherever a threshold is fit on
//! honest samples: the fraud pages' held-out detectors and `nsed
//! calibrate`'s per-pair verification thresholds.

/// k = ⌊α·(n + 1)⌋, at least 1: which largest score the threshold is.
pub fn rank(n: usize, alpha: f64) -> usize {
    ((alpha * (n + 1) as f64).floor() as usize).max(1)
}

/// The flag rate a threshold from `n` scores is built for: k/(n + 1).
pub fn design_rate(n: usize, alpha: f64) -> f64 {
    rank(n, alpha) as f64 / (n + 1) as f64
}

/// The k-th largest score (k = [`rank`]): a fresh exchangeable score
/// exceeds it with probability at most k/(n + 1). `None` for no scores.
pub fn upper_threshold(scores: &[f64], alpha: f64) -> Option<f64> {
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted.get(rank(scores.len(), alpha) - 1).copied()
}

/// The k-th smallest score: the mirror of [`upper_threshold`] for scores
/// where small values are the suspicious ones.
pub fn lower_threshold(scores: &[f64], alpha: f64) -> Option<f64> {
    let negated: Vec<f64> = scores.iter().map(|v| -v).collect();
    upper_threshold(&negated, alpha).map(|v| -v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_sit_at_the_guaranteed_order_statistic() {
        let scores: Vec<f64> = (1..=160).map(f64::from).collect();
        // n = 160, α = 1%: k = ⌊1.61⌋ = 1, the largest (the in-sample rule
        // would take the second largest, 159, and flag one).
        assert_eq!(upper_threshold(&scores, 0.01), Some(160.0));
        assert_eq!(lower_threshold(&scores, 0.01), Some(1.0));
        let scores: Vec<f64> = (1..=250).map(f64::from).collect();
        // n = 250: k = ⌊2.51⌋ = 2.
        assert_eq!(upper_threshold(&scores, 0.01), Some(249.0));
        assert_eq!(lower_threshold(&scores, 0.01), Some(2.0));
        assert!((design_rate(250, 0.01) - 2.0 / 251.0).abs() < 1e-15);
        // Too few for any k: the largest.
        assert_eq!(upper_threshold(&[3.0, 1.0, 2.0], 0.01), Some(3.0));
        assert_eq!(upper_threshold(&[], 0.01), None);
    }
}
