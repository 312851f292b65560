//! Reasoning models write their thinking before the answer: Qwen3, QwQ,
//! DeepSeek-R1 and SmolLM3 between `<think>` and `</think>`, GPT-OSS in its
//! harmony `analysis` channel before the `final` one. This module owns
//! telling the two apart in a generation's text, so that the reasoning is
//! recorded and counted but never graded, nor shown to other agents as the
//! answer, and a generation cut off while still reasoning is recognised as
//! such rather than graded on a fragment of thought.
//!
//! The format is read from the model's chat template
//! ([`ReasoningFormat::of_template`]); whether the prompt itself opens the
//! reasoning (DeepSeek-R1's and QwQ's generation prompts end in `<think>`)
//! from a rendered generation prompt ([`opens_reasoning`]).

/// How a model marks its reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningFormat {
    /// No reasoning markers: the whole text is the answer.
    #[default]
    None,
    /// `<think>…</think>` before the answer.
    Think,
    /// GPT-OSS harmony channels: `<|channel|>analysis<|message|>…<|end|>`,
    /// then `<|channel|>final<|message|>…`.
    Harmony,
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const HARMONY_FINAL: &str = "<|channel|>final<|message|>";
const HARMONY_ANALYSIS: &str = "<|channel|>analysis<|message|>";
const HARMONY_ENDS: [&str; 3] = ["<|end|>", "<|return|>", "<|call|>"];

impl ReasoningFormat {
    /// The format a chat template writes (its source mentions the markers).
    pub fn of_template(source: &str) -> Self {
        if source.contains("<|channel|>") {
            Self::Harmony
        } else if source.contains(THINK_CLOSE) {
            Self::Think
        } else {
            Self::None
        }
    }

    /// The text that closes the reasoning and opens the answer, for forcing
    /// an end when the reasoning budget runs out.
    pub fn closing(self) -> Option<&'static str> {
        match self {
            Self::None => None,
            Self::Think => Some("\n</think>\n\n"),
            Self::Harmony => Some("<|end|><|start|>assistant<|channel|>final<|message|>"),
        }
    }
}

/// Whether a rendered generation prompt leaves the reasoning open, so the
/// model's text starts inside it (`…<|im_start|>assistant\n<think>\n`).
pub fn opens_reasoning(format: ReasoningFormat, generation_prompt: &str) -> bool {
    match format {
        ReasoningFormat::Think => generation_prompt
            .rfind(THINK_OPEN)
            .is_some_and(|open| !generation_prompt[open..].contains(THINK_CLOSE)),
        ReasoningFormat::Harmony => generation_prompt.ends_with(HARMONY_ANALYSIS),
        ReasoningFormat::None => false,
    }
}

/// A generation's text cut into reasoning and answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Split {
    /// The reasoning, markers removed (`None`: the text had none).
    pub reasoning: Option<String>,
    /// The final answer: the only part graded and shown to other agents.
    pub answer: String,
    /// The text ended inside the reasoning: there is no answer at all.
    pub unfinished: bool,
}

/// Cut `text` (a generation, decoded with its special tokens) in `format`;
/// `opened` says the prompt already opened the reasoning.
pub fn split(format: ReasoningFormat, text: &str, opened: bool) -> Split {
    match format {
        ReasoningFormat::None => Split {
            reasoning: None,
            answer: text.to_string(),
            unfinished: false,
        },
        ReasoningFormat::Think => split_think(text, opened),
        ReasoningFormat::Harmony => split_harmony(text, opened),
    }
}

fn split_think(text: &str, opened: bool) -> Split {
    let body = text.trim_start();
    let starts_open = body.starts_with(THINK_OPEN);
    match text.find(THINK_CLOSE) {
        Some(close) => {
            let thought = text[..close].trim_start();
            let thought = thought.strip_prefix(THINK_OPEN).unwrap_or(thought);
            Split {
                reasoning: Some(thought.trim().to_string()),
                answer: text[close + THINK_CLOSE.len()..].trim_start().to_string(),
                unfinished: false,
            }
        }
        None if starts_open || opened => {
            let thought = body.strip_prefix(THINK_OPEN).unwrap_or(body);
            Split {
                reasoning: Some(thought.trim().to_string()),
                answer: String::new(),
                unfinished: true,
            }
        }
        None => Split {
            reasoning: None,
            answer: text.to_string(),
            unfinished: false,
        },
    }
}

