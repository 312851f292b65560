//! Verification of inference artifacts: a validator's teacher-forced replay
//! of the claimed model over the executor's tokens (one batched prefill),
//! every published logprob distance side by side ([`metrics`]), re-derivation
//! of seed-bound sampled tokens, bit-exact regeneration, and TOPLOC-style
//! activation proofs ([`toploc`]). Verdicts come from per-metric thresholds:
//! the defaults of docs/reference.md §6.1 and the decisive seed check where
//! the executor's and the validator's paths compute the same bits, and
//! thresholds calibrated for the pair everywhere else ([`policy`],
//! [`calibration`]).

pub mod artifact;
pub mod calibrate;
pub mod calibration;
pub mod cost;
pub mod determinism;
pub mod metrics;
pub mod policy;
pub mod toploc;
pub mod uniformity;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::engine::generate::{generate, GenerateError};
use crate::engine::model::{Logits, ModelError};
use crate::engine::runtime::Runtime;
use crate::engine::sampling::{
    apply_repeat_penalty, argmax, candidates, draw, row_logprobs, seed_string, Candidates,
    Sha256CounterRng,
};
use crate::verify::artifact::{Artifact, Request};
use metrics::{Better, Metric, PosView};
use rayon::prelude::*;

/// Why a verification cannot run (not a failed check: that is a [`Verdict`]).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The input cannot be verified (empty prompt, model hash mismatch, no top logprobs, ...).
    #[error("{0}")]
    Input(String),
    /// The model failed to run the teacher-forced pass.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Generating tokens failed (the bit-exact replay or a timed generation).
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// A tensor operation failed.
    #[error("tensor computation failed: {0}")]
    Candle(Box<candle_core::Error>),
}

impl From<candle_core::Error> for VerifyError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

type Result<T> = std::result::Result<T, VerifyError>;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The check passes.
    Pass,
    /// The check fails: evidence against the claim.
    Fail,
    /// Reported without a threshold, or no signal (e.g. greedy sampling).
    Info,
}

/// Threshold overrides: `name → Some(bound)`, or `None` to report only.
#[derive(Debug, Clone, Default)]
pub struct Thresholds(BTreeMap<String, Option<f64>>);

impl Thresholds {
    /// Parse `name=value` or `name=off`.
    pub fn set(&mut self, spec: &str) -> std::result::Result<(), String> {
        let (name, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("--threshold wants name=value, got {spec:?}"))?;
        let known: Vec<&str> = metrics::all().iter().map(|m| m.name()).collect();
        if !known.contains(&name) {
            return Err(format!(
                "unknown metric {name:?} (known: {})",
                known.join(", ")
            ));
        }
        let bound = match value {
            "off" | "none" => None,
            v => Some(
                v.parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("threshold {v:?} for {name} is not a number"))?,
            ),
        };
        self.0.insert(name.to_string(), bound);
        Ok(())
    }

    fn for_metric(&self, m: &dyn Metric) -> Option<f64> {
        self.0
            .get(m.name())
            .copied()
            .unwrap_or_else(|| m.default_threshold())
    }
}

/// One metric's value over the artifact, judged against its threshold.
#[derive(Debug, Clone, Serialize)]
pub struct MetricReport {
    /// The metric's name (e.g. `gonka_similarity`).
    pub name: &'static str,
    /// The metric over the whole artifact.
    pub value: f64,
    /// Secondary figures (e.g. `matches_ratio`).
    pub extra: BTreeMap<&'static str, f64>,
    /// Which way the value points.
    pub better: Better,
    /// The bound applied (default or override); `None` reports only.
    pub threshold: Option<f64>,
    /// Pass or fail against the threshold; info when there is none.
    pub verdict: Verdict,
    /// The per-position contributions (not serialized).
    #[serde(skip)]
    pub per_position: Vec<f64>,
}

/// Run every metric and judge it.
pub fn score(exec: &[PosView], val: &[PosView], thresholds: &Thresholds) -> Vec<MetricReport> {
    metrics::all()
        .iter()
        .map(|m| {
            let v = m.compute(exec, val);
            let threshold = thresholds.for_metric(m.as_ref());
            let verdict = match threshold {
                None => Verdict::Info,
                Some(t) => {
                    let ok = match m.better() {
                        Better::Higher => v.value > t,
                        Better::Lower => v.value <= t,
                    };
                    if ok {
                        Verdict::Pass
                    } else {
                        Verdict::Fail
                    }
                }
            };
            MetricReport {
                name: m.name(),
                value: v.value,
                extra: v.extra.into_iter().collect(),
                better: m.better(),
                threshold,
                verdict,
                per_position: v.per_position,
            }
        })
        .collect()
}

