//! Fraud experiments (`nsed simulate-fraud`): what a cheating executor
//! publishes and whether a validator catches it. This module owns the
//! executors built from one claimed model ([`variant`]: f32 reference, honest
//! Q8_0, int4 and other re-quantizations), the attacks (re-quantization,
//! model substitution, [`prefill`] laundering), the sample runs that score
//! every verification metric on honest and fraudulent artifacts
//! ([`samples`]), and their analysis: ROC AUC, detection at fixed false
//! positive rates, Gonka's calibration and length curves ([`analysis`]), and
//! how far each run is from the targets it is held to ([`targets`]).

pub mod analysis;
pub mod economics;
pub mod heldout;
pub mod pernode;
pub mod plots;
pub mod prefill;
pub mod prompts;
pub mod samples;
pub mod targets;
pub mod variant;

use serde::{Deserialize, Serialize};

pub use prefill::prefill_attack;
pub use variant::Precision;

use crate::bench::datasets::DatasetError;
use crate::engine::runtime::RuntimeError;
use crate::results::journal::JournalError;
use crate::verify::VerifyError;

/// Why a simulate-fraud run or its analysis cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum FraudError {
    /// A model (the claimed one, a variant, a substitute) cannot be loaded.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The validator's replay of an artifact fails.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// An executor's generation fails.
    #[error(transparent)]
    Generate(#[from] crate::engine::generate::GenerateError),
    /// The run's journal (`meta.json`, `samples.jsonl`) cannot be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// A dataset used as a prompt source cannot be loaded.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// A substitute or prefill model tokenizes differently from the claimed model.
    #[error("the two models do not share a vocabulary: {0}")]
    Vocabulary(String),
    /// The run's input is unusable: prompt sources, a model not loaded, a failed batch.
    #[error("{0}")]
    Input(String),
}

/// How a cheating executor saves compute while claiming the model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Attack {
    /// Run the claimed model with cheaper weights.
    Quant {
        /// The cheaper weights.
        precision: Precision,
    },
    /// Run a smaller model with the same tokenizer and claim the big one.
    Substitute {
        /// The smaller model run instead (registry id).
        model: String,
    },
    /// Generate with a cheap model, then compute the claimed model's
    /// logprobs for those tokens (a "laundered" proof).
    Prefill {
        /// The cheap model that generates the tokens (registry id).
        model: String,
    },
}

impl Attack {
    /// The setting name used in records and tables, e.g. `int4`,
    /// `substitute:qwen2.5-coder-0.5b`.
    pub fn label(&self) -> String {
        match self {
            Self::Quant { precision } => match precision {
                Precision::Int4 => "int4".into(),
                p => p.name().into(),
            },
            Self::Substitute { model } => format!("substitute:{model}"),
            Self::Prefill { model } => format!("prefill:{model}"),
        }
    }
}

/// Which side of the experiment a sample is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The honest executor's sample (the claimed model at the honest precision).
    Honest,
    /// A cheating executor's sample, made under one of the attacks.
    Fraud,
}
