//! `nsed agent serve`: one model served to orchestrators over NATS. Tasks
//! arrive on `nsed.*.task.{name}.*` in the queue group `nsed-agent-{name}`
//! (replicas of one agent share the load); each is acknowledged, run on the
//! model thread, and its signed reply published on the job's result
//! subject. Duplicates (resends, redeliveries) are answered from a cache of
//! recent replies or ignored while in flight: a call runs once. Heartbeats
//! and discovery answers carry the agent's name, model, GGUF sha256 and
//! public key.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::identity::Identity;
use super::wire::{
    self, digest, AckMsg, Body, Outcome, ReplyMsg, StatusMsg, TaskBody, TaskMsg, SCHEMA,
};
use super::{heartbeat_subject, FederationError, DISCOVER_SUBJECT};
use crate::deliberation::local::LocalAgent;
use crate::deliberation::Agent;
use crate::engine::batch::{Engine, EngineHandle, Limits};
use crate::engine::runtime::Runtime;

/// Settings of `nsed agent serve`.
pub struct ServeOptions {
    /// The NATS server's URL.
    pub url: String,
    /// Registry id or GGUF path.
    pub model: String,
    /// The agent's name (default: the model id).
    pub name: Option<String>,
    /// Ed25519 key file; without one a fresh key is made for this process.
    pub key: Option<PathBuf>,
    /// Interval between heartbeats.
    pub heartbeat: Duration,
    /// Threads of the model's pool.
    pub threads: usize,
    /// Fault injection for tests: hold every reply this long.
    pub fault_delay: Option<Duration>,
}

struct Work {
    call: String,
    task: TaskMsg,
}

struct Done {
    call: String,
    task: TaskMsg,
    outcome: Outcome,
}

/// Recent replies by call id, so a duplicate task gets the same reply.
const CACHE: usize = 512;

/// Load the model, connect, and serve until interrupted.
pub fn serve(opts: ServeOptions) -> Result<(), FederationError> {
    if let Some(name) = &opts.name {
        wire::check_name("agent name", name).map_err(FederationError::Invalid)?;
    }
    let identity = match &opts.key {
        Some(path) => Identity::load(path)?,
        None => Identity::generate()?,
    };
    let (work_tx, work_rx) = std::sync::mpsc::channel::<Work>();
    let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let model = opts.model.clone();
    let threads = opts.threads.max(1);
    let name_arg = opts.name.clone();
    std::thread::Builder::new()
        .name("nsed-model".into())
        .spawn(move || model_thread(&model, name_arg, threads, work_rx, done_tx, ready_tx))?;
    let (name, model_id, sha) = ready_rx
        .recv()
        .map_err(|_| FederationError::Invalid("the model thread stopped".into()))?
        .map_err(FederationError::Invalid)?;
    wire::check_name("agent name", &name).map_err(FederationError::Invalid)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let client = super::connect(&opts.url, &format!("nsed-agent-{name}"), None).await?;
        let mut svc = Service {
            status: StatusMsg {
                schema: SCHEMA,
                agent: name.clone(),
                instance: super::new_job_id().replacen('j', "i", 1),
                model: model_id,
                model_sha256: sha,
                public_key: identity.public_key(),
                nsed_version: env!("CARGO_PKG_VERSION").into(),
                started: crate::results::provenance::utc_now(),
                heartbeat_s: opts.heartbeat.as_secs_f64(),
                busy: false,
                queued: 0,
                served: 0,
            },
            client,
            identity: Arc::new(identity),
            fault_delay: opts.fault_delay,
            work: work_tx,
            inflight: HashMap::new(),
            cache: HashMap::new(),
            order: VecDeque::new(),
            assembler: wire::Assembler::default(),
        };
        svc.run(opts.heartbeat, done_rx).await
    })
}

type Ready = Result<(String, String, String), String>;

