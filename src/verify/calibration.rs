//! Calibrated verification thresholds (`nsed.thresholds/v1`): for one
//! model and one (made on, replayed on) pair of compute paths, the bound
//! of each check that honest artifacts of that pair stay within, fit on
//! honest runs with the split-conformal rule ([`nsed_stats::conformal`]) —
//! Gonka's method of per-model thresholds from honest runs. `nsed
//! calibrate` writes them; `nsed verify` finds them (the user's directory,
//! then the ones committed under `configs/thresholds/` and compiled in) or
//! takes one with `--thresholds FILE`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::metrics::{self, Better};
use super::policy::ComputePath;
use super::Thresholds;

/// The schema tag of a thresholds file.
pub const SCHEMA: &str = "nsed.thresholds/v1";
/// The seed-bound check's statistic: the share of re-derived tokens that differ.
pub const SEED_SHARE: &str = "seed_mismatch_share";
/// The checks a calibration fits, with the direction a fraud pushes them.
pub const FITTED: [(&str, Better); 4] = [
    ("gonka_similarity", Better::Higher),
    ("gonka_distance2", Better::Lower),
    ("stage2_mae", Better::Lower),
    (SEED_SHARE, Better::Lower),
];

/// The calibrations committed under `configs/thresholds/`, compiled in so
/// that an installed binary has them (tests check this list against the
/// folder).
const BUILTIN: &[(&str, &str)] = &[
    (
        "configs/thresholds/defaults.json",
        include_str!("../../configs/thresholds/defaults.json"),
    ),
    (
        "configs/thresholds/gemma3-270m/cpu-candle-f32__cpu.json",
        include_str!("../../configs/thresholds/gemma3-270m/cpu-candle-f32__cpu.json"),
    ),
    (
        "configs/thresholds/gemma3-270m/cpu-candle__cpu.json",
        include_str!("../../configs/thresholds/gemma3-270m/cpu-candle__cpu.json"),
    ),
    (
        "configs/thresholds/qwen2.5-coder-0.5b/cpu-candle__cpu.json",
        include_str!("../../configs/thresholds/qwen2.5-coder-0.5b/cpu-candle__cpu.json"),
    ),
    (
        "configs/thresholds/qwen2.5-coder-0.5b/cpu-candle-f32__cpu.json",
        include_str!("../../configs/thresholds/qwen2.5-coder-0.5b/cpu-candle-f32__cpu.json"),
    ),
    (
        "configs/thresholds/qwen2.5-coder-1.5b/cpu-candle__cpu.json",
        include_str!("../../configs/thresholds/qwen2.5-coder-1.5b/cpu-candle__cpu.json"),
    ),
    (
        "configs/thresholds/qwen2.5-coder-1.5b/cpu-candle-f32__cpu.json",
        include_str!("../../configs/thresholds/qwen2.5-coder-1.5b/cpu-candle-f32__cpu.json"),
    ),
    (
        "configs/thresholds/smollm2-135m/cpu-candle__cpu.json",
        include_str!("../../configs/thresholds/smollm2-135m/cpu-candle__cpu.json"),
    ),
    (
        "configs/thresholds/smollm2-135m/cpu-candle-f32__cpu.json",
        include_str!("../../configs/thresholds/smollm2-135m/cpu-candle-f32__cpu.json"),
    ),
];

/// Why a thresholds file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// The file cannot be read.
    #[error("cannot read the thresholds file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid `nsed.thresholds/v1` document.
    #[error("{path} is not a valid {SCHEMA} thresholds file: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The file was fit for another model or pair.
    #[error("{path} was fit for {fit_for}, not for {wanted}: calibrate this one with `{command}`")]
    NotFor {
        /// The file.
        path: String,
        /// What it was fit for.
        fit_for: String,
        /// What the verification needs.
        wanted: String,
        /// The command that calibrates what is wanted.
        command: String,
    },
}

/// The model a calibration was fit for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelRef {
    /// Registry id or file name.
    pub id: String,
    /// sha256 of the GGUF file: the calibration applies to these weights.
    pub sha256: String,
}

