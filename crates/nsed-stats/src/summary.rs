//! Summaries of samples, each with one stated behaviour on empty input and
//! on non-finite values.

/// The arithmetic mean, summed in order (so a page rebuilds to the same
/// bits); 0 for an empty slice, where a caller has nothing to average.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// The median of the finite values: the middle one, or the mean of the two
/// middle ones for an even count; `None` when no finite value is left.
pub fn median(values: &[f64]) -> Option<f64> {
    let sorted = finite_sorted(values);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The `q`-quantile (q in [0, 1]) of the finite values by nearest rank:
/// the value at position round((n − 1)·q) of the sorted values, so every
/// quantile is an observed value (q = 1 is the maximum); `None` when empty.
pub fn quantile(values: &[f64], q: f64) -> Option<f64> {
    let sorted = finite_sorted(values);
    if sorted.is_empty() {
        return None;
    }
    let at = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    Some(sorted[at])
}

fn finite_sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_of_values_and_of_nothing() {
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
        assert_eq!(mean(&[]), 0.0);
    }

    #[test]
    fn median_takes_the_middle_or_the_mean_of_the_two_middles() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN, 5.0, f64::INFINITY]), Some(5.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn quantiles_are_observed_values_by_nearest_rank() {
        let v: Vec<f64> = (1..=11).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(6.0));
        assert_eq!(quantile(&v, 0.95), Some(11.0));
        assert_eq!(quantile(&v, 0.9), Some(10.0));
        assert_eq!(quantile(&v, 0.0), Some(1.0));
        assert_eq!(quantile(&v, 1.0), Some(11.0));
        assert_eq!(
            quantile(&[2.0, 1.0], 0.5),
            Some(2.0),
            "round half away from zero"
        );
        assert_eq!(quantile(&[], 0.5), None);
    }
}
