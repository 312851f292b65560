//! Text generation: prefill the prompt, then decode token by token with the
//! seed-bound sampler, recording per position the chosen token's log-probability
//! and the top-k alternatives (log-probabilities of the model's own
//! distribution: raw logits, before penalty, temperature and filters).

use std::time::Instant;

use candle_core::Tensor;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::{Logits, ModelError, Sequence, Step};
use crate::runtime::Runtime;
use crate::sampling::{
    apply_repeat_penalty, row_logprobs, sample, seed_string, PlainSampler, SamplerKind,
    SamplingParams, Sha256CounterRng,
};
use crate::tokenizer::TokenizerError;

/// Why a generation (or a scoring) could not run.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// The prompt has no tokens.
    #[error("the prompt is empty")]
    EmptyPrompt,
    /// The model's chat template could not render the conversation.
    #[error(transparent)]
    Template(#[from] crate::chat::TemplateError),
    /// The prompt does not fit the model's context (leaving room for one generated token
    /// when generating).
    #[error(
        "the prompt has {prompt} tokens but the model's context holds {ctx}: shorten the prompt"
    )]
    PromptTooLong {
        /// Tokens in the prompt.
        prompt: usize,
        /// Positions the model's context holds.
        ctx: usize,
    },
    /// The model's forward pass failed.
    #[error(transparent)]
    Model(#[from] Box<ModelError>),
    /// A token could not be turned into text (id outside the vocabulary, bad byte token).
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A tensor operation on the output failed (reading logits or hidden states).
    #[error("tensor computation failed: {0}")]
    Candle(Box<candle_core::Error>),
    /// The forward pass returned no output for the sequence.
    #[error("the forward pass returned no logits")]
    NoOutput,
    /// A broken invariant inside the engine (a bug), such as a batched request answered with
    /// the wrong kind of result.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ModelError> for GenerateError {
    fn from(e: ModelError) -> Self {
        Self::Model(Box::new(e))
    }
}

impl From<candle_core::Error> for GenerateError {
    fn from(e: candle_core::Error) -> Self {
        Self::Candle(Box::new(e))
    }
}

/// What to generate and how.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateRequest {
    /// Temperature, top-k/top-p/min-p and repeat-penalty settings.
    pub sampling: SamplingParams,
    /// Most tokens to generate; reaching it finishes with [`FinishReason::Length`].
    pub max_tokens: usize,
    /// Generation stops when the text contains any of these (removed from the text).
    pub stop: Vec<String>,
    /// The user's seed and the inference id that together key the RNG.
    pub seed: u64,
    /// Keys the RNG together with `seed`, so requests that share a seed draw independently.
    pub inference_id: String,
    /// How many alternatives to record per position (0: none).
    pub top_logprobs: usize,
    /// Keep each position's final hidden state (for activation proofs).
    pub capture_hidden: bool,
    /// Hash every step's raw logits (determinism studies).
    pub hash_logits: bool,
    /// Keep going past end-of-generation tokens (fixed-length benchmarks).
    pub ignore_eos: bool,
    /// Which sampler draws the tokens (the seed-bound one by default).
    pub sampler: SamplerKind,
}

impl Default for GenerateRequest {
    fn default() -> Self {
        Self {
            sampling: SamplingParams::default(),
            max_tokens: 256,
            stop: Vec::new(),
            seed: 0,
            inference_id: String::new(),
            top_logprobs: 0,
            capture_hidden: false,
            hash_logits: false,
            ignore_eos: false,
            sampler: SamplerKind::SeedBound,
        }
    }
}

/// One of the most likely tokens at a position, with its log-probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TopLogprob {
    /// Token id.
    pub id: u32,
    /// The token's text (its bytes as lossy UTF-8).
    pub token: String,
    /// Natural-log probability under the raw logits (before penalty, temperature and filters).
    pub logprob: f32,
}

