//! Exact regexes for integer ranges and for decimal numbers between integer bounds.
//!
//! Integers are written canonically (no leading zeros, no `-0`); the regex of `[lo, hi]`
//! matches exactly the decimal strings of the integers in it.

/// Unconstrained JSON integer.
pub const ANY_INTEGER: &str = "-?(0|[1-9][0-9]*)";
/// Unconstrained JSON number.
pub const ANY_NUMBER: &str = "-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?";

/// An interval end: the value and whether it is included.
pub type Bound = Option<(i64, bool)>;

fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

fn pow10(n: usize) -> u64 {
    10u64.pow(n as u32)
}

/// Alternatives matching the digit strings of the integers in `[lo, hi]` of the same length.
fn same_length(lo: &[u8], hi: &[u8], out_prefix: &str, out: &mut Vec<String>) {
    if lo.is_empty() {
        out.push(out_prefix.to_string());
        return;
    }
    let (a, b) = (lo[0], hi[0]);
    let rest = lo.len() - 1;
    if a == b {
        same_length(
            &lo[1..],
            &hi[1..],
            &format!("{out_prefix}{}", a as char),
            out,
        );
        return;
    }
    let lo_rest_min = lo[1..].iter().all(|&c| c == b'0');
    let hi_rest_max = hi[1..].iter().all(|&c| c == b'9');
    let any = |n: usize| {
        if n == 0 {
            String::new()
        } else {
            format!("[0-9]{{{n}}}")
        }
    };
    let class = |x: u8, y: u8| {
        if x == y {
            (x as char).to_string()
        } else {
            format!("[{}-{}]", x as char, y as char)
        }
    };
    // Leading digit a with the rest >= lo[1..].
    let (mut first, mut last) = (a, b);
    if !lo_rest_min {
        let nines = vec![b'9'; rest];
        same_length(&lo[1..], &nines, &format!("{out_prefix}{}", a as char), out);
        first = a + 1;
    }
    if !hi_rest_max {
        last = b - 1;
    }
    if first <= last {
        out.push(format!("{out_prefix}{}{}", class(first, last), any(rest)));
    }
    if !hi_rest_max {
        let zeros = vec![b'0'; rest];
        same_length(&zeros, &hi[1..], &format!("{out_prefix}{}", b as char), out);
    }
}

/// Regex alternatives for the non-negative integers in `[lo, hi]` (`hi = None`: unbounded).
fn nonneg_alternatives(lo: u64, hi: Option<u64>) -> Vec<String> {
    let mut out = Vec::new();
    if hi.is_some_and(|h| h < lo) {
        return out;
    }
    let last_len = hi.map_or(digits(lo), digits);
    for len in digits(lo)..=last_len {
        let start = if len == 1 { 0 } else { pow10(len - 1) }.max(lo);
        let end = if len >= 20 { u64::MAX } else { pow10(len) - 1 };
        let end = hi.map_or(end, |h| h.min(end));
        if start <= end {
            let (s, e) = (start.to_string(), end.to_string());
            same_length(s.as_bytes(), e.as_bytes(), "", &mut out);
        }
    }
    if hi.is_none() {
        // Every integer with more digits than `lo`.
        out.push(format!("[1-9][0-9]{{{},}}", digits(lo)));
    }
    out
}

fn join(alts: Vec<String>) -> Option<String> {
    match alts.len() {
        0 => None,
        1 => Some(alts.into_iter().next().expect("one")),
        _ => Some(format!("({})", alts.join("|"))),
    }
}

/// Integers in `[lo, hi]` (inclusive; `None` = unbounded); `None` if the range is empty.
pub fn integer_range(lo: Option<i64>, hi: Option<i64>) -> Option<String> {
    if let (Some(l), Some(h)) = (lo, hi) {
        if l > h {
            return None;
        }
    }
    let mut alts = Vec::new();
    // Negative part: -m with m in [max(1, -hi), -lo].
    if lo.is_none_or(|l| l < 0) {
        let m_lo = hi.map_or(1, |h| if h < 0 { h.unsigned_abs() } else { 1 });
        let m_hi = lo.map(i64::unsigned_abs);
        if let Some(neg) = join(nonneg_alternatives(m_lo, m_hi)) {
            alts.push(format!("-{neg}"));
        }
    }
    if hi.is_none_or(|h| h >= 0) {
        let l = lo.map_or(0, |l| l.max(0) as u64);
        alts.extend(nonneg_alternatives(l, hi.map(|h| h as u64)));
    }
    join(alts)
}

