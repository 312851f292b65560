//! The results pages built from a results directory, without rerunning
//! anything: each table's page (title, generated findings, main tables,
//! details, CSV), the index page's section with every page's main tables,
//! and the findings blocks spliced into other files (`nsed report tables`).

use std::path::{Path, PathBuf};

use super::{
    deliberation, demote_headings, determinism, federation, fraud, perf, read_text, Stamp,
    TablesError,
};
use crate::results::output::write_atomic;

/// One page: what goes into the index page (title and main tables) and the rest.
pub struct Built {
    /// The table's name: the page's file stem and the `nsed report tables` argument.
    pub table: &'static str,
    /// The page's title.
    pub title: String,
    /// What the data say, generated: markdown bullets (empty: the page
    /// has none yet).
    pub findings: Vec<String>,
    /// The main tables (markdown), shown on the page and on the index page.
    pub summary: String,
    /// Markdown after the main tables (per-run sections, figures, notes).
    pub details: String,
    /// The page's data as CSV, written beside it as `<table>.csv`.
    pub csv: String,
    /// What could not be made (a figure without a font), for the caller to
    /// show; the page is complete without it.
    pub warnings: Vec<String>,
}

/// Whether `file` sits in the directory `dir`.
pub fn sits_in(file: &Path, dir: &Path) -> bool {
    match (file.parent(), dir.canonicalize()) {
        (Some(parent), Ok(dir)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent.canonicalize().is_ok_and(|p| p == dir)
        }
        _ => false,
    }
}

/// Every page's generated findings, one bullet per table with its points
/// nested, between the findings markers of `file`; page links are relative
/// to `file` when it sits in the results directory.
pub fn write_findings(file: &Path, results: &Path, pages: &[Built]) -> Result<(), TablesError> {
    let mut block = String::new();
    for page in pages.iter().filter(|p| !p.findings.is_empty()) {
        let page_file = PathBuf::from(format!("{}.md", page.table));
        let link = if sits_in(file, results) {
            page_file
        } else {
            results.join(page_file)
        };
        block.push_str(&format!(
            "- **{}** ([{}]({})):\n",
            page.title,
            link.display(),
            link.display()
        ));
        for f in &page.findings {
            block.push_str(&format!("  - {f}\n"));
        }
    }
    let text = read_text(file)?;
    let out = super::splice_between(
        &text,
        super::FINDINGS_BEGIN,
        super::FINDINGS_END,
        &block,
        file,
    )?;
    write_atomic(file, out.as_bytes())?;
    Ok(())
}

/// The page of `table` from the data in `results`; `None` when it has none.
pub fn build(results: &Path, table: &'static str) -> Result<Option<Built>, TablesError> {
    Ok(match table {
        "deliberation" | "code" => build_bench(results, table)?,
        "fraud" => build_fraud(results)?,
        "determinism" => build_determinism(results)?,
        "perf" => build_perf(results)?,
        "federation" => build_federation(results)?,
        other => return Err(TablesError::UnknownTable(other.to_string())),
    })
}

/// Write `page` as `<table>.md` (stamp, findings, tables, details) and
/// `<table>.csv` in `results`; returns the markdown file's path.
pub fn write_page(results: &Path, page: &Built) -> Result<PathBuf, TablesError> {
    let body = format!("{}\n{}", page.summary.trim_end(), page.details);
    let md = super::assemble_with(
        results,
        page.table,
        &page.title,
        &findings_section(&page.findings),
        &body,
    )?;
    let md_path = results.join(format!("{}.md", page.table));
    write_atomic(&md_path, md.as_bytes())?;
    write_atomic(
        &results.join(format!("{}.csv", page.table)),
        page.csv.as_bytes(),
    )?;
    Ok(md_path)
}

/// A page's generated findings as its first section (nothing without any).
fn findings_section(findings: &[String]) -> String {
    if findings.is_empty() {
        return String::new();
    }
    let bullets: Vec<String> = findings.iter().map(|f| format!("- {f}")).collect();
    format!(
        "## What the data say\n\nGenerated from this page's data by `nsed report tables` \
         (nothing here is typed by hand, so it follows the data as runs grow).\n\n{}\n\n",
        bullets.join("\n")
    )
}

