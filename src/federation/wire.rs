//! The wire format: versioned JSON messages (schema 1), the signed envelope
//! every agent message travels in, and chunking of messages larger than the
//! server's max payload. `docs/federation.md` documents every field.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{FederationError, Rejection};
use crate::deliberation::roster::{AgentSpec, ReasoningMode};
use crate::deliberation::{EvalMode, EvaluateRequest, Evaluation, Proposal, ProposeRequest};

/// The schema version every message carries; a receiver refuses others.
pub const SCHEMA: u32 = 1;

/// A reassembled message larger than this is refused (and its chunks
/// dropped) before it is buffered.
pub const MAX_MESSAGE: usize = 64 << 20;

/// What a task asks for. `score` is an evaluation in the `logprob` mode
/// (next-token log-probabilities, no generation); `ping` is answered by the
/// service without the model, for transport measurements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Write a proposal.
    Propose,
    /// Score candidates by writing (a generative evaluation).
    Evaluate,
    /// Score candidates from next-token log-probabilities (a logprob evaluation).
    Score,
    /// Echo a string back, without the model.
    Ping,
}

impl Action {
    /// The action's name on the wire and in subjects.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Propose => "propose",
            Action::Evaluate => "evaluate",
            Action::Score => "score",
            Action::Ping => "ping",
        }
    }

    /// The action named `s`, if any.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Propose, Self::Evaluate, Self::Score, Self::Ping]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// The roster entry's settings, sent with every task so that a remote agent
/// samples exactly as the same entry would in process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// The agent's system message (`None`: the model's own).
    pub system: Option<String>,
    /// Sampling temperature; 0 is greedy decoding.
    pub temperature: f64,
    /// Nucleus sampling threshold; 1 disables it.
    pub top_p: f64,
    /// Top-k sampling cutoff; 0 disables it.
    pub top_k: usize,
    /// Added to the request's seed, so identical models sample differently.
    pub seed_offset: u64,
    /// Overrides the request's evaluation mode for this agent.
    pub evaluation: Option<EvalMode>,
    /// A reasoning model's thinking, on or off (the roster's `reasoning`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningMode>,
    /// The roster's `reasoning_budget`: most tokens of thinking per generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_budget: Option<usize>,
}

/// An agent's own defaults: greedy, no system override (pings use it).
impl Default for Profile {
    fn default() -> Self {
        Self {
            system: None,
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            seed_offset: 0,
            evaluation: None,
            reasoning: None,
            reasoning_budget: None,
        }
    }
}

impl Profile {
    /// The profile of a roster entry.
    pub fn of(spec: &AgentSpec) -> Self {
        Self {
            system: spec.system.clone(),
            temperature: spec.temperature,
            top_p: spec.top_p,
            top_k: spec.top_k,
            seed_offset: spec.seed_offset,
            evaluation: spec.evaluation,
            reasoning: spec.reasoning,
            reasoning_budget: spec.reasoning_budget,
        }
    }

    /// The spec of a served agent running this profile.
    pub fn spec(&self, name: &str, model: &str) -> AgentSpec {
        AgentSpec {
            name: name.to_string(),
            model: model.to_string(),
            system: self.system.clone(),
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            seed_offset: self.seed_offset,
            evaluation: self.evaluation,
            transport: Default::default(),
            public_key: None,
            device: None,
            reasoning: self.reasoning,
            reasoning_budget: self.reasoning_budget,
        }
    }
}

/// What a task asks the agent to do, with the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "request")]
pub enum TaskBody {
    /// Propose a solution.
    Propose(ProposeRequest),
    /// Evaluate candidates (generatively or by log-probabilities).
    Evaluate(EvaluateRequest),
    /// Echoed back by the service.
    Ping(String),
}

/// A task, published on `nsed.{job}.task.{agent}.{action}`. Its call id is
/// the sha256 of its exact bytes: the reply must name it, which binds a
/// reply to one request (a reply replayed from another call is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskMsg {
    /// The wire schema version, [`SCHEMA`].
    pub schema: u32,
    /// The orchestrator's job id, which scopes the run's subjects.
    pub job: String,
    /// The deliberation round the task belongs to (from 1; 0 for pings).
    pub round: usize,
    /// The roster name of the agent asked.
    pub agent: String,
    /// What is asked; must agree with the body and profile ([`TaskMsg::action_of`]).
    pub action: Action,
    /// The roster entry's sampling settings.
    pub profile: Profile,
    /// The request.
    pub body: TaskBody,
}

