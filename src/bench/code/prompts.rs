//! The prompts of each harness: LiveCodeBench's chat prompt (docs/reference.md §5, as
//! `lcb_runner` builds it), HumanEval as a "complete this function" request,
//! and MBPP's 3-shot prompt (tasks 2, 3, 4).

use super::problems::{Check, Problem};
use crate::engine::chat::Message;

/// LiveCodeBench's system message for chat models.
pub const LCB_SYSTEM: &str = "You are an expert Python programmer. You will be given a question (problem specification) and will generate a correct Python program that matches the specification and passes all tests.";

const LCB_FORMAT_STARTER: &str =
    "### Format: You will use the following starter code to write the solution to the problem and enclose your code within delimiters.";
const LCB_FORMAT_STDIN: &str = "### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.";

/// LiveCodeBench: system + user message.
pub fn lcb(problem: &Problem) -> Vec<Message> {
    let mut user = format!("### Question:\n{}\n\n", problem.statement);
    if problem.starter_code.is_empty() {
        user.push_str(&format!(
            "{LCB_FORMAT_STDIN}\n```python\n# YOUR CODE HERE\n```\n\n"
        ));
    } else {
        user.push_str(&format!(
            "{LCB_FORMAT_STARTER}\n```python\n{}\n```\n\n",
            problem.starter_code
        ));
    }
    user.push_str("### Answer: (use the provided format with backticks)\n\n");
    vec![
        Message::new("system", LCB_SYSTEM),
        Message::new("user", &user),
    ]
}

/// HumanEval for chat models (EvalPlus's instruction).
pub fn humaneval(problem: &Problem) -> Vec<Message> {
    let user = format!(
        "Please provide a self-contained Python script that solves the following problem in a markdown code block:\n```python\n{}\n```\n",
        problem.statement.trim()
    );
    vec![Message::new("user", &user)]
}

/// One MBPP task in the paper's format; with `code`, a solved example.
fn mbpp_task(problem: &Problem, code: Option<&str>) -> String {
    let asserts = match &problem.check {
        Check::Mbpp { asserts, .. } => asserts.join("\n"),
        _ => String::new(),
    };
    let mut text = format!(
        "You are an expert Python programmer, and here is your task: {} Your code should pass these tests:\n\n{asserts}\n[BEGIN]\n",
        problem.statement
    );
    if let Some(code) = code {
        text.push_str(&format!("{}\n[DONE]\n\n", code.replace('\r', "")));
    }
    text
}

/// MBPP, 3-shot (tasks 2, 3, 4 with their reference code), as one user turn.
pub fn mbpp(problem: &Problem, fewshot: &[Problem]) -> Vec<Message> {
    let mut user: String = fewshot
        .iter()
        .map(|shot| mbpp_task(shot, Some(&shot.starter_code)))
        .collect();
    user.push_str(&mbpp_task(problem, None));
    vec![Message::new("user", &user)]
}

/// The prompt for any code problem.
pub fn for_problem(problem: &Problem, fewshot: &[Problem]) -> Vec<Message> {
    match problem.check {
        Check::Stdin { .. } | Check::Functional { .. } => lcb(problem),
        Check::HumanEval { .. } => humaneval(problem),
        Check::Mbpp { .. } => mbpp(problem, fewshot),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(starter: &str, check: Check) -> Problem {
        Problem {
            id: "p".into(),
            title: "t".into(),
            statement: "Add two numbers.".into(),
            starter_code: starter.into(),
            platform: String::new(),
            difficulty: String::new(),
            contest_date: String::new(),
            flawed: false,
            check,
        }
    }

    #[test]
    fn lcb_prompts_match_the_official_text() {
        let stdin = problem(
            "",
            Check::Stdin {
                public: vec![],
                hidden: vec![],
            },
        );
        let m = lcb(&stdin);
        assert_eq!(m[0].content, LCB_SYSTEM);
        assert_eq!(
            m[1].content,
            "### Question:\nAdd two numbers.\n\n### Format: Read the inputs from stdin solve the problem and write the answer to stdout (do not directly test on the sample inputs). Enclose your code within delimiters as follows. Ensure that when the python program runs, it reads the inputs, runs the algorithm and writes output to STDOUT.\n```python\n# YOUR CODE HERE\n```\n\n### Answer: (use the provided format with backticks)\n\n"
        );
        let functional = problem(
            "class Solution:\n    def add(self, a: int, b: int) -> int:\n        ",
            Check::Functional {
                func_name: "add".into(),
                public: vec![],
                hidden: vec![],
            },
        );
        let m = lcb(&functional);
        assert!(m[1].content.contains(
            "### Format: You will use the following starter code to write the solution to the problem and enclose your code within delimiters.\n```python\nclass Solution:\n    def add(self, a: int, b: int) -> int:\n        \n```\n\n### Answer:"
        ));
    }

    #[test]
    fn mbpp_is_three_shot_and_ends_open() {
        let task = |statement: &str, code: &str| Problem {
            statement: statement.into(),
            starter_code: code.into(),
            ..problem(
                "",
                Check::Mbpp {
                    setup: String::new(),
                    asserts: vec!["assert f(1) == 1".into()],
                },
            )
        };
        let shots = [
            task("A.", "def a():\r\n  pass"),
            task("B.", "def b(): pass"),
        ];
        let m = mbpp(&task("C.", ""), &shots);
        let text = &m[0].content;
        assert_eq!(text.matches("[BEGIN]").count(), 3);
        assert_eq!(text.matches("[DONE]").count(), 2);
        assert!(text.contains("def a():\n  pass\n[DONE]"));
        assert!(text.ends_with(
            "your task: C. Your code should pass these tests:\n\nassert f(1) == 1\n[BEGIN]\n"
        ));
    }
}
