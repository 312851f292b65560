//! NSED, N-way self-evaluating deliberation (docs/reference.md §3): rounds in which every
//! agent proposes, every agent scores the others' proposals in one call
//! (neutral labels, a per-evaluator shuffled order, its own proposal shown as
//! an anchor and never scored), and a quadratic vote picks the round's winner;
//! halting by winner conviction. Owns the [`Agent`] seam (a model in this
//! process, or one served over NATS by [`crate::federation`]), the roster
//! configuration, prompts and score parsing.

pub mod calls;
pub mod local;
pub mod parse;
pub mod prompts;
pub mod roster;
pub mod vote;

use serde::{Deserialize, Serialize};

use crate::answer::{AnswerKind, Found};
use crate::engine::sampling::{SamplingParams, Sha256CounterRng};
use crate::stats::Draw;
use vote::{Ballot, Halting, Rule, Tally};

/// Why an agent gave no proposal or evaluation: the round records it (an
/// abstention, a missing ballot) and goes on without the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The agent's own work failed here (its model, tokenizer or sandbox).
    #[error("agent {agent}: {message}")]
    Failed {
        /// The agent's roster name.
        agent: String,
        /// What failed, without the agent's name (see [`AgentError::reason`]).
        message: String,
    },
    /// A call to a remote agent ended without an accepted reply.
    #[error("agent {agent}: {failure}")]
    Call {
        /// The agent's roster name.
        agent: String,
        /// Why the call ended.
        failure: CallFailure,
    },
}

impl AgentError {
    /// What went wrong, without the agent's name: what a served agent sends
    /// back, so that the orchestrator, which names the agent itself, records
    /// the same text as an in-process run.
    pub fn reason(&self) -> String {
        match self {
            AgentError::Failed { message, .. } => message.clone(),
            AgentError::Call { failure, .. } => failure.to_string(),
        }
    }
}

/// Why a call to an agent served elsewhere ended without an accepted reply.
/// Replies that fail a check (forged, replayed, misattributed, malformed)
/// never end a call: they are refused and recorded, and the call waits for
/// the genuine reply until one of these ends it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallFailure {
    /// No accepted reply within the phase's timeout.
    #[error("excluded: no reply within the {seconds:.0} s phase timeout")]
    Timeout {
        /// The phase timeout, in seconds.
        seconds: f64,
    },
    /// The replica running the call missed three heartbeats.
    #[error("excluded: no heartbeat for {seconds:.1} s (presumed dead)")]
    NoHeartbeat {
        /// How long the replica had been silent, in seconds.
        seconds: f64,
    },
    /// The agent answered, signed, with an error of its own.
    #[error("{0}")]
    Remote(String),
    /// The agent answered, signed, with another kind of outcome.
    #[error("the agent answered {asked} with something else")]
    WrongOutcome {
        /// What was asked for ("a proposal", "an evaluation").
        asked: &'static str,
    },
    /// The task could not be serialized.
    #[error("the task could not be encoded: {0}")]
    Encode(String),
    /// The connection to the NATS server closed for good.
    #[error("the federation connection closed")]
    Closed,
    /// The background watcher stopped (a bug or a stopped runtime).
    #[error("no reply (the watcher stopped)")]
    WatcherStopped,
}

/// Compute spent by one or more model calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// Number of model calls.
    pub calls: usize,
    /// Prompt tokens fed to the model, summed over the calls.
    pub prompt_tokens: usize,
    /// Tokens generated, summed over the calls.
    pub generated_tokens: usize,
    /// Inference time of the calls (prefill + decode).
    pub seconds: f64,
}

/// Saturating: counts come back from results files and remote agents, and a
/// hostile or corrupt 2^64 − 1 must not wrap a total to a small number.
impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Self) {
        self.calls = self.calls.saturating_add(o.calls);
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.generated_tokens = self.generated_tokens.saturating_add(o.generated_tokens);
        self.seconds += o.seconds;
    }
}

impl std::iter::Sum for Usage {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        let mut total = Self::default();
        iter.for_each(|u| total += u);
        total
    }
}

/// The problem under deliberation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// The item's id in its dataset; every call about the task names it.
    pub id: String,
    /// The problem; for code, the harness's whole user message.
    pub problem: String,
    /// How the task's answers are compared.
    pub kind: AnswerKind,
    /// A harness's system message (LiveCodeBench's), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
}

