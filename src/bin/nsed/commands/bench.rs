//! `nsed bench` and `nsed deliberate`: argument handling, progress and
//! printing around the library's deliberation and bench modules.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use nsed::answer::AnswerKind;
use nsed::bench::code::{self, CodeContext, LcbFilter};
use nsed::bench::datasets::{self, Selection};
use nsed::bench::{self, CodeSettings, Method};
use nsed::deliberation::local::ModelPool;
use nsed::deliberation::roster::Roster;
use nsed::deliberation::{self, EvalMode, Round, Task, Transcript};
use nsed::federation;
use nsed::pages;
use nsed::sandbox::{Limits, Sandbox};

/// Deliberation overrides shared by `bench` and `deliberate`.
#[derive(Args, Clone)]
pub struct DeliberationArgs {
    /// Roster file: the agents, their models and sampling, deliberation and
    /// baseline settings (relative paths are also looked up in the nsed
    /// source tree).
    #[arg(long, default_value = "configs/consumer.toml")]
    pub config: PathBuf,
    /// Maximum deliberation rounds (overrides the roster).
    #[arg(long, value_parser = crate::bounds::count(1, 100))]
    pub rounds: Option<usize>,
    /// Rounds before the halting rule may stop.
    #[arg(long, value_parser = crate::bounds::count(0, 100))]
    pub min_rounds: Option<usize>,
    /// Winner conviction in [0, 1] needed to stop early.
    #[arg(long, value_parser = crate::bounds::unit)]
    pub effort: Option<f64>,
    /// How evaluators score, for every agent (overrides per-agent settings).
    #[arg(long, value_enum)]
    pub eval_mode: Option<EvalMode>,
    /// New tokens per answer (default: per dataset; 640 for GSM8K, 768 for
    /// MATH-500, 1024 for AIME).
    #[arg(long, value_parser = crate::bounds::tokens())]
    pub max_tokens: Option<usize>,
    /// New tokens per generative evaluation (overrides the roster's
    /// `eval_max_tokens`; a matched-compute knob, and what keeps a smoke run
    /// short).
    #[arg(long, value_parser = crate::bounds::tokens())]
    pub eval_max_tokens: Option<usize>,
    /// Seed of every sampled call and every shuffle (recorded in results).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Agents reached over NATS instead of loaded here: roster names,
    /// comma-separated, or `all`. Each must be running as `nsed agent serve
    /// --name NAME` (same as `transport = "nats"` in the roster).
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    pub remote: Vec<String>,
    /// NATS server of the remote agents (overrides the roster's
    /// `[federation] url`; default nats://127.0.0.1:4222).
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// Seconds a remote agent has for each call, in both phases (overrides
    /// the roster); past it the agent is excluded from the round.
    #[arg(long, value_name = "SECONDS", value_parser = crate::bounds::seconds)]
    pub phase_timeout: Option<f64>,
    /// Job id on the NATS subjects (default: a fresh one).
    #[arg(long)]
    pub job: Option<String>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The set: aime25, aime24, aime (1983-2024), gsm8k, math500; code:
    /// lcb (LiveCodeBench release_v1), humaneval, mbpp (test split 11-510).
    pub set: String,
    #[command(flatten)]
    pub delib: DeliberationArgs,
    /// Methods, comma-separated: nsed, single, self-consistency, plurality,
    /// weighted, qv, debate, or all.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "all")]
    pub method: Vec<Method>,
    /// Self-consistency samples (overrides the roster).
    #[arg(long, value_parser = crate::bounds::count(1, 1000))]
    pub sc_k: Option<usize>,
    /// Run at most N items.
    #[arg(long, value_parser = crate::bounds::count(1, u32::MAX as u64))]
    pub limit: Option<usize>,
    /// Skip the first N items.
    #[arg(long, default_value_t = 0, value_parser = crate::bounds::count(0, u32::MAX as u64))]
    pub offset: usize,
    /// Only these item ids (comma-separated), e.g. gsm8k-0,gsm8k-7 or 2025-I-1.
    #[arg(long, value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Only items whose gold answer is an integer (MATH-500: 311 of 500).
    #[arg(long)]
    pub integer_only: bool,
    /// Directory of the datasets (default: $NSED_DATA_DIR, else the repository's datasets/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub code: CodeArgs,
    /// Run directory (default results/runs/<set>-<roster>): meta.json,
    /// items.jsonl (one line per item, written as it finishes), summary.md,
    /// summary.csv.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out, skipping items already done (the settings
    /// must be the same).
    #[arg(long)]
    pub resume: bool,
    /// Items run at once. Their model calls share forward passes (each
    /// model batches every request in flight), so throughput grows with N
    /// while every record stays what a one-at-a-time run writes; records are
    /// still appended one per item as each finishes, and a killed run
    /// resumes with --resume, losing only the items in flight.
    #[arg(long, default_value_t = 1, value_parser = crate::bounds::count(1, 256))]
    pub parallel: usize,
    /// Sequences per forward pass of each model.
    #[arg(long, default_value_t = 16, value_parser = crate::bounds::count(1, 256))]
    pub max_batch: usize,
    /// KV-cache memory per model, in MiB, shared by the sequences in flight
    /// (each reserves its prompt plus max_tokens); a request that could never
    /// fit fails alone, with a message.
    #[arg(long, default_value_t = 4096, value_parser = crate::bounds::count(16, 1 << 20))]
    pub kv_mib: usize,
}

