//! Python's `Decimal(str)` equality, for LiveCodeBench's token comparison:
//! exact (no tolerance), `1.0` = `1`, `1e2` = `100`, `-0` = `0`, NaN never
//! equal, underscores ignored as CPython's `_decimal` does.

/// A parsed decimal number.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Number {
    /// Zero of any sign and exponent.
    Zero,
    /// sign (true = negative), significant digits without leading or
    /// trailing zeros, and the exponent of the last digit.
    Finite {
        negative: bool,
        digits: Vec<u8>,
        exponent: i128,
    },
    Infinity {
        negative: bool,
    },
    NaN,
}

/// Parse as `decimal.Decimal(s)` does; `None` where Python raises.
fn parse(s: &str) -> Option<Number> {
    let cleaned: String = s.trim().chars().filter(|&c| c != '_').collect();
    let (negative, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return Some(Number::Infinity { negative });
    }
    for nan in ["nan", "snan"] {
        if let Some(payload) = lower.strip_prefix(nan) {
            return payload
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then_some(Number::NaN);
        }
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], parse_exponent(&body[i + 1..])?),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int_part.len() + frac_part.len() == 0 || !all_digits(int_part) || !all_digits(frac_part) {
        return None;
    }
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    let mut exponent = exponent - frac_part.len() as i128;
    while digits.last() == Some(&0) {
        digits.pop();
        exponent += 1;
    }
    let first = digits.iter().position(|&d| d != 0);
    match first {
        None => Some(Number::Zero),
        Some(i) => Some(Number::Finite {
            negative,
            digits: digits.split_off(i),
            exponent,
        }),
    }
}

fn parse_exponent(s: &str) -> Option<i128> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 30 {
        return None;
    }
    let value: i128 = digits.parse().ok()?;
    Some(if negative { -value } else { value })
}

/// `Decimal(a) == Decimal(b)`; `None` when either does not parse.
pub fn equal(a: &str, b: &str) -> Option<bool> {
    let (a, b) = (parse(a)?, parse(b)?);
    Some(a != Number::NaN && b != Number::NaN && a == b)
}

/// LiveCodeBench's `convert_line_to_decimals` on both lines, then list
/// equality: `None` if a token of either line is not a decimal.
pub fn lines_equal(prediction: &str, expected: &str) -> Option<bool> {
    let parse_line = |l: &str| l.split_whitespace().map(parse).collect::<Option<Vec<_>>>();
    let (p, e) = (parse_line(prediction)?, parse_line(expected)?);
    Some(p.len() == e.len() && p.iter().zip(&e).all(|(x, y)| *x != Number::NaN && x == y))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equalities_python_decimal_agrees_with() {
        // Each verified with CPython 3.11's decimal.Decimal.
        for (a, b) in [
            ("1", "1.0"),
            ("1.", "1"),
            ("1e2", "100"),
            ("1E+2", "100.00"),
            ("-.5", "-0.5"),
            ("1_000", "1000"),
            ("_1", "1"),
            ("1__0", "10"),
            ("-0", "0"),
            ("0e5", "0.000"),
            ("inf", "Infinity"),
            ("-INF", "-infinity"),
            ("1.5e-3", "0.0015"),
            ("00012", "12.000e0"),
            ("1e1_0", "10000000000"),
        ] {
            assert_eq!(equal(a, b), Some(true), "{a} = {b}");
        }
        for (a, b) in [
            ("1", "2"),
            ("-1", "1"),
            ("1e2", "1e3"),
            ("inf", "-inf"),
            ("0.1", "0.10000000000000001"),
        ] {
            assert_eq!(equal(a, b), Some(false), "{a} != {b}");
        }
        assert_eq!(equal("nan", "nan"), Some(false));
        assert_eq!(equal("NaN12", "1"), Some(false));
    }

    #[test]
    fn strings_python_decimal_rejects() {
        for s in [
            "1e", "e1", ".", "-", "1.2.3", "0x10", "12abc", "+-1", "", "YES",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }

    #[test]
    fn lines_compare_token_by_token() {
        assert_eq!(lines_equal("1 2.0 3", "1.0 2 3e0"), Some(true));
        assert_eq!(lines_equal("1 2", "1 2 3"), Some(false));
        assert_eq!(lines_equal("1 x", "1 2"), None);
        assert_eq!(
            lines_equal("50000000000000000", "50000000000000001"),
            Some(false)
        );
    }
}
