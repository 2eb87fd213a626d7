//! Probe control end to end: REST PUT/GET start and stop real probe processes, the
//! supervisor restarts them with backoff or marks them failed, and a daemon stopped with
//! SIGTERM (and every accepted PUT) saves what ran to `probes.init`, which the next start
//! brings back, also after a SIGKILL; each probe's process tree lives in its own cgroup, which
//! a stop, or the next daemon after a SIGKILL, empties.

use std::time::{Duration, Instant};

use gala_e2e::{own_meta, process_alive, process_exists, Daemon, Samples, Sandbox};
use serde_json::Value;

const TICK_META: &str = r#"
version = "1.0.0";
measurements: (
  { table_name: "e2e_tick"; entity_name: "e2e_tick";
    fields: (
      { description: "probe name"; type: "key"; name: "probe"; },
      { description: "ticks so far"; type: "gauge"; name: "value"; },
    ); },
);
"#;

/// Reports a tick every 200 ms under its own name.
const TICKER: &str = "#!/bin/sh\ni=0\nwhile true; do i=$((i+1)); echo \"|e2e_tick|$GALA_GOPHER_PROBE_NAME|$i|\"; sleep 0.2; done\n";

const SUCCESS: &str = "{ \"result\": \"success\", \"message\":\"New config takes effect\" }\n";

/// Ignores SIGTERM and keeps ticking.
const STUBBORN: &str = "#!/bin/sh\ntrap '' TERM\nwhile true; do echo \"|e2e_tick|$GALA_GOPHER_PROBE_NAME|1|\"; sleep 0.1; done\n";

fn sandbox(probes: &[(&str, &str)], supervisor: &str) -> Sandbox {
    let mut sb = Sandbox::new();
    sb.write_meta("tick.meta", TICK_META);
    for (name, script) in probes {
        sb.add_custom_probe(name, script, &own_meta(name));
    }
    sb.write_config(
        "max_tables_num = 16; max_records_num = 100; max_metrics_num = 16; record_timeout = 2;",
        &format!("supervisor = {{ {supervisor} }};"),
    );
    sb
}

fn runtime(v: &Value) -> &Value {
    &v["runtime"]
}

fn pid_of(v: &Value) -> u32 {
    runtime(v)["pid"].as_u64().expect("pid") as u32
}

fn running(d: &Daemon, probe: &str) -> u32 {
    let v = d.wait_probe(probe, Duration::from_secs(10), "probe running", |v| {
        runtime(v)["status"] == "running"
    });
    assert_eq!(v["state"], "running", "{v}");
    pid_of(&v)
}

fn ticks(s: &Samples, probe: &str) -> Option<f64> {
    s.value("gala_gopher_e2e_tick_value", &[("probe", probe)])
        .and_then(|v| v.parse().ok())
}

