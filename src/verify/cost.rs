//! What validation costs next to generation: the same seeded output timed
//! once as the executor generates it and once as the validator replays it.

use std::time::Instant;

use serde::Serialize;

use super::artifact::Request;
use super::{teacher_forced, VerifyError};
use crate::engine::generate::generate;
use crate::engine::runtime::Runtime;
use crate::engine::sampling::SamplingParams;

/// Executor vs validator cost for the same `n` output tokens.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyCost {
    /// Tokens in the prompt both sides process.
    pub prompt_tokens: usize,
    /// Output tokens generated and then replayed (exactly `n`: EOS does not stop it).
    pub output_tokens: usize,
    /// Prefill + `n` sampled decode steps with top-k logprobs recorded.
    pub generate_seconds: f64,
    /// One teacher-forced pass over prompt + output: per-position top-k,
    /// logprobs and seed re-derivation.
    pub verify_seconds: f64,
}

impl VerifyCost {
    /// Validator time over generator time: how many generations one verification costs.
    pub fn ratio(&self) -> f64 {
        self.verify_seconds / self.generate_seconds.max(1e-12)
    }
}

/// Time a seeded generation of exactly `n` tokens (EOS does not stop it)
/// and the validator's replay of it.
pub fn verify_cost(
    rt: &mut Runtime,
    prompt: &[u32],
    n: usize,
    k: usize,
) -> Result<VerifyCost, VerifyError> {
    let request = Request {
        messages: Vec::new(),
        raw_prompt: None,
        sampling: SamplingParams {
            temperature: 0.8,
            ..Default::default()
        },
        seed: 1,
        inference_id: "verify-cost".into(),
        max_tokens: n,
        stop: Vec::new(),
        top_logprobs: k,
        template_kwargs: Default::default(),
    };
    let mut req = request.to_generate(k, false);
    // Stopping at EOS would make the lengths differ between models.
    req.ignore_eos = true;
    let start = Instant::now();
    let gen = generate(rt, prompt, &req, |_, _| {})?;
    let generate_seconds = start.elapsed().as_secs_f64();
    let ids = gen.output_ids();
    let start = Instant::now();
    teacher_forced(rt, prompt, &ids, k, Some(&request), 0.01, false)?;
    let verify_seconds = start.elapsed().as_secs_f64();
    Ok(VerifyCost {
        prompt_tokens: prompt.len(),
        output_tokens: ids.len(),
        generate_seconds,
        verify_seconds,
    })
}