fn model_thread(
    spec: &str,
    name: Option<String>,
    threads: usize,
    work: std::sync::mpsc::Receiver<Work>,
    done: tokio::sync::mpsc::UnboundedSender<Done>,
    ready: std::sync::mpsc::Sender<Ready>,
) {
    let run = move || {
        let rt = match Runtime::load(spec) {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let id = rt.id();
        let sha = match rt.sha256() {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
        };
        let name = name.unwrap_or_else(|| id.clone());
        let _ = ready.send(Ok((name.clone(), id.clone(), sha)));
        let engine = match Engine::spawn(rt, Limits::default()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("nsed agent: no engine thread: {e}");
                return;
            }
        };
        while let Ok(w) = work.recv() {
            let outcome = execute(&w.task, &name, &id, &engine);
            let reply = Done {
                call: w.call,
                task: w.task,
                outcome,
            };
            if done.send(reply).is_err() {
                break;
            }
        }
    };
    // The model's own pool, sized like the binary's.
    match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
        Ok(pool) => pool.install(run),
        Err(e) => eprintln!("nsed agent: no thread pool: {e}"),
    }
}

/// Run one task on the model, as the roster entry in the task's profile. An
/// error goes back as its reason alone: the orchestrator names the agent.
fn execute(task: &TaskMsg, name: &str, model: &str, engine: &EngineHandle) -> Outcome {
    let mut agent = match LocalAgent::new(task.profile.spec(name, model), engine.clone()) {
        Ok(agent) => agent,
        Err(e) => return Outcome::Error(e.reason()),
    };
    match &task.body {
        TaskBody::Propose(req) => agent
            .propose(req)
            .map_or_else(|e| Outcome::Error(e.reason()), Outcome::Proposal),
        TaskBody::Evaluate(req) => agent
            .evaluate(req)
            .map_or_else(|e| Outcome::Error(e.reason()), Outcome::Evaluation),
        TaskBody::Ping(s) => Outcome::Pong(s.clone()),
    }
}

struct Service {
    status: StatusMsg,
    client: async_nats::Client,
    identity: Arc<Identity>,
    fault_delay: Option<Duration>,
    work: std::sync::mpsc::Sender<Work>,
    inflight: HashMap<String, TaskMsg>,
    /// call id → (subject, sealed reply bytes)
    cache: HashMap<String, (String, Vec<u8>)>,
    order: VecDeque<String>,
    assembler: wire::Assembler,
}

fn log(name: &str, message: impl std::fmt::Display) {
    eprintln!("[{:.3}] agent {name}: {message}", super::unix_now());
}