#[test]
fn put_starts_and_stops_a_probe_and_its_series_age_out() {
    let sb = sandbox(&[("ticker", TICKER)], "stop_grace = 2;");
    let d = sb.start();
    assert_eq!(
        d.get("ticker"),
        (200, "{}\n".to_string()),
        "never configured"
    );
    // The series of a probe live two report periods (10 s) after its last report.
    assert_eq!(
        d.put(
            "ticker",
            r#"{"state": "running", "params": {"report_period": 5}}"#
        ),
        (200, SUCCESS.to_string())
    );
    let pid = running(&d, "ticker");
    d.wait_for(Duration::from_secs(10), "ticks scraped", |s| {
        ticks(s, "ticker").is_some_and(|t| t >= 2.0)
    });

    assert_eq!(
        d.put("ticker", r#"{"state": "stopped"}"#),
        (200, SUCCESS.to_string())
    );
    assert!(
        !process_exists(pid),
        "probe {pid} still exists (running or zombie)"
    );
    let v = d.probe_json("ticker");
    assert_eq!(v["state"], "stopped");
    assert_eq!(runtime(&v)["status"], "stopped");
    d.wait_for(Duration::from_secs(15), "series aged out", |s| {
        ticks(s, "ticker").is_none()
    });
}

#[test]
fn a_killed_probe_is_restarted_with_its_count_visible() {
    let sb = sandbox(&[("ticker", TICKER)], "stop_grace = 2;");
    let d = sb.start();
    assert_eq!(d.put("ticker", r#"{"state": "running"}"#).0, 200);
    let pid = running(&d, "ticker");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let v = d.wait_probe("ticker", Duration::from_secs(10), "restart", |v| {
        runtime(v)["status"] == "running" && runtime(v)["pid"] != pid
    });
    assert_eq!(runtime(&v)["restarts"], 1, "{v}");
    assert!(
        runtime(&v)["last_exit"]
            .as_str()
            .unwrap_or("")
            .contains("SIGKILL"),
        "{v}"
    );
    d.wait_for(Duration::from_secs(5), "restart self-metric", |s| {
        s.value(
            "gala_gopher_daemon_probe_restarts_total",
            &[("probe", "ticker")],
        ) == Some("1")
    });
}

#[test]
fn a_probe_that_exits_at_once_is_marked_failed() {
    let sb = sandbox(
        &[("crasher", "#!/bin/sh\necho starting >&2\nexit 7\n")],
        "failed_after = 3; restart_backoff_max = 1;",
    );
    let d = sb.start();
    assert_eq!(d.put("crasher", r#"{"state": "running"}"#).0, 200);
    let v = d.wait_probe("crasher", Duration::from_secs(15), "failed", |v| {
        runtime(v)["status"] == "failed"
    });
    assert_eq!(runtime(&v)["last_exit"], "exit status: 7", "{v}");
    assert_eq!(v["state"], "stopped", "a failed probe is not running: {v}");
    assert_eq!(runtime(&v)["restarts"], 2, "{v}");
}

#[test]
fn a_probe_ignoring_sigterm_is_killed_after_the_grace_period() {
    let sb = sandbox(&[("stubborn", STUBBORN)], "stop_grace = 1;");
    let d = sb.start();
    assert_eq!(d.put("stubborn", r#"{"state": "running"}"#).0, 200);
    let pid = running(&d, "stubborn");
    d.wait_for(Duration::from_secs(10), "output", |s| {
        ticks(s, "stubborn").is_some()
    });
    let t = Instant::now();
    assert_eq!(d.put("stubborn", r#"{"state": "stopped"}"#).0, 200);
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(1), "stopped after {took:?}");
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    assert!(!process_exists(pid));
}

#[test]
fn a_probe_whose_binary_is_missing_gets_a_clear_error() {
    let sb = sandbox(&[], "");
    let d = sb.start();
    let (status, body) = d.put(
        "tcp",
        r#"{"cmd": {"probe": ["tcp_abnormal"]}, "blacklist": {}, "state": "running"}"#,
    );
    assert_eq!(status, 400, "{body}");
    let bin = sb.path().join("probes/tcpprobe");
    assert!(
        body.contains(&format!(
            "failed to start probe: {} is not installed",
            bin.display()
        )),
        "names the missing file: {body}"
    );
    // The daemon is unharmed.
    d.scrape();
}

#[test]
fn sigterm_stops_every_probe_saves_probes_init_and_a_restart_restores_them() {
    let names = ["p1", "p2", "p3", "p4", "p5"];
    // The last one ignores SIGTERM, so the shutdown needs the whole grace period.
    let probes: Vec<(&str, &str)> = names
        .iter()
        .map(|n| (*n, if *n == "p5" { STUBBORN } else { TICKER }))
        .collect();
    let sb = sandbox(&probes, "stop_grace = 1;");
    // The operator's comment and a line that cannot apply survive the rewrite.
    sb.write_probes_init("# keep me\nnosuch {\"state\": \"running\"}\n");
    let d = sb.start();
    let mut pids = Vec::new();
    for n in names {
        assert_eq!(d.put(n, r#"{"state": "running"}"#).0, 200);
        pids.push(running(&d, n));
    }
    let t = Instant::now();
    let status = d.terminate();
    let took = t.elapsed();
    assert!(status.success(), "daemon exit: {status}");
    assert!(
        took >= Duration::from_secs(1),
        "p5 was not given its grace: {took:?}"
    );
    assert!(took < Duration::from_secs(1 + 1), "shutdown took {took:?}");
    for pid in &pids {
        assert!(!process_exists(*pid), "probe {pid} outlived the daemon");
    }
    let saved = std::fs::read_to_string(sb.path().join("probes.init")).expect("probes.init");
    assert!(
        saved.contains("\n# keep me\nnosuch {\"state\": \"running\"}\n"),
        "{saved}"
    );
    for n in names {
        let line = saved
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("{n} missing from probes.init:\n{saved}"));
        assert!(line.contains("\"state\":\"running\""), "{line}");
    }

    let d = sb.start();
    for n in names {
        let pid = running(&d, n);
        assert!(!pids.contains(&pid));
    }
}

/// Every accepted PUT is saved at once: a daemon killed with SIGKILL (no chance to save at
/// stop) comes back with the probes that ran, the one stopped over REST stays stopped, and
/// the operator's lines are kept.
#[test]
fn a_put_survives_a_kill_9() {
    let sb = sandbox(&[("p1", TICKER), ("p2", TICKER)], "stop_grace = 1;");
    sb.write_probes_init("# keep me\n");
    let d = sb.start();
    for n in ["p1", "p2"] {
        assert_eq!(d.put(n, r#"{"state": "running"}"#).0, 200);
        running(&d, n);
    }
    assert_eq!(d.put("p2", r#"{"state": "stopped"}"#).0, 200);
    let saved = std::fs::read_to_string(sb.path().join("probes.init")).expect("probes.init");
    assert!(saved.contains("\n# keep me\n"), "{saved}");
    let state = |n: &str| {
        let line = saved
            .lines()
            .find(|l| l.split_whitespace().next() == Some(n))
            .unwrap_or_else(|| panic!("{n} missing from probes.init:\n{saved}"));
        line.contains("\"state\":\"running\"")
    };
    assert!(state("p1") && !state("p2"), "{saved}");
    let daemon_pid = d.pid();
    drop(d); // SIGKILL
    assert!(!process_exists(daemon_pid));

    let d = sb.start();
    running(&d, "p1");
    let v = d.probe_json("p2");
    assert_eq!(v["state"], "stopped", "{v}");
}

/// A probe gets PATH, the locale, HOME, TMPDIR and the `GALA_*`/`GOPHER_*` variables of the
/// daemon's environment and its own settings, nothing else (no credential the daemon was
/// started with).
#[test]
fn probes_get_a_minimal_environment() {
    let mut sb = sandbox(&[], "stop_grace = 1;");
    let file = sb.path().join("probe.env");
    let script = format!(
        "#!/bin/sh\nenv > {f}.tmp && mv {f}.tmp {f}\nwhile true; do sleep 1; done\n",
        f = file.display()
    );
    sb.add_custom_probe("envdump", &script, &own_meta("envdump"));
    let d = sb.start_with_env(&[
        ("SECRET_TOKEN", "hunter2"),
        ("GALA_E2E_SETTING", "kept"),
        ("LANG", "C.UTF-8"),
    ]);
    assert_eq!(d.put("envdump", r#"{"state": "running"}"#).0, 200);
    running(&d, "envdump");
    let env = gala_e2e::poll_until(Duration::from_secs(10), 100, || {
        std::fs::read_to_string(&file).map_err(|e| e.to_string())
    });
    let names: Vec<&str> = env
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(n, _)| n)
        .collect();
    for want in ["PATH", "LANG", "GALA_E2E_SETTING", "GALA_GOPHER_PROBE_NAME"] {
        assert!(names.contains(&want), "{want} missing:\n{env}");
    }
    assert!(env.contains("GALA_GOPHER_PROBE_NAME=envdump\n"), "{env}");
    for name in &names {
        assert!(
            ["PATH", "LANG", "LANGUAGE", "TZ", "HOME", "TMPDIR", "PWD", "SHLVL", "_"]
                .contains(name)
                || ["LC_", "GALA_", "GOPHER_"]
                    .iter()
                    .any(|p| name.starts_with(p)),
            "{name} inherited:\n{env}"
        );
    }
    assert!(!env.contains("hunter2"), "{env}");
}

/// A probe that leaves a `setsid` grandchild (its own session and process group, so no
/// signal to the probe's group reaches it), writes the grandchild's pid to `file`, and spins
/// a little CPU.
fn forking_probe(file: &std::path::Path) -> String {
    format!(
        "#!/bin/sh\nsetsid sh -c 'echo $$ > {f}.tmp && mv {f}.tmp {f} && exec sleep 300' &\n\
         while true; do i=0; while [ $i -lt 2000 ]; do i=$((i+1)); done; sleep 0.1; done\n",
        f = file.display()
    )
}

fn grandchild(file: &std::path::Path) -> u32 {
    gala_e2e::poll_until(Duration::from_secs(10), 50, || {
        std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| t.trim().parse::<u32>().map_err(|e| e.to_string()))
    })
}

fn wait_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "{what}: grandchild {pid} still alive"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Stopping a probe (PUT and daemon stop) kills its `setsid` grandchild too, in cgroup v2 and
/// v1 (this host mounts both); the probe's CPU and memory are self-metrics.
#[test]
fn a_stop_kills_the_probes_setsid_grandchild() {
    for mode in ["v2", "v1"] {
        let mut sb = sandbox(&[], &format!("stop_grace = 1; cgroup = \"{mode}\";"));
        let file = sb.path().join("grandchild.pid");
        sb.add_custom_probe("forker", &forking_probe(&file), &own_meta("forker"));
        let d = sb.start();
        assert_eq!(d.put("forker", r#"{"state": "running"}"#).0, 200);
        running(&d, "forker");
        let pid = grandchild(&file);
        assert!(process_alive(pid));
        let s = d.wait_for(Duration::from_secs(10), "probe cpu and memory", |s| {
            let v = |n: &str| {
                s.value(n, &[("probe", "forker")])
                    .and_then(|v| v.parse::<f64>().ok())
            };
            v("gala_gopher_daemon_probe_cpu_seconds").is_some_and(|c| c > 0.0)
                && v("gala_gopher_daemon_probe_memory_bytes").is_some_and(|m| m > 100_000.0)
        });
        drop(s);
        assert_eq!(d.put("forker", r#"{"state": "stopped"}"#).0, 200);
        wait_gone(pid, &format!("{mode}: PUT stopped"));

        // Running again, then the daemon's own stop.
        std::fs::remove_file(&file).expect("pid file");
        assert_eq!(d.put("forker", r#"{"state": "running"}"#).0, 200);
        let pid = grandchild(&file);
        assert!(d.terminate().success());
        wait_gone(pid, &format!("{mode}: SIGTERM to the daemon"));
    }
}

/// A SIGKILLed daemon's probe dies with it (PDEATHSIG), its `setsid` grandchild does not; the
/// next daemon kills it before starting anything.
#[test]
fn no_grandchild_survives_a_kill_9_and_a_restart() {
    let mut sb = sandbox(&[], "stop_grace = 1;");
    let file = sb.path().join("grandchild.pid");
    sb.add_custom_probe("forker", &forking_probe(&file), &own_meta("forker"));
    let d = sb.start();
    assert_eq!(d.put("forker", r#"{"state": "running"}"#).0, 200);
    running(&d, "forker");
    let pid = grandchild(&file);
    drop(d); // SIGKILL
    std::thread::sleep(Duration::from_millis(300));
    assert!(process_alive(pid), "the grandchild outlives the SIGKILL");
    std::fs::remove_file(&file).expect("pid file");
    // The restarted daemon brings the probe back from probes.init, in a fresh cgroup.
    let d = sb.start();
    wait_gone(pid, "restart after SIGKILL");
    running(&d, "forker");
    let again = grandchild(&file);
    assert_ne!(again, pid);
    assert!(d.terminate().success());
    wait_gone(again, "SIGTERM to the daemon");
}
