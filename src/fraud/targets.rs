//! The targets the fraud evidence is held to, and per run and attack by how
//! much they are met or missed, so the page states a shortfall as a figure
//! rather than leaving it to the reader to compare tables.
//!
//! - **Per sample** (int4): the best single detector, chosen on the training
//!   folds, catches ≥ [`DETECTION`] of the fraud samples on held-out prompts
//!   while flagging ≤ [`HONEST_FLAGS`] of the honest ones. The honest rate is
//!   the mean over partitions, and it is met only if the design rate k/(n + 1)
//!   of the thresholds is too: with few training honest samples the
//!   threshold cannot be built for 1%, whatever a partition happens to show.
//!   The worst partition's exact 95% upper bound is given beside it, since a
//!   rate measured on a few hundred samples cannot show ≤ 1% on its own.
//! - **Per node** (int4 and substitution): some per-node test reaches
//!   [`TARGET_POWER`] with ≤ [`NODE_SAMPLES`] samples per node. Nodes are
//!   drawn from a few hundred samples, so the cell gives how many disjoint
//!   nodes the fraud samples make at that size and the exact lower bound on
//!   power they allow; the target is met as a bound only where that bound
//!   reaches it.
//!
//! Other attacks get the same cells, marked as having no target. The best
//! single detector that abstains on short outputs
//! ([`BEST_SINGLE_GATED`]) gets a row of its own under each attack: its
//! detection is over the judged fraud samples, with the share of all of
//! them beside it (an abstention counts as a miss there).

use super::heldout::{pct2, HeldOut, BEST_SINGLE, BEST_SINGLE_GATED, MIN_JUDGED_TOKENS};
use super::pernode::{NodePower, TARGET_POWER};

/// Per-sample target: share of fraud samples caught on held-out prompts.
pub const DETECTION: f64 = 0.95;
/// Per-sample target: share of honest samples flagged.
pub const HONEST_FLAGS: f64 = 0.01;
/// Per-node target: [`TARGET_POWER`] within this many samples per node.
pub const NODE_SAMPLES: usize = 20;

/// Whether the per-sample target applies to an attack (its setting name).
fn per_sample_targeted(setting: &str) -> bool {
    setting == "int4"
}

/// Whether the per-node target applies to an attack.
fn per_node_targeted(setting: &str) -> bool {
    setting == "int4" || setting.starts_with("substitute:")
}

/// How to read [`markdown`]'s table.
pub fn legend() -> String {
    format!(
        "Each cell gives the measured figure and its distance to the target. Per sample (int4): \
         the best single detector, chosen on the training folds, catches ≥ {} of fraud samples \
         on held-out prompts while flagging ≤ {} of honest samples: the mean over partitions \
         (range of counts), met only if the thresholds' design rate k/(n + 1) is within the \
         target too, with the worst partition's exact 95% upper bound (\"bound not shown\" while \
         it is above the target). Per node (int4 and substitution): the fewest samples per node \
         at which a per-node test ejects ≥ {} of simulated cheating nodes, target ≤ \
         {NODE_SAMPLES}, with that test's honest ejection there, the honest · fraud samples behind \
         its curve, the disjoint nodes those fraud samples make at that size and the exact 95% \
         lower bound on power they allow (a point estimate of 100% on 10 disjoint nodes allows \
         69%; \"point met\" until the bound reaches the target). Other \
         attacks are shown without a target. A row \"abstains under {MIN_JUDGED_TOKENS} tokens\" \
         is the same detector giving no verdict on shorter outputs (fit and tested on the rest): \
         its honest rate is over the judged honest samples, its detection is judged against the \
         target as a share of all fraud samples (an abstention is a miss). That gate was chosen \
         after the fact from the first runs' length breakdown; it is tested only by runs made \
         after it.\n",
        pct(DETECTION),
        pct(HONEST_FLAGS),
        pct(TARGET_POWER),
    )
}