/// Token keys: ids (`#123`) when every entry of both sides has one, else strings.
pub fn views(a: &Artifact, by_id: bool) -> Vec<PosView> {
    let key = |id: Option<u32>, token: &str| match (by_id, id) {
        (true, Some(id)) => format!("#{id}"),
        _ => token.to_string(),
    };
    a.positions
        .iter()
        .map(|p| PosView {
            chosen: key(p.id, &p.token),
            logprob: p.logprob,
            top: p
                .top_logprobs
                .iter()
                .map(|t| (key(t.id, &t.token), t.logprob))
                .collect(),
        })
        .collect()
}

/// Whether every position and alternative of the artifact has an id.
pub fn has_ids(a: &Artifact) -> bool {
    a.positions
        .iter()
        .all(|p| p.id.is_some() && p.top_logprobs.iter().all(|t| t.id.is_some()))
}

// ---------------------------------------------------------------------------
// Seed-bound sampling check.

/// Outcome of the seed-bound sampling check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SeedVerdict {
    /// The claimed tokens re-derive from the seed (within the tolerance).
    Honest,
    /// More of the claimed tokens differ from the seed's draws than the tolerance allows.
    Fraud,
    /// Greedy decoding (temperature 0) draws nothing: no seed signal.
    Inconclusive,
}

/// The seed-bound sampling check: claimed tokens against those the seed re-derives.
#[derive(Debug, Clone, Serialize)]
pub struct SeedReport {
    /// Output positions checked.
    pub positions: usize,
    /// Positions where the derived token differs from the claimed one.
    pub mismatches: usize,
    /// First position where the derived token differs from the claimed one; `None` if none does.
    pub first_mismatch: Option<usize>,
    /// Largest mismatch share still called honest.
    pub tolerance: f64,
    /// Honest when the mismatch share is at most `tolerance`; inconclusive for greedy decoding.
    pub verdict: SeedVerdict,
    /// Whether the claimed tokens' ranks (PIT) in the validator's sampling
    /// distribution look uniform ([`uniformity`]); `None` for greedy runs.
    pub rank_uniformity: Option<crate::stats::KsTest>,
    /// The token the validator's seed-bound sampler draws at each position.
    #[serde(skip)]
    pub derived: Vec<u32>,
    /// Each sampled position's PIT (empty for greedy runs).
    #[serde(skip)]
    pub pit: Vec<f64>,
}

impl SeedReport {
    fn judge(
        derived: Vec<u32>,
        pit: Vec<f64>,
        claimed: &[u32],
        greedy: bool,
        tolerance: f64,
    ) -> Self {
        let mismatches = derived.iter().zip(claimed).filter(|(a, b)| a != b).count();
        let first_mismatch = derived.iter().zip(claimed).position(|(a, b)| a != b);
        let share = mismatches as f64 / claimed.len().max(1) as f64;
        let verdict = if greedy {
            SeedVerdict::Inconclusive
        } else if share <= tolerance {
            SeedVerdict::Honest
        } else {
            SeedVerdict::Fraud
        };
        Self {
            positions: claimed.len(),
            mismatches,
            first_mismatch,
            tolerance,
            verdict,
            rank_uniformity: crate::stats::ks_uniform(&pit),
            derived,
            pit,
        }
    }
}

// ---------------------------------------------------------------------------
// The validator's replay.

/// The prompt of a request, tokenized as `nsed generate` does; the model's
/// chat template may refuse the conversation.
pub fn prompt_ids(rt: &Runtime, req: &Request) -> std::result::Result<Vec<u32>, GenerateError> {
    match &req.raw_prompt {
        Some(raw) => Ok(rt.tokenizer.encode(raw, true, false)),
        None => Ok(rt.chat_tokens_with(&req.messages, &req.template_kwargs)?),
    }
}

/// What the validator computes in its teacher-forced pass.
pub struct Replay {
    /// The validator's record of each output position, keyed by id.
    pub views: Vec<PosView>,
    /// The seed-bound sampling check; `None` when no request was given.
    pub seed: Option<SeedReport>,
    /// Final hidden state of each output position's predicting row, if asked.
    pub hidden: Option<Vec<Vec<f32>>>,
}