/// What a proposer sees besides the problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum ProposeContext {
    /// The problem alone: round 1, a baseline, or an agent with no proposal last round.
    Fresh,
    /// NSED round ≥ 2.
    Revise(Revision),
    /// Multi-agent debate round ≥ 2 (Du et al.).
    Debate {
        /// This agent's previous solution, if it gave one.
        own: Option<String>,
        /// The other agents' previous solutions.
        others: Vec<String>,
    },
}

/// Round ≥ 2 context for an NSED proposer: how its previous proposal fared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// The agent's previous proposal (the whole response).
    pub previous: String,
    /// Its quadratic-vote score `S_j` in the previous round.
    pub previous_score: f64,
    /// Its rank by that score, from 1 (tied proposals share the better rank).
    pub rank: usize,
    /// How many proposals were ranked.
    pub of: usize,
    /// Each evaluator's score of the previous proposal, with its reason.
    pub critiques: Vec<Critique>,
    /// Summaries of the other proposals of the previous round.
    pub competitors: Vec<Summary>,
}

/// One evaluator's score of a proposal, with its reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Critique {
    /// The evaluator's raw score, in -100..=100.
    pub score: f64,
    /// The evaluator's one-sentence reason (empty when it gave none).
    pub reason: String,
}

/// A short view of a competing proposal, shown to a reviser.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Its extracted answer in canonical form (`None`: no answer).
    pub answer: Option<String>,
    /// Its quadratic-vote score in the previous round.
    pub score: f64,
    /// The end of its text on one line, clipped to `max_chars / 5` (at least 120) characters.
    pub excerpt: String,
}

/// A proposer's call: solve the task, given what earlier rounds produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProposeRequest {
    /// The problem.
    pub task: Task,
    /// The round number, from 1.
    pub round: usize,
    /// What the proposer sees besides the problem.
    pub context: ProposeContext,
    /// Overrides the agent's own sampling settings (greedy single-model
    /// baselines, self-consistency samples).
    pub sampling: Option<SamplingParams>,
    /// The run's seed; with `inference_id` (and the agent's seed offset) it keys the RNG.
    pub seed: u64,
    /// Names the call (e.g. `{task}/nsed/r{round}/{agent}/propose`); keys the RNG with `seed`.
    pub inference_id: String,
    /// Most tokens the proposal may generate.
    pub max_tokens: usize,
    /// How many characters of other texts the prompt may quote.
    pub max_chars: usize,
}

/// One agent's reply to a [`ProposeRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// The proposing agent's roster name.
    pub agent: String,
    /// The id of the model that generated it.
    pub model: String,
    /// The reasoning before the final answer.
    pub thought_process: String,
    /// The whole response.
    pub content: String,
    /// The extracted answer in canonical form (`None`: no answer).
    pub answer: Option<String>,
    /// Which rule found the answer (`None`: no answer, or a program).
    pub found: Option<Found>,
    /// What groups proposals into classes when the answer alone does not:
    /// for code, the program's outputs on the public tests and on
    /// model-written probe inputs. Votes and consensus use it when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behaviour: Option<String>,
    /// Why generation stopped: `eos`, `stop`, `length` or `context`.
    pub finish_reason: String,
    /// The request's inference id.
    pub inference_id: String,
    /// The compute of the call.
    pub usage: Usage,
    /// Set when the proposal came from a remote agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
    /// A reasoning model's thinking, kept apart from `content` (the answer
    /// part, the only one graded and shown to the other agents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<Reasoning>,
}

/// The reasoning part of a reasoning model's proposal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    /// The thinking, markers removed.
    pub text: String,
    /// Generated tokens spent on it (part of `usage.generated_tokens`).
    pub tokens: usize,
    /// The generation ended inside the reasoning (the token limit): the
    /// proposal has no answer, whatever the thinking guessed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unfinished: bool,
    /// The reasoning budget ran out and the reasoning was closed for the
    /// model, which then wrote its answer in a second call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed_by_budget: bool,
}

/// How evaluators score.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum EvalMode {
    /// The NSED way: the model writes a score per candidate.
    Generative,
    /// The model's probability that the candidate is correct, from the
    /// next-token log-probabilities of a yes/no question, as 100·(2p − 1).
    Logprob,
}

/// A proposal as an evaluator sees it, under a neutral label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Its neutral label (`Candidate_A`, …; see [`label`]).
    pub label: String,
    /// The proposal's whole response.
    pub text: String,
    /// The answer extracted from the text, shown beside it.
    pub answer: Option<String>,
}

