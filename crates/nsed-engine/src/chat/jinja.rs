//! A model's own chat template — the Jinja source in the GGUF's
//! `tokenizer.chat_template` — rendered with minijinja, set up the way
//! Hugging Face transformers sets up Python's jinja2 for
//! `apply_chat_template`: blocks trimmed and left-stripped, loop controls,
//! Python string/list/dict methods (`.strip()`, `.split()`, `.items()`),
//! `raise_exception`, `strftime_now` and a `tojson` that writes what
//! Python's `json.dumps` writes. The goldens in `tests/data/golden/chat/`
//! (made by `scripts/chat-template-goldens.py` with jinja2) hold nsed to it
//! byte for byte.
//!
//! The date `strftime_now` gives is fixed ([`TEMPLATE_DATE`]), not today's:
//! a prompt, and so a run, must not change with the day it is rendered on.

use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, Error, ErrorKind};

use super::Message;

/// The date templates are given (year, month, day): Llama 3's own fallback
/// when `strftime_now` is missing, 26 July 2024 (a Friday).
pub const TEMPLATE_DATE: (i32, u32, u32) = (2024, 7, 26);

/// Why a chat template could not be compiled or rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The Jinja source does not parse (or uses a feature minijinja lacks).
    #[error("the chat template does not compile (line {line}): {message}")]
    Syntax {
        /// Line of the template, from 1 (0 when unknown).
        line: usize,
        /// What the engine reported.
        message: String,
    },
    /// Rendering failed: the template raised (`raise_exception`, e.g. a
    /// role it does not support) or evaluated something invalid.
    #[error("the chat template failed at line {line}: {message}")]
    Render {
        /// Line of the template, from 1 (0 when unknown).
        line: usize,
        /// What the template or engine reported.
        message: String,
    },
}

impl TemplateError {
    fn syntax(e: &Error) -> Self {
        Self::Syntax {
            line: e.line().unwrap_or(0),
            message: describe(e),
        }
    }

    fn render(e: &Error) -> Self {
        Self::Render {
            line: e.line().unwrap_or(0),
            message: describe(e),
        }
    }
}

