//! Agents that run a model in this process, and a memo that lets several
//! methods share identical calls (inference is deterministic, so a repeated
//! request would reproduce the same tokens; each method is still charged the
//! call's full cost).
//!
//! Each model runs on its own batching engine ([`crate::engine::batch`]):
//! a call announced with [`Agent::prefetch`] is submitted at once, so a
//! phase's calls (every agent's proposal, every evaluation, the k samples of
//! self-consistency) and the calls of items run in parallel share forward
//! passes; results are the same as one call at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::calls::{self, CallLog};

use super::roster::{AgentSpec, ReasoningMode};
use super::{
    parse, prompts, Agent, AgentError, Call, EvalMode, EvaluateRequest, Evaluation, Proposal,
    ProposeContext, ProposeRequest, Reasoning, Usage,
};
use crate::answer::{self, AnswerKind};
use crate::engine::batch::{BatchError, Done, Engine, EngineHandle, Limits, Ticket};
use crate::engine::chat::{Message, TemplateKind};
use crate::engine::device::{default_device, ComputeDevice};
use crate::engine::generate::{FinishReason, GenerateRequest, Generation};
use crate::engine::reasoning::{self, ReasoningFormat, Split};
use crate::engine::runtime::{Runtime, RuntimeError};
use crate::engine::sampling::{log_softmax, SamplingParams};

/// Load each distinct model once, each on its own batching engine; clones
/// share the engines (for workers running items in parallel).
#[derive(Default, Clone)]
pub struct ModelPool {
    limits: Limits,
    loaded: HashMap<String, EngineHandle>,
}

impl ModelPool {
    /// An empty pool whose engines will run with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            loaded: HashMap::new(),
        }
    }

    /// The engine of `spec` on the default device (`--device`).
    pub fn get(&mut self, spec: &str) -> Result<EngineHandle, RuntimeError> {
        self.get_on(spec, None)
    }

    /// The engine of `spec` on `device` (an agent's own), else the default;
    /// one engine per model and device.
    pub fn get_on(
        &mut self,
        spec: &str,
        device: Option<ComputeDevice>,
    ) -> Result<EngineHandle, RuntimeError> {
        let device = device.unwrap_or_else(default_device);
        let key = format!("{spec}@{device}");
        if let Some(engine) = self.loaded.get(&key) {
            return Ok(engine.clone());
        }
        let engine = Engine::spawn(Runtime::load_on(spec, device)?, self.limits)?;
        self.loaded.insert(key, engine.clone());
        Ok(engine)
    }

    /// `(id, sha256)` of every loaded model, sorted.
    pub fn models(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .loaded
            .values()
            .map(|e| (e.id().to_string(), e.sha256().to_string()))
            .collect();
        v.sort();
        v
    }

    /// The engines, for progress lines (tokens generated so far).
    pub fn engines(&self) -> Vec<EngineHandle> {
        self.loaded.values().cloned().collect()
    }
}

/// A roster agent whose model runs in this process on a batching engine.
pub struct LocalAgent {
    spec: AgentSpec,
    model_id: String,
    engine: EngineHandle,
    yes_ids: Vec<u32>,
    no_ids: Vec<u32>,
    /// Calls started by [`Agent::prefetch`], by request.
    pending: HashMap<String, Ticket>,
    /// The template switches this agent's prompts are rendered with
    /// (`enable_thinking` from the roster's `reasoning`).
    template_kwargs: BTreeMap<String, serde_json::Value>,
    /// How the model marks its reasoning.
    reasoning: ReasoningFormat,
    /// The generation prompt leaves the reasoning open (DeepSeek-R1, QwQ).
    reasoning_opened: bool,
}

