//! The verdict policy: which checks of a replay can be exact. An artifact
//! records where it was made (its `isa`: nsed's host path on any CPU, the
//! candle path on a CPU class or a GPU, or a foreign engine); the validator
//! knows where it replays. A pair that computes the same numbers bit for
//! bit keeps the decisive checks (the seed-bound tokens within 1%, stage-2
//! MAE); every other nsed pair is judged by thresholds calibrated for that
//! pair from honest runs ([`super::calibration`], `nsed calibrate`), and
//! without one gets no verdict. Foreign artifacts (OpenAI/vLLM responses)
//! carry no seed and are judged by the published defaults, as before.

use std::fmt;

use serde::Serialize;

use crate::engine::device::{ComputeDevice, Weights};
use crate::engine::qmm::path::KernelPath;
use crate::verify::artifact::{Artifact, Format};
use crate::verify::calibration::{self, Calibration, CalibrationError, ModelRef};
use crate::verify::Options;

/// The code that computed an artifact's logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// nsed's host kernels (any CPU, any kernel path: bit-exact across them).
    Host,
    /// candle's CPU backend, with quantized or f32 weights.
    CandleCpu(Weights),
    /// candle's CUDA backend.
    Cuda(Weights),
    /// Another engine (an OpenAI-compatible server), or an unknown label.
    Foreign,
}

/// Where logits were computed: the engine and, for candle, the class of
/// hardware whose kernels it ran (`x86_64-avx512f`, `NVIDIA H100 sm_90`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputePath {
    /// The code that ran.
    pub engine: Engine,
    /// The hardware class (empty when unrecorded or irrelevant).
    pub class: String,
}

impl ComputePath {
    /// The path an artifact's `isa` (or a loaded model's origin) names.
    pub fn of_isa(isa: &str) -> Self {
        let (device, class) = ComputeDevice::from_label(isa);
        let head = isa.split_whitespace().next().unwrap_or("");
        let (engine, class) = match device {
            Some(ComputeDevice::CandleCpu(w)) => (Engine::CandleCpu(w), class),
            Some(ComputeDevice::Cuda(_, w)) => (Engine::Cuda(w), class),
            _ if is_host_isa(head) => (Engine::Host, head.to_string()),
            _ => (Engine::Foreign, isa.trim().to_string()),
        };
        Self { engine, class }
    }

    /// The path of an artifact: its `isa`, or foreign for an OpenAI/vLLM
    /// response (which has none).
    pub fn of_artifact(a: &Artifact) -> Self {
        match a.format {
            Format::Nsed => Self::of_isa(&a.isa),
            _ => Self {
                engine: Engine::Foreign,
                class: a.isa.clone(),
            },
        }
    }

    /// The name calibrations and messages use: `--device`'s spelling
    /// (`cpu`, `cpu-candle`, `cpu-candle/f32`, `cuda`, `cuda/f32`), or
    /// `foreign`.
    pub fn name(&self) -> &'static str {
        match self.engine {
            Engine::Host => "cpu",
            Engine::CandleCpu(Weights::Quantized) => "cpu-candle",
            Engine::CandleCpu(Weights::F32) => "cpu-candle/f32",
            Engine::Cuda(Weights::Quantized) => "cuda",
            Engine::Cuda(Weights::F32) => "cuda/f32",
            Engine::Foreign => "foreign",
        }
    }

    /// The path `--device NAME` runs (`cuda:1` is `cuda`).
    pub fn of_device(device: ComputeDevice) -> Self {
        let engine = match device {
            ComputeDevice::Cpu => Engine::Host,
            ComputeDevice::CandleCpu(w) => Engine::CandleCpu(w),
            ComputeDevice::Cuda(_, w) => Engine::Cuda(w),
        };
        Self {
            engine,
            class: String::new(),
        }
    }
}

impl fmt::Display for ComputePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.class.as_str() {
            "" => f.write_str(self.name()),
            class => write!(f, "{} ({class})", self.name()),
        }
    }
}

/// `x86_64-avx512vnni`, `aarch64-portable`: nsed's host-path label.
fn is_host_isa(head: &str) -> bool {
    head.split_once('-').is_some_and(|(arch, path)| {
        !arch.is_empty() && KernelPath::ALL.iter().any(|p| p.name() == path)
    })
}

