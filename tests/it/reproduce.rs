//! `scripts/reproduce.sh --scale smoke` end to end: every table is produced
//! from runs (datasets, sandbox, nats-server) at the smallest size that runs
//! each stage, on synthetic models (`nsed models synth`: each roster model's
//! architecture, widths and formats with random weights, two layers and a
//! 1024-token vocabulary, through a registry that names them,
//! `NSED_REGISTRY`), is well-formed, carries its
//! stamp and arithmetic that holds at any size (n, Wilson intervals, compute
//! ordering, bit-identical determinism); then `nsed report tables` rebuilds
//! the same pages from the data alone and refreshes the index. What the
//! models say does not matter here; the real models' figures are checked
//! where they are: the committed pages (`tests/it/committed_pages.rs`), the
//! committed fraud run's floors (`tests/it/fraud_evidence.rs`), and one
//! real-model run per command group (`bench_e2e`, `code_bench_e2e`,
//! `fraud_e2e`, `federation`, `kernel_paths`). `scripts/reproduce.sh --scale
//! ci` remains the by-hand, real-model run.

use crate::common;

use crate::common::{num, read_csv};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const TABLES: [&str; 6] = [
    "deliberation",
    "code",
    "fraud",
    "determinism",
    "perf",
    "federation",
];

fn nsed() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nsed"));
    c.env("NSED_DATA_DIR", common::datasets_dir());
    c
}

/// Every markdown table has as many cells per row as its header, and a
/// separator line under the header.
fn assert_tables_well_formed(md: &str, page: &str) {
    let cells = |l: &str| l.trim().trim_matches('|').split('|').count();
    let lines: Vec<&str> = md.lines().collect();
    let mut i = 0;
    let mut tables = 0;
    while i < lines.len() {
        if !lines[i].starts_with('|') {
            i += 1;
            continue;
        }
        tables += 1;
        let width = cells(lines[i]);
        let sep = lines.get(i + 1).copied().unwrap_or("");
        assert!(
            sep.starts_with("|---") && cells(sep) == width,
            "{page}: table header without separator: {}",
            lines[i]
        );
        i += 2;
        while i < lines.len() && lines[i].starts_with('|') {
            assert_eq!(cells(lines[i]), width, "{page}: ragged row {}", lines[i]);
            i += 1;
        }
    }
    assert!(tables > 0, "{page} has no table");
}

/// Wilson 95% interval, computed here independently of nsed.
fn wilson(k: f64, n: f64) -> (f64, f64) {
    let z = 1.959_963_984_540_054_f64;
    let p = k / n;
    let d = 1.0 + z * z / n;
    let c = (p + z * z / (2.0 * n)) / d;
    let h = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / d;
    ((c - h).max(0.0), (c + h).min(1.0))
}

fn check_stamp(dir: &Path, table: &str, models: &[&str], data: &[&str]) {
    let path = dir.join("stamps").join(format!("{table}.json"));
    let text = std::fs::read_to_string(&path).expect("stamp written");
    let stamp: serde_json::Value = serde_json::from_str(&text).expect("stamp is JSON");
    assert_eq!(stamp["scale"], "smoke");
    assert_eq!(stamp["table"], table);
    assert!(stamp["command"]
        .as_str()
        .unwrap()
        .starts_with("scripts/reproduce.sh --scale smoke"));
    let commit = stamp["commit"].as_str().unwrap();
    assert!(commit.len() >= 40 && commit[..40].chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!stamp["cpu"].as_str().unwrap().is_empty());
    let is_sha = |v: &serde_json::Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()))
    };
    let names = |key: &str| -> Vec<String> {
        stamp[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|pair| {
                assert!(is_sha(&pair[1]), "{table}: {key} without sha256: {pair}");
                pair[0].as_str().unwrap().to_string()
            })
            .collect()
    };
    assert_eq!(names("models"), models, "{table} stamp models");
    assert_eq!(names("data"), data, "{table} stamp data");
}

