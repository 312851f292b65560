//! Code problems from the data directory: `lcb` (LiveCodeBench release_v1,
//! public tests; hidden tests decoded when a file has them), `humaneval`
//! (164) and `mbpp` (the test split, task ids 11-510).

use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CodeError;
use crate::bench::datasets::DatasetError;

/// One input/output test (LiveCodeBench).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IoTest {
    /// The input (stdin, or the arguments as JSON lines for functional problems).
    pub input: String,
    /// The expected output (stdout, or the return value as JSON for functional problems).
    pub output: String,
}

/// How a problem is checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Check {
    /// A program reading stdin; output compared line by line, then as decimals.
    Stdin {
        /// Tests models may see.
        public: Vec<IoTest>,
        /// Tests used only to grade; empty when the data has none.
        hidden: Vec<IoTest>,
    },
    /// LeetCode: `Solution().<func_name>(*json_inputs) == json_output`.
    Functional {
        /// The `Solution` method to call.
        func_name: String,
        /// Tests models may see.
        public: Vec<IoTest>,
        /// Tests used only to grade; empty when the data has none.
        hidden: Vec<IoTest>,
    },
    /// HumanEval: `prompt + completion`, then `test` and `check(entry_point)`.
    HumanEval {
        /// The test code, defining `check(candidate)`.
        test: String,
        /// The function the completion must define.
        entry_point: String,
    },
    /// MBPP: `test_setup_code`, the code, then each assert.
    Mbpp {
        /// `test_setup_code`, run before the code (often empty).
        setup: String,
        /// The `assert` lines, run after the code.
        asserts: Vec<String>,
    },
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// The problem's id: LCB's `question_id`, HumanEval's `task_id`, `mbpp/<task id>`.
    pub id: String,
    /// LCB: the question title; HumanEval: the entry point; MBPP: empty.
    pub title: String,
    /// The question (LCB), the function prompt (HumanEval), the task (MBPP).
    pub statement: String,
    /// LCB starter code (functional problems); empty otherwise.
    pub starter_code: String,
    /// Origin: LCB's platform (`atcoder`, `leetcode`, …), or `humaneval` / `mbpp`.
    pub platform: String,
    /// LCB: `easy`, `medium` or `hard`; empty for HumanEval and MBPP.
    pub difficulty: String,
    /// LCB: the contest's date; empty for HumanEval and MBPP.
    pub contest_date: String,
    /// One of LiveCodeBench's 17 known-bad problems (docs/reference.md §5).
    pub flawed: bool,
    /// How a program for it is graded.
    pub check: Check,
}

impl Problem {
    /// Public tests (what models may see), for LCB problems.
    pub fn public_tests(&self) -> &[IoTest] {
        match &self.check {
            Check::Stdin { public, .. } | Check::Functional { public, .. } => public,
            _ => &[],
        }
    }

    /// Hidden tests (never shown to a model); empty in the shared data.
    pub fn hidden_tests(&self) -> &[IoTest] {
        match &self.check {
            Check::Stdin { hidden, .. } | Check::Functional { hidden, .. } => hidden,
            _ => &[],
        }
    }

    /// The function a solution must define, where the set names one: LCB
    /// functional's method, HumanEval's entry point, and for MBPP the first
    /// function its first assert calls.
    pub fn callee(&self) -> Option<String> {
        match &self.check {
            Check::Functional { func_name, .. } => Some(func_name.clone()),
            Check::HumanEval { entry_point, .. } => Some(entry_point.clone()),
            Check::Mbpp { asserts, .. } => asserts.first().and_then(|a| mbpp_callee(a)),
            Check::Stdin { .. } => None,
        }
    }
}

/// The function an MBPP assert tests: the first name called that is not a
/// wrapper such as `set(...)` or `math.isclose(...)`; if every name is one
/// (task 126 defines its own `sum`), the first name called.
fn mbpp_callee(assert: &str) -> Option<String> {
    const WRAPPERS: [&str; 22] = [
        "set",
        "sorted",
        "isclose",
        "abs",
        "round",
        "list",
        "tuple",
        "str",
        "int",
        "float",
        "len",
        "frozenset",
        "dict",
        "bool",
        "all",
        "any",
        "type",
        "isinstance",
        "sum",
        "max",
        "min",
        "repr",
    ];
    let called = called_names(assert);
    called
        .iter()
        .find(|n| !WRAPPERS.contains(&n.as_str()))
        .or_else(|| called.first())
        .cloned()
}

