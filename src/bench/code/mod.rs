//! Code benchmarks: LiveCodeBench (stdin and functional problems), HumanEval
//! and MBPP — loading the problems, prompting and extracting code exactly as
//! the official harnesses do, and grading programs in the [`crate::sandbox`]
//! with LiveCodeBench's comparison rules and result codes.

pub mod agent;
pub mod decimal;
pub mod extract;
pub mod grade;
pub mod problems;
pub mod prompts;

pub use agent::{CodeAgent, CodeContext};
pub use grade::{grade, pass_at_k, Outcome, TestCode, Verdict};
pub use problems::{Check, CodeSet, IoTest, LcbFilter, Problem};

/// Errors of loading code problems.
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    /// The set name is not `lcb`, `humaneval` or `mbpp`.
    #[error("unknown code set `{0}`; known: lcb, humaneval, mbpp")]
    Unknown(String),
    /// Reading the file or one of its records.
    #[error(transparent)]
    Data(#[from] crate::bench::datasets::DatasetError),
    /// LCB's hidden tests do not decode (base64, zlib, pickle or JSON; the text says which).
    #[error("private tests: {0}")]
    PrivateTests(String),
}
