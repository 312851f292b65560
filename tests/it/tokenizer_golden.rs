//! The GGUF tokenizers against llama.cpp's token ids (tests/data/golden/tokenizer):
//! every model, every text, every mode, exactly; and decode(encode(text)) == text.

use crate::common;

use nsed::engine::tokenizer::Tokenizer;
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    text: String,
    plain_with_bos: Vec<u32>,
    plain_no_bos: Vec<u32>,
    special_with_bos: Vec<u32>,
    special_no_bos: Vec<u32>,
}

fn check_model(model_id: &str, golden_file: &str) {
    let gguf = common::open_registry_gguf(model_id);
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer loads");
    let path = common::test_data()
        .join("golden/tokenizer")
        .join(golden_file);
    let text = std::fs::read_to_string(&path).expect("golden file readable");
    let mut failures = Vec::new();
    let mut cases = 0;
    for (line_no, line) in text.lines().enumerate() {
        let g: Golden = serde_json::from_str(line).expect("golden line parses");
        let modes = [
            ("plain_with_bos", true, false, &g.plain_with_bos),
            ("plain_no_bos", false, false, &g.plain_no_bos),
            ("special_with_bos", true, true, &g.special_with_bos),
            ("special_no_bos", false, true, &g.special_no_bos),
        ];
        for (mode, add_special, parse_special, expected) in modes {
            cases += 1;
            let got = tok.encode(&g.text, add_special, parse_special);
            if &got != expected {
                failures.push(format!(
                    "line {} {mode} {:?}\n  got      {got:?}\n  expected {expected:?}",
                    line_no + 1,
                    g.text
                ));
            }
            let body: Vec<u32> = got
                .iter()
                .copied()
                .filter(|&id| Some(id) != tok.bos || !add_special || !tok.add_bos)
                .collect();
            let decoded = tok.decode(&body).expect("ids in vocab");
            if decoded != g.text {
                failures.push(format!(
                    "line {} {mode}: decode gives {decoded:?}",
                    line_no + 1
                ));
            }
        }
    }
    assert_eq!(cases, 120, "{model_id}: 30 texts x 4 modes");
    assert!(
        failures.is_empty(),
        "{model_id}: {} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn smollm2_matches_llama_cpp() {
    check_model("smollm2-135m", "smollm2-135m-instruct.jsonl");
}

#[test]
fn gemma3_matches_llama_cpp() {
    check_model("gemma3-270m", "gemma-3-270m.jsonl");
}

#[test]
fn qwen_coder_0_5b_matches_llama_cpp() {
    check_model("qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct.jsonl");
}

#[test]
fn qwen_coder_1_5b_matches_llama_cpp() {
    check_model("qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct.jsonl");
}

/// A pre-token of millions of characters tokenizes in time linear in its
/// length and round-trips. It used to hang: past 10^6 regex steps the
/// matcher failed, and the failure repeated forever at the same position.
/// The bound below is a hang detector (a generous multiple of the few
/// seconds this takes), not a speed claim.
#[test]
fn ten_megabytes_of_one_letter_tokenize_and_round_trip() {
    let text = "a".repeat(10 << 20);
    for model in ["smollm2-135m", "qwen2.5-coder-0.5b", "gemma3-270m"] {
        let gguf = common::open_registry_gguf(model);
        let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer loads");
        let start = std::time::Instant::now();
        let ids = tok.encode(&text, false, false);
        let took = start.elapsed();
        eprintln!("{model}: 10 MiB of 'a' -> {} ids in {took:?}", ids.len());
        assert!(took.as_secs() < 120, "{model}: {took:?}");
        assert!(ids.len() < text.len() / 2, "{model}: merges happened");
        assert_eq!(tok.decode(&ids).expect("decode"), text, "{model}");
    }
}

/// llama.cpp's own vocabulary tests (`models/ggml-vocab-NAME.gguf` with
/// `.inp` texts and `.out` ids, tokenized without special tokens), fetched
/// by scripts/fetch-vocab.sh (scripts/test.sh runs it).
fn llama_cpp_vocab_cases(name: &str) -> (Tokenizer, Vec<(String, Vec<u32>)>) {
    let dir = std::env::var_os("NSED_VOCAB_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::PathBuf::from(std::env::var("HOME").expect("HOME")).join(".cache/nsed/vocab")
        })
        .join("0.3.36");
    let file = dir.join(format!("ggml-vocab-{name}.gguf"));
    assert!(
        file.exists(),
        "{} is missing: run scripts/fetch-vocab.sh",
        file.display()
    );
    let gguf = nsed::engine::gguf::Gguf::open(&file).expect("vocab gguf");
    let tok = Tokenizer::from_gguf(&gguf).expect("tokenizer loads");
    let read = |ext: &str| {
        std::fs::read_to_string(dir.join(format!("ggml-vocab-{name}.gguf{ext}")))
            .expect("test file")
    };
    let (inp, out) = (read(".inp"), read(".out"));
    let sep = "\n__ggml_vocab_test__\n";
    let texts: Vec<&str> = inp.strip_suffix(sep).unwrap_or(&inp).split(sep).collect();
    let ids: Vec<Vec<u32>> = out
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(|t| t.parse().expect("id"))
                .collect()
        })
        .collect();
    assert_eq!(texts.len(), ids.len(), "{name}: .inp and .out disagree");
    let cases = texts.into_iter().map(String::from).zip(ids).collect();
    (tok, cases)
}

