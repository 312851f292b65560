//! Accuracy against compute: each method of a bench run at several budgets,
//! read from what the run recorded, so that methods are compared at equal
//! tokens rather than at their default settings. Self-consistency at k =
//! 1, 2, 4, … up to the samples drawn (the majority of the first k, with
//! the run's own seeded tie-break); NSED stopped after 1, 2, … rounds (the
//! winner of that round, the compute of the rounds so far; a run of the
//! one-round vote alone gives NSED's round 1); debate after 1, 2, … rounds;
//! plurality of the agents' first answers; each model alone. Tokens are
//! prompt + generated tokens per item: what the calls cost to run. Math
//! sets only.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{vote_answers, ItemRecord, MethodKey};
use crate::answer::{same_answer, AnswerKind, Outcome};
use crate::deliberation::{Proposal, Usage};
use crate::results::figure::Series;
use crate::results::report::paired;
use crate::stats::wilson;

/// One method at one budget, over the items that have it.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The method family: `self-consistency`, `nsed`, `debate`, `single:<model>`.
    pub family: String,
    /// k samples or r rounds (1 for a model alone).
    pub budget: usize,
    /// Items that have this method at this budget.
    pub n: usize,
    /// Items answered correctly at this budget.
    pub correct: usize,
    /// Lower bound of the Wilson 95% interval of the accuracy.
    pub ci_low: f64,
    /// Upper bound of the Wilson 95% interval of the accuracy.
    pub ci_high: f64,
    /// Mean prompt + generated tokens per item.
    pub tokens_per_item: f64,
    /// Mean generated tokens per item.
    pub generated_per_item: f64,
    /// Per item, in the records' order: right or not (`None`: not run).
    #[serde(skip)]
    pub outcomes: Vec<Option<bool>>,
}

impl Point {
    /// Share of the `n` items answered correctly (0 when `n` is 0).
    pub fn accuracy(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.correct as f64 / self.n as f64
        }
    }
    /// A legend label: `self-consistency k=4`, `nsed 2 round(s)`, or the family.
    pub fn label(&self) -> String {
        match self.family.as_str() {
            "self-consistency" => format!("self-consistency k={}", self.budget),
            "nsed" | "debate" => format!("{} {} round(s)", self.family, self.budget),
            other => other.to_string(),
        }
    }
}

