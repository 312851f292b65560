//! Math answer extraction and comparison (docs/reference.md §5): drop `<think>…</think>`,
//! take the last brace-matched `\boxed{…}` / `\fbox{…}`, else "final answer
//! is …", else the last number; normalize; compare as AIME integers, GSM8K
//! numbers or MATH-500 normalized expressions. "No answer" is its own outcome.

use serde::{Deserialize, Serialize};

/// How an answer was found in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Found {
    /// Inside the last `\boxed{…}` or `\fbox{…}`.
    Boxed,
    /// After the last "final answer is" / "final answer:".
    Phrase,
    /// The last number in the text, when there is neither a box nor the phrase.
    LastNumber,
}

/// An answer found in a response, before normalization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extracted {
    /// The answer as written (inside the box, after the phrase, or the number).
    pub raw: String,
    /// Which rule found it.
    pub found: Found,
}

/// The comparison a dataset uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// An integer in 0..=999 ("025" = 25).
    Aime,
    /// A number, compared numerically.
    Numeric,
    /// A LaTeX expression: normalized strings, else numerically when both parse.
    Expression,
    /// A program, graded by running tests ([`crate::bench::code`]); its
    /// "answer" in deliberation is its behaviour on the public tests.
    Code,
}

/// The outcome of grading one response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The answer matches the gold answer.
    Correct,
    /// An answer was found but does not match the gold answer.
    Wrong,
    /// No answer was found, or the one found does not normalize (e.g. "3 or 4").
    NoAnswer,
    /// Cut at the token limit before a boxed answer: counted as wrong, and
    /// reported apart so that a limit too tight for a set is visible.
    Truncated,
}

/// Everything after the last `</think>` (an unclosed `<think>` hides all).
pub fn strip_think(text: &str) -> &str {
    if let Some(end) = text.rfind("</think>") {
        return &text[end + "</think>".len()..];
    }
    match text.find("<think>") {
        Some(start) => &text[..start],
        None => text,
    }
}

/// The content of the last `\boxed{…}` or `\fbox{…}`, braces matched; also
/// the brace-less `\boxed 5`.
pub fn last_boxed(text: &str) -> Option<String> {
    // An empty box ("put it in \boxed{}") is skipped for an earlier one.
    let mut end = text.len();
    while let Some((i, len)) = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|m| text[..end].rfind(m).map(|i| (i, m.len())))
        .max_by_key(|&(i, _)| i)
    {
        match box_content(&text[i + len..]) {
            Some(c) if !c.is_empty() => return Some(c),
            _ => end = i,
        }
    }
    None
}

/// The content after a box command: `{…}` brace-matched, or one word.
fn box_content(rest: &str) -> Option<String> {
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 1usize;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(inner[..i].trim().to_string());
                    }
                }
                _ => {}
            }
        }
        return None; // unbalanced: the box was cut off
    }
    let word: String = rest
        .strip_prefix(' ')?
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '$')
        .collect();
    Some(word)
}

/// The text after the last "final answer is" / "final answer:" up to the end
/// of its line, without trailing punctuation; when that text is a worked
/// equation ("180 + 180 = 360 meters"), what follows its last `=`.
fn phrase_answer(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    // Lowercasing can change byte lengths outside ASCII; only trust the
    // position when the prefix is unchanged in length.
    let (pos, len) = ["final answer is", "final answer:"]
        .iter()
        .filter_map(|p| lower.rfind(p).map(|i| (i, p.len())))
        .max_by_key(|&(i, _)| i)?;
    let tail = text.get(pos + len..)?;
    let line = tail.trim_start().lines().next()?.trim();
    let line = line.trim_end_matches(['.', ',', ';', '!']).trim();
    let line = line.rsplit_once('=').map_or(line, |(_, rhs)| rhs.trim());
    (!line.is_empty()).then(|| line.to_string())
}