/// Whether a replay on `replayed` computes the logits of `made` bit for
/// bit: nsed's host path on any two CPUs and kernel paths (its kernels fix
/// every reduction order; tests/it/kernel_paths.rs), and one candle engine
/// on one hardware class (the validator replays it call by call as it
/// decoded). A path whose class is unrecorded is never assumed exact.
pub fn bit_exact(made: &ComputePath, replayed: &ComputePath) -> bool {
    match (made.engine, replayed.engine) {
        (Engine::Host, Engine::Host) => true,
        (Engine::CandleCpu(a), Engine::CandleCpu(b)) | (Engine::Cuda(a), Engine::Cuda(b)) => {
            a == b && !made.class.is_empty() && made.class == replayed.class
        }
        _ => false,
    }
}

/// What decided a verification's verdict, as reports show it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyReport {
    /// Where the artifact was made (`cpu-candle (x86_64-avx512f)`).
    pub made_on: String,
    /// Where the validator replayed it.
    pub replayed_on: String,
    /// Whether the pair computes the same logits bit for bit.
    pub bit_exact: bool,
    /// The rule applied, in words.
    pub decided_by: String,
    /// The calibration file applied, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<String>,
}

/// The rule that judges one verification.
#[derive(Debug, Clone)]
pub enum Rule {
    /// Both sides compute the same bits: the seed check within the
    /// tolerance (1%) and the default thresholds decide.
    BitExact,
    /// A foreign artifact (no seed to check): the published defaults.
    Defaults,
    /// Thresholds fit for this model and pair, or given with `--thresholds`.
    Calibrated {
        /// The thresholds.
        calibration: Box<Calibration>,
        /// Where they come from (a path, or a committed file's name).
        source: String,
    },
}

/// The pair of paths of one verification and the rule that judges it.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Where the artifact was made.
    pub made: ComputePath,
    /// Where the validator replays it.
    pub replayed: ComputePath,
    /// What decides the verdict.
    pub rule: Rule,
}

/// Why no verdict can be given.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A pair that is not bit-exact, with no calibration.
    #[error(
        "no calibrated thresholds for {model} made on {made} and replayed on {replayed} \
         (the two paths do not compute the same bits, so the seed check cannot be exact): \
         calibrate the pair with `{command}`, or give --thresholds FILE \
         (configs/thresholds/defaults.json applies the published defaults and reports the seed check without judging it)"
    )]
    Uncalibrated {
        /// The model.
        model: String,
        /// Where the artifact was made.
        made: String,
        /// Where it would be replayed.
        replayed: String,
        /// The command that calibrates the pair.
        command: String,
    },
    /// A thresholds file that cannot be used.
    #[error(transparent)]
    Calibration(#[from] CalibrationError),
    /// The model's weights cannot be hashed to find their calibration.
    #[error("cannot hash the model to find its calibration: {0}")]
    ModelHash(String),
}

/// The rule for an artifact `made` on one path and replayed on another, of
/// the model `model_id`: the thresholds `given` (`--thresholds`) if any,
/// checked to fit the model and pair; else exact checks for a bit-exact
/// pair; else the defaults for a foreign artifact; else the pair's
/// calibration, or no verdict. `model_sha256` is asked only when a
/// calibration is matched (hashing a GGUF given by path reads the file).
pub fn decide(
    made: ComputePath,
    replayed: ComputePath,
    model_id: &str,
    model_sha256: impl FnOnce() -> Result<String, PolicyError>,
    given: Option<&(Calibration, String)>,
) -> Result<Decision, PolicyError> {
    let lookup =
        given.is_some() || !(bit_exact(&made, &replayed) || made.engine == Engine::Foreign);
    let model = ModelRef {
        id: model_id.to_string(),
        sha256: if lookup {
            model_sha256()?
        } else {
            String::new()
        },
    };
    let rule = if let Some((calibration, source)) = given {
        calibration.check_applies(source, &model, &made, &replayed)?;
        Rule::Calibrated {
            calibration: Box::new(calibration.clone()),
            source: source.clone(),
        }
    } else if bit_exact(&made, &replayed) {
        Rule::BitExact
    } else if made.engine == Engine::Foreign {
        Rule::Defaults
    } else {
        match calibration::find(&model.sha256, &made, &replayed)? {
            Some((calibration, source)) => Rule::Calibrated {
                calibration: Box::new(calibration),
                source,
            },
            None => {
                return Err(PolicyError::Uncalibrated {
                    model: model.id.clone(),
                    made: made.to_string(),
                    replayed: replayed.to_string(),
                    command: calibration::calibrate_command(&model.id, &made, &replayed),
                })
            }
        }
    };
    Ok(Decision {
        made,
        replayed,
        rule,
    })
}

