//! Sample runs: honest and cheating executors answer the same prompts, the
//! validator replays every artifact, and each sample's metrics (every metric
//! of [`crate::verify`], the seed check, a per-position summary) become one
//! journal line as soon as it is done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::prompts::Prompt;
use super::variant::{self, Precision, VariantReport};
use super::{prefill_attack, Attack, FraudError, Role};
use crate::engine::batch::{run_all, BatchError, Done, Limits, Work};
use crate::engine::chat::Message;
use crate::engine::device::{default_device, ComputeDevice};
use crate::engine::generate::generate;
use crate::engine::runtime::Runtime;
use crate::engine::sampling::SamplingParams;
use crate::results::journal::{self, Journal, Record};
use crate::results::provenance::RunInfo;
use crate::verify;
use crate::verify::artifact::{Artifact, ModelClaim, Request};

/// The journal file of a run directory: one [`Sample`] per line.
pub const SAMPLES: &str = "samples.jsonl";
/// The schema tag of a simulate-fraud run's `meta.json`.
pub const SCHEMA: &str = "nsed.fraud/v1";

/// What must not change when a run is resumed. Attacks are not part of it:
/// one run directory collects the fraud samples of several attacks against
/// the same honest samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The model every executor claims to run (registry id or path).
    pub claimed: String,
    /// sha256 (hex) of the claimed model's GGUF file.
    pub claimed_sha256: String,
    /// The validator's weights.
    pub validator: Precision,
    /// The honest executor's weights.
    pub honest: Precision,
    /// Why honest artifacts differ from the validator's replay at all.
    pub honest_disagreement: String,
    /// The prompt sources: a name, or a file's path with the sha256 of its bytes.
    pub sources: Vec<String>,
    /// Where the executors (honest and cheating) run; absent: the global
    /// `--device` (every role on one path, as runs before the field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_device: Option<ComputeDevice>,
    /// Where the validator replays; absent: the global `--device`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator_device: Option<ComputeDevice>,
    /// Sampling temperature of the honest executor.
    pub temperature_honest: f64,
    /// Sampling temperature of the cheating executors.
    pub temperature_fraud: f64,
    /// Most output tokens per sample.
    pub max_tokens: usize,
    /// Top log-probabilities per position in the artifacts.
    pub top_k: usize,
    /// The run's seed; sample i is requested with seed + i.
    pub seed: u64,
}

/// A run's `meta.json`: its [`Fingerprint`] and one [`RunInfo`] per invocation.
pub type Meta = journal::Meta<Fingerprint, RunInfo>;
/// The open journal of a run's samples (`samples.jsonl`).
pub type SampleJournal = Journal<Sample>;

/// Per-position summary of one replay (`None` where a value is undefined:
/// JSON has no NaN).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Positions {
    /// The executor's logprob of its chosen token at each position.
    pub executor_logprob: Vec<Option<f32>>,
    /// The validator's logprob of the executor's token at each position.
    pub validator_logprob: Vec<Option<f32>>,
    /// Gonka's per-position distance d_i.
    pub gonka_d: Vec<Option<f32>>,
    /// The claimed token's rank (PIT) in the validator's sampler
    /// ([`crate::verify::uniformity`]); empty in runs made before it was
    /// recorded.
    #[serde(default)]
    pub pit: Vec<f32>,
}

/// One honest or fraudulent artifact and what the validator made of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The journal key, `<setting>/<index>` (see [`key`]).
    pub key: String,
    /// Honest or fraudulent executor.
    pub role: Role,
    /// `honest` or the attack's label.
    pub setting: String,
    /// The sample's index within its setting; sample i of every setting answers the same prompt.
    pub index: usize,
    /// The prompt's id (`<source>/<id>`).
    pub prompt: String,
    /// The prompt's language tag (`en`; `und` when a user's file gives none).
    pub lang: String,
    /// The executor's sampling temperature (honest or cheater's, per the fingerprint).
    pub temperature: f64,
    /// The request's seed: the run's seed plus `index`.
    pub seed: u64,
    /// The request's inference id, `<setting>-<index>`.
    pub inference_id: String,
    /// Output length N.
    pub tokens: usize,
    /// Why generation ended (`eos`, `stop`, `length`, `context`); empty when unknown.
    pub finish: String,
    /// A failure before any distance (e.g. the prompt re-tokenizes differently).
    pub precheck: Option<String>,
    /// Every metric's value (`name`) and secondary figures (`name.extra`);
    /// a non-finite value (e.g. an infinite distance after a failed
    /// pre-check) is left out, as JSON cannot hold it.
    pub metrics: BTreeMap<String, f64>,
    /// Share of positions whose seed-bound re-derivation disagrees.
    pub seed_mismatch: Option<f64>,
    /// p-value of the Kolmogorov-Smirnov test of the sample's token ranks
    /// against the uniform law (absent in runs made before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank_uniformity_p: Option<f64>,
    /// Wall time of the executor's generation, seconds (its share of the batch when batched).
    pub executor_seconds: f64,
    /// Wall time of the validator's teacher-forced replay, seconds.
    pub validator_seconds: f64,
    /// Set when the sample could not be produced; it then has no metrics.
    pub error: Option<String>,
    /// Per-position figures of the replay (empty when the sample failed).
    pub positions: Positions,
}

