//! The daemon's Prometheus endpoint, checked with promtool and a real Prometheus server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gala_e2e::{free_port, http_get, Sandbox, DEMO_META, IMDB_DEFAULT};

const DEMO_PROBE: &str = r#"#!/bin/sh
while :; do
  printf '%s\n' '|demo_latency|8080|GET|3 10 2 100 5 1000 6 4213 950|'
  printf '%s\n' '|demo_conn|c1|1000|1.5|'
  printf '%s\n' '|demo_conn|c2"q\x|7|2|'
  sleep 0.2
done
"#;

fn demo_daemon(sandbox: &mut Sandbox) -> gala_e2e::Daemon {
    sandbox.add_custom_probe("demo", DEMO_PROBE, DEMO_META);
    sandbox.write_probes_init("demo {\"state\": \"running\"}\n");
    sandbox.write_config(IMDB_DEFAULT, "");
    sandbox.start()
}

#[test]
fn scrape_has_names_labels_values_help_and_type() {
    let mut sandbox = Sandbox::new();
    let daemon = demo_daemon(&mut sandbox);
    let s = daemon.wait_for(Duration::from_secs(10), "demo samples", |s| {
        !s.find("gala_gopher_demo_conn_tx_bytes", &[]).is_empty()
            && !s
                .find("gala_gopher_demo_http_latency_bucket", &[])
                .is_empty()
    });
    let c1 = s.find("gala_gopher_demo_conn_tx_bytes", &[("conn", "c1")]);
    assert_eq!(c1.len(), 1, "one series per key: {c1:?}");
    assert_eq!(c1[0].value, "1000");
    let machine_id = &c1[0].labels["machine_id"];
    assert!(machine_id.starts_with("e2e-uuid-"), "{machine_id}");
    assert_eq!(
        s.value("gala_gopher_demo_conn_srtt", &[("conn", "c1")]),
        Some("1.5")
    );
    assert_eq!(
        s.value("gala_gopher_demo_conn_tx_bytes", &[("conn", "c2\"q\\x")]),
        Some("7"),
        "quote and backslash in a label value are escaped and parse back"
    );
    let h = [("port", "8080"), ("method", "GET")];
    let bucket = |le| {
        let mut l = h.to_vec();
        l.push(("le", le));
        s.value("gala_gopher_demo_http_latency_bucket", &l)
            .map(str::to_string)
    };
    assert_eq!(bucket("10").as_deref(), Some("2"));
    assert_eq!(bucket("100").as_deref(), Some("5"));
    assert_eq!(bucket("1000").as_deref(), Some("6"));
    assert_eq!(bucket("+Inf").as_deref(), Some("6"));
    assert_eq!(
        s.value("gala_gopher_demo_http_latency_sum", &h),
        Some("4213")
    );
    assert_eq!(
        s.value("gala_gopher_demo_http_latency_count", &h),
        Some("6")
    );
    assert_eq!(
        s.value("gala_gopher_demo_http_latency_max", &h),
        Some("950")
    );

    let text = daemon.scrape();
    for line in [
        "# HELP gala_gopher_demo_conn_tx_bytes bytes sent",
        "# TYPE gala_gopher_demo_conn_tx_bytes counter",
        "# TYPE gala_gopher_demo_conn_srtt gauge",
        "# HELP gala_gopher_demo_http_latency request latency in ms",
        "# TYPE gala_gopher_demo_http_latency histogram",
        "# TYPE gala_gopher_demo_http_latency_max gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in:\n{text}"
        );
    }
    // The daemon's own metrics share the endpoint.
    assert!(text.contains("gala_gopher_daemon_records_received_total{probe=\"demo\"}"));
}

/// Every `gala_gopher_daemon_*` family on `/metrics` has its `# HELP` and `# TYPE` (the
/// names and texts all come from `selfmetrics.rs`); a running probe makes the ingress,
/// supervisor and event families exist.
#[test]
fn every_self_metric_family_has_help_and_type() {
    let mut sandbox = Sandbox::new();
    let daemon = demo_daemon(&mut sandbox);
    // The scrape histogram is recorded after a response is rendered: wait for the second.
    daemon.wait_for(Duration::from_secs(10), "ingress counters", |s| {
        !s.find("gala_gopher_daemon_records_received_total", &[])
            .is_empty()
            && !s
                .find("gala_gopher_daemon_scrape_duration_seconds_count", &[])
                .is_empty()
    });
    let text = daemon.scrape();
    let typed = |family: &str| {
        text.lines().any(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|t| t.strip_prefix(family))
                .is_some_and(|kind| kind.starts_with(' '))
        })
    };
    let mut families: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("gala_gopher_daemon_"))
        .map(|l| {
            let name = &l[..l.find(['{', ' ']).unwrap_or(l.len())];
            // A histogram's samples carry suffixes; its family is the name without them.
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|family| typed(family))
                .unwrap_or(name)
        })
        .collect();
    families.sort_unstable();
    families.dedup();
    for family in &families {
        let help = format!("# HELP {family} ");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&help) && l.len() > help.len()),
            "no HELP for {family}:\n{text}"
        );
        assert!(typed(family), "no TYPE for {family}:\n{text}");
    }
    // Those a daemon running a probe with the default channels always has.
    for family in [
        "gala_gopher_daemon_records_received_total",
        "gala_gopher_daemon_records_dropped_total",
        "gala_gopher_daemon_imdb_series",
        "gala_gopher_daemon_imdb_series_expired_total",
        "gala_gopher_daemon_scrape_duration_seconds",
        "gala_gopher_daemon_probe_restarts_total",
        "gala_gopher_daemon_probe_up",
        "gala_gopher_daemon_events_total",
        "gala_gopher_daemon_events_dropped_total",
        "gala_gopher_daemon_metadata_messages_total",
    ] {
        assert!(families.contains(&family), "{family} missing:\n{text}");
    }
}

