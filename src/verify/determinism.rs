//! EigenAI-style determinism study: generate the same request N times and
//! count identical output and logits hashes, and time the seed-bound sampler
//! against a conventional float sampler on the same work.

use serde::{Deserialize, Serialize};

use crate::engine::generate::{generate, GenerateError, GenerateRequest};
use crate::engine::runtime::Runtime;
use crate::engine::sampling::SamplerKind;
use crate::stats::median;

/// The outcome of one determinism study: hash agreement over repeated runs, and sampler cost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeterminismRun {
    /// CPU threads the runs used (`RAYON_NUM_THREADS`; 0: the default pool).
    pub threads: usize,
    /// Seed-bound generations made.
    pub runs: usize,
    /// Output tokens per run (EOS does not end a run early).
    pub tokens: usize,
    /// Share of runs whose output-ids sha256 equals the most common one.
    pub identical_output_share: f64,
    /// Share of runs whose hash of all raw logits equals the most common one.
    pub identical_logits_share: f64,
    /// The most common output-ids sha256 across the runs (hex).
    pub output_sha256: String,
    /// The most common hash of all raw logits across the runs (hex).
    pub logits_sha256: String,
    /// The samplers' cost; absent when only the hashes were asked for.
    #[serde(flatten)]
    pub timing: Option<SamplerTiming>,
}

/// The seed-bound sampler timed against a plain float sampler on the same
/// work.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplerTiming {
    /// Median wall time of a generation with each sampler.
    pub seed_bound_seconds: f64,
    /// Median wall time of a generation with the plain float sampler.
    pub plain_seconds: f64,
    /// (seed-bound − plain) / plain, end to end.
    pub overhead: f64,
    /// Time inside the sampler per token, microseconds.
    pub seed_bound_sampler_us_per_token: f64,
    /// Time inside the plain sampler per token, microseconds.
    pub plain_sampler_us_per_token: f64,
}

/// `runs` seed-bound generations, each followed by a plain one when
/// `timed` (interleaved so drift in machine speed hits both alike).
pub fn study(
    rt: &mut Runtime,
    prompt: &[u32],
    req: &GenerateRequest,
    runs: usize,
    threads: usize,
    timed: bool,
    mut progress: impl FnMut(),
) -> Result<DeterminismRun, GenerateError> {
    // Fixed-length runs: the two samplers draw different tokens, and an early
    // EOS on one side would make the timings incomparable.
    let seeded = GenerateRequest {
        hash_logits: true,
        ignore_eos: true,
        sampler: SamplerKind::SeedBound,
        ..req.clone()
    };
    // Both hash their logits, so the samplers are the only difference.
    let plain = GenerateRequest {
        hash_logits: true,
        ignore_eos: true,
        sampler: SamplerKind::Plain,
        ..req.clone()
    };
    let mut outputs = Vec::new();
    let mut logits = Vec::new();
    let (mut t_seed, mut t_plain) = (Vec::new(), Vec::new());
    let (mut s_seed, mut s_plain, mut tok_seed, mut tok_plain) = (0.0, 0.0, 0usize, 0usize);
    let mut tokens = 0;
    for _ in 0..runs.max(1) {
        let g = generate(rt, prompt, &seeded, |_, _| {})?;
        tokens = g.tokens.len();
        outputs.push(crate::verify::artifact::ids_sha256(&g.output_ids()));
        logits.push(g.logits_sha256.clone().unwrap_or_default());
        t_seed.push(g.prefill_seconds + g.decode_seconds);
        s_seed += g.sampling_seconds;
        tok_seed += g.tokens.len();
        if timed {
            let p = generate(rt, prompt, &plain, |_, _| {})?;
            t_plain.push(p.prefill_seconds + p.decode_seconds);
            s_plain += p.sampling_seconds;
            tok_plain += p.tokens.len();
        }
        progress();
    }
    let (output_sha256, out_share) = mode_share(&outputs);
    let (logits_sha256, logit_share) = mode_share(&logits);
    let (ts, tp) = (
        median(&t_seed).unwrap_or(0.0),
        median(&t_plain).unwrap_or(0.0),
    );
    Ok(DeterminismRun {
        threads,
        runs: outputs.len(),
        tokens,
        identical_output_share: out_share,
        identical_logits_share: logit_share,
        output_sha256,
        logits_sha256,
        timing: timed.then(|| SamplerTiming {
            seed_bound_seconds: ts,
            plain_seconds: tp,
            overhead: (ts - tp) / tp.max(1e-12),
            seed_bound_sampler_us_per_token: s_seed * 1e6 / tok_seed.max(1) as f64,
            plain_sampler_us_per_token: s_plain * 1e6 / tok_plain.max(1) as f64,
        }),
    })
}

/// The most common value and the share of entries equal to it.
fn mode_share(values: &[String]) -> (String, f64) {
    let mut best = (String::new(), 0);
    for v in values {
        let c = values.iter().filter(|x| *x == v).count();
        if c > best.1 {
            best = (v.clone(), c);
        }
    }
    (best.0, best.1 as f64 / values.len().max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_share_counts_the_majority() {
        let v: Vec<String> = ["a", "b", "a", "a"].iter().map(|s| s.to_string()).collect();
        assert_eq!(mode_share(&v), ("a".to_string(), 0.75));
    }
}
