//! Bad input through the `nsed` binary: every case is a one-line error naming
//! the problem, exit code 2, no panic, nothing left behind. Uses tiny GGUF
//! models written by the test (seeded random weights), so it needs no download.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nsed::engine::model::Arch;
use nsed::testing::{write_tiny_model, SplitMix64, TinySpec};

fn nsed(args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nsed"));
    cmd.args(args).env("RAYON_NUM_THREADS", "1");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().expect("nsed runs")
}

/// Exit 2, a single `error:` line on stderr mentioning `needle`, no panic.
fn assert_input_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line expected: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(
        lines[0].to_lowercase().contains(&needle.to_lowercase()),
        "`{needle}` not in: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no partial output: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn tiny(dir: &Path, arch: Arch, tweak: impl FnOnce(&mut TinySpec)) -> PathBuf {
    let path = dir.join(format!("tiny-{}.gguf", arch.name()));
    let mut spec = TinySpec::new(arch);
    tweak(&mut spec);
    write_tiny_model(&path, &spec).expect("write tiny model");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn tiny_models_generate_for_every_architecture() {
    let dir = tempfile::tempdir().expect("tempdir");
    for arch in [
        Arch::Llama,
        Arch::Qwen2,
        Arch::Gemma3,
        Arch::Qwen3,
        Arch::Qwen3Moe,
    ] {
        let model = tiny(dir.path(), arch, |_| {});
        let out = nsed(
            &[
                "generate",
                "-m",
                s(&model),
                "-p",
                "the cat",
                "--raw",
                "-n",
                "5",
                "--json",
            ],
            &[],
        );
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(!doc["output_ids"].as_array().expect("ids").is_empty());
    }
}

#[test]
fn a_chat_template_that_fails_names_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chat = |template: &str| {
        let model = tiny(dir.path(), Arch::Qwen3, |s| {
            s.chat_template = Some(template.to_string())
        });
        nsed(&["generate", "-m", s(&model), "-p", "hi", "-n", "2"], &[])
    };
    let out = chat("{% for m in messages %}\n{{ m.content }}\n{% endfor %\n");
    assert_input_error(&out, "does not compile (line 3)");
    let out = chat("ok\n{{ raise_exception('Conversation roles must alternate') }}");
    assert_input_error(&out, "failed at line 2: Conversation roles must alternate");
    // The control: a template that renders generates.
    let out = chat("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn missing_model_file() {
    let out = nsed(
        &["generate", "-m", "/nonexistent/model.gguf", "-p", "hi"],
        &[],
    );
    assert_input_error(&out, "does not exist");
}

#[test]
fn unknown_model_id() {
    let out = nsed(&["generate", "-m", "llama-70b", "-p", "hi"], &[]);
    assert_input_error(&out, "unknown model `llama-70b`");
}

#[test]
fn registry_model_not_fetched() {
    let empty = tempfile::tempdir().expect("tempdir");
    let out = nsed(
        &["tokenize", "-m", "smollm2-135m", "--text", "hi"],
        &[("NSED_MODELS", empty.path())],
    );
    assert_input_error(&out, "scripts/fetch-models.sh smollm2-135m");
}

#[test]
fn unknown_registry_values_name_the_allowed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = include_str!("../../configs/models.toml");
    for (from, to, allowed) in [
        (
            "chat_template = \"chatml\"",
            "chat_template = \"chatm1\"",
            "expected one of `chatml`, `gemma`, `plain`",
        ),
        (
            "arch = \"llama\"",
            "arch = \"lama\"",
            "`llama`, `qwen2`, `gemma3`",
        ),
        ("quant = \"Q4_1\"", "quant = \"Q4_2\"", "`Q4_0`, `Q4_1`"),
    ] {
        let path = dir.path().join("models.toml");
        std::fs::write(&path, registry.replacen(from, to, 1)).expect("write registry");
        let out = nsed(&["models", "list"], &[("NSED_REGISTRY", &path)]);
        assert_input_error(&out, allowed);
        // Line 22 (or 16, 17) of the shipped file: the bad value is located.
        assert!(String::from_utf8_lossy(&out.stderr).contains(", line "));
    }
    // Negative control: the untouched registry lists the models.
    let path = dir.path().join("models.toml");
    std::fs::write(&path, registry).expect("write registry");
    let out = nsed(&["models", "list"], &[("NSED_REGISTRY", &path)]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn wrong_sha256_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny_path = tiny(dir.path(), Arch::Llama, |_| {});
    // A valid GGUF under the registry's file name, but not the registry's bytes.
    std::fs::rename(
        &tiny_path,
        dir.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .expect("rename");
    let out = nsed(
        &["generate", "-m", "smollm2-135m", "-p", "hi"],
        &[("NSED_MODELS", dir.path())],
    );
    assert_input_error(&out, "sha256");
}

#[test]
fn truncated_gguf_at_random_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = std::fs::read(tiny(dir.path(), Arch::Qwen2, |_| {})).expect("read");
    let mut rng = SplitMix64::new(2024);
    let cut_path = dir.path().join("cut.gguf");
    // Offsets in the header, the metadata, the tensor directory and the data.
    let mut offsets: Vec<usize> = vec![0, 3, 4, 8, 20, 24, 100];
    offsets.extend((0..25).map(|_| (rng.next_u64() % full.len() as u64) as usize));
    for cut in offsets {
        std::fs::write(&cut_path, &full[..cut]).expect("write cut");
        let out = nsed(
            &[
                "generate",
                "-m",
                s(&cut_path),
                "-p",
                "hi",
                "--raw",
                "-n",
                "2",
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "cut at {cut}: {stderr}");
        assert!(!stderr.contains("panicked"), "cut at {cut}: {stderr}");
        assert!(
            stderr.contains("truncated or corrupt") || stderr.contains("not a GGUF"),
            "cut at {cut}: {stderr}"
        );
    }
}

#[test]
fn corrupted_gguf_bytes_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let full = std::fs::read(tiny(dir.path(), Arch::Llama, |_| {})).expect("read");
    let mut rng = SplitMix64::new(99);
    let bad_path = dir.path().join("bad.gguf");
    // Flip bytes in the header region, where lengths and counts live.
    let header_len = 4096.min(full.len());
    for _ in 0..25 {
        let mut bytes = full.clone();
        for _ in 0..4 {
            let at = 4 + (rng.next_u64() % (header_len as u64 - 4)) as usize;
            bytes[at] = (rng.next_u64() & 0xff) as u8;
        }
        std::fs::write(&bad_path, &bytes).expect("write");
        let out = nsed(
            &[
                "generate",
                "-m",
                s(&bad_path),
                "-p",
                "hi",
                "--raw",
                "-n",
                "2",
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(matches!(out.status.code(), Some(0) | Some(2)), "{stderr}");
    }
}

#[test]
fn unsupported_architecture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("mamba.gguf");
    let mut f = std::fs::File::create(&path).expect("create");
    nsed::engine::gguf::write(
        &mut f,
        // No tokenizer either: the architecture is what gets reported.
        &[(
            "general.architecture",
            nsed::engine::gguf::Value::String("mamba".into()),
        )],
        &[],
    )
    .expect("write");
    drop(f);
    let out = nsed(&["generate", "-m", s(&path), "-p", "hi"], &[]);
    assert_input_error(&out, "unsupported architecture `mamba`");
}

#[test]
fn unsupported_pre_tokenizer_is_not_guessed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Qwen2, |s| s.pre = "deepseek-llm".into());
    let out = nsed(&["tokenize", "-m", s(&model), "--text", "hi"], &[]);
    assert_input_error(&out, "unsupported pre-tokenizer `deepseek-llm`");
}

