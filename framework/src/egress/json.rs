//! Renders one imdb record as a compact JSON line (the `json` metric channel).
//!
//! Shape of docs/reference/config-and-egress.md §6.2 and docs/reference/meta-and-records.md §4.3:
//!
//! ```text
//! {"timestamp":<ms>,"entity_name":"<e>","table_name":"<t>","labels":{...,"machine_id":"<id>"},
//!  "metrics":{"<field>":"<value>",...},"histos":{"<h>":{"<ub_1>":cum_1,...,"count":N,"sum":S,"max":M}}}
//! ```
//!
//! Unlike the original, counters and summaries appear in `metrics` beside the gauges, every
//! string is JSON-escaped, and a malformed histogram skips only its own column.

use gala_meta::histogram::Histogram;
use gala_meta::record::is_null;
use gala_meta::{FieldType, TableMeta};

use crate::labels::{LabelSink, TableLabels};

/// Writes labels as members `"name":"value",` of a JSON object.
pub struct JsonLabels<'a>(pub &'a mut Vec<u8>);

impl LabelSink for JsonLabels<'_> {
    fn label(&mut self, name: &str, value: &[u8]) {
        push_member(self.0, name.as_bytes());
        push_str(self.0, value);
        self.0.push(b',');
    }
}

/// Appends the JSON line (ending in `\n`) of one record to `out`. `values` are the record's
/// fields in meta order; null values are omitted; `timestamp_ms` is wall-clock milliseconds.
pub fn render_record(
    meta: &TableMeta,
    values: &[&[u8]],
    derived: Option<&TableLabels>,
    machine_id: &str,
    timestamp_ms: u64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"timestamp\":");
    out.extend_from_slice(timestamp_ms.to_string().as_bytes());
    out.extend_from_slice(b",\"entity_name\":");
    push_str(out, meta.entity.as_bytes());
    out.extend_from_slice(b",\"table_name\":");
    push_str(out, meta.name.as_bytes());

    out.extend_from_slice(b",\"labels\":{");
    let mut sink = JsonLabels(out);
    for (f, v) in meta.fields.iter().zip(values) {
        if f.ty.is_label() && !is_null(v) {
            sink.label(&f.name, v);
        }
    }
    if let Some(derived) = derived {
        derived.write(values, &mut sink);
    }
    push_member(out, b"machine_id");
    push_str(out, machine_id.as_bytes());

    out.extend_from_slice(b"},\"metrics\":{");
    let mut first = true;
    for (f, v) in meta.fields.iter().zip(values) {
        if matches!(
            f.ty,
            FieldType::Gauge | FieldType::Counter | FieldType::Summary
        ) && !is_null(v)
        {
            if !std::mem::take(&mut first) {
                out.push(b',');
            }
            push_member(out, f.name.as_bytes());
            push_str(out, v);
        }
    }

    out.extend_from_slice(b"},\"histos\":{");
    let mut first = true;
    for (f, v) in meta.fields.iter().zip(values) {
        if f.ty != FieldType::Histogram || is_null(v) {
            continue;
        }
        let Ok(h) = Histogram::parse(v) else { continue };
        if !std::mem::take(&mut first) {
            out.push(b',');
        }
        push_member(out, f.name.as_bytes());
        out.push(b'{');
        for (ub, cum) in &h.buckets {
            push_member(out, ub.as_bytes());
            out.extend_from_slice(cum.to_string().as_bytes());
            out.push(b',');
        }
        out.extend_from_slice(b"\"count\":");
        out.extend_from_slice(h.count().to_string().as_bytes());
        out.extend_from_slice(b",\"sum\":");
        push_number(out, h.sum);
        out.extend_from_slice(b",\"max\":");
        push_number(out, h.max);
        out.push(b'}');
    }
    out.extend_from_slice(b"}}\n");
}

/// Writes `"<name>":`.
fn push_member(out: &mut Vec<u8>, name: &[u8]) {
    push_str(out, name);
    out.push(b':');
}

/// Writes `s` as a JSON string; invalid UTF-8 becomes U+FFFD.
pub(crate) fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    let s = String::from_utf8_lossy(s);
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &*s);
}

/// Writes a Prometheus number as a JSON number: verbatim when it already is one (so large
/// integers stay exact), else through `f64` (`+1`, `.5`, `007`); `NaN` and infinities, which
/// JSON cannot express, become `null`.
fn push_number(out: &mut Vec<u8>, s: &str) {
    if is_json_number(s) {
        out.extend_from_slice(s.as_bytes());
        return;
    }
    let v = s.parse::<f64>().unwrap_or(f64::NAN);
    // Serializing an f64 into a Vec cannot fail; non-finite values are written as `null`.
    let _ = serde_json::to_writer(&mut *out, &v);
}