/// Numbers written in the text, in order ("1,234.5" as 1234.5; "-3").
pub fn numbers(text: &str) -> Vec<String> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let neg = i > 0 && b[i - 1] == b'-' && (i < 2 || !b[i - 2].is_ascii_alphanumeric());
        let start = i;
        while i < b.len()
            && (b[i].is_ascii_digit()
                || (b[i] == b',' && is_thousands(b, i))
                || (b[i] == b'.' && i + 1 < b.len() && b[i + 1].is_ascii_digit()))
        {
            i += 1;
        }
        let s: String = text[start..i].chars().filter(|&c| c != ',').collect();
        out.push(if neg { format!("-{s}") } else { s });
    }
    out
}

/// Whether the comma at `i` separates thousands (exactly three digits follow).
fn is_thousands(b: &[u8], i: usize) -> bool {
    b.len() >= i + 4
        && b[i + 1..i + 4].iter().all(u8::is_ascii_digit)
        && b.get(i + 4).is_none_or(|c| !c.is_ascii_digit())
}

/// Find the answer in a response (docs/reference.md §5 order).
pub fn extract(text: &str) -> Option<Extracted> {
    let text = strip_think(text);
    if let Some(raw) = last_boxed(text) {
        return Some(Extracted {
            raw,
            found: Found::Boxed,
        });
    }
    if let Some(raw) = phrase_answer(text) {
        return Some(Extracted {
            raw,
            found: Found::Phrase,
        });
    }
    numbers(text).pop().map(|raw| Extracted {
        raw,
        found: Found::LastNumber,
    })
}

/// A debate response without what it quotes of the other agents' solutions,
/// so that a `\boxed{}` copied from them is not read as this agent's answer.
/// Small models often echo the prompt back: "One agent solution:" and a
/// fenced copy of that solution. Dropped: every section introduced by a
/// header line that names an agent and ends with a colon ("One agent
/// solution:", "The other agents' solutions are:") — when the header is
/// followed by a ```` ``` ```` fence, up to the closing fence (or the end, if
/// the output was cut inside it); otherwise up to the next blank line — and
/// every fence line itself (a stray one is the echo of a closing fence). A
/// line that names the agents but states an answer ("I agree with the other
/// agents: \boxed{18}") is the agent's own and is kept.
pub fn without_quoted_solutions(text: &str) -> String {
    #[derive(PartialEq)]
    enum State {
        Own,
        /// After a header, before its first non-blank line.
        Header,
        /// A quoted paragraph, up to a blank line.
        Paragraph,
        /// A quoted fenced block, up to its closing fence.
        Fenced,
    }
    let mut kept = Vec::new();
    let mut state = State::Own;
    for line in text.lines() {
        let t = line.trim();
        let fence = t.starts_with("```");
        state = match state {
            State::Fenced if fence => State::Own,
            State::Fenced => State::Fenced,
            State::Header if t.is_empty() => State::Header,
            State::Header if fence => State::Fenced,
            State::Header | State::Paragraph if !t.is_empty() => State::Paragraph,
            _ if is_quote_header(t) => State::Header,
            _ => {
                if !fence {
                    kept.push(line);
                }
                State::Own
            }
        };
    }
    kept.join("\n")
}

/// "One agent solution:", "**Agent Solution:**", "The other agents'
/// solutions are:" — a line naming an agent that ends with a colon.
fn is_quote_header(line: &str) -> bool {
    let bare = line.trim_matches(|c: char| c == '*' || c == '#' || c.is_whitespace());
    bare.ends_with(':') && bare.to_lowercase().contains("agent")
}

