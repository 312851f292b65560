//! `nsed simulate-fraud` end to end on smollm2-135m: honest Q8_0 and int4
//! executors against the f32 reference validator, a resumed run, the
//! report files, the economics, and clear errors on bad input.

use crate::common;

use std::path::Path;
use std::process::{Command, Output};

use nsed::fraud::samples::{self, Sample};
use nsed::fraud::Role;

fn nsed(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env_remove("NSED_DATA_DIR")
        .output()
        .expect("nsed runs")
}

fn run(out: &Path, data: &str, n: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "simulate-fraud",
        "--model",
        "smollm2-135m",
        "--quant",
        "int4",
        "--samples-honest",
        n,
        "--samples-fraud",
        n,
        "--max-tokens",
        "40",
        "--data-dir",
        data,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    nsed(&args)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn int4_fraud_run_resumes_reports_and_separates() {
    let data = common::datasets_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smollm");

    let first = run(&out, data, "3", &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    // The same directory again without --resume is refused (exit 2).
    let again = run(&out, data, "3", &[]);
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("--resume"));
    let resumed = run(&out, data, "6", &["--resume"]);
    assert!(resumed.status.success(), "{}", stderr(&resumed));
    // The default run batches each executor's samples (--parallel 8); one
    // at a time, the same samples come out, bit for bit but for timings.
    let alone = tmp.path().join("alone");
    let one = run(&alone, data, "2", &["--parallel", "1"]);
    assert!(one.status.success(), "{}", stderr(&one));
    let untimed = |dir: &Path| -> Vec<serde_json::Value> {
        let mut rows: Vec<serde_json::Value> = samples::read(dir)
            .expect("samples")
            .iter()
            .map(|s| {
                let mut v = serde_json::to_value(s).expect("json");
                let o = v.as_object_mut().expect("object");
                o.remove("executor_seconds");
                o.remove("validator_seconds");
                v
            })
            .collect();
        rows.sort_by_key(|v| v["key"].to_string());
        rows
    };
    let batched: Vec<serde_json::Value> = untimed(&out)
        .into_iter()
        .filter(|v| v["index"].as_u64().is_some_and(|i| i < 2))
        .collect();
    assert_eq!(batched.len(), 4);
    assert_eq!(batched, untimed(&alone), "batched vs one at a time");

    let all: Vec<Sample> = samples::read(&out).expect("samples");
    let mut keys: Vec<&str> = all.iter().map(|s| s.key.as_str()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 12, "6 honest + 6 int4, no duplicates: {keys:?}");
    for s in &all {
        assert!(s.error.is_none(), "{s:?}");
        assert_eq!(s.tokens, s.positions.gonka_d.len());
        assert!(s.tokens > 0 && s.tokens <= 40);
        assert!(s.metrics.contains_key("gonka_similarity.distance"));
        let t = if s.role == Role::Honest { 0.99 } else { 0.7 };
        assert_eq!(s.temperature, t);
    }
    // Same prompts on both sides: sample i of each setting shares its prompt.
    for i in 0..6 {
        let p: Vec<&str> = all
            .iter()
            .filter(|s| s.index == i)
            .map(|s| s.prompt.as_str())
            .collect();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], p[1]);
    }
    // Int4 weights move the logprobs far more than Q8_0 vs f32 does.
    let d = |role: Role| -> Vec<f64> {
        all.iter()
            .filter(|s| s.role == role)
            .map(|s| s.metrics["gonka_similarity.distance"])
            .collect()
    };
    let (h, f) = (d(Role::Honest), d(Role::Fraud));
    let auc = nsed::stats::auc(&h, &f).unwrap();
    assert!(auc >= 0.9, "AUC {auc}: honest {h:?} fraud {f:?}");

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("| smollm2-135m | int4 |"), "{report}");
    assert!(report.contains("6 honest vs 6 fraud samples"), "{report}");
    // The header names both invocations of the resumed run.
    assert!(report.contains("· 2 invocations from "), "{report}");
    let csv = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics.csv");
    // Every verify metric, the seed check and the token-rank test.
    assert_eq!(csv.lines().count(), 1 + 10, "header + 10 metrics:\n{csv}");
    assert!(csv.contains("\nint4,rank_uniformity_p,6,6,"), "{csv}");
    for f in ["lengths.csv", "perplexity.csv", "variants.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    assert!(out.join("roc-int4.svg").exists() && out.join("roc-int4.png").exists());

    let econ = nsed(&[
        "simulate-fraud",
        "--economics",
        "--out",
        out.to_str().unwrap(),
        "--runs",
        "20",
        "--epochs",
        "8",
        "--traffic",
        "500",
    ]);
    // The economics take held-out rates: six prompts are too few, and the
    // error says how to fix it (the CI-scale run of tests/it/reproduce.rs
    // checks the tables at 30 + 30).
    assert_eq!(econ.status.code(), Some(2), "{}", stderr(&econ));
    assert!(
        stderr(&econ).contains("too few samples for held-out"),
        "{}",
        stderr(&econ)
    );
    assert!(!out.join("economics.md").exists());
}