/// The deliberation page holds every set (the NSED table) and the details of
/// the math runs; the code page the code sets and their runs.
fn build_bench(results: &Path, table: &'static str) -> Result<Option<Built>, TablesError> {
    let runs = deliberation::read_runs(results)?;
    let code_only = table == "code";
    let include = |r: &deliberation::BenchRun| !code_only || r.is_code();
    if !runs.iter().any(include) {
        return Ok(None);
    }
    let mut summary = deliberation::pivot_markdown(&runs, include);
    if !code_only {
        summary.push_str("\n## The paper's claims beside ours\n\n");
        summary.push_str(&deliberation::claims_markdown(&runs));
    }
    if !code_only {
        summary.push_str(&evidence_sections(results, &runs)?);
    }
    let findings = if code_only {
        Vec::new()
    } else {
        let dev = deliberation::read_runs_in(&results.join("runs").join("dev"))?;
        deliberation::findings(&runs, &dev)
    };
    let mut details = String::from("\n## Per run\n");
    for run in runs.iter().filter(|r| r.is_code() == code_only) {
        details.push('\n');
        details.push_str(&demote_headings(&super::runs::run_summary(&run.dir)?, 2));
        details.push('\n');
    }
    Ok(Some(Built {
        findings,
        table,
        title: if code_only {
            "Code benchmarks: NSED against the baselines".into()
        } else {
            "Deliberation: NSED against the baselines".into()
        },
        summary,
        details,
        csv: deliberation::csv(&runs, include),
        warnings: Vec::new(),
    }))
}

/// Accuracy against compute for the math runs (figures in
/// `results/deliberation/`), the judges and protocol variants of each result
/// run (in `results/deliberation/<run>/`), then the dev pool's judge table and
/// protocol ablations (runs in `results/runs/dev/`, never part of the tables
/// above; figures in `results/deliberation/dev/`).
fn evidence_sections(
    results: &Path,
    runs: &[deliberation::BenchRun],
) -> Result<String, TablesError> {
    let figures = results.join("deliberation");
    let math: Vec<&deliberation::BenchRun> = runs.iter().filter(|r| !r.is_code()).collect();
    let mut s = String::new();
    if !math.is_empty() {
        let dirs: Vec<PathBuf> = math.iter().map(|r| r.dir.clone()).collect();
        let page = super::runs::budgets_page(&dirs, Some(&figures))?;
        push_block(&mut s, &demote_headings(&page, 1));
    }
    let balloted: Vec<&deliberation::BenchRun> =
        math.into_iter().filter(|r| has_ballots(r)).collect();
    if !balloted.is_empty() {
        push_block(
            &mut s,
            "## Judges and protocol variants of the result runs\n\nThe protocol of the tables \
             is the quadratic vote, fixed on the dev pool before these runs; the other rules are \
             re-tallies of the same round-1 ballots, reported as secondary analyses. Tables and \
             figures in `results/deliberation/<run>/`.",
        );
        for run in balloted {
            let out = figures.join(&run.name);
            let dir = [run.dir.clone()];
            push_block(
                &mut s,
                &format!(
                    "### `{}`: {} · roster `{}` · {} items",
                    run.name,
                    run.dataset(),
                    run.roster(),
                    run.items()
                ),
            );
            if let Some(judges) = super::runs::judges_section(&dir, Some(&out))? {
                push_block(&mut s, &demote_headings(&judges, 3));
            }
            let protocols = super::runs::protocols_page(&dir, Some(&out))?;
            push_block(&mut s, &demote_headings(&protocols, 3));
        }
    }
    let dev = dev_runs(&results.join("runs").join("dev"));
    if !dev.is_empty() {
        let out = figures.join("dev");
        push_block(
            &mut s,
            "## The dev pool: judges and protocol variants\n\nRuns in `results/runs/dev/` \
             (GSM8K items 1000-1318, AIME 1983-2024): used to choose the protocol, never reported \
             as results. Tables and figures in `results/deliberation/dev/`.",
        );
        let judges = super::runs::judges_page(&dev, Some(&out))?;
        push_block(&mut s, &demote_headings(&judges, 2));
        let protocols = super::runs::protocols_page(&dev, Some(&out))?;
        push_block(&mut s, &demote_headings(&protocols, 2));
    }
    Ok(s)
}

/// Append a markdown block after a blank line, ending it with a newline.
fn push_block(s: &mut String, block: &str) {
    s.push('\n');
    s.push_str(block.trim_end());
    s.push('\n');
}

/// Whether a run holds round-1 ballots (it ran NSED or the one-round votes).
fn has_ballots(run: &deliberation::BenchRun) -> bool {
    use crate::bench::MethodKey;
    run.summaries.iter().any(|m| {
        matches!(
            m.method,
            MethodKey::Nsed | MethodKey::Qv | MethodKey::Weighted
        )
    })
}

