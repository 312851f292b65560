//! The GPU support through the binary, on a machine without a GPU:
//! `--device` is parsed and refused clearly, `nsed models synth` writes
//! roster-shaped models that run, and `scripts/gpu-check.sh` runs end to end
//! on the GPU's code path on the CPU (`--device cpu-candle`), so the script
//! a lent GPU machine runs is the one tested here.

use std::path::Path;
use std::process::{Command, Output};

fn nsed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env("NSED_THRESHOLDS_DIR", "/nonexistent/nsed-thresholds")
        .output()
        .expect("nsed runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 2 with an `error:` first line that names `needle`, and no panic.
fn assert_usage_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let first = err.lines().next().unwrap_or("");
    assert!(first.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "`{needle}` not in: {err}");
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn synth(dir: &Path, like: &str, layers: &str, extra: &[&str]) -> std::path::PathBuf {
    let path = dir.join(format!("{like}.gguf"));
    let mut args = vec!["models", "synth", "--like", like, "--layers", layers];
    args.extend_from_slice(extra);
    args.extend(["-o", s(&path)]);
    let out = nsed(&args);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("wrote "), "{stdout}");
    path
}

#[test]
fn an_unknown_device_is_a_usage_error() {
    for bad in ["tpu", "cuda:x", "cuda:-1", "gpu0"] {
        let out = nsed(&["--device", bad, "models", "list"]);
        assert_usage_error(&out, "cuda:N");
    }
}

#[cfg(not(feature = "cuda"))]
#[test]
fn cuda_in_a_cpu_build_says_how_to_build_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = synth(dir.path(), "smollm2-135m", "1", &[]);
    for device in ["cuda", "cuda:3"] {
        let out = nsed(&[
            "--device",
            device,
            "generate",
            "-m",
            s(&model),
            "-p",
            "hi",
            "-n",
            "2",
        ]);
        assert_usage_error(&out, "scripts/build-cuda.sh");
        assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
        assert!(out.stdout.is_empty());
    }
    // A roster agent may name its own device; a bad name is refused at load.
    let roster = dir.path().join("roster.toml");
    std::fs::write(
        &roster,
        format!(
            "[[agent]]\nname = \"a\"\nmodel = \"{}\"\ndevice = \"cuda:zero\"\n",
            s(&model)
        ),
    )
    .expect("roster");
    let out = nsed(&["deliberate", "--config", s(&roster), "1+1?"]);
    assert_usage_error(&out, "cuda:N");
}

#[test]
fn synth_refuses_unknown_shapes_and_types() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.gguf");
    let out = nsed(&["models", "synth", "--like", "llama-70b", "-o", s(&path)]);
    assert_usage_error(&out, "qwen2.5-coder-1.5b");
    let out = nsed(&[
        "models",
        "synth",
        "--like",
        "smollm2-135m",
        "--quant",
        "Q3_XS",
        "-o",
        s(&path),
    ]);
    assert_usage_error(&out, "Q4_K");
    // A vocabulary below the synthetic tokenizer's own tokens is refused
    // with the range (the smaller vocabularies are made by the reproduce test).
    let out = nsed(&[
        "models",
        "synth",
        "--like",
        "gemma3-270m",
        "--vocab",
        "100",
        "-o",
        s(&path),
    ]);
    assert_usage_error(&out, "512..=1048576");
    assert!(!path.exists(), "nothing written on a refusal");
}

