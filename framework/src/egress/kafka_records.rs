//! What probes' output becomes on Kafka: metric records, events and `|log|` lines.
//!
//! * A metric record (`metric.out_channel = "kafka"`) is one message per record per report, in
//!   the original's shape (docs/reference/config-and-egress.md §8, note the spaces):
//!   `{"timestamp": <ms>, "machine_id": "<system_uuid>", "entity_name": "<entity>", "<field1>": "<v1>", ...}`
//!   every field in meta order, every value a string, `"(null)"` for a null one; unlike the
//!   original, every string is JSON-escaped. It is rendered by the ingress writer thread
//!   ([`MetricKafka::send_record`]) before the record is stored, so a full imdb table never
//!   stops Kafka output (the original's 1024-per-table stall, docs/reference/meta-and-records.md §2.4).
//! * An event (`|event|`, `event.out_channel = "kafka"`) is the event log's JSON
//!   ([`event::render`], without its newline), de-duplicated per entity as there.
//! * A `|log|` line (docs/reference/meta-and-records.md §5.5) goes to the event topic only; its JSON parts
//!   are checked to be JSON and inserted verbatim ([`render_log`]).

use std::sync::Arc;
use std::time::Duration;

use gala_meta::record::EventLine;
use gala_meta::TableMeta;
use metrics::Counter;
use parking_lot::Mutex;
use serde::de::IgnoredAny;

use crate::clock;
use crate::egress::event::{self, Dedup, EventError, DEDUP_CAPACITY};
use crate::egress::json::push_str;
use crate::egress::kafka::KafkaProducer;
use crate::identity::HostIdentity;
use crate::labels::{LabelSink, TableLabels};
use crate::selfmetrics;

/// Why a `|log|` line cannot be forwarded (counted by ingress as `bad_event`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogLineError {
    /// A part is missing, is not the JSON it should be, or is not followed by `|`.
    #[error("log line: {part} is not {want}")]
    BadPart {
        /// Which part (`Timestamp`, `SeverityText`, ...).
        part: &'static str,
        /// What it should be.
        want: &'static str,
    },
}

/// Appends the Kafka message of one metric record to `out` (no newline). `values` are the
/// record's fields in meta order; `system_uuid` is the machine id without its `-<ip>`.
pub fn render_metric(
    meta: &TableMeta,
    values: &[&[u8]],
    derived: Option<&TableLabels>,
    system_uuid: &str,
    timestamp_ms: u64,
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(b"{\"timestamp\": ");
    out.extend_from_slice(itoa::Buffer::new().format(timestamp_ms).as_bytes());
    out.extend_from_slice(b", \"machine_id\": ");
    push_str(out, system_uuid.as_bytes());
    out.extend_from_slice(b", \"entity_name\": ");
    push_str(out, meta.entity.as_bytes());
    for (f, v) in meta.fields.iter().zip(values) {
        out.extend_from_slice(b", ");
        push_str(out, f.name.as_bytes());
        out.extend_from_slice(b": ");
        if v.is_empty() {
            out.extend_from_slice(b"\"(null)\"");
        } else {
            push_str(out, v);
        }
    }
    if let Some(derived) = derived {
        derived.write(values, &mut KafkaLabels(out));
    }
    out.push(b'}');
}

/// Writes labels as further members `, "name": "value"` of a metric message.
struct KafkaLabels<'a>(&'a mut Vec<u8>);

impl LabelSink for KafkaLabels<'_> {
    fn label(&mut self, name: &str, value: &[u8]) {
        self.0.extend_from_slice(b", ");
        push_str(self.0, name.as_bytes());
        self.0.extend_from_slice(b": ");
        push_str(self.0, value);
    }
}

/// The metric channel's producer and what its messages need.
#[derive(Debug)]
pub struct MetricKafka {
    producer: Arc<KafkaProducer>,
    system_uuid: String,
}

impl MetricKafka {
    /// Metric records to `producer`, `machine_id` being `system_uuid`.
    pub fn new(producer: Arc<KafkaProducer>, system_uuid: String) -> Self {
        MetricKafka {
            producer,
            system_uuid,
        }
    }

