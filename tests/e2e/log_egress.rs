//! `metric.out_channel = "json"` and `"logs"`: each report written once to
//! `<metric_dir>/gopher_metrics_<n>`, the daemon serving no HTTP.

use std::time::{Duration, Instant};

use gala_e2e::{http_get, Sandbox, DEMO_META, IMDB_DEFAULT};

const PROBE: &str = r#"#!/bin/sh
printf '%s\n' '|demo_conn|c"1|10|1.5|'
printf '%s\n' '|demo_latency|80|GET|2 10 1 100 4 300 90|'
exec sleep 600
"#;

/// Starts the daemon with `channel` and returns the metric file's content once it holds
/// both records.
fn run(channel: &str) -> String {
    let mut sandbox = Sandbox::new();
    sandbox.add_custom_probe("demo", PROBE, DEMO_META);
    sandbox.write_probes_init("demo {\"state\": \"running\"}\n");
    let conf = sandbox.write_config(IMDB_DEFAULT, "");
    let text = std::fs::read_to_string(&conf).expect("config");
    std::fs::write(
        &conf,
        text.replace(
            "out_channel = \"web_server\"",
            &format!("out_channel = \"{channel}\""),
        ),
    )
    .expect("config");
    let mut daemon = sandbox.command().spawn().expect("start");
    let file = sandbox.path().join("log/metrics/gopher_metrics_0");
    let deadline = Instant::now() + Duration::from_secs(15);
    let content = loop {
        let content = std::fs::read_to_string(&file).unwrap_or_default();
        if content.contains("demo_conn") && content.contains("demo_http") {
            break content;
        }
        if Instant::now() > deadline {
            let _ = daemon.kill();
            panic!("{channel}: metric file incomplete: {content:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        http_get(sandbox.metrics_port, "/metrics").is_err(),
        "no HTTP server in {channel} mode"
    );
    // Reports are written once: two more seconds add nothing.
    std::thread::sleep(Duration::from_millis(2200));
    let later = std::fs::read_to_string(&file).expect("metric file");
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert_eq!(content, later, "{channel}: a report was written twice");
    content
}

#[test]
fn json_channel_writes_escaped_json_lines_with_counters() {
    let content = run("json");
    let lines: Vec<serde_json::Value> = content
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).expect("every line is valid JSON"))
        .collect();
    let conn = lines
        .iter()
        .find(|v| v["table_name"] == "demo_conn")
        .expect("demo_conn record");
    assert_eq!(conn["entity_name"], "demo_conn");
    assert_eq!(conn["labels"]["conn"], "c\"1");
    assert!(conn["labels"]["machine_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("e2e-uuid-")));
    assert_eq!(conn["metrics"]["tx_bytes"], "10", "counters are included");
    assert_eq!(conn["metrics"]["srtt"], "1.5");
    let lat = lines
        .iter()
        .find(|v| v["table_name"] == "demo_latency")
        .expect("demo_latency record");
    assert_eq!(lat["histos"]["latency"]["count"], 4);
    assert_eq!(lat["histos"]["latency"]["10"], 1);
}

#[test]
fn logs_channel_writes_exposition_lines() {
    let content = run("logs");
    assert!(
        content.contains("gala_gopher_demo_conn_tx_bytes{conn=\"c\\\"1\",machine_id=\"e2e-uuid-"),
        "{content}"
    );
    assert!(
        content.contains("gala_gopher_demo_http_latency_count{port=\"80\",method=\"GET\""),
        "{content}"
    );
}
