//! PUT/GET model tests: the original's documented example bodies, every message of
//! docs/reference/rest-api.md §9,
//! the original's crash and bypass inputs, GET rendering, and random bodies.

use std::path::Path;

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::probes::catalogue::{Catalogue, ProbeKind};
use crate::probes::custom::CustomProbe;

const EXTEND_DIR: &str = "/opt/gala-gopher/extend_probes";
const CUSTOM_BIN: &str = "/opt/custom/example.sh";

fn catalogue() -> Catalogue {
    Catalogue::new(
        Path::new(EXTEND_DIR),
        &[CustomProbe {
            name: "example".into(),
            bin: CUSTOM_BIN.into(),
            subprobes: vec!["sub_a".into(), "sub_b".into()],
            params: vec!["p1".into(), "p2".into()],
            ipc_encoding: gala_ipc_proto::Encoding::Json,
            ipc: Default::default(),
        }],
    )
}

fn kind(name: &str) -> ProbeKind {
    catalogue().lookup(name).unwrap().clone()
}

/// PUT `json` to a never-configured probe.
fn put(name: &str, json: &str) -> Result<PutOutcome, ApiError> {
    let kind = kind(name);
    apply_put(
        &kind,
        &ProbeSettings::new(&kind),
        json.as_bytes(),
        PutContext::default(),
    )
}

/// PUT `json` on top of `current`.
fn put_on(
    name: &str,
    current: &ProbeSettings,
    json: &str,
    running: bool,
) -> Result<PutOutcome, ApiError> {
    apply_put(
        &kind(name),
        current,
        json.as_bytes(),
        PutContext { running },
    )
}

fn message(name: &str, json: &str) -> String {
    let err = put(name, json).unwrap_err();
    assert_eq!(err.status, 400, "{json}");
    err.message
}

fn running() -> ProbeView<'static> {
    ProbeView {
        state: DesiredState::Running,
        runtime: None,
    }
}

fn get(name: &str, settings: &ProbeSettings) -> String {
    render_get(&kind(name), Some(settings), &running())
}

// ---------------------------------------------------------------- transport rules (docs/reference/rest-api.md §2)

#[test]
fn json_prefix_and_size_rules() {
    assert_eq!(strip_json_prefix(b"json={}").unwrap(), b"{}");
    assert_eq!(strip_json_prefix(b"json=").unwrap(), b"");
    for bad in [&b"{}"[..], b"JSON={}", b" json={}", b"jso"] {
        let err = strip_json_prefix(bad).unwrap_err();
        assert_eq!(
            (err.status, err.message.as_str()),
            (400, "put data must start with json=")
        );
    }
    let mut body = b"json=".to_vec();
    body.resize(MAX_PUT_BODY, b' ');
    assert!(
        strip_json_prefix(&body).is_ok(),
        "exactly 1 MiB including the prefix"
    );
    body.push(b' ');
    assert_eq!(
        strip_json_prefix(&body).unwrap_err().message,
        "put data size exceeds 1048576"
    );
    assert_eq!(
        strip_json_prefix(&vec![b'x'; MAX_PUT_BODY + 1])
            .unwrap_err()
            .message,
        "put data size exceeds 1048576",
        "size is checked before the prefix"
    );
}

