//! Code in deliberation: every proposal's program is run on the problem's
//! PUBLIC tests before anyone evaluates it, and that evidence becomes the
//! proposal's "answer" — what evaluators see beside the code, what plurality
//! votes over (programs that behave the same fall in one class), and what a
//! revision sees of its competitors. Hidden tests are used only to grade.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::grade::{self, TestCode, Tests, Verdict};
use super::problems::{Check, CodeSet, Problem};
use super::{extract, prompts};
use crate::answer::AnswerKind;
use crate::deliberation::{
    Agent, AgentError, EvaluateRequest, Evaluation, Proposal, ProposeContext, ProposeRequest, Task,
    Usage,
};
use crate::engine::sampling::SamplingParams;
use crate::sandbox::{Sandbox, SandboxError};

/// A code set with its sandbox: builds tasks, extracts, runs and grades.
pub struct CodeContext {
    /// The loaded problems.
    pub set: CodeSet,
    /// Where programs run.
    pub sandbox: Sandbox,
    by_id: HashMap<String, usize>,
    probes: Mutex<HashMap<String, Probes>>,
    /// Grades by (problem id, program): methods often choose the same
    /// program, which is then run once.
    verdicts: Mutex<HashMap<(String, String), Verdict>>,
}

/// Inputs a model wrote for a problem (they have no expected outputs): two
/// programs that pass the same public tests but answer these differently
/// fall in different behaviour classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Probes {
    /// The model that wrote the inputs.
    pub author: String,
    /// The inputs: stdin texts or JSON arguments (LCB), calls of the function (HumanEval, MBPP).
    pub inputs: Vec<String>,
    /// The call that wrote them, charged to the methods that vote over
    /// behaviour classes.
    pub usage: Usage,
}

/// How many probe inputs to ask for, and the tokens to write them.
const PROBES: usize = 3;
const PROBE_TOKENS: usize = 384;

impl CodeContext {
    /// A context for `set`, its programs run in `sandbox`.
    pub fn new(set: CodeSet, sandbox: Sandbox) -> Arc<CodeContext> {
        let by_id = set
            .problems
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        Arc::new(CodeContext {
            set,
            sandbox,
            by_id,
            probes: Mutex::new(HashMap::new()),
            verdicts: Mutex::new(HashMap::new()),
        })
    }

    /// The problem with id `id`, if the set has it.
    pub fn problem(&self, id: &str) -> Option<&Problem> {
        self.by_id.get(id).map(|&i| &self.set.problems[i])
    }

    /// The deliberation task of a problem: the harness's own prompt.
    pub fn task(&self, problem: &Problem) -> Task {
        let messages = prompts::for_problem(problem, &self.set.fewshot);
        let system = messages
            .iter()
            .find(|m| m.role == "system")
            .map(|m| m.content.clone());
        let user = messages
            .iter()
            .filter(|m| m.role == "user")
            .map(|m| m.content.as_str())
            .collect::<Vec<_>>()
            .join("\n\n");
        Task {
            id: problem.id.clone(),
            problem: user,
            kind: AnswerKind::Code,
            system,
        }
    }

    /// The program in a response, extracted as the problem's harness does.
    pub fn program(&self, problem: &Problem, response: &str) -> String {
        match &problem.check {
            Check::Stdin { .. } | Check::Functional { .. } => extract::lcb(response),
            Check::HumanEval { entry_point, .. } => extract::humaneval(response, entry_point),
            Check::Mbpp { .. } => extract::mbpp(response),
        }
    }

