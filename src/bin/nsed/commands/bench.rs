//! `nsed bench` and `nsed deliberate`: argument handling, progress and
//! printing around the library's deliberation and bench modules.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use nsed::answer::{AnswerKind, Outcome};
use nsed::bench::code::{self, CodeAgent, CodeContext, LcbFilter};
use nsed::bench::datasets::{self, Selection};
use nsed::bench::{self, CodeSettings, Fingerprint, Harness, ItemRecord, Method};
use nsed::deliberation::calls::{CallLog, CALLS};
use nsed::deliberation::local::{self, LocalAgent, ModelPool};
use nsed::deliberation::roster::{AgentSpec, Roster};
use nsed::deliberation::{self, EvalMode, Round, Task, Transcript};
use nsed::engine::sampling::SamplingParams;
use nsed::federation::{self, Federation};
use nsed::pages;
use nsed::results::provenance::{self, RunInfo};
use nsed::sandbox::{Limits, Sandbox};
use std::sync::Arc;

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

/// The federation of the roster's remote agents, if it has any: connected,
/// every remote agent discovered and its key pinned.
fn connect_federation(roster: &Roster, job: Option<String>) -> Result<Option<Arc<Federation>>> {
    if !roster.has_remote() {
        return Ok(None);
    }
    let fed = Federation::for_roster(roster, job)?;
    eprintln!(
        "federation: job {} on {}; remote agents {}",
        fed.job(),
        fed.url(),
        roster
            .agents
            .iter()
            .filter(|a| !a.transport.is_local())
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Some(fed))
}

pub fn bench_cmd(args: BenchArgs) -> Result<()> {
    let mut roster = load_roster(&args.delib)?;
    if let Some(k) = args.sc_k {
        roster.baselines.self_consistency_k = k;
    }
    let dir = datasets::data_dir(args.data_dir.as_deref())?;
    let (dataset, code, code_settings) = if code::problems::NAMES.contains(&args.set.as_str()) {
        let (d, c, s) = load_code_set(&args.set, &dir, &args.code)?;
        (d, Some(c), Some(s))
    } else {
        (datasets::load(&args.set, &dir)?, None, None)
    };
    let selection = Selection {
        offset: args.offset,
        limit: args.limit,
        ids: args.ids.clone(),
        integer_only: args.integer_only,
    };
    let items = dataset.select(&selection)?;
    if items.is_empty() {
        bail!(
            "no items selected from {} ({} in the set)",
            dataset.name,
            dataset.items.len()
        );
    }
    let methods = Method::expand(&args.method);
    let settings = bench::settings_from(&roster, &dataset, args.delib.max_tokens, args.delib.seed);
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("results/runs/{}-{}", dataset.name, roster.name)));
    let fp = Fingerprint {
        dataset: dataset.name.clone(),
        dataset_sha256: dataset.sha256.clone(),
        selection,
        methods: methods.clone(),
        // Where the agents run does not change the results (tests show it),
        // so a run may be resumed with another server.
        roster: Roster {
            federation: Default::default(),
            ..roster.clone()
        },
        settings: settings.clone(),
        code: code_settings,
        version: Some(bench::CodeVersion::current()),
        stamp: None,
    };
    // Here so that a refusal comes before the models load; the numerics
    // are compared once they are measured (adopt_recorded, below).
    if args.resume {
        bench::check_version(&out, &fp)?;
    }
    let stamp = bench::stamp::measure(&fp.roster, |model| {
        eprintln!(
            "stamp: numerics of {model} ({} probe tokens)",
            bench::stamp::PROBE_TOKENS
        )
    })?;
    let fp = bench::adopt_recorded(
        &out,
        Fingerprint {
            stamp: Some(stamp),
            ..fp
        },
    )?;
    let fed = connect_federation(&roster, args.delib.job.clone())?;
    let limits = nsed::engine::batch::Limits {
        max_batch: args.max_batch,
        kv_budget_bytes: args.kv_mib << 20,
        ..Default::default()
    };
    let mut pool = ModelPool::new(limits);
    // Attached to the run's directory once it is open (below).
    let call_log = Arc::new(CallLog::default());
    let harness = build_harness(
        &roster,
        &methods,
        &mut pool,
        code.clone(),
        fed.as_ref(),
        &call_log,
    )?;
    let mut models = pool.models();
    if let Some(fed) = &fed {
        models.extend(fed.models());
        models.sort();
        models.dedup();
    }
    let info = RunInfo {
        started: provenance::utc_now(),
        commit: provenance::build_commit().to_string(),
        nsed_version: env!("CARGO_PKG_VERSION").to_string(),
        host_cpu: provenance::cpu_name(),
        kernel: nsed::engine::qmm::path::active().name().to_string(),
        threads: rayon::current_num_threads(),
        models,
        command: std::env::args().collect(),
        sandbox: code.as_ref().map(|c| c.sandbox.protections().clone()),
    };
    let run = bench::open_run(&out, &fp, info.clone(), args.resume)?;
    let recovered = call_log.open(&out.join(CALLS), &run.done)?;
    if recovered > 0 {
        eprintln!(
            "{recovered} finished calls of unfinished items read back from {}",
            CALLS
        );
    }
    if let Some(fed) = &fed {
        fed.set_log(&out.join("federation.jsonl"))?;
    }
    let todo: Vec<_> = items
        .iter()
        .filter(|it| !run.done.contains(&it.id))
        .collect();
    eprintln!(
        "bench {}: {} items ({} done before), methods {}, roster {} → {}",
        dataset.name,
        items.len(),
        items.len() - todo.len(),
        methods
            .iter()
            .filter_map(|m| serde_json::to_value(m).ok()?.as_str().map(str::to_string))
            .collect::<Vec<_>>()
            .join(","),
        roster.name,
        out.display()
    );
    let bar = progress(items.len() as u64, (items.len() - todo.len()) as u64);
    let mut tally = Running::default();
    for rec in bench::read_records(&out).unwrap_or_default() {
        tally.add(&rec);
    }
    let sink = Sink {
        run,
        calls: call_log.clone(),
        tally,
        bar,
        total: items.len(),
        started: std::time::Instant::now(),
        engines: pool.engines(),
        tokens_before: 0,
        finished: 0,
        failure: None,
    };
    let sink = std::sync::Mutex::new(sink.with_baseline());
    let queue = std::sync::Mutex::new(todo.into_iter().collect::<std::collections::VecDeque<_>>());
    let job = Job {
        queue: &queue,
        sink: &sink,
        kind: dataset.kind,
        methods: &methods,
        settings: &settings,
    };
    std::thread::scope(|scope| {
        for _ in 1..args.parallel.min(items.len()) {
            let mut pool = pool.clone();
            let (roster, methods, code, fed) = (&roster, &methods, code.clone(), fed.as_ref());
            let call_log = &call_log;
            scope.spawn(move || {
                match build_harness(roster, methods, &mut pool, code, fed, call_log) {
                    Ok(h) => job.work(h),
                    Err(e) => job.fail(e),
                }
            });
        }
        job.work(harness);
    });
    let sink = sink
        .into_inner()
        .map_err(|_| crate::exit::Internal("a bench worker panicked".into()))?;
    if let Some(e) = sink.failure {
        return Err(e);
    }
    let bar = sink.bar;
    bar.finish_and_clear();
    if let Some(fed) = &fed {
        eprintln!(
            "federation: {}",
            serde_json::to_string(&fed.stats()).unwrap_or_default()
        );
    }
    outln!("{}", pages::runs::run_summary(&out)?);
    Ok(())
}