impl LocalAgent {
    /// An agent for roster entry `spec` running on `engine`; finds the model's single-token
    /// Yes/No ids for log-probability evaluation. A `reasoning` setting the
    /// model's template cannot honour is an error.
    pub fn new(spec: AgentSpec, engine: EngineHandle) -> Result<Self, AgentError> {
        let (model_id, yes_ids, no_ids) = {
            let single = |words: &[&str]| -> Vec<u32> {
                let mut ids: Vec<u32> = words
                    .iter()
                    .filter_map(
                        |w| match engine.tokenizer().encode(w, false, false).as_slice() {
                            [id] => Some(*id),
                            _ => None,
                        },
                    )
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            };
            (
                engine.id().to_string(),
                single(&["Yes", " Yes", "yes", " yes", "YES"]),
                single(&["No", " No", "no", " no", "NO"]),
            )
        };
        let template = engine.template();
        let reasoning = template.reasoning_format();
        let refuse = |message: String| AgentError::Failed {
            agent: spec.name.clone(),
            message,
        };
        let mut template_kwargs = BTreeMap::new();
        if let Some(mode) = spec.reasoning {
            if !template.has_thinking_switch() {
                return Err(refuse(format!(
                    "reasoning = \"{}\": the chat template of {model_id} has no switch for it \
                     (enable_thinking); remove the setting",
                    if mode == ReasoningMode::On {
                        "on"
                    } else {
                        "off"
                    }
                )));
            }
            template_kwargs.insert(
                "enable_thinking".to_string(),
                serde_json::Value::Bool(mode == ReasoningMode::On),
            );
        }
        if spec.reasoning_budget.is_some() && reasoning == ReasoningFormat::None {
            return Err(refuse(format!(
                "reasoning_budget: {model_id} does not reason (its chat template marks no \
                 reasoning); remove the setting"
            )));
        }
        let reasoning_opened = template.opens_reasoning(&template_kwargs);
        Ok(Self {
            spec,
            model_id,
            engine,
            yes_ids,
            no_ids,
            pending: HashMap::new(),
            template_kwargs,
            reasoning,
            reasoning_opened,
        })
    }

    fn fail(&self, message: impl std::fmt::Display) -> AgentError {
        AgentError::Failed {
            agent: self.spec.name.clone(),
            message: message.to_string(),
        }
    }

    fn is_plain(&self) -> bool {
        self.engine.template_kind() == TemplateKind::Plain
    }

    /// Tokens of a prompt: chat messages for instruction models (with any
    /// `extra` turns), the plain text for base models.
    /// A template that refuses the conversation fails the call.
    fn prompt_ids(&self, p: &prompts::Prompt, extra: &[Message]) -> Result<Vec<u32>, AgentError> {
        if self.is_plain() {
            return Ok(self.engine.tokenizer().encode(&p.plain, true, false));
        }
        let mut messages = Vec::new();
        if let Some(system) = p.system.as_ref().or(self.spec.system.as_ref()) {
            messages.push(Message::new("system", system));
        }
        messages.push(Message::new("user", &p.user));
        messages.extend_from_slice(extra);
        self.engine
            .chat_tokens_with(&messages, &self.template_kwargs)
            .map_err(|e| self.fail(e))
    }

    fn request(
        &self,
        sampling: SamplingParams,
        seed: u64,
        inference_id: &str,
        max_tokens: usize,
        stop: Vec<String>,
    ) -> GenerateRequest {
        GenerateRequest {
            sampling,
            max_tokens,
            stop,
            seed: seed.wrapping_add(self.spec.seed_offset),
            inference_id: inference_id.to_string(),
            ..GenerateRequest::default()
        }
    }

    /// Start a generation (or a scoring, without `req`) unless it is
    /// already in flight.
    fn start(&mut self, ids: Vec<u32>, req: Option<GenerateRequest>) {
        let k = call_key(&ids, req.as_ref());
        if self.pending.contains_key(&k) {
            return;
        }
        let ticket = match req {
            Some(req) => self.engine.submit_generate(ids, req),
            None => self.engine.submit_score(ids),
        };
        self.pending.insert(k, ticket);
    }

    /// The result of a call: the prefetched one if it was started, else run now.
    fn collect(&mut self, ids: Vec<u32>, req: Option<GenerateRequest>) -> Result<Done, AgentError> {
        let k = call_key(&ids, req.as_ref());
        let ticket = match self.pending.remove(&k) {
            Some(t) => t,
            None => match req {
                Some(req) => self.engine.submit_generate(ids, req),
                None => self.engine.submit_score(ids),
            },
        };
        ticket.wait().map_err(|e| self.fail(e))
    }

    fn run(&mut self, ids: Vec<u32>, req: GenerateRequest) -> Result<Generation, AgentError> {
        self.collect(ids, Some(req))?
            .generation()
            .map_err(|e: BatchError| self.fail(e))
    }

    /// The generation a proposal makes.
    fn propose_call(&self, req: &ProposeRequest) -> Result<PreparedCall, AgentError> {
        let p = prompts::propose(&req.task, &req.context, req.max_chars);
        let ids = self.prompt_ids(&p, &[])?;
        let sampling = req.sampling.clone().unwrap_or_else(|| self.spec.sampling());
        // With a reasoning budget the first call stops at it; `propose`
        // closes the reasoning and asks for the rest.
        let first = self
            .spec
            .reasoning_budget
            .map_or(req.max_tokens, |b| b.min(req.max_tokens));
        let g = self.request(
            sampling,
            req.seed,
            &req.inference_id,
            first,
            self.stop_for(&p),
        );
        Ok((ids, g, p))
    }

