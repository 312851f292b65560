//! The Gonka fixtures (real executor/validator chat.completion JSON) must
//! reproduce the golden values of tests/data/gonka/PROVENANCE.md to 1e-6.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use nsed::verify::artifact::Artifact;
use nsed::verify::{self, metrics, Options, Verdict};

fn fixture(name: &str) -> PathBuf {
    common::test_data().join("gonka").join(name)
}

fn report(exec: &str, val: &str) -> verify::Report {
    let e = Artifact::read(&fixture(exec)).expect("executor fixture");
    let v = Artifact::read(&fixture(val)).expect("validator fixture");
    verify::against(&e, &v, (exec, val), &Options::default()).expect("comparable")
}

fn metric(r: &verify::Report, name: &str) -> f64 {
    r.metrics.iter().find(|m| m.name == name).expect(name).value
}

fn extra(r: &verify::Report, name: &str, key: &str) -> f64 {
    r.metrics.iter().find(|m| m.name == name).expect(name).extra[key]
}

#[test]
fn honest_pair_matches_goldens() {
    let r = report("inference_response.json", "validation_response.json");
    assert_eq!((r.positions, r.k), (100, 3));
    assert_eq!(r.precheck, None);
    assert!((metric(&r, "gonka_similarity") - 1.0).abs() < 1e-6);
    assert!(extra(&r, "gonka_similarity", "distance").abs() < 1e-6);
    assert!((metric(&r, "perplexity_score") - 0.126870).abs() < 1e-6);
    assert_eq!(extra(&r, "gonka_distance2", "matches_ratio"), 1.0);
    // Identical lists: distance2 is only its +1 smoothing, 1 / (100·3 + 1).
    assert!((metric(&r, "gonka_distance2") - 1.0 / 301.0).abs() < 1e-9);
    assert_eq!(r.verdict, Verdict::Pass);
}

#[test]
fn int4_pair_matches_goldens_and_fails() {
    let r = report(
        "inference_response_int4.json",
        "validation_response_fp8.json",
    );
    assert_eq!((r.positions, r.k), (100, 3));
    assert!((extra(&r, "gonka_similarity", "distance") - 0.0331106).abs() < 1e-6);
    assert!((metric(&r, "gonka_similarity") - 0.9668894).abs() < 1e-6);
    assert!((metric(&r, "perplexity_score") - 0.176973).abs() < 1e-6);
    // Genesis threshold 0.98 also fails it.
    let s = metric(&r, "gonka_similarity");
    assert!(s < 0.98);
    assert_eq!(r.verdict, Verdict::Fail);
}

#[test]
fn int4_executor_side_perplexity_score() {
    let e = Artifact::read(&fixture("inference_response_int4.json")).expect("fixture");
    let (score, per) = metrics::perplexity_score(&verify::views(&e, false));
    assert_eq!(per.len(), 100);
    assert!((score - 0.153574).abs() < 1e-6, "{score}");
}

#[test]
fn cli_exit_codes_follow_the_verdict() {
    let run = |e: &str, v: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_nsed"))
            .args(["verify", "--json", "--artifact"])
            .arg(fixture(e))
            .arg("--against")
            .arg(fixture(v))
            .args(extra)
            .output()
            .expect("nsed runs")
    };
    let honest = run("inference_response.json", "validation_response.json", &[]);
    assert_eq!(honest.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&honest.stdout).expect("json");
    assert_eq!(doc["verdict"], "pass");
    let fraud = run(
        "inference_response_int4.json",
        "validation_response_fp8.json",
        &[],
    );
    assert_eq!(fraud.status.code(), Some(1));
    // With every thresholded metric switched off, nothing can fail.
    let off = run(
        "inference_response_int4.json",
        "validation_response_fp8.json",
        &[
            "--threshold",
            "gonka_similarity=off",
            "--threshold",
            "gonka_distance2=off",
            "--threshold",
            "stage2_mae=off",
        ],
    );
    assert_eq!(off.status.code(), Some(0));
    let bad = run(
        "inference_response.json",
        "validation_response.json",
        &["--threshold", "nope=1"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown metric"));
}

#[test]
fn shorter_validator_is_a_different_length_failure() {
    let e = Artifact::read(&fixture("inference_response.json")).expect("fixture");
    let mut v = Artifact::read(&fixture("validation_response.json")).expect("fixture");
    v.positions.truncate(60);
    let r = verify::against(&e, &v, ("e", "v"), &Options::default()).expect("comparable");
    assert!(r
        .precheck
        .as_deref()
        .unwrap_or("")
        .contains("different length"));
    assert_eq!(metric(&r, "gonka_similarity"), 0.0);
    assert_eq!(metric(&r, "stage2_mae"), 10.0);
    assert_eq!(r.verdict, Verdict::Fail);
}
