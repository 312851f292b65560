//! The `nsed` command line: argument parsing and output formatting only; the
//! work is done by the library.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` for results on standard output that survives a reader who has
/// gone away (`nsed verify … | head`): instead of panicking on EPIPE, further
/// output is dropped and the command runs to its end, so its exit code (a
/// verdict: 1 for fraud or a failed program) and its result files stand.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

/// Set once standard output's reader has gone: nothing more is written there.
static STDOUT_CLOSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn write_stdout(line: std::fmt::Arguments) {
    if stdout_closed() {
        return;
    }
    let mut out = std::io::stdout().lock();
    let written = out.write_fmt(line).and_then(|()| out.write_all(b"\n"));
    note_written(written);
}

fn stdout_closed() -> bool {
    STDOUT_CLOSED.load(std::sync::atomic::Ordering::Relaxed)
}

/// A closed pipe silences standard output (the work goes on); another write
/// error (a full disk behind a redirect) stops the run with exit 2.
fn note_written(result: std::io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            STDOUT_CLOSED.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        Err(e) => {
            eprintln!("error: cannot write to standard output: {e}");
            std::process::exit(2);
        }
    }
}

mod bench_cli;
mod bounds;
mod federation_cli;
mod fraud_cli;
mod sandbox_cli;
mod tables_cli;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};

use nsed::artifact::{Artifact, Request};
use nsed::chat::Message;
use nsed::generate::{generate, GenerateRequest, Generation};
use nsed::gguf::Gguf;
use nsed::perplexity::perplexity;
use nsed::registry::{models_dir, sha256_file, Registry};
use nsed::runtime::Runtime;
use nsed::sampling::SamplingParams;

#[derive(Parser)]
#[command(
    name = "nsed",
    version,
    about = "Deliberation and verifiable-inference experiments on small GGUF models, on the CPU",
    long_about = "nsed loads small open-weight GGUF models with candle and runs NSED \
                  deliberation, baselines and verification experiments.\n\n\
                  Models are registry ids (`nsed models list`) fetched by \
                  scripts/fetch-models.sh into $NSED_MODELS (default ~/.cache/nsed/models), \
                  or paths to any GGUF file.\n\n\
                  The quantized kernels are chosen at start-up from the CPU's features \
                  (AVX-512 VNNI, AVX-VNNI, AVX2, else portable); NSED_KERNEL=auto|portable|\
                  avx2|avxvnni|avx512vnni forces one. Every path computes the same bits.\n\n\
                  Exit codes: 0 ok, 1 negative verdict, 2 usage or input error."
)]
struct Cli {
    /// Worker threads for the tensor kernels (default: $RAYON_NUM_THREADS or all cores).
    /// `nsed determinism` takes a comma-separated list (e.g. 1,2) and compares them.
    /// Results are bit-identical whatever the count.
    #[arg(long, global = true, value_delimiter = ',', value_name = "N", value_parser = bounds::threads)]
    threads: Vec<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, inspect and check the packaged models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Print the token ids of a text.
    Tokenize(TokenizeArgs),
    /// Generate text (streams to the terminal; --json for ids and log-probabilities).
    Generate(GenerateArgs),
    /// Perplexity of a text file with llama.cpp's chunking convention.
    Perplexity(PerplexityArgs),
    /// Prefill and decode speed (tokens per second).
    Perf(PerfArgs),
    /// Verify an inference artifact: teacher-forced replay, every published
    /// distance metric, seed-bound sampling and activation-proof checks.
    /// Exit 0 pass, 1 fraud, 2 input error.
    Verify(VerifyArgs),
    /// Generate N times per thread count: share of identical output and logits
    /// hashes, and the cost of the seed-bound sampler vs a plain one.
    Determinism(DeterminismArgs),
    /// Run NSED and the baselines (single models, self-consistency, plurality,
    /// score-weighted and one-round quadratic votes, debate) on a math or
    /// code set, same items and token accounting; one JSON line per item,
    /// resumable, then a summary with Wilson intervals and paired McNemar
    /// tests. Code proposals are run on the public tests in the sandbox.
    Bench(bench_cli::BenchArgs),
    /// Deliberate on one question and print the transcript: each round's
    /// answers, the score matrix, the quadratic votes, the winner and why it
    /// stopped.
    Deliberate(bench_cli::DeliberateArgs),
    /// Fraud experiments: honest (Q8_0) and cheating executors (int4 and
    /// other re-quantizations, a substituted smaller model, a prefill-
    /// laundered proof) answer the same prompts; the validator (f32
    /// reference) replays each artifact and every metric is recorded.
    /// Resumable; ends with AUCs, detection rates, Gonka's calibration and
    /// length curves.
    SimulateFraud(fraud_cli::SimulateFraudArgs),
    /// Run untrusted Python as the code benchmarks do: `python3 -I` in a
    /// fresh directory with rlimits, a private uid (as root), no network and
    /// a private /tmp where the kernel allows, a wall-clock kill.
    #[command(subcommand)]
    Sandbox(sandbox_cli::SandboxCommand),
    /// Summaries of finished or partial runs.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Serve a model as a deliberation agent over NATS, or make its key.
    #[command(subcommand)]
    Agent(federation_cli::AgentCommand),
    /// List the agents live on a NATS server (name, model, sha256, key,
    /// load); --ping measures transport latency and throughput.
    Agents(federation_cli::AgentsArgs),
}