#[test]
fn prompt_longer_than_the_context() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |s| s.context_length = 32);
    let long = "x ".repeat(100);
    let out = nsed(&["generate", "-m", s(&model), "-p", &long, "--raw"], &[]);
    assert_input_error(&out, "context holds 32");
}

#[test]
fn output_file_is_complete_or_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |s| s.context_length = 32);
    let out_path = dir.path().join("gen.json");
    // A failing run (prompt over the context) leaves no file at all.
    let long = "x ".repeat(100);
    let out = nsed(
        &[
            "generate",
            "-m",
            s(&model),
            "-p",
            &long,
            "--raw",
            "-o",
            s(&out_path),
        ],
        &[],
    );
    assert_input_error(&out, "context holds 32");
    assert!(!out_path.exists(), "no partial output file");
    // A successful run writes the whole JSON document, and no temp file remains.
    let out = nsed(
        &[
            "generate",
            "-m",
            s(&model),
            "-p",
            "the",
            "--raw",
            "-n",
            "3",
            "-o",
            s(&out_path),
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out_path).expect("written")).expect("complete JSON");
    assert_eq!(
        doc["tokens"].as_array().map(Vec::len),
        doc["output_ids"].as_array().map(Vec::len)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn invalid_utf8_prompt_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |_| {});
    let prompt = dir.path().join("prompt.txt");
    std::fs::write(&prompt, b"caf\xe9 latin-1").expect("write");
    let out = nsed(
        &["generate", "-m", s(&model), "--prompt-file", s(&prompt)],
        &[],
    );
    assert_input_error(&out, "not valid UTF-8");
}