/// Selection and sandbox of the code sets.
#[derive(Args, Clone)]
pub struct CodeArgs {
    /// lcb: only these difficulties (easy, medium, hard; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub difficulty: Vec<String>,
    /// lcb: only these platforms (atcoder, leetcode, codeforces).
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// lcb: problems from contests on or after this date (YYYY-MM-DD).
    #[arg(long)]
    pub since: Option<String>,
    /// lcb: problems from contests before this date.
    #[arg(long)]
    pub until: Option<String>,
    /// lcb: keep the 17 known-bad problems (flagged) instead of dropping them.
    #[arg(long)]
    pub keep_flawed: bool,
    /// Python for the sandbox (default: the system python3).
    #[arg(long)]
    pub python: Option<PathBuf>,
    #[command(flatten)]
    pub isolation: super::sandbox::IsolationArgs,
}

impl CodeArgs {
    fn filter(&self) -> LcbFilter {
        LcbFilter {
            since: self.since.clone(),
            until: self.until.clone(),
            platforms: self.platform.clone(),
            difficulties: self.difficulty.clone(),
            keep_flawed: self.keep_flawed,
        }
    }
}

/// A code set as bench items, with its grading context.
fn load_code_set(
    name: &str,
    dir: &Path,
    args: &CodeArgs,
) -> Result<(datasets::Dataset, std::sync::Arc<CodeContext>, CodeSettings)> {
    let filter = args.filter();
    let set = code::problems::load(name, dir, &filter)?;
    let sandbox = Sandbox::with_isolation(
        args.python.clone(),
        Limits::default(),
        args.isolation.isolation(),
    )?;
    eprintln!("sandbox: {}", sandbox.protections().summary());
    for why in &sandbox.protections().missing {
        eprintln!("warning: sandbox protection missing: {why}");
    }
    if set.excluded_flawed > 0 {
        eprintln!(
            "{name}: {} known-bad problems excluded (--keep-flawed keeps them)",
            set.excluded_flawed
        );
    }
    let hidden = set.problems.iter().any(|p| !p.hidden_tests().is_empty());
    let graded_on = match (name, hidden) {
        ("lcb", false) => "public tests only (the data has no hidden tests)",
        ("lcb", true) => "public and hidden tests",
        _ => "the official check program",
    };
    let dataset = datasets::Dataset {
        name: name.to_string(),
        kind: AnswerKind::Code,
        file: set.file.clone(),
        sha256: set.sha256.clone(),
        items: set
            .problems
            .iter()
            .map(|p| datasets::Item {
                id: p.id.clone(),
                problem: p.statement.clone(),
                answer: String::new(),
            })
            .collect(),
    };
    let settings = CodeSettings {
        filter,
        graded_on: graded_on.to_string(),
    };
    Ok((dataset, CodeContext::new(set, sandbox), settings))
}

