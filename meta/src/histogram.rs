//! The histogram column encoding: `N ub_1 cum_1 ... ub_N cum_N SUM MAX`.
//!
//! Tokens are separated by one or more spaces. `N`, the upper bounds and the cumulative
//! counts are unsigned 64-bit decimal integers; bounds strictly increase, counts never
//! decrease. `SUM` and `MAX` may be any Prometheus number (see [`crate::number::is_number`]).

use crate::number::is_number;

/// Most buckets one histogram value may have.
pub const MAX_BUCKETS: u64 = 256;

/// Why a histogram value is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistogramError {
    /// The value is empty or only spaces.
    #[error("empty histogram")]
    Empty,
    /// The bucket count is not an unsigned integer.
    #[error("bucket count is not an unsigned integer")]
    BadBucketCount,
    /// The bucket count is 0 or larger than [`MAX_BUCKETS`].
    #[error("bucket count {0} is not in 1..=256")]
    BucketCountRange(u64),
    /// The value ends before all buckets, SUM and MAX were read.
    #[error("histogram is truncated")]
    Truncated,
    /// A bucket upper bound is not an unsigned integer (bucket index is 0-based).
    #[error("upper bound of bucket {bucket} is not an unsigned integer")]
    BadBound {
        /// 0-based bucket index.
        bucket: usize,
    },
    /// A cumulative count is not an unsigned integer.
    #[error("count of bucket {bucket} is not an unsigned integer")]
    BadCount {
        /// 0-based bucket index.
        bucket: usize,
    },
    /// An upper bound is not larger than the previous one.
    #[error("upper bound of bucket {bucket} does not increase")]
    BoundsNotIncreasing {
        /// 0-based bucket index.
        bucket: usize,
    },
    /// A cumulative count is smaller than the previous one.
    #[error("count of bucket {bucket} decreases")]
    CountsDecreasing {
        /// 0-based bucket index.
        bucket: usize,
    },
    /// SUM is not a number.
    #[error("sum is not a number")]
    BadSum,
    /// MAX is not a number.
    #[error("max is not a number")]
    BadMax,
    /// Tokens follow MAX.
    #[error("unexpected data after max")]
    TrailingData,
}

/// A parsed histogram value borrowing from the record line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram<'a> {
    /// `(upper bound as written, cumulative count)` per bucket.
    pub buckets: Vec<(&'a str, u64)>,
    /// SUM as written.
    pub sum: &'a str,
    /// MAX as written.
    pub max: &'a str,
}

impl<'a> Histogram<'a> {
    /// Parses and validates a histogram value.
    pub fn parse(v: &'a [u8]) -> Result<Self, HistogramError> {
        let mut buckets = Vec::new();
        let (sum, max) = walk(v, |ub, _, cum| buckets.push((ascii_str(ub), cum)))?;
        Ok(Histogram {
            buckets,
            sum: ascii_str(sum),
            max: ascii_str(max),
        })
    }

    /// The total count: the last cumulative count (0 when there are no buckets).
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.1)
    }
}

/// Validates a histogram value without allocating.
pub fn validate(v: &[u8]) -> Result<(), HistogramError> {
    walk(v, |_, _, _| {}).map(|_| ())
}

/// Walks a histogram value without allocating: calls `bucket(upper bound, cumulative count)`
/// per bucket, in order, and returns SUM and MAX as written. On an error some buckets may
/// already have been visited.
pub fn visit(v: &[u8], mut bucket: impl FnMut(u64, u64)) -> Result<(&[u8], &[u8]), HistogramError> {
    walk(v, |_, ub, cum| bucket(ub, cum))
}

/// Validated tokens are ASCII; the fallback is never taken.
fn ascii_str(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// Space-separated tokens; runs of spaces count as one separator.
struct Tokens<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Tokens<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let start = self.rest.iter().position(|&b| b != b' ')?;
        let rest = &self.rest[start..];
        let end = memchr::memchr(b' ', rest).unwrap_or(rest.len());
        self.rest = &rest[end..];
        Some(&rest[..end])
    }
}