/// The error's own message (the raised text for `raise_exception`), without
/// minijinja's location suffix (the line is reported apart).
fn describe(e: &Error) -> String {
    match e.detail() {
        Some(detail) if e.kind() == ErrorKind::InvalidOperation => detail.to_string(),
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// A compiled chat template with the special-token texts it may print.
#[derive(Clone)]
pub struct JinjaTemplate {
    env: Arc<Environment<'static>>,
    source: Arc<str>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for JinjaTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JinjaTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

impl PartialEq for JinjaTemplate {
    fn eq(&self, other: &Self) -> bool {
        self.source() == other.source()
            && self.bos_token == other.bos_token
            && self.eos_token == other.eos_token
    }
}

const NAME: &str = "chat_template";

impl JinjaTemplate {
    /// Compile `source`; `bos_token`/`eos_token` are the texts of the
    /// tokenizer's special tokens (`""` when it has none).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| TemplateError::syntax(&e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", python_tojson);
        env.add_test("iterable", python_iterable);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| TemplateError::syntax(&e))?;
        Ok(Self {
            env: Arc::new(env),
            source: source.into(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The text the template prints for `bos_token`.
    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Render `messages`; `add_generation_prompt` opens the assistant turn;
    /// `kwargs` are the template's own switches (Qwen3's `enable_thinking`,
    /// GPT-OSS's `reasoning_effort`). As transformers does, `tools` and
    /// `documents` are passed as none.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        kwargs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(NAME)
            .map_err(|e| TemplateError::render(&e))?;
        let mut ctx: BTreeMap<String, Value> = kwargs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(Serde(v))))
            .collect();
        ctx.insert("messages".into(), Value::from(Serde(messages)));
        ctx.insert("add_generation_prompt".into(), add_generation_prompt.into());
        ctx.insert("bos_token".into(), self.bos_token.as_str().into());
        ctx.insert("eos_token".into(), self.eos_token.as_str().into());
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        template.render(ctx).map_err(|e| TemplateError::render(&e))
    }
}

/// `x is iterable` as Python answers it: `None` is not (minijinja's own
/// test says it is, and Qwen3-Coder's `tools is iterable and tools | length`
/// then fails on transformers' `tools=None`); an undefined value is, as
/// jinja2's `Undefined` iterates as empty.
fn python_iterable(value: &Value) -> bool {
    use minijinja::value::ValueKind;
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Number => false,
        ValueKind::Undefined => true,
        _ => value.try_iter().is_ok(),
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)` at [`TEMPLATE_DATE`], midnight; the directives
/// templates use (`%Y %y %m %d %e %b %B %a %A %H %M %S %j %%`).
fn strftime_now(format: String) -> Result<String, Error> {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let (year, month, day) = TEMPLATE_DATE;
    // 26 July 2024: a Friday, day 208 of a leap year.
    let (weekday, day_of_year) = (4usize, 208);
    let month_name = MONTHS[month as usize - 1];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('b') => out.push_str(&month_name[..3]),
            Some('B') => out.push_str(month_name),
            Some('a') => out.push_str(&DAYS[weekday][..3]),
            Some('A') => out.push_str(DAYS[weekday]),
            Some('H' | 'M' | 'S') => out.push_str("00"),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('%') => out.push('%'),
            other => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "strftime_now: unsupported directive %{}",
                        other.unwrap_or(' ')
                    ),
                ))
            }
        }
    }
    Ok(out)
}

/// `tojson` as transformers defines it: Python's `json.dumps(x,
/// ensure_ascii=False, indent=…, separators=…, sort_keys=…)` — `", "` and
/// `": "` between items, non-ASCII text as is, and no HTML escaping
/// (minijinja's own `tojson` escapes `<` and `'` for HTML).
fn python_tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => Some(match v.as_str() {
            Some(s) => s.to_string(),
            None => " ".repeat(usize::try_from(v)?),
        }),
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let item = v.get_item(&Value::from(0))?;
            let key = v.get_item(&Value::from(1))?;
            (item.to_string(), key.to_string())
        }
        // Python's default: "," before a newline when indenting, else ", ".
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let style = PyJson {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    write_json(&value, &style, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct PyJson {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl PyJson {
    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }
}

/// `value` as JSON in `style`, walking minijinja's values directly so that
/// maps keep their order (as Python's dicts do).
fn write_json(value: &Value, style: &PyJson, depth: usize, out: &mut String) -> Result<(), Error> {
    use minijinja::value::ValueKind;
    let quoted = |s: &str| serde_json::Value::String(s.to_string()).to_string();
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => out.push_str(&python_number(value)),
        ValueKind::String | ValueKind::Bytes | ValueKind::Plain | ValueKind::Invalid => {
            out.push_str(&quoted(&value.to_string()))
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                style.newline(out, depth + 1);
                write_json(item, style, depth + 1, out)?;
            }
            style.newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if keys.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if style.sort_keys {
                keys.sort_by_key(|k| k.to_string());
            }
            out.push('{');
            for (i, key) in keys.iter().enumerate() {
                if i > 0 {
                    out.push_str(&style.item_sep);
                }
                style.newline(out, depth + 1);
                out.push_str(&quoted(&key.to_string()));
                out.push_str(&style.key_sep);
                write_json(&value.get_item(key)?, style, depth + 1, out)?;
            }
            style.newline(out, depth);
            out.push('}');
        }
        _ => out.push_str(&quoted(&value.to_string())),
    }
    Ok(())
}

/// A number as Python's `json.dumps` writes it: integers as they are,
/// floats with a fraction or exponent (`1.0`, `1e+16`).
fn python_number(value: &Value) -> String {
    if let Some(i) = value.as_i64() {
        return i.to_string();
    }
    match f64::try_from(value.clone()) {
        Ok(x) if x.is_finite() => {
            let s = format!("{x:?}");
            match s.split_once('e') {
                Some((m, e)) if !e.starts_with('-') => format!("{m}e+{e}"),
                _ => s,
            }
        }
        Ok(x) if x.is_nan() => "NaN".into(),
        Ok(x) if x > 0.0 => "Infinity".into(),
        Ok(_) => "-Infinity".into(),
        Err(_) => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, messages: &[Message]) -> Result<String, TemplateError> {
        JinjaTemplate::new(source, "<s>", "</s>")?.render(messages, true, &BTreeMap::new())
    }

    #[test]
    fn python_methods_blocks_and_tokens_render_as_in_transformers() {
        let src = "{{ bos_token }}{% for m in messages %}\n  {{ m.role.upper() }}: {{ m.content.strip() }}\n{% endfor %}{% if add_generation_prompt %}A:{% endif %}";
        let got = render(src, &[Message::new("user", "  hi  ")]).expect("renders");
        // As jinja2: the newline after a block tag goes, the indentation before `{{` stays.
        assert_eq!(got, "<s>  USER: hi\nA:");
    }

    #[test]
    fn raise_exception_and_bad_syntax_name_the_line() {
        let src = "line one\n{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}";
        let err = render(src, &[Message::new("system", "x")]).expect_err("raises");
        assert_eq!(
            err,
            TemplateError::Render {
                line: 2,
                message: "System role not supported".into()
            }
        );
        assert!(
            render(src, &[Message::new("user", "x")]).is_ok(),
            "the control renders"
        );
        let err = JinjaTemplate::new("a\nb\n{% if %}", "", "").expect_err("syntax");
        assert!(
            matches!(err, TemplateError::Syntax { line: 3, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn the_date_is_fixed_and_tojson_writes_python_json() {
        let src = "{{ strftime_now('%d %b %Y|%Y-%m-%d|%A') }}|{{ {'a': [1, 'é<'], 'b': none} | tojson }}|{{ [1] | tojson(indent=2) }}";
        let got = render(src, &[]).expect("renders");
        assert_eq!(
            got,
            "26 Jul 2024|2024-07-26|Friday|{\"a\": [1, \"é<\"], \"b\": null}|[\n  1\n]"
        );
        let err = render("{{ strftime_now('%Q') }}", &[]).expect_err("unknown directive");
        assert!(err.to_string().contains("%Q"), "{err}");
    }
}
