//! The orchestrator's side: one NATS connection per run ([`Federation`]),
//! discovery and key pinning of the roster's remote agents, and
//! [`NatsAgent`], the [`Agent`] whose calls are tasks to a remote service.
//!
//! Every reply is checked before it is accepted: the signature, the key
//! pinned for that agent, and that its job, round, agent, action and call id
//! are the ones asked (a reply replayed from another call or round, forged
//! with another key, misattributed or malformed is refused and recorded).
//! A call fails, which excludes the agent from that phase, when its
//! per-phase timeout passes or the agent misses three heartbeats. Tasks not
//! yet acknowledged are sent again every `resend_s` and after a reconnect;
//! the agents ignore duplicates, and duplicate replies are ignored here.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;
use serde_json::json;

use super::identity::open;
use super::wire::{
    self, digest, Action, Body, Envelope, Outcome, Profile, StatusMsg, TaskBody, TaskMsg, SCHEMA,
};
use super::{heartbeat_subject, result_subject, FederationError, Rejection, DISCOVER_SUBJECT};
use crate::deliberation::roster::{AgentSpec, FederationConfig, Roster, Transport};
use crate::deliberation::{
    Agent, AgentError, Attestation, Call, CallFailure, EvaluateRequest, Evaluation, Proposal,
    ProposeRequest,
};

/// Message counts of a run, for the log and `results/federation.md`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Tasks sent (each counted once, however often resent).
    pub tasks: u64,
    /// Resends of tasks not yet acknowledged.
    pub resent: u64,
    /// Replies accepted.
    pub replies: u64,
    /// Acknowledgements accepted from the agent a task was sent to.
    pub acks: u64,
    /// Replies to calls already answered, ignored.
    pub duplicates: u64,
    /// Messages refused (see [`Rejection`]).
    pub rejected: u64,
    /// Calls that ended without a reply (timeout or missed heartbeats).
    pub excluded: u64,
    /// NATS messages received, each chunk counted.
    pub messages_in: u64,
    /// Whole messages that arrived in several chunks.
    pub chunked_in: u64,
    /// Payload bytes received.
    pub bytes_in: u64,
    /// Payload bytes of the tasks sent, resends not counted.
    pub bytes_out: u64,
}

/// A reply that passed every check.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// What the agent answered.
    pub outcome: Outcome,
    /// Who signed the reply.
    pub attestation: Attestation,
    /// Seconds from sending the task to accepting the reply.
    pub wall: f64,
}

/// What a call ends with: an accepted reply, or why there is none.
pub type Reply = Result<Accepted, CallFailure>;

struct Pending {
    /// The request's inference id (`{task}/{method}/r{round}/{agent}/{action}`).
    label: String,
    agent: String,
    round: usize,
    action: Action,
    subject: String,
    bytes: Vec<u8>,
    sent: Instant,
    last_sent: Instant,
    deadline: Instant,
    timeout: Duration,
    /// The connection generation in which the agent acknowledged it.
    acked: Option<u64>,
    /// The replica that acknowledged it: its heartbeats say whether the
    /// call is still alive.
    instance: Option<String>,
    tx: Option<tokio::sync::oneshot::Sender<Reply>>,
}

struct Seen {
    status: StatusMsg,
    last: Instant,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    answered: HashSet<String>,
    agents: HashMap<String, Seen>,
    /// Last heartbeat of each replica (instance id).
    instances: HashMap<String, Instant>,
    /// The keys trusted for each agent name: one, or one per replica.
    pinned: HashMap<String, Vec<String>>,
    /// Bumped at every (re)connect: acknowledgements of an older generation
    /// do not stop a resend, since the reply may have been lost.
    generation: u64,
    connected_at: Option<Instant>,
    stats: Stats,
    rejections: Vec<(String, Rejection)>,
    assembler: wire::Assembler,
}

impl State {
    fn trusts(&self, agent: &str, key: &str) -> bool {
        self.pinned
            .get(agent)
            .is_some_and(|keys| keys.iter().any(|k| k == key))
    }
}

struct Shared {
    job: String,
    resend: Duration,
    state: Mutex<State>,
    log: Mutex<Log>,
}

/// The run's event log: a file once [`Federation::set_log`] names one; the
/// events before that are kept and written first.
#[derive(Default)]
struct Log {
    file: Option<std::fs::File>,
    early: Vec<String>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append one event to the run's federation log (JSON lines), or print
    /// the ones that need attention when there is no log.
    fn event(&self, event: &str, mut fields: serde_json::Value) {
        fields["t"] = json!(super::unix_now());
        fields["event"] = json!(event);
        let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        match log.file.as_mut() {
            Some(f) => {
                let _ = writeln!(f, "{fields}");
            }
            None => {
                if event != "accepted" && event != "duplicate" {
                    eprintln!("federation: {fields}");
                }
                log.early.push(fields.to_string());
            }
        }
    }

