//! The `nsed` command line: `main` parses the arguments and dispatches to
//! one handler per command group (`commands/`); the work is done by the
//! library.

#[macro_use]
mod stdout;

use std::process::ExitCode;

mod bounds;
mod commands;
mod exit;

use anyhow::Result;
use clap::{Parser, Subcommand};

use commands::{
    bench, calibrate, federation, fraud, generate, models, perf, report, sandbox, verify,
};

#[derive(Parser)]
#[command(
    name = "nsed",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("NSED_BUILD_COMMIT"), ")"),
    about = "Deliberation and verifiable-inference experiments on small GGUF models, on the CPU or a GPU",
    long_about = "nsed loads small open-weight GGUF models with candle and runs NSED \
                  deliberation, baselines and verification experiments.\n\n\
                  Models are registry ids (`nsed models list`) fetched by \
                  scripts/fetch-models.sh into $NSED_MODELS (default ~/.cache/nsed/models), \
                  or paths to any GGUF file.\n\n\
                  The quantized kernels are chosen at start-up from the CPU's features \
                  (AVX-512 VNNI, AVX-VNNI, AVX2, else portable); NSED_KERNEL=auto|portable|\
                  avx2|avxvnni|avx512vnni forces one. Every path computes the same bits.\n\n\
                  --device cuda runs the models on an NVIDIA GPU through candle's CUDA \
                  backend (a build with --features cuda; docs/gpu.md).\n\n\
                  Exit codes: 0 ok, 1 negative verdict, 2 usage or input error, 3 internal \
                  failure (a bug, or the machine: a full disk, a worker that died)."
)]
struct Cli {
    /// Worker threads for the tensor kernels (default: $RAYON_NUM_THREADS or all cores).
    /// `nsed determinism` takes a comma-separated list (e.g. 1,2) and compares them.
    /// Results are bit-identical whatever the count.
    #[arg(long, global = true, value_delimiter = ',', value_name = "N", value_parser = bounds::threads)]
    threads: Vec<usize>,
    /// Where models run: `cpu` (nsed's bit-exact kernels, the default),
    /// `cuda` or `cuda:N` (an NVIDIA GPU; needs a build with `--features
    /// cuda`, see scripts/build-cuda.sh), or `cpu-candle` (the GPU's code
    /// path on the CPU, to check it without a GPU). Add `/f32` to a GPU or
    /// `cpu-candle` to dequantize the weights to f32 at load: slower, but a
    /// CPU can then replay the GPU's sampled tokens (`nsed verify` picks the
    /// matching path from the artifact when --device is not given). A
    /// roster's agents can name their own.
    #[arg(long, global = true, value_name = "DEVICE")]
    device: Option<nsed::engine::device::ComputeDevice>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List, inspect and check the packaged models.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Print the token ids of a text.
    Tokenize(generate::TokenizeArgs),
    /// Generate text (streams to the terminal; --json for ids and log-probabilities).
    Generate(generate::GenerateArgs),
    /// Perplexity of a text file with llama.cpp's chunking convention.
    Perplexity(generate::PerplexityArgs),
    /// Prefill and decode speed (tokens per second).
    Perf(perf::PerfArgs),
    /// Verify an inference artifact: teacher-forced replay, every published
    /// distance metric, seed-bound sampling and activation-proof checks.
    /// Exit 0 pass, 1 fraud, 2 input error.
    Verify(verify::VerifyArgs),
    /// Fit the verification thresholds of a model for one pair of paths
    /// (made on, replayed on) that do not compute the same bits: honest
    /// artifacts on distinct prompts, each replayed, and the split-conformal
    /// bound of every check. `nsed verify` uses them for that pair.
    Calibrate(calibrate::CalibrateArgs),
    /// Generate N times per thread count: share of identical output and logits
    /// hashes, and the cost of the seed-bound sampler vs a plain one.
    Determinism(verify::DeterminismArgs),
    /// Run NSED and the baselines (single models, self-consistency, plurality,
    /// score-weighted and one-round quadratic votes, debate) on a math or
    /// code set, same items and token accounting; one JSON line per item,
    /// resumable, then a summary with Wilson intervals and paired McNemar
    /// tests. Code proposals are run on the public tests in the sandbox.
    Bench(bench::BenchArgs),
    /// Deliberate on one question and print the transcript: each round's
    /// answers, the score matrix, the quadratic votes, the winner and why it
    /// stopped.
    Deliberate(bench::DeliberateArgs),
    /// Fraud experiments: honest (Q8_0) and cheating executors (int4 and
    /// other re-quantizations, a substituted smaller model, a prefill-
    /// laundered proof) answer the same prompts; the validator (f32
    /// reference) replays each artifact and every metric is recorded.
    /// Resumable; ends with AUCs, detection rates, Gonka's calibration and
    /// length curves.
    SimulateFraud(fraud::SimulateFraudArgs),
    /// Run untrusted Python as the code benchmarks do: `python3 -I` in a
    /// fresh directory with rlimits, a private uid (as root), no network and
    /// a private /tmp where the kernel allows, a wall-clock kill.
    #[command(subcommand)]
    Sandbox(sandbox::SandboxCommand),
    /// Summaries of finished or partial runs.
    #[command(subcommand)]
    Report(report::ReportCommand),
    /// Serve a model as a deliberation agent over NATS, or make its key.
    #[command(subcommand)]
    Agent(federation::AgentCommand),
    /// List the agents live on a NATS server (name, model, sha256, key,
    /// load); --ping measures transport latency and throughput.
    Agents(federation::AgentsArgs),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    if let Err(e) = nsed::engine::qmm::path::init_from_env() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let is_determinism = matches!(cli.command, Command::Determinism(_));
    if cli.threads.len() > 1 && !is_determinism {
        eprintln!("error: --threads takes one count (a list only for `nsed determinism`)");
        return ExitCode::from(2);
    }
    if let Some(device) = cli.device {
        nsed::engine::device::set_default(device);
    }
    if let Some(&n) = cli.threads.first() {
        // Read by candle's CPU kernels and rayon's pool before first use.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
    // `agent serve` drains on SIGTERM/SIGINT itself; every other command
    // removes its half-written temporary files when interrupted.
    let serves = matches!(
        cli.command,
        Command::Agent(federation::AgentCommand::Serve(_))
    );
    if !serves {
        if let Err(e) = nsed::results::output::remove_partials_on_signal() {
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
            exit::code_of(&e)
        }
    }
}

/// Run the command ON a worker of a pool of exactly the kernel thread count.
/// Otherwise the main thread's serial work (norms, attention, sampling) would
/// compete for the cores with the pool's workers, which spin and yield
/// between kernels: on 2 cores that cost decode about 40% of its speed.
fn run_in_pool(command: Command) -> Result<ExitCode> {
    let threads = nsed::engine::batch::default_threads();
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(|| run(command)),
        Err(_) => run(command),
    }
}

