//! The committed fraud evidence is what nsed's analysis computes from the
//! committed samples, and it meets the floors of the method: the smollm2-135m
//! int4 run (200 honest and 100 int4 samples, bit-exact on every machine) is
//! re-analysed here from `samples.jsonl` alone — held-out detection over
//! partitions, per-node power, the token-rank test, the length bins, the
//! economics — and every table file comes back byte for byte. The floors
//! (held-out AUC, detection, honest flags, the direction fit's negative
//! control, per-node power at a 1% level) are asserted on the recomputed
//! figures, so a change to the analysis that weakens them fails here without
//! regenerating a sample. (These floors were checked on a fresh 30 + 30
//! sample run by `tests/it/reproduce.rs` before it moved to the smoke scale;
//! `scripts/reproduce.sh --scale ci` still produces that run.)

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{num, read_csv};

const RUN: &str = "results/fraud/runs/smollm2-135m";
const HONEST: f64 = 200.0;
const FRAUD: f64 = 100.0;
/// What a run records; everything else in its directory is derived.
const INPUTS: [&str; 3] = ["samples.jsonl", "meta.json", "variants.json"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the committed run's inputs at the same relative path under a
/// fresh directory (the reports name their run directory).
fn inputs_only() -> tempfile::TempDir {
    let work = tempfile::tempdir().expect("tempdir");
    let dir = work.path().join(RUN);
    std::fs::create_dir_all(&dir).expect("mkdir");
    for name in INPUTS {
        std::fs::copy(repo().join(RUN).join(name), dir.join(name)).expect("copy input");
    }
    work
}

/// `nsed simulate-fraud --report` and `--economics` on the run in `work`.
fn analyse(work: &Path) {
    // As scripts/fraud-evidence.sh leaves them: its economics pass names the
    // directory with a trailing slash (the page's title shows it), and the
    // report is written again after it without one.
    let with_slash = format!("{RUN}/");
    for (dir, extra) in [
        (
            &with_slash[..],
            &["--economics", "--detector", "gonka_similarity"][..],
        ),
        (RUN, &["--report"][..]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_nsed"))
            .current_dir(work)
            .args(["simulate-fraud", "--out", dir])
            .args(extra)
            .output()
            .expect("run nsed");
        assert!(
            out.status.success(),
            "{extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_committed_int4_run_reanalyses_byte_for_byte_and_meets_the_floors() {
    let work = inputs_only();
    analyse(work.path());
    let run = work.path().join(RUN);

    // Every table and report of the committed run, recomputed.
    let committed = repo().join(RUN);
    let mut compared = 0;
    for entry in std::fs::read_dir(&committed).expect("committed run") {
        let name = entry.expect("entry").file_name();
        let name = name.to_string_lossy();
        let ours = run.join(name.as_ref());
        assert!(ours.exists(), "{name} was not recomputed");
        if name.ends_with(".csv") || name.ends_with(".md") {
            assert_eq!(
                std::fs::read_to_string(&ours).expect("recomputed"),
                std::fs::read_to_string(committed.join(name.as_ref())).expect("committed"),
                "{name} differs from what the committed samples give; rerun \
                 `nsed simulate-fraud --report --out {RUN}` (and --economics) and commit it"
            );
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} tables compared");

    check_held_out(&run);
    check_per_node(&run);
    check_held_out_by_length(&run);
    check_targets(&run);
    let economics = std::fs::read_to_string(run.join("economics.md")).expect("economics.md");
    for needle in [
        "honest samples flagged on held-out prompts",
        "| gonka (consecutive + one-sigma) |",
        "false ejections per 1,000 node-epochs",
    ] {
        assert!(economics.contains(needle), "{needle}: {economics}");
    }
}

/// The held-out protocol (5 folds x 20 partitions of the prompts).
fn check_held_out(run: &Path) {
    let rows = read_csv(&run.join("heldout.csv"));
    let detector = |name: &str| {
        rows.iter()
            .find(|r| r["setting"] == "int4" && r["detector"] == name)
            .unwrap_or_else(|| panic!("no held-out row for {name}: {rows:?}"))
    };
    for name in ["gonka_similarity", "combined (logistic, all metrics)"] {
        let r = detector(name);
        assert_eq!((num(r, "honest_n"), num(r, "fraud_n")), (HONEST, FRAUD));
        assert_eq!(num(r, "folds"), 100.0, "5 folds x 20 partitions: {r:?}");
        assert!(num(r, "heldout_auc") >= 0.95, "{r:?}");
        assert!(num(r, "detected_min") >= 0.95, "{r:?}");
        // Thresholds flag at most 1% of the training honest samples; of the
        // 200 held-out prompts a few may cross, not more.
        assert!(num(r, "honest_flagged_max") <= 4.0, "{r:?}");
    }
    // Negative control of the direction fit: for int4 the perplexity score
    // points the wrong way (the cheater samples at a lower temperature), so
    // every training split flips it, and it then detects far less than the
    // distance does.
    let ppl = detector("perplexity_score");
    assert_eq!(num(ppl, "flipped_folds"), num(ppl, "folds"), "{ppl:?}");
    assert!(num(ppl, "detected_mean") < 0.6, "{ppl:?}");
}

/// Per-node tests at a 1% level: the two-sample MMD test and the token-rank
/// test eject cheating nodes with enough samples and honest ones rarely.
fn check_per_node(run: &Path) {
    let power = read_csv(&run.join("pernode.csv"));
    let at = |test: &str, n: f64| {
        power
            .iter()
            .find(|r| r["test"] == test && num(r, "samples_per_node") == n)
            .unwrap_or_else(|| panic!("no {test} row at n={n}: {power:?}"))
    };
    let (mmd, rank) = ("MMD to honest reference", "token-rank uniformity (KS)");
    assert!(num(at(mmd, 10.0), "power") >= 0.95, "{:?}", at(mmd, 10.0));
    assert!(num(at(rank, 1.0), "power") > 0.05, "{:?}", at(rank, 1.0));
    assert!(num(at(rank, 10.0), "power") >= 0.9, "{:?}", at(rank, 10.0));
    for n in [1.0, 5.0, 10.0] {
        for test in [mmd, rank] {
            let r = at(test, n);
            assert!(num(r, "false_ejection") <= 0.05, "{r:?}");
            assert!(num(r, "power_lower_95") <= num(r, "power"), "{r:?}");
        }
    }
    // Every sampled position has its rank, each in [0, 1].
    let samples = std::fs::read_to_string(run.join("samples.jsonl")).expect("samples.jsonl");
    for line in samples.lines() {
        let s: serde_json::Value = serde_json::from_str(line).expect("a sample line");
        let pit = s["positions"]["pit"].as_array().expect("ranks recorded");
        assert_eq!(pit.len() as u64, s["tokens"].as_u64().expect("tokens"));
        assert!(pit
            .iter()
            .all(|u| (0.0..=1.0).contains(&u.as_f64().unwrap_or(-1.0))));
    }
}

/// The output-length bins partition the samples.
fn check_held_out_by_length(run: &Path) {
    let rows = read_csv(&run.join("heldout-length.csv"));
    let bins: Vec<_> = rows
        .iter()
        .filter(|r| r["setting"] == "int4" && r["detector"] == "gonka_similarity")
        .collect();
    assert!(bins.len() >= 3, "{bins:?}");
    let fraud: f64 = bins.iter().map(|r| num(r, "fraud_n")).sum();
    let honest: f64 = bins.iter().map(|r| num(r, "honest_n")).sum();
    assert_eq!((honest, fraud), (HONEST, FRAUD), "{bins:?}");
}

/// The targets row of the committed fraud page (which
/// `tests/it/committed_pages.rs` rebuilds from these samples) states the
/// recomputed held-out figures: int4 caught per sample, the mean honest
/// flags over partitions out of 200 beside the design rate, and the
/// per-node point with its disjoint nodes.
fn check_targets(run: &Path) {
    let md = std::fs::read_to_string(repo().join("results/fraud.md")).expect("fraud.md");
    let row = md
        .lines()
        .find(|l| l.starts_with("| smollm2-135m · T 0.99/0.7 | int4 | "))
        .unwrap_or_else(|| panic!("no targets row for int4: {md}"));
    let cells: Vec<&str> = row.split(" | ").collect();
    assert!(cells[2].ends_with("of 100: **met**"), "{row}");
    let best = read_csv(&run.join("heldout.csv"))
        .into_iter()
        .find(|r| r["setting"] == "int4" && r["detector"] == "best single metric (chosen on train)")
        .expect("best single row");
    let (mean, design) = (num(&best, "honest_flagged_mean"), num(&best, "design_rate"));
    let rate = 100.0 * mean / HONEST;
    assert!(
        cells[3].starts_with(&format!("{rate:.2}% ({mean:.2}/200, ")),
        "{row}"
    );
    assert!(
        cells[3].contains(&format!("design {:.2}%", 100.0 * design)),
        "{row}"
    );
    assert!(cells[4].contains("disjoint nodes, power ≥ "), "{row}");
}

#[test]
fn one_sample_fewer_changes_the_analysis() {
    // Negative control: the comparison above follows the samples.
    let work = inputs_only();
    let samples = work.path().join(RUN).join("samples.jsonl");
    let text = std::fs::read_to_string(&samples).expect("samples");
    let honest_line = text
        .lines()
        .position(|l| l.contains("\"role\":\"honest\""))
        .expect("an honest sample");
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != honest_line)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&samples, format!("{}\n", kept.join("\n"))).expect("write");
    analyse(work.path());
    let ours = std::fs::read_to_string(work.path().join(RUN).join("heldout.csv")).expect("ours");
    let committed = std::fs::read_to_string(repo().join(RUN).join("heldout.csv")).expect("ours");
    assert_ne!(ours, committed);
    assert!(ours.contains("int4,gonka_similarity,199,100,"), "{ours}");
}
