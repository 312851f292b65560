//! Grading programs in the sandbox with the official rules (docs/reference.md §5).
//!
//! LiveCodeBench: stdin programs run once per test with the test's input
//! (LCB's import preamble prepended, `SystemExit` swallowed, as `lcb_runner`
//! does) and their output is compared in Rust exactly as `grade_stdio` does;
//! functional problems run in one process that calls
//! `Solution().<fn>(*json_inputs)` per test under a per-test alarm and
//! compares with `==` in Python after tuple → list, as `grade_call_based`
//! does. Both stop at the first failure and use LCB's result codes.
//! HumanEval and MBPP run their check program; passed iff it completes
//! (MBPP: code, then `test_setup_code`, then the asserts).
//!
//! Results are reported on a duplicate of stdout, tagged with a nonce the
//! program reads from stdin before the solution runs, so a solution cannot
//! print its way to a pass by accident.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::decimal;
use super::problems::{Check, IoTest, Problem};
use crate::sandbox::{Execution, Job, Sandbox, SandboxError, Status};

/// `lcb_runner`'s preamble: what a solution may use without importing.
pub const LCB_IMPORTS: &str = "from string import *\nfrom re import *\nfrom datetime import *\nfrom collections import *\nfrom heapq import *\nfrom bisect import *\nfrom copy import *\nfrom math import *\nfrom random import *\nfrom statistics import *\nfrom itertools import *\nfrom functools import *\nfrom operator import *\nfrom io import *\nfrom sys import *\nfrom json import *\nfrom builtins import *\nfrom typing import *\nimport string\nimport re\nimport datetime\nimport collections\nimport heapq\nimport bisect\nimport copy\nimport math\nimport random\nimport statistics\nimport itertools\nimport functools\nimport operator\nimport io\nimport sys\nimport json\nsys.setrecursionlimit(50000)\n";

/// Wall limits of the official harnesses: LiveCodeBench's, per test case.
pub const LCB_TIMEOUT: Duration = Duration::from_secs(6);
/// HumanEval's wall limit for the whole check program.
pub const HUMANEVAL_TIMEOUT: Duration = Duration::from_secs(3);
/// MBPP's wall limit for the whole check program.
pub const MBPP_TIMEOUT: Duration = Duration::from_secs(10);
/// Per probe call (HumanEval, MBPP): probes only sort programs into
/// behaviour classes, and a model-written call that runs longer than this is
/// almost always a hang.
pub const PROBE_CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// LiveCodeBench's per-test result codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TestCode {
    /// 1: the test passes.
    Pass,
    /// -1: the whole run exceeded its global limit.
    GlobalTimeout,
    /// -2
    WrongAnswer,
    /// -3
    TimeLimit,
    /// -4: exception, crash, compile error, too much output, leftovers.
    RuntimeError,
}

impl TestCode {
    /// The number `lcb_runner` records (`true` is 1 here).
    pub fn lcb(self) -> i8 {
        match self {
            TestCode::Pass => 1,
            TestCode::GlobalTimeout => -1,
            TestCode::WrongAnswer => -2,
            TestCode::TimeLimit => -3,
            TestCode::RuntimeError => -4,
        }
    }

    fn from_lcb(code: i64) -> TestCode {
        match code {
            1 => TestCode::Pass,
            -1 => TestCode::GlobalTimeout,
            -2 => TestCode::WrongAnswer,
            -3 => TestCode::TimeLimit,
            _ => TestCode::RuntimeError,
        }
    }
}

/// Which tests of an LCB problem to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tests {
    /// What a model may see (deliberation evidence).
    Public,
    /// Public then hidden: the score.
    All,
}

/// The first failing test, with what is needed to show it to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The failing test's index among the tests run, from 0.
    pub index: usize,
    /// The test's LCB result code.
    pub code: TestCode,
    /// The test's input, truncated (empty for HumanEval and MBPP).
    pub input: String,
    /// The expected output, truncated (empty for HumanEval and MBPP).
    pub expected: String,
    /// What the program printed or returned, truncated.
    pub output: String,
    /// What went wrong (`Wrong Answer`, the exception, the timeout).
    pub error: String,
}

