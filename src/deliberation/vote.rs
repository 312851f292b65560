//! Ballot arithmetic: quadratic voting as NSED implements it (docs/reference.md §3), the
//! linear score-weighted vote, plurality over answers, net support and winner
//! conviction, and the halting rules. Pure functions over score matrices, so
//! every method of the harness tallies with the same code.

use serde::{Deserialize, Serialize};

/// One evaluator's raw endorsement weights, by candidate index. `None` is an
/// abstention on that candidate (not scored, malformed, or the evaluator's own).
pub type Ballot = Vec<Option<f64>>;

/// Per-evaluator L1 normalization `f_ej = w_ej / Σ_j |w_ej|` over the valid
/// targets: non-finite weights count as 0 and the evaluator's own proposal is
/// excluded. All-zero ballots give no votes (every entry `None`).
pub fn normalize(ballot: &Ballot, own: Option<usize>) -> Vec<Option<f64>> {
    let valid = |j: usize, w: &Option<f64>| -> Option<f64> {
        if Some(j) == own {
            return None;
        }
        w.map(|w| if w.is_finite() { w } else { 0.0 })
    };
    let total: f64 = ballot
        .iter()
        .enumerate()
        .filter_map(|(j, w)| valid(j, w))
        .map(f64::abs)
        .sum();
    if total == 0.0 {
        return vec![None; ballot.len()];
    }
    ballot
        .iter()
        .enumerate()
        .map(|(j, w)| valid(j, w).map(|w| w / total))
        .collect()
}

/// Quadratic votes of one ballot: `q = sign(f)·sqrt(|f|)` of the normalized
/// weights (a credit budget of 1, cost = votes²).
pub fn quadratic(ballot: &Ballot, own: Option<usize>) -> Vec<Option<f64>> {
    normalize(ballot, own)
        .into_iter()
        .map(|f| f.map(|f| f.signum() * f.abs().sqrt()))
        .collect()
}

/// How ballots become votes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// NSED: `sign(f)·sqrt(|f|)`.
    Quadratic,
    /// Score-weighted baseline: the normalized weight `f` itself.
    Linear,
}

/// The tally of one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// `votes[e][j]`: evaluator e's vote for candidate j.
    pub votes: Vec<Vec<Option<f64>>>,
    /// `S_j = Σ_e votes[e][j]`.
    pub scores: Vec<f64>,
    /// How many evaluators cast a vote on each candidate.
    pub voters: Vec<usize>,
    /// `ns_j = S_j / voters_j` in [-1, 1] (0 with no voters).
    pub net_support: Vec<f64>,
    /// Index of the highest score (ties: the lowest index); `None` with no
    /// candidates.
    pub winner: Option<usize>,
    /// `ns_winner / Σ_j |ns_j|`: +1 unanimous endorsement, 0 split or no
    /// votes, -1 unanimous rejection.
    pub conviction: f64,
}

/// Tally `ballots` (one per evaluator, `owns[e]` the candidate evaluator e
/// proposed, if any) over `n` candidates.
pub fn tally(ballots: &[Ballot], owns: &[Option<usize>], n: usize, rule: Rule) -> Tally {
    let votes: Vec<Vec<Option<f64>>> = ballots
        .iter()
        .zip(owns)
        .map(|(b, &own)| {
            let mut b = b.clone();
            b.resize(n, None);
            match rule {
                Rule::Quadratic => quadratic(&b, own),
                Rule::Linear => normalize(&b, own),
            }
        })
        .collect();
    let mut scores = vec![0.0; n];
    let mut voters = vec![0usize; n];
    for row in &votes {
        for (j, v) in row.iter().enumerate() {
            if let Some(v) = v {
                scores[j] += v;
                voters[j] += 1;
            }
        }
    }
    let net_support: Vec<f64> = scores
        .iter()
        .zip(&voters)
        .map(|(&s, &c)| if c == 0 { 0.0 } else { s / c as f64 })
        .collect();
    let winner = argmax_first(&scores);
    let spread: f64 = net_support.iter().map(|v| v.abs()).sum();
    let conviction = match winner {
        Some(w) if spread > 0.0 => net_support[w] / spread,
        _ => 0.0,
    };
    Tally {
        votes,
        scores,
        voters,
        net_support,
        winner,
        conviction,
    }
}

fn argmax_first(v: &[f64]) -> Option<usize> {
    let mut best: Option<usize> = None;
    for (i, &x) in v.iter().enumerate() {
        if best.is_none_or(|b| x > v[b]) {
            best = Some(i);
        }
    }
    best
}

