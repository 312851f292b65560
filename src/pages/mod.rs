//! The paper-style results tables: one page per table (`deliberation`,
//! `code`, `fraud`, `determinism`, `perf`, `federation`), rebuilt from the
//! data files a results directory holds (run journals, CSV, JSON) without
//! rerunning anything, each with a CSV beside it and a stamp saying which
//! command, commit, machine, models and data produced it ([`build`]); and
//! the pages of single runs that the tables embed and `nsed report` prints:
//! bench runs ([`runs`]: summaries, judges, budgets, protocols),
//! simulate-fraud runs ([`fraud_run`], [`economics`]) and federation logs
//! ([`federation_log`]).
//!
//! Layout of a results directory (`results/` at full scale):
//! - `runs/<name>/` — `nsed bench` runs (deliberation and code tables);
//! - `fraud/runs/<model>/` — `nsed simulate-fraud` runs;
//! - `determinism/<model>.json` — `nsed determinism --json` reports;
//! - `perf/raw.jsonl` — one line per measurement of nsed or llama.cpp;
//!   `perf/batched.jsonl` — batched decode, nsed and llama-batched-bench;
//! - `federation/demo.json` and `runs/federation/{local,remote}`;
//! - `stamps/<table>.json` — written by `nsed report stamp` when
//!   `scripts/reproduce.sh` finishes a table's experiments;
//! - `<table>.intro.md` (optional) — prose placed under the page title.

pub mod batched;
pub mod build;
pub mod deliberation;
pub mod determinism;
pub mod economics;
pub mod federation;
pub mod federation_log;
pub mod fraud;
pub mod fraud_run;
pub mod perf;
pub mod runs;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Every table, in the order of the results index page (results/README.md).
pub const TABLES: [&str; 6] = [
    "deliberation",
    "code",
    "fraud",
    "determinism",
    "perf",
    "federation",
];

/// Why a results table or run page cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    /// A file or directory cannot be read or listed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A data file (JSON, JSON lines) does not parse as expected.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with the line for JSON lines).
        message: String,
    },
    /// A table name is not one of [`TABLES`].
    #[error(
        "unknown table `{0}` (tables: deliberation, code, fraud, determinism, perf, federation)"
    )]
    UnknownTable(String),
    /// The file to splice into lacks the begin/end markers (file, begin marker, end marker).
    #[error("{0}: no `{1}` … `{2}` markers to replace; add them where the generated text belongs")]
    NoMarkers(PathBuf, &'static str, &'static str),
    /// Reading a bench run's records fails.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// A run journal (`meta.json` or records) cannot be read.
    #[error(transparent)]
    Journal(#[from] crate::results::journal::JournalError),
    /// The directory has no readable bench-run `meta.json`.
    #[error("{} is not a bench run directory", dir.display())]
    NotARun {
        /// The directory given.
        dir: PathBuf,
        /// Why its `meta.json` cannot be read.
        source: crate::results::journal::JournalError,
    },
    /// A judge, protocol or budget page is asked of a code-set run (no per-proposal grades).
    #[error(
        "{}: `{dataset}` is a code set; judges, protocols and budgets need graded answers, \
         which only math sets record per proposal",
        dir.display()
    )]
    CodeSet {
        /// The run's directory.
        dir: PathBuf,
        /// The run's dataset (a code set).
        dataset: String,
    },
    /// The runs record no judge evaluations (only `--method nsed` or `qv` runs have them).
    #[error("no evaluations in these runs: judges are measured on runs with --method nsed or qv")]
    NoEvaluations,
    /// Writing an output file fails.
    #[error(transparent)]
    Output(#[from] crate::results::output::OutputError),
    /// A simulate-fraud run cannot be read or analyzed.
    #[error(transparent)]
    Fraud(#[from] crate::fraud::FraudError),
    /// A simulate-fraud run has too few samples for held-out detection rates.
    #[error(
        "{}: too few samples for held-out detection rates (needs {prompts} prompts with an \
         honest and a fraud sample); resume the run with more --samples-honest/--samples-fraud",
        dir.display()
    )]
    TooFewSamples {
        /// The run's directory.
        dir: PathBuf,
        /// Prompts needed, each with an honest and a fraud sample.
        prompts: usize,
    },
    /// The economics `--detector` is not one the run's held-out evaluation has.
    #[error("--detector `{detector}` is not a detector of this run; use one of: {known}")]
    UnknownDetector {
        /// The detector asked for.
        detector: String,
        /// The run's detectors, comma-separated.
        known: String,
    },
    /// No attack of the run has its weights in `variants.json`, so there is nothing to price.
    #[error("{}: no attack's weights are in variants.json", dir.display())]
    NoAttacks {
        /// The run's directory.
        dir: PathBuf,
    },
}