#[derive(Args)]
pub struct DeliberateArgs {
    /// The question.
    pub question: String,
    #[command(flatten)]
    pub delib: DeliberationArgs,
    /// How answers are compared: numeric, aime or expression.
    #[arg(long, value_enum, default_value = "expression")]
    pub kind: KindArg,
    /// Print the whole transcript as JSON instead.
    #[arg(long)]
    pub json: bool,
    /// With remote agents: write the federation log (every accepted signed
    /// reply verbatim, rejections, exclusions, reconnects) to this file.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum KindArg {
    Numeric,
    Aime,
    Expression,
}

impl From<KindArg> for AnswerKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Numeric => AnswerKind::Numeric,
            KindArg::Aime => AnswerKind::Aime,
            KindArg::Expression => AnswerKind::Expression,
        }
    }
}

/// Find a roster: as given, else relative to the nsed source tree.
fn roster_path(p: &Path) -> PathBuf {
    if p.exists() || p.is_absolute() {
        return p.to_path_buf();
    }
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(p);
    if in_tree.exists() {
        in_tree
    } else {
        p.to_path_buf()
    }
}

/// Load the roster and apply the command-line overrides.
fn load_roster(a: &DeliberationArgs) -> Result<Roster> {
    let mut roster = Roster::load(&roster_path(&a.config))?;
    let d = &mut roster.deliberation;
    if let Some(r) = a.rounds {
        d.max_rounds = r;
        d.min_rounds = d.min_rounds.min(r);
    }
    if let Some(r) = a.min_rounds {
        d.min_rounds = r;
    }
    if let Some(e) = a.effort {
        d.effort = e;
    }
    if let Some(t) = a.eval_max_tokens {
        d.eval_max_tokens = t;
    }
    if d.min_rounds == 0 || d.max_rounds < d.min_rounds {
        bail!("need 1 <= --min-rounds <= --rounds");
    }
    if !(0.0..=1.0).contains(&d.effort) {
        bail!("--effort must be in [0, 1]");
    }
    if let Some(m) = a.eval_mode {
        d.evaluation = m;
        roster.agents.iter_mut().for_each(|s| s.evaluation = None);
    }
    roster.make_remote(&a.remote).map_err(anyhow::Error::msg)?;
    let f = &mut roster.federation;
    if let Some(url) = &a.nats {
        f.url = url.clone();
    }
    if let Some(t) = a.phase_timeout {
        f.propose_timeout_s = t;
        f.evaluate_timeout_s = t;
    }
    Ok(roster)
}

pub fn bench_cmd(args: BenchArgs) -> Result<()> {
    let plan = plan_of(&args)?;
    let mut progress = Bar::default();
    let finished = bench::run(plan, &mut progress)?;
    if let Some(bar) = progress.0 {
        bar.finish_and_clear();
    }
    if let Some(stats) = finished.federation {
        eprintln!("federation: {stats}");
    }
    outln!("{}", pages::runs::run_summary(&finished.out)?);
    Ok(())
}