/// How the thresholds were fit.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fit {
    /// Honest samples (distinct prompts).
    pub samples: usize,
    /// Tokens generated per sample (at most).
    pub max_tokens: usize,
    /// Sampling temperature of the honest runs.
    pub temperature: f64,
    /// Top-k log-probabilities per position.
    pub top_logprobs: usize,
    /// The prompt sources, interleaved (names, or files with their sha256).
    #[serde(default)]
    pub prompts: Vec<String>,
    /// The conformal level per check.
    pub alpha: f64,
    /// The rule, in words.
    pub rule: String,
    /// Each check's honest values: min, median, max.
    pub honest: BTreeMap<String, [f64; 3]>,
    /// Held-out flag rate of the whole verdict over random half splits
    /// (fit on one half, count honest flags on the other): mean, 2.5th and
    /// 97.5th percentiles, and the number of splits.
    pub held_out_flag_rate: [f64; 3],
    /// Random half splits behind `held_out_flag_rate`.
    pub splits: usize,
    /// The design flag rate of one check, k/(n + 1).
    pub design_rate: f64,
}

/// One thresholds file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Calibration {
    /// [`SCHEMA`].
    pub schema: String,
    /// The model fit for; absent in a file that applies to any model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelRef>,
    /// The path artifacts were made on (`cpu-candle`); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made_on: Option<String>,
    /// The path the validator replays on (`cpu`); absent: any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed_on: Option<String>,
    /// Each check's bound (`null`: reported, not judged). Metric names as
    /// `--threshold`, plus [`SEED_SHARE`].
    pub thresholds: BTreeMap<String, Option<f64>>,
    /// How the bounds were fit (absent in a hand-written file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<Fit>,
    /// Commit, CPU, kernel path, classes of the two paths, date.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provenance: BTreeMap<String, String>,
    /// What the file is for, in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Calibration {
    /// Read and check a thresholds file.
    pub fn read(path: &Path) -> Result<Self, CalibrationError> {
        let text = std::fs::read_to_string(path).map_err(|source| CalibrationError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parse and check a thresholds document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, CalibrationError> {
        let invalid = |detail: String| CalibrationError::Invalid {
            path: origin.to_string(),
            detail,
        };
        let c: Self = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if c.schema != SCHEMA {
            return Err(invalid(format!(
                "schema {:?}, expected {SCHEMA:?}",
                c.schema
            )));
        }
        let known: Vec<&str> = metrics::all().iter().map(|m| m.name()).collect();
        for (name, bound) in &c.thresholds {
            if name != SEED_SHARE && !known.contains(&name.as_str()) {
                return Err(invalid(format!(
                    "unknown check {name:?} (known: {}, {SEED_SHARE})",
                    known.join(", ")
                )));
            }
            if bound.is_some_and(|b| !b.is_finite()) {
                return Err(invalid(format!(
                    "the bound of {name} is not a finite number"
                )));
            }
        }
        if let Some(b) = c.thresholds.get(SEED_SHARE).copied().flatten() {
            if !(0.0..=1.0).contains(&b) {
                return Err(invalid(format!(
                    "{SEED_SHARE} {b} is not a share in [0, 1]"
                )));
            }
        }
        for (field, name) in [("made_on", &c.made_on), ("replayed_on", &c.replayed_on)] {
            if let Some(name) = name {
                if !PATH_NAMES.contains(&name.as_str()) {
                    return Err(invalid(format!(
                        "{field} {name:?} is not a path (one of {})",
                        PATH_NAMES.join(", ")
                    )));
                }
            }
        }
        Ok(c)
    }

    /// The metric bounds, under the user's `--threshold` overrides.
    pub fn thresholds(&self, overrides: &Thresholds) -> Thresholds {
        let mut t = Thresholds::default();
        for (name, bound) in self.thresholds.iter().filter(|(n, _)| *n != SEED_SHARE) {
            t.0.insert(name.clone(), *bound);
        }
        for (name, bound) in &overrides.0 {
            t.0.insert(name.clone(), *bound);
        }
        t
    }

    /// The largest share of re-derived tokens that may differ (1 when the
    /// file reports the seed check without judging it).
    pub fn seed_tolerance(&self) -> f64 {
        self.thresholds
            .get(SEED_SHARE)
            .copied()
            .flatten()
            .unwrap_or(1.0)
    }

    /// Whether it was fit for this model and pair: `Err` says for what.
    pub fn check_applies(
        &self,
        origin: &str,
        model: &ModelRef,
        made: &ComputePath,
        replayed: &ComputePath,
    ) -> Result<(), CalibrationError> {
        let model_ok = self.model.as_ref().is_none_or(|m| m.sha256 == model.sha256);
        let made_ok = self.made_on.as_deref().is_none_or(|p| p == made.name());
        let replayed_ok = self
            .replayed_on
            .as_deref()
            .is_none_or(|p| p == replayed.name());
        if model_ok && made_ok && replayed_ok {
            return Ok(());
        }
        let any = |x: Option<&str>| x.unwrap_or("any").to_string();
        Err(CalibrationError::NotFor {
            path: origin.to_string(),
            fit_for: format!(
                "model {} made on {} and replayed on {}",
                self.model.as_ref().map_or("any".to_string(), |m| format!(
                    "{} ({})",
                    m.id,
                    short(&m.sha256)
                )),
                any(self.made_on.as_deref()),
                any(self.replayed_on.as_deref())
            ),
            wanted: format!(
                "model {} ({}) made on {} and replayed on {}",
                model.id,
                short(&model.sha256),
                made.name(),
                replayed.name()
            ),
            command: calibrate_command(&model.id, made, replayed),
        })
    }

    /// Whether it names exactly this model and pair (what a lookup wants).
    fn is_for(&self, model_sha: &str, made: &ComputePath, replayed: &ComputePath) -> bool {
        self.model.as_ref().is_some_and(|m| m.sha256 == model_sha)
            && self.made_on.as_deref() == Some(made.name())
            && self.replayed_on.as_deref() == Some(replayed.name())
    }
}

/// The path names a thresholds file may give.
pub const PATH_NAMES: [&str; 5] = ["cpu", "cpu-candle", "cpu-candle/f32", "cuda", "cuda/f32"];

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// The command that calibrates a pair for a model.
pub fn calibrate_command(model: &str, made: &ComputePath, replayed: &ComputePath) -> String {
    format!(
        "nsed calibrate --model {model} --made-on {} --replayed-on {}",
        made.name(),
        replayed.name()
    )
}

/// The file name of a pair's calibration: `cpu-candle__cpu.json`.
pub fn file_name(made: &ComputePath, replayed: &ComputePath) -> String {
    format!(
        "{}__{}.json",
        made.name().replace('/', "-"),
        replayed.name().replace('/', "-")
    )
}

/// Where `nsed calibrate` writes and `nsed verify` looks first:
/// `$NSED_THRESHOLDS_DIR`, else `~/.local/share/nsed/thresholds`.
pub fn user_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("NSED_THRESHOLDS_DIR") {
        return Some(PathBuf::from(dir));
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(".local/share/nsed/thresholds"))
}