impl Decision {
    /// `base` (the user's overrides) under this rule: a calibration's bounds
    /// and seed tolerance, the user's `--threshold`s and `--seed-tolerance`
    /// over them.
    pub fn options(&self, base: &Options, seed_tolerance: Option<f64>) -> Options {
        let mut opts = base.clone();
        opts.seed_tolerance = seed_tolerance.unwrap_or(Options::default().seed_tolerance);
        if let Rule::Calibrated { calibration, .. } = &self.rule {
            opts.thresholds = calibration.thresholds(&base.thresholds);
            opts.seed_tolerance = seed_tolerance.unwrap_or(calibration.seed_tolerance());
        }
        opts.policy = Some(self.report());
        opts
    }

    /// The decision as reports show it.
    pub fn report(&self) -> PolicyReport {
        let (decided_by, calibration) = match &self.rule {
            Rule::BitExact => (
                "bit-exact pair: the seed-bound tokens must re-derive and the default thresholds apply"
                    .to_string(),
                None,
            ),
            Rule::Defaults => (
                "foreign artifact: the published default thresholds (docs/reference.md §6.1)"
                    .to_string(),
                None,
            ),
            Rule::Calibrated {
                calibration,
                source,
            } => (self.calibrated_words(calibration), Some(source.clone())),
        };
        PolicyReport {
            made_on: self.made.to_string(),
            replayed_on: self.replayed.to_string(),
            bit_exact: bit_exact(&self.made, &self.replayed),
            decided_by,
            calibration,
        }
    }

    fn calibrated_words(&self, c: &Calibration) -> String {
        let mut words = match &c.fit {
            Some(fit) => format!(
                "thresholds calibrated for this pair on {} honest samples (split conformal, α = {} per check; held-out honest flag rate {:.1}%)",
                fit.samples,
                fit.alpha,
                fit.held_out_flag_rate[0] * 100.0
            ),
            None => "thresholds given by the file".to_string(),
        };
        // The calibration holds for the pair's engines; a class other than
        // the one it was fit on is named, not refused.
        if let Some(class) = c.provenance.get("made_class") {
            if !self.made.class.is_empty() && *class != self.made.class {
                words.push_str(&format!(
                    "; fit on artifacts of {class}, this one is of {}",
                    self.made.class
                ));
            }
        }
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(isa: &str) -> ComputePath {
        ComputePath::of_isa(isa)
    }

    #[test]
    fn artifact_labels_name_their_engine_and_class() {
        let host = path("x86_64-avx512vnni");
        assert_eq!((host.engine, host.name()), (Engine::Host, "cpu"));
        assert_eq!(path("aarch64-portable").engine, Engine::Host);
        let candle = path("cpu-candle x86_64-avx2");
        assert_eq!(candle.engine, Engine::CandleCpu(Weights::Quantized));
        assert_eq!(candle.class, "x86_64-avx2");
        assert_eq!(candle.to_string(), "cpu-candle (x86_64-avx2)");
        let gpu = path("cuda:0/f32 NVIDIA H100 80GB HBM3 sm_90");
        assert_eq!(gpu.engine, Engine::Cuda(Weights::F32));
        assert_eq!(gpu.class, "NVIDIA H100 80GB HBM3 sm_90");
        assert_eq!(gpu.name(), "cuda/f32");
        for foreign in ["", "vllm", "x86_64-sse9", "cpu"] {
            assert_eq!(path(foreign).engine, Engine::Foreign, "{foreign:?}");
        }
    }

    #[test]
    fn only_pairs_that_compute_the_same_numbers_are_exact() {
        let exact = |a: &str, b: &str| bit_exact(&path(a), &path(b));
        assert!(exact("x86_64-avx512vnni", "x86_64-avx2"));
        assert!(exact("x86_64-portable", "aarch64-portable"));
        assert!(exact("cpu-candle x86_64-avx2", "cpu-candle x86_64-avx2"));
        assert!(exact(
            "cuda:0 NVIDIA H100 sm_90",
            "cuda:1 NVIDIA H100 sm_90"
        ));
        // Negative controls: another engine, another class, other weights,
        // an unrecorded class, a foreign engine.
        assert!(!exact("cpu-candle x86_64-avx2", "x86_64-avx2"));
        assert!(!exact(
            "cpu-candle x86_64-avx2",
            "cpu-candle x86_64-avx512f"
        ));
        assert!(!exact(
            "cpu-candle/f32 x86_64-avx2",
            "cpu-candle x86_64-avx2"
        ));
        assert!(!exact("cpu-candle", "cpu-candle"));
        assert!(!exact(
            "cuda:0 NVIDIA H100 sm_90",
            "cuda:0 NVIDIA A100 sm_80"
        ));
        assert!(!exact("", ""));
    }
}