    fn reject(&self, subject: &str, reason: Rejection) {
        let text = reason.to_string();
        {
            let mut st = self.state();
            st.stats.rejected += 1;
            st.rejections.push((subject.to_string(), reason));
        }
        self.event("rejected", json!({"subject": subject, "reason": text}));
    }
}

/// One run's connection to the federation.
pub struct Federation {
    rt: tokio::runtime::Runtime,
    client: async_nats::Client,
    shared: Arc<Shared>,
    config: FederationConfig,
}

impl Federation {
    /// Connect for job `job` (a fresh id when `None`) and start listening
    /// for its replies and for heartbeats.
    pub fn connect(
        config: &FederationConfig,
        job: Option<String>,
    ) -> Result<Arc<Self>, FederationError> {
        let job = job.unwrap_or_else(super::new_job_id);
        wire::check_name("job", &job).map_err(FederationError::Invalid)?;
        if job == "agents" {
            return Err(FederationError::Invalid(
                "job id `agents` is reserved".into(),
            ));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("nsed-nats")
            .enable_all()
            .build()?;
        let shared = Arc::new(Shared {
            job: job.clone(),
            resend: Duration::from_secs_f64(config.resend_s),
            state: Mutex::new(State::default()),
            log: Mutex::new(Log::default()),
        });
        let hook_shared = shared.clone();
        let hook: super::EventHook = Arc::new(move |event| on_event(&hook_shared, event));
        let client = rt.block_on(super::connect(&config.url, "nsed-orchestrator", Some(hook)))?;
        shared.state().connected_at = Some(Instant::now());
        let nats = |e: async_nats::SubscribeError| FederationError::Nats(e.to_string());
        let results = rt
            .block_on(client.subscribe(format!("nsed.{job}.result.>")))
            .map_err(nats)?;
        let beats = rt
            .block_on(client.subscribe("nsed.agents.heartbeat.*"))
            .map_err(nats)?;
        rt.spawn(listen(shared.clone(), results));
        rt.spawn(listen(shared.clone(), beats));
        rt.spawn(watch(shared.clone(), client.clone()));
        Ok(Arc::new(Self {
            rt,
            client,
            shared,
            config: config.clone(),
        }))
    }

    /// Connect and admit every remote agent of the roster: each must answer
    /// discovery with the roster's model (and key, when the roster names
    /// one); its key is pinned for the run.
    pub fn for_roster(roster: &Roster, job: Option<String>) -> Result<Arc<Self>, FederationError> {
        let fed = Self::connect(&roster.federation, job)?;
        let remote: Vec<&AgentSpec> = roster
            .agents
            .iter()
            .filter(|a| a.transport == Transport::Nats)
            .collect();
        let names: Vec<String> = remote.iter().map(|a| a.name.clone()).collect();
        let found = fed.discover(
            Duration::from_secs_f64(roster.federation.discover_timeout_s),
            &names,
        )?;
        for spec in remote {
            fed.admit(spec, &found)?;
        }
        Ok(fed)
    }

    /// The job id that scopes this run's subjects.
    pub fn job(&self) -> &str {
        &self.shared.job
    }

    /// The NATS server's URL.
    pub fn url(&self) -> &str {
        &self.config.url
    }

    /// Write the run's events (accepted replies verbatim: the signed audit
    /// trail; rejections, exclusions, resends, reconnects) to `path`.
    pub fn set_log(&self, path: &Path) -> Result<(), FederationError> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let mut log = self.shared.log.lock().unwrap_or_else(|p| p.into_inner());
        for line in log.early.drain(..) {
            writeln!(f, "{line}")?;
        }
        log.file = Some(f);
        Ok(())
    }

    /// The message counts so far.
    pub fn stats(&self) -> Stats {
        self.shared.state().stats.clone()
    }

    /// Messages refused so far: (subject, reason).
    pub fn rejections(&self) -> Vec<(String, Rejection)> {
        self.shared.state().rejections.clone()
    }

