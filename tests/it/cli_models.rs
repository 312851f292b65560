//! `nsed models`, `nsed tokenize` and `nsed perplexity` on the real models, through the binary.

use crate::common;

use std::process::Command;

fn nsed(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(args)
        .output()
        .expect("nsed runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn models_list_shows_all_four_present() {
    let (code, out, err) = nsed(&["models", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).expect("json");
    let rows = rows.as_array().expect("array");
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert_eq!(r["status"], "present", "{r}");
    }
}

#[test]
fn models_inspect_reports_metadata_and_parameters() {
    let (code, out, err) = nsed(&["models", "inspect", "smollm2-135m"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("llama.block_count = 30"), "{out}");
    assert!(out.contains("tokenizer.ggml.pre = \"smollm\""), "{out}");
    assert!(out.contains("sha256 b179c952"), "{out}");
    // 134.5 M parameters: 30 blocks of width 576, 49152-token tied embedding.
    assert!(out.contains("parameters: 134515008"), "{out}");
    let (code, out, _) = nsed(&["models", "inspect", "gemma3-270m", "--tensors"]);
    assert_eq!(code, 0);
    assert!(out.contains("blk.0.attn_q_norm.weight"), "{out}");
}

#[test]
fn tokenize_prints_llama_cpp_ids() {
    let (code, out, err) = nsed(&["tokenize", "-m", "smollm2-135m", "--text", "Hi 123"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "26843 216 33 34 35");
    let (_, out, _) = nsed(&[
        "tokenize",
        "-m",
        "qwen2.5-coder-0.5b",
        "--special",
        "--text",
        "<|im_start|>user",
    ]);
    assert_eq!(out.trim(), "151644 872");
    let (_, out, _) = nsed(&["tokenize", "-m", "gemma3-270m", "--text", "Hello world"]);
    assert!(out.trim().starts_with("2 "), "Gemma adds BOS: {out}");
    let (_, out, _) = nsed(&[
        "tokenize",
        "-m",
        "gemma3-270m",
        "--no-bos",
        "--text",
        "Hello world",
    ]);
    assert!(!out.trim().starts_with("2 "), "{out}");
}

#[test]
fn perplexity_command_on_a_few_chunks() {
    let file = common::test_data().join("golden/perplexity/gsm8k_first40.txt");
    let file = file.to_str().expect("utf-8 path");
    let (code, out, err) = nsed(&[
        "perplexity",
        "-m",
        "smollm2-135m",
        "-f",
        file,
        "--ctx",
        "128",
        "--chunks",
        "3",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["chunks"], 3);
    assert_eq!(r["scored"], 189);
    let ppl = r["ppl"].as_f64().expect("ppl");
    assert!(
        (2.0..20.0).contains(&ppl),
        "smollm2 PPL on GSM8K text: {ppl}"
    );
}

#[test]
fn perf_runs_the_requested_number_of_steps() {
    // A functional check of the measurement, not a speed assertion.
    let (code, out, err) = nsed(&[
        "perf",
        "-m",
        "smollm2-135m",
        "--repeats",
        "1",
        "--prompt-tokens",
        "32",
        "--gen-tokens",
        "8",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let r: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["runs"][0]["prompt_tokens"], 32);
    assert_eq!(r["runs"][0]["gen_tokens"], 8, "decode does not stop at EOS");
    assert!(r["prefill_tok_per_s"].as_f64().is_some_and(|v| v > 0.0));
    assert!(
        r["peak_rss_mib"].as_f64().is_some_and(|v| v > 50.0),
        "the model is resident"
    );
}

#[test]
fn closed_stdout_ends_quietly_instead_of_panicking() {
    // `nsed … | head`: the reader is gone before nsed writes its first line.
    let mut child = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(["models", "inspect", "gemma3-270m", "--tensors"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("nsed runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("nsed exits");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// An `hf://` reference with `#sha256=` loads from the Hub cache only when
/// the file has that hash; another hash is a one-line exit-2 error naming
/// both (the cache is laid out as hf-hub writes it, so nothing is fetched).
#[test]
fn a_pinned_hub_reference_is_checked_against_the_cached_file() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo = home.path().join("hub/models--owner--repo");
    std::fs::create_dir_all(repo.join("refs")).expect("refs");
    std::fs::write(repo.join("refs/main"), "abc123").expect("ref");
    let snapshot = repo.join("snapshots/abc123");
    std::fs::create_dir_all(&snapshot).expect("snapshot");
    let file = snapshot.join("tiny.gguf");
    let spec = nsed::engine::synth::SynthSpec::like("qwen3-0.6b")
        .expect("shape")
        .scaled_down();
    nsed::engine::synth::write(&file, &spec).expect("write");
    let sha = nsed::engine::registry::sha256_file(&file).expect("sha256");
    let inspect = |reference: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_nsed"))
            .env("HF_HOME", home.path())
            .args(["models", "inspect", reference])
            .output()
            .expect("run nsed");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = inspect(&format!("hf://owner/repo/tiny.gguf#sha256={sha}"));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("qwen3"), "{stdout}");
    let wrong = "0".repeat(64);
    let (code, _, stderr) = inspect(&format!("hf://owner/repo/tiny.gguf#sha256={wrong}"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&sha) && stderr.contains(&wrong) && stderr.lines().count() == 1,
        "{stderr}"
    );
    let (code, _, stderr) = inspect("hf://owner/repo/tiny.gguf#sha256=xyz");
    assert_eq!(code, Some(2), "{stderr}");
}
