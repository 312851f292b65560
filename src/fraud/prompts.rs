//! Prompts for fraud samples: GSM8K and MATH-500 problems, LiveCodeBench
//! questions, the project's multilingual prompts (short answers to long
//! essays, so outputs fill every length bin) and a user's own JSONL files
//! (one `{"prompt": …}` per line), interleaved round-robin.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::FraudError;
use crate::bench::datasets;

/// The project-written multilingual prompts (`datasets/fraud-prompts.jsonl`).
const MULTILINGUAL: &str = include_str!("../../datasets/fraud-prompts.jsonl");
const LCB_FILE: &str = "livecodebench/lcb_release_v1_public.jsonl";

/// The named sources, in interleaving order.
pub const SOURCES: &[&str] = &["gsm8k", "math500", "lcb", "multilingual"];
/// Prefix of the `source` of a prompt read from a user's file.
const FILE_SOURCE: &str = "file:";

/// One prompt of a fraud run: every setting's sample i answers prompt i.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prompt {
    /// `source/id`.
    pub id: String,
    /// Where it comes from: a named source (`gsm8k`, `lcb`, …) or `file:<stem>`.
    pub source: String,
    /// Language tag (`en` for the datasets; `und` when a user's file gives none).
    pub lang: String,
    /// The prompt text sent as the user message.
    pub text: String,
}

/// `count` distinct prompts from `sources`, interleaved: round-robin over
/// the sources, prompt i from source i mod |sources| while every source
/// has prompts left; a source that runs out drops out of the rotation
/// rather than repeating itself, and a prompt whose text was already taken
/// (a user's file may repeat one) is skipped. A prompt never appears twice,
/// so held-out folds cannot put one prompt on both sides.
pub fn mixture(
    data_dir: &Path,
    sources: &[String],
    count: usize,
) -> Result<Vec<Prompt>, FraudError> {
    let mut lists = sources
        .iter()
        .map(|s| load(s, data_dir, count).map(|p| p.into_iter()))
        .collect::<Result<Vec<_>, _>>()?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    let mut live = true;
    while out.len() < count && live {
        live = false;
        for list in &mut lists {
            if out.len() == count {
                break;
            }
            if let Some(p) = list.find(|p| seen.insert(p.text.clone())) {
                out.push(p);
                live = true;
            }
        }
    }
    if out.len() < count {
        return Err(FraudError::Input(format!(
            "the prompt sources {} hold {} distinct prompts, fewer than the {count} samples asked for; \
             lower --samples-honest/--samples-fraud or add a source (--prompts … FILE.jsonl)",
            sources.join(", "),
            out.len()
        )));
    }
    Ok(out)
}

/// How each source is recorded in a run's settings: a named source by its
/// name, a file by its path and the sha256 of its bytes, so that a resume
/// with an edited file is refused like any other change of settings.
pub fn describe(sources: &[String]) -> Result<Vec<String>, FraudError> {
    sources
        .iter()
        .map(|s| match is_file_source(s) {
            false => Ok(s.clone()),
            true => {
                let digest = crate::engine::registry::sha256_file(Path::new(s)).map_err(|e| {
                    FraudError::Input(format!(
                        "cannot read the prompt file: {e} (give a JSONL file of {{\"prompt\": …}} lines)"
                    ))
                })?;
                Ok(format!("{s} (sha256 {digest})"))
            }
        })
        .collect()
}

/// A source that is not one of [`SOURCES`] is a path to a JSONL file.
fn is_file_source(source: &str) -> bool {
    !SOURCES.contains(&source)
        && (source.ends_with(".jsonl") || source.contains('/') || Path::new(source).is_file())
}

fn read_error(path: &Path, e: &std::io::Error) -> FraudError {
    FraudError::Input(format!(
        "cannot read the prompt file {}: {e} (give a JSONL file of {{\"prompt\": …}} lines)",
        path.display()
    ))
}