#[test]
fn bad_sampling_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |_| {});
    // Out-of-range filters are refused by the range checks (see
    // `out_of_range_numbers_are_refused_before_any_work`); a valid one runs.
    let out = nsed(
        &[
            "generate",
            "-m",
            s(&model),
            "-p",
            "hi",
            "--top-p",
            "0.9",
            "--min-p",
            "0.05",
            "-n",
            "2",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = nsed(&["generate", "-m", s(&model)], &[]);
    assert_eq!(out.status.code(), Some(2), "clap usage error");
}

/// `hf://OWNER/REPO/FILE.gguf`: a file in the hf-hub cache is used offline;
/// a malformed spec, or a file neither cached nor reachable, is a clear error.
#[test]
fn hub_models_come_from_the_hf_cache_and_fail_clearly() {
    let home = tempfile::tempdir().expect("tempdir");
    let repo = home.path().join("hub/models--tiny-org--tiny-repo");
    let snapshot = repo.join("snapshots/0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "0123abcd").unwrap();
    let model = tiny(&snapshot, Arch::Llama, |_| {});
    std::fs::rename(&model, snapshot.join("tiny.gguf")).unwrap();
    // An endpoint that refuses connections: nothing may be downloaded.
    let offline: &[(&str, &Path)] = &[
        ("HF_HOME", home.path()),
        ("HF_ENDPOINT", Path::new("http://127.0.0.1:9")),
    ];

    let out = nsed(
        &["models", "inspect", "hf://tiny-org/tiny-repo/tiny.gguf"],
        offline,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("llama"), "{stdout}");
    assert!(stdout.contains("snapshots/0123abcd/tiny.gguf"), "{stdout}");

    let out = nsed(&["models", "inspect", "hf://tiny-org/tiny.gguf"], offline);
    assert_input_error(&out, "is not OWNER/REPO[@REVISION]/FILE.gguf");
    let out = nsed(
        &["models", "inspect", "hf://tiny-org/tiny-repo/absent.gguf"],
        offline,
    );
    assert_input_error(&out, "cannot get `hf://tiny-org/tiny-repo/absent.gguf`");
}

/// Generate from "the" with `model` into the artifact `path` (plus `extra`
/// arguments); the artifact as JSON.
fn generate_artifact(model: &Path, path: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["generate", "-m", s(model), "-p", "the", "--raw"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--artifact", s(path)]);
    let out = nsed(&args, &[]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(path).expect("artifact")).expect("json")
}

/// A malformed activation proof is an input error (exit 2) in every mode,
/// not a failed check (exit 1), and not ignored by `--against`.
#[test]
fn malformed_proofs_are_input_errors_in_every_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |_| {});
    let artifact = dir.path().join("a.json");
    let honest = generate_artifact(
        &model,
        &artifact,
        &["-n", "6", "-t", "0.8", "--top-logprobs", "3", "--proof"],
    );
    assert_eq!(honest["proof"]["chunks"].as_array().map(Vec::len), Some(1));
    let write = |name: &str, edit: &dyn Fn(&mut serde_json::Value)| {
        let mut doc = honest.clone();
        edit(&mut doc);
        let path = dir.path().join(name);
        std::fs::write(&path, doc.to_string()).expect("write");
        path
    };
    type Edit<'a> = &'a dyn Fn(&mut serde_json::Value);
    let cases: [(&str, Edit, &str); 3] = [
        (
            "not_hex.json",
            &|d| d["proof"]["chunks"][0] = "zz".into(),
            "not hex",
        ),
        (
            "short.json",
            &|d| d["proof"]["chunks"] = serde_json::json!([]),
            "chunks",
        ),
        (
            "scheme.json",
            &|d| d["proof"]["scheme"] = "other".into(),
            "unsupported proof scheme",
        ),
    ];
    for (name, edit, needle) in cases {
        let bad = write(name, edit);
        let with_model = nsed(&["verify", "--artifact", s(&bad), "-m", s(&model)], &[]);
        assert_input_error(&with_model, needle);
        let against = nsed(
            &["verify", "--artifact", s(&bad), "--against", s(&artifact)],
            &[],
        );
        assert_input_error(&against, needle);
    }
}

/// `verify --replay` decodes at most one token past the artifact's own
/// length, whatever `request.max_tokens` says.
#[test]
fn replay_is_bounded_by_the_artifacts_length() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |s| s.context_length = 512);
    let artifact = dir.path().join("a.json");
    let mut doc = generate_artifact(&model, &artifact, &["-n", "2", "--top-logprobs", "2"]);
    doc["request"]["max_tokens"] = 400.into();
    std::fs::write(&artifact, doc.to_string()).expect("write");
    let out = nsed(
        &[
            "verify",
            "--json",
            "--replay",
            "--artifact",
            s(&artifact),
            "-m",
            s(&model),
        ],
        &[],
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json report");
    let replayed = report["replay"]["replay_tokens"]
        .as_u64()
        .expect("replay tokens");
    assert!(
        replayed <= 3,
        "replayed {replayed} tokens for a 2-position artifact"
    );
}