    /// `(model id, sha256)` announced by each admitted agent.
    pub fn models(&self) -> Vec<(String, String)> {
        let st = self.shared.state();
        let mut v: Vec<(String, String)> = st
            .agents
            .iter()
            .filter(|(name, _)| st.pinned.contains_key(*name))
            .map(|(_, s)| (s.status.model.clone(), s.status.model_sha256.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The admitted status of `agent`.
    pub fn status(&self, agent: &str) -> Option<StatusMsg> {
        self.shared
            .state()
            .agents
            .get(agent)
            .map(|s| s.status.clone())
    }

    /// Ask every agent on the server to describe itself; waits `wait`, or
    /// less once every name in `want` has answered. Answers with a bad
    /// signature are refused.
    pub fn discover(
        &self,
        wait: Duration,
        want: &[String],
    ) -> Result<Vec<StatusMsg>, FederationError> {
        self.rt.block_on(async {
            let inbox = self.client.new_inbox();
            let mut sub = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| FederationError::Nats(e.to_string()))?;
            self.client
                .publish_with_reply(DISCOVER_SUBJECT, inbox, Vec::new().into())
                .await
                .map_err(|e| FederationError::Nats(e.to_string()))?;
            let _ = self.client.flush().await;
            let mut deadline = tokio::time::Instant::now() + wait;
            let mut found: Vec<StatusMsg> = Vec::new();
            let mut assembler = wire::Assembler::default();
            let mut complete = false;
            loop {
                // Once every wanted name has answered, other replicas of
                // them get a short grace to answer too.
                if !complete
                    && !want.is_empty()
                    && want.iter().all(|w| found.iter().any(|s| &s.agent == w))
                {
                    complete = true;
                    let grace = tokio::time::Instant::now() + Duration::from_millis(300);
                    deadline = deadline.min(grace);
                }
                let msg = match tokio::time::timeout_at(deadline, sub.next()).await {
                    Ok(Some(m)) => m,
                    _ => break,
                };
                // The server's "no responders" notice has no payload.
                if msg.status.is_some() || msg.payload.is_empty() {
                    continue;
                }
                let Ok(Some(bytes)) = super::reassemble(&mut assembler, &msg) else {
                    continue;
                };
                match status_of(&bytes) {
                    Ok(s) => found.push(s),
                    Err(e) => self.shared.reject(
                        msg.subject.as_str(),
                        Rejection::BadEnvelope(format!("discovery answer: {e}")),
                    ),
                }
            }
            found.sort_by(|a, b| (&a.agent, &a.instance).cmp(&(&b.agent, &b.instance)));
            Ok(found)
        })
    }

    /// Admit every replica of `spec` that answered discovery: each must
    /// serve the roster's model and, when the roster names a key, sign with
    /// it; otherwise each replica's announced key is trusted for the run.
    fn admit(&self, spec: &AgentSpec, found: &[StatusMsg]) -> Result<(), FederationError> {
        let replicas: Vec<&StatusMsg> = found.iter().filter(|s| s.agent == spec.name).collect();
        if replicas.is_empty() {
            return Err(FederationError::Discovery(format!(
                "agent `{}` did not answer on {}; start it with `nsed agent serve --nats {} --model {} --name {}`",
                spec.name, self.config.url, self.config.url, spec.model, spec.name
            )));
        }
        let expected = expected_model_id(&spec.model);
        for s in &replicas {
            if let Some(key) = &spec.public_key {
                if key.trim() != s.public_key {
                    return Err(FederationError::Discovery(format!(
                        "agent `{}` (instance {}) announced key {} but the roster expects {}",
                        spec.name, s.instance, s.public_key, key
                    )));
                }
            }
            if s.model != expected {
                return Err(FederationError::Discovery(format!(
                    "agent `{}` serves model `{}` but the roster says `{}`",
                    spec.name, s.model, expected
                )));
            }
        }
        for s in replicas {
            self.pin(s);
            self.shared.event(
                "admitted",
                json!({"agent": spec.name, "model": s.model, "sha256": s.model_sha256,
                       "public_key": s.public_key, "instance": s.instance}),
            );
        }
        Ok(())
    }

    /// Send a task; the reply is collected with [`Federation::wait`].
    pub fn send(&self, encoded: Encoded, timeout: Duration) -> Result<Ticket, CallFailure> {
        let Encoded { task, bytes, call } = encoded;
        let subject = task.subject();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now = Instant::now();
        {
            let mut st = self.shared.state();
            st.stats.tasks += 1;
            st.stats.bytes_out += bytes.len() as u64;
            st.pending.insert(
                call.clone(),
                Pending {
                    label: match &task.body {
                        TaskBody::Propose(r) => r.inference_id.clone(),
                        TaskBody::Evaluate(r) => r.inference_id.clone(),
                        TaskBody::Ping(_) => "ping".into(),
                    },
                    agent: task.agent.clone(),
                    round: task.round,
                    action: task.action,
                    subject: subject.clone(),
                    bytes: bytes.clone(),
                    sent: now,
                    last_sent: now,
                    deadline: now + timeout,
                    timeout,
                    acked: None,
                    instance: None,
                    tx: Some(tx),
                },
            );
        }
        // A failed publish (disconnected, say) is retried by the resend
        // loop until the deadline.
        if let Err(e) = self
            .rt
            .block_on(super::publish(&self.client, subject, bytes))
        {
            self.shared
                .event("send-failed", json!({"call": call, "error": e.to_string()}));
        }
        Ok(Ticket { call, rx })
    }

    /// The reply to a sent task, or why there is none (timeout, dead agent,
    /// error on the agent).
    pub fn wait(&self, ticket: Ticket) -> Reply {
        let bound = {
            let st = self.shared.state();
            st.pending
                .get(&ticket.call)
                .map_or(Duration::from_secs(1), |p| {
                    p.deadline.saturating_duration_since(Instant::now())
                })
        };
        // The watcher fails the call at its deadline; the extra bound only
        // guards against a stopped runtime.
        let bounded =
            async move { tokio::time::timeout(bound + Duration::from_secs(10), ticket.rx).await };
        match self.rt.block_on(bounded) {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => Err(CallFailure::Closed),
            Err(_) => Err(CallFailure::WatcherStopped),
        }
    }

    /// Round-trip one ping through `agent` (the transport and signing cost,
    /// without the model).
    pub fn ping(&self, agent: &str, payload: String, timeout: Duration) -> Reply {
        let ticket = self.send_ping(agent, payload, timeout)?;
        self.wait(ticket)
    }

    /// Send a ping without waiting for it.
    pub fn send_ping(
        &self,
        agent: &str,
        payload: String,
        timeout: Duration,
    ) -> Result<Ticket, CallFailure> {
        let task = TaskMsg {
            schema: SCHEMA,
            job: self.shared.job.clone(),
            round: 0,
            agent: agent.to_string(),
            action: Action::Ping,
            profile: Profile::default(),
            body: TaskBody::Ping(payload),
        };
        self.send(Encoded::new(task)?, timeout)
    }

    /// Trust a replica's key for its agent name and mark it alive (also
    /// for `nsed agents --ping`, which pings whatever answered discovery).
    pub fn pin(&self, status: &StatusMsg) {
        let mut st = self.shared.state();
        let keys = st.pinned.entry(status.agent.clone()).or_default();
        if !keys.contains(&status.public_key) {
            keys.push(status.public_key.clone());
        }
        st.instances.insert(status.instance.clone(), Instant::now());
        st.agents.insert(
            status.agent.clone(),
            Seen {
                status: status.clone(),
                last: Instant::now(),
            },
        );
    }
}

impl Drop for Federation {
    fn drop(&mut self) {
        let client = self.client.clone();
        let _ = self.rt.block_on(async move {
            tokio::time::timeout(Duration::from_secs(2), client.flush()).await
        });
    }
}

/// The id a served model announces for a roster's model spec: the registry
/// id, or the file stem of a GGUF path.
fn expected_model_id(spec: &str) -> String {
    let path = Path::new(spec);
    if spec.ends_with(".gguf") || spec.contains('/') {
        return path
            .file_stem()
            .map_or_else(|| spec.to_string(), |s| s.to_string_lossy().into_owned());
    }
    spec.to_string()
}

/// A status message from its envelope bytes: the signature must hold and
/// be by the key the status announces.
fn status_of(bytes: &[u8]) -> Result<StatusMsg, String> {
    let env: Envelope = serde_json::from_slice(bytes).map_err(|e| format!("malformed: {e}"))?;
    match open(&env).map_err(|e| e.to_string())? {
        (Body::Status(s), _) if s.public_key == env.public_key => {
            wire::check_name("agent", &s.agent)?;
            Ok(s)
        }
        (Body::Status(_), _) => Err("signed by a key other than the one it announces".into()),
        _ => Err("not a status message".into()),
    }
}

fn on_event(shared: &Shared, event: async_nats::Event) {
    match event {
        async_nats::Event::Connected => {
            let generation = {
                let mut st = shared.state();
                st.generation += 1;
                st.connected_at = Some(Instant::now());
                st.generation
            };
            if generation > 1 {
                shared.event("reconnected", json!({"generation": generation}));
            }
        }
        async_nats::Event::Disconnected => shared.event("disconnected", json!({})),
        other => shared.event("nats", json!({"detail": other.to_string()})),
    }
}

/// Handle every message on a subscription: replies and acks of the job,
/// heartbeats.
async fn listen(shared: Arc<Shared>, mut sub: async_nats::Subscriber) {
    while let Some(msg) = sub.next().await {
        let whole = {
            let mut st = shared.state();
            st.stats.messages_in += 1;
            st.stats.bytes_in += msg.payload.len() as u64;
            let whole = super::reassemble(&mut st.assembler, &msg);
            let chunked = msg
                .headers
                .as_ref()
                .is_some_and(|h| h.get(wire::HEADER_MSG).is_some());
            if chunked && matches!(whole, Ok(Some(_))) {
                st.stats.chunked_in += 1;
            }
            whole
        };
        match whole {
            Ok(Some(bytes)) => on_message(&shared, msg.subject.as_str(), &bytes),
            Ok(None) => {}
            Err(e) => shared.reject(msg.subject.as_str(), e),
        }
    }
}

fn on_message(shared: &Shared, subject: &str, bytes: &[u8]) {
    let env: Envelope = match serde_json::from_slice(bytes) {
        Ok(e) => e,
        Err(e) => {
            return shared.reject(
                subject,
                Rejection::Malformed {
                    bytes: bytes.len(),
                    detail: e.to_string(),
                },
            )
        }
    };
    let (body, att) = match open(&env) {
        Ok(x) => x,
        Err(e) => return shared.reject(subject, e),
    };
    match body {
        Body::Reply(r) => on_reply(shared, subject, *r, att, &env),
        Body::Ack(a) => {
            let mut st = shared.state();
            let generation = st.generation;
            let trusted = st.trusts(&a.agent, &att.public_key);
            if let Some(p) = st.pending.get_mut(&a.call) {
                if trusted && p.agent == a.agent {
                    p.acked = Some(generation);
                    p.instance = Some(a.instance.clone());
                    st.stats.acks += 1;
                }
            }
        }
        Body::Status(s) => {
            let mut st = shared.state();
            if !st.pinned.contains_key(&s.agent) || subject != heartbeat_subject(&s.agent) {
                return;
            }
            if !st.trusts(&s.agent, &att.public_key) || s.public_key != att.public_key {
                drop(st);
                return shared.reject(
                    subject,
                    Rejection::ForeignHeartbeat {
                        agent: s.agent.clone(),
                    },
                );
            }
            let now = Instant::now();
            st.instances.insert(s.instance.clone(), now);
            st.agents.insert(
                s.agent.clone(),
                Seen {
                    status: s,
                    last: now,
                },
            );
        }
    }
}

fn on_reply(shared: &Shared, subject: &str, r: wire::ReplyMsg, att: Attestation, env: &Envelope) {
    let mut st = shared.state();
    let reason = if !st.trusts(&r.agent, &att.public_key) {
        Some(Rejection::UnknownKey {
            agent: r.agent.clone(),
            key: att.public_key.clone(),
        })
    } else if r.job != shared.job {
        Some(Rejection::WrongJob {
            got: r.job.clone(),
            expected: shared.job.clone(),
        })
    } else if subject != result_subject(&r.job, r.round, &r.agent, r.action) {
        Some(Rejection::Replayed {
            round: r.round,
            action: r.action.as_str(),
            agent: r.agent.clone(),
            subject: subject.to_string(),
        })
    } else if !st.pending.contains_key(&r.call) && st.answered.contains(&r.call) {
        st.stats.duplicates += 1;
        drop(st);
        shared.event("duplicate", json!({"call": r.call}));
        return;
    } else {
        match st.pending.get(&r.call) {
            None => Some(Rejection::UnknownCall {
                call: r.call.chars().take(16).collect(),
            }),
            Some(p) if p.agent != r.agent || p.round != r.round || p.action != r.action => {
                Some(Rejection::Misattributed {
                    round: p.round,
                    action: p.action.as_str(),
                    agent: p.agent.clone(),
                })
            }
            Some(_) => None,
        }
    };
    if let Some(reason) = reason {
        drop(st);
        return shared.reject(subject, reason);
    }
    let Some(mut p) = st.pending.remove(&r.call) else {
        return;
    };
    st.answered.insert(r.call.clone());
    st.stats.replies += 1;
    drop(st);
    let wall = p.sent.elapsed().as_secs_f64();
    let inference = match &r.outcome {
        Outcome::Proposal(x) => x.usage.seconds,
        Outcome::Evaluation(x) => x.usage.seconds,
        _ => 0.0,
    };
    shared.event(
        "accepted",
        json!({"agent": r.agent, "round": r.round, "action": r.action, "call": r.call, "label": p.label,
               "wall_s": wall, "inference_s": inference, "envelope": env}),
    );
    if let Some(tx) = p.tx.take() {
        let _ = tx.send(Ok(Accepted {
            outcome: r.outcome,
            attestation: att,
            wall,
        }));
    }
}

/// Every 100 ms: fail calls past their deadline or whose agent stopped
/// sending heartbeats, and resend tasks not acknowledged.
async fn watch(shared: Arc<Shared>, client: async_nats::Client) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let connected = client.connection_state() == async_nats::connection::State::Connected;
        let (failed, resend) = sweep(&shared, connected);
        for (agent, tx, why) in failed {
            shared.event(
                "excluded",
                json!({"agent": agent, "reason": why.to_string()}),
            );
            let _ = tx.send(Err(why));
        }
        for (subject, bytes) in resend {
            let _ = super::publish(&client, subject, bytes).await;
        }
    }
}

