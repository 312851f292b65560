//! Getting the program out of a model's answer, as each harness does.

/// LiveCodeBench (`lcb_runner`, chat models): the lines strictly between the
/// last two lines that contain three backticks; empty (a failure) with fewer
/// than two such lines.
pub fn lcb(answer: &str) -> String {
    let lines: Vec<&str> = answer.split('\n').collect();
    let fences: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.contains("```"))
        .map(|(i, _)| i)
        .collect();
    match fences[..] {
        [.., open, close] => lines[open + 1..close].join("\n"),
        _ => String::new(),
    }
}

/// Every fenced code block, in order.
pub fn blocks(answer: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut current: Option<Vec<&str>> = None;
    for line in answer.split('\n') {
        if line.trim_start().starts_with("```") {
            match current.take() {
                Some(body) => found.push(body.join("\n")),
                None => current = Some(Vec::new()),
            }
        } else if let Some(body) = current.as_mut() {
            body.push(line);
        }
    }
    found
}

/// HumanEval: what to append to the prompt. A block (or answer) that defines
/// `entry_point` is appended whole after a newline — it redefines the
/// function, keeping the prompt's imports and helpers; otherwise it is the
/// body, indented if the model left it flush left.
pub fn humaneval(answer: &str, entry_point: &str) -> String {
    let def = format!("def {entry_point}(");
    let all = blocks(answer);
    let code = all
        .iter()
        .find(|b| b.contains(&def))
        .or(all.last())
        .cloned()
        .unwrap_or_else(|| answer.to_string());
    if code.contains(&def) {
        return format!("\n{code}\n");
    }
    let flush_left = code
        .lines()
        .find(|l| !l.trim().is_empty())
        .is_some_and(|l| !l.starts_with([' ', '\t']));
    if flush_left {
        code.lines()
            .map(|l| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("    {l}")
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        code
    }
}

/// MBPP: the last code block that defines a function, else the text between
/// `[BEGIN]` and `[DONE]` of the few-shot format.
pub fn mbpp(answer: &str) -> String {
    let all = blocks(answer);
    if let Some(code) = all.iter().rev().find(|b| b.contains("def ")).or(all.last()) {
        return code.clone();
    }
    let start = answer.find("[BEGIN]").map_or(0, |i| i + "[BEGIN]".len());
    let rest = &answer[start..];
    let end = rest.find("[DONE]").unwrap_or(rest.len());
    rest[..end].trim_matches('\n').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcb_takes_the_last_fenced_block() {
        let answer =
            "Idea.\n```python\nx = 1\n```\nBetter:\n```python\nprint(2)\nprint(3)\n```\nDone.";
        assert_eq!(lcb(answer), "print(2)\nprint(3)");
        assert_eq!(lcb("```python\nprint(1)"), "");
        assert_eq!(lcb("no code"), "");
        // Any line containing ``` counts, as in lcb_runner.
        assert_eq!(lcb("a ```\nb\nc ```"), "b");
    }

    #[test]
    fn humaneval_whole_function_or_body() {
        let answer = "Sure:\n```python\ndef add(a, b):\n    return a + b\n```\n";
        assert_eq!(
            humaneval(answer, "add"),
            "\ndef add(a, b):\n    return a + b\n"
        );
        assert_eq!(humaneval("    return a + b\n", "add"), "    return a + b\n");
        assert_eq!(
            humaneval("```\nreturn a + b\n```", "add"),
            "    return a + b"
        );
    }

    #[test]
    fn mbpp_block_or_begin_done() {
        assert_eq!(
            mbpp("```python\ndef f(x):\n    return x\n```"),
            "def f(x):\n    return x"
        );
        assert_eq!(
            mbpp("[BEGIN]\ndef f(x):\n    return x\n[DONE]\nmore"),
            "def f(x):\n    return x"
        );
        assert_eq!(
            mbpp("def f(x):\n    return x\n[DONE]"),
            "def f(x):\n    return x"
        );
    }
}
