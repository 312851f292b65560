//! `nsed generate --artifact` → `nsed verify` with real models: honest
//! artifacts pass bit-exactly, a prefill attack passes the logprob distances
//! but fails the seed-bound check, tampering and claims about other models
//! are caught, OpenAI-format artifacts are mapped through the vocabulary,
//! and many artifacts verify in one run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nsed::engine::chat::Message;
use nsed::engine::runtime::Runtime;
use nsed::engine::sampling::SamplingParams;
use nsed::verify::artifact::{Artifact, Request};
use nsed::verify::{self, Options, SeedVerdict, Verdict};

fn nsed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("nsed runs")
}

fn generate_artifact(dir: &Path, model: &str, temperature: &str, extra: &[&str]) -> PathBuf {
    let path = dir.join(format!("{model}.json"));
    let mut args = vec![
        "generate",
        "-m",
        model,
        "-p",
        "Write two sentences about the sea.",
        "-t",
        temperature,
        "--seed",
        "11",
        "--inference-id",
        "inf-7",
        "--top-logprobs",
        "5",
        "-n",
        "40",
        "--json",
        "--artifact",
    ];
    let p = path.to_str().expect("utf-8 path");
    args.push(p);
    args.extend_from_slice(extra);
    let out = nsed(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

fn verify_json(args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let mut all = vec!["verify", "--json"];
    all.extend_from_slice(args);
    let out = nsed(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let doc = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), doc, stderr)
}

fn metric(doc: &serde_json::Value, name: &str) -> f64 {
    doc["metrics"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["name"] == name))
        .and_then(|x| x["value"].as_f64())
        .unwrap_or_else(|| panic!("{name} in {doc}"))
}

#[test]
fn honest_artifact_verifies_bit_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = generate_artifact(dir.path(), "smollm2-135m", "0.9", &["--proof"]);
    let path = a.to_str().expect("utf-8");
    let (code, doc, stderr) = verify_json(&["--artifact", path, "--replay", "--positions"]);
    assert_eq!(code, Some(0), "{stderr}\n{doc}");
    // Batch-invariant kernels: the validator's prefill rows equal the
    // executor's decode steps exactly, so every distance is exactly zero.
    assert_eq!(metric(&doc, "gonka_similarity"), 1.0);
    assert_eq!(metric(&doc, "stage2_mae"), 0.0);
    assert_eq!(metric(&doc, "argmax_agreement"), 1.0);
    assert_eq!(doc["seed"]["verdict"], "honest");
    assert_eq!(doc["seed"]["mismatches"], 0);
    // Every claimed token's rank in the validator's sampler; honest and
    // replayed exactly, so uniform (a fixed seed: this p is deterministic).
    let ranks = &doc["seed"]["rank_uniformity"];
    assert_eq!(ranks["n"], doc["positions"], "{ranks}");
    assert!(ranks["p"].as_f64().expect("p") > 0.01, "{ranks}");
    let table = doc["table"].as_array().expect("table");
    assert!(table
        .iter()
        .all(|r| (0.0..1.0).contains(&r["pit"].as_f64().expect("pit"))));
    assert_eq!(doc["replay"]["identical"], true);
    let proof = &doc["proof"];
    assert_eq!(proof["passed"], proof["chunks"]);
    assert!(proof["chunks"].as_u64().expect("chunks") >= 1);
    let per_token = proof["proof_bytes_per_token"].as_f64().expect("bytes");
    assert!(per_token > 0.0 && per_token < proof["logprob_bytes_per_token"].as_f64().expect("lp"));
    assert_eq!(
        doc["table"].as_array().map(Vec::len),
        doc["positions"].as_u64().map(|n| n as usize)
    );
}

