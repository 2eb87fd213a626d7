//! The record-line codec: classifying probe output lines, splitting `|table|v1|...|vN|`
//! records and `|event|...|` lines, and the number check used for metric values.
//!
//! Everything here borrows from the caller's read buffer and does not allocate.

use crate::histogram::{self, HistogramError};
use crate::model::{FieldType, TableMeta, MAX_NAME_LEN};
use crate::number::is_number;

/// Why a record or event line was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The second `|` is missing, or the table name is empty or longer than 63 bytes.
    #[error("bad table name")]
    BadTableName,
    /// The line has fewer values than the table has fields, or a non-empty surplus value.
    #[error("expected {expected} values, got {got}")]
    FieldCount {
        /// Number of fields of the table.
        expected: usize,
        /// Number of values found.
        got: usize,
    },
    /// The last value is not followed by `|`.
    #[error("the last value is not terminated by '|'")]
    Unterminated,
    /// Column 1 is empty or `(null)`.
    #[error("key can't be null (column 1 is empty)")]
    EmptyKey,
    /// A gauge, counter or summary value is not a number (`field` is the 0-based field index).
    #[error("value of field {field} is not a number")]
    NonNumeric {
        /// 0-based field index.
        field: usize,
    },
    /// A histogram value is malformed (`field` is the 0-based field index).
    #[error("value of field {field} is not a valid histogram: {why}")]
    BadHistogram {
        /// 0-based field index.
        field: usize,
        /// What is wrong with it.
        why: HistogramError,
    },
    /// An `|event|` line is malformed.
    #[error("bad event line: {0}")]
    BadEvent(&'static str),
}

impl RecordError {
    /// A stable snake_case label for counters.
    pub fn reason(&self) -> &'static str {
        match self {
            RecordError::BadTableName => "bad_table_name",
            RecordError::FieldCount { .. } => "field_count",
            RecordError::Unterminated => "unterminated",
            RecordError::EmptyKey => "empty_key",
            RecordError::NonNumeric { .. } => "non_numeric",
            RecordError::BadHistogram { .. } => "bad_histogram",
            RecordError::BadEvent(_) => "bad_event",
        }
    }
}

/// One probe output line, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A `|table|values...|` record.
    Record(RecordLine<'a>),
    /// The whole line of an `|event|...` record (see [`parse_event`]).
    Event(&'a [u8]),
    /// The whole line of an `|log|...` OTel-style record.
    Log(&'a [u8]),
    /// A line not starting with `|`: probe log text.
    Text(&'a [u8]),
}

/// A record line split into its table name and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLine<'a> {
    /// The table name (1..=63 bytes, no `|`).
    pub table: &'a [u8],
    /// Everything after `|table|`.
    pub rest: &'a [u8],
}

/// Classifies one line given without its `\n` (one trailing `\r` is stripped too).
pub fn classify(line: &[u8]) -> Result<Line<'_>, RecordError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(after) = line.strip_prefix(b"|") else {
        return Ok(Line::Text(line));
    };
    // Table names are short: a plain search beats a block scan here.
    let end = after
        .iter()
        .position(|&b| b == b'|')
        .ok_or(RecordError::BadTableName)?;
    let table = &after[..end];
    if table.is_empty() || table.len() > MAX_NAME_LEN {
        return Err(RecordError::BadTableName);
    }
    Ok(match table {
        b"event" => Line::Event(line),
        b"log" => Line::Log(line),
        _ => Line::Record(RecordLine {
            table,
            rest: &after[end + 1..],
        }),
    })
}

impl<'a> RecordLine<'a> {
    /// Splits the values into `out` (cleared first) and validates them against `table`.
    ///
    /// Each value must be followed by `|`. Surplus values are accepted only if the first one
    /// is empty; everything after it is then ignored (the original's behaviour). Column 1
    /// must not be null, non-null gauge/counter/summary values must be numbers
    /// ([`is_number`]) and non-null histogram values valid encodings. Null values (see
    /// [`is_null`]) stay in `out` as they are. This is [`RecordLine::split_fields`] followed by
    /// [`check_values`].
    pub fn split_values(
        &self,
        table: &TableMeta,
        out: &mut Vec<&'a [u8]>,
    ) -> Result<(), RecordError> {
        self.split_fields(table, out)?;
        check_values(table, out)
    }