/// Rows of logits per forward call: bounds memory (rows × vocab × 4 bytes)
/// while keeping the pass batched.
const ROWS_PER_CALL: usize = 256;

/// Teacher-force `output` after `prompt`: per output position, the
/// validator's top-`k`, its logprob of the executor's token, and (when
/// `request` samples) the token its seed-bound sampler would have drawn.
pub fn teacher_forced(
    rt: &mut Runtime,
    prompt: &[u32],
    output: &[u32],
    k: usize,
    request: Option<&Request>,
    seed_tolerance: f64,
    want_hidden: bool,
) -> Result<Replay> {
    if prompt.is_empty() {
        return Err(VerifyError::Input("the prompt is empty".into()));
    }
    let needed = prompt.len() + output.len() - 1;
    if needed > rt.model.max_positions() {
        return Err(VerifyError::Input(format!(
            "prompt + output need {needed} positions; the model's context holds {}",
            rt.model.max_positions()
        )));
    }
    // Greedy requests draw nothing: their (unused) stream has an empty seed.
    let seed = request
        .filter(|r| !r.sampling.is_greedy())
        .map(|r| seed_string(&r.seed.to_string(), &r.inference_id));
    let mut rng = request.map(|_| Sha256CounterRng::new(seed.as_deref().unwrap_or("")));
    // The PIT's tie-breaking draws: their own stream, so that they are
    // independent of the executor's seed-bound draws.
    let mut pit_rng = seed.map(|s| Sha256CounterRng::new(&format!("pit/{s}")));
    let mut pit = Vec::new();
    // History for the repetition penalty of row r: full[..prompt.len() + r].
    let full: Vec<u32> = prompt.iter().chain(output).copied().collect();
    let mut views = Vec::with_capacity(output.len());
    let mut derived = Vec::with_capacity(output.len());
    let mut hidden = want_hidden.then(Vec::new);
    rt.model.reset();
    for call in replay_calls(&full, prompt.len(), rt.model.row_invariant()) {
        let (logits, h) = rt.model.forward_hidden(call.tokens, call.want)?;
        if !call.keep {
            continue;
        }
        let r0 = views.len();
        let rows = logits.to_vec2::<f32>()?;
        // The per-row work (log-softmax, top-k, sampling filters) runs in
        // parallel; the draws stay sequential, in RNG counter order.
        let per_row: Vec<(PosView, Option<Derivation>)> = rows
            .par_iter()
            .enumerate()
            .map(|(j, raw)| {
                let r = r0 + j;
                let view = view_of_row(raw, output[r], k);
                let d = request.map(|req| derivation(raw, &full[..prompt.len() + r], req));
                (view, d)
            })
            .collect();
        for (view, d) in per_row {
            let r = views.len();
            views.push(view);
            if let (Some(d), Some(rng)) = (d, rng.as_mut()) {
                derived.push(match d {
                    Derivation::Greedy(id) => id,
                    Derivation::Draw(c) => {
                        if let Some(u) = pit_rng.as_mut() {
                            pit.push(uniformity::pit(&c, output[r], unit_interval(u)));
                        }
                        draw(&c, rng)
                    }
                });
            }
        }
        if let Some(hs) = hidden.as_mut() {
            hs.extend(h.to_vec2::<f32>()?);
        }
    }
    rt.model.reset();
    let seed = request.map(|req| {
        SeedReport::judge(
            derived,
            pit,
            output,
            req.sampling.is_greedy(),
            seed_tolerance,
        )
    });
    Ok(Replay {
        views,
        seed,
        hidden,
    })
}

/// One forward call of a replay.
struct ReplayCall<'a> {
    tokens: &'a [u32],
    want: Logits,
    /// Whether its rows are output positions (not the prompt's prefill).
    keep: bool,
}

