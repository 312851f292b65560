//! Math benchmark sets read from the data directory (`--data-dir`, else
//! `$NSED_DATA_DIR`, else the repository's `datasets/`): AIME 2025, AIME
//! 2024, AIME 1983-2024, GSM8K test and MATH-500. Each item has a stable id,
//! the problem text and the gold answer; the file's sha256 goes into results.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::answer::AnswerKind;

/// Why a math dataset cannot be loaded or its items selected.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The dataset name is not one of the known math sets.
    #[error("unknown dataset `{0}`; known: {known}", known = SETS.iter().map(|s| s.name).collect::<Vec<_>>().join(", "))]
    Unknown(String),
    /// No data directory is given and the bundled `datasets/` folder is gone (its path).
    #[error("no data directory: {} (the datasets/ folder of the source tree this binary was built from) is gone; pass --data-dir DIR or set NSED_DATA_DIR", .0.display())]
    NoDataDir(PathBuf),
    /// The dataset file cannot be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The dataset file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A line of the dataset file is not JSON or lacks a field the set needs.
    #[error("{path}:{line}: {message}")]
    Record {
        /// The dataset file.
        path: PathBuf,
        /// Line number in the file, from 1.
        line: usize,
        /// What is wrong with the record.
        message: String,
    },
    /// `--ids` names items the set does not have.
    #[error("unknown item id(s) in {set}: {ids}")]
    UnknownIds {
        /// The set's name.
        set: String,
        /// The unknown ids, comma-separated.
        ids: String,
    },
}

/// One benchmark problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// The item's id, stable across runs (GSM8K: `gsm8k-<n>`, n counted from 0 in file order).
    pub id: String,
    /// The problem text shown to the models.
    pub problem: String,
    /// The gold answer (GSM8K: the number after `####`; empty for code sets).
    pub answer: String,
}

/// A loaded set.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The set's name (`aime25`, `gsm8k`, `math500`, …).
    pub name: String,
    /// How the set's answers are compared.
    pub kind: AnswerKind,
    /// The JSON-lines file the set was read from.
    pub file: PathBuf,
    /// sha256 (hex) of the file, recorded in results.
    pub sha256: String,
    /// The set's items, in file order.
    pub items: Vec<Item>,
}

struct SetSpec {
    name: &'static str,
    file: &'static str,
    kind: AnswerKind,
    /// Suggested answer budget (docs/reference.md §1: math needs ≥ 640 new tokens).
    max_tokens: usize,
    parse: fn(&Value, usize) -> Result<Item, String>,
}

const SETS: &[SetSpec] = &[
    SetSpec {
        name: "aime25",
        file: "aime2025/aime2025_normalized.jsonl",
        kind: AnswerKind::Aime,
        max_tokens: 1024,
        parse: parse_aime,
    },
    SetSpec {
        name: "aime24",
        file: "aime2024/aime2024_normalized.jsonl",
        kind: AnswerKind::Aime,
        max_tokens: 1024,
        parse: parse_aime,
    },
    SetSpec {
        name: "aime",
        file: "aime1983-2024/aime1983_2024_normalized.jsonl",
        kind: AnswerKind::Aime,
        max_tokens: 1024,
        parse: parse_aime,
    },
    SetSpec {
        name: "gsm8k",
        file: "gsm8k/test.jsonl",
        kind: AnswerKind::Numeric,
        max_tokens: 640,
        parse: parse_gsm8k,
    },
    SetSpec {
        name: "math500",
        file: "math500/test.jsonl",
        kind: AnswerKind::Expression,
        max_tokens: 768,
        parse: parse_math500,
    },
];

/// The names `nsed bench` accepts for math sets.
pub fn names() -> Vec<&'static str> {
    SETS.iter().map(|s| s.name).collect()
}

/// How a math set's answers are compared (`None`: not a math set).
pub fn kind_of(name: &str) -> Option<AnswerKind> {
    SETS.iter().find(|s| s.name == name).map(|s| s.kind)
}

/// The default answer budget of a set.
pub fn default_max_tokens(name: &str) -> Option<usize> {
    SETS.iter().find(|s| s.name == name).map(|s| s.max_tokens)
}

/// The `datasets/` folder of the source tree this binary was built from.
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets")
}

/// The data directory: the flag, else `$NSED_DATA_DIR`, else
/// [`bundled_dir`] (which an installed binary may have outlived).
pub fn data_dir(flag: Option<&Path>) -> Result<PathBuf, DatasetError> {
    let chosen = flag
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os("NSED_DATA_DIR").map(PathBuf::from));
    match chosen {
        Some(dir) => Ok(dir),
        None if bundled_dir().is_dir() => Ok(bundled_dir()),
        None => Err(DatasetError::NoDataDir(bundled_dir())),
    }
}

/// The file of a set, relative to the data directory.
pub fn file_of(name: &str) -> Option<&'static str> {
    SETS.iter().find(|s| s.name == name).map(|s| s.file)
}

