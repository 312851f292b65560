//! `nsed report`: summaries of bench, fraud and federation runs, the results
//! pages rebuilt from the data without rerunning (`tables`), and who
//! produced a table (`stamp`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use nsed::bench::code::problems;
use nsed::bench::datasets;
use nsed::engine::registry::{self, Registry};
use nsed::pages::{self, deliberation, determinism, federation, fraud, perf, Stamp};
use nsed::results::output::write_atomic;
use nsed::results::provenance;

use crate::commands;

#[derive(Args)]
pub struct TablesArgs {
    /// The results directory (`results`, or a `scripts/reproduce.sh --out` directory).
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// Only these tables, comma-separated: deliberation, code, fraud,
    /// determinism, perf, federation (default: every table with data).
    #[arg(long, value_parser = table_list)]
    pub only: Option<TableList>,
    /// The index page whose section between `<!-- results:begin -->` and
    /// `<!-- results:end -->` gets every table's summary (default: the
    /// results directory's README.md, when it exists).
    #[arg(long)]
    pub readme: Option<PathBuf>,
    /// Also write the findings (generated from the data, one bullet per
    /// table) between `<!-- findings:begin -->` and `<!-- findings:end -->`
    /// of this file, e.g. the project's README.md (repeatable). The index
    /// page gets them too where it has those markers.
    #[arg(long = "findings-into")]
    pub findings_into: Vec<PathBuf>,
}

#[derive(Args)]
pub struct StampArgs {
    /// The results directory; writes `stamps/<table>.json` there.
    #[arg(long, default_value = "results")]
    pub results: PathBuf,
    /// The table the experiments were for: deliberation, code, fraud,
    /// determinism, perf or federation.
    #[arg(long, value_parser = one_table)]
    pub table: String,
    /// The scale the experiments ran at.
    #[arg(long, value_enum)]
    pub scale: Scale,
    /// The command line that ran them.
    #[arg(long)]
    pub command: String,
    /// When they started (default: now).
    #[arg(long)]
    pub started: Option<String>,
    /// Model ids whose sha256 to record, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Dataset names whose file sha256 to record, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub datasets: Vec<String>,
    /// Directory of the datasets (default: $NSED_DATA_DIR, else the repository's datasets/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `scripts/reproduce.sh`'s scales.
#[derive(Clone, Copy, ValueEnum)]
pub enum Scale {
    /// The published tables.
    Full,
    /// A reduced version of every table (~20 minutes on 2 cores).
    Ci,
    /// Every table's pipeline at the smallest size that exercises it (the
    /// test suite's: a few minutes; its figures mean nothing).
    Smoke,
}

impl Scale {
    fn name(self) -> &'static str {
        match self {
            Scale::Full => "full",
            Scale::Ci => "ci",
            Scale::Smoke => "smoke",
        }
    }
}

/// Table names, checked against [`pages::TABLES`] when the arguments are
/// parsed.
#[derive(Clone)]
pub struct TableList(Vec<String>);

fn table_list(text: &str) -> Result<TableList, String> {
    pages::parse_only(text)
        .map(TableList)
        .map_err(|e| e.to_string())
}

fn one_table(text: &str) -> Result<String, String> {
    match pages::parse_only(text)
        .map_err(|e| e.to_string())?
        .as_slice()
    {
        [one] => Ok(one.clone()),
        _ => Err(format!("expected one of {}", pages::TABLES.join(", "))),
    }
}

/// One page: what goes into the index page (title and main tables) and the rest.
struct Built {
    table: &'static str,
    title: String,
    /// What the data say, generated: markdown bullets (empty: the page
    /// has none yet).
    findings: Vec<String>,
    summary: String,
    details: String,
    csv: String,
}

