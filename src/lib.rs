//! nsed: N-way self-evaluating deliberation and verifiable inference on small
//! open-weight GGUF models, on the CPU.
//!
//! The library owns everything; the `nsed` binary is a thin command-line layer.
//! Modules, one concept each:
//! - [`gguf`]: reading (and, for tests, writing) GGUF files.
//! - [`registry`]: the packaged model roster and checksum-verified resolution.
//! - [`tokenizer`]: llama.cpp-exact tokenizers from GGUF metadata.
//! - [`model`]: the llama / qwen2 / gemma3 transformers with a KV cache.
//! - [`chat`]: chat templates.
//! - [`runtime`]: a loaded model (weights, tokenizer, template) ready to use.
//! - [`perplexity`]: llama.cpp-convention perplexity.
//! - [`sampling`]: the seed-bound SHA-256 counter RNG and sampling pipeline.
//! - [`generate`]: generation with per-position log-probabilities.
//! - [`perf`]: llama-bench-style prefill and decode speed.
//! - [`artifact`]: inference artifacts (nsed schema, OpenAI logprobs JSON).
//! - [`verify`]: replay validation, distance metrics, seed and activation checks.
//! - [`fraud`]: forged artifacts (prefill attack) for fraud experiments.
//! - [`vote`]: quadratic, linear and plurality voting; halting rules.
//! - [`deliberation`]: the NSED protocol, the `Agent` seam, rosters.
//! - [`bench`](mod@bench): datasets, grading, every method on the same items, run files.
//! - [`sandbox`]: untrusted Python under rlimits, private uid and namespaces.
//! - [`codebench`]: LiveCodeBench, HumanEval and MBPP: prompts, extraction, grading.
//! - [`report`]: Wilson intervals, exact McNemar, summary tables.
//! - [`tables`]: the paper-style results pages, rebuilt from the data files.
//! - [`output`]: atomic result files (never a partial file).

pub mod artifact;
pub mod bench;
pub mod chat;
pub mod codebench;
pub mod deliberation;
pub mod federation;
pub mod figure;
pub mod fraud;
pub mod generate;
pub mod gguf;
pub mod journal;
pub mod model;
pub mod output;
pub mod perf;
pub mod perplexity;
pub mod qmm;
pub mod registry;
pub mod report;
pub mod runtime;
pub mod sampling;
pub mod sandbox;
pub mod tables;
#[doc(hidden)]
pub mod testing;
pub mod tokenizer;
pub mod verify;
pub mod vote;