impl Record for Sample {
    fn key(&self) -> String {
        self.key.clone()
    }
}

/// The record key of sample `index` of a setting.
pub fn key(attack: Option<&Attack>, index: usize) -> String {
    match attack {
        None => format!("honest/{index}"),
        Some(a) => format!("{}/{index}", a.label()),
    }
}

/// The work of a run, interleaved so a partial run stays balanced: honest
/// sample i, then sample i of each attack, then i + 1.
pub fn plan(
    attacks: &[Attack],
    honest: usize,
    fraud: usize,
    done: &std::collections::HashSet<String>,
) -> Vec<(Option<Attack>, usize)> {
    let mut out = Vec::new();
    for i in 0..honest.max(fraud) {
        if i < honest {
            out.push((None, i));
        }
        if i < fraud {
            out.extend(attacks.iter().map(|a| (Some(a.clone()), i)));
        }
    }
    out.retain(|(a, i)| !done.contains(&key(a.as_ref(), *i)));
    out
}

/// Create the directory of `--keep-artifacts` before any model loads, so a
/// bad path fails at once.
pub fn keep_dir(dir: &Path) -> Result<PathBuf, FraudError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        FraudError::Input(format!(
            "cannot create --keep-artifacts {}: {e}; choose a writable directory",
            dir.display()
        ))
    })?;
    Ok(dir.to_path_buf())
}

/// The loaded executors and validator of one run.
pub struct Lab {
    /// The run's fingerprint: what every sample depends on.
    pub fp: Fingerprint,
    validator: Runtime,
    honest: Runtime,
    /// Per attack label: the cheating executor (quant, substitute) or the
    /// cheap generator (prefill).
    cheaters: BTreeMap<String, Runtime>,
    /// What loading each variant did to the weights.
    pub variants: Vec<(String, VariantReport)>,
    prompts: Vec<Prompt>,
    /// Where each executor's artifact is written as it was made, when asked
    /// (`--keep-artifacts`): to check it again with `nsed verify` on other
    /// paths or validators.
    keep: Option<PathBuf>,
}

impl Lab {
    /// Load the validator, the honest executor and one executor per attack.
    pub fn load(
        fp: Fingerprint,
        attacks: &[Attack],
        prompts: Vec<Prompt>,
        mut on_load: impl FnMut(&str),
    ) -> Result<Self, FraudError> {
        if prompts.is_empty() {
            return Err(FraudError::Input("no prompts".into()));
        }
        let mut variants = Vec::new();
        let executors = fp.executor_device.unwrap_or_else(default_device);
        let validator_on = fp.validator_device.unwrap_or_else(default_device);
        let mut load = |role: &str,
                        spec: &str,
                        p: Precision,
                        device: ComputeDevice|
         -> Result<Runtime, FraudError> {
            on_load(&format!("{role}: {spec} at {} on {device}", p.name()));
            let (rt, report) = variant::load(spec, p, device)?;
            variants.push((role.to_string(), report));
            Ok(rt)
        };
        let validator = load("validator", &fp.claimed, fp.validator, validator_on)?;
        let honest = load("honest", &fp.claimed, fp.honest, executors)?;
        let mut cheaters = BTreeMap::new();
        for a in attacks {
            let rt = match a {
                Attack::Quant { precision } => {
                    load(&a.label(), &fp.claimed, *precision, executors)?
                }
                Attack::Substitute { model } | Attack::Prefill { model } => {
                    load(&a.label(), model, fp.honest, executors)?
                }
            };
            let same_vocab = verify::prompt_ids(&rt, &probe())?
                == verify::prompt_ids(&honest, &probe())?
                && rt.tokenizer.vocab_size() == honest.tokenizer.vocab_size();
            if !same_vocab {
                return Err(FraudError::Vocabulary(format!(
                    "{} and {} tokenize differently",
                    rt.id(),
                    fp.claimed
                )));
            }
            cheaters.insert(a.label(), rt);
        }
        Ok(Self {
            fp,
            validator,
            honest,
            cheaters,
            variants,
            prompts,
            keep: None,
        })
    }

