//! `nsed calibrate`: the verification thresholds of one model and one
//! (made on, replayed on) pair of paths, fit on honest runs.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use crate::bounds;
use nsed::bench::datasets;
use nsed::engine::device::ComputeDevice;
use nsed::fraud::prompts;
use nsed::verify::calibrate::{self, Calibrator, Settings, MIN_SAMPLES};
use nsed::verify::calibration;

#[derive(Args)]
pub struct CalibrateArgs {
    /// Registry id or GGUF path of the model the thresholds are for.
    #[arg(long, short)]
    model: String,
    /// The path honest artifacts are made on: cpu-candle, cpu-candle/f32,
    /// cuda, cuda/f32 (the executor's `--device`).
    #[arg(long)]
    made_on: ComputeDevice,
    /// The path the validator replays them on (`nsed verify --device`).
    #[arg(long, default_value = "cpu")]
    replayed_on: ComputeDevice,
    /// Honest samples, each on a distinct prompt (at least 100 for a
    /// calibration to commit; the 1% conformal bound is then the largest
    /// honest value).
    #[arg(long, default_value_t = 100, value_parser = bounds::count(MIN_SAMPLES as u64, 100_000))]
    samples: usize,
    /// Tokens per sample, at most.
    #[arg(long, short = 'n', default_value_t = 64, value_parser = bounds::count(2, 4096))]
    max_tokens: usize,
    /// Sampling temperature of the honest runs (the seed check needs draws).
    #[arg(long, short, default_value_t = 0.8, value_parser = bounds::temperature)]
    temperature: f64,
    /// Top-k log-probabilities per position (as the artifacts to verify carry).
    #[arg(long, default_value_t = 5, value_parser = bounds::count(1, nsed::verify::artifact::MAX_TOP_LOGPROBS as u64))]
    top_logprobs: usize,
    /// Conformal level of each check: a fresh honest artifact fails it with
    /// probability at most max(1, ⌊α(n+1)⌋)/(n+1).
    #[arg(long, default_value_t = 0.01, value_parser = bounds::unit)]
    alpha: f64,
    /// Sample i is seeded seed + i.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Prompt sources, interleaved (as `simulate-fraud --prompts`): gsm8k,
    /// math500, lcb, multilingual, or JSONL files of `{"prompt": …}`.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gsm8k,math500,lcb,multilingual"
    )]
    prompts: Vec<String>,
    /// Directory of the datasets (default: $NSED_DATA_DIR, else the repository's datasets/).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// The thresholds file to write (default: the user's directory that
    /// `nsed verify` reads, ~/.local/share/nsed/thresholds/MODEL/PAIR.json).
    /// The samples go beside it (`….samples.jsonl`); a stopped run resumes
    /// from them.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn calibrate_cmd(args: CalibrateArgs) -> Result<()> {
    if args.temperature <= 0.0 {
        bail!("--temperature must be above 0: greedy artifacts draw nothing for the seed check to re-derive");
    }
    let data_dir = datasets::data_dir(args.data_dir.as_deref())?;
    let prompts = prompts::mixture(&data_dir, &args.prompts, args.samples)?;
    let settings = Settings {
        model: args.model.clone(),
        made_on: args.made_on,
        replayed_on: args.replayed_on,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_logprobs: args.top_logprobs,
        alpha: args.alpha,
        seed: args.seed,
        prompts: prompts::describe(&args.prompts)?,
    };
    let mut run = Calibrator::load(settings)?;
    let (made, replayed) = (run.made_path(), run.replayed_path());
    let output = match &args.output {
        Some(path) => path.clone(),
        None => calibration::user_file(&run.model().id, &made, &replayed)
            .context("no HOME to write the thresholds under: give --output")?,
    };
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let samples_file = output.with_extension("samples.jsonl");
    let mut records = run.done(&samples_file)?;
    records.retain(|r| r.index < prompts.len());
    // A resume must answer the same prompts: --prompts (or the data) may
    // have changed since the samples were made.
    if let Some(r) = records.iter().find(|r| prompts[r.index].id != r.prompt_id) {
        bail!(
            "{}: sample {} was made on prompt {}, but --prompts now gives {} there: \
             resume with the run's own --prompts, or write to another --output",
            samples_file.display(),
            r.index,
            r.prompt_id,
            prompts[r.index].id
        );
    }
    let done: std::collections::HashSet<usize> = records.iter().map(|r| r.index).collect();
    eprintln!(
        "calibrate {}: made on {made}, replayed on {replayed}; {} samples of {} tokens ({} done before) -> {}",
        run.model().id,
        prompts.len(),
        args.max_tokens,
        done.len(),
        output.display()
    );
    let bar = progress(prompts.len(), done.len());
    let mut short = 0;
    let started = std::time::Instant::now();
    for (k, (i, p)) in prompts
        .iter()
        .enumerate()
        .filter(|(i, _)| !done.contains(i))
        .enumerate()
    {
        let line = match run.sample(i, &p.id, &p.text)? {
            Some(record) => {
                calibrate::append(&samples_file, &record)?;
                let line = sample_line(&record);
                records.push(record);
                line
            }
            None => {
                short += 1;
                format!("{}: under 2 tokens, not used", p.id)
            }
        };
        bar.inc(1);
        if bar.is_hidden() {
            // Logs (nohup, CI) get a line per sample with the rate and ETA.
            let per = started.elapsed().as_secs_f64() / (k + 1) as f64;
            let left = bar.length().unwrap_or(0).saturating_sub(bar.position());
            eprintln!(
                "[{}/{}] {line}; {per:.0} s/sample, ETA {:.0} min",
                bar.position(),
                bar.length().unwrap_or(0),
                per * left as f64 / 60.0
            );
        }
    }
    bar.finish_and_clear();
    if records.len() < MIN_SAMPLES {
        bail!(
            "only {} samples had 2 or more tokens ({short} were shorter): raise --samples",
            records.len()
        );
    }
    records.sort_by_key(|r| r.index);
    let fitted = run.fit(&records);
    let doc = serde_json::to_string_pretty(&fitted)? + "\n";
    nsed::results::output::write_atomic(&output, doc.as_bytes())?;
    print_summary(&fitted, short);
    eprintln!("wrote {}", output.display());
    Ok(())
}