#[test]
fn llama_cpp_vocabulary_tests_give_the_same_ids() {
    // The vocabularies of the families nsed runs: Qwen2/2.5/3 (`qwen2`),
    // Qwen3.5 (`qwen35`), Llama 3 (`llama-bpe`), and SentencePiece's
    // Llama 2 / Mistral 7B vocabulary (`llama-spm`).
    for name in ["qwen2", "qwen35", "llama-bpe", "llama-spm"] {
        let (tok, cases) = llama_cpp_vocab_cases(name);
        assert!(cases.len() >= 40, "{name}: {} cases", cases.len());
        let failures: Vec<String> = cases
            .iter()
            .filter(|(text, ids)| tok.encode(text, false, false) != *ids)
            .map(|(text, ids)| {
                format!(
                    "{text:?}: nsed {:?}, llama.cpp {ids:?}",
                    tok.encode(text, false, false)
                )
            })
            .collect();
        assert!(failures.is_empty(), "{name}: {}", failures.join("\n"));
    }
}

/// A tiny model's tokenizer with pre-tokenizer `pre`.
fn tokenizer_with_pre(dir: &std::path::Path, pre: &str) -> Tokenizer {
    let path = dir.join(format!("{pre}.gguf"));
    let spec = nsed::testing::TinySpec {
        pre: pre.into(),
        ..nsed::testing::TinySpec::new(nsed::engine::model::Arch::Qwen2)
    };
    nsed::testing::write_tiny_model(&path, &spec).expect("write");
    let gguf = nsed::engine::gguf::Gguf::open(&path).expect("gguf");
    Tokenizer::from_gguf(&gguf).expect("a supported pre-tokenizer")
}

/// `tok` cuts every text of `pre`'s goldens into the pieces Python's `regex` does.
fn check_pretokens(tok: &Tokenizer, pre: &str) {
    let text = std::fs::read_to_string(
        common::test_data().join(format!("golden/tokenizer/{pre}-pretokens.jsonl")),
    )
    .expect("goldens");
    let mut checked = 0;
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).expect("json");
        let input = row["text"].as_str().expect("text");
        let want: Vec<&str> = row["pieces"]
            .as_array()
            .expect("pieces")
            .iter()
            .map(|p| p.as_str().expect("piece"))
            .collect();
        assert_eq!(
            tok.pre_tokens(input).expect("bpe"),
            want,
            "{pre}: {input:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 35, "{pre}");
}

#[test]
fn the_tekken_pre_tokenizer_cuts_as_python_regex_does() {
    // Mistral's `tekken` (Nemo, Small 3): no llama.cpp test vectors either.
    let dir = tempfile::tempdir().expect("tempdir");
    let tekken = tokenizer_with_pre(dir.path(), "tekken");
    check_pretokens(&tekken, "tekken");
    // The control: GPT-4o's pattern keeps up to three digits together,
    // Tekken's one.
    let gpt4o = tokenizer_with_pre(dir.path(), "gpt-4o");
    assert_eq!(
        tekken.pre_tokens("2026").expect("bpe"),
        ["2", "0", "2", "6"]
    );
    assert_ne!(
        gpt4o.pre_tokens("2026").expect("bpe"),
        tekken.pre_tokens("2026").expect("bpe")
    );
}

#[test]
fn the_gpt_4o_pre_tokenizer_cuts_as_python_regex_does() {
    // GPT-OSS's `gpt-4o` pre-tokenizer has no llama.cpp test vectors: its
    // pieces are checked against Python's `regex` on llama.cpp's pattern
    // (scripts/pretokenizer-goldens.py); the merges after it are the same
    // byte-level BPE the vocabulary tests above check.
    let dir = tempfile::tempdir().expect("tempdir");
    let tok = tokenizer_with_pre(dir.path(), "gpt-4o");
    check_pretokens(&tok, "gpt-4o");
    // The control: Qwen2's pattern cuts mixed case differently.
    let qwen =
        Tokenizer::from_gguf(&common::open_registry_gguf("qwen2.5-coder-0.5b")).expect("qwen");
    assert_ne!(
        qwen.pre_tokens("CamelCaseWord").expect("bpe"),
        tok.pre_tokens("CamelCaseWord").expect("bpe")
    );
}
