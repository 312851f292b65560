//! Grading real programs in the real sandbox.

use super::*;
use crate::sandbox::Limits;

fn sandbox() -> Sandbox {
    Sandbox::new(None, Limits::default()).expect("sandbox")
}

fn io(input: &str, output: &str) -> IoTest {
    IoTest {
        input: input.into(),
        output: output.into(),
    }
}

fn problem(check: Check) -> Problem {
    Problem {
        id: "t".into(),
        title: String::new(),
        statement: String::new(),
        starter_code: String::new(),
        platform: String::new(),
        difficulty: String::new(),
        contest_date: String::new(),
        flawed: false,
        check,
    }
}

/// abc301_a "Overall Winner", with its real public tests.
fn overall_winner() -> Problem {
    problem(Check::Stdin {
        public: vec![
            io("5\nTTAAT\n", "T\n"),
            io("6\nATTATA\n", "T\n"),
            io("1\nA\n", "A\n"),
        ],
        hidden: vec![],
    })
}

const WINNER: &str = "n = int(input())\ns = input()\nt, a = s.count('T'), s.count('A')\nif t != a:\n    print('T' if t > a else 'A')\nelse:\n    print('T' if s[-1] == 'A' else 'A')\n";

#[test]
fn stdin_solution_passes_and_a_wrong_one_shows_its_first_failure() {
    let sb = sandbox();
    let v = grade(&sb, &overall_winner(), WINNER, Tests::All).expect("grade");
    assert!(v.passed, "{v:?}");
    assert_eq!(v.results, [1, 1, 1]);
    let wrong = "input()\nprint('T')\n";
    let v = grade(&sb, &overall_winner(), wrong, Tests::All).expect("grade");
    assert!(!v.passed);
    assert_eq!(v.results, [1, 1, -2]);
    let f = v.failure.expect("failure");
    assert_eq!(
        (f.index, f.code, f.input.as_str(), f.output.as_str()),
        (2, TestCode::WrongAnswer, "1\nA\n", "T\n")
    );
}

#[test]
fn stdin_uses_lcb_preamble_and_swallows_system_exit() {
    let sb = sandbox();
    let p = problem(Check::Stdin {
        public: vec![io("16\n", "4.0\n")],
        hidden: vec![],
    });
    // sqrt without an import (the preamble has `from math import *`),
    // printed as 4 not 4.0 (decimal comparison), then exit().
    let code = "print(int(sqrt(int(input()))))\nsys.exit(3)\n";
    let v = grade(&sb, &p, code, Tests::All).expect("grade");
    assert!(v.passed, "{v:?}");
    let crash = grade(&sb, &p, "raise ValueError('boom')", Tests::All).expect("grade");
    let f = crash.failure.expect("failure");
    assert_eq!(f.code, TestCode::RuntimeError);
    assert!(f.error.contains("ValueError: boom"), "{}", f.error);
}

#[test]
fn stdin_time_limit_is_code_minus_3() {
    let sb = sandbox();
    let v = grade(
        &sb,
        &overall_winner(),
        "while True:\n    pass\n",
        Tests::All,
    )
    .expect("grade");
    assert_eq!(v.results, [-3]);
}

