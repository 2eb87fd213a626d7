//! The number syntax of metric values and histogram sums: Prometheus floats, with a
//! branch-free fast path for the short decimals that most values are.

/// True for the usual metric value: at most 8 bytes of digits with at most one `.` and at
/// least one digit. Branch-free over the bytes, because value lengths vary from record to
/// record and a byte loop's exit would be mispredicted on most values.
#[inline]
fn is_short_decimal(v: &[u8]) -> bool {
    const ZERO: u64 = u64::from_ne_bytes([b'0'; 8]);
    const DOT: u64 = u64::from_ne_bytes([b'.'; 8]);
    const LOW7: u64 = u64::from_ne_bytes([0x7f; 8]);
    if v.is_empty() || v.len() > 8 {
        return false;
    }
    // The bytes gathered into a word by (possibly overlapping) loads, not through a stack copy
    // whose partial stores would stall the load; spare bytes become '0', a valid byte.
    let n = v.len();
    let w = if n >= 4 {
        let lo = u32::from_le_bytes([v[0], v[1], v[2], v[3]]);
        let hi = u32::from_le_bytes([v[n - 4], v[n - 3], v[n - 2], v[n - 1]]);
        u64::from(lo) | u64::from(hi) << (8 * (n - 4))
    } else {
        u64::from(v[0])
            | u64::from(v[n / 2]) << (8 * (n / 2))
            | u64::from(v[n - 1]) << (8 * (n - 1))
    };
    let w = w | ZERO & !(u64::MAX >> (8 * (8 - n)));
    // Per byte: nonzero unless the byte is a digit (high nibble 3, low nibble below 10).
    let x = w ^ ZERO;
    let not_digit = (x & 0xf0f0_f0f0_f0f0_f0f0)
        | ((x & 0x0f0f_0f0f_0f0f_0f0f) + 0x0606_0606_0606_0606) & 0x1010_1010_1010_1010;
    let nonzero = |y: u64| ((y & LOW7).wrapping_add(LOW7) | y) & !LOW7;
    let dots = !nonzero(w ^ DOT) & !LOW7;
    // At most one dot (clearing the lowest bit leaves nothing), and not only a dot.
    nonzero(not_digit) & !dots == 0
        && dots & dots.wrapping_sub(1) == 0
        && n > usize::from(dots != 0)
}

/// True when `v` is a number in Prometheus float syntax:
/// `[+-]?(digits[.digits?]|.digits)([eE][+-]?digits)?`, `NaN`, `[+-]?Inf` or `[+-]?Infinity`
/// (special values case-insensitive). Hex and surrounding spaces are not accepted.
pub fn is_number(v: &[u8]) -> bool {
    if is_short_decimal(v) {
        return true;
    }
    let (signed, body) = match v.first() {
        Some(b'+' | b'-') => (true, &v[1..]),
        _ => (false, v),
    };
    match body.first() {
        Some(b'0'..=b'9' | b'.') => {}
        Some(b'i' | b'I' | b'n' | b'N') => {
            return body.eq_ignore_ascii_case(b"inf")
                || body.eq_ignore_ascii_case(b"infinity")
                || (!signed && body.eq_ignore_ascii_case(b"nan"));
        }
        _ => return false,
    }
    let mut i = 0;
    let digits = |i: &mut usize| {
        let s = *i;
        while body.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - s
    };
    let int_digits = digits(&mut i);
    let mut frac_digits = 0;
    if body.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = digits(&mut i);
    }
    if int_digits + frac_digits == 0 {
        return false;
    }
    if matches!(body.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(body.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == body.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers() {
        for ok in [
            "0",
            "1",
            "-1",
            "+1",
            "1.",
            "1.5",
            ".5",
            "-.5",
            "1e3",
            "1E-3",
            "-2.5e+10",
            "007",
            "NaN",
            "nan",
            "Inf",
            "-inf",
            "+INF",
            "Infinity",
            "-infinity",
            "1.7976931348623157e308",
        ] {
            assert!(is_number(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "", "+", "-", ".", "e3", "1e", "1e+", "0x10", " 1", "1 ", "1.2.3", "--1", "+NaN",
            "infinit", "1_000", "abc", "1,5", "(null)", "1e3.5",
        ] {
            assert!(!is_number(bad.as_bytes()), "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn short_decimals_agree_with_a_byte_loop(v in proptest::collection::vec(prop_oneof![
            Just(b'.'), Just(b'0'), Just(b'9'), Just(b'/'), Just(b':'), Just(b'>'), Just(0xb0u8),
            Just(0x2eu8 | 0x80), any::<u8>()], 0..10)) {
            let dots = v.iter().filter(|&&b| b == b'.').count();
            let want = v.len() <= 8 && dots <= 1 && v.len() > dots
                && v.iter().all(|&b| b.is_ascii_digit() || b == b'.');
            prop_assert_eq!(is_short_decimal(&v), want, "{:?}", v);
        }

        #[test]
        fn numbers_agree_with_std(s in "[+-]?[0-9]{0,3}(\\.[0-9]{0,3})?([eE][+-]?[0-9]{0,2})?") {
            // Rust's float parser accepts the same finite syntax (it also accepts "inf"/"nan").
            prop_assert_eq!(is_number(s.as_bytes()), s.parse::<f64>().is_ok(), "{}", s);
        }
    }
}