/// One sample's values, as a log line.
fn sample_line(r: &calibrate::SampleRecord) -> String {
    let value = |name: &str| r.values.get(name).copied().unwrap_or(f64::NAN);
    format!(
        "{}: {} tokens, gonka_distance2 {:.4}, stage2_mae {:.3}, seed mismatch share {:.3}",
        r.prompt_id,
        r.tokens,
        value("gonka_distance2"),
        value("stage2_mae"),
        value("seed_mismatch_share")
    )
}

/// The bar of a run: samples, rate, ETA.
fn progress(total: usize, done: usize) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{bar:25}] {pos}/{len} samples, {per_sec}, ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_position(done as u64);
    bar.reset_eta();
    bar
}

/// The fitted bounds beside the honest values, and the held-out flag rate.
fn print_summary(c: &calibration::Calibration, short: usize) {
    let Some(fit) = &c.fit else { return };
    outln!(
        "{:<20} {:>12} {:>12} {:>12} {:>12}",
        "check",
        "honest min",
        "median",
        "max",
        "bound"
    );
    for (name, [lo, mid, hi]) in &fit.honest {
        let bound = c
            .thresholds
            .get(name)
            .copied()
            .flatten()
            .map_or("-".to_string(), |b| format!("{b:.6}"));
        outln!("{name:<20} {lo:>12.6} {mid:>12.6} {hi:>12.6} {bound:>12}");
    }
    let [mean, lo, hi] = fit.held_out_flag_rate;
    outln!(
        "\n{} honest samples ({short} too short to score); design rate per check {:.2}%; \
         held-out honest flag rate of the whole verdict {:.2}% (95% of {} half splits in {:.2}-{:.2}%)",
        fit.samples,
        fit.design_rate * 100.0,
        mean * 100.0,
        fit.splits,
        lo * 100.0,
        hi * 100.0
    );
}
