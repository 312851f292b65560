//! The grader against the datasets' own reference solutions: every
//! HumanEval canonical solution and every MBPP test-split reference program
//! must pass in the sandbox, and a wrong program must fail — on the real
//! files in the data directory.

use std::path::PathBuf;

use nsed::bench::code::grade::Tests;
use nsed::bench::code::{grade, problems, Check, LcbFilter};
use nsed::sandbox::{Limits, Sandbox};

fn data_dir() -> PathBuf {
    nsed::bench::datasets::bundled_dir()
}

fn canonical(dir: &std::path::Path, task: &str) -> String {
    let text = std::fs::read_to_string(dir.join("humaneval/HumanEval.jsonl")).expect("humaneval");
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .find(|v| v["task_id"] == task)
        .and_then(|v| v["canonical_solution"].as_str().map(str::to_string))
        .expect("task")
}

fn failures(
    set: &str,
    solution: impl Fn(&nsed::bench::code::Problem) -> String + Sync,
) -> Vec<String> {
    let dir = data_dir();
    let set = problems::load(set, &dir, &LcbFilter::default()).expect("set");
    let sandbox = Sandbox::new(None, Limits::default()).expect("sandbox");
    let failed = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(p) = set.problems.get(i) else { break };
                let v = grade(&sandbox, p, &solution(p), Tests::All).expect("grade");
                if !v.passed {
                    failed
                        .lock()
                        .expect("lock")
                        .push(format!("{}: {:?}", p.id, v.failure));
                }
            });
        }
    });
    let mut failed = failed.into_inner().expect("lock");
    failed.sort();
    failed
}

#[test]
fn every_humaneval_canonical_solution_passes() {
    let dir = data_dir();
    let failed = failures("humaneval", |p| canonical(&dir, &p.id));
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    // And the grader can fail: the first solution's body replaced.
    let set = problems::load("humaneval", &dir, &LcbFilter::default()).expect("set");
    let sandbox = Sandbox::new(None, Limits::default()).expect("sandbox");
    let v = grade(&sandbox, &set.problems[0], "    return False\n", Tests::All).expect("grade");
    assert!(!v.passed);
}

#[test]
fn mbpp_reference_programs_pass() {
    let failed = failures("mbpp", |p| p.starter_code.clone());
    assert!(failed.is_empty(), "{} failed: {failed:#?}", failed.len());
    let dir = data_dir();
    let set = problems::load("mbpp", &dir, &LcbFilter::default()).expect("set");
    assert!(matches!(set.problems[0].check, Check::Mbpp { .. }));
}
