//! The NSED table: rows are the methods of each roster (each model alone,
//! self-consistency, plurality, score-weighted and one-round quadratic votes,
//! debate, NSED), columns the sets; each cell is the accuracy with its n and
//! Wilson 95% interval, and a second table gives tokens and seconds per item.
//! Built from the items of every `nsed bench` run under `runs/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::bench::budgets::{self, Point};
use crate::bench::{self, Meta, MethodKey};
use crate::results::csv_text::csv_text;
use crate::results::report::{self, MethodSummary, Paired};

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

/// The code datasets: their runs make the code page, not the deliberation page.
pub const CODE_SETS: [&str; 3] = ["humaneval", "mbpp", "lcb"];

/// One bench run, summarized over the items it has done.
pub struct BenchRun {
    /// The run directory's name under `runs/`.
    pub name: String,
    /// The run's directory.
    pub dir: PathBuf,
    /// The run's `meta.json`: its fingerprint (dataset, roster, settings).
    pub meta: Meta,
    /// Each method's accuracy, tokens and seconds over the finished items.
    pub summaries: Vec<MethodSummary<MethodKey>>,
    /// NSED against every other method on the same items.
    pub pairs: Vec<Paired<MethodKey>>,
    /// Accuracy at each budget (math sets only).
    pub points: Vec<Point>,
    /// The finished items, as read.
    pub records: Vec<bench::ItemRecord>,
}

impl BenchRun {
    /// The run's dataset name (e.g. `gsm8k`).
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

    /// The name of the run's roster.
    pub fn roster(&self) -> &str {
        &self.meta.fingerprint.roster.name
    }

    /// Items done: the largest item count over the methods' summaries.
    pub fn items(&self) -> usize {
        self.summaries.iter().map(|s| s.n).max().unwrap_or(0)
    }

    /// Whether the run's dataset is a code set ([`CODE_SETS`]).
    pub fn is_code(&self) -> bool {
        CODE_SETS.contains(&self.dataset())
    }

    /// Whether the run follows the result protocol of
    /// `scripts/bench-deliberation.sh` (NSED up to 3 rounds, self-consistency
    /// with k ≥ 16 samples); other runs are pilots, which show that the
    /// pipeline works and test nothing.
    pub fn is_result_run(&self) -> bool {
        let fp = &self.meta.fingerprint;
        fp.settings.halting.max_rounds() >= 3 && fp.roster.baselines.self_consistency_k >= 16
    }

    fn summary(&self, method: &MethodKey) -> Option<&MethodSummary<MethodKey>> {
        self.summaries.iter().find(|s| &s.method == method)
    }

    fn pair(&self, method: &MethodKey) -> Option<&Paired<MethodKey>> {
        self.pairs.iter().find(|p| &p.method == method)
    }

    /// The roster's strongest member as the roster names it (its
    /// self-consistency model), else the most accurate model alone.
    fn strongest(&self) -> Option<&MethodSummary<MethodKey>> {
        let named = self
            .meta
            .fingerprint
            .roster
            .baselines
            .self_consistency_model
            .as_deref();
        let singles = || {
            self.summaries
                .iter()
                .filter(|s| s.method.single_model().is_some())
        };
        singles()
            .find(|s| s.method.single_model() == named)
            .or_else(|| singles().max_by(|a, b| a.accuracy.total_cmp(&b.accuracy)))
    }
}

/// Every bench run directly under `<results>/runs` (directories without a
/// `meta.json`, such as `runs/federation`, are not runs).
pub fn read_runs(results: &Path) -> Result<Vec<BenchRun>, TablesError> {
    read_runs_in(&results.join("runs"))
}

