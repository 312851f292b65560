//! How informative each judge is: from the evaluations recorded in bench
//! runs, every (evaluator model, evaluation mode)'s ability to tell a correct
//! proposal from a wrong one. Per judge: the AUC of its score for correct vs
//! incorrect candidates (Mann-Whitney, ties as half), its within-call pairwise
//! accuracy (a correct and a wrong candidate shown in the same call: which
//! one scored higher), its bias (mean score, share of endorsements) and how
//! often it abstains. Math sets only: a code proposal's correctness is not
//! recorded per proposal.
//!
//! Pooled over several runs, an evaluation that two runs share (the same
//! judge and mode shown the same proposals of the same item, replying the
//! same: one judge's deterministic calls in two runs that differ only in
//! another judge's mode) is counted once, so it does not pose as evidence
//! twice.

use std::collections::BTreeMap;

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::ItemRecord;
use crate::answer::{same_answer, AnswerKind};
use crate::deliberation::roster::Roster;
use crate::deliberation::{EvalMode, Round};
use crate::results::csv_text::csv_text;
use crate::stats::{auc_of_labelled, hanley_mcneil, wilson};

/// One score a judge gave one candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Which evaluation call (unique within a collection).
    pub call: usize,
    /// `None`: the candidate was shown but got no readable score.
    pub score: Option<f64>,
    /// Whether the candidate's answer matches the item's gold answer.
    pub correct: bool,
}

/// One judge's evaluation calls and scores.
#[derive(Debug, Clone, Default)]
pub struct JudgeData {
    /// Evaluation calls counted.
    pub calls: usize,
    /// Calls whose reply held no readable score (counted as abstentions by
    /// the protocol).
    pub abstained: usize,
    /// Calls that failed outright (an error, a timeout).
    pub failed: usize,
    /// Every score the judge gave a candidate, with whether the candidate was correct.
    pub observations: Vec<Observation>,
    /// Calls seen again in another run of the pool, counted once.
    pub duplicates: usize,
    /// Digests of the calls counted (item, proposals shown, reply).
    seen: std::collections::BTreeSet<[u8; 32]>,
}

/// Judges keyed by (evaluator model, mode).
pub type Judges = BTreeMap<(String, EvalMode), JudgeData>;

/// Add the evaluations of a run's records to `judges`. `kind` grades the
/// candidates' answers against each item's gold answer; `roster` maps agent
/// names to models.
pub fn collect<'a>(
    judges: &mut Judges,
    records: impl IntoIterator<Item = &'a ItemRecord>,
    kind: AnswerKind,
    roster: &Roster,
) {
    let mut call = judges
        .values()
        .flat_map(|j| j.observations.iter().map(|o| o.call + 1))
        .max()
        .unwrap_or(0);
    for rec in records {
        let Some(t) = rec.nsed.as_ref().or(rec.qv.as_ref()) else {
            continue;
        };
        for round in &t.rounds {
            let correct = correctness(round, &rec.gold, kind);
            for e in &round.evaluations {
                let mode = e.evaluation.as_ref().map(|ev| ev.mode);
                let mode = mode.unwrap_or(EvalMode::Generative);
                let judge = judges
                    .entry((roster.model_of(&e.evaluator), mode))
                    .or_default();
                if !judge.seen.insert(call_digest(&rec.item, round, e)) {
                    judge.duplicates += 1;
                    continue;
                }
                judge.calls += 1;
                let Some(ev) = &e.evaluation else {
                    judge.failed += 1;
                    continue;
                };
                if ev.abstained {
                    judge.abstained += 1;
                }
                for (k, &j) in e.shown.iter().enumerate() {
                    let score = (!ev.abstained)
                        .then(|| ev.scores.get(k).copied().flatten())
                        .flatten();
                    judge.observations.push(Observation {
                        call,
                        score,
                        correct: correct.get(j).copied().unwrap_or(false),
                    });
                }
                call += 1;
            }
        }
    }
}