/// The arguments of `nsed bench` as a checked plan: the roster with its
/// overrides, the data set (a code set with its sandbox), the methods and
/// their settings, where the run goes.
fn plan_of(args: &BenchArgs) -> Result<bench::Plan> {
    let mut roster = load_roster(&args.delib)?;
    if let Some(k) = args.sc_k {
        roster.baselines.self_consistency_k = k;
    }
    let dir = datasets::data_dir(args.data_dir.as_deref())?;
    let (dataset, code) = if code::problems::NAMES.contains(&args.set.as_str()) {
        let (dataset, context, settings) = load_code_set(&args.set, &dir, &args.code)?;
        (dataset, Some((context, settings)))
    } else {
        (datasets::load(&args.set, &dir)?, None)
    };
    let settings = bench::settings_from(&roster, &dataset, args.delib.max_tokens, args.delib.seed);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("results/runs/{}-{}", dataset.name, roster.name)));
    Ok(bench::Plan {
        selection: Selection {
            offset: args.offset,
            limit: args.limit,
            ids: args.ids.clone(),
            integer_only: args.integer_only,
        },
        methods: Method::expand(&args.method),
        settings,
        code,
        out,
        resume: args.resume,
        parallel: args.parallel,
        limits: nsed::engine::batch::Limits {
            max_batch: args.max_batch,
            kv_budget_bytes: args.kv_mib << 20,
            ..Default::default()
        },
        job: args.delib.job.clone(),
        command: std::env::args().collect(),
        roster,
        dataset,
    })
}

/// The progress of `nsed bench`: a bar with the running accuracy and rates
/// on a terminal, a line per item otherwise (logs, CI).
#[derive(Default)]
struct Bar(Option<ProgressBar>);