type Failed = Vec<(String, tokio::sync::oneshot::Sender<Reply>, CallFailure)>;

fn sweep(shared: &Shared, connected: bool) -> (Failed, Vec<(String, Vec<u8>)>) {
    let now = Instant::now();
    let mut st = shared.state();
    let generation = st.generation;
    let since_connect = st.connected_at.map_or(Duration::ZERO, |t| now - t);
    let mut failed = Vec::new();
    let mut resend = Vec::new();
    let mut dead = Vec::new();
    for (call, p) in &st.pending {
        if now >= p.deadline {
            let why = CallFailure::Timeout {
                seconds: p.timeout.as_secs_f64(),
            };
            dead.push((call.clone(), why));
            continue;
        }
        if let Some(seen) = st.agents.get(&p.agent) {
            // Three missed heartbeats of the replica running the call (of
            // any replica, before one acknowledged it); our own outage does
            // not count.
            let limit = Duration::from_secs_f64(3.0 * seen.status.heartbeat_s.max(0.2));
            let last = p
                .instance
                .as_ref()
                .and_then(|i| st.instances.get(i))
                .copied()
                .unwrap_or(seen.last);
            let silent = (now - last).min(since_connect);
            if connected && silent > limit {
                let why = CallFailure::NoHeartbeat {
                    seconds: silent.as_secs_f64(),
                };
                dead.push((call.clone(), why));
                continue;
            }
        }
        if connected && p.acked != Some(generation) && now - p.last_sent >= shared.resend {
            resend.push(call.clone());
        }
    }
    for (call, why) in dead {
        if let Some(mut p) = st.pending.remove(&call) {
            st.stats.excluded += 1;
            if let Some(tx) = p.tx.take() {
                failed.push((p.agent.clone(), tx, why));
            }
        }
    }
    let mut out = Vec::new();
    for call in resend {
        if let Some(p) = st.pending.get_mut(&call) {
            p.last_sent = now;
            out.push((p.subject.clone(), p.bytes.clone()));
        }
    }
    st.stats.resent += out.len() as u64;
    (failed, out)
}