/// Plurality over answers (`None` = no answer, which does not vote). Ties are
/// broken by `tie_break`, a permutation priority (lower wins) so the caller
/// can make it seeded rather than favour a roster position.
pub fn plurality<'a>(answers: &[Option<&'a str>], tie_break: &[usize]) -> Option<&'a str> {
    let mut counts: Vec<(&str, usize, usize)> = Vec::new();
    for (i, a) in answers.iter().enumerate() {
        let Some(a) = a else { continue };
        let prio = tie_break.get(i).copied().unwrap_or(usize::MAX);
        match counts.iter_mut().find(|(x, _, _)| x == a) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 = entry.2.min(prio);
            }
            None => counts.push((a, 1, prio)),
        }
    }
    counts
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.2.cmp(&a.2)))
        .map(|(a, _, _)| a)
}

/// When deliberation stops.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "rule")]
pub enum Halting {
    /// The paper's simple reading: stop after round r ≥ min_rounds when the
    /// winner's conviction ≥ effort, or at max_rounds.
    Conviction {
        /// Conviction the round's winner must reach, in [0, 1].
        effort: f64,
        /// Rounds run before an early stop is allowed.
        min_rounds: usize,
        /// The round after which deliberation stops regardless.
        max_rounds: usize,
    },
    /// Accumulated evidence: `E(r) = Σ max(w, 0)·u'(r)` with the diminishing
    /// marginal utility `u'(r) = e^{-λ(r-1)}(1 - e^{-λ})` (the authors' fitted
    /// utility is not public); stop when `E(r) ≥ effort·B`, B = u(max_rounds).
    Evidence {
        /// Fraction of the evidence budget `B` to accumulate, in [0, 1].
        effort: f64,
        /// λ, how fast a later round's evidence counts for less.
        lambda: f64,
        /// Rounds run before an early stop is allowed.
        min_rounds: usize,
        /// The round after which deliberation stops regardless.
        max_rounds: usize,
    },
}

impl Halting {
    /// The round after which deliberation stops regardless.
    pub fn max_rounds(&self) -> usize {
        match *self {
            Self::Conviction { max_rounds, .. } | Self::Evidence { max_rounds, .. } => max_rounds,
        }
    }

    /// Rounds run before an early stop is allowed.
    pub fn min_rounds(&self) -> usize {
        match *self {
            Self::Conviction { min_rounds, .. } | Self::Evidence { min_rounds, .. } => min_rounds,
        }
    }

