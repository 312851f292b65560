//! Speed measurement as llama-bench does it: one prefill of a fixed-length
//! prompt, then exactly `gen_tokens` greedy decode steps (EOS does not stop
//! the count), timed separately.

use std::time::Instant;

use serde::Serialize;

use crate::model::{Logits, ModelError, Sequence, Step};
use crate::runtime::Runtime;
use crate::sampling::argmax;

/// A fixed English passage (GSM8K questions), repeated to any length.
const PASSAGE: &str = "Natalia sold clips to 48 of her friends in April, and then she sold half as many \
clips in May. How many clips did Natalia sell altogether in April and May? Weng earns $12 an hour for \
babysitting. Yesterday, she just did 50 minutes of babysitting. How much did she earn? Betty is saving \
money for a new wallet which costs $100. Betty has only half of the money she needs. ";

/// One single-sequence measurement: a prefill, then greedy decode steps, timed apart.
#[derive(Debug, Clone, Serialize)]
pub struct PerfRun {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Greedy decode steps run after the prefill.
    pub gen_tokens: usize,
    /// Seconds of the prefill forward pass (and its argmax).
    pub prefill_seconds: f64,
    /// Seconds of all decode steps together.
    pub decode_seconds: f64,
}

impl PerfRun {
    /// Prefill speed: prompt tokens per second.
    pub fn prefill_tok_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill_seconds.max(1e-9)
    }

    /// Decode speed: generated tokens per second.
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

/// One batched measurement: `batch` sequences, each with the same
/// `prompt_tokens` prompt, prefilled in one step, then `gen_tokens` greedy
/// decode steps of all of them together (as llama-batched-bench does).
#[derive(Debug, Clone, Serialize)]
pub struct BatchRun {
    /// Sequences run together.
    pub batch: usize,
    /// Tokens in each sequence's prompt.
    pub prompt_tokens: usize,
    /// Greedy decode steps each sequence runs after the prefill.
    pub gen_tokens: usize,
    /// Seconds of the one prefill step over all sequences.
    pub prefill_seconds: f64,
    /// Seconds of all decode steps together.
    pub decode_seconds: f64,
    /// Bytes of all the sequences' KV caches at the end.
    pub kv_bytes: usize,
}

impl BatchRun {
    /// Prompt tokens of all sequences per second.
    pub fn prefill_tok_per_s(&self) -> f64 {
        (self.batch * self.prompt_tokens) as f64 / self.prefill_seconds.max(1e-9)
    }

    /// Generated tokens of all sequences per second (aggregate throughput).
    pub fn decode_tok_per_s(&self) -> f64 {
        (self.batch * self.gen_tokens) as f64 / self.decode_seconds.max(1e-9)
    }
}

/// One batched measurement from empty sequences.
pub fn measure_batch(
    rt: &mut Runtime,
    prompt: &[u32],
    gen_tokens: usize,
    batch: usize,
) -> Result<BatchRun, ModelError> {
    let mut seqs: Vec<Sequence> = (0..batch).map(|_| Sequence::new()).collect();
    let start = Instant::now();
    let mut steps: Vec<Step> = seqs
        .iter_mut()
        .map(|seq| Step {
            seq,
            tokens: prompt,
            want: Logits::Last,
        })
        .collect();
    let out = rt.model.forward_batch(&mut steps)?;
    let mut next = out
        .iter()
        .map(|(logits, _)| Ok(argmax(&logits.get(0)?.to_vec1::<f32>()?)))
        .collect::<Result<Vec<u32>, ModelError>>()?;
    let prefill_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    for _ in 0..gen_tokens {
        let inputs: Vec<[u32; 1]> = next.iter().map(|&t| [t]).collect();
        let mut steps: Vec<Step> = seqs
            .iter_mut()
            .zip(&inputs)
            .map(|(seq, tokens)| Step {
                seq,
                tokens,
                want: Logits::Last,
            })
            .collect();
        let out = rt.model.forward_batch(&mut steps)?;
        next = out
            .iter()
            .map(|(logits, _)| Ok(argmax(&logits.get(0)?.to_vec1::<f32>()?)))
            .collect::<Result<Vec<u32>, ModelError>>()?;
    }
    let decode_seconds = start.elapsed().as_secs_f64();
    Ok(BatchRun {
        batch,
        prompt_tokens: prompt.len(),
        gen_tokens,
        prefill_seconds,
        decode_seconds,
        kv_bytes: seqs.iter().map(Sequence::kv_bytes).sum(),
    })
}

/// Peak resident memory of this process in MiB (Linux `VmHWM`), if known.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Arch;
    use crate::testing::{write_tiny_model, TinySpec};

    #[test]
    fn a_batch_holds_one_cache_per_sequence_and_counts_all_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        write_tiny_model(&path, &TinySpec::new(Arch::Qwen2)).expect("tiny model");
        let mut rt = Runtime::load(path.to_str().expect("utf-8 path")).expect("load");
        let prompt = bench_prompt(&rt, 8);
        let one = measure_batch(&mut rt, &prompt, 4, 1).expect("B=1");
        let three = measure_batch(&mut rt, &prompt, 4, 3).expect("B=3");
        assert!(one.kv_bytes > 0);
        assert_eq!(three.kv_bytes, 3 * one.kv_bytes);
        assert_eq!(
            (three.batch, three.prompt_tokens, three.gen_tokens),
            (3, 8, 4)
        );
        let rate = three.decode_tok_per_s() * three.decode_seconds.max(1e-9);
        assert!((rate - 12.0).abs() < 1e-6, "3 sequences x 4 tokens");
        // Past the context: an error, not a panic.
        let long = vec![prompt[0]; 200];
        assert!(measure_batch(&mut rt, &long, 1, 2).is_err());
    }
}
