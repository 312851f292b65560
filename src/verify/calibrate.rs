//! The calibration run behind `nsed calibrate`: honest artifacts of one
//! model made on one path, each replayed on another, every check's value
//! recorded per sample (one JSON line each, so a stopped run resumes), and
//! the split-conformal bounds of [`super::calibration`] fit on them with
//! their held-out flag rate over random half splits.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::artifact::{Artifact, Request};
use super::calibration::{self, Calibration, Fit, ModelRef, FITTED, SEED_SHARE};
use super::policy::ComputePath;
use super::{with_model, Options, Thresholds, VerifyError};
use crate::engine::chat::Message;
use crate::engine::device::ComputeDevice;
use crate::engine::generate::generate;
use crate::engine::runtime::Runtime;
use crate::engine::sampling::SamplingParams;

/// Random half splits behind the held-out flag rate.
pub const SPLITS: usize = 200;
/// Fewest honest samples a calibration is fit on.
pub const MIN_SAMPLES: usize = 20;

/// Why a calibration cannot run.
#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    /// Loading, generating or replaying failed.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The samples file cannot be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The samples file holds another run's samples.
    #[error("{0}")]
    Resume(String),
}

/// What one calibration run does.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Registry id or GGUF path.
    pub model: String,
    /// Where the honest artifacts are made.
    pub made_on: ComputeDevice,
    /// Where the validator replays them.
    pub replayed_on: ComputeDevice,
    /// Tokens per artifact, at most.
    pub max_tokens: usize,
    /// Sampling temperature (> 0: the seed check needs draws).
    pub temperature: f64,
    /// Top-k log-probabilities per position.
    pub top_logprobs: usize,
    /// Conformal level per check.
    pub alpha: f64,
    /// Sample i is seeded `seed + i`.
    pub seed: u64,
    /// The prompt sources as recorded (names, or files with their sha256).
    pub prompts: Vec<String>,
}

/// One honest sample: its prompt, seed, length and each check's value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRecord {
    /// Index in the prompt list.
    pub index: usize,
    /// The prompt's `source/id`.
    pub prompt_id: String,
    /// The sampling seed.
    pub seed: u64,
    /// Output positions.
    pub tokens: usize,
    /// Each fitted check's value.
    pub values: BTreeMap<String, f64>,
    /// The run's settings, so that a resume with others is refused.
    pub settings: String,
}

/// The loaded paths of a run.
pub struct Calibrator {
    settings: Settings,
    made: Runtime,
    validator: Runtime,
    model: ModelRef,
    fingerprint: String,
}

impl Calibrator {
    /// Load the model on both paths.
    pub fn load(settings: Settings) -> Result<Self, CalibrateError> {
        let made = Runtime::load_on(&settings.model, settings.made_on)
            .map_err(|e| VerifyError::Input(e.to_string()))?;
        let validator = Runtime::load_on(&settings.model, settings.replayed_on)
            .map_err(|e| VerifyError::Input(e.to_string()))?;
        let model = ModelRef {
            id: made.id(),
            sha256: made
                .sha256()
                .map_err(|e| VerifyError::Input(e.to_string()))?,
        };
        let s = &settings;
        let fingerprint = format!(
            "{} {} on {} -> {}; {} tokens, T {}, top-{}, seed {}",
            model.id,
            model.sha256,
            s.made_on,
            s.replayed_on,
            s.max_tokens,
            s.temperature,
            s.top_logprobs,
            s.seed
        );
        Ok(Self {
            settings,
            made,
            validator,
            model,
            fingerprint,
        })
    }

    /// The path artifacts are made on, with its hardware class.
    pub fn made_path(&self) -> ComputePath {
        ComputePath::of_isa(self.made.model.origin())
    }

    /// The path the validator replays on, with its hardware class.
    pub fn replayed_path(&self) -> ComputePath {
        ComputePath::of_isa(self.validator.model.origin())
    }

    /// The model, by id and sha256.
    pub fn model(&self) -> &ModelRef {
        &self.model
    }