fn check_deliberation(dir: &Path) {
    let rows = read_csv(&dir.join("deliberation.csv"));
    let methods: Vec<&str> = rows.iter().map(|r| r["method"].as_str()).collect();
    for m in [
        "nsed",
        "plurality",
        "single:smollm2-135m",
        "single:gemma3-270m",
        "single:qwen2.5-coder-0.5b",
    ] {
        assert!(
            methods.contains(&m),
            "deliberation.csv lacks {m}: {methods:?}"
        );
    }
    for r in rows.iter().filter(|r| r["dataset"] == "gsm8k") {
        check_accuracy_row(r, 2.0);
    }
    let tokens = |m: &str| {
        let r = rows.iter().find(|r| r["method"] == m).unwrap();
        num(r, "prompt_tokens_per_item") + num(r, "generated_tokens_per_item")
    };
    // NSED's compute includes the round-1 proposals plurality votes over.
    assert!(tokens("nsed") > tokens("plurality"));
    assert!(tokens("plurality") > tokens("single:smollm2-135m"));
    let md = std::fs::read_to_string(dir.join("deliberation.md")).unwrap();
    assert!(md.contains("| consumer | **NSED** | "));
    assert!(md.contains("(2) |"), "accuracy cells give n");
    assert!(md.contains("The paper's claims beside ours"));
    // Accuracy against compute, per round of NSED, with its figure.
    assert!(md.contains("## Accuracy against compute"), "{md}");
    assert!(
        md.contains("| nsed | 1 | ") && md.contains("| nsed | 2 | "),
        "{md}"
    );
    assert!(dir.join("deliberation/budgets-gsm8k-consumer.svg").exists());
    // The run's own ballots: its judges and every voting rule re-tallied.
    assert!(
        md.contains("## Judges and protocol variants of the result runs"),
        "{md}"
    );
    assert!(md.contains("| quadratic (NSED round 1) |"), "{md}");
    assert!(dir
        .join("deliberation/gsm8k-consumer/protocols.md")
        .exists());
}

/// n as expected, accuracy = correct / n, its Wilson interval around it.
fn check_accuracy_row(r: &HashMap<String, String>, n: f64) {
    assert_eq!(num(r, "n"), n, "{r:?}");
    let (k, acc) = (num(r, "correct"), num(r, "accuracy"));
    assert!((acc - k / n).abs() < 1e-6, "{r:?}");
    let (lo, hi) = wilson(k, n);
    assert!(
        (num(r, "ci_low") - lo).abs() < 1e-5,
        "{r:?}: Wilson low {lo}"
    );
    assert!(
        (num(r, "ci_high") - hi).abs() < 1e-5,
        "{r:?}: Wilson high {hi}"
    );
    assert!(num(r, "seconds_per_item") > 0.0);
}

fn check_code(dir: &Path) {
    let rows = read_csv(&dir.join("code.csv"));
    assert!(rows.iter().any(|r| r["method"] == "nsed"));
    assert!(rows
        .iter()
        .any(|r| r["method"] == "single:qwen2.5-coder-0.5b"));
    for r in &rows {
        assert_eq!(r["dataset"], "humaneval");
        check_accuracy_row(r, 1.0);
    }
}

fn check_fraud(dir: &Path) {
    let rows = read_csv(&dir.join("fraud.csv"));
    let sim = rows
        .iter()
        .find(|r| r["setting"] == "int4" && r["metric"] == "gonka_similarity")
        .expect("int4 similarity row");
    assert_eq!(sim["model"], "smollm2-135m");
    assert_eq!((num(sim, "honest_n"), num(sim, "fraud_n")), (12.0, 12.0));
    let (auc, lo, hi) = (num(sim, "auc"), num(sim, "auc_low"), num(sim, "auc_high"));
    assert!(lo <= auc && auc <= hi, "{sim:?}");
    let md = std::fs::read_to_string(dir.join("fraud.md")).unwrap();
    assert!(
        md.contains("| smollm2-135m | q8_0 / f32 | int4 | 12 | 12 |"),
        "{md}"
    );
    assert!(md.contains("**Against the targets**"), "{md}");
    assert!(
        md.contains("| smollm2-135m · T 0.99/0.7 | int4 | "),
        "no targets row: {md}"
    );
    let run = dir.join("fraud/runs/smollm2-135m");
    assert!(run.join("roc-int4.svg").exists());
    check_fraud_stages(&run);
}