/// What makes two evaluation calls the same call: the item, the proposals
/// shown (in order) and what the judge replied.
fn call_digest(item: &str, round: &Round, e: &crate::deliberation::EvaluationRecord) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(item.as_bytes());
    for &j in &e.shown {
        field(
            round
                .proposals
                .get(j)
                .map_or(&[][..], |p| p.content.as_bytes()),
        );
    }
    match &e.evaluation {
        None => field(b"failed"),
        Some(ev) => {
            for raw in &ev.raw {
                field(raw.as_bytes());
            }
            for score in &ev.scores {
                field(&score.map_or(f64::NAN, |x| x).to_le_bytes());
            }
        }
    }
    h.finalize().into()
}

/// Whether each proposal of a round has the gold answer.
pub(crate) fn correctness(round: &Round, gold: &str, kind: AnswerKind) -> Vec<bool> {
    round
        .proposals
        .iter()
        .map(|p| {
            p.answer
                .as_deref()
                .is_some_and(|a| same_answer(a, gold, kind))
        })
        .collect()
}

/// A judge's quality figures.
#[derive(Debug, Clone, Serialize)]
pub struct JudgeRow {
    /// The evaluator's model.
    pub model: String,
    /// How the judge scores: written scores or yes/no log-probabilities.
    pub mode: EvalMode,
    /// Evaluation calls counted (duplicates across runs once).
    pub calls: usize,
    /// Calls another run of the pool had already made, counted once.
    pub duplicates: usize,
    /// Share of the calls that did not fail whose reply held no readable score (NaN when none).
    pub abstention_rate: f64,
    /// Calls that failed outright (an error, a timeout).
    pub failed: usize,
    /// Candidates shown.
    pub shown: usize,
    /// Candidates shown that got no score (abstentions included).
    pub unscored: usize,
    /// Scored candidates that were correct / wrong.
    pub positives: usize,
    /// Scored candidates that were wrong.
    pub negatives: usize,
    /// Mean score over scored candidates (the bias).
    pub mean_score: f64,
    /// Mean score over scored correct candidates (NaN when none).
    pub mean_score_correct: f64,
    /// Mean score over scored wrong candidates (NaN when none).
    pub mean_score_wrong: f64,
    /// Share of scored candidates given a positive score.
    pub endorse_rate: f64,
    /// `None` without both a correct and a wrong scored candidate.
    pub auc: Option<f64>,
    /// Lower bound of the Hanley-McNeil 95% interval of the AUC.
    pub auc_low: Option<f64>,
    /// Upper bound of the Hanley-McNeil 95% interval of the AUC.
    pub auc_high: Option<f64>,
    /// Within-call (correct, wrong) pairs: the correct one scored higher,
    /// equal, lower.
    pub pair_wins: usize,
    /// Within-call pairs scored equal.
    pub pair_ties: usize,
    /// Within-call pairs where the wrong candidate scored higher.
    pub pair_losses: usize,
    /// `(wins + ties/2) / pairs`.
    pub pair_accuracy: Option<f64>,
}

/// The quality figures of every judge.
pub fn rows(judges: &Judges) -> Vec<JudgeRow> {
    judges
        .iter()
        .map(|((model, mode), data)| row(model, *mode, data))
        .collect()
}