/// The default file of a model's pair in the user's directory.
pub fn user_file(model_id: &str, made: &ComputePath, replayed: &ComputePath) -> Option<PathBuf> {
    let stem: String = model_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(user_dir()?.join(stem).join(file_name(made, replayed)))
}

/// The calibration for this model (by its weights' sha256) and pair: the
/// user's directory first, then the committed ones. A malformed file in
/// the user's directory is an error, not skipped.
pub fn find(
    model_sha: &str,
    made: &ComputePath,
    replayed: &ComputePath,
) -> Result<Option<(Calibration, String)>, CalibrationError> {
    if let Some(dir) = user_dir().filter(|d| d.is_dir()) {
        for path in json_files(&dir) {
            let c = Calibration::read(&path)?;
            if c.is_for(model_sha, made, replayed) {
                return Ok(Some((c, path.display().to_string())));
            }
        }
    }
    for (name, text) in BUILTIN {
        let c = Calibration::parse(text, name)?;
        if c.is_for(model_sha, made, replayed) {
            return Ok(Some((c, format!("{name} (built in)"))));
        }
    }
    Ok(None)
}

/// The `*.json` files of `dir` and its subfolders, in name order.
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            out.extend(json_files(&path));
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
    out
}

/// The fitted bounds of honest `samples` (one map of check → value per
/// sample): per check, the split-conformal bound at `alpha` on the side a
/// fraud pushes it (below the smallest honest similarity, above the
/// largest distances), a hair past the order statistic so that the honest
/// value itself passes the strict comparisons of [`super::score`].
pub fn fit_bounds(samples: &[BTreeMap<String, f64>], alpha: f64) -> BTreeMap<String, Option<f64>> {
    FITTED
        .iter()
        .map(|&(name, better)| {
            let values: Vec<f64> = samples
                .iter()
                .filter_map(|s| s.get(name).copied())
                .collect();
            let bound = match better {
                Better::Higher => nsed_stats::conformal::lower_threshold(&values, alpha)
                    .map(|v| v - v.abs() * 1e-9 - f64::MIN_POSITIVE),
                Better::Lower => nsed_stats::conformal::upper_threshold(&values, alpha),
            };
            (name.to_string(), bound)
        })
        .collect()
}