/// The items to run and where their records go, shared by the workers of
/// `bench --parallel`.
#[derive(Clone, Copy)]
struct Job<'a> {
    queue: &'a std::sync::Mutex<std::collections::VecDeque<&'a datasets::Item>>,
    sink: &'a std::sync::Mutex<Sink>,
    kind: AnswerKind,
    methods: &'a [Method],
    settings: &'a deliberation::Settings,
}

impl Job<'_> {
    /// Take items until none are left (or a record could not be written).
    fn work(self, mut harness: Harness) {
        loop {
            let next = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => None,
            };
            let Some(item) = next else { return };
            let rec = bench::run_item(&mut harness, item, self.kind, self.methods, self.settings);
            let Ok(mut sink) = self.sink.lock() else {
                return;
            };
            if let Err(e) = sink.record(&rec) {
                drop(sink);
                self.fail(e);
                return;
            }
        }
    }

    /// Stop every worker after its current item and report `e`.
    fn fail(self, e: anyhow::Error) {
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
        if let Ok(mut sink) = self.sink.lock() {
            sink.failure.get_or_insert(e);
        }
    }
}

/// Where finished items go: the run's journal, the running tally and the
/// progress bar (items/hour and generated tokens/s since the start).
struct Sink {
    run: bench::RunDir,
    calls: Arc<CallLog>,
    tally: Running,
    bar: ProgressBar,
    total: usize,
    started: std::time::Instant,
    engines: Vec<nsed::engine::batch::EngineHandle>,
    tokens_before: u64,
    finished: usize,
    failure: Option<anyhow::Error>,
}

