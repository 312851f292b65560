//! Chat templates: a model's own Jinja template from its GGUF file
//! ([`jinja`]), and the hand-written ChatML (SmolLM2, Qwen), Gemma turns and
//! plain text for base models. Each hand-written one renders as the model's
//! own GGUF template would, including the default system message it inserts
//! when a conversation has none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod jinja;

pub use jinja::{JinjaTemplate, TemplateError};

use crate::reasoning::{self, ReasoningFormat};

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
/// `chat_template` values are the lower-case names (`gguf`, `chatml`,
/// `gemma`, `plain`), and any other value is refused when the registry is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// `<|im_start|>role ... <|im_end|>` turns (SmolLM2, Qwen).
    ChatMl,
    /// Gemma `<start_of_turn>` turns; the system message folds into the first user turn.
    Gemma,
    /// The messages' texts joined by blank lines, for base models.
    Plain,
    /// The model's own Jinja template (`tokenizer.chat_template` in the GGUF).
    Gguf,
}

/// How a model's conversations are rendered: the template kind and its default system message.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatTemplate {
    /// The turn format.
    pub kind: TemplateKind,
    /// System message inserted when a conversation opens without one (ChatML only);
    /// `None` inserts nothing.
    pub default_system: Option<String>,
    /// The compiled file template, for [`TemplateKind::Gguf`].
    jinja: Option<JinjaTemplate>,
    /// Whether the tokenizer adds BOS itself, so a BOS the template prints is
    /// dropped (as llama.cpp does): the prompt must not start with two.
    strip_bos: bool,
    /// The template's own switches (`enable_thinking`, `reasoning_effort`).
    pub kwargs: BTreeMap<String, serde_json::Value>,
}

impl ChatTemplate {
    /// The template a registry entry names (`chat_template` in
    /// `configs/models.toml`), with the system message it inserts by default.
    ///
    /// [`TemplateKind::Gguf`] needs the file's template: use
    /// [`ChatTemplate::from_file`]; here it falls back to plain text.
    pub fn new(kind: TemplateKind, default_system: Option<String>) -> Self {
        let kind = if kind == TemplateKind::Gguf {
            TemplateKind::Plain
        } else {
            kind
        };
        Self {
            kind,
            default_system,
            jinja: None,
            strip_bos: false,
            kwargs: BTreeMap::new(),
        }
    }

    /// The file's own template (`source`, the GGUF's `tokenizer.chat_template`),
    /// with the texts of its special tokens; `tokenizer_adds_bos` drops a
    /// BOS the template prints. A file without a template (a base model) is
    /// prompted with plain text. A template that does not compile is an
    /// error naming its line.
    pub fn from_file(
        source: Option<&str>,
        bos_token: &str,
        eos_token: &str,
        tokenizer_adds_bos: bool,
    ) -> Result<Self, TemplateError> {
        let Some(source) = source else {
            return Ok(Self::new(TemplateKind::Plain, None));
        };
        Ok(Self {
            kind: TemplateKind::Gguf,
            default_system: None,
            jinja: Some(JinjaTemplate::new(source, bos_token, eos_token)?),
            strip_bos: tokenizer_adds_bos && !bos_token.is_empty(),
            kwargs: BTreeMap::new(),
        })
    }

    /// Render a conversation; `add_generation_prompt` opens the assistant
    /// turn. Only a file's template can fail (it may refuse a conversation,
    /// e.g. a system turn, or evaluate something invalid).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
    ) -> Result<String, TemplateError> {
        self.render_with(messages, add_generation_prompt, &BTreeMap::new())
    }

    /// [`ChatTemplate::render`] with `extra` switches over the template's own
    /// (an agent's `enable_thinking`); the hand-written templates have none.
    pub fn render_with(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        Ok(match (self.kind, &self.jinja) {
            (TemplateKind::Gguf, Some(jinja)) => {
                let mut kwargs = self.kwargs.clone();
                kwargs.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
                let text = jinja.render(messages, add_generation_prompt, &kwargs)?;
                match text.strip_prefix(jinja.bos_token()) {
                    Some(rest) if self.strip_bos => rest.to_string(),
                    _ => text,
                }
            }
            (TemplateKind::ChatMl, _) => self.render_chatml(messages, add_generation_prompt),
            (TemplateKind::Gemma, _) => render_gemma(messages, add_generation_prompt),
            (TemplateKind::Plain | TemplateKind::Gguf, _) => messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n"),
        })
    }

    /// How the model marks its reasoning (from its own template; the
    /// hand-written templates are for models without any).
    pub fn reasoning_format(&self) -> ReasoningFormat {
        self.jinja.as_ref().map_or(ReasoningFormat::None, |j| {
            ReasoningFormat::of_template(j.source())
        })
    }

    /// Whether the template can turn reasoning off (`enable_thinking`).
    pub fn has_thinking_switch(&self) -> bool {
        self.jinja
            .as_ref()
            .is_some_and(|j| j.source().contains("enable_thinking"))
    }

    /// Whether the generation prompt, rendered with `extra`, leaves the
    /// reasoning open so the model's text starts inside it.
    pub fn opens_reasoning(&self, extra: &BTreeMap<String, serde_json::Value>) -> bool {
        let format = self.reasoning_format();
        format != ReasoningFormat::None
            && self
                .render_with(&[Message::new("user", "?")], true, extra)
                .is_ok_and(|prompt| reasoning::opens_reasoning(format, &prompt))
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
        let got = t
            .render(&[Message::new("user", "2+2?")], true)
            .expect("renders");
        assert_eq!(
            got,
            "<|im_start|>system\nYou are Qwen.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n"
        );
        let with_sys = t
            .render(
                &[
                    Message::new("system", "Be brief."),
                    Message::new("user", "hi"),
                ],
                false,
            )
            .expect("renders");
        assert_eq!(
            with_sys,
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        );
    }

    #[test]
    fn gemma_turns_fold_the_system_message_into_the_first_user_turn() {
        let t = ChatTemplate::new(TemplateKind::Gemma, None);
        let got = t
            .render(
                &[Message::new("system", "S"), Message::new("user", "U")],
                true,
            )
            .expect("renders");
        assert_eq!(
            got,
            "<start_of_turn>user\nS\n\nU<end_of_turn>\n<start_of_turn>model\n"
        );
    }

    #[test]
    fn a_file_template_drops_the_bos_the_tokenizer_adds() {
        let src = "{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
        let user = [Message::new("user", "hi")];
        let adds = ChatTemplate::from_file(Some(src), "<bos>", "<eos>", true).expect("compiles");
        assert_eq!(adds.kind, TemplateKind::Gguf);
        assert_eq!(adds.render(&user, true).expect("renders"), "<user>hi");
        let keeps = ChatTemplate::from_file(Some(src), "<bos>", "<eos>", false).expect("compiles");
        assert_eq!(keeps.render(&user, true).expect("renders"), "<bos><user>hi");
        let none = ChatTemplate::from_file(None, "<bos>", "", true).expect("plain");
        assert_eq!(none.kind, TemplateKind::Plain);
        let err = ChatTemplate::from_file(Some("{% for %}"), "", "", false).expect_err("syntax");
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn plain_is_the_text_itself() {
        let t = ChatTemplate::new(TemplateKind::Plain, None);
        assert_eq!(
            t.render(&[Message::new("user", "Q: 1+1\nA:")], true)
                .expect("renders"),
            "Q: 1+1\nA:"
        );
    }
}
