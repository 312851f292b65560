//! Reasoning models through a deliberation agent, on a synthetic Qwen3
//! model carrying a real reasoning template (DeepSeek-R1-Distill-Llama's,
//! whose generation prompt opens `<think>`): the thinking is kept apart
//! from the answer, a reply cut inside it has no answer, and a reasoning
//! budget closes the thinking for the model and lets it answer in a second
//! call. Settings a template cannot honour are refused before any call.

use std::path::{Path, PathBuf};

use nsed::answer::AnswerKind;
use nsed::deliberation::local::LocalAgent;
use nsed::deliberation::roster::AgentSpec;
use nsed::deliberation::{Agent, ProposeContext, ProposeRequest, Task};
use nsed::engine::batch::{Engine, EngineHandle};
use nsed::engine::runtime::Runtime;
use nsed::engine::synth::{self, SynthSpec};

fn template(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden/chat/templates")
        .join(format!("{name}.jinja"));
    std::fs::read_to_string(path).expect("template")
}

fn model(dir: &Path, template_name: &str) -> PathBuf {
    let path = dir.join(format!("{template_name}.gguf"));
    let spec = SynthSpec {
        chat_template: Some(template(template_name)),
        ..SynthSpec::like("qwen3-0.6b").expect("shape").scaled_down()
    };
    synth::write(&path, &spec).expect("write");
    path
}

fn engine(path: &Path) -> EngineHandle {
    let rt = Runtime::load(path.to_str().expect("utf-8")).expect("load");
    Engine::spawn(rt, Default::default()).expect("engine")
}

fn spec(extra: &str) -> AgentSpec {
    toml::from_str(&format!("name = \"r1\"\nmodel = \"synthetic\"\n{extra}")).expect("spec")
}

fn request() -> ProposeRequest {
    ProposeRequest {
        task: Task {
            id: "think".into(),
            problem: "What is 7 times 6?".into(),
            kind: AnswerKind::Numeric,
            system: None,
        },
        round: 1,
        context: ProposeContext::Fresh,
        sampling: None,
        seed: 3,
        inference_id: "think/r1".into(),
        max_tokens: 20,
        max_chars: 600,
    }
}

const R1: &str = "deepseek-ai-DeepSeek-R1-Distill-Llama-8B";

#[test]
fn a_reply_cut_inside_its_reasoning_has_no_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine(&model(dir.path(), R1));
    assert!(engine.template().opens_reasoning(&Default::default()));
    let mut agent = LocalAgent::new(spec(""), engine).expect("agent");
    let p = agent.propose(&request()).expect("proposal");
    let r = p.reasoning.as_ref().expect("the thinking is recorded");
    // Random weights never close the thought: all 20 tokens are reasoning.
    assert!(r.unfinished && !r.closed_by_budget, "{r:?}");
    assert_eq!(
        (r.tokens, p.usage.generated_tokens, p.usage.calls),
        (20, 20, 1)
    );
    assert_eq!(
        p.content, "",
        "nothing of the thought is shown as the answer"
    );
    assert_eq!(p.answer, None);
    assert!(!r.text.is_empty());
}

#[test]
fn a_reasoning_budget_closes_the_thinking_and_the_model_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = model(dir.path(), R1);
    let mut agent = LocalAgent::new(spec("reasoning_budget = 6"), engine(&path)).expect("agent");
    let p = agent.propose(&request()).expect("proposal");
    let r = p.reasoning.as_ref().expect("reasoning");
    assert!(r.closed_by_budget && !r.unfinished, "{r:?}");
    assert_eq!(r.tokens, 6);
    assert_eq!(p.usage.calls, 2, "the answer is a second call");
    assert_eq!(
        p.usage.generated_tokens, 20,
        "the token limit holds over both calls"
    );
    // The first six tokens are those of the unbudgeted reply (same seed),
    // and they are the reasoning, not the answer.
    let mut plain = LocalAgent::new(spec(""), engine(&path)).expect("agent");
    let whole = plain.propose(&request()).expect("proposal");
    let whole_thought = whole.reasoning.expect("reasoning").text;
    assert!(
        whole_thought.starts_with(r.text.as_str()),
        "{:?} is not the start of {whole_thought:?}",
        r.text
    );
    assert!(!p.content.is_empty() && !whole_thought.contains(&p.content));
}

