//! The bench runner: a checked [`Plan`] in, a finished (or resumed) run
//! directory out. It measures the build's numerics stamp, opens the run
//! (refusing a resume under other settings before any model loads), connects
//! to the federation when the roster has remote agents, and runs the items on
//! `parallel` workers whose model calls are batched together; each finished
//! item is journaled at once and reported to a [`Progress`]. `nsed bench`
//! parses its arguments into a plan and draws the progress; everything else
//! is here, testable without the binary.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::code::{CodeAgent, CodeContext};
use super::datasets::{Dataset, DatasetError, Item, Selection};
use super::{
    stamp, BenchError, CodeSettings, CodeVersion, Fingerprint, Harness, ItemRecord, Method,
    MethodKey, RunDir,
};
use crate::answer::Outcome;
use crate::deliberation::calls::{CallLog, CallLogError, CALLS};
use crate::deliberation::local::{LocalAgent, Memo, ModelPool};
use crate::deliberation::roster::{AgentSpec, Roster};
use crate::deliberation::{Agent, Settings};
use crate::engine::batch::{EngineHandle, Limits};
use crate::engine::runtime::RuntimeError;
use crate::engine::sampling::SamplingParams;
use crate::federation::{self, Federation, FederationError};
use crate::results::provenance::{self, RunInfo};

