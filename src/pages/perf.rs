//! The speed table: nsed against llama.cpp on the same GGUF files, prefill
//! and decode tokens/s and peak memory, the median over interleaved rounds,
//! from `perf/raw.jsonl` (one line per measurement, written by
//! `scripts/bench-compare.sh`). Rows are per model and per pairing of nsed's
//! kernel path with a llama.cpp build (e.g. `NSED_KERNEL=avx2` against a
//! llama.cpp built for AVX2 only), since a claim on one instruction set is
//! not a claim about another.

use std::path::Path;

use serde::Deserialize;

use super::{read_jsonl, TablesError};
use crate::results::csv_text::csv_text;
use crate::stats::median;

/// One measurement line.
#[derive(Debug, Clone, Deserialize)]
pub struct Measurement {
    /// `nsed`, `llama.cpp`, or `llama.cpp-rss` (llama-bench's peak RSS).
    pub tool: String,
    /// The model measured (registry id).
    pub model: String,
    /// Path of the GGUF file measured.
    #[serde(default)]
    pub file: Option<String>,
    /// Prefill tokens/s (nsed and `llama.cpp` lines).
    #[serde(default)]
    pub prefill: Option<f64>,
    /// Decode tokens/s (nsed and `llama.cpp` lines).
    #[serde(default)]
    pub decode: Option<f64>,
    /// Peak resident memory, MiB (nsed and `llama.cpp-rss` lines).
    #[serde(default)]
    pub rss_mib: Option<f64>,
    /// llama.cpp's build commit.
    #[serde(default)]
    pub build: Option<String>,
    /// The pairing this measurement belongs to: nsed's kernel path, and
    /// for llama.cpp lines the path it was paired with (absent in old data).
    #[serde(default)]
    pub kernel: Option<String>,
    /// llama.cpp's build flavour: `native` or `avx2`.
    #[serde(default)]
    pub llama_isa: Option<String>,
}

impl Measurement {
    /// The pairing label of a row: `avx2 vs llama.cpp avx2`, …
    fn pairing(&self) -> String {
        self.kernel.clone().unwrap_or_default()
    }
}

/// Every measurement in `<results>/perf/raw.jsonl`.
pub fn read(results: &Path) -> Result<Vec<Measurement>, TablesError> {
    read_jsonl(&results.join("perf").join("raw.jsonl"))
}

/// A model's medians under one pairing: (nsed, llama.cpp) prefill, decode and RSS.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The model (registry id).
    pub model: String,
    /// nsed's kernel path (empty where the data did not record it).
    pub kernel: String,
    /// llama.cpp's build flavour for this pairing, if llama.cpp ran.
    pub llama_isa: Option<String>,
    /// Size of the GGUF file, MiB; `None` when the file is not on this machine.
    pub file_mib: Option<f64>,
    /// Number of nsed measurements (rounds) behind the medians.
    pub rounds: usize,
    /// Median nsed prefill tokens/s.
    pub nsed_prefill: Option<f64>,
    /// Median llama.cpp prefill tokens/s.
    pub llama_prefill: Option<f64>,
    /// Median nsed decode tokens/s.
    pub nsed_decode: Option<f64>,
    /// Median llama.cpp decode tokens/s.
    pub llama_decode: Option<f64>,
    /// Median nsed peak RSS, MiB.
    pub nsed_rss: Option<f64>,
    /// Median llama.cpp peak RSS, MiB.
    pub llama_rss: Option<f64>,
}

/// One row per (pairing, model), in order of first appearance, each cell a median over rounds.
pub fn rows(ms: &[Measurement]) -> Vec<Row> {
    let mut keys: Vec<(String, &str)> = Vec::new();
    for m in ms {
        let key = (m.pairing(), m.model.as_str());
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|(kernel, model)| {
            let of = |m: &&Measurement| m.model == model && m.pairing() == kernel;
            let pick = |tool: &str, f: &dyn Fn(&Measurement) -> Option<f64>| {
                let values: Vec<f64> = ms
                    .iter()
                    .filter(of)
                    .filter(|m| m.tool == tool)
                    .filter_map(f)
                    .collect();
                median(&values)
            };
            let llama_isa = ms.iter().filter(of).find_map(|m| m.llama_isa.clone());
            let file_mib = ms
                .iter()
                .find(|m| m.model == model && m.file.is_some())
                .and_then(|m| std::fs::metadata(m.file.as_deref()?).ok())
                .map(|md| md.len() as f64 / (1 << 20) as f64);
            Row {
                model: model.to_string(),
                kernel: kernel.clone(),
                llama_isa,
                file_mib,
                rounds: ms.iter().filter(of).filter(|m| m.tool == "nsed").count(),
                nsed_prefill: pick("nsed", &|m| m.prefill),
                llama_prefill: pick("llama.cpp", &|m| m.prefill),
                nsed_decode: pick("nsed", &|m| m.decode),
                llama_decode: pick("llama.cpp", &|m| m.decode),
                nsed_rss: pick("nsed", &|m| m.rss_mib),
                llama_rss: pick("llama.cpp-rss", &|m| m.rss_mib),
            }
        })
        .collect()
}

fn cell(x: Option<f64>, digits: usize) -> String {
    x.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("**{:.2}x**", a / b),
        _ => "–".into(),
    }
}

