//! The report of one federation log (`nsed report federation`): calls
//! accepted, refused and excluded, the overhead per action, and per phase
//! (one request to every agent) the latency the transport added.

use std::path::Path;

use super::{read_text, TablesError};

/// The report of a run directory's (its `federation.jsonl`) or a log
/// file's federation events. A torn last line (a killed run) is skipped.
pub fn report_file(path: &Path) -> Result<String, TablesError> {
    let file = if path.is_dir() {
        path.join("federation.jsonl")
    } else {
        path.to_path_buf()
    };
    let text = read_text(&file)?;
    let lines = text.lines().count();
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => events.push(v),
            Err(_) if i + 1 == lines => {}
            Err(e) => {
                return Err(TablesError::Parse {
                    path: file,
                    message: format!("line {}: {e}", i + 1),
                })
            }
        }
    }
    Ok(report(&events))
}

/// A nearest-rank quantile ([`crate::stats::quantile`]); NaN when empty.
fn quantile(values: &[f64], q: f64) -> f64 {
    crate::stats::quantile(values, q).unwrap_or(f64::NAN)
}

/// The markdown report of a federation log's events (one JSON value per
/// line of `federation.jsonl`).
pub fn report(events: &[serde_json::Value]) -> String {
    use std::collections::BTreeMap;
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    let accepted: Vec<&serde_json::Value> =
        events.iter().filter(|e| e["event"] == "accepted").collect();
    let mut out = format!(
        "- calls accepted {} · rejected {} · excluded {} · duplicates ignored {} · reconnects {}\n\n",
        accepted.len(),
        count("rejected"),
        count("excluded"),
        count("duplicate"),
        count("reconnected")
    );
    out.push_str("| action | calls | wall p50 (s) | inference p50 (s) | overhead p50 (ms) | overhead p95 (ms) | overhead max (ms) |\n");
    out.push_str("|---|---|---|---|---|---|---|\n");
    let mut by_action: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    // Phases: the calls of one request label across agents.
    let mut phases: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for e in &accepted {
        let wall = e["wall_s"].as_f64().unwrap_or(f64::NAN);
        let inference = e["inference_s"].as_f64().unwrap_or(f64::NAN);
        let action = e["action"].as_str().unwrap_or("?").to_string();
        by_action.entry(action).or_default().push((wall, inference));
        let label = e["label"].as_str().unwrap_or("");
        let mut parts = label.rsplitn(3, '/');
        let (act, _agent, prefix) = (parts.next(), parts.next(), parts.next());
        if let (Some(act), Some(prefix)) = (act, prefix) {
            phases
                .entry(format!("{prefix}/{act}"))
                .or_default()
                .push((wall, inference));
        }
    }
    for (action, calls) in &by_action {
        let sorted = |f: &dyn Fn(&(f64, f64)) -> f64| {
            let mut v: Vec<f64> = calls.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let wall = sorted(&|c| c.0);
        let inf = sorted(&|c| c.1);
        let over = sorted(&|c| (c.0 - c.1) * 1e3);
        out.push_str(&format!(
            "| {action} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |\n",
            calls.len(),
            quantile(&wall, 0.5),
            quantile(&inf, 0.5),
            quantile(&over, 0.5),
            quantile(&over, 0.95),
            quantile(&over, 1.0)
        ));
    }
    // A phase's calls run in parallel: its wall time is its slowest call;
    // in process the same calls run one after another.
    let critical: f64 = phases
        .values()
        .map(|c| c.iter().map(|x| x.0).fold(0.0, f64::max))
        .sum();
    let sequential: f64 = phases.values().flatten().map(|x| x.1).sum();
    let added: Vec<f64> = {
        let mut v: Vec<f64> = phases
            .values()
            .map(|c| {
                let slowest = c.iter().map(|x| x.0).fold(0.0, f64::max);
                let slowest_inference = c.iter().map(|x| x.1).fold(0.0, f64::max);
                (slowest - slowest_inference) * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v
    };
    out.push_str(&format!(
        "\n- {} phases (one request to every agent): sum of the slowest call per phase {:.1} s; \
         the same calls' inference times one after another {:.1} s (each as measured in its agent, \
         on whatever cores it shared)\n\
         - added latency per phase (slowest wall − slowest inference): p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms\n",
        phases.len(),
        critical,
        sequential,
        quantile(&added, 0.5),
        quantile(&added, 0.95),
        quantile(&added, 1.0)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn report_takes_the_slowest_call_of_each_phase() {
        let call = |label: &str, action: &str, wall: f64, inference: f64| {
            json!({"event": "accepted", "label": label, "action": action,
                   "wall_s": wall, "inference_s": inference})
        };
        let events = vec![
            call("g-0/nsed/r1/a/propose", "propose", 2.0, 1.9),
            call("g-0/nsed/r1/b/propose", "propose", 3.0, 2.5),
            call("g-0/nsed/r1/a/evaluate", "evaluate", 1.0, 0.99),
            json!({"event": "rejected", "reason": "bad signature"}),
            json!({"event": "reconnected"}),
        ];
        let r = report(&events);
        assert!(
            r.contains("calls accepted 3 · rejected 1 · excluded 0"),
            "{r}"
        );
        assert!(r.contains("reconnects 1"), "{r}");
        // Phases: r1 propose (slowest 3.0 s, 2.5 s inference: 500 ms added)
        // and r1 evaluate (1.0 s, 10 ms added).
        assert!(r.contains("2 phases"), "{r}");
        assert!(r.contains("slowest call per phase 4.0 s"), "{r}");
        assert!(r.contains("one after another 5.4 s"), "{r}");
        assert!(r.contains("max 500.0 ms"), "{r}");
        assert!(r.contains("| propose | 2 |"), "{r}");
    }
}
