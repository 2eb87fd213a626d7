//! Series aging, non-destructive scrapes, start-up errors and probe clean-up at exit.

use std::time::{Duration, Instant};

use gala_e2e::{process_alive, process_exists, Samples, Sandbox, DEMO_META, IMDB_DEFAULT};

/// The demo samples of a scrape, sorted, without the daemon's own metrics.
fn demo_samples(s: &Samples) -> Vec<String> {
    let mut v: Vec<String> =
        s.0.iter()
            .filter(|x| x.name.starts_with("gala_gopher_demo_"))
            .map(|x| format!("{} {:?} {}", x.name, x.labels, x.value))
            .collect();
    v.sort();
    v
}

/// A series lives for `record_timeout` or two of its probe's report periods, whichever is
/// longer: with `record_timeout` 2 s and `report_period` 5 s, a series reported once is still
/// there after 5 s (the original dropped it after 2 s, so a series reported every period
/// flickered) and gone after 10 s, while one reported all along stays.
#[test]
fn a_series_that_stops_disappears_after_two_report_periods_and_scrapes_repeat() {
    let mut sandbox = Sandbox::new();
    // "gone" is reported once, "alive" every 200 ms.
    let probe = "#!/bin/sh\nprintf '%s\\n' '|demo_conn|gone|1|1|'\nwhile :; do printf '%s\\n' '|demo_conn|alive|2|2|'; sleep 0.2; done\n";
    sandbox.add_custom_probe("demo", probe, DEMO_META);
    sandbox
        .write_probes_init("demo {\"state\": \"running\", \"params\": {\"report_period\": 5}}\n");
    sandbox.write_config(
        "max_tables_num = 1024; max_records_num = 1024; max_metrics_num = 64; record_timeout = 2;",
        "",
    );
    let daemon = sandbox.start();
    let s = daemon.wait_for(Duration::from_secs(10), "both series", |s| {
        !s.find("gala_gopher_demo_conn_tx_bytes", &[("conn", "gone")])
            .is_empty()
            && !s
                .find("gala_gopher_demo_conn_tx_bytes", &[("conn", "alive")])
                .is_empty()
    });
    let seen = Instant::now();
    // Two scrapes in a row return the same series: scraping consumes nothing.
    let again = Samples::parse(&daemon.scrape());
    assert_eq!(demo_samples(&s), demo_samples(&again));
    let gone = |s: &Samples| {
        s.find("gala_gopher_demo_conn_tx_bytes", &[("conn", "gone")])
            .is_empty()
    };
    std::thread::sleep(Duration::from_secs(5));
    let s = Samples::parse(&daemon.scrape());
    assert!(
        !gone(&s),
        "a series is kept for two report periods (10 s), not record_timeout (2 s)"
    );
    let s = daemon.wait_for(Duration::from_secs(10), "'gone' to age out", gone);
    assert!(
        seen.elapsed() < Duration::from_secs(11),
        "{:?}",
        seen.elapsed()
    );
    assert_eq!(
        s.value("gala_gopher_demo_conn_tx_bytes", &[("conn", "alive")]),
        Some("2"),
        "a series still reported stays"
    );
}

#[test]
fn sigterm_stops_probes_and_their_children_even_when_they_ignore_it() {
    let mut sandbox = Sandbox::new();
    let dir = sandbox.path().to_path_buf();
    // The probe records its pid and a child's pid, ignores SIGTERM and never exits.
    let probe = format!(
        "#!/bin/sh\ntrap '' TERM\nsleep 600 &\necho $! > {d}/child.pid\necho $$ > {d}/probe.pid\nwhile :; do printf '%s\\n' '|demo_conn|x|1|1|'; sleep 0.2; done\n",
        d = dir.display()
    );
    sandbox.add_custom_probe("demo", &probe, DEMO_META);
    sandbox.write_probes_init("demo {\"state\": \"running\"}\n");
    sandbox.write_config(IMDB_DEFAULT, "");
    let daemon = sandbox.start();
    daemon.wait_for(Duration::from_secs(10), "probe output", |s| {
        !s.find("gala_gopher_demo_conn_tx_bytes", &[]).is_empty()
    });
    let read_pid = |f: &str| -> u32 {
        std::fs::read_to_string(dir.join(f))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    };
    let (probe_pid, child_pid) = (read_pid("probe.pid"), read_pid("child.pid"));
    assert!(process_exists(probe_pid) && process_exists(child_pid));
    let started = Instant::now();
    let status = daemon.terminate();
    let took = started.elapsed();
    assert!(status.success(), "daemon exit status {status}");
    assert!(
        took < Duration::from_secs(7),
        "stop took {took:?} (grace 5 s)"
    );
    assert!(
        took >= Duration::from_secs(4),
        "the probe ignored SIGTERM, so it got the grace period"
    );
    // Reaped by the daemon (no zombie left) and the whole group is gone (no orphan).
    std::thread::sleep(Duration::from_millis(200));
    assert!(!process_exists(probe_pid), "probe {probe_pid} survived");
    // The grandchild was orphaned when the probe died; reaping it falls to init, so it only
    // has to be dead, not gone.
    assert!(
        !process_alive(child_pid),
        "probe child {child_pid} survived"
    );
    assert!(
        !dir.join("run/gala-gopher.pid").exists(),
        "pid file removed"
    );
}