/// Load every item of a set.
pub fn load(name: &str, dir: &Path) -> Result<Dataset, DatasetError> {
    let spec = SETS
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| DatasetError::Unknown(name.to_string()))?;
    let file = dir.join(spec.file);
    let (records, sha256) = read_jsonl(&file)?;
    let mut items = Vec::new();
    for (line, v) in &records {
        let item = (spec.parse)(v, items.len()).map_err(|message| DatasetError::Record {
            path: file.clone(),
            line: *line,
            message,
        })?;
        items.push(item);
    }
    Ok(Dataset {
        name: name.to_string(),
        kind: spec.kind,
        file,
        sha256,
        items,
    })
}

/// A JSON-lines file: each record with its 1-based line number (blank
/// lines skipped), and the file's sha256 for provenance.
pub fn read_jsonl(path: &Path) -> Result<(Vec<(usize, Value)>, String), DatasetError> {
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let sha256 = {
        use sha2::Digest;
        crate::engine::digest::hex(&sha2::Sha256::digest(&bytes))
    };
    let text = String::from_utf8_lossy(&bytes);
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(line).map_err(|e| DatasetError::Record {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        records.push((i + 1, v));
    }
    Ok((records, sha256))
}

fn field<'a>(v: &'a Value, key: &str) -> Result<&'a Value, String> {
    v.get(key).ok_or_else(|| format!("missing field `{key}`"))
}

fn text_field(v: &Value, key: &str) -> Result<String, String> {
    field(v, key)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("field `{key}` is not a string"))
}

fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_aime(v: &Value, _index: usize) -> Result<Item, String> {
    Ok(Item {
        id: scalar_string(field(v, "id")?).ok_or("field `id` is not a scalar")?,
        problem: text_field(v, "problem")?,
        answer: scalar_string(field(v, "answer")?).ok_or("field `answer` is not a scalar")?,
    })
}

fn parse_gsm8k(v: &Value, index: usize) -> Result<Item, String> {
    let solution = text_field(v, "answer")?;
    let gold = solution
        .rsplit_once("####")
        .map(|(_, a)| a.trim().replace(',', ""))
        .ok_or("the answer has no `####` line")?;
    Ok(Item {
        id: format!("gsm8k-{index}"),
        problem: text_field(v, "question")?,
        answer: gold,
    })
}

fn parse_math500(v: &Value, _index: usize) -> Result<Item, String> {
    Ok(Item {
        id: text_field(v, "unique_id")?,
        problem: text_field(v, "problem")?,
        answer: text_field(v, "answer")?,
    })
}

/// Which items to run.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Selection {
    /// Items of the set to skip first.
    pub offset: usize,
    /// Most items to take after the offset (`None`: all).
    pub limit: Option<usize>,
    /// Explicit ids (in the set's order); overrides offset/limit.
    pub ids: Vec<String>,
    /// Keep only items whose gold answer is an integer (MATH-500's 311).
    pub integer_only: bool,
}

impl Dataset {
    /// The selected items, in the set's order.
    pub fn select(&self, sel: &Selection) -> Result<Vec<Item>, DatasetError> {
        let pool = self
            .items
            .iter()
            .filter(|it| !sel.integer_only || is_integer(&it.answer));
        if !sel.ids.is_empty() {
            let missing: Vec<&str> = sel
                .ids
                .iter()
                .filter(|id| !self.items.iter().any(|it| &it.id == *id))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                return Err(DatasetError::UnknownIds {
                    set: self.name.clone(),
                    ids: missing.join(", "),
                });
            }
            return Ok(pool
                .filter(|it| sel.ids.contains(&it.id))
                .cloned()
                .collect());
        }
        Ok(pool
            .skip(sel.offset)
            .take(sel.limit.unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }
}

fn is_integer(s: &str) -> bool {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gsm8k_gold_is_after_the_last_marker() {
        let v: Value = serde_json::json!({"question": "q", "answer": "a\n#### 1,080"});
        assert_eq!(parse_gsm8k(&v, 3).unwrap().answer, "1080");
        assert_eq!(parse_gsm8k(&v, 3).unwrap().id, "gsm8k-3");
        let bad: Value = serde_json::json!({"question": "q", "answer": "no marker"});
        assert!(parse_gsm8k(&bad, 0).is_err());
    }

    #[test]
    fn unknown_set_and_missing_dir_are_clear() {
        let e = load("gsm9k", Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown dataset `gsm9k`") && e.contains("gsm8k"),
            "{e}"
        );
        let e = load("gsm8k", Path::new("/nonexistent"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/gsm8k/test.jsonl"), "{e}");
    }

    #[test]
    fn integer_answers() {
        assert!(is_integer("25") && is_integer("-3"));
        assert!(!is_integer("\\frac12") && !is_integer("2.5") && !is_integer(""));
    }
}