/// The header of [`markdown`]'s table.
pub const TABLE_HEADER: &str = "| model | attack | detected per sample (held-out) | honest flagged | per node: samples for 99% |\n\
     |---|---|---|---|---|\n";

/// The target rows of one run (no header): one per attack that has a best
/// single detector, followed by its gated variant's row when there is one.
pub fn markdown(model: &str, held_out: &[HeldOut], per_node: &[NodePower]) -> String {
    let mut out = String::new();
    for best in held_out.iter().filter(|h| h.detector == BEST_SINGLE) {
        let tests: Vec<&NodePower> = per_node
            .iter()
            .filter(|p| p.setting == best.setting)
            .collect();
        out.push_str(&format!(
            "| {model} | {} | {} | {} | {} |\n",
            best.setting,
            detection_cell(best),
            honest_cell(best),
            node_cell(&best.setting, &tests),
        ));
        let gated = held_out
            .iter()
            .find(|h| h.detector == BEST_SINGLE_GATED && h.setting == best.setting);
        if let Some(g) = gated {
            out.push_str(&format!(
                "| {model} | {} · abstains under {MIN_JUDGED_TOKENS} tokens | {} | {} | – |\n",
                g.setting,
                detection_cell(g),
                honest_cell(g),
            ));
        }
    }
    out
}

/// Mean held-out detection against [`DETECTION`].
fn detection_cell(h: &HeldOut) -> String {
    let (mean, _, _) = h.detection();
    let figure = if h.abstained_fraud > 0 {
        format!(
            "{} of {} judged ({} of all {})",
            pct(mean),
            h.fraud_n,
            pct(h.detection_of_all()),
            h.fraud_n + h.abstained_fraud
        )
    } else {
        format!("{} of {}", pct(mean), h.fraud_n)
    };
    if !per_sample_targeted(&h.setting) {
        return format!("{figure} (no target)");
    }
    // An abstention is a miss here: a gate must not buy its detection rate.
    let caught = h.detection_of_all();
    if caught >= DETECTION {
        format!("{figure}: **met**")
    } else {
        format!("{figure}: short by {}", points(DETECTION - caught))
    }
}

/// The mean honest flags over partitions against [`HONEST_FLAGS`], beside
/// the thresholds' design rate and the worst partition's upper bound.
fn honest_cell(h: &HeldOut) -> String {
    let (mean, lo, hi) = h.flagged_spread();
    let (_, upper) = h.worst_flagged();
    let rate = h.mean_flag_rate();
    let mut figure = format!(
        "{} ({mean:.2}/{}, {lo}–{hi} over partitions; design {}; ≤ {})",
        pct2(rate),
        h.honest_n,
        pct2(h.design_rate),
        pct(upper)
    );
    if h.abstained_honest > 0 {
        figure.push_str(&format!(", {} abstained", h.abstained_honest));
    }
    if !per_sample_targeted(&h.setting) {
        return format!("{figure} (no target)");
    }
    if rate > HONEST_FLAGS {
        format!("{figure}: over by {}", points(rate - HONEST_FLAGS))
    } else if h.design_rate > HONEST_FLAGS {
        format!(
            "{figure}: not met by design (too few training honest samples for {})",
            pct(HONEST_FLAGS)
        )
    } else if upper > HONEST_FLAGS {
        format!("{figure}: rate met, bound not shown")
    } else {
        format!("{figure}: **met**")
    }
}

