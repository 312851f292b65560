//! The page of one `simulate-fraud` run (`nsed report fraud DIR`, and the
//! per-run sections of the fraud table): its settings and provenance, every
//! metric in-sample, held-out detection overall and by output length, the
//! per-node tests; written as `report.md` with its CSVs and figures beside
//! the run's samples.

use std::path::Path;

use super::fraud::FraudRun;
use super::TablesError;
use crate::fraud::analysis::Analysis;
use crate::fraud::samples::Meta;
use crate::fraud::{heldout, pernode, plots};
use crate::results::output::write_atomic;
use crate::results::provenance::RunInfo;

/// What [`write()`] produced: the page, and why the figures are missing when
/// they are (no font, say; the tables are written either way).
pub struct RunReport {
    /// The page's markdown, as written to `report.md`.
    pub markdown: String,
    /// Why the figures are missing; `None` when they were drawn.
    pub figures_error: Option<String>,
}

/// Write an analyzed run's report.md, CSVs and figures into its directory.
pub fn write(run: &FraudRun) -> Result<RunReport, TablesError> {
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
    let write = |name: &str, text: &str| write_atomic(&dir.join(name), text.as_bytes());
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
    Ok(RunReport {
        markdown: md,
        figures_error: figures.err().map(|e| e.to_string()),
    })
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