#[test]
fn url_encoded_bodies_are_decoded() {
    // `curl --data-urlencode json='{...}'` (seed article) sends percent-encoded JSON.
    let body =
        b"json=%7B%22state%22%3A+%22running%22%2C%22params%22%3A%7B%22report_period%22%3A30%7D%7D";
    let json = form_decoded(strip_json_prefix(body).unwrap()).into_owned();
    assert_eq!(
        json,
        br#"{"state": "running","params":{"report_period":30}}"#
    );
    let kind = kind("virt");
    let out = apply_put(
        &kind,
        &ProbeSettings::new(&kind),
        &json,
        PutContext::default(),
    )
    .unwrap();
    assert_eq!(out.state, Some(DesiredState::Running));
    // Raw JSON is left alone, '+' and '%' included; a broken escape stays for the parser.
    assert_eq!(&*form_decoded(br#"{"a":"1+1%"}"#), br#"{"a":"1+1%"}"#);
    assert_eq!(&*form_decoded(b"%7B%zz"), b"{%zz");
}

#[test]
fn reply_bodies() {
    assert_eq!(
        SUCCESS_BODY,
        "{ \"result\": \"success\", \"message\":\"New config takes effect\" }\n"
    );
    assert_eq!(
        ApiError::invalid_json().body(),
        "{ \"result\": \"failed\", \"message\":\"invalid json format\" }\n"
    );
    let nf = ApiError::url_not_found();
    assert_eq!(
        (nf.status, nf.body().as_str()),
        (
            404,
            "{ \"result\": \"failed\", \"message\":\"url not found\" }\n"
        )
    );
    // Quotes are escaped and long messages are not truncated (the original cut at 128 bytes).
    let long = format!("{}\"x", "a".repeat(200));
    let body = ApiError::unsupported_subitem(&long).body();
    let parsed: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        parsed["message"],
        format!("unsupported probe range: {long}.")
    );
    assert_eq!(parsed["result"], "failed");
    assert_eq!(
        failed_body("Failed to get probe config"),
        "{ \"result\": \"failed\", \"message\":\"Failed to get probe config\" }\n"
    );
}

// ---------------------------------------------------------------- example bodies

/// Every PUT body of the original's documentation (probes.init lines of its README and the Sermant
/// article's curl commands) is accepted.
#[test]
fn seed_document_examples_are_accepted() {
    let examples = [
        (
            "tcp",
            r#"{"cmd":{"probe":["tcp_rtt","tcp_windows","tcp_abnormal"]},"snoopers":{"proc_name":[{"comm":"java","cmdline":""}]},"params":{"report_event":1},"state":"running"}"#,
        ),
        (
            "baseinfo",
            r#"{"cmd":{"probe":["cpu","fs","host"]},"state":"running"}"#,
        ),
        (
            "tcp",
            r#"{"cmd":{"probe":["tcp_rtt"]},"snoopers":{"proc_name":[{"comm":"java"}]},"state":"running"}"#,
        ),
        (
            "baseinfo",
            r#"{"cmd":{"probe":["cpu","mem","nic","disk","net","fs","proc","host"]},"snoopers":{"proc_name":[{"comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60}}"#,
        ),
        (
            "tcp",
            r#"{"cmd":{"probe":["tcp_abnormal","tcp_rtt","tcp_windows","tcp_rate","tcp_rtt","tcp_sockbuf","tcp_stats"]},"snoopers":{"proc_name":[{"comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60,"l7_protocol":["http"]}}"#,
        ),
        (
            "socket",
            r#"{"cmd":{"probe":["tcp_socket"]},"snoopers":{"proc_name":[{"comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60,"l7_protocol":["http"]}}"#,
        ),
        (
            "sermant",
            r#"{"cmd":{"probe":["l7_bytes_metrics","l7_rpc_metrics","l7_rpc_trace"]},"snoopers":{"proc_name":[{"name":"sermantTest","comm":"java","cmdline":"dubbo"}]},"state":"running","params":{"report_period":60,"l7_protocol":["http"]}}"#,
        ),
    ];
    for (probe, body) in examples {
        let out = put(probe, body).unwrap_or_else(|e| panic!("{probe} {body}: {}", e.message));
        assert_eq!(out.state, Some(DesiredState::Running));
        assert!(out.params_changed && out.snoopers_changed || probe == "baseinfo");
    }
    // The duplicated tcp_rtt collapses; the order is the catalogue's.
    let out = put("tcp", examples[4].1).unwrap();
    assert_eq!(
        out.settings.subitems,
        [
            "tcp_abnormal",
            "tcp_windows",
            "tcp_rtt",
            "tcp_stats",
            "tcp_sockbuf",
            "tcp_rate"
        ]
    );
    assert_eq!(out.settings.params.l7_protocol, 1);
    assert_eq!(out.settings.subitem_mask(&kind("tcp")), 0x3f);
}

/// The examples of docs/reference/rest-api.md §2.1, §4, §6, §7.
#[test]
fn spec_examples() {
    // docs/reference/rest-api.md §4: a fresh tcp probe cannot be started with "state" alone …
    assert_eq!(
        message("tcp", r#"{"state":"running"}"#),
        "the snooper for tcp cannot be empty"
    );
    assert_eq!(
        message("container", r#"{"cmd":{"probe":[]},"state":"running"}"#),
        "the snooper for container cannot be empty"
    );
    // (only tcp, socket and container need snoopers, as in the original's source)
    assert!(put("proc", r#"{"cmd":{"probe":["proc_io"]},"state":"running"}"#).is_ok());
    // … but can with a non-empty whitelist or with global observation.
    let global = put(
        "tcp",
        r#"{"cmd":{"probe":["tcp_rtt"]},"blacklist":{},"state":"running"}"#,
    )
    .unwrap();
    assert_eq!(global.settings.snooper_mode, SnooperMode::Blacklist);
    assert!(global.settings.snoopers.is_empty());
    // docs/reference/rest-api.md §2.1: the docs' trailing comma fails as written.
    assert_eq!(
        message(
            "io",
            r#"{"cmd":{"probe":["io_trace"]},"params":{"sample_period": 200, },"state":"running"}"#
        ),
        "invalid json format"
    );
    // docs/reference/rest-api.md §4: the k8s template's `"cmd":{}` for jvm is a bad request.
    assert_eq!(
        message("jvm", r#"{"cmd":{},"snoopers":{"proc_id":[1]}}"#),
        "Bad request"
    );
    assert!(put(
        "jvm",
        r#"{"cmd":{"probe":[]},"snoopers":{"proc_id":[1]},"state":"running"}"#
    )
    .is_ok());
    // docs/reference/rest-api.md §6: state is compared case-insensitively.
    assert_eq!(
        put("virt", r#"{"state":"RUNNING"}"#).unwrap().state,
        Some(DesiredState::Running)
    );
    assert_eq!(
        put("virt", r#"{"state":"Stopped"}"#).unwrap().state,
        Some(DesiredState::Stopped)
    );
    // docs/reference/rest-api.md §4: unknown params keys are ignored as long as one key is known.
    let out = put(
        "virt",
        r#"{"params":{"metrics_type":["raw"],"report_period":10}}"#,
    )
    .unwrap();
    assert_eq!(out.settings.params.report_period, 10);
    // JsonCpp accepted comments.
    assert!(put("virt", "{/* start */ \"state\": \"running\" // now\n}").is_ok());
}

// ---------------------------------------------------------------- every message of docs/reference/rest-api.md §9

#[test]
fn every_put_message_of_section_9() {
    let custom_cmd =
        |probe: &str, bin: &str| format!(r#"{{"cmd":{{"probe":{probe},"bin":"{bin}"}}}}"#);
    let cases: Vec<(&str, String, &str)> = vec![
        ("virt", r#"{"other":1}"#.into(), "Bad request"),
        ("virt", r#"{}"#.into(), "Bad request"),
        ("virt", r#"{"params":{}}"#.into(), "Bad request"),
        ("tcp", "{".into(), "invalid json format"),
        (
            "tcp",
            r#"{"cmd":{"probe":[5]}}"#.into(),
            "Invalid probe range: must be string.",
        ),
        (
            "tcp",
            format!(r#"{{"cmd":{{"probe":["{}"]}}}}"#, "t".repeat(65)),
            "The lengh of probe name must range from 0 to 64.",
        ),
        (
            "tcp",
            r#"{"cmd":{"probe":[""]}}"#.into(),
            "The lengh of probe name must range from 0 to 64.",
        ),
        (
            "tcp",
            r#"{"cmd":{"probe":["tcp_nope"]}}"#.into(),
            "unsupported probe range: tcp_nope.",
        ),
        (
            "example",
            custom_cmd(r#"["sub_c"]"#, CUSTOM_BIN),
            "invalid external probe range: subprobe name error,name is sub_c.",
        ),
        (
            "tcp",
            r#"{"cmd":{"probe":[]}}"#.into(),
            "invalid probe ranges: at least one must be set",
        ),
        (
            "example",
            custom_cmd(r#"["sub_a"]"#, "/bin/sh"),
            "invalid custom probe bin path",
        ),
        (
            "example",
            custom_cmd("[null]", CUSTOM_BIN),
            "invalid probe range: must be string and not null.",
        ),
        (
            "tcp",
            r#"{"snoopers":{"pod_id":["nope"]}}"#.into(),
            "Error occurs when parsing snooper pod_id",
        ),
        (
            "tcp",
            r#"{"snoopers":{"proc_id":[1]},"blacklist":{"proc_id":[2]}}"#.into(),
            "snoopers and blacklist are mutually exclusive",
        ),
        (
            "socket",
            r#"{"params":{"report_period":60}}"#.into(),
            "the snooper for socket cannot be empty",
        ),
        (
            "virt",
            r#"{"params":{"report_period":0}}"#.into(),
            "params.report_period invalid value 0, must be in [5, 600]",
        ),
        (
            "virt",
            r#"{"params":{"report_period":"60"}}"#.into(),
            "params.report_period invalid data type",
        ),
        (
            "virt",
            r#"{"params":{"elf_path":"/usr/bin/x;reboot"}}"#.into(),
            "params.elf_path contains unsafe characters",
        ),
        (
            "virt",
            format!(r#"{{"params":{{"dev_name":"{}"}}}}"#, "e".repeat(40)),
            "params.dev_name value is too long, len must be less than 32",
        ),
        (
            "example",
            r#"{"params":{"custom_param":[{"p9":"v"}]}}"#.into(),
            "params.custom_param has unregistered param : p9.",
        ),
        (
            "example",
            r#"{"params":{"custom_param":[{"p1":""}]}}"#.into(),
            "params.custom_param param value must range from 0 to 64.",
        ),
        (
            "virt",
            r#"{"state":"paused"}"#.into(),
            "invalid state paused: must be running or stopped",
        ),
        (
            "virt",
            r#"{"state":1}"#.into(),
            "invalid state: must be string",
        ),
        (
            "virt",
            r#"{"params":{"l7_protocol":["http","smtp"]}}"#.into(),
            "params.l7_protocol invalid value: smtp",
        ),
    ];
    for (probe, body, want) in cases {
        assert_eq!(message(probe, &body), want, "{probe} {body}");
    }
    // Messages that belong to other layers (lookup, supervisor, control channel).
    let others = [
        (
            ApiError::invalid_probe_name("dnsmasq"),
            "invalid probe name dnsmasq",
        ),
        (
            ApiError::not_supported(),
            "not supported in the current version",
        ),
        (
            ApiError::too_many_external_probes(),
            "The number of external probes has over the threshold.",
        ),
        (
            ApiError::not_installed(std::path::Path::new("/opt/x/tcpprobe")),
            "failed to start probe: /opt/x/tcpprobe is not installed",
        ),
        (
            ApiError::unknown_entry("system_infos"),
            "failed to set entry for probe, unknown func: probe_main_system_infos",
        ),
        (
            ApiError::process_not_found(),
            "failed to find process of extend probe",
        ),
        (
            ApiError::ipc_send_failed(),
            "failed to send ipc msg to probe",
        ),
    ];
    for (err, want) in others {
        assert_eq!((err.status, err.message.as_str()), (400, want));
    }
}

// ---------------------------------------------------------------- hostile and malformed input

#[test]
fn malformed_json_and_wrong_roots() {
    for body in [
        "",
        "json",
        "{\"state\":\"running\",}",
        "[{\"state\":\"running\"}]",
        "\"running\"",
        "null",
        "{\"a\":1}{",
        "{\"state\":\"running\"} x",
    ] {
        assert_eq!(message("virt", body), "invalid json format", "{body:?}");
    }
}

#[test]
fn numbers_beyond_32_bits_are_range_errors() {
    assert_eq!(
        message("virt", r#"{"params":{"report_period":2147483648}}"#),
        "params.report_period invalid value 2147483648, must be in [5, 600]"
    );
    assert_eq!(
        message(
            "virt",
            r#"{"params":{"kafka_port":99999999999999999999999}}"#
        ),
        "params.kafka_port invalid value 99999999999999991611392, must be in [1, 65535]"
    );
    assert_eq!(
        message("virt", r#"{"params":{"report_period":-4294967236}}"#),
        "params.report_period invalid value -4294967236, must be in [5, 600]",
        "no wrap-around to 60"
    );
    assert_eq!(
        message("tcp", r#"{"snoopers":{"proc_id":[4294967297]}}"#),
        "Error occurs when parsing snooper proc_id"
    );
}

#[test]
fn wrong_json_types_never_crash() {
    let cases = [
        ("tcp", r#"{"cmd":[]}"#, "Bad request"),
        ("tcp", r#"{"cmd":{"probe":{"tcp_rtt":1}}}"#, "Bad request"),
        ("tcp", r#"{"cmd":{"probe":"tcp_rtt"}}"#, "Bad request"),
        ("tcp", r#"{"snoopers":[1]}"#, "Bad request"),
        ("tcp", r#"{"blacklist":"x"}"#, "Bad request"),
        (
            "tcp",
            r#"{"snoopers":{"proc_id":{"1":1}}}"#,
            "Error occurs when parsing snooper proc_id",
        ),
        (
            "tcp",
            r#"{"snoopers":{"proc_name":{"comm":"java"}}}"#,
            "Error occurs when parsing snooper proc_name",
        ),
        (
            "tcp",
            r#"{"snoopers":{"container_id":{"a":"b"}}}"#,
            "Error occurs when parsing snooper container_id",
        ),
        (
            "tcp",
            r#"{"snoopers":{"proc_id":[1],"custom_labels":["a"]}}"#,
            "Error occurs when parsing snooper custom_labels",
        ),
        (
            "tcp",
            r#"{"snoopers":{"proc_id":[1],"pod_labels":{"a":"b"}}}"#,
            "Error occurs when parsing snooper pod_labels",
        ),
        ("virt", r#"{"params":[]}"#, "Bad request"),
        (
            "virt",
            r#"{"params":{"l7_protocol":{"http":1}}}"#,
            "params.l7_protocol invalid data type",
        ),
        (
            "virt",
            r#"{"params":{"report_period":{"v":1}}}"#,
            "params.report_period invalid data type",
        ),
        (
            "virt",
            r#"{"state":["running"]}"#,
            "invalid state: must be string",
        ),
        ("virt", r#"{"state":null}"#, "invalid state: must be string"),
    ];
    for (probe, body, want) in cases {
        assert_eq!(message(probe, body), want, "{body}");
    }
}

#[test]
fn too_many_snoopers() {
    let ids: Vec<u32> = (1..=100).collect();
    let ok = json!({"snoopers": {"proc_id": ids}}).to_string();
    assert_eq!(put("tcp", &ok).unwrap().settings.snoopers.len(), 100);
    let names: Vec<String> = (0..150).map(|i| format!("c{i}")).collect();
    assert_eq!(
        message(
            "tcp",
            &json!({"blacklist": {"container_name": names}}).to_string()
        ),
        "Error occurs when parsing snooper container_name",
        "container_name counts toward the 100 (the original bounded it by 1000)"
    );
    let body =
        json!({"snoopers": {"proc_id": ids, "pod_id": ["0123456789abcdef0123456789abcdef"]}})
            .to_string();
    assert_eq!(
        message("tcp", &body),
        "Error occurs when parsing snooper pod_id"
    );
}

#[test]
fn shell_and_path_metacharacters() {
    for name in [
        "a|b", "a;reboot", "$(id)", "a&b", "a>b", "a<b", "`id`", "a'b", "a\\b", "a!b", "a?b",
        "a*b", "a[1]", "../etc", "/.hidden", "x\ny",
    ] {
        let body = json!({"snoopers": {"container_name": [name]}}).to_string();
        assert_eq!(
            message("tcp", &body),
            "Error occurs when parsing snooper container_name",
            "{name:?}"
        );
    }
    for path in [
        "/tmp/x;id",
        "/tmp/$(id)",
        "/tmp/`id`",
        "/opt/../etc/passwd",
        "/tmp/a|b",
        "/tmp/x\n",
    ] {
        for key in ["output_dir", "flame_dir", "elf_path"] {
            let body = json!({"blacklist": {}, "params": {key: path}}).to_string();
            assert_eq!(
                message("flamegraph", &body),
                format!("params.{key} contains unsafe characters"),
                "{key} {path:?}"
            );
        }
    }
    // A custom probe's cmd.bin must be exactly the declared path, never another program.
    for bin in [
        "/opt/custom/example.sh;reboot",
        "/opt/custom/../custom/example.sh",
        "/bin/sh",
        "",
        "/opt/custom/example.sh ",
    ] {
        let body = json!({"cmd": {"probe": ["sub_a"], "bin": bin}}).to_string();
        assert_eq!(
            message("example", &body),
            "invalid custom probe bin path",
            "{bin:?}"
        );
    }
    assert_eq!(
        message("example", r#"{"cmd":{"probe":["sub_a"]}}"#),
        "invalid custom probe bin path"
    );
    assert_eq!(
        message("example", r#"{"cmd":{"probe":["sub_a"],"bin":5}}"#),
        "invalid custom probe bin path"
    );
}

// ---------------------------------------------------------------- semantics

#[test]
fn a_failed_put_changes_nothing() {
    let base = put("tcp", r#"{"cmd":{"probe":["tcp_rtt"]},"snoopers":{"proc_id":[1],"custom_labels":{"app":"a"},"pod_labels":["tier"]}}"#)
        .unwrap()
        .settings;
    // Labels come before the failing params: the original kept them, we do not.
    let err = put_on(
        "tcp",
        &base,
        r#"{"cmd":{"probe":["tcp_stats"]},"snoopers":{"proc_id":[2],"custom_labels":{"app":"b"},"pod_labels":[]},"params":{"report_period":1}}"#,
        false,
    )
    .unwrap_err();
    assert_eq!(
        err.message,
        "params.report_period invalid value 1, must be in [5, 600]"
    );
    // The caller keeps `base`; nothing else was produced. The same body with a valid period
    // shows what would have changed.
    let ok = put_on(
        "tcp",
        &base,
        r#"{"cmd":{"probe":["tcp_stats"]},"snoopers":{"proc_id":[2],"custom_labels":{"app":"b"},"pod_labels":[]},"params":{"report_period":5}}"#,
        false,
    )
    .unwrap()
    .settings;
    assert_ne!(ok, base);
    assert_eq!(base.custom_labels["app"], "a");
    assert_eq!(base.pod_labels, ["tier"]);
}

#[test]
fn sections_merge_or_replace_as_documented() {
    let s1 = put("tcp", r#"{"cmd":{"probe":["tcp_rtt"]},"snoopers":{"proc_id":[1],"custom_labels":{"app":"a"}},"params":{"report_period":30,"sample_period":200}}"#)
        .unwrap()
        .settings;
    // params merge per key; cmd and snoopers stay when absent; labels stay when absent.
    let s2 = put_on("tcp", &s1, r#"{"params":{"sample_period":300}}"#, false)
        .unwrap()
        .settings;
    assert_eq!(
        (s2.params.report_period, s2.params.sample_period),
        (30, 300)
    );
    assert_eq!(s2.subitems, ["tcp_rtt"]);
    assert_eq!(s2.snoopers.proc_id, [1]);
    assert_eq!(s2.custom_labels.len(), 1);
    // snoopers replace the entry list; custom_labels {} clears.
    let s3 = put_on(
        "tcp",
        &s2,
        r#"{"snoopers":{"pod_id":["0123456789abcdef0123456789abcdef"],"custom_labels":{}}}"#,
        false,
    )
    .unwrap()
    .settings;
    assert!(s3.snoopers.proc_id.is_empty());
    assert_eq!(s3.snoopers.pod_id.len(), 1);
    assert!(s3.custom_labels.is_empty());
    // blacklist switches mode; snoopers with no entry next to it do not conflict.
    let s4 = put_on(
        "tcp",
        &s3,
        r#"{"snoopers":{},"blacklist":{"proc_id":[9]}}"#,
        false,
    )
    .unwrap()
    .settings;
    assert_eq!(s4.snooper_mode, SnooperMode::Blacklist);
    assert_eq!(s4.snoopers.proc_id, [9]);
    // An empty whitelist for a probe that needs snoopers is refused.
    assert_eq!(
        put_on("tcp", &s4, r#"{"snoopers":{"pod_id":[""]}}"#, false)
            .unwrap_err()
            .message,
        "the snooper for tcp cannot be empty"
    );
    // Thresholds can be switched off again.
    let s5 = put_on("tcp", &s4, r#"{"params":{"latency_thr":100}}"#, false)
        .unwrap()
        .settings;
    let s6 = put_on("tcp", &s5, r#"{"params":{"latency_thr":0}}"#, false)
        .unwrap()
        .settings;
    assert_eq!((s5.params.latency_thr, s6.params.latency_thr), (100, 0));
}

#[test]
fn change_flags() {
    let body = r#"{"cmd":{"probe":["tcp_rtt"]},"snoopers":{"proc_id":[1]},"params":{"report_period":30},"state":"running"}"#;
    let first = put("tcp", body).unwrap();
    assert!(first.params_changed && first.snoopers_changed);
    let again = put_on("tcp", &first.settings, body, true).unwrap();
    assert!(
        !again.params_changed && !again.snoopers_changed,
        "a PUT that changes nothing"
    );
    let cmd_only = put_on(
        "tcp",
        &first.settings,
        r#"{"cmd":{"probe":["tcp_rate"]}}"#,
        true,
    )
    .unwrap();
    assert!(
        cmd_only.params_changed && !cmd_only.snoopers_changed,
        "sub-items count as params"
    );
    let mode_only = put_on(
        "tcp",
        &first.settings,
        r#"{"blacklist":{"proc_id":[1]}}"#,
        true,
    )
    .unwrap();
    assert!(
        !mode_only.params_changed && mode_only.snoopers_changed,
        "mode counts as snoopers"
    );
    let labels_only = put_on(
        "tcp",
        &first.settings,
        r#"{"snoopers":{"proc_id":[1],"custom_labels":{"a":"b"}}}"#,
        true,
    )
    .unwrap();
    assert!(!labels_only.params_changed && !labels_only.snoopers_changed);
    assert_eq!(labels_only.state, None);
}

#[test]
fn ringbuf_only_changes_while_stopped() {
    let base = put(
        "socket",
        r#"{"cmd":{"probe":["tcp_socket"]},"blacklist":{}}"#,
    )
    .unwrap()
    .settings;
    assert_eq!(
        put_on(
            "socket",
            &base,
            r#"{"params":{"ringbuf_map_size":8}}"#,
            true
        )
        .unwrap_err()
        .message,
        "params.ringbuf_map_size can only be changed when probe is stopped"
    );
    let stopped = put_on(
        "socket",
        &base,
        r#"{"params":{"ringbuf_map_size":8}}"#,
        false,
    )
    .unwrap();
    assert_eq!(stopped.settings.params.ringbuf_map_size, 8);
}

#[test]
fn probes_without_snoopers_ignore_both_sections() {
    // Even invalid snoopers are ignored, labels included (the original never parsed them).
    let out = put(
        "io",
        r#"{"cmd":{"probe":["io_err"]},"snoopers":{"proc_id":"x","custom_labels":{"a":"b"}},"blacklist":{"pod_id":["bad"]},"state":"running"}"#,
    )
    .unwrap();
    assert!(out.settings.snoopers.is_empty());
    assert!(out.settings.custom_labels.is_empty());
    assert_eq!(out.settings.snooper_mode, SnooperMode::Whitelist);
    assert!(!out.snoopers_changed);
}

#[test]
fn starting_needs_a_sub_item_when_the_probe_has_some() {
    assert_eq!(
        message("io", r#"{"state":"running"}"#),
        "invalid probe ranges: at least one must be set"
    );
    assert!(put("io", r#"{"state":"stopped"}"#).is_ok());
    assert!(put("virt", r#"{"state":"running"}"#).is_ok());
    assert!(put("flowtracer", r#"{"state":"running"}"#).is_ok());
}

#[test]
fn sub_items_match_case_insensitively_for_builtins() {
    let out = put("baseinfo", r#"{"cmd":{"probe":["CPU","Host","con"]}}"#).unwrap();
    assert_eq!(out.settings.subitems, ["cpu", "host", "con"]);
    assert_eq!(
        out.settings.subitem_mask(&kind("baseinfo")),
        0x1 | 0x80 | 0x100
    );
    assert_eq!(
        message("tcp", r#"{"cmd":{"probe":["tcp_rtt","cpu"]}}"#),
        "unsupported probe range: cpu."
    );
}

#[test]
fn custom_probes() {
    let start = format!(
        r#"{{"cmd":{{"probe":["sub_b"],"bin":"{CUSTOM_BIN}"}},"params":{{"custom_param":[{{"p2":"v2"}}],"sample_period":500}},"state":"running"}}"#
    );
    let out = put("example", &start).expect("custom probes start without snoopers");
    assert_eq!(out.settings.subitems, ["sub_b"]);
    assert_eq!(out.settings.subitem_mask(&kind("example")), 0b10);
    assert_eq!(out.settings.custom_params["p2"], "v2");
    assert_eq!(out.settings.params.sample_period, 500);
    assert_eq!(
        message("example", &start.replace("sub_b", "SUB_B")),
        "invalid external probe range: subprobe name error,name is SUB_B."
    );
    // They take snoopers of both kinds.
    let scoped = put_on(
        "example",
        &out.settings,
        r#"{"snoopers":{"proc_id":[5],"container_id":["abc"]}}"#,
        true,
    )
    .unwrap();
    assert!(scoped.snoopers_changed);
    assert_eq!(scoped.settings.snoopers.len(), 2);
    assert_eq!(
        get("example", &scoped.settings),
        format!(
            "{{\"cmd\":{{\"bin\":\"{CUSTOM_BIN}\",\"probe\":[\"sub_b\"]}},\"params\":{{\"cadvisor_port\":8083,\"custom_param\":[{{\"p2\":\"v2\"}}],\"dev_name\":\"\",\"report_event\":0,\"report_period\":60,\"res_lower_thr\":0,\"res_upper_thr\":0,\"sample_period\":500}},\"snoopers\":{{\"container_id\":[\"abc\"],\"container_name\":[],\"pod_id\":[],\"proc_id\":[5],\"proc_name\":[]}},\"state\":\"running\"}}\n"
        )
    );
}

// ---------------------------------------------------------------- GET

#[test]
fn get_of_a_never_configured_probe_is_empty() {
    assert_eq!(render_get(&kind("tcp"), None, &running()), "{}\n");
}

#[test]
fn get_renders_the_spec_shape_with_sorted_keys() {
    let out = put(
        "tcp",
        r#"{"cmd":{"probe":["tcp_rtt","tcp_abnormal"]},"snoopers":{"proc_id":[101],"proc_name":[{"comm":"app1","label":{"k":"v"}},{"comm":"app2","cmdline":"-jar x"}],"container_id":["0123456789abcdef"],"custom_labels":{"hidden":"yes"},"pod_labels":["hidden"]},"params":{"report_period":30,"latency_thr":100,"min_exec_dur":5,"profiling_channel":"kafka"},"state":"running"}"#,
    )
    .unwrap();
    assert_eq!(
        get("tcp", &out.settings),
        concat!(
            r#"{"cmd":{"bin":"/opt/gala-gopher/extend_probes/tcpprobe","probe":["tcp_abnormal","tcp_rtt"]},"#,
            r#""params":{"cluster_ip_backend":0,"dev_name":"","latency_thr":100,"report_cport":0,"report_event":0,"report_period":30,"res_lower_thr":0,"res_upper_thr":0,"ringbuf_map_size":1,"sample_period":5000},"#,
            r#""snoopers":{"container_id":["0123456789ab"],"container_name":[],"pod_id":[],"proc_id":[101],"#,
            r#""proc_name":[{"cmdline":"","comm":"app1","label":{"k":"v"}},{"cmdline":"-jar x","comm":"app2"}]},"#,
            r#""state":"running"}"#,
            "\n"
        )
    );
}

#[test]
fn get_shows_blacklist_and_empty_sections() {
    let settings = put("tcp", r#"{"cmd":{"probe":["tcp_rtt"]},"blacklist":{}}"#)
        .unwrap()
        .settings;
    let view = ProbeView {
        state: DesiredState::Stopped,
        runtime: None,
    };
    let body = render_get(&kind("tcp"), Some(&settings), &view);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["blacklist"], json!({}));
    assert!(v.get("snoopers").is_none());
    assert_eq!(v["state"], "stopped");
    let settings = put_on(
        "tcp",
        &settings,
        r#"{"blacklist":{"container_name":[""]}}"#,
        false,
    )
    .unwrap()
    .settings;
    let v: Value = serde_json::from_str(&get("tcp", &settings)).unwrap();
    assert_eq!(
        v["blacklist"],
        json!({"container_id": [], "container_name": [""], "pod_id": [], "proc_id": [], "proc_name": []})
    );
    // A probe that takes no snoopers shows an empty whitelist.
    let io = put("io", r#"{"cmd":{"probe":["io_count"]}}"#)
        .unwrap()
        .settings;
    let v: Value = serde_json::from_str(&get("io", &io)).unwrap();
    assert_eq!(v["snoopers"], json!({}));
}

#[test]
fn get_shows_the_params_of_each_probe() {
    let shown = |probe: &str| -> Vec<String> {
        let kind = kind(probe);
        let v: Value = serde_json::from_str(&render_get(
            &kind,
            Some(&ProbeSettings::new(&kind)),
            &running(),
        ))
        .unwrap();
        v["params"].as_object().unwrap().keys().cloned().collect()
    };
    let always = [
        "report_event",
        "report_period",
        "res_lower_thr",
        "res_upper_thr",
    ];
    let with = |extra: &[&str]| {
        let mut v: Vec<String> = always.iter().chain(extra).map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(shown("virt"), with(&[]));
    assert_eq!(shown("io"), with(&["sample_period", "dev_name"]));
    assert_eq!(
        shown("l7"),
        with(&["l7_protocol", "support_ssl", "cluster_ip_backend"])
    );
    assert_eq!(shown("socket"), with(&["ringbuf_map_size"]));
    assert_eq!(shown("baseinfo"), with(&["elf_path", "dev_name"]));
    assert_eq!(shown("nginx"), with(&["elf_path"]));
    assert_eq!(
        shown("flamegraph"),
        with(&[
            "pyroscope_server",
            "svg_period",
            "perf_sample_period",
            "multi_instance",
            "native_stack",
            "output_dir",
            "flame_dir"
        ])
    );
    assert_eq!(shown("kafka"), with(&["dev_name", "kafka_port"]));
    assert_eq!(shown("ksli"), with(&["dev_name", "continuous_sampling"]));
    assert_eq!(shown("postgre_sli"), with(&["dev_name"]));
    assert_eq!(shown("container"), with(&["cadvisor_port"]));
    assert_eq!(
        shown("tprofiling"),
        with(&[]),
        "profiling_channel, min_exec_dur, min_aggr_dur never shown"
    );
    assert_eq!(
        shown("example"),
        with(&["sample_period", "dev_name", "cadvisor_port", "custom_param"])
    );
}

#[test]
fn get_adds_the_runtime_object_when_known() {
    let settings = put("virt", r#"{"state":"running"}"#).unwrap().settings;
    let view = ProbeView {
        state: DesiredState::Running,
        runtime: Some(RuntimeView {
            status: "restarting",
            pid: None,
            restarts: 3,
            last_exit: Some("signal 9 (SIGKILL)".into()),
        }),
    };
    assert_eq!(
        render_get(&kind("virt"), Some(&settings), &view),
        concat!(
            r#"{"cmd":{"bin":"/opt/gala-gopher/extend_probes/virtualized_infos","probe":[]},"#,
            r#""params":{"report_event":0,"report_period":60,"res_lower_thr":0,"res_upper_thr":0},"#,
            r#""runtime":{"last_exit":"signal 9 (SIGKILL)","pid":null,"restarts":3,"status":"restarting"},"#,
            r#""snoopers":{},"state":"running"}"#,
            "\n"
        )
    );
}

/// What GET shows can be PUT back and yields the same settings (labels aside, never shown).
#[test]
fn get_output_round_trips_through_put() {
    let body = r#"{"cmd":{"probe":["tcp_rtt","tcp_delay"]},"snoopers":{"proc_id":[7],"proc_name":[{"comm":"^ja.a$","cmdline":"x","label":{"k":"v"}}],"pod_id":["01234567-89ab-cdef-0123-456789abcdef"],"container_id":["abcdef"],"container_name":["web"]},"params":{"sample_period":250,"drops_thr":20,"cluster_ip_backend":2,"report_cport":1,"ringbuf_map_size":4,"dev_name":"eth0"},"state":"running"}"#;
    let first = put("tcp", body).unwrap().settings;
    let shown = get("tcp", &first);
    let second = put("tcp", shown.trim_end()).unwrap().settings;
    assert_eq!(second, first);
    assert_eq!(get("tcp", &second), shown);
}

// ---------------------------------------------------------------- random bodies

const KEYS: &[&str] = &[
    "cmd",
    "snoopers",
    "blacklist",
    "params",
    "state",
    "probe",
    "bin",
    "proc_id",
    "proc_name",
    "pod_id",
    "container_id",
    "container_name",
    "custom_labels",
    "pod_labels",
    "comm",
    "cmdline",
    "label",
    "report_period",
    "sample_period",
    "latency_thr",
    "ringbuf_map_size",
    "l7_protocol",
    "svg_period",
    "output_dir",
    "elf_path",
    "dev_name",
    "profiling_channel",
    "custom_param",
    "p1",
    "kafka_port",
];

const WORDS: &[&str] = &[
    "running",
    "stopped",
    "tcp_rtt",
    "tcp_abnormal",
    "io_err",
    "sub_a",
    "sub_b",
    "http",
    "crpc",
    "local",
    "kafka",
    "java",
    "/tmp",
    "/",
    "/opt/custom/example.sh",
    "a;b",
    "(",
    ".*",
    "",
    "0123456789abcdef0123456789abcdef",
    "abcdef012345",
];

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(KEYS).prop_map(String::from),
        1 => "[a-z_]{0,6}",
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..700).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e40f64..1e40).prop_map(Value::from),
        proptest::sample::select(WORDS).prop_map(Value::from),
        "\\PC{0,10}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 80, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn check_put(probe: &str, json: &[u8], running: bool) -> Result<(), TestCaseError> {
    let kind = kind(probe);
    let current = ProbeSettings::new(&kind);
    match apply_put(&kind, &current, json, PutContext { running }) {
        Ok(out) => {
            let body = render_get(&kind, Some(&out.settings), &running_view());
            prop_assert!(
                serde_json::from_str::<Value>(&body).is_ok(),
                "GET is JSON: {body}"
            );
        }
        Err(e) => {
            prop_assert_eq!(e.status, 400);
            prop_assert!(!e.message.is_empty());
        }
    }
    Ok(())
}

fn running_view() -> ProbeView<'static> {
    running()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Structured random bodies: PUT never panics, fails only with 400, and what it accepts
    /// renders as valid JSON.
    #[test]
    fn random_structured_bodies_are_400_or_ok(
        sections in proptest::collection::vec((key(), json_value()), 0..6),
        probe in proptest::sample::select(&["tcp", "io", "flamegraph", "l7", "example", "virt", "sli"][..]),
        running in any::<bool>(),
    ) {
        let root: serde_json::Map<String, Value> = sections.into_iter().collect();
        let text = Value::Object(root).to_string();
        check_put(probe, text.as_bytes(), running)?;
    }

    /// Damaged bodies (bytes cut, replaced or inserted) behave the same.
    #[test]
    fn random_damaged_bodies_are_400_or_ok(
        sections in proptest::collection::vec((key(), json_value()), 1..4),
        cut in any::<proptest::sample::Index>(),
        junk in proptest::collection::vec(any::<u8>(), 0..4),
        probe in proptest::sample::select(&["tcp", "example", "virt"][..]),
    ) {
        let root: serde_json::Map<String, Value> = sections.into_iter().collect();
        let mut bytes = Value::Object(root).to_string().into_bytes();
        let at = cut.index(bytes.len() + 1);
        bytes.splice(at..at, junk);
        check_put(probe, &bytes, false)?;
        let mut prefixed = b"json=".to_vec();
        prefixed.extend_from_slice(&bytes);
        let json = strip_json_prefix(&prefixed).map_err(|e| TestCaseError::fail(e.message))?;
        check_put(probe, json, true)?;
    }

    /// Arbitrary bytes through the prefix rule and PUT.
    #[test]
    fn random_bytes_are_400_or_ok(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(json) = strip_json_prefix(&bytes) {
            check_put("tcp", json, false)?;
        }
        check_put("virt", &bytes, false)?;
    }
}