fn row(model: &str, mode: EvalMode, d: &JudgeData) -> JudgeRow {
    let scored: Vec<(f64, bool)> = d
        .observations
        .iter()
        .filter_map(|o| Some((o.score?, o.correct)))
        .collect();
    let mean = |f: &dyn Fn(&(f64, bool)) -> bool| {
        let v: Vec<f64> = scored.iter().filter(|x| f(x)).map(|x| x.0).collect();
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    let positives = scored.iter().filter(|x| x.1).count();
    let auc = auc_of_labelled(&scored);
    let ci = auc.map(|a| hanley_mcneil(a, positives, scored.len() - positives));
    let (wins, ties, losses) = pairs(&d.observations);
    let pairs_n = wins + ties + losses;
    JudgeRow {
        model: model.to_string(),
        mode,
        calls: d.calls,
        duplicates: d.duplicates,
        abstention_rate: ratio(d.abstained, d.calls - d.failed),
        failed: d.failed,
        shown: d.observations.len(),
        unscored: d.observations.len() - scored.len(),
        positives,
        negatives: scored.len() - positives,
        mean_score: mean(&|_| true),
        mean_score_correct: mean(&|x| x.1),
        mean_score_wrong: mean(&|x| !x.1),
        endorse_rate: ratio(scored.iter().filter(|x| x.0 > 0.0).count(), scored.len()),
        auc,
        auc_low: ci.map(|c| c.0),
        auc_high: ci.map(|c| c.1),
        pair_wins: wins,
        pair_ties: ties,
        pair_losses: losses,
        pair_accuracy: (pairs_n > 0).then(|| (wins as f64 + 0.5 * ties as f64) / pairs_n as f64),
    }
}

fn ratio(k: usize, n: usize) -> f64 {
    if n == 0 {
        f64::NAN
    } else {
        k as f64 / n as f64
    }
}

/// Within each call, every (correct, wrong) pair of scored candidates: the
/// correct one scored higher, equal, lower.
fn pairs(observations: &[Observation]) -> (usize, usize, usize) {
    let mut by_call: BTreeMap<usize, Vec<(f64, bool)>> = BTreeMap::new();
    for o in observations {
        if let Some(s) = o.score {
            by_call.entry(o.call).or_default().push((s, o.correct));
        }
    }
    let (mut wins, mut ties, mut losses) = (0, 0, 0);
    for scored in by_call.values() {
        for &(good, _) in scored.iter().filter(|x| x.1) {
            for &(bad, _) in scored.iter().filter(|x| !x.1) {
                match good.total_cmp(&bad) {
                    std::cmp::Ordering::Greater => wins += 1,
                    std::cmp::Ordering::Equal => ties += 1,
                    std::cmp::Ordering::Less => losses += 1,
                }
            }
        }
    }
    (wins, ties, losses)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|x| x.is_finite())
        .map_or("–".into(), |x| format!("{x:.digits$}"))
}

/// The judge table in markdown.
pub fn markdown(rows: &[JudgeRow]) -> String {
    let mut s = String::from(
        "| judge | mode | calls | abstained | scored (correct / wrong) | AUC (95% CI) | pairwise (win/tie/loss) | mean score | mean correct / wrong | endorses |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let auc = match (r.auc, r.auc_low, r.auc_high) {
            (Some(a), Some(lo), Some(hi)) => format!("{a:.3} ({lo:.3}–{hi:.3})"),
            _ => "–".into(),
        };
        let pairs = match r.pair_accuracy {
            Some(p) => format!(
                "{:.1}% ({}/{}/{})",
                100.0 * p,
                r.pair_wins,
                r.pair_ties,
                r.pair_losses
            ),
            None => "–".into(),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} ({} / {}) | {} | {} | {} | {} / {} | {} |\n",
            r.model,
            mode_name(r.mode),
            r.calls,
            percent(r.abstention_rate),
            r.positives + r.negatives,
            r.positives,
            r.negatives,
            auc,
            pairs,
            opt(Some(r.mean_score), 1),
            opt(Some(r.mean_score_correct), 1),
            opt(Some(r.mean_score_wrong), 1),
            percent(r.endorse_rate),
        ));
    }
    let repeated: Vec<String> = rows
        .iter()
        .filter(|r| r.duplicates > 0)
        .map(|r| format!("{} {} ({})", r.model, mode_name(r.mode), r.duplicates))
        .collect();
    if !repeated.is_empty() {
        s.push_str(&format!(
            "\nIdentical calls (same item, proposals and reply) in more than one place are counted once; left out as repeats: {}.\n",
            repeated.join(", ")
        ));
    }
    s
}

fn percent(x: f64) -> String {
    if x.is_finite() {
        format!("{:.0}%", 100.0 * x)
    } else {
        "–".into()
    }
}