#[derive(Subcommand)]
enum ReportCommand {
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
    Tables(tables_cli::TablesArgs),
    /// Record who produced a table (command, commit, date, CPU, models and
    /// data sha256) in `<results>/stamps/<table>.json`; called by
    /// `scripts/reproduce.sh` when a table's experiments finish.
    Stamp(tables_cli::StampArgs),
    /// Analyze a `nsed simulate-fraud` run directory (finished or not):
    /// writes report.md, metrics.csv and lengths.csv there and prints them.
    Fraud {
        /// The run directory (holds meta.json and samples.jsonl).
        dir: PathBuf,
    },
    /// Transport figures of a run with remote agents, from its federation
    /// log: per-call overhead (wall − inference) by action, per-phase added
    /// latency, rejections, exclusions, reconnects.
    Federation {
        /// A bench run directory (its federation.jsonl) or a log file
        /// (`deliberate --audit`).
        path: PathBuf,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// The registry: id, size, whether it is downloaded, and where.
    List {
        /// Also check each present file's sha256 (reads every file).
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        json: bool,
    },
    /// GGUF metadata, tensor types and parameter count of a model (id or path).
    Inspect {
        model: String,
        /// List every tensor.
        #[arg(long)]
        tensors: bool,
    },
}

#[derive(Args)]
struct TokenizeArgs {
    /// Registry id or path to a GGUF file.
    #[arg(long, short)]
    model: String,
    /// The text to tokenize.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    text: Option<String>,
    /// Read the text from a file (must be UTF-8).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Parse special-token strings such as <|im_start|> into their ids.
    #[arg(long)]
    special: bool,
    /// Never add BOS (by default BOS is added where the model asks for it).
    #[arg(long)]
    no_bos: bool,
    /// Print ids and token strings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct GenerateArgs {
    /// Registry id or path to a GGUF file.
    #[arg(long, short)]
    model: String,
    /// The user message (rendered with the model's chat template unless --raw).
    #[arg(
        long,
        short,
        conflicts_with = "prompt_file",
        required_unless_present = "prompt_file"
    )]
    prompt: Option<String>,
    /// Read the prompt from a file (must be UTF-8).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// A system message (otherwise the template's default, if any).
    #[arg(long)]
    system: Option<String>,
    /// Feed the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Seed of the sampler (recorded; with --inference-id it keys the RNG).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inference id bound into the sampling seed.
    #[arg(long, default_value = "")]
    inference_id: String,
    /// 0 is greedy.
    #[arg(long, short, default_value_t = 0.0, value_parser = bounds::temperature)]
    temperature: f64,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0, value_parser = bounds::count(0, bounds::MAX_TOKENS))]
    top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0)]
    top_p: f64,
    /// Drop tokens below min-p times the top probability (0: off).
    #[arg(long, default_value_t = 0.0)]
    min_p: f64,
    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long, default_value_t = 1.0)]
    repeat_penalty: f32,
    /// Maximum new tokens.
    #[arg(long, short = 'n', default_value_t = 256, value_parser = bounds::tokens())]
    max_tokens: usize,
    /// Stop when the output contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Record the K most likely tokens and their log-probabilities per position.
    #[arg(long, default_value_t = 0, value_parser = bounds::count(0, 256))]
    top_logprobs: usize,
    /// Print one JSON document instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Also write the JSON document to this file (atomically: complete or absent).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write a verifiable inference artifact (nsed.artifact/v1; see docs/artifact.md).
    /// Use with --top-logprobs K so validators can compare distributions.
    #[arg(long)]
    artifact: Option<PathBuf>,
    /// Add a TOPLOC-style activation proof (258 bytes per 32 tokens) to the artifact.
    #[arg(long, requires = "artifact")]
    proof: bool,
}

