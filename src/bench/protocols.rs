//! Protocol variants as ablations on identical ballots: every rule re-tallies
//! the same round-1 proposals and scores recorded by a bench run, so a
//! difference between two rows is the rule's alone. Variants: the quadratic
//! vote NSED uses, the linear (score-weighted) vote, plurality of the
//! answers, votes per distinct answer (equivalence classes by the grader's
//! normalizer), per-evaluator z-score and rank normalization, evaluator
//! weights learned on the other half of the items (2-fold by item order),
//! and, as bounds, the best single model and an oracle that picks a correct
//! proposal whenever one exists.

use std::collections::BTreeMap;

use serde::Serialize;

use super::judges::{self, Judges};
use super::{vote_index, ItemRecord};
use crate::answer::AnswerKind;
use crate::deliberation::roster::Roster;
use crate::deliberation::vote::{self, Ballot, Rule};
use crate::deliberation::Round;
use crate::stats::{mcnemar_exact, wilson};

/// A way of picking round 1's winner from its proposals and ballots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// NSED's rule: quadratic votes of L1-normalized scores, per proposal.
    Quadratic,
    /// The same ballots, linear votes.
    Linear,
    /// Plurality of the proposals' answers (no scores).
    Plurality,
    /// Quadratic votes over distinct answers: an evaluator's scores for the
    /// proposals sharing an answer are averaged into one score per answer.
    PerAnswer,
    /// Each evaluator's scores standardized (z-scores), then quadratic.
    ZScore,
    /// Each evaluator's scores replaced by centred ranks, then quadratic.
    Rank,
    /// Quadratic votes per answer, each evaluator's weighted by
    /// max(0, 2·AUC − 1) of its model, the AUC measured on the other fold.
    LearnedWeights,
    /// Plurality with each proposal weighted by its model's accuracy on the
    /// other fold (no scores: who proposed, not what the judges said).
    ProposerWeights,
    /// The best single model of the roster (by accuracy on these items).
    BestSingle,
    /// Correct whenever any proposal is correct (an upper bound).
    Oracle,
}

impl Variant {
    /// Every variant, in table order.
    pub const ALL: [Variant; 10] = [
        Variant::Quadratic,
        Variant::Linear,
        Variant::Plurality,
        Variant::PerAnswer,
        Variant::ZScore,
        Variant::Rank,
        Variant::LearnedWeights,
        Variant::ProposerWeights,
        Variant::BestSingle,
        Variant::Oracle,
    ];

    /// The variant's label in the protocol table.
    pub fn name(self) -> &'static str {
        match self {
            Variant::Quadratic => "quadratic (NSED round 1)",
            Variant::Linear => "linear",
            Variant::Plurality => "plurality",
            Variant::PerAnswer => "quadratic per answer",
            Variant::ZScore => "z-scored, quadratic",
            Variant::Rank => "ranked, quadratic",
            Variant::LearnedWeights => "learned judge weights, per answer",
            Variant::ProposerWeights => "plurality weighted by proposer accuracy",
            Variant::BestSingle => "best single model",
            Variant::Oracle => "oracle (any proposal right)",
        }
    }
}

/// One item's round 1, ready to re-tally.
struct ItemBallots<'a> {
    item: &'a str,
    seed: u64,
    round: &'a Round,
    /// Model of each evaluator (row of `round.ballots`).
    evaluator_models: Vec<String>,
    /// Candidate index each evaluator proposed, if any.
    owns: Vec<Option<usize>>,
    correct: Vec<bool>,
}

/// One variant's accuracy over the items, with its paired comparison
/// against NSED's quadratic rule.
#[derive(Debug, Clone, Serialize)]
pub struct VariantRow {
    /// The rule re-tallied.
    pub variant: Variant,
    /// Items with a round 1 to re-tally.
    pub n: usize,
    /// Items the variant gets right.
    pub correct: usize,
    /// Lower bound of the Wilson 95% interval of the accuracy.
    pub ci_low: f64,
    /// Upper bound of the Wilson 95% interval of the accuracy.
    pub ci_high: f64,
    /// Items right under quadratic only / under this variant only.
    pub quadratic_only: usize,
    /// Items right under this variant only.
    pub variant_only: usize,
    /// Two-sided exact McNemar p-value of this variant against the quadratic rule.
    pub p_value: f64,
}