    /// Keep every executor's artifact in `dir` (made by [`keep_dir`]) as
    /// `<setting>-<index>.json` (e.g. `int4-3.json`), as it was made, before
    /// the validator sees it.
    pub fn keep_artifacts(&mut self, dir: PathBuf) {
        self.keep = Some(dir);
    }

    /// The models of the run as (role, id) for the run's metadata.
    pub fn models(&self) -> Vec<(String, String)> {
        let mut out = vec![
            ("validator".into(), self.validator.id()),
            ("honest".into(), self.honest.id()),
        ];
        out.extend(self.cheaters.iter().map(|(k, rt)| (k.clone(), rt.id())));
        out
    }

    /// Produce and verify sample `index` of `attack` (honest when `None`).
    /// Failures of the sample itself are recorded in it, not returned.
    pub fn sample(&mut self, attack: Option<&Attack>, index: usize) -> Sample {
        let (mut sample, request) = self.prepare(attack, index);
        let start = Instant::now();
        let artifact = self.execute(attack, &request);
        sample.executor_seconds = start.elapsed().as_secs_f64();
        self.finish(sample, artifact)
    }

    /// Produce and verify several samples, in the order of `items`. Each
    /// executor's generations run batched (up to `limits.max_batch`
    /// sequences per forward pass; every generation is bit-identical to
    /// running it alone, so a sample does not depend on its batch), the
    /// prefill attack's two-model executions one at a time, and the
    /// validator's replays one at a time. A batched sample's
    /// `executor_seconds` is its share of its batch's wall time.
    pub fn samples(&mut self, items: &[(Option<Attack>, usize)], limits: Limits) -> Vec<Sample> {
        let mut prepared: Vec<(Sample, Request)> = items
            .iter()
            .map(|(attack, index)| self.prepare(attack.as_ref(), *index))
            .collect();
        let mut artifacts: Vec<Option<Result<Artifact, FraudError>>> =
            items.iter().map(|_| None).collect();
        let mut by_executor: BTreeMap<Option<&Attack>, Vec<usize>> = BTreeMap::new();
        for (k, (attack, _)) in items.iter().enumerate() {
            if !matches!(attack, Some(Attack::Prefill { .. })) {
                by_executor.entry(attack.as_ref()).or_default().push(k);
            }
        }
        for (executor, members) in by_executor {
            let requests: Vec<&Request> = members.iter().map(|&k| &prepared[k].1).collect();
            let start = Instant::now();
            let made = self.generate_batch(executor, &requests, limits);
            let share = start.elapsed().as_secs_f64() / members.len() as f64;
            for (&k, artifact) in members.iter().zip(made) {
                prepared[k].0.executor_seconds = share;
                artifacts[k] = Some(artifact);
            }
        }
        prepared
            .into_iter()
            .zip(artifacts)
            .zip(items)
            .map(|(((mut sample, request), artifact), (attack, _))| {
                let artifact = artifact.unwrap_or_else(|| {
                    let start = Instant::now();
                    let artifact = self.execute(attack.as_ref(), &request);
                    sample.executor_seconds = start.elapsed().as_secs_f64();
                    artifact
                });
                self.finish(sample, artifact)
            })
            .collect()
    }