#[derive(Args)]
struct VerifyArgs {
    /// The executor's artifact: nsed.artifact/v1 or an OpenAI/vLLM chat.completion with logprobs.
    #[arg(long, short)]
    artifact: PathBuf,
    /// Compare with a second artifact (the validator's replay) instead of running a model.
    #[arg(long, conflicts_with_all = ["model", "replay", "request"])]
    against: Option<PathBuf>,
    /// Validator model (registry id or GGUF path); default: the model the artifact names.
    #[arg(long, short)]
    model: Option<String>,
    /// The request behind an OpenAI artifact (nsed request JSON or an OpenAI chat request).
    #[arg(long)]
    request: Option<PathBuf>,
    /// Also regenerate with the artifact's request and seed and compare output ids byte for byte.
    #[arg(long)]
    replay: bool,
    /// Override a metric's threshold: NAME=VALUE or NAME=off (repeatable). Defaults
    /// (docs/reference.md §6.1): gonka_similarity > 0.99, gonka_distance2 <= 0.0357,
    /// stage2_mae <= 0.25; the others (perplexity_score, topk_jaccard, argmax_agreement,
    /// js_divergence, kl_divergence) are reported only unless given one here.
    #[arg(long = "threshold", value_name = "NAME=VALUE")]
    thresholds: Vec<String>,
    /// Largest share of re-derived sampled tokens that may differ for an honest verdict.
    #[arg(long, default_value_t = 0.01, value_parser = bounds::unit)]
    seed_tolerance: f64,
    /// Print the per-position table.
    #[arg(long)]
    positions: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file (atomically).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct DeterminismArgs {
    /// Registry id or path to a GGUF file.
    #[arg(long, short)]
    model: String,
    /// Generations per thread count (each also run once with the plain sampler for timing).
    #[arg(long, default_value_t = 10, value_parser = bounds::count(1, 10_000))]
    runs: usize,
    /// Thread counts to compare: the global `--threads 1,2` (default 1,2); each
    /// count runs in its own process.
    #[arg(skip = vec![1, 2])]
    thread_counts: Vec<usize>,
    /// Tokens per generation.
    #[arg(long, short = 'n', default_value_t = 64, value_parser = bounds::tokens())]
    max_tokens: usize,
    #[arg(long, short, default_value_t = 0.8, value_parser = bounds::temperature)]
    temperature: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value = "determinism")]
    inference_id: String,
    #[arg(long, default_value = "Explain in two sentences why the sky is blue.")]
    prompt: String,
    #[arg(long)]
    json: bool,
    /// Internal: run one thread count in this process and print JSON.
    #[arg(long, hide = true)]
    worker: bool,
}

#[derive(Args)]
struct PerplexityArgs {
    #[arg(long, short)]
    model: String,
    /// UTF-8 text file.
    #[arg(long, short)]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512, value_parser = bounds::count(2, bounds::MAX_TOKENS))]
    ctx: usize,
    /// Score only the first N chunks.
    #[arg(long, value_parser = bounds::count(1, u32::MAX as u64))]
    chunks: Option<usize>,
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file (atomically: complete or absent).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Args)]
struct PerfArgs {
    #[arg(long, short)]
    model: String,
    /// Prompt length for the prefill measurement.
    #[arg(long, default_value_t = 128, value_parser = bounds::tokens())]
    prompt_tokens: usize,
    /// Greedy decode steps for the decode measurement.
    #[arg(long, default_value_t = 64, value_parser = bounds::tokens())]
    gen_tokens: usize,
    /// Measured repetitions (after one warm-up); the median is reported.
    #[arg(long, default_value_t = 3, value_parser = bounds::count(1, 1000))]
    repeats: usize,
    /// Instead: verification cost vs generation for these output lengths
    /// (comma-separated), e.g. 64,256,1024. The executor generates N tokens
    /// with top-5 logprobs; the validator replays them in one teacher-forced pass.
    #[arg(long, value_delimiter = ',', value_name = "N,...", value_parser = bounds::tokens())]
    verify_cost: Vec<usize>,
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Err(e) = nsed::qmm::path::init_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let is_determinism = matches!(cli.command, Command::Determinism(_));
    if cli.threads.len() > 1 && !is_determinism {
        eprintln!("error: --threads takes one count (a list only for `nsed determinism`)");
        return ExitCode::from(2);
    }
    if let Some(&n) = cli.threads.first() {
        // Read by candle's CPU kernels and rayon's pool before first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // `agent serve` drains on SIGTERM/SIGINT itself; every other command
    // removes its half-written temporary files when interrupted.
    let serves = matches!(
        cli.command,
        Command::Agent(federation_cli::AgentCommand::Serve(_))
    );
    if !serves {
        if let Err(e) = nsed::output::remove_partials_on_signal() {
            eprintln!("warning: no signal handler (an interrupt may leave a .partial file): {e}");
        }
    }
    let command = match cli.command {
        Command::Determinism(mut args) if !cli.threads.is_empty() => {
            args.thread_counts = cli.threads.clone();
            Command::Determinism(args)
        }
        other => other,
    };
    match run_in_pool(command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run the command ON a worker of a pool of exactly the kernel thread count.
/// Otherwise the main thread's serial work (norms, attention, sampling) would
/// compete for the cores with the pool's workers, which spin and yield
/// between kernels: on 2 cores that cost decode about 40% of its speed.
fn run_in_pool(command: Command) -> Result<ExitCode> {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| run(command)),
        Err(_) => run(command),
    }
}

fn run(command: Command) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Verify(args) => verify_cmd(args),
        Command::Determinism(args) => done(determinism_cmd(args)),
        Command::Sandbox(command) => sandbox_cli::sandbox_cmd(command),
        command => done(run_simple(command)),
    }
}

