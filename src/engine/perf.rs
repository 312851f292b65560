//! Speed measurement as llama-bench does it: one prefill of a fixed-length
//! prompt, then exactly `gen_tokens` greedy decode steps (EOS does not stop
//! the count), timed separately.

use std::time::Instant;

use serde::Serialize;

use crate::engine::model::{Logits, ModelError};
use crate::engine::runtime::Runtime;
use crate::engine::sampling::argmax;

/// A fixed English passage (GSM8K questions), repeated to any length.
const PASSAGE: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many \
clips in May. How many clips did Natalia sell altogether in April and May? Weng earns $12 an hour for \
babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn? Betty is saving \
money for a new wallet which costs $100. Betty has only half of the money she needs. ";

#[derive(Debug, Clone, Serialize)]
pub struct PerfRun {
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub prefill_seconds: f64,
    pub decode_seconds: f64,
}

impl PerfRun {
    pub fn prefill_tok_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds.max(1e-9)
    }

    pub fn decode_tok_per_s(&self) -> f64 {
        self.gen_tokens as f64 / self.decode_seconds.max(1e-9)
    }
}

/// A prompt of exactly `n` tokens cut from the fixed passage.
pub fn bench_prompt(rt: &Runtime, n: usize) -> Vec<u32> {
    let mut ids = Vec::with_capacity(n + 128);
    while ids.len() < n {
        ids.extend(rt.tokenizer.encode(PASSAGE, false, false));
    }
    ids.truncate(n);
    ids
}

/// One measurement from an empty cache.
pub fn measure(rt: &mut Runtime, prompt: &[u32], gen_tokens: usize) -> Result<PerfRun, ModelError> {
    rt.model.reset();
    let start = Instant::now();
    let logits = rt.model.forward(prompt, Logits::Last)?;
    let mut next = argmax(&logits.get(0)?.to_vec1::<f32>()?);
    let prefill_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..gen_tokens {
        let logits = rt.model.forward(&[next], Logits::Last)?;
        next = argmax(&logits.get(0)?.to_vec1::<f32>()?);
    }
    let decode_seconds = start.elapsed().as_secs_f64();
    rt.model.reset();
    Ok(PerfRun {
        prompt_tokens: prompt.len(),
        gen_tokens,
        prefill_seconds,
        decode_seconds,
    })
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
