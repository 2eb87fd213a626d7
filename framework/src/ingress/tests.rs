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
    let pipeline = Pipeline::new(imdb.clone(), Box::new(ImdbOnly), 1024);
    pipeline
        .read(input, "demo", Default::default())
        .await
        .unwrap();
    assert_eq!(imdb.series(), 3);
}

#[test]
fn without_an_event_output_events_and_log_lines_have_no_route() {
    let imdb = demo_imdb(2, 60_000);
    let mut v = LineValidator::new("demo", imdb.registry().clone());
    let mut batch = Batch::default();
    v.line(br#"|event|proc|1|cpu|||||||WARN|13|x|"#, &mut batch);
    v.line(br#"|log|1|"WARN"|13|{}|{}|"x"|"#, &mut batch);
    assert!(batch.is_empty());
    assert_eq!(v.pending(DropReason::NoRoute), 2);
}

/// A drain waits for the readers spawned, and only for as long as it is allowed to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_waits_for_every_reader_to_store_its_records() {
    use tokio::io::AsyncWriteExt;
    let imdb = demo_imdb(10, 60_000);
    let pipeline = Arc::new(Pipeline::new(imdb.clone(), Box::new(ImdbOnly), 1024));
    assert!(pipeline.drain(Duration::ZERO).await, "no reader yet");
    let (mut probe, stdout) = tokio::io::duplex(1024);
    pipeline.spawn(stdout, "demo", Default::default());
    probe.write_all(b"|demo_conn|a|1|1|\n").await.unwrap();
    assert!(
        !pipeline.drain(Duration::from_millis(100)).await,
        "the probe's stdout is still open"
    );
    probe.write_all(b"|demo_conn|b|1|1|").await.unwrap();
    drop(probe);
    assert!(pipeline.drain(Duration::from_secs(10)).await);
    assert_eq!(
        imdb.series(),
        2,
        "both records stored when the drain returns"
    );
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
