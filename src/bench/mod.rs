//! `nsed bench`: every method — each model alone, self-consistency,
//! plurality, score-weighted vote, one-round quadratic vote, debate, full
//! NSED — on the same items with the same token accounting. One JSON line
//! per item is written as soon as the item is done, so a killed run loses at
//! most the item in flight and `--resume` continues without duplicates.

pub mod budgets;
pub mod code;
pub mod datasets;
pub mod judges;
pub mod method;
pub mod protocols;
pub mod runner;
pub mod stamp;

pub use method::{Method, MethodKey};
pub use runner::{run, Plan, Progress, RunError};

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::answer::{AnswerKind, Outcome};
use crate::deliberation::roster::{AgentSpec, Roster};
use crate::deliberation::vote::{self, Halting};
use crate::deliberation::{
    self, Agent, Call, Proposal, ProposeContext, ProposeRequest, Settings, Task, Transcript, Usage,
};
use crate::engine::sampling::SamplingParams;
use crate::results::journal::{self, Journal, JournalError, Record};
use crate::results::provenance::RunInfo;
use crate::results::report::{self, MethodSummary, Paired};
use code::{CodeContext, Verdict};
use datasets::{Dataset, Item, Selection};

/// Why a bench run cannot be opened, resumed or written.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The run's journal (`meta.json`, `items.jsonl`) cannot be read or written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// `summary.md` or `summary.csv` cannot be written.
    #[error("cannot write results: {0}")]
    Write(String),
    /// This build may not resume the run: another build or protocol made it (the text says how).
    #[error("{0}")]
    Version(String),
}

/// One method's answer to one item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The answer; for code, the chosen program.
    pub answer: Option<String>,
    /// Whether the answer is correct, wrong, missing or truncated.
    pub outcome: Outcome,
    /// Calls, tokens and seconds the method spent on the item.
    pub usage: Usage,
    /// Code: the program's grade on every test (LCB result codes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// Everything about one item: per-method results, and every call behind them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The item's id in its dataset: the record's key in the journal.
    pub item: String,
    /// The item's gold answer; empty for code sets, which are graded on tests.
    pub gold: String,
    /// The run's seed, which keys every sampled call on the item.
    pub seed: u64,
    /// Each method's graded result on the item.
    pub results: BTreeMap<MethodKey, MethodResult>,
    /// Each distinct model's own answer (the single-model methods).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub single: Vec<Proposal>,
    /// Self-consistency's samples.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub self_consistency: Vec<Proposal>,
    /// Debate's proposals, one list per round (the first is the round-1 proposals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub debate: Vec<Vec<Proposal>>,
    /// The one-round vote (only when NSED did not run; otherwise it is NSED's
    /// round 1, whose calls are identical).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qv: Option<Transcript>,
    /// NSED's full transcript (rounds, proposals, scores, votes), when NSED ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsed: Option<Transcript>,
    /// Code: the model-written probe inputs behind the behaviour classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<code::agent::Probes>,
    /// The build that finished this item: `commit · kernel path` (a run may
    /// be resumed by any build with the same [`stamp::BuildStamp`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<String>,
}

/// What a run does; everything here goes into `meta.json` and must match to
/// resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The dataset's name (e.g. `gsm8k`, `math500`, `humaneval`).
    pub dataset: String,
    /// sha256 (hex) of the dataset file.
    pub dataset_sha256: String,
    /// Which items of the dataset the run takes.
    pub selection: Selection,
    /// The methods run on every item.
    pub methods: Vec<Method>,
    /// The agents and baselines the run uses.
    pub roster: Roster,
    /// Deliberation settings: seed, token limits, halting, voting.
    pub settings: Settings,
    /// Code sets: the problem filter and which tests grade.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<CodeSettings>,
    /// The build that started the run (absent in runs made before it was
    /// recorded); the builds that continued it are in `runs` and in each
    /// item's `build`.
    #[serde(default)]
    pub version: Option<CodeVersion>,
    /// The protocol and model numerics the records depend on. With it, any
    /// build whose stamp is equal may resume the run; runs made before
    /// stamps resume only with the build that made them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<stamp::BuildStamp>,
}

/// Which build of nsed produced a run's records: its commit and the kernel
/// path it ran. Records depend on neither (see [`stamp`]) but both are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeVersion {
    /// The crate version (`CARGO_PKG_VERSION`).
    pub nsed_version: String,
    /// The git commit of the build (`-dirty` with local changes; `unknown` outside git).
    pub commit: String,
    /// The qmm kernel path the process ran (e.g. `avx2`).
    pub kernel: String,
}

