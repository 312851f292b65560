//! A hostile peer on the NATS server: while a real `nsed agent serve`
//! answers two calls, an attacker sees every task and answers first with a
//! malformed reply, a reply forged with another key, an oversized chunked
//! message, inconsistent chunks, the genuine reply of round 1 replayed onto
//! round 2, and a forged heartbeat. The orchestrator must refuse and record
//! each, and return exactly what the model computes in process.

use crate::common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::common::nats::{run_bounded, AgentProc, Server};
use nsed::answer::AnswerKind;
use nsed::deliberation::local::LocalAgent;
use nsed::deliberation::roster::Roster;
use nsed::deliberation::{Agent, Proposal, ProposeContext, ProposeRequest, Task, Usage};
use nsed::federation::identity::{open, Identity};
use nsed::federation::wire::{
    digest, Body, Chunk, Envelope, Outcome, ReplyMsg, StatusMsg, TaskMsg, SCHEMA,
};
use nsed::federation::{heartbeat_subject, Federation, NatsAgent, Rejection};

fn forged_reply(task: &TaskMsg, call: &str) -> Body {
    Body::Reply(Box::new(ReplyMsg {
        schema: SCHEMA,
        job: task.job.clone(),
        round: task.round,
        agent: task.agent.clone(),
        action: task.action,
        call: call.to_string(),
        instance: "evil".into(),
        model: "smollm2-135m".into(),
        model_sha256: "0".repeat(64),
        outcome: Outcome::Proposal(Proposal {
            agent: task.agent.clone(),
            model: "smollm2-135m".into(),
            thought_process: String::new(),
            content: "forged \\boxed{999}".into(),
            answer: Some("999".into()),
            found: None,
            behaviour: None,
            finish_reason: "eos".into(),
            inference_id: "forged".into(),
            usage: Usage::default(),
            attestation: None,
            reasoning: None,
        }),
    }))
}

fn forged_heartbeat(me: &Identity) -> Body {
    Body::Status(StatusMsg {
        schema: SCHEMA,
        agent: "victim".into(),
        instance: "evil".into(),
        model: "smollm2-135m".into(),
        model_sha256: "0".repeat(64),
        public_key: me.public_key(),
        nsed_version: "0".into(),
        started: "now".into(),
        heartbeat_s: 1.0,
        busy: false,
        queued: 0,
        served: 0,
    })
}

/// Answer every task to `victim` with hostile messages until `stop`.
fn attacker(url: String, stop: Arc<AtomicBool>) -> usize {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let client = async_nats::connect(url).await.unwrap();
        let mut tasks = client.subscribe("nsed.*.task.victim.*").await.unwrap();
        let mut results = client.subscribe("nsed.*.result.*.victim.*").await.unwrap();
        let me = Identity::generate().unwrap();
        let mut captured: Option<Vec<u8>> = None;
        let mut attacks = 0;
        loop {
            tokio::select! {
                Some(m) = tasks.next() => {
                    let Ok(task) = serde_json::from_slice::<TaskMsg>(&m.payload) else { continue };
                    let call = digest(&m.payload);
                    let subject = task.result_subject();
                    let send = |bytes: Vec<u8>| client.publish(subject.clone(), bytes.into());
                    send(b"{\"schema\":1,\"signed\":".to_vec()).await.unwrap();
                    let forged = serde_json::to_vec(&me.seal(&forged_reply(&task, &call))).unwrap();
                    send(forged).await.unwrap();
                    let huge = Chunk { msg: "big".into(), index: 0, count: 2, total: 1 << 40 };
                    client.publish_with_headers(subject.clone(), huge.headers(), "x".into()).await.unwrap();
                    let bad = Chunk { msg: "bad".into(), index: 5, count: 2, total: 10 };
                    client.publish_with_headers(subject.clone(), bad.headers(), "x".into()).await.unwrap();
                    if let Some(genuine) = &captured {
                        send(genuine.clone()).await.unwrap();
                    }
                    let beat = serde_json::to_vec(&me.seal(&forged_heartbeat(&me))).unwrap();
                    client.publish(heartbeat_subject("victim"), beat.into()).await.unwrap();
                    client.flush().await.unwrap();
                    attacks += 1;
                }
                Some(m) = results.next() => {
                    // Keep the victim's first genuine reply, for the replay.
                    let genuine = serde_json::from_slice::<Envelope>(&m.payload)
                        .ok()
                        .and_then(|env| open(&env).ok())
                        .is_some_and(|(body, _)| matches!(body, Body::Reply(r) if r.instance != "evil"));
                    if genuine && captured.is_none() {
                        captured = Some(m.payload.to_vec());
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if stop.load(Ordering::Relaxed) {
                        break attacks;
                    }
                }
            }
        }
    })
}