/// The grade of one program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether every test passes.
    pub passed: bool,
    /// LCB codes of the tests run, in order, up to the first failure.
    pub results: Vec<i8>,
    /// Tests the program is graded on (1 for HumanEval and MBPP's check program).
    pub tests_total: usize,
    /// The first failing test; `None` when the program passes.
    pub failure: Option<Outcome>,
    /// Sandbox wall time of the program's runs, summed, milliseconds.
    pub wall_ms: u64,
}

/// Grade `code` (already extracted from the answer) on `problem`.
pub fn grade(
    sandbox: &Sandbox,
    problem: &Problem,
    code: &str,
    tests: Tests,
) -> Result<Verdict, SandboxError> {
    let chosen = |public: &[IoTest], hidden: &[IoTest]| -> Vec<IoTest> {
        match tests {
            Tests::Public => public.to_vec(),
            Tests::All => public.iter().chain(hidden).cloned().collect(),
        }
    };
    match &problem.check {
        Check::Stdin { public, hidden } => grade_stdin(sandbox, code, &chosen(public, hidden)),
        Check::Functional {
            func_name,
            public,
            hidden,
        } => grade_functional(sandbox, code, func_name, &chosen(public, hidden)),
        Check::HumanEval { test, entry_point } => {
            let program = format!("{}{code}\n{test}\ncheck({entry_point})", problem.statement);
            grade_script(sandbox, &program, HUMANEVAL_TIMEOUT)
        }
        Check::Mbpp { setup, asserts } => {
            // The only tasks with setup code (367, 927) build trees from the
            // `Node` class the solution defines: setup must follow the code
            // (setup first, as docs/reference.md §5 words it, fails the reference too).
            let program = format!("{code}\n{setup}\n{}", asserts.join("\n"));
            grade_script(sandbox, &program, MBPP_TIMEOUT)
        }
    }
}

fn truncate(s: &str) -> String {
    // lcb_runner's truncatefn: head and tail of long values.
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= 300 {
        return s.to_string();
    }
    let head: String = chars[..150].iter().collect();
    let tail: String = chars[chars.len() - 150..].iter().collect();
    format!("{head}...(truncated) ...{tail}")
}

fn nonce() -> String {
    use sha2::Digest;
    let seed = format!(
        "{:?}{}{:?}",
        std::time::SystemTime::now(),
        std::process::id(),
        std::thread::current().id()
    );
    crate::engine::digest::hex(&sha2::Sha256::digest(seed.as_bytes()))[..24].to_string()
}