impl CodeVersion {
    /// This binary, on the kernel path the process runs.
    pub fn current() -> Self {
        Self {
            nsed_version: env!("CARGO_PKG_VERSION").to_string(),
            commit: crate::results::provenance::build_commit().to_string(),
            kernel: crate::engine::qmm::path::active().name().to_string(),
        }
    }
}

impl CodeVersion {
    /// `commit · kernel`, for each item's record.
    pub fn build_tag(&self) -> String {
        let commit = self.commit.get(..12).unwrap_or(&self.commit);
        let dirty = if self.commit.ends_with("-dirty") {
            "-dirty"
        } else {
            ""
        };
        format!("{commit}{dirty} · {}", self.kernel)
    }
}

impl std::fmt::Display for CodeVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let commit = self.commit.get(..12).unwrap_or(&self.commit);
        let dirty = if self.commit.ends_with("-dirty") {
            "-dirty"
        } else {
            ""
        };
        write!(
            f,
            "nsed {} (commit {commit}{dirty}, kernel {})",
            self.nsed_version, self.kernel
        )
    }
}

/// The recorded fingerprint of the run in `dir`, if there is one.
fn recorded_fingerprint(dir: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("meta.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()?
        .get("fingerprint")
        .cloned()
}

/// The build and stamp the run in `dir` recorded (a directory without a run
/// gives `None`).
fn recorded_build(dir: &Path) -> Option<(Option<CodeVersion>, Option<stamp::BuildStamp>)> {
    let fp = recorded_fingerprint(dir)?;
    let field = |name: &str| fp.get(name).cloned().unwrap_or(serde_json::Value::Null);
    let version = serde_json::from_value::<Option<CodeVersion>>(field("version"))
        .ok()
        .flatten();
    let stamp = serde_json::from_value::<Option<stamp::BuildStamp>>(field("stamp"))
        .ok()
        .flatten();
    Some((version, stamp))
}

/// Refuse early — before any model loads — to resume `dir` with this build
/// when no stamp can allow it: the run has no stamp and another build made
/// it, or its protocol differs from this build's. A directory without a run
/// passes; the numerics are compared by [`adopt_recorded`] once the models
/// are loaded.
pub fn check_version(dir: &Path, fp: &Fingerprint) -> Result<(), BenchError> {
    let Some((recorded, recorded_stamp)) = recorded_build(dir) else {
        return Ok(());
    };
    if recorded == fp.version {
        return Ok(());
    }
    match recorded_stamp {
        Some(s) if s.protocol == stamp::protocol_digest() => Ok(()),
        Some(s) => Err(BenchError::Version(format!(
            "{} was made with protocol {}, and this build's is {}: its prompts, parsing, grading or voting differ, so resuming would mix records; start a new --out",
            dir.display(),
            s.protocol.get(..12).unwrap_or(&s.protocol),
            &stamp::protocol_digest()[..12]
        ))),
        None => Err(unstamped(dir, recorded.as_ref(), fp.version.as_ref())),
    }
}

fn unstamped(dir: &Path, recorded: Option<&CodeVersion>, this: Option<&CodeVersion>) -> BenchError {
    let this = this.map_or("an unversioned build".to_string(), ToString::to_string);
    let made_by = recorded.map_or(
        "an nsed that did not record its version".to_string(),
        ToString::to_string,
    );
    let how = match recorded {
        Some(v) => format!(
            "resume it with the binary that made it (NSED_KERNEL={} if the kernel differs), or stamp it with scripts/stamp-legacy-run.sh {} (which replays one of its items with this build)",
            v.kernel,
            dir.display()
        ),
        None => "its records cannot be matched to a build".to_string(),
    };
    BenchError::Version(format!(
        "{} was made by {made_by}, and this is {this}; the run predates build stamps, \
         so nothing shows that this build writes the same records: {how}, or start a new --out",
        dir.display()
    ))
}

/// The fingerprint to open `dir` with, for `fp` carrying this build's
/// stamp: a new run keeps it; a run made by this very build keeps what it
/// recorded; a run made by another build is adopted when its recorded stamp
/// equals this build's (the fingerprint then keeps the run's starting
/// build), and refused, naming what differs, otherwise.
pub fn adopt_recorded(dir: &Path, mut fp: Fingerprint) -> Result<Fingerprint, BenchError> {
    let Some((recorded, recorded_stamp)) = recorded_build(dir) else {
        return Ok(fp);
    };
    if recorded == fp.version {
        // The same build: its stamp is what it recorded (none in old runs).
        if let (Some(old), Some(new)) = (&recorded_stamp, &fp.stamp) {
            if let Some(why) = old.difference(new) {
                return Err(BenchError::Version(format!(
                    "{} was made by this build, yet its stamp differs now ({why}); start a new --out",
                    dir.display()
                )));
            }
        }
        fp.stamp = recorded_stamp;
        return Ok(fp);
    }
    let Some(old) = recorded_stamp else {
        return Err(unstamped(dir, recorded.as_ref(), fp.version.as_ref()));
    };
    let Some(new) = &fp.stamp else {
        return Err(BenchError::Version(format!(
            "{} needs this build's stamp to be resumed by another build",
            dir.display()
        )));
    };
    if let Some(why) = old.difference(new) {
        return Err(BenchError::Version(format!(
            "{} cannot be resumed by this build: {why}; resuming would mix records of two numerics or protocols in one table, so start a new --out (or resume with the build that made it)",
            dir.display()
        )));
    }
    fp.version = recorded;
    fp.stamp = Some(old);
    Ok(fp)
}

/// What a code run selects and grades on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeSettings {
    /// Which LCB problems the run keeps.
    pub filter: code::LcbFilter,
    /// "public tests only" when the data has no hidden tests.
    pub graded_on: String,
}