#[test]
fn tampering_and_false_claims_are_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = generate_artifact(dir.path(), "smollm2-135m", "0.9", &["--proof"]);
    let text = std::fs::read_to_string(&a).expect("artifact");
    let honest: serde_json::Value = serde_json::from_str(&text).expect("json");
    let write = |name: &str, doc: &serde_json::Value| {
        let p = dir.path().join(name);
        std::fs::write(&p, doc.to_string()).expect("write");
        p
    };
    let arg = |p: &PathBuf| p.to_str().expect("utf-8").to_string();

    // Another token at position 3 (ids digest updated so only the token is wrong).
    let doc = swap_token(&honest, 3);
    let (code, report, stderr) = verify_json(&["--artifact", &arg(&write("swap.json", &doc))]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(report["seed"]["verdict"], "fraud");
    assert_eq!(report["seed"]["first_mismatch"], 3);

    // A different model file claimed.
    let mut doc = honest.clone();
    doc["model"]["sha256"] = "00".repeat(32).into();
    let (code, _, stderr) = verify_json(&["--artifact", &arg(&write("sha.json", &doc))]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("model hash mismatch"), "{stderr}");

    // An id outside the vocabulary, and a token string that is not the id's.
    let mut doc = honest.clone();
    doc["positions"][0]["top_logprobs"][1]["id"] = 999_999.into();
    let (code, _, stderr) = verify_json(&["--artifact", &arg(&write("oov.json", &doc))]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("outside the vocabulary"), "{stderr}");
    let mut doc = honest.clone();
    doc["positions"][0]["top_logprobs"][1]["token"] = "not-this".into();
    let (code, _, stderr) = verify_json(&["--artifact", &arg(&write("rt.json", &doc))]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("not \\\"not-this\\\"") || stderr.contains("not-this"),
        "{stderr}"
    );

    // A forged activation proof.
    let mut doc = honest.clone();
    let chunk = doc["proof"]["chunks"][0].as_str().expect("hex").to_string();
    let forged: String = chunk[..4].to_string() + &"01".repeat((chunk.len() - 4) / 2);
    doc["proof"]["chunks"][0] = forged.into();
    let (code, report, _) = verify_json(&["--artifact", &arg(&write("proof.json", &doc))]);
    assert_eq!(code, Some(1));
    assert!(report["proof"]["passed"].as_u64() < report["proof"]["chunks"].as_u64());
}

#[test]
fn greedy_artifacts_are_inconclusive_for_the_seed_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = generate_artifact(dir.path(), "gemma3-270m", "0", &[]);
    let (code, doc, stderr) = verify_json(&["--artifact", a.to_str().expect("utf-8")]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(doc["seed"]["verdict"], "inconclusive");
    assert!(doc["seed"]["rank_uniformity"].is_null(), "{doc}");
    assert_eq!(metric(&doc, "gonka_similarity"), 1.0);
}

