//! `nsed tokenize`, `nsed generate` and `nsed perplexity`: one model run
//! on one text.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::{inline_or_file, read_utf8};
use crate::bounds;
use crate::stdout::{closed as stdout_closed, note_written};
use nsed::deliberation::roster::ReasoningMode;
use nsed::engine::chat::Message;
use nsed::engine::generate::{generate, GenerateRequest, Generation};
use nsed::engine::gguf::Gguf;
use nsed::engine::perplexity::perplexity;
use nsed::engine::registry::Registry;
use nsed::engine::runtime::Runtime;
use nsed::engine::sampling::SamplingParams;
use nsed::verify::artifact::{Artifact, Request};

#[derive(Args)]
pub struct TokenizeArgs {
    /// Registry id or path to a GGUF file.
    #[arg(long, short)]
    model: String,
    /// The text to tokenize.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    text: Option<String>,
    /// Read the text from a file (must be UTF-8).
    #[arg(long)]
    file: Option<PathBuf>,
    /// Parse special-token strings such as <|im_start|> into their ids.
    #[arg(long)]
    special: bool,
    /// Never add BOS (by default BOS is added where the model asks for it).
    #[arg(long)]
    no_bos: bool,
    /// Print ids and token strings as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GenerateArgs {
    /// Registry id or path to a GGUF file.
    #[arg(long, short)]
    model: String,
    /// The user message (rendered with the model's chat template unless --raw).
    #[arg(
        long,
        short,
        conflicts_with = "prompt_file",
        required_unless_present = "prompt_file"
    )]
    prompt: Option<String>,
    /// Read the prompt from a file (must be UTF-8).
    #[arg(long)]
    prompt_file: Option<PathBuf>,
    /// A system message (otherwise the template's default, if any).
    #[arg(long)]
    system: Option<String>,
    /// Feed the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Turn a reasoning model's thinking on or off through its chat template's
    /// `enable_thinking` switch (Qwen3 and others; recorded in the artifact).
    /// Default: the template's own default.
    #[arg(long, value_enum, conflicts_with = "raw")]
    reasoning: Option<ReasoningMode>,
    /// Seed of the sampler (recorded; with --inference-id it keys the RNG).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inference id bound into the sampling seed.
    #[arg(long, default_value = "")]
    inference_id: String,
    /// 0 is greedy.
    #[arg(long, short, default_value_t = 0.0, value_parser = bounds::temperature)]
    temperature: f64,
    /// Keep the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0, value_parser = bounds::count(0, bounds::MAX_TOKENS))]
    top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0, value_parser = bounds::top_p)]
    top_p: f64,
    /// Drop tokens below min-p times the top probability (0: off).
    #[arg(long, default_value_t = 0.0, value_parser = bounds::min_p)]
    min_p: f64,
    /// Repetition penalty over the last 64 tokens (1: off).
    #[arg(long, default_value_t = 1.0, value_parser = bounds::repeat_penalty)]
    repeat_penalty: f32,
    /// Maximum new tokens.
    #[arg(long, short = 'n', default_value_t = 256, value_parser = bounds::tokens())]
    max_tokens: usize,
    /// Stop when the output contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Record the K most likely tokens and their log-probabilities per position.
    #[arg(long, default_value_t = 0, value_parser = bounds::count(0, 256))]
    top_logprobs: usize,
    /// Print one JSON document instead of streaming text.
    #[arg(long)]
    json: bool,
    /// Also write the JSON document to this file (atomically: complete or absent).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// Write a verifiable inference artifact (nsed.artifact/v1; see docs/artifact.md).
    /// Use with --top-logprobs K so validators can compare distributions.
    #[arg(long)]
    artifact: Option<PathBuf>,
    /// Add a TOPLOC-style activation proof (258 bytes per 32 tokens) to the artifact.
    #[arg(long, requires = "artifact")]
    proof: bool,
}

#[derive(Args)]
pub struct PerplexityArgs {
    #[arg(long, short)]
    model: String,
    /// UTF-8 text file.
    #[arg(long, short)]
    file: PathBuf,
    /// Tokens per chunk.
    #[arg(long, default_value_t = 512, value_parser = bounds::count(2, bounds::MAX_TOKENS))]
    ctx: usize,
    /// Score only the first N chunks.
    #[arg(long, value_parser = bounds::count(1, u32::MAX as u64))]
    chunks: Option<usize>,
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file (atomically: complete or absent).
    #[arg(long, short)]
    output: Option<PathBuf>,
}

pub fn tokenize(args: TokenizeArgs) -> Result<()> {
    let text = inline_or_file(&args.text, &args.file, "text file")?;
    let resolved = Registry::load()?.resolve(&args.model)?;
    let gguf = Gguf::open(&resolved.path)?;
    let tok = nsed::engine::tokenizer::Tokenizer::from_gguf(&gguf)?;
    let ids = tok.encode(&text, !args.no_bos, args.special);
    if args.json {
        let tokens = ids
            .iter()
            .map(|&id| tok.token_string(id))
            .collect::<Result<Vec<_>, _>>()?;
        outln!("{}", serde_json::json!({ "ids": ids, "tokens": tokens }));
    } else {
        let strs: Vec<String> = ids.iter().map(u32::to_string).collect();
        outln!("{}", strs.join(" "));
    }
    Ok(())
}

