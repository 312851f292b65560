//! Every kernel path this CPU has gives the same generation, bit for bit, on
//! three models, one per architecture and weight-format mix of the roster:
//! `nsed determinism` under each `NSED_KERNEL` must print the logits and
//! output hashes committed in `results/determinism/<model>.json` (recorded on
//! other machines, other paths; the portable path on the two smaller models
//! where the CPU has another, see `runs_on`). qwen2.5-coder-1.5b is the 0.5B's
//! architecture and formats at a larger width, so it adds time and no path;
//! its committed hashes are checked by `scripts/bench-verify.sh`. The same
//! holds for the scaled-down synthetic models of the paper's architectures
//! and every new weight format (`tests/data/golden/determinism/synthetic.json`). Also: a bad
//! `NSED_KERNEL` is a clear exit-2 error naming the paths this CPU has.

use crate::common;

use std::process::Command;

use nsed::engine::qmm::path::{available, KernelPath};

const MODELS: [&str; 3] = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"];

fn nsed() -> Command {
    Command::new(env!("CARGO_BIN_EXE_nsed"))
}

/// The committed (logits, output) sha256 of a model's determinism report.
fn committed(model: &str) -> (String, String) {
    let path = format!(
        "{}/results/determinism/{model}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("committed determinism report");
    let report: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let run = &report["runs"][0];
    assert_eq!(run["tokens"], 64, "{path}: the hashes are of 64-token runs");
    (
        run["logits_sha256"].as_str().expect("logits hash").into(),
        run["output_sha256"].as_str().expect("output hash").into(),
    )
}

/// One determinism run (the command's defaults: 64 tokens, T 0.8, seed 42)
/// on `path` at 2 threads: (logits, output) sha256.
fn run_on(path: KernelPath, model: &str) -> (String, String) {
    common::registry_model_path(model);
    hashes_of(path, model.as_ref(), &[])
}

/// `nsed determinism` on `model` (a registry id or a file) on `path` at 2
/// threads, one run, with `extra` flags: (logits, output) sha256.
fn hashes_of(path: KernelPath, model: &std::ffi::OsStr, extra: &[&str]) -> (String, String) {
    let out = nsed()
        .env("NSED_KERNEL", path.name())
        .args(["--threads", "2", "determinism", "--model"])
        .arg(model)
        .args(["--runs", "1", "--hashes-only", "--json"])
        .args(extra)
        .output()
        .expect("run nsed");
    assert!(
        out.status.success(),
        "{path} {model:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let run = &report["runs"][0];
    assert_eq!(run["identical_logits_share"], 1.0, "{path} {model:?}");
    (
        run["logits_sha256"].as_str().expect("logits hash").into(),
        run["output_sha256"].as_str().expect("output hash").into(),
    )
}

/// Whether the test runs `model` on `path`. The portable path (plain Rust,
/// 3-5x slower than the SIMD ones) runs the two smaller models where this
/// CPU has another path: qwen2.5-coder-0.5b's formats are gemma3-270m's
/// (Q4_K, Q5_0, Q6_K, Q8_0), and the model code above the kernels is the
/// same on every path. Every format on every path is also
/// `qmm::tests::every_path_equals_the_reference_bit_for_bit`; on a CPU with
/// the portable path alone (aarch64), it runs all three.
fn runs_on(path: KernelPath, model: &str, paths: &[KernelPath]) -> bool {
    path != KernelPath::Portable || paths.len() == 1 || model != "qwen2.5-coder-0.5b"
}

#[test]
fn every_path_reproduces_the_committed_hashes_on_every_model() {
    let paths = available();
    eprintln!("kernel paths on this CPU: {paths:?}");
    assert!(paths.contains(&KernelPath::Portable));
    for model in MODELS {
        let want = committed(model);
        for &path in paths.iter().filter(|&&p| runs_on(p, model, &paths)) {
            let got = run_on(path, model);
            assert_eq!(got, want, "{model} on the {path} path");
            eprintln!("{model} {path}: logits {}", &got.0[..16]);
        }
    }
}

#[test]
fn a_different_seed_gives_different_hashes() {
    // Negative control: the hashes do depend on what was computed.
    let want = committed("smollm2-135m");
    let out = nsed()
        .args(["--threads", "2", "determinism", "--model", "smollm2-135m"])
        .args(["--runs", "1", "--seed", "43", "--hashes-only", "--json"])
        .output()
        .expect("run nsed");
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let got = report["runs"][0]["logits_sha256"].as_str().expect("hash");
    assert_ne!(got, want.0);
    // --hashes-only skips the plain sampler: no timing in the report.
    assert!(report["runs"][0]["plain_seconds"].is_null());
    assert!(report["runs"][0]["seed_bound_seconds"].is_null());
}

#[test]
fn a_bad_kernel_setting_is_a_usage_error_naming_the_paths() {
    let names: Vec<&str> = available().iter().map(|p| p.name()).collect();
    let mut settings = vec!["sse9".to_string()];
    settings.extend(
        KernelPath::ALL
            .into_iter()
            .filter(|p| !p.is_available())
            .map(|p| p.name().to_string()),
    );
    for setting in settings {
        let out = nsed()
            .env("NSED_KERNEL", &setting)
            .args(["models", "list"])
            .output()
            .expect("run nsed");
        assert_eq!(out.status.code(), Some(2), "NSED_KERNEL={setting}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.contains(&setting), "{err}");
        for name in &names {
            assert!(err.contains(name), "names {name}: {err}");
        }
    }
    let out = nsed()
        .env("NSED_KERNEL", "portable")
        .args(["models", "inspect", "smollm2-135m"])
        .output()
        .expect("run nsed");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("kernel: portable"), "{text}");
    assert!(text.contains("qmm (portable)"), "{text}");
}

/// The NSED paper's architectures and the larger models' weight formats, on
/// their scaled-down synthetic models (no weights to download): every kernel
/// path this CPU has reproduces the hashes committed in
/// `tests/data/golden/determinism/synthetic.json` (`scripts/synthetic-determinism.sh`)
/// for a 16-token seed-bound generation; a model whose weights differ by
/// its seed gives other hashes (negative control).
#[test]
fn synthetic_models_of_every_architecture_and_format_agree_on_every_path() {
    let path = format!(
        "{}/tests/data/golden/determinism/synthetic.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).expect("committed synthetic hashes");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let models = doc["models"].as_object().expect("models");
    assert_eq!(models.len(), 11, "{path}");
    let dir = tempfile::tempdir().expect("tempdir");
    let synth = |id: &str, seed: &str| {
        let file = dir
            .path()
            .join(format!("{}-{seed}.gguf", id.replace(':', "-")));
        let (like, quant) = id.split_once(':').unwrap_or((id, ""));
        let mut cmd = nsed();
        cmd.args([
            "models",
            "synth",
            "--like",
            like,
            "--scaled-down",
            "--seed",
            seed,
        ]);
        if !quant.is_empty() {
            cmd.args(["--quant", quant]);
        }
        let out = cmd.arg("-o").arg(&file).output().expect("run nsed");
        assert!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        file
    };
    let hashes =
        |path: KernelPath, file: &std::path::Path| hashes_of(path, file.as_os_str(), &["-n", "16"]);
    for (id, want) in models {
        let file = synth(id, "7");
        let want = (
            want["logits_sha256"].as_str().expect("hash").to_string(),
            want["output_sha256"].as_str().expect("hash").to_string(),
        );
        for path in available() {
            assert_eq!(hashes(path, &file), want, "{id} on the {path} path");
        }
        eprintln!("{id}: {} on {:?}", &want.0[..16], available());
    }
    let other = synth("qwen3-8b:IQ4_XS", "8");
    let other = hashes(KernelPath::Portable, &other);
    assert_ne!(
        other.0,
        models["qwen3-8b:IQ4_XS"]["logits_sha256"]
            .as_str()
            .expect("hash")
    );
}
