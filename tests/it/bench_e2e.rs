//! `nsed bench` and `nsed deliberate` end to end on the real models: every
//! method on two GSM8K items, a run killed mid-way and resumed without
//! duplicates, the result files, and clear errors on bad input.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nsed::answer::{same_answer, AnswerKind, Outcome};
use nsed::bench::{ItemRecord, Meta, MethodKey};
use nsed::engine::qmm::path::{active, available, KernelPath};
use nsed::results::journal::differences;

fn nsed_cmd(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nsed"));
    c.args(args)
        .env("RAYON_NUM_THREADS", "2")
        .env_remove("NSED_DATA_DIR");
    c
}

fn nsed(args: &[&str]) -> Output {
    nsed_cmd(args).output().expect("nsed runs")
}

fn complete_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.matches('\n').count())
        .unwrap_or(0)
}

/// The crash test's run: every method on GSM8K items 0 and 1 of the
/// consumer roster, at a size where every page has rows, with `extra`
/// appended.
/// The other kernel path the finished run is resumed on: the fastest one
/// below this CPU's best (`avxvnni` on AVX-512 VNNI servers that have it,
/// else `avx2`), so its stamp's probes are measured on other kernels without
/// the portable path's slowness; a CPU with only AVX2 gets AVX2, the path the
/// run started on.
fn second_fastest_kernel() -> KernelPath {
    let paths = available();
    let mut faster_first = paths.iter().rev();
    let best = faster_first.next().copied().unwrap_or(KernelPath::Portable);
    faster_first
        .next()
        .copied()
        .filter(|p| *p != KernelPath::Portable)
        .unwrap_or(best)
}

fn bench_args(data: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "bench",
        "gsm8k",
        "--data-dir",
        data,
        "--limit",
        "2",
        "--max-tokens",
        "48",
        "--rounds",
        "2",
        "--sc-k",
        "3",
        "--seed",
        "5",
        // Evaluations are most of the tokens; 24 still parse often enough
        // for the judges and protocol pages to have rows.
        "--eval-max-tokens",
        "24",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// The records of [`bench_args`]' two items, each run alone with one call
/// at a time (`--parallel 1 --max-batch 1`), without timings and build tags
/// ([`without_timings`]), one JSON line per item. Inference is bit-exact on
/// every machine and kernel path, so these are what any run of the same
/// settings records, whatever its batching, parallelism and crashes. When
/// prompts, records or the models' numerics change on purpose, rewrite it
/// (and say why in the commit): `NSED_UPDATE_GOLDEN=1 cargo test --test it
/// bench_e2e::bench_gsm8k`; the crash run is then compared with the
/// records just made.
const GOLDEN: &str = "tests/data/golden/bench/gsm8k-consumer.jsonl";

fn golden_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(GOLDEN)
}