fn run_simple(command: Command) -> Result<()> {
    match command {
        Command::Models(ModelsCommand::List { verify, json }) => models_list(verify, json),
        Command::Models(ModelsCommand::Inspect { model, tensors }) => {
            models_inspect(&model, tensors)
        }
        Command::Tokenize(args) => tokenize(args),
        Command::Bench(args) => bench_cli::bench_cmd(args),
        Command::Deliberate(args) => bench_cli::deliberate_cmd(args),
        Command::Report(ReportCommand::Bench { dir }) => bench_cli::report_bench_cmd(&dir),
        Command::Report(ReportCommand::Fraud { dir }) => fraud_cli::report_fraud_cmd(&dir),
        Command::Report(ReportCommand::Federation { path }) => {
            federation_cli::report_federation_cmd(&path)
        }
        Command::Report(ReportCommand::Tables(args)) => tables_cli::tables_cmd(args),
        Command::Report(ReportCommand::Stamp(args)) => tables_cli::stamp_cmd(args),
        Command::SimulateFraud(args) => fraud_cli::simulate_fraud_cmd(args),
        Command::Generate(args) => generate_cmd(args),
        Command::Perplexity(args) => perplexity_cmd(args),
        Command::Perf(args) => perf(args),
        Command::Agent(command) => federation_cli::agent_cmd(command),
        Command::Agents(args) => federation_cli::agents_cmd(args),
        Command::Verify(_) | Command::Determinism(_) | Command::Sandbox(_) => {
            unreachable!("dispatched in run")
        }
    }
}

fn read_utf8(path: &Path, what: &str) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} {} is not valid UTF-8 (first bad byte at offset {}): convert it to UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// A text given inline or as a file (clap guarantees one of the two).
fn inline_or_file(inline: &Option<String>, file: &Option<PathBuf>, what: &str) -> Result<String> {
    match (inline, file) {
        (Some(text), _) => Ok(text.clone()),
        (None, Some(path)) => read_utf8(path, what),
        (None, None) => bail!("give the text inline or as a {what}"),
    }
}

