//! The words the agents see. Chat models get a user message; base models
//! (plain template) get the same request as few-shot plain text, since a base
//! model continues text rather than following instructions.

use super::{Candidate, ProposeContext, Task};
use crate::answer::AnswerKind;

/// A rendered request: chat messages for instruction models, or plain text
/// (and stop strings) for base models.
pub struct Prompt {
    /// The task's own system message, if any; `None`: the agent's, else the model's default.
    pub system: Option<String>,
    /// The user message for chat models.
    pub user: String,
    /// The same request as plain text, for base models.
    pub plain: String,
    /// Stop strings for the plain text, where a base model would run on into a new question.
    pub plain_stop: Vec<String>,
}

/// Demonstrations for base models, written for this project (not taken from
/// any benchmark, so no test item leaks into a prompt).
const FEW_SHOT: &str = "Question: A baker makes 24 muffins and sells them in boxes of 6. Each box costs $5. How much money does the baker make if every box is sold?
Answer: 24 muffins in boxes of 6 make 24 / 6 = 4 boxes. 4 boxes at $5 each bring 4 * 5 = 20 dollars. The final answer is \\boxed{20}.

Question: What is the remainder when 100 is divided by 7?
Answer: 7 * 14 = 98 and 100 - 98 = 2. The final answer is \\boxed{2}.

Question: Tom has 3 times as many marbles as Ann. Together they have 48 marbles. How many marbles does Tom have?
Answer: Let Ann have x marbles; Tom has 3x, so x + 3x = 48 and x = 12. Tom has 3 * 12 = 36. The final answer is \\boxed{36}.

Question: Solve for x: 2x + 5 = 17.
Answer: Subtract 5 from both sides: 2x = 12. Divide by 2: x = 6. The final answer is \\boxed{6}.

";

const ANSWER_FORMAT: &str =
    "Please reason step by step, and put your final answer within \\boxed{}.";

/// For code, the final answer is a program in a fenced block (the harness's
/// own format instruction is already part of the problem text).
const CODE_FORMAT: &str =
    "Give the complete Python program, enclosed in ```python and ``` as the question's format asks.";

/// The instruction that ends a request, and how a candidate's "answer" is
/// named: for code it is its behaviour on the public tests.
fn wording(kind: AnswerKind) -> (&'static str, &'static str) {
    match kind {
        AnswerKind::Code => (CODE_FORMAT, "public tests"),
        _ => (ANSWER_FORMAT, "final answer"),
    }
}

/// How many characters of each candidate an evaluator is shown (the end of
/// the text, where the answer is, is kept).
pub fn clip(text: &str, max_chars: usize) -> String {
    let n = text.chars().count();
    if n <= max_chars {
        return text.to_string();
    }
    let tail: String = text.chars().skip(n - max_chars).collect();
    format!("[…] {tail}")
}

/// The proposal prompt: the problem, plus the revision or debate context of later rounds;
/// quotes at most `max_chars` characters of each earlier text.
pub fn propose(task: &Task, context: &ProposeContext, max_chars: usize) -> Prompt {
    let problem = task.problem.as_str();
    let (format_rule, answer_name) = wording(task.kind);
    let user = match context {
        // A code harness's prompt already ends with its format instruction.
        ProposeContext::Fresh if task.kind == AnswerKind::Code => problem.to_string(),
        ProposeContext::Fresh => format!("{problem}\n{format_rule}"),
        ProposeContext::Revise(r) => {
            let mut s = format!(
                "{problem}\n\nIn the previous round you proposed this solution; it scored {:+.2} and ranked {} of {}:\n<<<\n{}\n>>>\n",
                r.previous_score,
                r.rank,
                r.of,
                clip(&r.previous, max_chars)
            );
            if r.critiques.is_empty() {
                s.push_str("\nNo evaluator explained its score.\n");
            } else {
                s.push_str("\nCritiques of your solution from the other agents:\n");
                for c in &r.critiques {
                    let reason = if c.reason.is_empty() {
                        "(no reason given)"
                    } else {
                        c.reason.as_str()
                    };
                    s.push_str(&format!("- score {:+.0}: {reason}\n", c.score));
                }
            }
            if !r.competitors.is_empty() {
                s.push_str("\nThe other agents' proposals:\n");
                for c in &r.competitors {
                    s.push_str(&format!(
                        "- {answer_name}: {} (score {:+.2}): {}\n",
                        c.answer.as_deref().unwrap_or("none"),
                        c.score,
                        c.excerpt
                    ));
                }
            }
            s.push_str(&format!(
                "\nWrite a new, complete solution that fixes the problems the critiques raise. \
                 Do not simply copy the previous winner: check every step yourself. {format_rule}"
            ));
            s
        }
        ProposeContext::Debate { own, others } => {
            let mut s =
                format!("{problem}\n\nThese are the solutions to the problem from other agents:\n");
            for o in others {
                s.push_str(&format!(
                    "\nOne agent solution:\n```\n{}\n```\n",
                    clip(o, max_chars)
                ));
            }
            if let Some(own) = own {
                s.push_str(&format!(
                    "\nYour previous solution:\n```\n{}\n```\n",
                    clip(own, max_chars)
                ));
            }
            s.push_str(&format!(
                "\nUsing the solutions from other agents as additional information, can you give an updated answer? \
                 Examine your solution and the other agents' solutions step by step. {format_rule}"
            ));
            s
        }
    };
    Prompt {
        system: task.system.clone(),
        plain: format!(
            "{FEW_SHOT}Question: {}\nAnswer:",
            plain_context(problem, context, max_chars)
        ),
        plain_stop: vec!["\nQuestion:".into(), "\n\n\n".into()],
        user,
    }
}