#[test]
fn forged_replayed_oversized_and_malformed_replies_are_refused() {
    common::registry_model_path("smollm2-135m");
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(1 << 20);
    let url = server.url();
    let key = tmp.path().join("victim.key");
    let out = run_bounded(
        {
            let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_nsed"));
            c.args(["agent", "keygen", "--out"]).arg(&key);
            c
        },
        Duration::from_secs(30),
    );
    assert!(out.status.success());
    let public_key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let _victim = AgentProc::start(
        tmp.path(),
        &url,
        "smollm2-135m",
        "victim",
        &["--key", key.to_str().unwrap()],
    );
    let stop = Arc::new(AtomicBool::new(false));
    let attack = {
        let (url, stop) = (url.clone(), stop.clone());
        std::thread::spawn(move || attacker(url, stop))
    };
    std::thread::sleep(Duration::from_millis(300)); // the attacker subscribes

    let roster_path = tmp.path().join("roster.toml");
    std::fs::write(
        &roster_path,
        format!(
            "name = \"hostile\"\n[federation]\nurl = \"{url}\"\nresend_s = 1.0\npropose_timeout_s = 120.0\n\
             [[agent]]\nname = \"victim\"\nmodel = \"smollm2-135m\"\ntransport = \"nats\"\npublic_key = \"{public_key}\"\n\
             [[agent]]\nname = \"other\"\nmodel = \"smollm2-135m\"\n"
        ),
    )
    .unwrap();
    let roster = Roster::load(&roster_path).unwrap();
    let fed = Federation::for_roster(&roster, None).unwrap();
    let spec = roster.agents[0].clone();
    let mut remote = NatsAgent::new(fed.clone(), &spec).unwrap();
    let req = |round: usize| ProposeRequest {
        task: Task {
            id: "hostile".into(),
            problem: "What is 7 times 6?".into(),
            kind: AnswerKind::Numeric,
            system: None,
        },
        round,
        context: ProposeContext::Fresh,
        sampling: None,
        seed: 9,
        inference_id: format!("hostile/r{round}"),
        max_tokens: 48,
        max_chars: 600,
    };
    let p1 = remote.propose(&req(1)).expect("round 1 reply");
    std::thread::sleep(Duration::from_millis(300)); // the attacker captures it
    let p2 = remote.propose(&req(2)).expect("round 2 reply");
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    // One attack per task seen (two, or more if a task was resent).
    let attacks = attack.join().unwrap();
    assert!(attacks >= 2);

    // What came back is what the model computes here.
    let rt = nsed::engine::runtime::Runtime::load("smollm2-135m").unwrap();
    let engine = nsed::engine::batch::Engine::spawn(rt, Default::default()).unwrap();
    let mut local = LocalAgent::new(spec.clone(), engine).expect("a plain roster entry");
    for (p, round) in [(&p1, 1), (&p2, 2)] {
        let l = local.propose(&req(round)).unwrap();
        assert_eq!(p.content, l.content);
        assert_eq!(p.answer, l.answer);
        assert_eq!(p.usage.generated_tokens, l.usage.generated_tokens);
        let att = p.attestation.as_ref().expect("signed");
        assert_eq!(att.public_key, public_key);
    }

    // Each attack is refused for its own reason, told apart by variant.
    let rejections = fed.rejections();
    let count = |is: &dyn Fn(&Rejection) -> bool| rejections.iter().filter(|(_, r)| is(r)).count();
    let summary = format!("{rejections:#?}");
    assert_eq!(
        count(&|r| matches!(r, Rejection::Malformed { .. })),
        2,
        "{summary}"
    );
    assert_eq!(
        count(&|r| matches!(r, Rejection::UnknownKey { agent, .. } if agent == "victim")),
        2,
        "{summary}"
    );
    assert_eq!(
        count(&|r| matches!(r, Rejection::Oversized { .. })),
        2,
        "{summary}"
    );
    assert_eq!(
        count(&|r| matches!(r, Rejection::InconsistentChunk { .. })),
        2,
        "{summary}"
    );
    assert_eq!(
        count(&|r| matches!(r, Rejection::Replayed { round: 1, .. })),
        1,
        "{summary}"
    );
    assert!(
        count(&|r| matches!(r, Rejection::ForeignHeartbeat { agent } if agent == "victim")) >= 1,
        "{summary}"
    );
    assert_eq!(fed.stats().replies, 2);
}