/// The fewest samples any per-node test needs for [`TARGET_POWER`], against
/// [`NODE_SAMPLES`]; when none gets there, the best power at
/// [`NODE_SAMPLES`].
fn node_cell(setting: &str, tests: &[&NodePower]) -> String {
    let fewest = tests
        .iter()
        .filter_map(|t| t.samples_needed().map(|p| (p, *t)))
        .min_by_key(|(p, _)| p.samples);
    let figure = match fewest {
        Some((p, t)) => format!(
            "{} ({}; honest ejected {}; {} · {} samples; {} disjoint nodes, power ≥ {})",
            p.samples,
            t.test.name(),
            pct(p.false_ejection),
            t.honest_n,
            t.fraud_n,
            t.disjoint_nodes(p.samples),
            pct(t.power_lower_bound(p)),
        ),
        None => match best_at(tests, NODE_SAMPLES) {
            Some((power, name)) => format!(
                "not reached; best at {NODE_SAMPLES}: {} ({name})",
                pct(power)
            ),
            None => format!("not measured at {NODE_SAMPLES} (too few held-out samples)"),
        },
    };
    if !per_node_targeted(setting) {
        return format!("{figure} (no target)");
    }
    match (fewest, best_at(tests, NODE_SAMPLES)) {
        (Some((p, t)), _) if p.samples <= NODE_SAMPLES => {
            if t.power_lower_bound(p) >= TARGET_POWER {
                format!("{figure}: **met**")
            } else {
                format!("{figure}: point met, bound not shown")
            }
        }
        (_, Some((power, _))) => format!(
            "{figure}: short by {} at {NODE_SAMPLES}",
            points(TARGET_POWER - power)
        ),
        _ => format!("{figure}: not shown"),
    }
}