#[test]
fn a_bad_config_stops_startup_with_file_and_line() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write_config(
        "max_tables_num = 5000; max_records_num = 1024; max_metrics_num = 64; record_timeout = 60;",
        "",
    );
    let out = sandbox.command().output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let line = std::fs::read_to_string(&conf)
        .unwrap()
        .lines()
        .position(|l| l.starts_with("imdb"))
        .unwrap()
        + 1;
    assert!(err.contains(&format!("{}:{line}", conf.display())), "{err}");
    assert!(err.contains("imdb.max_tables_num"), "{err}");
}

#[test]
fn a_bad_meta_file_stops_startup_with_file_and_line() {
    let sandbox = Sandbox::new();
    sandbox.write_meta(
        "bad.meta",
        "version = \"1.0.0\";\nmeasurements: (\n  { table_name: \"t\"; entity_name: \"e\";\n    fields: ( { description: \"d\"; type: \"gauge\"; name: \"v\"; } ); }\n);\n",
    );
    sandbox.write_config(IMDB_DEFAULT, "");
    let out = sandbox.command().output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let meta = sandbox.path().join("meta/bad.meta");
    assert!(err.contains(&format!("{}:3", meta.display())), "{err}");
    assert!(err.contains("key"), "names the missing key field: {err}");
}

/// Invalid UTF-8 in the configuration or a meta file stops startup with file and line, said
/// once.
#[test]
fn invalid_utf8_stops_startup_with_file_and_line_said_once() {
    let sandbox = Sandbox::new();
    let conf = sandbox.write_config(IMDB_DEFAULT, "");
    let mut text = std::fs::read(&conf).unwrap();
    text.extend_from_slice(b"\n# caf\xe9\n");
    let line = text.iter().filter(|&&b| b == b'\n').count();
    std::fs::write(&conf, &text).unwrap();
    let out = sandbox.command().output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("{}:{line}: syntax error: not valid UTF-8", conf.display());
    assert!(err.contains(&want), "{want}\n{err}");

    let sandbox = Sandbox::new();
    let meta = sandbox.path().join("meta/bad.meta");
    sandbox.write_meta("bad.meta", "version = \"1.0.0\";\n");
    let mut text = std::fs::read(&meta).unwrap();
    text.extend_from_slice(b"# \xff\xfe\n");
    std::fs::write(&meta, &text).unwrap();
    sandbox.write_config(IMDB_DEFAULT, "");
    let out = sandbox.command().output().expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let want = format!("{}:2: not valid UTF-8 (byte 3 of the line)", meta.display());
    assert!(err.contains(&want), "{want}\n{err}");
    assert!(
        err.lines()
            .all(|l| l.matches("not valid UTF-8").count() <= 1),
        "said once a line: {err}"
    );
}

#[test]
fn a_probe_that_cannot_start_does_not_stop_the_others() {
    let mut sandbox = Sandbox::new();
    let probe = "#!/bin/sh\nwhile :; do printf '%s\\n' '|demo_conn|ok|1|1|'; sleep 0.2; done\n";
    sandbox.add_custom_probe("demo", probe, DEMO_META);
    sandbox.write_probes_init(
        "tcp {\"cmd\": {\"probe\": [\"tcp_rtt\"]}, \"blacklist\": {}, \"state\": \"running\"}\nnosuchprobe {\"state\": \"running\"}\nbroken {\ndemo {\"state\": \"running\"}\n",
    );
    sandbox.write_config(IMDB_DEFAULT, "");
    let daemon = sandbox.start();
    daemon.wait_for(Duration::from_secs(10), "demo output", |s| {
        !s.find("gala_gopher_demo_conn_tx_bytes", &[("conn", "ok")])
            .is_empty()
    });
    assert!(daemon.terminate().success());
    let log =
        std::fs::read_to_string(sandbox.path().join("log/debug/gopher.log")).unwrap_or_default();
    for want in [
        "line 1",
        "tcpprobe is not installed",
        "failed to start probe",
        "line 2",
        "invalid probe name nosuchprobe",
        "line 3",
    ] {
        assert!(log.contains(want), "debug log lacks {want:?}:\n{log}");
    }
}

#[test]
fn version_and_check_exit_without_starting() {
    let out = std::process::Command::new(gala_e2e::workspace_bin("gala-gopher"))
        .arg("-v")
        .output()
        .expect("run -v");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));

    let mut sandbox = Sandbox::new();
    sandbox.add_custom_probe("demo", "#!/bin/sh\n", DEMO_META);
    sandbox.write_config(IMDB_DEFAULT, "");
    let out = sandbox
        .command()
        .arg("--check")
        .stdout(std::process::Stdio::piped())
        .output()
        .expect("run --check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 tables, 1 custom probes"), "{stdout}");
    assert!(
        !sandbox.path().join("run/gala-gopher.pid").exists(),
        "--check takes no lock"
    );
}
