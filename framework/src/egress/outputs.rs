//! Egress's side of the ingress output contract ([`crate::ingress::Outputs`]): the channels
//! fed straight from a probe's output, chosen by `metric.out_channel` and `event.out_channel`.
//! (The Prometheus endpoint and the metric log read the imdb instead.)

use std::sync::Arc;

use gala_meta::record::EventLine;
use gala_meta::{TableId, TableMeta};

use crate::egress::event::{EventSink, ProbeEvents};
use crate::egress::kafka_records::{EventKafka, MetricKafka, ProbeKafkaEvents};
use crate::ingress::{EventOutput, Outputs, RecordOutput, Refused, NO_LOG_OUTPUT};
use crate::labels::Labels;

/// The egress channels a probe's output goes to besides the imdb; the default is none.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    /// Metric records to Kafka (`metric.out_channel = "kafka"`).
    pub metric_kafka: Option<Arc<MetricKafka>>,
    /// Events to the event log (`event.out_channel = "logs"`).
    pub event_log: Option<EventSink>,
    /// Events and log lines to Kafka (`event.out_channel = "kafka"`).
    pub event_kafka: Option<Arc<EventKafka>>,
    /// The labels metric records get (see [`crate::labels`]).
    pub labels: Option<Arc<Labels>>,
}

impl Outputs for Channels {
    fn records(&self, probe: &str) -> Option<Box<dyn RecordOutput>> {
        let kafka = self.metric_kafka.as_ref()?;
        Some(Box::new(KafkaRecords {
            kafka: kafka.clone(),
            message: Vec::new(),
            probe: probe.into(),
            labels: self.labels.clone(),
        }))
    }

    fn events(&self, probe: &str) -> Option<Box<dyn EventOutput>> {
        // `event.out_channel` has one value, so at most one of the two is set.
        if let Some(kafka) = &self.event_kafka {
            return Some(Box::new(kafka.for_probe(probe)));
        }
        let log = self.event_log.as_ref()?;
        Some(Box::new(log.for_probe(probe)))
    }
}

/// One probe's records to the metric topic.
struct KafkaRecords {
    kafka: Arc<MetricKafka>,
    /// The message being rendered (reused).
    message: Vec<u8>,
    probe: Box<str>,
    labels: Option<Arc<Labels>>,
}

impl RecordOutput for KafkaRecords {
    fn record(&mut self, id: TableId, meta: &TableMeta, values: &[&[u8]], wall_ms: u64) {
        let derived = (self.labels.as_deref()).and_then(|l| l.for_table(id, Some(&self.probe)));
        let message = &mut self.message;
        (self.kafka).send_record(meta, values, derived.as_ref(), wall_ms, message);
    }
}

/// The event log takes events, not log lines.
impl EventOutput for ProbeEvents {
    fn event(&mut self, ev: &EventLine<'_>) -> Result<(), Refused> {
        self.submit(ev).map(drop).map_err(Refused::malformed)
    }

    fn log(&mut self, _line: &[u8]) -> Result<(), Refused> {
        Err(Refused::NoRoute(NO_LOG_OUTPUT))
    }
}

/// The event topic takes both.
impl EventOutput for ProbeKafkaEvents {
    fn event(&mut self, ev: &EventLine<'_>) -> Result<(), Refused> {
        self.submit(ev).map_err(Refused::malformed)
    }

    fn log(&mut self, line: &[u8]) -> Result<(), Refused> {
        self.submit_log(line).map_err(Refused::malformed)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ingress::{Batch, DropReason, LineValidator};
    use crate::testutil::demo_imdb;

    #[test]
    fn events_go_to_the_event_log_when_there_is_one() {
        use crate::egress::event::EventLogConfig;
        let imdb = demo_imdb(2, 60_000);
        let tmp = tempfile::tempdir().unwrap();
        let config = EventLogConfig::new(tmp.path().into(), "m-1".into(), Duration::from_secs(600));
        let (sink, writer) = EventSink::start(config).unwrap();
        let channels = Channels {
            event_log: Some(sink),
            ..Channels::default()
        };
        assert!(channels.records("demo").is_none());
        let output = channels.events("demo").expect("the event log");
        let mut with = LineValidator::new("demo", imdb.registry().clone()).with_events(output);
        let mut without = LineValidator::new("demo", imdb.registry().clone());
        let mut batch = Batch::default();
        let ev = br#"|event|proc|1|cpu|||||||WARN|13|a "b" \ c|"#;
        with.line(ev, &mut batch);
        without.line(ev, &mut batch);
        let long = format!("|event|proc|{}|cpu|||||||||x|", "i".repeat(300));
        with.line(long.as_bytes(), &mut batch);
        with.line(br#"|log|1|"WARN"|13|{}|{}|"x"|"#, &mut batch);
        assert!(batch.is_empty());
        assert_eq!(with.pending(DropReason::BadEvent), 1, "EID too long");
        assert_eq!(with.pending(DropReason::NoRoute), 1, "the log line");
        assert_eq!(without.pending(DropReason::NoRoute), 1, "no event log");
        writer.finish();
        let text = std::fs::read_to_string(tmp.path().join("gopher_event_0")).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert_eq!(lines[0]["Body"], r#"a "b" \ c"#);
        assert_eq!(lines[0]["Attributes"]["entity_id"], "m-1_proc_1");
    }

    #[test]
    fn events_and_log_lines_go_to_kafka_when_the_event_channel_is_kafka() {
        use crate::config::KafkaConfig;
        use crate::egress::kafka::KafkaProducer;
        use crate::identity::HostIdentity;
        let imdb = demo_imdb(2, 60_000);
        // No broker: messages only queue, which is all this test needs.
        let config = KafkaConfig {
            kafka_broker: "127.0.0.1:1".into(),
            ..KafkaConfig::default()
        };
        let producer = Arc::new(KafkaProducer::new(&config, "t", "event").unwrap());
        let host = HostIdentity {
            system_uuid: "u".into(),
            ip: "10.0.0.1".into(),
            hostname: "h".into(),
        };
        let channels = Channels {
            event_kafka: Some(Arc::new(EventKafka::new(
                producer.clone(),
                host,
                Duration::ZERO,
            ))),
            ..Channels::default()
        };
        let output = channels.events("demo").expect("the event topic");
        let mut v = LineValidator::new("demo", imdb.registry().clone()).with_events(output);
        let mut batch = Batch::default();
        v.line(b"|event|proc|1|cpu|||||||WARN|13|x|", &mut batch);
        v.line(br#"|log|1|"WARN"|13|{}|{}|"x"|"#, &mut batch);
        v.line(br#"|log|1|WARN|13|{}|{}|"x"|"#, &mut batch);
        assert!(batch.is_empty());
        assert_eq!(v.pending(DropReason::NoRoute), 0);
        assert_eq!(v.pending(DropReason::BadEvent), 1, "the malformed log line");
        // librdkafka's out-queue also holds its own requests (metadata, connects), so only a
        // lower bound is exact here; tests/e2e/kafka.rs checks what a broker receives.
        assert!(producer.in_flight() >= 2, "{}", producer.in_flight());
    }
}