impl TaskMsg {
    /// The action a body implies: evaluations in the logprob mode are
    /// `score`.
    pub fn action_of(body: &TaskBody, profile: &Profile) -> Action {
        match body {
            TaskBody::Propose(_) => Action::Propose,
            TaskBody::Evaluate(req) => match profile.evaluation.unwrap_or(req.mode) {
                EvalMode::Generative => Action::Evaluate,
                EvalMode::Logprob => Action::Score,
            },
            TaskBody::Ping(_) => Action::Ping,
        }
    }

    /// Where the task is published.
    pub fn subject(&self) -> String {
        super::task_subject(&self.job, &self.agent, self.action)
    }

    /// Where its acknowledgement and reply are published.
    pub fn result_subject(&self) -> String {
        super::result_subject(&self.job, self.round, &self.agent, self.action)
    }

    /// Check what the bytes cannot say about themselves: the version, the
    /// names, and that the action agrees with the body.
    pub fn check(&self) -> Result<(), String> {
        if self.schema != SCHEMA {
            return Err(format!(
                "schema {} (this nsed speaks {SCHEMA})",
                self.schema
            ));
        }
        check_name("job", &self.job)?;
        check_name("agent", &self.agent)?;
        if Self::action_of(&self.body, &self.profile) != self.action {
            return Err(format!(
                "action {} does not match the body",
                self.action.as_str()
            ));
        }
        Ok(())
    }
}

/// The sha256 (hex) of some bytes: call ids and audit digests.
pub fn digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(bytes))
}

/// A name usable as a subject token: 1-64 of letters, digits, `-`, `_`
/// (so never `.`, `*`, `>`, spaces or control characters).
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    if crate::deliberation::roster::valid_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{what} `{}` must be 1-64 letters, digits, `-` or `_`",
            name.escape_debug()
        ))
    }
}

/// What a served agent answers a task with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The proposal asked for.
    Proposal(Proposal),
    /// The evaluation asked for.
    Evaluation(Evaluation),
    /// A ping's string, echoed back.
    Pong(String),
    /// The call failed on the agent (the message says why).
    Error(String),
}

/// A reply, published on `nsed.{job}.result.{round}.{agent}.{action}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyMsg {
    /// The wire schema version, [`SCHEMA`].
    pub schema: u32,
    /// The job of the task answered.
    pub job: String,
    /// The round of the task answered.
    pub round: usize,
    /// The agent answering.
    pub agent: String,
    /// The action of the task answered.
    pub action: Action,
    /// The task's call id: the SHA-256 (hex) of its exact bytes.
    pub call: String,
    /// Which replica answered.
    pub instance: String,
    /// The id of the model that ran the call.
    pub model: String,
    /// SHA-256 (hex) of the model's GGUF file.
    pub model_sha256: String,
    /// The result of the call.
    pub outcome: Outcome,
}

/// "Task received": stops the orchestrator from sending it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckMsg {
    /// The wire schema version, [`SCHEMA`].
    pub schema: u32,
    /// The job of the task received.
    pub job: String,
    /// The round of the task received.
    pub round: usize,
    /// The agent acknowledging.
    pub agent: String,
    /// The action of the task received.
    pub action: Action,
    /// The task's call id: the SHA-256 (hex) of its exact bytes.
    pub call: String,
    /// Which replica received it; its heartbeats then tell whether the call is alive.
    pub instance: String,
}

/// An agent's identity and state: its heartbeat (on
/// `nsed.agents.heartbeat.{agent}`) and its answer to discovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusMsg {
    /// The wire schema version, [`SCHEMA`].
    pub schema: u32,
    /// The agent's name.
    pub agent: String,
    /// This replica's id (`i` and 16 hex digits), fresh for each process.
    pub instance: String,
    /// The id of the model it serves.
    pub model: String,
    /// SHA-256 (hex) of the model's GGUF file.
    pub model_sha256: String,
    /// The agent's Ed25519 public key, base64.
    pub public_key: String,
    /// The nsed version the agent runs.
    pub nsed_version: String,
    /// When the service started, UTC (`YYYY-MM-DDTHH:MM:SSZ`).
    pub started: String,
    /// Seconds between heartbeats; the agent is presumed dead after three
    /// missed ones.
    pub heartbeat_s: f64,
    /// Whether a model call is in flight.
    pub busy: bool,
    /// Model calls received and not yet finished.
    pub queued: usize,
    /// Model calls finished since the service started.
    pub served: u64,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "message")]