/// Strip `$`, spaces, `\,` `\!` `\;`, `^\circ`, `\left`/`\right`, unwrap
/// `\text{…}`, `\dfrac`/`\tfrac` → `\frac`, thousands separators, a leading
/// `x=` and a trailing period.
pub fn normalize(s: &str) -> String {
    let mut t = s.to_string();
    for (from, to) in [
        ("\\left", ""),
        ("\\right", ""),
        ("\\dfrac", "\\frac"),
        ("\\tfrac", "\\frac"),
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\%", ""),
        ("%", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\,", ""),
        ("\\!", ""),
        ("\\;", ""),
        ("\\ ", ""),
    ] {
        t = t.replace(from, to);
    }
    t = unwrap_command(&t, "\\text");
    t = unwrap_command(&t, "\\textbf");
    t = unwrap_command(&t, "\\mathrm");
    t.retain(|c| !c.is_whitespace());
    if let Some((lhs, rhs)) = t.split_once('=') {
        if lhs.len() <= 2 && lhs.chars().all(|c| c.is_ascii_alphabetic()) {
            t = rhs.to_string();
        }
    }
    let t = t.trim_end_matches('.');
    strip_thousands(t)
}

/// `\cmd{X}` → `X`.
fn unwrap_command(s: &str, cmd: &str) -> String {
    let open = format!("{cmd}{{");
    let mut out = s.to_string();
    while let Some(i) = out.find(&open) {
        let inner_start = i + open.len();
        let mut depth = 1;
        let mut end = None;
        for (k, c) in out[inner_start..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(inner_start + k);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(end) = end else { break };
        out = format!("{}{}{}", &out[..i], &out[inner_start..end], &out[end + 1..]);
    }
    out
}

fn strip_thousands(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.char_indices() {
        let between_digits = i > 0 && b[i - 1].is_ascii_digit() && is_thousands(b, i);
        if !(c == ',' && between_digits && s.matches(',').count() <= 3 && !s.contains('(')) {
            out.push(c);
        }
    }
    out
}

/// A normalized expression's value when it is a plain number or a simple
/// fraction (`a/b`, `\frac{a}{b}`, `\fracab`), possibly negative.
pub fn numeric_value(s: &str) -> Option<f64> {
    let s = s.trim();
    if let Ok(v) = s.parse::<f64>() {
        return v.is_finite().then_some(v);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let value = if let Some(frac) = body.strip_prefix("\\frac") {
        let (a, b) = frac_parts(frac)?;
        a.parse::<f64>().ok()? / b.parse::<f64>().ok()?
    } else {
        let (a, b) = body.split_once('/')?;
        a.parse::<f64>().ok()? / b.parse::<f64>().ok()?
    };
    value
        .is_finite()
        .then_some(if neg { -value } else { value })
}

/// `{a}{b}` or `ab` (single digits, as in `\frac12`).
fn frac_parts(s: &str) -> Option<(String, String)> {
    if let Some(rest) = s.strip_prefix('{') {
        let (a, rest) = rest.split_once('}')?;
        let rest = rest.strip_prefix('{')?;
        let (b, tail) = rest.split_once('}')?;
        return tail.is_empty().then(|| (a.to_string(), b.to_string()));
    }
    let mut c = s.chars();
    let (a, b) = (c.next()?, c.next()?);
    c.next().is_none().then(|| (a.to_string(), b.to_string()))
}

/// The answer's value for numeric kinds: the normalized string as a number,
/// else the single number written in it ("18 dollars").
fn as_number(raw: &str) -> Option<f64> {
    let n = normalize(raw);
    if let Some(v) = numeric_value(&n) {
        return Some(v);
    }
    match numbers(raw).as_slice() {
        [one] => one.parse().ok(),
        _ => None,
    }
}

/// The canonical form of an extracted answer, used to compare answers with
/// one another (plurality, behaviour classes): `None` when unusable.
pub fn canonical(raw: &str, kind: AnswerKind) -> Option<String> {
    match kind {
        AnswerKind::Aime => {
            let v = as_number(raw)?;
            (v.fract() == 0.0 && (0.0..=999.0).contains(&v)).then(|| format!("{}", v as i64))
        }
        AnswerKind::Numeric => as_number(raw).map(format_number),
        // A program's behaviour is not read from text.
        AnswerKind::Code => None,
        AnswerKind::Expression => {
            let n = normalize(raw);
            if n.is_empty() {
                return None;
            }
            Some(match numeric_value(&n) {
                Some(v) => format_number(v),
                None => n,
            })
        }
    }
}

fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{:.9}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Grade a response against the gold answer.
pub fn grade(response: &str, gold: &str, kind: AnswerKind) -> (Option<String>, Outcome) {
    let Some(found) = extract(response) else {
        return (None, Outcome::NoAnswer);
    };
    let Some(answer) = canonical(&found.raw, kind) else {
        return (None, Outcome::NoAnswer);
    };
    let outcome = if same_answer(&answer, gold, kind) {
        Outcome::Correct
    } else {
        Outcome::Wrong
    };
    (Some(answer), outcome)
}

/// Whether a canonical answer equals the gold answer.
pub fn same_answer(answer: &str, gold: &str, kind: AnswerKind) -> bool {
    let Some(gold) = canonical(gold, kind) else {
        return false;
    };
    if answer == gold {
        return true;
    }
    match (numeric_value(answer), numeric_value(&gold)) {
        (Some(a), Some(b)) => (a - b).abs() <= 1e-6 * b.abs().max(1.0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boxed_is_brace_matched_and_last_wins() {
        let t = r"First \boxed{3}. Then $\boxed{\frac{1}{2}}$ and \fbox{7}? No: \boxed{ {12} }.";
        assert_eq!(last_boxed(t).as_deref(), Some("{12}"));
        assert_eq!(
            last_boxed(r"so \boxed{\frac{a}{b}} done").as_deref(),
            Some(r"\frac{a}{b}")
        );
        assert_eq!(last_boxed(r"\boxed 42 is it").as_deref(), Some("42"));
        assert_eq!(last_boxed(r"cut off \boxed{12"), None);
        assert_eq!(
            last_boxed(r"\boxed{5} then put it in \boxed{}").as_deref(),
            Some("5")
        );
        let e = extract(r"so 15 apples. To put this into \boxed{}, we").unwrap();
        assert_eq!((e.raw.as_str(), e.found), ("15", Found::LastNumber));
    }

    #[test]
    fn extraction_order() {
        let e = extract("<think>\\boxed{1}</think> The final answer is 17.").unwrap();
        assert_eq!((e.raw.as_str(), e.found), ("17", Found::Phrase));
        let e = extract("2 apples and 3 pears make 5 fruits").unwrap();
        assert_eq!((e.raw.as_str(), e.found), ("5", Found::LastNumber));
        assert_eq!(extract("<think>unfinished 3 4"), None);
        assert_eq!(extract("no digits here"), None);
        let e = extract("Final Answer: $1,234$ dollars.").unwrap();
        assert_eq!(e.raw, "$1,234$ dollars");
    }

    #[test]
    fn a_worked_final_answer_is_read_after_its_last_equals_sign() {
        let k = AnswerKind::Numeric;
        let text = "James runs 3 sprints.\nSo the final answer is 180 + 180 = 360 meters.";
        assert_eq!(extract(text).unwrap().raw, "360 meters");
        assert_eq!(
            grade(text, "360", k),
            (Some("360".into()), Outcome::Correct)
        );
        // Negative control: without the equation the sum is not an answer.
        assert_eq!(
            grade("The final answer is 180 + 180", "360", k).1,
            Outcome::NoAnswer
        );
    }

    #[test]
    fn quoted_solutions_are_not_the_debaters_answer() {
        let fenced = "One agent solution:\n```\nSo it is \\boxed{18}.\n```\nI get 20 apples.";
        let own = without_quoted_solutions(fenced);
        assert_eq!(extract(&own).unwrap().raw, "20");
        assert_eq!(last_boxed(fenced).as_deref(), Some("18"), "read naively");
        let listed = "The other agents' solutions are:\n\\boxed{160}\n\nMine: \\boxed{7}\n\n\
                      3. One agent solution:\n   \\[ \\boxed{105} \\]";
        let own = without_quoted_solutions(listed);
        assert_eq!(last_boxed(&own).as_deref(), Some("7"));
        // An unclosed fence (the output was cut inside a quote) hides the rest.
        let cut = "So \\boxed{575}.\n```\n\nOne agent solution:\n```\nthey say \\boxed{9}";
        assert_eq!(
            last_boxed(&without_quoted_solutions(cut)).as_deref(),
            Some("575")
        );
        // Negative controls: agreeing in one's own words keeps the answer,
        // and text that quotes nothing is unchanged.
        let agree = "I agree with the other agents: \\boxed{18}";
        assert_eq!(
            last_boxed(&without_quoted_solutions(agree)).as_deref(),
            Some("18")
        );
        let plain = "Step 1: 2 + 2 = 4.\n\nSo \\boxed{4}";
        assert_eq!(without_quoted_solutions(plain), plain);
    }

    #[test]
    fn numbers_handle_signs_commas_and_decimals() {
        assert_eq!(
            numbers("a -3 b 1,234.50 c x-2 d 12,34"),
            ["-3", "1234.50", "2", "12", "34"]
        );
    }

    #[test]
    fn aime_compares_integers() {
        assert_eq!(
            grade(r"\boxed{025}", "25", AnswerKind::Aime).1,
            Outcome::Correct
        );
        assert_eq!(
            grade(r"\boxed{25.0}", "25", AnswerKind::Aime).1,
            Outcome::Correct
        );
        assert_eq!(
            grade(r"\boxed{1000}", "0", AnswerKind::Aime).1,
            Outcome::NoAnswer
        );
        assert_eq!(
            grade(r"\boxed{x}", "7", AnswerKind::Aime).1,
            Outcome::NoAnswer
        );
        assert_eq!(grade(r"\boxed{8}", "7", AnswerKind::Aime).1, Outcome::Wrong);
    }

    #[test]
    fn gsm8k_compares_numbers() {
        let k = AnswerKind::Numeric;
        assert_eq!(grade(r"\boxed{\$18.00}", "18", k).1, Outcome::Correct);
        assert_eq!(
            grade(r"\boxed{18 \text{ dollars}}", "18", k).1,
            Outcome::Correct
        );
        assert_eq!(
            grade("The final answer is 1,080.", "1080", k).1,
            Outcome::Correct
        );
        assert_eq!(grade(r"\boxed{70\%}", "70", k).1, Outcome::Correct);
        assert_eq!(grade("so it is 17", "18", k).1, Outcome::Wrong);
        assert_eq!(grade(r"\boxed{3 or 4}", "3", k).1, Outcome::NoAnswer);
    }

    #[test]
    fn math_expressions_normalize() {
        let k = AnswerKind::Expression;
        assert_eq!(
            grade(r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}", k).1,
            Outcome::Correct
        );
        assert_eq!(grade(r"\boxed{0.5}", r"\frac12", k).1, Outcome::Correct);
        assert_eq!(
            grade(
                r"\boxed{\left( 3, \frac{\pi}{2} \right)}",
                r"\left( 3, \frac{\pi}{2} \right)",
                k
            )
            .1,
            Outcome::Correct
        );
        assert_eq!(grade(r"\boxed{90^\circ}", "90", k).1, Outcome::Correct);
        assert_eq!(grade(r"\boxed{x = 5}", "5", k).1, Outcome::Correct);
        assert_eq!(
            grade(r"\boxed{\text{Evelyn}}", r"\text{Evelyn}", k).1,
            Outcome::Correct
        );
        assert_eq!(grade(r"\boxed{(1,2)}", "(2,1)", k).1, Outcome::Wrong);
        assert_eq!(grade(r"\boxed{10,000}", "10000", k).1, Outcome::Correct);
    }
}