/// Run each item alone, one call at a time, and write [`GOLDEN`].
fn write_bench_golden(data: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = String::new();
    for id in ["gsm8k-0", "gsm8k-1"] {
        let out = tmp.path().join(id);
        let extra = ["--out", out.to_str().unwrap(), "--ids", id];
        let args = bench_args(data, &extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = nsed(&[&args[..], &["--parallel", "1", "--max-batch", "1"]].concat());
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let text = std::fs::read_to_string(out.join("items.jsonl")).unwrap();
        let record: ItemRecord = serde_json::from_str(text.trim()).unwrap();
        lines.push_str(&without_timings(&record).to_string());
        lines.push('\n');
    }
    std::fs::write(golden_path(), lines).unwrap();
}

#[test]
fn bench_gsm8k_every_method_survives_a_crash_and_resumes() {
    let data = common::datasets_dir();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let out_s = out.to_str().unwrap();
    // One item at a time: the second item's whole run is the window in
    // which the first is finished and the second has logged calls. With two
    // items in parallel they can finish within one poll, and nsed exits
    // before the kill (seen on the AVX2 path). Items in parallel, their
    // calls batched, are run by the reproduce test (`--parallel 4`) and
    // `batching`.
    let args = bench_args(data.to_str().unwrap(), &["--out", out_s, "--parallel", "1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Start, wait for a finished item and for the unfinished one to have
    // logged a finished call, then kill -9 mid-run.
    let mut child = nsed_cmd(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let items = out.join("items.jsonl");
    let calls = out.join("calls.jsonl");
    let start = Instant::now();
    let in_flight = loop {
        let done = item_ids(&items);
        if !done.is_empty() {
            if let Some(item) = item_ids(&calls).difference(&done).next() {
                break item.clone();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(1200),
            "no item finished in 20 min"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "nsed exited before the kill"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let before = complete_lines(&items);
    assert!(before < 2, "the kill came too late to test resume");
    assert!(!item_ids(&items).contains(&in_flight));
    // A crash in the middle of a write leaves a torn line.
    let mut torn = std::fs::read(&items).unwrap();
    torn.extend_from_slice(format!("{{\"item\":\"{in_flight}\",\"gold\":\"3").as_bytes());
    std::fs::write(&items, torn).unwrap();

    // Without --resume the run directory is refused; with other settings too.
    let o = nsed(&args);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--resume"));
    let mut changed = args.to_vec();
    changed[7] = "100";
    changed.push("--resume");
    let o = nsed(&changed);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("different settings") && err.contains("max_tokens` was 48, now 100"),
        "{err}"
    );

    // Another build (simulated: another commit in the recorded version)
    // may resume the run only when its stamp — protocol and the models'
    // numerics — equals the recorded one. Each negative control changes one
    // part of the stamp and is refused, naming it; without a stamp (a run
    // made before stamps) another build is refused before any model loads.
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let meta_path = out.join("meta.json");
    let original = std::fs::read_to_string(&meta_path).unwrap();
    let other_build = |edit: &dyn Fn(&mut serde_json::Value)| {
        let mut meta: serde_json::Value = serde_json::from_str(&original).unwrap();
        let version = &mut meta["fingerprint"]["version"];
        assert!(
            version["commit"].as_str().is_some_and(|c| !c.is_empty()),
            "{version}"
        );
        version["commit"] = "0123456789abcdef0123456789abcdef01234567".into();
        edit(&mut meta["fingerprint"]);
        std::fs::write(&meta_path, serde_json::to_string(&meta).unwrap()).unwrap();
    };
    let stamp: serde_json::Value = serde_json::from_str::<serde_json::Value>(&original).unwrap()
        ["fingerprint"]["stamp"]
        .clone();
    assert_eq!(
        stamp["numerics"].as_object().map(|m| m.len()),
        Some(3),
        "{stamp}"
    );
    assert_eq!(
        stamp["protocol"].as_str().map(str::len),
        Some(64),
        "{stamp}"
    );
    for (edit, needle) in [
        (
            &(|fp: &mut serde_json::Value| {
                fp["stamp"]["numerics"]["gemma3-270m"] = "00".repeat(32).into();
            }) as &dyn Fn(&mut serde_json::Value),
            "gemma3-270m numerics 000000000000 vs",
        ),
        (
            &|fp: &mut serde_json::Value| fp["stamp"]["protocol"] = "ff".repeat(32).into(),
            "made with protocol ffffffffffff",
        ),
        (
            &|fp: &mut serde_json::Value| {
                fp.as_object_mut().unwrap().remove("stamp");
            },
            "predates build stamps",
        ),
    ] {
        other_build(edit);
        let o = nsed(&resumed);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(needle) && err.contains("start a new --out"),
            "{needle}: {err}"
        );
    }
    // The same stamp: resumed by the "other build"; the run keeps its
    // starting build, the new segment and each item it finishes name theirs.
    other_build(&|_| {});
    let o = nsed(&resumed);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("({before} done before)"))
            && stderr.contains("calls of unfinished items read back from calls.jsonl"),
        "{stderr}"
    );

    // Every item is in the journal now, so the call log is empty.
    assert_eq!(complete_lines(&out.join("calls.jsonl")), 0);
    // Another kernel path computes the same bits (by design; `kernel_paths`
    // checks every model), so its stamp — the probe tokens' numerics,
    // measured on that path — lets it resume the run too: with nothing left
    // to do, it adds its segment and no record.
    let other_path = second_fastest_kernel();
    let again = nsed_cmd(&resumed)
        .env("NSED_KERNEL", other_path.name())
        .output()
        .expect("nsed runs");
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(
        again.status.success() && again_err.contains("(2 done before)"),
        "{again_err}"
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("| nsed |") && stdout.contains("Wilson"),
        "{stdout}"
    );

    // Exactly the two items, each once, each with every method.
    let text = std::fs::read_to_string(&items).unwrap();
    let records: Vec<ItemRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ids: Vec<&str> = records.iter().map(|r| r.item.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(
        ids.iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["gsm8k-0", "gsm8k-1"])
    );
    let expected: BTreeSet<String> = [
        "nsed",
        "qv",
        "weighted",
        "plurality",
        "debate",
        "self-consistency",
        "single:smollm2-135m",
        "single:gemma3-270m",
        "single:qwen2.5-coder-0.5b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for rec in &records {
        assert_eq!(
            rec.results
                .keys()
                .map(|k| k.to_string())
                .collect::<BTreeSet<_>>(),
            expected,
            "{}",
            rec.item
        );
        for (m, r) in &rec.results {
            // The recorded outcome is the grade of the recorded answer.
            // A model alone without an answer: truncated exactly when its
            // output was cut at the token limit.
            let cut = m.single_model().and_then(|model| {
                let p = rec.single.iter().find(|p| p.model == model)?;
                Some(p.was_cut())
            });
            let want = match &r.answer {
                None if cut == Some(true) => Outcome::Truncated,
                None if cut == Some(false) => Outcome::NoAnswer,
                None => r.outcome,
                Some(a) if same_answer(a, &rec.gold, AnswerKind::Numeric) => Outcome::Correct,
                Some(_) => Outcome::Wrong,
            };
            assert_eq!(r.outcome, want, "{} {m}", rec.item);
            assert!(
                r.answer.is_none() || !matches!(r.outcome, Outcome::NoAnswer | Outcome::Truncated)
            );
            assert!(
                r.usage.calls >= 1 && r.usage.prompt_tokens > 0,
                "{} {m}",
                rec.item
            );
            assert!(
                r.usage.generated_tokens > 0 && r.usage.seconds > 0.0,
                "{} {m}",
                rec.item
            );
            assert!(
                r.usage.generated_tokens <= r.usage.calls * 48,
                "{} {m}",
                rec.item
            );
        }
        let nsed = rec.nsed.as_ref().expect("transcript");
        let r1 = &nsed.rounds[0];
        // Greedy agents: the single-model answers and debate's first round
        // are NSED's round-1 proposals (shared calls, same tokens).
        assert_eq!(rec.single.len(), 3);
        for p in &rec.single {
            let q = r1.proposals.iter().find(|q| q.agent == p.agent).unwrap();
            assert_eq!(p.content, q.content);
        }
        assert_eq!(rec.debate.len(), 2);
        assert_eq!(rec.debate[0].len(), 3);
        assert_eq!(rec.self_consistency.len(), 3);
        // Sampled self-consistency draws differ from one another somewhere.
        let sc: BTreeSet<&str> = rec
            .self_consistency
            .iter()
            .map(|p| p.content.as_str())
            .collect();
        assert!(sc.len() > 1, "{}: identical samples", rec.item);
        // Single-model usage sums to the plurality's.
        let single: usize = rec.single.iter().map(|p| p.usage.generated_tokens).sum();
        assert_eq!(
            single,
            rec.results[&MethodKey::Plurality].usage.generated_tokens
        );
        // Nobody scored itself; every evaluator saw the others.
        for (e, rec_e) in r1.evaluations.iter().enumerate() {
            assert_eq!(r1.ballots[e][e], None);
            assert_eq!(rec_e.shown.len(), 2);
        }
        assert!(nsed.rounds.len() <= 2);
    }

    // Result files.
    let meta: Meta =
        serde_json::from_str(&std::fs::read_to_string(out.join("meta.json")).unwrap()).unwrap();
    assert_eq!(
        meta.runs.len(),
        3,
        "the crashed run, the resumed one and the one on another path"
    );
    assert_eq!(meta.runs[2].kernel, other_path.name());
    let starter = meta.fingerprint.version.as_ref().expect("version");
    assert!(starter.commit.starts_with("0123456789ab"), "{starter:?}");
    assert!(meta.fingerprint.stamp.is_some());
    // Each record names the build and kernel path that finished it.
    let best = active();
    assert!(
        records.iter().all(|r| r
            .build
            .as_deref()
            .is_some_and(|b| b.ends_with(&format!("· {best}")))),
        "{records:?}"
    );
    assert!(meta
        .runs
        .iter()
        .all(|r| r.models.len() == 3 && !r.commit.is_empty()));
    assert_eq!(
        meta.fingerprint.dataset_sha256,
        "3730d312f6e3440559ace48831e51066acaca737f6eabec99bccb9e4b3c39d14"
    );
    let csv = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + expected.len(), "{csv}");
    assert!(csv.lines().all(|l| l.split(',').count() == 11));
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("McNemar") && md.contains("2 items"), "{md}");

    // Judge quality and protocol ablations from the same run (CI's reduced
    // version of the dev-pool tables), checked against the records.
    let report = tmp.path().join("report");
    let o = nsed(&["report", "judges", out_s, "--out", report.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let judges = std::fs::read_to_string(report.join("judges.csv")).unwrap();
    let header: Vec<&str> = judges.lines().next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    assert!(judges.lines().count() >= 2, "{judges}");
    for line in judges.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        let model = cells[col("model")];
        let auc = cells[col("auc")];
        assert!(
            auc == "–" || (0.0..=1.0).contains(&auc.parse::<f64>().unwrap()),
            "{line}"
        );
        let calls: usize = records
            .iter()
            .flat_map(|r| &r.nsed.as_ref().unwrap().rounds)
            .flat_map(|round| &round.evaluations)
            .filter(|e| e.evaluator == agent_of(model))
            .count();
        assert_eq!(
            cells[col("calls")].parse::<usize>().unwrap(),
            calls,
            "{line}"
        );
    }
    let o = nsed(&["report", "protocols", out_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    for (rule, method) in [
        ("quadratic (NSED round 1)", "qv"),
        ("plurality", "plurality"),
    ] {
        let right = records
            .iter()
            .filter(|r| {
                r.results[&method.parse::<MethodKey>().unwrap()].outcome == Outcome::Correct
            })
            .count();
        let row = format!(
            "| {rule} | {:.1}% ({right}/2) |",
            100.0 * right as f64 / 2.0
        );
        assert!(table.contains(&row), "{row} not in\n{table}");
    }

    // Accuracy against compute: at full size each budget is the recorded
    // method (self-consistency's k = 3 samples, NSED's last round).
    let o = nsed(&["report", "budgets", out_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let table = String::from_utf8_lossy(&o.stdout);
    let right = |method: &str| {
        records
            .iter()
            .filter(|r| {
                r.results[&method.parse::<MethodKey>().unwrap()].outcome == Outcome::Correct
            })
            .count()
    };
    let rounds = records
        .iter()
        .map(|r| r.nsed.as_ref().unwrap().rounds.len())
        .max()
        .unwrap();
    for (family, budget, method) in [
        ("self-consistency", 3, "self-consistency"),
        ("nsed", rounds, "nsed"),
        ("debate", 2, "debate"),
        ("nsed", 1, "qv"),
        ("plurality", 1, "plurality"),
    ] {
        let k = right(method);
        let row = format!(
            "| {family} | {budget} | {:.1}% ({k}/2) |",
            100.0 * k as f64 / 2.0
        );
        assert!(table.contains(&row), "{row} not in\n{table}");
    }
    assert!(table.contains("At matched compute: NSED"), "{table}");

    // Batching, the crash and the call log change nothing, on this machine
    // and kernel path: each item's record, the in-flight one partly read
    // back from the log, is the one of the item run alone, one call at a
    // time (the committed golden, made on another machine).
    if std::env::var_os("NSED_UPDATE_GOLDEN").is_some() {
        write_bench_golden(data.to_str().unwrap());
    }
    let golden = std::fs::read_to_string(golden_path()).expect("committed bench golden");
    let golden: Vec<serde_json::Value> = golden
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(golden.len(), 2);
    for want in &golden {
        let id = want["item"].as_str().unwrap();
        let got = without_timings(records.iter().find(|r| r.item == id).unwrap());
        let differs = differences(&got, want);
        assert!(
            differs.is_empty(),
            "{id}{}: the record differs from {GOLDEN}: {differs}; if prompts, records or \
             numerics changed on purpose, rewrite it: NSED_UPDATE_GOLDEN=1 cargo test \
             --test it bench_e2e::bench_gsm8k",
            if id == in_flight {
                " (in flight at the kill)"
            } else {
                ""
            }
        );
    }
}

/// The items named by the complete lines of a JSONL file (a run's journal or
/// its call log).
fn item_ids(path: &Path) -> BTreeSet<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| Some(v["item"].as_str()?.to_string()))
        .collect()
}

/// The consumer roster's agent name for a model.
fn agent_of(model: &str) -> &'static str {
    match model {
        "smollm2-135m" => "smollm",
        "gemma3-270m" => "gemma",
        "qwen2.5-coder-0.5b" => "qwen05",
        other => panic!("not in the consumer roster: {other}"),
    }
}

/// A record as JSON with every timing and the build tag removed (the only
/// things batching, scheduling, the build and the kernel path may change).
fn without_timings(rec: &ItemRecord) -> serde_json::Value {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| !k.ends_with("seconds") && k != "build");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(rec).unwrap();
    strip(&mut v);
    v
}

#[test]
fn deliberate_prints_a_transcript() {
    let o = nsed(&[
        "deliberate",
        "--kind",
        "numeric",
        "--rounds",
        "1",
        "--max-tokens",
        "64",
        "--eval-max-tokens",
        "24",
        "What is 12 plus 30? Answer with a number.",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("== round 1"), "{stdout}");
    assert!(stdout.contains("stopped after 1 round"), "{stdout}");
    assert!(stdout.contains("answer: "), "{stdout}");
    assert!(
        stdout.contains("prompt +") && stdout.contains("generated tokens"),
        "{stdout}"
    );
}

#[test]
fn bench_bad_input_is_a_clear_error() {
    let data = common::datasets_dir();
    let data = data.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["bench", "gsm9k", "--data-dir", data],
            "unknown dataset `gsm9k`",
        ),
        (
            &["bench", "gsm8k", "--data-dir", "/nonexistent"],
            "/nonexistent/gsm8k/test.jsonl",
        ),
        (
            &[
                "bench",
                "gsm8k",
                "--data-dir",
                data,
                "--config",
                "/nonexistent.toml",
            ],
            "cannot read roster",
        ),
        (
            &["bench", "gsm8k", "--data-dir", data, "--ids", "gsm8k-99999"],
            "unknown item id",
        ),
        (
            &["bench", "gsm8k", "--data-dir", data, "--effort", "2"],
            "--effort",
        ),
    ];
    for (args, want) in cases {
        let o = nsed(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // $NSED_DATA_DIR replaces the bundled datasets/ and is named when wrong.
    let o = Command::new(env!("CARGO_BIN_EXE_nsed"))
        .args(["bench", "gsm8k", "--limit", "1"])
        .env("NSED_DATA_DIR", "/nonexistent-data")
        .output()
        .expect("nsed runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent-data/gsm8k/test.jsonl"), "{err}");
    let o = nsed(&["bench", "gsm8k", "--method", "magic"]);
    assert_eq!(o.status.code(), Some(2));
}
