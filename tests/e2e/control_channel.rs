//! The control channel end to end: a real probe process receives its configuration on fd 3
//! in both encodings, a PUT that changes params or snoopers reaches it within a second, and a
//! process matching a `proc_name` snooper reaches it within one resolution period. The probe
//! (`ipc-echo-probe`) reports what it received as records, read back through `/metrics`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gala_e2e::{Daemon, Sample, Samples, Sandbox};

/// A sandbox where built-in `tcp` and custom `echo_json` are both the echo probe.
fn sandbox() -> Sandbox {
    Sandbox::with_echo_probe("")
}

/// The echo record of `probe`, once `pred` accepts it.
fn echo(
    d: &Daemon,
    probe: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&Sample) -> bool,
) -> Sample {
    let s = d.wait_for(within, what, |s: &Samples| {
        s.find("gala_gopher_ipc_echo_seq", &[("probe", probe)])
            .first()
            .is_some_and(|x| pred(x))
    });
    s.find("gala_gopher_ipc_echo_seq", &[("probe", probe)])[0].clone()
}

fn report_period(d: &Daemon, probe: &str) -> Option<String> {
    Samples::parse(&d.scrape())
        .value("gala_gopher_ipc_echo_report_period", &[("probe", probe)])
        .map(str::to_string)
}

#[test]
fn both_encodings_deliver_the_config_and_its_changes() {
    let sb = sandbox();
    let d = sb.start();
    let (status, body) = d.put(
        "tcp",
        r#"{"cmd": {"probe": ["tcp_abnormal", "tcp_rtt"]}, "blacklist": {}, "state": "running"}"#,
    );
    assert_eq!(status, 200, "{body}");
    let first = echo(&d, "tcp", Duration::from_secs(10), "tcp config", |_| true);
    assert_eq!(first.labels["encoding"], "proto");
    assert_eq!(first.labels["mode"], "blacklist");
    assert_eq!(first.labels["subitems"], "tcp_abnormal,tcp_rtt");
    assert_eq!(first.value, "1", "first message");
    assert_eq!(report_period(&d, "tcp").as_deref(), Some("60"));

    let t = Instant::now();
    assert_eq!(d.put("tcp", r#"{"params": {"report_period": 30}}"#).0, 200);
    echo(
        &d,
        "tcp",
        Duration::from_secs(1),
        "params change within 1 s",
        |s| s.value == "2",
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(report_period(&d, "tcp").as_deref(), Some("30"));
    let flags = Samples::parse(&d.scrape())
        .value("gala_gopher_ipc_echo_flags", &[("probe", "tcp")])
        .map(str::to_string);
    assert_eq!(flags.as_deref(), Some("2"), "PARAMS_CHG only");

    assert_eq!(d.put("echo_json", r#"{"state": "running"}"#).0, 200);
    let json = echo(
        &d,
        "echo_json",
        Duration::from_secs(10),
        "json config",
        |_| true,
    );
    assert_eq!(json.labels["encoding"], "json");
    assert_eq!(json.labels["mode"], "whitelist");
    let t = Instant::now();
    assert_eq!(
        d.put("echo_json", r#"{"params": {"report_period": 45}}"#).0,
        200
    );
    echo(
        &d,
        "echo_json",
        Duration::from_secs(1),
        "json params change within 1 s",
        |s| s.value == "2",
    );
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(report_period(&d, "echo_json").as_deref(), Some("45"));
}

#[test]
fn snoopers_follow_processes_as_they_come_and_go() {
    let sb = sandbox();
    let d = sb.start();
    let body = r#"{"cmd": {"probe": ["tcp_abnormal"]}, "snoopers": {"proc_name": [{"comm": "^sleep$", "cmdline": "4242.5"}]}, "state": "running"}"#;
    assert_eq!(d.put("tcp", body).0, 200);
    echo(&d, "tcp", Duration::from_secs(10), "no process yet", |s| {
        s.labels["pids"] == "none"
    });

    let mut sleeper = Command::new("sleep")
        .arg("4242.5")
        .stdin(Stdio::null())
        .spawn()
        .expect("sleep");
    let pid = sleeper.id().to_string();
    // The next scan (at most one 1 s period away) finds it; the slack covers the probe's
    // output reaching /metrics and this test's 100 ms polling.
    let t = Instant::now();
    let seen = echo(&d, "tcp", Duration::from_secs(3), "new process", |s| {
        s.labels["pids"] == pid
    });
    assert_eq!(seen.labels["mode"], "whitelist");
    assert!(
        t.elapsed() < Duration::from_millis(1000 + 500),
        "took {:?}",
        t.elapsed()
    );

    let _ = sleeper.kill();
    let _ = sleeper.wait();
    echo(&d, "tcp", Duration::from_secs(3), "process gone", |s| {
        s.labels["pids"] == "none"
    });

    // A PUT that changes the snoopers reaches the probe at once.
    let t = Instant::now();
    let own = std::process::id().to_string();
    assert_eq!(
        d.put("tcp", &format!(r#"{{"snoopers": {{"proc_id": [{own}]}}}}"#))
            .0,
        200
    );
    echo(&d, "tcp", Duration::from_secs(1), "proc_id snooper", |s| {
        s.labels["pids"] == own
    });
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
}