fn models_list(verify: bool, json: bool) -> Result<()> {
    let registry = Registry::load()?;
    let mut rows = Vec::new();
    for m in &registry.models {
        let path = registry.path_of(m);
        let size = std::fs::metadata(&path).map(|md| md.len()).ok();
        let status = match size {
            None => "missing".to_string(),
            Some(s) if s != m.bytes => format!("wrong size ({s} bytes)"),
            Some(_) if verify => match sha256_file(&path)? == m.sha256 {
                true => "present, sha256 ok".into(),
                false => "present, SHA256 MISMATCH".into(),
            },
            Some(_) => "present".into(),
        };
        rows.push(serde_json::json!({
            "id": m.id, "name": m.name, "maker": m.maker, "arch": m.arch, "quant": m.quant,
            "bytes": m.bytes, "status": status, "path": path, "hf_repo": m.hf_repo,
        }));
    }
    if json {
        outln!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    outln!("models directory: {}", models_dir().display());
    outln!(
        "{:<20} {:<14} {:<8} {:<8} {:>9}  {:<18} path",
        "id",
        "maker",
        "arch",
        "quant",
        "MB",
        "status"
    );
    for (m, r) in registry.models.iter().zip(&rows) {
        outln!(
            "{:<20} {:<14} {:<8} {:<8} {:>9.1}  {:<18} {}",
            m.id,
            m.maker,
            m.arch,
            m.quant,
            m.bytes as f64 / 1e6,
            r["status"].as_str().unwrap_or(""),
            registry.path_of(m).display()
        );
    }
    Ok(())
}

fn models_inspect(spec: &str, list_tensors: bool) -> Result<()> {
    let resolved = Registry::load()?.resolve(spec)?;
    let gguf = Gguf::open(&resolved.path)?;
    outln!(
        "file: {} ({} bytes, GGUF v{})",
        gguf.path.display(),
        gguf.file_size,
        gguf.version
    );
    if let Some(e) = &resolved.entry {
        outln!(
            "registry: {} ({} by {}), sha256 {} verified",
            e.id,
            e.name,
            e.maker,
            e.sha256
        );
    }
    outln!(
        "parameters: {} ({:.1} M)",
        gguf.parameter_count(),
        gguf.parameter_count() as f64 / 1e6
    );
    let kernel = nsed::qmm::path::active();
    let paths: Vec<&str> = nsed::qmm::path::available()
        .iter()
        .map(|p| p.name())
        .collect();
    outln!(
        "kernel: {kernel} (this CPU has: {}; {}=NAME forces one)",
        paths.join(", "),
        nsed::qmm::path::KERNEL_ENV
    );
    let mut by_type: std::collections::BTreeMap<String, (usize, usize, &str)> = Default::default();
    for t in gguf.tensors.values() {
        let runs_on = if t.dims.len() < 2 {
            "vector (norms, biases)"
        } else if nsed::qmm::Format::from_ggml(t.dtype).is_some() {
            "qmm"
        } else {
            "fallback: candle's kernel"
        };
        let e = by_type
            .entry(format!("{:?}", t.dtype))
            .or_insert((0, 0, runs_on));
        e.0 += 1;
        e.1 += t.n_elements();
        if runs_on != "vector (norms, biases)" {
            e.2 = runs_on;
        }
    }
    outln!("tensor types:");
    for (ty, (count, elems, runs_on)) in &by_type {
        let runs_on = if *runs_on == "qmm" {
            format!("qmm ({kernel})")
        } else {
            runs_on.to_string()
        };
        outln!("  {ty:<6} {count:>4} tensors {elems:>12} parameters  {runs_on}");
    }
    outln!("metadata:");
    for (k, v) in &gguf.metadata {
        outln!("  {k} = {}", v.summary());
    }
    if list_tensors {
        outln!("tensors:");
        for t in gguf.tensors.values() {
            outln!(
                "  {:<40} {:<6} {:?}",
                t.name,
                format!("{:?}", t.dtype),
                t.dims
            );
        }
    }
    Ok(())
}

fn tokenize(args: TokenizeArgs) -> Result<()> {
    let text = inline_or_file(&args.text, &args.file, "text file")?;
    let resolved = Registry::load()?.resolve(&args.model)?;
    let gguf = Gguf::open(&resolved.path)?;
    let tok = nsed::tokenizer::Tokenizer::from_gguf(&gguf)?;
    let ids = tok.encode(&text, !args.no_bos, args.special);
    if args.json {
        let tokens = ids
            .iter()
            .map(|&id| tok.token_string(id))
            .collect::<Result<Vec<_>, _>>()?;
        outln!("{}", serde_json::json!({ "ids": ids, "tokens": tokens }));
    } else {
        let strs: Vec<String> = ids.iter().map(u32::to_string).collect();
        outln!("{}", strs.join(" "));
    }
    Ok(())
}

fn generate_cmd(args: GenerateArgs) -> Result<()> {
    let prompt = inline_or_file(&args.prompt, &args.prompt_file, "prompt file")?;
    for (name, ok) in [
        (
            "--top-p must be in (0, 1]",
            args.top_p > 0.0 && args.top_p <= 1.0,
        ),
        (
            "--min-p must be in [0, 1)",
            (0.0..1.0).contains(&args.min_p),
        ),
        (
            "--repeat-penalty must be a finite number > 0",
            args.repeat_penalty.is_finite() && args.repeat_penalty > 0.0,
        ),
    ] {
        if !ok {
            bail!("{name}");
        }
    }
    let mut rt = Runtime::load(&args.model)?;
    let mut messages = Vec::new();
    if let Some(sys) = &args.system {
        messages.push(Message::new("system", sys));
    }
    messages.push(Message::new("user", &prompt));
    let request = Request {
        messages: if args.raw { Vec::new() } else { messages },
        raw_prompt: args.raw.then(|| prompt.clone()),
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            ..Default::default()
        },
        seed: args.seed,
        inference_id: args.inference_id.clone(),
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        top_logprobs: args.top_logprobs,
    };
    if args.top_logprobs > nsed::artifact::MAX_TOP_LOGPROBS {
        bail!(
            "--top-logprobs is at most {}",
            nsed::artifact::MAX_TOP_LOGPROBS
        );
    }
    let prompt_ids = nsed::verify::prompt_ids(&rt, &request);
    let req = request.to_generate(args.top_logprobs, args.proof);
    let mut stream = Utf8Stream::default();
    let json = args.json;
    let gen = generate(&mut rt, &prompt_ids, &req, |_, bytes| {
        if !json {
            stream.push(bytes);
        }
    })?;
    let doc = generation_json(&rt, &args, &req, &gen)?;
    if let Some(path) = &args.output {
        nsed::output::write_atomic(path, doc.as_bytes())?;
    }
    if let Some(path) = &args.artifact {
        let artifact = Artifact::from_generation(&rt, request, &gen, args.proof)?;
        nsed::output::write_atomic(path, artifact.to_json().as_bytes())?;
    }
    if json {
        outln!("{doc}");
    } else {
        stream.finish();
        eprintln!(
            "\n[{} prompt tokens, {} generated, finish: {:?}; prefill {:.1} tok/s, decode {:.1} tok/s]",
            gen.prompt_ids.len(),
            gen.tokens.len(),
            gen.finish_reason,
            gen.prefill_tok_per_s(),
            gen.decode_tok_per_s()
        );
    }
    Ok(())
}

