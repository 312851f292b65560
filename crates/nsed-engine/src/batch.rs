//! Continuous batching: many requests to one model share each forward pass.
//!
//! A [`Batcher`] holds the requests in flight. Each [`Batcher::step`] runs
//! one forward pass over every active sequence (a new request's prompt
//! prefill beside the others' single decode tokens), hands each its logits,
//! and retires the finished ones; waiting requests join at the next step as
//! soon as the batch size and the KV-memory budget allow. Because the
//! model computes every row independently and each request samples with its
//! own seed-bound RNG, a request's result is identical to running it alone.
//!
//! An [`Engine`] runs a batcher on a thread of its own that owns the model;
//! any number of callers, on any threads, submit requests through cloned
//! [`EngineHandle`]s and wait on [`Ticket`]s. [`run_all`] is the same
//! batching for a set of requests known in advance, on the caller's thread.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Instant;

use candle_core::Tensor;
use rayon::prelude::*;

use crate::chat::{ChatTemplate, Message, TemplateError, TemplateKind};
use crate::generate::{check_prompt, Decoding, GenerateError, GenerateRequest, Generation};
use crate::model::{Logits, Sequence, Step};
use crate::runtime::{chat_tokens, chat_tokens_with, Runtime};
use crate::tokenizer::Tokenizer;

/// Why a batched request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The request's KV cache, reserved for its longest possible length, is larger than the
    /// whole KV budget, so it could never run even alone.
    #[error(
        "this request needs {need_mib:.1} MiB of KV cache ({positions} positions) but the \
         budget is {budget_mib:.1} MiB: raise the KV budget (--kv-mib) or lower max_tokens"
    )]
    OverBudget {
        /// Positions the request can reach (prompt plus `max_tokens`, capped at the context).
        positions: usize,
        /// KV cache the request needs at its longest, in MiB.
        need_mib: f64,
        /// The engine's whole KV budget, in MiB.
        budget_mib: f64,
    },
    /// The request is invalid for the model (empty or over-long prompt) or its forward pass
    /// or sampling failed.
    #[error(transparent)]
    Generate(#[from] GenerateError),
    /// The engine thread ended (it failed or was shut down) before sending the result.
    #[error("the engine of {model} stopped before answering (it failed or was shut down)")]
    Stopped {
        /// Registry id (or path) of the engine's model.
        model: String,
    },
}

/// How much an engine may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sequences in one forward pass.
    pub max_batch: usize,
    /// Bytes of KV cache the sequences in flight may hold together, each
    /// reserved for its longest possible length when it is admitted.
    pub kv_budget_bytes: usize,
    /// Prompt tokens that may join one step (at least one prompt always does):
    /// bounds the activations of a step where many prompts arrive at once.
    pub max_prefill_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch: 16,
            kv_budget_bytes: 4 << 30,
            max_prefill_tokens: 4096,
        }
    }
}

/// A unit of work for the model.
pub enum Work {
    /// Generate from a prompt.
    Generate(Box<Decoding>),
    /// Run a prompt and return the raw logits of its last position
    /// (log-probability judging).
    Score(Scoring),
}

/// A prompt whose last-position logits are wanted.
pub struct Scoring {
    seq: Sequence,
    prompt_ids: Vec<u32>,
}

/// What a finished [`Work`] produced.
#[derive(Debug)]
pub enum Done {
    /// The finished generation of a [`Work::Generate`].
    Generated(Box<Generation>),
    /// The raw logits of the prompt's last position.
    Scored(Vec<f32>),
}

impl Done {
    /// The generation; an internal error if the work was a scoring.
    pub fn generation(self) -> Result<Generation, BatchError> {
        match self {
            Done::Generated(g) => Ok(*g),
            Done::Scored(_) => Err(unexpected("logits", "a generation")),
        }
    }

    /// The scored logits; an internal error if the work was a generation.
    pub fn logits(self) -> Result<Vec<f32>, BatchError> {
        match self {
            Done::Scored(l) => Ok(l),
            Done::Generated(_) => Err(unexpected("a generation", "logits")),
        }
    }
}

fn unexpected(got: &str, wanted: &str) -> BatchError {
    BatchError::Generate(GenerateError::Internal(format!(
        "the engine answered {got} to a request for {wanted}"
    )))
}