/// An evaluator's call: score the other agents' proposals of a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluateRequest {
    /// The problem.
    pub task: Task,
    /// The round number, from 1.
    pub round: usize,
    /// The evaluator's own proposal, shown as an anchor and never scored (`None`: it made none).
    pub anchor: Option<String>,
    /// The answer extracted from the anchor.
    pub anchor_answer: Option<String>,
    /// The proposals to score, in this evaluator's seeded shuffled order.
    pub candidates: Vec<Candidate>,
    /// How to score (an agent's own roster setting overrides it).
    pub mode: EvalMode,
    /// The run's seed; with `inference_id` (and the agent's seed offset) it keys the RNG.
    pub seed: u64,
    /// Names the call (e.g. `{task}/nsed/r{round}/{agent}/evaluate`); keys the RNG with `seed`.
    pub inference_id: String,
    /// Most tokens a generative evaluation may generate (per try).
    pub max_tokens: usize,
    /// How many characters of each candidate (and of the anchor) the prompt shows.
    pub max_chars: usize,
}

/// An evaluator's reply to an [`EvaluateRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// How the scores were made (the agent's own setting may override the request's).
    pub mode: EvalMode,
    /// By candidate, in the request's order: the raw endorsement weight.
    pub scores: Vec<Option<f64>>,
    /// By candidate, in the request's order: the reason given with the score (`None` in
    /// logprob mode).
    pub reasons: Vec<Option<String>>,
    /// The evaluator's raw replies (two when the first was unreadable).
    pub raw: Vec<String>,
    /// No score could be read, even after the retry: the evaluation counts
    /// as an abstention.
    pub abstained: bool,
    /// What the score parser dropped and why (empty in logprob mode).
    pub notes: Vec<String>,
    /// The compute of the evaluation's calls, a retry included.
    pub usage: Usage,
    /// Set when the evaluation came from a remote agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

/// A call announced ahead of time with [`Agent::prefetch`].
#[derive(Debug, Clone, Copy)]
pub enum Call<'a> {
    /// A proposal call with this request.
    Propose(&'a ProposeRequest),
    /// An evaluation call with this request.
    Evaluate(&'a EvaluateRequest),
}

/// A participant: proposes answers and evaluates others' — a model in this
/// process ([`local::LocalAgent`]) or a service on another machine reached
/// over NATS ([`crate::federation::NatsAgent`]).
pub trait Agent {
    /// The agent's name in the roster.
    fn name(&self) -> &str;
    /// The id of the model the agent runs.
    fn model_id(&self) -> &str;
    /// Propose a solution to the request's task.
    fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError>;
    /// Score the request's candidates.
    fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError>;
    /// The call this agent will be asked next in the current phase. A
    /// remote agent starts it now, so a phase's calls run in parallel on
    /// their machines; the later `propose`/`evaluate` with the same request
    /// collects the reply. Local agents ignore it: their calls share this
    /// machine's cores anyway.
    fn prefetch(&mut self, _call: Call<'_>) {}
}

/// Who signed a reply that crossed the network: the agent's Ed25519 public
/// key, its signature, and the sha256 of the exact signed bytes (kept
/// verbatim in the run's audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The signer's Ed25519 public key, base64.
    pub public_key: String,
    /// The Ed25519 signature over the signed bytes, base64.
    pub signature: String,
    /// Hex SHA-256 of the exact signed bytes (the envelope's JSON body).
    pub signed_sha256: String,
}

/// Deliberation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// When to stop, and the round limits.
    pub halting: Halting,
    /// How evaluators score (an agent's own roster setting overrides it).
    pub mode: EvalMode,
    /// Most tokens a proposal may generate.
    pub max_tokens: usize,
    /// Most tokens an evaluation may generate.
    pub eval_max_tokens: usize,
    /// How many characters of each other text a prompt may quote.
    pub max_chars: usize,
    /// The run's seed, passed to every call.
    pub seed: u64,
    /// Stop (without evaluating) once every proposal gives the same answer
    /// and `min_rounds` are done: the protocol's consensus check.
    pub consensus: bool,
}

/// One evaluator's call in a round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationRecord {
    /// The evaluating agent's roster name.
    pub evaluator: String,
    /// Candidate indices (into the round's candidates) in the order shown.
    pub shown: Vec<usize>,
    /// The neutral label shown with each of `shown`.
    pub labels: Vec<String>,
    /// The evaluation, when the call succeeded.
    pub evaluation: Option<Evaluation>,
    /// Why there is no evaluation (the call failed).
    pub error: Option<String>,
}