/// The forward calls that give the logits of every output position of
/// `full` = prompt ++ output (row r predicts `full[prompt_len + r]`). A
/// row-invariant model prefills the prompt, then takes the output rows in
/// batches of [`ROWS_PER_CALL`]; any other model gets the calls the
/// executor made — the whole prompt, then one token at a time — so that
/// every row comes from the kernels that produced it.
fn replay_calls(full: &[u32], prompt_len: usize, row_invariant: bool) -> Vec<ReplayCall<'_>> {
    let call = |tokens, want, keep| ReplayCall { tokens, want, keep };
    if full.len() <= prompt_len || prompt_len == 0 {
        return Vec::new();
    }
    let last_input = full.len() - 1;
    if !row_invariant {
        let first = call(&full[..prompt_len], Logits::Last, true);
        let steps = full[prompt_len..last_input]
            .chunks(1)
            .map(|t| call(t, Logits::Last, true));
        return std::iter::once(first).chain(steps).collect();
    }
    let head = &full[..prompt_len - 1];
    let prefill = (!head.is_empty()).then(|| call(head, Logits::Last, false));
    // Row r's input token is full[prompt_len - 1 + r].
    let rows = full[prompt_len - 1..last_input]
        .chunks(ROWS_PER_CALL)
        .map(|c| call(c, Logits::All, true));
    prefill.into_iter().chain(rows).collect()
}

/// A uniform draw on [0, 1) with 53 random bits.
fn unit_interval(rng: &mut Sha256CounterRng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// The validator's record of one position, keyed by id.
fn view_of_row(raw: &[f32], chosen: u32, k: usize) -> PosView {
    let r = row_logprobs(raw, chosen, k);
    PosView {
        chosen: format!("#{chosen}"),
        logprob: r.chosen as f64,
        top: r
            .top
            .into_iter()
            .map(|(t, lp)| (format!("#{t}"), lp as f64))
            .collect(),
    }
}

/// What the executor's sampler did at one position, up to the draw.
enum Derivation {
    Greedy(u32),
    Draw(Candidates),
}

/// Penalty and filters of the executor's seed-bound sampler at one position.
fn derivation(raw: &[f32], history: &[u32], req: &Request) -> Derivation {
    let s = &req.sampling;
    let adjusted;
    let logits = if s.repeat_penalty == 1.0 {
        raw
    } else {
        let mut a = raw.to_vec();
        let recent = &history[history.len().saturating_sub(s.repeat_last_n)..];
        apply_repeat_penalty(&mut a, recent, s.repeat_penalty);
        adjusted = a;
        &adjusted
    };
    if s.is_greedy() {
        Derivation::Greedy(argmax(logits))
    } else {
        Derivation::Draw(candidates(logits, s))
    }
}

// ---------------------------------------------------------------------------
// Bit-exact replay.

/// A bit-exact regeneration with the artifact's request and seed, compared to its ids.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    /// Whether the regenerated ids equal the artifact's, byte for byte.
    pub identical: bool,
    /// sha256 of the artifact's ids (little-endian u32s).
    pub artifact_ids_sha256: String,
    /// sha256 of the regenerated ids (little-endian u32s).
    pub replay_ids_sha256: String,
    /// Tokens the artifact claims.
    pub artifact_tokens: usize,
    /// Tokens regenerated (at most one past the artifact's length).
    pub replay_tokens: usize,
    /// First position where the ids differ (or where the shorter one ends); `None` when identical.
    pub first_divergence: Option<usize>,
    /// sha256 of the regenerated text.
    pub replay_text_sha256: String,
}

/// Regenerate with the artifact's request and seed; compare ids byte for byte.
pub fn replay(
    rt: &mut Runtime,
    prompt: &[u32],
    req: &Request,
    claimed: &[u32],
) -> Result<ReplayReport> {
    let mut gen_req = req.to_generate(0, false);
    // The artifact's own length bounds the work: one token past it shows
    // that the replay would have gone on, and an artifact of 2 positions
    // cannot make the validator decode `max_tokens` (up to the context).
    gen_req.max_tokens = gen_req.max_tokens.min(claimed.len() + 1);
    let gen = generate(rt, prompt, &gen_req, |_, _| {})?;
    let ids = gen.output_ids();
    let first_divergence = ids
        .iter()
        .zip(claimed)
        .position(|(a, b)| a != b)
        .or((ids.len() != claimed.len()).then(|| ids.len().min(claimed.len())));
    let a = crate::verify::artifact::ids_sha256(claimed);
    let b = crate::verify::artifact::ids_sha256(&ids);
    Ok(ReplayReport {
        identical: a == b,
        artifact_ids_sha256: a,
        replay_ids_sha256: b,
        artifact_tokens: claimed.len(),
        replay_tokens: ids.len(),
        first_divergence,
        replay_text_sha256: crate::verify::artifact::text_sha256(&gen.text),
    })
}