/// A base model sees the problem, plus in later rounds the other answers as
/// hints, in the demonstrations' format.
fn plain_context(problem: &str, context: &ProposeContext, max_chars: usize) -> String {
    let others: Vec<String> = match context {
        ProposeContext::Fresh => return problem.to_string(),
        ProposeContext::Revise(r) => r
            .competitors
            .iter()
            .map(|c| c.excerpt.clone())
            .chain(std::iter::once(clip(&r.previous, max_chars / 2)))
            .collect(),
        ProposeContext::Debate { others, .. } => {
            others.iter().map(|o| clip(o, max_chars / 2)).collect()
        }
    };
    format!(
        "{problem}\n(Earlier attempts, which may be wrong: {})",
        others.join(" | ").replace('\n', " ")
    )
}

/// The generative evaluation: the evaluator's own solution as anchor, the
/// others under neutral labels, one score line per candidate.
pub fn evaluate(
    task: &Task,
    anchor: Option<(&str, Option<&str>)>,
    candidates: &[Candidate],
    max_chars: usize,
) -> Prompt {
    let problem = task.problem.as_str();
    let (_, answer_name) = wording(task.kind);
    let shown = |a: Option<&str>| a.unwrap_or("none found").to_string();
    let mut s = format!("Problem:\n{problem}\n\n");
    if let Some((anchor, answer)) = anchor {
        s.push_str(&format!(
            "Your own solution ({answer_name}: {}; trust it unless you find a mistake in it):\n<<<\n{}\n>>>\n\n",
            shown(answer),
            clip(anchor, max_chars)
        ));
    }
    s.push_str("Solutions from other agents to score:\n");
    for c in candidates {
        s.push_str(&format!(
            "\n### {} ({answer_name}: {})\n{}\n",
            c.label,
            shown(c.answer.as_deref()),
            clip(&c.text, max_chars)
        ));
    }
    s.push_str(
        "\nScore each candidate from -100 to +100: -100..-50 demonstrably wrong; -50..-10 major flaws; \
         -10..+10 uncertain; +10..+50 solid; +50..+85 strong; +85..+100 rigorously verified (above +90 needs proof). \
         Do not score your own solution. Reply with exactly one line per candidate, in this form:\n",
    );
    for c in candidates {
        s.push_str(&format!("{}: <score> | <one-sentence reason>\n", c.label));
    }
    let mut plain = format!("Problem: {problem}\n");
    for c in candidates {
        plain.push_str(&format!(
            "\n{}: {}\n",
            c.label,
            clip(&c.text, max_chars / 2)
        ));
    }
    plain.push_str("\nScores from -100 (wrong) to +100 (verified), one line per candidate:\n");
    Prompt {
        system: task.system.clone(),
        user: s,
        plain,
        plain_stop: vec!["\n\n".into()],
    }
}

/// The correction appended when an evaluation could not be read.
pub fn evaluate_retry(labels: &[String]) -> String {
    format!(
        "Your reply could not be read. Reply ONLY with one line per candidate ({}), each `Candidate_X: <number from -100 to 100> | <reason>`.",
        labels.join(", ")
    )
}

/// The `logprob` evaluation: a yes/no question whose next-token
/// probabilities give the score.
pub fn judge(task: &Task, candidate: &str, max_chars: usize) -> Prompt {
    let problem = task.problem.as_str();
    let text = clip(candidate, max_chars);
    let question = match task.kind {
        AnswerKind::Code => "Is the proposed program correct on every valid input?",
        _ => "Is the proposed solution's final answer correct?",
    };
    Prompt {
        system: task.system.clone(),
        user: format!(
            "Problem:\n{problem}\n\nProposed solution:\n{text}\n\n{question} Answer only Yes or No."
        ),
        plain: format!(
            "Problem: {problem}\nProposed solution: {text}\nQuestion: Is the proposed solution's final answer correct (Yes or No)?\nAnswer:"
        ),
        plain_stop: Vec::new(),
    }
}