    /// Renders one record into `buf` (cleared first) and queues it.
    pub fn send_record(
        &self,
        meta: &TableMeta,
        values: &[&[u8]],
        derived: Option<&TableLabels>,
        timestamp_ms: u64,
        buf: &mut Vec<u8>,
    ) {
        buf.clear();
        render_metric(meta, values, derived, &self.system_uuid, timestamp_ms, buf);
        self.producer.send(buf);
    }

    /// The producer.
    pub fn producer(&self) -> &Arc<KafkaProducer> {
        &self.producer
    }
}

/// The event channel's producer, the de-duplication table and the host's identity.
pub struct EventKafka {
    producer: Arc<KafkaProducer>,
    machine_id: String,
    identity: HostIdentity,
    dedup: Mutex<Dedup>,
}

impl std::fmt::Debug for EventKafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventKafka")
            .field("producer", &self.producer)
            .finish_non_exhaustive()
    }
}

impl EventKafka {
    /// Events and log lines to `producer`; `dedup_period` is `event.timeout`.
    pub fn new(
        producer: Arc<KafkaProducer>,
        identity: HostIdentity,
        dedup_period: Duration,
    ) -> Self {
        EventKafka {
            producer,
            machine_id: identity.machine_id(),
            identity,
            dedup: Mutex::new(Dedup::new(dedup_period, DEDUP_CAPACITY)),
        }
    }

    /// The submitter of probe `probe`'s events.
    pub fn for_probe(self: &Arc<Self>, probe: &str) -> ProbeKafkaEvents {
        let outcome = |o| selfmetrics::events(probe, o);
        ProbeKafkaEvents {
            sink: self.clone(),
            written: outcome("written"),
            suppressed: outcome("suppressed"),
            dropped: outcome("dropped"),
            buf: Vec::new(),
        }
    }

    /// The producer.
    pub fn producer(&self) -> &Arc<KafkaProducer> {
        &self.producer
    }
}

/// One probe's way to the event topic. Events handed to the producer count as `written`
/// (their delivery is counted by the producer), refused ones as `dropped`.
pub struct ProbeKafkaEvents {
    sink: Arc<EventKafka>,
    written: Counter,
    suppressed: Counter,
    dropped: Counter,
    buf: Vec<u8>,
}

impl ProbeKafkaEvents {
    /// Converts, de-duplicates and queues `ev`; an error means the event is malformed.
    pub fn submit(&mut self, ev: &EventLine<'_>) -> Result<(), EventError> {
        let event = event::render(ev, &self.sink.machine_id, clock::wall_ms())?;
        let now_ms = clock::now_ms();
        let mut dedup = self.sink.dedup.lock();
        if !dedup.allows(&event.entity_id, now_ms) {
            self.suppressed.increment(1);
            return Ok(());
        }
        let line = event.line.strip_suffix(b"\n").unwrap_or(&event.line);
        if self.sink.producer.offer(line) {
            dedup.record(&event.entity_id, now_ms);
            self.written.increment(1);
        } else {
            self.dropped.increment(1);
        }
        Ok(())
    }

    /// Converts and queues the `|log|` line `line` (the whole line).
    pub fn submit_log(&mut self, line: &[u8]) -> Result<(), LogLineError> {
        self.buf.clear();
        render_log(line, &self.sink.identity, &mut self.buf)?;
        if self.sink.producer.offer(&self.buf) {
            self.written.increment(1);
        } else {
            self.dropped.increment(1);
        }
        Ok(())
    }
}