impl Service {
    async fn run(
        &mut self,
        heartbeat: Duration,
        mut done: tokio::sync::mpsc::UnboundedReceiver<Done>,
    ) -> Result<(), FederationError> {
        let name = self.status.agent.clone();
        let nats = |e: async_nats::SubscribeError| FederationError::Nats(e.to_string());
        let mut tasks = self
            .client
            .queue_subscribe(
                format!("nsed.*.task.{name}.*"),
                format!("nsed-agent-{name}"),
            )
            .await
            .map_err(nats)?;
        let mut discover = self
            .client
            .subscribe(DISCOVER_SUBJECT)
            .await
            .map_err(nats)?;
        let mut beat = tokio::time::interval(heartbeat);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        log(
            &name,
            format!(
                "serving {} (sha256 {}) as `{name}`, key {}",
                self.status.model, self.status.model_sha256, self.status.public_key
            ),
        );
        loop {
            tokio::select! {
                Some(msg) = tasks.next() => self.on_task(msg).await,
                Some(msg) = discover.next() => {
                    if let Some(reply) = msg.reply {
                        let bytes = self.sealed(Body::Status(self.status.clone()));
                        let _ = super::publish(&self.client, reply.to_string(), bytes).await;
                    }
                }
                d = done.recv() => match d {
                    Some(d) => self.on_done(d).await,
                    None => return Err(FederationError::Invalid("the model thread stopped".into())),
                },
                _ = beat.tick() => {
                    let bytes = self.sealed(Body::Status(self.status.clone()));
                    let _ = super::publish(&self.client, heartbeat_subject(&name), bytes).await;
                }
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
            }
        }
        log(&name, "stopping");
        // Bounded: with the server gone, a flush would wait for a reconnect
        // that never comes.
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.flush()).await;
        Ok(())
    }

    fn sealed(&self, body: Body) -> Vec<u8> {
        serde_json::to_vec(&self.identity.seal(&body)).unwrap_or_default()
    }

    async fn on_task(&mut self, msg: async_nats::Message) {
        let name = self.status.agent.clone();
        let bytes = match super::reassemble(&mut self.assembler, &msg) {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(e) => return log(&name, format!("dropped a chunk on {}: {e}", msg.subject)),
        };
        let task: TaskMsg = match serde_json::from_slice(&bytes) {
            Ok(t) => t,
            Err(e) => return log(&name, format!("malformed task on {}: {e}", msg.subject)),
        };
        if let Err(e) = task.check() {
            return log(&name, format!("refused a task on {}: {e}", msg.subject));
        }
        if task.agent != name || msg.subject.as_str() != task.subject() {
            return log(
                &name,
                format!("refused a task for `{}` on {}", task.agent, msg.subject),
            );
        }
        let call = digest(&bytes);
        if let Some((subject, reply)) = self.cache.get(&call) {
            let _ = super::publish(&self.client, subject.clone(), reply.clone()).await;
            return;
        }
        self.ack(&task, &call).await;
        if self.inflight.contains_key(&call) {
            return;
        }
        if let TaskBody::Ping(s) = &task.body {
            let outcome = Outcome::Pong(s.clone());
            return self.reply(task, call, outcome).await;
        }
        log(
            &name,
            format!(
                "{} {} r{} {}",
                task.job,
                task.action.as_str(),
                task.round,
                &call[..12]
            ),
        );
        self.inflight.insert(call.clone(), task.clone());
        self.status.queued = self.inflight.len();
        self.status.busy = true;
        if self.work.send(Work { call, task }).is_err() {
            log(&name, "the model thread stopped");
        }
    }

    async fn ack(&self, task: &TaskMsg, call: &str) {
        let ack = Body::Ack(AckMsg {
            schema: SCHEMA,
            job: task.job.clone(),
            round: task.round,
            agent: task.agent.clone(),
            action: task.action,
            call: call.to_string(),
            instance: self.status.instance.clone(),
        });
        let _ = super::publish(&self.client, task.result_subject(), self.sealed(ack)).await;
    }

    async fn on_done(&mut self, d: Done) {
        self.inflight.remove(&d.call);
        self.status.queued = self.inflight.len();
        self.status.busy = !self.inflight.is_empty();
        self.status.served += 1;
        if let Some(delay) = self.fault_delay {
            let client = self.client.clone();
            let (subject, bytes) = self.sealed_reply(&d.task, &d.call, d.outcome);
            log(
                &self.status.agent,
                format!("holding a reply for {delay:?} (fault injection)"),
            );
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = super::publish(&client, subject, bytes).await;
            });
            return;
        }
        self.reply(d.task, d.call, d.outcome).await;
    }

    fn sealed_reply(&mut self, task: &TaskMsg, call: &str, outcome: Outcome) -> (String, Vec<u8>) {
        let reply = Body::Reply(Box::new(ReplyMsg {
            schema: SCHEMA,
            job: task.job.clone(),
            round: task.round,
            agent: task.agent.clone(),
            action: task.action,
            call: call.to_string(),
            instance: self.status.instance.clone(),
            model: self.status.model.clone(),
            model_sha256: self.status.model_sha256.clone(),
            outcome,
        }));
        let subject = task.result_subject();
        let bytes = self.sealed(reply);
        self.cache
            .insert(call.to_string(), (subject.clone(), bytes.clone()));
        self.order.push_back(call.to_string());
        while self.order.len() > CACHE {
            if let Some(old) = self.order.pop_front() {
                self.cache.remove(&old);
            }
        }
        (subject, bytes)
    }

    async fn reply(&mut self, task: TaskMsg, call: String, outcome: Outcome) {
        let (subject, bytes) = self.sealed_reply(&task, &call, outcome);
        if let Err(e) = super::publish(&self.client, subject, bytes).await {
            log(&self.status.agent, format!("reply not sent: {e}"));
        }
    }
}