/// Re-tally round 1 of every record under every variant.
pub fn ablate(records: &[ItemRecord], kind: AnswerKind, roster: &Roster) -> Vec<VariantRow> {
    let items: Vec<ItemBallots> = records
        .iter()
        .filter_map(|r| item_ballots(r, kind, roster))
        .collect();
    let folds = fold_weights(records, kind, roster);
    let proposers = fold_accuracies(&items);
    let best_single = best_single_model(&items);
    let outcomes: BTreeMap<Variant, Vec<bool>> = Variant::ALL
        .iter()
        .map(|&v| {
            let picks = items
                .iter()
                .enumerate()
                .map(|(i, it)| match v {
                    Variant::Oracle => it.correct.iter().any(|&c| c),
                    Variant::BestSingle => single_correct(it, best_single.as_deref()),
                    Variant::ProposerWeights => {
                        proposer_weighted(it, &proposers[i % 2]).is_some_and(|j| it.correct[j])
                    }
                    _ => pick(v, it, &folds[i % 2]).is_some_and(|j| it.correct[j]),
                })
                .collect();
            (v, picks)
        })
        .collect();
    let reference = &outcomes[&Variant::Quadratic];
    Variant::ALL
        .iter()
        .map(|v| {
            let got = &outcomes[v];
            let correct = got.iter().filter(|&&c| c).count();
            let (ci_low, ci_high) = wilson(correct, got.len());
            let quadratic_only = reference
                .iter()
                .zip(got)
                .filter(|(r, g)| **r && !**g)
                .count();
            let variant_only = reference
                .iter()
                .zip(got)
                .filter(|(r, g)| !**r && **g)
                .count();
            VariantRow {
                variant: *v,
                n: got.len(),
                correct,
                ci_low,
                ci_high,
                quadratic_only,
                variant_only,
                p_value: mcnemar_exact(quadratic_only, variant_only),
            }
        })
        .collect()
}

fn item_ballots<'a>(
    rec: &'a ItemRecord,
    kind: AnswerKind,
    roster: &Roster,
) -> Option<ItemBallots<'a>> {
    let t = rec.nsed.as_ref().or(rec.qv.as_ref())?;
    let round = t.rounds.first()?;
    if round.proposals.is_empty() {
        return None;
    }
    let evaluator_models = round
        .evaluations
        .iter()
        .map(|e| roster.model_of(&e.evaluator))
        .collect();
    let owns = round
        .evaluations
        .iter()
        .map(|e| {
            let index = roster.agents.iter().position(|a| a.name == e.evaluator)?;
            round.candidates.iter().position(|&c| c == index)
        })
        .collect();
    let correct = judges::correctness(round, &rec.gold, kind);
    Some(ItemBallots {
        item: &rec.item,
        seed: rec.seed,
        round,
        evaluator_models,
        owns,
        correct,
    })
}

/// Per fold, each judge model's weight max(0, 2·AUC − 1), measured on the
/// other fold's items (fold = position in the run's order, mod 2).
fn fold_weights(
    records: &[ItemRecord],
    kind: AnswerKind,
    roster: &Roster,
) -> [BTreeMap<String, f64>; 2] {
    let usable: Vec<&ItemRecord> = records
        .iter()
        .filter(|r| item_ballots(r, kind, roster).is_some())
        .collect();
    let weights_from = |fold: usize| {
        let train = usable
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == fold)
            .map(|(_, r)| *r);
        let mut j = Judges::new();
        judges::collect(&mut j, train, kind, roster);
        let mut w = BTreeMap::new();
        for row in judges::rows(&j) {
            let weight = row.auc.map_or(0.0, |a| (2.0 * a - 1.0).max(0.0));
            // One weight per model: the largest over its modes in the run.
            let e = w.entry(row.model).or_insert(0.0f64);
            *e = e.max(weight);
        }
        w
    };
    // Items of fold 0 are scored with weights learned on fold 1, and back.
    [weights_from(1), weights_from(0)]
}

