//! Federation end to end with a real nats-server and `nsed agent serve`
//! processes: on the real models, a remote bench equals the in-process one;
//! on a synthetic model (random weights, smollm2-135m's shape), an agent
//! killed with SIGKILL, an agent that sleeps past the timeout and a restarted
//! server are survived and recorded; forged,
//! replayed, oversized and malformed replies are refused. Every wait is
//! bounded. nats-server must be installed (`.ci/run` installs it).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::nats::{run_bounded, AgentProc, Server};
use serde_json::Value;

fn nsed_bin() -> &'static str {
    env!("CARGO_BIN_EXE_nsed")
}

fn write_roster(dir: &Path, agents: &str) -> PathBuf {
    let path = dir.join("roster.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"fedtest\"\n[deliberation]\nmax_rounds = 2\neval_max_tokens = 64\n\
             candidate_chars = 600\n[federation]\nresend_s = 1.0\n{agents}"
        ),
    )
    .unwrap();
    path
}

/// Three agents on one model (a registry id or a GGUF path), two sampled.
fn trio(model: &str) -> String {
    format!(
        "[[agent]]\nname = \"a\"\nmodel = \"{model}\"\n\
         [[agent]]\nname = \"b\"\nmodel = \"{model}\"\ntemperature = 0.8\nseed_offset = 7\n\
         [[agent]]\nname = \"c\"\nmodel = \"{model}\"\ntemperature = 0.6\nseed_offset = 3\n"
    )
}

/// The fault tests' model: smollm2-135m's shape (vocabulary, tokenizer,
/// formats) with random weights and two layers. What the agents say does not
/// matter there, only who answers and when; its replies are garbage of the
/// full length, a few times faster than the real model's.
fn synth_smollm(dir: &Path) -> String {
    let path = common::synth_model(dir, "smollm2-135m", 2);
    path.to_str().expect("utf-8 temp path").to_owned()
}

/// Drop what legitimately differs between an in-process and a remote run:
/// timings and the signatures.
fn strip(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "attestation" | "seconds"))
                .map(|(k, x)| (k.clone(), strip(x)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip).collect()),
        other => other.clone(),
    }
}

fn deliberate_cmd(roster: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(nsed_bin());
    c.args(["deliberate", "A shop sells pens at 3 dollars each. Ann buys 4 pens and pays with a 20 dollar bill. How much change does she get?"])
        .args(["--kind", "numeric", "--json", "--seed", "11"])
        .arg("--config")
        .arg(roster)
        .args(extra)
        .env("RAYON_NUM_THREADS", "2");
    c
}

fn json_of(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "nsed failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON transcript")
}

fn events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("federation log line is JSON"))
        .collect()
}

