//! `meta.out_channel = "logs"`: the daemon writes one metadata line per loaded table to
//! `<logs.meta_dir>/gopher_meta.log` at start (docs/reference/meta-and-records.md §6, byte for byte but
//! escaped), again on SIGHUP, and counts them on `/metrics`.

use std::path::Path;
use std::time::{Duration, Instant};

use gala_e2e::{Daemon, Samples, Sandbox, DEMO_META, IMDB_DEFAULT};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A process-level table of entity `proc` and a container table, with a version that needs
/// escaping.
const PROC_META: &str = r#"
version = "2.0 \"beta\" \\ x";
measurements: (
    { table_name: "e2e_proc"; entity_name: "proc";
      fields: (
        { description: "pid"; type: "key"; name: "tgid"; },
        { description: "a \"quoted\" \\ description"; type: "label"; name: "cwd"; },
        { description: "cpu"; type: "counter"; name: "utime"; },
        { description: "lat"; type: "histogram"; name: "lat"; },
      );
    },
    { table_name: "e2e_container"; entity_name: "container";
      fields: (
        { description: "id"; type: "key"; name: "container_id"; },
        { description: "mem"; type: "gauge"; name: "mem_usage"; },
      );
    },
);
"#;

/// The expected lines after their `{"timestamp": <ms>, ` prefix, in load order (file name
/// order: demo.meta, then proc.meta).
const EXPECTED: [&str; 4] = [
    r#""meta_name": "demo_latency", "entity_name": "demo_http", "version": "1.0.0", "keys": ["machine_id", "port"], "labels": ["hostname", "method"], "metrics": []}"#,
    r#""meta_name": "demo_conn", "entity_name": "demo_conn", "version": "1.0.0", "keys": ["machine_id", "conn"], "labels": ["hostname"], "metrics": ["tx_bytes", "srtt"]}"#,
    r#""meta_name": "e2e_proc", "entity_name": "proc", "version": "2.0 \"beta\" \\ x", "keys": ["machine_id", "tgid"], "labels": ["hostname", "cwd", "comm", "container_id", "container_name", "container_image", "pod_id", "pod", "pod_namespace", "cmdline", "start_time"], "metrics": ["utime"]}"#,
    r#""meta_name": "e2e_container", "entity_name": "container", "version": "2.0 \"beta\" \\ x", "keys": ["machine_id", "container_id"], "labels": ["hostname", "container_name", "container_image", "pod_id", "pod", "pod_namespace"], "metrics": ["mem_usage"]}"#,
];

/// Wall-clock milliseconds, as the daemon stamps the messages.
fn clock_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn sandbox(meta_channel: &str) -> Sandbox {
    sandbox_with(meta_channel, "")
}

fn sandbox_with(meta_channel: &str, extra: &str) -> Sandbox {
    let sb = Sandbox::new();
    sb.write_meta("demo.meta", DEMO_META);
    sb.write_meta("proc.meta", PROC_META);
    let conf = sb.write_config(IMDB_DEFAULT, extra);
    let text = std::fs::read_to_string(&conf).expect("config");
    let text = text.replace(
        "meta = { out_channel = \"logs\";",
        &format!("meta = {{ out_channel = \"{meta_channel}\";"),
    );
    std::fs::write(&conf, text).expect("config");
    sb
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn wait_lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let l = lines(path);
        if l.len() >= n {
            return l;
        }
        assert!(Instant::now() < deadline, "meta log incomplete: {l:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Checks one round of lines: exact text after the timestamp, which lies in `[from, to]`.
fn check_round(round: &[String], from: u64, to: u64) {
    assert_eq!(round.len(), EXPECTED.len(), "{round:?}");
    for (line, want) in round.iter().zip(EXPECTED) {
        let rest = line
            .strip_prefix("{\"timestamp\": ")
            .unwrap_or_else(|| panic!("no timestamp first: {line}"));
        let (ts, rest) = rest.split_once(", ").expect("timestamp, rest");
        let ts: u64 = ts.parse().expect("timestamp in ms");
        assert!(
            (from..=to).contains(&ts),
            "timestamp {ts} not in {from}..={to}"
        );
        assert_eq!(rest, want);
        let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
        assert_eq!(v["keys"][0], "machine_id");
    }
}

fn counter(d: &Daemon) -> Option<f64> {
    let s = Samples::parse(&d.scrape());
    s.value(
        "gala_gopher_daemon_metadata_messages_total",
        &[("channel", "logs"), ("outcome", "written")],
    )
    .and_then(|v| v.parse().ok())
}

#[test]
fn one_exact_line_per_table_at_start_and_on_sighup() {
    let sb = sandbox("logs");
    let file = sb.path().join("log/meta/gopher_meta.log");
    let before = clock_ms();
    let d = sb.start();
    let first = wait_lines(&file, 4);
    check_round(&first, before, clock_ms());
    d.wait_for(Duration::from_secs(10), "metadata counter", |s| {
        s.value(
            "gala_gopher_daemon_metadata_messages_total",
            &[("channel", "logs"), ("outcome", "written")],
        ) == Some("4")
    });

    // SIGHUP re-sends at once, and the daemon keeps running.
    let before = clock_ms();
    kill(Pid::from_raw(d.pid() as i32), Signal::SIGHUP).expect("SIGHUP");
    let all = wait_lines(&file, 8);
    assert_eq!(all.len(), 8, "{all:?}");
    assert_eq!(all[..4], first[..]);
    check_round(&all[4..], before, clock_ms());
    assert_eq!(counter(&d), Some(8.0));
    let status = d.terminate();
    assert!(status.success(), "{status}");
}

#[test]
fn off_channel_writes_nothing() {
    let sb = sandbox("");
    let d = sb.start();
    std::thread::sleep(Duration::from_millis(500));
    assert!(!sb.path().join("log/meta/gopher_meta.log").exists());
    assert_eq!(counter(&d), None);
}

#[test]
fn kafka_channel_without_a_broker_neither_blocks_nor_writes_the_log() {
    // Nothing listens on port 1: the messages wait in the producer's queue.
    let sb = sandbox_with("kafka", r#"kafka = { kafka_broker = "127.0.0.1:1"; };"#);
    let d = sb.start();
    d.wait_for(
        Duration::from_secs(10),
        "metadata handed to the producer",
        |s| {
            s.value(
                "gala_gopher_daemon_metadata_messages_total",
                &[("channel", "kafka"), ("outcome", "written")],
            ) == Some("4")
        },
    );
    assert!(!sb.path().join("log/meta/gopher_meta.log").exists());
    let start = Instant::now();
    let status = d.terminate();
    assert!(status.success(), "{status}");
    // At most the publisher's flush timeout (5 s) plus the probes' grace.
    assert!(
        start.elapsed() < Duration::from_secs(12),
        "{:?}",
        start.elapsed()
    );
}