/// The models and the self-consistency sampler a run uses.
pub struct Harness {
    /// The roster's agents, in roster order (wrapped for code sets).
    pub agents: Vec<Box<dyn Agent>>,
    /// The roster's agent specs, in the order of `agents`.
    pub specs: Vec<AgentSpec>,
    /// The agent sampled for self-consistency (index into `agents`, or the
    /// extra agent).
    pub sc: Box<dyn Agent>,
    /// Sampling settings of the self-consistency samples (the baselines' temperature).
    pub sc_params: SamplingParams,
    /// Samples drawn for self-consistency.
    pub sc_k: usize,
    /// Rounds of debate, the first included (≥ 1).
    pub debate_rounds: usize,
    /// Code sets: problems, sandbox and grading (the agents are wrapped in
    /// [`code::CodeAgent`]s that attach public-test evidence).
    pub code: Option<Arc<CodeContext>>,
}

fn outcome(answer: Option<&str>, gold: &str, kind: AnswerKind) -> Outcome {
    match answer {
        None => Outcome::NoAnswer,
        Some(a) if crate::answer::same_answer(a, gold, kind) => Outcome::Correct,
        Some(_) => Outcome::Wrong,
    }
}

/// Grade a method's chosen proposal: its answer against the gold for math;
/// for code, its program on every test in the sandbox.
fn result(
    code: Option<&CodeContext>,
    task: &Task,
    gold: &str,
    chosen: Option<&Proposal>,
    usage: Usage,
) -> MethodResult {
    let problem = code.and_then(|c| Some((c, c.problem(&task.id)?)));
    let Some((ctx, problem)) = problem else {
        let answer = chosen.and_then(|p| p.answer.as_deref());
        let outcome = match chosen {
            Some(p) if answer.is_none() && p.was_cut() => Outcome::Truncated,
            _ => outcome(answer, gold, task.kind),
        };
        return MethodResult {
            answer: answer.map(str::to_string),
            outcome,
            usage,
            verdict: None,
        };
    };
    let program = chosen.map_or(String::new(), |p| ctx.program(problem, &p.content));
    let verdict = (!program.trim().is_empty())
        .then(|| ctx.grade(problem, &program).ok())
        .flatten();
    MethodResult {
        outcome: verdict
            .as_ref()
            .map_or(Outcome::NoAnswer, |v| code::agent::outcome(&program, v)),
        answer: (!program.trim().is_empty()).then_some(program),
        usage,
        verdict,
    }
}

/// Plurality of proposals' answers (for code: behaviour classes), ties
/// broken by a seeded permutation; the winner's highest-priority member.
pub(crate) fn vote_answers<'a>(props: &'a [Proposal], key: &str) -> Option<&'a Proposal> {
    vote_index(props, key).map(|i| &props[i])
}

/// [`vote_answers`] as an index into `props`.
pub(crate) fn vote_index(props: &[Proposal], key: &str) -> Option<usize> {
    let answers: Vec<Option<&str>> = props.iter().map(Proposal::class).collect();
    let priority = deliberation::seeded_permutation((0..props.len()).collect(), key);
    let mut rank = vec![0; props.len()];
    for (r, &i) in priority.iter().enumerate() {
        rank[i] = r;
    }
    let winner = vote::plurality(&answers, &rank)?;
    priority
        .iter()
        .copied()
        .find(|&i| props[i].class() == Some(winner))
}

