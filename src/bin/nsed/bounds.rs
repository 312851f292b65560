//! Value parsers that bound every number a user gives on the command line,
//! checked by clap before anything runs: nothing is allocated, looped over or
//! waited for past a sane maximum, a shift or a sum cannot wrap, and NaN or
//! an infinity never reaches the work. Each error names the accepted range.

use clap::builder::RangedU64ValueParser;

/// Tokens in a prompt, a generation or a context: 2^20, eight times the
/// longest context of the roster's models.
pub const MAX_TOKENS: u64 = 1 << 20;

/// A token count of at least 1.
pub fn tokens() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..=MAX_TOKENS)
}

/// A count in `min..=max`.
pub fn count(min: u64, max: u64) -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(min..=max)
}

/// A `u64` count in `min..=max`.
pub fn count_u64(min: u64, max: u64) -> RangedU64ValueParser<u64> {
    RangedU64ValueParser::new().range(min..=max)
}

/// Kernel threads: 1 to four per core (more only adds hand-offs; a typo
/// such as 20000 would stall every command for minutes).
pub fn threads(text: &str) -> Result<usize, String> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let max = 4 * cores;
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!(
            "expected a thread count from 1 to {max} (4 per core on this machine)"
        )),
    }
}

fn finite_in(text: &str, low: f64, high: f64) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && (low..=high).contains(&x) => Ok(x),
        _ => Err(format!("expected a finite number from {low} to {high}")),
    }
}

/// A probability or share in [0, 1].
pub fn unit(text: &str) -> Result<f64, String> {
    finite_in(text, 0.0, 1.0)
}

/// A nucleus-sampling mass in (0, 1] (1 is off).
pub fn top_p(text: &str) -> Result<f64, String> {
    match finite_in(text, 0.0, 1.0) {
        Ok(p) if p > 0.0 => Ok(p),
        _ => Err("expected a probability mass above 0 and at most 1 (1: off)".into()),
    }
}

/// A min-p share in [0, 1) (0 is off; 1 would keep only the top token's ties).
pub fn min_p(text: &str) -> Result<f64, String> {
    match finite_in(text, 0.0, 1.0) {
        Ok(p) if p < 1.0 => Ok(p),
        _ => Err("expected a share from 0 up to, not including, 1 (0: off)".into()),
    }
}

/// A repetition penalty: finite, above 0, at most 100 (1 is off).
pub fn repeat_penalty(text: &str) -> Result<f32, String> {
    match finite_in(text, 0.0, 100.0) {
        Ok(p) if p > 0.0 => Ok(p as f32),
        _ => Err("expected a penalty above 0 and at most 100 (1: off)".into()),
    }
}

/// A sampling temperature in [0, 100] (0 is greedy).
pub fn temperature(text: &str) -> Result<f64, String> {
    finite_in(text, 0.0, 100.0)
}

/// A finite cost or amount, at least 0 and at most 10^9.
pub fn amount(text: &str) -> Result<f64, String> {
    finite_in(text, 0.0, 1e9)
}

/// A duration in seconds, above 0 and at most a day.
pub fn seconds(text: &str) -> Result<f64, String> {
    match finite_in(text, 0.0, 86_400.0) {
        Ok(x) if x > 0.0 => Ok(x),
        _ => Err("expected seconds above 0 and at most 86400 (a day)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_outside_their_range_are_refused_with_the_range() {
        assert_eq!(unit("0.25"), Ok(0.25));
        for bad in ["NaN", "inf", "-0.1", "1.5", "x"] {
            let err = unit(bad).expect_err(bad);
            assert!(err.contains("from 0 to 1"), "{err}");
        }
        assert_eq!(temperature("0.7"), Ok(0.7));
        assert!(temperature("inf").is_err());
        assert!(seconds("0").is_err());
        assert_eq!(seconds("2.5"), Ok(2.5));
        assert_eq!(threads("1"), Ok(1));
        assert!(threads("0").is_err());
        assert!(threads("20000").is_err());
        assert!(threads("18446744073709551615").is_err());
    }

    #[test]
    fn sampling_filters_refuse_values_that_would_empty_the_distribution() {
        assert_eq!(top_p("1"), Ok(1.0));
        assert_eq!(top_p("0.95"), Ok(0.95));
        for bad in ["0", "-0.5", "1.01", "NaN"] {
            assert!(top_p(bad).is_err(), "{bad}");
        }
        assert_eq!(min_p("0"), Ok(0.0));
        assert!(min_p("1").is_err());
        assert!(min_p("-0.1").is_err());
        assert_eq!(repeat_penalty("1.1"), Ok(1.1));
        for bad in ["0", "-1", "inf", "1000"] {
            assert!(repeat_penalty(bad).is_err(), "{bad}");
        }
    }
}