pub fn tables_cmd(a: TablesArgs) -> Result<()> {
    let wanted = match a.only {
        Some(TableList(list)) => list,
        None => pages::TABLES.iter().map(|t| t.to_string()).collect(),
    };
    let index = a.readme.clone().or_else(|| {
        let default = a.results.join("README.md");
        default.is_file().then_some(default)
    });
    // The index gets every table, so then every page is built.
    let mut pages = Vec::new();
    for table in pages::TABLES {
        let wanted = wanted.iter().any(|w| w == table);
        if !wanted && index.is_none() {
            continue;
        }
        match build(&a.results, table)? {
            Some(page) => {
                if wanted {
                    write_page(&a.results, &page)?;
                }
                pages.push(page);
            }
            None if wanted => eprintln!(
                "report tables: no data for `{table}` in {} (scripts/reproduce.sh --only {table})",
                a.results.display()
            ),
            None => {}
        }
    }
    if let Some(index) = &index {
        write_readme(index, &a.results, &pages)?;
        let text = std::fs::read_to_string(index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        if text.contains(pages::FINDINGS_BEGIN) {
            write_findings(index, &a.results, &pages)?;
        }
    }
    for file in &a.findings_into {
        write_findings(file, &a.results, &pages)?;
    }
    Ok(())
}

/// Whether `file` sits in the directory `dir`.
fn sits_in(file: &Path, dir: &Path) -> bool {
    match (file.parent(), dir.canonicalize()) {
        (Some(parent), Ok(dir)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent.canonicalize().is_ok_and(|p| p == dir)
        }
        _ => false,
    }
}

/// Every page's generated findings, one bullet per table with its points
/// nested, between the findings markers of `file`; page links are relative
/// to `file` when it sits in the results directory.
fn write_findings(file: &Path, results: &Path, pages: &[Built]) -> Result<()> {
    let mut block = String::new();
    for page in pages.iter().filter(|p| !p.findings.is_empty()) {
        let page_file = PathBuf::from(format!("{}.md", page.table));
        let link = if sits_in(file, results) {
            page_file
        } else {
            results.join(page_file)
        };
        block.push_str(&format!(
            "- **{}** ([{}]({})):\n",
            page.title,
            link.display(),
            link.display()
        ));
        for f in &page.findings {
            block.push_str(&format!("  - {f}\n"));
        }
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let out = pages::splice_between(
        &text,
        pages::FINDINGS_BEGIN,
        pages::FINDINGS_END,
        &block,
        file,
    )?;
    write_atomic(file, out.as_bytes())?;
    outln!("updated the findings of {}", file.display());
    Ok(())
}

fn build(results: &Path, table: &'static str) -> Result<Option<Built>> {
    Ok(match table {
        "deliberation" | "code" => build_bench(results, table)?,
        "fraud" => build_fraud(results)?,
        "determinism" => build_determinism(results)?,
        "perf" => build_perf(results)?,
        "federation" => build_federation(results)?,
        other => anyhow::bail!("unknown table {other}"),
    })
}

fn write_page(results: &Path, page: &Built) -> Result<()> {
    let body = format!("{}\n{}", page.summary.trim_end(), page.details);
    let md = pages::assemble_with(
        results,
        page.table,
        &page.title,
        &findings_section(&page.findings),
        &body,
    )?;
    let md_path = results.join(format!("{}.md", page.table));
    write_atomic(&md_path, md.as_bytes())?;
    write_atomic(
        &results.join(format!("{}.csv", page.table)),
        page.csv.as_bytes(),
    )?;
    outln!("wrote {}", md_path.display());
    Ok(())
}

/// A page's generated findings as its first section (nothing without any).
fn findings_section(findings: &[String]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let bullets: Vec<String> = findings.iter().map(|f| format!("- {f}")).collect();
    format!(
        "## What the data say\n\nGenerated from this page's data by `nsed report tables` \
         (nothing here is typed by hand, so it follows the data as runs grow).\n\n{}\n\n",
        bullets.join("\n")
    )
}

/// The deliberation page holds every set (the NSED table) and the details of
/// the math runs; the code page the code sets and their runs.
fn build_bench(results: &Path, table: &'static str) -> Result<Option<Built>> {
    let runs = deliberation::read_runs(results)?;
    let code_only = table == "code";
    let include = |r: &deliberation::BenchRun| !code_only || r.is_code();
    if !runs.iter().any(include) {
        return Ok(None);
    }
    let mut summary = deliberation::pivot_markdown(&runs, include);
    if !code_only {
        summary.push_str("\n## The paper's claims beside ours\n\n");
        summary.push_str(&deliberation::claims_markdown(&runs));
    }
    if !code_only {
        summary.push_str(&evidence_sections(results, &runs)?);
    }
    let findings = if code_only {
        Vec::new()
    } else {
        let dev = deliberation::read_runs_in(&results.join("runs").join("dev"))?;
        deliberation::findings(&runs, &dev)
    };
    let mut details = String::from("\n## Per run\n");
    for run in runs.iter().filter(|r| r.is_code() == code_only) {
        details.push('\n');
        details.push_str(&pages::demote_headings(
            &pages::runs::run_summary(&run.dir)?,
            2,
        ));
        details.push('\n');
    }
    Ok(Some(Built {
        findings,
        table,
        title: if code_only {
            "Code benchmarks: NSED against the baselines".into()
        } else {
            "Deliberation: NSED against the baselines".into()
        },
        summary,
        details,
        csv: deliberation::csv(&runs, include),
    }))
}

/// Accuracy against compute for the math runs (figures in
/// `results/deliberation/`), the judges and protocol variants of each result
/// run (in `results/deliberation/<run>/`), then the dev pool's judge table and
/// protocol ablations (runs in `results/runs/dev/`, never part of the tables
/// above; figures in `results/deliberation/dev/`).
fn evidence_sections(results: &Path, runs: &[deliberation::BenchRun]) -> Result<String> {
    let figures = results.join("deliberation");
    let math: Vec<&deliberation::BenchRun> = runs.iter().filter(|r| !r.is_code()).collect();
    let mut s = String::new();
    if !math.is_empty() {
        let dirs: Vec<PathBuf> = math.iter().map(|r| r.dir.clone()).collect();
        let page = pages::runs::budgets_page(&dirs, Some(&figures))?;
        push_block(&mut s, &pages::demote_headings(&page, 1));
    }
    let balloted: Vec<&deliberation::BenchRun> =
        math.into_iter().filter(|r| has_ballots(r)).collect();
    if !balloted.is_empty() {
        push_block(
            &mut s,
            "## Judges and protocol variants of the result runs\n\nThe protocol of the tables \
             is the quadratic vote, fixed on the dev pool before these runs; the other rules are \
             re-tallies of the same round-1 ballots, reported as secondary analyses. Tables and \
             figures in `results/deliberation/<run>/`.",
        );
        for run in balloted {
            let out = figures.join(&run.name);
            let dir = [run.dir.clone()];
            push_block(
                &mut s,
                &format!(
                    "### `{}`: {} · roster `{}` · {} items",
                    run.name,
                    run.dataset(),
                    run.roster(),
                    run.items()
                ),
            );
            if let Some(judges) = pages::runs::judges_section(&dir, Some(&out))? {
                push_block(&mut s, &pages::demote_headings(&judges, 3));
            }
            let protocols = pages::runs::protocols_page(&dir, Some(&out))?;
            push_block(&mut s, &pages::demote_headings(&protocols, 3));
        }
    }
    let dev = dev_runs(&results.join("runs").join("dev"));
    if !dev.is_empty() {
        let out = figures.join("dev");
        push_block(
            &mut s,
            "## The dev pool: judges and protocol variants\n\nRuns in `results/runs/dev/` \
             (GSM8K items 1000-1318, AIME 1983-2024): used to choose the protocol, never reported \
             as results. Tables and figures in `results/deliberation/dev/`.",
        );
        let judges = pages::runs::judges_page(&dev, Some(&out))?;
        push_block(&mut s, &pages::demote_headings(&judges, 2));
        let protocols = pages::runs::protocols_page(&dev, Some(&out))?;
        push_block(&mut s, &pages::demote_headings(&protocols, 2));
    }
    Ok(s)
}

/// Append a markdown block after a blank line, ending it with a newline.
fn push_block(s: &mut String, block: &str) {
    s.push('\n');
    s.push_str(block.trim_end());
    s.push('\n');
}

/// Whether a run holds round-1 ballots (it ran NSED or the one-round votes).
fn has_ballots(run: &deliberation::BenchRun) -> bool {
    use nsed::bench::MethodKey;
    run.summaries.iter().any(|m| {
        matches!(
            m.method,
            MethodKey::Nsed | MethodKey::Qv | MethodKey::Weighted
        )
    })
}

/// The dev runs that have finished an item (one that has not has nothing to
/// show), in name order.
fn dev_runs(root: &Path) -> Vec<PathBuf> {
    let mut dev: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| std::fs::metadata(p.join("items.jsonl")).is_ok_and(|m| m.len() > 0))
                .collect()
        })
        .unwrap_or_default();
    dev.sort();
    dev
}