pub enum Body {
    /// A reply to a task.
    Reply(Box<ReplyMsg>),
    /// An acknowledgement that a task arrived.
    Ack(AckMsg),
    /// A heartbeat or a discovery answer.
    Status(StatusMsg),
}

/// Every message an agent sends: the body's exact JSON text, the agent's
/// Ed25519 public key and its signature over that text (both base64).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// The wire schema version, [`SCHEMA`].
    pub schema: u32,
    /// The body's exact JSON text, the bytes that are signed.
    pub signed: String,
    /// The signer's Ed25519 public key, base64.
    pub public_key: String,
    /// The Ed25519 signature over `signed`, base64.
    pub signature: String,
}

// ---- chunking ----

/// Header naming the message a chunk belongs to.
pub const HEADER_MSG: &str = "Nsed-Msg";
/// Header giving a chunk's position: `{index}/{count}`, index from 0.
pub const HEADER_CHUNK: &str = "Nsed-Chunk";
/// Header giving the whole message's size in bytes.
pub const HEADER_TOTAL: &str = "Nsed-Total";

/// Room left in each chunk for the headers and the protocol line.
const HEADER_ROOM: usize = 512;

/// One NATS message of a possibly chunked whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// Where the payload sits in its message (`None`: the message is whole).
    pub chunk: Option<Chunk>,
    /// The bytes this NATS message carries.
    pub payload: Vec<u8>,
}

/// Where a chunk sits in its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Id of the whole message (the first 16 hex digits of its SHA-256).
    pub msg: String,
    /// The chunk's index, from 0.
    pub index: usize,
    /// How many chunks the message has.
    pub count: usize,
    /// The whole message's size, in bytes.
    pub total: usize,
}

impl Chunk {
    /// The NATS headers that carry this chunk's position.
    pub fn headers(&self) -> async_nats::HeaderMap {
        let mut h = async_nats::HeaderMap::new();
        h.insert(HEADER_MSG, self.msg.as_str());
        h.insert(
            HEADER_CHUNK,
            format!("{}/{}", self.index, self.count).as_str(),
        );
        h.insert(HEADER_TOTAL, self.total.to_string().as_str());
        h
    }

    /// The chunk headers of a message, `Ok(None)` when it has none.
    pub fn from_headers(h: Option<&async_nats::HeaderMap>) -> Result<Option<Self>, String> {
        let Some(h) = h else { return Ok(None) };
        let Some(msg) = h.get(HEADER_MSG) else {
            return Ok(None);
        };
        let get = |k: &str| h.get(k).map(|v| v.as_str().to_string());
        let chunk = get(HEADER_CHUNK).ok_or("Nsed-Chunk header missing")?;
        let (i, n) = chunk.split_once('/').ok_or("Nsed-Chunk is not i/n")?;
        let parse = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("bad chunk header {s:?}"))
        };
        let total = parse(&get(HEADER_TOTAL).ok_or("Nsed-Total header missing")?)?;
        Ok(Some(Chunk {
            msg: msg.as_str().to_string(),
            index: parse(i)?,
            count: parse(n)?,
            total,
        }))
    }
}

/// Split `bytes` into messages no larger than `max_payload`, or refuse a
/// message larger than [`MAX_MESSAGE`].
pub fn frames(
    bytes: Vec<u8>,
    max_payload: usize,
    msg_id: &str,
) -> Result<Vec<Frame>, FederationError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(FederationError::TooLarge {
            bytes: bytes.len(),
            limit: MAX_MESSAGE,
        });
    }
    if bytes.len() <= max_payload {
        return Ok(vec![Frame {
            chunk: None,
            payload: bytes,
        }]);
    }
    if max_payload < 2 * HEADER_ROOM {
        return Err(FederationError::Invalid(format!(
            "the server's max_payload of {max_payload} bytes is too small to carry chunks"
        )));
    }
    let size = max_payload - HEADER_ROOM;
    let count = bytes.len().div_ceil(size);
    Ok(bytes
        .chunks(size)
        .enumerate()
        .map(|(index, part)| Frame {
            chunk: Some(Chunk {
                msg: msg_id.to_string(),
                index,
                count,
                total: bytes.len(),
            }),
            payload: part.to_vec(),
        })
        .collect())
}