/// The speed table: one row per model and pairing, with nsed / llama.cpp ratios.
pub fn markdown(ms: &[Measurement]) -> String {
    let rows = rows(ms);
    if rows.is_empty() {
        return "No measurements yet.\n".into();
    }
    let mut out = String::from(
        "| nsed kernel | llama.cpp build | model | GGUF MiB | rounds | nsed prefill tok/s | llama.cpp prefill | ratio | nsed decode tok/s | llama.cpp decode | ratio | nsed peak RSS MiB | llama.cpp peak RSS MiB |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in &rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            if r.kernel.is_empty() {
                "not recorded"
            } else {
                &r.kernel
            },
            r.llama_isa
                .as_deref()
                .unwrap_or(if r.llama_prefill.is_some() {
                    "native"
                } else {
                    "–"
                }),
            r.model,
            cell(r.file_mib, 0),
            r.rounds,
            cell(r.nsed_prefill, 1),
            cell(r.llama_prefill, 1),
            ratio(r.nsed_prefill, r.llama_prefill),
            cell(r.nsed_decode, 1),
            cell(r.llama_decode, 1),
            ratio(r.nsed_decode, r.llama_decode),
            cell(r.nsed_rss, 0),
            cell(r.llama_rss, 0),
        ));
    }
    if let Some(build) = ms.iter().find_map(|m| m.build.as_deref()) {
        out.push_str(&format!("\nllama.cpp build {build}.\n"));
    } else {
        out.push_str("\nllama.cpp was not run for these data (`–`).\n");
    }
    out
}

/// The speed table as CSV, one row per model and pairing (cells with three decimals).
pub fn csv(ms: &[Measurement]) -> String {
    let opt = |x: Option<f64>| x.map_or(String::new(), |x| format!("{x:.3}"));
    let header = [
        "kernel",
        "llamacpp_isa",
        "model",
        "file_mib",
        "rounds",
        "nsed_prefill_tok_s",
        "llamacpp_prefill_tok_s",
        "nsed_decode_tok_s",
        "llamacpp_decode_tok_s",
        "nsed_rss_mib",
        "llamacpp_rss_mib",
    ];
    let cells = rows(ms).into_iter().map(|r| {
        [
            r.kernel.to_string(),
            r.llama_isa.clone().unwrap_or_default(),
            r.model.to_string(),
            opt(r.file_mib),
            r.rounds.to_string(),
            opt(r.nsed_prefill),
            opt(r.llama_prefill),
            opt(r.nsed_decode),
            opt(r.llama_decode),
            opt(r.nsed_rss),
            opt(r.llama_rss),
        ]
    });
    csv_text(&header, cells)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(tool: &str, model: &str, prefill: f64, decode: f64) -> Measurement {
        Measurement {
            tool: tool.into(),
            model: model.into(),
            file: None,
            prefill: Some(prefill),
            decode: Some(decode),
            rss_mib: None,
            build: None,
            kernel: None,
            llama_isa: None,
        }
    }

    #[test]
    fn rows_take_the_median_over_rounds_per_tool() {
        let ms = vec![
            m("nsed", "a", 100.0, 10.0),
            m("llama.cpp", "a", 50.0, 20.0),
            m("nsed", "a", 300.0, 30.0),
            m("llama.cpp", "a", 70.0, 40.0),
            m("nsed", "a", 200.0, 20.0),
        ];
        let r = &rows(&ms)[0];
        assert_eq!(r.rounds, 3);
        assert_eq!(r.nsed_prefill, Some(200.0));
        assert_eq!(r.llama_prefill, Some(60.0));
        assert_eq!(r.nsed_decode, Some(20.0));
        assert_eq!(r.llama_decode, Some(30.0));
        assert!(markdown(&ms).contains("| **3.33x** |"));
    }

    #[test]
    fn nsed_alone_leaves_llama_columns_empty() {
        let md = markdown(&[m("nsed", "a", 100.0, 10.0)]);
        assert!(md.contains("| not recorded | – | a | – | 1 | 100.0 | – | – | 10.0 | – | – |"));
        assert!(md.contains("llama.cpp was not run"));
    }

    #[test]
    fn pairings_are_separate_rows() {
        let tag = |mut x: Measurement, kernel: &str, isa: &str| {
            x.kernel = Some(kernel.into());
            x.llama_isa = (x.tool != "nsed").then(|| isa.into());
            x
        };
        let ms = vec![
            tag(m("nsed", "a", 100.0, 10.0), "avx2", ""),
            tag(m("llama.cpp", "a", 50.0, 20.0), "avx2", "avx2"),
            tag(m("nsed", "a", 300.0, 30.0), "avx512vnni", ""),
            tag(m("llama.cpp", "a", 100.0, 20.0), "avx512vnni", "native"),
        ];
        let rows = rows(&ms);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].kernel.as_str(), rows[0].nsed_prefill),
            ("avx2", Some(100.0))
        );
        assert_eq!(rows[0].llama_isa.as_deref(), Some("avx2"));
        assert_eq!(rows[1].llama_prefill, Some(100.0));
        let md = markdown(&ms);
        assert!(md.contains("| avx2 | avx2 | a |"), "{md}");
        assert!(md.contains("| avx512vnni | native | a |"), "{md}");
        assert!(
            md.contains("| **2.00x** |") && md.contains("| **3.00x** |"),
            "{md}"
        );
    }
}
