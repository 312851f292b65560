//! Generation on the real packaged models: seeded sampling is bit-identical
//! across runs and across 1 vs 2 threads; chat templates render to the token
//! ids llama.cpp gives; greedy answers are sane.

use crate::common;

use std::process::Command;

use nsed::engine::chat::{ChatTemplate, Message, TemplateKind};
use nsed::engine::runtime::Runtime;
use serde_json::Value;

fn generate_json(threads: &str, args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(["--threads", threads, "generate", "--json"])
        .args(args)
        .output()
        .expect("nsed runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json output")
}

/// The parts of a generation that must replay bit for bit (not the timings).
fn replayable(doc: &Value) -> (Value, Value, Value, Value) {
    (
        doc["prompt_ids"].clone(),
        doc["output_ids"].clone(),
        doc["tokens"].clone(),
        doc["seed_string"].clone(),
    )
}

#[test]
fn seeded_sampling_is_bit_identical_across_runs_and_thread_counts() {
    // Between them the three models use every packed format but Q4_0 (Q4_1,
    // Q5_0, Q8_0, Q4_K, Q6_K) and every architecture; Q4_0 is covered by the
    // kernel unit tests. qwen2.5-coder-1.5b (Q4_K, Q6_K, qwen2) adds neither:
    // its seeded runs are the committed determinism hashes that
    // `scripts/bench-verify.sh` checks.
    for model in ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"] {
        let args = [
            "-m",
            model,
            "-p",
            "Write one sentence about rivers.",
            "-t",
            "0.9",
            "--top-p",
            "0.95",
            "--seed",
            "1234",
            "--inference-id",
            "det-test",
            "-n",
            "32",
            "--top-logprobs",
            "5",
        ];
        let first = generate_json("1", &args);
        let again = generate_json("1", &args);
        let two_threads = generate_json("2", &args);
        assert_eq!(
            replayable(&first),
            replayable(&again),
            "{model}: run to run"
        );
        assert_eq!(
            replayable(&first),
            replayable(&two_threads),
            "{model}: 1 vs 2 threads"
        );
        assert_eq!(
            first["tokens"][0]["top_logprobs"].as_array().map(Vec::len),
            Some(5)
        );
        // A different seed must change the sample (else the seed is not used).
        let mut other = args.to_vec();
        other[9] = "999";
        let different = generate_json("2", &other);
        assert_ne!(
            first["output_ids"], different["output_ids"],
            "{model}: seed ignored"
        );
    }
}

#[test]
fn greedy_generation_is_sane_and_deterministic() {
    let args = [
        "-m",
        "qwen2.5-coder-0.5b",
        "-p",
        "What is 12*7? Answer with the number only.",
        "-n",
        "16",
    ];
    let a = generate_json("2", &args);
    let b = generate_json("1", &args);
    assert_eq!(replayable(&a), replayable(&b));
    let text = a["text"].as_str().expect("text");
    assert!(text.contains("84"), "qwen2.5-coder-0.5b says {text:?}");
    assert_eq!(a["finish_reason"], "eos", "the answer ends with <|im_end|>");
}

#[test]
fn chat_templates_render_to_llama_cpp_token_ids() {
    // The golden corpus holds the raw ChatML and Gemma turn strings; the
    // rendered templates must tokenize to exactly those ids.
    let golden = |file: &str, line: usize| -> Vec<u64> {
        let text = std::fs::read_to_string(common::test_data().join("golden/tokenizer").join(file))
            .expect("golden");
        let rec: Value = serde_json::from_str(text.lines().nth(line).expect("line")).expect("json");
        rec["special_with_bos"]
            .as_array()
            .expect("ids")
            .iter()
            .filter_map(Value::as_u64)
            .collect()
    };
    let user = Message::new("user", "What is 2+2?");

    let qwen = Runtime::load("qwen2.5-coder-0.5b").expect("qwen loads");
    let ids: Vec<u64> = qwen
        .chat_tokens(std::slice::from_ref(&user))
        .expect("renders")
        .into_iter()
        .map(u64::from)
        .collect();
    let expected = golden("qwen2.5-coder-0.5b-instruct.jsonl", 17);
    assert!(
        ids.ends_with(&expected),
        "qwen chat ids {ids:?} do not end with {expected:?}"
    );
    assert_eq!(
        ids[0], 151644,
        "starts with <|im_start|> (default system turn)"
    );

    let smol = Runtime::load("smollm2-135m").expect("smollm loads");
    let ids: Vec<u64> = smol
        .chat_tokens(std::slice::from_ref(&user))
        .expect("renders")
        .into_iter()
        .map(u64::from)
        .collect();
    assert!(ids.ends_with(&golden("smollm2-135m-instruct.jsonl", 17)));

    let gemma = Runtime::load("gemma3-270m").expect("gemma loads");
    let turns = ChatTemplate::new(TemplateKind::Gemma, None)
        .render(&[user], true)
        .expect("renders");
    let ids: Vec<u64> = gemma
        .tokenizer
        .encode(&turns, true, true)
        .into_iter()
        .map(u64::from)
        .collect();
    assert_eq!(ids, golden("gemma-3-270m.jsonl", 18));
    // The base Gemma model is prompted with plain text: no turn markers.
    let plain = gemma
        .template
        .render(&[Message::new("user", "Q: 1+1\nA:")], true)
        .expect("renders");
    assert_eq!(plain, "Q: 1+1\nA:");
}

#[test]
fn the_roster_files_own_templates_render_as_the_hand_written_ones() {
    // The roster is prompted through hand-written templates (the registry's
    // `chat_template`); each instruction model's own GGUF template, rendered
    // by minijinja, must give the same text, so that either is the model's
    // real prompt format.
    use nsed::engine::registry::Registry;
    use nsed::engine::runtime::file_template;
    use nsed::engine::tokenizer::Tokenizer;
    let registry = Registry::load().expect("registry");
    let conversations = [
        vec![Message::new("user", "What is 2+2?")],
        vec![
            Message::new("system", "Be brief."),
            Message::new("user", "2 + 2?"),
            Message::new("assistant", "4"),
            Message::new("user", "And 3 + 3?"),
        ],
    ];
    let mut checked = 0;
    for id in ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] {
        let entry = registry.get(id).expect("roster entry");
        let gguf = common::open_registry_gguf(id);
        let tokenizer = Tokenizer::from_gguf(&gguf).expect("tokenizer");
        let own = file_template(&gguf, &tokenizer).expect("the file's template compiles");
        assert_eq!(own.kind, TemplateKind::Gguf, "{id} carries a template");
        let hand = ChatTemplate::new(entry.chat_template, entry.default_system.clone());
        for messages in &conversations {
            for gen in [true, false] {
                assert_eq!(
                    own.render(messages, gen).expect("renders"),
                    hand.render(messages, gen).expect("renders"),
                    "{id}, generation prompt {gen}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 12);
}