#[test]
fn three_agent_processes_give_the_in_process_results_with_chunked_messages() {
    common::registry_model_path("smollm2-135m");
    common::registry_model_path("gemma3-270m");
    let tmp = tempfile::tempdir().unwrap();
    // A 1 KiB max payload: proposals, evaluations and most tasks travel in
    // chunks, both ways.
    let server = Server::start(1024);
    let url = server.url();
    let roster = write_roster(
        tmp.path(),
        "[[agent]]\nname = \"a\"\nmodel = \"smollm2-135m\"\n\
         [[agent]]\nname = \"b\"\nmodel = \"smollm2-135m\"\ntemperature = 0.8\nseed_offset = 7\n\
         [[agent]]\nname = \"g\"\nmodel = \"gemma3-270m\"\nevaluation = \"logprob\"\n",
    );
    let _agents: Vec<AgentProc> = [
        ("a", "smollm2-135m"),
        ("b", "smollm2-135m"),
        ("g", "gemma3-270m"),
    ]
    .iter()
    .map(|(name, model)| AgentProc::start(tmp.path(), &url, model, name, &[]))
    .collect();
    let data = common::datasets_dir();
    let bench = |out: &Path, remote: bool| {
        let mut c = Command::new(nsed_bin());
        c.args([
            "bench",
            "gsm8k",
            "--limit",
            "1",
            "--method",
            "nsed",
            "--max-tokens",
            "64",
        ])
        // Short evaluations (the roster's are 64 tokens): they still
        // travel in chunks, and the item still takes a second round.
        .args(["--seed", "5", "--rounds", "2", "--eval-max-tokens", "24"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--config")
        .arg(&roster)
        .arg("--out")
        .arg(out)
        .env("RAYON_NUM_THREADS", "2");
        if remote {
            c.args(["--remote", "all", "--nats", &url]);
        }
        run_bounded(c, Duration::from_secs(900))
    };
    let local_dir = tmp.path().join("local");
    let remote_dir = tmp.path().join("remote");
    let local = bench(&local_dir, false);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    let remote = bench(&remote_dir, true);
    let stderr = String::from_utf8_lossy(&remote.stderr).to_string();
    assert!(remote.status.success(), "{stderr}");

    let lines = |dir: &Path| -> Vec<Value> {
        std::fs::read_to_string(dir.join("items.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (l, r) = (lines(&local_dir), lines(&remote_dir));
    assert_eq!(l.len(), 1);
    assert_eq!(r.len(), 1);
    let mut rounds = 0;
    for (a, b) in l.iter().zip(&r) {
        assert_eq!(strip(a), strip(b), "item {} differs", a["item"]);
        rounds += b["nsed"]["rounds"].as_array().unwrap().len();
    }
    // One item (bit-exact everywhere: the same on every machine) that takes
    // a second round, so that revised proposals travel too.
    assert_eq!(rounds, 2, "expected a second round");

    // Every remote proposal and evaluation is signed, and its signed bytes
    // are in the federation log verbatim, under a valid signature.
    let log = events(&remote_dir.join("federation.jsonl"));
    let mut audit = std::collections::HashMap::new();
    for e in log.iter().filter(|e| e["event"] == "accepted") {
        let env: nsed::federation::wire::Envelope =
            serde_json::from_value(e["envelope"].clone()).unwrap();
        let (_, att) = nsed::federation::identity::open(&env).expect("logged envelope verifies");
        audit.insert(att.signed_sha256.clone(), att);
    }
    let admitted: Vec<&Value> = log.iter().filter(|e| e["event"] == "admitted").collect();
    assert_eq!(admitted.len(), 3);
    let mut signed = 0;
    for item in &r {
        for round in item["nsed"]["rounds"].as_array().unwrap() {
            let calls = round["proposals"].as_array().unwrap().iter().chain(
                round["evaluations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| &e["evaluation"]),
            );
            for call in calls {
                let att = &call["attestation"];
                let sha = att["signed_sha256"].as_str().expect("every call is signed");
                let logged = audit.get(sha).expect("signed reply is in the audit log");
                assert_eq!(logged.signature, att["signature"].as_str().unwrap());
                signed += 1;
            }
        }
    }
    assert!(signed >= 3 * 3);
    assert!(
        !log.iter().any(|e| e["event"] == "rejected"),
        "no rejection expected"
    );
    // Chunks were used: the stats line counts multi-chunk replies.
    let stats_line = stderr
        .lines()
        .find(|l| l.starts_with("federation: {\"tasks\""))
        .expect("stats line");
    let stats: Value = serde_json::from_str(stats_line.trim_start_matches("federation: ")).unwrap();
    assert!(stats["chunked_in"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(stats["rejected"], 0);
    assert_eq!(stats["excluded"], 0);
}

#[test]
fn an_agent_killed_mid_round_is_excluded_and_the_round_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = synth_smollm(tmp.path());
    let server = Server::start(1 << 20);
    let url = server.url();
    let roster = write_roster(tmp.path(), &trio(&model));
    let _a = AgentProc::start(tmp.path(), &url, &model, "a", &[]);
    let _b = AgentProc::start(tmp.path(), &url, &model, "b", &[]);
    let mut c = AgentProc::start(tmp.path(), &url, &model, "c", &[]);
    let audit = tmp.path().join("audit.jsonl");
    let cmd = deliberate_cmd(
        &roster,
        &[
            "--remote",
            "all",
            "--nats",
            &url,
            "--max-tokens",
            "128",
            "--audit",
        ],
    );
    let mut cmd = cmd;
    cmd.arg(&audit);
    let run = std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(300)));
    // SIGKILL c as soon as it has taken its round-1 proposal.
    c.wait_for("propose r1", Duration::from_secs(60));
    c.kill9();
    let t = json_of(&run.join().unwrap());
    let r1 = &t["rounds"][0];
    let abstained: Vec<(String, String)> =
        serde_json::from_value(r1["abstentions"].clone()).unwrap();
    assert_eq!(abstained.len(), 1, "{abstained:?}");
    assert_eq!(abstained[0].0, "c");
    assert!(
        abstained[0].1.contains("no heartbeat"),
        "{}",
        abstained[0].1
    );
    assert_eq!(r1["candidates"], serde_json::json!([0, 1]));
    // The dead agent's evaluation failed too, and cast no vote.
    let evals = r1["evaluations"].as_array().unwrap();
    if !evals.is_empty() {
        let rec = evals.iter().find(|e| e["evaluator"] == "c").unwrap();
        assert!(rec["evaluation"].is_null());
        assert!(rec["error"].as_str().unwrap().contains("excluded"));
        let ballots = r1["ballots"].as_array().unwrap();
        assert!(ballots[2].as_array().unwrap().iter().all(Value::is_null));
        // Each candidate was scored only by the other live agent.
        let voters = r1["quadratic"]["voters"].as_array().unwrap();
        assert!(
            voters.iter().all(|v| v.as_u64().unwrap() <= 1),
            "{voters:?}"
        );
    }
    let log = events(&audit);
    assert!(log
        .iter()
        .any(|e| e["event"] == "excluded" && e["agent"] == "c"));
}

#[test]
fn an_agent_sleeping_past_the_phase_timeout_is_excluded() {
    let tmp = tempfile::tempdir().unwrap();
    let model = synth_smollm(tmp.path());
    let server = Server::start(1 << 20);
    let url = server.url();
    let roster = write_roster(tmp.path(), &trio(&model));
    let _a = AgentProc::start(tmp.path(), &url, &model, "a", &[]);
    let _b = AgentProc::start(tmp.path(), &url, &model, "b", &[]);
    let _c = AgentProc::start(tmp.path(), &url, &model, "c", &["--fault-delay", "120"]);
    let started = Instant::now();
    let cmd = deliberate_cmd(
        &roster,
        &[
            "--remote",
            "all",
            "--nats",
            &url,
            "--max-tokens",
            "64",
            "--rounds",
            "1",
            // Well under the three missed heartbeats (30 s) that would
            // presume it dead.
            "--phase-timeout",
            "10",
        ],
    );
    let t = json_of(&run_bounded(cmd, Duration::from_secs(200)));
    let r1 = &t["rounds"][0];
    let abstained: Vec<(String, String)> =
        serde_json::from_value(r1["abstentions"].clone()).unwrap();
    assert_eq!(abstained.len(), 1);
    assert_eq!(abstained[0].0, "c");
    assert!(
        abstained[0].1.contains("10 s phase timeout"),
        "{}",
        abstained[0].1
    );
    // It was alive (heartbeats), only slow: excluded by the timeout, not as
    // dead, and well before its 120 s sleep ended.
    assert!(started.elapsed() < Duration::from_secs(110));
    assert_eq!(r1["candidates"], serde_json::json!([0, 1]));
}

#[test]
fn a_server_restart_mid_run_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let model = synth_smollm(tmp.path());
    let mut server = Server::start(1 << 20);
    let url = server.url();
    let roster = write_roster(tmp.path(), &trio(&model));
    let local = json_of(&run_bounded(
        deliberate_cmd(&roster, &["--max-tokens", "160"]),
        Duration::from_secs(300),
    ));
    let _a = AgentProc::start(tmp.path(), &url, &model, "a", &[]);
    let _b = AgentProc::start(tmp.path(), &url, &model, "b", &[]);
    let c = AgentProc::start(tmp.path(), &url, &model, "c", &[]);
    let audit = tmp.path().join("audit.jsonl");
    let mut cmd = deliberate_cmd(
        &roster,
        &[
            "--remote",
            "all",
            "--nats",
            &url,
            "--max-tokens",
            "160",
            "--audit",
        ],
    );
    cmd.arg(&audit);
    let run = std::thread::spawn(move || run_bounded(cmd, Duration::from_secs(300)));
    c.wait_for("propose r1", Duration::from_secs(60));
    server.kill();
    std::thread::sleep(Duration::from_millis(1500));
    server.spawn();
    let remote = json_of(&run.join().unwrap());
    assert_eq!(
        strip(&local),
        strip(&remote),
        "the remote run lost or changed something"
    );
    let log = events(&audit);
    assert!(
        log.iter().any(|e| e["event"] == "reconnected"),
        "no reconnect seen"
    );
    assert!(!log.iter().any(|e| e["event"] == "excluded"));
}

fn nsed_with(args: &[&str]) -> Command {
    let mut c = Command::new(nsed_bin());
    c.args(args);
    c
}

/// The command fails as a usage or input error (exit 2) saying `needle`.
fn expect_input_error(cmd: Command, needle: &str) {
    let out = run_bounded(cmd, Duration::from_secs(60));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn clear_errors_without_a_server_or_an_agent() {
    // Nothing listens on port 1.
    expect_input_error(
        nsed_with(&["agents", "--nats", "nats://127.0.0.1:1"]),
        "cannot reach the NATS server",
    );
    // A live server, no agents: the roster's remote agent is named.
    let server = Server::start(1 << 20);
    let url = server.url();
    let tmp = tempfile::tempdir().unwrap();
    let roster = write_roster(tmp.path(), &trio("smollm2-135m"));
    expect_input_error(
        deliberate_cmd(&roster, &["--remote", "b", "--nats", &url]),
        "agent `b` did not answer",
    );
    expect_input_error(
        deliberate_cmd(&roster, &["--remote", "zed", "--nats", &url]),
        "no agent of that name",
    );
    // Bad names and keys.
    let serve = ["agent", "serve", "--nats", &url, "--model", "smollm2-135m"];
    let mut bad_name = nsed_with(&serve);
    bad_name.args(["--name", "a.b"]);
    expect_input_error(bad_name, "must be 1-64 letters");
    let key = tmp.path().join("k.json");
    std::fs::write(&key, "{\"type\": \"nsed-ed25519\"").unwrap();
    let mut bad_key = nsed_with(&serve);
    bad_key.arg("--key").arg(&key);
    expect_input_error(bad_key, "key:");
}
