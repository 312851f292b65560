//! Federation: deliberation with each agent in its own process, on its own
//! machine, coordinated only by messages through a NATS server (docs/reference.md §9).
//! Owns the subject layout, the versioned wire schema ([`wire`]), agent
//! identity ([`identity`]), the agent service (`nsed agent serve`,
//! [`service`]) and the orchestrator's side ([`client`]): a [`NatsAgent`]
//! implements the same [`Agent`] trait as a local model, so the protocol
//! code does not know where its agents run.

pub mod client;
pub mod identity;
pub mod service;
pub mod wire;

use std::sync::Arc;

pub use client::{Federation, NatsAgent};

use crate::deliberation::calls::CallLog;
use crate::deliberation::local::{LocalAgent, Memo, ModelPool};
use crate::deliberation::roster::{Roster, Transport};
use crate::deliberation::Agent;

/// Why the federation (orchestrator side or agent service) could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    /// The NATS server could not be reached.
    #[error("cannot reach the NATS server at {url}: {message} (is nats-server running? start one with `nats-server -a 127.0.0.1 -p 4222`)")]
    Connect {
        /// The server URL tried.
        url: String,
        /// The NATS client's error.
        message: String,
    },
    /// A NATS operation (subscribe, publish) failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// An agent key could not be made, read, checked or saved.
    #[error("key: {0}")]
    Key(String),
    /// A message to publish is larger than [`wire::MAX_MESSAGE`].
    #[error("message of {bytes} bytes is above the {limit}-byte limit")]
    TooLarge {
        /// The message's size, in bytes.
        bytes: usize,
        /// The limit, [`wire::MAX_MESSAGE`].
        limit: usize,
    },
    /// A bad job id or agent name, a remote agent without a federation, or a stopped model
    /// thread.
    #[error("{0}")]
    Invalid(String),
    /// A remote agent did not answer discovery, or announced another model or key than the
    /// roster names.
    #[error("discovery: {0}")]
    Discovery(String),
    /// A model could not be loaded.
    #[error(transparent)]
    Runtime(#[from] crate::engine::runtime::RuntimeError),
    /// An I/O error (an event log, the async runtime, a thread).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Why an incoming message was refused. It is counted and logged; the call
/// it claims to answer stays open for the genuine reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Rejection {
    /// Not a JSON envelope.
    #[error("malformed JSON ({bytes} bytes): {detail}")]
    Malformed {
        /// The message's size, in bytes.
        bytes: usize,
        /// The JSON parser's error.
        detail: String,
    },
    /// Chunks declaring a message above [`wire::MAX_MESSAGE`].
    #[error("oversized message: {declared} bytes declared, limit {limit}")]
    Oversized {
        /// The whole message's size the chunk headers declare, in bytes.
        declared: usize,
        /// The limit, [`wire::MAX_MESSAGE`].
        limit: usize,
    },
    /// A chunk whose index, count and size cannot belong to one message.
    #[error("inconsistent chunk {index}/{count} of {total} bytes")]
    InconsistentChunk {
        /// The chunk's 0-based index.
        index: usize,
        /// How many chunks the message claims.
        count: usize,
        /// The whole message's declared size, in bytes.
        total: usize,
    },
    /// Chunks that disagree with each other or with their declared size,
    /// or chunk headers that do not parse.
    #[error("{0}")]
    BadChunks(String),
    /// An envelope whose schema, key, signature or body does not parse.
    #[error("{0}")]
    BadEnvelope(String),
    /// The signature does not verify under the envelope's key.
    #[error("bad signature")]
    BadSignature,
    /// A valid signature by a key not pinned for the agent it names.
    #[error("reply for `{agent}` signed by {key}, not by its pinned key")]
    UnknownKey {
        /// The agent the reply names.
        agent: String,
        /// The key that signed it, base64.
        key: String,
    },
    /// A heartbeat of a pinned agent signed by a key not pinned for it.
    #[error("heartbeat of `{agent}` signed by another key")]
    ForeignHeartbeat {
        /// The agent the heartbeat names.
        agent: String,
    },
    /// A reply signed for another job.
    #[error("reply of job `{got}` on job `{expected}`")]
    WrongJob {
        /// The job the reply was signed for.
        got: String,
        /// This run's job.
        expected: String,
    },
    /// A reply signed for one round and action, arriving on another's
    /// subject: a replay or a misroute.
    #[error("replayed or misrouted: signed for round {round} {action} of `{agent}`, arrived on {subject}")]
    Replayed {
        /// The round the reply was signed for.
        round: usize,
        /// The action it was signed for.
        action: &'static str,
        /// The agent it names.
        agent: String,
        /// The subject it arrived on.
        subject: String,
    },
    /// A reply to a call id this run never sent.
    #[error("reply to a call never made: {call}")]
    UnknownCall {
        /// The call id the reply names, cut to 16 characters.
        call: String,
    },
    /// A reply to a real call, claiming another round, action or agent.
    #[error("misattributed: call was round {round} {action} of `{agent}`")]
    Misattributed {
        /// The round of the call with that id.
        round: usize,
        /// The action of that call.
        action: &'static str,
        /// The agent that call was sent to.
        agent: String,
    },
}

