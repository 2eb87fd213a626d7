//! Malformed probe output: every bad line is dropped and counted under its reason, every good
//! record arrives, the daemon stays up.

use std::time::Duration;

use gala_e2e::{Samples, Sandbox, DEMO_META};

/// One line of every drop class, interleaved with good records; then the probe idles.
const MIXED_PROBE: &str = r#"#!/bin/sh
long=$(head -c 3000 /dev/zero | tr '\0' 'x')
printf '%s\n' '|demo_conn|c1|10|1.0|'
printf '%s\n' '|no_such_table|a|1|'
printf '%s\n' '|demo_conn|c2|10|'
printf '%s\n' '|demo_conn||10|1.0|'
printf '%s\n' '|demo_conn|c3|ten|1.0|'
printf '%s\n' '|demo_latency|80|GET|3 10 2 100 5 1000 6 4213 950|'
printf '%s\n' '|demo_latency|81|GET|2 10 5 100 3 8 9|'
printf '%s\n' '|aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa|1|'
printf '%s\n' '|event|demo_conn||tx_bytes|'
printf '%s\n' "|demo_conn|$long|10|1.0|"
printf '%s\n' '[WARN] just a log line'
printf '%s\n' '|demo_conn|c4|11|2.0|'
printf '%s\n' '|demo_conn|c5|12|3.0|'
printf '%s\n' '|demo_conn|c6|13|4.0|'
printf '%s\n' '|demo_conn|c1|14|5.0|'
exec sleep 600
"#;

#[test]
fn every_bad_line_is_counted_under_its_reason_and_good_ones_arrive() {
    let mut sandbox = Sandbox::new();
    sandbox.add_custom_probe("demo", MIXED_PROBE, DEMO_META);
    sandbox.write_probes_init("demo {\"state\": \"running\"}\n");
    sandbox.write_config(
        "max_tables_num = 1024; max_records_num = 3; max_metrics_num = 64; record_timeout = 60;",
        "ingress = { max_line_len = 2048; };",
    );
    let daemon = sandbox.start();
    let dropped = |reason: &'static str| {
        move |s: &gala_e2e::Samples| {
            s.value(
                "gala_gopher_daemon_records_dropped_total",
                &[("probe", "demo"), ("reason", reason)],
            )
            .map(str::to_string)
        }
    };
    let s = daemon.wait_for(Duration::from_secs(10), "all lines processed", |s| {
        dropped("table_full")(s).as_deref() == Some("1")
            && s.value("gala_gopher_demo_conn_tx_bytes", &[("conn", "c1")]) == Some("14")
    });
    for reason in [
        "unknown_table",
        "field_count",
        "empty_key",
        "non_numeric",
        "bad_histogram",
        "bad_table_name",
        "bad_event",
        "line_too_long",
        "table_full",
    ] {
        assert_eq!(dropped(reason)(&s).as_deref(), Some("1"), "reason {reason}");
    }
    assert_eq!(
        s.value(
            "gala_gopher_daemon_records_received_total",
            &[("probe", "demo")]
        ),
        Some("5"),
        "c1 twice, c4, c5 and the good histogram"
    );
    // Good records arrive with their latest values; c6 did not fit (max_records_num = 3).
    for (conn, v) in [("c1", "14"), ("c4", "11"), ("c5", "12")] {
        assert_eq!(
            s.value("gala_gopher_demo_conn_tx_bytes", &[("conn", conn)]),
            Some(v)
        );
    }
    assert!(s
        .find("gala_gopher_demo_conn_tx_bytes", &[("conn", "c6")])
        .is_empty());
    assert_eq!(
        s.value("gala_gopher_demo_http_latency_count", &[("port", "80")]),
        Some("6")
    );
    assert!(s
        .find("gala_gopher_demo_http_latency_count", &[("port", "81")])
        .is_empty());
    // Still up and serving.
    daemon.scrape();
    assert!(daemon.terminate().success());
}

/// Writes a million records of a million distinct series as fast as it can, then idles.
const BOMB_PROBE: &str = r#"#!/bin/sh
awk 'BEGIN { for (i = 0; i < 1000000; i++) printf "|bomb|s%d|1|\n", i }'
exec sleep 600
"#;

const BOMB_META: &str = r#"version = "1.0.0";
measurements: ({ table_name: "bomb"; entity_name: "bomb";
  fields: ({ description: "k"; type: "key"; name: "k"; },
           { description: "v"; type: "gauge"; name: "v"; }); });
"#;

/// RSS of process `pid`, bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// A cardinality bomb at the default `imdb.max_records_num`: the table keeps the first
/// 16384 series, every other record is counted as `table_full`, and the daemon's memory grows
/// by at most the documented bound (1 KiB per series the table may hold, debug build
/// included, plus the scrape's buffers).
#[test]
fn a_million_series_are_capped_counted_and_bounded_in_memory() {
    let mut sandbox = Sandbox::new();
    sandbox.add_custom_probe("bomb", BOMB_PROBE, BOMB_META);
    sandbox.write_config(
        "max_tables_num = 1024; max_metrics_num = 64; record_timeout = 600;",
        "",
    );
    let daemon = sandbox.start();
    daemon.scrape();
    let idle = rss(daemon.pid());
    assert_eq!(daemon.put("bomb", r#"{"state": "running"}"#).0, 200);
    let counter = |s: &Samples, name: &str, reason: Option<&str>| -> u64 {
        let mut labels = vec![("probe", "bomb")];
        labels.extend(reason.map(|r| ("reason", r)));
        s.value(name, &labels)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let s = daemon.wait_for(Duration::from_secs(120), "a million records", |s| {
        counter(s, "gala_gopher_daemon_records_received_total", None)
            + counter(
                s,
                "gala_gopher_daemon_records_dropped_total",
                Some("table_full"),
            )
            >= 1_000_000
    });
    assert_eq!(
        counter(&s, "gala_gopher_daemon_records_received_total", None),
        16384
    );
    assert_eq!(
        counter(
            &s,
            "gala_gopher_daemon_records_dropped_total",
            Some("table_full")
        ),
        1_000_000 - 16384
    );
    assert_eq!(s.find("gala_gopher_bomb_v", &[]).len(), 16384);
    let grown = rss(daemon.pid()).saturating_sub(idle);
    eprintln!("RSS grew by {} KiB for 16384 series", grown / 1024);
    assert!(
        grown <= 16384 * 1024 + (8 << 20),
        "RSS grew by {grown} bytes holding 16384 series"
    );
}