fn build_fraud(results: &Path) -> Result<Option<Built>> {
    let runs = fraud::read_runs(results)?;
    if runs.is_empty() {
        return Ok(None);
    }
    let summary = format!(
        "**Against the targets** (held-out figures; a missed target says by how much):\n\n{}\n\
         **Held-out detection** (the protocol every detector is reported under):\n\n{}\n\
         **Per-node tests** (a node's samples tested against honest ones, or its token ranks against uniform):\n\n{}\n\
         Gonka-style summary. Its \"held-out\" columns are Gonka's calibration (five 80/20 splits, \
         overlapping: an honest sample is counted in several); \"detected at 0 FP\" is in-sample \
         (the bound is set and judged on the same samples):\n\n{}\n\
         Every metric, in-sample (AUC with its bootstrap 95% interval; the zero-FP bound is the \
         largest honest score, and a fraud sample is caught when it scores above it):\n\n{}",
        fraud::targets_markdown(&runs),
        fraud::held_out_markdown(&runs),
        fraud::per_node_markdown(&runs),
        fraud::summary_markdown(&runs),
        fraud::metrics_markdown(&runs)
    );
    let mut details = String::from("\n## Figures\n\n");
    details.push_str(&fraud::figures_markdown(results, &runs));
    details.push_str("\n## Per run\n");
    for run in &runs {
        details.push('\n');
        details.push_str(&pages::demote_headings(
            &commands::fraud::write_report(run)?,
            2,
        ));
        let economics = run.dir.join("economics.md");
        if economics.exists() {
            let text = std::fs::read_to_string(&economics)
                .with_context(|| format!("cannot read {}", economics.display()))?;
            details.push('\n');
            details.push_str(&pages::demote_headings(&text, 3));
        }
        details.push('\n');
    }
    Ok(Some(Built {
        findings: fraud::findings(&runs),
        table: "fraud",
        title: "Fraud detection: honest vs cheating executors".into(),
        summary,
        details,
        csv: fraud::csv(&runs),
    }))
}