/// Subject of a task: `nsed.{job}.task.{agent}.{action}`.
pub fn task_subject(job: &str, agent: &str, action: wire::Action) -> String {
    format!("nsed.{job}.task.{agent}.{}", action.as_str())
}

/// Subject of replies and acknowledgements:
/// `nsed.{job}.result.{round}.{agent}.{action}`.
pub fn result_subject(job: &str, round: usize, agent: &str, action: wire::Action) -> String {
    format!("nsed.{job}.result.{round}.{agent}.{}", action.as_str())
}

/// Subject on which the orchestrator asks every serving agent to announce itself.
pub const DISCOVER_SUBJECT: &str = "nsed.agents.discover";

/// Subject of an agent's heartbeats: `nsed.agents.heartbeat.{agent}`.
pub fn heartbeat_subject(agent: &str) -> String {
    format!("nsed.agents.heartbeat.{agent}")
}

/// A fresh job id: `j` and 16 hex digits.
pub fn new_job_id() -> String {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("j{:016x}", u64::from_le_bytes(b) ^ now)
}

/// The roster's agents: local ones load their model here (each model once),
/// remote ones are reached through `federation`. Each is wrapped by `wrap`
/// inside its memo, so what the wrapper adds (e.g. running a proposed
/// program) is remembered with the reply instead of redone on every hit;
/// with `log`, the memo also keeps its replies in the run's call log.
pub fn build_agents(
    roster: &Roster,
    pool: &mut ModelPool,
    federation: Option<&Arc<Federation>>,
    log: Option<&Arc<CallLog>>,
    wrap: impl Fn(Box<dyn Agent>) -> Box<dyn Agent>,
) -> Result<Vec<Box<dyn Agent>>, FederationError> {
    roster
        .agents
        .iter()
        .map(|spec| {
            let agent: Box<dyn Agent> = match (spec.transport, federation) {
                (Transport::Local, _) => Box::new(
                    LocalAgent::new(spec.clone(), pool.get_on(&spec.model, spec.device)?)
                        .map_err(|e| FederationError::Invalid(e.to_string()))?,
                ),
                (Transport::Nats, Some(fed)) => Box::new(NatsAgent::new(fed.clone(), spec)?),
                (Transport::Nats, None) => {
                    return Err(FederationError::Invalid(format!(
                    "agent `{}` is remote (transport = \"nats\") but no federation is connected",
                    spec.name
                )))
                }
            };
            Ok(Box::new(Memo::logged(wrap(agent), log.cloned())) as Box<dyn Agent>)
        })
        .collect()
}

/// Called with the client's connection events (reconnects, errors).
pub type EventHook = Arc<dyn Fn(async_nats::Event) + Send + Sync>;

/// Connect to `url`, failing clearly when no server answers; after that the
/// client reconnects forever (at most 2 s apart) and resubscribes.
pub async fn connect(
    url: &str,
    name: &str,
    hook: Option<EventHook>,
) -> Result<async_nats::Client, FederationError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(std::time::Duration::from_secs(5))
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            std::time::Duration::from_millis((100 * attempts as u64).min(2000))
        });
    if let Some(hook) = hook {
        options = options.event_callback(move |event| {
            hook(event);
            async {}
        });
    }
    options
        .connect(url)
        .await
        .map_err(|e| FederationError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}

/// Publish `bytes` on `subject`, chunked to the server's max payload.
pub async fn publish(
    client: &async_nats::Client,
    subject: String,
    bytes: Vec<u8>,
) -> Result<(), FederationError> {
    let max = match client.server_info().max_payload {
        0 => 1 << 20,
        n => n,
    };
    let id = wire::digest(&bytes)[..16].to_string();
    for frame in wire::frames(bytes, max, &id)? {
        let sent = match frame.chunk {
            Some(c) => {
                client
                    .publish_with_headers(subject.clone(), c.headers(), frame.payload.into())
                    .await
            }
            None => client.publish(subject.clone(), frame.payload.into()).await,
        };
        sent.map_err(|e| FederationError::Nats(format!("publish on {subject}: {e}")))?;
    }
    Ok(())
}

/// The whole message of one NATS message, once all its chunks are in.
pub fn reassemble(
    assembler: &mut wire::Assembler,
    msg: &async_nats::Message,
) -> Result<Option<Vec<u8>>, Rejection> {
    let chunk = wire::Chunk::from_headers(msg.headers.as_ref()).map_err(Rejection::BadChunks)?;
    assembler.push(chunk, &msg.payload)
}

/// Seconds since the Unix epoch, for logs.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