/// Numbers past a sane range are refused by the parser (exit 2, the flag
/// named), before any model is loaded or memory allocated: no panic, no
/// wrap-around to "no limit", no endless loop.
#[test]
fn out_of_range_numbers_are_refused_before_any_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = tiny(dir.path(), Arch::Llama, |_| {});
    let program = dir.path().join("p.py");
    std::fs::write(&program, "print(1)\n").expect("program");
    let m = s(&model);
    let p = s(&program);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["perf", "-m", m, "--prompt-tokens", "4611686018427387904"],
            "--prompt-tokens",
        ),
        (
            vec!["perf", "-m", m, "--gen-tokens", "18446744073709551615"],
            "--gen-tokens",
        ),
        (vec!["perf", "-m", m, "--verify-cost", "0"], "--verify-cost"),
        (vec!["perf", "-m", m, "--batch", "1,0"], "--batch"),
        (
            vec!["--threads", "20000", "tokenize", "-m", m, "--text", "hi"],
            "--threads",
        ),
        (
            vec!["perplexity", "-m", m, "-f", p, "--chunks", "0"],
            "--chunks",
        ),
        (
            vec!["generate", "-m", m, "-p", "hi", "-t", "inf"],
            "--temperature",
        ),
        (
            vec!["generate", "-m", m, "-p", "hi", "-t", "NaN"],
            "--temperature",
        ),
        (
            vec!["generate", "-m", m, "-p", "hi", "--top-p", "1.5"],
            "--top-p",
        ),
        (
            vec!["generate", "-m", m, "-p", "hi", "--top-p", "0"],
            "--top-p",
        ),
        (
            vec!["generate", "-m", m, "-p", "hi", "--min-p", "1"],
            "--min-p",
        ),
        (
            vec!["generate", "-m", m, "-p", "hi", "--repeat-penalty", "0"],
            "--repeat-penalty",
        ),
        (
            vec!["simulate-fraud", "--economics", "--network-fpr", "NaN"],
            "--network-fpr",
        ),
        (
            vec!["simulate-fraud", "--economics", "--validators", "0"],
            "--validators",
        ),
        (
            vec!["sandbox", "run", "--memory-mib", "18446744073709551615", p],
            "--memory-mib",
        ),
        (
            vec!["sandbox", "run", "--output-kib", "18446744073709551615", p],
            "--output-kib",
        ),
        (vec!["sandbox", "run", "--timeout", "inf", p], "--timeout"),
        (vec!["report", "tables", "--only", "perf,tabels"], "--only"),
        (
            vec![
                "report",
                "stamp",
                "--table",
                "perf",
                "--scale",
                "huge",
                "--command",
                "x",
            ],
            "--scale",
        ),
        (
            vec![
                "report",
                "stamp",
                "--table",
                "nope",
                "--scale",
                "ci",
                "--command",
                "x",
            ],
            "--table",
        ),
    ];
    for (args, flag) in cases {
        let start = std::time::Instant::now();
        let out = nsed(&args, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            start.elapsed().as_secs() < 10,
            "{args:?} took {:?}",
            start.elapsed()
        );
    }
}
