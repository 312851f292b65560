//! Roster files (`configs/*.toml`): which models deliberate, under which
//! names, with which sampling settings, plus the deliberation and baseline
//! settings. Unknown keys are errors, so a typo cannot silently change a run.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::EvalMode;
use crate::engine::device::ComputeDevice;
use crate::engine::sampling::SamplingParams;

/// Why a roster file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RosterError {
    /// The file could not be read.
    #[error("cannot read roster {path}: {source}")]
    Io {
        /// The roster file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid roster TOML, or its settings fail a check (names, ranges, quorum).
    #[error("roster {path}: {message}")]
    Invalid {
        /// The roster file.
        path: PathBuf,
        /// What is wrong: a TOML error or a failed check.
        message: String,
    },
}

/// A roster file: the agents of a run and the deliberation and baseline settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roster {
    /// The roster's name, shown in run records and pages.
    pub name: String,
    /// A free-text description of the roster.
    #[serde(default)]
    pub description: String,
    /// NSED settings: rounds, halting, evaluation.
    #[serde(default)]
    pub deliberation: DeliberationConfig,
    /// Settings of the baseline methods.
    #[serde(default)]
    pub baselines: BaselineConfig,
    /// Where `transport = "nats"` agents are reached, and the timeouts.
    #[serde(default, skip_serializing_if = "FederationConfig::is_default")]
    pub federation: FederationConfig,
    /// The agents, one `[[agent]]` table each; at least two, with unique names.
    #[serde(rename = "agent")]
    pub agents: Vec<AgentSpec>,
}

/// The `[deliberation]` table: NSED's rounds, halting and evaluation settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliberationConfig {
    /// Most rounds; at least `min_rounds` (default 3).
    pub max_rounds: usize,
    /// Rounds run before an early stop (halting or consensus); at least 1 (default 1).
    pub min_rounds: usize,
    /// Winner conviction needed to stop early (docs/reference.md §3 default 0.6).
    pub effort: f64,
    /// `conviction` (the paper's simple reading) or `evidence`.
    pub halting: String,
    /// λ of the accumulated-evidence rule.
    pub lambda: f64,
    /// How evaluators score (default `generative`); an agent may override it.
    pub evaluation: EvalMode,
    /// New tokens an evaluator may write.
    pub eval_max_tokens: usize,
    /// Characters of each other text a prompt may quote (the end is kept).
    pub candidate_chars: usize,
    /// The consensus check: stop without evaluating once every proposal
    /// gives the same answer.
    pub consensus_stop: bool,
}

impl Default for DeliberationConfig {
    fn default() -> Self {
        Self {
            max_rounds: 3,
            min_rounds: 1,
            effort: 0.6,
            halting: "conviction".into(),
            lambda: 1.0,
            evaluation: EvalMode::Generative,
            eval_max_tokens: 160,
            candidate_chars: 1500,
            consensus_stop: true,
        }
    }
}

/// The `[baselines]` table: settings of the methods NSED is compared with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// The model sampled for self-consistency (default: the first agent's).
    pub self_consistency_model: Option<String>,
    /// Samples drawn for self-consistency (default 5, at least 1).
    pub self_consistency_k: usize,
    /// Sampling temperature of the self-consistency samples (default 0.7).
    pub self_consistency_temperature: f64,
    /// Rounds of multi-agent debate, the first being independent answers.
    pub debate_rounds: usize,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            self_consistency_model: None,
            self_consistency_k: 5,
            self_consistency_temperature: 0.7,
            debate_rounds: 2,
        }
    }
}

/// The NATS side of a roster: the server and the per-phase timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// The NATS server's URL (default `nats://127.0.0.1:4222`).
    pub url: String,
    /// Seconds a remote agent has to return a proposal, from the moment
    /// the phase sends it; past it the agent is excluded from the round.
    pub propose_timeout_s: f64,
    /// The same for an evaluation.
    pub evaluate_timeout_s: f64,
    /// How long discovery waits for every remote agent at start.
    pub discover_timeout_s: f64,
    /// A task not yet acknowledged is sent again after this many seconds
    /// (and after every reconnect); agents ignore the duplicates.
    pub resend_s: f64,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            propose_timeout_s: 900.0,
            evaluate_timeout_s: 600.0,
            discover_timeout_s: 5.0,
            resend_s: 5.0,
        }
    }
}

impl FederationConfig {
    /// Whether every setting is the default (the table is then left out when serialized).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Where an agent runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// In this process.
    #[default]
    Local,
    /// An `nsed agent serve` process with this agent's name, reached through
    /// the roster's `[federation] url`.
    Nats,
}

impl Transport {
    /// Whether the agent runs in this process.
    pub fn is_local(&self) -> bool {
        *self == Transport::Local
    }
}