/// Hand the command to its group's handler; only `verify` and `sandbox`
/// choose their own exit code (a verdict), the others succeed or fail.
fn run(command: Command) -> Result<ExitCode> {
    let done = |r: Result<()>| r.map(|()| ExitCode::SUCCESS);
    match command {
        Command::Models(command) => done(models::run(command)),
        Command::Tokenize(args) => done(generate::tokenize(args)),
        Command::Generate(args) => done(generate::generate_cmd(args)),
        Command::Perplexity(args) => done(generate::perplexity_cmd(args)),
        Command::Perf(args) => done(perf::perf(args)),
        Command::Verify(args) => verify::verify_cmd(args),
        Command::Calibrate(args) => done(calibrate::calibrate_cmd(args)),
        Command::Determinism(args) => done(verify::determinism_cmd(args)),
        Command::Bench(args) => done(bench::bench_cmd(args)),
        Command::Deliberate(args) => done(bench::deliberate_cmd(args)),
        Command::SimulateFraud(args) => done(fraud::simulate_fraud_cmd(args)),
        Command::Sandbox(command) => sandbox::sandbox_cmd(command),
        Command::Report(command) => done(report::run(command)),
        Command::Agent(command) => done(federation::agent_cmd(command)),
        Command::Agents(args) => done(federation::agents_cmd(args)),
    }
}
