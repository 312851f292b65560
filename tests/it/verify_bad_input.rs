//! Malformed and hostile artifacts through `nsed verify`: a one-line error
//! and exit 2 for unusable input, exit 1 for a comparison that fails, never a
//! panic; a 100 MB artifact is streamed in bounded memory.

use crate::common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn fixture(name: &str) -> PathBuf {
    common::test_data().join("gonka").join(name)
}

fn verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsed"))
        .arg("verify")
        .args(args)
        .output()
        .expect("nsed runs")
}

fn against(exec: &Path, val: &Path) -> Output {
    verify(&[
        "--artifact",
        exec.to_str().expect("utf-8"),
        "--against",
        val.to_str().expect("utf-8"),
    ])
}

fn assert_input_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
    assert!(out.stdout.is_empty());
}

/// The honest executor fixture with `edit` applied to its JSON.
fn edited(dir: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let text = std::fs::read_to_string(fixture("inference_response.json")).expect("fixture");
    let mut doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    edit(&mut doc);
    let path = dir.join(name);
    std::fs::write(&path, doc.to_string()).expect("write");
    path
}

type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;

fn content(doc: &mut serde_json::Value) -> &mut Vec<serde_json::Value> {
    doc["choices"][0]["logprobs"]["content"]
        .as_array_mut()
        .expect("content")
}

#[test]
fn malformed_artifacts_are_input_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = fixture("validation_response.json");
    let text = std::fs::read_to_string(fixture("inference_response.json")).expect("fixture");

    let truncated = dir.path().join("truncated.json");
    std::fs::write(&truncated, &text[..text.len() / 3]).expect("write");
    assert_input_error(&against(&truncated, &good), "truncated");

    let nan = dir.path().join("nan.json");
    std::fs::write(&nan, text.replacen("-0.004675646312534809", "NaN", 1)).expect("write");
    assert_input_error(&against(&nan, &good), "NaN");

    let inf = dir.path().join("inf.json");
    std::fs::write(&inf, text.replacen("-0.004675646312534809", "-1e400", 1)).expect("write");
    assert_input_error(&against(&inf, &good), "number out of range");

    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "positive.json",
            Box::new(|d| content(d)[5]["top_logprobs"][0]["logprob"] = 0.5.into()),
            "is positive",
        ),
        (
            "k.json",
            Box::new(|d| {
                content(d)[7]["top_logprobs"]
                    .as_array_mut()
                    .expect("top")
                    .pop();
            }),
            "k must be the same",
        ),
        (
            "dup.json",
            Box::new(|d| {
                let first = content(d)[2]["top_logprobs"][0].clone();
                content(d)[2]["top_logprobs"][1] = first;
            }),
            "twice",
        ),
        (
            "empty.json",
            Box::new(|d| content(d).clear()),
            "output is empty",
        ),
        (
            "not-openai.json",
            Box::new(|d| d["object"] = "text_completion".into()),
            "neither an nsed artifact",
        ),
        (
            "no-logprobs.json",
            Box::new(|d| d["choices"][0]["logprobs"] = serde_json::Value::Null),
            "logprobs.content is missing",
        ),
    ];
    for (name, edit, needle) in cases {
        let p = edited(dir.path(), name, edit);
        assert_input_error(&against(&p, &good), needle);
    }
    let missing = dir.path().join("absent.json");
    assert_input_error(&against(&missing, &good), "cannot read artifact");
}

#[test]
fn different_lengths_fail_without_a_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = edited(dir.path(), "short.json", |d| content(d).truncate(40));
    let out = against(&fixture("inference_response.json"), &short);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("different length"), "{stdout}");
    // The other way round the executor is the shorter one: Gonka's pre-check
    // only looks one way and its similarity passes, but the stage-2 MAE
    // scores any length mismatch as 10 and fails.
    let out = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(["verify", "--json", "--artifact"])
        .arg(&short)
        .arg("--against")
        .arg(fixture("validation_response.json"))
        .output()
        .expect("nsed runs");
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let verdict = |name: &str| {
        doc["metrics"]
            .as_array()
            .and_then(|m| m.iter().find(|x| x["name"] == name))
            .map(|x| x["verdict"].clone())
    };
    assert_eq!(verdict("gonka_similarity"), Some("pass".into()));
    assert_eq!(verdict("stage2_mae"), Some("fail".into()));
}