fn generation_json(
    rt: &Runtime,
    args: &GenerateArgs,
    req: &GenerateRequest,
    gen: &Generation,
) -> Result<String> {
    let doc = serde_json::json!({
        "model": rt.id(),
        "model_sha256": rt.resolved.entry.as_ref().map(|e| e.sha256.clone()),
        "prompt": args.prompt,
        "system": args.system,
        "raw": args.raw,
        "request": req,
        "prompt_ids": gen.prompt_ids,
        "output_ids": gen.output_ids(),
        "text": gen.text,
        "finish_reason": gen.finish_reason,
        "seed_string": gen.seed_string,
        "tokens": gen.tokens,
        "timings": {
            "prefill_seconds": gen.prefill_seconds,
            "decode_seconds": gen.decode_seconds,
            "prefill_tok_per_s": gen.prefill_tok_per_s(),
            "decode_tok_per_s": gen.decode_tok_per_s(),
        },
        "nsed_version": env!("CARGO_PKG_VERSION"),
    });
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// Prints bytes as they come, holding back an incomplete UTF-8 sequence.
#[derive(Default)]
struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let out: Vec<u8> = self.pending.drain(..valid).collect();
        if stdout_closed() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let text = String::from_utf8_lossy(&out);
        note_written(
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush()),
        );
    }

    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        outln!("{}", String::from_utf8_lossy(&rest));
    }
}

fn perplexity_cmd(args: PerplexityArgs) -> Result<()> {
    let text = read_utf8(&args.file, "text file")?;
    let mut rt = Runtime::load(&args.model)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} chunks  {msg}  [{elapsed} < {eta}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = perplexity(&mut rt, &text, args.ctx, args.chunks, |done, total, ppl| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("PPL {ppl:.4}"));
    })?;
    bar.finish_and_clear();
    let doc = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.output {
        nsed::output::write_atomic(path, doc.as_bytes())?;
    }
    if args.json {
        outln!("{doc}");
    } else {
        outln!(
            "{}: PPL = {:.4} +/- {:.5} over {} chunks of {} tokens ({} predictions, {} tokens in text)",
            report.model, report.ppl, report.ppl_err, report.chunks, report.ctx, report.scored, report.tokens
        );
    }
    Ok(())
}