impl Work {
    /// Check a generation request against the model (empty or over-long prompt).
    pub fn generate(
        rt: &Runtime,
        prompt_ids: &[u32],
        req: &GenerateRequest,
    ) -> Result<Self, BatchError> {
        Ok(Work::Generate(Box::new(Decoding::new(
            rt, prompt_ids, req,
        )?)))
    }

    /// Check a scoring request against the model (empty or over-long prompt).
    pub fn score(rt: &Runtime, prompt_ids: &[u32]) -> Result<Self, BatchError> {
        check_prompt(rt, prompt_ids, 0)?;
        Ok(Work::Score(Scoring {
            seq: Sequence::new(),
            prompt_ids: prompt_ids.to_vec(),
        }))
    }

    /// Positions its KV cache can reach.
    fn max_positions(&self) -> usize {
        match self {
            Work::Generate(d) => d.max_positions(),
            Work::Score(s) => s.prompt_ids.len(),
        }
    }

    /// Prompt tokens the next step runs (0 once prefilled).
    fn prefill_tokens(&self) -> usize {
        match self {
            Work::Generate(d) if d.prefilling() => d.prompt_len(),
            Work::Generate(_) => 0,
            Work::Score(s) => s.prompt_ids.len(),
        }
    }

    fn step(&mut self) -> Step<'_> {
        match self {
            Work::Generate(d) => d.step(),
            Work::Score(s) => Step {
                seq: &mut s.seq,
                tokens: &s.prompt_ids,
                want: Logits::Last,
            },
        }
    }

    /// Take one step's output; `Some` when the work is finished.
    fn accept(
        &mut self,
        rt: &Runtime,
        seconds: f64,
        logits: &Tensor,
        hidden: &Tensor,
    ) -> Result<Option<Done>, BatchError> {
        match self {
            Work::Generate(d) => {
                d.ran(seconds);
                let done = d.accept(rt, logits, hidden, |_, _| {})?;
                Ok(done.map(|g| Done::Generated(Box::new(g))))
            }
            Work::Score(_) => {
                let rows = logits.dim(0).map_err(GenerateError::from)?;
                let row = logits
                    .get(rows - 1)
                    .and_then(|r| r.to_vec1::<f32>())
                    .map_err(GenerateError::from)?;
                Ok(Some(Done::Scored(row)))
            }
        }
    }
}

/// Counters of an engine's work, for progress lines.
#[derive(Debug, Default)]
pub struct Counters {
    /// Forward passes run.
    pub steps: AtomicU64,
    /// Sequences summed over steps (mean batch = rows / steps).
    pub rows: AtomicU64,
    /// Prompt tokens prefilled.
    pub prompt_tokens: AtomicU64,
    /// Tokens sampled by generation requests (one per sequence per step).
    pub generated_tokens: AtomicU64,
}

/// Snapshot of [`Counters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Forward passes run.
    pub steps: u64,
    /// Sequences summed over steps (mean batch = rows / steps).
    pub rows: u64,
    /// Prompt tokens prefilled.
    pub prompt_tokens: u64,
    /// Tokens sampled by generation requests.
    pub generated_tokens: u64,
}

impl Counters {
    /// Read the counters (each on its own, relaxed: not one atomic snapshot).
    pub fn tally(&self) -> Tally {
        Tally {
            steps: self.steps.load(Ordering::Relaxed),
            rows: self.rows.load(Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.load(Ordering::Relaxed),
            generated_tokens: self.generated_tokens.load(Ordering::Relaxed),
        }
    }
}

struct Active<T> {
    tag: T,
    work: Work,
    reserved: usize,
}

/// The requests of one model in flight; `T` tags each with whatever the
/// caller needs to route its result.
pub struct Batcher<T> {
    limits: Limits,
    /// KV bytes one position takes in one sequence.
    position_bytes: usize,
    reserved: usize,
    waiting: VecDeque<Active<T>>,
    active: Vec<Active<T>>,
}

impl<T: Send> Batcher<T> {
    /// An empty batcher for `rt`'s model; a `max_batch` of 0 counts as 1.
    pub fn new(rt: &Runtime, limits: Limits) -> Self {
        let c = &rt.model.config;
        let position_bytes = c.n_layer * 2 * c.n_kv_head * c.head_dim * std::mem::size_of::<f32>();
        Self {
            limits: Limits {
                max_batch: limits.max_batch.max(1),
                ..limits
            },
            position_bytes,
            reserved: 0,
            waiting: VecDeque::new(),
            active: Vec::new(),
        }
    }