/// `nsed generate` on `device` with a seeded sampler: the artifact's path.
fn generate_artifact(device: &str, model: &Path, artifact: &Path) {
    let out = nsed(&[
        "--device",
        device,
        "generate",
        "-m",
        s(model),
        "-p",
        "Tell me a story.",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "-n",
        "24",
        "--top-logprobs",
        "5",
        "--artifact",
        s(artifact),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// `nsed verify` of `artifact` against `model` with `extra` global options:
/// exit code, JSON report, stderr.
fn verify(
    extra: &[&str],
    artifact: &Path,
    model: &Path,
) -> (Option<i32>, serde_json::Value, String) {
    let mut args = extra.to_vec();
    args.extend([
        "verify",
        "--artifact",
        s(artifact),
        "-m",
        s(model),
        "--json",
    ]);
    let out = nsed(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code(), report, stderr(&out))
}

fn metric<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

#[test]
fn a_synthetic_model_runs_on_both_paths_and_verifies_across_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A 1024-token vocabulary: the full one's output layer (151,936 rows)
    // was most of the time; the shapes of the layers are the roster's.
    let model = synth(dir.path(), "qwen2.5-coder-0.5b", "2", &["--vocab", "1024"]);
    let inspect = nsed(&["models", "inspect", s(&model)]);
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(text.contains("qwen2.embedding_length = 896"), "{text}");
    assert!(text.contains("Q6K") && text.contains("Q5_0"), "{text}");

    // f32 weights on the candle path (the GPU's code): the artifact says so,
    // and a verify told nothing replays it there and passes at the defaults.
    let f32_artifact = dir.path().join("f32.json");
    generate_artifact("cpu-candle/f32", &model, &f32_artifact);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&f32_artifact).expect("artifact"))
            .expect("json");
    assert!(
        doc["isa"]
            .as_str()
            .is_some_and(|isa| isa.starts_with("cpu-candle/f32 x86_64")
                || isa.starts_with("cpu-candle/f32 aarch64")),
        "the artifact says where it ran, and on which class: {}",
        doc["isa"]
    );
    let (code, report, err) = verify(&[], &f32_artifact, &model);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["verdict"], "pass", "{report:#}");
    assert_eq!(report["seed"]["verdict"], "honest", "{report:#}");
    assert!(err.contains("replaying on cpu-candle/f32"), "{err}");

    // Quantized weights on the candle path: a verify told nothing replays
    // it on that path (this machine's class), call by call as it decoded:
    // a bit-exact pair, every re-derived token equal.
    let q_artifact = dir.path().join("q.json");
    generate_artifact("cpu-candle", &model, &q_artifact);
    let (code, report, err) = verify(&[], &q_artifact, &model);
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    assert!(err.contains("replaying on cpu-candle"), "{err}");
    assert_eq!(report["policy"]["bit_exact"], true, "{report:#}");
    assert_eq!(report["seed"]["mismatches"], 0, "{report:#}");
    assert_eq!(metric(&report, "stage2_mae")["value"], 0.0, "{report:#}");
    // On the host path, whose 8-bit activations are rounded differently,
    // this random-weight model has no calibration: no verdict (exit 2),
    // unless the published distance bounds are chosen, which pass.
    let (code, _, err) = verify(&["--device", "cpu"], &q_artifact, &model);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--made-on cpu-candle --replayed-on cpu"),
        "{err}"
    );
    let defaults = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/thresholds/defaults.json"
    );
    let out = nsed(&[
        "--device",
        "cpu",
        "verify",
        "--artifact",
        s(&q_artifact),
        "-m",
        s(&model),
        "--thresholds",
        defaults,
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    assert_eq!(report["policy"]["bit_exact"], false, "{report:#}");
    for name in ["gonka_similarity", "gonka_distance2"] {
        assert_eq!(
            metric(&report, name)["verdict"],
            "pass",
            "{name}: {report:#}"
        );
    }

    // Negative control: a substituted model. The executor ran another
    // seed's weights on the same path and claims this model (no hash); the
    // seed check catches every position.
    let other = dir.path().join("other.gguf");
    let made = nsed(&[
        "models",
        "synth",
        "--like",
        "qwen2.5-coder-0.5b",
        "--layers",
        "2",
        "--seed",
        "99",
        "--vocab",
        "1024",
        "-o",
        s(&other),
    ]);
    assert_eq!(made.status.code(), Some(0), "{}", stderr(&made));
    let forged = dir.path().join("forged.json");
    generate_artifact("cpu-candle/f32", &other, &forged);
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&forged).expect("artifact")).expect("json");
    doc["model"]["sha256"] = serde_json::Value::String(String::new());
    std::fs::write(&forged, doc.to_string()).expect("rewrite");
    let (code, report, _) = verify(&[], &forged, &model);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["seed"]["verdict"], "fraud", "{report:#}");
    assert!(
        report["seed"]["mismatches"].as_u64().unwrap_or(0) > 12,
        "{report:#}"
    );
}