/// Whether a sample passes every bound.
pub fn passes(sample: &BTreeMap<String, f64>, bounds: &BTreeMap<String, Option<f64>>) -> bool {
    FITTED.iter().all(|&(name, better)| {
        match (sample.get(name), bounds.get(name).copied().flatten()) {
            (Some(&v), Some(b)) => match better {
                Better::Higher => v > b,
                Better::Lower => v <= b,
            },
            _ => true,
        }
    })
}

/// The held-out honest flag rate over `splits` random half splits: fit
/// on one half, the share of the other half that fails any bound. Mean,
/// 2.5th and 97.5th percentiles.
pub fn held_out_flag_rate(
    samples: &[BTreeMap<String, f64>],
    alpha: f64,
    splits: usize,
    seed: u64,
) -> [f64; 3] {
    let mut rng = nsed_stats::SplitMix64::new(seed);
    let mut rates = Vec::with_capacity(splits);
    let mut order: Vec<usize> = (0..samples.len()).collect();
    for _ in 0..splits {
        nsed_stats::Draw::shuffle(&mut rng, &mut order);
        let (train, test) = order.split_at(samples.len() / 2);
        let train: Vec<_> = train.iter().map(|&i| samples[i].clone()).collect();
        let bounds = fit_bounds(&train, alpha);
        let flagged = test
            .iter()
            .filter(|&&i| !passes(&samples[i], &bounds))
            .count();
        rates.push(flagged as f64 / test.len().max(1) as f64);
    }
    [
        nsed_stats::mean(&rates),
        nsed_stats::quantile(&rates, 0.025).unwrap_or(f64::NAN),
        nsed_stats::quantile(&rates, 0.975).unwrap_or(f64::NAN),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sim: f64, d2: f64, mae: f64, seed: f64) -> BTreeMap<String, f64> {
        [
            ("gonka_similarity", sim),
            ("gonka_distance2", d2),
            ("stage2_mae", mae),
            (SEED_SHARE, seed),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn bounds_sit_past_the_honest_extremes_and_every_honest_sample_passes() {
        let samples: Vec<_> = (0..100)
            .map(|i| {
                let x = f64::from(i) / 100.0;
                sample(0.99 + 0.009 * x, 0.001 + 0.01 * x, 0.1 + 0.5 * x, 0.3 * x)
            })
            .collect();
        let bounds = fit_bounds(&samples, 0.01);
        assert!(samples.iter().all(|s| passes(s, &bounds)));
        let b = |n: &str| bounds[n].expect("bound");
        assert!(b("gonka_similarity") < 0.99 && b("gonka_similarity") > 0.989_999);
        assert!((b("gonka_distance2") - 0.0109).abs() < 1e-12);
        assert!((b(SEED_SHARE) - 0.297).abs() < 1e-12);
        // Negative controls: just past each bound fails.
        assert!(!passes(&sample(0.9899, 0.005, 0.2, 0.1), &bounds));
        assert!(!passes(&sample(0.995, 0.011, 0.2, 0.1), &bounds));
        assert!(!passes(&sample(0.995, 0.005, 0.2, 0.3), &bounds));
        let rate = held_out_flag_rate(&samples, 0.01, 50, 7);
        assert!(rate[0] > 0.0 && rate[0] < 0.2, "{rate:?}");
        assert!(rate[1] <= rate[0] && rate[0] <= rate[2], "{rate:?}");
    }

    #[test]
    fn files_are_checked_before_use() {
        let ok = r#"{"schema":"nsed.thresholds/v1","made_on":"cpu-candle","replayed_on":"cpu",
            "thresholds":{"gonka_distance2":0.02,"seed_mismatch_share":0.3,"stage2_mae":null}}"#;
        let c = Calibration::parse(ok, "ok.json").expect("valid");
        assert_eq!(c.seed_tolerance(), 0.3);
        let mut user = Thresholds::default();
        user.set("stage2_mae=0.5").expect("override");
        let t = c.thresholds(&user);
        assert_eq!(t.0.get("stage2_mae"), Some(&Some(0.5)));
        assert_eq!(t.0.get("gonka_distance2"), Some(&Some(0.02)));
        for (bad, says) in [
            (ok.replace("v1", "v9"), "schema"),
            (
                ok.replace("gonka_distance2", "gonka_distance9"),
                "unknown check",
            ),
            (ok.replace("0.3", "1.5"), "share"),
            (ok.replace("\"cpu\"", "\"tpu\""), "not a path"),
            (ok.replace("\"made_on\"", "\"made_at\""), "unknown field"),
        ] {
            let err = Calibration::parse(&bad, "bad.json")
                .expect_err(says)
                .to_string();
            assert!(err.contains("bad.json") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn a_file_for_another_pair_or_model_says_what_it_was_fit_for() {
        let text = r#"{"schema":"nsed.thresholds/v1","model":{"id":"m","sha256":"aaaa"},
            "made_on":"cpu-candle","replayed_on":"cpu","thresholds":{}}"#;
        let c = Calibration::parse(text, "f.json").expect("valid");
        let model = ModelRef {
            id: "m".into(),
            sha256: "aaaa".into(),
        };
        let candle = ComputePath::of_isa("cpu-candle x86_64-avx2");
        let host = ComputePath::of_isa("x86_64-avx2");
        let gpu = ComputePath::of_isa("cuda:0 NVIDIA H100 sm_90");
        assert!(c.check_applies("f.json", &model, &candle, &host).is_ok());
        let err = c
            .check_applies("f.json", &model, &gpu, &host)
            .expect_err("pair");
        let text = err.to_string();
        assert!(
            text.contains("made on cpu-candle") && text.contains("made on cuda"),
            "{text}"
        );
        assert!(
            text.contains("nsed calibrate --model m --made-on cuda --replayed-on cpu"),
            "{text}"
        );
        let other = ModelRef {
            id: "m".into(),
            sha256: "bbbb".into(),
        };
        assert!(c.check_applies("f.json", &other, &candle, &host).is_err());
        assert_eq!(
            file_name(&ComputePath::of_isa("cpu-candle/f32 x"), &host),
            "cpu-candle-f32__cpu.json"
        );
    }

    #[test]
    fn every_committed_file_is_compiled_in_and_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/thresholds");
        let mut on_disk: Vec<String> = json_files(&dir)
            .iter()
            .filter_map(|p| p.strip_prefix(env!("CARGO_MANIFEST_DIR")).ok())
            .map(|p| p.display().to_string())
            .collect();
        on_disk.sort();
        let mut built_in: Vec<String> = BUILTIN.iter().map(|(n, _)| n.to_string()).collect();
        built_in.sort();
        assert_eq!(on_disk, built_in, "configs/thresholds and BUILTIN differ");
        for (name, text) in BUILTIN {
            Calibration::parse(text, name).expect("valid");
        }
    }
}