/// `promtool check metrics` over `exposition`: panics on a parse error (exit 1; 3 is lint
/// advice only, e.g. counter naming).
fn promtool_check(exposition: &[u8]) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition)
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    let report =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let text = String::from_utf8_lossy(exposition);
    assert_ne!(out.status.code(), Some(1), "promtool: {report}\n{text}");
    assert!(
        !report.contains("error while linting"),
        "promtool: {report}"
    );
}

#[test]
fn promtool_finds_no_parse_error() {
    let mut sandbox = Sandbox::new();
    let daemon = demo_daemon(&mut sandbox);
    daemon.wait_for(Duration::from_secs(10), "demo samples", |s| {
        !s.find("gala_gopher_demo_http_latency_bucket", &[])
            .is_empty()
    });
    promtool_check(&daemon.scrape_bytes());
}

/// Label values with bytes Prometheus refuses (`\xff`, NUL, CR), which a probe copying a
/// process or path name passes on: the exposition stays valid for promtool, the bytes show as
/// U+FFFD, and each case is counted by reason.
#[test]
fn bad_bytes_in_label_values_leave_the_exposition_valid() {
    let mut sandbox = Sandbox::new();
    let probe = r#"#!/bin/sh
while :; do
  printf '|demo_conn|p\377q|1|1|\n'
  printf '|demo_conn|n\000m|2|1|\n'
  printf '|demo_conn|c\rr|3|1|\n'
  printf '|demo_conn|ok|4|1|\n'
  sleep 0.2
done
"#;
    sandbox.add_custom_probe("demo", probe, DEMO_META);
    sandbox.write_probes_init("demo {\"state\": \"running\"}\n");
    sandbox.write_config(IMDB_DEFAULT, "");
    let daemon = sandbox.start();
    let s = daemon.wait_for(Duration::from_secs(10), "the four series", |s| {
        s.find("gala_gopher_demo_conn_tx_bytes", &[]).len() == 4
    });
    let body = daemon.scrape_bytes();
    let text = String::from_utf8_lossy(&body);
    assert!(
        std::str::from_utf8(&body).is_ok(),
        "the exposition is not UTF-8:\n{text}"
    );
    for conn in ["p\u{FFFD}q", "n\u{FFFD}m", "c\u{FFFD}r", "ok"] {
        assert_eq!(
            s.find("gala_gopher_demo_conn_tx_bytes", &[("conn", conn)])
                .len(),
            1,
            "{conn}:\n{text}"
        );
    }
    promtool_check(&body);
    for reason in ["invalid_utf8", "nul", "cr"] {
        let n: f64 = s
            .value(
                "gala_gopher_daemon_label_values_repaired_total",
                &[("probe", "demo"), ("reason", reason)],
            )
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        assert!(n >= 1.0, "{reason}: {n}\n{text}");
    }
}

#[test]
fn real_prometheus_scrapes_the_daemon() {
    let mut sandbox = Sandbox::new();
    let daemon = demo_daemon(&mut sandbox);
    daemon.wait_for(Duration::from_secs(10), "demo samples", |s| {
        !s.find("gala_gopher_demo_conn_tx_bytes", &[]).is_empty()
    });
    let prom_port = free_port();
    let dir = sandbox.path().join("prometheus");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = dir.join("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: gala\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
            sandbox.metrics_port
        ),
    )
    .expect("write prometheus.yml");
    let mut prom = Command::new("prometheus")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package prometheus) must be installed");
    let query = "/api/v1/query?query=gala_gopher_demo_conn_tx_bytes%7Bconn%3D%22c1%22%7D";
    let deadline = Instant::now() + Duration::from_secs(90);
    let result = loop {
        if let Ok((200, body)) = http_get(prom_port, query) {
            let v: serde_json::Value = serde_json::from_str(&body).expect("prometheus json");
            let result = v["data"]["result"].clone();
            if result.as_array().is_some_and(|r| !r.is_empty()) {
                break result;
            }
        }
        if Instant::now() > deadline {
            let _ = prom.kill();
            panic!("prometheus never returned the sample");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = prom.kill();
    let _ = prom.wait();
    let metric = &result[0]["metric"];
    assert_eq!(metric["__name__"], "gala_gopher_demo_conn_tx_bytes");
    assert_eq!(metric["conn"], "c1");
    assert!(metric["machine_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("e2e-uuid-")));
    assert_eq!(result[0]["value"][1], "1000");
    drop(daemon);
}
