//! Chat templates from GGUF files: nsed's rendering (minijinja) of a fixed
//! set of conversations through llama.cpp's collection of real model
//! templates equals Python jinja2's as transformers sets it up, byte for
//! byte — including the conversations a template refuses.
//! Goldens: tests/data/golden/chat/ (scripts/chat-template-goldens.py).

use std::collections::BTreeMap;
use std::path::Path;

use nsed::engine::chat::jinja::JinjaTemplate;
use nsed::engine::chat::Message;

#[derive(serde::Deserialize)]
struct Golden {
    template: String,
    case: String,
    bos_token: String,
    eos_token: String,
    add_generation_prompt: bool,
    kwargs: BTreeMap<String, serde_json::Value>,
    messages: Vec<Message>,
    rendered: Option<String>,
    error: Option<String>,
}

fn goldens() -> Vec<Golden> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden/chat");
    let text = std::fs::read_to_string(dir.join("renders.jsonl")).expect("goldens");
    text.lines()
        .map(|l| serde_json::from_str(l).expect("golden row"))
        .collect()
}

fn template(g: &Golden) -> JinjaTemplate {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden/chat/templates")
        .join(format!("{}.jinja", g.template));
    let source = std::fs::read_to_string(&path).expect("template file");
    JinjaTemplate::new(&source, &g.bos_token, &g.eos_token)
        .unwrap_or_else(|e| panic!("{}: {e}", g.template))
}

#[test]
fn every_template_renders_as_jinja2_does() {
    let goldens = goldens();
    let templates: std::collections::BTreeSet<&str> =
        goldens.iter().map(|g| g.template.as_str()).collect();
    assert!(templates.len() >= 20, "{} templates", templates.len());
    let mut failures = Vec::new();
    for g in &goldens {
        let got = template(g).render(&g.messages, g.add_generation_prompt, &g.kwargs);
        let ok = match (&got, &g.rendered, &g.error) {
            (Ok(text), Some(want), None) => text == want,
            (Err(_), None, Some(_)) => true,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{} / {}:\n  jinja2: {:?}\n  nsed:   {:?}",
                g.template,
                g.case,
                g.rendered.as_deref().or(g.error.as_deref()),
                got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} renders differ:\n{}",
        failures.len(),
        goldens.len(),
        failures.join("\n")
    );
}

#[test]
fn the_switches_reach_the_template() {
    // Negative controls: the goldens would not all pass if kwargs, the
    // generation prompt or the messages were ignored.
    let goldens = goldens();
    let find = |t: &str, c: &str| {
        goldens
            .iter()
            .find(|g| g.template == t && g.case == c)
            .unwrap_or_else(|| panic!("{t}/{c}"))
    };
    let on = find("Qwen-Qwen3-0.6B", "system-user");
    let off = find("Qwen-Qwen3-0.6B", "thinking-off");
    assert_ne!(
        on.rendered, off.rendered,
        "enable_thinking changes Qwen3's prompt"
    );
    assert!(off
        .rendered
        .as_deref()
        .is_some_and(|r| r.ends_with("<think>\n\n</think>\n\n")));
    let high = find("openai-gpt-oss-120b", "reasoning-effort-high");
    assert!(high
        .rendered
        .as_deref()
        .is_some_and(|r| r.contains("Reasoning: high")));
    assert!(high
        .rendered
        .as_deref()
        .is_some_and(|r| r.contains("Current date: 2024-07-26")));
    let gemma2 = find("google-gemma-2-2b-it", "system-user");
    let err = template(gemma2)
        .render(&gemma2.messages, true, &gemma2.kwargs)
        .expect_err("gemma 2 refuses a system turn");
    assert!(
        err.to_string().contains("System role not supported"),
        "{err}"
    );
    assert!(err.to_string().contains("line "), "{err}");
}