impl Sink {
    fn generated(&self) -> u64 {
        self.engines
            .iter()
            .map(|e| e.tally().generated_tokens)
            .sum()
    }

    fn with_baseline(mut self) -> Self {
        self.tokens_before = self.generated();
        self
    }

    fn record(&mut self, rec: &ItemRecord) -> Result<()> {
        self.run.append(rec)?;
        // Its calls are not needed any more; were this to fail, they would
        // only be read in again and dropped on resume.
        let _ = self.calls.finish(&rec.item);
        self.tally.add(rec);
        self.finished += 1;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let (steps, rows) = self.engines.iter().fold((0, 0), |(s, r), e| {
            let t = e.tally();
            (s + t.steps, r + t.rows)
        });
        let rate = format!(
            "{:.1} items/h · {:.1} tok/s · mean batch {:.1}",
            self.finished as f64 * 3600.0 / secs,
            (self.generated() - self.tokens_before) as f64 / secs,
            rows as f64 / steps.max(1) as f64
        );
        self.bar
            .set_message(format!("{} · {rate}", self.tally.line()));
        self.bar.inc(1);
        if self.bar.is_hidden() {
            eprintln!(
                "[{}/{}] {} {} · {rate}",
                self.bar.position(),
                self.total,
                rec.item,
                self.tally.line()
            );
        }
        Ok(())
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

/// Running accuracy per method, for the progress line.
#[derive(Default)]
struct Running {
    counts: std::collections::BTreeMap<bench::MethodKey, (usize, usize)>,
}

impl Running {
    fn add(&mut self, rec: &ItemRecord) {
        for (m, r) in &rec.results {
            let e = self.counts.entry(m.clone()).or_default();
            e.0 += usize::from(r.outcome == Outcome::Correct);
            e.1 += 1;
        }
    }

    fn line(&self) -> String {
        self.counts
            .iter()
            .map(|(m, (c, n))| format!("{} {c}/{n}", m.name()))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}

fn build_harness(
    roster: &Roster,
    methods: &[Method],
    pool: &mut ModelPool,
    code: Option<std::sync::Arc<CodeContext>>,
    fed: Option<&Arc<Federation>>,
    call_log: &Arc<CallLog>,
) -> Result<Harness> {
    // For code, every proposal is run on the public tests as it is made
    // (inside the memo, so a shared request runs its program once).
    let wrap = |agent: Box<dyn nsed::deliberation::Agent>| -> Box<dyn nsed::deliberation::Agent> {
        match &code {
            Some(ctx) => Box::new(CodeAgent::new(agent, ctx.clone())),
            None => agent,
        }
    };
    let agents = federation::build_agents(roster, pool, fed, Some(call_log), wrap)?;
    let b = &roster.baselines;
    let sc_model = roster.self_consistency_model();
    // Self-consistency runs where the roster runs that model.
    let sc_device = roster
        .agents
        .iter()
        .find(|a| a.model == sc_model)
        .and_then(|a| a.device);
    let sc_spec = AgentSpec {
        name: "self-consistency".into(),
        model: sc_model.to_string(),
        system: roster
            .agents
            .iter()
            .find(|a| a.model == sc_model)
            .and_then(|a| a.system.clone()),
        temperature: b.self_consistency_temperature,
        top_p: 1.0,
        top_k: 0,
        seed_offset: 0,
        evaluation: None,
        transport: Default::default(),
        public_key: None,
        device: sc_device,
    };
    // Loaded only when needed (it may be a model outside the roster); code
    // sets need it to write the probe inputs.
    let sc_rt = if methods.contains(&Method::SelfConsistency) || code.is_some() {
        pool.get_on(sc_model, sc_device)
            .with_context(|| format!("self-consistency model {sc_model}"))?
    } else {
        pool.get_on(&roster.agents[0].model, roster.agents[0].device)?
    };
    let sc_params = SamplingParams {
        temperature: b.self_consistency_temperature,
        ..SamplingParams::default()
    };
    Ok(Harness {
        agents,
        specs: roster.agents.clone(),
        sc: Box::new(local::Memo::logged(
            wrap(Box::new(LocalAgent::new(sc_spec, sc_rt))),
            Some(call_log.clone()),
        )),
        sc_params,
        sc_k: b.self_consistency_k,
        debate_rounds: b.debate_rounds,
        code,
    })
}

pub fn deliberate_cmd(args: DeliberateArgs) -> Result<()> {
    if args.question.trim().is_empty() {
        bail!("the question is empty");
    }
    let roster = load_roster(&args.delib)?;
    let fed = connect_federation(&roster, args.delib.job.clone())?;
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