    /// The structural half of [`RecordLine::split_values`]: splits the values into `out`
    /// (cleared first), checks their count and that column 1 is not null; the values'
    /// types are not checked.
    pub fn split_fields(
        &self,
        table: &TableMeta,
        out: &mut Vec<&'a [u8]>,
    ) -> Result<(), RecordError> {
        out.clear();
        let n = table.fields.len();
        let rest = self.rest;
        let mut start = 0;
        let mut bars = crate::scan::bars(rest);
        while out.len() < n {
            match bars.next() {
                Some(pos) => {
                    out.push(&rest[start..pos]);
                    start = pos + 1;
                }
                None => {
                    let got = out.len();
                    if start == rest.len() {
                        return Err(RecordError::FieldCount { expected: n, got });
                    }
                    if got + 1 == n {
                        return Err(RecordError::Unterminated);
                    }
                    return Err(RecordError::FieldCount {
                        expected: n,
                        got: got + 1,
                    });
                }
            }
        }
        let surplus = &rest[start..];
        if !surplus.is_empty() && surplus[0] != b'|' {
            return Err(RecordError::FieldCount {
                expected: n,
                got: n + count_values(surplus),
            });
        }
        if out.first().is_some_and(|v| is_null(v)) {
            return Err(RecordError::EmptyKey);
        }
        Ok(())
    }
}

/// The type half of [`RecordLine::split_values`]: every non-null gauge/counter/summary value
/// of `values` (the table's fields in order) is a number and every non-null histogram value
/// a valid encoding.
pub fn check_values(table: &TableMeta, values: &[&[u8]]) -> Result<(), RecordError> {
    for (i, (v, f)) in values.iter().zip(&table.fields).enumerate() {
        match f.ty {
            FieldType::Key | FieldType::Label => {}
            _ if is_null(v) => {}
            FieldType::Gauge | FieldType::Counter | FieldType::Summary => {
                if !is_number(v) {
                    return Err(RecordError::NonNumeric { field: i });
                }
            }
            FieldType::Histogram => {
                histogram::validate(v)
                    .map_err(|why| RecordError::BadHistogram { field: i, why })?;
            }
        }
    }
    Ok(())
}

/// Number of `|`-separated values in `s`, counting an unterminated last one.
fn count_values(s: &[u8]) -> usize {
    let bars = crate::scan::bars(s).count();
    let unterminated = !s.is_empty() && s.last() != Some(&b'|');
    bars + usize::from(unterminated)
}

/// True for a null value: empty or the literal `(null)`.
pub fn is_null(v: &[u8]) -> bool {
    v.is_empty() || v == b"(null)"
}

/// The fields of an `|event|` line (docs/reference/meta-and-records.md §5.2), borrowed from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLine<'a> {
    /// Entity name (non-empty).
    pub entity_name: &'a [u8],
    /// Entity id as reported (non-empty).
    pub entity_id: &'a [u8],
    /// Metric (field) name (non-empty).
    pub metric: &'a [u8],
    /// Process id, may be empty.
    pub pid: &'a [u8],
    /// Process name, may be empty.
    pub comm: &'a [u8],
    /// IP text, may be empty.
    pub ip: &'a [u8],
    /// Container id, may be empty.
    pub container_id: &'a [u8],
    /// Pod id, may be empty.
    pub pod_id: &'a [u8],
    /// Device name, may be empty.
    pub device: &'a [u8],
    /// Severity text (`INFO`, `WARN`, ...), may be empty.
    pub severity_text: &'a [u8],
    /// Severity number; empty or a JSON integer, so it can be copied into JSON unquoted.
    pub severity_number: &'a [u8],
    /// The message body.
    pub body: &'a [u8],
}