// ---------------------------------------------------------------------------
// Whole verifications.

/// What a verification checks, and how strictly.
#[derive(Debug, Clone)]
pub struct Options {
    /// Per-metric threshold overrides (`--threshold`).
    pub thresholds: Thresholds,
    /// Largest share of re-derived tokens that may differ for "honest".
    pub seed_tolerance: f64,
    /// Also regenerate and compare bytes (EigenAI-style).
    pub replay: bool,
    /// Keep the per-position table.
    pub table: bool,
    /// The rule that set the thresholds and the seed tolerance, for the report.
    pub policy: Option<policy::PolicyReport>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            thresholds: Thresholds::default(),
            seed_tolerance: 0.01,
            replay: false,
            table: false,
            policy: None,
        }
    }
}

/// One output position of the per-position table.
#[derive(Debug, Clone, Serialize)]
pub struct PositionRow {
    /// Output position, from 0.
    pub position: usize,
    /// Key of the executor's chosen token (`#id`, or the token string).
    pub token: String,
    /// The executor's logprob of its chosen token.
    pub executor_logprob: f64,
    /// The validator's logprob of the same token (NaN when the validator has no such position).
    pub validator_logprob: f64,
    /// This position's Gonka distance contribution (`gonka_similarity`), when it gives one.
    pub gonka_d: Option<f64>,
    /// This position's `gonka_distance2` contribution, when that metric gives one.
    pub distance2_d: Option<f64>,
    /// The token the validator's seed-bound sampler draws here (seed check only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed_token: Option<u32>,
    /// The claimed token's rank (PIT) in the validator's sampler.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pit: Option<f64>,
}

/// The check of an artifact's TOPLOC-style activation proof against the validator's replay.
#[derive(Debug, Clone, Serialize)]
pub struct ProofReport {
    /// The proof's scheme tag.
    pub scheme: String,
    /// Chunks the output needs (or the proof carries, if more).
    pub chunks: usize,
    /// Chunks whose check passes.
    pub passed: usize,
    /// Decoded proof bytes per output token.
    pub proof_bytes_per_token: f64,
    /// The logprob positions' JSON size per token, for comparison.
    pub logprob_bytes_per_token: f64,
    /// Each chunk's check, in order.
    pub checks: Vec<toploc::ChunkCheck>,
}

/// The outcome of verifying one artifact: every check and the overall verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Name of the executor's artifact (as given on the command line).
    pub executor: String,
    /// Who checked: the second artifact's name, or `model <id>` for a replay.
    pub validator: String,
    /// Where the artifact was made and replayed, and what decided the verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<policy::PolicyReport>,
    /// Output positions in the executor's artifact.
    pub positions: usize,
    /// The executor's top-k width.
    pub k: usize,
    /// A failure before any distance (different length / tokens / prompt).
    pub precheck: Option<String>,
    /// Every metric's value and verdict, in [`metrics::all`] order.
    pub metrics: Vec<MetricReport>,
    /// The seed-bound sampling check; `None` without a model, a request, or an nsed artifact.
    pub seed: Option<SeedReport>,
    /// The activation-proof check, when the artifact carries a proof.
    pub proof: Option<ProofReport>,
    /// The bit-exact regeneration, when [`Options::replay`] asks for it.
    pub replay: Option<ReplayReport>,
    /// Wall time of the validator's teacher-forced pass; `None` when comparing two artifacts.
    pub validator_seconds: Option<f64>,
    /// Pass, or Fail if a pre-check, a thresholded metric, the seed check, a proof chunk or the
    /// replay fails.
    pub verdict: Verdict,
    /// Per-position rows, when [`Options::table`] asks for them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<Vec<PositionRow>>,
}

impl Report {
    fn new(
        executor: String,
        validator: String,
        exec: &[PosView],
        val: &[PosView],
        opts: &Options,
    ) -> Self {
        let precheck = metrics::gonka_precheck(exec, val);
        let metrics = score(exec, val, &opts.thresholds);
        let mut report = Self {
            executor,
            validator,
            policy: opts.policy.clone(),
            positions: exec.len(),
            k: exec.first().map_or(0, |p| p.top.len()),
            precheck,
            metrics,
            seed: None,
            proof: None,
            replay: None,
            validator_seconds: None,
            verdict: Verdict::Pass,
            table: None,
        };
        if opts.table {
            report.table = Some(report.rows(exec, val));
        }
        report
    }

