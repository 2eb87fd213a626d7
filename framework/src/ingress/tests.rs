use super::*;
use crate::testutil::demo_imdb;

#[test]
fn good_records_are_stored_and_bad_ones_counted_by_reason() {
    let imdb = demo_imdb(2, 60_000);
    let mut v = LineValidator::new("demo", imdb.registry().clone());
    let mut w = BatchWriter::new("demo", imdb.clone());
    let lines: &[(&str, Option<DropReason>)] = &[
        ("|demo_conn|c1|1|1|", None),
        ("|demo_conn|c1|2|1||after-an-empty-surplus-value", None),
        ("|demo_conn|c1|2|1|surplus|", Some(DropReason::FieldCount)),
        ("|nope|1|", Some(DropReason::UnknownTable)),
        ("|demo_conn|c2|1|", Some(DropReason::FieldCount)),
        ("|demo_conn||1|1|", Some(DropReason::EmptyKey)),
        ("|demo_conn|c3|x|1|", Some(DropReason::NonNumeric)),
        (
            "|demo_latency|1|GET|2 10 5 20 4 1 1|",
            Some(DropReason::BadHistogram),
        ),
        ("||1|", Some(DropReason::BadTableName)),
        ("|event|a||m|", Some(DropReason::BadEvent)),
        ("|demo_conn|c4|1|1", Some(DropReason::Unterminated)),
        ("[ERROR] a log line", None),
        ("", None),
    ];
    let mut batch = Batch::default();
    for (line, _) in lines {
        v.line(line.as_bytes(), &mut batch);
    }
    assert_eq!(
        batch.len(),
        4,
        "two good c1 reports and two with bad value types"
    );
    w.write(&mut batch);
    for r in DropReason::ALL {
        let want = lines.iter().filter(|(_, d)| *d == Some(r)).count() as u64;
        assert_eq!(v.pending(r) + w.pending(r), want, "{r:?}");
    }
    assert_eq!(w.stored(), 2);
    assert_eq!(imdb.series(), 1);
}

#[test]
fn a_full_table_refuses_new_series_in_the_writer() {
    let imdb = demo_imdb(2, 60_000);
    let mut v = LineValidator::new("demo", imdb.registry().clone());
    let mut w = BatchWriter::new("demo", imdb.clone());
    let mut batch = Batch::default();
    for line in [
        "|demo_conn|a|1|1|",
        "|demo_conn|b|1|1|",
        "|demo_conn|c|1|1|",
        "|demo_conn|a|2|1|",
    ] {
        v.line(line.as_bytes(), &mut batch);
    }
    w.write(&mut batch);
    assert_eq!(w.stored(), 3);
    assert_eq!(imdb.series(), 2);
}

#[test]
fn events_go_to_the_event_log_when_there_is_one() {
    use crate::egress::event::{EventLogConfig, EventSink};
    let imdb = demo_imdb(2, 60_000);
    let tmp = tempfile::tempdir().unwrap();
    let config = EventLogConfig::new(tmp.path().into(), "m-1".into(), Duration::from_secs(600));
    let (sink, writer) = EventSink::start(config).unwrap();
    let mut with =
        LineValidator::new("demo", imdb.registry().clone()).with_events(sink.for_probe("demo"));
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
fn level_prefixes_are_recognised() {
    assert_eq!(
        split_level(b"[WARN] x"),
        (Some(tracing::Level::WARN), &b"x"[..])
    );
    assert_eq!(
        split_level(b"[ERROR]y"),
        (Some(tracing::Level::ERROR), &b"y"[..])
    );
    assert_eq!(split_level(b"plain"), (None, &b"plain"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_a_stream_to_its_end_with_a_final_unterminated_line() {
    let imdb = demo_imdb(10, 60_000);
    let input: &[u8] = b"|demo_conn|a|1|1|\n|demo_conn|b|1|1|\n|demo_conn|c|1|1|";
    read_probe_output(
        input,
        "demo",
        imdb.clone(),
        Default::default(),
        None,
        &Default::default(),
        1024,
    )
    .await
    .unwrap();
    assert_eq!(imdb.series(), 3);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
    /// Arbitrary bytes never panic ingress and never store more than the limit.
    #[test]
    fn arbitrary_lines_never_panic(lines in proptest::collection::vec(
        proptest::collection::vec(proptest::sample::select(
            b"|demo_conn|latency c1 0123456789.eE-+(null)x\r".to_vec()), 0..40), 0..30)) {
        let imdb = demo_imdb(4, 60_000);
        let mut v = LineValidator::new("fuzz", imdb.registry().clone());
        let mut w = BatchWriter::new("fuzz", imdb.clone());
        let mut batch = Batch::default();
        for l in &lines {
            v.line(l, &mut batch);
        }
        w.write(&mut batch);
        proptest::prop_assert!(imdb.series() <= 8);
    }
}

#[test]
fn events_and_log_lines_go_to_kafka_when_the_event_channel_is_kafka() {
    use crate::config::KafkaConfig;
    use crate::egress::kafka::KafkaProducer;
    use crate::egress::kafka_records::EventKafka;
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
    let sink = Arc::new(EventKafka::new(producer.clone(), host, Duration::ZERO));
    let mut v = LineValidator::new("demo", imdb.registry().clone())
        .with_kafka_events(sink.for_probe("demo"));
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