/// One NSED round: proposals, evaluations and the tallies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// The round number, from 1.
    pub round: usize,
    /// Index into the roster of each candidate.
    pub candidates: Vec<usize>,
    /// The proposals made, aligned with `candidates`.
    pub proposals: Vec<Proposal>,
    /// Agents that did not propose, and why.
    pub abstentions: Vec<(String, String)>,
    /// Every agent's evaluation call, in roster order (empty when nothing was evaluated).
    pub evaluations: Vec<EvaluationRecord>,
    /// `ballots[e][j]`: evaluator e's raw weight for candidate j.
    pub ballots: Vec<Ballot>,
    /// The ballots under quadratic voting, which decide the winner.
    pub quadratic: Tally,
    /// The same ballots under the linear rule (the score-weighted baseline).
    pub linear: Tally,
    /// Index into `proposals` of the winner (`None` with no proposals; 0 on consensus).
    pub winner: Option<usize>,
    /// Every proposal gave the same answer, so nothing was evaluated.
    pub consensus: bool,
}

impl Round {
    /// The compute of the round's calls: proposals and evaluations.
    pub fn usage(&self) -> Usage {
        let evaluations = self
            .evaluations
            .iter()
            .filter_map(|e| e.evaluation.as_ref());
        self.proposals
            .iter()
            .map(|p| p.usage)
            .chain(evaluations.map(|e| e.usage))
            .sum()
    }
}

/// Why deliberation on a task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The halting rule was met before max_rounds.
    Converged,
    /// Every proposal gave the same answer.
    Consensus,
    /// The last allowed round (`max_rounds`) was run.
    MaxRounds,
    /// Fewer than two proposals: nothing to vote on.
    NoQuorum,
}

/// The record of NSED on one task: every round, why it stopped, and the winner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transcript {
    /// The task's id.
    pub task_id: String,
    /// The rounds, in order.
    pub rounds: Vec<Round>,
    /// Why it stopped.
    pub stop: StopReason,
    /// The final round's winning proposal.
    pub winner: Option<Proposal>,
    /// The compute of every round's calls.
    pub usage: Usage,
}

impl Transcript {
    /// The winning proposal's canonical answer, if there is a winner and it gave one.
    pub fn answer(&self) -> Option<&str> {
        self.winner.as_ref().and_then(|p| p.answer.as_deref())
    }
}

/// The neutral label of the k-th shown candidate: `Candidate_A` …
/// `Candidate_Z`, then `Candidate_AA`, `Candidate_AB`, … (bijective base
/// 26), so two candidates never share a label whatever the roster's size.
pub fn label(k: usize) -> String {
    let mut letters = Vec::new();
    let mut rest = k + 1;
    while rest > 0 {
        rest -= 1;
        letters.push(char::from(b'A' + (rest % 26) as u8));
        rest /= 26;
    }
    let suffix: String = letters.into_iter().rev().collect();
    format!("Candidate_{suffix}")
}

/// A seeded permutation of `items` (Fisher-Yates over the counter RNG).
pub fn seeded_permutation(mut items: Vec<usize>, key: &str) -> Vec<usize> {
    Sha256CounterRng::new(key).shuffle(&mut items);
    items
}

/// Run NSED on one task. `on_round` sees each round as soon as it is tallied.
pub fn deliberate(
    agents: &mut [Box<dyn Agent>],
    task: &Task,
    s: &Settings,
    mut on_round: impl FnMut(&Round),
) -> Transcript {
    let mut rounds: Vec<Round> = Vec::new();
    let mut convictions = Vec::new();
    let stop = loop {
        let r = rounds.len() + 1;
        let round = run_round(agents, task, s, r, rounds.last());
        on_round(&round);
        let quorum = round.candidates.len() >= 2;
        let consensus = round.consensus;
        convictions.push(round.quadratic.conviction);
        rounds.push(round);
        if !quorum {
            break StopReason::NoQuorum;
        }
        if consensus {
            break StopReason::Consensus;
        }
        if s.halting.should_stop(r, &convictions) {
            break if r >= s.halting.max_rounds() {
                StopReason::MaxRounds
            } else {
                StopReason::Converged
            };
        }
    };
    let winner = rounds
        .last()
        .and_then(|r| r.winner.map(|w| r.proposals[w].clone()));
    let usage = rounds.iter().map(Round::usage).sum();
    Transcript {
        task_id: task.id.clone(),
        rounds,
        stop,
        winner,
        usage,
    }
}

/// The propose requests of round `r`, built from the previous round.
pub fn propose_request(
    task: &Task,
    s: &Settings,
    agent: usize,
    names: &[String],
    r: usize,
    prev: Option<&Round>,
) -> ProposeRequest {
    let context = prev
        .and_then(|p| revision(p, agent, s.max_chars))
        .map_or(ProposeContext::Fresh, ProposeContext::Revise);
    ProposeRequest {
        task: task.clone(),
        round: r,
        context,
        sampling: None,
        seed: s.seed,
        inference_id: format!("{}/nsed/r{r}/{}/propose", task.id, names[agent]),
        max_tokens: s.max_tokens,
        max_chars: s.max_chars,
    }
}