fn build_determinism(results: &Path) -> Result<Option<Built>> {
    let reports = determinism::read_reports(results)?;
    if reports.is_empty() {
        return Ok(None);
    }
    Ok(Some(Built {
        findings: Vec::new(),
        table: "determinism",
        title: "Determinism: identical replays".into(),
        summary: determinism::markdown(&reports),
        details: "\n\"Identical\" is the share of runs whose sha256 of the output ids (or of all \
                  raw logits) equals the most common one; fixed-length generations at \
                  temperature 0.8, seed 42, EOS ignored. The plain sampler (f32 softmax over the \
                  vocabulary, a SplitMix64 uniform) on the same logits is the cost baseline; \
                  end-to-end overhead moves by several percent from run to run on a shared \
                  machine, the sampler-only column is the stable measure.\n"
            .into(),
        csv: determinism::csv(&reports),
    }))
}

fn build_perf(results: &Path) -> Result<Option<Built>> {
    let ms = perf::read(results)?;
    if ms.is_empty() {
        return Ok(None);
    }
    Ok(Some(Built {
        findings: Vec::new(),
        table: "perf",
        title: "Speed: nsed vs llama.cpp, 2 threads".into(),
        summary: perf::markdown(&ms),
        details: format!(
            "\nPer round: `nsed --threads 2 perf` (128-token prompt, then 64 greedy decode \
             steps; median of the repeats after a warm-up) and `llama-bench -t 2 -p 128 -n 64` \
             on the same GGUF file, interleaved; each cell is the median over the rounds. \
             Raw measurements: `perf/raw.jsonl`.\n{}",
            batched_section(results)?
        ),
        csv: perf::csv(&ms),
    }))
}