    fn rows(&self, exec: &[PosView], val: &[PosView]) -> Vec<PositionRow> {
        let per = |name: &str, i: usize| {
            self.metrics
                .iter()
                .find(|m| m.name == name)
                .and_then(|m| m.per_position.get(i).copied())
        };
        exec.iter()
            .enumerate()
            .map(|(i, e)| PositionRow {
                position: i,
                token: e.chosen.clone(),
                executor_logprob: e.logprob,
                validator_logprob: val.get(i).map_or(f64::NAN, |v| v.logprob),
                gonka_d: per("gonka_similarity", i),
                distance2_d: per("gonka_distance2", i),
                seed_token: None,
                pit: None,
            })
            .collect()
    }

    /// Fail if anything failed: a pre-check, a thresholded metric, the seed
    /// check, a proof chunk or the replay.
    fn conclude(&mut self) {
        let failed = self.precheck.is_some()
            || self.metrics.iter().any(|m| m.verdict == Verdict::Fail)
            || self
                .seed
                .as_ref()
                .is_some_and(|s| s.verdict == SeedVerdict::Fraud)
            || self.proof.as_ref().is_some_and(|p| p.passed < p.chunks)
            || self.replay.as_ref().is_some_and(|r| !r.identical);
        self.verdict = if failed { Verdict::Fail } else { Verdict::Pass };
    }
}

/// Compare two artifacts (executor vs validator) without a model.
pub fn against(
    exec: &Artifact,
    val: &Artifact,
    names: (&str, &str),
    opts: &Options,
) -> Result<Report> {
    if exec.k() == 0 || val.k() == 0 {
        return Err(VerifyError::Input(
            "both artifacts need top logprobs (k >= 1) to be compared".into(),
        ));
    }
    let by_id = has_ids(exec) && has_ids(val);
    let (e, v) = (views(exec, by_id), views(val, by_id));
    let mut report = Report::new(names.0.into(), names.1.into(), &e, &v, opts);
    report.conclude();
    Ok(report)
}

/// Verify an artifact against a loaded model: re-tokenize the prompt, one
/// teacher-forced pass, every metric, the seed check (nsed artifacts), the
/// activation proof if present, and optionally a bit-exact replay.
pub fn with_model(
    rt: &mut Runtime,
    exec: &mut Artifact,
    request: Option<Request>,
    name: &str,
    opts: &Options,
) -> Result<Report> {
    if !exec.model.sha256.is_empty() {
        let have = rt.sha256().map_err(|e| VerifyError::Input(e.to_string()))?;
        if have != exec.model.sha256 {
            return Err(VerifyError::Input(format!(
                "model hash mismatch: the artifact claims {} with sha256 {}, but {} has {have}",
                exec.model.id,
                exec.model.sha256,
                rt.resolved.path.display()
            )));
        }
    }
    if exec.k() == 0 {
        return Err(VerifyError::Input(
            "the artifact has no top logprobs (k = 0): generate with --top-logprobs K".into(),
        ));
    }
    exec.resolve_ids(&rt.tokenizer)
        .map_err(VerifyError::Input)?;
    let request = request.or_else(|| exec.request.clone());
    let (prompt, prompt_mismatch) = match (&request, &exec.prompt_ids) {
        (Some(req), claimed) => {
            let mine = prompt_ids(rt, req)?;
            let mismatch = claimed
                .as_ref()
                .filter(|c| **c != mine)
                .map(|c| format!("prompt differs: the artifact's {} prompt ids are not the request's {} re-tokenized ids", c.len(), mine.len()));
            (mine, mismatch)
        }
        (None, Some(ids)) => (ids.clone(), None),
        (None, None) => return Err(VerifyError::Input(
            "the artifact has neither a request nor prompt ids: give the request with --request"
                .into(),
        )),
    };
    let output = exec.output_ids().unwrap_or_default();
    let seed_request = request
        .as_ref()
        .filter(|_| exec.format == crate::verify::artifact::Format::Nsed);
    let start = std::time::Instant::now();
    let replayed = teacher_forced(
        rt,
        &prompt,
        &output,
        exec.k(),
        seed_request,
        opts.seed_tolerance,
        exec.proof.is_some(),
    )?;
    let seconds = start.elapsed().as_secs_f64();
    let e = views(exec, true);
    let mut report = Report::new(
        name.into(),
        format!("model {}", rt.id()),
        &e,
        &replayed.views,
        opts,
    );
    report.validator_seconds = Some(seconds);
    if let Some(m) = prompt_mismatch {
        report.precheck = Some(m);
    }
    if let (Some(rows), Some(seed)) = (report.table.as_mut(), &replayed.seed) {
        for (row, t) in rows.iter_mut().zip(&seed.derived) {
            row.seed_token = Some(*t);
        }
        for (row, u) in rows.iter_mut().zip(&seed.pit) {
            row.pit = Some(*u);
        }
    }
    report.seed = replayed.seed;
    if let (Some(proof), Some(hidden)) = (&exec.proof, &replayed.hidden) {
        report.proof = Some(check_proof(proof, hidden, exec)?);
    }
    if opts.replay {
        let req = request.ok_or_else(|| {
            VerifyError::Input("--replay needs the request (sampling, seed) in the artifact".into())
        })?;
        report.replay = Some(replay(rt, &prompt, &req, &output)?);
    }
    report.conclude();
    Ok(report)
}

