//! `nsed simulate-fraud` and `nsed report fraud`: argument handling, progress
//! and files around the library's fraud module.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use nsed::bench::datasets;
use nsed::engine::batch::Limits;
use nsed::fraud::analysis::{self, Analysis};
use nsed::fraud::economics::{self, Network, Rule};
use nsed::fraud::samples::{self, Fingerprint, Lab, Meta};
use nsed::fraud::variant::VariantReport;
use nsed::fraud::{heldout, pernode, plots, prompts};
use nsed::fraud::{Attack, Precision};
use nsed::pages::fraud::FraudRun;
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
    /// Directory of the datasets (default: $NSED_DATA_DIR, else the repository's datasets/).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Run directory (default: results/fraud/runs/<model>).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
        outln!("{}", report_run(&out)?);
        if args.economics {
            outln!("{}", economics_run(&out, &args.network)?);
        }
        return Ok(());
    }
    let attacks = args.attacks();
    let data_dir = datasets::data_dir(args.data_dir.as_deref())?;
    let count = args.samples_honest.max(args.samples_fraud).max(1);
    let prompts = prompts::mixture(&data_dir, &args.prompts, count)?;
    let claimed_sha256 = nsed::engine::registry::Registry::load()?
        .resolve(&args.model)?
        .sha256()?;
    if out.join("meta.json").exists() && !args.resume {
        anyhow::bail!(
            "{} already holds a run: pass --resume to continue it, or choose another --out",
            out.display()
        );
    }
    let fp = Fingerprint {
        claimed: args.model.clone(),
        claimed_sha256,
        validator: args.validator,
        honest: args.honest,
        honest_disagreement: format!(
            "validator {} (batched prefill) vs honest executor {} (decode)",
            args.validator.name(),
            args.honest.name()
        ),
        sources: prompts::describe(&args.prompts)?,
        temperature_honest: args.temp_honest,
        temperature_fraud: args.temp_fraud,
        max_tokens: args.max_tokens,
        top_k: args.top_k,
        seed: args.seed,
    };
    let lab = Lab::load(fp.clone(), &attacks, prompts, |what| {
        eprintln!("loading {what}")
    })?;
    for (role, v) in &lab.variants {
        if !v.fallbacks.is_empty() {
            eprintln!(
                "{role}: {} tensors fell back: {:?}",
                v.fallbacks.len(),
                v.fallbacks
            );
        }
    }
    let info = RunInfo {
        started: provenance::utc_now(),
        commit: provenance::commit(),
        nsed_version: env!("CARGO_PKG_VERSION").to_string(),
        host_cpu: provenance::cpu_name(),
        kernel: nsed::engine::qmm::path::active().name().to_string(),
        threads: rayon::current_num_threads(),
        models: lab.models(),
        command: std::env::args().collect(),
        sandbox: None,
    };
    let mut journal = samples::open(&out, &fp, info, args.resume)?;
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