    /// The score: every test (public and hidden).
    pub fn grade(&self, problem: &Problem, program: &str) -> Result<Verdict, SandboxError> {
        let key = (problem.id.clone(), program.to_string());
        if let Some(v) = self.verdicts.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(v);
        }
        let verdict = grade::grade(&self.sandbox, problem, program, Tests::All)?;
        if let Ok(mut m) = self.verdicts.lock() {
            m.insert(key, verdict.clone());
        }
        Ok(verdict)
    }

    /// What a program does on the public tests, as one line a model can
    /// read; equal lines mean equal behaviour. `None` for an empty program.
    pub fn behaviour(&self, problem: &Problem, program: &str) -> Option<String> {
        if program.trim().is_empty() {
            return None;
        }
        let verdict = match &problem.check {
            Check::Stdin { .. } | Check::Functional { .. } => {
                grade::grade(&self.sandbox, problem, program, Tests::Public)
            }
            Check::HumanEval { .. } => grade::grade_public_script(
                &self.sandbox,
                &format!("{}{program}", problem.statement),
                &doctest_driver(&problem.statement),
                grade::HUMANEVAL_TIMEOUT,
            ),
            Check::Mbpp { setup, asserts } => grade::grade_public_script(
                &self.sandbox,
                &format!("{program}\n{setup}"),
                &assert_driver(asserts),
                grade::MBPP_TIMEOUT,
            ),
        };
        Some(match verdict {
            Ok(v) => describe(problem, &v),
            Err(e) => format!("could not be run: {e}"),
        })
    }
}

impl CodeContext {
    /// Ask `agent` (greedy) for probe inputs to a problem (LCB: stdin texts
    /// or JSON arguments; HumanEval and MBPP: calls of the function) and keep
    /// them for the item; `None` when the problem names no function to call.
    pub fn write_probes(
        &self,
        agent: &mut dyn Agent,
        task: &Task,
        seed: u64,
        max_chars: usize,
    ) -> Option<Probes> {
        let problem = self.problem(&task.id)?;
        let request = probe_request(problem)?;
        let req = ProposeRequest {
            task: Task {
                id: format!("{}/probes", task.id),
                problem: request,
                kind: AnswerKind::Code,
                system: None,
            },
            round: 1,
            context: ProposeContext::Fresh,
            sampling: Some(SamplingParams::default()),
            seed,
            inference_id: format!("{}/probes", task.id),
            max_tokens: PROBE_TOKENS,
            max_chars,
        };
        let reply = agent.propose(&req).ok()?;
        let probes = Probes {
            author: reply.model.clone(),
            inputs: parse_probes(problem, &reply.content),
            usage: reply.usage,
        };
        if let Ok(mut all) = self.probes.lock() {
            all.insert(task.id.clone(), probes.clone());
        }
        Some(probes)
    }

    /// The behaviour-class key of a program: its public-test evidence and
    /// its outputs on the item's probe inputs (`None` without probes).
    pub fn class(&self, problem: &Problem, program: &str, evidence: &str) -> Option<String> {
        let inputs = self
            .probes
            .lock()
            .ok()?
            .get(&problem.id)
            .map(|p| p.inputs.clone())?;
        if inputs.is_empty() || program.trim().is_empty() {
            return None;
        }
        let outputs = grade::probe_outputs(&self.sandbox, problem, program, &inputs).ok()?;
        Some(format!(
            "{evidence}\nprobe outputs: {}",
            outputs.join(" ␞ ")
        ))
    }
}

/// The request for probe inputs, for LiveCodeBench problems.
fn probe_request(problem: &Problem) -> Option<String> {
    let ending = "Put each input alone in its own ```text code block.";
    match &problem.check {
        Check::Stdin { .. } => Some(format!(
            "{}\n\nDo not solve the problem. Write {PROBES} new, different test inputs for it, in exactly the input format described above, including edge cases. {ending}",
            problem.statement
        )),
        Check::Functional { func_name, public, .. } => {
            let example = public.first().map(|t| t.input.as_str()).unwrap_or("");
            Some(format!(
                "{}\n\nDo not solve the problem. Write {PROBES} new, different test inputs for `{func_name}`: its arguments, one JSON value per line, in the same form as this example:\n```text\n{example}\n```\n{ending}",
                problem.statement
            ))
        }
        Check::HumanEval { .. } | Check::Mbpp { .. } => {
            let callee = problem.callee()?;
            Some(format!(
                "{}\n\nDo not solve the problem. Write {PROBES} new calls of `{callee}` that test it, different from the examples above and including edge cases: Python expressions such as `{callee}(...)` with concrete argument values, one per line, in one ```python code block. Do not write the expected results.",
                problem.statement
            ))
        }
    }
}