/// Run every requested method on one item.
pub fn run_item(
    h: &mut Harness,
    item: &Item,
    kind: AnswerKind,
    methods: &[Method],
    s: &Settings,
) -> ItemRecord {
    let code = h.code.clone();
    let task = match code
        .as_deref()
        .and_then(|c| Some(c.task(c.problem(&item.id)?)))
    {
        Some(task) => task,
        None => Task {
            id: item.id.clone(),
            problem: item.problem.clone(),
            kind,
            system: None,
        },
    };
    let code = code.as_deref();
    let gold = item.answer.as_str();
    let names: Vec<String> = h.agents.iter().map(|a| a.name().to_string()).collect();
    let mut rec = ItemRecord {
        item: item.id.clone(),
        gold: gold.to_string(),
        seed: s.seed,
        results: BTreeMap::new(),
        single: Vec::new(),
        self_consistency: Vec::new(),
        debate: Vec::new(),
        qv: None,
        nsed: None,
        probes: None,
        build: Some(CodeVersion::current().build_tag()),
    };
    // Code: probe inputs first, so every proposal's behaviour class has them.
    // The roster's strongest member (its self-consistency model) writes them.
    if let Some(c) = code {
        rec.probes = c.write_probes(h.sc.as_mut(), &task, s.seed, s.max_chars);
    }
    let has = |m: Method| methods.contains(&m);
    // Round-1 proposals: the plurality ballots and debate's first round; the
    // same requests as NSED's round 1, so the memo shares them.
    let first: Vec<Proposal> = if has(Method::Plurality) || has(Method::Debate) {
        let reqs: Vec<ProposeRequest> = (0..h.agents.len())
            .map(|i| deliberation::propose_request(&task, s, i, &names, 1, None))
            .collect();
        for (agent, req) in h.agents.iter_mut().zip(&reqs) {
            agent.prefetch(Call::Propose(req));
        }
        h.agents
            .iter_mut()
            .zip(&reqs)
            .filter_map(|(agent, req)| agent.propose(req).ok())
            .collect()
    } else {
        Vec::new()
    };
    if has(Method::Nsed) {
        let t = deliberation::deliberate(&mut h.agents, &task, s, |_| {});
        rec.results.insert(
            MethodKey::Nsed,
            result(code, &task, gold, t.winner.as_ref(), t.usage),
        );
        rec.nsed = Some(t);
    }
    if has(Method::Qv) || has(Method::Weighted) {
        let one = match &rec.nsed {
            Some(t) => t.rounds[0].clone(),
            None => {
                let mut s1 = s.clone();
                s1.halting = Halting::Conviction {
                    effort: 0.0,
                    min_rounds: 1,
                    max_rounds: 1,
                };
                let t = deliberation::deliberate(&mut h.agents, &task, &s1, |_| {});
                let r = t.rounds[0].clone();
                rec.qv = Some(t);
                r
            }
        };
        let usage = one.usage();
        let pick = |w: Option<usize>| w.map(|w| &one.proposals[w]);
        if has(Method::Qv) {
            let chosen = pick(one.quadratic.winner);
            rec.results
                .insert(MethodKey::Qv, result(code, &task, gold, chosen, usage));
        }
        if has(Method::Weighted) {
            let chosen = pick(one.linear.winner);
            rec.results.insert(
                MethodKey::Weighted,
                result(code, &task, gold, chosen, usage),
            );
        }
    }
    if has(Method::Plurality) {
        let chosen = vote_answers(&first, &format!("{}/{}/plurality", s.seed, item.id));
        let usage = first.iter().map(|p| p.usage).sum();
        rec.results.insert(
            MethodKey::Plurality,
            result(code, &task, gold, chosen, usage),
        );
    }
    if has(Method::Single) {
        run_single(h, &task, s, &names, gold, &mut rec);
    }
    if has(Method::SelfConsistency) {
        run_self_consistency(h, &task, s, gold, &mut rec);
    }
    if has(Method::Debate) {
        run_debate(h, &task, s, &names, first, gold, &mut rec);
    }
    // Every method but a single model's answer groups proposals by
    // behaviour, so each is charged the call that wrote the probes.
    if let Some(probes) = &rec.probes {
        for (method, r) in rec.results.iter_mut() {
            if method.single_model().is_none() {
                r.usage += probes.usage;
            }
        }
    }
    rec
}