/// The highest power any test has at `n` samples per node, and which test.
fn best_at<'a>(tests: &[&'a NodePower], n: usize) -> Option<(f64, &'a str)> {
    tests
        .iter()
        .filter_map(|t| {
            let p = t.curve.iter().find(|p| p.samples == n)?;
            Some((p.power, t.test.name()))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A difference of rates in percentage points.
fn points(x: f64) -> String {
    format!("{:.1} pts", 100.0 * x)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fraud::pernode::{NodeTest, PowerAt};

    fn held_out(setting: &str, detected: usize, fraud_n: usize, flagged: usize) -> HeldOut {
        HeldOut {
            setting: setting.into(),
            detector: BEST_SINGLE.into(),
            honest_n: 200,
            fraud_n,
            flipped: 0,
            fits: 50,
            auc: 0.99,
            detected: vec![detected; 20],
            honest_flagged: vec![flagged; 20],
            design_rate: 1.0 / 161.0,
            by_source: Vec::new(),
            chosen: Default::default(),
            by_length: Vec::new(),
            abstained_honest: 0,
            abstained_fraud: 0,
        }
    }

    fn node(setting: &str, test: NodeTest, powers: &[(usize, f64)]) -> NodePower {
        NodePower {
            setting: setting.into(),
            test,
            honest_n: 100,
            fraud_n: 100,
            curve: powers
                .iter()
                .map(|&(samples, power)| PowerAt {
                    samples,
                    power,
                    false_ejection: 0.005,
                })
                .collect(),
        }
    }

    #[test]
    fn met_targets_are_marked_met() {
        let h = held_out("int4", 99, 100, 0);
        let nodes = [
            node("int4", NodeTest::Mmd, &[(5, 0.995), (20, 1.0)]),
            node("int4", NodeTest::RankUniformity, &[(5, 0.3), (20, 0.9)]),
        ];
        let row = markdown("m", &[h], &nodes);
        assert!(row.contains("99.0% of 100: **met**"), "{row}");
        // 0/200 is a met rate, but its upper bound (1.8%) is above 1%.
        assert!(
            row.contains(
                "0.00% (0.00/200, 0–0 over partitions; design 0.62%; ≤ 1.8%): rate met, bound not shown"
            ),
            "{row}"
        );
        // 99.5% at 5 samples per node: 20 disjoint nodes, 19 ejected,
        // whose exact lower bound (75.1%) is far below 99%.
        assert!(
            row.contains(
                "5 (MMD to honest reference; honest ejected 0.5%; 100 · 100 samples; 20 disjoint nodes, power ≥ 75.1%): point met, bound not shown"
            ),
            "{row}"
        );
    }

    #[test]
    fn shortfalls_are_stated_in_points() {
        let h = held_out("int4", 90, 100, 3);
        let nodes = [node(
            "int4",
            NodeTest::RankUniformity,
            &[(20, 0.916), (50, 1.0)],
        )];
        let row = markdown("m", &[h], &nodes);
        assert!(row.contains("90.0% of 100: short by 5.0 pts"), "{row}");
        assert!(
            row.contains(
                "1.50% (3.00/200, 3–3 over partitions; design 0.62%; ≤ 4.3%): over by 0.5 pts"
            ),
            "{row}"
        );
        // Reached at 50, past the target of 20: short by 99 - 91.6 at 20.
        assert!(
            row.contains("50 (token-rank uniformity (KS); honest ejected 0.5%; 100 · 100 samples; 2 disjoint nodes, power ≥ 15.8%): short by 7.4 pts at 20"),
            "{row}"
        );
    }

    #[test]
    fn a_rate_is_met_only_where_the_design_rate_is() {
        // 100 honest samples: 80 train per fold, so the threshold is the
        // largest training score and flags 1/81 = 1.23% by design, even if
        // the partitions happened to flag 0.8 of 100 on average.
        let mut h = held_out("int4", 99, 100, 1);
        (h.honest_n, h.design_rate) = (100, 1.0 / 81.0);
        h.honest_flagged = [vec![0; 4], vec![1; 16]].concat();
        let row = markdown("m", &[h], &[]);
        assert!(
            row.contains(
                "0.80% (0.80/100, 0–1 over partitions; design 1.23%; ≤ 5.4%): not met by design"
            ),
            "{row}"
        );
        // The positive control: a bound below 1% with enough disjoint nodes.
        let mut big = node("int4", NodeTest::Mmd, &[(1, 1.0)]);
        big.fraud_n = 400;
        let row = markdown("m", &[held_out("int4", 99, 100, 0)], &[big]);
        assert!(
            row.contains("400 disjoint nodes, power ≥ 99.1%): **met**"),
            "{row}"
        );
    }

    #[test]
    fn the_gated_detector_gets_its_own_row_after_the_attack() {
        let mut g = held_out("int4", 96, 96, 1);
        g.detector = BEST_SINGLE_GATED.into();
        (g.honest_n, g.abstained_honest, g.abstained_fraud) = (180, 20, 4);
        let rows = markdown("m", &[held_out("int4", 99, 100, 5), g], &[]);
        let lines: Vec<&str> = rows.lines().collect();
        assert_eq!(lines.len(), 2, "{rows}");
        assert!(lines[1].starts_with("| m | int4 · abstains under 33 tokens | "));
        assert!(
            lines[1].contains("100.0% of 96 judged (96.0% of all 100): **met**"),
            "{rows}"
        );
        assert!(
            lines[1].contains("0.56% (1.00/180, 1–1 over partitions; design 0.62%; ≤ 3.1%), 20 abstained: rate met, bound not shown"),
            "{rows}"
        );
        assert!(lines[1].ends_with("| – |"), "{rows}");
    }

    #[test]
    fn untargeted_attacks_and_unmeasured_sizes_say_so() {
        let h = held_out("prefill:small", 7, 56, 2);
        let row = markdown(
            "m",
            &[h],
            &[node("prefill:small", NodeTest::Mmd, &[(5, 0.4)])],
        );
        assert_eq!(row.matches("(no target)").count(), 3, "{row}");
        assert!(row.contains("not measured at 20"), "{row}");
        let s = held_out("substitute:small", 100, 100, 0);
        let row = markdown("m", &[s], &[]);
        assert!(
            row.contains("not measured at 20 (too few held-out samples): not shown"),
            "{row}"
        );
        // Only the best single detector's rows count.
        let mut other = held_out("int4", 1, 100, 0);
        other.detector = "gonka_similarity".into();
        assert!(markdown("m", &[other], &[]).is_empty());
    }
}
