//! The verdict policy across compute paths, with real models: honest
//! artifacts of the candle path (quantized and f32) pass on the host path
//! under the committed calibrations, a substituted model's still fails, the
//! int4 executor's candle artifacts fail on both paths, the
//! candle path replays itself with no seed mismatch, a host artifact stays
//! strict about one swapped token, and a pair without a calibration gets no
//! verdict (exit 2) unless a thresholds file is given.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The roster models with committed calibrations for both candle pairs.
// (qwen2.5-coder-0.5b has them too; candle's CPU kernels run its Q5_0
// tensors unvectorized, several times slower than these two.)
const CALIBRATED: [&str; 2] = ["smollm2-135m", "gemma3-270m"];

fn nsed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        // The user's own calibrations stay out of the tests.
        .env("NSED_THRESHOLDS_DIR", "/nonexistent/nsed-thresholds")
        .output()
        .expect("nsed runs")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A sampled artifact of `model` made on `device` (48 tokens, top-5).
fn make(dir: &Path, device: &str, model: &str) -> PathBuf {
    let path = dir.join(format!("{model}.{}.json", device.replace('/', "_")));
    let out = nsed(&[
        "--device",
        device,
        "generate",
        "-m",
        model,
        "-p",
        "Write a short story about a lighthouse keeper who finds a message in a bottle.",
        "-t",
        "0.8",
        "--seed",
        "3",
        "--inference-id",
        "policy",
        "-n",
        "48",
        "--top-logprobs",
        "5",
        "--artifact",
        s(&path),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// `nsed [--device D] verify --artifact A [extra] --json`: exit, report, stderr.
fn verify(
    device: Option<&str>,
    artifact: &Path,
    extra: &[&str],
) -> (Option<i32>, serde_json::Value, String) {
    let mut args = Vec::new();
    if let Some(d) = device {
        args.extend(["--device", d]);
    }
    args.extend(["verify", "--artifact", s(artifact), "--json"]);
    args.extend_from_slice(extra);
    let out = nsed(&args);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.code(),
        report,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metric(report: &serde_json::Value, name: &str) -> f64 {
    metric_field(report, name, "value")
}

/// One field (`value`, `threshold`) of a metric of a verify report.
fn metric_field(report: &serde_json::Value, name: &str, field: &str) -> f64 {
    report["metrics"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .and_then(|m| m[field].as_f64())
        .unwrap_or_else(|| panic!("no {name} {field} in {report:#}"))
}

#[test]
fn honest_candle_artifacts_pass_on_the_host_path_under_their_calibration() {
    let dir = tempfile::tempdir().expect("tempdir");
    for model in CALIBRATED {
        for device in ["cpu-candle", "cpu-candle/f32"] {
            let artifact = make(dir.path(), device, model);
            let (code, report, err) = verify(Some("cpu"), &artifact, &[]);
            let what = format!("{model} made on {device}");
            assert_eq!(code, Some(0), "{what}: {report:#}\n{err}");
            let policy = &report["policy"];
            assert_eq!(policy["bit_exact"], false, "{what}: {policy}");
            let file = format!(
                "configs/thresholds/{model}/{}__cpu.json",
                device.replace('/', "-")
            );
            assert!(
                policy["calibration"]
                    .as_str()
                    .is_some_and(|c| c.starts_with(&file)),
                "{what}: {policy}"
            );
            // The calibrated bounds, not the defaults, were applied.
            let mae = report["metrics"]
                .as_array()
                .and_then(|ms| ms.iter().find(|m| m["name"] == "stage2_mae"))
                .expect("stage2_mae");
            assert_ne!(mae["threshold"], 0.25, "{what}: {mae}");
        }
    }
}

#[test]
fn a_substituted_model_fails_under_the_calibration() {
    // The executor ran the 1.5B on the candle path and claims the 0.5B
    // (same tokenizer); the validator replays the 0.5B on the host path.
    let dir = tempfile::tempdir().expect("tempdir");
    let forged = make(dir.path(), "cpu-candle", "qwen2.5-coder-1.5b");
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&forged).expect("artifact")).expect("json");
    doc["model"]["id"] = "qwen2.5-coder-0.5b".into();
    doc["model"]["sha256"] = "".into();
    std::fs::write(&forged, doc.to_string()).expect("rewrite");
    let (code, report, err) = verify(Some("cpu"), &forged, &[]);
    assert_eq!(code, Some(1), "{report:#}\n{err}");
    assert_eq!(report["verdict"], "fail", "{report:#}");
    assert!(report["policy"]["calibration"].is_string(), "{report:#}");
}

#[test]
fn an_int4_executors_candle_artifacts_fail_where_honest_ones_pass() {
    // `simulate-fraud` runs an honest executor (the file's weights) and an
    // int4 one (re-quantized to Q4_0, claiming the file) on the candle path
    // and keeps both artifacts as made.
    let dir = tempfile::tempdir().expect("tempdir");
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(
        &prompts,
        r#"{"id": "story", "prompt": "Write a short story about a lighthouse keeper who finds a message in a bottle."}"#,
    )
    .expect("prompts");
    let kept = dir.path().join("artifacts");
    let model = "smollm2-135m";
    let out = nsed(&[
        "simulate-fraud",
        "--model",
        model,
        "--quant",
        "int4",
        "--honest",
        "file",
        "--validator",
        "file",
        "--samples-honest",
        "1",
        "--samples-fraud",
        "1",
        "--max-tokens",
        "32",
        "--temp-honest",
        "0.8",
        "--temp-fraud",
        "0.8",
        "--seed",
        "7",
        "--prompts",
        s(&prompts),
        "--executor-device",
        "cpu-candle",
        "--validator-device",
        "cpu",
        "--keep-artifacts",
        s(&kept),
        "--out",
        s(&dir.path().join("run")),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (who, want) in [("honest-0", 0), ("int4-0", 1)] {
        let artifact = kept.join(format!("{who}.json"));
        // On the host path, by the pair's calibration.
        let (code, report, err) = verify(Some("cpu"), &artifact, &[]);
        assert_eq!(code, Some(want), "{who} on the host: {report:#}\n{err}");
        assert!(report["policy"]["calibration"].is_string(), "{report:#}");
        // On its own path (no --device), strictly.
        let (code, report, err) = verify(None, &artifact, &[]);
        assert_eq!(code, Some(want), "{who} on its path: {report:#}\n{err}");
        assert_eq!(report["policy"]["bit_exact"], true, "{report:#}");
    }
    // The int4 artifact claims the file it did not run.
    let (_, report, _) = verify(Some("cpu"), &kept.join("int4-0.json"), &[]);
    assert!(
        metric(&report, "gonka_distance2")
            > 2.0 * metric_field(&report, "gonka_distance2", "threshold"),
        "{report:#}"
    );
}

#[test]
fn the_candle_path_replays_itself_bit_for_bit_and_stays_strict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifact = make(dir.path(), "cpu-candle", "smollm2-135m");
    // No --device: the artifact's own path (this machine's class).
    let (code, report, err) = verify(None, &artifact, &[]);
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    assert_eq!(report["policy"]["bit_exact"], true, "{report:#}");
    assert_eq!(report["seed"]["mismatches"], 0, "{report:#}");
    assert_eq!(metric(&report, "stage2_mae"), 0.0, "{report:#}");
    // Negative control: one token swapped for its runner-up fails there.
    swap_one_token(&artifact);
    let (code, report, _) = verify(None, &artifact, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    assert_eq!(report["seed"]["verdict"], "fraud", "{report:#}");
}

#[test]
fn a_host_artifact_stays_strict_about_one_swapped_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let artifact = make(dir.path(), "cpu", "smollm2-135m");
    let (code, report, _) = verify(None, &artifact, &[]);
    assert_eq!(code, Some(0), "{report:#}");
    assert_eq!(report["policy"]["bit_exact"], true, "{report:#}");
    assert!(
        report["policy"]["decided_by"]
            .as_str()
            .is_some_and(|d| d.starts_with("bit-exact pair")),
        "{report:#}"
    );
    swap_one_token(&artifact);
    let (code, report, _) = verify(None, &artifact, &[]);
    assert_eq!(code, Some(1), "{report:#}");
    // The swapped token itself differs first (the ones after it follow
    // another context than the executor's).
    let positions = report["positions"].as_u64().expect("positions");
    assert_eq!(
        report["seed"]["first_mismatch"],
        positions / 2,
        "{report:#}"
    );
    assert_eq!(report["seed"]["verdict"], "fraud", "{report:#}");
}

/// Replace the middle position's token by its runner-up, keeping the
/// artifact well formed.
fn swap_one_token(path: &Path) {
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("artifact")).expect("json");
    let positions = doc["positions"].as_array_mut().expect("positions");
    let mid = positions.len() / 2;
    let p = &mut positions[mid];
    let chosen = p["id"].clone();
    let other = p["top_logprobs"]
        .as_array()
        .and_then(|alts| alts.iter().find(|a| a["id"] != chosen))
        .cloned()
        .expect("a runner-up");
    p["id"] = other["id"].clone();
    p["token"] = other["token"].clone();
    p["logprob"] = other["logprob"].clone();
    // The output digest would name the old ids: a forger drops it.
    doc.as_object_mut().expect("object").remove("output");
    std::fs::write(path, doc.to_string()).expect("rewrite");
}

#[test]
fn a_pair_without_calibration_gets_no_verdict_unless_thresholds_are_given() {
    // Replayed on candle's f32 path: a pair nobody calibrates (the
    // quantized artifact's own path is bit-exact, the host's calibrated).
    const REPLAY: &str = "cpu-candle/f32";
    let dir = tempfile::tempdir().expect("tempdir");
    let artifact = make(dir.path(), "cpu-candle", "gemma3-270m");
    let (code, report, err) = verify(Some(REPLAY), &artifact, &[]);
    assert_eq!(code, Some(2), "{report:#}");
    assert_eq!(
        report,
        serde_json::Value::Null,
        "no report without a verdict"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("made on cpu-candle")
            && err.contains(
                "nsed calibrate --model gemma3-270m --made-on cpu-candle --replayed-on cpu-candle/f32"
            ),
        "{err}"
    );
    // The published defaults, chosen explicitly: a verdict, and the report
    // says what judged it.
    let defaults = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/thresholds/defaults.json"
    );
    let (code, report, err) = verify(Some(REPLAY), &artifact, &["--thresholds", defaults]);
    assert_eq!(code, Some(0), "{report:#}\n{err}");
    assert_eq!(report["policy"]["calibration"], defaults, "{report:#}");
    assert_eq!(report["seed"]["tolerance"], 1.0, "{report:#}");
    // Another model's calibration is refused, naming what it was fit for.
    let other = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/configs/thresholds/smollm2-135m/cpu-candle__cpu.json"
    );
    let (code, _, err) = verify(Some(REPLAY), &artifact, &["--thresholds", other]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("was fit for model smollm2-135m"), "{err}");
}

#[test]
fn calibrate_fits_bounds_at_the_honest_extremes_and_resumes_only_on_its_prompts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("smollm2.json");
    let calibrate = |prompts: &str| {
        nsed(&[
            "calibrate",
            "-m",
            "smollm2-135m",
            // The f32 path: candle's quantized CPU kernels prefill this
            // model at under 20 tokens/s, its f32 path several times faster.
            "--made-on",
            "cpu-candle/f32",
            "--samples",
            "20",
            "-n",
            "3",
            "--prompts",
            prompts,
            "-o",
            s(&file),
        ])
    };
    let out = calibrate("multilingual");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let fitted: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("thresholds")).expect("json");
    assert_eq!(fitted["schema"], "nsed.thresholds/v1", "{fitted:#}");
    assert_eq!(fitted["model"]["id"], "smollm2-135m", "{fitted:#}");
    assert_eq!(fitted["made_on"], "cpu-candle/f32", "{fitted:#}");
    assert_eq!(fitted["replayed_on"], "cpu", "{fitted:#}");
    // With 20 samples at 1% the bound of each check is its most extreme
    // honest value (k = 1), read back from the samples file.
    let samples: Vec<serde_json::Value> =
        std::fs::read_to_string(dir.path().join("smollm2.samples.jsonl"))
            .expect("samples")
            .lines()
            .map(|l| serde_json::from_str(l).expect("sample"))
            .collect();
    assert_eq!(samples.len(), 20);
    let extreme = |name: &str, max: bool| {
        let vals = samples
            .iter()
            .map(|r| r["values"][name].as_f64().expect("value"));
        if max {
            vals.fold(f64::MIN, f64::max)
        } else {
            vals.fold(f64::MAX, f64::min)
        }
    };
    let bound = |name: &str| fitted["thresholds"][name].as_f64().expect("bound");
    assert_eq!(bound("gonka_distance2"), extreme("gonka_distance2", true));
    assert_eq!(bound("stage2_mae"), extreme("stage2_mae", true));
    // Similarity must be strictly above its bound: just under the least.
    let least = extreme("gonka_similarity", false);
    let below = least - bound("gonka_similarity");
    assert!(below > 0.0 && below < 1e-8, "{least} vs {fitted:#}");
    // A resume on other prompts is refused before it mixes them in.
    let out = calibrate("gsm8k");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("was made on prompt multilingual/"), "{err}");
    // On its own prompts it has nothing left to do and fits the same bounds.
    let before = std::fs::read_to_string(&file).expect("thresholds");
    let out = calibrate("multilingual");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("thresholds")).expect("json");
    let first: serde_json::Value = serde_json::from_str(&before).expect("json");
    assert_eq!(again["thresholds"], first["thresholds"]);
}