#[test]
fn settings_a_template_cannot_honour_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Qwen2.5's template neither reasons nor has a switch.
    let qwen25 = engine(&model(dir.path(), "Qwen-Qwen2.5-7B-Instruct"));
    let err = LocalAgent::new(spec("reasoning = \"off\""), qwen25.clone())
        .err()
        .expect("no switch");
    assert!(err.to_string().contains("enable_thinking"), "{err}");
    let err = LocalAgent::new(spec("reasoning_budget = 64"), qwen25.clone())
        .err()
        .expect("no reasoning");
    assert!(err.to_string().contains("does not reason"), "{err}");
    assert!(LocalAgent::new(spec(""), qwen25).is_ok(), "the control");
    // Qwen3's has the switch: off renders an empty, closed thought.
    let qwen3 = engine(&model(dir.path(), "Qwen-Qwen3-0.6B"));
    let off = [(
        "enable_thinking".to_string(),
        serde_json::Value::Bool(false),
    )]
    .into_iter()
    .collect();
    assert!(!qwen3.template().opens_reasoning(&off));
    assert!(LocalAgent::new(spec("reasoning = \"off\""), qwen3).is_ok());
    // llama.cpp's QwQ template closes the thought unless thinking is asked
    // for: `reasoning = "on"` is what opens it.
    let qwq = engine(&model(dir.path(), "Qwen-QwQ-32B"));
    let on = [("enable_thinking".to_string(), serde_json::Value::Bool(true))]
        .into_iter()
        .collect();
    assert!(qwq.template().opens_reasoning(&on));
    assert!(!qwq.template().opens_reasoning(&Default::default()));
}

fn nsed() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_nsed"))
}

/// `nsed generate --json` on `model` with `extra` flags: the parsed document.
fn generate_json(model: &Path, extra: &[&str]) -> serde_json::Value {
    let out = nsed()
        .args([
            "generate",
            "-p",
            "What is 7 times 6?",
            "-n",
            "12",
            "-t",
            "0.8",
        ])
        .args(["--seed", "3", "--inference-id", "think", "--json", "-m"])
        .arg(model)
        .args(extra)
        .output()
        .expect("run nsed");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn generate_switches_thinking_records_it_and_verify_replays_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let qwen3 = model(dir.path(), "Qwen-Qwen3-0.6B");
    let artifact = dir.path().join("off.json");
    let art = artifact.to_str().expect("utf-8");
    let off = generate_json(
        &qwen3,
        &[
            "--reasoning",
            "off",
            "--top-logprobs",
            "3",
            "--artifact",
            art,
        ],
    );
    assert_eq!(off["template_kwargs"]["enable_thinking"], false);
    let default = generate_json(&qwen3, &[]);
    // The switch renders Qwen3's empty, closed thought into the prompt.
    let (off_ids, default_ids) = (&off["prompt_ids"], &default["prompt_ids"]);
    assert!(
        off_ids.as_array().expect("ids").len() > default_ids.as_array().expect("ids").len(),
        "{off_ids} vs {default_ids}"
    );
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&artifact).expect("artifact")).expect("JSON");
    assert_eq!(
        recorded["request"]["template_kwargs"]["enable_thinking"], false,
        "the artifact records the switch"
    );
    let verify = |path: &Path| {
        nsed()
            .args(["verify", "--artifact"])
            .arg(path)
            .arg("--model")
            .arg(&qwen3)
            .output()
            .expect("run nsed")
    };
    let out = verify(&artifact);
    assert!(
        out.status.success(),
        "the honest artifact: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Negative control: without the recorded switch the validator renders
    // another prompt, and the artifact fails.
    let mut tampered = recorded.clone();
    tampered["request"]
        .as_object_mut()
        .expect("request")
        .remove("template_kwargs");
    let tampered_path = dir.path().join("tampered.json");
    std::fs::write(&tampered_path, tampered.to_string()).expect("write");
    let out = verify(&tampered_path);
    assert_ne!(
        out.status.code(),
        Some(0),
        "a prompt rendered otherwise passed"
    );
}

#[test]
fn generate_keeps_the_thinking_apart_and_refuses_a_switch_the_template_lacks() {
    let dir = tempfile::tempdir().expect("tempdir");
    // R1's generation prompt opens the thought; random weights never close
    // it, so everything generated is reasoning and there is no answer.
    let r1 = generate_json(&model(dir.path(), R1), &[]);
    assert_eq!(r1["reasoning_unfinished"], true, "{r1}");
    assert_eq!(r1["answer"], "");
    assert_eq!(
        r1["reasoning"].as_str(),
        r1["text"].as_str().map(str::trim_start)
    );
    // Control: a template without reasoning gives the text as the answer.
    let qwen25 = model(dir.path(), "Qwen-Qwen2.5-7B-Instruct");
    let plain = generate_json(&qwen25, &[]);
    assert_eq!(plain["answer"], plain["text"]);
    assert!(plain["reasoning"].is_null());
    let out = nsed()
        .args(["generate", "-p", "hi", "--reasoning", "on", "-m"])
        .arg(&qwen25)
        .output()
        .expect("run nsed");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("enable_thinking") && err.lines().count() == 1,
        "{err}"
    );
}