fn load(source: &str, data_dir: &Path, n: usize) -> Result<Vec<Prompt>, FraudError> {
    let prompts = match source {
        file if is_file_source(file) => user_file(Path::new(file))?,
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
                "unknown prompt source `{other}` (known: {}; or a path to a JSONL file of {{\"prompt\": …}} lines)",
                SOURCES.join(", ")
            )))
        }
    };
    if prompts.is_empty() {
        return Err(FraudError::Input(format!(
            "prompt source `{source}` has no prompts"
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

/// One line of a user's prompt file: the prompt, and optionally an id
/// (default: the line number) and a language tag (default: `und`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserLine {
    prompt: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    lang: Option<String>,
}

/// The prompts of a user's JSONL file, in file order; blank lines are
/// skipped, a bad line is an error naming its number.
fn user_file(path: &Path) -> Result<Vec<Prompt>, FraudError> {
    let text = std::fs::read_to_string(path).map_err(|e| read_error(path, &e))?;
    let stem = path
        .file_stem()
        .map_or_else(|| "prompts".into(), |s| s.to_string_lossy().into_owned());
    let source = format!("{FILE_SOURCE}{stem}");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |why: String| {
            FraudError::Input(format!(
                "{}:{}: {why} (each line must be a JSON object like {{\"prompt\": \"…\"}}, optionally with \"id\" and \"lang\")",
                path.display(),
                i + 1
            ))
        };
        let l: UserLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        if l.prompt.trim().is_empty() {
            return Err(bad("the prompt is empty".into()));
        }
        let id = l.id.unwrap_or_else(|| (i + 1).to_string());
        out.push(Prompt {
            id: format!("{source}/{id}"),
            source: source.clone(),
            lang: l.lang.unwrap_or_else(|| "und".into()),
            text: l.prompt,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multilingual_prompts_cover_languages_and_lengths() {
        let p = multilingual().expect("parse");
        assert_eq!(p.len(), 60);
        let langs: std::collections::BTreeSet<_> = p.iter().map(|x| x.lang.as_str()).collect();
        assert_eq!(langs.len(), 12);
        for kind in ["short", "medium", "long", "short-2", "medium-2"] {
            assert_eq!(p.iter().filter(|x| x.id.ends_with(kind)).count(), 12);
        }
        let texts: std::collections::BTreeSet<_> = p.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(texts.len(), 60, "every multilingual prompt is distinct");
    }

    #[test]
    fn unknown_source_is_an_input_error() {
        let err = mixture(Path::new("."), &["poetry".into()], 3).unwrap_err();
        assert!(err.to_string().contains("unknown prompt source"), "{err}");
    }

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("nsed-prompts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn a_user_file_mixes_with_named_sources() {
        let path = write(
            "mine.jsonl",
            "{\"prompt\": \"Name three rivers.\"}\n\n{\"prompt\": \"Zähle bis fünf.\", \"id\": \"de-count\", \"lang\": \"de\"}\n",
        );
        let file = path.to_string_lossy().into_owned();
        let dir = datasets::bundled_dir();
        let p = mixture(&dir, &["gsm8k".into(), file.clone()], 6).expect("load");
        assert_eq!(p.len(), 6);
        assert_eq!(p[0].source, "gsm8k");
        assert_eq!(p[1].source, "file:mine");
        assert_eq!(p[1].id, "file:mine/1");
        assert_eq!(p[1].lang, "und");
        assert_eq!(p[3].id, "file:mine/de-count");
        assert_eq!(p[3].lang, "de");
        // Two prompts for three slots: the file drops out, it does not cycle.
        assert!(p[4..].iter().all(|x| x.source == "gsm8k"), "{p:?}");
        let d = describe(&["lcb".into(), file.clone()]).expect("describe");
        assert_eq!(d[0], "lcb");
        assert!(
            d[1].starts_with(&file) && d[1].contains("(sha256 "),
            "{}",
            d[1]
        );
        write("mine.jsonl", "{\"prompt\": \"Name four rivers.\"}\n");
        assert_ne!(
            describe(&[file]).expect("again")[0],
            d[1],
            "an edit changes the record"
        );
    }

    #[test]
    fn bad_user_files_are_input_errors_naming_the_line() {
        let cases = [
            (
                "bad-json.jsonl",
                "{\"prompt\": \"ok\"}\nnot json\n",
                "bad-json.jsonl:2",
            ),
            (
                "no-prompt.jsonl",
                "{\"text\": \"hi\"}\n",
                "no-prompt.jsonl:1",
            ),
            (
                "empty-prompt.jsonl",
                "{\"prompt\": \"  \"}\n",
                "the prompt is empty",
            ),
            ("blank.jsonl", "\n\n", "has no prompts"),
        ];
        for (name, text, expect) in cases {
            let path = write(name, text);
            let err = mixture(Path::new("."), &[path.to_string_lossy().into_owned()], 2)
                .expect_err(name)
                .to_string();
            assert!(err.contains(expect), "{name}: {err}");
        }
        let err = mixture(Path::new("."), &["no/such/file.jsonl".into()], 2)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("cannot read the prompt file"), "{err}");
    }

    #[test]
    fn bundled_datasets_interleave_round_robin() {
        let dir = datasets::bundled_dir();
        let sources: Vec<String> = SOURCES.iter().map(|s| s.to_string()).collect();
        let p = mixture(&dir, &sources, 20).expect("load");
        assert_eq!(p.len(), 20);
        let order: Vec<_> = p[..4].iter().map(|x| x.source.as_str()).collect();
        assert_eq!(order, SOURCES);
        assert!(p[2].id.starts_with("lcb/") && p[2].text.contains("Python program"));
    }

    #[test]
    fn a_source_that_runs_out_drops_out_instead_of_repeating() {
        let dir = datasets::bundled_dir();
        let sources = vec!["multilingual".to_string(), "gsm8k".to_string()];
        // 60 multilingual prompts: after 120 alternating, gsm8k goes on alone.
        let p = mixture(&dir, &sources, 150).expect("load");
        assert_eq!(p.len(), 150);
        let ids: std::collections::BTreeSet<_> = p.iter().map(|x| x.id.as_str()).collect();
        assert_eq!(ids.len(), 150, "no prompt twice");
        assert!(p[120..].iter().all(|x| x.source == "gsm8k"));
        // Negative control: more samples than distinct prompts is refused.
        let err = mixture(&dir, &["multilingual".into()], 61).unwrap_err();
        assert!(err.to_string().contains("60 distinct prompts"), "{err}");
    }

    #[test]
    fn a_file_repeating_a_prompt_gives_it_once() {
        let file = write(
            "repeats.jsonl",
            "{\"prompt\": \"same\"}\n{\"prompt\": \"other\"}\n{\"prompt\": \"same\"}\n",
        );
        let p = mixture(Path::new("."), &[file.to_string_lossy().into_owned()], 2).expect("load");
        let texts: Vec<_> = p.iter().map(|x| x.text.as_str()).collect();
        assert_eq!(texts, ["same", "other"]);
        let three = mixture(Path::new("."), &[file.to_string_lossy().into_owned()], 3);
        assert!(three.is_err(), "only two distinct prompts");
    }
}
