//! Perplexity of the four models on tests/data/golden/perplexity/gsm8k_first40.txt
//! (ctx 128, llama.cpp's chunking) within 1% (relative) of llama.cpp's values.

mod common;

use nsed::engine::perplexity::perplexity;
use nsed::engine::runtime::Runtime;

fn check(model_id: &str, golden_ppl: f64, golden_chunks: usize) {
    let text =
        std::fs::read_to_string(common::test_data().join("golden/perplexity/gsm8k_first40.txt"))
            .expect("golden text");
    let mut rt = Runtime::load(model_id).expect("model loads");
    let report = perplexity(&mut rt, &text, 128, None, |_, _, _| {}).expect("perplexity runs");
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
}

#[test]
fn smollm2_perplexity_matches_llama_cpp() {
    check("smollm2-135m", 6.2982, 58);
}

#[test]
fn gemma3_perplexity_matches_llama_cpp() {
    check("gemma3-270m", 7.3782, 57);
}

#[test]
fn qwen_coder_0_5b_perplexity_matches_llama_cpp() {
    check("qwen2.5-coder-0.5b", 5.0923, 56);
}

#[test]
fn qwen_coder_1_5b_perplexity_matches_llama_cpp() {
    check("qwen2.5-coder-1.5b", 3.8377, 56);
}
