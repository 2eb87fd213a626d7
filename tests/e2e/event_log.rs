//! `event.out_channel = "logs"`: `|event|` lines of a probe become escaped JSON lines in
//! `<logs.event_dir>/gopher_event_0`, de-duplicated per entity over `event.timeout`, counted on
//! `/metrics`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use gala_e2e::{own_meta, Daemon, Samples, Sandbox, IMDB_DEFAULT};
use serde_json::Value;

/// The body of the first event: quotes and backslashes must survive the trip.
const BODY: &str = r#"Entity(obj/1) said "hi" \ C:\tmp\n end"#;

/// Two events for entity `obj/1` (the second within the timeout) and one for `obj/2`.
const PROBE: &str = r#"#!/bin/sh
printf '%s\n' '|event|e2e_ev|obj/1|cpu_usage|42|my"comm|10.0.0.1|abc123|pod1|eth0|WARN|13|Entity(obj/1) said "hi" \ C:\tmp\n end|'
printf '%s\n' '|event|e2e_ev|obj/1|mem_usage|42|c|||||WARN|13|same entity again|'
printf '%s\n' '|event|e2e_ev|obj/2|cpu_usage|||||||ERROR|17|another entity|'
exec sleep 600
"#;

fn sandbox(event_channel: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.add_custom_probe("evprobe", PROBE, &own_meta("evprobe"));
    let conf = sb.write_config(IMDB_DEFAULT, "");
    let text = std::fs::read_to_string(&conf).expect("config");
    let text = text.replace(
        "event = { out_channel = \"logs\";",
        &format!("event = {{ out_channel = \"{event_channel}\";"),
    );
    std::fs::write(&conf, text).expect("config");
    sb
}

fn start_probe(d: &Daemon) {
    let (status, body) = d.put("evprobe", r#"{"state": "running"}"#);
    assert_eq!(status, 200, "{body}");
}

fn event_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn count(s: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.value(name, labels).and_then(|v| v.parse().ok())
}

#[test]
fn events_are_written_escaped_and_deduplicated() {
    let sb = sandbox("logs");
    let d = sb.start();
    start_probe(&d);
    let file = sb.path().join("log/event/gopher_event_0");
    let deadline = Instant::now() + Duration::from_secs(15);
    while event_lines(&file).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "event file incomplete: {:?}",
            event_lines(&file)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let samples = d.wait_for(Duration::from_secs(10), "event counters", |s| {
        let total = |outcome| {
            count(
                s,
                "gala_gopher_daemon_events_total",
                &[("probe", "evprobe"), ("outcome", outcome)],
            )
        };
        total("written") == Some(2.0) && total("suppressed") == Some(1.0)
    });
    assert_eq!(
        count(
            &samples,
            "gala_gopher_daemon_events_total",
            &[("probe", "evprobe"), ("outcome", "dropped")]
        ),
        Some(0.0)
    );
    let lines = event_lines(&file);
    assert_eq!(
        lines.len(),
        2,
        "the repeated event is suppressed: {lines:?}"
    );

    let raw = &lines[0];
    let v: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    // Keys in the original's order.
    let mut last = 0;
    for key in [
        "{\"Timestamp\":",
        ",\"event_id\":",
        ",\"Attributes\":{\"entity_id\":",
        ",\"Resource\":{\"metric\":",
        ",\"labels\":{\"Host\":",
        ",\"PID\":",
        ",\"COMM\":",
        ",\"IP\":",
        ",\"ContainerID\":",
        ",\"POD\":",
        ",\"Device\":",
        ",\"SeverityText\":",
        ",\"SeverityNumber\":13",
        ",\"Body\":",
    ] {
        let at = raw[last..]
            .find(key)
            .unwrap_or_else(|| panic!("{key} after byte {last}: {raw}"));
        last += at + key.len();
    }
    assert!(raw.ends_with("\"}"), "{raw}");

    let host = v["Resource"]["labels"]["Host"].as_str().expect("Host");
    assert!(host.starts_with("e2e-uuid-"), "{host}");
    let eid = format!("{host}_e2e_ev_obj:1");
    let ts = v["Timestamp"].as_u64().expect("Timestamp");
    assert_eq!(ts % 1000, 0, "whole seconds");
    assert_eq!(v["event_id"], format!("{ts}_{eid}"));
    assert_eq!(v["Attributes"]["entity_id"], eid);
    assert_eq!(v["Attributes"]["event_id"], format!("{ts}_{eid}"));
    assert_eq!(v["Attributes"]["event_type"], "sys");
    assert_eq!(v["Resource"]["metric"], "gala_gopher_e2e_ev_cpu_usage");
    let labels = &v["Resource"]["labels"];
    assert_eq!(labels["PID"], "42");
    assert_eq!(labels["COMM"], "my\"comm");
    assert_eq!(labels["IP"], "10.0.0.1");
    assert_eq!(labels["ContainerID"], "abc123");
    assert_eq!(labels["POD"], "pod1");
    assert_eq!(labels["Device"], "eth0");
    assert_eq!(v["SeverityText"], "WARN");
    assert_eq!(v["SeverityNumber"], 13);
    assert_eq!(v["Body"], BODY);

    let other: Value = serde_json::from_str(&lines[1]).expect("JSON");
    assert_eq!(
        other["Attributes"]["entity_id"],
        format!("{host}_e2e_ev_obj:2")
    );
    assert_eq!(other["Resource"]["labels"]["PID"], "");
    assert_eq!(other["SeverityNumber"], 17);
    assert_eq!(other["Body"], "another entity");

    let mode = std::fs::metadata(&file)
        .expect("event file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
    assert!(d.terminate().success());
    assert_eq!(event_lines(&file).len(), 2, "nothing more at shutdown");
}

#[test]
fn without_an_event_channel_events_are_counted_as_no_route() {
    let sb = sandbox("");
    let d = sb.start();
    start_probe(&d);
    d.wait_for(Duration::from_secs(15), "no_route drops", |s| {
        count(
            s,
            "gala_gopher_daemon_records_dropped_total",
            &[("probe", "evprobe"), ("reason", "no_route")],
        ) == Some(3.0)
    });
    assert!(
        std::fs::read_dir(sb.path().join("log/event"))
            .expect("event dir")
            .next()
            .is_none(),
        "no event file"
    );
}