/// Simulate the network with the run's measured detection rates; writes
/// economics.md and economics.csv.
fn economics_run(dir: &Path, n: &NetworkArgs) -> Result<String> {
    let samples = samples::read(dir)?;
    let text = std::fs::read_to_string(dir.join("variants.json"))
        .with_context(|| format!("{}: no variants.json", dir.display()))?;
    let variants: Vec<(String, VariantReport)> = serde_json::from_str(&text)?;
    let held_out = heldout::evaluate(&samples);
    if held_out.is_empty() {
        anyhow::bail!(
            "{}: too few samples for held-out detection rates (needs {} prompts with an honest and a fraud sample); resume the run with more --samples-honest/--samples-fraud",
            dir.display(),
            2 * heldout::FOLDS
        );
    }
    if !held_out.iter().any(|h| h.detector == n.detector) {
        let mut known: Vec<&str> = held_out.iter().map(|h| h.detector.as_str()).collect();
        known.dedup();
        anyhow::bail!(
            "--detector `{}` is not a detector of this run; use one of: {}",
            n.detector,
            known.join(", ")
        );
    }
    let (attacks, flags) = economics::inputs(&held_out, &n.detector, &variants, n.prefill_cost);
    if attacks.is_empty() {
        anyhow::bail!(
            "{}: no attack's weights are in variants.json",
            dir.display()
        );
    }
    let (measured, upper) = (flags.rate(), flags.upper());
    let net = Network {
        traffic: n.traffic,
        validators: n.validators,
        network_fpr: n.network_fpr,
        honest_fail: n.honest_fail.unwrap_or(measured),
        honest_cost: n.honest_cost,
        collateral_epochs: n.collateral_epochs,
        slash: 0.2,
        epochs: n.epochs,
    };
    let rules = [
        Rule::Gonka,
        Rule::Sprt {
            p1: 3.0 * n.network_fpr,
            alpha: 1e-4,
            beta: 0.01,
        },
        Rule::Binomial { alpha: 1e-3 },
    ];
    let strategies = economics::strategies(&attacks, &n.cheat_shares, &[0, 30]);
    eprintln!(
        "simulating {} strategies x {} rules x {} nodes",
        strategies.len(),
        rules.len(),
        n.runs
    );
    let outcomes = economics::table(&net, &strategies, &rules, n.runs, 42);
    let mut rates = vec![measured, upper];
    rates.extend(n.honest_fail);
    let ejections = economics::false_ejections(&net, &rules, &rates, n.runs, 4242);
    let md = format!(
        "# Economics of cheating · {}\n\n\
         Detector `{}`: detection per attack is its mean held-out detection; the honest failure \
         rate is the mean of honest samples flagged on held-out prompts over {} partitions, \
         {:.2}/{} ({:.2}%; the thresholds' design rate {:.2}%), with the exact 95% upper bound of \
         the worst partition ({}/{}) {:.2}%.\n\n{}\n{}",
        dir.display(),
        n.detector,
        heldout::REPEATS,
        flags.mean,
        flags.n,
        100.0 * measured,
        100.0 * flags.design,
        flags.worst,
        flags.n,
        100.0 * upper,
        economics::markdown(&net, &attacks, &outcomes),
        false_ejection_markdown(&ejections, n.runs, n.epochs),
    );
    nsed::results::output::write_atomic(&dir.join("economics.md"), md.as_bytes())?;
    let header = [
        "strategy",
        "rule",
        "runs",
        "ejected",
        "ejected_while_honest",
        "catch_per_epoch",
        "caught_first_epoch",
        "median_epochs_to_ejection",
        "profit_vs_honest",
    ];
    let rows = outcomes.iter().map(|o| {
        [
            o.strategy.to_string(),
            o.rule.to_string(),
            o.runs.to_string(),
            o.ejected.to_string(),
            o.ejected_while_honest.to_string(),
            o.catch_per_epoch.to_string(),
            o.caught_first_epoch.to_string(),
            o.median_epochs_to_ejection
                .map_or(String::new(), |m| m.to_string()),
            o.profit_vs_honest.to_string(),
        ]
    });
    let csv = nsed::results::csv_text::csv_text(&header, rows);
    nsed::results::output::write_atomic(&dir.join("economics.csv"), csv.as_bytes())?;
    Ok(md)
}

/// False ejections of honest nodes per 1,000 node-epochs, per rule and
/// assumed honest failure rate.
fn false_ejection_markdown(rows: &[(String, f64, f64)], runs: usize, epochs: usize) -> String {
    let mut out = format!(
        "\n## False ejections of honest nodes\n\nPer 1,000 node-epochs served ({runs} simulated \
         honest nodes × up to {epochs} epochs each), at the measured honest failure rate and at \
         its 95% upper bound (and at `--honest-fail` when given).\n\n\
         | rule | honest failure rate | false ejections per 1,000 node-epochs |\n|---|---|---|\n"
    );
    for (rule, rate, per_1000) in rows {
        out.push_str(&format!(
            "| {rule} | {:.2}% | {per_1000:.2} |\n",
            100.0 * rate
        ));
    }
    out
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
    write_report(&run)
}