/// Parses an `|event|<12 fields, each followed by '|'>` line; extra trailing fields are ignored.
pub fn parse_event(line: &[u8]) -> Result<EventLine<'_>, RecordError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let rest = line
        .strip_prefix(b"|event|")
        .ok_or(RecordError::BadEvent("does not start with |event|"))?;
    let mut f: [&[u8]; 12] = [&[]; 12];
    let mut start = 0;
    let mut bars = crate::scan::bars(rest);
    for slot in &mut f {
        let pos = bars
            .next()
            .ok_or(RecordError::BadEvent("fewer than 12 fields"))?;
        *slot = &rest[start..pos];
        start = pos + 1;
    }
    let [entity_name, entity_id, metric, pid, comm, ip, container_id, pod_id, device, severity_text, severity_number, body] =
        f;
    if entity_name.is_empty() {
        return Err(RecordError::BadEvent("empty entity name"));
    }
    if entity_id.is_empty() {
        return Err(RecordError::BadEvent("empty entity id"));
    }
    if metric.is_empty() {
        return Err(RecordError::BadEvent("empty metric"));
    }
    if !severity_number.is_empty() && !is_json_integer(severity_number) {
        return Err(RecordError::BadEvent("severity number is not an integer"));
    }
    Ok(EventLine {
        entity_name,
        entity_id,
        metric,
        pid,
        comm,
        ip,
        container_id,
        pod_id,
        device,
        severity_text,
        severity_number,
        body,
    })
}

