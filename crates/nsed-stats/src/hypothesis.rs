//! Hypothesis tests: the exact McNemar test on paired outcomes, the
//! binomial tail, and the one-sample Kolmogorov-Smirnov test of uniformity.

use serde::Serialize;
use statrs::distribution::{Binomial, DiscreteCDF};

/// Exact (binomial) two-sided McNemar p-value for `b` items right only under
/// method 1 and `c` right only under method 2 (1 when there are none).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let Ok(bin) = Binomial::new(0.5, n as u64) else {
        return 1.0;
    };
    (2.0 * bin.cdf(b.min(c) as u64)).min(1.0)
}

/// P(X ≥ k) for X ~ Binomial(n, p).
pub fn binomial_tail(k: usize, n: usize, p: f64) -> f64 {
    if k == 0 {
        return 1.0;
    }
    match Binomial::new(p, n as u64) {
        Ok(b) => b.sf(k as u64 - 1),
        Err(_) => 1.0,
    }
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

    #[test]
    fn mcnemar_exact_values() {
        // b=1, c=9: 2·P(X≤1 | n=10) = 2·11/1024.
        assert!((mcnemar_exact(1, 9) - 22.0 / 1024.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        assert!((mcnemar_exact(0, 5) - 2.0 / 32.0).abs() < 1e-12);
    }

    #[test]
    fn binomial_tail_values() {
        assert!((binomial_tail(1, 1, 0.3) - 0.3).abs() < 1e-12);
        assert!((binomial_tail(2, 2, 0.5) - 0.25).abs() < 1e-12);
        assert_eq!(binomial_tail(0, 5, 0.1), 1.0);
        // P(X ≥ 2 | n = 3, p = 0.5) = 4/8.
        assert!((binomial_tail(2, 3, 0.5) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn kolmogorov_survival_matches_tabulated_quantiles() {
        // The 95% and 99% quantiles of Kolmogorov's law: 1.3581, 1.6276.
        assert!((kolmogorov_survival(1.3581) - 0.05).abs() < 1e-4);
        assert!((kolmogorov_survival(1.6276) - 0.01).abs() < 1e-4);
        assert_eq!(kolmogorov_survival(0.0), 1.0);
        assert!(kolmogorov_survival(4.0) < 1e-12);
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
