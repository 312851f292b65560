//! The inference engine: everything from a GGUF file to tokens with
//! log-probabilities, on the CPU (bit-exact across runs, thread counts and
//! instruction sets) or on an NVIDIA GPU through candle's CUDA backend.
//!
//! - [`device`]: the CPU or a CUDA GPU (`--device`), opened with checks.
//! - [`gguf`]: reading (and, for tests, writing) GGUF files.
//! - [`qmm`]: the quantized matrix kernels, one per instruction-set path.
//! - [`model`]: the llama / qwen2 / gemma3 transformers with a KV cache.
//! - [`tokenizer`]: llama.cpp-exact tokenizers from GGUF metadata.
//! - [`chat`]: chat templates.
//! - [`registry`]: the packaged model roster and checksum-verified resolution.
//! - [`runtime`]: a loaded model (weights, tokenizer, template) ready to use.
//! - [`sampling`]: the seed-bound SHA-256 counter RNG and sampling pipeline.
//! - [`generate`]: generation with per-position log-probabilities.
//! - [`batch`]: continuous batching of many requests per forward pass.
//! - [`perplexity`]: llama.cpp-convention perplexity.
//! - [`perf`]: llama-bench-style prefill and decode speed.
//! - [`synth`]: seeded random-weight GGUF models of a chosen shape.
//! - [`digest`]: hexadecimal digests.
//!
//! It uses nothing of nsed above it (statistics only: `nsed-stats`); Cargo
//! enforces that.

pub mod batch;
pub mod chat;
pub mod device;
pub mod digest;
pub mod generate;
pub mod gguf;
pub mod model;
pub mod perf;
pub mod perplexity;
pub mod qmm;
pub mod reasoning;
pub mod registry;
pub mod runtime;
pub mod sampling;
pub mod synth;
#[doc(hidden)]
pub mod testing;
pub mod tokenizer;
