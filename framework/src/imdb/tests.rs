use super::*;
use crate::testutil::{demo_imdb, store, store_at};

fn conn_values(imdb: &Imdb, now_ms: u64) -> Vec<String> {
    let id = imdb.registry().lookup(b"demo_conn").unwrap();
    let t = imdb.lock(id);
    let mut out: Vec<String> = t
        .live(now_ms)
        .map(|r| {
            let mut v = Vec::new();
            r.values(&mut v);
            v.iter()
                .map(|x| String::from_utf8_lossy(x))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_new_report_replaces_the_series_by_key() {
    let imdb = demo_imdb(10, 60_000);
    store(&imdb, "|demo_conn|c1|1|1.0|", 0).unwrap();
    store(&imdb, "|demo_conn|c2|5|1.0|", 0).unwrap();
    store(&imdb, "|demo_conn|c1|2|3.0|", 10).unwrap();
    assert_eq!(conn_values(&imdb, 0), vec!["c1,2,3.0", "c2,5,1.0"]);
    assert_eq!(imdb.series(), 2);
}

#[test]
fn a_full_table_refuses_new_series_but_updates_known_ones() {
    let imdb = demo_imdb(2, 60_000);
    store(&imdb, "|demo_conn|a|1|1|", 0).unwrap();
    store(&imdb, "|demo_conn|b|1|1|", 0).unwrap();
    assert_eq!(
        store(&imdb, "|demo_conn|c|1|1|", 0),
        Err(UpsertError::TableFull)
    );
    store(&imdb, "|demo_conn|a|9|1|", 0).unwrap();
    assert_eq!(conn_values(&imdb, 0), vec!["a,9,1", "b,1,1"]);
}

#[test]
fn stale_series_are_hidden_then_swept() {
    let imdb = demo_imdb(10, 1_000);
    store(&imdb, "|demo_conn|old|1|1|", 0).unwrap();
    store(&imdb, "|demo_conn|new|1|1|", 900).unwrap();
    assert_eq!(conn_values(&imdb, 1_500), vec!["new,1,1"]);
    assert_eq!(imdb.sweep(1_500), 1);
    assert_eq!(imdb.series(), 1);
    assert_eq!(imdb.sweep(10_000), 1);
    assert_eq!(imdb.series(), 0);
}

#[test]
fn a_series_lives_two_report_periods_when_that_is_longer_than_record_timeout() {
    let imdb = demo_imdb(10, 1_000);
    let slow = Stamp {
        now_ms: 0,
        hold_ms: 10_000,
    };
    store_at(&imdb, "|demo_conn|slow|1|1|", slow).unwrap();
    store_at(
        &imdb,
        "|demo_conn|short|1|1|",
        Stamp {
            now_ms: 0,
            hold_ms: 500,
        },
    )
    .unwrap();
    assert_eq!(conn_values(&imdb, 5_000), vec!["slow,1,1"]);
    assert_eq!(imdb.sweep(5_000), 1);
    assert_eq!(conn_values(&imdb, 10_000), vec!["slow,1,1"]);
    assert_eq!(imdb.sweep(10_001), 1);
    assert_eq!(imdb.series(), 0);
}

#[test]
fn sequence_numbers_mark_fresh_updates() {
    let imdb = demo_imdb(10, 60_000);
    let id = imdb.registry().lookup(b"demo_conn").unwrap();
    store(&imdb, "|demo_conn|a|1|1|", 0).unwrap();
    let mark = imdb.lock(id).next_seq();
    store(&imdb, "|demo_conn|b|1|1|", 0).unwrap();
    let t = imdb.lock(id);
    let fresh: Vec<u64> = t
        .live(0)
        .filter(|r| r.seq() >= mark)
        .map(Record::seq)
        .collect();
    assert_eq!(fresh, vec![mark]);
}

fn latency_count(imdb: &Imdb, port: &str) -> Option<(u64, running::RunningSum)> {
    let id = imdb.registry().lookup(b"demo_latency").unwrap();
    let t = imdb.lock(id);
    let rec = t.live(0).find(|r| r.line().starts_with(port.as_bytes()))?;
    let h = t.running(rec, 0).expect("one histogram field");
    assert!(t.running(rec, 1).is_none());
    Some((h.count(), h.sum()))
}

#[test]
fn each_stored_report_adds_to_the_running_histogram_once() {
    let imdb = demo_imdb(2, 1_000);
    store(&imdb, "|demo_latency|80|GET|1 10 2 7 5|", 0).unwrap();
    store(&imdb, "|demo_latency|80|GET|1 10 3 8 5|", 0).unwrap();
    store(&imdb, "|demo_latency|81|GET|1 10 1 1 1|", 0).unwrap();
    assert_eq!(
        store(&imdb, "|demo_latency|82|GET|1 10 1 1 1|", 0),
        Err(UpsertError::TableFull)
    );
    assert_eq!(
        latency_count(&imdb, "80"),
        Some((5, running::RunningSum::Int(15)))
    );
    assert_eq!(
        latency_count(&imdb, "80"),
        Some((5, running::RunningSum::Int(15))),
        "reading adds nothing"
    );
    assert_eq!(
        latency_count(&imdb, "81"),
        Some((1, running::RunningSum::Int(1)))
    );
    // Series 80 ages out and goes with its totals; when it comes back it starts from zero,
    // in the slot it left (81 keeps its own).
    store(&imdb, "|demo_latency|81|GET|1 10 1 1 1|", 900).unwrap();
    assert_eq!(imdb.sweep(1_500), 1);
    store(&imdb, "|demo_latency|80|GET|1 10 4 4 4|", 1_500).unwrap();
    assert_eq!(
        latency_count(&imdb, "80"),
        Some((4, running::RunningSum::Int(4)))
    );
    assert_eq!(
        latency_count(&imdb, "81"),
        Some((2, running::RunningSum::Int(2)))
    );
}

#[test]
fn records_of_tables_without_histograms_stay_one_cache_line() {
    assert_eq!(std::mem::size_of::<Record>(), 64);
}