/// The batched-decode table, when a session of ≥ 3 interleaved rounds exists.
fn batched_section(results: &Path) -> Result<String> {
    let table = pages::batched::markdown(&pages::batched::read(results)?);
    Ok(if table.is_empty() {
        String::new()
    } else {
        format!(
            "\n## Many sequences per pass: nsed vs llama-batched-bench\n\n{table}\n\
             Produced by `NSED_KERNEL=avx2 LLAMACPP_ISA=avx2 scripts/bench-batched.sh` \
             (raw rows with their session: `perf/batched.jsonl`).\n"
        )
    })
}

fn build_federation(results: &Path) -> Result<Option<Built>> {
    let Some(demo) = federation::read(results)? else {
        return Ok(None);
    };
    let log = results
        .join("runs")
        .join("federation")
        .join("remote")
        .join("federation.jsonl");
    let details = if log.exists() {
        format!(
            "\n## Per call and per phase (`nsed report federation {}`)\n\n{}",
            log.display(),
            pages::demote_headings(&commands::federation::report_of(&log)?, 2)
        )
    } else {
        String::new()
    };
    Ok(Some(Built {
        findings: Vec::new(),
        table: "federation",
        title: "Federation: agents as separate processes over NATS".into(),
        summary: federation::markdown(&demo),
        details,
        csv: federation::csv(&demo),
    }))
}

/// The index page's results section: each page's title, stamp and main
/// tables, with a link to the full page (relative to the index page when it
/// sits in the results directory, as `results/README.md` does).
fn write_readme(readme: &Path, results: &Path, pages: &[Built]) -> Result<()> {
    let beside_pages = sits_in(readme, results);
    let mut section = String::new();
    for page in pages {
        let stamp = match Stamp::read(results, page.table)? {
            Some(s) => format!(
                "{}
",
                s.markdown()
            ),
            None => String::new(),
        };
        let page_file = format!("{}.md", page.table);
        let link = if beside_pages {
            PathBuf::from(page_file)
        } else {
            results.join(page_file)
        };
        section.push_str(&format!(
            "### {}\n\n{stamp}{}\n\nDetails, per-run provenance and figures: [{}]({}).\n\n",
            page.title,
            pages::demote_headings(page.summary.trim_end(), 2),
            link.display(),
            link.display(),
        ));
    }
    let text = std::fs::read_to_string(readme)
        .with_context(|| format!("cannot read {}", readme.display()))?;
    let out = pages::splice_readme(&text, &section, readme)?;
    write_atomic(readme, out.as_bytes())?;
    outln!("updated {}", readme.display());
    Ok(())
}