/// Each distinct model alone, greedy (for a greedy agent this is exactly its
/// NSED round-1 request).
fn run_single(
    h: &mut Harness,
    task: &Task,
    s: &Settings,
    names: &[String],
    gold: &str,
    rec: &mut ItemRecord,
) {
    let mut seen = HashSet::new();
    let mut calls = Vec::new();
    for i in 0..h.agents.len() {
        if !seen.insert(h.specs[i].model.clone()) {
            continue;
        }
        let mut req = deliberation::propose_request(task, s, i, names, 1, None);
        if h.specs[i].temperature > 0.0 {
            req.sampling = Some(SamplingParams::default());
            req.inference_id = format!("{}/single/{}", task.id, names[i]);
        }
        h.agents[i].prefetch(Call::Propose(&req));
        calls.push((i, req));
    }
    for (i, req) in calls {
        let Ok(p) = h.agents[i].propose(&req) else {
            continue;
        };
        let key = MethodKey::Single(h.agents[i].model_id().to_string());
        let graded = result(h.code.as_deref(), task, gold, Some(&p), p.usage);
        rec.results.insert(key, graded);
        rec.single.push(p);
    }
}

fn run_self_consistency(
    h: &mut Harness,
    task: &Task,
    s: &Settings,
    gold: &str,
    rec: &mut ItemRecord,
) {
    let reqs: Vec<ProposeRequest> = (0..h.sc_k)
        .map(|k| ProposeRequest {
            task: task.clone(),
            round: 1,
            context: ProposeContext::Fresh,
            sampling: Some(h.sc_params.clone()),
            seed: s.seed,
            inference_id: format!("{}/sc/{k}", task.id),
            max_tokens: s.max_tokens,
            max_chars: s.max_chars,
        })
        .collect();
    // All k samples in flight at once: they share forward passes.
    for req in &reqs {
        h.sc.prefetch(Call::Propose(req));
    }
    let samples: Vec<Proposal> = reqs
        .iter()
        .filter_map(|req| h.sc.propose(req).ok())
        .collect();
    let chosen = vote_answers(&samples, &format!("{}/{}/sc", s.seed, task.id));
    let usage = samples.iter().map(|p| p.usage).sum();
    let graded = result(h.code.as_deref(), task, gold, chosen, usage);
    rec.results.insert(MethodKey::SelfConsistency, graded);
    rec.self_consistency = samples;
}

/// Du et al.: every agent sees the others' previous answers and answers
/// again; the final answer is the last round's majority.
fn run_debate(
    h: &mut Harness,
    task: &Task,
    s: &Settings,
    names: &[String],
    first: Vec<Proposal>,
    gold: &str,
    rec: &mut ItemRecord,
) {
    let mut rounds = vec![first];
    for r in 2..=h.debate_rounds {
        let prev = &rounds[rounds.len() - 1];
        let mut reqs = Vec::new();
        for (i, agent) in h.agents.iter_mut().enumerate() {
            let own = prev
                .iter()
                .find(|p| p.agent == names[i])
                .map(|p| p.content.clone());
            let others = prev
                .iter()
                .filter(|p| p.agent != names[i])
                .map(|p| p.content.clone())
                .collect();
            let req = ProposeRequest {
                task: task.clone(),
                round: r,
                context: ProposeContext::Debate { own, others },
                sampling: None,
                seed: s.seed,
                inference_id: format!("{}/debate/r{r}/{}", task.id, names[i]),
                max_tokens: s.max_tokens,
                max_chars: s.max_chars,
            };
            agent.prefetch(Call::Propose(&req));
            reqs.push(req);
        }
        let next = h
            .agents
            .iter_mut()
            .zip(&reqs)
            .filter_map(|(agent, req)| agent.propose(req).ok())
            .collect();
        rounds.push(next);
    }
    let last = rounds.last().map(Vec::as_slice).unwrap_or_default();
    let chosen = vote_answers(last, &format!("{}/{}/debate", s.seed, task.id));
    let usage = rounds.iter().flatten().map(|p| p.usage).sum();
    let graded = result(h.code.as_deref(), task, gold, chosen, usage);
    rec.results.insert(MethodKey::Debate, graded);
    rec.debate = rounds;
}

/// The run directory: `meta.json`, `items.jsonl`, `summary.md`, `summary.csv`.
pub type RunDir = Journal<ItemRecord>;
/// A bench run's `meta.json`: its [`Fingerprint`] and one [`RunInfo`] per invocation.
pub type Meta = journal::Meta<Fingerprint, RunInfo>;
/// The journal file of a run directory: one [`ItemRecord`] per line.
pub const ITEMS: &str = "items.jsonl";