/// A task in flight.
pub struct Ticket {
    call: String,
    rx: tokio::sync::oneshot::Receiver<Reply>,
}

/// An agent served by `nsed agent serve` somewhere on the federation.
pub struct NatsAgent {
    fed: Arc<Federation>,
    spec: AgentSpec,
    profile: Profile,
    model_id: String,
    tickets: HashMap<String, Ticket>,
}

impl NatsAgent {
    /// The agent must have been admitted (see [`Federation::for_roster`]).
    pub fn new(fed: Arc<Federation>, spec: &AgentSpec) -> Result<Self, FederationError> {
        let status = fed.status(&spec.name).ok_or_else(|| {
            FederationError::Discovery(format!("agent `{}` was not admitted", spec.name))
        })?;
        Ok(Self {
            profile: Profile::of(spec),
            spec: spec.clone(),
            model_id: status.model,
            fed,
            tickets: HashMap::new(),
        })
    }

    fn task(&self, round: usize, body: TaskBody) -> TaskMsg {
        TaskMsg {
            schema: SCHEMA,
            job: self.fed.job().to_string(),
            round,
            agent: self.spec.name.clone(),
            action: TaskMsg::action_of(&body, &self.profile),
            profile: self.profile.clone(),
            body,
        }
    }

    fn timeout(&self, action: Action) -> Duration {
        let c = &self.fed.config;
        Duration::from_secs_f64(match action {
            Action::Propose => c.propose_timeout_s,
            _ => c.evaluate_timeout_s,
        })
    }