pub fn stamp_cmd(a: StampArgs) -> Result<()> {
    let registry = Registry::load()?;
    let mut models = Vec::new();
    for id in &a.models {
        let m = registry.resolve(id)?;
        models.push((m.id(), m.sha256()?));
    }
    let mut data = Vec::new();
    if !a.datasets.is_empty() {
        let dir = datasets::data_dir(a.data_dir.as_deref())?;
        for name in &a.datasets {
            let file = datasets::file_of(name)
                .or_else(|| problems::file_of(name))
                .with_context(|| format!("unknown dataset `{name}`"))?;
            data.push((name.clone(), registry::sha256_file(&dir.join(file))?));
        }
    }
    let now = provenance::utc_now();
    let stamp = Stamp {
        table: a.table.clone(),
        scale: a.scale.name().to_string(),
        command: a.command,
        started: a.started.unwrap_or_else(|| now.clone()),
        finished: now,
        commit: provenance::commit(),
        cpu: provenance::cpu_name(),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: nsed::engine::qmm::path::active().name().into(),
        nsed_version: env!("CARGO_PKG_VERSION").into(),
        models,
        data,
    };
    let path = Stamp::path(&a.results, &a.table);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    write_atomic(&path, serde_json::to_string_pretty(&stamp)?.as_bytes())?;
    outln!("wrote {}", path.display());
    Ok(())
}

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Rewrite summary.md and summary.csv of a `nsed bench` run directory
    /// from its items.jsonl (also for a run that was killed), and print them.
    Bench {
        /// The run directory (holds meta.json and items.jsonl).
        dir: PathBuf,
    },
    /// Rebuild the results pages (`<table>.md` and `<table>.csv`) from the
    /// data in a results directory, without rerunning anything: the NSED
    /// table (deliberation, code), fraud detection, determinism, speed,
    /// federation. `--readme` also refreshes the README's results section.
    Tables(TablesArgs),
    /// Record who produced a table (command, commit, date, CPU, models and
    /// data sha256) in `<results>/stamps/<table>.json`; called by
    /// `scripts/reproduce.sh` when a table's experiments finish.
    Stamp(StampArgs),
    /// Analyze a `nsed simulate-fraud` run directory (finished or not):
    /// writes report.md, metrics.csv and lengths.csv there and prints them.
    Fraud {
        /// The run directory (holds meta.json and samples.jsonl).
        dir: PathBuf,
    },
    /// How informative each judge is, from the evaluations recorded in
    /// bench runs of math sets: per evaluator model and evaluation mode, the
    /// AUC of its scores for correct vs wrong proposals (95% CI), its
    /// within-call pairwise accuracy, mean score, endorsement and abstention
    /// rates. Measure judges on the dev pool (`bench aime`, `bench gsm8k
    /// --offset 1000`), never on the runs you report.
    Judges(JudgesArgs),
    /// Protocol variants as ablations on identical ballots: round 1 of each
    /// bench run (math sets) re-tallied by the quadratic, linear and
    /// plurality rules, votes per distinct answer, z-scored and ranked
    /// ballots, evaluator weights learned on the other half of the items,
    /// beside the best single model and an oracle. Choose variants on the
    /// dev pool before the test runs.
    Protocols(JudgesArgs),
    /// Accuracy against compute from bench runs (math sets): self-consistency
    /// at k = 1, 2, 4, … of its recorded samples, NSED and debate stopped
    /// after each round, each model alone, with tokens per item; and NSED
    /// against self-consistency at the k of closest tokens (exact McNemar).
    /// `--out` also writes an accuracy-vs-tokens figure per run.
    Budgets(JudgesArgs),
    /// Transport figures of a run with remote agents, from its federation
    /// log: per-call overhead (wall − inference) by action, per-phase added
    /// latency, rejections, exclusions, reconnects.
    Federation {
        /// A bench run directory (its federation.jsonl) or a log file
        /// (`deliberate --audit`).
        path: PathBuf,
    },
}

/// `nsed report judges`.
#[derive(Args, Debug)]
pub struct JudgesArgs {
    /// Bench run directories (each holds meta.json and items.jsonl); their
    /// evaluations are pooled per judge.
    #[arg(required = true, value_name = "RUN")]
    pub runs: Vec<PathBuf>,
    /// Also write the table(s) here (judges: judges.md, judges.csv and
    /// judges-auc.{png,svg}; protocols: protocols.md; budgets:
    /// budgets.md and budgets-<run>.{png,svg}).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub fn run(command: ReportCommand) -> Result<()> {
    match command {
        ReportCommand::Budgets(args) => {
            commands::bench::report_budgets_cmd(&args.runs, args.out.as_deref())
        }
        ReportCommand::Protocols(args) => {
            commands::bench::report_protocols_cmd(&args.runs, args.out.as_deref())
        }
        ReportCommand::Judges(args) => {
            commands::bench::report_judges_cmd(&args.runs, args.out.as_deref())
        }
        ReportCommand::Bench { dir } => commands::bench::report_bench_cmd(&dir),
        ReportCommand::Fraud { dir } => commands::fraud::report_fraud_cmd(&dir),
        ReportCommand::Federation { path } => commands::federation::report_federation_cmd(&path),
        ReportCommand::Tables(args) => tables_cmd(args),
        ReportCommand::Stamp(args) => stamp_cmd(args),
    }
}