    /// The first generation of a generative evaluation.
    fn evaluate_call(&self, req: &EvaluateRequest) -> Result<PreparedCall, AgentError> {
        let anchor = req
            .anchor
            .as_deref()
            .map(|a| (a, req.anchor_answer.as_deref()));
        let p = prompts::evaluate(&req.task, anchor, &req.candidates, req.max_chars);
        let ids = self.prompt_ids(&p, &[])?;
        let g = self.request(
            SamplingParams::default(),
            req.seed,
            &req.inference_id,
            req.max_tokens,
            self.stop_for(&p),
        );
        Ok((ids, g, p))
    }

    /// The prompts a log-probability evaluation scores, one per candidate.
    fn judge_prompts(&self, req: &EvaluateRequest) -> Result<Vec<Vec<u32>>, AgentError> {
        req.candidates
            .iter()
            .map(|c| self.prompt_ids(&prompts::judge(&req.task, &c.text, req.max_chars), &[]))
            .collect()
    }

    fn eval_mode(&self, req: &EvaluateRequest) -> EvalMode {
        self.spec.evaluation.unwrap_or(req.mode)
    }

    fn stop_for(&self, p: &prompts::Prompt) -> Vec<String> {
        if self.is_plain() {
            p.plain_stop.clone()
        } else {
            Vec::new()
        }
    }

    /// A reply cut into reasoning and answer, in the model's format.
    fn split(&self, text: &str) -> Split {
        reasoning::split(self.reasoning, text, self.reasoning_opened)
    }