/// The dev runs that have finished an item (one that has not has nothing to
/// show), in name order.
fn dev_runs(root: &Path) -> Vec<PathBuf> {
    let mut dev: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path()))
                .filter(|p| std::fs::metadata(p.join("items.jsonl")).is_ok_and(|m| m.len() > 0))
                .collect()
        })
        .unwrap_or_default();
    dev.sort();
    dev
}

fn build_fraud(results: &Path) -> Result<Option<Built>, TablesError> {
    let runs = fraud::read_runs(results)?;
    if runs.is_empty() {
        return Ok(None);
    }
    let paths = fraud::paths_markdown(&runs);
    let paths = if paths.is_empty() {
        paths
    } else {
        format!(
            "**Across paths** (executors on one compute path, the validator on another, beside \
             the same-path run of the same settings; held-out prompts, the thresholds fit on each \
             run's own honest samples, i.e. that pair's calibration):\n\n{paths}\n"
        )
    };
    let summary = format!(
        "**Against the targets** (held-out figures; a missed target says by how much):\n\n{}\n{paths}\
         **Held-out detection** (the protocol every detector is reported under):\n\n{}\n\
         **Per-node tests** (a node's samples tested against honest ones, or its token ranks against uniform):\n\n{}\n\
         Gonka-style summary. Its \"held-out\" columns are Gonka's calibration (five 80/20 splits, \
         overlapping: an honest sample is counted in several); \"detected at 0 FP\" is in-sample \
         (the bound is set and judged on the same samples):\n\n{}\n\
         Every metric, in-sample (AUC with its bootstrap 95% interval; the zero-FP bound is the \
         largest honest score, and a fraud sample is caught when it scores above it):\n\n{}",
        fraud::targets_markdown(&runs),
        fraud::held_out_markdown(&runs),
        fraud::per_node_markdown(&runs),
        fraud::summary_markdown(&runs),
        fraud::metrics_markdown(&runs)
    );
    let mut details = String::from("\n## Figures\n\n");
    details.push_str(&fraud::figures_markdown(results, &runs));
    details.push_str("\n## Per run\n");
    let mut warnings = Vec::new();
    for run in &runs {
        details.push('\n');
        let report = super::fraud_run::write(run)?;
        if let Some(e) = report.figures_error {
            warnings.push(format!("{}: figures not written: {e}", run.dir.display()));
        }
        details.push_str(&demote_headings(&report.markdown, 2));
        let economics = run.dir.join("economics.md");
        if economics.exists() {
            let text = read_text(&economics)?;
            details.push('\n');
            details.push_str(&demote_headings(&text, 3));
        }
        details.push('\n');
    }
    Ok(Some(Built {
        findings: fraud::findings(&runs),
        table: "fraud",
        title: "Fraud detection: honest vs cheating executors".into(),
        summary,
        details,
        csv: fraud::csv(&runs),
        warnings,
    }))
}

fn build_determinism(results: &Path) -> Result<Option<Built>, TablesError> {
    let reports = determinism::read_reports(results)?;
    if reports.is_empty() {
        return Ok(None);
    }
    Ok(Some(Built {
        findings: Vec::new(),
        table: "determinism",
        title: "Determinism: identical replays".into(),
        summary: determinism::markdown(&reports),
        details: "\n\"Identical\" is the share of runs whose sha256 of the output ids (or of all \
                  raw logits) equals the most common one; fixed-length generations at \
                  temperature 0.8, seed 42, EOS ignored. The plain sampler (f32 softmax over the \
                  vocabulary, a SplitMix64 uniform) on the same logits is the cost baseline; \
                  end-to-end overhead moves by several percent from run to run on a shared \
                  machine, the sampler-only column is the stable measure.\n"
            .into(),
        csv: determinism::csv(&reports),
        warnings: Vec::new(),
    }))
}

