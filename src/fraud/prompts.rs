//! Prompts for fraud samples: GSM8K and MATH-500 problems, LiveCodeBench
//! questions, and the project's multilingual prompts (short answers to long
//! essays, so outputs fill every length bin), interleaved round-robin.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::FraudError;
use crate::bench::datasets;

/// The project-written multilingual prompts (`datasets/fraud-prompts.jsonl`).
const MULTILINGUAL: &str = include_str!("../../datasets/fraud-prompts.jsonl");
const LCB_FILE: &str = "livecodebench/lcb_release_v1_public.jsonl";

/// The sources, in interleaving order.
pub const SOURCES: &[&str] = &["gsm8k", "math500", "lcb", "multilingual"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// `source/id`.
    pub id: String,
    pub source: String,
    pub lang: String,
    pub text: String,
}

/// `per_source` prompts of each of `sources`, interleaved: prompt i comes
/// from source i mod |sources|. Sources with fewer prompts cycle.
pub fn mixture(
    data_dir: &Path,
    sources: &[String],
    per_source: usize,
) -> Result<Vec<Prompt>, FraudError> {
    let lists = sources
        .iter()
        .map(|s| load(s, data_dir, per_source))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(per_source * lists.len());
    for i in 0..per_source {
        for list in &lists {
            out.push(list[i % list.len()].clone());
        }
    }
    Ok(out)
}

fn load(source: &str, data_dir: &Path, n: usize) -> Result<Vec<Prompt>, FraudError> {
    let prompts = match source {
        "gsm8k" | "math500" => datasets::load(source, data_dir)?
            .items
            .into_iter()
            .take(n)
            .map(|it| Prompt {
                id: format!("{source}/{}", it.id),
                source: source.into(),
                lang: "en".into(),
                text: format!(
                    "{}\n\nReason step by step and put the final answer in \\boxed{{}}.",
                    it.problem
                ),
            })
            .collect(),
        "lcb" => lcb(data_dir, n)?,
        "multilingual" => multilingual()?,
        other => {
            return Err(FraudError::Input(format!(
                "unknown prompt source `{other}` (known: {})",
                SOURCES.join(", ")
            )))
        }
    };
    if prompts.is_empty() {
        return Err(FraudError::Input(format!(
            "prompt source `{source}` is empty"
        )));
    }
    Ok(prompts)
}

#[derive(Deserialize)]
struct LcbLine {
    question_id: String,
    question_content: String,
}

fn lcb(data_dir: &Path, n: usize) -> Result<Vec<Prompt>, FraudError> {
    let path = data_dir.join(LCB_FILE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| FraudError::Input(format!("cannot read {}: {e}", path.display())))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .take(n)
        .enumerate()
        .map(|(i, line)| {
            let q: LcbLine = serde_json::from_str(line)
                .map_err(|e| FraudError::Input(format!("{}:{}: {e}", path.display(), i + 1)))?;
            Ok(Prompt {
                id: format!("lcb/{}", q.question_id),
                source: "lcb".into(),
                lang: "en".into(),
                text: format!(
                    "{}\n\nWrite a Python program that solves this problem.",
                    q.question_content
                ),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct MultilingualLine {
    id: String,
    lang: String,
    prompt: String,
}

fn multilingual() -> Result<Vec<Prompt>, FraudError> {
    MULTILINGUAL
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let m: MultilingualLine = serde_json::from_str(line)
                .map_err(|e| FraudError::Input(format!("fraud-prompts.jsonl: {e}")))?;
            Ok(Prompt {
                id: format!("multilingual/{}", m.id),
                source: "multilingual".into(),
                lang: m.lang,
                text: m.prompt,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multilingual_prompts_cover_languages_and_lengths() {
        let p = multilingual().expect("parse");
        assert_eq!(p.len(), 36);
        let langs: std::collections::BTreeSet<_> = p.iter().map(|x| x.lang.as_str()).collect();
        assert_eq!(langs.len(), 12);
        for kind in ["short", "medium", "long"] {
            assert_eq!(p.iter().filter(|x| x.id.ends_with(kind)).count(), 12);
        }
    }

    #[test]
    fn unknown_source_is_an_input_error() {
        let err = mixture(Path::new("."), &["poetry".into()], 3).unwrap_err();
        assert!(err.to_string().contains("unknown prompt source"), "{err}");
    }

    #[test]
    fn bundled_datasets_interleave_round_robin() {
        let dir = datasets::bundled_dir();
        let sources: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
        let p = mixture(&dir, &sources, 5).expect("load");
        assert_eq!(p.len(), 20);
        let order: Vec<_> = p[..4].iter().map(|x| x.source.as_str()).collect();
        assert_eq!(order, SOURCES);
        assert!(p[2].id.starts_with("lcb/") && p[2].text.contains("Python program"));
    }
}