fn mode_name(mode: EvalMode) -> &'static str {
    match mode {
        EvalMode::Generative => "generative",
        EvalMode::Logprob => "logprob",
    }
}

/// The judge table as CSV.
pub fn csv(rows: &[JudgeRow]) -> String {
    const HEADER: [&str; 18] = [
        "model",
        "mode",
        "calls",
        "abstention_rate",
        "failed",
        "shown",
        "unscored",
        "positives",
        "negatives",
        "mean_score",
        "mean_score_correct",
        "mean_score_wrong",
        "endorse_rate",
        "auc",
        "auc_low",
        "auc_high",
        "pair_accuracy",
        "pairs",
    ];
    csv_text(
        &HEADER,
        rows.iter().map(|r| {
            [
                r.model.clone(),
                mode_name(r.mode).to_string(),
                r.calls.to_string(),
                opt(Some(r.abstention_rate), 4),
                r.failed.to_string(),
                r.shown.to_string(),
                r.unscored.to_string(),
                r.positives.to_string(),
                r.negatives.to_string(),
                opt(Some(r.mean_score), 3),
                opt(Some(r.mean_score_correct), 3),
                opt(Some(r.mean_score_wrong), 3),
                opt(Some(r.endorse_rate), 4),
                opt(r.auc, 4),
                opt(r.auc_low, 4),
                opt(r.auc_high, 4),
                opt(r.pair_accuracy, 4),
                (r.pair_wins + r.pair_ties + r.pair_losses).to_string(),
            ]
        }),
    )
}

/// A Wilson interval on the pairwise accuracy, ties counted as half a win
/// (rounded down): a rough interval, since pairs within a call share scores.
pub fn pair_interval(r: &JudgeRow) -> Option<(f64, f64)> {
    let n = r.pair_wins + r.pair_ties + r.pair_losses;
    (n > 0).then(|| wilson(r.pair_wins + r.pair_ties / 2, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_pooled_twice_counts_once() {
        // Two runs of the dev pool share gemma3-270m's log-probability
        // calls; the same run read twice is the extreme case.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("results/runs/dev/gsm8k-high-perf");
        let records = crate::bench::read_records(&dir).expect("records");
        let meta = std::fs::read_to_string(dir.join("meta.json")).expect("meta");
        let meta: serde_json::Value = serde_json::from_str(&meta).expect("json");
        let roster: Roster =
            serde_json::from_value(meta["fingerprint"]["roster"].clone()).expect("roster");
        let mut once = Judges::new();
        collect(&mut once, &records, AnswerKind::Numeric, &roster);
        let mut twice = Judges::new();
        collect(&mut twice, &records, AnswerKind::Numeric, &roster);
        collect(&mut twice, &records, AnswerKind::Numeric, &roster);
        for ((a, b), (key, d)) in rows(&once).iter().zip(rows(&twice)).zip(&twice) {
            assert_eq!(
                (a.calls, a.positives, a.negatives),
                (b.calls, b.positives, b.negatives),
                "{key:?}"
            );
            assert_eq!(b.duplicates, a.calls + a.duplicates, "{key:?}");
            assert_eq!(d.observations.len(), a.shown);
        }
        let total: usize = rows(&once).iter().map(|r| r.calls).sum();
        assert!(total > 100, "the run has its evaluations: {total}");
        assert!(markdown(&rows(&twice)).contains("left out as repeats: "));
    }

    #[test]
    fn pairs_compare_only_within_a_call() {
        let o = |call, score, correct| Observation {
            call,
            score: Some(score),
            correct,
        };
        let obs = [
            o(0, 80.0, true),
            o(0, 20.0, false),
            o(0, 80.0, false),
            // Another call: a high wrong score here is not paired with call 0.
            o(1, 99.0, false),
            o(1, 10.0, true),
            Observation {
                call: 1,
                score: None,
                correct: false,
            },
        ];
        assert_eq!(pairs(&obs), (1, 1, 1));
    }
}
