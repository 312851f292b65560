//! `nsed perf`: prefill and decode speed, and verification cost against
//! generation.

use anyhow::{bail, Result};
use clap::Args;

use crate::bounds;
use nsed::engine::runtime::Runtime;

#[derive(Args)]
pub struct PerfArgs {
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
    /// Instead: aggregate speed of this many sequences run together
    /// (comma-separated batch sizes, e.g. 1,2,4,8,16): each prefills the
    /// prompt, then all decode `--gen-tokens` steps in shared passes.
    #[arg(long, value_delimiter = ',', value_name = "B,...", value_parser = bounds::count(1, 256))]
    batch: Vec<usize>,
    #[arg(long)]
    json: bool,
}

pub fn perf(args: PerfArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let mut rt = Runtime::load(&args.model)?;
    let load_s = started.elapsed().as_secs_f64();
    let file_mib = rt.gguf.file_size as f64 / (1024.0 * 1024.0);
    let prompt = nsed::engine::perf::bench_prompt(&rt, args.prompt_tokens);
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
    if !args.batch.is_empty() {
        return batch_speed(&mut rt, &prompt, &args);
    }
    let mut runs = Vec::new();
    for i in 0..=args.repeats {
        let run = nsed::engine::perf::measure(&mut rt, &prompt, args.gen_tokens)?;
        // Run 0 warms caches (and candle's weight repacking) and is not counted.
        if i > 0 {
            runs.push(run);
        }
    }
    let prefill = median(runs.iter().map(|r| r.prefill_tok_per_s()).collect());
    let decode = median(runs.iter().map(|r| r.decode_tok_per_s()).collect());
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let rss = nsed::engine::perf::peak_rss_mib();
    let kernel = nsed::engine::qmm::path::active();
    if args.json {
        outln!(
            "{}",
            serde_json::json!({"model": rt.id(), "prompt_tokens": args.prompt_tokens, "gen_tokens": args.gen_tokens,
                "repeats": args.repeats, "threads": threads, "kernel": kernel.name(), "device": rt.model.origin(),
                "prefill_tok_per_s": prefill, "decode_tok_per_s": decode, "peak_rss_mib": rss,
                "load_s": load_s, "file_mib": file_mib, "runs": runs})
        );
    } else {
        outln!(
            "{}: prefill {:.1} tok/s ({} tokens), decode {:.1} tok/s ({} steps), threads {threads}, \
             kernel {kernel}, device {}, median of {}, peak RSS {:.0} MiB ({:.2}× the {:.0} MiB file), \
             load {:.1} s",
            rt.id(),
            prefill,
            args.prompt_tokens,
            decode,
            args.gen_tokens,
            rt.model.origin(),
            args.repeats,
            rss.unwrap_or(f64::NAN),
            rss.unwrap_or(f64::NAN) / file_mib,
            file_mib,
            load_s
        );
    }
    Ok(())
}

/// The median of the counted runs (NaN when there were none to count).
fn median(values: Vec<f64>) -> f64 {
    nsed::stats::median(&values).unwrap_or(f64::NAN)
}

/// `--batch`: per batch size, the median of `--repeats` runs after a
/// warm-up, as a table (or JSON lines).
fn batch_speed(rt: &mut Runtime, prompt: &[u32], args: &PerfArgs) -> Result<()> {
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all".into());
    let kernel = nsed::engine::qmm::path::active();
    if !args.json {
        outln!(
            "{}: {} prompt + {} generated tokens per sequence, threads {threads}, kernel {kernel}, median of {}",
            rt.id(),
            args.prompt_tokens,
            args.gen_tokens,
            args.repeats
        );
        outln!(
            "| B | prefill tok/s | decode tok/s (all sequences) | x B=1 | KV MiB | peak RSS MiB |"
        );
        outln!("|---|---|---|---|---|---|");
    }
    let mut single = None;
    for &b in &args.batch {
        let mut runs = Vec::new();
        for i in 0..=args.repeats {
            let run = nsed::engine::perf::measure_batch(rt, prompt, args.gen_tokens, b)?;
            if i > 0 {
                runs.push(run);
            }
        }
        let prefill = median(runs.iter().map(|r| r.prefill_tok_per_s()).collect());
        let decode = median(runs.iter().map(|r| r.decode_tok_per_s()).collect());
        let kv_mib = runs[0].kv_bytes as f64 / (1024.0 * 1024.0);
        let rss = nsed::engine::perf::peak_rss_mib().unwrap_or(f64::NAN);
        if b == 1 {
            single = Some(decode);
        }
        let ratio = single.map_or(f64::NAN, |s| decode / s);
        if args.json {
            outln!(
                "{}",
                serde_json::json!({"model": rt.id(), "batch": b, "prompt_tokens": args.prompt_tokens,
                    "gen_tokens": args.gen_tokens, "repeats": args.repeats, "threads": threads,
                    "kernel": kernel.name(), "build": nsed::results::provenance::build_commit(),
                    "device": rt.model.origin(), "prefill_tok_per_s": prefill, "decode_tok_per_s": decode,
                    "kv_mib": kv_mib, "peak_rss_mib": rss, "runs": runs})
            );
        } else {
            outln!("| {b} | {prefill:.1} | {decode:.1} | {ratio:.2} | {kv_mib:.1} | {rss:.0} |");
        }
    }
    Ok(())
}

pub fn verify_cost(rt: &mut Runtime, prompt: &[u32], args: &PerfArgs) -> Result<()> {
    // Every length is checked before the warm-up's minutes are spent.
    if let Some(n) = args
        .verify_cost
        .iter()
        .find(|&&n| prompt.len() + n + 1 > rt.model.max_positions())
    {
        bail!("--verify-cost {n} does not fit the model's context");
    }
    // Warm-up: weight repacking and page faults are not the validator's cost.
    nsed::verify::cost::verify_cost(rt, prompt, 8, 5)?;
    let mut rows = Vec::new();
    for &n in &args.verify_cost {
        let c = nsed::verify::cost::verify_cost(rt, prompt, n, 5)?;
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
