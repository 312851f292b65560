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

pub mod chat;
pub mod gguf;
pub mod model;
pub mod perplexity;
pub mod registry;
pub mod runtime;
pub mod tokenizer;