/// One generated token: the one drawn, its log-probability and the top alternatives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GeneratedToken {
    /// Token id.
    pub id: u32,
    /// The token's text (its bytes as lossy UTF-8).
    pub token: String,
    /// Natural-log probability under the raw logits (before penalty, temperature and filters).
    pub logprob: f32,
    /// The `top_logprobs` most likely tokens at this position, best first (ties: lower id
    /// first); empty when none were asked for.
    pub top_logprobs: Vec<TopLogprob>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// An end-of-generation token (EOS, `<|im_end|>`, ...).
    Eos,
    /// A stop string appeared.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The context is full.
    Context,
}

/// A finished generation: its tokens with log-probabilities, the text, and timings.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// The generated tokens in order, an ending end-of-generation token included.
    pub tokens: Vec<GeneratedToken>,
    /// The generated text, cut before the first stop string; an end-of-generation token adds
    /// nothing to it.
    pub text: String,
    /// Why generation ended.
    pub finish_reason: FinishReason,
    /// The RNG's seed string (empty for greedy decoding, which draws nothing).
    pub seed_string: String,
    /// Seconds of forward pass over the prompt (prefill).
    pub prefill_seconds: f64,
    /// Seconds of decoding: the forward passes after prefill and every step's sampling.
    pub decode_seconds: f64,
    /// Per output position, the final hidden state of the row that predicted
    /// it (when `capture_hidden`).
    #[serde(skip)]
    pub hidden: Option<Vec<Vec<f32>>>,
    /// sha256 of every step's raw logits (f32 LE), when `hash_logits`.
    pub logits_sha256: Option<String>,
    /// Time spent in the sampler (penalty, filters, draw).
    pub sampling_seconds: f64,
}

impl Generation {
    /// Prefill speed: prompt tokens per second.
    pub fn prefill_tok_per_s(&self) -> f64 {
        self.prompt_ids.len() as f64 / self.prefill_seconds.max(1e-9)
    }

    /// Decode speed over the steps after the first token (which comes from prefill).
    pub fn decode_tok_per_s(&self) -> f64 {
        self.tokens.len().saturating_sub(1) as f64 / self.decode_seconds.max(1e-9)
    }

    /// The generated token ids, in order.
    pub fn output_ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|t| t.id).collect()
    }
}

/// Generate from `prompt_ids`; `on_token` sees each token and its bytes as it
/// is produced (for streaming). Runs in a fresh sequence of its own (the
/// model's built-in cache is not touched).
pub fn generate(
    rt: &mut Runtime,
    prompt_ids: &[u32],
    req: &GenerateRequest,
    mut on_token: impl FnMut(&GeneratedToken, &[u8]),
) -> Result<Generation, GenerateError> {
    let mut d = Decoding::new(rt, prompt_ids, req)?;
    loop {
        let started = Instant::now();
        let (logits, hidden) = {
            let mut steps = [d.step()];
            let mut out = rt.model.forward_batch(&mut steps)?;
            out.pop().ok_or(GenerateError::NoOutput)?
        };
        d.ran(started.elapsed().as_secs_f64());
        if let Some(done) = d.accept(rt, &logits, &hidden, &mut on_token)? {
            return Ok(done);
        }
    }
}

/// Refuse an empty prompt, or one that leaves fewer than `room` positions of
/// the model's context; returns the context length.
pub fn check_prompt(rt: &Runtime, prompt_ids: &[u32], room: usize) -> Result<usize, GenerateError> {
    if prompt_ids.is_empty() {
        return Err(GenerateError::EmptyPrompt);
    }
    let ctx = rt.model.max_positions();
    if prompt_ids.len() + room > ctx {
        return Err(GenerateError::PromptTooLong {
            prompt: prompt_ids.len(),
            ctx,
        });
    }
    Ok(ctx)
}

/// One generation in progress: its sequence (KV cache), the sampler state
/// and what it has produced. The caller runs [`Decoding::step`] through the
/// model (alone or in a batch with other decodings) and hands the logits to
/// [`Decoding::accept`] until it returns the finished [`Generation`]. The
/// result depends only on the prompt and the request, never on what else
/// shared the forward pass (the model's rows are computed independently).
pub struct Decoding {
    seq: Sequence,
    prompt_ids: Vec<u32>,
    req: GenerateRequest,
    seed: String,
    rng: Sha256CounterRng,
    plain: PlainSampler,
    logits_hash: Option<Sha256>,
    hidden: Option<Vec<Vec<f32>>>,
    history: Vec<u32>,
    tokens: Vec<GeneratedToken>,
    bytes: Vec<u8>,
    /// What the next step runs: the prompt, then each drawn token.
    next: Vec<u32>,
    ctx: usize,
    prefill_seconds: f64,
    decode_seconds: f64,
    sampling_seconds: f64,
}