    /// Send a task ahead; a failure here resurfaces when it is called.
    fn start(&mut self, task: TaskMsg) {
        let Ok(encoded) = Encoded::new(task) else {
            return;
        };
        if self.tickets.contains_key(&encoded.call) {
            return;
        }
        let (call, timeout) = (encoded.call.clone(), self.timeout(encoded.task.action));
        if let Ok(t) = self.fed.send(encoded, timeout) {
            self.tickets.insert(call, t);
        }
    }

    fn call(&mut self, task: TaskMsg) -> Result<Accepted, AgentError> {
        let encoded = Encoded::new(task).map_err(|e| self.fail(e))?;
        let ticket = match self.tickets.remove(&encoded.call) {
            Some(t) => t,
            None => {
                let timeout = self.timeout(encoded.task.action);
                self.fed.send(encoded, timeout).map_err(|m| self.fail(m))?
            }
        };
        self.fed.wait(ticket).map_err(|m| self.fail(m))
    }

    fn fail(&self, failure: CallFailure) -> AgentError {
        AgentError::Call {
            agent: self.spec.name.clone(),
            failure,
        }
    }
}

/// A task with its bytes and call id (their sha256), serialized once.
pub struct Encoded {
    task: TaskMsg,
    bytes: Vec<u8>,
    call: String,
}