#[test]
fn a_users_prompt_file_alone_drives_the_samples() {
    let data = common::datasets_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mine.jsonl");
    std::fs::write(
        &file,
        "{\"prompt\": \"Write one sentence about the sea.\", \"id\": \"sea\", \"lang\": \"en\"}\n\
         {\"prompt\": \"Nenne drei Farben.\", \"lang\": \"de\"}\n",
    )
    .unwrap();
    let out = tmp.path().join("mine");
    let o = run(&out, data, "2", &["--prompts", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = samples::read(&out).expect("samples");
    assert_eq!(all.len(), 4, "2 honest + 2 int4");
    for s in &all {
        let (prompt, lang) = match s.index {
            0 => ("file:mine/sea", "en"),
            _ => ("file:mine/2", "de"),
        };
        assert_eq!(
            (s.prompt.as_str(), s.lang.as_str()),
            (prompt, lang),
            "{s:?}"
        );
        assert!(s.error.is_none() && s.tokens > 0, "{s:?}");
    }
    // The run records the file with its digest; an edited file is another
    // setting, so resuming with it is refused.
    let meta = std::fs::read_to_string(out.join("meta.json")).expect("meta.json");
    assert!(meta.contains("mine.jsonl (sha256 "), "{meta}");
    std::fs::write(
        &file,
        "{\"prompt\": \"Something else.\"}\n{\"prompt\": \"And another.\"}\n",
    )
    .unwrap();
    let again = run(
        &out,
        data,
        "2",
        &["--prompts", file.to_str().unwrap(), "--resume"],
    );
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("different settings"),
        "{}",
        stderr(&again)
    );
    // More samples than the file has distinct prompts: refused, not cycled
    // (a repeated prompt would sit in training and test folds at once).
    std::fs::write(
        &file,
        "{\"prompt\": \"Only one.\"}\n{\"prompt\": \"Only one.\"}\n",
    )
    .unwrap();
    let short = run(
        &tmp.path().join("short"),
        data,
        "2",
        &["--prompts", file.to_str().unwrap()],
    );
    assert_eq!(short.status.code(), Some(2), "{}", stderr(&short));
    assert!(
        stderr(&short).contains("1 distinct prompts, fewer than the 2 samples"),
        "{}",
        stderr(&short)
    );
}

#[test]
fn bad_input_is_a_clear_error() {
    let data = common::datasets_dir();
    let data = data.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let cases: [(&[&str], &str); 4] = [
        (&["--substitute", "gemma3-270m"], "tokenize differently"),
        (&["--prompts", "poetry"], "unknown prompt source"),
        (
            &["--prompts", "gsm8k,no/such.jsonl"],
            "cannot read the prompt file",
        ),
        (&["--report"], "not a simulate-fraud run directory"),
    ];
    for (extra, needle) in cases {
        let o = run(&out, data, "1", extra);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{extra:?}: {}", stderr(&o));
    }
    let o = nsed(&[
        "simulate-fraud",
        "--model",
        "no-such-model",
        "--data-dir",
        data,
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-model"), "{}", stderr(&o));
}