impl Decoding {
    /// Check the prompt against the model's context and set up the sampler.
    pub fn new(
        rt: &Runtime,
        prompt_ids: &[u32],
        req: &GenerateRequest,
    ) -> Result<Self, GenerateError> {
        // Room for at least one generated token.
        let ctx = check_prompt(rt, prompt_ids, 1)?;
        let seed = if req.sampling.is_greedy() {
            String::new()
        } else {
            seed_string(&req.seed.to_string(), &req.inference_id)
        };
        Ok(Self {
            seq: Sequence::new(),
            prompt_ids: prompt_ids.to_vec(),
            rng: Sha256CounterRng::new(&seed),
            plain: PlainSampler::new(req.seed),
            logits_hash: req.hash_logits.then(Sha256::new),
            hidden: req.capture_hidden.then(Vec::new),
            history: prompt_ids.to_vec(),
            tokens: Vec::new(),
            bytes: Vec::new(),
            next: prompt_ids.to_vec(),
            seed,
            req: req.clone(),
            ctx,
            prefill_seconds: 0.0,
            decode_seconds: 0.0,
            sampling_seconds: 0.0,
        })
    }

    /// Positions the finished generation can occupy at most (prompt and
    /// output, within the context): what a memory budget must reserve.
    pub fn max_positions(&self) -> usize {
        (self.prompt_ids.len() + self.req.max_tokens.max(1)).min(self.ctx)
    }

    /// The next forward step of this sequence.
    pub fn step(&mut self) -> Step<'_> {
        Step {
            seq: &mut self.seq,
            tokens: &self.next,
            want: Logits::Last,
        }
    }

    /// Tokens in the prompt.
    pub fn prompt_len(&self) -> usize {
        self.prompt_ids.len()
    }

    /// Whether the next step is the prompt's prefill.
    pub fn prefilling(&self) -> bool {
        self.seq.position() == 0
    }

    /// Account `seconds` of forward pass to prefill or decode.
    pub fn ran(&mut self, seconds: f64) {
        if self.tokens.is_empty() {
            self.prefill_seconds += seconds;
        } else {
            self.decode_seconds += seconds;
        }
    }

    /// Take the step's logits (`[1, vocab]`) and hidden state: draw the next
    /// token; `Some` when the generation is finished.
    pub fn accept(
        &mut self,
        rt: &Runtime,
        logits: &Tensor,
        hidden: &Tensor,
        mut on_token: impl FnMut(&GeneratedToken, &[u8]),
    ) -> Result<Option<Generation>, GenerateError> {
        let t_accept = Instant::now();
        if let Some(rows) = self.hidden.as_mut() {
            rows.push(last_row(hidden)?);
        }
        let raw = last_row(logits)?;
        if let Some(h) = self.logits_hash.as_mut() {
            raw.iter().for_each(|v| h.update(v.to_le_bytes()));
        }
        let req = &self.req;
        let t0 = Instant::now();
        let id = if req.sampling.repeat_penalty == 1.0 {
            draw_next(&raw, req, &mut self.rng, &mut self.plain)
        } else {
            let mut adjusted = raw.clone();
            let h = &self.history;
            let recent = &h[h.len().saturating_sub(req.sampling.repeat_last_n)..];
            apply_repeat_penalty(&mut adjusted, recent, req.sampling.repeat_penalty);
            draw_next(&adjusted, req, &mut self.rng, &mut self.plain)
        };
        self.sampling_seconds += t0.elapsed().as_secs_f64();
        let token = describe(rt, &raw, id, req.top_logprobs)?;
        self.history.push(id);
        let finish = if !req.ignore_eos && rt.stop_ids.contains(&id) {
            self.tokens.push(token);
            Some(FinishReason::Eos)
        } else {
            let token_bytes = rt.tokenizer.token_bytes(id)?;
            on_token(&token, &token_bytes);
            let new_bytes = token_bytes.len();
            self.bytes.extend(token_bytes);
            self.tokens.push(token);
            if ends_in_stop(&self.bytes, new_bytes, &req.stop) {
                Some(FinishReason::Stop)
            } else if self.tokens.len() >= req.max_tokens {
                Some(FinishReason::Length)
            } else if self.seq.position() >= self.ctx {
                Some(FinishReason::Context)
            } else {
                None
            }
        };
        // Sampling time belongs to decoding.
        self.decode_seconds += t_accept.elapsed().as_secs_f64();
        self.next.clear();
        self.next.push(id);
        Ok(finish.map(|reason| self.finish(reason)))
    }

    /// Bytes this sequence's KV cache holds now.
    pub fn kv_bytes(&self) -> usize {
        self.seq.kv_bytes()
    }

    fn finish(&mut self, finish_reason: FinishReason) -> Generation {
        let mut text = String::from_utf8_lossy(&self.bytes).into_owned();
        if let Some(cut) = self
            .req
            .stop
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(cut);
        }
        Generation {
            prompt_ids: std::mem::take(&mut self.prompt_ids),
            tokens: std::mem::take(&mut self.tokens),
            text,
            finish_reason,
            seed_string: self.seed.clone(),
            prefill_seconds: self.prefill_seconds,
            decode_seconds: self.decode_seconds,
            hidden: self.hidden.take(),
            logits_sha256: self
                .logits_hash
                .take()
                .map(|h| crate::digest::hex(&h.finalize())),
            sampling_seconds: self.sampling_seconds,
        }
    }
}