/// A ~100 MB OpenAI artifact (62,000 positions of k = 20) is read from a
/// stream; peak memory stays a small multiple of what the positions need,
/// and an artifact past the position limit is refused while reading.
#[test]
fn hundred_megabyte_artifacts_stream_in_bounded_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.json");
    let write_big = |path: &Path, positions: usize| {
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create"));
        write!(
            f,
            r#"{{"object":"chat.completion","model":"m","choices":[{{"logprobs":{{"content":["#
        )
        .expect("write");
        for i in 0..positions {
            if i > 0 {
                write!(f, ",").expect("write");
            }
            write!(f, r#"{{"token":"tok{i}","logprob":-0.5,"top_logprobs":["#).expect("write");
            for j in 0..20 {
                let sep = if j > 0 { "," } else { "" };
                write!(
                    f,
                    r#"{sep}{{"token":"alternative-token-number-{j:02}-at-position-{i:06}-with-padding","logprob":-{}.25}}"#,
                    j + 1
                )
                .expect("write");
            }
            write!(f, "]}}").expect("write");
        }
        write!(f, "]}}}}]}}").expect("write");
    };
    write_big(&big, 62_000);
    let size = std::fs::metadata(&big).expect("size").len();
    assert!(size > 100_000_000, "{size} bytes");

    let (out, peak_kib) = run_measuring_peak(&[
        "verify",
        "--artifact",
        big.to_str().expect("utf-8"),
        "--against",
        fixture("validation_response.json").to_str().expect("utf-8"),
    ]);
    // 62,000 executor positions vs 100 validator ones: a different-length failure.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_mib = peak_kib / 1024;
    eprintln!("100 MB artifact: peak RSS {peak_mib} MiB");
    assert!(
        peak_mib < 1024,
        "peak RSS {peak_mib} MiB for a {size}-byte artifact"
    );

    let huge = dir.path().join("huge.json");
    write_big(&huge, 70_000);
    let out = verify(&[
        "--artifact",
        huge.to_str().expect("utf-8"),
        "--against",
        fixture("validation_response.json").to_str().expect("utf-8"),
    ]);
    assert_input_error(&out, "more than 65536 entries");
}

/// Run nsed and sample its peak RSS (VmHWM) until it exits.
fn run_measuring_peak(args: &[&str]) -> (Output, u64) {
    let child = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status_path = format!("/proc/{}/status", child.id());
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        std::thread::spawn(move || {
            while let Ok(s) = std::fs::read_to_string(&status_path) {
                if let Some(kib) = s
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    peak.fetch_max(kib, std::sync::atomic::Ordering::Relaxed);
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
    };
    let out = child.wait_with_output().expect("wait");
    let _ = sampler.join();
    (out, peak.load(std::sync::atomic::Ordering::Relaxed))
}

/// `nsed verify … | head -0`: the reader is gone before the report is
/// printed; the verdict (exit 1) must survive the closed pipe.
#[test]
fn a_closed_stdout_keeps_the_negative_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let short = edited(dir.path(), "short.json", |d| content(d).truncate(40));
    let out = common::output_with_stdout_closed(
        Command::new(env!("CARGO_BIN_EXE_nsed"))
            .args(["verify", "--artifact"])
            .arg(fixture("inference_response.json"))
            .arg("--against")
            .arg(&short),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Token bytes that disagree with the token string are refused in every
/// mode, `--against` included (it used to compare such positions).
#[test]
fn disagreeing_bytes_are_an_input_error_with_against() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = fixture("validation_response.json");
    let lying = edited(dir.path(), "lying.json", |d| {
        let pos = &mut content(d)[3];
        pos["bytes"] = serde_json::json!([112, 119, 110]);
    });
    assert_input_error(&against(&lying, &good), "does not round-trip");
}