pub(crate) fn read_text(path: &Path) -> Result<String, TablesError> {
    std::fs::read_to_string(path).map_err(|source| TablesError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn parse_error(path: &Path, message: impl ToString) -> TablesError {
    TablesError::Parse {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The records of a JSON-lines file (blank lines skipped; an error names
/// the file and line); none when the file is absent.
pub(crate) fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Vec<T>, TablesError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_text(path)?
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| parse_error(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Check a `--only` list against [`TABLES`].
pub fn parse_only(list: &str) -> Result<Vec<String>, TablesError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|t| {
            if TABLES.contains(&t) {
                Ok(t.to_string())
            } else {
                Err(TablesError::UnknownTable(t.to_string()))
            }
        })
        .collect()
}

/// Who produced a table: written when `scripts/reproduce.sh` finishes the
/// table's experiments.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stamp {
    /// The table the stamp is for (one of [`TABLES`]).
    pub table: String,
    /// `full` or `ci`.
    pub scale: String,
    /// The command line that ran the experiments.
    pub command: String,
    /// When the experiments started (UTC, `YYYY-MM-DDTHH:MM:SSZ`).
    pub started: String,
    /// When the experiments finished (UTC, `YYYY-MM-DDTHH:MM:SSZ`): when the stamp was written.
    pub finished: String,
    /// The git commit of the nsed build (`-dirty` when the code had changes).
    pub commit: String,
    /// The CPU's model name.
    pub cpu: String,
    /// CPU cores available to the experiments.
    pub cores: usize,
    /// The qmm kernel path (`avx2`, `avx512vnni`, …); empty in older stamps.
    #[serde(default)]
    pub kernel: String,
    /// Version of the nsed that wrote the stamp.
    pub nsed_version: String,
    /// (model id, GGUF sha256).
    pub models: Vec<(String, String)>,
    /// (dataset name, file sha256).
    pub data: Vec<(String, String)>,
}

impl Stamp {
    /// Where a table's stamp lives: `<results>/stamps/<table>.json`.
    pub fn path(results: &Path, table: &str) -> PathBuf {
        results.join("stamps").join(format!("{table}.json"))
    }

    /// The table's stamp, if it has one.
    pub fn read(results: &Path, table: &str) -> Result<Option<Stamp>, TablesError> {
        let path = Self::path(results, table);
        if !path.exists() {
            return Ok(None);
        }
        let text = read_text(&path)?;
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| parse_error(&path, e))
    }

    /// The stamp as a markdown quote: command, scale, times, commit, CPU, models and data.
    pub fn markdown(&self) -> String {
        let short = |s: &str| s[..s.len().min(12)].to_string();
        let list = |v: &[(String, String)]| {
            if v.is_empty() {
                "—".to_string()
            } else {
                v.iter()
                    .map(|(n, sha)| format!("{n} `{}`", short(sha)))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let commit = match self.commit.strip_suffix("-dirty") {
            Some(c) => format!("{}-dirty", short(c)),
            None => short(&self.commit),
        };
        format!(
            "> Produced by `{}` (scale **{}**); last invocation {} → {}, commit `{}`, nsed {}, \
             CPU {} ({} cores{}).  \n> Models (sha256): {}.  \n> Data (sha256): {}.\n",
            self.command,
            self.scale,
            self.started,
            self.finished,
            commit,
            self.nsed_version,
            self.cpu,
            self.cores,
            if self.kernel.is_empty() {
                String::new()
            } else {
                format!(", kernel {}", self.kernel)
            },
            list(&self.models),
            list(&self.data)
        )
    }
}

/// A finished page: markdown, and the CSV of its main table.
#[derive(Debug, Clone)]
pub struct Page {
    /// The table's name (one of [`TABLES`]).
    pub table: String,
    /// The whole page, in markdown.
    pub markdown: String,
    /// The CSV of the page's main table.
    pub csv: String,
}

/// Title, stamp (or why there is none), the optional intro, then `body`.
pub fn assemble(
    results: &Path,
    table: &str,
    default_title: &str,
    body: &str,
) -> Result<String, TablesError> {
    assemble_with(results, table, default_title, "", body)
}

/// [`assemble`] with generated findings between the stamp and the intro,
/// so that a page leads with what its data say.
pub fn assemble_with(
    results: &Path,
    table: &str,
    default_title: &str,
    findings: &str,
    body: &str,
) -> Result<String, TablesError> {
    let intro_path = results.join(format!("{table}.intro.md"));
    let intro = if intro_path.exists() {
        read_text(&intro_path)?
    } else {
        String::new()
    };
    let (title, intro) = match intro.strip_prefix("# ") {
        Some(rest) => {
            let (t, r) = rest.split_once('\n').unwrap_or((rest, ""));
            (t.trim().to_string(), r.trim().to_string())
        }
        None => (default_title.to_string(), intro.trim().to_string()),
    };
    let stamp = match Stamp::read(results, table)? {
        Some(s) => s.markdown(),
        None => "> No reproduce stamp: these data were made by the experiment scripts \
                 directly, not by `scripts/reproduce.sh`; each run's own header and data \
                 files give their commit, date, CPU, models and command.\n"
            .to_string(),
    };
    let rebuild = format!(
        "> Rebuild this page from the data without rerunning: \
         `nsed report tables --results {} --only {table}`.\n",
        results.display()
    );
    let mut page = format!("# {title}\n\n{stamp}>\n{rebuild}\n");
    page.push_str(findings);
    if !intro.is_empty() {
        page.push_str(&intro);
        page.push_str("\n\n");
    }
    page.push_str(body.trim_end());
    page.push('\n');
    Ok(page)
}

/// "17.6 [6.2, 41.0]" for a share and its interval, in percent.
pub fn percent_ci(p: f64, lo: f64, hi: f64) -> String {
    format!("{:.1} [{:.1}, {:.1}]", 100.0 * p, 100.0 * lo, 100.0 * hi)
}

/// The markers of an index page's tables section.
pub const RESULTS_BEGIN: &str = "<!-- results:begin -->";
/// End marker of an index page's tables section.
pub const RESULTS_END: &str = "<!-- results:end -->";
/// The markers of a file's generated findings.
pub const FINDINGS_BEGIN: &str = "<!-- findings:begin -->";
/// End marker of a file's generated findings.
pub const FINDINGS_END: &str = "<!-- findings:end -->";

/// Replace what lies between the results markers of an index page with `body`.
pub fn splice_readme(readme: &str, body: &str, path: &Path) -> Result<String, TablesError> {
    splice_between(readme, RESULTS_BEGIN, RESULTS_END, body, path)
}

/// Replace what lies between `begin` and `end` in `text` with `body`.
pub fn splice_between(
    text: &str,
    begin: &'static str,
    end: &'static str,
    body: &str,
    path: &Path,
) -> Result<String, TablesError> {
    let missing = || TablesError::NoMarkers(path.to_path_buf(), begin, end);
    let (Some(b), Some(e)) = (text.find(begin), text.find(end)) else {
        return Err(missing());
    };
    if e < b {
        return Err(missing());
    }
    Ok(format!(
        "{}{begin}\n{}\n{}",
        &text[..b],
        body.trim(),
        &text[e..]
    ))
}

/// Demote every markdown heading by `levels` (a page's `#` title becomes
/// `###` inside the index page's `##` section).
pub fn demote_headings(md: &str, levels: usize) -> String {
    let extra = "#".repeat(levels);
    let mut in_code = false;
    md.lines()
        .map(|l| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            if !in_code && l.starts_with('#') {
                format!("{extra}{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lists_are_checked() {
        assert_eq!(parse_only("fraud, perf").unwrap(), vec!["fraud", "perf"]);
        assert!(matches!(
            parse_only("fraud,tables"),
            Err(TablesError::UnknownTable(t)) if t == "tables"
        ));
    }

    #[test]
    fn readme_section_is_replaced_between_markers_only() {
        let readme = "intro\n<!-- results:begin -->\nold\n<!-- results:end -->\ntail\n";
        let out = splice_readme(readme, "new table\n", Path::new("README.md")).unwrap();
        assert_eq!(
            out,
            "intro\n<!-- results:begin -->\nnew table\n<!-- results:end -->\ntail\n"
        );
        assert!(splice_readme("no markers", "x", Path::new("R")).is_err());
        let reversed = "<!-- results:end -->\n<!-- results:begin -->";
        assert!(splice_readme(reversed, "x", Path::new("R")).is_err());
    }

    #[test]
    fn headings_are_demoted_outside_code_blocks() {
        let md = "# T\ntext\n```\n# not a heading\n```\n## S";
        assert_eq!(
            demote_headings(md, 2),
            "### T\ntext\n```\n# not a heading\n```\n#### S"
        );
    }

    #[test]
    fn pages_carry_title_stamp_and_intro() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("fraud.intro.md"), "# Fraud title\n\nSome prose.\n").unwrap();
        let page = assemble(dir, "fraud", "Default", "| a |\n").unwrap();
        assert!(page.starts_with("# Fraud title\n\n> No reproduce stamp"));
        assert!(page.contains("Some prose.\n\n| a |\n"));
        let stamp = Stamp {
            table: "perf".into(),
            scale: "ci".into(),
            command: "scripts/reproduce.sh --scale ci".into(),
            started: "2026-11-23T09:00:00Z".into(),
            finished: "2026-11-23T09:05:00Z".into(),
            commit: "0123456789abcdef".into(),
            cpu: "AMD EPYC".into(),
            cores: 2,
            kernel: "avx2".into(),
            nsed_version: "0.1.0".into(),
            models: vec![("smollm2-135m".into(), "b179c9523d0e6a0f".into())],
            data: vec![],
        };
        std::fs::create_dir_all(dir.join("stamps")).unwrap();
        std::fs::write(
            Stamp::path(dir, "perf"),
            serde_json::to_string(&stamp).unwrap(),
        )
        .unwrap();
        let page = assemble(dir, "perf", "Speed", "body").unwrap();
        assert!(page.starts_with("# Speed\n\n> Produced by `scripts/reproduce.sh --scale ci`"));
        assert!(page.contains("commit `0123456789ab`"));
        assert!(page.contains("smollm2-135m `b179c9523d0e`"));
        assert!(page.ends_with("body\n"));
    }
}
