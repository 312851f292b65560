//! 95% intervals: Wilson for accuracies, exact Clopper-Pearson for rates
//! near 0 or 1, Hanley-McNeil for an AUC.

use statrs::distribution::{Beta, ContinuousCDF};

/// The 97.5% quantile of the standard normal law (two-sided 95%).
pub const Z95: f64 = 1.959_963_984_540_054;

/// Wilson score interval for k successes in n trials, 95% (`(0, 1)` when
/// n = 0).
pub fn wilson(k: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// Exact (Clopper-Pearson) two-sided 95% upper bound on a rate seen k times
/// in n.
pub fn clopper_pearson_upper(k: usize, n: usize) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    Beta::new(k as f64 + 1.0, (n - k) as f64).map_or(1.0, |b| b.inverse_cdf(0.975))
}

/// Exact (Clopper-Pearson) two-sided 95% lower bound on a rate seen k times
/// in n (k of n = n of n gives 0.025^(1/n)).
pub fn clopper_pearson_lower(k: usize, n: usize) -> f64 {
    if n == 0 || k == 0 {
        return 0.0;
    }
    Beta::new(k as f64, (n - k) as f64 + 1.0).map_or(0.0, |b| b.inverse_cdf(0.025))
}

/// Hanley & McNeil (1982) 95% interval for an AUC from `pos` and `neg`
/// scores, clipped to [0, 1]. It treats the scores as independent; where
/// one judge scores the same proposal more than once, the true interval is
/// somewhat wider.
pub fn hanley_mcneil(auc: f64, pos: usize, neg: usize) -> (f64, f64) {
    let (p, n) = (pos as f64, neg as f64);
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    let var =
        (auc * (1.0 - auc) + (p - 1.0) * (q1 - auc * auc) + (n - 1.0) * (q2 - auc * auc)) / (p * n);
    let half = Z95 * var.max(0.0).sqrt();
    ((auc - half).max(0.0), (auc + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wilson_matches_reference_values() {
        // 8/10: (0.4902, 0.9433); 0/30: (0, 0.1135) — standard tables.
        let (lo, hi) = wilson(8, 10);
        assert!(
            (lo - 0.4902).abs() < 1e-4 && (hi - 0.9433).abs() < 1e-4,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson(0, 30);
        assert!(lo == 0.0 && (hi - 0.1135).abs() < 1e-4, "{hi}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn clopper_pearson_matches_reference_values() {
        // 0 of n: 1 − 0.025^(1/n) (0.08810, 0.01828); 2 of 40 by bisection
        // on the binomial CDF: 0.16920.
        assert!((clopper_pearson_upper(0, 40) - 0.08810).abs() < 1e-4);
        assert!((clopper_pearson_upper(0, 200) - 0.01828).abs() < 1e-4);
        assert!((clopper_pearson_upper(2, 40) - 0.16919).abs() < 1e-4);
        assert_eq!(clopper_pearson_upper(5, 5), 1.0);
    }

    #[test]
    fn clopper_pearson_lower_bounds_all_successes() {
        // n of n: 0.025^(1/n); 10 of 10 → 69.2%, 2 of 2 → 15.8%.
        assert!((clopper_pearson_lower(10, 10) - 0.025f64.powf(0.1)).abs() < 1e-9);
        assert!((clopper_pearson_lower(2, 2) - 0.025f64.sqrt()).abs() < 1e-9);
        assert_eq!(clopper_pearson_lower(0, 10), 0.0);
        assert!(clopper_pearson_lower(5, 10) < 0.5);
    }

    #[test]
    fn hanley_mcneil_matches_the_published_example() {
        // Hanley & McNeil 1982, table: A = 0.8, 50 + 50 → SE ≈ 0.0442.
        let (lo, hi) = hanley_mcneil(0.8, 50, 50);
        let se = (hi - lo) / (2.0 * Z95);
        assert!((se - 0.0442).abs() < 5e-4, "{se}");
        assert!(lo < 0.8 && hi > 0.8);
    }
}