pub fn generate_cmd(args: GenerateArgs) -> Result<()> {
    let prompt = inline_or_file(&args.prompt, &args.prompt_file, "prompt file")?;
    if args.top_logprobs > nsed::verify::artifact::MAX_TOP_LOGPROBS {
        bail!(
            "--top-logprobs is at most {}",
            nsed::verify::artifact::MAX_TOP_LOGPROBS
        );
    }
    let mut rt = Runtime::load(&args.model)?;
    if args.reasoning.is_some() && !rt.template.has_thinking_switch() {
        bail!(
            "--reasoning: the chat template of {} has no enable_thinking switch; \
             leave --reasoning out",
            rt.id()
        );
    }
    let request = request_of(&args, prompt);
    let prompt_ids = nsed::verify::prompt_ids(&rt, &request)?;
    let req = request.to_generate(args.top_logprobs, args.proof);
    let mut stream = Utf8Stream::default();
    let json = args.json;
    let gen = generate(&mut rt, &prompt_ids, &req, |_, bytes| {
        if !json {
            stream.push(bytes);
        }
    })?;
    let doc = generation_json(&rt, &args, &req, &gen)?;
    if let Some(path) = &args.output {
        nsed::results::output::write_atomic(path, doc.as_bytes())?;
    }
    if let Some(path) = &args.artifact {
        let artifact = Artifact::from_generation(&rt, request, &gen, args.proof)?;
        nsed::results::output::write_atomic(path, artifact.to_json().as_bytes())?;
    }
    if json {
        outln!("{doc}");
    } else {
        stream.finish();
        eprintln!(
            "\n[{} prompt tokens, {} generated, finish: {:?}; prefill {:.1} tok/s, decode {:.1} tok/s]",
            gen.prompt_ids.len(),
            gen.tokens.len(),
            gen.finish_reason,
            gen.prefill_tok_per_s(),
            gen.decode_tok_per_s()
        );
    }
    Ok(())
}

/// The chat (or `--raw` prompt) and the sampling settings as a request.
fn request_of(args: &GenerateArgs, prompt: String) -> Request {
    let mut messages = Vec::new();
    if let Some(sys) = &args.system {
        messages.push(Message::new("system", sys));
    }
    messages.push(Message::new("user", &prompt));
    Request {
        messages: if args.raw { Vec::new() } else { messages },
        raw_prompt: args.raw.then_some(prompt),
        sampling: SamplingParams {
            temperature: args.temperature,
            top_k: args.top_k,
            top_p: args.top_p,
            min_p: args.min_p,
            repeat_penalty: args.repeat_penalty,
            ..Default::default()
        },
        seed: args.seed,
        inference_id: args.inference_id.clone(),
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        top_logprobs: args.top_logprobs,
        template_kwargs: template_kwargs(args),
    }
}

/// The chat template's switches `--reasoning` sets.
fn template_kwargs(args: &GenerateArgs) -> std::collections::BTreeMap<String, serde_json::Value> {
    args.reasoning
        .map(|r| {
            let on = serde_json::Value::Bool(r == ReasoningMode::On);
            [("enable_thinking".to_string(), on)].into()
        })
        .unwrap_or_default()
}

pub fn generation_json(
    rt: &Runtime,
    args: &GenerateArgs,
    req: &GenerateRequest,
    gen: &Generation,
) -> Result<String> {
    // A reasoning model's thinking apart from its answer (the template
    // says which markers; the prompt may already have opened the thought).
    let format = rt.template.reasoning_format();
    let opened = !args.raw && rt.template.opens_reasoning(&template_kwargs(args));
    let split = nsed::engine::reasoning::split(format, &gen.text, opened);
    let doc = serde_json::json!({
        "model": rt.id(),
        "model_sha256": rt.resolved.entry.as_ref().map(|e| e.sha256.clone()),
        "prompt": args.prompt,
        "system": args.system,
        "raw": args.raw,
        "request": req,
        "prompt_ids": gen.prompt_ids,
        "output_ids": gen.output_ids(),
        "text": gen.text,
        "reasoning": split.reasoning,
        "answer": split.answer,
        "reasoning_unfinished": split.unfinished,
        "template_kwargs": template_kwargs(args),
        "finish_reason": gen.finish_reason,
        "seed_string": gen.seed_string,
        "tokens": gen.tokens,
        "timings": {
            "prefill_seconds": gen.prefill_seconds,
            "decode_seconds": gen.decode_seconds,
            "prefill_tok_per_s": gen.prefill_tok_per_s(),
            "decode_tok_per_s": gen.decode_tok_per_s(),
        },
        "nsed_version": env!("CARGO_PKG_VERSION"),
    });
    Ok(serde_json::to_string_pretty(&doc)?)
}

/// Prints bytes as they come, holding back an incomplete UTF-8 sequence.
#[derive(Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => self.pending.len(),
        };
        let out: Vec<u8> = self.pending.drain(..valid).collect();
        if stdout_closed() {
            return;
        }
        let mut stdout = std::io::stdout().lock();
        let text = String::from_utf8_lossy(&out);
        note_written(
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush()),
        );
    }

    fn finish(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        outln!("{}", String::from_utf8_lossy(&rest));
    }
}

pub fn perplexity_cmd(args: PerplexityArgs) -> Result<()> {
    let text = read_utf8(&args.file, "text file")?;
    let mut rt = Runtime::load(&args.model)?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} chunks  {msg}  [{elapsed} < {eta}]",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let report = perplexity(&mut rt, &text, args.ctx, args.chunks, |done, total, ppl| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(format!("PPL {ppl:.4}"));
    })?;
    bar.finish_and_clear();
    let doc = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.output {
        nsed::results::output::write_atomic(path, doc.as_bytes())?;
    }
    if args.json {
        outln!("{doc}");
    } else {
        outln!(
            "{}: PPL = {:.4} +/- {:.5} over {} chunks of {} tokens ({} predictions, {} tokens in text)",
            report.model, report.ppl, report.ppl_err, report.chunks, report.ctx, report.scored, report.tokens
        );
    }
    Ok(())
}