struct Partial {
    parts: Vec<Option<Vec<u8>>>,
    total: usize,
    have: usize,
    started: Instant,
}

/// Reassembles chunked messages, within limits a hostile sender cannot
/// stretch: a declared size above [`MAX_MESSAGE`], inconsistent headers or
/// more bytes than declared are refused; at most `max_partial` messages are
/// in progress (the oldest is dropped) and each expires after `ttl`.
pub struct Assembler {
    partial: HashMap<String, Partial>,
    max_partial: usize,
    ttl: Duration,
}

impl Default for Assembler {
    fn default() -> Self {
        Self {
            partial: HashMap::new(),
            max_partial: 64,
            ttl: Duration::from_secs(300),
        }
    }
}

impl Assembler {
    /// Add one NATS message; returns the whole message once complete.
    pub fn push(
        &mut self,
        chunk: Option<Chunk>,
        payload: &[u8],
    ) -> Result<Option<Vec<u8>>, Rejection> {
        let Some(c) = chunk else {
            return Ok(Some(payload.to_vec()));
        };
        if c.total > MAX_MESSAGE {
            return Err(Rejection::Oversized {
                declared: c.total,
                limit: MAX_MESSAGE,
            });
        }
        if c.count == 0 || c.index >= c.count || c.count > c.total.max(1) {
            return Err(Rejection::InconsistentChunk {
                index: c.index,
                count: c.count,
                total: c.total,
            });
        }
        self.expire();
        if !self.partial.contains_key(&c.msg) && self.partial.len() >= self.max_partial {
            if let Some(oldest) = self
                .partial
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(k, _)| k.clone())
            {
                self.partial.remove(&oldest);
            }
        }
        let p = self
            .partial
            .entry(c.msg.clone())
            .or_insert_with(|| Partial {
                parts: vec![None; c.count],
                total: c.total,
                have: 0,
                started: Instant::now(),
            });
        if p.parts.len() != c.count || p.total != c.total {
            self.partial.remove(&c.msg);
            return Err(Rejection::BadChunks(
                "chunks of one message disagree on its size".into(),
            ));
        }
        if p.parts[c.index].is_none() {
            p.have += payload.len();
            p.parts[c.index] = Some(payload.to_vec());
        }
        if p.have > p.total {
            self.partial.remove(&c.msg);
            return Err(Rejection::BadChunks(format!(
                "chunks carry more than the declared {} bytes",
                c.total
            )));
        }
        if p.parts.iter().all(Option::is_some) {
            let Some(p) = self.partial.remove(&c.msg) else {
                return Ok(None);
            };
            if p.have != p.total {
                return Err(Rejection::BadChunks(format!(
                    "chunks carry {} of {} declared bytes",
                    p.have, p.total
                )));
            }
            return Ok(Some(p.parts.into_iter().flatten().flatten().collect()));
        }
        Ok(None)
    }

    fn expire(&mut self) {
        let ttl = self.ttl;
        self.partial.retain(|_, p| p.started.elapsed() < ttl);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_reassemble_in_any_order_and_duplicates_are_harmless() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let frames = frames(bytes.clone(), 2048, "m1").unwrap();
        assert_eq!(frames.len(), 7); // 1536-byte chunks
        assert!(frames.iter().all(|f| f.payload.len() <= 2048));
        let mut a = Assembler::default();
        let mut order: Vec<usize> = (0..frames.len()).rev().collect();
        order.insert(2, 5); // a duplicate delivery
        let mut whole = None;
        for i in order {
            if let Some(w) = a.push(frames[i].chunk.clone(), &frames[i].payload).unwrap() {
                whole = Some(w);
            }
        }
        assert_eq!(whole.unwrap(), bytes);
        // Small messages are not chunked.
        let one = super::frames(vec![1, 2, 3], 2048, "m2").unwrap();
        assert_eq!(one.len(), 1);
        assert!(one[0].chunk.is_none());
    }

    #[test]
    fn hostile_chunk_headers_are_refused() {
        let mut a = Assembler::default();
        let c = |index, count, total| {
            Some(Chunk {
                msg: "x".into(),
                index,
                count,
                total,
            })
        };
        assert_eq!(
            a.push(c(0, 2, 1 << 40), b"ab").unwrap_err(),
            Rejection::Oversized {
                declared: 1 << 40,
                limit: MAX_MESSAGE
            }
        );
        assert_eq!(
            a.push(c(3, 2, 10), b"ab").unwrap_err(),
            Rejection::InconsistentChunk {
                index: 3,
                count: 2,
                total: 10
            }
        );
        assert!(matches!(
            a.push(c(0, 0, 10), b"ab").unwrap_err(),
            Rejection::InconsistentChunk { count: 0, .. }
        ));
        a.push(c(0, 2, 4), b"abc").unwrap();
        let more = a.push(c(1, 2, 4), b"de").unwrap_err();
        assert!(
            matches!(&more, Rejection::BadChunks(m) if m.contains("more than")),
            "{more:?}"
        );
        a.push(c(0, 2, 4), b"a").unwrap();
        let short = a.push(c(1, 2, 4), b"b").unwrap_err();
        assert!(
            matches!(&short, Rejection::BadChunks(m) if m.contains("2 of 4")),
            "{short:?}"
        );
        assert!(matches!(
            frames(vec![0; MAX_MESSAGE + 1], 1 << 20, "big"),
            Err(FederationError::TooLarge { .. })
        ));
    }

    #[test]
    fn chunk_headers_round_trip() {
        let c = Chunk {
            msg: "abc".into(),
            index: 2,
            count: 5,
            total: 9999,
        };
        assert_eq!(Chunk::from_headers(Some(&c.headers())).unwrap(), Some(c));
        assert_eq!(Chunk::from_headers(None).unwrap(), None);
    }

    #[test]
    fn names_and_actions() {
        for bad in ["", "a.b", "a*", ">", "a b", "a\u{7}", &"x".repeat(65)] {
            assert!(check_name("agent", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("agent", "qwen05_b-2").is_ok());
        for a in [
            Action::Propose,
            Action::Evaluate,
            Action::Score,
            Action::Ping,
        ] {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("ack"), None);
    }

    #[test]
    fn a_remote_agent_gets_the_roster_entrys_reasoning_settings() {
        let spec: AgentSpec = toml::from_str(
            "name = \"q\"\nmodel = \"m\"\nreasoning = \"off\"\nreasoning_budget = 64",
        )
        .unwrap();
        let wire = serde_json::to_string(&Profile::of(&spec)).unwrap();
        let back: Profile = serde_json::from_str(&wire).unwrap();
        let served = back.spec("q", "m");
        assert_eq!(served.reasoning, Some(ReasoningMode::Off));
        assert_eq!(served.reasoning_budget, Some(64));
        // Without them the message is as before (older agents accept it).
        let plain = serde_json::to_string(&Profile::default()).unwrap();
        assert!(!plain.contains("reasoning"), "{plain}");
    }

    #[test]
    fn unknown_fields_and_versions_are_refused() {
        let task = TaskMsg {
            schema: SCHEMA,
            job: "j1".into(),
            round: 1,
            agent: "a".into(),
            action: Action::Ping,
            profile: Profile::default(),
            body: TaskBody::Ping("hi".into()),
        };
        task.check().unwrap();
        let mut v = serde_json::to_value(&task).unwrap();
        v["extra"] = 1.into();
        assert!(serde_json::from_value::<TaskMsg>(v).is_err());
        let mut t = task.clone();
        t.schema = 2;
        assert!(t.check().unwrap_err().contains("schema 2"));
        let mut t = task.clone();
        t.action = Action::Propose;
        assert!(t.check().unwrap_err().contains("does not match"));
        let mut t = task;
        t.job = "j.*".into();
        assert!(t.check().is_err());
    }
}
