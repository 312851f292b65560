//! What a run's records depend on besides its settings and data, in a form
//! any build can check: the protocol (the prompts every method sends, how
//! replies are parsed, answers graded and votes tallied) and the numerics of
//! each model (a seeded generation's hash of every raw logit). Two builds
//! with equal stamps write identical records, so either may resume a run
//! the other began — whatever their commits or kernel paths, since every
//! kernel path gives the same bits. A changed prompt or a change in numerics
//! changes the stamp and the resume is refused.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::answer::{self, AnswerKind};
use crate::deliberation::parse::parse_scores;
use crate::deliberation::prompts::{self, Prompt};
use crate::deliberation::roster::{Roster, Transport};
use crate::deliberation::vote::{self, Rule};
use crate::deliberation::{Candidate, Critique, ProposeContext, Revision, Summary, Task};
use crate::engine::chat::{ChatTemplate, Message, TemplateKind};
use crate::engine::device::{default_device, ComputeDevice};
use crate::engine::generate::GenerateRequest;
use crate::engine::runtime::Runtime;
use crate::engine::sampling::SamplingParams;

/// The numerics probe: `nsed determinism`'s request, shortened.
pub const PROBE_PROMPT: &str = "Explain in two sentences why the sky is blue.";
/// Tokens the numerics probe generates.
pub const PROBE_TOKENS: usize = 16;
const PROBE_TEMPERATURE: f64 = 0.8;
const PROBE_SEED: u64 = 42;
const PROBE_ID: &str = "determinism";