/// Per fold, each model's round-1 accuracy on the other fold's items.
fn fold_accuracies(items: &[ItemBallots]) -> [BTreeMap<String, f64>; 2] {
    let accuracy = |fold: usize| {
        let mut tally: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for it in items
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == fold)
            .map(|x| x.1)
        {
            for (p, &c) in it.round.proposals.iter().zip(&it.correct) {
                let e = tally.entry(p.model.clone()).or_default();
                e.0 += usize::from(c);
                e.1 += 1;
            }
        }
        tally
            .into_iter()
            .map(|(m, (k, n))| (m, k as f64 / n.max(1) as f64))
            .collect()
    };
    [accuracy(1), accuracy(0)]
}

/// Classes of answers scored by the summed accuracy of their proposers;
/// the first proposal of the best class (ties: the earliest).
fn proposer_weighted(it: &ItemBallots, accuracy: &BTreeMap<String, f64>) -> Option<usize> {
    let props = &it.round.proposals;
    let weight = |j: usize| accuracy.get(&props[j].model).copied().unwrap_or(0.0);
    let score = |j: usize| -> f64 {
        match props[j].class() {
            Some(class) => (0..props.len())
                .filter(|&k| props[k].class() == Some(class))
                .map(weight)
                .sum(),
            None => f64::NEG_INFINITY,
        }
    };
    let mut best: Option<(usize, f64)> = None;
    for j in 0..props.len() {
        let s = score(j);
        if s.is_finite() && best.is_none_or(|(_, b)| s > b) {
            best = Some((j, s));
        }
    }
    best.map(|(j, _)| j)
}

/// The winning proposal of round 1 under `variant`.
fn pick(variant: Variant, it: &ItemBallots, weights: &BTreeMap<String, f64>) -> Option<usize> {
    let r = it.round;
    let n = r.proposals.len();
    let tally = |ballots: &[Ballot]| vote::tally(ballots, &it.owns, n, Rule::Quadratic).winner;
    match variant {
        Variant::Quadratic => tally(&r.ballots),
        Variant::Linear => vote::tally(&r.ballots, &it.owns, n, Rule::Linear).winner,
        Variant::Plurality => plurality(it),
        Variant::PerAnswer => per_answer(it, |_| 1.0),
        Variant::ZScore => tally(&r.ballots.iter().map(z_scores).collect::<Vec<_>>()),
        Variant::Rank => tally(&r.ballots.iter().map(ranks).collect::<Vec<_>>()),
        Variant::LearnedWeights => per_answer(it, |e| {
            weights.get(&it.evaluator_models[e]).copied().unwrap_or(0.0)
        }),
        Variant::ProposerWeights | Variant::BestSingle | Variant::Oracle => None,
    }
}

/// Plurality of answers, ties broken by the same seeded order the bench's
/// plurality method uses for its item.
fn plurality(it: &ItemBallots) -> Option<usize> {
    let key = format!("{}/{}/plurality", it.seed, it.item);
    vote_index(&it.round.proposals, &key)
}

/// Quadratic votes over answer classes; `weight(e)` scales evaluator e's
/// votes. Returns the first proposal of the winning class.
fn per_answer(it: &ItemBallots, weight: impl Fn(usize) -> f64) -> Option<usize> {
    let props = &it.round.proposals;
    // Class of each proposal: its answer, or itself when it has none.
    let mut classes: Vec<Vec<usize>> = Vec::new();
    for (j, p) in props.iter().enumerate() {
        let same = classes
            .iter_mut()
            .find(|c| p.class().is_some() && props[c[0]].class() == p.class());
        match same {
            Some(c) => c.push(j),
            None => classes.push(vec![j]),
        }
    }
    let mut totals = vec![0.0; classes.len()];
    for (e, ballot) in it.round.ballots.iter().enumerate() {
        let own = it.owns.get(e).copied().flatten();
        let class_scores: Ballot = classes
            .iter()
            .map(|c| {
                let scores: Vec<f64> = c
                    .iter()
                    .filter(|&&j| Some(j) != own)
                    .filter_map(|&j| ballot.get(j).copied().flatten())
                    .collect();
                (!scores.is_empty()).then(|| scores.iter().sum::<f64>() / scores.len() as f64)
            })
            .collect();
        let w = weight(e);
        for (k, v) in vote::quadratic(&class_scores, None).into_iter().enumerate() {
            totals[k] += w * v.unwrap_or(0.0);
        }
    }
    let mut best = 0;
    for k in 1..totals.len() {
        if totals[k] > totals[best] {
            best = k;
        }
    }
    classes.get(best).map(|c| c[0])
}