/// One `[[agent]]` table: a named model with its sampling settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// Unique within the roster; letters, digits, `-` and `_` only (it names
    /// NATS subjects later).
    pub name: String,
    /// Registry id or GGUF path.
    pub model: String,
    /// A system message (default: the model's own).
    #[serde(default)]
    pub system: Option<String>,
    /// Sampling temperature in [0, 5]; 0 (the default) is greedy decoding.
    #[serde(default)]
    pub temperature: f64,
    /// Nucleus sampling threshold in [0, 1]; 1 (the default) disables it.
    #[serde(default = "one")]
    pub top_p: f64,
    /// Top-k sampling cutoff; 0 (the default) disables it.
    #[serde(default)]
    pub top_k: usize,
    /// Added to the run's seed, so identical models sample differently.
    #[serde(default)]
    pub seed_offset: u64,
    /// Overrides the roster's evaluation mode for this agent.
    #[serde(default)]
    pub evaluation: Option<EvalMode>,
    /// Where the agent runs (default: in this process).
    #[serde(default, skip_serializing_if = "Transport::is_local")]
    pub transport: Transport,
    /// A remote agent's Ed25519 public key (base64, from `nsed agent
    /// keygen`). Without it, the key the agent announces at discovery is
    /// pinned for the run (trust on first use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Where this agent's model runs (`cpu`, `cuda`, `cuda:N`); default:
    /// the command line's `--device`. One roster can mix devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<ComputeDevice>,
    /// A reasoning model's thinking: `on` or `off` through its template's
    /// `enable_thinking` switch (default: the template's own default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningMode>,
    /// Most tokens of reasoning per generation; past it the reasoning is
    /// closed for the model and it goes on to its answer (budget forcing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_budget: Option<usize>,
}

/// Whether a reasoning model thinks before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningMode {
    /// Thinking on (`enable_thinking = true`).
    On,
    /// Thinking off (`enable_thinking = false`).
    Off,
}

fn one() -> f64 {
    1.0
}

impl AgentSpec {
    /// The agent's sampling settings (temperature, top-p, top-k; the rest default).
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            ..SamplingParams::default()
        }
    }
}

/// Whether `name` is usable as an agent id (and a NATS subject token).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

impl Roster {
    /// The model of the agent called `agent` (the name itself when the
    /// roster has no such agent, so that a record stays readable).
    pub fn model_of(&self, agent: &str) -> String {
        self.agents
            .iter()
            .find(|a| a.name == agent)
            .map_or_else(|| agent.to_string(), |a| a.model.clone())
    }

    /// Read and check a roster file.
    pub fn load(path: &Path) -> Result<Self, RosterError> {
        let text = std::fs::read_to_string(path).map_err(|source| RosterError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |message: String| RosterError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let roster: Roster = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        roster.check().map_err(invalid)?;
        Ok(roster)
    }

    fn check(&self) -> Result<(), String> {
        if self.agents.len() < 2 {
            return Err("a deliberation needs at least 2 agents (quorum)".into());
        }
        for (i, a) in self.agents.iter().enumerate() {
            if !valid_name(&a.name) {
                return Err(format!(
                    "agent name `{}` must be 1-64 letters, digits, `-` or `_`",
                    a.name
                ));
            }
            if self.agents[..i].iter().any(|b| b.name == a.name) {
                return Err(format!("agent name `{}` is used twice", a.name));
            }
            if !(0.0..=5.0).contains(&a.temperature) || !(0.0..=1.0).contains(&a.top_p) {
                return Err(format!(
                    "agent `{}`: temperature in [0, 5], top_p in [0, 1]",
                    a.name
                ));
            }
            if a.reasoning_budget == Some(0) {
                return Err(format!(
                    "agent `{}`: reasoning_budget must be at least 1 token",
                    a.name
                ));
            }
            if a.reasoning == Some(ReasoningMode::Off) && a.reasoning_budget.is_some() {
                return Err(format!(
                    "agent `{}`: a reasoning_budget with reasoning = \"off\" has nothing to bound",
                    a.name
                ));
            }
        }
        let f = &self.federation;
        let timeouts = [
            f.propose_timeout_s,
            f.evaluate_timeout_s,
            f.discover_timeout_s,
            f.resend_s,
        ];
        if timeouts.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
            return Err("federation: timeouts must be positive seconds".into());
        }
        let d = &self.deliberation;
        if d.min_rounds == 0 || d.max_rounds < d.min_rounds {
            return Err("deliberation: need 1 ≤ min_rounds ≤ max_rounds".into());
        }
        if !(0.0..=1.0).contains(&d.effort) {
            return Err("deliberation.effort must be in [0, 1]".into());
        }
        if !matches!(d.halting.as_str(), "conviction" | "evidence") {
            return Err(format!(
                "deliberation.halting `{}`: use `conviction` or `evidence`",
                d.halting
            ));
        }
        if self.baselines.self_consistency_k == 0 || self.baselines.debate_rounds == 0 {
            return Err("baselines: self_consistency_k and debate_rounds must be ≥ 1".into());
        }
        Ok(())
    }