/// Up to `PROBES` inputs from the fenced blocks of a reply; functional
/// inputs must be one JSON value per argument line, as many lines as the
/// public tests have; HumanEval and MBPP inputs are calls of the function.
fn parse_probes(problem: &Problem, reply: &str) -> Vec<String> {
    if let Check::HumanEval { .. } | Check::Mbpp { .. } = &problem.check {
        // A call the problem already shows (its signature, a docstring
        // example, an MBPP assert) tells nothing the public tests do not.
        let shown = |call: &String| {
            problem.statement.contains(call.as_str())
                || matches!(&problem.check, Check::Mbpp { asserts, .. }
                    if asserts.iter().any(|a| a.contains(call.as_str())))
        };
        let Some(callee) = problem.callee() else {
            return Vec::new();
        };
        return parse_calls(&callee, reply)
            .into_iter()
            .filter(|c| !shown(c))
            .take(PROBES)
            .collect();
    }
    let arity = problem
        .public_tests()
        .first()
        .map(|t| t.input.lines().count());
    extract::blocks(reply)
        .into_iter()
        .map(|b| b.trim().to_string())
        .filter(|b| !b.is_empty())
        .filter(|b| match &problem.check {
            Check::Functional { .. } => {
                Some(b.lines().count()) == arity
                    && b.lines()
                        .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok())
            }
            _ => true,
        })
        .map(|b| match problem.check {
            Check::Stdin { .. } => format!("{b}\n"),
            _ => b,
        })
        .take(PROBES)
        .collect()
}

/// The distinct calls `callee(...)` in a reply's fenced blocks
/// (or its text, without blocks), one per line, whatever wraps them
/// (`assert callee(1) == 2`, `print(callee(1))` give `callee(1)`).
fn parse_calls(callee: &str, reply: &str) -> Vec<String> {
    let blocks = extract::blocks(reply);
    let text = if blocks.is_empty() {
        reply.to_string()
    } else {
        blocks.join("\n")
    };
    let mut calls: Vec<String> = Vec::new();
    for line in text.lines() {
        let Some(call) = call_in(callee, line) else {
            continue;
        };
        if !calls.contains(&call) {
            calls.push(call);
        }
    }
    calls
}

/// The first `callee(...)` in a line, with balanced brackets (quotes
/// respected); `None` if it does not close on that line.
fn call_in(callee: &str, line: &str) -> Option<String> {
    let pattern = format!("{callee}(");
    let start = line.match_indices(&pattern).map(|(i, _)| i).find(|&i| {
        line[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'))
    })?;
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (offset, c) in line[start + callee.len()..].char_indices() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    let end = start + callee.len() + offset + 1;
                    return Some(line[start..end].to_string());
                }
            }
            _ => {}
        }
    }
    None
}

/// One line of evidence from a verdict on public tests.
fn describe(problem: &Problem, v: &Verdict) -> String {
    let what = match problem.check {
        Check::HumanEval { .. } => "docstring examples",
        _ => "public tests",
    };
    let Some(f) = &v.failure else {
        return format!("passed all {what}");
    };
    let shown = |s: &str| s.trim().replace('\n', "⏎");
    let label = match f.code {
        TestCode::WrongAnswer => "wrong answer",
        TestCode::TimeLimit | TestCode::GlobalTimeout => "time limit exceeded",
        _ => "error",
    };
    if matches!(problem.check, Check::HumanEval { .. } | Check::Mbpp { .. }) {
        // The driver's message names the failing example or assert.
        return format!("failed on {what}: {}", shown(&f.error));
    }
    let mut line = format!("{label} on {what} #{}", f.index + 1);
    if !f.input.is_empty() {
        line.push_str(&format!(": input {}", shown(&f.input)));
    }
    if !f.expected.is_empty() {
        line.push_str(&format!(", expected {}", shown(&f.expected)));
    }
    if f.code == TestCode::WrongAnswer && !f.output.is_empty() {
        line.push_str(&format!(", got {}", shown(&f.output)));
    } else if !f.error.is_empty() {
        line.push_str(&format!(" — {}", shown(&f.error)));
    }
    line
}