/// A JSON string literal is a valid Python string literal.
fn py_literal(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// The stdin program: preamble, then the solution at module level with
/// `SystemExit` swallowed (as `call_method` does).
fn stdin_program(code: &str) -> String {
    format!(
        "{LCB_IMPORTS}\n_nsed_code = {}\ntry:\n    exec(compile(_nsed_code, 'solution.py', 'exec'), globals())\nexcept SystemExit:\n    pass\n",
        py_literal(code)
    )
}

/// How a sandboxed run failed before any comparison, if it did.
fn run_failure(run: &Execution) -> Option<(TestCode, String)> {
    let stderr = run.stderr_text();
    let tail: String = stderr
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<Vec<_>>()
        .join("\n");
    match &run.status {
        Status::Timeout | Status::Signaled { signal: 9 | 24 } => {
            Some((TestCode::TimeLimit, "Time Limit Exceeded".into()))
        }
        Status::OutputLimit => Some((TestCode::RuntimeError, "output limit exceeded".into())),
        Status::Signaled { signal } => {
            Some((TestCode::RuntimeError, format!("killed by signal {signal}")))
        }
        Status::Exited { code } if *code != 0 => Some((TestCode::RuntimeError, truncate(&tail))),
        Status::Exited { .. } if run.leftovers_killed > 0 => Some((
            TestCode::RuntimeError,
            format!("left {} process(es) running", run.leftovers_killed),
        )),
        Status::Exited { .. } => None,
    }
}

/// Tests run in batches of as many as there are cores, in order; the
/// first failure ends the grade after its batch (so a slow failing program
/// costs at most one batch of time limits).
fn grade_stdin(sandbox: &Sandbox, code: &str, tests: &[IoTest]) -> Result<Verdict, SandboxError> {
    let program = stdin_program(code);
    let mut verdict = Verdict {
        passed: false,
        results: Vec::new(),
        tests_total: tests.len(),
        failure: None,
        wall_ms: 0,
    };
    let cores = crate::sandbox::cores();
    for (batch_no, batch) in tests.chunks(cores).enumerate() {
        let jobs: Vec<Job> = batch
            .iter()
            .map(|test| Job {
                program: program.clone(),
                stdin: test.input.as_bytes().to_vec(),
                wall: LCB_TIMEOUT,
            })
            .collect();
        let runs = sandbox.run_all(&jobs, cores, |_, _| {});
        for (offset, (test, run)) in batch.iter().zip(runs).enumerate() {
            let run = run?;
            verdict.wall_ms += run.wall.as_millis() as u64;
            let output = run.stdout_text();
            let failed = run_failure(&run).or_else(|| {
                (!stdout_matches(&output, &test.output))
                    .then(|| (TestCode::WrongAnswer, "Wrong Answer".to_string()))
            });
            let Some((code, error)) = failed else {
                verdict.results.push(TestCode::Pass.lcb());
                continue;
            };
            verdict.results.push(code.lcb());
            verdict.failure = Some(Outcome {
                index: batch_no * cores + offset,
                code,
                input: truncate(&test.input),
                expected: truncate(&test.output),
                output: truncate(&output),
                error,
            });
            return Ok(verdict);
        }
    }
    verdict.passed = true;
    Ok(verdict)
}

/// `grade_stdio`'s comparison: stripped lines, equal counts, then per line
/// exact equality or else equal decimal token lists.
pub fn stdout_matches(prediction: &str, expected: &str) -> bool {
    let (p, e) = (stripped_lines(prediction), stripped_lines(expected));
    p.len() == e.len()
        && p.iter()
            .zip(&e)
            .all(|(a, b)| a == b || decimal::lines_equal(a, b) == Some(true))
}

/// `get_stripped_lines`: the text stripped, split on newlines, each stripped.
fn stripped_lines(text: &str) -> Vec<&str> {
    text.trim().split('\n').map(str::trim).collect()
}

/// The functional harness: a fixed program; the job comes on stdin.
const FUNCTIONAL_HARNESS: &str = r#"import json as _nsed_json, os as _nsed_os, signal as _nsed_signal, sys as _nsed_sys, types as _nsed_types
_nsed_job = _nsed_json.loads(_nsed_sys.stdin.read())
_nsed_fd = _nsed_os.dup(1)
def _nsed_report(index, code, detail=""):
    line = _nsed_job["nonce"] + " " + _nsed_json.dumps({"i": index, "code": code, "detail": detail[:600]}) + "\n"
    _nsed_os.write(_nsed_fd, line.encode())
class TimeoutException(Exception):
    pass
def _nsed_alarm(signum, frame):
    raise TimeoutException
_nsed_signal.signal(_nsed_signal.SIGALRM, _nsed_alarm)
_nsed_timeout = _nsed_job["timeout"]
try:
    _nsed_signal.alarm(_nsed_timeout)
    _nsed_module = _nsed_types.ModuleType("tmp_sol", "")
    exec(_nsed_job["imports"] + "\n\n" + _nsed_job["code"], _nsed_module.__dict__)
    _nsed_sol = _nsed_module.Solution() if "class Solution" in _nsed_job["code"] else _nsed_module
    _nsed_signal.alarm(0)
    _nsed_method = getattr(_nsed_sol, _nsed_job["fn"])
    _nsed_inputs = [[_nsed_json.loads(l) for l in i.split("\n")] for i in _nsed_job["inputs"]]
    _nsed_outputs = [_nsed_json.loads(o) for o in _nsed_job["outputs"]]
except BaseException as e:
    _nsed_signal.alarm(0)
    _nsed_report(0, -4, "Error during testing: " + repr(e))
    _nsed_os._exit(0)
for _nsed_i, (_nsed_in, _nsed_expected) in enumerate(zip(_nsed_inputs, _nsed_outputs)):
    _nsed_signal.alarm(_nsed_timeout)
    try:
        _nsed_got = _nsed_method(*_nsed_in)
        _nsed_signal.alarm(0)
        if isinstance(_nsed_got, tuple):
            _nsed_got = list(_nsed_got)
        _nsed_ok = _nsed_got == _nsed_expected
    except Exception as e:
        _nsed_signal.alarm(0)
        _nsed_report(_nsed_i, -3 if "timeoutexception" in repr(e).lower() else -4, repr(e))
        if _nsed_job.get("probe"):
            continue
        break
    finally:
        _nsed_signal.alarm(0)
    if not _nsed_ok:
        _nsed_report(_nsed_i, -2, repr(_nsed_got))
        if not _nsed_job.get("probe"):
            break
        continue
    _nsed_report(_nsed_i, 1)
_nsed_os._exit(0)
"#;

fn grade_functional(
    sandbox: &Sandbox,
    code: &str,
    func_name: &str,
    tests: &[IoTest],
) -> Result<Verdict, SandboxError> {
    let (run, reports) = run_functional(sandbox, code, func_name, tests, false)?;
    let mut verdict = Verdict {
        passed: false,
        results: Vec::new(),
        tests_total: tests.len(),
        failure: None,
        wall_ms: run.wall.as_millis() as u64,
    };
    for (index, code, detail) in &reports {
        verdict.results.push(code.lcb());
        if *code != TestCode::Pass {
            verdict.failure = Some(functional_failure(tests, *index, *code, detail));
            return Ok(verdict);
        }
    }
    if reports.len() == tests.len() && run_failure(&run).is_none() {
        verdict.passed = true;
        return Ok(verdict);
    }
    // The harness died or was killed before reporting every test.
    let (code, error) = match run_failure(&run) {
        Some((TestCode::TimeLimit, _)) => (TestCode::GlobalTimeout, "global timeout".to_string()),
        Some(failure) => failure,
        None => (
            TestCode::RuntimeError,
            "the program ended the harness".to_string(),
        ),
    };
    verdict.results.push(code.lcb());
    verdict.failure = Some(functional_failure(tests, reports.len(), code, &error));
    Ok(verdict)
}

fn functional_failure(tests: &[IoTest], index: usize, code: TestCode, detail: &str) -> Outcome {
    let test = tests.get(index);
    let (output, error) = match code {
        TestCode::WrongAnswer => (detail.to_string(), "Wrong Answer".to_string()),
        _ => (String::new(), detail.to_string()),
    };
    Outcome {
        index,
        code,
        input: test.map(|t| truncate(&t.input)).unwrap_or_default(),
        expected: test.map(|t| truncate(&t.output)).unwrap_or_default(),
        output: truncate(&output),
        error: truncate(&error),
    }
}

/// One harness report: test index, result code, detail (repr or error).
type Report = (usize, TestCode, String);

/// Run the functional harness; `probe` runs every test whatever fails.
fn run_functional(
    sandbox: &Sandbox,
    code: &str,
    func_name: &str,
    tests: &[IoTest],
    probe: bool,
) -> Result<(Execution, Vec<Report>), SandboxError> {
    let nonce = nonce();
    let payload = json!({
        "nonce": nonce,
        "imports": LCB_IMPORTS,
        "code": code,
        "fn": func_name,
        "timeout": LCB_TIMEOUT.as_secs(),
        "probe": probe,
        "inputs": tests.iter().map(|t| &t.input).collect::<Vec<_>>(),
        "outputs": tests.iter().map(|t| &t.output).collect::<Vec<_>>(),
    });
    // lcb_runner's global limit: (timeout + 1) per test, plus 5 s.
    let global =
        (LCB_TIMEOUT + Duration::from_secs(1)) * tests.len() as u32 + Duration::from_secs(5);
    let run = sandbox.run(&Job {
        program: FUNCTIONAL_HARNESS.to_string(),
        stdin: payload.to_string().into_bytes(),
        wall: global,
    })?;
    let reports = tagged_reports(&run.stdout_text(), &nonce);
    Ok((run, reports))
}

/// What a program outputs on inputs that have no expected output (probes
/// written by a model), one entry each: the stripped output, the returned
/// value's repr, or `<error>`/`<time limit>`; for grouping programs that
/// behave the same. LCB stdin probes are input texts, LCB functional probes
/// JSON argument lines, HumanEval and MBPP probes call expressions.
pub fn probe_outputs(
    sandbox: &Sandbox,
    problem: &Problem,
    code: &str,
    inputs: &[String],
) -> Result<Vec<String>, SandboxError> {
    let failure_label = |code: TestCode| match code {
        TestCode::TimeLimit | TestCode::GlobalTimeout => "<time limit>".to_string(),
        _ => "<error>".to_string(),
    };
    match &problem.check {
        Check::Stdin { .. } => {
            let program = stdin_program(code);
            let jobs: Vec<Job> = inputs
                .iter()
                .map(|input| Job {
                    program: program.clone(),
                    stdin: input.as_bytes().to_vec(),
                    wall: LCB_TIMEOUT,
                })
                .collect();
            let cores = crate::sandbox::cores();
            sandbox
                .run_all(&jobs, cores, |_, _| {})
                .into_iter()
                .map(|run| {
                    let run = run?;
                    Ok(match run_failure(&run) {
                        Some((code, _)) => failure_label(code),
                        None => stripped_lines(&run.stdout_text()).join("\n"),
                    })
                })
                .collect()
        }
        Check::Functional { func_name, .. } => {
            // An expected value no program returns: every probe reports
            // "wrong answer" with the repr of what it returned.
            let tests: Vec<IoTest> = inputs
                .iter()
                .map(|input| IoTest {
                    input: input.clone(),
                    output: "\"__nsed_probe__\"".into(),
                })
                .collect();
            let (_, reports) = run_functional(sandbox, code, func_name, &tests, true)?;
            Ok((0..inputs.len())
                .map(|i| match reports.iter().find(|(index, _, _)| *index == i) {
                    Some((_, TestCode::WrongAnswer, got)) => got.clone(),
                    Some((_, code, _)) => failure_label(*code),
                    None => "<error>".to_string(),
                })
                .collect())
        }
        Check::HumanEval { .. } => {
            call_outputs(sandbox, &format!("{}{code}", problem.statement), inputs)
        }
        Check::Mbpp { setup, .. } => call_outputs(sandbox, &format!("{code}\n{setup}"), inputs),
    }
}

/// What each call expression (`f(1, [2])`, written by a model) evaluates to
/// after `program` runs: a canonical repr (sets and dicts sorted, so string
/// hashing does not split equal values), `<error: Type>`, or `<time limit>`
/// (`PROBE_CALL_TIMEOUT` each, by alarm; a run killed by the wall clock
/// leaves the rest `<time limit>`). `<error>` for all when the program itself
/// fails.
fn call_outputs(
    sandbox: &Sandbox,
    program: &str,
    calls: &[String],
) -> Result<Vec<String>, SandboxError> {
    let per_call = PROBE_CALL_TIMEOUT;
    let nonce = nonce();
    let calls_literal = serde_json::to_string(calls).unwrap_or_else(|_| "[]".into());
    let harness = format!(
        "import os as _os, sys as _sys, signal as _signal
_nonce = _sys.stdin.readline().strip()
_fd = _os.dup(1)
def _report(i, s):
    _os.write(_fd, ('\\n%s %d %s\\n' % (_nonce, i, s.replace('\\n', ' '))).encode())
def _canon(v, depth=0):
    if depth > 20:
        return '...'
    if isinstance(v, (set, frozenset)):
        return '{{' + ', '.join(sorted(_canon(x, depth + 1) for x in v)) + '}}'
    if isinstance(v, dict):
        return '{{' + ', '.join(sorted(_canon(k, depth + 1) + ': ' + _canon(x, depth + 1) for k, x in v.items())) + '}}'
    if isinstance(v, (list, tuple)):
        inner = ', '.join(_canon(x, depth + 1) for x in v)
        return '[' + inner + ']' if isinstance(v, list) else '(' + inner + ')'
    return repr(v)
class _Alarm(BaseException):
    pass
def _ring(signum, frame):
    raise _Alarm()
_g = {{}}
try:
    exec(compile({program}, 'solution.py', 'exec'), _g)
except BaseException:
    _os._exit(1)
_signal.signal(_signal.SIGALRM, _ring)
for _i, _call in enumerate({calls_literal}):
    _signal.alarm({secs})
    try:
        _out = _canon(eval(_call, _g))[:300]
    except _Alarm:
        _out = '<time limit>'
    except BaseException as _e:
        _out = '<error: %s>' % type(_e).__name__
    finally:
        _signal.alarm(0)
    _report(_i, _out)
",
        program = py_literal(program),
        secs = per_call.as_secs().max(1),
    );
    let run = sandbox.run(&Job {
        program: harness,
        stdin: format!("{nonce}\n").into_bytes(),
        wall: per_call * (calls.len() as u32 + 1),
    })?;
    if matches!(run.status, Status::Exited { code } if code != 0) {
        return Ok(vec!["<error>".to_string(); calls.len()]);
    }
    let stdout = run.stdout_text();
    let prefix = format!("{nonce} ");
    let mut outputs = vec!["<time limit>".to_string(); calls.len()];
    for line in stdout.lines().filter_map(|l| l.strip_prefix(&prefix)) {
        let Some((index, value)) = line.split_once(' ') else {
            continue;
        };
        if let Some(slot) = index.parse::<usize>().ok().and_then(|i| outputs.get_mut(i)) {
            *slot = value.to_string();
        }
    }
    Ok(outputs)
}

/// `(index, code, detail)` of each line that carries the nonce.
fn tagged_reports(stdout: &str, nonce: &str) -> Vec<Report> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(nonce)?.strip_prefix(' '))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter_map(|v| {
            Some((
                v["i"].as_u64()? as usize,
                TestCode::from_lcb(v["code"].as_i64()?),
                v["detail"].as_str().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// Public evidence for HumanEval/MBPP: `program` followed by a `driver`
/// that raises at the first failing example, naming it.
pub fn grade_public_script(
    sandbox: &Sandbox,
    program: &str,
    driver: &str,
    wall: Duration,
) -> Result<Verdict, SandboxError> {
    grade_script(sandbox, &format!("{program}\n{driver}"), wall)
}

/// HumanEval/MBPP: run the check program in a fresh global namespace (as
/// `exec(program, {})` does); passed iff it completes without exception.
fn grade_script(sandbox: &Sandbox, program: &str, wall: Duration) -> Result<Verdict, SandboxError> {
    let nonce = nonce();
    let harness = format!(
        "import os as _nsed_os, sys as _nsed_sys\n_nsed_nonce = _nsed_sys.stdin.readline().strip()\n_nsed_fd = _nsed_os.dup(1)\ntry:\n    exec(compile({}, 'solution.py', 'exec'), {{}})\nexcept BaseException as e:\n    _nsed_sys.stderr.write('failed: ' + repr(e)[:600] + '\\n')\n    _nsed_sys.stderr.flush()\n    _nsed_os._exit(1)\n_nsed_os.write(_nsed_fd, (_nsed_nonce + ' passed\\n').encode())\n",
        py_literal(program)
    );
    let run = sandbox.run(&Job {
        program: harness,
        stdin: format!("{nonce}\n").into_bytes(),
        wall,
    })?;
    let passed_line = format!("{nonce} passed");
    let reported = run.stdout_text().lines().any(|l| l == passed_line);
    let failure = run_failure(&run).or_else(|| {
        (!reported).then(|| {
            (
                TestCode::RuntimeError,
                "exited before the checks finished".to_string(),
            )
        })
    });
    Ok(Verdict {
        passed: failure.is_none(),
        results: vec![failure.as_ref().map_or(TestCode::Pass, |f| f.0).lcb()],
        tests_total: 1,
        failure: failure.map(|(code, error)| Outcome {
            index: 0,
            code,
            input: String::new(),
            expected: String::new(),
            output: truncate(&run.stdout_text()),
            error,
        }),
        wall_ms: run.wall.as_millis() as u64,
    })
}

/// Unbiased pass@k: 1 − C(n−c, k)/C(n, k), computed as a stable product.
pub fn pass_at_k(n: usize, c: usize, k: usize) -> f64 {
    if n < k || c > n {
        return f64::NAN;
    }
    if n - c < k {
        return 1.0;
    }
    1.0 - ((n - c + 1)..=n)
        .map(|i| 1.0 - k as f64 / i as f64)
        .product::<f64>()
}

#[cfg(test)]
mod tests;