/// Non-negative decimals `int(.frac)?` with value in the interval from `lower` to `upper`.
fn nonneg_decimal(lower: (u64, bool), upper: Option<(u64, bool)>) -> Vec<String> {
    let (a, a_in) = lower;
    let any_frac = "(\\.[0-9]+)?";
    let zero_frac = "(\\.0+)?";
    let nonzero_frac = "\\.[0-9]*[1-9][0-9]*";
    let mut out = Vec::new();
    if let Some((b, b_in)) = upper {
        if b < a || (b == a && !(a_in && b_in)) {
            return out;
        }
        if b == a {
            out.push(format!("{a}{zero_frac}"));
            return out;
        }
    }
    out.push(format!("{a}{}", if a_in { any_frac } else { nonzero_frac }));
    let middle_hi = upper.map(|(b, _)| b - 1);
    if middle_hi.is_none_or(|m| m > a) {
        if let Some(mid) = join(nonneg_alternatives(a + 1, middle_hi)) {
            out.push(format!("{mid}{any_frac}"));
        }
    }
    if let Some((b, true)) = upper {
        out.push(format!("{b}{zero_frac}"));
    }
    out
}

/// Decimal numbers (no exponent) between integer bounds; `None` if the interval is empty.
pub fn number_range(lo: Bound, hi: Bound) -> Option<String> {
    let mut alts = Vec::new();
    // x >= 0 part, written without a sign.
    if hi.is_none_or(|(h, _)| h >= 0) {
        let lower = match lo {
            Some((l, inc)) if l >= 0 => (l as u64, inc),
            _ => (0, true),
        };
        alts.extend(nonneg_decimal(lower, hi.map(|(h, inc)| (h as u64, inc))));
    }
    // x <= 0 part as "-y" with y = -x.
    if lo.is_none_or(|(l, _)| l <= 0) {
        let lower = match hi {
            Some((h, inc)) if h <= 0 => (h.unsigned_abs(), inc),
            _ => (0, true),
        };
        let upper = lo.map(|(l, inc)| (l.unsigned_abs(), inc));
        if let Some(neg) = join(nonneg_decimal(lower, upper)) {
            alts.push(format!("-{neg}"));
        }
    }
    join(alts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::test_regex::full;

    #[test]
    fn integer_ranges_are_exact() {
        let bounds = [
            (Some(0), Some(0)),
            (Some(-5), Some(5)),
            (Some(7), Some(1234)),
            (Some(-1234), Some(-7)),
            (Some(-100), Some(999)),
            (Some(19), Some(20)),
            (Some(10), Some(99)),
            (Some(101), Some(1999)),
            (Some(-3), None),
            (Some(42), None),
            (None, Some(-42)),
            (None, Some(13)),
            (None, None),
        ];
        for (lo, hi) in bounds {
            let re = full(&integer_range(lo, hi).unwrap());
            for x in -3000i64..3000 {
                let want = lo.is_none_or(|l| x >= l) && hi.is_none_or(|h| x <= h);
                assert_eq!(re.is_match(x.to_string()), want, "{lo:?}..{hi:?} at {x}");
            }
            for bad in ["-0", "007", "", "+1", "1.0"] {
                assert!(!re.is_match(bad), "{lo:?}..{hi:?} matched {bad}");
            }
        }
        assert_eq!(integer_range(Some(3), Some(2)), None);
        let big = full(&integer_range(Some(i64::MIN), Some(i64::MAX)).unwrap());
        assert!(big.is_match(i64::MIN.to_string()) && big.is_match(i64::MAX.to_string()));
        assert!(!big.is_match("9223372036854775808"));
    }

    #[test]
    fn number_ranges_are_exact_on_a_grid() {
        let bounds: [(Bound, Bound); 7] = [
            (Some((0, true)), Some((10, true))),
            (Some((0, false)), Some((10, false))),
            (Some((-5, true)), Some((-2, false))),
            (Some((-3, false)), None),
            (None, Some((2, true))),
            (Some((1, true)), Some((1, true))),
            (Some((-12, true)), Some((7, false))),
        ];
        for (lo, hi) in bounds {
            let re = full(&number_range(lo, hi).unwrap());
            for tenths in -200i64..200 {
                let x = tenths as f64 / 10.0;
                let want = lo.is_none_or(|(l, inc)| if inc { x >= l as f64 } else { x > l as f64 })
                    && hi.is_none_or(|(h, inc)| if inc { x <= h as f64 } else { x < h as f64 });
                let s = format!(
                    "{}{}.{}",
                    if tenths < 0 { "-" } else { "" },
                    tenths.abs() / 10,
                    tenths.abs() % 10
                );
                assert_eq!(re.is_match(&s), want, "{lo:?}..{hi:?} at {s}");
                if tenths % 10 == 0 {
                    let s = (tenths / 10).to_string();
                    assert_eq!(re.is_match(&s), want, "{lo:?}..{hi:?} at {s}");
                }
            }
        }
        assert_eq!(number_range(Some((1, false)), Some((1, true))), None);
    }
}