/// A ballot's scores as z-scores over the candidates it scored (all equal:
/// no votes).
fn z_scores(ballot: &Ballot) -> Ballot {
    let v: Vec<f64> = ballot.iter().flatten().copied().collect();
    if v.len() < 2 {
        return vec![None; ballot.len()];
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    if sd == 0.0 {
        return vec![None; ballot.len()];
    }
    ballot.iter().map(|s| s.map(|x| (x - mean) / sd)).collect()
}

/// A ballot's scores as centred ranks (midranks for ties).
fn ranks(ballot: &Ballot) -> Ballot {
    let v: Vec<f64> = ballot.iter().flatten().copied().collect();
    let centre = (v.len() as f64 + 1.0) / 2.0;
    ballot
        .iter()
        .map(|s| {
            s.map(|x| {
                let below = v.iter().filter(|&&y| y < x).count() as f64;
                let equal = v.iter().filter(|&&y| y == x).count() as f64;
                below + (equal + 1.0) / 2.0 - centre
            })
        })
        .collect()
}

/// The model whose round-1 proposals are right most often on these items.
fn best_single_model(items: &[ItemBallots]) -> Option<String> {
    let mut right: BTreeMap<&str, usize> = BTreeMap::new();
    for it in items {
        for (p, &c) in it.round.proposals.iter().zip(&it.correct) {
            *right.entry(p.model.as_str()).or_default() += usize::from(c);
        }
    }
    right
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0)))
        .map(|(m, _)| m.to_string())
}

fn single_correct(it: &ItemBallots, model: Option<&str>) -> bool {
    it.round
        .proposals
        .iter()
        .zip(&it.correct)
        .any(|(p, &c)| Some(p.model.as_str()) == model && c)
}