impl Encoded {
    /// Serialize `task`; its call id is the SHA-256 of the bytes.
    pub fn new(task: TaskMsg) -> Result<Self, CallFailure> {
        let bytes = serde_json::to_vec(&task).map_err(|e| CallFailure::Encode(e.to_string()))?;
        let call = digest(&bytes);
        Ok(Self { task, bytes, call })
    }
}

impl Agent for NatsAgent {
    fn name(&self) -> &str {
        &self.spec.name
    }

    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn propose(&mut self, req: &ProposeRequest) -> Result<Proposal, AgentError> {
        let a = self.call(self.task(req.round, TaskBody::Propose(req.clone())))?;
        match a.outcome {
            Outcome::Proposal(mut p) => {
                p.attestation = Some(a.attestation);
                Ok(p)
            }
            Outcome::Error(m) => Err(self.fail(CallFailure::Remote(m))),
            _ => Err(self.fail(CallFailure::WrongOutcome {
                asked: "a proposal",
            })),
        }
    }

    fn evaluate(&mut self, req: &EvaluateRequest) -> Result<Evaluation, AgentError> {
        let a = self.call(self.task(req.round, TaskBody::Evaluate(req.clone())))?;
        match a.outcome {
            Outcome::Evaluation(mut e) => {
                e.attestation = Some(a.attestation);
                Ok(e)
            }
            Outcome::Error(m) => Err(self.fail(CallFailure::Remote(m))),
            _ => Err(self.fail(CallFailure::WrongOutcome {
                asked: "an evaluation",
            })),
        }
    }

    fn prefetch(&mut self, call: Call<'_>) {
        let task = match call {
            Call::Propose(req) => self.task(req.round, TaskBody::Propose(req.clone())),
            Call::Evaluate(req) => self.task(req.round, TaskBody::Evaluate(req.clone())),
        };
        self.start(task);
    }
}

#[cfg(test)]
mod tests {
    use super::super::identity::Identity;
    use super::super::wire::ReplyMsg;
    use super::*;

    const JOB: &str = "job1";

    fn shared() -> Shared {
        Shared {
            job: JOB.into(),
            resend: Duration::from_secs(1),
            state: Mutex::new(State::default()),
            log: Mutex::new(Log::default()),
        }
    }