/// Every stage of the fraud analysis ran on the 12 + 12 samples: held-out
/// partitions, the per-node tests, the length bins, the ranks, the
/// economics. Their floors are checked on the committed 200 + 100 sample run
/// (`tests/it/fraud_evidence.rs`), where they mean something.
fn check_fraud_stages(run: &Path) {
    let rows = read_csv(&run.join("heldout.csv"));
    for name in ["gonka_similarity", "combined (logistic, all metrics)"] {
        let r = rows
            .iter()
            .find(|r| r["setting"] == "int4" && r["detector"] == name)
            .unwrap_or_else(|| panic!("no held-out row for {name}: {rows:?}"));
        assert_eq!((num(r, "honest_n"), num(r, "fraud_n")), (12.0, 12.0));
        assert_eq!(num(r, "folds"), 100.0, "5 folds x 20 partitions: {r:?}");
        assert!(num(r, "flipped_folds") <= num(r, "folds"), "{r:?}");
    }
    let power = read_csv(&run.join("pernode.csv"));
    for test in ["MMD to honest reference", "token-rank uniformity (KS)"] {
        assert!(
            power
                .iter()
                .any(|r| r["test"] == test && num(r, "samples_per_node") == 1.0),
            "no {test} row at n=1: {power:?}"
        );
    }
    let samples = std::fs::read_to_string(run.join("samples.jsonl")).expect("samples.jsonl");
    assert_eq!(samples.lines().count(), 24);
    for line in samples.lines() {
        let s: serde_json::Value = serde_json::from_str(line).expect("a sample line");
        let pit = s["positions"]["pit"].as_array().expect("ranks recorded");
        assert_eq!(pit.len() as u64, s["tokens"].as_u64().expect("tokens"));
    }
    let bins = read_csv(&run.join("heldout-length.csv"));
    let distance: Vec<_> = bins
        .iter()
        .filter(|r| r["setting"] == "int4" && r["detector"] == "gonka_similarity")
        .collect();
    let fraud: f64 = distance.iter().map(|r| num(r, "fraud_n")).sum();
    let honest: f64 = distance.iter().map(|r| num(r, "honest_n")).sum();
    assert_eq!((honest, fraud), (12.0, 12.0), "{distance:?}");
    let economics = std::fs::read_to_string(run.join("economics.md")).expect("economics.md");
    assert!(
        economics.contains("false ejections per 1,000 node-epochs"),
        "{economics}"
    );
}

fn check_determinism(dir: &Path) {
    let rows = read_csv(&dir.join("determinism.csv"));
    assert_eq!(rows.len(), 2, "threads 1 and 2");
    for r in &rows {
        assert_eq!(num(r, "runs"), 3.0);
        assert_eq!(num(r, "identical_output_share"), 1.0, "{r:?}");
        assert_eq!(num(r, "identical_logits_share"), 1.0, "{r:?}");
        assert_eq!(r["identical_across_thread_counts"], "true");
    }
    assert_eq!(rows[0]["output_sha256"], rows[1]["output_sha256"]);
}

/// `model`: the file the row measured; the peak RSS holds at least its
/// weights (every one is read by a forward pass).
fn check_perf(dir: &Path, model: &Path) {
    let rows = read_csv(&dir.join("perf.csv"));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(r["model"], "smollm2-135m");
    let kernel = nsed::engine::qmm::path::KernelPath::from_name(&r["kernel"]);
    assert!(kernel.is_some_and(|k| k.is_available()), "{r:?}");
    // A 135M-shaped model on 2 cores: far above 1 token/s either way.
    assert!(num(r, "nsed_prefill_tok_s") > 10.0, "{r:?}");
    assert!(num(r, "nsed_decode_tok_s") > 5.0, "{r:?}");
    let weights_mib = std::fs::metadata(model).expect("model").len() as f64 / 1048576.0;
    assert!(
        num(r, "nsed_rss_mib") > weights_mib,
        "{r:?}: {weights_mib} MiB"
    );
}

fn check_federation(dir: &Path) {
    let rows = read_csv(&dir.join("federation.csv"));
    assert_eq!(
        rows[0]["identical"], "true",
        "remote results equal in-process"
    );
    assert_eq!(num(&rows[0], "items"), 1.0);
    let md = std::fs::read_to_string(dir.join("federation.md")).unwrap();
    assert!(md.contains("**identical** to the in-process run"));
    assert!(md.contains("round trips/s"));
}