    /// The artifacts of one executor (`None`: the honest one; else a quant
    /// or substitute attack's) for `requests`, generated together.
    fn generate_batch(
        &mut self,
        attack: Option<&Attack>,
        requests: &[&Request],
        limits: Limits,
    ) -> Vec<Result<Artifact, FraudError>> {
        // Only a substitute changes its claim (hashing the claimed file
        // when it is not in the registry, so once per batch).
        let claim = match attack {
            Some(Attack::Substitute { .. }) => Some(self.claim()),
            _ => None,
        };
        let rt = match attack {
            None => &mut self.honest,
            Some(a) => match self.cheaters.get_mut(&a.label()) {
                Some(rt) => rt,
                None => {
                    let missing = || FraudError::Input(format!("{} is not loaded", a.label()));
                    return requests.iter().map(|_| Err(missing())).collect();
                }
            },
        };
        let works = requests
            .iter()
            .map(|r| {
                let ids = verify::prompt_ids(rt, r)?;
                Work::generate(rt, &ids, &r.to_generate(r.top_logprobs, false))
            })
            .collect();
        let done = run_all(rt, works, limits);
        requests
            .iter()
            .zip(done)
            .map(|(request, done)| {
                let gen = done.and_then(Done::generation).map_err(batch_error)?;
                let mut artifact = Artifact::from_generation(rt, (*request).clone(), &gen, false)?;
                if let Some(claim) = &claim {
                    // The substitute claims the model it stands in for.
                    artifact.model = claim
                        .as_ref()
                        .map_err(|e| FraudError::Input(e.to_string()))?
                        .clone();
                }
                Ok(artifact)
            })
            .collect()
    }

