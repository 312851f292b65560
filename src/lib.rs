//! nsed: N-way self-evaluating deliberation and verifiable inference on small
//! open-weight GGUF models, on the CPU.
//!
//! The library owns everything; the `nsed` binary is a thin command-line layer.
//! Modules, one concept each:
//! - [`gguf`]: reading (and, for tests, writing) GGUF files.
//! - [`registry`]: the packaged model roster and checksum-verified resolution.
//! - [`tokenizer`]: llama.cpp-exact tokenizers from GGUF metadata.

pub mod gguf;
pub mod registry;
pub mod tokenizer;