/// Converts `|log|<Timestamp>|"<SeverityText>"|<SeverityNumber>|<Resource>|<Attributes>|"<Body>"|`
/// into `{"Timestamp":..,"SeverityText":..,"SeverityNumber":..,"Resource":{..,"host.id":"<uuid>",
/// "host.name":"<hostname>","host.ip":"<ip>"},"Attributes":{..},"Body":..}` appended to `out`.
///
/// Each part is one JSON value (a `|` inside a string or an object is part of it), followed by
/// `|`; the parts are copied verbatim, so they are checked to be JSON of the right kind first.
pub fn render_log(line: &[u8], host: &HostIdentity, out: &mut Vec<u8>) -> Result<(), LogLineError> {
    let bad = |part, want| LogLineError::BadPart { part, want };
    let mut rest = line
        .strip_prefix(b"|log|")
        .ok_or(bad("the line", "a |log| line"))?;
    let timestamp = take_number(&mut rest).ok_or(bad("Timestamp", "a number"))?;
    let severity_text = take_value(&mut rest, b'"').ok_or(bad("SeverityText", "a JSON string"))?;
    let severity_number = take_number(&mut rest).ok_or(bad("SeverityNumber", "a number"))?;
    let resource = take_value(&mut rest, b'{').ok_or(bad("Resource", "a JSON object"))?;
    let attributes = take_value(&mut rest, b'{').ok_or(bad("Attributes", "a JSON object"))?;
    let body = take_value(&mut rest, b'"').ok_or(bad("Body", "a JSON string"))?;

    out.extend_from_slice(b"{\"Timestamp\":");
    out.extend_from_slice(timestamp);
    out.extend_from_slice(b",\"SeverityText\":");
    out.extend_from_slice(severity_text);
    out.extend_from_slice(b",\"SeverityNumber\":");
    out.extend_from_slice(severity_number);
    out.extend_from_slice(b",\"Resource\":");
    // The object without its closing brace, then the host's members.
    let inner = resource[..resource.len() - 1].trim_ascii_end();
    out.extend_from_slice(inner);
    if inner[1..].iter().any(|b| !b.is_ascii_whitespace()) {
        out.push(b',');
    }
    out.extend_from_slice(b"\"host.id\":");
    push_str(out, host.system_uuid.as_bytes());
    out.extend_from_slice(b",\"host.name\":");
    push_str(out, host.hostname.as_bytes());
    out.extend_from_slice(b",\"host.ip\":");
    push_str(out, host.ip.as_bytes());
    out.extend_from_slice(b"},\"Attributes\":");
    out.extend_from_slice(attributes);
    out.extend_from_slice(b",\"Body\":");
    out.extend_from_slice(body);
    out.push(b'}');
    Ok(())
}

/// Takes a JSON number up to the next `|` (and the `|`) from `rest`.
fn take_number<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let end = memchr::memchr(b'|', rest)?;
    let num = rest[..end].trim_ascii();
    let ok = matches!(num.first(), Some(b'-' | b'0'..=b'9'))
        && serde_json::from_slice::<serde_json::Number>(num).is_ok();
    *rest = &rest[end + 1..];
    ok.then_some(num)
}

