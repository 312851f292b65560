//! `nsed bench` on a code set end to end: real models answer real
//! LiveCodeBench problems, every proposal is run on the public tests in the
//! sandbox, the chosen programs are graded, and the run records the sandbox's
//! protections and what the scores are graded on.

use crate::common;

use std::process::Command;

use nsed::answer::Outcome;
use nsed::bench::{ItemRecord, Meta, MethodKey};
use nsed::sandbox::{Layer, Policy};

#[test]
fn bench_lcb_grades_programs_in_the_sandbox_and_records_protections() {
    let data = common::datasets_dir();
    let tmp = tempfile::tempdir().expect("tmp");
    let out = tmp.path().join("run");
    let output = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(["bench", "lcb", "--data-dir"])
        .arg(&data)
        .args([
            "--difficulty",
            "easy",
            "--platform",
            "atcoder",
            "--limit",
            "1",
            "--method",
            "single,plurality",
            "--max-tokens",
            "160",
            "--out",
        ])
        .arg(&out)
        .env("RAYON_NUM_THREADS", "2")
        .output()
        .expect("nsed runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("sandbox: layer "), "{stderr}");
    assert!(stdout.contains("graded on public tests only"), "{stdout}");

    let text = std::fs::read_to_string(out.join("items.jsonl")).expect("items");
    let records: Vec<ItemRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect();
    assert_eq!(records.len(), 1);
    let rec = &records[0];
    // The first easy AtCoder problem of release_v1, in file order.
    assert!(rec.item.starts_with("abc"), "{}", rec.item);
    assert_eq!(rec.single.len(), 3, "one proposal per distinct model");
    for p in &rec.single {
        // Every proposal carries its public-test behaviour, or none when it
        // holds no program.
        if let Some(evidence) = &p.answer {
            assert!(evidence.contains("public tests"), "{}: {evidence}", p.agent);
        }
    }
    assert_eq!(rec.results.len(), 4, "{:?}", rec.results.keys());
    for (method, r) in &rec.results {
        match (&r.answer, &r.verdict) {
            (Some(program), Some(v)) => {
                assert!(!program.trim().is_empty());
                assert_eq!(r.outcome == Outcome::Correct, v.passed, "{method}");
                assert!(v.results.iter().all(|c| [1, -1, -2, -3, -4].contains(c)));
                assert!(v.tests_total >= 1);
            }
            (None, None) => assert_eq!(r.outcome, Outcome::NoAnswer, "{method}"),
            other => panic!("{method}: answer and verdict disagree: {other:?}"),
        }
    }

    // The strongest member wrote probe inputs (one call), charged to
    // plurality on top of its three proposals, never to a single model.
    let probes = rec.probes.as_ref().expect("probe inputs requested");
    assert_eq!(probes.author, "qwen2.5-coder-0.5b");
    assert_eq!(probes.usage.calls, 1);
    assert!(probes.inputs.len() <= 3);
    assert_eq!(rec.results[&MethodKey::Plurality].usage.calls, 4);
    for (method, r) in &rec.results {
        if method.single_model().is_some() {
            assert_eq!(r.usage.calls, 1, "{method}");
        }
    }

    let meta = Meta::read(&out).expect("meta");
    let protections = meta.runs[0].sandbox.as_ref().expect("protections recorded");
    assert!(protections.baseline);
    // The layer that contained the programs is recorded, with the policy,
    // in meta.json and in the summary.
    let layer = protections.layer.expect("layer recorded");
    assert!(
        matches!(layer, Layer::RootNamespaces | Layer::UserNamespaces),
        "{layer:?}"
    );
    assert_eq!(protections.policy, Some(Policy::Require));
    assert!(protections.guards.expect("guards").contained());
    let summary = std::fs::read_to_string(out.join("summary.md")).expect("summary");
    assert!(
        summary.contains(&format!(
            "sandbox: layer {} (--sandbox require)",
            layer.name()
        )),
        "{summary}"
    );
    let code = meta.fingerprint.code.as_ref().expect("code settings");
    assert_eq!(code.filter.difficulties, ["easy"]);
    assert_eq!(
        code.graded_on,
        "public tests only (the data has no hidden tests)"
    );
}