/// Identifiers immediately followed by `(` (spaces allowed), in order;
/// attribute calls (`math.isclose`) give their last part.
fn called_names(code: &str) -> Vec<String> {
    static CALL: std::sync::OnceLock<Option<fancy_regex::Regex>> = std::sync::OnceLock::new();
    let Some(call) = CALL
        .get_or_init(|| fancy_regex::Regex::new(r"\b([A-Za-z_]\w*) *\(").ok())
        .as_ref()
    else {
        return Vec::new();
    };
    call.captures_iter(code)
        .filter_map(|c| c.ok()?.get(1).map(|m| m.as_str().to_string()))
        .filter(|name| name != "assert")
        .collect()
}

/// A loaded set, with the file's sha256 for provenance.
#[derive(Debug, Clone)]
pub struct CodeSet {
    /// The set's name: `lcb`, `humaneval` or `mbpp`.
    pub name: String,
    /// The JSON-lines file the set was read from.
    pub file: PathBuf,
    /// sha256 (hex) of the file.
    pub sha256: String,
    /// The problems kept, in file order (the filter applied; MBPP's few-shot examples apart).
    pub problems: Vec<Problem>,
    /// MBPP's few-shot examples (tasks 2, 3, 4); empty for other sets.
    pub fewshot: Vec<Problem>,
    /// Problems dropped by the filter as known-bad (LCB).
    pub excluded_flawed: usize,
}

/// LiveCodeBench's errata: multiple valid outputs, interactive, bad tests.
pub const LCB_FLAWED: [&str; 17] = [
    "abc311_c",
    "abc326_d",
    "abc327_b",
    "abc333_e",
    "abc343_e",
    "abc362_c",
    "abc343_a",
    "arc185_c",
    "find-words-containing-character",
    "find-the-peaks",
    "generate-binary-strings-without-adjacent-zeros",
    "abc337_e",
    "abc355_e",
    "abc350_c",
    "apply-operations-to-make-string-empty",
    "most-frequent-ids",
    "arc189_a",
];

/// Which LCB problems to keep.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LcbFilter {
    /// Keep problems with `contest_date` ≥ this (ISO date prefix).
    pub since: Option<String>,
    /// Keep problems with `contest_date` < this.
    pub until: Option<String>,
    /// Keep only these platforms (atcoder, leetcode, codeforces); empty = all.
    pub platforms: Vec<String>,
    /// Keep only these difficulties (easy, medium, hard); empty = all.
    pub difficulties: Vec<String>,
    /// Keep the known-bad problems (flagged) instead of dropping them.
    pub keep_flawed: bool,
}

impl LcbFilter {
    fn keeps(&self, p: &Problem) -> bool {
        let date = p.contest_date.as_str();
        self.since.as_deref().is_none_or(|s| date >= s)
            && self.until.as_deref().is_none_or(|u| date < u)
            && (self.platforms.is_empty() || self.platforms.contains(&p.platform))
            && (self.difficulties.is_empty() || self.difficulties.contains(&p.difficulty))
    }
}

/// The set names `nsed bench` accepts for code.
pub const NAMES: [&str; 3] = ["lcb", "humaneval", "mbpp"];

/// The default answer budget of a code set (a program plus some reasoning).
pub fn default_max_tokens(name: &str) -> Option<usize> {
    match name {
        "lcb" => Some(1024),
        "humaneval" | "mbpp" => Some(768),
        _ => None,
    }
}

/// The file of a code set, relative to the data directory.
pub fn file_of(name: &str) -> Option<&'static str> {
    match name {
        "lcb" => Some("livecodebench/lcb_release_v1_public.jsonl"),
        "humaneval" => Some("humaneval/HumanEval.jsonl"),
        "mbpp" => Some("mbpp/mbpp.jsonl"),
        _ => None,
    }
}