/// Every method's points over `records`.
pub fn points(records: &[ItemRecord], kind: AnswerKind) -> Vec<Point> {
    let right = |p: Option<&Proposal>, gold: &str| {
        p.and_then(|p| p.answer.as_deref())
            .is_some_and(|a| same_answer(a, gold, kind))
    };
    let mut out = Vec::new();
    let max_k = records
        .iter()
        .map(|r| r.self_consistency.len())
        .max()
        .unwrap_or(0);
    for k in powers_up_to(max_k) {
        out.push(point("self-consistency", k, records, |r| {
            let samples = r.self_consistency.get(..k)?;
            let key = format!("{}/{}/sc", r.seed, r.item);
            let chosen = vote_answers(samples, &key);
            Some((
                right(chosen, &r.gold),
                samples.iter().map(|p| p.usage).sum(),
            ))
        }));
    }
    let max_rounds = records
        .iter()
        .filter_map(|r| transcript(r).map(|t| t.rounds.len()))
        .max()
        .unwrap_or(0);
    for rounds in 1..=max_rounds {
        out.push(point("nsed", rounds, records, |r| {
            let t = transcript(r)?;
            let upto = &t.rounds[..rounds.min(t.rounds.len())];
            let last = upto.last()?;
            let winner = last.winner.map(|w| &last.proposals[w]);
            Some((right(winner, &r.gold), upto.iter().map(|x| x.usage()).sum()))
        }));
    }
    let debate_rounds = records.iter().map(|r| r.debate.len()).max().unwrap_or(0);
    for rounds in 1..=debate_rounds {
        out.push(point("debate", rounds, records, |r| {
            let upto = r.debate.get(..rounds)?;
            let key = format!("{}/{}/debate", r.seed, r.item);
            let chosen = vote_answers(upto.last()?, &key);
            let usage = upto.iter().flatten().map(|p| p.usage).sum();
            Some((right(chosen, &r.gold), usage))
        }));
    }
    if records
        .iter()
        .any(|r| r.results.contains_key(&MethodKey::Plurality))
    {
        out.push(point("plurality", 1, records, |r| {
            let x = r.results.get(&MethodKey::Plurality)?;
            Some((x.outcome == Outcome::Correct, x.usage))
        }));
    }
    let models: Vec<String> = records
        .iter()
        .flat_map(|r| r.single.iter().map(|p| p.model.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for model in models {
        out.push(point(&format!("single:{model}"), 1, records, |r| {
            let p = r.single.iter().find(|p| p.model == model)?;
            Some((right(Some(p), &r.gold), p.usage))
        }));
    }
    out
}

/// NSED's transcript, or the one-round vote's when NSED did not run (it is
/// NSED's round 1).
fn transcript(r: &ItemRecord) -> Option<&crate::deliberation::Transcript> {
    r.nsed.as_ref().or(r.qv.as_ref())
}

/// 1, 2, 4, … below `max`, and `max` itself.
fn powers_up_to(max: usize) -> Vec<usize> {
    let mut v: Vec<usize> = std::iter::successors(Some(1usize), |k| k.checked_mul(2))
        .take_while(|&k| k < max)
        .collect();
    if max > 0 {
        v.push(max);
    }
    v
}

fn point(
    family: &str,
    budget: usize,
    records: &[ItemRecord],
    grade: impl Fn(&ItemRecord) -> Option<(bool, Usage)>,
) -> Point {
    let graded: Vec<Option<(bool, Usage)>> = records.iter().map(grade).collect();
    let done: Vec<&(bool, Usage)> = graded.iter().flatten().collect();
    let n = done.len();
    let correct = done.iter().filter(|x| x.0).count();
    let (ci_low, ci_high) = wilson(correct, n);
    let mean = |f: &dyn Fn(&Usage) -> usize| {
        if n == 0 {
            0.0
        } else {
            done.iter().map(|x| f(&x.1) as f64).sum::<f64>() / n as f64
        }
    };
    Point {
        family: family.to_string(),
        budget,
        n,
        correct,
        ci_low,
        ci_high,
        tokens_per_item: mean(&|u| u.prompt_tokens + u.generated_tokens),
        generated_per_item: mean(&|u| u.generated_tokens),
        outcomes: graded.iter().map(|g| g.map(|x| x.0)).collect(),
    }
}

/// NSED as run (its last round on every item) against self-consistency at
/// the k whose tokens per item are closest to NSED's: both on the items
/// that have both.
#[derive(Debug, Clone, Serialize)]
pub struct Matched {
    /// The self-consistency k whose tokens per item are closest to NSED's.
    pub k: usize,
    /// Items both methods have.
    pub n: usize,
    /// NSED's tokens per item (total or generated, by the matching).
    pub nsed_tokens: f64,
    /// Self-consistency's tokens per item at k (total or generated, by the matching).
    pub sc_tokens: f64,
    /// Items NSED gets right, of `n`.
    pub nsed_correct: usize,
    /// Items self-consistency gets right, of `n`.
    pub sc_correct: usize,
    /// Items NSED gets right and self-consistency wrong.
    pub nsed_only: usize,
    /// Items self-consistency gets right and NSED wrong.
    pub sc_only: usize,
    /// Two-sided exact McNemar p-value on the discordant items.
    pub p_value: f64,
}

/// The matched-compute comparison, if the run has NSED and self-consistency.
pub fn matched(points: &[Point]) -> Option<Matched> {
    matched_by(points, |p| p.tokens_per_item)
}

/// [`matched`] at equal *generated* tokens per item: NSED's prompt tokens
/// (every evaluation re-reads the proposals) dominate its total, so at equal
/// totals self-consistency generates more; this compares the decoding work.
/// `nsed_tokens` and `sc_tokens` are then generated tokens.
pub fn matched_generated(points: &[Point]) -> Option<Matched> {
    matched_by(points, |p| p.generated_per_item)
}

fn matched_by(points: &[Point], measure: impl Fn(&Point) -> f64) -> Option<Matched> {
    let nsed = points
        .iter()
        .filter(|p| p.family == "nsed")
        .max_by_key(|p| p.budget)?;
    let sc = points
        .iter()
        .filter(|p| p.family == "self-consistency")
        .min_by(|a, b| {
            let gap = |p: &Point| (measure(p) - measure(nsed)).abs();
            gap(a).total_cmp(&gap(b))
        })?;
    let (a, b) = on_shared_items(nsed, sc);
    let pair = paired(((), &a), ((), &b));
    Some(Matched {
        k: sc.budget,
        n: pair.n,
        nsed_tokens: measure(nsed),
        sc_tokens: measure(sc),
        nsed_correct: a.iter().filter(|&&x| x).count(),
        sc_correct: b.iter().filter(|&&x| x).count(),
        nsed_only: pair.reference_only,
        sc_only: pair.method_only,
        p_value: pair.p_value,
    })
}

/// Two points' per-item outcomes on the items both have, in record order
/// (for [`paired`]).
pub fn on_shared_items(a: &Point, b: &Point) -> (Vec<bool>, Vec<bool>) {
    a.outcomes
        .iter()
        .zip(&b.outcomes)
        .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
        .unzip()
}

/// The points as a markdown table, cheapest first within each family.
pub fn markdown(points: &[Point]) -> String {
    let mut s = String::from(
        "| method | budget | accuracy | 95% CI (Wilson) | n | tokens/item | generated/item |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for p in points {
        s.push_str(&format!(
            "| {} | {} | {:.1}% ({}/{}) | {:.1}–{:.1}% | {} | {:.0} | {:.0} |\n",
            p.family,
            p.budget,
            100.0 * p.accuracy(),
            p.correct,
            p.n,
            100.0 * p.ci_low,
            100.0 * p.ci_high,
            p.n,
            p.tokens_per_item,
            p.generated_per_item
        ));
    }
    s
}

/// The points as figure series: one line per family (self-consistency by
/// k, NSED and debate by rounds), each point with its Wilson 95% interval;
/// each model alone is a separate, labelled point, not joined to the
/// others (they are different models, not budgets of one method).
pub fn series(points: &[Point]) -> Vec<Series> {
    let mut lines: BTreeMap<String, Vec<&Point>> = BTreeMap::new();
    for p in points.iter().filter(|p| p.n > 0) {
        lines.entry(p.family.clone()).or_default().push(p);
    }
    lines
        .into_iter()
        .map(|(family, mut pts)| {
            pts.sort_by(|a, b| a.tokens_per_item.total_cmp(&b.tokens_per_item));
            let single = family.strip_prefix("single:").map(|m| format!("{m} alone"));
            Series {
                unjoined: single.is_some(),
                name: single.unwrap_or(family),
                points: pts
                    .iter()
                    .map(|p| (p.tokens_per_item, p.accuracy()))
                    .collect(),
                intervals: pts.iter().map(|p| (p.ci_low, p.ci_high)).collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_double_up_to_the_samples_drawn() {
        assert_eq!(powers_up_to(0), Vec::<usize>::new());
        assert_eq!(powers_up_to(1), vec![1]);
        assert_eq!(powers_up_to(5), vec![1, 2, 4, 5]);
        assert_eq!(powers_up_to(16), vec![1, 2, 4, 8, 16]);
    }
}
