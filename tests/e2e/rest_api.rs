//! REST conformance against the real daemon over HTTP: the documented example bodies, every
//! error class of docs/reference/rest-api.md §9 with its status and verbatim text, the fixes (405, 413),
//! gopher-ctl giving the same answers over its socket, and random bodies that never take the
//! daemon down.

use std::process::Command;

use gala_e2e::{http_request, own_meta, workspace_bin, Sandbox};
use proptest::prelude::*;
use serde_json::Value;

const SUCCESS: &str = "{ \"result\": \"success\", \"message\":\"New config takes effect\" }\n";

fn failed(message: &str) -> String {
    format!(
        "{{ \"result\": \"failed\", \"message\":{} }}\n",
        Value::from(message)
    )
}

/// A sandbox whose built-in probe binaries used by the examples exist (they just sleep), and a
/// custom probe `mine`.
fn sandbox() -> Sandbox {
    let mut sb = Sandbox::new();
    for bin in [
        "system_infos",
        "tcpprobe",
        "endpoint",
        "sermant_probe.py",
        "ioprobe",
    ] {
        let path = sb.path().join("probes").join(bin);
        std::fs::write(&path, "#!/bin/sh\nexec sleep 3600\n").expect("probe");
        let perms = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&path, perms).expect("chmod");
    }
    sb.add_custom_probe("mine", "#!/bin/sh\nexec sleep 3600\n", &own_meta("mine"));
    sb.write_config(
        "max_tables_num = 16; max_records_num = 100; max_metrics_num = 16; record_timeout = 60;",
        "supervisor = { stop_grace = 1; };",
    );
    sb
}

fn put_raw(port: u16, probe: &str, body: &[u8]) -> (u16, String) {
    http_request(port, "PUT", &format!("/{probe}"), body).expect("PUT")
}

