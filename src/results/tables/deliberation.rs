//! The NSED table: rows are the methods of each roster (each model alone,
//! self-consistency, plurality, score-weighted and one-round quadratic votes,
//! debate, NSED), columns the sets; each cell is the accuracy with its n and
//! Wilson 95% interval, and a second table gives tokens and seconds per item.
//! Built from the items of every `nsed bench` run under `runs/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bench::{self, Meta, MethodKey};
use crate::results::csv_text::csv_text;
use crate::results::report::{self, MethodSummary};

use super::{fraud::run_dirs, percent_ci, TablesError};

/// The columns, in order: (dataset, integer-only, header).
const COLUMNS: [(&str, bool, &str); 8] = [
    ("gsm8k", false, "GSM8K"),
    ("math500", true, "MATH-500 integer"),
    ("math500", false, "MATH-500"),
    ("aime25", false, "AIME 2025"),
    ("aime24", false, "AIME 2024"),
    ("humaneval", false, "HumanEval"),
    ("mbpp", false, "MBPP"),
    ("lcb", false, "LCB v1 public"),
];

pub const CODE_SETS: [&str; 3] = ["humaneval", "mbpp", "lcb"];

/// One bench run, summarized over the items it has done.
pub struct BenchRun {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Meta,
    pub summaries: Vec<MethodSummary<MethodKey>>,
}

impl BenchRun {
    pub fn dataset(&self) -> &str {
        &self.meta.fingerprint.dataset
    }

    fn column(&self) -> usize {
        let fp = &self.meta.fingerprint;
        COLUMNS
            .iter()
            .position(|(d, int, _)| *d == fp.dataset && *int == fp.selection.integer_only)
            .unwrap_or(COLUMNS.len())
    }

    pub fn roster(&self) -> &str {
        &self.meta.fingerprint.roster.name
    }

    pub fn items(&self) -> usize {
        self.summaries.iter().map(|s| s.n).max().unwrap_or(0)
    }

    pub fn is_code(&self) -> bool {
        CODE_SETS.contains(&self.dataset())
    }
}

/// Every bench run directly under `<results>/runs` (directories without a
/// `meta.json`, such as `runs/federation`, are not runs).
pub fn read_runs(results: &Path) -> Result<Vec<BenchRun>, TablesError> {
    let mut out = Vec::new();
    for dir in run_dirs(&results.join("runs"))? {
        let meta = Meta::read(&dir)?;
        let records = bench::read_records(&dir)?;
        let ids: Vec<String> = records.iter().map(|r| r.item.clone()).collect();
        let (summaries, _) = bench::summarize(&records, &ids);
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        out.push(BenchRun {
            name,
            dir,
            meta,
            summaries,
        });
    }
    Ok(out)
}

/// Where several runs fill one (roster, column) cell, the one with the most
/// items (then the first by name) is shown; the others are listed apart.
fn chosen<'a>(runs: &[&'a BenchRun]) -> BTreeMap<(String, usize), &'a BenchRun> {
    let mut cells: BTreeMap<(String, usize), &BenchRun> = BTreeMap::new();
    for run in runs {
        let key = (run.roster().to_string(), run.column());
        match cells.get(&key) {
            Some(old) if old.items() >= run.items() => {}
            _ => {
                cells.insert(key, run);
            }
        }
    }
    cells
}

fn roster_rank(name: &str) -> (usize, String) {
    let rank = ["consumer", "high-perf"]
        .iter()
        .position(|r| *r == name)
        .unwrap_or(2);
    (rank, name.to_string())
}

/// Rows of a roster: each model alone, then the baselines, NSED last.
fn method_rank(method: &MethodKey) -> (usize, String) {
    let order = [
        MethodKey::SelfConsistency,
        MethodKey::Plurality,
        MethodKey::Weighted,
        MethodKey::Qv,
        MethodKey::Debate,
        MethodKey::Nsed,
    ];
    match method.single_model() {
        Some(model) => (0, model.to_string()),
        None => (
            1 + order
                .iter()
                .position(|m| m == method)
                .unwrap_or(order.len()),
            method.to_string(),
        ),
    }
}

fn method_label(method: &MethodKey, run: &BenchRun) -> String {
    let b = &run.meta.fingerprint.roster.baselines;
    match method {
        MethodKey::SelfConsistency => format!(
            "self-consistency ({}, k={})",
            b.self_consistency_model
                .as_deref()
                .unwrap_or("strongest model"),
            b.self_consistency_k
        ),
        MethodKey::Plurality => "plurality vote".into(),
        MethodKey::Weighted => "score-weighted vote".into(),
        MethodKey::Qv => "one-round QV".into(),
        MethodKey::Debate => format!("debate ({} rounds)", b.debate_rounds),
        MethodKey::Nsed => "**NSED**".into(),
        MethodKey::Single(model) => format!("{model} alone"),
    }
}