/// Takes one JSON value starting with `first` (`"` or `{`) and its following `|` from `rest`.
fn take_value<'a>(rest: &mut &'a [u8], first: u8) -> Option<&'a [u8]> {
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let text = &rest[start..];
    if text.first() != Some(&first) {
        return None;
    }
    let mut values = serde_json::Deserializer::from_slice(text).into_iter::<IgnoredAny>();
    values.next()?.ok()?;
    let end = values.byte_offset();
    let after = &text[end..];
    let bar = after.iter().position(|b| !b.is_ascii_whitespace())?;
    if after[bar] != b'|' {
        return None;
    }
    *rest = &after[bar + 1..];
    Some(&text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_meta::MetaLimits;
    use serde_json::Value;

    const META: &str = r#"
version = "1.0.0"
measurements:
(
    {
        table_name: "tcp_tx",
        entity_name: "tcp_link",
        fields:
        (
            { description: "id", type: "key", name: "tgid" },
            { description: "label", type: "label", name: "comm" },
            { description: "g", type: "gauge", name: "rtt" },
            { description: "h", type: "histogram", name: "lat" }
        )
    }
)
"#;

    fn table() -> TableMeta {
        let tables = gala_meta::parse_meta_file("t.meta".as_ref(), META, &MetaLimits::default())
            .expect("meta");
        tables.into_iter().next().expect("one table")
    }

    fn metric(values: &[&[u8]]) -> String {
        let mut out = Vec::new();
        render_metric(
            &table(),
            values,
            None,
            "uuid-1",
            1_700_000_000_123,
            &mut out,
        );
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn metric_message_is_byte_exact() {
        let got = metric(&[b"42", b"nginx", b"0.5", b"3 1 2 1 5 2"]);
        assert_eq!(
            got,
            r#"{"timestamp": 1700000000123, "machine_id": "uuid-1", "entity_name": "tcp_link", "tgid": "42", "comm": "nginx", "rtt": "0.5", "lat": "3 1 2 1 5 2"}"#
        );
    }

    #[test]
    fn empty_values_are_null_text() {
        let got = metric(&[b"42", b"", b"(null)", b""]);
        assert!(
            got.ends_with(r#""tgid": "42", "comm": "(null)", "rtt": "(null)", "lat": "(null)"}"#),
            "{got}"
        );
    }

    #[test]
    fn metric_strings_are_escaped_and_round_trip() {
        let label = "a \"quoted\" \\ back\\slash\ttab \u{1} é";
        let got = metric(&[b"1", label.as_bytes(), b"1", b""]);
        let v: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"));
        assert_eq!(v["comm"], label);
        assert_eq!(v["machine_id"], "uuid-1");
        assert_eq!(v["timestamp"], 1_700_000_000_123u64);
        assert!(
            got.contains(r#"a \"quoted\" \\ back\\slash\ttab \u0001 é"#),
            "{got}"
        );
    }

    fn host() -> HostIdentity {
        HostIdentity {
            system_uuid: "uuid-1".into(),
            ip: "10.0.0.1".into(),
            hostname: "node\"1".into(),
        }
    }

    fn log(line: &str) -> Result<String, LogLineError> {
        let mut out = Vec::new();
        render_log(line.as_bytes(), &host(), &mut out)?;
        Ok(String::from_utf8(out).expect("UTF-8"))
    }

    #[test]
    fn log_line_is_converted_verbatim_with_host_members() {
        let got = log(
            r#"|log|1700000000123|"WARN"|13|{"service.name":"a|b"}|{"k":1}|"body | with bar"|"#,
        )
        .expect("valid");
        assert_eq!(
            got,
            r#"{"Timestamp":1700000000123,"SeverityText":"WARN","SeverityNumber":13,"Resource":{"service.name":"a|b","host.id":"uuid-1","host.name":"node\"1","host.ip":"10.0.0.1"},"Attributes":{"k":1},"Body":"body | with bar"}"#
        );
        serde_json::from_str::<Value>(&got).expect("JSON");
    }

    #[test]
    fn log_line_with_empty_resource() {
        let got = log(r#"|log|1|"INFO"|9|{ }|{}|"x"|"#).expect("valid");
        let v: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"));
        assert_eq!(v["Resource"]["host.ip"], "10.0.0.1");
        assert_eq!(v["Body"], "x");
    }

    #[test]
    fn malformed_log_lines_are_refused() {
        for (line, part) in [
            (r#"|log|x|"W"|13|{}|{}|"b"|"#, "Timestamp"),
            (r#"|log|1|W|13|{}|{}|"b"|"#, "SeverityText"),
            (r#"|log|1|"W"|1x|{}|{}|"b"|"#, "SeverityNumber"),
            (r#"|log|1|"W"|13|[]|{}|"b"|"#, "Resource"),
            (r#"|log|1|"W"|13|{"a":}|{}|"b"|"#, "Resource"),
            (r#"|log|1|"W"|13|{}|{}|"b""#, "Body"),
            (r#"|log|1|"W"|13|{}|{}|"b"x|"#, "Body"),
            (r#"|log|1|"W"|13|{}|"#, "Attributes"),
        ] {
            match log(line) {
                Err(LogLineError::BadPart { part: p, .. }) => assert_eq!(p, part, "{line}"),
                Ok(s) => panic!("accepted {line}: {s}"),
            }
        }
    }
}