impl bench::Progress for Bar {
    fn note(&mut self, line: &str) {
        match &self.0 {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    fn start(&mut self, total: usize, done: usize) {
        self.0 = Some(progress(total as u64, done as u64));
    }

    fn item(&mut self, s: &bench::runner::ItemStatus) {
        let Some(bar) = &self.0 else { return };
        bar.set_message(format!("{} · {}", s.tally, s.rate));
        bar.inc(1);
        if bar.is_hidden() {
            eprintln!(
                "[{}/{}] {} {} · {}",
                s.done, s.total, s.item, s.tally, s.rate
            );
        }
    }
}

/// `nsed report bench DIR`: the summary of a run directory (finished or not).
pub fn report_bench_cmd(dir: &Path) -> Result<()> {
    outln!("{}", pages::runs::run_summary(dir)?);
    Ok(())
}

/// `nsed report judges`: pool the evaluations of the runs per judge and
/// print (and with `out`, write) the quality table.
pub fn report_judges_cmd(runs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    outln!("{}", pages::runs::judges_page(runs, out)?);
    Ok(())
}

/// `nsed report budgets`: accuracy against tokens per item for every
/// method of each run, the matched-compute comparison and a figure.
pub fn report_budgets_cmd(runs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    outln!("{}", pages::runs::budgets_page(runs, out)?);
    Ok(())
}

/// `nsed report protocols`: each run's round 1 re-tallied under every
/// protocol variant.
pub fn report_protocols_cmd(runs: &[PathBuf], out: Option<&Path>) -> Result<()> {
    outln!("{}", pages::runs::protocols_page(runs, out)?);
    Ok(())
}

fn progress(len: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_position(done);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:25}] {pos}/{len} ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

pub fn deliberate_cmd(args: DeliberateArgs) -> Result<()> {
    if args.question.trim().is_empty() {
        bail!("the question is empty");
    }
    let roster = load_roster(&args.delib)?;
    let fed = bench::runner::connect_federation(&roster, args.delib.job.clone(), &mut |l| {
        eprintln!("{l}")
    })?;
    if let (Some(fed), Some(path)) = (&fed, &args.audit) {
        fed.set_log(path)?;
    }
    let mut pool = ModelPool::default();
    let mut agents = federation::build_agents(&roster, &mut pool, fed.as_ref(), None, |a| a)?;
    let task = Task {
        id: "question".into(),
        problem: args.question.clone(),
        kind: args.kind.into(),
        system: None,
    };
    let settings = bench::settings_from(
        &roster,
        &empty_dataset(),
        args.delib.max_tokens,
        args.delib.seed,
    );
    let names: Vec<String> = agents.iter().map(|a| a.name().to_string()).collect();
    let json = args.json;
    let t = deliberation::deliberate(&mut agents, &task, &settings, |round| {
        if !json {
            print_round(round, &names);
        }
    });
    if json {
        outln!("{}", serde_json::to_string_pretty(&t)?);
    } else {
        print_outcome(&t, &names);
    }
    Ok(())
}

fn empty_dataset() -> datasets::Dataset {
    datasets::Dataset {
        name: String::new(),
        kind: AnswerKind::Expression,
        file: PathBuf::new(),
        sha256: String::new(),
        items: Vec::new(),
    }
}

fn print_round(r: &Round, names: &[String]) {
    outln!("== round {}", r.round);
    for p in &r.proposals {
        outln!(
            "  {:<10} {:<20} answer {:<12} {} tokens, {:.1} s, {}",
            p.agent,
            p.model,
            p.answer.as_deref().unwrap_or("(none)"),
            p.usage.generated_tokens,
            p.usage.seconds,
            p.finish_reason
        );
    }
    for (who, why) in &r.abstentions {
        outln!("  {who:<10} abstained: {why}");
    }
    if r.consensus {
        outln!("  every proposal gives the same answer: consensus, nothing to evaluate");
        return;
    }
    if r.evaluations.is_empty() {
        return;
    }
    let cands: Vec<&str> = r.candidates.iter().map(|&c| names[c].as_str()).collect();
    print_ballots(r, &cands);
    let q = &r.quadratic;
    outln!(
        "  QV score   {}",
        q.scores
            .iter()
            .map(|s| format!("{s:>10.3}"))
            .collect::<String>()
    );
    outln!(
        "  net supp.  {}",
        q.net_support
            .iter()
            .map(|s| format!("{s:>10.3}"))
            .collect::<String>()
    );
    if let Some(w) = r.winner {
        outln!(
            "  winner {} (answer {}), conviction {:.3}",
            cands[w],
            r.proposals[w].answer.as_deref().unwrap_or("none"),
            q.conviction
        );
    }
}

/// The round's ballots: each evaluator's raw weight per candidate, with
/// why a row is missing or special.
fn print_ballots(r: &Round, cands: &[&str]) {
    outln!("  raw weights (rows: evaluator; columns: candidate; · own or abstained)");
    outln!(
        "  {:<10} {}",
        "",
        cands.iter().map(|c| format!("{c:>10}")).collect::<String>()
    );
    for (rec, ballot) in r.evaluations.iter().zip(&r.ballots) {
        let cells: String = ballot
            .iter()
            .map(|w| w.map_or(format!("{:>10}", "·"), |w| format!("{w:>10.0}")))
            .collect();
        let note = match (&rec.evaluation, &rec.error) {
            (Some(e), _) if e.abstained => " (abstained: unreadable)".to_string(),
            (Some(e), _) if e.mode == EvalMode::Logprob => " (logprob)".to_string(),
            (Some(e), _) if e.mode == EvalMode::Generative && e.raw.len() > 1 => {
                " (retried)".to_string()
            }
            (_, Some(err)) => format!(" (failed: {err})"),
            _ => String::new(),
        };
        outln!("  {:<10} {cells}{note}", rec.evaluator);
    }
}

fn print_outcome(t: &Transcript, _names: &[String]) {
    let why = match t.stop {
        deliberation::StopReason::Converged => {
            "the winner's conviction reached the effort threshold"
        }
        deliberation::StopReason::Consensus => "every proposal gave the same answer",
        deliberation::StopReason::MaxRounds => "the round limit was reached",
        deliberation::StopReason::NoQuorum => "fewer than two agents proposed",
    };
    outln!("== stopped after {} round(s): {why}", t.rounds.len());
    match &t.winner {
        Some(w) => outln!(
            "answer: {} (from {}, {})",
            w.answer.as_deref().unwrap_or("(none)"),
            w.agent,
            w.model
        ),
        None => outln!("answer: none"),
    }
    outln!(
        "compute: {} calls, {} prompt + {} generated tokens, {:.1} s of inference",
        t.usage.calls,
        t.usage.prompt_tokens,
        t.usage.generated_tokens,
        t.usage.seconds
    );
}
