//! `nsed verify` (an artifact against a model or a second artifact) and
//! `nsed determinism` (identical output across runs and thread counts).

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bounds;
use nsed::engine::chat::Message;
use nsed::engine::device::ComputeDevice;
use nsed::engine::runtime::Runtime;
use nsed::engine::sampling::SamplingParams;
use nsed::verify::artifact::{Artifact, Request};
use nsed::verify::calibration::Calibration;
use nsed::verify::policy::{self, ComputePath, PolicyError};

#[derive(Args)]
pub struct VerifyArgs {
    /// The executor's artifact: nsed.artifact/v1 or an OpenAI/vLLM chat.completion with logprobs.
    /// Several files, or a directory (its *.json files), verify in one run:
    /// each validator model loads once, every artifact gets one line (or one
    /// JSON line with --json / --output), and a file that cannot be verified
    /// is reported and skipped. Exit 1 if any artifact fails, else 2 if any
    /// could not be verified, else 0.
    #[arg(long, short, required = true, num_args = 1..)]
    artifact: Vec<PathBuf>,
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
    /// Thresholds file (nsed.thresholds/v1, written by `nsed calibrate`) to
    /// judge by instead of the policy's choice. Without it: an artifact
    /// replayed on a path that computes its bits (nsed's host path on any
    /// CPU; one candle path on one hardware class) is judged strictly;
    /// any other pair by the thresholds calibrated for its model and pair
    /// (your own in ~/.local/share/nsed/thresholds, then the committed
    /// ones in configs/thresholds/), and a pair with none gets no verdict
    /// (exit 2) — configs/thresholds/defaults.json applies the published
    /// defaults to any pair. docs/artifact.md states the policy.
    #[arg(long = "thresholds", value_name = "FILE")]
    thresholds_file: Option<PathBuf>,
    /// Largest share of re-derived sampled tokens that may differ for an
    /// honest verdict [default: 0.01 on a bit-exact pair, the calibrated
    /// honest bound on any other].
    #[arg(long, value_parser = bounds::unit)]
    seed_tolerance: Option<f64>,
    /// Print the per-position table (with several artifacts: in their JSON
    /// lines only).
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
pub struct DeterminismArgs {
    /// Registry id or path to a GGUF file.
    #[arg(long, short)]
    model: String,
    /// Generations per thread count (each also run once with the plain sampler for timing).
    #[arg(long, default_value_t = 10, value_parser = bounds::count(1, 10_000))]
    runs: usize,
    /// Thread counts to compare: the global `--threads 1,2` (default 1,2); each
    /// count runs in its own process.
    #[arg(skip = vec![1, 2])]
    pub thread_counts: Vec<usize>,
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
    /// Only the hashes: skip the plain-sampler runs that time the seed-bound
    /// sampler (half the work; the timing columns are left empty).
    #[arg(long)]
    hashes_only: bool,
    /// Internal: run one thread count in this process and print JSON.
    #[arg(long, hide = true)]
    worker: bool,
}

pub fn verify_cmd(args: VerifyArgs) -> Result<ExitCode> {
    let mut opts = nsed::verify::Options {
        replay: args.replay,
        table: args.positions,
        ..Default::default()
    };
    for t in &args.thresholds {
        opts.thresholds.set(t).map_err(anyhow::Error::msg)?;
    }
    let policy = PolicyArgs::read(&args)?;
    if let [path] = args.artifact.as_slice() {
        if !path.is_dir() {
            return verify_one_cmd(&args, &policy, path, &opts);
        }
    }
    let paths = artifact_paths(&args.artifact)?;
    if args.against.is_some() || args.request.is_some() {
        bail!("--against and --request belong to one artifact; give a single --artifact with them");
    }
    verify_many(&args, &policy, &paths, &opts)
}

/// The files named: each path itself, or a directory's `*.json` files in
/// name order.
fn artifact_paths(given: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for path in given {
        if !path.is_dir() {
            paths.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path)
            .with_context(|| format!("cannot list the directory {}", path.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "json"))
            .collect();
        if found.is_empty() {
            bail!("{} holds no .json artifacts", path.display());
        }
        found.sort();
        paths.extend(found);
    }
    Ok(paths)
}

/// One artifact: the full report (or `--json`'s pretty document).
fn verify_one_cmd(
    args: &VerifyArgs,
    policy: &PolicyArgs,
    path: &std::path::Path,
    opts: &nsed::verify::Options,
) -> Result<ExitCode> {
    let mut exec = Artifact::read(path)?;
    let exec_name = path.display().to_string();
    let report = match &args.against {
        Some(val_path) => {
            let val = Artifact::read(val_path)?;
            let replayed = ComputePath::of_artifact(&val);
            let sha256 = || Ok(exec.model.sha256.clone());
            let opts = decided(policy, &exec, replayed, &exec.model.id, sha256, opts)?;
            nsed::verify::against(
                &exec,
                &val,
                (&exec_name, &val_path.display().to_string()),
                &opts,
            )?
        }
        None => {
            let model = validator_model(args, &exec)?;
            let request = args.request.as_deref().map(Request::read).transpose()?;
            let mut rt = Runtime::load_on(&model, replay_device(&exec))?;
            let opts = decided_for_model(policy, &exec, &rt, opts)?;
            nsed::verify::with_model(&mut rt, &mut exec, request, &exec_name, &opts)?
        }
    };
    let doc = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.output {
        nsed::results::output::write_atomic(path, doc.as_bytes())?;
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

/// `--device`, else the path that matches the artifact's executor
/// ([`ComputeDevice::validator_for`]), announced when it is not the host's.
fn replay_device(exec: &Artifact) -> ComputeDevice {
    if let Some(device) = nsed::engine::device::chosen_device() {
        return device;
    }
    let device = ComputeDevice::validator_for(&exec.isa);
    if device != ComputeDevice::Cpu {
        eprintln!(
            "nsed: replaying on {device}: the artifact came from `{}` (give --device to choose)",
            exec.isa
        );
    }
    device
}

/// The options the verdict policy gives an artifact replayed by `rt`.
fn decided_for_model(
    policy: &PolicyArgs,
    exec: &Artifact,
    rt: &Runtime,
    base: &nsed::verify::Options,
) -> Result<nsed::verify::Options> {
    let replayed = ComputePath::of_isa(rt.model.origin());
    let sha256 = || {
        rt.sha256()
            .map_err(|e| PolicyError::ModelHash(e.to_string()))
    };
    decided(policy, exec, replayed, &rt.id(), sha256, base)
}

/// The options of [`policy::decide`]'s rule for `exec` replayed on
/// `replayed`: `--thresholds` if given, else exact, defaults or the
/// pair's calibration; an uncalibrated pair is an error (exit 2).
fn decided(
    policy: &PolicyArgs,
    exec: &Artifact,
    replayed: ComputePath,
    model_id: &str,
    model_sha256: impl FnOnce() -> Result<String, PolicyError>,
    base: &nsed::verify::Options,
) -> Result<nsed::verify::Options> {
    let made = ComputePath::of_artifact(exec);
    let decision = policy::decide(
        made,
        replayed,
        model_id,
        model_sha256,
        policy.given.as_ref(),
    )?;
    Ok(decision.options(base, policy.seed_tolerance))
}

/// What the command line says about the verdict policy, read once for
/// every artifact of the run.
struct PolicyArgs {
    /// `--thresholds FILE`, read and checked, with its path.
    given: Option<(Calibration, String)>,
    /// `--seed-tolerance`, when given.
    seed_tolerance: Option<f64>,
}

impl PolicyArgs {
    fn read(args: &VerifyArgs) -> Result<Self> {
        let given = match &args.thresholds_file {
            Some(path) => Some((Calibration::read(path)?, path.display().to_string())),
            None => None,
        };
        Ok(Self {
            given,
            seed_tolerance: args.seed_tolerance,
        })
    }
}

/// `--model`, else the model the artifact names.
fn validator_model(args: &VerifyArgs, exec: &Artifact) -> Result<String> {
    Ok(match (&args.model, exec.model.id.as_str()) {
        (Some(m), _) => m.clone(),
        (None, "") => bail!("the artifact names no model: give --model"),
        (None, id) => id.to_string(),
    })
}

/// The validator models of a many-artifact run, each loaded on first use
/// and kept for the artifacts after it.
#[derive(Default)]
struct Validators {
    /// Keyed by `model@device`.
    loaded: HashMap<String, Runtime>,
}

impl Validators {
    fn get(&mut self, spec: &str, device: ComputeDevice) -> Result<&mut Runtime> {
        let key = match device {
            ComputeDevice::Cpu => spec.to_string(),
            other => format!("{spec}@{other}"),
        };
        if !self.loaded.contains_key(&key) {
            let rt = Runtime::load_on(spec, device)?;
            self.loaded.insert(key.clone(), rt);
        }
        Ok(self
            .loaded
            .get_mut(&key)
            .expect("the model was inserted above"))
    }
}

/// Tally of a many-artifact run.
#[derive(Default)]
struct Tally {
    pass: usize,
    fail: usize,
    errors: usize,
    validator_seconds: f64,
}

/// Several artifacts against their models: one line (or one JSON line) per
/// artifact as it finishes, a one-line error for an artifact that cannot be
/// verified, and a summary. Each artifact's teacher-forced pass already
/// runs all its positions through the batched kernels; what the batch adds
/// is one model load for all of them.
fn verify_many(
    args: &VerifyArgs,
    policy: &PolicyArgs,
    paths: &[PathBuf],
    opts: &nsed::verify::Options,
) -> Result<ExitCode> {
    let mut sink = match &args.output {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        )),
        None => None,
    };
    let bar = artifacts_bar(paths.len());
    let mut validators = Validators::default();
    let mut tally = Tally::default();
    for path in paths {
        let name = path.display().to_string();
        let line = match verify_with_validators(args, policy, path, opts, &mut validators) {
            Ok(report) => {
                tally.validator_seconds += report.validator_seconds.unwrap_or(0.0);
                match report.verdict {
                    nsed::verify::Verdict::Fail => tally.fail += 1,
                    _ => tally.pass += 1,
                }
                if !args.json {
                    bar.suspend(|| outln!("{}", report_line(&report)));
                }
                serde_json::to_value(&report)?
            }
            Err(e) => {
                tally.errors += 1;
                bar.suspend(|| eprintln!("error: {name}: {e:#}"));
                serde_json::json!({ "executor": name, "verdict": "error", "error": format!("{e:#}") })
            }
        };
        let compact = serde_json::to_string(&line)?;
        if args.json {
            bar.suspend(|| outln!("{compact}"));
        }
        if let Some(w) = sink.as_mut() {
            writeln!(w, "{compact}")
                .and_then(|()| w.flush())
                .context("cannot write the --output file")?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mut models: Vec<&str> = validators.loaded.keys().map(String::as_str).collect();
    models.sort_unstable();
    eprintln!(
        "{} artifacts: {} pass, {} fail, {} not verified; validator models {}; {:.1} s of teacher-forced passes",
        paths.len(),
        tally.pass,
        tally.fail,
        tally.errors,
        if models.is_empty() { "none".to_string() } else { models.join(", ") },
        tally.validator_seconds
    );
    Ok(match (tally.fail, tally.errors) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(2),
        _ => ExitCode::from(1),
    })
}

/// The progress bar of a batch of artifacts (rate and ETA).
fn artifacts_bar(len: usize) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:25}] {pos}/{len} artifacts, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