fn run_round(
    agents: &mut [Box<dyn Agent>],
    task: &Task,
    s: &Settings,
    r: usize,
    prev: Option<&Round>,
) -> Round {
    let names: Vec<String> = agents.iter().map(|a| a.name().to_string()).collect();
    let requests: Vec<ProposeRequest> = (0..agents.len())
        .map(|i| propose_request(task, s, i, &names, r, prev))
        .collect();
    for (agent, req) in agents.iter_mut().zip(&requests) {
        agent.prefetch(Call::Propose(req));
    }
    let mut candidates = Vec::new();
    let mut proposals = Vec::new();
    let mut abstentions = Vec::new();
    for (i, (agent, req)) in agents.iter_mut().zip(&requests).enumerate() {
        match agent.propose(req) {
            Ok(p) => {
                candidates.push(i);
                proposals.push(p);
            }
            Err(e) => abstentions.push((names[i].clone(), e.to_string())),
        }
    }
    let n = candidates.len();
    let consensus = s.consensus && n >= 2 && r >= s.halting.min_rounds() && unanimous(&proposals);
    let (evaluations, ballots, owns) = if n >= 2 && !consensus {
        evaluate_phase(agents, task, s, r, &names, &candidates, &proposals)
    } else {
        Default::default()
    };
    let quadratic = vote::tally(&ballots, &owns, n, Rule::Quadratic);
    let linear = vote::tally(&ballots, &owns, n, Rule::Linear);
    Round {
        round: r,
        winner: if consensus { Some(0) } else { quadratic.winner },
        consensus,
        candidates,
        proposals,
        abstentions,
        evaluations,
        ballots,
        quadratic,
        linear,
    }
}

/// One evaluator's view of a round: the candidates it is shown (every
/// proposal but its own, in its own seeded order) and the request.
struct BallotPlan {
    own: Option<usize>,
    shown: Vec<usize>,
    labels: Vec<String>,
    request: EvaluateRequest,
}

fn ballot_plan(
    task: &Task,
    s: &Settings,
    r: usize,
    evaluator: usize,
    names: &[String],
    candidates: &[usize],
    proposals: &[Proposal],
) -> BallotPlan {
    let n = candidates.len();
    let own = candidates.iter().position(|&c| c == evaluator);
    let others: Vec<usize> = (0..n).filter(|&j| Some(j) != own).collect();
    let key = format!("{}/{}/r{r}/{}/shuffle", s.seed, task.id, names[evaluator]);
    let shown = seeded_permutation(others, &key);
    let labels: Vec<String> = (0..shown.len()).map(label).collect();
    let request = EvaluateRequest {
        task: task.clone(),
        round: r,
        anchor: own.map(|j| proposals[j].content.clone()),
        anchor_answer: own.and_then(|j| proposals[j].answer.clone()),
        candidates: shown
            .iter()
            .zip(&labels)
            .map(|(&j, l)| Candidate {
                label: l.clone(),
                text: proposals[j].content.clone(),
                answer: proposals[j].answer.clone(),
            })
            .collect(),
        mode: s.mode,
        seed: s.seed,
        inference_id: format!("{}/nsed/r{r}/{}/evaluate", task.id, names[evaluator]),
        max_tokens: s.eval_max_tokens,
        max_chars: s.max_chars,
    };
    BallotPlan {
        own,
        shown,
        labels,
        request,
    }
}

type EvaluatePhase = (Vec<EvaluationRecord>, Vec<Ballot>, Vec<Option<usize>>);

/// Every agent scores the others' proposals. A failed call (an error, a
/// timeout, a dead remote agent) is recorded with its reason and casts no
/// votes: it counts neither toward the ranking nor toward convergence.
fn evaluate_phase(
    agents: &mut [Box<dyn Agent>],
    task: &Task,
    s: &Settings,
    r: usize,
    names: &[String],
    candidates: &[usize],
    proposals: &[Proposal],
) -> EvaluatePhase {
    let n = candidates.len();
    let plans: Vec<BallotPlan> = (0..agents.len())
        .map(|e| ballot_plan(task, s, r, e, names, candidates, proposals))
        .collect();
    for (agent, plan) in agents.iter_mut().zip(&plans) {
        agent.prefetch(Call::Evaluate(&plan.request));
    }
    let mut phase = EvaluatePhase::default();
    for ((agent, plan), name) in agents.iter_mut().zip(plans).zip(names) {
        let mut ballot: Ballot = vec![None; n];
        let (evaluation, error) = match agent.evaluate(&plan.request) {
            Ok(ev) => {
                if !ev.abstained {
                    for (k, &j) in plan.shown.iter().enumerate() {
                        ballot[j] = ev.scores.get(k).copied().flatten();
                    }
                }
                (Some(ev), None)
            }
            Err(err) => (None, Some(err.to_string())),
        };
        phase.0.push(EvaluationRecord {
            evaluator: name.clone(),
            shown: plan.shown,
            labels: plan.labels,
            evaluation,
            error,
        });
        phase.1.push(ballot);
        phase.2.push(plan.own);
    }
    phase
}