/// Load a code set from the data directory.
pub fn load(name: &str, dir: &Path, filter: &LcbFilter) -> Result<CodeSet, CodeError> {
    let file = file_of(name).ok_or_else(|| CodeError::Unknown(name.to_string()))?;
    let path = dir.join(file);
    let (records, sha256) = crate::bench::datasets::read_jsonl(&path)?;
    let parsed = records
        .iter()
        .map(|(line, v)| {
            let problem = match name {
                "lcb" => parse_lcb(v),
                "humaneval" => parse_humaneval(v),
                _ => parse_mbpp(v),
            };
            problem.map_err(|message| DatasetError::Record {
                path: path.clone(),
                line: *line,
                message,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut set = CodeSet {
        name: name.to_string(),
        file: path,
        sha256,
        problems: Vec::new(),
        fewshot: Vec::new(),
        excluded_flawed: 0,
    };
    for p in parsed {
        match name {
            "lcb" if !filter.keeps(&p) => {}
            "lcb" if p.flawed && !filter.keep_flawed => set.excluded_flawed += 1,
            "mbpp" => match mbpp_task(&p) {
                2..=4 => set.fewshot.push(p),
                11..=510 => set.problems.push(p),
                _ => {}
            },
            _ => set.problems.push(p),
        }
    }
    Ok(set)
}

fn text(v: &Value, key: &str) -> Result<String, String> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(format!("field `{key}` is not a string")),
        None => Err(format!("missing field `{key}`")),
    }
}

fn parse_lcb(v: &Value) -> Result<Problem, String> {
    let id = text(v, "question_id")?;
    let public = io_tests(&text(v, "public_test_cases")?)
        .map_err(|e| format!("{id}: public_test_cases: {e}"))?;
    let hidden = match v.get("private_test_cases").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => {
            decode_private_tests(s).map_err(|e| format!("{id}: private_test_cases: {e}"))?
        }
        _ => Vec::new(),
    };
    let metadata: Value =
        serde_json::from_str(&text(v, "metadata")?).map_err(|e| format!("{id}: metadata: {e}"))?;
    let check = match metadata.get("func_name").and_then(Value::as_str) {
        Some(func_name) => Check::Functional {
            func_name: func_name.to_string(),
            public,
            hidden,
        },
        None => Check::Stdin { public, hidden },
    };
    Ok(Problem {
        flawed: LCB_FLAWED.contains(&id.as_str()),
        title: text(v, "question_title")?,
        statement: text(v, "question_content")?,
        starter_code: text(v, "starter_code")?,
        platform: text(v, "platform")?,
        difficulty: text(v, "difficulty")?,
        contest_date: text(v, "contest_date")?,
        check,
        id,
    })
}

/// A JSON list of `{input, output, testtype}`.
fn io_tests(json: &str) -> Result<Vec<IoTest>, String> {
    #[derive(Deserialize)]
    struct Raw {
        input: String,
        output: String,
    }
    let raw: Vec<Raw> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(raw
        .into_iter()
        .map(|r| IoTest {
            input: r.input,
            output: r.output,
        })
        .collect())
}

/// LiveCodeBench's hidden tests: plain JSON, or base64(zlib(pickle(str)))
/// of a JSON list, as `lcb_runner` decodes them.
pub fn decode_private_tests(s: &str) -> Result<Vec<IoTest>, CodeError> {
    if let Ok(tests) = io_tests(s) {
        return Ok(tests);
    }
    let err = |what: &str, e: String| CodeError::PrivateTests(format!("{what}: {e}"));
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| err("base64", e.to_string()))?;
    let mut pickled = Vec::new();
    flate2::read::ZlibDecoder::new(compressed.as_slice())
        .read_to_end(&mut pickled)
        .map_err(|e| err("zlib", e.to_string()))?;
    let json: String = serde_pickle::from_slice(&pickled, serde_pickle::DeOptions::new())
        .map_err(|e| err("pickle", e.to_string()))?;
    io_tests(&json).map_err(|e| err("json", e))
}

fn parse_humaneval(v: &Value) -> Result<Problem, String> {
    let prompt = text(v, "prompt")?;
    Ok(Problem {
        id: text(v, "task_id")?,
        title: text(v, "entry_point")?,
        statement: prompt,
        starter_code: String::new(),
        platform: "humaneval".into(),
        difficulty: String::new(),
        contest_date: String::new(),
        flawed: false,
        check: Check::HumanEval {
            test: text(v, "test")?,
            entry_point: text(v, "entry_point")?,
        },
    })
}