    /// A call of round 1's proposal to agent `a`, due in `timeout`.
    fn pending(timeout: Duration) -> (Pending, tokio::sync::oneshot::Receiver<Reply>) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let now = Instant::now();
        let p = Pending {
            label: "t/nsed/r1/a/propose".into(),
            agent: "a".into(),
            round: 1,
            action: Action::Propose,
            subject: "task".into(),
            bytes: vec![],
            sent: now,
            last_sent: now,
            deadline: now + timeout,
            timeout,
            acked: None,
            instance: None,
            tx: Some(tx),
        };
        (p, rx)
    }

    fn reply(call: &str, round: usize) -> Body {
        Body::Reply(Box::new(ReplyMsg {
            schema: SCHEMA,
            job: JOB.into(),
            round,
            agent: "a".into(),
            action: Action::Propose,
            call: call.into(),
            instance: "i".into(),
            model: "m".into(),
            model_sha256: "0".repeat(64),
            outcome: Outcome::Error("no model".into()),
        }))
    }

    fn rejections(shared: &Shared) -> Vec<Rejection> {
        let st = shared.state();
        st.rejections.iter().map(|(_, r)| r.clone()).collect()
    }

    #[test]
    fn a_call_past_its_deadline_fails_as_a_timeout() {
        let shared = shared();
        let (p, _rx) = pending(Duration::ZERO);
        shared.state().pending.insert("c1".into(), p);
        let (failed, _) = sweep(&shared, true);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].2, CallFailure::Timeout { seconds: 0.0 });
        assert!(shared.state().pending.is_empty());
        assert_eq!(shared.state().stats.excluded, 1);
    }

    #[test]
    fn a_silent_agent_fails_as_dead_and_a_live_one_is_resent() {
        let shared = shared();
        let (p, _rx) = pending(Duration::from_secs(60));
        let id = Identity::generate().expect("key");
        let status = StatusMsg {
            schema: SCHEMA,
            agent: "a".into(),
            instance: "i".into(),
            model: "m".into(),
            model_sha256: "0".repeat(64),
            public_key: id.public_key(),
            nsed_version: "0".into(),
            started: "now".into(),
            heartbeat_s: 0.2,
            busy: false,
            queued: 0,
            served: 0,
        };
        {
            let mut st = shared.state();
            st.pending.insert("c1".into(), p);
            st.connected_at = Some(Instant::now() - Duration::from_secs(10));
            let last = Instant::now() - Duration::from_secs(5);
            st.agents.insert("a".into(), Seen { status, last });
        }
        // Not connected: our own outage is not the agent's silence, and
        // nothing is sent.
        let (failed, resend) = sweep(&shared, false);
        assert!(failed.is_empty() && resend.is_empty());
        let (failed, _) = sweep(&shared, true);
        assert!(
            matches!(failed[0].2, CallFailure::NoHeartbeat { seconds } if seconds >= 4.9),
            "{:?}",
            failed[0].2
        );
        // A live agent's call, not yet acknowledged, is sent again.
        let (p, _rx) = pending(Duration::from_secs(60));
        {
            let mut st = shared.state();
            st.pending.insert("c2".into(), p);
            st.agents.get_mut("a").expect("seen").last = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(1100));
        shared.state().agents.get_mut("a").expect("seen").last = Instant::now();
        let (failed, resend) = sweep(&shared, true);
        assert!(failed.is_empty(), "{:?}", failed[0].2);
        assert_eq!(resend.len(), 1);
    }

    #[test]
    fn replies_are_refused_by_kind_and_the_genuine_one_is_accepted() {
        let shared = shared();
        let agent = Identity::generate().expect("key");
        let forger = Identity::generate().expect("key");
        let (p, mut rx) = pending(Duration::from_secs(60));
        {
            let mut st = shared.state();
            st.pinned.insert("a".into(), vec![agent.public_key()]);
            st.pending.insert("c1".into(), p);
        }
        let on_subject = result_subject(JOB, 1, "a", Action::Propose);
        let send = |env: &Envelope, subject: &str| {
            on_message(&shared, subject, &serde_json::to_vec(env).expect("json"))
        };
        on_message(&shared, &on_subject, b"{not json");
        send(&forger.seal(&reply("c1", 1)), &on_subject);
        let mut tampered = agent.seal(&reply("c1", 1));
        tampered.signed = tampered.signed.replace("no model", "no modem");
        send(&tampered, &on_subject);
        send(&agent.seal(&reply("c0", 1)), &on_subject);
        send(
            &agent.seal(&reply("c1", 1)),
            &result_subject(JOB, 2, "a", Action::Propose),
        );
        assert!(rx.try_recv().is_err(), "no forged reply ended the call");
        let got = rejections(&shared);
        assert!(matches!(got[0], Rejection::Malformed { .. }), "{got:?}");
        assert!(
            matches!(&got[1], Rejection::UnknownKey { agent, key } if agent == "a" && *key == forger.public_key()),
            "{got:?}"
        );
        assert_eq!(got[2], Rejection::BadSignature);
        assert!(matches!(got[3], Rejection::UnknownCall { .. }), "{got:?}");
        assert!(
            matches!(got[4], Rejection::Replayed { round: 1, .. }),
            "{got:?}"
        );
        // The genuine reply ends the call, with the agent's own error.
        send(&agent.seal(&reply("c1", 1)), &on_subject);
        let accepted = rx.try_recv().expect("answered").expect("accepted");
        assert_eq!(accepted.outcome, Outcome::Error("no model".into()));
        assert_eq!(accepted.attestation.public_key, agent.public_key());
        assert_eq!(shared.state().stats.rejected, 5);
    }
}