/// True for text that is a JSON number: `-?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(s: &str) -> bool {
    fn digits(b: &[u8]) -> usize {
        b.iter().take_while(|c| c.is_ascii_digit()).count()
    }
    let b = s.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    match digits(&b[i..]) {
        0 => return false,
        n if n > 1 && b[i] == b'0' => return false,
        n => i += n,
    }
    if b.get(i) == Some(&b'.') {
        match digits(&b[i + 1..]) {
            0 => return false,
            n => i += 1 + n,
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        match digits(&b[i..]) {
            0 => return false,
            n => i += n,
        }
    }
    i == b.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_meta::Field;
    use serde_json::{json, Value};

    fn meta(fields: &[(&str, FieldType)]) -> TableMeta {
        let fields = fields.iter().map(|&(n, ty)| Field::new(n, ty)).collect();
        TableMeta::new("tcp_link", "tcp", "1.0.0", fields, "test.meta", 1)
    }

    fn render(meta: &TableMeta, values: &[&[u8]], machine_id: &str) -> (String, Value) {
        let mut out = Vec::new();
        render_record(meta, values, None, machine_id, 1_700_000_000_123, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n"), "{text}");
        assert_eq!(text.matches('\n').count(), 1, "one line: {text}");
        let v = serde_json::from_str(&text).unwrap();
        (text, v)
    }

    #[test]
    fn full_record_shape() {
        use FieldType::*;
        let m = meta(&[
            ("tgid", Key),
            ("role", Label),
            ("rx", Gauge),
            ("retrans", Counter),
            ("srtt", Summary),
            ("lat", Histogram),
        ]);
        let values: [&[u8]; 6] = [
            b"42",
            b"client",
            b"10",
            b"3",
            b"7",
            b"3 10 2 100 5 1000 6 4213 950",
        ];
        let (text, v) = render(&m, &values, "uuid-10.0.0.1");
        assert_eq!(
            v,
            json!({
                "timestamp": 1_700_000_000_123u64,
                "entity_name": "tcp",
                "table_name": "tcp_link",
                "labels": {"tgid": "42", "role": "client", "machine_id": "uuid-10.0.0.1"},
                "metrics": {"rx": "10", "retrans": "3", "srtt": "7"},
                "histos": {"lat": {"10": 2, "100": 5, "1000": 6, "count": 6, "sum": 4213, "max": 950}}
            })
        );
        // Compact, keys in the documented order.
        assert!(text.starts_with(
            "{\"timestamp\":1700000000123,\"entity_name\":\"tcp\",\"table_name\":\"tcp_link\",\"labels\":{\"tgid\":\"42\""
        ));
        assert!(!text.contains(": ") && !text.contains(", "));
    }

    #[test]
    fn nulls_are_omitted_and_histos_always_present() {
        use FieldType::*;
        let m = meta(&[("k", Key), ("l", Label), ("g", Gauge), ("h", Histogram)]);
        let (text, v) = render(&m, &[b"1", b"", b"(null)", b""], "m");
        assert_eq!(
            v,
            json!({"timestamp": 1_700_000_000_123u64, "entity_name": "tcp", "table_name": "tcp_link",
                   "labels": {"k": "1", "machine_id": "m"}, "metrics": {}, "histos": {}})
        );
        assert!(text.contains("\"histos\":{}"));
    }

    #[test]
    fn strings_are_escaped() {
        use FieldType::*;
        let m = meta(&[("k", Key), ("g", Gauge)]);
        let nasty: &[u8] = b"a\"b\\c\nd\te\x01f\x7f";
        let (text, v) = render(&m, &[nasty, b"1\"}"], "id\"x");
        assert_eq!(v["labels"]["k"], "a\"b\\c\nd\te\u{1}f\u{7f}");
        assert_eq!(v["labels"]["machine_id"], "id\"x");
        assert_eq!(v["metrics"]["g"], "1\"}");
        assert!(text.contains(r#""k":"a\"b\\c\nd\te\u0001f"#), "{text}");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        use FieldType::*;
        let m = meta(&[("k", Key)]);
        let (_, v) = render(&m, &[b"ab\xffcd"], "m");
        assert_eq!(v["labels"]["k"], "ab\u{fffd}cd");
    }

    #[test]
    fn malformed_histogram_skips_only_its_column() {
        use FieldType::*;
        let m = meta(&[
            ("k", Key),
            ("h1", Histogram),
            ("h2", Histogram),
            ("g", Gauge),
        ]);
        let (_, v) = render(&m, &[b"1", b"garbage", b"1 5 2 10 5", b"9"], "m");
        assert_eq!(
            v["histos"],
            json!({"h2": {"5": 2, "count": 2, "sum": 10, "max": 5}})
        );
        assert_eq!(v["metrics"], json!({"g": "9"}));
    }

    #[test]
    fn json_number_check() {
        for ok in ["0", "123", "-5", "1.25", "1e5", "-0.5E-3", "2e+10"] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in [
            "", "-", "1.", ".5", "+1", "007", "1e", "inf", "NaN", "0x10", "1 2",
        ] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn histogram_sum_and_max_become_json_numbers() {
        use FieldType::*;
        let m = meta(&[("k", Key), ("h", Histogram)]);
        for (sum, max, want_sum, want_max) in [
            (
                "18446744073709551615",
                "1.5e3",
                json!(18446744073709551615u64),
                json!(1500.0),
            ),
            ("+12", ".5", json!(12.0), json!(0.5)),
            ("007", "NaN", json!(7.0), Value::Null),
            ("-Inf", "3", Value::Null, json!(3)),
        ] {
            let v = format!("1 10 4 {sum} {max}");
            let (text, j) = render(&m, &[b"1", v.as_bytes()], "m");
            assert_eq!(j["histos"]["h"]["sum"], want_sum, "{text}");
            assert_eq!(j["histos"]["h"]["max"], want_max, "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_valid_json(label in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
                                     gauge in proptest::collection::vec(proptest::num::u8::ANY, 1..40)) {
            use FieldType::*;
            let m = meta(&[("k", Key), ("g", Gauge)]);
            let mut out = Vec::new();
            render_record(&m, &[&label, &gauge], None, "m", 1, &mut out);
            let text = String::from_utf8(out).unwrap();
            proptest::prop_assert_eq!(text.matches('\n').count(), 1);
            let v: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert!(v["labels"]["machine_id"] == "m");
        }
    }
}