/// Runs each docstring example of the prompt's functions (Python's doctest
/// parser on the docstrings, as `__doc__` holds them) and stops at the first
/// that fails, naming it.
fn doctest_driver(prompt: &str) -> String {
    format!(
        "import ast as _nsed_ast, doctest as _nsed_doctest\n\
         _nsed_defs = [n for n in _nsed_ast.walk(_nsed_ast.parse({})) if isinstance(n, (_nsed_ast.FunctionDef, _nsed_ast.AsyncFunctionDef))]\n\
         _nsed_examples = [e for n in _nsed_defs for e in _nsed_doctest.DocTestParser().get_examples(_nsed_ast.get_docstring(n) or '')]\n\
         for _nsed_i, _nsed_ex in enumerate(_nsed_examples):\n    \
             _nsed_value = eval(_nsed_ex.source, globals())\n    \
             _nsed_got = '' if _nsed_value is None else repr(_nsed_value)\n    \
             if _nsed_got.strip() != _nsed_ex.want.strip():\n        \
                 raise AssertionError('example %d: %s expected %s, got %s' % (_nsed_i + 1, _nsed_ex.source.strip(), _nsed_ex.want.strip(), _nsed_got))\n",
        serde_json::Value::String(prompt.to_string())
    )
}

/// Runs each assert and stops at the first that fails, naming it.
fn assert_driver(asserts: &[String]) -> String {
    let list = serde_json::to_string(asserts).unwrap_or_else(|_| "[]".into());
    format!(
        "for _nsed_i, _nsed_t in enumerate({list}):\n    \
             try:\n        \
                 exec(_nsed_t, globals())\n    \
             except Exception as _nsed_e:\n        \
                 raise AssertionError('test %d: %s (%r)' % (_nsed_i + 1, _nsed_t.strip(), _nsed_e))\n"
    )
}

/// An agent whose proposals carry their public-test behaviour as answer.
pub struct CodeAgent {
    inner: Box<dyn Agent>,
    ctx: Arc<CodeContext>,
}

impl CodeAgent {
    /// Wrap `inner` so its proposals run on `ctx`'s public tests.
    pub fn new(inner: Box<dyn Agent>, ctx: Arc<CodeContext>) -> Self {
        CodeAgent { inner, ctx }
    }
}

impl Agent for CodeAgent {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError> {
        let mut p = self.inner.propose(req)?;
        if let Some(problem) = self.ctx.problem(&req.task.id) {
            let program = self.ctx.program(problem, &p.content);
            p.answer = self.ctx.behaviour(problem, &program);
            p.behaviour = p
                .answer
                .as_deref()
                .and_then(|evidence| self.ctx.class(problem, &program, evidence));
        }
        Ok(p)
    }

    fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
        self.inner.evaluate(req)
    }

    fn prefetch(&mut self, call: crate::deliberation::Call<'_>) {
        self.inner.prefetch(call);
    }
}

