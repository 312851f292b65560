//! `nsed simulate-fraud` and `nsed report fraud`: argument handling, progress
//! and files around the library's fraud module.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use nsed::bench::datasets;
use nsed::engine::batch::Limits;
use nsed::fraud::analysis;
use nsed::fraud::prompts;
use nsed::fraud::samples::{self, Fingerprint, Lab};
use nsed::fraud::{Attack, Precision};
use nsed::pages::economics::EconomicsSettings;
use nsed::results::provenance::{self, RunInfo};

#[derive(Args)]
pub struct SimulateFraudArgs {
    /// The model the executor claims to run (registry id or GGUF path).
    #[arg(long, default_value = "smollm2-135m")]
    pub model: String,
    /// Cheat by re-quantizing the claimed model's weights (int4 = Q4_0;
    /// q2k/q3k fall back per tensor where rows are not multiples of 256).
    /// With no attack flag at all, int4.
    #[arg(long, value_enum)]
    pub quant: Option<Precision>,
    /// Cheat by running this smaller model (same tokenizer) instead.
    #[arg(long)]
    pub substitute: Option<String>,
    /// Cheat by generating with this model and computing the claimed
    /// model's logprobs for its tokens (a laundered proof).
    #[arg(long)]
    pub prefill: Option<String>,
    /// Honest samples (shared by every attack of the run directory).
    #[arg(long, default_value_t = 200, value_parser = crate::bounds::count(0, 1_000_000))]
    pub samples_honest: usize,
    /// Fraud samples per attack.
    #[arg(long, default_value_t = 100, value_parser = crate::bounds::count(0, 1_000_000))]
    pub samples_fraud: usize,
    /// Sampling temperature of honest executors (Gonka: 0.99).
    #[arg(long, default_value_t = 0.99, value_parser = crate::bounds::temperature)]
    pub temp_honest: f64,
    /// Sampling temperature of cheating executors (Gonka: 0.7).
    #[arg(long, default_value_t = 0.7, value_parser = crate::bounds::temperature)]
    pub temp_fraud: f64,
    /// New tokens per sample at most (≥ 1024 fills the longest length bin).
    #[arg(long, default_value_t = 1100, value_parser = crate::bounds::tokens())]
    pub max_tokens: usize,
    /// Top log-probabilities per position in each artifact.
    #[arg(long, default_value_t = 5, value_parser = crate::bounds::count(1, 256))]
    pub top_k: usize,
    /// Samples per executor generated together (their sequences share each
    /// forward pass; every sample is bit-identical to running it alone).
    /// Records are written as each round of this many per executor ends;
    /// 1 runs one sample at a time.
    #[arg(long, default_value_t = 8, value_parser = crate::bounds::count(1, 256))]
    pub parallel: usize,
    /// Base seed: sample i is seeded seed + i (recorded per sample).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Weights of the honest executor.
    #[arg(long, value_enum, default_value = "q8")]
    pub honest: Precision,
    /// Weights of the validator (f32: the reference; honest disagreement
    /// then comes from Q8_0 vs f32 arithmetic).
    #[arg(long, value_enum, default_value = "f32")]
    pub validator: Precision,
    /// Prompt sources, interleaved: gsm8k, math500, lcb, multilingual, and
    /// paths to your own JSONL files, one `{"prompt": "…"}` per line
    /// (optional "id" and "lang"), alone or mixed with the named sources,
    /// e.g. `--prompts gsm8k,my-prompts.jsonl`. A file is recorded with its
    /// sha256, so a resume with an edited file is refused.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gsm8k,math500,lcb,multilingual"
    )]
    pub prompts: Vec<String>,
    /// Where the executors (honest and cheating) run, when not on the
    /// global --device: e.g. `--executor-device cpu-candle
    /// --validator-device cpu` measures detection across paths, as a GPU
    /// executor checked on a CPU would be.
    #[arg(long)]
    pub executor_device: Option<nsed::engine::device::ComputeDevice>,
    /// Where the validator replays, when not on the global --device.
    #[arg(long)]
    pub validator_device: Option<nsed::engine::device::ComputeDevice>,
    /// Directory of the datasets (default: $NSED_DATA_DIR, else the repository's datasets/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run directory (default: results/fraud/runs/<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write each executor's artifact, as it was made, into this
    /// directory (`honest-0.json`, `int4-0.json`, …), to check it again
    /// with `nsed verify` on another path or validator.
    #[arg(long)]
    pub keep_artifacts: Option<PathBuf>,
    /// Continue the run in --out (settings must match; done samples are kept).
    #[arg(long)]
    pub resume: bool,
    /// Only analyze the samples already in --out.
    #[arg(long)]
    pub report: bool,
    /// Simulate a Gonka-like network with the detection rates measured in
    /// --out (docs/reference.md §7): ejection and profit per strategy and rule.
    #[arg(long)]
    pub economics: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
}