impl Record for ItemRecord {
    fn key(&self) -> String {
        self.item.clone()
    }
}

/// Refuse before any model loads what [`open_run`] would refuse once they
/// are: `dir` holds a run and `resume` is off, the run was made with other
/// settings, or (see [`check_version`]) no stamp can let this build resume
/// it. The stamp's numerics, measured on the loaded models, are compared by
/// [`adopt_recorded`] and [`open_run`].
pub fn preflight(dir: &Path, fp: &Fingerprint, resume: bool) -> Result<(), BenchError> {
    journal::preflight(dir, ITEMS, fp, resume, |fp: &mut Fingerprint| {
        fp.version = None;
        fp.stamp = None;
    })?;
    if resume {
        check_version(dir, fp)?;
    }
    Ok(())
}

/// Open a new run, or with `resume` continue one made with the same
/// fingerprint (a torn last line from a crash is cut off).
pub fn open_run(
    dir: &Path,
    fp: &Fingerprint,
    info: RunInfo,
    resume: bool,
) -> Result<RunDir, BenchError> {
    if resume {
        check_version(dir, fp)?;
    }
    Ok(Journal::open(
        dir,
        ITEMS,
        "nsed.bench/v1",
        fp,
        info,
        resume,
    )?)
}

/// Read a run's records (complete lines only).
pub fn read_records(dir: &Path) -> Result<Vec<ItemRecord>, BenchError> {
    Ok(journal::read(dir, ITEMS)?)
}

/// Per-method summaries and NSED's paired differences, over `items` (in
/// order) among the records.
pub fn summarize(
    records: &[ItemRecord],
    items: &[String],
) -> (Vec<MethodSummary<MethodKey>>, Vec<Paired<MethodKey>>) {
    let by_id: BTreeMap<&str, &ItemRecord> = records.iter().map(|r| (r.item.as_str(), r)).collect();
    let ordered: Vec<&ItemRecord> = items
        .iter()
        .filter_map(|i| by_id.get(i.as_str()).copied())
        .collect();
    let mut names: Vec<MethodKey> = ordered
        .iter()
        .flat_map(|r| r.results.keys().cloned())
        .collect();
    names.sort_by(|a, b| a.summary_rank().cmp(&b.summary_rank()));
    names.dedup();
    let summaries = names
        .iter()
        .map(|m| {
            let rows: Vec<report::ItemOutcome> = ordered
                .iter()
                .filter_map(|r| r.results.get(m))
                .map(|x| report::ItemOutcome {
                    correct: x.outcome == Outcome::Correct,
                    no_answer: x.outcome == Outcome::NoAnswer,
                    truncated: x.outcome == Outcome::Truncated,
                    prompt_tokens: x.usage.prompt_tokens,
                    generated_tokens: x.usage.generated_tokens,
                    seconds: x.usage.seconds,
                })
                .collect();
            report::summarize(m.clone(), &rows)
        })
        .collect();
    let pairs = names
        .iter()
        .filter(|m| **m != MethodKey::Nsed)
        .filter_map(|m| {
            let both: Vec<(bool, bool)> = ordered
                .iter()
                .filter_map(|r| Some((r.results.get(&MethodKey::Nsed)?, r.results.get(m)?)))
                .map(|(a, b)| (a.outcome == Outcome::Correct, b.outcome == Outcome::Correct))
                .collect();
            if both.is_empty() {
                return None;
            }
            let (a, b): (Vec<bool>, Vec<bool>) = both.into_iter().unzip();
            Some(report::paired((MethodKey::Nsed, &a), (m.clone(), &b)))
        })
        .collect();
    (summaries, pairs)
}

/// Write `summary.md` and `summary.csv`; returns the markdown.
pub fn write_summary(
    dir: &Path,
    header: &str,
    summaries: &[MethodSummary<MethodKey>],
    pairs: &[Paired<MethodKey>],
) -> Result<String, BenchError> {
    let md = format!("{header}\n{}", report::markdown(summaries, pairs));
    let wr = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        crate::results::output::write_atomic(&p, bytes)
            .map_err(|e| BenchError::Write(e.to_string()))
    };
    wr("summary.md", md.as_bytes())?;
    wr("summary.csv", report::csv(summaries).as_bytes())?;
    Ok(md)
}