fn parse_mbpp(v: &Value) -> Result<Problem, String> {
    let asserts = v
        .get("test_list")
        .and_then(Value::as_array)
        .ok_or("missing list `test_list`")?
        .iter()
        .map(|a| {
            a.as_str()
                .map(str::to_string)
                .ok_or("a test is not a string")
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Problem {
        id: format!("mbpp/{}", text(v, "task_id")?),
        title: String::new(),
        statement: text(v, "text")?,
        // MBPP's reference solution: used only for the few-shot examples.
        starter_code: text(v, "code")?,
        platform: "mbpp".into(),
        difficulty: String::new(),
        contest_date: String::new(),
        flawed: false,
        check: Check::Mbpp {
            setup: text(v, "test_setup_code")?,
            asserts,
        },
    })
}

fn mbpp_task(p: &Problem) -> u32 {
    p.id.strip_prefix("mbpp/")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn data_dir() -> PathBuf {
        crate::bench::datasets::bundled_dir()
    }

    #[test]
    fn lcb_release_v1_counts_match_its_provenance() {
        let dir = data_dir();
        let all = load(
            "lcb",
            &dir,
            &LcbFilter {
                keep_flawed: true,
                ..LcbFilter::default()
            },
        )
        .expect("lcb");
        assert_eq!(all.problems.len(), 400);
        let functional = all
            .problems
            .iter()
            .filter(|p| matches!(p.check, Check::Functional { .. }))
            .count();
        assert_eq!(functional, 181);
        let tests: usize = all.problems.iter().map(|p| p.public_tests().len()).sum();
        assert!((2.5..2.7).contains(&(tests as f64 / 400.0)), "{tests}");
        assert!(all.problems.iter().all(|p| p.hidden_tests().is_empty()));
        let flawed = all.problems.iter().filter(|p| p.flawed).count();
        let clean = load("lcb", &dir, &LcbFilter::default()).expect("lcb");
        assert_eq!(clean.problems.len() + flawed, 400);
        assert_eq!(clean.excluded_flawed, flawed);
        let easy_leetcode = load(
            "lcb",
            &dir,
            &LcbFilter {
                platforms: vec!["leetcode".into()],
                difficulties: vec!["easy".into()],
                since: Some("2023-09-01".into()),
                ..LcbFilter::default()
            },
        )
        .expect("lcb");
        assert!(!easy_leetcode.problems.is_empty());
        assert!(easy_leetcode
            .problems
            .iter()
            .all(|p| p.platform == "leetcode"
                && p.difficulty == "easy"
                && p.contest_date.as_str() >= "2023-09-01"));
    }

    #[test]
    fn humaneval_and_mbpp_splits() {
        let dir = data_dir();
        let he = load("humaneval", &dir, &LcbFilter::default()).expect("humaneval");
        assert_eq!(he.problems.len(), 164);
        assert_eq!(he.problems[0].id, "HumanEval/0");
        let mbpp = load("mbpp", &dir, &LcbFilter::default()).expect("mbpp");
        assert_eq!(mbpp.problems.len(), 500);
        assert_eq!(mbpp.problems[0].id, "mbpp/11");
        assert_eq!(mbpp.problems[499].id, "mbpp/510");
        let shots: Vec<&str> = mbpp.fewshot.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(shots, ["mbpp/2", "mbpp/3", "mbpp/4"]);
    }

    #[test]
    fn mbpp_callee_skips_wrappers_but_not_a_task_own_sum() {
        let callee = |a: &str| mbpp_callee(a);
        assert_eq!(
            callee("assert set(similar_elements((3, 4), (5, 4))) == set((4,))").as_deref(),
            Some("similar_elements")
        );
        assert_eq!(
            callee("assert math.isclose(area_tetrahedron(3), 15.58, rel_tol=0.001)").as_deref(),
            Some("area_tetrahedron")
        );
        assert_eq!(callee("assert sum(10,15) == 6").as_deref(), Some("sum"));
        assert_eq!(callee("assert x == 1"), None);
    }

    #[test]
    fn every_mbpp_callee_is_defined_by_the_reference_program() {
        let dir = data_dir();
        let mbpp = load("mbpp", &dir, &LcbFilter::default()).expect("mbpp");
        let (records, _) =
            crate::bench::datasets::read_jsonl(&dir.join("mbpp/mbpp.jsonl")).expect("read");
        let reference: HashMap<String, String> = records
            .iter()
            .filter_map(|(_, r)| {
                Some((
                    format!("mbpp/{}", r.get("task_id")?.as_u64()?),
                    r.get("code")?.as_str()?.to_string(),
                ))
            })
            .collect();
        for p in &mbpp.problems {
            let name = p.callee().unwrap_or_default();
            let code = &reference[&p.id];
            assert!(
                !name.is_empty() && code.contains(&format!("def {name}")),
                "{}: {name:?}",
                p.id
            );
        }
    }

    #[test]
    fn private_tests_decode_from_base64_zlib_pickle() {
        // Encoded by real Python the way the official dataset is.
        let script = "import base64, json, pickle, zlib\n\
            s = json.dumps([{'input': '1 2\\n', 'output': '3\\n', 'testtype': 'stdin'}])\n\
            print(base64.b64encode(zlib.compress(pickle.dumps(s))).decode())";
        let out = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
            .expect("python3");
        let encoded = String::from_utf8(out.stdout).expect("utf-8");
        let tests = decode_private_tests(encoded.trim()).expect("decoded");
        assert_eq!(
            tests,
            [IoTest {
                input: "1 2\n".into(),
                output: "3\n".into()
            }]
        );
        let plain = r#"[{"input": "x", "output": "y", "testtype": "stdin"}]"#;
        assert_eq!(decode_private_tests(plain).expect("plain").len(), 1);
        assert!(decode_private_tests("not base64 !!").is_err());
    }

    #[test]
    fn unknown_set_is_a_clear_error() {
        let e = load("lcb2", Path::new("/nonexistent"), &LcbFilter::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown code set `lcb2`"), "{e}");
    }
}