fn check_proof(
    proof: &crate::verify::artifact::ActivationProof,
    hidden: &[Vec<f32>],
    exec: &Artifact,
) -> Result<ProofReport> {
    // The scheme and the chunks' form were checked when the artifact was
    // read (`Artifact::check`); here each chunk meets the replay.
    let expected = hidden.len().div_ceil(toploc::CHUNK);
    let mut checks = Vec::new();
    let mut bytes = 0;
    for (i, rows) in hidden.chunks(toploc::CHUNK).enumerate() {
        let decoded = proof
            .chunks
            .get(i)
            .and_then(|h| crate::verify::artifact::unhex(h))
            .and_then(|b| {
                bytes += b.len();
                toploc::ChunkProof::from_bytes(&b)
            });
        checks.push(match decoded {
            Some(p) => toploc::check_chunk(&p, rows),
            None => toploc::ChunkCheck {
                exp_matches: 0,
                mean_mantissa_error: f64::INFINITY,
                median_mantissa_error: f64::INFINITY,
                pass: false,
            },
        });
    }
    let passed = checks.iter().filter(|c| c.pass).count();
    let n = hidden.len().max(1) as f64;
    let logprob_bytes = serde_json::to_vec(&exec.positions).map_or(0, |v| v.len());
    Ok(ProofReport {
        scheme: proof.scheme.clone(),
        chunks: expected.max(proof.chunks.len()),
        passed,
        proof_bytes_per_token: bytes as f64 / n,
        logprob_bytes_per_token: logprob_bytes as f64 / n,
        checks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_and_inputs(calls: &[ReplayCall<'_>]) -> (usize, Vec<Vec<u32>>) {
        let kept: Vec<Vec<u32>> = calls
            .iter()
            .filter(|c| c.keep)
            .map(|c| c.tokens.to_vec())
            .collect();
        let rows = calls
            .iter()
            .filter(|c| c.keep)
            .map(|c| match c.want {
                Logits::All => c.tokens.len(),
                _ => 1,
            })
            .sum();
        (rows, kept)
    }

    #[test]
    fn replays_give_one_row_per_output_position_either_way() {
        // prompt [1, 2, 3], output [7, 8, 9]: rows predict 7, 8 and 9.
        let full = [1, 2, 3, 7, 8, 9];
        let batched = replay_calls(&full, 3, true);
        assert!(!batched[0].keep && batched[0].tokens == [1, 2]);
        assert_eq!(rows_and_inputs(&batched), (3, vec![vec![3, 7, 8]]));
        // Call by call, as the executor decoded: the whole prompt, then
        // each output token but the last.
        let stepwise = replay_calls(&full, 3, false);
        assert_eq!(
            rows_and_inputs(&stepwise),
            (3, vec![vec![1, 2, 3], vec![7], vec![8]])
        );
        assert!(stepwise.iter().all(|c| matches!(c.want, Logits::Last)));
        // A one-token prompt has no prefill of its own; no output, no calls.
        assert_eq!(
            rows_and_inputs(&replay_calls(&[5, 6], 1, true)),
            (1, vec![vec![5]])
        );
        assert!(replay_calls(&[1, 2, 3], 3, true).is_empty());
        assert!(replay_calls(&[1, 2, 3], 3, false).is_empty());
    }
}