fn perf(args: PerfArgs) -> Result<()> {
    let mut rt = Runtime::load(&args.model)?;
    let prompt = nsed::perf::bench_prompt(&rt, args.prompt_tokens);
    if !args.verify_cost.is_empty() {
        return verify_cost(&mut rt, &prompt, &args);
    }
    let needed = args.prompt_tokens + args.gen_tokens + 1;
    if needed > rt.model.max_positions() {
        bail!(
            "--prompt-tokens + --gen-tokens = {needed} exceeds the model's context {}",
            rt.model.max_positions()
        );
    }
    let mut runs = Vec::new();
    for i in 0..=args.repeats {
        let run = nsed::perf::measure(&mut rt, &prompt, args.gen_tokens)?;
        // Run 0 warms caches (and candle's weight repacking) and is not counted.
        if i > 0 {
            runs.push(run);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let prefill = median(runs.iter().map(|r| r.prefill_tok_per_s()).collect());
    let decode = median(runs.iter().map(|r| r.decode_tok_per_s()).collect());
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let rss = nsed::perf::peak_rss_mib();
    let kernel = nsed::qmm::path::active();
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"model": rt.id(), "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
                "repeats": args.repeats, "threads": threads, "kernel": kernel.name(),
                "prefill_tok_per_s": prefill, "decode_tok_per_s": decode, "peak_rss_mib": rss, "runs": runs})
        );
    } else {
        outln!(
            "{}: prefill {:.1} tok/s ({} tokens), decode {:.1} tok/s ({} steps), threads {threads}, \
             kernel {kernel}, median of {}, peak RSS {:.0} MiB",
            rt.id(),
            prefill,
            args.prompt_tokens,
            decode,
            args.gen_tokens,
            args.repeats,
            rss.unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn verify_cmd(args: VerifyArgs) -> Result<ExitCode> {
    let mut opts = nsed::verify::Options {
        seed_tolerance: args.seed_tolerance,
        replay: args.replay,
        table: args.positions,
        ..Default::default()
    };
    for t in &args.thresholds {
        opts.thresholds.set(t).map_err(anyhow::Error::msg)?;
    }
    let mut exec = Artifact::read(&args.artifact)?;
    let exec_name = args.artifact.display().to_string();
    let report = match &args.against {
        Some(path) => {
            let val = Artifact::read(path)?;
            nsed::verify::against(
                &exec,
                &val,
                (&exec_name, &path.display().to_string()),
                &opts,
            )?
        }
        None => {
            let model = match (&args.model, exec.model.id.as_str()) {
                (Some(m), _) => m.clone(),
                (None, "") => bail!("the artifact names no model: give --model"),
                (None, id) => id.to_string(),
            };
            let request = args.request.as_deref().map(Request::read).transpose()?;
            let mut rt = Runtime::load(&model)?;
            nsed::verify::with_model(&mut rt, &mut exec, request, &exec_name, &opts)?
        }
    };
    let doc = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.output {
        nsed::output::write_atomic(path, doc.as_bytes())?;
    }
    if args.json {
        outln!("{doc}");
    } else {
        print_report(&report);
    }
    Ok(match report.verdict {
        nsed::verify::Verdict::Fail => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

fn print_report(r: &nsed::verify::Report) {
    use nsed::verify::metrics::Better;
    outln!(
        "executor  {}  ({} positions, k = {})\nvalidator {}{}",
        r.executor,
        r.positions,
        r.k,
        r.validator,
        r.validator_seconds.map_or(String::new(), |s| format!(
            "  (one teacher-forced pass, {s:.2} s)"
        ))
    );
    if let Some(p) = &r.precheck {
        outln!("pre-check FAILED: {p}");
    }
    outln!(
        "\n{:<18} {:>12} {:>12} {:>8}  extra",
        "metric",
        "value",
        "threshold",
        "verdict"
    );
    for m in &r.metrics {
        let threshold = m.threshold.map_or("-".to_string(), |t| {
            format!(
                "{} {t}",
                if m.better == Better::Higher {
                    ">"
                } else {
                    "<="
                }
            )
        });
        let extra: Vec<String> = m.extra.iter().map(|(k, v)| format!("{k} {v:.7}")).collect();
        outln!(
            "{:<18} {:>12.7} {:>12} {:>8}  {}",
            m.name,
            m.value,
            threshold,
            format!("{:?}", m.verdict).to_lowercase(),
            extra.join(", ")
        );
    }
    if let Some(s) = &r.seed {
        outln!(
            "\nseed-bound sampling: {}/{} re-derived tokens differ (tolerance {:.1}%){} -> {:?}",
            s.mismatches,
            s.positions,
            s.tolerance * 100.0,
            s.first_mismatch
                .map_or(String::new(), |i| format!(", first at position {i}")),
            s.verdict
        );
    }
    if let Some(p) = &r.proof {
        outln!(
            "activation proof ({}): {}/{} chunks pass; {:.1} bytes/token vs {:.1} bytes/token of logprob JSON",
            p.scheme, p.passed, p.chunks, p.proof_bytes_per_token, p.logprob_bytes_per_token
        );
    }
    if let Some(rp) = &r.replay {
        outln!(
            "bit-exact replay: {} ({} vs {} tokens; ids sha256 {} vs {}){}",
            if rp.identical {
                "IDENTICAL"
            } else {
                "DIFFERENT"
            },
            rp.artifact_tokens,
            rp.replay_tokens,
            &rp.artifact_ids_sha256[..16],
            &rp.replay_ids_sha256[..16],
            rp.first_divergence
                .map_or(String::new(), |i| format!(", first divergence at {i}"))
        );
    }
    if let Some(rows) = &r.table {
        outln!(
            "\n{:>5} {:>10} {:>12} {:>12} {:>10} {:>10} {:>8}",
            "pos",
            "token",
            "exec lp",
            "valid lp",
            "gonka d",
            "dist2 d",
            "seed"
        );
        for row in rows {
            let f = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v:.6}"));
            outln!(
                "{:>5} {:>10} {:>12.6} {:>12.6} {:>10} {:>10} {:>8}",
                row.position,
                row.token,
                row.executor_logprob,
                row.validator_logprob,
                f(row.gonka_d),
                f(row.distance2_d),
                row.seed_token.map_or("-".into(), |t| format!("#{t}"))
            );
        }
    }
    outln!(
        "\nverdict: {}",
        match r.verdict {
            nsed::verify::Verdict::Fail => "FAIL (exit 1)",
            _ => "PASS",
        }
    );
}

fn determinism_cmd(args: DeterminismArgs) -> Result<()> {
    if args.worker {
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rt = Runtime::load(&args.model)?;
        let prompt = rt.chat_tokens(&[Message::new("user", &args.prompt)]);
        let req = nsed::generate::GenerateRequest {
            sampling: SamplingParams {
                temperature: args.temperature,
                ..Default::default()
            },
            max_tokens: args.max_tokens,
            seed: args.seed,
            inference_id: args.inference_id.clone(),
            ..Default::default()
        };
        let run =
            nsed::verify::determinism::study(&mut rt, &prompt, &req, args.runs, threads, || {
                eprint!(".")
            })?;
        outln!("{}", serde_json::to_string(&run)?);
        return Ok(());
    }
    let exe = std::env::current_exe().context("cannot find the nsed executable")?;
    let mut runs = Vec::new();
    for &t in &args.thread_counts {
        eprintln!(
            "threads {t}: {} runs of {} tokens",
            args.runs, args.max_tokens
        );
        let out = std::process::Command::new(&exe)
            .args(["--threads", &t.to_string(), "determinism", "--worker"])
            .args(["--model", &args.model, "--runs", &args.runs.to_string()])
            .args(["-n", &args.max_tokens.to_string()])
            .args(["--temperature", &args.temperature.to_string()])
            .args([
                "--seed",
                &args.seed.to_string(),
                "--inference-id",
                &args.inference_id,
            ])
            .args(["--prompt", &args.prompt])
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("cannot start a determinism worker")?;
        eprintln!();
        if !out.status.success() {
            bail!("the worker with {t} threads failed");
        }
        let run: serde_json::Value = serde_json::from_slice(&out.stdout)
            .context("the determinism worker printed no report")?;
        runs.push(run);
    }
    let same_across = runs.windows(2).all(|w| {
        w[0]["output_sha256"] == w[1]["output_sha256"]
            && w[0]["logits_sha256"] == w[1]["logits_sha256"]
    });
    if args.json {
        let doc = serde_json::json!({ "model": args.model, "runs": runs, "identical_across_thread_counts": same_across });
        outln!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    outln!("| threads | runs | tokens | identical outputs | identical logits | seed-bound s/run | plain s/run | overhead | sampler µs/token (seed-bound / plain) |");
    outln!("|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        outln!(
            "| {} | {} | {} | {:.0}% | {:.0}% | {:.3} | {:.3} | {:+.2}% | {:.1} / {:.1} |",
            r["threads"],
            r["runs"],
            r["tokens"],
            f("identical_output_share") * 100.0,
            f("identical_logits_share") * 100.0,
            f("seed_bound_seconds"),
            f("plain_seconds"),
            f("overhead") * 100.0,
            f("seed_bound_sampler_us_per_token"),
            f("plain_sampler_us_per_token"),
        );
    }
    outln!(
        "\nidentical across thread counts: {}",
        if same_across { "yes" } else { "NO" }
    );
    Ok(())
}

fn verify_cost(rt: &mut Runtime, prompt: &[u32], args: &PerfArgs) -> Result<()> {
    // Every length is checked before the warm-up's minutes are spent.
    if let Some(n) = args
        .verify_cost
        .iter()
        .find(|&&n| prompt.len() + n + 1 > rt.model.max_positions())
    {
        bail!("--verify-cost {n} does not fit the model's context");
    }
    // Warm-up: weight repacking and page faults are not the validator's cost.
    nsed::perf::verify_cost(rt, prompt, 8, 5)?;
    let mut rows = Vec::new();
    for &n in &args.verify_cost {
        let c = nsed::perf::verify_cost(rt, prompt, n, 5)?;
        if !args.json {
            outln!(
                "{}: N = {n}: generate {:.2} s, verify {:.2} s, verify/generate = {:.3} ({:.1}x cheaper)",
                rt.id(),
                c.generate_seconds,
                c.verify_seconds,
                c.ratio(),
                1.0 / c.ratio()
            );
        }
        rows.push(c);
    }
    if args.json {
        let doc = serde_json::json!({"model": rt.id(), "prompt_tokens": prompt.len(), "top_logprobs": 5,
            "rows": rows.iter().map(|c| serde_json::json!({"n": c.output_tokens, "generate_seconds": c.generate_seconds,
                "verify_seconds": c.verify_seconds, "ratio": c.ratio()})).collect::<Vec<_>>()});
        outln!("{doc}");
    }
    Ok(())
}