/// Network settings of `--economics`.
#[derive(Args)]
pub struct NetworkArgs {
    /// Inferences the node serves per epoch (≥ 10000: mature nodes ~1% validated).
    #[arg(long, default_value_t = 10_000, value_parser = crate::bounds::count_u64(1, 1_000_000_000))]
    pub traffic: u64,
    /// Equal-power validators.
    #[arg(long, default_value_t = 10, value_parser = crate::bounds::count(1, 100_000))]
    pub validators: usize,
    /// Epochs simulated (30 to full reputation).
    #[arg(long, default_value_t = 60, value_parser = crate::bounds::count(1, 100_000))]
    pub epochs: usize,
    /// Simulated nodes per strategy and rule.
    #[arg(long, default_value_t = 200, value_parser = crate::bounds::count(1, 1_000_000))]
    pub runs: usize,
    /// The honest failure rate the status rules assume (Gonka: 0.05).
    #[arg(long, default_value_t = 0.05, value_parser = crate::bounds::unit)]
    pub network_fpr: f64,
    /// The node's true honest failure rate (default: measured, held-out).
    #[arg(long, value_parser = crate::bounds::unit)]
    pub honest_fail: Option<f64>,
    /// Cost of an honest inference as a share of its reward.
    #[arg(long, default_value_t = 0.5, value_parser = crate::bounds::amount)]
    pub honest_cost: f64,
    /// Collateral in epochs of honest profit (20% slashed when INVALID).
    #[arg(long, default_value_t = 10.0, value_parser = crate::bounds::amount)]
    pub collateral_epochs: f64,
    /// Cost of the claimed model's proof prefill relative to decoding (prefill attack).
    #[arg(long, default_value_t = 0.1, value_parser = crate::bounds::amount)]
    pub prefill_cost: f64,
    /// Shares of requests cheated on.
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.05,0.2,1", value_parser = crate::bounds::unit)]
    pub cheat_shares: Vec<f64>,
    /// The validator's per-sample detector whose held-out detection and
    /// honest flag rate feed the simulation: gonka_similarity (Gonka's
    /// deployed distance), any metric of the run's report, or
    /// "combined (logistic, all metrics)".
    #[arg(long, default_value = "gonka_similarity")]
    pub detector: String,
}

impl NetworkArgs {
    fn settings(&self) -> EconomicsSettings {
        EconomicsSettings {
            traffic: self.traffic,
            validators: self.validators,
            epochs: self.epochs,
            runs: self.runs,
            network_fpr: self.network_fpr,
            honest_fail: self.honest_fail,
            honest_cost: self.honest_cost,
            collateral_epochs: self.collateral_epochs,
            prefill_cost: self.prefill_cost,
            cheat_shares: self.cheat_shares.clone(),
            detector: self.detector.clone(),
        }
    }
}

impl SimulateFraudArgs {
    fn attacks(&self) -> Vec<Attack> {
        let mut out = Vec::new();
        if let Some(precision) = self.quant {
            out.push(Attack::Quant { precision });
        }
        if let Some(model) = &self.substitute {
            out.push(Attack::Substitute {
                model: model.clone(),
            });
        }
        if let Some(model) = &self.prefill {
            out.push(Attack::Prefill {
                model: model.clone(),
            });
        }
        if out.is_empty() {
            out.push(Attack::Quant {
                precision: Precision::Int4,
            });
        }
        out
    }

    fn out_dir(&self) -> PathBuf {
        self.out.clone().unwrap_or_else(|| {
            let name = Path::new(&self.model)
                .file_stem()
                .map_or(self.model.clone(), |s| s.to_string_lossy().into_owned());
            PathBuf::from("results/fraud/runs").join(name)
        })
    }
}