    /// Queue `work`; refused at once (and given back with its tag) when it
    /// could never fit the KV budget, even alone.
    pub fn push(&mut self, tag: T, work: Work) -> Result<(), (T, BatchError)> {
        let positions = work.max_positions();
        let need = positions * self.position_bytes;
        if need > self.limits.kv_budget_bytes {
            let mib = |b: usize| b as f64 / (1u64 << 20) as f64;
            return Err((
                tag,
                BatchError::OverBudget {
                    positions,
                    need_mib: mib(need),
                    budget_mib: mib(self.limits.kv_budget_bytes),
                },
            ));
        }
        self.waiting.push_back(Active {
            tag,
            work,
            reserved: need,
        });
        Ok(())
    }

    /// Nothing waiting or running.
    pub fn is_idle(&self) -> bool {
        self.waiting.is_empty() && self.active.is_empty()
    }

    /// Sequences in flight and waiting.
    pub fn load(&self) -> (usize, usize) {
        (self.active.len(), self.waiting.len())
    }

    /// Move waiting work into the batch, first come first served, while the
    /// batch size, the KV budget and the step's prompt-token cap allow.
    fn admit(&mut self) {
        let mut prefill: usize = self.active.iter().map(|a| a.work.prefill_tokens()).sum();
        while let Some(next) = self.waiting.front() {
            let tokens = next.work.prefill_tokens();
            let fits = self.active.len() < self.limits.max_batch
                && self.reserved + next.reserved <= self.limits.kv_budget_bytes
                && (prefill == 0 || prefill + tokens <= self.limits.max_prefill_tokens);
            if !fits {
                break;
            }
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            prefill += tokens;
            self.reserved += next.reserved;
            self.active.push(next);
        }
    }