fn split_harmony(text: &str, opened: bool) -> Split {
    let strip_end = |s: &str| -> String {
        let cut = HARMONY_ENDS
            .iter()
            .filter_map(|e| s.find(e))
            .min()
            .unwrap_or(s.len());
        s[..cut].trim().to_string()
    };
    let analysis = |s: &str| -> String {
        let s = s
            .find(HARMONY_ANALYSIS)
            .map_or(s, |i| &s[i + HARMONY_ANALYSIS.len()..]);
        strip_end(s)
    };
    match text.find(HARMONY_FINAL) {
        Some(at) => {
            let before = &text[..at];
            let reasoning = (before.contains(HARMONY_ANALYSIS) || opened)
                .then(|| analysis(before))
                .filter(|r| !r.is_empty());
            Split {
                reasoning,
                answer: strip_end(&text[at + HARMONY_FINAL.len()..]),
                unfinished: false,
            }
        }
        None if opened || text.contains(HARMONY_ANALYSIS) => Split {
            reasoning: Some(analysis(text)),
            answer: String::new(),
            unfinished: true,
        },
        None => Split {
            reasoning: None,
            answer: strip_end(text),
            unfinished: false,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn think_blocks_are_cut_from_the_answer() {
        let s = split(
            ReasoningFormat::Think,
            "<think>\nTwo and two.\n</think>\n\nThe answer is \\boxed{4}.",
            false,
        );
        assert_eq!(s.reasoning.as_deref(), Some("Two and two."));
        assert_eq!(s.answer, "The answer is \\boxed{4}.");
        assert!(!s.unfinished);
        // DeepSeek-R1: the prompt opened the block, the text only closes it.
        let s = split(ReasoningFormat::Think, "Two and two.\n</think>\n4", true);
        assert_eq!(
            (s.reasoning.as_deref(), s.answer.as_str()),
            (Some("Two and two."), "4")
        );
        // Qwen3 with thinking off: an empty block.
        let s = split(ReasoningFormat::Think, "<think>\n\n</think>\n\n4", false);
        assert_eq!((s.reasoning.as_deref(), s.answer.as_str()), (Some(""), "4"));
    }

    #[test]
    fn a_text_cut_inside_the_reasoning_has_no_answer() {
        let s = split(
            ReasoningFormat::Think,
            "<think>\nThe answer might be \\boxed{5}, or",
            false,
        );
        assert!(s.unfinished);
        assert_eq!(
            s.answer, "",
            "the boxed guess inside the thought is not the answer"
        );
        let s = split(ReasoningFormat::Think, "Let me think: 5", true);
        assert!(s.unfinished && s.answer.is_empty());
        // Control: the same text from a prompt that opened nothing is the answer.
        let s = split(ReasoningFormat::Think, "Let me think: 5", false);
        assert!(!s.unfinished);
        assert_eq!(s.answer, "Let me think: 5");
    }

    #[test]
    fn harmony_channels_are_told_apart() {
        let text = "<|channel|>analysis<|message|>7 times 8.<|end|><|start|>assistant<|channel|>final<|message|>56<|return|>";
        let s = split(ReasoningFormat::Harmony, text, false);
        assert_eq!(
            (s.reasoning.as_deref(), s.answer.as_str()),
            (Some("7 times 8."), "56")
        );
        let s = split(
            ReasoningFormat::Harmony,
            "<|channel|>analysis<|message|>7 times",
            false,
        );
        assert!(s.unfinished && s.answer.is_empty());
        let s = split(ReasoningFormat::Harmony, "plain text", false);
        assert_eq!((s.reasoning, s.answer.as_str()), (None, "plain text"));
    }

    #[test]
    fn no_format_leaves_the_text_alone() {
        let text = "<think>x</think>y";
        assert_eq!(split(ReasoningFormat::None, text, false).answer, text);
    }

    #[test]
    fn the_format_and_an_open_prompt_are_read_from_templates() {
        assert_eq!(
            ReasoningFormat::of_template("{{ '<think>' }}...{{ '</think>' }}"),
            ReasoningFormat::Think
        );
        assert_eq!(
            ReasoningFormat::of_template("<|channel|>final"),
            ReasoningFormat::Harmony
        );
        assert_eq!(
            ReasoningFormat::of_template("<|im_start|>"),
            ReasoningFormat::None
        );
        assert!(opens_reasoning(
            ReasoningFormat::Think,
            "<|im_start|>assistant\n<think>\n"
        ));
        assert!(!opens_reasoning(
            ReasoningFormat::Think,
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!opens_reasoning(
            ReasoningFormat::Think,
            "<|im_start|>assistant\n"
        ));
    }
}