fn verify_with_validators(
    args: &VerifyArgs,
    policy: &PolicyArgs,
    path: &std::path::Path,
    opts: &nsed::verify::Options,
    validators: &mut Validators,
) -> Result<nsed::verify::Report> {
    let mut exec = Artifact::read(path)?;
    let model = validator_model(args, &exec)?;
    let rt = validators.get(&model, replay_device(&exec))?;
    let opts = decided_for_model(policy, &exec, rt, opts)?;
    let name = path.display().to_string();
    Ok(nsed::verify::with_model(rt, &mut exec, None, &name, &opts)?)
}

/// One artifact's verdict, its failing checks and its timing, in a line.
fn report_line(r: &nsed::verify::Report) -> String {
    use nsed::verify::Verdict;
    let mut failed: Vec<String> = r
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Fail)
        .map(|m| format!("{} {:.4}", m.name, m.value))
        .collect();
    if let Some(s) = r.seed.as_ref().filter(|s| s.mismatches > 0) {
        failed.push(format!("seed {}/{} differ", s.mismatches, s.positions));
    }
    if let Some(p) = r.proof.as_ref().filter(|p| p.passed < p.chunks) {
        failed.push(format!("proof {}/{} chunks", p.passed, p.chunks));
    }
    if let Some(rp) = r.replay.as_ref().filter(|rp| !rp.identical) {
        failed.push(format!(
            "replay differs from position {:?}",
            rp.first_divergence
        ));
    }
    if let Some(p) = &r.precheck {
        failed.push(p.clone());
    }
    format!(
        "{}  {}  ({} positions, {}, {:.2} s){}",
        match r.verdict {
            Verdict::Fail => "FAIL",
            _ => "PASS",
        },
        r.executor,
        r.positions,
        r.validator,
        r.validator_seconds.unwrap_or(0.0),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join("; "))
        }
    )
}