fn draw_next(
    logits: &[f32],
    req: &GenerateRequest,
    rng: &mut Sha256CounterRng,
    plain: &mut PlainSampler,
) -> u32 {
    match req.sampler {
        SamplerKind::SeedBound => sample(logits, &req.sampling, rng),
        SamplerKind::Plain => plain.sample(logits, &req.sampling),
    }
}

/// Whether a stop string appears in the output now that its last `new_bytes`
/// arrived. Earlier text was checked before, so only a window reaching into
/// the new bytes is searched (the whole text would make decoding quadratic).
fn ends_in_stop(bytes: &[u8], new_bytes: usize, stops: &[String]) -> bool {
    stops.iter().any(|s| {
        let s = s.as_bytes();
        let from = bytes
            .len()
            .saturating_sub(new_bytes + s.len().saturating_sub(1));
        !s.is_empty() && bytes[from..].windows(s.len()).any(|w| w == s)
    })
}

fn last_row(logits: &Tensor) -> Result<Vec<f32>, GenerateError> {
    let rows = logits.dim(0)?;
    Ok(logits.get(rows - 1)?.to_vec1::<f32>()?)
}

/// The chosen token with its log-probability and the top `k` alternatives.
fn describe(
    rt: &Runtime,
    logits: &[f32],
    id: u32,
    k: usize,
) -> Result<GeneratedToken, GenerateError> {
    let r = row_logprobs(logits, id, k);
    let top_logprobs = r
        .top
        .iter()
        .map(|&(t, logprob)| {
            Ok(TopLogprob {
                id: t,
                token: rt.tokenizer.token_string(t)?,
                logprob,
            })
        })
        .collect::<Result<Vec<_>, TokenizerError>>()?;
    Ok(GeneratedToken {
        id,
        token: rt.tokenizer.token_string(id)?,
        logprob: r.chosen,
        top_logprobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_match_across_token_boundaries() {
        let stop = ["\n\nQ:".to_string()];
        // The stop string spans the last 2 bytes and 3 earlier ones.
        assert!(ends_in_stop(b"abc\n\nQ:", 2, &stop));
        assert!(
            !ends_in_stop(b"abc\n\nQ:x", 1, &stop),
            "seen at an earlier step"
        );
        assert!(!ends_in_stop(b"abc", 3, &["".to_string()]));
    }
}