    /// Whether to stop after round `round` (1-based) given the convictions
    /// of rounds 1..=round.
    pub fn should_stop(&self, round: usize, convictions: &[f64]) -> bool {
        match *self {
            Self::Conviction {
                effort,
                min_rounds,
                max_rounds,
            } => {
                let w = convictions.last().copied().unwrap_or(0.0);
                round >= max_rounds || (round >= min_rounds && w >= effort)
            }
            Self::Evidence {
                effort,
                lambda,
                min_rounds,
                max_rounds,
            } => {
                let marginal =
                    |r: usize| (-lambda * (r as f64 - 1.0)).exp() * (1.0 - (-lambda).exp());
                let evidence: f64 = convictions
                    .iter()
                    .enumerate()
                    .map(|(i, w)| w.max(0.0) * marginal(i + 1))
                    .sum();
                let budget = 1.0 - (-lambda * max_rounds as f64).exp();
                round >= max_rounds || (round >= min_rounds && evidence >= effort * budget)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn hand_computed_three_agents() {
        // Evaluator 0 owns 0 and scores 1 and 2 with 60 and -20:
        // f = 0.75, -0.25 → q = 0.8660, -0.5.
        // Evaluator 1 owns 1: 80 on 0, 20 on 2 → f = 0.8, 0.2 → q = 0.8944, 0.4472.
        // Evaluator 2 owns 2: 50 on 0, 50 on 1 → q = 0.7071 each.
        let ballots = vec![
            vec![None, Some(60.0), Some(-20.0)],
            vec![Some(80.0), None, Some(20.0)],
            vec![Some(50.0), Some(50.0), None],
        ];
        let owns = [Some(0), Some(1), Some(2)];
        let t = tally(&ballots, &owns, 3, Rule::Quadratic);
        let s0 = 0.8f64.sqrt() + 0.5f64.sqrt();
        let s1 = 0.75f64.sqrt() + 0.5f64.sqrt();
        let s2 = -0.5 + 0.2f64.sqrt();
        assert!(close(t.scores[0], s0) && close(t.scores[1], s1) && close(t.scores[2], s2));
        assert_eq!(t.winner, Some(0));
        assert_eq!(t.voters, vec![2, 2, 2]);
        let ns: Vec<f64> = [s0, s1, s2].iter().map(|s| s / 2.0).collect();
        let spread: f64 = ns.iter().map(|v: &f64| v.abs()).sum();
        assert!(close(t.conviction, ns[0] / spread));
        // The linear rule on the same ballots: 0.8+0.5 = 1.3 vs 0.75+0.5.
        let l = tally(&ballots, &owns, 3, Rule::Linear);
        assert!(close(l.scores[0], 1.3) && close(l.scores[1], 1.25));
        assert!(close(l.scores[2], -0.25 + 0.2));
    }

    #[test]
    fn self_votes_are_excluded_even_when_cast() {
        let ballots = vec![vec![Some(100.0), Some(10.0)]];
        let t = tally(&ballots, &[Some(0)], 2, Rule::Quadratic);
        assert_eq!(t.votes[0][0], None);
        assert!(
            close(t.scores[1], 1.0),
            "10 is the whole budget once self is dropped"
        );
    }

    #[test]
    fn all_zero_and_non_finite_weights_give_no_votes() {
        let b = vec![Some(0.0), Some(f64::NAN), Some(f64::INFINITY), None];
        assert_eq!(quadratic(&b, None), vec![None; 4]);
        let t = tally(&[b], &[None], 4, Rule::Quadratic);
        assert_eq!(t.voters, vec![0; 4]);
        assert_eq!(t.conviction, 0.0);
        // NaN counts as 0 but still as a cast vote beside a finite one.
        let q = quadratic(&vec![Some(f64::NAN), Some(-4.0)], None);
        assert_eq!(q, vec![Some(0.0), Some(-1.0)]);
    }

    #[test]
    fn scaling_a_ballot_changes_nothing() {
        // Property: for many random ballots and positive scales, votes equal.
        let mut rng = crate::stats::SplitMix64::new(7);
        for _ in 0..500 {
            let n = 2 + (rng.next_u64() % 5) as usize;
            let ballot: Ballot = (0..n)
                .map(|_| match rng.next_u64() % 5 {
                    0 => None,
                    _ => Some(rng.uniform(100.0) as f64),
                })
                .collect();
            let scale = 1e-3 + rng.uniform(50.0).abs() as f64;
            let scaled: Ballot = ballot.iter().map(|w| w.map(|w| w * scale)).collect();
            let own = Some((rng.next_u64() % n as u64) as usize);
            for (a, b) in quadratic(&ballot, own).iter().zip(quadratic(&scaled, own)) {
                match (a, b) {
                    (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9),
                    (None, None) => {}
                    other => panic!("scaling changed abstention: {other:?}"),
                }
            }
            // The credit budget: Σ q² = 1 whenever the ballot votes at all.
            let q = quadratic(&ballot, own);
            let spent: f64 = q.iter().flatten().map(|v| v * v).sum();
            assert!(q.iter().all(Option::is_none) || (spent - 1.0).abs() < 1e-9);
        }
    }

    #[test]
    fn unanimous_rejection_gives_negative_conviction() {
        let ballots = vec![vec![None, Some(-50.0)], vec![Some(-10.0), None]];
        let t = tally(&ballots, &[Some(0), Some(1)], 2, Rule::Quadratic);
        assert!(close(t.conviction, -0.5), "{}", t.conviction);
    }

    #[test]
    fn plurality_counts_and_breaks_ties_by_priority() {
        let a = [Some("3"), Some("5"), Some("3"), None];
        assert_eq!(plurality(&a, &[0, 1, 2, 3]), Some("3"));
        let tie = [Some("3"), Some("5"), None];
        assert_eq!(plurality(&tie, &[1, 0, 2]), Some("5"));
        assert_eq!(plurality(&tie, &[0, 1, 2]), Some("3"));
        assert_eq!(plurality(&[None, None], &[0, 1]), None);
    }

    #[test]
    fn halting_by_conviction_and_by_evidence() {
        let h = Halting::Conviction {
            effort: 0.6,
            min_rounds: 2,
            max_rounds: 4,
        };
        assert!(!h.should_stop(1, &[0.9]), "min_rounds holds");
        assert!(h.should_stop(2, &[0.9, 0.6]));
        assert!(!h.should_stop(2, &[0.9, 0.59]));
        assert!(h.should_stop(4, &[0.0; 4]), "max_rounds");
        let e = Halting::Evidence {
            effort: 0.6,
            lambda: 1.0,
            min_rounds: 1,
            max_rounds: 3,
        };
        // B = 1 - e^-3 = 0.9502; round 1 with w = 1 gives 0.632 ≥ 0.570.
        assert!(e.should_stop(1, &[1.0]));
        // w = 0.5: 0.316, then + 0.5·0.2325 = 0.432 < 0.570, then stop at max.
        assert!(!e.should_stop(1, &[0.5]));
        assert!(!e.should_stop(2, &[0.5, 0.5]));
        assert!(e.should_stop(3, &[0.5, 0.5, 0.5]));
        // Negative conviction adds nothing.
        assert!(!e.should_stop(2, &[-1.0, 0.5]));
    }
}