#[test]
fn the_gpu_check_script_runs_on_the_candle_cpu_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/gpu-check.sh"))
        .arg(dir.path())
        .env("NSED_BIN", env!("CARGO_BIN_EXE_nsed"))
        .env("NSED_GPU_DEVICE", "cpu-candle")
        .env("NSED_GPU_SHAPES", "smollm2-135m")
        .env("NSED_GPU_QUICK", "1")
        .env("NSED_GPU_CPU_THREADS", "2")
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("bash runs");
    let text = std::fs::read_to_string(dir.path().join("gpu-check.json")).unwrap_or_default();
    assert_eq!(out.status.code(), Some(0), "{}\n{text}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("gpu-check.json");
    assert_eq!(doc["schema"], "nsed.gpu-check/v1");
    assert_eq!(doc["all_verified_on_cpu"], true);
    let positive = |p: &serde_json::Value, what: &str| {
        assert_eq!(p["exit"], 0, "{what}: {p}");
        for k in ["prefill_tok_per_s", "decode_tok_per_s"] {
            assert!(p[k].as_f64().unwrap_or(0.0) > 0.0, "{what} {k}: {p}");
        }
    };
    for shape in ["smollm2-135m"] {
        let m = &doc["models"][shape];
        positive(&m["perf_cpu"], shape);
        for (mode, device) in [("quantized", "cpu-candle"), ("f32", "cpu-candle/f32")] {
            let w = &m[mode];
            positive(&w["perf_gpu"], &format!("{shape} {mode}"));
            let on = w["perf_gpu"]["device"].as_str().unwrap_or("");
            assert_eq!(on.split_whitespace().next(), Some(device), "{w}");
            let v = &w["verify_on_cpu"];
            assert_eq!(
                v["metrics"]["gonka_distance2"]["verdict"], "pass",
                "{shape} {mode}: {v}"
            );
            // The candle path replays its own generation; the share of
            // identical logits across repeated runs is measured (1.0 on the CPU).
            let runs = &w["determinism_on_gpu"]["runs"];
            assert_eq!(runs[0]["identical_logits_share"], 1.0, "{shape}: {runs}");
            // Regenerating with the seed gives the same tokens on both.
            let replay = &w["replay_on_gpu"];
            assert_eq!(
                replay["replay"]["identical"], true,
                "{shape} {mode}: {replay}"
            );
        }
        // On the CPU the "GPU" is the candle path of this machine's class:
        // both the verify (which picks that path) and the replay run the
        // executor's calls again, so every re-derived token is equal, with
        // quantized weights as with f32.
        for mode in ["quantized", "f32"] {
            for side in ["verify_on_cpu", "replay_on_gpu"] {
                let v = &m[mode][side];
                assert_eq!(v["exit"], 0, "{shape} {mode} {side}: {v}");
                assert_eq!(v["seed"]["mismatches"], 0, "{shape} {mode} {side}: {v}");
            }
        }
    }
}

/// `nsed models synth --like ID` copies the real file's shape and tensor
/// types: checked against the four downloaded roster models
/// (scripts/test.sh fetches them), tensor by tensor for the first layer.
#[test]
fn synthetic_shapes_match_the_roster_files() {
    const SMALL_VOCAB: usize = 1024;
    use nsed::engine::gguf::Gguf;
    use nsed::engine::model::Config;
    use nsed::engine::registry::Registry;
    use nsed::engine::synth::{self, SynthSpec, ROSTER_SHAPES};
    let registry = Registry::load().expect("registry");
    let dir = tempfile::tempdir().expect("tempdir");
    for shape in &ROSTER_SHAPES {
        let resolved = registry
            .resolve(shape.id)
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch-models.sh)", shape.id));
        let real = Gguf::open(&resolved.path).expect("parse");
        // One layer is enough to compare every tensor's type and shape, and
        // a small vocabulary keeps the writes quick (four full-size
        // embedding and output layers were most of this test's time): the
        // vocabulary size is compared through the shape table that `--like`
        // copies, the rest of those two tensors from the file.
        let mut spec = SynthSpec::like(shape.id).expect("known shape");
        spec.n_layer = 1;
        spec.vocab_size = Some(SMALL_VOCAB);
        let path = dir.path().join(format!("{}.gguf", shape.id));
        synth::write(&path, &spec).expect("write");
        let ours = Gguf::open(&path).expect("parse synthetic");
        let (a, b) = (
            Config::from_gguf(&real).expect("real"),
            Config::from_gguf(&ours).expect("ours"),
        );
        let key = |c: &Config| {
            (
                c.arch,
                c.n_embd,
                c.n_head,
                c.n_kv_head,
                c.head_dim,
                c.context_length,
                c.sliding_window,
                c.rope_base,
            )
        };
        assert_eq!(key(&a), key(&b), "{}", shape.id);
        assert_eq!(a.vocab_size, shape.vocab_size, "{}", shape.id);
        assert_eq!(b.vocab_size, SMALL_VOCAB, "{}", shape.id);
        assert_eq!(a.n_layer, shape.n_layer, "{}", shape.id);
        let arch = a.arch.name();
        let ff = |g: &Gguf| {
            g.get_usize(&format!("{arch}.feed_forward_length"))
                .expect("n_ff")
        };
        assert_eq!(ff(&real), ff(&ours), "{}", shape.id);
        let mut names: Vec<&String> = ours.tensors.keys().collect();
        names.sort();
        let real_names: Vec<&String> = {
            let mut v: Vec<&String> = real
                .tensors
                .keys()
                .filter(|n| !n.starts_with("blk.") || n.starts_with("blk.0."))
                .collect();
            v.sort();
            v
        };
        assert_eq!(names, real_names, "{}: the same tensors", shape.id);
        for name in names {
            let (r, o) = (
                real.tensor_info(name).expect("real"),
                ours.tensor_info(name).expect("ours"),
            );
            let real_dims: Vec<usize> = r
                .dims
                .iter()
                .map(|&d| if d == a.vocab_size { SMALL_VOCAB } else { d })
                .collect();
            assert_eq!(
                (r.dtype, &real_dims),
                (o.dtype, &o.dims),
                "{}: {name}",
                shape.id
            );
        }
    }
}