    /// Generated tokens up to and including the end of the reasoning: the
    /// shortest prefix of `ids` whose text already holds the whole thought.
    fn reasoning_tokens(&self, ids: &[u32], split: &Split) -> usize {
        if split.reasoning.is_none() {
            return 0;
        }
        if split.unfinished {
            return ids.len();
        }
        let tokenizer = self.engine.tokenizer();
        let closed = |k: usize| {
            tokenizer.decode(&ids[..k]).is_ok_and(|t| {
                let split = self.split(&t);
                !split.unfinished && split.reasoning.is_some()
            })
        };
        // Monotone in k once the closing marker is in: binary search.
        let (mut lo, mut hi) = (0, ids.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if closed(mid) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        lo
    }

    /// The proposal's whole reply. Without a reasoning budget, or when the
    /// first call ended on its own, that is the first call. When the first
    /// call spent the budget (and the proposal's token limit is not reached),
    /// the reasoning is closed for the model if still open, and a second
    /// call, on the prompt plus everything so far, writes the rest with the
    /// tokens left (its re-read prompt is counted in `usage`).
    fn within_budget(
        &mut self,
        req: &ProposeRequest,
        ids: Vec<u32>,
        first_req: GenerateRequest,
        first: Generation,
    ) -> Result<Reply, AgentError> {
        let spent = first.tokens.len();
        let budget_hit = self.spec.reasoning_budget.is_some()
            && first.finish_reason == FinishReason::Length
            && spent < req.max_tokens;
        let first_split = self.split(&first.text);
        if !budget_hit {
            let tokens = self.reasoning_tokens(&first.output_ids(), &first_split);
            return Ok(Reply {
                usage: usage_of(&first),
                split: first_split,
                reasoning_tokens: tokens,
                closed_by_budget: false,
                last: first,
            });
        }
        let closing = match (first_split.unfinished, self.reasoning.closing()) {
            (true, Some(closing)) => closing,
            _ => "",
        };
        let mut next = ids;
        next.extend(first.output_ids());
        next.extend(self.engine.tokenizer().encode(closing, false, true));
        let rest = GenerateRequest {
            max_tokens: req.max_tokens - spent,
            inference_id: format!("{}/answer", req.inference_id),
            ..first_req
        };
        let second = self.run(next, rest)?;
        let text = format!("{}{closing}{}", first.text, second.text);
        let split = self.split(&text);
        let reasoning_tokens = if closing.is_empty() {
            self.reasoning_tokens(&first.output_ids(), &first_split)
        } else {
            spent
        };
        let mut usage = usage_of(&first);
        usage += usage_of(&second);
        Ok(Reply {
            usage,
            split,
            reasoning_tokens,
            closed_by_budget: !closing.is_empty(),
            last: second,
        })
    }

    fn evaluate_generative(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
        let labels: Vec<String> = req.candidates.iter().map(|c| c.label.clone()).collect();
        let (ids, first, p) = self.evaluate_call(req)?;
        let g = self.run(ids, first)?;
        let mut usage = usage_of(&g);
        let mut raw = vec![g.text.clone()];
        // Scores are read from the answer part only, never the thinking.
        let answer = self.split(&g.text).answer;
        let mut parsed = parse::parse_scores(&answer, &labels);
        if parsed.valid() == 0 {
            // One retry with a correction; a base model is instead started
            // on the first label so it continues in the format.
            let retry_ids = if self.is_plain() {
                self.engine
                    .tokenizer()
                    .encode(&format!("{}{}:", p.plain, labels[0]), true, false)
            } else {
                self.prompt_ids(
                    &p,
                    &[
                        Message::new("assistant", &answer),
                        Message::new("user", &prompts::evaluate_retry(&labels)),
                    ],
                )?
            };
            let id = format!("{}/retry", req.inference_id);
            let retry = self.request(
                SamplingParams::default(),
                req.seed,
                &id,
                req.max_tokens,
                self.stop_for(&p),
            );
            let g2 = self.run(retry_ids, retry)?;
            usage += usage_of(&g2);
            let text = if self.is_plain() {
                format!("{}:{}", labels[0], g2.text)
            } else {
                g2.text.clone()
            };
            parsed = parse::parse_scores(&self.split(&text).answer, &labels);
            raw.push(text);
        }
        let abstained = parsed.valid() == 0;
        Ok(Evaluation {
            mode: EvalMode::Generative,
            scores: parsed.scores,
            reasons: parsed.reasons,
            raw,
            abstained,
            notes: parsed.notes,
            usage,
            attestation: None,
        })
    }

    fn evaluate_logprob(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
        if self.yes_ids.is_empty() || self.no_ids.is_empty() {
            return Err(self.fail("the vocabulary has no single-token Yes/No"));
        }
        let mut usage = Usage::default();
        let mut scores = Vec::new();
        let mut raw = Vec::new();
        let all = self.judge_prompts(req)?;
        // Every candidate's prompt in flight at once: they share passes.
        for ids in &all {
            self.start(ids.clone(), None);
        }
        for ids in all {
            let start = std::time::Instant::now();
            let prompt_tokens = ids.len();
            let row = self
                .collect(ids, None)?
                .logits()
                .map_err(|e: BatchError| self.fail(e))?;
            let lp = log_softmax(&row);
            let mass =
                |ids: &[u32]| -> f64 { ids.iter().map(|&i| (lp[i as usize] as f64).exp()).sum() };
            let (yes, no) = (mass(&self.yes_ids), mass(&self.no_ids));
            usage += Usage {
                calls: 1,
                prompt_tokens,
                generated_tokens: 0,
                seconds: start.elapsed().as_secs_f64(),
            };
            raw.push(format!("p(yes)={yes:.6} p(no)={no:.6}"));
            scores.push((yes + no > 0.0).then(|| 100.0 * (yes - no) / (yes + no)));
        }
        let abstained = scores.iter().all(Option::is_none);
        Ok(Evaluation {
            mode: EvalMode::Logprob,
            reasons: vec![None; scores.len()],
            scores,
            raw,
            abstained,
            notes: Vec::new(),
            usage,
            attestation: None,
        })
    }
}

fn usage_of(g: &Generation) -> Usage {
    Usage {
        calls: 1,
        prompt_tokens: g.prompt_ids.len(),
        generated_tokens: g.tokens.len(),
        seconds: g.prefill_seconds + g.decode_seconds,
    }
}

/// The reasoning part of a response: everything before the final answer's
/// line.
fn thought_process(text: &str) -> String {
    let cut = ["\\boxed", "final answer"]
        .iter()
        .filter_map(|m| text.rfind(m))
        .min()
        .map(|i| text[..i].rfind('\n').unwrap_or(0))
        .unwrap_or(text.len());
    text[..cut].trim_end().to_string()
}

/// The answer a proposer committed to. A debate reply is read without the
/// solutions it quotes from the others; an output cut at the token limit
/// counts only a finished `\boxed{}` (its last number or a "final answer"
/// line may be a fragment: a run of "000…" is not the answer 0).
fn own_answer(
    text: &str,
    context: &ProposeContext,
    finish: FinishReason,
) -> Option<answer::Extracted> {
    let found = match context {
        ProposeContext::Debate { .. } => answer::extract(&answer::without_quoted_solutions(text)),
        _ => answer::extract(text),
    }?;
    let cut = matches!(finish, FinishReason::Length | FinishReason::Context);
    (!cut || found.found == answer::Found::Boxed).then_some(found)
}

impl Agent for LocalAgent {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError> {
        let (ids, first, _) = self.propose_call(req)?;
        let g = self.run(ids.clone(), first.clone())?;
        let reply = self.within_budget(req, ids, first, g)?;
        let (g, split) = (&reply.last, &reply.split);
        // A program's answer (its behaviour) is filled in by the code
        // benchmark's agent wrapper, which can run it. A reply that ended
        // inside its reasoning has no answer.
        let found = (req.task.kind != AnswerKind::Code && !split.unfinished)
            .then(|| own_answer(&split.answer, &req.context, g.finish_reason))
            .flatten();
        let answer = found
            .as_ref()
            .and_then(|f| answer::canonical(&f.raw, req.task.kind));
        Ok(Proposal {
            agent: self.spec.name.clone(),
            model: self.model_id.clone(),
            thought_process: split
                .reasoning
                .clone()
                .unwrap_or_else(|| thought_process(&split.answer)),
            content: split.answer.clone(),
            answer,
            found: found.map(|f| f.found),
            behaviour: None,
            finish_reason: serde_json::to_value(g.finish_reason)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            inference_id: req.inference_id.clone(),
            usage: reply.usage,
            attestation: None,
            reasoning: reply.reasoning(),
        })
    }

    fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
        match self.eval_mode(req) {
            EvalMode::Generative => self.evaluate_generative(req),
            EvalMode::Logprob => self.evaluate_logprob(req),
        }
    }

    /// Submit the call now; it shares forward passes with whatever else is
    /// in flight, and `propose`/`evaluate` collect it. A call whose prompt
    /// cannot be built is not started: `propose`/`evaluate` report it.
    fn prefetch(&mut self, call: Call<'_>) {
        match call {
            Call::Propose(req) => {
                if let Ok((ids, g, _)) = self.propose_call(req) {
                    self.start(ids, Some(g));
                }
            }
            Call::Evaluate(req) => match self.eval_mode(req) {
                EvalMode::Generative => {
                    if let Ok((ids, g, _)) = self.evaluate_call(req) {
                        self.start(ids, Some(g));
                    }
                }
                EvalMode::Logprob => {
                    for ids in self.judge_prompts(req).unwrap_or_default() {
                        self.start(ids, None);
                    }
                }
            },
        }
    }
}

/// A proposal's reply: its last generation (for the finish reason), the
/// text split into reasoning and answer, and the compute of its calls.
struct Reply {
    last: Generation,
    split: Split,
    usage: Usage,
    reasoning_tokens: usize,
    closed_by_budget: bool,
}

impl Reply {
    fn reasoning(&self) -> Option<Reasoning> {
        self.split.reasoning.as_ref().map(|text| Reasoning {
            text: text.clone(),
            tokens: self.reasoning_tokens,
            unfinished: self.split.unfinished,
            closed_by_budget: self.closed_by_budget,
        })
    }
}

/// A call ready to submit: prompt ids, the generation request, the prompt.
type PreparedCall = (Vec<u32>, GenerateRequest, prompts::Prompt);

/// The key of an engine call: its prompt and, for a generation, the request.
fn call_key(ids: &[u32], req: Option<&GenerateRequest>) -> String {
    format!("{}|{}", key(&ids), req.map(key).unwrap_or_default())
}

/// Remembers an agent's replies by request, so methods that issue the same
/// call (round-1 proposals are the plurality vote's ballots and debate's
/// first round) share it. Requests name their item, so nothing is shared across
/// items; a run's memo holds a few kilobytes per item.
///
/// With a [`CallLog`], every reply is also logged to the run's directory and
/// a resumed run reads it back instead of calling again.
pub struct Memo {
    inner: Box<dyn Agent>,
    proposals: HashMap<String, Proposal>,
    evaluations: HashMap<String, Evaluation>,
    log: Option<Arc<CallLog>>,
}

impl Memo {
    /// A memo around `inner` that keeps replies in memory only.
    pub fn new(inner: Box<dyn Agent>) -> Self {
        Self {
            inner,
            proposals: HashMap::new(),
            evaluations: HashMap::new(),
            log: None,
        }
    }

