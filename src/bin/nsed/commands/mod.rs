//! One module per command group: its clap arguments beside its handler.

pub mod bench;
pub mod calibrate;
pub mod federation;
pub mod fraud;
pub mod generate;
pub mod models;
pub mod perf;
pub mod report;
pub mod sandbox;
pub mod verify;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub fn read_utf8(path: &Path, what: &str) -> Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} {} is not valid UTF-8 (first bad byte at offset {}): convert it to UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// A text given inline or as a file (clap guarantees one of the two).
pub fn inline_or_file(
    inline: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
) -> Result<String> {
    match (inline, file) {
        (Some(text), _) => Ok(text.clone()),
        (None, Some(path)) => read_utf8(path, what),
        (None, None) => bail!("give the text inline or as a {what}"),
    }
}
