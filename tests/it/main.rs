//! The integration tests, one binary: each module is one former
//! `tests/<name>.rs` (end-to-end runs of the `nsed` binary, goldens, hostile
//! inputs). One binary links the library once instead of once per file, and
//! `cargo test --test it <module>::` runs one group.

mod common;

mod batching;
mod bench_e2e;
mod chat_template_golden;
mod cli_bad_input;
mod cli_models;
mod code_bench_e2e;
mod code_grading;
mod committed_pages;
mod federation;
mod federation_hostile;
mod fraud_e2e;
mod fraud_evidence;
mod generation;
mod gpu;
mod kernel_paths;
mod layers;
mod llamacpp_logits;
mod perplexity_golden;
mod properties;
mod reasoning;
mod reproduce;
mod sandbox_hostile;
mod tokenizer_golden;
mod verify_bad_input;
mod verify_gonka;
mod verify_model;
mod verify_policy;