    /// Make the named agents (or every agent, for `all`) remote.
    pub fn make_remote(&mut self, names: &[String]) -> Result<(), String> {
        let all = names.iter().any(|n| n == "all");
        for n in names.iter().filter(|n| n.as_str() != "all") {
            if !self.agents.iter().any(|a| &a.name == n) {
                return Err(format!("--remote {n}: no agent of that name in the roster"));
            }
        }
        for a in &mut self.agents {
            if all || names.contains(&a.name) {
                a.transport = Transport::Nats;
            }
        }
        Ok(())
    }

    /// Whether any agent is reached over NATS.
    pub fn has_remote(&self) -> bool {
        self.agents.iter().any(|a| a.transport == Transport::Nats)
    }

    /// The self-consistency model: configured, else the first agent's.
    pub fn self_consistency_model(&self) -> &str {
        self.baselines
            .self_consistency_model
            .as_deref()
            .unwrap_or(&self.agents[0].model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Roster, String> {
        let r: Roster = toml::from_str(text).map_err(|e| e.to_string())?;
        r.check()?;
        Ok(r)
    }

    const TWO: &str = "name = \"t\"\n[[agent]]\nname = \"a\"\nmodel = \"m\"\n[[agent]]\nname = \"b\"\nmodel = \"m\"\n";

    #[test]
    fn defaults_and_checks() {
        let r = parse(TWO).unwrap();
        assert_eq!(r.deliberation.max_rounds, 3);
        assert_eq!(r.self_consistency_model(), "m");
        assert!(parse(&TWO.replace("name = \"b\"", "name = \"a\""))
            .unwrap_err()
            .contains("twice"));
        assert!(parse(&TWO.replace("name = \"b\"", "name = \"b.c\""))
            .unwrap_err()
            .contains("letters"));
        let typo = format!("{TWO}[deliberation]\nmax_round = 2\n");
        let zero = format!("{TWO}[federation]\nresend_s = 0\n");
        assert!(parse(&zero).unwrap_err().contains("positive"));
        assert!(parse(&typo).unwrap_err().contains("unknown field"));
        let one = "name = \"t\"\n[[agent]]\nname = \"a\"\nmodel = \"m\"\n";
        assert!(parse(one).unwrap_err().contains("at least 2"));
    }

    #[test]
    fn remote_agents_by_name() {
        let mut r = parse(TWO).unwrap();
        r.make_remote(&["b".into()]).unwrap();
        assert!(r.agents[0].transport.is_local());
        assert_eq!(r.agents[1].transport, Transport::Nats);
        assert!(r.has_remote());
        assert!(r
            .make_remote(&["zz".into()])
            .unwrap_err()
            .contains("no agent"));
        r.make_remote(&["all".into()]).unwrap();
        assert!(r.agents.iter().all(|a| a.transport == Transport::Nats));
        // Local rosters serialize as before (run fingerprints are unchanged).
        let local = serde_json::to_string(&parse(TWO).unwrap()).unwrap();
        assert!(!local.contains("transport") && !local.contains("federation"));
    }

    #[test]
    fn shipped_rosters_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        for name in [
            "consumer.toml",
            "high-perf.toml",
            "homogeneous.toml",
            "tiny.toml",
            "federated.toml",
            "nsed-consumer.toml",
            "nsed-reasoning.toml",
        ] {
            let r = Roster::load(&dir.join(name)).unwrap();
            assert_eq!(r.agents.len(), 3, "{name}");
        }
        // The paper's consumer trio, by Hub reference; Qwen3 thinks.
        let paper = Roster::load(&dir.join("nsed-consumer.toml")).expect("the paper's roster");
        assert!(paper.agents.iter().all(|a| a.model.starts_with("hf://")));
        assert_eq!(paper.agents[1].reasoning, Some(ReasoningMode::On));
        // The federated roster is consumer.toml with every agent remote.
        let consumer = Roster::load(&dir.join("consumer.toml")).unwrap();
        let mut federated = Roster::load(&dir.join("federated.toml")).unwrap();
        assert!(federated
            .agents
            .iter()
            .all(|a| a.transport == Transport::Nats));
        federated
            .agents
            .iter_mut()
            .for_each(|a| a.transport = Transport::Local);
        assert_eq!(federated.agents, consumer.agents);
        assert_eq!(federated.deliberation, consumer.deliberation);
        assert_eq!(federated.baselines, consumer.baselines);
    }
}
