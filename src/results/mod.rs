//! Everything that turns runs into files a reader trusts: atomic output
//! files, append-only run journals, provenance, method summaries and
//! figures. The pages built from them are [`crate::pages`], the top layer.
//!
//! - [`output`]: result files written whole or not at all.
//! - [`csv_text`](mod@csv_text): CSV documents, quoted where a cell needs it.
//! - [`journal`]: locked, append-only JSONL run journals with resume.
//! - [`provenance`]: commit, CPU, kernel and command behind a results file.
//! - [`report`]: Wilson intervals, exact McNemar, summary tables.
//! - [`figure`]: PNG/SVG figures.

pub mod csv_text;
pub mod figure;
pub mod journal;
pub mod output;
pub mod provenance;
pub mod report;