    /// The samples already in `file` (none when it does not exist);
    /// refused when they were made with other settings.
    pub fn done(&self, file: &Path) -> Result<Vec<SampleRecord>, CalibrateError> {
        let f = match std::fs::File::open(file) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(io("cannot read", file, source)),
        };
        let mut out = Vec::new();
        for line in std::io::BufReader::new(f).lines() {
            let line = line.map_err(|source| io("cannot read", file, source))?;
            // A line cut by a stopped run is dropped and its sample redone.
            let Ok(record) = serde_json::from_str::<SampleRecord>(&line) else {
                continue;
            };
            if record.settings != self.fingerprint {
                return Err(CalibrateError::Resume(format!(
                    "{} holds samples of another run ({}); this one is {}: give another --output or remove it",
                    file.display(),
                    record.settings,
                    self.fingerprint
                )));
            }
            out.push(record);
        }
        Ok(out)
    }

    /// One honest artifact made on the first path and replayed on the
    /// second; `None` when the model stopped before two tokens (too short
    /// to score).
    pub fn sample(
        &mut self,
        index: usize,
        prompt_id: &str,
        prompt: &str,
    ) -> Result<Option<SampleRecord>, CalibrateError> {
        let s = &self.settings;
        let seed = s.seed + index as u64;
        let request = Request {
            messages: vec![Message::new("user", prompt)],
            raw_prompt: None,
            sampling: SamplingParams {
                temperature: s.temperature,
                ..Default::default()
            },
            seed,
            inference_id: format!("calibrate/{index}"),
            max_tokens: s.max_tokens,
            stop: Vec::new(),
            top_logprobs: s.top_logprobs,
            template_kwargs: BTreeMap::new(),
        };
        let prompt_ids = super::prompt_ids(&self.made, &request).map_err(VerifyError::from)?;
        let gen = generate(
            &mut self.made,
            &prompt_ids,
            &request.to_generate(s.top_logprobs, false),
            |_, _| {},
        )
        .map_err(VerifyError::from)?;
        if gen.tokens.len() < 2 {
            return Ok(None);
        }
        let mut artifact = Artifact::from_generation(&self.made, request, &gen, false)
            .map_err(|e| VerifyError::Input(e.to_string()))?;
        let opts = Options {
            thresholds: Thresholds::default(),
            seed_tolerance: 1.0,
            ..Options::default()
        };
        let report = with_model(&mut self.validator, &mut artifact, None, prompt_id, &opts)?;
        let mut values: BTreeMap<String, f64> = report
            .metrics
            .iter()
            .filter(|m| FITTED.iter().any(|(n, _)| *n == m.name))
            .map(|m| (m.name.to_string(), m.value))
            .collect();
        if let Some(seed) = &report.seed {
            values.insert(
                SEED_SHARE.to_string(),
                seed.mismatches as f64 / seed.positions.max(1) as f64,
            );
        }
        Ok(Some(SampleRecord {
            index,
            prompt_id: prompt_id.to_string(),
            seed,
            tokens: gen.tokens.len(),
            values,
            settings: self.fingerprint.clone(),
        }))
    }

    /// The thresholds file of `records`: the bounds, how they were fit,
    /// and where.
    pub fn fit(&self, records: &[SampleRecord]) -> Calibration {
        let s = &self.settings;
        let samples: Vec<BTreeMap<String, f64>> =
            records.iter().map(|r| r.values.clone()).collect();
        let honest = FITTED
            .iter()
            .map(|(name, _)| {
                let v: Vec<f64> = samples
                    .iter()
                    .filter_map(|x| x.get(*name).copied())
                    .collect();
                let q = |p| nsed_stats::quantile(&v, p).unwrap_or(f64::NAN);
                (name.to_string(), [q(0.0), q(0.5), q(1.0)])
            })
            .collect();
        let (made, replayed) = (self.made_path(), self.replayed_path());
        let provenance = [
            (
                "commit",
                crate::results::provenance::build_commit().to_string(),
            ),
            ("nsed_version", env!("CARGO_PKG_VERSION").to_string()),
            ("cpu", crate::results::provenance::cpu_name()),
            ("kernel", crate::engine::qmm::path::isa_level()),
            ("made_class", made.class.clone()),
            ("replayed_class", replayed.class.clone()),
            ("created", crate::results::provenance::utc_now()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Calibration {
            schema: calibration::SCHEMA.to_string(),
            model: Some(self.model.clone()),
            made_on: Some(made.name().to_string()),
            replayed_on: Some(replayed.name().to_string()),
            thresholds: calibration::fit_bounds(&samples, s.alpha),
            fit: Some(Fit {
                samples: samples.len(),
                max_tokens: s.max_tokens,
                temperature: s.temperature,
                top_logprobs: s.top_logprobs,
                prompts: s.prompts.clone(),
                alpha: s.alpha,
                rule: "split conformal per check: the k-th most extreme honest value, k = max(1, floor(alpha (n + 1))); a fresh honest artifact of the pair fails one check with probability at most k/(n + 1)".to_string(),
                honest,
                held_out_flag_rate: calibration::held_out_flag_rate(&samples, s.alpha, SPLITS, s.seed),
                splits: SPLITS,
                design_rate: nsed_stats::conformal::design_rate(samples.len(), s.alpha),
            }),
            provenance,
            note: Some(format!(
                "Honest artifacts of {} made on {made} and replayed on {replayed}, prompts from distinct items; `{}` regenerates it.",
                self.model.id,
                calibration::calibrate_command(&self.model.id, &made, &replayed)
            )),
        }
    }
}

/// Append one sample's line to the samples file (flushed: a stop loses at
/// most the sample in flight).
pub fn append(file: &Path, record: &SampleRecord) -> Result<(), CalibrateError> {
    let line = serde_json::to_string(record).map_err(|e| CalibrateError::Resume(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .map_err(|source| io("cannot write", file, source))?;
    writeln!(f, "{line}")
        .and_then(|()| f.flush())
        .map_err(|source| io("cannot write", file, source))
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> CalibrateError {
    CalibrateError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}