/// The pivot: the accuracy table and the compute table, for the runs whose
/// set passes `include`.
pub fn pivot_markdown(runs: &[BenchRun], include: impl Fn(&BenchRun) -> bool) -> String {
    let runs: Vec<&BenchRun> = runs.iter().filter(|r| include(r)).collect();
    if runs.is_empty() {
        return "No runs yet.\n".into();
    }
    let cells = chosen(&runs);
    let mut columns: Vec<usize> = cells.keys().map(|(_, c)| *c).collect();
    columns.sort();
    columns.dedup();
    let mut rosters: Vec<String> = cells.keys().map(|(r, _)| r.clone()).collect();
    rosters.sort_by_key(|r| roster_rank(r));
    rosters.dedup();

    let header = |what: &str| {
        let names: Vec<String> = columns
            .iter()
            .map(|c| format!("{} {what}", column_name(*c)))
            .collect();
        format!(
            "| roster | method | {} |\n|---|---|{}\n",
            names.join(" | "),
            "---|".repeat(columns.len())
        )
    };
    let mut acc = header("% [95% CI] (n)");
    let mut cost = header("tokens · s per item");
    for roster in &rosters {
        for (method, label) in roster_methods(&cells, roster) {
            let mut a = format!("| {roster} | {label} |");
            let mut c = a.clone();
            for col in &columns {
                let summary = cells
                    .get(&(roster.clone(), *col))
                    .and_then(|run| run.summaries.iter().find(|s| s.method == method));
                match summary {
                    Some(s) => {
                        a.push_str(&format!(
                            " {} ({}) |",
                            percent_ci(s.accuracy, s.ci_low, s.ci_high),
                            s.n
                        ));
                        c.push_str(&format!(
                            " {} · {:.0} s |",
                            tokens(s.prompt_tokens_per_item + s.generated_tokens_per_item),
                            s.seconds_per_item
                        ));
                    }
                    None => {
                        a.push_str(" – |");
                        c.push_str(" – |");
                    }
                }
            }
            acc.push_str(&a);
            acc.push('\n');
            cost.push_str(&c);
            cost.push('\n');
        }
    }
    let mut out = format!(
        "Accuracy in percent with its Wilson 95% interval and n (the items done):\n\n{acc}\n\
         Compute per item (prompt + generated tokens the method spends on its own, and the \
         inference seconds of those calls on this CPU):\n\n{cost}\n"
    );
    out.push_str(&sources_markdown(&runs, &cells));
    out
}

fn column_name(c: usize) -> &'static str {
    COLUMNS.get(c).map_or("other", |(_, _, h)| h)
}

fn tokens(t: f64) -> String {
    if t >= 1000.0 {
        format!("{:.1}k", t / 1000.0)
    } else {
        format!("{t:.0}")
    }
}

/// (method, label) of every row a roster has in any column, in row order.
fn roster_methods(
    cells: &BTreeMap<(String, usize), &BenchRun>,
    roster: &str,
) -> Vec<(MethodKey, String)> {
    let mut methods: Vec<(MethodKey, String)> = Vec::new();
    for ((r, _), run) in cells {
        if r != roster {
            continue;
        }
        for s in &run.summaries {
            if !methods.iter().any(|(m, _)| *m == s.method) {
                methods.push((s.method.clone(), method_label(&s.method, run)));
            }
        }
    }
    methods.sort_by_key(|(m, _)| method_rank(m));
    methods
}

/// Which run each cell comes from, and runs not shown.
fn sources_markdown(runs: &[&BenchRun], cells: &BTreeMap<(String, usize), &BenchRun>) -> String {
    let mut out = String::from("Runs behind the cells:");
    for ((roster, col), run) in cells {
        out.push_str(&format!(
            " {roster} × {}: `runs/{}` ({} items);",
            column_name(*col),
            run.name,
            run.items()
        ));
    }
    out.pop();
    out.push_str(".\n");
    let hidden: Vec<String> = runs
        .iter()
        .filter(|r| !cells.values().any(|c| c.name == r.name))
        .map(|r| format!("`runs/{}` ({} items)", r.name, r.items()))
        .collect();
    if !hidden.is_empty() {
        out.push_str(&format!(
            "Not shown (another run of the same roster and set has more items): {}.\n",
            hidden.join(", ")
        ));
    }
    out
}