/// The ablation table in markdown.
pub fn markdown(rows: &[VariantRow]) -> String {
    let mut s = String::from(
        "| rule | accuracy | 95% CI (Wilson) | n | quadratic right only | rule right only | p (exact McNemar) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let acc = if r.n == 0 {
            0.0
        } else {
            r.correct as f64 / r.n as f64
        };
        s.push_str(&format!(
            "| {} | {:.1}% ({}/{}) | {:.1}–{:.1}% | {} | {} | {} | {:.3} |\n",
            r.variant.name(),
            100.0 * acc,
            r.correct,
            r.n,
            100.0 * r.ci_low,
            100.0 * r.ci_high,
            r.n,
            r.quadratic_only,
            r.variant_only,
            r.p_value
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliberation::{EvaluationRecord, Proposal, Usage};

    fn proposal(model: &str, answer: &str) -> Proposal {
        Proposal {
            agent: model.into(),
            model: model.into(),
            thought_process: String::new(),
            content: format!("\\boxed{{{answer}}}"),
            answer: Some(answer.into()),
            found: None,
            behaviour: None,
            finish_reason: "eos".into(),
            inference_id: String::new(),
            usage: Usage::default(),
            attestation: None,
            reasoning: None,
        }
    }

    /// Round 1 of three agents `a`, `b`, `c` (models of the same names) with
    /// these answers and ballots (each evaluator's own entry `None`).
    fn round(answers: [&str; 3], ballots: Vec<Ballot>) -> Round {
        let owns: Vec<Option<usize>> = (0..3).map(Some).collect();
        Round {
            round: 1,
            candidates: vec![0, 1, 2],
            proposals: ["a", "b", "c"]
                .iter()
                .zip(answers)
                .map(|(m, a)| proposal(m, a))
                .collect(),
            abstentions: vec![],
            evaluations: ["a", "b", "c"]
                .iter()
                .map(|e| EvaluationRecord {
                    evaluator: e.to_string(),
                    shown: vec![],
                    labels: vec![],
                    evaluation: None,
                    error: None,
                })
                .collect(),
            quadratic: vote::tally(&ballots, &owns, 3, Rule::Quadratic),
            linear: vote::tally(&ballots, &owns, 3, Rule::Linear),
            ballots,
            winner: None,
            consensus: false,
        }
    }

    fn item<'a>(r: &'a Round, correct: [bool; 3]) -> ItemBallots<'a> {
        ItemBallots {
            item: "i",
            seed: 1,
            round: r,
            evaluator_models: vec!["a".into(), "b".into(), "c".into()],
            owns: vec![Some(0), Some(1), Some(2)],
            correct: correct.to_vec(),
        }
    }

    #[test]
    fn votes_per_answer_pool_the_proposals_that_agree() {
        // b and c both answer 7; a answers 5 and endorses both (+50 each);
        // b and c each endorse a (+60) a little more than each other (+50).
        let ballots = vec![
            vec![None, Some(50.0), Some(50.0)],
            vec![Some(60.0), None, Some(50.0)],
            vec![Some(60.0), Some(50.0), None],
        ];
        let r = round(["5", "7", "7"], ballots);
        let it = item(&r, [false, true, true]);
        let none = BTreeMap::new();
        // Per proposal a's budget is split over b and c: S = [1.477, 1.381,
        // 1.381], a wins. Per answer, a's whole vote goes to the class of 7:
        // T = [1.477, 2.348], and 7 wins.
        assert_eq!(pick(Variant::Quadratic, &it, &none), Some(0));
        assert_eq!(pick(Variant::PerAnswer, &it, &none), Some(1));
        // Judge weights: only a's votes count.
        let w = BTreeMap::from([("a".to_string(), 1.0)]);
        assert_eq!(pick(Variant::LearnedWeights, &it, &w), Some(1));
    }

    #[test]
    fn proposer_weights_follow_the_accurate_model_unless_outvoted() {
        let r = round(["5", "7", "8"], vec![vec![None; 3]; 3]);
        let it = item(&r, [false, true, false]);
        let acc = BTreeMap::from([
            ("a".to_string(), 0.3),
            ("b".to_string(), 0.6),
            ("c".to_string(), 0.2),
        ]);
        assert_eq!(proposer_weighted(&it, &acc), Some(1));
        // a and c agree: 0.3 + 0.2 < 0.6, b still wins; at 0.4 + 0.3 they win.
        let r = round(["5", "7", "5"], vec![vec![None; 3]; 3]);
        let it = item(&r, [true, false, true]);
        assert_eq!(proposer_weighted(&it, &acc), Some(1));
        let acc = BTreeMap::from([
            ("a".to_string(), 0.4),
            ("b".to_string(), 0.6),
            ("c".to_string(), 0.3),
        ]);
        assert_eq!(proposer_weighted(&it, &acc), Some(0));
    }

    #[test]
    fn z_scores_and_ranks_centre_each_ballot() {
        let b: Ballot = vec![Some(90.0), None, Some(10.0), Some(50.0)];
        let z = z_scores(&b);
        assert_eq!(z[1], None);
        let sum: f64 = z.iter().flatten().sum();
        assert!(sum.abs() < 1e-12);
        assert!(z[0].unwrap() > z[3].unwrap() && z[3].unwrap() > z[2].unwrap());
        assert_eq!(ranks(&b), vec![Some(1.0), None, Some(-1.0), Some(0.0)]);
        // A flat ballot carries no preference: no votes.
        assert_eq!(z_scores(&vec![Some(80.0), Some(80.0)]), vec![None, None]);
        assert_eq!(
            ranks(&vec![Some(80.0), Some(80.0)]),
            vec![Some(0.0), Some(0.0)]
        );
    }
}