#[test]
fn reproduce_smoke_scale_produces_every_table() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reproduce-smoke");
    let _ = std::fs::remove_dir_all(&out);
    let synth = tempfile::tempdir().expect("tempdir");
    // A 1024-token vocabulary: the full ones' output layers (up to 262,144
    // rows) were most of the synthetic models' time. Each shape's full
    // vocabulary is checked by `gpu::synthetic_shapes_match_the_roster_files`.
    let consumer = ["smollm2-135m", "gemma3-270m", "qwen2.5-coder-0.5b"];
    let (registry, models) = common::synth_registry(synth.path(), &consumer, 2, Some(1024));
    // Bounded: the smoke scale takes a few minutes on 2 cores.
    let status = Command::new("timeout")
        .args(["--kill-after=30s", "1800", "bash", "scripts/reproduce.sh"])
        .args(["--scale", "smoke", "--out"])
        .arg(&out)
        .current_dir(&root)
        .env("NSED_BIN", env!("CARGO_BIN_EXE_nsed"))
        .env("NSED_DATA_DIR", common::datasets_dir())
        .env("NSED_REGISTRY", &registry)
        .env("NSED_MODELS", &models)
        .status()
        .expect("bash runs");
    assert!(
        status.success(),
        "scripts/reproduce.sh --scale smoke: {status}"
    );

    let mut pages = HashMap::new();
    for table in TABLES {
        let md = std::fs::read_to_string(out.join(format!("{table}.md")))
            .unwrap_or_else(|_| panic!("{table}.md was not written"));
        assert!(md.starts_with("# "), "{table}.md has a title");
        assert!(
            md.contains("> Produced by `scripts/reproduce.sh --scale smoke")
                && md.contains("(scale **smoke**)"),
            "{table}.md is stamped"
        );
        assert_tables_well_formed(&md, table);
        pages.insert(table, md);
    }
    check_stamp(&out, "deliberation", &consumer, &["gsm8k"]);
    check_stamp(&out, "code", &consumer, &["humaneval"]);
    check_stamp(
        &out,
        "fraud",
        &["smollm2-135m"],
        &["gsm8k", "math500", "lcb"],
    );
    check_stamp(&out, "determinism", &["smollm2-135m"], &[]);
    check_stamp(&out, "perf", &["smollm2-135m"], &[]);
    check_stamp(&out, "federation", &consumer, &["gsm8k"]);
    check_deliberation(&out);
    check_code(&out);
    check_fraud(&out);
    check_determinism(&out);
    check_perf(&out, &models.join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    check_federation(&out);

    // The pages come back byte for byte from the data alone.
    for table in TABLES {
        std::fs::remove_file(out.join(format!("{table}.md"))).unwrap();
    }
    let rebuilt = nsed()
        .args(["report", "tables", "--results"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    for table in TABLES {
        let md = std::fs::read_to_string(out.join(format!("{table}.md"))).unwrap();
        assert_eq!(md, pages[table], "{table}.md rebuilt differently");
    }

    // And the README's results section is refreshed between its markers.
    let readme = out.join("README.md");
    std::fs::write(
        &readme,
        "# x\n\n## Results\n\n<!-- results:begin -->\nold\n<!-- results:end -->\n\n## After\n",
    )
    .unwrap();
    let status = nsed()
        .args(["report", "tables", "--only", "perf", "--results"])
        .arg(&out)
        .arg("--readme")
        .arg(&readme)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(!text.contains("\nold\n"));
    assert!(text.ends_with("<!-- results:end -->\n\n## After\n"));
    for title in [
        "### Deliberation",
        "### Fraud detection",
        "### Determinism",
        "### Speed",
        "### Federation",
    ] {
        assert!(text.contains(title), "README section lacks {title}");
    }
    // The index sits beside the pages, so its links are relative to it.
    assert!(text.contains("[perf.md](perf.md)"), "{text}");

    // Without --readme, the results directory's own README.md is the index.
    std::fs::write(
        &readme,
        "# x\n\n<!-- results:begin -->\nstale\n<!-- results:end -->\n",
    )
    .unwrap();
    let status = nsed()
        .args(["report", "tables", "--only", "perf", "--results"])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let text = std::fs::read_to_string(&readme).unwrap();
    assert!(!text.contains("stale"), "{text}");
    assert!(text.contains("### Speed"), "{text}");
}