/// The stamp of a run (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildStamp {
    /// sha256 over the rendered prompts, parses, grades and tallies of
    /// fixed inputs ([`protocol_digest`]).
    pub protocol: String,
    /// Per model id: the sha256 of every raw logit of the probe
    /// generation ([`numerics_digest`]).
    pub numerics: BTreeMap<String, String>,
    /// How `numerics` was measured, so that a stamp written by another
    /// probe is never compared as if it were this one.
    pub probe: String,
    /// How a stamp was obtained when it was not written by the build that
    /// started the run (a stamped legacy run says which binary measured
    /// its numerics); not compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl BuildStamp {
    /// The probe's description (`nsed determinism -n 16 --runs 1 --hashes-only`
    /// gives the same hash, on any build that has the command).
    pub fn probe_description() -> String {
        format!(
            "nsed determinism --runs 1 --hashes-only -n {PROBE_TOKENS} --temperature {PROBE_TEMPERATURE} --seed {PROBE_SEED}: logits_sha256"
        )
    }

    /// Why `self` (recorded) and `current` differ, or `None` when equal.
    pub fn difference(&self, current: &BuildStamp) -> Option<String> {
        let mut why = Vec::new();
        if self.probe != current.probe {
            why.push(format!(
                "numerics measured differently ({} vs {})",
                self.probe, current.probe
            ));
        }
        if self.protocol != current.protocol {
            why.push(format!(
                "protocol {} vs {} (prompts, parsing, grading or voting changed)",
                short(&self.protocol),
                short(&current.protocol)
            ));
        }
        for (model, hash) in &self.numerics {
            match current.numerics.get(model) {
                Some(now) if now == hash => {}
                Some(now) => why.push(format!(
                    "{model} numerics {} vs {}",
                    short(hash),
                    short(now)
                )),
                None => why.push(format!("{model} not measured by this build")),
            }
        }
        for model in current.numerics.keys() {
            if !self.numerics.contains_key(model) {
                why.push(format!("{model} not in the recorded stamp"));
            }
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Why this build's stamp could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum StampError {
    /// A roster model cannot be loaded to measure its numerics.
    #[error("cannot load {model} to measure its numerics")]
    Load {
        /// The model id.
        model: String,
        /// The load error.
        source: crate::engine::runtime::RuntimeError,
    },
    /// The probe generation fails on a loaded model.
    #[error("cannot run the numerics probe on {model}")]
    Probe {
        /// The model id.
        model: String,
        /// The generation error.
        source: crate::engine::generate::GenerateError,
    },
}

/// This build's stamp for the local models of `roster` (remote agents'
/// numerics are not this build's: they are left out), each loaded once on
/// its device; `progress` is told each model as it starts.
pub fn measure(roster: &Roster, mut progress: impl FnMut(&str)) -> Result<BuildStamp, StampError> {
    let mut models: BTreeMap<String, Option<ComputeDevice>> = BTreeMap::new();
    for agent in roster
        .agents
        .iter()
        .filter(|a| a.transport == Transport::Local)
    {
        models.entry(agent.model.clone()).or_insert(agent.device);
    }
    models
        .entry(roster.self_consistency_model().to_string())
        .or_insert(None);
    let mut numerics = BTreeMap::new();
    for (model, device) in models {
        progress(&model);
        let device = device.unwrap_or_else(default_device);
        let mut rt = Runtime::load_on(&model, device).map_err(|source| StampError::Load {
            model: model.clone(),
            source,
        })?;
        let hash = numerics_digest(&mut rt).map_err(|source| StampError::Probe {
            model: model.clone(),
            source,
        })?;
        numerics.insert(model, hash);
    }
    Ok(BuildStamp {
        protocol: protocol_digest(),
        numerics,
        probe: BuildStamp::probe_description(),
        note: None,
    })
}

/// The probe generation's logits hash for the loaded model `rt`.
pub fn numerics_digest(rt: &mut Runtime) -> Result<String, crate::engine::generate::GenerateError> {
    let prompt = rt.chat_tokens(&[Message::new("user", PROBE_PROMPT)])?;
    let req = GenerateRequest {
        sampling: SamplingParams {
            temperature: PROBE_TEMPERATURE,
            ..Default::default()
        },
        max_tokens: PROBE_TOKENS,
        seed: PROBE_SEED,
        inference_id: PROBE_ID.into(),
        ..Default::default()
    };
    let run = crate::verify::determinism::study(rt, &prompt, &req, 1, 0, false, || {})?;
    Ok(run.logits_sha256)
}

/// sha256 over what the protocol code makes of fixed inputs: every prompt
/// kind for every answer kind, score parsing, answer grading, both voting
/// rules, plurality and the chat templates. Any change in what a method
/// sends or how a reply becomes a result changes it.
pub fn protocol_digest() -> String {
    let mut h = Sha256::new();
    let mut put = |label: &str, value: String| {
        h.update(label.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        h.update([0]);
    };
    for kind in [
        AnswerKind::Aime,
        AnswerKind::Numeric,
        AnswerKind::Expression,
        AnswerKind::Code,
    ] {
        let task = Task {
            id: "stamp".into(),
            problem: "A train travels 60 km in 45 minutes. What is its speed in km/h?".into(),
            kind,
            system: None,
        };
        for (i, context) in contexts().iter().enumerate() {
            put(
                &format!("propose {kind:?} {i}"),
                show(&prompts::propose(&task, context, 300)),
            );
        }
        let candidates = [
            Candidate {
                label: "Candidate_A".into(),
                text: "60 / 0.75 = 80. The final answer is \\boxed{80}.".into(),
                answer: Some("80".into()),
            },
            Candidate {
                label: "Candidate_B".into(),
                text: "45 minutes is 0.45 h, so 60 / 0.45 = 133.3".into(),
                answer: None,
            },
        ];
        let anchor = Some(("My own: \\boxed{80}", Some("80")));
        put(
            &format!("evaluate {kind:?}"),
            show(&prompts::evaluate(&task, anchor, &candidates, 40)),
        );
        put(
            &format!("judge {kind:?}"),
            show(&prompts::judge(&task, &candidates[1].text, 20)),
        );
        for response in RESPONSES {
            put(
                &format!("grade {kind:?} {response}"),
                format!("{:?}", answer::grade(response, "80", kind)),
            );
        }
    }
    let labels: Vec<String> = ["Candidate_A", "Candidate_B", "Candidate_C"]
        .map(String::from)
        .to_vec();
    put("retry", prompts::evaluate_retry(&labels));
    for text in SCORE_REPLIES {
        put(
            &format!("scores {text}"),
            format!("{:?}", parse_scores(text, &labels)),
        );
    }
    let ballots = vec![
        vec![Some(80.0), Some(-20.0), None],
        vec![Some(10.0), Some(90.0), Some(-100.0)],
        vec![None, Some(40.0), Some(40.0)],
    ];
    let owns = [Some(2), None, Some(0)];
    for rule in [Rule::Quadratic, Rule::Linear] {
        put(
            &format!("tally {rule:?}"),
            format!("{:?}", vote::tally(&ballots, &owns, 3, rule)),
        );
    }
    put(
        "plurality",
        format!(
            "{:?}",
            vote::plurality(
                &[Some("80"), None, Some("133"), Some("133"), Some("80")],
                &[3, 0, 4, 1, 2]
            )
        ),
    );
    let messages = [
        Message::new("system", "Be brief."),
        Message::new("user", "2 + 2?"),
        Message::new("assistant", "4"),
        Message::new("user", "And 3 + 3?"),
    ];
    for kind in [
        TemplateKind::ChatMl,
        TemplateKind::Gemma,
        TemplateKind::Plain,
    ] {
        put(
            &format!("chat {kind:?}"),
            ChatTemplate::new(kind, None)
                .render(&messages, true)
                .unwrap_or_else(|e| e.to_string()),
        );
    }
    format!("{:x}", h.finalize())
}

/// Replies whose grading is part of the protocol.
const RESPONSES: [&str; 5] = [
    "The speed is 80 km/h. The final answer is \\boxed{80}.",
    "So the answer is 80.0",
    "<think>maybe 75</think> \\boxed{\\frac{160}{2}}",
    "```python\nprint(80)\n```",
    "I cannot tell.",
];

/// Evaluation replies whose parsing is part of the protocol.
const SCORE_REPLIES: [&str; 4] = [
    "Candidate_A: 85 | correct conversion\nCandidate_B: -60 | wrong hours\nCandidate_C: 0 | unsure",
    "Candidate_B: +120 | too high\nCandidate_A: 40",
    "**Candidate_A**: -10.5 | hmm",
    "no scores here",
];

fn contexts() -> Vec<ProposeContext> {
    vec![
        ProposeContext::Fresh,
        ProposeContext::Revise(Revision {
            previous: "60 / 45 = 1.33".into(),
            previous_score: -0.4,
            rank: 2,
            of: 3,
            critiques: vec![Critique {
                score: -60.0,
                reason: "minutes are not hours".into(),
            }],
            competitors: vec![Summary {
                answer: Some("80".into()),
                score: 0.7,
                excerpt: "60 / 0.75 = 80".into(),
            }],
        }),
        ProposeContext::Debate {
            own: Some("80".into()),
            others: vec!["133".into(), "80".into()],
        },
    ]
}

fn show(p: &Prompt) -> String {
    format!(
        "{:?}\u{1}{}\u{1}{}\u{1}{:?}",
        p.system, p.user, p.plain, p.plain_stop
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The protocol of this tree. When prompts, parsing, grading or voting
    /// change, this test fails: update the value on purpose, knowing that
    /// runs stamped with the old one can no longer be resumed by this build.
    const PROTOCOL: &str = "4d1818c8f2e35aad9aeff961c73b623b9d4b1931171bd054b14926a4a7f65778";

    #[test]
    fn the_protocol_is_the_committed_one() {
        assert_eq!(protocol_digest(), PROTOCOL);
    }

    #[test]
    fn the_protocol_digest_is_stable_and_hex() {
        let d = protocol_digest();
        assert_eq!(d, protocol_digest());
        assert_eq!(d.len(), 64);
        assert!(d.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn differences_name_what_changed() {
        let a = BuildStamp {
            protocol: "p1".into(),
            numerics: BTreeMap::from([("m".to_string(), "h1".to_string())]),
            probe: BuildStamp::probe_description(),
            note: None,
        };
        assert_eq!(a.difference(&a.clone()), None);
        let noted = BuildStamp {
            note: Some("measured by another binary".into()),
            ..a.clone()
        };
        assert_eq!(a.difference(&noted), None, "notes are not compared");
        let mut b = a.clone();
        b.numerics.insert("m".into(), "h2".into());
        let why = a.difference(&b).expect("differs");
        assert!(why.contains("m numerics h1 vs h2"), "{why}");
        let mut c = a.clone();
        c.protocol = "p2".into();
        assert!(a.difference(&c).expect("differs").contains("prompts"));
        let mut d = a.clone();
        d.numerics.insert("other".into(), "h".into());
        assert!(a.difference(&d).expect("differs").contains("other"));
    }
}
