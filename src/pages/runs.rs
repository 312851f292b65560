//! The pages of one or more bench runs: a run's summary (methods, intervals,
//! provenance, how its programs were contained), the judge-quality table
//! with its AUC figure, accuracy against compute with one figure per run,
//! and the protocol variants re-tallied on identical ballots. `nsed report
//! judges|budgets|protocols|bench` print them; the deliberation page embeds
//! them.

use std::path::{Path, PathBuf};

use super::TablesError;
use crate::answer::AnswerKind;
use crate::bench::{self, budgets, datasets, judges, protocols, ItemRecord, Meta};
use crate::deliberation::EvalMode;
use crate::results::figure;
use crate::results::output::write_atomic;

fn read_meta(dir: &Path) -> Result<Meta, TablesError> {
    Meta::read(dir).map_err(|source| TablesError::NotARun {
        dir: dir.to_path_buf(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), TablesError> {
    std::fs::create_dir_all(dir).map_err(|source| TablesError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// A bench run of a math set: its meta, how its answers compare, its
/// records. Code sets are refused: their proposals have no per-proposal grade.
fn math_run(dir: &Path) -> Result<(Meta, AnswerKind, Vec<ItemRecord>), TablesError> {
    let meta = read_meta(dir)?;
    let Some(kind) = datasets::kind_of(&meta.fingerprint.dataset) else {
        return Err(TablesError::CodeSet {
            dir: dir.to_path_buf(),
            dataset: meta.fingerprint.dataset,
        });
    };
    let records = bench::read_records(dir)?;
    Ok((meta, kind, records))
}

/// The judge table of `runs` in markdown; with `out`, also judges.md,
/// judges.csv and the AUC figure there.
pub fn judges_page(runs: &[PathBuf], out: Option<&Path>) -> Result<String, TablesError> {
    judges_section(runs, out)?.ok_or(TablesError::NoEvaluations)
}

/// [`judges_page`], or `None` when the runs hold no scored evaluation.
pub fn judges_section(runs: &[PathBuf], out: Option<&Path>) -> Result<Option<String>, TablesError> {
    let mut judges = judges::Judges::new();
    let mut header = String::from("# Judge quality\n\nFrom the evaluations of:\n\n");
    for dir in runs {
        let (meta, kind, records) = math_run(dir)?;
        let fp = &meta.fingerprint;
        judges::collect(&mut judges, &records, kind, &fp.roster);
        header.push_str(&format!(
            "- `{}`: {} · roster `{}` · {} items · selection {}\n",
            dir.display(),
            fp.dataset,
            fp.roster.name,
            records.len(),
            serde_json::to_string(&fp.selection).unwrap_or_default()
        ));
    }
    let rows = judges::rows(&judges);
    if rows.is_empty() {
        return Ok(None);
    }
    let md = format!(
        "{header}\nAUC: probability that a correct proposal scores above a wrong one (0.5 = no \
         signal), 95% CI by Hanley-McNeil (scores treated as independent). Pairwise: a correct \
         and a wrong proposal shown in the same call, ties as half. Abstained: calls with no \
         readable score.\n\n{}",
        judges::markdown(&rows)
    );
    if let Some(out) = out {
        create_dir(out)?;
        write_atomic(&out.join("judges.md"), md.as_bytes())?;
        write_atomic(&out.join("judges.csv"), judges::csv(&rows).as_bytes())?;
        let with_auc: Vec<&judges::JudgeRow> = rows.iter().filter(|r| r.auc.is_some()).collect();
        let names: Vec<String> = with_auc
            .iter()
            .map(|r| {
                // Short labels: the figure has one column per judge.
                let model = r.model.replace("qwen2.5-coder-", "qwen-");
                let mode = match r.mode {
                    EvalMode::Generative => "gen",
                    EvalMode::Logprob => "logp",
                };
                format!("{model} {mode}")
            })
            .collect();
        let points: Vec<(f64, f64, f64)> = with_auc
            .iter()
            .filter_map(|r| Some((r.auc?, r.auc_low?, r.auc_high?)))
            .collect();
        let chart = figure::IntervalChart {
            title: "Judge AUC: correct vs wrong proposals (95% CI)".into(),
            y_label: "AUC",
            y_range: (0.0, 1.0),
            reference: Some(0.5),
            names: &names,
        };
        if let Err(e) = figure::intervals(&out.join("judges-auc"), &chart, &points) {
            eprintln!("warning: no figure: {e}");
        }
        eprintln!(
            "wrote {}/judges.{{md,csv}} and judges-auc.{{png,svg}}",
            out.display()
        );
    }
    Ok(Some(md))
}

/// The accuracy-against-compute tables of `runs`; with `out`, also
/// budgets.md and one figure per run there.
pub fn budgets_page(runs: &[PathBuf], out: Option<&Path>) -> Result<String, TablesError> {
    let mut md = String::from(
        "# Accuracy against compute\n\nTokens are prompt + generated tokens per item. \
         Self-consistency at k is the majority of its first k samples; NSED and debate at r \
         stop after round r.\n",
    );
    if let Some(out) = out {
        create_dir(out)?;
    }
    for dir in runs {
        let (meta, kind, records) = math_run(dir)?;
        let fp = &meta.fingerprint;
        let points = budgets::points(&records, kind);
        md.push_str(&format!(
            "\n## `{}`: {} · roster `{}` · {} items\n\n{}",
            dir.display(),
            fp.dataset,
            fp.roster.name,
            records.len(),
            budgets::markdown(&points)
        ));
        if let Some(m) = budgets::matched(&points) {
            md.push_str(&format!(
                "\nAt matched compute: NSED {:.0} tokens/item, {}/{} right; self-consistency \
                 k = {} ({:.0} tokens/item), {}/{} right; NSED only {}, self-consistency only {}, \
                 p = {:.3} (exact McNemar).\n",
                m.nsed_tokens,
                m.nsed_correct,
                m.n,
                m.k,
                m.sc_tokens,
                m.sc_correct,
                m.n,
                m.nsed_only,
                m.sc_only,
                m.p_value
            ));
        }
        if let Some(out) = out {
            let series = budgets::series(&points);
            let max_x = series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .fold(1.0f64, f64::max);
            let chart = figure::LineChart {
                title: format!(
                    "{} · {}: accuracy vs tokens per item",
                    fp.dataset, fp.roster.name
                ),
                x_label: "tokens per item (prompt + generated)",
                y_label: "accuracy (95% Wilson interval)",
                x_range: (0.0, max_x * 1.05),
                y_range: (0.0, 1.0),
                x_names: None,
                diagonal: false,
            };
            let run_name = dir.file_name().map_or_else(
                || format!("{}-{}", fp.dataset, fp.roster.name),
                |n| n.to_string_lossy().into_owned(),
            );
            let stem = out.join(format!("budgets-{run_name}"));
            if let Err(e) = figure::lines(&stem, &chart, &series) {
                eprintln!("warning: no figure: {e}");
            }
        }
    }
    if let Some(out) = out {
        write_atomic(&out.join("budgets.md"), md.as_bytes())?;
    }
    Ok(md)
}

/// The protocol ablations of `runs`; with `out`, also protocols.md there.
pub fn protocols_page(runs: &[PathBuf], out: Option<&Path>) -> Result<String, TablesError> {
    let mut md = String::from(
        "# Protocol variants on identical ballots\n\nEach rule re-tallies the same round-1 \
         proposals and scores; p compares each rule with the quadratic vote on the same items.\n",
    );
    for dir in runs {
        let (meta, kind, records) = math_run(dir)?;
        let fp = &meta.fingerprint;
        let rows = protocols::ablate(&records, kind, &fp.roster);
        md.push_str(&format!(
            "\n## `{}`: {} · roster `{}` · selection {}\n\n{}",
            dir.display(),
            fp.dataset,
            fp.roster.name,
            serde_json::to_string(&fp.selection).unwrap_or_default(),
            protocols::markdown(&rows)
        ));
    }
    if let Some(out) = out {
        create_dir(out)?;
        write_atomic(&out.join("protocols.md"), md.as_bytes())?;
    }
    Ok(md)
}

/// The summary of the items done in a run directory; writes summary.md and
/// summary.csv there and returns the markdown.
pub fn run_summary(dir: &Path) -> Result<String, TablesError> {
    let meta = read_meta(dir)?;
    let records = bench::read_records(dir)?;
    let ids: Vec<String> = records.iter().map(|r| r.item.clone()).collect();
    let (summaries, pairs) = bench::summarize(&records, &ids);
    let header = summary_header(&meta, dir, ids.len());
    Ok(bench::write_summary(dir, &header, &summaries, &pairs)?)
}

fn summary_header(meta: &Meta, dir: &Path, n: usize) -> String {
    let fp = &meta.fingerprint;
    let s = &fp.settings;
    let mut out = format!(
        "# {} · roster `{}` · {n} items\n\n- dataset sha256 {} · selection {}\n\
         - halting {} · max_tokens {} · eval {:?} · seed {} · items in `{}/items.jsonl`\n",
        fp.dataset,
        fp.roster.name,
        fp.dataset_sha256,
        serde_json::to_string(&fp.selection).unwrap_or_default(),
        serde_json::to_string(&s.halting).unwrap_or_default(),
        s.max_tokens,
        s.mode,
        s.seed,
        dir.display()
    );
    if let Some(code) = &fp.code {
        out.push_str(&format!("- graded on {}", code.graded_on));
        if fp.dataset == "lcb" {
            let filter = serde_json::to_string(&code.filter).unwrap_or_default();
            out.push_str(&format!(" · filter {filter}"));
        }
        out.push('\n');
    }
    for info in &meta.runs {
        let models: Vec<String> = info
            .models
            .iter()
            .map(|(id, sha)| format!("{id} ({})", &sha[..sha.len().min(12)]))
            .collect();
        out.push_str(&format!(
            "- run {} · commit {} · {}{} · {} threads · models {}\n  `{}`\n",
            info.started,
            info.commit,
            info.host_cpu,
            kernel_note(&info.kernel),
            info.threads,
            models.join(", "),
            info.command.join(" ")
        ));
        if let Some(sandbox) = &info.sandbox {
            out.push_str(&format!("  sandbox: {}\n", sandbox_note(sandbox)));
        }
    }
    out
}

/// How a run's programs were contained, for its summary.
fn sandbox_note(p: &crate::sandbox::Protections) -> String {
    let Some(guards) = &p.guards else {
        return format!("layer not recorded (run predates layers) · {}", p.summary());
    };
    let policy = match p.policy {
        Some(crate::sandbox::Policy::BestEffort) => "best-effort",
        _ => "require",
    };
    format!(
        "layer {} (--sandbox {policy}) · writes outside {} · host files {} · network {} · leftover processes {} · process limit {} · disk quota {}",
        p.layer.map_or("unrecorded", crate::sandbox::Layer::name),
        guards.writes_outside.name(),
        guards.host_files.name(),
        guards.network.name(),
        guards.leftover_processes.name(),
        guards.process_limit.name(),
        guards.disk_quota.name(),
    )
}

/// ` · kernel NAME` for runs that recorded their kernel path (older runs did not).
fn kernel_note(kernel: &str) -> String {
    if kernel.is_empty() {
        String::new()
    } else {
        format!(" · kernel {kernel}")
    }
}
