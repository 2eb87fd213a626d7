//! The probe SDKs under the real daemon: for Rust, Python and shell, a conformance probe
//! (`tests/probes/sdk_echo.*`) receives its configuration and a live change, and its records
//! and events reach `/metrics` and the event log (see `gala_e2e::sdk`). The C SDK has its own
//! module (`sdk_c`), which compiles its probe first. Also: a probe written for the
//! original, which prints lines and never touches fd 3, works unchanged.

use std::time::Duration;

use gala_e2e::sdk::{check_conformance, conformance_probe};
use gala_e2e::{workspace_bin, Samples, Sandbox};

/// The daemon's PATH with the workspace binaries (`gala-probe`) first.
fn path_with_workspace_bins() -> String {
    let bins = workspace_bin("gala-probe");
    let dir = bins.parent().expect("bin dir").display().to_string();
    format!("{dir}:{}", std::env::var("PATH").unwrap_or_default())
}

#[test]
fn rust_sdk() {
    check_conformance("rust", &workspace_bin("sdk-echo-probe"), &[]);
}

#[test]
fn python_sdk() {
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../probe-sdk/python");
    check_conformance(
        "python",
        &conformance_probe("sdk_echo.py"),
        &[("GALA_PROBE_PYTHONPATH", sdk)],
    );
}

#[test]
fn shell_sdk() {
    let path = path_with_workspace_bins();
    check_conformance("sh", &conformance_probe("sdk_echo.sh"), &[("PATH", &path)]);
}

/// A probe in the original's style: plain printf of record lines, stdout flushed by exit of
/// each printf, a log line with a level prefix, and fd 3 never read (nor closed).
#[test]
fn original_style_probe_works_unchanged() {
    let mut sb = Sandbox::new();
    let script = r#"#!/bin/sh
echo "[INFO] legacy probe starting"
while :; do
    printf '|legacy|host1|%s|\n' 42
    sleep 1
done
"#;
    let meta = r#"version = "1.0.0";
measurements: ({ table_name: "legacy"; entity_name: "legacy";
  fields: ({ description: "host"; type: "key"; name: "host"; },
           { description: "a value"; type: "gauge"; name: "value"; }); });
"#;
    let bin = sb.add_custom_probe("legacy", script, meta);
    sb.write_config(gala_e2e::IMDB_DEFAULT, "");
    let d = sb.start();
    let body = format!(
        r#"{{"cmd":{{"bin":{},"probe":[]}},"state":"running"}}"#,
        serde_json::to_string(&bin).expect("json")
    );
    let (status, text) = d.put("legacy", &body);
    assert_eq!(status, 200, "{text}");
    let s = d.wait_for(Duration::from_secs(10), "legacy record", |s: &Samples| {
        !s.find("gala_gopher_legacy_value", &[]).is_empty()
    });
    let sample = &s.find("gala_gopher_legacy_value", &[])[0];
    assert_eq!(sample.value, "42");
    // The probe keeps running: it never needed the channel.
    std::thread::sleep(Duration::from_secs(2));
    let v = d.probe_json("legacy");
    assert_eq!(v["runtime"]["status"], "running", "{v}");
    assert_eq!(v["runtime"]["restarts"], 0, "{v}");
}