/// A verification report as text: who ran what, each metric against its
/// threshold, the seed, proof and replay checks, the per-position table
/// when asked, and the verdict.
pub fn print_report(r: &nsed::verify::Report) {
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
    if let Some(p) = &r.policy {
        outln!(
            "paths     made on {}, replayed on {}{}\njudged by {}{}",
            p.made_on,
            p.replayed_on,
            if p.bit_exact { " (bit-exact pair)" } else { "" },
            p.decided_by,
            p.calibration
                .as_ref()
                .map_or(String::new(), |c| format!("\n          ({c})"))
        );
    }
    if let Some(p) = &r.precheck {
        outln!("pre-check FAILED: {p}");
    }
    print_metrics(r);
    print_checks(r);
    if let Some(rows) = &r.table {
        print_positions(rows);
    }
    outln!(
        "\nverdict: {}",
        match r.verdict {
            nsed::verify::Verdict::Fail => "FAIL (exit 1)",
            _ => "PASS",
        }
    );
}

/// The metrics, one line each: value, threshold and verdict.
fn print_metrics(r: &nsed::verify::Report) {
    use nsed::verify::metrics::Better;
    outln!(
        "\n{:<18} {:>12} {:>12} {:>8}  extra",
        "metric",
        "value",
        "threshold",
        "verdict"
    );
    for m in &r.metrics {
        let threshold = m.threshold.map_or("-".to_string(), |t| {
            // A calibrated bound has every digit of an f64; seven decimals,
            // as the values, without trailing zeros.
            let digits = format!("{t:.7}");
            let digits = digits.trim_end_matches('0').trim_end_matches('.');
            let op = if m.better == Better::Higher {
                ">"
            } else {
                "<="
            };
            format!("{op} {digits}")
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
}

/// The seed-bound sampling, activation-proof and replay checks that ran.
fn print_checks(r: &nsed::verify::Report) {
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
        if let Some(k) = &s.rank_uniformity {
            outln!(
                "token ranks in the validator's sampler (PIT): KS D {:.4} over {} tokens, p = {:.3} (uniform if honest; informational)",
                k.d,
                k.n,
                k.p
            );
        }
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
}

/// The per-position table (`--table`).
fn print_positions(rows: &[nsed::verify::PositionRow]) {
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

pub fn determinism_cmd(args: DeterminismArgs) -> Result<()> {
    if args.worker {
        return determinism_worker(&args);
    }
    let exe = std::env::current_exe().context("cannot find the nsed executable")?;
    let mut runs = Vec::new();
    for &t in &args.thread_counts {
        eprintln!(
            "threads {t}: {} runs of {} tokens",
            args.runs, args.max_tokens
        );
        let out = std::process::Command::new(&exe)
            .args(["--threads", &t.to_string()])
            .args([
                "--device",
                &nsed::engine::device::default_device().to_string(),
            ])
            .args(["determinism", "--worker"])
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
            .args(args.hashes_only.then_some("--hashes-only"))
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
    print_determinism(&runs, same_across);
    Ok(())
}

/// `nsed determinism --worker`: the runs at this process's thread count,
/// as one JSON line for the parent.
fn determinism_worker(args: &DeterminismArgs) -> Result<()> {
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rt = Runtime::load(&args.model)?;
    let prompt = rt.chat_tokens(&[Message::new("user", &args.prompt)])?;
    let req = nsed::engine::generate::GenerateRequest {
        sampling: SamplingParams {
            temperature: args.temperature,
            ..Default::default()
        },
        max_tokens: args.max_tokens,
        seed: args.seed,
        inference_id: args.inference_id.clone(),
        ..Default::default()
    };
    let run = nsed::verify::determinism::study(
        &mut rt,
        &prompt,
        &req,
        args.runs,
        threads,
        !args.hashes_only,
        || eprint!("."),
    )?;
    outln!("{}", serde_json::to_string(&run)?);
    Ok(())
}

/// The determinism runs as a markdown table, one row per thread count.
fn print_determinism(runs: &[serde_json::Value], same_across: bool) {
    outln!("| threads | runs | tokens | identical outputs | identical logits | seed-bound s/run | plain s/run | overhead | sampler µs/token (seed-bound / plain) |");
    outln!("|---|---|---|---|---|---|---|---|---|");
    for r in runs {
        let f = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        // Timing fields are absent with --hashes-only.
        let g = |k: &str, scale: f64, digits: usize, sign: bool| {
            r[k].as_f64().map_or("-".to_string(), |v| match sign {
                true => format!("{:+.digits$}%", v * scale),
                false => format!("{:.digits$}", v * scale),
            })
        };
        outln!(
            "| {} | {} | {} | {:.0}% | {:.0}% | {} | {} | {} | {} / {} |",
            r["threads"],
            r["runs"],
            r["tokens"],
            f("identical_output_share") * 100.0,
            f("identical_logits_share") * 100.0,
            g("seed_bound_seconds", 1.0, 3, false),
            g("plain_seconds", 1.0, 3, false),
            g("overhead", 100.0, 2, true),
            g("seed_bound_sampler_us_per_token", 1.0, 1, false),
            g("plain_sampler_us_per_token", 1.0, 1, false),
        );
    }
    outln!(
        "\nidentical across thread counts: {}",
        if same_across { "yes" } else { "NO" }
    );
}