    /// What a cheating executor claims: the honest model.
    fn claim(&self) -> Result<ModelClaim, FraudError> {
        Ok(ModelClaim {
            id: self.honest.id(),
            sha256: self.honest.sha256()?,
            arch: self
                .honest
                .gguf
                .architecture()
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// A sample's record before it runs, and the request its executor gets.
    fn prepare(&self, attack: Option<&Attack>, index: usize) -> (Sample, Request) {
        let prompt = &self.prompts[index % self.prompts.len()];
        let role = if attack.is_some() {
            Role::Fraud
        } else {
            Role::Honest
        };
        let setting = attack.map_or("honest".to_string(), Attack::label);
        let request = self.request(prompt, role, &setting, index);
        let sample = Sample {
            key: key(attack, index),
            role,
            setting,
            index,
            prompt: prompt.id.clone(),
            lang: prompt.lang.clone(),
            temperature: request.sampling.temperature,
            seed: request.seed,
            inference_id: request.inference_id.clone(),
            tokens: 0,
            finish: String::new(),
            precheck: None,
            metrics: BTreeMap::new(),
            seed_mismatch: None,
            rank_uniformity_p: None,
            executor_seconds: 0.0,
            validator_seconds: 0.0,
            error: None,
            positions: Positions::default(),
        };
        (sample, request)
    }

    /// Verify the executor's artifact into the sample (or record why there
    /// is none).
    fn finish(&mut self, mut sample: Sample, artifact: Result<Artifact, FraudError>) -> Sample {
        if let (Some(dir), Ok(a)) = (&self.keep, &artifact) {
            let path = dir.join(format!("{}.json", sample.key.replace('/', "-")));
            // A lost copy does not change the sample: say so and go on.
            if let Err(e) = crate::results::output::write_atomic(&path, a.to_json().as_bytes()) {
                eprintln!("warning: could not keep {}: {e}", path.display());
            }
        }
        let result = artifact.and_then(|mut a| self.fill(&mut sample, &mut a));
        if let Err(e) = result {
            sample.error = Some(e.to_string());
        }
        sample
    }

    fn request(&self, prompt: &Prompt, role: Role, setting: &str, index: usize) -> Request {
        let temperature = match role {
            Role::Honest => self.fp.temperature_honest,
            Role::Fraud => self.fp.temperature_fraud,
        };
        Request {
            messages: vec![Message::new("user", &prompt.text)],
            raw_prompt: None,
            sampling: SamplingParams {
                temperature,
                ..Default::default()
            },
            seed: self.fp.seed.wrapping_add(index as u64),
            inference_id: format!("{setting}-{index}"),
            max_tokens: self.fp.max_tokens,
            stop: Vec::new(),
            top_logprobs: self.fp.top_k,
            template_kwargs: Default::default(),
        }
    }

    fn fill(&mut self, sample: &mut Sample, artifact: &mut Artifact) -> Result<(), FraudError> {
        sample.tokens = artifact.positions.len();
        sample.finish = artifact
            .output
            .as_ref()
            .map(|o| o.finish_reason.clone())
            .unwrap_or_default();
        let opts = verify::Options {
            table: true,
            ..Default::default()
        };
        let report =
            verify::with_model(&mut self.validator, artifact, None, &sample.setting, &opts)?;
        sample.validator_seconds = report.validator_seconds.unwrap_or_default();
        sample.precheck = report.precheck.clone();
        for m in &report.metrics {
            let extras = m.extra.iter().map(|(k, v)| (format!("{}.{k}", m.name), *v));
            let values = std::iter::once((m.name.to_string(), m.value)).chain(extras);
            sample.metrics.extend(values.filter(|(_, v)| v.is_finite()));
        }
        sample.seed_mismatch = report
            .seed
            .as_ref()
            .map(|s| s.mismatches as f64 / s.positions.max(1) as f64);
        if let Some(seed) = &report.seed {
            sample.rank_uniformity_p = seed.rank_uniformity.map(|k| k.p);
            sample.positions.pit = seed.pit.iter().map(|&u| u as f32).collect();
        }
        if let Some(rows) = &report.table {
            let p = &mut sample.positions;
            let finite = |v: f64| v.is_finite().then_some(v as f32);
            for r in rows {
                p.executor_logprob.push(finite(r.executor_logprob));
                p.validator_logprob.push(finite(r.validator_logprob));
                p.gonka_d.push(r.gonka_d.and_then(finite));
            }
        }
        Ok(())
    }

    /// The artifact the (honest or cheating) executor publishes.
    fn execute(
        &mut self,
        attack: Option<&Attack>,
        request: &Request,
    ) -> Result<Artifact, FraudError> {
        let Some(attack) = attack else {
            return generate_artifact(&mut self.honest, request);
        };
        let cheater = self
            .cheaters
            .get_mut(&attack.label())
            .ok_or_else(|| FraudError::Input(format!("{} is not loaded", attack.label())))?;
        match attack {
            Attack::Quant { .. } => generate_artifact(cheater, request),
            Attack::Substitute { .. } => {
                let mut artifact = generate_artifact(cheater, request)?;
                // The substitute claims the model it stands in for.
                artifact.model = self.claim()?;
                Ok(artifact)
            }
            Attack::Prefill { .. } => prefill_attack(cheater, &mut self.honest, request),
        }
    }
}

/// A batch error as the fraud module's: generation failures keep their kind.
fn batch_error(e: BatchError) -> FraudError {
    match e {
        BatchError::Generate(g) => FraudError::Generate(g),
        other => FraudError::Input(other.to_string()),
    }
}

/// A short conversation both tokenizers must render to the same ids.
fn probe() -> Request {
    Request {
        messages: vec![Message::new(
            "user",
            "Verify: 12 × 7 = 84, naïve café 数学.",
        )],
        raw_prompt: None,
        sampling: SamplingParams::default(),
        seed: 0,
        inference_id: String::new(),
        max_tokens: 1,
        stop: Vec::new(),
        top_logprobs: 0,
        template_kwargs: Default::default(),
    }
}

fn generate_artifact(rt: &mut Runtime, request: &Request) -> Result<Artifact, FraudError> {
    let prompt = verify::prompt_ids(rt, request)?;
    let gen = generate(
        rt,
        &prompt,
        &request.to_generate(request.top_logprobs, false),
        |_, _| {},
    )?;
    Ok(Artifact::from_generation(rt, request.clone(), &gen, false)?)
}

/// Open a run directory (new, or resumed with the same fingerprint).
pub fn open(
    dir: &Path,
    fp: &Fingerprint,
    info: RunInfo,
    resume: bool,
) -> Result<SampleJournal, FraudError> {
    Ok(Journal::open(dir, SAMPLES, SCHEMA, fp, info, resume)?)
}

/// Every complete sample of a run directory.
pub fn read(dir: &Path) -> Result<Vec<Sample>, FraudError> {
    Ok(journal::read(dir, SAMPLES)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn plan_interleaves_and_skips_done_keys() {
        let int4 = Attack::Quant {
            precision: Precision::Int4,
        };
        let sub = Attack::Substitute { model: "m".into() };
        let done = HashSet::from(["honest/0".to_string(), "int4/1".to_string()]);
        let p = plan(&[int4.clone(), sub.clone()], 3, 2, &done);
        let keys: Vec<String> = p.iter().map(|(a, i)| key(a.as_ref(), *i)).collect();
        assert_eq!(
            keys,
            [
                "int4/0",
                "substitute:m/0",
                "honest/1",
                "substitute:m/1",
                "honest/2"
            ]
        );
    }
}
