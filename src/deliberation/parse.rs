//! Reading scores out of what small models write. Accepts the requested
//! `Candidate_A: 80 | reason` lines and the usual drift (markdown, spaces or
//! dashes in the label, the score on the next line, `80/100`), and records
//! rather than repairs everything else: unknown labels, repeats and
//! out-of-range numbers are dropped with a note; nothing is ever invented.

use serde::{Deserialize, Serialize};

/// The scores and reasons read from one evaluator's reply.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParsedScores {
    /// By label index: the score, if one was written and valid.
    pub scores: Vec<Option<f64>>,
    /// By label index: the reason written after the score (at most 300 characters), if any.
    pub reasons: Vec<Option<String>>,
    /// What was dropped and why.
    pub notes: Vec<String>,
}

impl ParsedScores {
    /// How many candidates got a valid score.
    pub fn valid(&self) -> usize {
        self.scores.iter().filter(|s| s.is_some()).count()
    }
}

/// Find `Candidate_X`-style labels: returns (label letters, byte end of the
/// label) for the first label on the line. With `multi` (a roster of more
/// than 26 candidates, labelled `AA`, `AB`, …) a run of capitals is one
/// label; without it only a single letter is, exactly as for small rosters.
fn find_label(line: &str, multi: bool) -> Option<(String, usize)> {
    let lower = line.to_ascii_lowercase();
    let mut from = 0;
    while let Some(rel) = lower[from..].find("candidate") {
        let start = from + rel + "candidate".len();
        let rest = &line[start..];
        let sep = rest
            .char_indices()
            .take_while(|(_, c)| matches!(c, '_' | ' ' | '-' | '*' | '#'))
            .last()
            .map_or(0, |(i, c)| i + c.len_utf8());
        let mut chars = rest[sep..].char_indices();
        if let Some((i, c)) = chars.next() {
            let next = rest[sep + i + c.len_utf8()..].chars().next();
            // Without a separator only a capital counts ("CandidateA", not
            // "Candidates").
            let letter_ok = c.is_ascii_alphabetic() && (sep > 0 || c.is_ascii_uppercase());
            if letter_ok && next.is_none_or(|n| !n.is_ascii_alphanumeric()) {
                let end = start + sep + i + c.len_utf8();
                return Some((c.to_ascii_uppercase().to_string(), end));
            }
            if multi {
                if let Some(found) = capitals_label(rest, sep) {
                    return Some((found.0, start + found.1));
                }
            }
        }
        from = start;
    }
    None
}

/// A label of two or more capitals at `rest[at..]` ("AB" in `Candidate_AB:`)
/// and its byte end in `rest`; a run glued to a digit or a lower-case letter
/// is a word, not a label.
fn capitals_label(rest: &str, at: usize) -> Option<(String, usize)> {
    let run: String = rest[at..]
        .chars()
        .take_while(|c| c.is_ascii_uppercase())
        .collect();
    let end = at + run.len();
    let next = rest[end..].chars().next();
    (run.len() >= 2 && next.is_none_or(|n| !n.is_ascii_alphanumeric())).then_some((run, end))
}

/// The first standalone number in `s` (sign included) and the byte offset
/// after it. A number glued to a letter ("3x") is algebra, not a score.
fn first_number(s: &str) -> Option<(f64, usize)> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() || (i > 0 && b[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = if i > 0 && (b[i - 1] == b'-' || b[i - 1] == b'+') {
            i - 1
        } else {
            i
        };
        let mut end = i;
        while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
            end += 1;
        }
        if b.get(end).is_some_and(u8::is_ascii_alphabetic) {
            i = end;
            continue;
        }
        let text = s[start..end].trim_end_matches('.');
        return text.parse().ok().map(|v| (v, start + text.len()));
    }
    None
}