/// The outcome of a graded program for the bench tables.
pub fn outcome(program: &str, verdict: &Verdict) -> crate::answer::Outcome {
    use crate::answer::Outcome;
    if program.trim().is_empty() {
        Outcome::NoAnswer
    } else if verdict.passed {
        Outcome::Correct
    } else {
        Outcome::Wrong
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::code::problems::{self, IoTest, LcbFilter};
    use crate::sandbox::Limits;

    fn context(problems: Vec<Problem>) -> Arc<CodeContext> {
        let set = CodeSet {
            name: "test".into(),
            file: std::path::PathBuf::new(),
            sha256: String::new(),
            problems,
            fewshot: Vec::new(),
            excluded_flawed: 0,
        };
        CodeContext::new(set, Sandbox::new(None, Limits::default()).expect("sandbox"))
    }

    fn stdin_problem(public: Vec<IoTest>, hidden: Vec<IoTest>) -> Problem {
        Problem {
            id: "sum".into(),
            title: String::new(),
            statement: "Print the sum of two integers.".into(),
            starter_code: String::new(),
            platform: "atcoder".into(),
            difficulty: "easy".into(),
            contest_date: String::new(),
            flawed: false,
            check: Check::Stdin { public, hidden },
        }
    }

    fn set_probes(ctx: &CodeContext, p: &Problem, inputs: Vec<String>) {
        ctx.probes.lock().expect("lock").insert(
            p.id.clone(),
            Probes {
                author: "m".into(),
                inputs,
                usage: Usage::default(),
            },
        );
    }

    fn io(input: &str, output: &str) -> IoTest {
        IoTest {
            input: input.into(),
            output: output.into(),
        }
    }

    #[test]
    fn evidence_uses_public_tests_only_and_grading_uses_all() {
        // Correct on the public test, wrong on the hidden one.
        let p = stdin_problem(vec![io("1 2\n", "3\n")], vec![io("5 5\n", "10\n")]);
        let ctx = context(vec![p.clone()]);
        let response = "Here:\n```python\na, b = map(int, input().split())\nprint(3 if a == 1 else a - b)\n```\n";
        let program = ctx.program(&p, response);
        assert_eq!(
            ctx.behaviour(&p, &program).as_deref(),
            Some("passed all public tests")
        );
        let v = ctx.grade(&p, &program).expect("grade");
        assert!(!v.passed);
        assert_eq!(v.results, [1, -2]);
        // The hidden test's input never appears in what a model is shown.
        let wrong = ctx.behaviour(&p, "print(0)").expect("evidence");
        assert_eq!(
            wrong,
            "wrong answer on public tests #1: input 1 2, expected 3, got 0"
        );
        assert!(!wrong.contains("5 5"));
        assert_eq!(ctx.behaviour(&p, "  "), None);
    }

    #[test]
    fn humaneval_evidence_runs_the_docstring_examples() {
        let dir = crate::bench::datasets::bundled_dir();
        let set = problems::load("humaneval", &dir, &LcbFilter::default()).expect("humaneval");
        let p = set.problems[0].clone();
        let ctx = context(vec![p.clone()]);
        let right = "```python\ndef has_close_elements(numbers, threshold):\n    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])\n```";
        let program = ctx.program(&p, right);
        assert_eq!(
            ctx.behaviour(&p, &program).as_deref(),
            Some("passed all docstring examples")
        );
        let wrong = ctx.program(
            &p,
            "```python\ndef has_close_elements(numbers, threshold):\n    return False\n```",
        );
        let evidence = ctx.behaviour(&p, &wrong).expect("evidence");
        assert!(
            evidence.contains("example 2: has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) expected True, got False"),
            "{evidence}"
        );
    }

    #[test]
    fn probes_split_programs_that_pass_the_same_public_tests() {
        let p = stdin_problem(vec![io("1 2\n", "3\n")], vec![]);
        let ctx = context(vec![p.clone()]);
        let reply = "Inputs:\n```text\n5 5\n```\n```text\n-1 1\n```\n```\n\n```";
        let inputs = parse_probes(&p, reply);
        assert_eq!(inputs, ["5 5\n", "-1 1\n"]);
        set_probes(&ctx, &p, inputs);
        let sum = "a, b = map(int, input().split())\nprint(a + b)";
        let also_sum = "print(sum(map(int, input().split())))";
        let fake = "input()\nprint(3)";
        let class = |program: &str| {
            let evidence = ctx.behaviour(&p, program).expect("evidence");
            ctx.class(&p, program, &evidence).expect("class")
        };
        assert_eq!(ctx.behaviour(&p, fake), ctx.behaviour(&p, sum));
        assert_eq!(class(sum), class(also_sum));
        assert_ne!(class(sum), class(fake));
        assert!(
            class(sum).ends_with("probe outputs: 10 ␞ 0"),
            "{}",
            class(sum)
        );
    }

    #[test]
    fn functional_probes_must_be_json_argument_lines() {
        let p = Problem {
            check: Check::Functional {
                func_name: "f".into(),
                public: vec![io("[1, 2]\n3", "4")],
                hidden: vec![],
            },
            ..stdin_problem(vec![], vec![])
        };
        let reply = "```text\n[5]\n1\n```\n```text\n[1]\n```\n```text\nnot json\nx\n```";
        assert_eq!(parse_probes(&p, reply), ["[5]\n1"]);
        let ctx = context(vec![p.clone()]);
        let program =
            "class Solution:\n    def f(self, xs, k):\n        return (sum(xs) + k, None)\n";
        let outputs = grade::probe_outputs(
            &ctx.sandbox,
            &p,
            program,
            &["[5]\n1".into(), "[]\n\"x\"".into()],
        )
        .expect("outputs");
        assert_eq!(outputs, ["[6, None]", "<error>"]);
    }

    #[test]
    fn call_probes_are_balanced_calls_of_the_function() {
        let reply = "Calls:\n```python\nassert double(1) == 2\nprint(double([1, (2, 3)]))\ndouble(')(')  # odd\nredouble(4)\nx.double(5)\ndouble(1)\ndouble(2\n```\n";
        assert_eq!(
            parse_calls("double", reply),
            ["double(1)", "double([1, (2, 3)])", "double(')(')"]
        );
        assert_eq!(
            parse_calls("double", "try double(7) or double(8)"),
            ["double(7)"]
        );
        assert!(parse_calls("double", "no calls here").is_empty());
    }

    #[test]
    fn mbpp_probes_split_programs_that_pass_the_same_asserts() {
        let p = Problem {
            id: "mbpp/1".into(),
            check: Check::Mbpp {
                setup: String::new(),
                asserts: vec!["assert set(evens([1, 2])) == {2}".into()],
            },
            ..stdin_problem(vec![], vec![])
        };
        let ctx = context(vec![p.clone()]);
        // The assert's own call is dropped: the public test already runs it.
        let reply = "```python\nevens([1, 2])\nevens([4, 3, 'a'])\nevens(list(range(50)))\nevens(None)\nevens([])\n```";
        let inputs = parse_probes(&p, reply);
        assert_eq!(
            inputs,
            [
                "evens([4, 3, 'a'])",
                "evens(list(range(50)))",
                "evens(None)"
            ]
        );
        set_probes(&ctx, &p, inputs);
        let class = |program: &str| {
            let evidence = ctx.behaviour(&p, program).expect("evidence");
            assert_eq!(evidence, "passed all public tests");
            ctx.class(&p, program, &evidence).expect("class")
        };
        // Sets of strings print in hash order; the class key must not.
        let as_set = "def evens(xs):\n    return {x for x in xs if isinstance(x, int) and x % 2 == 0} | {str(x) for x in xs if isinstance(x, str)}";
        let as_set_again = "def evens(xs):\n    out = set()\n    for x in xs:\n        if isinstance(x, str) or x % 2 == 0:\n            out.add(x if isinstance(x, int) else str(x))\n    return out";
        let ints_only = "def evens(xs):\n    return [x for x in xs if x % 2 == 0]";
        assert_eq!(class(as_set), class(as_set_again));
        let ints = class(ints_only);
        assert_ne!(class(as_set), ints);
        assert!(
            ints.ends_with("probe outputs: <error: TypeError> ␞ [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46, 48] ␞ <error: TypeError>"),
            "{ints}"
        );
        let hangs = "def evens(xs):\n    while xs is None:\n        pass\n    return {x for x in xs if isinstance(x, int) and x % 2 == 0} | {str(x) for x in xs if isinstance(x, str)}";
        assert!(class(hangs).ends_with("␞ <time limit>"), "{}", class(hangs));
        let request = probe_request(&p).expect("request");
        assert!(request.contains("calls of `evens`"), "{request}");
    }

    #[test]
    fn mbpp_evidence_names_the_failing_assert() {
        let p = Problem {
            id: "mbpp/1".into(),
            check: Check::Mbpp {
                setup: String::new(),
                asserts: vec![
                    "assert double(1) == 2".into(),
                    "assert double(3) == 6".into(),
                ],
            },
            ..stdin_problem(vec![], vec![])
        };
        let ctx = context(vec![p.clone()]);
        let evidence = ctx
            .behaviour(&p, "def double(x):\n    return 2 if x == 1 else 0")
            .expect("evidence");
        assert!(
            evidence.starts_with("failed on public tests: "),
            "{evidence}"
        );
        assert!(
            evidence.contains("test 2: assert double(3) == 6"),
            "{evidence}"
        );
    }
}