#[test]
fn two_replicas_of_one_agent_share_its_calls_without_repeating_any() {
    common::registry_model_path("smollm2-135m");
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(1 << 20);
    let url = server.url();
    let (dir1, dir2) = (tmp.path().join("r1"), tmp.path().join("r2"));
    std::fs::create_dir_all(&dir1).unwrap();
    std::fs::create_dir_all(&dir2).unwrap();
    // Two replicas, each with its own fresh key (trusted at discovery).
    let r1 = AgentProc::start(&dir1, &url, "smollm2-135m", "twin", &[]);
    let r2 = AgentProc::start(&dir2, &url, "smollm2-135m", "twin", &[]);
    let roster_path = tmp.path().join("roster.toml");
    std::fs::write(
        &roster_path,
        format!(
            "name = \"twins\"\n[federation]\nurl = \"{url}\"\npropose_timeout_s = 120.0\n\
             [[agent]]\nname = \"twin\"\nmodel = \"smollm2-135m\"\ntransport = \"nats\"\n\
             [[agent]]\nname = \"other\"\nmodel = \"smollm2-135m\"\n"
        ),
    )
    .unwrap();
    let roster = Roster::load(&roster_path).unwrap();
    let fed = Federation::for_roster(&roster, None).unwrap();
    let mut twin = NatsAgent::new(fed.clone(), &roster.agents[0]).unwrap();
    let requests: Vec<ProposeRequest> = (0..12)
        .map(|i| ProposeRequest {
            task: Task {
                id: format!("twins-{i}"),
                problem: format!("What is {i} plus {i}?"),
                kind: AnswerKind::Numeric,
                system: None,
            },
            round: 1,
            context: ProposeContext::Fresh,
            sampling: None,
            seed: i,
            inference_id: format!("twins-{i}/nsed/r1/twin/propose"),
            max_tokens: 16,
            max_chars: 600,
        })
        .collect();
    for r in &requests {
        twin.prefetch(nsed::deliberation::Call::Propose(r));
    }
    for r in &requests {
        let p = twin.propose(r).expect("every call is answered");
        assert_eq!(p.inference_id, r.inference_id);
    }
    // Each call ran once, and both replicas ran some.
    let ran = |a: &AgentProc| a.text().matches(" propose r1 ").count();
    let (n1, n2) = (ran(&r1), ran(&r2));
    assert_eq!(n1 + n2, 12, "replica logs: {n1} + {n2}");
    assert!(n1 > 0 && n2 > 0, "one replica took every call: {n1} + {n2}");
    assert!(fed.rejections().is_empty(), "{:?}", fed.rejections());
}
