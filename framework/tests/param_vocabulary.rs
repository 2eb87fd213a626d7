//! One vocabulary for probe parameters: the daemon's REST table, the control message's
//! `Params` (read through prost-reflect), the Python SDK's field list and the names the C SDK
//! answers `gala_probe_get(p, "params.<name>")` for are one list, with matching types.
//! (The daemon's own `Params` struct is tied to the proto by name at compile time: the
//! conversion in `manager/convert.rs` builds the wire record with field shorthands.)

use std::collections::BTreeSet;
use std::ffi::{c_char, CString};
use std::process::Command;

use gala_gopher::probes::params::{Rule, PARAM_TABLE, WIRE_ONLY_PARAMS};
use gala_ipc_proto::message_descriptor;
use gala_ipc_proto::prost_reflect::{FieldDescriptor, Kind};

/// How the Python SDK spells the type of a field (`_PARAMS_FIELDS` kinds).
fn python_kind(field: &FieldDescriptor) -> &'static str {
    match (field.kind(), field.is_list()) {
        (Kind::Uint32, false) => "u32",
        (Kind::Uint64, false) => "u64",
        (Kind::Bool, false) => "bool",
        (Kind::String, false) => "str",
        (Kind::String, true) => "strs",
        (kind, list) => panic!(
            "{}: no Python kind for {kind:?} (list: {list})",
            field.name()
        ),
    }
}

/// `(name, kind)` of every field of the Python SDK's `Params`, in its order.
fn python_fields() -> Vec<(String, String)> {
    let sdk = concat!(env!("CARGO_MANIFEST_DIR"), "/../probe-sdk/python");
    let out = Command::new("python3")
        .env("PYTHONPATH", sdk)
        .args([
            "-c",
            "import json, gala_probe; print(json.dumps(gala_probe._PARAMS_FIELDS))",
        ])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "python3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a JSON list of [name, kind]")
}

/// The names `gala_probe_get` answers among `candidates`, through the C ABI on an offline
/// probe (no daemon: the defaults).
fn c_sdk_answers<'a>(candidates: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    // SAFETY: NULL is allowed (the meta file is then discovered, or there is none).
    let p = unsafe { gala_probe::gala_probe_connect(std::ptr::null()) };
    assert!(!p.is_null(), "gala_probe_connect failed");
    let mut answered = BTreeSet::new();
    for name in candidates {
        let path = CString::new(format!("params.{name}")).expect("no NUL in a name");
        // SAFETY: `p` is live, `path` is NUL-terminated, and a NULL buffer of length 0 only
        // asks for the length.
        let len = unsafe {
            gala_probe::gala_probe_get(p, path.as_ptr(), std::ptr::null_mut::<c_char>(), 0)
        };
        if len >= 0 {
            answered.insert(name);
        }
    }
    // SAFETY: `p` came from connect and is not used again.
    unsafe { gala_probe::gala_probe_close(p) };
    answered
}

#[test]
fn rest_table_proto_python_and_c_sdk_name_the_same_parameters() {
    // The REST keys; `custom_param` travels apart, as the custom payload's map.
    let custom = message_descriptor("CustomPayload").expect("CustomPayload");
    assert!(custom
        .get_field_by_name("params")
        .is_some_and(|f| f.is_map()));
    let rest: Vec<_> = PARAM_TABLE
        .iter()
        .filter(|s| !matches!(s.rule, Rule::CustomParam))
        .collect();
    let rest_names: BTreeSet<&str> = rest.iter().map(|s| s.name).collect();
    let wire_only: BTreeSet<&str> = WIRE_ONLY_PARAMS.into_iter().collect();
    assert!(rest_names.is_disjoint(&wire_only), "{wire_only:?}");

    // The proto: the REST keys and the few wire-only fields, nothing else.
    let params = message_descriptor("Params").expect("Params");
    let mut proto: Vec<FieldDescriptor> = params.fields().collect();
    proto.sort_by_key(FieldDescriptor::number);
    let proto_names: BTreeSet<&str> = proto.iter().map(FieldDescriptor::name).collect();
    let expected: BTreeSet<&str> = rest_names.union(&wire_only).copied().collect();
    assert_eq!(
        proto_names, expected,
        "proto Params vs REST table + wire-only"
    );

    // ... with the types the REST rules imply: a 0/1 key is a bool on the wire.
    for spec in &rest {
        let field = params.get_field_by_name(spec.name).expect("checked above");
        let want = match spec.rule {
            Rule::Number(n) if (n.min, n.max) == (0, 1) => (Kind::Bool, false),
            Rule::Number(_) => (Kind::Uint32, false),
            Rule::Text(_) | Rule::ProfilingChannel => (Kind::String, false),
            Rule::L7Protocols => (Kind::String, true),
            Rule::CustomParam => unreachable!("filtered out"),
        };
        assert_eq!((field.kind(), field.is_list()), want, "{}", spec.name);
    }

    // The Python SDK: the same fields, in field-number order, with the same types.
    let python = python_fields();
    let want: Vec<(String, String)> = proto
        .iter()
        .map(|f| (f.name().to_owned(), python_kind(f).to_owned()))
        .collect();
    assert_eq!(python, want, "gala_probe._PARAMS_FIELDS vs proto Params");

    // The C SDK reads every one of them by name, and nothing spelt otherwise.
    let all: Vec<&str> = proto_names.iter().copied().collect();
    let answered = c_sdk_answers(all.iter().copied().chain(["l7_protocols", "period"]));
    assert_eq!(answered, proto_names, "names the C SDK answers");
}
