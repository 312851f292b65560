//! `nsed agent serve`, `nsed agent keygen` and `nsed agents`: the command
//! line of the federation.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Result;
use clap::{Args, Subcommand};

use nsed::deliberation::roster::FederationConfig;
use nsed::federation::identity::Identity;
use nsed::federation::service::{self, ServeOptions};
use nsed::federation::Federation;

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Serve one model to orchestrators over NATS: propose, evaluate and
    /// score (log-probabilities) tasks on `nsed.*.task.NAME.*`, signed
    /// replies, heartbeats. Replicas with the same name share the load.
    /// Runs until interrupted.
    Serve(ServeArgs),
    /// Make an Ed25519 key for `agent serve --key` and print its public key
    /// (put it in the roster as `public_key` to pin it).
    Keygen {
        /// The key file to create (never overwritten; mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct ServeArgs {
    /// The NATS server.
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Registry id or GGUF path of the model.
    #[arg(long)]
    pub model: String,
    /// The agent's name, as the roster calls it (default: the model id);
    /// letters, digits, `-`, `_`.
    #[arg(long)]
    pub name: Option<String>,
    /// Ed25519 key file from `nsed agent keygen` (default: a fresh key for
    /// this process, printed at start).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Seconds between heartbeats; orchestrators presume the agent dead
    /// after three missed ones.
    #[arg(long, default_value_t = 10.0, value_parser = crate::bounds::seconds)]
    pub heartbeat: f64,
    /// Fault injection for tests: hold every reply this many seconds.
    #[arg(long, hide = true, value_parser = crate::bounds::seconds)]
    pub fault_delay: Option<f64>,
}

#[derive(Args)]
pub struct AgentsArgs {
    /// The NATS server.
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    pub nats: String,
    /// Seconds to wait for answers.
    #[arg(long, default_value_t = 1.0, value_parser = crate::bounds::seconds)]
    pub wait: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Also round-trip N signed pings through each agent (sequentially,
    /// then N in flight at once) and print latency and messages/s.
    #[arg(long, default_value_t = 0, value_name = "N", value_parser = crate::bounds::count(0, 1_000_000))]
    pub ping: usize,
    /// Bytes of each ping's payload.
    #[arg(long, default_value_t = 1024, value_parser = crate::bounds::count(0, 64 << 20))]
    pub ping_bytes: usize,
}

pub fn agent_cmd(command: AgentCommand) -> Result<()> {
    match command {
        AgentCommand::Keygen { out } => {
            let id = Identity::generate()?;
            id.save(&out)?;
            outln!("{}", id.public_key());
            Ok(())
        }
        AgentCommand::Serve(a) => {
            let opts = ServeOptions {
                url: a.nats,
                model: a.model,
                name: a.name,
                key: a.key,
                heartbeat: Duration::from_secs_f64(a.heartbeat),
                threads: rayon::current_num_threads(),
                fault_delay: a.fault_delay.map(Duration::from_secs_f64),
            };
            Ok(service::serve(opts)?)
        }
    }
}

pub fn agents_cmd(a: AgentsArgs) -> Result<()> {
    let config = FederationConfig {
        url: a.nats.clone(),
        ..FederationConfig::default()
    };
    let fed = Federation::connect(&config, None)?;
    let found = fed.discover(Duration::from_secs_f64(a.wait), &[])?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&found)?);
    } else {
        outln!("{} agent(s) on {}", found.len(), a.nats);
        for s in &found {
            outln!(
                "  {:<16} {:<22} sha256 {}  key {}  {} served, {}{}",
                s.agent,
                s.model,
                &s.model_sha256[..s.model_sha256.len().min(12)],
                s.public_key,
                s.served,
                if s.busy { "busy" } else { "idle" },
                format_args!(", up since {}", s.started)
            );
        }
    }
    if a.ping > 0 {
        for s in &found {
            fed.pin(s);
            ping_agent(&fed, &s.agent, a.ping, a.ping_bytes)?;
        }
    }
    Ok(())
}

/// Sequential round trips (latency), then `n` in flight at once
/// (throughput).
fn ping_agent(fed: &Federation, agent: &str, n: usize, bytes: usize) -> Result<()> {
    let payload = "x".repeat(bytes);
    let timeout = Duration::from_secs(30);
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        // Distinct payloads: identical tasks are one call, answered from
        // the agent's cache.
        fed.ping(agent, format!("s{i}:{payload}"), timeout)
            .map_err(anyhow::Error::msg)?;
        lat.push(t.elapsed().as_secs_f64() * 1e3);
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
    let start = Instant::now();
    let mut tickets = Vec::with_capacity(n);
    for i in 0..n {
        let task_payload = format!("p{i}:{payload}");
        tickets.push(
            fed.send_ping(agent, task_payload, timeout)
                .map_err(anyhow::Error::msg)?,
        );
    }
    for t in tickets {
        fed.wait(t).map_err(anyhow::Error::msg)?;
    }
    let secs = start.elapsed().as_secs_f64();
    outln!(
        "  ping {agent}: {n} × {bytes} B: latency p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms; \
         {n} in flight: {:.0} round trips/s ({:.0} messages/s: task, ack, reply)",
        q(0.5),
        q(0.95),
        q(1.0),
        n as f64 / secs,
        3.0 * n as f64 / secs
    );
    Ok(())
}

/// `nsed report federation PATH`: what a run's federation log says about the
/// transport. PATH is a bench run directory or a federation log file.
pub fn report_federation_cmd(path: &std::path::Path) -> Result<()> {
    outln!("{}", nsed::pages::federation_log::report_file(path)?);
    Ok(())
}