fn seniors() -> Problem {
    // LCB 2727 "number-of-senior-citizens", its real public tests.
    problem(Check::Functional {
        func_name: "countSeniors".into(),
        public: vec![
            io(
                r#"["7868190130M7522", "5303914400F9211", "9273338290F4010"]"#,
                "2",
            ),
            io(r#"["1313579440F2036", "2921522980M5644"]"#, "0"),
        ],
        hidden: vec![],
    })
}

#[test]
fn functional_solution_passes_with_typing_names_from_the_preamble() {
    let sb = sandbox();
    let code = "class Solution:\n    def countSeniors(self, details: List[str]) -> int:\n        print('noise')\n        return sum(int(d[11:13]) > 60 for d in details)\n";
    let v = grade(&sb, &seniors(), code, Tests::All).expect("grade");
    assert!(v.passed, "{v:?}");
    assert_eq!(v.results, [1, 1]);
}

#[test]
fn functional_failures_have_lcb_codes() {
    let sb = sandbox();
    let wrong = "class Solution:\n    def countSeniors(self, details):\n        return 2\n";
    let v = grade(&sb, &seniors(), wrong, Tests::All).expect("grade");
    assert_eq!(v.results, [1, -2]);
    assert_eq!(v.failure.as_ref().map(|f| f.output.as_str()), Some("2"));
    let raises =
        "class Solution:\n    def countSeniors(self, details):\n        return details[99]\n";
    let v = grade(&sb, &seniors(), raises, Tests::All).expect("grade");
    assert_eq!(v.results, [-4]);
    assert!(v.failure.expect("f").error.contains("IndexError"));
    let syntax = "class Solution:\n    def countSeniors(self, details)\n";
    assert_eq!(
        grade(&sb, &seniors(), syntax, Tests::All)
            .expect("grade")
            .results,
        [-4]
    );
    let missing = "class Solution:\n    pass\n";
    assert_eq!(
        grade(&sb, &seniors(), missing, Tests::All)
            .expect("grade")
            .results,
        [-4]
    );
    // Printing a fake verdict does not pass: reports carry a nonce it cannot know.
    let forger = "import os\nclass Solution:\n    def countSeniors(self, details):\n        os.write(1, b'x {\"i\": 0, \"code\": 1}\\n')\n        os._exit(0)\n";
    let v = grade(&sb, &seniors(), forger, Tests::All).expect("grade");
    assert!(!v.passed && v.results == [-4], "{v:?}");
}

#[test]
fn functional_tuple_result_counts_as_list() {
    let sb = sandbox();
    let p = problem(Check::Functional {
        func_name: "pair".into(),
        public: vec![io("3", "[3, 4]")],
        hidden: vec![],
    });
    let code = "class Solution:\n    def pair(self, n):\n        return (n, n + 1)\n";
    assert!(grade(&sb, &p, code, Tests::All).expect("grade").passed);
}

#[test]
fn humaneval_and_mbpp_pass_only_when_checks_complete() {
    let sb = sandbox();
    let he = Problem {
        statement: "def add(a, b):\n    \"\"\"Add.\"\"\"\n".into(),
        ..problem(Check::HumanEval {
            test: "def check(candidate):\n    assert candidate(2, 3) == 5\n".into(),
            entry_point: "add".into(),
        })
    };
    assert!(
        grade(&sb, &he, "    return a + b\n", Tests::All)
            .expect("grade")
            .passed
    );
    let wrong = grade(&sb, &he, "    return a - b\n", Tests::All).expect("grade");
    assert!(!wrong.passed);
    assert!(wrong.failure.expect("f").error.contains("AssertionError"));
    // A correct function followed by an exit before the checks run fails.
    for escape in ["raise SystemExit(0)\n", "import os; os._exit(0)\n"] {
        let v = grade(&sb, &he, &format!("    return a + b\n{escape}"), Tests::All).expect("grade");
        assert!(!v.passed, "{escape}: {v:?}");
    }
    let mbpp = problem(Check::Mbpp {
        setup: String::new(),
        asserts: vec![
            "assert double(2) == 4".into(),
            "assert double(0) == 0".into(),
        ],
    });
    assert!(
        grade(&sb, &mbpp, "def double(x):\n    return 2 * x", Tests::All)
            .expect("grade")
            .passed
    );
    assert!(
        !grade(&sb, &mbpp, "def double(x):\n    return 4", Tests::All)
            .expect("grade")
            .passed
    );
}

#[test]
fn stdout_comparison_follows_grade_stdio() {
    assert!(stdout_matches("1 2\n3\n", "1 2\n3"));
    assert!(stdout_matches("  YES \n", "YES"));
    assert!(stdout_matches("0.50\n", "0.5\n"));
    assert!(!stdout_matches("0.5000001\n", "0.5\n"));
    assert!(!stdout_matches("Yes\n", "YES\n"));
    assert!(!stdout_matches("1\n2\n", "1 2\n"));
    assert!(!stdout_matches("", "1"));
}

#[test]
fn pass_at_k_is_the_unbiased_estimator() {
    assert!((pass_at_k(10, 3, 1) - 0.3).abs() < 1e-12);
    assert_eq!(pass_at_k(5, 0, 1), 0.0);
    assert_eq!(pass_at_k(2, 2, 2), 1.0);
    // 1 - C(7,5)/C(10,5) = 1 - 21/252
    assert!((pass_at_k(10, 3, 5) - (1.0 - 21.0 / 252.0)).abs() < 1e-12);
    assert!(pass_at_k(3, 1, 5).is_nan());
}