#[test]
fn documented_examples_and_every_error_class() {
    let sb = sandbox();
    let d = sb.start();
    let port = sb.rest_port;
    let ok = (200, SUCCESS.to_string());
    let bad = |m: &str| (400, failed(m));
    let many_pids: Vec<String> = (1..=101).map(|p| p.to_string()).collect();
    let too_many = format!(
        r#"{{"snoopers": {{"proc_id": [{}]}}}}"#,
        many_pids.join(",")
    );
    let cases: Vec<(&str, String, (u16, String))> = vec![
        // The examples of the openEuler documentation (seeds), percent-encoded as they show.
        ("baseinfo", r#"json=%7B%22cmd%22%3A%7B%22probe%22%3A%5B%22cpu%22%2C%22mem%22%2C%22nic%22%2C%22disk%22%2C%22net%22%2C%22fs%22%2C%22proc%22%2C%22host%22%5D%7D%2C%22snoopers%22%3A%7B%22proc_name%22%3A%5B%7B%22comm%22%3A%22java%22%2C%22cmdline%22%3A%22dubbo%22%7D%5D%7D%2C%22state%22%3A%22running%22%2C%22params%22%3A%7B%22report_period%22%3A60%7D%7D"#.into(), ok.clone()),
        ("tcp", r#"json={"cmd":{"probe":["tcp_abnormal","tcp_rtt","tcp_windows","tcp_rate","tcp_rtt","tcp_sockbuf","tcp_stats"]},"snoopers":{"proc_name":[{"comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60,"l7_protocol":["http"]}}"#.into(), ok.clone()),
        ("socket", r#"json={"cmd":{"probe":["tcp_socket"]},"snoopers":{"proc_name":[{"comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60,"l7_protocol":["http"]}}"#.into(), ok.clone()),
        ("sermant", r#"json={"cmd":{"probe":["l7_bytes_metrics","l7_rpc_metrics","l7_rpc_trace"]},"snoopers":{"proc_name":[{"name":"sermantTest","comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60,"l7_protocol":["http"]}}"#.into(), ok.clone()),
        ("io", r#"json={"cmd":{"probe":["io_trace","io_err"]},"params":{"sample_period":200, "latency_thr": 0}, "state":"stopped"}"#.into(), ok.clone()),
        ("tcp", r#"json={"state":"stopped"}"#.into(), ok.clone()),
        // Transport and framing.
        ("tcp", r#"{"state":"running"}"#.into(), bad("put data must start with json=")),
        ("nosuch", "json={}".into(), bad("invalid probe name nosuch")),
        ("tcp", "json={bad".into(), bad("invalid json format")),
        ("tcp", r#"json={"state":"running",}"#.into(), bad("invalid json format")),
        ("tcp", "json=[1]".into(), bad("invalid json format")),
        ("tcp", "json={}".into(), bad("Bad request")),
        ("tcp", r#"json={"cmd":{}}"#.into(), bad("Bad request")),
        // cmd.
        ("tcp", r#"json={"cmd":{"probe":"tcp_rtt"}}"#.into(), bad("Bad request")),
        ("tcp", r#"json={"cmd":{"probe":["nope"]}}"#.into(), bad("unsupported probe range: nope.")),
        ("tcp", r#"json={"cmd":{"probe":[]}}"#.into(), bad("invalid probe ranges: at least one must be set")),
        ("tcp", r#"json={"cmd":{"probe":[5]}}"#.into(), bad("Invalid probe range: must be string.")),
        ("mine", r#"json={"cmd":{"probe":[],"bin":"/bin/sh"}}"#.into(), bad("invalid custom probe bin path")),
        // Snoopers and blacklist.
        ("tcp", r#"json={"snoopers":{"proc_id":[1]},"blacklist":{"proc_id":[2]}}"#.into(), bad("snoopers and blacklist are mutually exclusive")),
        ("tcp", format!("json={too_many}"), bad("Error occurs when parsing snooper proc_id")),
        ("tcp", r#"json={"snoopers":{"proc_id":{"a":1}}}"#.into(), bad("Error occurs when parsing snooper proc_id")),
        ("tcp", r#"json={"snoopers":{"proc_id":[4294967296]}}"#.into(), bad("Error occurs when parsing snooper proc_id")),
        ("tcp", r#"json={"snoopers":{"container_name":["a;rm -rf /"]}}"#.into(), bad("Error occurs when parsing snooper container_name")),
        ("tcp", r#"json={"snoopers":{"container_name":["../x"]}}"#.into(), bad("Error occurs when parsing snooper container_name")),
        ("tcp", r#"json={"snoopers":{"pod_id":["pod1"]}}"#.into(), bad("Error occurs when parsing snooper pod_id")),
        ("tcp", r#"json={"snoopers":{"container_id":["xyz"]}}"#.into(), bad("Error occurs when parsing snooper container_id")),
        ("tcp", r#"json={"snoopers":{"proc_name":[{"comm":"(unclosed"}]}}"#.into(), bad("Error occurs when parsing snooper proc_name")),
        ("tcp", r#"json={"cmd":{"probe":["tcp_rtt"]},"snoopers":{},"state":"running"}"#.into(), bad("the snooper for tcp cannot be empty")),
        // Params.
        ("tcp", r#"json={"params":{"report_period":1}}"#.into(), bad("params.report_period invalid value 1, must be in [5, 600]")),
        ("tcp", r#"json={"params":{"report_period":4294967296}}"#.into(), bad("params.report_period invalid value 4294967296, must be in [5, 600]")),
        ("tcp", r#"json={"params":{"report_period":"60"}}"#.into(), bad("params.report_period invalid data type")),
        ("tcp", r#"json={"params":{"elf_path":"/tmp/$(reboot)"}}"#.into(), bad("params.elf_path contains unsafe characters")),
        ("tcp", r#"json={"params":{"nosuch":1}}"#.into(), bad("Bad request")),
        // State.
        ("tcp", r#"json={"state":"paused"}"#.into(), bad("invalid state paused: must be running or stopped")),
        ("tcp", r#"json={"state":1}"#.into(), bad("invalid state: must be string")),
    ];
    for (probe, body, want) in &cases {
        let got = put_raw(port, probe, body.as_bytes());
        assert_eq!(&got, want, "PUT /{probe} {body}");
    }
    // The examples really run, and GET shows them with keys sorted.
    let v = d.probe_json("socket");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["cmd"]["probe"], serde_json::json!(["tcp_socket"]));
    assert_eq!(v["snoopers"]["proc_name"][0]["comm"], "java");
    let (_, text) = d.get("io");
    assert!(text.starts_with("{\"cmd\":{\"bin\":"), "{text}");
    assert!(text.contains("\"sample_period\":200"), "{text}");

    // GET and the fixes.
    assert_eq!(d.get("nosuch"), (404, failed("url not found")));
    assert_eq!(
        http_request(port, "GET", "/", b"").unwrap(),
        (404, failed("url not found"))
    );
    assert_eq!(
        d.get("flamegraph"),
        (200, "{}\n".into()),
        "never configured"
    );
    for method in ["POST", "DELETE", "HEAD", "PATCH"] {
        let (status, _) = http_request(port, method, "/tcp", b"").unwrap();
        assert_eq!(status, 405, "{method}");
    }
    let huge = format!("json={{\"state\":\"{}\"}}", "x".repeat(1 << 20));
    let (status, body) = put_raw(port, "tcp", huge.as_bytes());
    assert_eq!(
        (status, body),
        (413, failed("put data size exceeds 1048576"))
    );
    // Nothing above changed tcp's stopped state.
    assert_eq!(d.probe_json("tcp")["state"], "stopped");
}

#[test]
fn gopher_ctl_gives_the_rest_answers_over_the_local_socket() {
    let sb = sandbox();
    let _d = sb.start();
    let ctl = |args: &[&str]| {
        let out = Command::new(workspace_bin("gopher-ctl"))
            .arg("--socket")
            .arg(sb.path().join("run/gala_gopher_cmd.sock"))
            .args(args)
            .output()
            .expect("gopher-ctl");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = ctl(&[
        "probe",
        "set",
        "io",
        r#"{"cmd":{"probe":["io_err"]},"params":{"sample_period":300}}"#,
    ]);
    assert_eq!((code, out.as_str()), (Some(0), SUCCESS));
    let (code, out) = ctl(&["probe", "get", "io"]);
    assert_eq!(code, Some(0));
    let v: Value = serde_json::from_str(&out).expect("probe JSON");
    assert_eq!(v["params"]["sample_period"], 300);
    // A refused config is still a successful exchange (exit 0), with the REST text.
    let (code, out) = ctl(&["probe", "set", "io", r#"{"params":{"sample_period":1}}"#]);
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        failed("params.sample_period invalid value 1, must be in [100, 10000]")
    );
    let (code, out) = ctl(&["metric"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("gala_gopher_daemon_"), "{out}");
}

/// JSON-ish text: fragments of valid bodies, wrong types, huge numbers and junk.
fn body_strategy() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("\"running\"".to_string()),
        Just("\"stopped\"".to_string()),
        Just("4294967296".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
        "[a-z_]{0,12}".prop_map(|s| format!("\"{s}\"")),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    let key = prop_oneof![
        Just("cmd"),
        Just("probe"),
        Just("snoopers"),
        Just("blacklist"),
        Just("params"),
        Just("state"),
        Just("proc_id"),
        Just("proc_name"),
        Just("comm"),
        Just("report_period"),
        Just("container_name"),
        Just("custom_labels"),
        Just("l7_protocol"),
        Just("bin"),
    ];
    let value = atom.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((key.clone(), inner), 0..4).prop_map(|kv| {
                let fields: Vec<String> = kv.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                format!("{{{}}}", fields.join(","))
            }),
        ]
    });
    prop_oneof![
        value.clone().prop_map(|v| format!("json={v}")),
        value.prop_map(|v| format!("json={v},")),
        "\\PC{0,64}",
    ]
}

#[test]
fn random_bodies_get_documented_answers_and_never_take_the_daemon_down() {
    let sb = sandbox();
    let d = sb.start();
    let port = sb.rest_port;
    let probes = ["tcp", "baseinfo", "mine", "io", "l7", "nosuch"];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(400));
    runner
        .run(&(0..probes.len(), body_strategy()), |(p, body)| {
            let (status, answer) = put_raw(port, probes[p], body.as_bytes());
            prop_assert!(
                status == 200 || status == 400,
                "{status} for {body}: {answer}"
            );
            let v: Value = serde_json::from_str(&answer)
                .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {answer}")))?;
            prop_assert!(
                v["result"] == "success" || v["result"] == "failed",
                "{answer}"
            );
            Ok(())
        })
        .expect("random bodies");
    // Still serving both endpoints.
    d.scrape();
    assert_eq!(d.get("tcp").0, 200);
}
