//! `nsed report`: summaries of bench, fraud and federation runs, the results
//! pages rebuilt from the data without rerunning (`tables`), and who
//! produced a table (`stamp`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};

use nsed::bench::code::problems;
use nsed::bench::datasets;
use nsed::engine::registry::{self, Registry};
use nsed::pages::{self, build, Stamp};
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
        match build::build(&a.results, table)? {
            Some(page) => {
                for warning in &page.warnings {
                    eprintln!("warning: {warning}");
                }
                if wanted {
                    let path = build::write_page(&a.results, &page)?;
                    outln!("wrote {}", path.display());
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
        build::write_index(index, &a.results, &pages)?;
        outln!("updated {}", index.display());
        let text = std::fs::read_to_string(index)
            .with_context(|| format!("cannot read {}", index.display()))?;
        if text.contains(pages::FINDINGS_BEGIN) {
            build::write_findings(index, &a.results, &pages)?;
            outln!("updated the findings of {}", index.display());
        }
    }
    for file in &a.findings_into {
        build::write_findings(file, &a.results, &pages)?;
        outln!("updated the findings of {}", file.display());
    }
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