/// `-?(0|[1-9][0-9]*)`, at most 19 digits: an integer that is also a valid JSON number.
fn is_json_integer(v: &[u8]) -> bool {
    let digits = v.strip_prefix(b"-").unwrap_or(v);
    !digits.is_empty()
        && digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && (digits[0] != b'0' || digits.len() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Field;
    use proptest::prelude::*;

    fn table(types: &[FieldType]) -> TableMeta {
        let fields = types
            .iter()
            .enumerate()
            .map(|(i, &ty)| Field::new(format!("f{i}"), ty))
            .collect();
        TableMeta::new("t", "e", "1", fields, "t.meta", 1)
    }

    fn tcp() -> TableMeta {
        use FieldType::*;
        table(&[Key, Label, Gauge, Counter, Histogram, Summary])
    }

    fn record(line: &[u8]) -> RecordLine<'_> {
        match classify(line) {
            Ok(Line::Record(r)) => r,
            other => panic!("not a record: {other:?}"),
        }
    }

    fn split<'a>(t: &TableMeta, line: &'a [u8]) -> Result<Vec<&'a [u8]>, RecordError> {
        let mut out = vec![&b"stale"[..]];
        record(line).split_values(t, &mut out).map(|()| out)
    }

    #[test]
    fn classify_lines() {
        assert_eq!(
            classify(b"|tcp|1|2|"),
            Ok(Line::Record(RecordLine {
                table: b"tcp",
                rest: b"1|2|"
            }))
        );
        assert_eq!(
            classify(b"|tcp|\r"),
            Ok(Line::Record(RecordLine {
                table: b"tcp",
                rest: b""
            }))
        );
        assert_eq!(classify(b"|event|a|b|\r"), Ok(Line::Event(b"|event|a|b|")));
        assert_eq!(classify(b"|log|1|x|"), Ok(Line::Log(b"|log|1|x|")));
        assert_eq!(classify(b"[INFO] hello\r"), Ok(Line::Text(b"[INFO] hello")));
        assert_eq!(classify(b""), Ok(Line::Text(b"")));
        assert_eq!(classify(b"|"), Err(RecordError::BadTableName));
        assert_eq!(classify(b"|tcp"), Err(RecordError::BadTableName));
        assert_eq!(classify(b"||1|"), Err(RecordError::BadTableName));
        let long = format!("|{}|1|", "t".repeat(64));
        assert_eq!(classify(long.as_bytes()), Err(RecordError::BadTableName));
        let ok = format!("|{}|1|", "t".repeat(63));
        assert!(matches!(classify(ok.as_bytes()), Ok(Line::Record(_))));
        // Only one '\r' is stripped.
        assert_eq!(classify(b"x\r\r"), Ok(Line::Text(b"x\r")));
    }

    #[test]
    fn split_valid_record() {
        let t = tcp();
        let vals = split(&t, b"|t|1234|cli|1.5|-7|2 10 1 20 3 30 20|NaN|").expect("valid");
        let want: Vec<&[u8]> = vec![b"1234", b"cli", b"1.5", b"-7", b"2 10 1 20 3 30 20", b"NaN"];
        assert_eq!(vals, want);
    }

    #[test]
    fn null_values_stay() {
        let t = tcp();
        let vals = split(&t, b"|t|k||(null)|||(null)|").expect("valid");
        let want: Vec<&[u8]> = vec![b"k", b"", b"(null)", b"", b"", b"(null)"];
        assert_eq!(vals, want);
        assert!(vals[1..].iter().all(|v| is_null(v)));
    }

    #[test]
    fn value_count() {
        let t = table(&[FieldType::Key, FieldType::Gauge]);
        assert_eq!(
            split(&t, b"|t|k|"),
            Err(RecordError::FieldCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            split(&t, b"|t|"),
            Err(RecordError::FieldCount {
                expected: 2,
                got: 0
            })
        );
        assert_eq!(split(&t, b"|t|k|1"), Err(RecordError::Unterminated));
        assert_eq!(
            split(&t, b"|t|k"),
            Err(RecordError::FieldCount {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            split(&t, b"|t|k|1|2|"),
            Err(RecordError::FieldCount {
                expected: 2,
                got: 3
            })
        );
        assert_eq!(
            split(&t, b"|t|k|1|2|3"),
            Err(RecordError::FieldCount {
                expected: 2,
                got: 4
            })
        );
        // First surplus value empty: accepted, the rest ignored (original behaviour).
        let want: Vec<&[u8]> = vec![b"k", b"1"];
        assert_eq!(split(&t, b"|t|k|1||junk|more"), Ok(want.clone()));
        assert_eq!(split(&t, b"|t|k|1||"), Ok(want));
    }

    #[test]
    fn empty_key() {
        let t = table(&[FieldType::Key, FieldType::Key, FieldType::Gauge]);
        assert_eq!(split(&t, b"|t||a|1|"), Err(RecordError::EmptyKey));
        assert_eq!(split(&t, b"|t|(null)|a|1|"), Err(RecordError::EmptyKey));
        // Other key columns may be empty.
        assert!(split(&t, b"|t|a||1|").is_ok());
    }

    #[test]
    fn non_numeric_and_bad_histogram() {
        let t = tcp();
        assert_eq!(
            split(&t, b"|t|k|l|abc|1|1 1 1 1 1|1|"),
            Err(RecordError::NonNumeric { field: 2 })
        );
        assert_eq!(
            split(&t, b"|t|k|l|1|0x10|1 1 1 1 1|1|"),
            Err(RecordError::NonNumeric { field: 3 })
        );
        assert_eq!(
            split(&t, b"|t|k|l|1|1|1 1 1 1 1| 1|"),
            Err(RecordError::NonNumeric { field: 5 })
        );
        let e = split(&t, b"|t|k|l|1|1|2 5 1 4 2 1 1|1|").expect_err("bad histogram");
        assert_eq!(
            e,
            RecordError::BadHistogram {
                field: 4,
                why: HistogramError::BoundsNotIncreasing { bucket: 1 }
            }
        );
        assert_eq!(e.reason(), "bad_histogram");
        assert_eq!(
            e.to_string(),
            "value of field 4 is not a valid histogram: upper bound of bucket 1 does not increase"
        );
        // Labels are opaque.
        assert!(split(&t, b"|t|k|any text at all|1|1|1 1 1 1 1|1|").is_ok());
    }

    #[test]
    fn reasons() {
        let all = [
            (RecordError::BadTableName, "bad_table_name"),
            (
                RecordError::FieldCount {
                    expected: 1,
                    got: 2,
                },
                "field_count",
            ),
            (RecordError::Unterminated, "unterminated"),
            (RecordError::EmptyKey, "empty_key"),
            (RecordError::NonNumeric { field: 1 }, "non_numeric"),
            (
                RecordError::BadHistogram {
                    field: 1,
                    why: HistogramError::Empty,
                },
                "bad_histogram",
            ),
            (RecordError::BadEvent("x"), "bad_event"),
        ];
        for (e, r) in all {
            assert_eq!(e.reason(), r);
        }
    }

    const EVENT: &[u8] = b"|event|tcp_link|1_2_3|rx_drop|123|nginx|1.2.3.4|abc123|pod1|eth0|WARN|13|Sat Jan 1 TCP rx drop|";

    #[test]
    fn event_line() {
        let e = parse_event(EVENT).expect("valid");
        assert_eq!(e.entity_name, b"tcp_link");
        assert_eq!(e.entity_id, b"1_2_3");
        assert_eq!(e.metric, b"rx_drop");
        assert_eq!(e.pid, b"123");
        assert_eq!(e.comm, b"nginx");
        assert_eq!(e.ip, b"1.2.3.4");
        assert_eq!(e.container_id, b"abc123");
        assert_eq!(e.pod_id, b"pod1");
        assert_eq!(e.device, b"eth0");
        assert_eq!(e.severity_text, b"WARN");
        assert_eq!(e.severity_number, b"13");
        assert_eq!(e.body, b"Sat Jan 1 TCP rx drop");

        let minimal = parse_event(b"|event|e|id|m||||||||||\r").expect("valid");
        assert_eq!(minimal.body, b"");
        assert_eq!(minimal.severity_number, b"");
        let extra = parse_event(b"|event|e|id|m||||||||-1|b|extra|more").expect("valid");
        assert_eq!(extra.body, b"b");
        assert_eq!(extra.severity_number, b"-1");
    }

    #[test]
    fn bad_events() {
        let cases: &[(&[u8], &str)] = &[
            (b"|evnt|e|id|m||||||||||", "does not start with |event|"),
            (b"|event|e|id|m|||||||||", "fewer than 12 fields"),
            (b"|event|e|id|m|||||||||body", "fewer than 12 fields"),
            (b"|event||id|m||||||||||", "empty entity name"),
            (b"|event|e||m||||||||||", "empty entity id"),
            (b"|event|e|id|||||||||||", "empty metric"),
            (
                b"|event|e|id|m||||||||x||",
                "severity number is not an integer",
            ),
            (
                b"|event|e|id|m||||||||013||",
                "severity number is not an integer",
            ),
            (
                b"|event|e|id|m||||||||+13||",
                "severity number is not an integer",
            ),
        ];
        for (line, why) in cases {
            assert_eq!(
                parse_event(line),
                Err(RecordError::BadEvent(why)),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert!(is_json_integer(b"0") && is_json_integer(b"-0") && !is_json_integer(b"-"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn classify_and_split_never_panic(line in prop::collection::vec(any::<u8>(), 0..128)) {
            let t = tcp();
            let mut out = Vec::new();
            if let Ok(Line::Record(r)) = classify(&line) {
                prop_assert!(!r.table.is_empty() && r.table.len() <= 63);
                prop_assert!(!r.table.contains(&b'|'));
                if r.split_values(&t, &mut out).is_ok() {
                    prop_assert_eq!(out.len(), t.fields.len());
                    prop_assert!(!is_null(out[0]));
                }
            }
        }

        #[test]
        fn structured_records(vals in prop::collection::vec("[0-9a-z .()|-]{0,6}", 0..9), tail in "[|a-z]{0,3}") {
            let t = tcp();
            let mut line = b"|t|".to_vec();
            for v in &vals {
                line.extend_from_slice(v.as_bytes());
                line.push(b'|');
            }
            line.extend_from_slice(tail.as_bytes());
            let mut out = Vec::new();
            let r = record(&line);
            match r.split_values(&t, &mut out) {
                Ok(()) => {
                    prop_assert_eq!(out.len(), t.fields.len());
                    prop_assert!(!out.iter().any(|v| v.contains(&b'|')));
                    for (v, f) in out.iter().zip(&t.fields) {
                        if !is_null(v) && matches!(f.ty, FieldType::Gauge | FieldType::Counter | FieldType::Summary) {
                            prop_assert!(is_number(v));
                        }
                    }
                }
                Err(RecordError::FieldCount { expected, got }) => {
                    prop_assert_eq!(expected, t.fields.len());
                    prop_assert_ne!(got, expected);
                }
                Err(_) => {}
            }
        }

        #[test]
        fn mutated_events_never_panic(pos in 0usize..EVENT.len(), len in 0usize..4, ins in prop::collection::vec(prop_oneof![Just(b'|'), any::<u8>()], 0..4)) {
            let mut line = EVENT.to_vec();
            let end = (pos + len).min(line.len());
            line.splice(pos..end, ins);
            if let Ok(e) = parse_event(&line) {
                prop_assert!(!e.entity_name.is_empty() && !e.entity_id.is_empty() && !e.metric.is_empty());
                for f in [e.entity_name, e.entity_id, e.metric, e.body, e.severity_number] {
                    prop_assert!(!f.contains(&b'|'));
                }
            }
        }

        #[test]
        fn random_events_never_panic(line in prop::collection::vec(any::<u8>(), 0..96)) {
            let _ = parse_event(&line);
        }
    }
}
