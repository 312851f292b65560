//! Chat templates: a model's own Jinja template from its GGUF file
//! ([`jinja`]), and the hand-written ChatML (SmolLM2, Qwen), Gemma turns and
//! plain text for base models. Each hand-written one renders as the model's
//! own GGUF template would, including the default system message it inserts
//! when a conversation has none.

use serde::{Deserialize, Serialize};

pub mod jinja;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks: `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl Message {
    /// A message from `role` with `content`.
    pub fn new(role: &str, content: &str) -> Self {
        Self {
            role: role.to_string(),
            content: content.to_string(),
        }
    }
}

/// How a conversation is turned into the prompt text; the registry's
/// `chat_template` values are the lower-case names (`chatml`, `gemma`,
/// `plain`), and any other value is refused when the registry is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// `<|im_start|>role ... <|im_end|>` turns (SmolLM2, Qwen).
    ChatMl,
    /// Gemma `<start_of_turn>` turns; the system message folds into the first user turn.
    Gemma,
    /// The messages' texts joined by blank lines, for base models.
    Plain,
}

/// How a model's conversations are rendered: the template kind and its default system message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// The turn format.
    pub kind: TemplateKind,
    /// System message inserted when a conversation opens without one (ChatML only);
    /// `None` inserts nothing.
    pub default_system: Option<String>,
}

impl ChatTemplate {
    /// The template a registry entry names (`chat_template` in
    /// `configs/models.toml`), with the system message it inserts by default.
    pub fn new(kind: TemplateKind, default_system: Option<String>) -> Self {
        Self {
            kind,
            default_system,
        }
    }

    /// Guess from the GGUF's own chat template for a model given by path;
    /// a model without one (a base model) is prompted with plain text.
    pub fn detect(gguf_template: Option<&str>) -> Self {
        let kind = match gguf_template {
            Some(t) if t.contains("<|im_start|>") => TemplateKind::ChatMl,
            Some(t) if t.contains("<start_of_turn>") => TemplateKind::Gemma,
            _ => TemplateKind::Plain,
        };
        Self {
            kind,
            default_system: None,
        }
    }

    /// Render a conversation; `add_generation_prompt` opens the assistant turn.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        match self.kind {
            TemplateKind::ChatMl => self.render_chatml(messages, add_generation_prompt),
            TemplateKind::Gemma => render_gemma(messages, add_generation_prompt),
            TemplateKind::Plain => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        }
    }

    fn render_chatml(&self, messages: &[Message], add_generation_prompt: bool) -> String {
        let mut out = String::new();
        let has_system = messages.first().is_some_and(|m| m.role == "system");
        if let (false, Some(system)) = (has_system, &self.default_system) {
            out.push_str(&format!("<|im_start|>system\n{system}<|im_end|>\n"));
        }
        for m in messages {
            out.push_str(&format!(
                "<|im_start|>{}\n{}<|im_end|>\n",
                m.role, m.content
            ));
        }
        if add_generation_prompt {
            out.push_str("<|im_start|>assistant\n");
        }
        out
    }
}

/// Gemma turns: the system message is prepended to the first user turn, and
/// the assistant role is called `model`.
fn render_gemma(messages: &[Message], add_generation_prompt: bool) -> String {
    let mut out = String::new();
    let mut pending_system = None;
    for m in messages {
        match m.role.as_str() {
            "system" => pending_system = Some(m.content.clone()),
            role => {
                let role = if role == "assistant" { "model" } else { role };
                let content = match pending_system.take() {
                    Some(sys) => format!("{sys}\n\n{}", m.content),
                    None => m.content.clone(),
                };
                out.push_str(&format!("<start_of_turn>{role}\n{content}<end_of_turn>\n"));
            }
        }
    }
    if add_generation_prompt {
        out.push_str("<start_of_turn>model\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chatml_inserts_the_default_system_message() {
        let t = ChatTemplate::new(TemplateKind::ChatMl, Some("You are Qwen.".into()));
        let got = t.render(&[Message::new("user", "2+2?")], true);
        assert_eq!(
            got,
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_sys = t.render(
            &[
                Message::new("system", "Be brief."),
                Message::new("user", "hi"),
            ],
            false,
        );
        assert_eq!(
            with_sys,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn gemma_turns_fold_the_system_message_into_the_first_user_turn() {
        let t = ChatTemplate::new(TemplateKind::Gemma, None);
        let got = t.render(
            &[Message::new("system", "S"), Message::new("user", "U")],
            true,
        );
        assert_eq!(
            got,
            "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn plain_is_the_text_itself() {
        let t = ChatTemplate::new(TemplateKind::Plain, None);
        assert_eq!(
            t.render(&[Message::new("user", "Q: 1+1\nA:")], true),
            "Q: 1+1\nA:"
        );
    }
}
