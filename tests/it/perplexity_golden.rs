//! Perplexity of the four models on tests/data/golden/perplexity/gsm8k_first40.txt
//! (ctx 128, llama.cpp's chunking) within 1% (relative) of llama.cpp's values:
//! the first 12 chunks (756 scored predictions) on smollm2-135m, gemma3-270m
//! and qwen2.5-coder-0.5b, the first 4 on qwen2.5-coder-1.5b (the 0.5B's
//! layers and formats, wider); smollm2-135m's tokenization of the whole text
//! must give llama.cpp's 58 chunks. The whole-text values stay in the
//! folder's README.

use crate::common;
use nsed::engine::perplexity::{perplexity, PerplexityReport};
use nsed::engine::runtime::Runtime;

/// `chunks`: `None` for the whole text (and `golden_chunks` is what the
/// tokenization must give), `Some(n)` for llama.cpp's `--chunks n`.
fn check(
    model_id: &str,
    chunks: Option<usize>,
    golden_ppl: f64,
    golden_chunks: usize,
) -> PerplexityReport {
    let text =
        std::fs::read_to_string(common::test_data().join("golden/perplexity/gsm8k_first40.txt"))
            .expect("golden text");
    let mut rt = Runtime::load(model_id).expect("model loads");
    let report = perplexity(&mut rt, &text, 128, chunks, |_, _, _| {}).expect("perplexity runs");
    let rel = (report.ppl - golden_ppl).abs() / golden_ppl;
    eprintln!(
        "{model_id}: PPL {:.4} vs llama.cpp {golden_ppl} ({:+.3}%), {} chunks",
        report.ppl,
        100.0 * (report.ppl / golden_ppl - 1.0),
        report.chunks
    );
    assert_eq!(
        report.chunks, golden_chunks,
        "{model_id}: chunk count (tokenization) differs"
    );
    assert_eq!(report.scored, golden_chunks * 63);
    assert!(
        rel < 0.01,
        "{model_id}: PPL {} is {:.2}% from llama.cpp's {golden_ppl}",
        report.ppl,
        rel * 100.0
    );
    report
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    let report = check("smollm2-135m", Some(12), 6.8287, 12);
    // The whole text is 58 chunks for llama.cpp: the tokenization's length,
    // checked without scoring the other 46.
    assert_eq!(report.tokens / report.ctx, 58, "{} tokens", report.tokens);
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check("gemma3-270m", Some(12), 6.9517, 12);
}

#[test]
fn qwen_coder_0_5b_perplexity_matches_llama_cpp() {
    check("qwen2.5-coder-0.5b", Some(12), 5.4445, 12);
}

#[test]
fn qwen_coder_1_5b_perplexity_matches_llama_cpp() {
    // The 0.5B's architecture and formats at a larger width: its first four
    // chunks (252 predictions) check the wider matrices at a third of the time.
    check("qwen2.5-coder-1.5b", Some(4), 4.7237, 4);
}