/// The text after the score: after a `|`, else after the number, trimmed of
/// separators.
fn reason_after(rest: &str) -> Option<String> {
    let r = match rest.find('|') {
        Some(i) => &rest[i + 1..],
        None => rest.trim_start_matches(|c: char| c == '/' || c.is_ascii_digit()),
    };
    let r = r
        .trim()
        .trim_start_matches(['-', '–', ':', ')', '*', ' '])
        .trim();
    (!r.is_empty()).then(|| r.chars().take(300).collect())
}

/// Parse an evaluator's reply against the labels it was shown (`Candidate_A`
/// … in shown order).
pub fn parse_scores(text: &str, labels: &[String]) -> ParsedScores {
    let letters: Vec<String> = labels
        .iter()
        .map(|l| {
            let suffix = l.rsplit(['_', ' ']).next().unwrap_or(l);
            suffix.to_ascii_uppercase()
        })
        .collect();
    let multi = letters.iter().any(|l| l.len() > 1);
    let mut out = ParsedScores {
        scores: vec![None; labels.len()],
        reasons: vec![None; labels.len()],
        notes: Vec::new(),
    };
    let mut seen = vec![false; labels.len()];
    let mut pending: Option<usize> = None;
    for line in text.lines() {
        let (slot, rest) = match find_label(line, multi) {
            Some((letter, end)) => match letters.iter().position(|l| *l == letter) {
                Some(k) => (k, &line[end..]),
                None => {
                    out.notes
                        .push(format!("unknown candidate `Candidate_{letter}` ignored"));
                    pending = None;
                    continue;
                }
            },
            None => match pending {
                Some(k) if first_number(line).is_some() => (k, line),
                _ => continue,
            },
        };
        let Some((value, after)) = first_number(rest) else {
            pending = Some(slot);
            continue;
        };
        pending = None;
        if seen[slot] {
            out.notes
                .push(format!("{} scored again; first score kept", labels[slot]));
            continue;
        }
        seen[slot] = true;
        if !(-100.0..=100.0).contains(&value) {
            out.notes.push(format!(
                "{}: {value} is outside [-100, 100]; dropped",
                labels[slot]
            ));
            continue;
        }
        out.scores[slot] = Some(value);
        out.reasons[slot] = reason_after(&rest[after..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(crate::deliberation::label).collect()
    }

    #[test]
    fn labels_past_z_are_read_as_whole_labels() {
        let shown = labels(30);
        assert_eq!(shown[25], "Candidate_Z");
        assert_eq!(shown[26], "Candidate_AA");
        assert_eq!(shown[29], "Candidate_AD");
        let text = "Candidate_A: 10 | a\nCandidate_AB: 20 | ab\n**Candidate AD**: -30 | ad\nCandidate_B: 40";
        let p = parse_scores(text, &shown);
        assert_eq!(p.scores[0], Some(10.0));
        assert_eq!(p.scores[27], Some(20.0), "AB is the 28th label, not A");
        assert_eq!(p.scores[29], Some(-30.0));
        assert_eq!(p.scores[1], Some(40.0));
        assert_eq!(p.valid(), 4);
        // A label the evaluator was not shown is noted, not credited to A.
        let p = parse_scores("Candidate_ZZ: 50", &shown);
        assert_eq!(p.valid(), 0);
        assert_eq!(p.notes, vec!["unknown candidate `Candidate_ZZ` ignored"]);
        // Small rosters keep the single-letter rule: a capital run is a word.
        let p = parse_scores("Candidate_AB: 50\nCandidate_B: 5", &labels(3));
        assert_eq!((p.scores[0], p.scores[1]), (None, Some(5.0)));
    }

    #[test]
    fn well_formed_lines() {
        let p = parse_scores(
            "Candidate_A: 80 | checks out\nCandidate_B: -45 | arithmetic slip in step 2",
            &labels(2),
        );
        assert_eq!(p.scores, vec![Some(80.0), Some(-45.0)]);
        assert_eq!(p.reasons[1].as_deref(), Some("arithmetic slip in step 2"));
        assert!(p.notes.is_empty());
    }

    #[test]
    fn common_drift_is_read() {
        let text = "Sure! Here are my scores.\n\n**Candidate A**: +60 - good\n- candidate-b — score: 75/100 solid\n";
        let p = parse_scores(text, &labels(2));
        assert_eq!(p.scores, vec![Some(60.0), Some(75.0)]);
        let next_line = "### Candidate_A\nScore: 30\n### Candidate_B\nIt is wrong.\nScore: -90";
        let p = parse_scores(next_line, &labels(2));
        assert_eq!(p.scores, vec![Some(30.0), Some(-90.0)]);
    }

    #[test]
    fn partial_replies_leave_abstentions() {
        let p = parse_scores("Candidate_B: 10 | ok", &labels(3));
        assert_eq!(p.scores, vec![None, Some(10.0), None]);
        assert_eq!(p.valid(), 1);
    }

    #[test]
    fn hallucinated_ids_repeats_and_out_of_range_are_dropped() {
        let text = "Candidate_Z: 90\nCandidate_A: 250\nCandidate_B: 40\nCandidate_B: -40\nCandidate_C: -100.0";
        let p = parse_scores(text, &labels(3));
        assert_eq!(p.scores, vec![None, Some(40.0), Some(-100.0)]);
        assert_eq!(p.notes.len(), 3, "{:?}", p.notes);
        assert!(p.notes[0].contains("Candidate_Z"));
        assert!(p.notes[1].contains("outside"));
        assert!(p.notes[2].contains("again"));
    }

    #[test]
    fn self_evaluation_and_template_echo_give_nothing() {
        // The anchor has no label, so "my own solution" scores go nowhere, and
        // an echoed template line has no number.
        let text =
            "My own solution: 100\nCandidate_A: <score> | <one-sentence reason>\nCandidates: none";
        let p = parse_scores(text, &labels(2));
        assert_eq!(p.valid(), 0);
        let p = parse_scores("", &labels(2));
        assert_eq!(p.scores, vec![None, None]);
        let p = parse_scores("The candidates are all great, 100 points each!", &labels(2));
        assert_eq!(p.valid(), 0, "a number with no label is not a score");
    }

    #[test]
    fn replies_seen_from_the_packaged_models() {
        // smollm2-135m repeating itself: the first score per label is kept.
        let p = parse_scores(
            "Candidate_A: 100\nCandidate_B: 50\n\nCandidate_A: 100\nCandidate_B: 50",
            &labels(2),
        );
        assert_eq!(p.scores, vec![Some(100.0), Some(50.0)]);
        assert_eq!(p.notes.len(), 2);
        // smollm2-135m answering the problem instead of scoring: nothing.
        let p = parse_scores(
            "A: 1. First, we need to find the total number of bolts.\n2. We multiply 2 by 3.",
            &labels(2),
        );
        assert_eq!(p.valid(), 0);
        // qwen2.5-coder-0.5b, as asked.
        let p = parse_scores(
            "Candidate_A: -100 | The final answer is 20.\nCandidate_B: -50 | The final answer is 2.",
            &labels(2),
        );
        assert_eq!(p.scores, vec![Some(-100.0), Some(-50.0)]);
        assert_eq!(p.reasons[0].as_deref(), Some("The final answer is 20."));
        // smollm2-135m writing algebra after a label: no score in it.
        let p = parse_scores("Candidate_A: 3x + 2x = 4x x 2x", &labels(1));
        assert_eq!(p.valid(), 0);
    }

    #[test]
    fn words_starting_with_a_letter_are_not_labels() {
        // "Candidates" and "Candidate_Alpha" are not Candidate_A.
        for multi in [false, true] {
            assert_eq!(find_label("Candidates: 5", multi), None);
            assert_eq!(find_label("Candidate_Alpha: 5", multi), None);
            assert_eq!(
                find_label("candidate c) 5", multi).map(|x| x.0),
                Some("C".to_string())
            );
        }
        // Capitals glued to a digit are not a label either.
        assert_eq!(find_label("Candidate_AB2: 5", true), None);
    }
}