/// Every bench run directly under `root`.
pub fn read_runs_in(root: &Path) -> Result<Vec<BenchRun>, TablesError> {
    let mut out = Vec::new();
    for dir in run_dirs(root)? {
        let meta = Meta::read(&dir)?;
        let records = bench::read_records(&dir)?;
        let ids: Vec<String> = records.iter().map(|r| r.item.clone()).collect();
        let (summaries, pairs) = bench::summarize(&records, &ids);
        let points = bench::datasets::kind_of(&meta.fingerprint.dataset)
            .map_or_else(Vec::new, |kind| budgets::points(&records, kind));
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        out.push(BenchRun {
            name,
            dir,
            meta,
            summaries,
            pairs,
            points,
            records,
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

/// What the runs say, generated from them so that it cannot drift: each
/// result run first (its n, NSED against the roster's strongest member,
/// self-consistency and plurality on the same items with exact McNemar
/// p-values, compute with prompt tokens, generated tokens and seconds apart,
/// and the comparison at matched generated tokens), then the pilots as what
/// they show, then the dev pool's headline (never a result). One markdown
/// bullet each.
pub fn findings(runs: &[BenchRun], dev: &[BenchRun]) -> Vec<String> {
    let mut out: Vec<String> = runs
        .iter()
        .filter(|r| r.is_result_run() && !r.is_code())
        .filter_map(result_finding)
        .collect();
    if out.is_empty() {
        out.push("No result run has finished an item yet.".into());
    }
    for run in runs.iter().filter(|r| r.is_result_run() && !r.is_code()) {
        out.extend(judge_finding(&format!("`runs/{}`", run.name), &[run]));
    }
    out.extend(pilot_finding(runs));
    out.extend(dev.iter().filter_map(dev_finding));
    let dev: Vec<&BenchRun> = dev.iter().collect();
    out.extend(judge_finding("the dev pool (pooled)", &dev));
    out
}

/// Which judges carry signal, by their AUC's 95% interval: above 0.5,
/// below 0.5 (pointing the wrong way), or straddling it. Each identical
/// call is counted once across the pooled runs.
fn judge_finding(label: &str, runs: &[&BenchRun]) -> Option<String> {
    let mut judges = bench::judges::Judges::new();
    for run in runs {
        let kind = bench::datasets::kind_of(run.dataset())?;
        bench::judges::collect(
            &mut judges,
            &run.records,
            kind,
            &run.meta.fingerprint.roster,
        );
    }
    let rows = bench::judges::rows(&judges);
    let named = |keep: &dyn Fn(f64, f64) -> bool| -> Vec<String> {
        rows.iter()
            .filter_map(|r| {
                let (a, lo, hi) = (r.auc?, r.auc_low?, r.auc_high?);
                keep(lo, hi).then(|| {
                    let mode = match r.mode {
                        crate::deliberation::EvalMode::Logprob => "by log-probability",
                        _ => "generative",
                    };
                    format!(
                        "{} {mode} {a:.3} ({lo:.3}–{hi:.3}, {} calls)",
                        r.model, r.calls
                    )
                })
            })
            .collect()
    };
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let signal = named(&|lo, _| lo > 0.5);
    let wrong = named(&|_, hi| hi < 0.5);
    let none = named(&|lo, hi| lo <= 0.5 && hi >= 0.5);
    if signal.is_empty() && wrong.is_empty() && none.is_empty() {
        return None;
    }
    Some(format!(
        "**Judges, {label}** (AUC that a correct proposal outscores a wrong one, Hanley-McNeil \
         95% CI; identical calls counted once): signal (CI above 0.5): {}; pointing the wrong way \
         (CI below 0.5): {}; no signal detectable: {}.",
        list(signal),
        list(wrong),
        list(none)
    ))
}

fn share(correct: usize, n: usize) -> String {
    let (lo, hi) = crate::stats::wilson(correct, n);
    format!(
        "{correct}/{n} = {:.1}% ({:.1}–{:.1}%)",
        100.0 * correct as f64 / n.max(1) as f64,
        100.0 * lo,
        100.0 * hi
    )
}

fn p_value(p: f64) -> String {
    if p < 0.001 {
        "p < 0.001".into()
    } else {
        format!("p = {p:.3}")
    }
}

/// How many items a run has done of those planned, and where its selection
/// starts (items finish out of order under `--parallel`, so the done ones
/// need not be the first n).
fn extent(run: &BenchRun) -> String {
    let sel = &run.meta.fingerprint.selection;
    let planned = sel
        .limit
        .map_or(String::new(), |l| format!(" of {l} planned"));
    format!(
        "n = {}{planned}, selection from item {}",
        run.items(),
        sel.offset
    )
}

fn result_finding(run: &BenchRun) -> Option<String> {
    let nsed = run.summary(&MethodKey::Nsed)?;
    let mut text = format!(
        "**{}, {} roster** (result run `runs/{}`, {}): NSED {}",
        column_name(run.column()),
        run.roster(),
        run.name,
        extent(run),
        share(nsed.correct, nsed.n)
    );
    let mut significant = Vec::new();
    let comparators = [
        run.strongest().map(|s| s.method.clone()),
        Some(MethodKey::SelfConsistency),
        Some(MethodKey::Plurality),
    ];
    for method in comparators.into_iter().flatten() {
        let (Some(s), Some(p)) = (run.summary(&method), run.pair(&method)) else {
            continue;
        };
        let label = method_label(&method, run);
        text.push_str(&format!(
            "; {label} {} (NSED right only {}, it only {}, exact McNemar {})",
            share(s.correct, s.n),
            p.reference_only,
            p.method_only,
            p_value(p.p_value)
        ));
        if p.p_value < 0.05 {
            let side = if p.reference_only > p.method_only {
                "above"
            } else {
                "below"
            };
            significant.push(format!("NSED {side} {label}"));
        }
    }
    text.push('.');
    if let Some(sc) = run.summary(&MethodKey::SelfConsistency) {
        text.push_str(&format!(
            " Per item, NSED against self-consistency: {:.0} against {:.0} prompt tokens, {:.0} \
             against {:.0} generated ({:.1}x), {:.0} s against {:.0} s ({:.1}x).",
            nsed.prompt_tokens_per_item,
            sc.prompt_tokens_per_item,
            nsed.generated_tokens_per_item,
            sc.generated_tokens_per_item,
            sc.generated_tokens_per_item / nsed.generated_tokens_per_item.max(1.0),
            nsed.seconds_per_item,
            sc.seconds_per_item,
            sc.seconds_per_item / nsed.seconds_per_item.max(1e-9),
        ));
    }
    if let Some(m) = budgets::matched_generated(&run.points) {
        text.push_str(&format!(
            " At matched generated tokens (self-consistency k = {}: {:.0} generated per item \
             against NSED's {:.0}): NSED {}/{}, self-consistency {}/{}, {}.",
            m.k,
            m.sc_tokens,
            m.nsed_tokens,
            m.nsed_correct,
            m.n,
            m.sc_correct,
            m.n,
            p_value(m.p_value)
        ));
    }
    if significant.is_empty() {
        text.push_str(" No difference is significant at this n (5%).");
    } else {
        text.push_str(&format!(" Significant at 5%: {}.", significant.join("; ")));
    }
    Some(text)
}

/// The pilots: NSED against the roster's strongest member on the same
/// items, said as what it is (a tie, or by how many items).
fn pilot_finding(runs: &[BenchRun]) -> Option<String> {
    let cells: Vec<String> = runs
        .iter()
        .filter(|r| !r.is_result_run())
        .filter_map(|run| {
            let nsed = run.summary(&MethodKey::Nsed)?;
            let best = run.strongest()?;
            let relation = match nsed.correct.cmp(&best.correct) {
                std::cmp::Ordering::Equal => "a tie".to_string(),
                std::cmp::Ordering::Greater => {
                    format!("NSED ahead by {} items", nsed.correct - best.correct)
                }
                std::cmp::Ordering::Less => {
                    format!("NSED behind by {} items", best.correct - nsed.correct)
                }
            };
            Some(format!(
                "{} {} (`runs/{}`): NSED {}/{} against {} {}/{}, {relation}",
                run.roster(),
                column_name(run.column()),
                run.name,
                nsed.correct,
                nsed.n,
                best.method.name(),
                best.correct,
                best.n
            ))
        })
        .collect();
    (!cells.is_empty()).then(|| {
        format!(
            "**Pilots** (2 rounds, self-consistency k = 5; they show the pipeline works and test \
             nothing): {}.",
            cells.join("; ")
        )
    })
}

/// The dev pool's round-1 vote against the strongest member (the protocol
/// was chosen on these items; never a result).
fn dev_finding(run: &BenchRun) -> Option<String> {
    let vote = run
        .points
        .iter()
        .find(|p| p.family == "nsed" && p.budget == 1)?;
    let best = run.strongest()?;
    let model = best.method.single_model()?;
    let single = run
        .points
        .iter()
        .find(|p| p.family == format!("single:{model}"))?;
    let (votes, alone) = budgets::on_shared_items(vote, single);
    let pair = report::paired(((), &votes), ((), &alone));
    let right = |v: &[bool]| v.iter().filter(|&&x| x).count();
    Some(format!(
        "**Dev pool** (`runs/dev/{}`, {} {} roster, {}, {} evaluation; used to choose the \
         protocol, never a result): round-1 quadratic vote {} against {model} alone {} ({} vs {} \
         discordant items, exact McNemar {}).",
        run.name,
        column_name(run.column()),
        run.roster(),
        extent(run),
        match run.meta.fingerprint.settings.mode {
            crate::deliberation::EvalMode::Logprob => "log-probability",
            _ => "generative",
        },
        share(right(&votes), pair.n),
        share(right(&alone), pair.n),
        pair.reference_only,
        pair.method_only,
        p_value(pair.p_value)
    ))
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