/// Why a bench run stopped before its last item.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The selection picks no item of the dataset.
    #[error("no items selected from {set} ({available} in the set)")]
    NoItems {
        /// The dataset's name.
        set: String,
        /// Items the dataset has.
        available: usize,
    },
    /// The dataset or the selection is unusable.
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    /// The run directory cannot be opened, resumed or written.
    #[error(transparent)]
    Bench(#[from] BenchError),
    /// This build's numerics stamp cannot be measured.
    #[error(transparent)]
    Stamp(#[from] stamp::StampError),
    /// Connecting to or logging the federation (remote agents) fails.
    #[error(transparent)]
    Federation(#[from] FederationError),
    /// The call log (`calls.jsonl`) cannot be read back or written.
    #[error(transparent)]
    Calls(#[from] CallLogError),
    /// The self-consistency baseline's model (or, when unneeded, the first agent's) fails to load.
    #[error("self-consistency model {model}: {source}")]
    Model {
        /// The model's registry id or path.
        model: String,
        /// Why it cannot be loaded.
        source: RuntimeError,
    },
    /// A worker thread panicked: a bug, not the input's fault.
    #[error("a bench worker panicked")]
    WorkerPanicked,
}

/// Everything a run needs, parsed and checked: what to run, on which items,
/// where, and how wide.
pub struct Plan {
    /// The agents and baselines.
    pub roster: Roster,
    /// The dataset, loaded.
    pub dataset: Dataset,
    /// Which items of the dataset to run.
    pub selection: Selection,
    /// The methods to run on every item.
    pub methods: Vec<Method>,
    /// Deliberation settings: seed, token limits, halting, evaluation mode.
    pub settings: Settings,
    /// Present for the code sets: the sandbox and the tests' settings.
    pub code: Option<(Arc<CodeContext>, CodeSettings)>,
    /// The run directory (`meta.json`, `items.jsonl`, summaries).
    pub out: PathBuf,
    /// Continue the run in `out` (same fingerprint) instead of starting a new one.
    pub resume: bool,
    /// Items in flight at once (their model calls share batches).
    pub parallel: usize,
    /// How much each engine may run at once (batch size, KV-cache budget, prefill tokens).
    pub limits: Limits,
    /// The federation job id (fresh when `None`).
    pub job: Option<String>,
    /// The command line, recorded in the run's metadata.
    pub command: Vec<String>,
}

/// Where the runner reports: notes along the way, then each finished item
/// with the running accuracy per method and the rates.
pub trait Progress: Send {
    /// A line worth showing (what is loading, what was recovered).
    fn note(&mut self, line: &str);
    /// The run starts: `done` of `total` items were finished before.
    fn start(&mut self, total: usize, done: usize);
    /// One more item is finished and journaled.
    fn item(&mut self, status: &ItemStatus);
}

/// What [`Progress::item`] is told.
pub struct ItemStatus {
    /// The item just finished.
    pub item: String,
    /// Items finished in the run, this session's and earlier ones.
    pub done: usize,
    /// Items the run selects.
    pub total: usize,
    /// `method correct/n · …` over every finished item.
    pub tally: String,
    /// `items/h · tok/s · mean batch` since this session started.
    pub rate: String,
}

/// What a finished run hands back for printing.
pub struct Finished {
    /// The run directory written.
    pub out: PathBuf,
    /// The federation's message counters as JSON, when agents were remote.
    pub federation: Option<String>,
}

/// Run `plan` to its last item (or the first failure).
pub fn run(plan: Plan, progress: &mut dyn Progress) -> Result<Finished, RunError> {
    let items = plan.dataset.select(&plan.selection)?;
    if items.is_empty() {
        return Err(RunError::NoItems {
            set: plan.dataset.name.clone(),
            available: plan.dataset.items.len(),
        });
    }
    let fp = fingerprint(&plan, progress)?;
    let fed = connect_federation(&plan.roster, plan.job.clone(), &mut |l| progress.note(l))?;
    let mut pool = ModelPool::new(plan.limits);
    // Attached to the run's directory once it is open (below).
    let call_log = Arc::new(CallLog::default());
    let code = plan.code.as_ref().map(|(c, _)| c.clone());
    let harness = build_harness(&plan, &mut pool, code.clone(), fed.as_ref(), &call_log)?;
    let info = run_info(&plan, &pool, fed.as_ref(), code.as_deref());
    let run = super::open_run(&plan.out, &fp, info, plan.resume)?;
    let recovered = call_log.open(&plan.out.join(CALLS), &run.done)?;
    if recovered > 0 {
        progress.note(&format!(
            "{recovered} finished calls of unfinished items read back from {CALLS}"
        ));
    }
    if let Some(fed) = &fed {
        fed.set_log(&plan.out.join("federation.jsonl"))?;
    }
    let todo: VecDeque<&Item> = items
        .iter()
        .filter(|it| !run.done.contains(&it.id))
        .collect();
    progress.note(&announce(&plan, items.len(), todo.len()));
    progress.start(items.len(), items.len() - todo.len());
    let mut tally = Tally::default();
    for rec in super::read_records(&plan.out).unwrap_or_default() {
        tally.add(&rec);
    }
    let sink = Sink::new(run, call_log.clone(), tally, items.len(), pool.engines());
    let workers = Workers {
        queue: Mutex::new(todo),
        sink: Mutex::new(Reporting { sink, progress }),
    };
    std::thread::scope(|scope| {
        for _ in 1..plan.parallel.min(items.len()) {
            let mut pool = pool.clone();
            let (plan, code, fed, call_log) = (&plan, code.clone(), fed.as_ref(), &call_log);
            let workers = &workers;
            scope.spawn(
                move || match build_harness(plan, &mut pool, code, fed, call_log) {
                    Ok(h) => workers.work(h, &plan.methods, &plan.settings, plan.dataset.kind),
                    Err(e) => workers.fail(e),
                },
            );
        }
        workers.work(harness, &plan.methods, &plan.settings, plan.dataset.kind);
    });
    let reporting = workers
        .sink
        .into_inner()
        .map_err(|_| RunError::WorkerPanicked)?;
    if let Some(e) = reporting.sink.failure {
        return Err(e);
    }
    Ok(Finished {
        out: plan.out,
        federation: fed.map(|f| serde_json::to_string(&f.stats()).unwrap_or_default()),
    })
}

/// The run's fingerprint with the build's numerics stamp, checked against
/// a run being resumed (its settings before the models load, its stamp once
/// measured).
fn fingerprint(plan: &Plan, progress: &mut dyn Progress) -> Result<Fingerprint, RunError> {
    let fp = Fingerprint {
        dataset: plan.dataset.name.clone(),
        dataset_sha256: plan.dataset.sha256.clone(),
        selection: plan.selection.clone(),
        methods: plan.methods.clone(),
        // Where the agents run does not change the results (tests show it),
        // so a run may be resumed with another server.
        roster: Roster {
            federation: Default::default(),
            ..plan.roster.clone()
        },
        settings: plan.settings.clone(),
        code: plan.code.as_ref().map(|(_, s)| s.clone()),
        version: Some(CodeVersion::current()),
        stamp: None,
    };
    // Refused here, the models are not loaded for nothing (the stamp's probes).
    super::preflight(&plan.out, &fp, plan.resume)?;
    let stamp = stamp::measure(&fp.roster, |model| {
        progress.note(&format!(
            "stamp: numerics of {model} ({} probe tokens)",
            stamp::PROBE_TOKENS
        ))
    })?;
    Ok(super::adopt_recorded(
        &plan.out,
        Fingerprint {
            stamp: Some(stamp),
            ..fp
        },
    )?)
}

/// The federation client when the roster has remote agents, with every
/// remote agent discovered and its key pinned; `note` hears which.
/// (`nsed deliberate` connects through it too.)
pub fn connect_federation(
    roster: &Roster,
    job: Option<String>,
    note: &mut dyn FnMut(&str),
) -> Result<Option<Arc<Federation>>, FederationError> {
    if !roster.has_remote() {
        return Ok(None);
    }
    let fed = Federation::for_roster(roster, job)?;
    let remote: Vec<&str> = roster
        .agents
        .iter()
        .filter(|a| !a.transport.is_local())
        .map(|a| a.name.as_str())
        .collect();
    note(&format!(
        "federation: job {} on {}; remote agents {}",
        fed.job(),
        fed.url(),
        remote.join(", ")
    ));
    Ok(Some(fed))
}

/// Provenance of the run: when, which build, CPU, kernel, models, sandbox.
fn run_info(
    plan: &Plan,
    pool: &ModelPool,
    fed: Option<&Arc<Federation>>,
    code: Option<&CodeContext>,
) -> RunInfo {
    let mut models = pool.models();
    if let Some(fed) = fed {
        models.extend(fed.models());
        models.sort();
        models.dedup();
    }
    RunInfo {
        started: provenance::utc_now(),
        commit: provenance::build_commit().to_string(),
        nsed_version: env!("CARGO_PKG_VERSION").to_string(),
        host_cpu: provenance::cpu_name(),
        kernel: crate::engine::qmm::path::active().name().to_string(),
        threads: rayon::current_num_threads(),
        models,
        command: plan.command.clone(),
        sandbox: code.map(|c| c.sandbox.protections().clone()),
    }
}

/// `bench gsm8k: 300 items (53 done before), methods …, roster … → DIR`.
fn announce(plan: &Plan, total: usize, todo: usize) -> String {
    let methods: Vec<String> = plan
        .methods
        .iter()
        .filter_map(|m| serde_json::to_value(m).ok()?.as_str().map(str::to_string))
        .collect();
    format!(
        "bench {}: {total} items ({} done before), methods {}, roster {} → {}",
        plan.dataset.name,
        total - todo,
        methods.join(","),
        plan.roster.name,
        plan.out.display()
    )
}

/// One worker's agents and baselines. Code sets wrap every agent so that a
/// proposal runs on the public tests as it is made (inside the memo, so a
/// shared request runs its program once).
fn build_harness(
    plan: &Plan,
    pool: &mut ModelPool,
    code: Option<Arc<CodeContext>>,
    fed: Option<&Arc<Federation>>,
    call_log: &Arc<CallLog>,
) -> Result<Harness, RunError> {
    let roster = &plan.roster;
    let wrap = |agent: Box<dyn Agent>| -> Box<dyn Agent> {
        match &code {
            Some(ctx) => Box::new(CodeAgent::new(agent, ctx.clone())),
            None => agent,
        }
    };
    let agents = federation::build_agents(roster, pool, fed, Some(call_log), wrap)?;
    let b = &roster.baselines;
    let sc_spec = self_consistency_spec(roster);
    // Loaded only when needed (it may be a model outside the roster); code
    // sets need it to write the probe inputs.
    let (model, device) = if plan.methods.contains(&Method::SelfConsistency) || code.is_some() {
        (sc_spec.model.clone(), sc_spec.device)
    } else {
        (roster.agents[0].model.clone(), roster.agents[0].device)
    };
    let sc_rt = pool
        .get_on(&model, device)
        .map_err(|source| RunError::Model { model, source })?;
    let sc_params = SamplingParams {
        temperature: b.self_consistency_temperature,
        ..SamplingParams::default()
    };
    Ok(Harness {
        agents,
        specs: roster.agents.clone(),
        sc: Box::new(Memo::logged(
            wrap(Box::new(
                LocalAgent::new(sc_spec, sc_rt)
                    .map_err(|e| FederationError::Invalid(e.to_string()))?,
            )),
            Some(call_log.clone()),
        )),
        sc_params,
        sc_k: b.self_consistency_k,
        debate_rounds: b.debate_rounds,
        code,
    })
}

/// The self-consistency baseline's agent: the roster's model for it, on the
/// device (and with the system prompt) the roster gives that model.
fn self_consistency_spec(roster: &Roster) -> AgentSpec {
    let model = roster.self_consistency_model();
    let member = roster.agents.iter().find(|a| a.model == model);
    AgentSpec {
        name: "self-consistency".into(),
        model: model.to_string(),
        system: member.and_then(|a| a.system.clone()),
        temperature: roster.baselines.self_consistency_temperature,
        top_p: 1.0,
        top_k: 0,
        seed_offset: 0,
        evaluation: None,
        transport: Default::default(),
        public_key: None,
        device: member.and_then(|a| a.device),
        reasoning: member.and_then(|a| a.reasoning),
        reasoning_budget: member.and_then(|a| a.reasoning_budget),
    }
}

/// The items left and where their records go, shared by the workers.
struct Workers<'a, 'p> {
    queue: Mutex<VecDeque<&'a Item>>,
    sink: Mutex<Reporting<'p>>,
}

struct Reporting<'p> {
    sink: Sink,
    progress: &'p mut dyn Progress,
}

impl Workers<'_, '_> {
    /// Take items until none are left (or a record could not be written).
    fn work(
        &self,
        mut harness: Harness,
        methods: &[Method],
        settings: &Settings,
        kind: crate::answer::AnswerKind,
    ) {
        loop {
            let next = match self.queue.lock() {
                Ok(mut q) => q.pop_front(),
                Err(_) => None,
            };
            let Some(item) = next else { return };
            let rec = super::run_item(&mut harness, item, kind, methods, settings);
            let Ok(mut reporting) = self.sink.lock() else {
                return;
            };
            let Reporting { sink, progress } = &mut *reporting;
            match sink.record(&rec) {
                Ok(status) => progress.item(&status),
                Err(e) => {
                    drop(reporting);
                    self.fail(e);
                    return;
                }
            }
        }
    }

    /// Stop every worker after its current item and report `e`.
    fn fail(&self, e: RunError) {
        if let Ok(mut q) = self.queue.lock() {
            q.clear();
        }
        if let Ok(mut reporting) = self.sink.lock() {
            reporting.sink.failure.get_or_insert(e);
        }
    }
}

/// Where finished items go: the run's journal and the running tally, with
/// the rates since this session started.
struct Sink {
    run: RunDir,
    calls: Arc<CallLog>,
    tally: Tally,
    total: usize,
    done: usize,
    started: Instant,
    engines: Vec<EngineHandle>,
    tokens_before: u64,
    finished: usize,
    failure: Option<RunError>,
}

impl Sink {
    fn new(
        run: RunDir,
        calls: Arc<CallLog>,
        tally: Tally,
        total: usize,
        engines: Vec<EngineHandle>,
    ) -> Sink {
        let done = run.done.len();
        let mut sink = Sink {
            run,
            calls,
            tally,
            total,
            done,
            started: Instant::now(),
            engines,
            tokens_before: 0,
            finished: 0,
            failure: None,
        };
        sink.tokens_before = sink.generated();
        sink
    }

    fn generated(&self) -> u64 {
        self.engines
            .iter()
            .map(|e| e.tally().generated_tokens)
            .sum()
    }

    fn record(&mut self, rec: &ItemRecord) -> Result<ItemStatus, RunError> {
        self.run.append(rec).map_err(BenchError::from)?;
        // Its calls are not needed any more; were this to fail, they would
        // only be read in again and dropped on resume.
        let _ = self.calls.finish(&rec.item);
        self.tally.add(rec);
        self.finished += 1;
        self.done += 1;
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let (steps, rows) = self.engines.iter().fold((0, 0), |(s, r), e| {
            let t = e.tally();
            (s + t.steps, r + t.rows)
        });
        let rate = format!(
            "{:.1} items/h · {:.1} tok/s · mean batch {:.1}",
            self.finished as f64 * 3600.0 / secs,
            (self.generated() - self.tokens_before) as f64 / secs,
            rows as f64 / steps.max(1) as f64
        );
        Ok(ItemStatus {
            item: rec.item.clone(),
            done: self.done,
            total: self.total,
            tally: self.tally.line(),
            rate,
        })
    }
}

/// Running accuracy per method.
#[derive(Default)]
struct Tally {
    counts: std::collections::BTreeMap<MethodKey, (usize, usize)>,
}

impl Tally {
    fn add(&mut self, rec: &ItemRecord) {
        for (m, r) in &rec.results {
            let e = self.counts.entry(m.clone()).or_default();
            e.0 += usize::from(r.outcome == Outcome::Correct);
            e.1 += 1;
        }
    }

    fn line(&self) -> String {
        self.counts
            .iter()
            .map(|(m, (c, n))| format!("{} {c}/{n}", m.name()))
            .collect::<Vec<_>>()
            .join(" · ")
    }
}