fn build_perf(results: &Path) -> Result<Option<Built>, TablesError> {
    let ms = perf::read(results)?;
    let batched = batched_section(results)?;
    if ms.is_empty() && batched.is_empty() {
        return Ok(None);
    }
    // A directory with only batched sessions (scripts/bench-batched.sh into
    // a fresh --out) still gets its page.
    let summary = if ms.is_empty() {
        "No single-sequence measurements here (`scripts/bench-compare.sh` writes them).\n"
            .to_string()
    } else {
        perf::markdown(&ms)
    };
    Ok(Some(Built {
        findings: Vec::new(),
        table: "perf",
        title: "Speed: nsed vs llama.cpp, 2 threads".into(),
        summary,
        details: format!(
            "\nPer round: `nsed --threads 2 perf` (128-token prompt, then 64 greedy decode \
             steps; median of the repeats after a warm-up) and `llama-bench -t 2 -p 128 -n 64` \
             on the same GGUF file, interleaved; each cell is the median over the rounds. \
             Raw measurements: `perf/raw.jsonl`.\n{batched}"
        ),
        csv: perf::csv(&ms),
        warnings: Vec::new(),
    }))
}

/// The batched-decode table, when a session of ≥ 3 interleaved rounds exists.
fn batched_section(results: &Path) -> Result<String, TablesError> {
    let table = super::batched::markdown(&super::batched::read(results)?);
    Ok(if table.is_empty() {
        String::new()
    } else {
        format!(
            "\n## Many sequences per pass: nsed vs llama-batched-bench\n\n{table}\n\
             Produced by `NSED_KERNEL=avx2 LLAMACPP_ISA=avx2 scripts/bench-batched.sh` \
             (raw rows with their session: `perf/batched.jsonl`).\n"
        )
    })
}

fn build_federation(results: &Path) -> Result<Option<Built>, TablesError> {
    let Some(demo) = federation::read(results)? else {
        return Ok(None);
    };
    let log = results
        .join("runs")
        .join("federation")
        .join("remote")
        .join("federation.jsonl");
    let details = if log.exists() {
        format!(
            "\n## Per call and per phase (`nsed report federation {}`)\n\n{}",
            log.display(),
            demote_headings(&super::federation_log::report_file(&log)?, 2)
        )
    } else {
        String::new()
    };
    Ok(Some(Built {
        findings: Vec::new(),
        table: "federation",
        title: "Federation: agents as separate processes over NATS".into(),
        summary: federation::markdown(&demo),
        details,
        csv: federation::csv(&demo),
        warnings: Vec::new(),
    }))
}

/// The index page's results section: each page's title, stamp and main
/// tables, with a link to the full page (relative to the index page when it
/// sits in the results directory, as `results/README.md` does).
pub fn write_index(readme: &Path, results: &Path, pages: &[Built]) -> Result<(), TablesError> {
    let beside_pages = sits_in(readme, results);
    let mut section = String::new();
    for page in pages {
        let stamp = match Stamp::read(results, page.table)? {
            Some(s) => format!(
                "{}
",
                s.markdown()
            ),
            None => String::new(),
        };
        let page_file = format!("{}.md", page.table);
        let link = if beside_pages {
            PathBuf::from(page_file)
        } else {
            results.join(page_file)
        };
        section.push_str(&format!(
            "### {}\n\n{stamp}{}\n\nDetails, per-run provenance and figures: [{}]({}).\n\n",
            page.title,
            demote_headings(page.summary.trim_end(), 2),
            link.display(),
            link.display(),
        ));
    }
    let text = read_text(readme)?;
    let out = super::splice_readme(&text, &section, readme)?;
    write_atomic(readme, out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_sessions_alone_make_a_speed_page() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Negative control: no measurements, no page.
        assert!(build_perf(dir.path()).expect("reads").is_none());
        let mut lines = String::new();
        for round in 1..=3 {
            for (tool, own) in [
                ("nsed", r#""kernel":"avx2","commit":"0123456789""#),
                ("llama.cpp", r#""isa":"avx2""#),
            ] {
                for (batch, rate) in [(1, 10.0), (2, 20.0)] {
                    lines.push_str(&format!(
                        r#"{{"tool":"{tool}","session":"2026-12-07T00:00:00Z","model":"m","round":{round},"batch":{batch},"decode":{rate},"cpu":"cpu",{own}}}"#
                    ));
                    lines.push('\n');
                }
            }
        }
        std::fs::create_dir_all(dir.path().join("perf")).expect("mkdir");
        std::fs::write(dir.path().join("perf/batched.jsonl"), lines).expect("write");
        let page = build_perf(dir.path())
            .expect("reads")
            .expect("a page from the batched rows alone");
        assert!(page.summary.contains("No single-sequence measurements"));
        assert!(
            page.details.contains("Session 2026-12-07T00:00:00Z")
                && page.details.contains("| m | 2 | 20.0 (20.0–20.0) | 2.00x"),
            "{}",
            page.details
        );
    }
}
