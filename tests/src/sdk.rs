//! The SDK conformance check: one custom probe built on one SDK (the behaviour described in
//! `tests/probes/sdk_echo.meta`) under the real daemon. It must receive its configuration —
//! custom sub-items, custom params, params, process snoopers — and a live change of it,
//! report records that reach `/metrics`, and events that reach the event log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Daemon, KillOnDrop, Samples, Sandbox};

/// The conformance probes' meta file.
pub fn sdk_echo_meta() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/sdk_echo.meta")
}

/// A file of `tests/probes/`.
pub fn conformance_probe(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("probes")
        .join(file)
}

/// Runs the conformance check for the SDK of `lang` (the record's `lang` key) on the probe
/// program `bin`; `env` is added to the daemon's environment, which the probe inherits.
pub fn check_conformance(lang: &str, bin: &Path, env: &[(&str, &str)]) {
    let mut sb = Sandbox::new();
    let name = format!("sdk_{lang}");
    let ext = bin.extension().map(|e| format!(".{}", e.to_string_lossy()));
    let installed = sb
        .path()
        .join("probes")
        .join(format!("{name}{}", ext.unwrap_or_default()));
    std::fs::copy(bin, &installed).expect("install probe");
    std::fs::copy(sdk_echo_meta(), gala_meta::custom_meta_path(&installed)).expect("install meta");
    sb.declare_custom_probe(&name, &installed, &["a", "b"], &["level"]);
    sb.write_config(
        crate::IMDB_DEFAULT,
        "supervisor = { stop_grace = 2; snooper_period = 1; };",
    );
    let d = sb.start_with_env(env);
    let sleeper = KillOnDrop(
        Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep"),
    );
    let pid = sleeper.0.id().to_string();
    let bin_json = serde_json::to_string(&installed).expect("path as json");
    let put = |subitems: &str, level: u32| {
        let body = format!(
            r#"{{"cmd":{{"bin":{bin_json},"probe":[{subitems}]}},"snoopers":{{"proc_id":[{pid}]}},"params":{{"report_period":5,"custom_param":[{{"level":"{level}"}}]}},"state":"running"}}"#
        );
        let (status, text) = d.put(&name, &body);
        assert_eq!(status, 200, "PUT {name}: {text}");
    };

    put(r#""a""#, 3);
    let first = echo(
        &d,
        lang,
        Duration::from_secs(20),
        "first config",
        |level, _| level == "3",
    );
    assert_eq!(first.labels["probe"], name);
    assert_eq!(first.labels["subitems"], "a");
    assert_eq!(first.labels["pids"], pid);
    assert_eq!(value(&d, "report_period", lang).as_deref(), Some("5"));
    let seq1: u64 = first.value.parse().expect("seq");

    // A live change reaches the probe at once: its wait() returns early, long before the
    // 5 s report period is over.
    let changed = Instant::now();
    put(r#""a","b""#, 7);
    let second = echo(
        &d,
        lang,
        Duration::from_secs(10),
        "changed config",
        |level, _| level == "7",
    );
    assert!(
        changed.elapsed() < Duration::from_secs(4),
        "{lang}: the change took {:?} to show",
        changed.elapsed()
    );
    assert_eq!(second.labels["subitems"], "a,b");
    let seq2: u64 = second.value.parse().expect("seq");
    assert!(seq2 > seq1, "{lang}: seq {seq2} after {seq1}");

    // Both configurations were announced as events, the `|` in the message escaped.
    for (seq, level) in [(seq1, 3), (seq2, 7)] {
        let suffix = format!("_sdk_echo_{lang}-{seq}");
        let event = sb.wait_event(Duration::from_secs(10), &suffix, |e| {
            e["Attributes"]["entity_id"]
                .as_str()
                .is_some_and(|id| id.ends_with(&suffix))
        });
        assert_eq!(event["SeverityText"], "WARN", "{event}");
        assert_eq!(event["SeverityNumber"], 13, "{event}");
        assert_eq!(
            event["Resource"]["metric"], "gala_gopher_sdk_echo_seq",
            "{event}"
        );
        let body = event["Body"].as_str().expect("Body");
        let expected =
            format!("WARN Entity({lang}-{seq}) applied config {seq} with level {level} / ok");
        assert!(body.ends_with(&expected), "{lang}: body {body:?}");
    }

    // The SDK wrote nothing the daemon had to drop.
    let samples = Samples::parse(&d.scrape());
    let dropped: f64 = samples
        .find(
            "gala_gopher_daemon_records_dropped_total",
            &[("probe", &name)],
        )
        .iter()
        .map(|s| s.value.parse::<f64>().unwrap_or(0.0))
        .sum();
    assert_eq!(dropped, 0.0, "{lang}: dropped lines");

    // Stopping over REST ends the probe cleanly.
    let (status, text) = d.put(&name, r#"{"state":"stopped"}"#);
    assert_eq!(status, 200, "stop {name}: {text}");
    d.wait_probe(&name, Duration::from_secs(10), "stopped", |v| {
        v["runtime"]["status"] == "stopped"
    });
}

/// The `seq` sample of `lang` once `pred(level, sample)` accepts it.
fn echo(
    d: &Daemon,
    lang: &str,
    within: Duration,
    what: &str,
    pred: impl Fn(&str, &crate::Sample) -> bool,
) -> crate::Sample {
    let pick = |s: &Samples| {
        let level = s
            .value("gala_gopher_sdk_echo_level", &[("lang", lang)])?
            .to_owned();
        let seq = s
            .find("gala_gopher_sdk_echo_seq", &[("lang", lang)])
            .first()
            .map(|x| (*x).clone())?;
        pred(&level, &seq).then_some(seq)
    };
    let s = d.wait_for(within, &format!("{lang}: {what}"), |s| pick(s).is_some());
    pick(&s).expect("matched")
}

fn value(d: &Daemon, field: &str, lang: &str) -> Option<String> {
    Samples::parse(&d.scrape())
        .value(&format!("gala_gopher_sdk_echo_{field}"), &[("lang", lang)])
        .map(str::to_owned)
}