/// Parses a non-empty run of ASCII digits into a `u64`.
fn parse_u64(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in tok {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// Walks and checks the encoding, calling `bucket(bound as written, bound, count)` per bucket;
/// returns SUM and MAX.
fn walk<'a>(
    v: &'a [u8],
    mut bucket: impl FnMut(&'a [u8], u64, u64),
) -> Result<(&'a [u8], &'a [u8]), HistogramError> {
    let mut toks = Tokens { rest: v };
    let n_tok = toks.next().ok_or(HistogramError::Empty)?;
    let n = parse_u64(n_tok).ok_or(HistogramError::BadBucketCount)?;
    if n == 0 || n > MAX_BUCKETS {
        return Err(HistogramError::BucketCountRange(n));
    }
    let mut prev: Option<(u64, u64)> = None;
    for i in 0..n as usize {
        let ub_tok = toks.next().ok_or(HistogramError::Truncated)?;
        let ub = parse_u64(ub_tok).ok_or(HistogramError::BadBound { bucket: i })?;
        let cum_tok = toks.next().ok_or(HistogramError::Truncated)?;
        let cum = parse_u64(cum_tok).ok_or(HistogramError::BadCount { bucket: i })?;
        if let Some((pub_, pcum)) = prev {
            if ub <= pub_ {
                return Err(HistogramError::BoundsNotIncreasing { bucket: i });
            }
            if cum < pcum {
                return Err(HistogramError::CountsDecreasing { bucket: i });
            }
        }
        prev = Some((ub, cum));
        bucket(ub_tok, ub, cum);
    }
    let sum = toks.next().ok_or(HistogramError::Truncated)?;
    if !is_number(sum) {
        return Err(HistogramError::BadSum);
    }
    let max = toks.next().ok_or(HistogramError::Truncated)?;
    if !is_number(max) {
        return Err(HistogramError::BadMax);
    }
    if toks.next().is_some() {
        return Err(HistogramError::TrailingData);
    }
    Ok((sum, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_example() {
        let h = Histogram::parse(b"3 10 2 100 5 1000 6 4213 950").expect("valid");
        assert_eq!(h.buckets, vec![("10", 2), ("100", 5), ("1000", 6)]);
        assert_eq!((h.sum, h.max), ("4213", "950"));
        assert_eq!(h.count(), 6);
        assert_eq!(validate(b"3 10 2 100 5 1000 6 4213 950"), Ok(()));
        let mut seen = Vec::new();
        let tail = visit(b"3 10 2 0100 5 1000 6 4213 950", |ub, cum| {
            seen.push((ub, cum))
        });
        assert_eq!(tail, Ok((&b"4213"[..], &b"950"[..])));
        assert_eq!(seen, vec![(10, 2), (100, 5), (1000, 6)]);
        assert_eq!(visit(b"1 10 1 x 5", |_, _| {}), Err(HistogramError::BadSum));
    }

    #[test]
    fn spacing_and_float_sum() {
        let h = Histogram::parse(b"  1   5 0  1.5e3 NaN ").expect("valid");
        assert_eq!(h.buckets, vec![("5", 0)]);
        assert_eq!((h.sum, h.max), ("1.5e3", "NaN"));
        assert_eq!(Histogram::parse(b"1 0 0 0 0").map(|h| h.count()), Ok(0));
    }

    #[test]
    fn errors() {
        use HistogramError::*;
        let cases: &[(&[u8], HistogramError)] = &[
            (b"", Empty),
            (b"   ", Empty),
            (b"x 1 1 1 1", BadBucketCount),
            (b"-1 1 1 1 1", BadBucketCount),
            (b"0 1 2", BucketCountRange(0)),
            (b"257", BucketCountRange(257)),
            (b"99999999999999999999", BadBucketCount),
            (b"2 10 1", Truncated),
            (b"1 10 1 5", Truncated),
            (b"1 1.5 1 5 5", BadBound { bucket: 0 }),
            (b"2 1 1 2 -1 5 5", BadCount { bucket: 1 }),
            (b"2 10 1 10 2 5 5", BoundsNotIncreasing { bucket: 1 }),
            (b"2 10 3 20 2 5 5", CountsDecreasing { bucket: 1 }),
            (b"1 10 1 abc 5", BadSum),
            (b"1 10 1 5 0x5", BadMax),
            (b"1 10 1 5 5 5", TrailingData),
            (b"1\t10 1 5 5", BadBucketCount),
        ];
        for (input, want) in cases {
            let text = String::from_utf8_lossy(input);
            assert_eq!(validate(input).as_ref(), Err(want), "{text}");
            assert_eq!(Histogram::parse(input).err().as_ref(), Some(want), "{text}");
        }
        assert_eq!(
            BucketCountRange(0).to_string(),
            "bucket count 0 is not in 1..=256"
        );
    }

    #[test]
    fn max_buckets() {
        let mut s = String::from("256");
        for i in 1..=256u64 {
            s.push_str(&format!(" {i} {i}"));
        }
        s.push_str(" 1 1");
        assert_eq!(
            Histogram::parse(s.as_bytes()).map(|h| h.buckets.len()),
            Ok(256)
        );
    }

    fn valid_histogram() -> impl Strategy<Value = (String, Vec<(u64, u64)>)> {
        prop::collection::vec((1u64..1000, 0u64..1000), 1..20).prop_map(|steps| {
            let mut ub = 0;
            let mut cum = 0;
            let buckets: Vec<(u64, u64)> = steps
                .into_iter()
                .map(|(d_ub, d_cum)| {
                    ub += d_ub;
                    cum += d_cum;
                    (ub, cum)
                })
                .collect();
            let mut s = buckets.len().to_string();
            for (u, c) in &buckets {
                s.push_str(&format!(" {u} {c}"));
            }
            s.push_str(" 12.5 7");
            (s, buckets)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn valid_encodings_parse((text, buckets) in valid_histogram()) {
            let h = Histogram::parse(text.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert_eq!(h.buckets.len(), buckets.len());
            for ((ub_text, cum), (ub, want_cum)) in h.buckets.iter().zip(&buckets) {
                prop_assert_eq!(ub_text.parse::<u64>().ok(), Some(*ub));
                prop_assert_eq!(cum, want_cum);
            }
            prop_assert_eq!(h.count(), buckets.last().map_or(0, |b| b.1));
        }

        #[test]
        fn mutations_never_panic((text, _) in valid_histogram(), pos in 0usize..200, len in 0usize..4, ins in "[0-9 .a-z-]{0,3}") {
            let mut s = text.into_bytes();
            let pos = pos.min(s.len());
            let end = (pos + len).min(s.len());
            s.splice(pos..end, ins.bytes());
            let v = validate(&s);
            let p = Histogram::parse(&s);
            prop_assert_eq!(v.is_ok(), p.is_ok());
            if let Ok(h) = p {
                prop_assert!(!h.buckets.is_empty() && h.buckets.len() <= 256);
                prop_assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
            }
        }

        #[test]
        fn random_bytes_never_panic(s in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(validate(&s).is_ok(), Histogram::parse(&s).is_ok());
        }
    }
}