/// An nsed artifact rewritten as an OpenAI chat.completion (no ids, raw
/// bytes) with the request beside it: ids come back through the vocabulary.
#[test]
fn openai_format_maps_tokens_through_the_vocabulary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = generate_artifact(dir.path(), "qwen2.5-coder-0.5b", "0.9", &[]);
    let art = Artifact::read(&a).expect("artifact");
    let rt = Runtime::load("qwen2.5-coder-0.5b").expect("model");
    let entry = |id: u32, lp: f64| {
        serde_json::json!({
            "token": rt.tokenizer.token_string(id).expect("id"),
            "bytes": rt.tokenizer.token_bytes(id).expect("id"),
            "logprob": lp,
        })
    };
    let content: Vec<serde_json::Value> = art
        .positions
        .iter()
        .map(|p| {
            let mut e = entry(p.id.expect("id"), p.logprob);
            e["top_logprobs"] = p
                .top_logprobs
                .iter()
                .map(|t| entry(t.id.expect("id"), t.logprob))
                .collect();
            e
        })
        .collect();
    let openai = serde_json::json!({
        "object": "chat.completion",
        "model": "qwen2.5-coder-0.5b",
        "choices": [{"message": {"content": art.output.as_ref().map(|o| o.text.clone())},
                     "logprobs": {"content": content}}],
    });
    let req = art.request.as_ref().expect("request");
    let openai_request = serde_json::json!({
        "messages": req.messages,
        "temperature": req.sampling.temperature,
        "seed": req.seed,
        "max_tokens": req.max_tokens,
    });
    let o = dir.path().join("openai.json");
    let r = dir.path().join("request.json");
    std::fs::write(&o, openai.to_string()).expect("write");
    std::fs::write(&r, openai_request.to_string()).expect("write");
    let (code, doc, stderr) = verify_json(&[
        "--artifact",
        o.to_str().expect("utf-8"),
        "--request",
        r.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{stderr}\n{doc}");
    assert!(metric(&doc, "gonka_similarity") > 0.999_99, "{doc}");
    assert_eq!(metric(&doc, "topk_jaccard"), 1.0);
    // OpenAI servers do not follow the seed contract: no seed check.
    assert!(doc["seed"].is_null());
}

/// The prefill attack: qwen2.5-coder-0.5b writes, qwen2.5-coder-1.5b signs.
/// The logprob "proof" is the claimed model's own, so the distances pass;
/// the seed-bound re-derivation does not.
#[test]
fn prefill_attack_passes_distances_but_fails_the_seed_check() {
    let mut cheap = Runtime::load("qwen2.5-coder-0.5b").expect("cheap model");
    let mut claimed = Runtime::load("qwen2.5-coder-1.5b").expect("claimed model");
    let request = Request {
        messages: vec![Message::new(
            "user",
            "Write a short poem about a lighthouse.",
        )],
        raw_prompt: None,
        sampling: SamplingParams {
            temperature: 1.0,
            ..Default::default()
        },
        seed: 5,
        inference_id: "attack-1".into(),
        max_tokens: 48,
        stop: Vec::new(),
        top_logprobs: 5,
        template_kwargs: Default::default(),
    };
    let mut forged =
        nsed::fraud::prefill_attack(&mut cheap, &mut claimed, &request).expect("forge");
    assert_eq!(forged.model.id, "qwen2.5-coder-1.5b");
    let n = forged.positions.len();
    assert!(n >= 16, "{n} tokens");
    let report = verify::with_model(
        &mut claimed,
        &mut forged,
        None,
        "forged",
        &Options::default(),
    )
    .expect("verifies");
    let get = |name: &str| report.metrics.iter().find(|m| m.name == name).expect(name);
    // The laundered logprobs are the claimed model's: distance passes.
    assert!(
        get("gonka_similarity").value > 0.999_99,
        "{:?}",
        get("gonka_similarity")
    );
    assert_eq!(get("gonka_similarity").verdict, Verdict::Pass);
    assert_eq!(get("stage2_mae").verdict, Verdict::Pass);
    let seed = report.seed.as_ref().expect("seed check");
    assert_eq!(seed.verdict, SeedVerdict::Fraud, "{seed:?}");
    assert!(
        seed.mismatches * 4 >= n,
        "{} of {n} re-derived tokens differ",
        seed.mismatches
    );
    assert_eq!(report.verdict, Verdict::Fail);
}

/// The honest artifact with position `pos`'s token swapped for its 5th
/// alternative (ids digest updated, so only the token is wrong).
fn swap_token(honest: &serde_json::Value, pos: usize) -> serde_json::Value {
    let mut doc = honest.clone();
    let at = &mut doc["positions"][pos];
    let alt = at["top_logprobs"][4].clone();
    at["id"] = alt["id"].clone();
    at["token"] = alt["token"].clone();
    at["logprob"] = alt["logprob"].clone();
    let ids: Vec<u32> = doc["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| p["id"].as_u64().expect("id") as u32)
        .collect();
    doc["output"]["ids_sha256"] = nsed::verify::artifact::ids_sha256(&ids).into();
    doc
}

/// JSON lines of stdout, parsed.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Many artifacts in one run (files and a directory): one JSON line each in
/// order, each equal to verifying it alone; a tampered artifact fails alone
/// (exit 1) and an unreadable one is an error alone (exit 2 when nothing
/// fails), the others still verified.
#[test]
fn many_artifacts_verify_in_one_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = generate_artifact(dir.path(), "smollm2-135m", "0.9", &[]);
    let honest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a).expect("artifact")).expect("json");
    let batch = dir.path().join("batch");
    std::fs::create_dir(&batch).expect("mkdir");
    let put = |name: &str, text: &str| {
        let p = batch.join(name);
        std::fs::write(&p, text).expect("write");
        p.to_str().expect("utf-8").to_string()
    };
    let first = put("a-honest.json", &honest.to_string());
    let second = put("b-honest.json", &honest.to_string());
    put("c-swapped.json", &swap_token(&honest, 3).to_string());
    put("notes.txt", "not an artifact");

    // Two files: both pass, each report the single run's.
    let jsonl = dir.path().join("reports.jsonl");
    let out = nsed(&[
        "verify",
        "--json",
        "--output",
        jsonl.to_str().expect("utf-8"),
        "--artifact",
        &first,
        &second,
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    let written = std::fs::read_to_string(&jsonl).expect("output file");
    assert_eq!(written.lines().count(), 2);
    let (code, alone, stderr) = verify_json(&["--artifact", &first]);
    assert_eq!(code, Some(0), "{stderr}");
    for line in &lines {
        assert_eq!(line["verdict"], "pass");
        assert_eq!(line["metrics"], alone["metrics"]);
        assert_eq!(line["seed"], alone["seed"]);
    }

    // The directory: its three .json files in name order, the swap caught.
    let out = nsed(&[
        "verify",
        "--json",
        "--artifact",
        batch.to_str().expect("utf-8"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let verdicts: Vec<&str> = lines
        .iter()
        .map(|l| l["verdict"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(verdicts, ["pass", "pass", "fail"]);
    assert!(lines[2]["executor"]
        .as_str()
        .is_some_and(|e| e.ends_with("c-swapped.json")));
    assert_eq!(lines[2]["seed"]["first_mismatch"], 3);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 artifacts: 2 pass, 1 fail, 0 not verified"),
        "{stderr}"
    );

    // An unreadable file among honest ones: an error line, exit 2.
    let broken = put("d-broken.json", "{ not json");
    let out = nsed(&["verify", "--artifact", &first, &broken, &second]);
    assert_eq!(out.status.code(), Some(2));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("PASS")).count(),
        2,
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("d-broken.json"), "{stderr}");
    assert!(
        stderr.contains("2 pass, 0 fail, 1 not verified"),
        "{stderr}"
    );

    // --against compares exactly one pair.
    let out = nsed(&["verify", "--artifact", &first, &second, "--against", &first]);
    assert_eq!(out.status.code(), Some(2));
}