/// Whether every proposal has the same (non-empty) answer.
fn unanimous(proposals: &[Proposal]) -> bool {
    let first = proposals.first().and_then(Proposal::class);
    first.is_some() && proposals.iter().all(|p| p.class() == first)
}

impl Proposal {
    /// The key proposals are grouped by: the behaviour, else the answer.
    pub fn class(&self) -> Option<&str> {
        self.behaviour.as_deref().or(self.answer.as_deref())
    }

    /// Whether the output was cut at the token limit (or the context's end).
    pub fn was_cut(&self) -> bool {
        matches!(self.finish_reason.as_str(), "length" | "context")
    }
}

/// Round ≥ 2 context for `agent`: its previous proposal, score and rank, the
/// critiques it received and short summaries of the competitors.
fn revision(prev: &Round, agent: usize, max_chars: usize) -> Option<Revision> {
    let j = prev.candidates.iter().position(|&c| c == agent)?;
    let scores = &prev.quadratic.scores;
    let rank = 1 + scores.iter().filter(|&&s| s > scores[j]).count();
    let critiques = prev
        .evaluations
        .iter()
        .filter_map(|rec| {
            let ev = rec.evaluation.as_ref()?;
            let k = rec.shown.iter().position(|&x| x == j)?;
            let score = ev.scores.get(k).copied().flatten()?;
            let reason = ev.reasons.get(k).cloned().flatten().unwrap_or_default();
            Some(Critique { score, reason })
        })
        .collect();
    let competitors = (0..prev.candidates.len())
        .filter(|&k| k != j)
        .map(|k| Summary {
            answer: prev.proposals[k].answer.clone(),
            score: scores[k],
            excerpt: prompts::clip(&prev.proposals[k].content, (max_chars / 5).max(120))
                .replace('\n', " "),
        })
        .collect();
    Some(Revision {
        previous: prev.proposals[j].content.clone(),
        previous_score: scores[j],
        rank,
        of: prev.candidates.len(),
        critiques,
        competitors,
    })
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;

    #[test]
    fn a_remote_agent_error_reads_as_the_local_one() {
        let local = AgentError::Failed {
            agent: "gemma".into(),
            message: "the vocabulary has no single-token Yes/No".into(),
        };
        assert_eq!(local.reason(), "the vocabulary has no single-token Yes/No");
        // What a served agent sends is the reason; the orchestrator names it.
        let remote = AgentError::Call {
            agent: "gemma".into(),
            failure: CallFailure::Remote(local.reason()),
        };
        assert_eq!(remote.to_string(), local.to_string());
        // Negative control: the whole message, sent back, names it twice.
        let doubled = AgentError::Call {
            agent: "gemma".into(),
            failure: CallFailure::Remote(local.to_string()),
        };
        assert_eq!(
            doubled.to_string(),
            "agent gemma: agent gemma: the vocabulary has no single-token Yes/No"
        );
        let timeout = AgentError::Call {
            agent: "c".into(),
            failure: CallFailure::Timeout { seconds: 20.0 },
        };
        assert_eq!(
            timeout.reason(),
            "excluded: no reply within the 20 s phase timeout"
        );
    }

    #[test]
    fn usage_totals_saturate_instead_of_wrapping() {
        let huge = Usage {
            calls: 1,
            prompt_tokens: usize::MAX,
            generated_tokens: usize::MAX - 1,
            seconds: 1.0,
        };
        let small = Usage {
            calls: 1,
            prompt_tokens: 5,
            generated_tokens: 5,
            seconds: 1.0,
        };
        let total: Usage = [huge, small].into_iter().sum();
        assert_eq!(total.prompt_tokens, usize::MAX);
        assert_eq!(total.generated_tokens, usize::MAX);
        assert_eq!(total.calls, 2);
    }

    /// A scripted agent for protocol tests: fixed answers, fixed scores per
    /// label, and a log of what it was shown.
    struct Scripted {
        name: String,
        answer: String,
        score: f64,
        proposals: Rc<RefCell<Vec<ProposeRequest>>>,
    }

    impl Agent for Scripted {
        fn name(&self) -> &str {
            &self.name
        }
        fn model_id(&self) -> &str {
            "scripted"
        }
        fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError> {
            self.proposals.borrow_mut().push(req.clone());
            Ok(Proposal {
                agent: self.name.clone(),
                model: "scripted".into(),
                thought_process: String::new(),
                content: format!("{} says \\boxed{{{}}}", self.name, self.answer),
                answer: Some(self.answer.clone()),
                found: Some(Found::Boxed),
                behaviour: None,
                finish_reason: "eos".into(),
                inference_id: req.inference_id.clone(),
                usage: Usage {
                    calls: 1,
                    prompt_tokens: 10,
                    generated_tokens: 5,
                    seconds: 0.1,
                },
                attestation: None,
                reasoning: None,
            })
        }
        fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
            // Endorse candidates whose text carries our own answer.
            let scores = req
                .candidates
                .iter()
                .map(|c| {
                    Some(if c.text.contains(&format!("{{{}}}", self.answer)) {
                        self.score
                    } else {
                        -self.score
                    })
                })
                .collect();
            Ok(Evaluation {
                mode: req.mode,
                scores,
                reasons: vec![Some("because".into()); req.candidates.len()],
                raw: vec![],
                abstained: false,
                notes: vec![],
                usage: Usage::default(),
                attestation: None,
            })
        }
    }

    type Log = Rc<RefCell<Vec<ProposeRequest>>>;

    fn logged_agents(answers: &[&str]) -> (Vec<Box<dyn Agent>>, Vec<Log>) {
        let logs: Vec<Log> = answers.iter().map(|_| Log::default()).collect();
        let agents = answers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                Box::new(Scripted {
                    name: format!("a{i}"),
                    answer: a.to_string(),
                    score: 50.0,
                    proposals: logs[i].clone(),
                }) as Box<dyn Agent>
            })
            .collect();
        (agents, logs)
    }

    fn agents(answers: &[&str]) -> Vec<Box<dyn Agent>> {
        logged_agents(answers).0
    }

    fn settings(max_rounds: usize) -> Settings {
        Settings {
            halting: Halting::Conviction {
                effort: 0.6,
                min_rounds: 1,
                max_rounds,
            },
            mode: EvalMode::Generative,
            max_tokens: 16,
            eval_max_tokens: 16,
            max_chars: 1000,
            seed: 1,
            consensus: true,
        }
    }

    fn task() -> Task {
        Task {
            id: "t".into(),
            problem: "1+1".into(),
            kind: AnswerKind::Numeric,
            system: None,
        }
    }

    #[test]
    fn majority_answer_wins_and_nobody_scores_itself() {
        let mut a = agents(&["2", "2", "3"]);
        let t = deliberate(&mut a, &task(), &settings(3), |_| {});
        let r = &t.rounds[0];
        assert_eq!(t.answer(), Some("2"));
        for (e, rec) in r.evaluations.iter().enumerate() {
            assert_eq!(rec.shown.len(), 2);
            assert!(!rec.shown.contains(&e), "evaluator {e} was shown itself");
            assert_eq!(r.ballots[e][e], None);
        }
        // a0 and a1 endorse each other (+0.7071 each) and reject a2 (-0.7071);
        // a2 rejects both. S = [0, 0, -1.414]: a tie at 0 → lowest index.
        assert!((r.quadratic.scores[2] + 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(r.winner, Some(0));
        // Conviction 0 (a split) never converges: three rounds, and usage is
        // the sum over calls (3 proposals of 5 tokens per round).
        assert_eq!(t.rounds.len(), 3);
        assert_eq!(t.stop, StopReason::MaxRounds);
        assert_eq!(t.usage.generated_tokens, 45);
    }

    /// An evaluator that writes its scores as text, the way a model does,
    /// and reads them back with the protocol's parser: three points per unit
    /// of the candidate's answer (within the scale's ±100), so every score
    /// names its candidate.
    struct TextScorer(Scripted);

    impl Agent for TextScorer {
        fn name(&self) -> &str {
            self.0.name()
        }
        fn model_id(&self) -> &str {
            self.0.model_id()
        }
        fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError> {
            self.0.propose(req)
        }
        fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
            let reply: String = req
                .candidates
                .iter()
                .rev()
                .map(|c| {
                    let value: f64 = c.answer.as_deref().unwrap_or("0").parse().unwrap_or(0.0);
                    format!("{}: {} | seen\n", c.label, 3.0 * value)
                })
                .collect();
            let labels: Vec<String> = req.candidates.iter().map(|c| c.label.clone()).collect();
            let parsed = parse::parse_scores(&reply, &labels);
            Ok(Evaluation {
                mode: req.mode,
                scores: parsed.scores,
                reasons: parsed.reasons,
                raw: vec![reply],
                abstained: false,
                notes: parsed.notes,
                usage: Usage::default(),
                attestation: None,
            })
        }
    }

    #[test]
    fn thirty_agents_scores_land_on_their_candidates() {
        let answers: Vec<String> = (0..30).map(|i| i.to_string()).collect();
        let answers: Vec<&str> = answers.iter().map(String::as_str).collect();
        let mut roster: Vec<Box<dyn Agent>> = (0..answers.len())
            .map(|i| {
                Box::new(TextScorer(Scripted {
                    name: format!("a{i}"),
                    answer: answers[i].to_string(),
                    score: 0.0,
                    proposals: Log::default(),
                })) as Box<dyn Agent>
            })
            .collect();
        let t = deliberate(&mut roster, &task(), &settings(1), |_| {});
        let r = &t.rounds[0];
        let labels = &r.evaluations[0].labels;
        assert_eq!(labels.len(), 29);
        let distinct: std::collections::BTreeSet<&String> = labels.iter().collect();
        assert_eq!(distinct.len(), 29, "labels repeat: {labels:?}");
        for (e, ballot) in r.ballots.iter().enumerate() {
            for (j, score) in ballot.iter().enumerate() {
                let expected = (j != e).then_some(3.0 * j as f64);
                assert_eq!(*score, expected, "evaluator {e}, candidate {j}");
            }
        }
        // Every evaluator but a29 ranks a29 highest (87 points from each).
        assert_eq!(t.answer(), Some("29"));
    }

    #[test]
    fn identical_answers_stop_by_consensus_before_evaluating() {
        let mut a = agents(&["2", "2", "2"]);
        let t = deliberate(&mut a, &task(), &settings(3), |_| {});
        assert_eq!(t.rounds.len(), 1);
        assert_eq!(t.stop, StopReason::Consensus);
        assert!(t.rounds[0].evaluations.is_empty());
        assert_eq!(t.answer(), Some("2"));
        // Without the consensus check, everyone endorses everyone: conviction
        // is 1/n, below the effort, so the vote never converges.
        let mut s = settings(2);
        s.consensus = false;
        let t = deliberate(&mut a, &task(), &s, |_| {});
        assert_eq!(t.rounds.len(), 2);
        assert!((t.rounds[0].quadratic.conviction - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn mutual_endorsement_of_two_is_a_split() {
        let mut a = agents(&["2", "2"]);
        let t = deliberate(
            &mut a,
            &task(),
            &{
                let mut s = settings(3);
                s.consensus = false;
                s
            },
            |_| {},
        );
        // Each endorses the other: ns = [1, 1], conviction 0.5 < 0.6.
        assert_eq!(t.rounds.len(), 3);
        assert!((t.rounds[0].quadratic.conviction - 0.5).abs() < 1e-12);
    }

    #[test]
    fn split_vote_runs_to_max_rounds_with_revision_context() {
        let (mut a, logs) = logged_agents(&["1", "2", "3"]);
        let t = deliberate(&mut a, &task(), &settings(2), |_| {});
        assert_eq!(t.rounds.len(), 2);
        assert_eq!(t.stop, StopReason::MaxRounds);
        // Round 2 proposals carry the previous proposal and 2 critiques.
        let log = logs[0].borrow();
        match &log[1].context {
            ProposeContext::Revise(r) => {
                assert_eq!(r.critiques.len(), 2);
                assert_eq!(r.competitors.len(), 2);
                assert!(r.previous.contains("\\boxed{1}"));
            }
            other => panic!("round 2 context: {other:?}"),
        }
    }

    #[test]
    fn order_is_shuffled_per_evaluator_and_seeded() {
        let a = seeded_permutation((0..8).collect(), "k1");
        let b = seeded_permutation((0..8).collect(), "k1");
        let c = seeded_permutation((0..8).collect(), "k2");
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn a_single_proposal_is_no_quorum() {
        let mut a = agents(&["2"]);
        let t = deliberate(&mut a, &task(), &settings(3), |_| {});
        assert_eq!(t.stop, StopReason::NoQuorum);
        assert!(t.rounds[0].evaluations.is_empty());
    }
}
