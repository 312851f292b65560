//! nsed: N-way self-evaluating deliberation and verifiable inference on small
//! open-weight GGUF models, on the CPU.
//!
//! The library owns everything; the `nsed` binary (`src/bin/nsed`) is a thin
//! command-line layer. The modules, lower layers first: a module uses only
//! the ones listed before it, and [`pages`], the top layer, reads the data
//! types of all of them to render the results pages. The order is
//! checked by `tests/it/layers.rs`.
//! - [`stats`] (the `nsed-stats` crate): intervals, tests, rank statistics,
//!   summaries and seeded draws, used by every layer above.
//! - [`sandbox`]: untrusted Python under rlimits, a private uid and namespaces.
//! - [`results`]: atomic result files, run journals, provenance, method
//!   summaries and figures.
//! - [`engine`] (the `nsed-engine` crate): GGUF files, kernels, models, tokenizers, chat templates,
//!   sampling, generation, perplexity, the model registry.
//! - [`answer`]: final answers of math responses: extraction, normalization,
//!   comparison.
//! - [`verify`]: inference artifacts and their replay validation: distance
//!   metrics, seed and activation checks.
//! - [`deliberation`]: the NSED protocol, voting, the `Agent` seam, rosters.
//! - [`federation`]: agents as separate processes over NATS.
//! - [`bench`](mod@bench): data sets, grading, every method on the same items,
//!   and the code sets ([`bench::code`]).
//! - [`fraud`]: forged and cheap executors, detection curves, economics.
//! - [`pages`]: the results pages (tables, CSVs, figures, generated
//!   findings), rebuilt from the data files alone.

pub mod answer;
pub mod bench;
pub mod deliberation;
pub use nsed_engine as engine;
pub mod federation;
pub mod fraud;
pub mod pages;
pub mod results;
pub mod sandbox;
#[doc(hidden)]
pub use nsed_engine::testing;
pub use nsed_stats as stats;
pub mod verify;