/// Write an analyzed run's report.md, CSVs and figures into its directory;
/// returns the markdown.
pub(crate) fn write_report(run: &FraudRun) -> Result<String> {
    let (meta, analysis, dir) = (&run.meta, &run.analysis, run.dir.as_path());
    let (samples, held_out, per_node) = (&run.samples, &run.held_out, &run.per_node);
    let model = &meta.fingerprint.claimed;
    let md = format!(
        "{}\n{}\n## Held-out detection\n\n{}\n{}{}\n### Held-out detection by output length\n\n{}\n\
         ## Per-node tests\n\n{}\n{}{}\n\
         ![power per node](power-per-node.png)\n",
        header(meta, analysis, dir),
        analysis.markdown(model),
        heldout::legend(),
        heldout::TABLE_HEADER,
        heldout::markdown(model, held_out),
        heldout::length_markdown(held_out),
        pernode::legend(),
        pernode::TABLE_HEADER,
        pernode::markdown(model, per_node),
    );
    let write = |name: &str, text: &str| {
        nsed::results::output::write_atomic(&dir.join(name), text.as_bytes())
    };
    write("report.md", &md)?;
    write("metrics.csv", &analysis.metrics_csv())?;
    write("lengths.csv", &analysis.lengths_csv())?;
    write("heldout.csv", &heldout::csv(held_out))?;
    write("heldout-length.csv", &heldout::length_csv(held_out))?;
    write("pernode.csv", &pernode::csv(per_node))?;
    write("perplexity.csv", &plots::perplexity_csv(samples, analysis))?;
    // Figures need a font; the tables above are written either way.
    let figures =
        plots::write(dir, samples, analysis).and_then(|_| plots::write_power(dir, per_node));
    if let Err(e) = figures {
        eprintln!("warning: figures not written: {e}");
    }
    Ok(md)
}

fn header(meta: &Meta, a: &Analysis, dir: &Path) -> String {
    let fp = &meta.fingerprint;
    format!(
        "# Fraud detection · claimed `{}` · {} honest samples{}\n\n\
         - validator {} · honest executor {} · honest disagreement: {}\n\
         - prompts {} · temperature honest {} / fraud {} · max tokens {} · top-k {} · seed {}\n\
         - model sha256 {} · {}\n\
         - run directory `{}`; regenerate with `nsed report fraud {}`\n",
        fp.claimed,
        a.honest_n,
        if a.failed > 0 {
            format!(" ({} samples failed)", a.failed)
        } else {
            String::new()
        },
        fp.validator.name(),
        fp.honest.name(),
        fp.honest_disagreement,
        fp.sources.join(","),
        fp.temperature_honest,
        fp.temperature_fraud,
        fp.max_tokens,
        fp.top_k,
        fp.seed,
        fp.claimed_sha256,
        provenance(&meta.runs),
        dir.display(),
        dir.display()
    )
}

/// Who produced the samples: every invocation of a resumed run, not only
/// the last (the fingerprint guarantees they share every setting that
/// changes a sample; thread count and commit may differ).
fn provenance(runs: &[RunInfo]) -> String {
    let distinct = |field: &dyn Fn(&RunInfo) -> String| {
        let mut seen: Vec<String> = Vec::new();
        for value in runs.iter().map(field) {
            if !seen.contains(&value) {
                seen.push(value);
            }
        }
        seen.join(", ")
    };
    let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
        return "no invocation recorded".into();
    };
    format!(
        "{} invocation{} from {} to {} · commit {} · {} · threads {}",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        first.started,
        last.started,
        distinct(&|r| r.commit.clone()),
        distinct(&|r| r.host_cpu.clone()),
        distinct(&|r| r.threads.to_string())
    )
}
