//! The daemon's Prometheus endpoint, checked with promtool and a real Prometheus server.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gala_e2e::{free_port, http_get, KillOnDrop, Sandbox, DEMO_META, IMDB_DEFAULT};

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
    // The histogram adds up the reports so far (k of them, each `3 10 2 100 5 1000 6 4213
    // 950`); `_max` is the latest report's.
    let h = [("port", "8080"), ("method", "GET")];
    let num = |name: &str, le: Option<&str>| -> u64 {
        let mut l = h.to_vec();
        l.extend(le.map(|le| ("le", le)));
        let v = s.value(name, &l).unwrap_or_else(|| panic!("{name} {le:?}"));
        v.parse().unwrap_or_else(|_| panic!("{name} {le:?}: {v}"))
    };
    let k = num("gala_gopher_demo_http_latency_count", None) / 6;
    assert!(k >= 1);
    let bucket = "gala_gopher_demo_http_latency_bucket";
    assert_eq!(num(bucket, Some("10")), 2 * k);
    assert_eq!(num(bucket, Some("100")), 5 * k);
    assert_eq!(num(bucket, Some("1000")), 6 * k);
    assert_eq!(num(bucket, Some("+Inf")), 6 * k);
    assert_eq!(num("gala_gopher_demo_http_latency_count", None), 6 * k);
    assert_eq!(num("gala_gopher_demo_http_latency_sum", None), 4213 * k);
    assert_eq!(num("gala_gopher_demo_http_latency_max", None), 950);

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

/// A real Prometheus server scraping the daemon every second; killed on drop.
struct Prometheus {
    port: u16,
    _child: KillOnDrop,
}

impl Prometheus {
    fn start(sandbox: &Sandbox) -> Self {
        let port = free_port();
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
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus (Debian package prometheus) must be installed");
        Prometheus {
            port,
            _child: KillOnDrop(child),
        }
    }

    /// The `data.result` of an instant query, once it is not empty (panics after 90 s).
    fn wait_result(&self, query: &str) -> serde_json::Value {
        self.wait_result_where(query, |_| true)
    }

    /// The `data.result` of an instant query, once it is not empty and `ready` accepts its
    /// first element (panics after 90 s).
    fn wait_result_where(
        &self,
        query: &str,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let path = format!("/api/v1/query?query={}", url_encode(query));
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut last = String::new();
        loop {
            if let Ok((status, body)) = http_get(self.port, &path) {
                if status == 200 {
                    let v: serde_json::Value =
                        serde_json::from_str(&body).expect("prometheus json");
                    let result = v["data"]["result"].clone();
                    if result.as_array().is_some_and(|r| !r.is_empty()) && ready(&result[0]) {
                        return result;
                    }
                }
                last = body;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never answered {query}: {last}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Percent-encodes a query parameter.
fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn real_prometheus_scrapes_the_daemon() {
    let mut sandbox = Sandbox::new();
    let daemon = demo_daemon(&mut sandbox);
    daemon.wait_for(Duration::from_secs(10), "demo samples", |s| {
        !s.find("gala_gopher_demo_conn_tx_bytes", &[]).is_empty()
    });
    let prom = Prometheus::start(&sandbox);
    let result = prom.wait_result("gala_gopher_demo_conn_tx_bytes{conn=\"c1\"}");
    let metric = &result[0]["metric"];
    assert_eq!(metric["__name__"], "gala_gopher_demo_conn_tx_bytes");
    assert_eq!(metric["conn"], "c1");
    assert!(metric["machine_id"]
        .as_str()
        .is_some_and(|m| m.starts_with("e2e-uuid-")));
    assert_eq!(result[0]["value"][1], "1000");
    drop(daemon);
}

/// A probe reporting, like the original's, each period's observations only: 10 per period,
/// 2 of them ≤ 10, 3 in (10, 100], 5 in (100, 1000].
const HIST_PROBE: &str = r#"#!/bin/sh
while :; do
  printf '%s\n' '|e2e_hist|a|3 10 2 100 5 1000 10 4321 900|'
  sleep 0.2
done
"#;

const HIST_META: &str = r#"
version = "1.0.0";
measurements: ({ table_name: "e2e_hist"; entity_name: "e2e_hist";
  fields: (
    { description: "k"; type: "key"; name: "k"; },
    { description: "delay in us"; type: "histogram"; name: "delay"; }
  ); });
"#;

/// Prometheus itself computes quantiles from the daemon's histogram: the counters grow
/// with every report (the per-period counts of the probe would give a zero rate and no
/// quantile), `_count` never decreases, and the exposition passes promtool.
#[test]
fn prometheus_computes_quantiles_from_per_period_histograms() {
    let mut sandbox = Sandbox::new();
    sandbox.add_custom_probe("hist", HIST_PROBE, HIST_META);
    sandbox.write_probes_init("hist {\"state\": \"running\"}\n");
    sandbox.write_config(IMDB_DEFAULT, "");
    let daemon = sandbox.start();
    daemon.wait_for(Duration::from_secs(10), "histogram samples", |s| {
        !s.find("gala_gopher_e2e_hist_delay_bucket", &[]).is_empty()
    });
    promtool_check(&daemon.scrape_bytes());
    let prom = Prometheus::start(&sandbox);
    // Enough scrapes for a rate: `_count` over the last 10 s holds at least five samples.
    let samples = prom.wait_result_where("gala_gopher_e2e_hist_delay_count[10s]", |s| {
        s["values"].as_array().is_some_and(|v| v.len() >= 5)
    });
    let counts: Vec<f64> = samples[0]["values"]
        .as_array()
        .expect("a range vector")
        .iter()
        .map(|v| {
            v[1].as_str()
                .and_then(|x| x.parse().ok())
                .expect("a number")
        })
        .collect();
    assert!(counts.len() >= 5, "{counts:?}");
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]) && counts[0] < counts[counts.len() - 1],
        "_count never decreases and grows: {counts:?}"
    );
    let quantile = |q: f64| -> f64 {
        let r = prom.wait_result(&format!(
            "histogram_quantile({q}, rate(gala_gopher_e2e_hist_delay_bucket[10s]))"
        ));
        r[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("quantile {q}: {r}"))
    };
    // The median is the 5th of 10 observations: the last of bucket le="100"; the 90th
    // percentile interpolates 4/5 of the way into (100, 1000].
    let median = quantile(0.5);
    assert!((median - 100.0).abs() < 1e-6, "median {median}");
    let p90 = quantile(0.9);
    assert!((p90 - 820.0).abs() < 1e-6, "p90 {p90}");
    let resets = prom.wait_result("resets(gala_gopher_e2e_hist_delay_count[1m])");
    assert_eq!(resets[0]["value"][1], "0", "{resets}");
    drop(daemon);
}
