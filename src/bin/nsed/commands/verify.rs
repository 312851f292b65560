//! `nsed verify` (an artifact against a model or a second artifact) and
//! `nsed determinism` (identical output across runs and thread counts).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::bounds;
use nsed::engine::chat::Message;
use nsed::engine::runtime::Runtime;
use nsed::engine::sampling::SamplingParams;
use nsed::verify::artifact::{Artifact, Request};

#[derive(Args)]
pub struct VerifyArgs {
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
    /// Internal: run one thread count in this process and print JSON.
    #[arg(long, hide = true)]
    worker: bool,
}

pub fn verify_cmd(args: VerifyArgs) -> Result<ExitCode> {
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

pub fn print_report(r: &nsed::verify::Report) {
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

pub fn determinism_cmd(args: DeterminismArgs) -> Result<()> {
    if args.worker {
        let threads = std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut rt = Runtime::load(&args.model)?;
        let prompt = rt.chat_tokens(&[Message::new("user", &args.prompt)]);
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
