//! Rank statistics: the area under the ROC curve as the Mann-Whitney U
//! statistic, ties counted as half.

/// P(positive score > negative score) + ½ P(tie): the Mann-Whitney U
/// statistic over n·m, computed from mid-ranks. `None` without both kinds.
pub fn auc(negatives: &[f64], positives: &[f64]) -> Option<f64> {
    if negatives.is_empty() || positives.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = negatives
        .iter()
        .map(|&v| (v, false))
        .chain(positives.iter().map(|&v| (v, true)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut positive_rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + j) as f64 / 2.0 + 1.0;
        positive_rank_sum += mid_rank * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (n, m) = (negatives.len() as f64, positives.len() as f64);
    Some((positive_rank_sum - m * (m + 1.0) / 2.0) / (n * m))
}

/// [`auc`] of scores labelled positive (`true`) or negative.
pub fn auc_of_labelled(scored: &[(f64, bool)]) -> Option<f64> {
    let of = |positive: bool| -> Vec<f64> {
        scored
            .iter()
            .filter(|x| x.1 == positive)
            .map(|x| x.0)
            .collect()
    };
    auc(&of(false), &of(true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;

    #[test]
    fn auc_counts_pairs_and_half_ties() {
        assert_eq!(auc(&[1.0, 2.0], &[3.0, 4.0]), Some(1.0));
        assert_eq!(auc(&[3.0, 4.0], &[1.0, 2.0]), Some(0.0));
        // Pairs: (1,2) win, (1,1) tie, (3,2) loss, (3,1) loss → 1.5 / 4.
        assert_eq!(auc(&[1.0, 3.0], &[2.0, 1.0]), Some(0.375));
        assert_eq!(auc(&[], &[1.0]), None);
    }

    #[test]
    fn labelled_auc_matches_hand_values() {
        // Positive: 3, 5; negative: 1, 3. Pairs: (3>1)=1, (3=3)=.5, (5>1)=1, (5>3)=1 → 3.5/4.
        let s = [(3.0, true), (5.0, true), (1.0, false), (3.0, false)];
        assert!((auc_of_labelled(&s).unwrap() - 0.875).abs() < 1e-12);
        // Scoring everything the same carries no signal.
        let flat = [(50.0, true), (50.0, false), (50.0, false)];
        assert_eq!(auc_of_labelled(&flat), Some(0.5));
        // Ranking negatives above positives is below 0.5.
        let inverted = [(1.0, true), (9.0, false)];
        assert_eq!(auc_of_labelled(&inverted), Some(0.0));
        assert_eq!(auc_of_labelled(&[(1.0, true)]), None);
    }

    #[test]
    fn auc_matches_brute_force_on_random_scores() {
        let mut rng = SplitMix64::new(7);
        let mut v = |n: usize, shift: f64| -> Vec<f64> {
            (0..n)
                .map(|_| (rng.next_u64() % 20) as f64 + shift)
                .collect()
        };
        let (h, f) = (v(37, 0.0), v(23, 3.0));
        let mut wins = 0.0;
        for a in &h {
            for b in &f {
                wins += if b > a {
                    1.0
                } else if b == a {
                    0.5
                } else {
                    0.0
                };
            }
        }
        let brute = wins / (h.len() * f.len()) as f64;
        assert!((auc(&h, &f).unwrap() - brute).abs() < 1e-12);
    }
}