pub fn simulate_fraud_cmd(args: SimulateFraudArgs) -> Result<()> {
    let out = args.out_dir();
    if args.report || args.economics {
        return reanalyse(&out, &args);
    }
    let attacks = args.attacks();
    let data_dir = datasets::data_dir(args.data_dir.as_deref())?;
    let count = args.samples_honest.max(args.samples_fraud).max(1);
    let prompts = prompts::mixture(&data_dir, &args.prompts, count)?;
    if out.join("meta.json").exists() && !args.resume {
        anyhow::bail!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    let fp = fingerprint_of(&args)?;
    let keep = args
        .keep_artifacts
        .as_deref()
        .map(samples::keep_dir)
        .transpose()?;
    let mut lab = Lab::load(fp.clone(), &attacks, prompts, |what| {
        eprintln!("loading {what}")
    })?;
    if let Some(dir) = keep {
        lab.keep_artifacts(dir);
    }
    for (role, v) in &lab.variants {
        if !v.fallbacks.is_empty() {
            eprintln!(
                "{role}: {} tensors fell back: {:?}",
                v.fallbacks.len(),
                v.fallbacks
            );
        }
    }
    let mut journal = samples::open(&out, &fp, run_info(&lab), args.resume)?;
    write_variants(&out, &lab)?;
    let todo = samples::plan(
        &attacks,
        args.samples_honest,
        args.samples_fraud,
        &journal.done,
    );
    // A round holds `parallel` samples of each executor (the plan
    // interleaves honest and attack samples).
    let round = args.parallel * (1 + attacks.len());
    run(lab, &mut journal, todo, round, args.parallel)?;
    outln!("{}", report_run(&out)?);
    Ok(())
}

/// `--report` and `--economics`: the analysis of a run's samples again,
/// and with `--economics` the network simulation on its rates.
fn reanalyse(out: &Path, args: &SimulateFraudArgs) -> Result<()> {
    outln!("{}", report_run(out)?);
    if args.economics {
        let settings = args.network.settings();
        let page = nsed::pages::economics::economics_page(out, &settings, |l| eprintln!("{l}"))?;
        outln!("{page}");
    }
    Ok(())
}

/// What the run's samples depend on: the claimed model (by sha256), the
/// validator's and honest executor's precisions, prompts, sampling.
fn fingerprint_of(args: &SimulateFraudArgs) -> Result<Fingerprint> {
    let claimed_sha256 = nsed::engine::registry::Registry::load()?
        .resolve(&args.model)?
        .sha256()?;
    Ok(Fingerprint {
        claimed: args.model.clone(),
        claimed_sha256,
        validator: args.validator,
        honest: args.honest,
        honest_disagreement: format!(
            "validator {} (batched prefill) vs honest executor {} (decode){}",
            args.validator.name(),
            args.honest.name(),
            match (args.executor_device, args.validator_device) {
                (None, None) => String::new(),
                (e, v) => format!(
                    "; executors on {}, validator on {}",
                    e.map_or("--device".to_string(), |d| d.to_string()),
                    v.map_or("--device".to_string(), |d| d.to_string())
                ),
            }
        ),
        sources: prompts::describe(&args.prompts)?,
        executor_device: args.executor_device,
        validator_device: args.validator_device,
        temperature_honest: args.temp_honest,
        temperature_fraud: args.temp_fraud,
        max_tokens: args.max_tokens,
        top_k: args.top_k,
        seed: args.seed,
    })
}

/// Provenance of a simulate-fraud run.
fn run_info(lab: &Lab) -> RunInfo {
    RunInfo {
        started: provenance::utc_now(),
        commit: provenance::commit(),
        nsed_version: env!("CARGO_PKG_VERSION").to_string(),
        host_cpu: provenance::cpu_name(),
        kernel: nsed::engine::qmm::path::active().name().to_string(),
        threads: rayon::current_num_threads(),
        models: lab.models(),
        command: std::env::args().collect(),
        sandbox: None,
    }
}

fn run(
    mut lab: Lab,
    journal: &mut samples::SampleJournal,
    todo: Vec<(Option<Attack>, usize)>,
    round: usize,
    parallel: usize,
) -> Result<()> {
    let limits = Limits {
        max_batch: parallel,
        ..Limits::default()
    };
    let done = journal.done.len() as u64;
    let bar = ProgressBar::new(done + todo.len() as u64);
    bar.set_position(done);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:25}] {pos}/{len} ETA {eta} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let samples = todo.chunks(round.max(1)).flat_map(|chunk| match parallel {
        1 => chunk
            .iter()
            .map(|(attack, index)| lab.sample(attack.as_ref(), *index))
            .collect::<Vec<_>>(),
        _ => lab.samples(chunk, limits),
    });
    for s in samples {
        journal.append(&s)?;
        let line = match &s.error {
            Some(e) => format!("{} failed: {e}", s.key),
            None => format!(
                "{} {} tokens, D {:.4}, seed mismatch {:.3}",
                s.key,
                s.tokens,
                analysis::value(&s, analysis::GONKA_DISTANCE).unwrap_or(f64::NAN),
                s.seed_mismatch.unwrap_or(f64::NAN)
            ),
        };
        bar.set_message(line.clone());
        bar.inc(1);
        if bar.is_hidden() {
            eprintln!("[{}/{}] {line}", bar.position(), bar.length().unwrap_or(0));
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// What loading each variant did (fallback tensors, repacking), kept beside
/// the samples.
fn write_variants(out: &Path, lab: &Lab) -> Result<()> {
    let json = serde_json::to_vec_pretty(&lab.variants)?;
    nsed::results::output::write_atomic(&out.join("variants.json"), &json)?;
    Ok(())
}

/// `nsed report fraud DIR`.
pub fn report_fraud_cmd(dir: &Path) -> Result<()> {
    outln!("{}", report_run(dir)?);
    Ok(())
}

/// Analyze a run directory; writes report.md, metrics.csv and lengths.csv
/// there and returns the markdown.
pub(crate) fn report_run(dir: &Path) -> Result<String> {
    let run = nsed::pages::fraud::read_run(dir.to_path_buf())
        .with_context(|| format!("{} is not a simulate-fraud run directory", dir.display()))?;
    let report = nsed::pages::fraud_run::write(&run)?;
    if let Some(e) = &report.figures_error {
        eprintln!("warning: figures not written: {e}");
    }
    Ok(report.markdown)
}