    /// One forward pass over the batch; returns the work that finished (or
    /// failed) with its tag. A failing pass is retried one sequence at a
    /// time, so a bad request fails alone and the others go on.
    pub fn step(
        &mut self,
        rt: &mut Runtime,
        counters: &Counters,
    ) -> Vec<(T, Result<Done, BatchError>)> {
        self.admit();
        if self.active.is_empty() {
            return Vec::new();
        }
        let prompt_tokens: usize = self.active.iter().map(|a| a.work.prefill_tokens()).sum();
        let started = Instant::now();
        let result = {
            let mut steps: Vec<Step<'_>> = self.active.iter_mut().map(|a| a.work.step()).collect();
            rt.model.forward_batch(&mut steps)
        };
        let outputs: Vec<Result<(Tensor, Tensor), BatchError>> = match result {
            Ok(out) => out.into_iter().map(Ok).collect(),
            Err(_) => self
                .active
                .iter_mut()
                .map(|a| {
                    let mut out = rt
                        .model
                        .forward_batch(&mut [a.work.step()])
                        .map_err(|e| BatchError::Generate(GenerateError::from(e)))?;
                    out.pop()
                        .ok_or(BatchError::Generate(GenerateError::NoOutput))
                })
                .collect(),
        };
        let seconds = started.elapsed().as_secs_f64();
        counters.steps.fetch_add(1, Ordering::Relaxed);
        counters
            .rows
            .fetch_add(self.active.len() as u64, Ordering::Relaxed);
        counters
            .prompt_tokens
            .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        // Sampling (a pass over the vocabulary per sequence) in parallel:
        // each sequence's draw reads only its own logits and RNG.
        let rt: &Runtime = rt;
        let accepted: Vec<Result<Option<Done>, BatchError>> = self
            .active
            .par_iter_mut()
            .zip(outputs)
            .map(|(a, out)| {
                out.and_then(|(logits, hidden)| a.work.accept(rt, seconds, &logits, &hidden))
            })
            .collect();
        let generated = self
            .active
            .iter()
            .zip(&accepted)
            .filter(|(a, r)| matches!(a.work, Work::Generate(_)) && r.is_ok())
            .count();
        counters
            .generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
        let mut finished = Vec::new();
        let mut kept = Vec::with_capacity(self.active.len());
        for (a, done) in std::mem::take(&mut self.active).into_iter().zip(accepted) {
            match done {
                Ok(None) => kept.push(a),
                Ok(Some(d)) => {
                    self.reserved -= a.reserved;
                    finished.push((a.tag, Ok(d)));
                }
                Err(e) => {
                    self.reserved -= a.reserved;
                    finished.push((a.tag, Err(e)));
                }
            }
        }
        self.active = kept;
        finished
    }
}

/// Run a set of requests with batching on this thread; results in the
/// order of `requests`, each its own success or error.
pub fn run_all(
    rt: &mut Runtime,
    requests: Vec<Result<Work, BatchError>>,
    limits: Limits,
) -> Vec<Result<Done, BatchError>> {
    let counters = Counters::default();
    let mut results: Vec<Option<Result<Done, BatchError>>> =
        (0..requests.len()).map(|_| None).collect();
    let mut batcher = Batcher::new(rt, limits);
    for (i, work) in requests.into_iter().enumerate() {
        match work {
            Ok(work) => {
                if let Err((i, e)) = batcher.push(i, work) {
                    results[i] = Some(Err(e));
                }
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    while !batcher.is_idle() {
        for (i, r) in batcher.step(rt, &counters) {
            results[i] = Some(r);
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(BatchError::Generate(GenerateError::NoOutput))))
        .collect()
}

struct Job {
    kind: JobKind,
    reply: mpsc::SyncSender<Result<Done, BatchError>>,
}

enum JobKind {
    Generate {
        prompt_ids: Vec<u32>,
        req: Box<GenerateRequest>,
    },
    Score {
        prompt_ids: Vec<u32>,
    },
}

/// What every handle of one engine shares: the request channel and the
/// model's text side (tokenizer, chat template), which callers use to build
/// prompts without waiting for the model.
struct Shared {
    tx: mpsc::Sender<Job>,
    tokenizer: Arc<Tokenizer>,
    template: ChatTemplate,
    id: String,
    sha256: String,
    counters: Arc<Counters>,
}

/// A model served on its own thread with continuous batching.
pub struct Engine;

impl Engine {
    /// Move `rt` onto a new thread and return the first handle. The thread
    /// ends when the last handle is dropped.
    pub fn spawn(rt: Runtime, limits: Limits) -> Result<EngineHandle, std::io::Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let counters = Arc::new(Counters::default());
        let shared = Shared {
            tx,
            tokenizer: rt.tokenizer.clone(),
            template: rt.template.clone(),
            id: rt.id(),
            sha256: rt.sha256().unwrap_or_default(),
            counters: counters.clone(),
        };
        let name = format!("engine {}", shared.id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || serve(rt, limits, rx, &counters))?;
        Ok(EngineHandle {
            shared: Arc::new(shared),
        })
    }
}

/// The kernel thread count: `RAYON_NUM_THREADS` when set, else the cores.
pub fn default_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The pool every engine runs its steps on. One pool for all engines of the
/// process: a step runs on one of its workers (the serial parts beside the
/// kernels' parallel parts, as the binary runs commands), and engines of
/// several models take turns on the cores instead of spinning against each
/// other in pools of their own.
fn step_pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: std::sync::OnceLock<Option<rayon::ThreadPool>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(default_threads())
            .thread_name(|i| format!("nsed-step-{i}"))
            .build()
            .ok()
    })
    .as_ref()
}

