//! The federation table: the same items with every agent in process and as
//! separate `nsed agent serve` processes over NATS (identical results, wall
//! time) and signed-ping transport figures, from `federation/demo.json`
//! (written by `scripts/federation-demo.sh`).

use std::path::Path;

use serde::Deserialize;

use super::{parse_error, read_text, TablesError};
use crate::results::csv_text::csv_text;

/// What `scripts/federation-demo.sh` measured.
#[derive(Debug, Clone, Deserialize)]
pub struct Demo {
    /// GSM8K items run, in each setup.
    pub items: usize,
    /// Most new tokens per answer.
    pub max_tokens: usize,
    /// Agents and orchestrator in separate network namespaces.
    pub netns: bool,
    /// Wall time of the run with every agent in process, seconds.
    pub local_seconds: f64,
    /// Wall time of the run with the agents as separate processes over NATS, seconds.
    pub remote_seconds: f64,
    /// Whether the remote run's items equal the in-process run's (timings
    /// and signatures aside).
    pub identical: bool,
    /// One line per ping measurement (`nsed agents --ping`).
    pub pings: Vec<String>,
    /// The remote run's federation counters.
    #[serde(default)]
    pub counters: serde_json::Value,
    /// `nats-server --version` of the server used; empty when not recorded.
    #[serde(default)]
    pub nats_server: String,
}

/// Read `<results>/federation/demo.json`; `None` when the demo has not been run.
pub fn read(results: &Path) -> Result<Option<Demo>, TablesError> {
    let path = results.join("federation").join("demo.json");
    if !path.exists() {
        return Ok(None);
    }
    serde_json::from_str(&read_text(&path)?)
        .map(Some)
        .map_err(|e| parse_error(&path, e))
}

/// The federation page's tables: setup, both runs' wall times, and the transport figures.
pub fn markdown(d: &Demo) -> String {
    let setup = if d.netns {
        "two hosts on one machine: the agents in network namespace `nsed-agents`, the \
         orchestrator in `nsed-orch`, nats-server in the root namespace (every message \
         crosses two veth links)"
    } else {
        "agents, orchestrator and nats-server as separate processes on loopback"
    };
    let per = |s: f64| s / d.items.max(1) as f64;
    let mut out = format!(
        "Setup: {setup}; {}.\n\n\
         | setup | GSM8K items | wall time | per item | results |\n|---|---|---|---|---|\n\
         | in process (one model at a time, 2 threads) | {} | {:.1} s | {:.1} s | reference |\n\
         | 3 agent processes over NATS (1 thread each, a phase's calls in parallel) | {} | {:.1} s | {:.1} s | {} |\n\n",
        if d.nats_server.is_empty() { "nats-server" } else { &d.nats_server },
        d.items,
        d.local_seconds,
        per(d.local_seconds),
        d.items,
        d.remote_seconds,
        per(d.remote_seconds),
        if d.identical {
            "**identical** to the in-process run (proposals, scores, votes, winners, tokens)"
        } else {
            "**DIFFERENT** from the in-process run"
        }
    );
    out.push_str(&format!(
        "NSED, consumer roster, at most {} new tokens per answer. Both wall times include \
         loading the models in process; the remote agents were already up. The machine's 2 \
         cores are shared by the 3 agents: a speed-up is concurrency, not 3 machines.\n\n\
         Transport (signed pings, no model work; each round trip is a task, an ack and a reply):\n\n",
        d.max_tokens
    ));
    for p in &d.pings {
        out.push_str(&format!("- {}\n", p.trim().trim_start_matches("ping ")));
    }
    if !d.counters.is_null() {
        out.push_str(&format!(
            "\nFederation counters of the remote run: `{}`\n",
            d.counters
        ));
    }
    out
}

/// The demo's figures as a one-row CSV.
pub fn csv(d: &Demo) -> String {
    let header = [
        "items",
        "max_tokens",
        "netns",
        "local_seconds",
        "remote_seconds",
        "identical",
    ];
    let row = [
        d.items.to_string(),
        d.max_tokens.to_string(),
        d.netns.to_string(),
        format!("{:.3}", d.local_seconds),
        format!("{:.3}", d.remote_seconds),
        d.identical.to_string(),
    ];
    csv_text(&header, [row])
}