    /// A memo whose replies are also kept in (and read back from) `log`.
    pub fn logged(inner: Box<dyn Agent>, log: Option<Arc<CallLog>>) -> Self {
        Self {
            log,
            ..Self::new(inner)
        }
    }

    fn log_key<R: serde::Serialize>(&self, kind: &str, req: &R) -> String {
        calls::call_key(self.inner.name(), self.inner.model_id(), kind, req)
    }

    /// The logged reply of a call, if the log has it.
    fn logged_reply<T: serde::de::DeserializeOwned, R: serde::Serialize>(
        &self,
        kind: &str,
        req: &R,
    ) -> Option<T> {
        self.log.as_ref()?.get(&self.log_key(kind, req))
    }

    fn is_logged<R: serde::Serialize>(&self, kind: &str, req: &R) -> bool {
        self.log
            .as_ref()
            .is_some_and(|log| log.contains(&self.log_key(kind, req)))
    }

    fn log_reply<T: serde::Serialize, R: serde::Serialize>(
        &self,
        item: &str,
        kind: &str,
        req: &R,
        reply: &T,
    ) {
        if let Some(log) = &self.log {
            // A reply that cannot be logged only runs again on resume.
            let _ = log.put(item, &self.log_key(kind, req), reply);
        }
    }
}

const PROPOSE: &str = "propose";
const EVALUATE: &str = "evaluate";

fn key<T: serde::Serialize>(req: &T) -> String {
    serde_json::to_string(req).unwrap_or_default()
}

impl Agent for Memo {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError> {
        let k = key(req);
        if let Some(p) = self.proposals.get(&k) {
            return Ok(p.clone());
        }
        let p = match self.logged_reply(PROPOSE, req) {
            Some(p) => p,
            None => {
                let p = self.inner.propose(req)?;
                self.log_reply(&req.task.id, PROPOSE, req, &p);
                p
            }
        };
        self.proposals.insert(k, p.clone());
        Ok(p)
    }

    fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
        let k = key(req);
        if let Some(e) = self.evaluations.get(&k) {
            return Ok(e.clone());
        }
        let e = match self.logged_reply(EVALUATE, req) {
            Some(e) => e,
            None => {
                let e = self.inner.evaluate(req)?;
                self.log_reply(&req.task.id, EVALUATE, req, &e);
                e
            }
        };
        self.evaluations.insert(k, e.clone());
        Ok(e)
    }

    fn prefetch(&mut self, call: Call<'_>) {
        let known = match call {
            Call::Propose(req) => {
                self.proposals.contains_key(&key(req)) || self.is_logged(PROPOSE, req)
            }
            Call::Evaluate(req) => {
                self.evaluations.contains_key(&key(req)) || self.is_logged(EVALUATE, req)
            }
        };
        if !known {
            self.inner.prefetch(call);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thought_process_is_the_text_before_the_answer_line() {
        let t = "Step 1: 2+2=4.\nStep 2: done.\nSo the answer is \\boxed{4}.";
        assert_eq!(thought_process(t), "Step 1: 2+2=4.\nStep 2: done.");
        assert_eq!(thought_process("no answer here"), "no answer here");
    }

    #[test]
    fn a_cut_output_counts_only_a_finished_box() {
        let fresh = ProposeContext::Fresh;
        let zeros = "The total is 1200000000000000000000";
        // Finished: the last number is the answer; cut: it is a fragment.
        let done = own_answer(zeros, &fresh, FinishReason::Eos).unwrap();
        assert_eq!(done.raw, "1200000000000000000000");
        assert!(own_answer(zeros, &fresh, FinishReason::Length).is_none());
        assert!(own_answer("final answer is 12", &fresh, FinishReason::Context).is_none());
        let boxed = "So \\boxed{42}. Let me also check 4";
        let cut = own_answer(boxed, &fresh, FinishReason::Length).unwrap();
        assert_eq!(cut.raw, "42");
    }

    #[test]
    fn a_debater_is_not_credited_with_a_quoted_box() {
        let debate = ProposeContext::Debate {
            own: None,
            others: vec!["\\boxed{575}".into()],
        };
        let text = "So, the answer is 0.225.\n```\n\nOne agent solution:\n```\nJohn is \\boxed{575} miles away.\n```";
        let got = own_answer(text, &debate, FinishReason::Eos).unwrap();
        assert_eq!(got.raw, "0.225");
        // The same text outside a debate is read as written.
        let naive = own_answer(text, &ProposeContext::Fresh, FinishReason::Eos).unwrap();
        assert_eq!(naive.raw, "575");
    }
}