/// The engine thread: wait for work when idle, otherwise take whatever has
/// arrived and run one step.
fn serve(mut rt: Runtime, limits: Limits, rx: mpsc::Receiver<Job>, counters: &Counters) {
    let mut batcher: Batcher<mpsc::SyncSender<Result<Done, BatchError>>> =
        Batcher::new(&rt, limits);
    let add = |batcher: &mut Batcher<_>, rt: &Runtime, job: Job| {
        let work = match job.kind {
            JobKind::Generate { prompt_ids, req } => Work::generate(rt, &prompt_ids, &req),
            JobKind::Score { prompt_ids } => Work::score(rt, &prompt_ids),
        };
        let refused = match work {
            Ok(work) => batcher.push(job.reply, work).err(),
            Err(e) => Some((job.reply, e)),
        };
        if let Some((reply, e)) = refused {
            // The caller may have given up waiting; nothing to do then.
            let _ = reply.send(Err(e));
        }
    };
    loop {
        if batcher.is_idle() {
            match rx.recv() {
                Ok(job) => add(&mut batcher, &rt, job),
                Err(_) => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            add(&mut batcher, &rt, job);
        }
        let finished = match step_pool() {
            Some(pool) => pool.install(|| batcher.step(&mut rt, counters)),
            None => batcher.step(&mut rt, counters),
        };
        for (reply, result) in finished {
            let _ = reply.send(result);
        }
    }
}

/// A caller's access to an [`Engine`]: cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct EngineHandle {
    shared: Arc<Shared>,
}

/// A submitted request; [`Ticket::wait`] blocks until its result.
pub struct Ticket {
    rx: mpsc::Receiver<Result<Done, BatchError>>,
    model: String,
}

impl Ticket {
    /// Block until the result comes; [`BatchError::Stopped`] if the engine thread is gone.
    pub fn wait(self) -> Result<Done, BatchError> {
        self.rx
            .recv()
            .unwrap_or(Err(BatchError::Stopped { model: self.model }))
    }
}

impl EngineHandle {
    fn submit(&self, kind: JobKind) -> Ticket {
        let (reply, rx) = mpsc::sync_channel(1);
        // A send fails only if the engine thread is gone; the ticket then
        // reports it when waited on.
        let _ = self.shared.tx.send(Job { kind, reply });
        Ticket {
            rx,
            model: self.shared.id.clone(),
        }
    }

    /// Start a generation; it runs batched with everything else in flight.
    pub fn submit_generate(&self, prompt_ids: Vec<u32>, req: GenerateRequest) -> Ticket {
        self.submit(JobKind::Generate {
            prompt_ids,
            req: Box::new(req),
        })
    }

    /// Start scoring a prompt (its last position's raw logits).
    pub fn submit_score(&self, prompt_ids: Vec<u32>) -> Ticket {
        self.submit(JobKind::Score { prompt_ids })
    }

    /// Generate and wait for the result ([`submit_generate`](Self::submit_generate), then
    /// [`Ticket::wait`]).
    pub fn generate(
        &self,
        prompt_ids: Vec<u32>,
        req: GenerateRequest,
    ) -> Result<Generation, BatchError> {
        self.submit_generate(prompt_ids, req).wait()?.generation()
    }

    /// Score a prompt and wait: the raw logits of its last position.
    pub fn score(&self, prompt_ids: Vec<u32>) -> Result<Vec<f32>, BatchError> {
        self.submit_score(prompt_ids).wait()?.logits()
    }

    /// The model's tokenizer, for building prompts without waiting for the engine.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.shared.tokenizer
    }

    /// The chat template the model is prompted with.
    pub fn template_kind(&self) -> TemplateKind {
        self.shared.template.kind
    }

    /// The chat template itself (reasoning format, switches).
    pub fn template(&self) -> &ChatTemplate {
        &self.shared.template
    }

    /// [`EngineHandle::chat_tokens`] with `extra` template switches (an
    /// agent's `enable_thinking`).
    pub fn chat_tokens_with(
        &self,
        messages: &[Message],
        extra: &std::collections::BTreeMap<String, serde_json::Value>,
    ) -> Result<Vec<u32>, TemplateError> {
        chat_tokens_with(
            &self.shared.template,
            &self.shared.tokenizer,
            messages,
            extra,
        )
    }

    /// A conversation rendered with the chat template and tokenized, as
    /// [`Runtime::chat_tokens`].
    pub fn chat_tokens(&self, messages: &[Message]) -> Result<Vec<u32>, TemplateError> {
        chat_tokens(&self.shared.template, &self.shared.tokenizer, messages)
    }

    /// The model's registry id (or path).
    pub fn id(&self) -> &str {
        &self.shared.id
    }

    /// Hex sha256 of the model's GGUF file; empty if it could not be computed.
    pub fn sha256(&self) -> &str {
        &self.shared.sha256
    }

    /// Snapshot of the engine's work counters.
    pub fn tally(&self) -> Tally {
        self.shared.counters.tally()
    }
}