/// The paper's claims (docs/reference.md §3) beside ours, with the caveat.
pub fn claims_markdown(runs: &[BenchRun]) -> String {
    let cell = |roster: &str, dataset: &str| {
        let run = runs
            .iter()
            .filter(|r| r.roster() == roster && r.dataset() == dataset)
            .max_by_key(|r| r.items())?;
        let get = |m: MethodKey| run.summaries.iter().find(|s| s.method == m);
        let nsed = get(MethodKey::Nsed)?;
        let best_single = run
            .summaries
            .iter()
            .filter(|s| s.method.single_model().is_some())
            .max_by(|a, b| a.accuracy.total_cmp(&b.accuracy));
        let fmt = |s: &MethodSummary<MethodKey>| format!("{:.1}% (n={})", 100.0 * s.accuracy, s.n);
        Some(format!(
            "NSED {} · best model alone {} · plurality {}",
            fmt(nsed),
            best_single.map_or("–".into(), |s| format!("{} {}", s.method.name(), fmt(s))),
            get(MethodKey::Plurality).map_or("–".into(), fmt)
        ))
    };
    let or_none = |c: Option<String>| c.unwrap_or_else(|| "not run yet".into());
    let gains = gains_over_best_single(runs);
    format!(
        "| claim (NSED paper, docs/reference.md §3) | ours |\n|---|---|\n\
         | AIME 2025: 84% with GPT-OSS-20B + Qwen3-8B + Gemma-3-12B; the same models alone or by majority vote ~54% | consumer roster: {} |\n\
         | AIME 2025: 90% with the high-performance configuration | high-perf roster: {} |\n\
         | LiveCodeBench Hard (v5): 60.2% | LCB v1 easy+medium, high-perf roster: {} |\n\
         | GSM8K (not claimed) | consumer: {}; high-perf: {} |\n\
         | \"15-30% improved reasoning performance over base models through orchestration alone\" | NSED minus the best model alone, in points: {} |\n\n\
         The comparison tests the mechanism, not the headline: the paper's models have 8–20B \
         parameters on 64 GB of GPU memory, ours 0.135–1.5B on a 2-core CPU, two orders of \
         magnitude smaller. At this size most answers are wrong and evaluators are weak judges, \
         so NSED's gain over its baselines, not its absolute accuracy, is what carries over.\n",
        or_none(cell("consumer", "aime25")),
        or_none(cell("high-perf", "aime25")),
        or_none(cell("high-perf", "lcb")),
        or_none(cell("consumer", "gsm8k")),
        or_none(cell("high-perf", "gsm8k")),
        if gains.is_empty() { "no run yet".to_string() } else { gains.join("; ") },
    )
}

/// Per (roster, set), NSED's accuracy minus the best single model's, on the
/// same items (the run with the most items of each pair).
fn gains_over_best_single(runs: &[BenchRun]) -> Vec<String> {
    let all: Vec<&BenchRun> = runs.iter().collect();
    let mut cells: Vec<_> = chosen(&all).into_iter().collect();
    cells.sort_by_key(|((roster, col), _)| (roster_rank(roster), *col));
    cells
        .into_iter()
        .filter_map(|((roster, col), run)| {
            let nsed = run.summaries.iter().find(|s| s.method == MethodKey::Nsed)?;
            let best = run
                .summaries
                .iter()
                .filter(|s| s.method.single_model().is_some())
                .map(|s| s.accuracy)
                .fold(f64::NAN, f64::max);
            best.is_finite().then(|| {
                format!(
                    "{roster} {} {:+.1} (n={})",
                    column_name(col),
                    100.0 * (nsed.accuracy - best),
                    nsed.n
                )
            })
        })
        .collect()
}

/// Every cell, long format.
pub fn csv(runs: &[BenchRun], include: impl Fn(&BenchRun) -> bool) -> String {
    let header: Vec<&str> = ["run", "roster", "dataset", "integer_only"]
        .into_iter()
        .chain(report::SUMMARY_CSV_HEADER)
        .collect();
    let rows = runs.iter().filter(|r| include(r)).flat_map(|run| {
        run.summaries.iter().map(move |s| {
            let run_cells = [
                run.name.to_string(),
                run.roster().to_string(),
                run.dataset().to_string(),
                run.meta.fingerprint.selection.integer_only.to_string(),
            ];
            run_cells
                .into_iter()
                .chain(report::summary_csv_row(s))
                .collect::<Vec<_>>()
        })
    });
    csv_text(&header, rows)
}