/// Settings for a dataset from a roster (the CLI may override fields).
pub fn settings_from(
    roster: &Roster,
    dataset: &Dataset,
    max_tokens: Option<usize>,
    seed: u64,
) -> Settings {
    let d = &roster.deliberation;
    let halting = if d.halting == "evidence" {
        Halting::Evidence {
            effort: d.effort,
            lambda: d.lambda,
            min_rounds: d.min_rounds,
            max_rounds: d.max_rounds,
        }
    } else {
        Halting::Conviction {
            effort: d.effort,
            min_rounds: d.min_rounds,
            max_rounds: d.max_rounds,
        }
    };
    Settings {
        halting,
        mode: d.evaluation,
        max_tokens: max_tokens
            .or_else(|| datasets::default_max_tokens(&dataset.name))
            .or_else(|| code::problems::default_max_tokens(&dataset.name))
            .unwrap_or(640),
        eval_max_tokens: d.eval_max_tokens,
        max_chars: d.candidate_chars,
        seed,
        consensus: d.consensus_stop,
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;

    fn key(name: &str) -> MethodKey {
        name.parse().expect("a method name")
    }

    #[test]
    fn all_expands_and_lists_dedupe() {
        assert_eq!(Method::expand(&[Method::All]).len(), 7);
        assert_eq!(
            Method::expand(&[Method::Qv, Method::Nsed, Method::Qv]),
            vec![Method::Nsed, Method::Qv]
        );
    }

    /// Answers `answers[k % len]` on its k-th proposal; endorses texts that
    /// carry its latest answer.
    struct Fixed {
        name: String,
        answers: Vec<&'static str>,
        calls: usize,
        last: String,
        /// Proposals actually computed (shared by every agent of a harness).
        computed: Rc<Cell<usize>>,
    }

    impl Agent for Fixed {
        fn name(&self) -> &str {
            &self.name
        }
        fn model_id(&self) -> &str {
            &self.name
        }
        fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, deliberation::AgentError> {
            let a = self.answers[self.calls % self.answers.len()];
            self.calls += 1;
            self.computed.set(self.computed.get() + 1);
            self.last = a.to_string();
            Ok(Proposal {
                agent: self.name.clone(),
                model: self.name.clone(),
                thought_process: String::new(),
                content: format!("\\boxed{{{a}}}"),
                answer: Some(a.to_string()),
                found: None,
                behaviour: None,
                finish_reason: "eos".into(),
                inference_id: req.inference_id.clone(),
                usage: Usage {
                    calls: 1,
                    prompt_tokens: 7,
                    generated_tokens: 3,
                    seconds: 0.5,
                },
                attestation: None,
                reasoning: None,
            })
        }
        fn evaluate(
            &mut self,
            req: &deliberation::EvaluateRequest,
        ) -> Result<deliberation::Evaluation, deliberation::AgentError> {
            let scores = req
                .candidates
                .iter()
                .map(|c| {
                    Some(if c.answer.as_deref() == Some(&self.last) {
                        80.0
                    } else {
                        -20.0
                    })
                })
                .collect();
            Ok(deliberation::Evaluation {
                mode: req.mode,
                scores,
                reasons: vec![None; req.candidates.len()],
                raw: vec![],
                abstained: false,
                notes: vec![],
                usage: Usage {
                    calls: 1,
                    prompt_tokens: 11,
                    generated_tokens: 2,
                    seconds: 0.25,
                },
                attestation: None,
            })
        }
    }

    fn harness(
        answers: [Vec<&'static str>; 3],
        sc: Vec<&'static str>,
    ) -> (Harness, Rc<Cell<usize>>) {
        let computed = Rc::new(Cell::new(0));
        let agents: Vec<Box<dyn Agent>> = answers
            .into_iter()
            .enumerate()
            .map(|(i, a)| {
                Box::new(crate::deliberation::local::Memo::new(Box::new(Fixed {
                    name: format!("m{i}"),
                    answers: a,
                    calls: 0,
                    last: String::new(),
                    computed: computed.clone(),
                }))) as Box<dyn Agent>
            })
            .collect();
        let spec = |i: usize| AgentSpec {
            name: format!("m{i}"),
            model: format!("m{i}"),
            system: None,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed_offset: 0,
            evaluation: None,
            transport: Default::default(),
            public_key: None,
            device: None,
            reasoning: None,
            reasoning_budget: None,
        };
        let h = Harness {
            agents,
            specs: (0..3).map(spec).collect(),
            sc: Box::new(Fixed {
                name: "sc".into(),
                answers: sc,
                calls: 0,
                last: String::new(),
                computed: Rc::new(Cell::new(0)),
            }),
            sc_params: SamplingParams {
                temperature: 0.7,
                ..SamplingParams::default()
            },
            sc_k: 3,
            debate_rounds: 2,
            code: None,
        };
        (h, computed)
    }

    fn settings() -> Settings {
        Settings {
            halting: Halting::Conviction {
                effort: 0.6,
                min_rounds: 1,
                max_rounds: 2,
            },
            mode: deliberation::EvalMode::Generative,
            max_tokens: 8,
            eval_max_tokens: 8,
            max_chars: 100,
            seed: 3,
            consensus: true,
        }
    }

    #[test]
    fn every_method_on_one_item_with_shared_calls() {
        // Round 1: 7, 7, 9 (the majority is right); the third agent then
        // keeps 9 in later rounds and debate.
        let (mut h, computed) = harness([vec!["7"], vec!["7"], vec!["9"]], vec!["7", "9", "9"]);
        let item = Item {
            id: "i".into(),
            problem: "p".into(),
            answer: "7".into(),
        };
        let all = Method::expand(&[Method::All]);
        let rec = run_item(&mut h, &item, AnswerKind::Numeric, &all, &settings());
        let got = |m: &str| rec.results[&key(m)].answer.clone();
        assert_eq!(got("plurality").as_deref(), Some("7"));
        assert_eq!(
            got("self-consistency").as_deref(),
            Some("9"),
            "maj@3 of 7, 9, 9"
        );
        assert_eq!(
            rec.results[&key("self-consistency")].outcome,
            Outcome::Wrong
        );
        assert_eq!(got("nsed").as_deref(), Some("7"));
        assert_eq!(got("qv").as_deref(), Some("7"));
        assert_eq!(got("weighted").as_deref(), Some("7"));
        assert_eq!(got("debate").as_deref(), Some("7"));
        for m in ["single:m0", "single:m1"] {
            assert_eq!(rec.results[&key(m)].outcome, Outcome::Correct);
        }
        assert_eq!(rec.results[&key("single:m2")].outcome, Outcome::Wrong);
        // Charged costs: plurality = 3 proposals; qv = 3 proposals + 3
        // evaluations; debate = 2 rounds of 3 proposals; sc = 3 samples.
        let u = |m: &str| rec.results[&key(m)].usage;
        assert_eq!(u("plurality").calls, 3);
        assert_eq!(u("qv").calls, 6);
        assert_eq!(u("qv").prompt_tokens, 3 * 7 + 3 * 11);
        assert_eq!(u("weighted"), u("qv"));
        assert_eq!(u("debate").calls, 6);
        assert_eq!(u("self-consistency").generated_tokens, 9);
        assert!(u("nsed").calls >= u("qv").calls);
        // Round-1 proposals are computed once for single, plurality, debate
        // and NSED: 3, plus NSED's round 2 (no consensus: 7, 7, 9) and
        // debate's round 2, 3 each.
        assert_eq!(computed.get(), 9);
        assert_eq!(rec.self_consistency.len(), 3);
        assert_eq!(rec.debate.len(), 2);
        assert!(
            rec.qv.is_none(),
            "qv comes from NSED's round 1 when NSED runs"
        );
    }

    #[test]
    fn qv_alone_runs_one_round() {
        let (mut h, _) = harness([vec!["1"], vec!["2"], vec!["2"]], vec!["2"]);
        let item = Item {
            id: "j".into(),
            problem: "p".into(),
            answer: "2".into(),
        };
        let rec = run_item(
            &mut h,
            &item,
            AnswerKind::Numeric,
            &[Method::Qv],
            &settings(),
        );
        let t = rec.qv.as_ref().expect("one-round transcript");
        assert_eq!(t.rounds.len(), 1);
        assert_eq!(rec.results[&key("qv")].answer.as_deref(), Some("2"));
        assert_eq!(rec.results.len(), 1);
    }

    #[test]
    fn torn_last_line_is_cut_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let items = dir.path().join("items.jsonl");
        let rec = |id: &str| ItemRecord {
            item: id.into(),
            gold: "1".into(),
            seed: 0,
            results: BTreeMap::new(),
            single: vec![],
            self_consistency: vec![],
            debate: vec![],
            qv: None,
            nsed: None,
            probes: None,
            build: None,
        };
        let mut text = serde_json::to_string(&rec("a")).unwrap();
        text.push('\n');
        let good = text.len();
        text.push_str(&serde_json::to_string(&rec("b")).unwrap()[..20]);
        std::fs::write(&items, &text).unwrap();
        let done = journal::recover::<ItemRecord>(&items).unwrap();
        assert_eq!(done, HashSet::from(["a".to_string()]));
        assert_eq!(std::fs::metadata(&items).unwrap().len() as usize, good);
    }
}
