//! The methods a bench compares: [`Method`], what the user asks for on the
//! command line, and [`MethodKey`], the name of one result (one model alone
//! is one key per model) in `items.jsonl`, the summaries and the tables.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A way of answering, compared on the same items.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Full NSED: rounds of propose → cross-evaluate → quadratic vote.
    Nsed,
    /// Each distinct model alone, greedy.
    Single,
    /// maj@k of one model's temperature samples.
    SelfConsistency,
    /// Plurality over the agents' first answers.
    Plurality,
    /// One round, the score-weighted (linear) vote of the same ballots.
    Weighted,
    /// One round of quadratic voting, no deliberation.
    Qv,
    /// Multi-agent debate (Du et al.), majority of the last round.
    Debate,
    /// Every method above.
    All,
}

impl Method {
    /// The methods to run: [`Method::All`] expanded, sorted, without duplicates.
    pub fn expand(list: &[Method]) -> Vec<Method> {
        let mut v: Vec<Method> = if list.contains(&Method::All) {
            vec![
                Method::Nsed,
                Method::Single,
                Method::SelfConsistency,
                Method::Plurality,
                Method::Weighted,
                Method::Qv,
                Method::Debate,
            ]
        } else {
            list.to_vec()
        };
        v.sort();
        v.dedup();
        v
    }
}

/// The name of one method's result on an item. Written as text —
/// `nsed`, `qv`, `weighted`, `plurality`, `debate`, `self-consistency`,
/// `single:<model id>` — in `items.jsonl` and the summaries; ordered as
/// that text, so maps keyed by it serialize as they always have.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum MethodKey {
    /// Full NSED deliberation.
    Nsed,
    /// One round of quadratic voting, no deliberation.
    Qv,
    /// The score-weighted (linear) vote of one round's ballots.
    Weighted,
    /// Plurality over the agents' first answers.
    Plurality,
    /// Multi-agent debate: the majority of the last round.
    Debate,
    /// Self-consistency: the majority of one model's k temperature samples.
    SelfConsistency,
    /// One model alone (its registry id or file stem).
    Single(String),
}

const SINGLE_PREFIX: &str = "single:";

impl MethodKey {
    /// Every key but [`MethodKey::Single`], in the order a run's summary
    /// lists them (NSED first).
    const SHARED: [MethodKey; 6] = [
        MethodKey::Nsed,
        MethodKey::Qv,
        MethodKey::Weighted,
        MethodKey::Plurality,
        MethodKey::Debate,
        MethodKey::SelfConsistency,
    ];

    /// The key's name: the method's text (`nsed`, `self-consistency`, …), or the model id alone
    /// for [`MethodKey::Single`] (without the `single:` prefix).
    pub fn name(&self) -> &str {
        match self {
            Self::Nsed => "nsed",
            Self::Qv => "qv",
            Self::Weighted => "weighted",
            Self::Plurality => "plurality",
            Self::Debate => "debate",
            Self::SelfConsistency => "self-consistency",
            Self::Single(model) => model,
        }
    }

    /// The model of a single-model result.
    pub fn single_model(&self) -> Option<&str> {
        match self {
            Self::Single(model) => Some(model),
            _ => None,
        }
    }

    /// Position in a run's summary: NSED, the vote baselines, debate,
    /// self-consistency, then each model alone (by id).
    pub fn summary_rank(&self) -> (usize, &str) {
        let rank = Self::SHARED
            .iter()
            .position(|k| k == self)
            .unwrap_or(Self::SHARED.len());
        (rank, self.name())
    }
}

impl fmt::Display for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Single(model) => write!(f, "{SINGLE_PREFIX}{model}"),
            shared => f.write_str(shared.name()),
        }
    }
}

/// A name that is not one of the methods (e.g. from an edited run file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown method `{0}`: expected nsed, qv, weighted, plurality, debate, self-consistency \
     or single:<model>"
)]
pub struct UnknownMethod(pub String);

impl FromStr for MethodKey {
    type Err = UnknownMethod;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if let Some(model) = name.strip_prefix(SINGLE_PREFIX) {
            return match model.is_empty() {
                true => Err(UnknownMethod(name.to_string())),
                false => Ok(Self::Single(model.to_string())),
            };
        }
        Self::SHARED
            .into_iter()
            .find(|k| k.name() == name)
            .ok_or_else(|| UnknownMethod(name.to_string()))
    }
}

impl TryFrom<String> for MethodKey {
    type Error = UnknownMethod;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        name.parse()
    }
}

impl From<MethodKey> for String {
    fn from(key: MethodKey) -> String {
        key.to_string()
    }
}

impl Ord for MethodKey {
    /// The order of the written names, so `items.jsonl` keeps its key order.
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_string().cmp(&other.to_string())
    }
}

impl PartialOrd for MethodKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_their_names() {
        for name in [
            "nsed",
            "qv",
            "weighted",
            "plurality",
            "debate",
            "self-consistency",
            "single:qwc-0.5b",
        ] {
            let key: MethodKey = name.parse().unwrap();
            assert_eq!(key.to_string(), name);
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<MethodKey>(&json).unwrap(), key);
        }
        assert_eq!(
            "single:m1".parse::<MethodKey>().unwrap().single_model(),
            Some("m1")
        );
        assert_eq!(MethodKey::Nsed.single_model(), None);
    }

    #[test]
    fn unknown_names_are_refused() {
        for bad in ["", "NSED", "single:", "singles:m", "majority"] {
            assert!(bad.parse::<MethodKey>().is_err(), "{bad}");
            assert!(serde_json::from_str::<MethodKey>(&format!("\"{bad}\"")).is_err());
        }
    }

    #[test]
    fn maps_keep_the_order_of_the_names() {
        let mut keys: Vec<MethodKey> = ["single:b", "nsed", "debate", "single:a", "qv"]
            .iter()
            .map(|n| n.parse().unwrap())
            .collect();
        keys.sort();
        let names: Vec<String> = keys.iter().map(MethodKey::to_string).collect();
        assert_eq!(names, ["debate", "nsed", "qv", "single:a", "single:b"]);
        keys.sort_by(|a, b| a.summary_rank().cmp(&b.summary_rank()));
        let names: Vec<String> = keys.iter().map(MethodKey::to_string).collect();
        assert_eq!(names, ["nsed", "qv", "debate", "single:a", "single:b"]);
    }
}
