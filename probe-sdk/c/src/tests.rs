//! The C ABI called the way a C probe calls it: the header's numbers, the struct layout, and
//! every misuse (NULL, bad UTF-8, refused records) answered with an error, never a crash.

use std::ffi::{c_char, CStr, CString};
use std::ptr::{null, null_mut};

use super::*;

const HEADER: &str = include_str!("../include/gala_probe.h");

const META: &str = r#"version = "1.0.0";
measurements: ({ table_name: "t"; entity_name: "e";
  fields: ({ name: "k"; type: "key"; }, { name: "l"; type: "label"; }, { name: "g"; type: "gauge"; }); });"#;

fn last_error() -> String {
    // SAFETY: the library returns a NUL-terminated string valid until the next failure.
    unsafe { CStr::from_ptr(gala_probe_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn cs(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// The `#define NAME value` lines of the header.
fn header_defines() -> Vec<(String, String)> {
    HEADER
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

#[test]
fn header_constants_match_the_library() {
    let expected = [
        ("GALA_WAKE_TIMEOUT", GALA_WAKE_TIMEOUT),
        ("GALA_WAKE_CONFIG", GALA_WAKE_CONFIG),
        ("GALA_WAKE_STOP", GALA_WAKE_STOP),
        ("GALA_SEV_INFO", GALA_SEV_INFO),
        ("GALA_SEV_WARN", GALA_SEV_WARN),
        ("GALA_SEV_ERROR", GALA_SEV_ERROR),
        ("GALA_SEV_FATAL", GALA_SEV_FATAL),
        ("GALA_LEVEL_INFO", GALA_LEVEL_INFO),
        ("GALA_LEVEL_WARN", GALA_LEVEL_WARN),
        ("GALA_LEVEL_ERROR", GALA_LEVEL_ERROR),
    ];
    let defines = header_defines();
    for (name, value) in expected {
        let found = defines.iter().find(|(n, _)| n == name);
        assert_eq!(
            found.map(|(_, v)| v.as_str()),
            Some(value.to_string().as_str()),
            "{name}"
        );
    }
    let numeric = defines.iter().filter(|(_, v)| v.parse::<i64>().is_ok());
    assert_eq!(
        numeric.count(),
        expected.len(),
        "a new constant needs a check here"
    );
    // The Rust SDK's own numbers.
    assert_eq!(GALA_SEV_WARN as u32, Severity::Warn.number());
    assert_eq!(GALA_SEV_FATAL as u32, Severity::Fatal.number());
}

#[test]
fn every_function_of_the_header_is_exported() {
    for name in [
        "gala_probe_connect",
        "gala_probe_last_error",
        "gala_probe_wait",
        "gala_probe_running",
        "gala_probe_get",
        "gala_probe_get_u64",
        "gala_probe_has_subitem",
        "gala_probe_pids",
        "gala_probe_emit",
        "gala_probe_event",
        "gala_probe_status",
        "gala_probe_flush",
        "gala_probe_close",
    ] {
        assert!(HEADER.contains(&format!(" {name}(")), "{name} not declared");
        let source = include_str!("lib.rs");
        assert!(
            source.contains(&format!("extern \"C\" fn {name}(")),
            "{name} not defined"
        );
    }
}

/// Compiles a C program printing the layout of `struct gala_event` and compares it with
/// [`GalaEvent`] (`cc` is a test dependency: its absence fails the test).
#[test]
fn event_struct_layout_matches_the_header() {
    let dir = tempfile::tempdir().expect("tempdir");
    let src = dir.path().join("layout.c");
    let exe = dir.path().join("layout");
    std::fs::write(
        &src,
        r#"#include <stdio.h>
#include <stddef.h>
#include "gala_probe.h"
#define F(f) printf("%zu ", offsetof(struct gala_event, f))
int main(void) {
    struct gala_event init = GALA_EVENT_INIT;
    if (init.size != sizeof init || init.entity_name != NULL)
        return 1;
    F(size); F(entity_name); F(entity_id); F(metric); F(message); F(severity); F(pid);
    F(comm); F(ip); F(container_id); F(pod_id); F(device);
    printf("%zu\n", sizeof(struct gala_event));
    return 0;
}
"#,
    )
    .expect("write layout.c");
    let include = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let built = std::process::Command::new("cc")
        .args(["-std=c99", "-Wall", "-Werror", "-I", include, "-o"])
        .arg(&exe)
        .arg(&src)
        .status()
        .expect("cc (./dev.sh test installs it)");
    assert!(built.success(), "cc failed");
    let out = std::process::Command::new(&exe)
        .output()
        .expect("run layout");
    let expected = [
        std::mem::offset_of!(GalaEvent, size),
        std::mem::offset_of!(GalaEvent, entity_name),
        std::mem::offset_of!(GalaEvent, entity_id),
        std::mem::offset_of!(GalaEvent, metric),
        std::mem::offset_of!(GalaEvent, message),
        std::mem::offset_of!(GalaEvent, severity),
        std::mem::offset_of!(GalaEvent, pid),
        std::mem::offset_of!(GalaEvent, comm),
        std::mem::offset_of!(GalaEvent, ip),
        std::mem::offset_of!(GalaEvent, container_id),
        std::mem::offset_of!(GalaEvent, pod_id),
        std::mem::offset_of!(GalaEvent, device),
        std::mem::size_of::<GalaEvent>(),
    ]
    .map(|n| n.to_string())
    .join(" ");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), expected);
}

/// An INFO event of this library's size with the required fields and nothing else.
fn event(entity_name: &CString, entity_id: &CString, metric: &CString) -> GalaEvent {
    GalaEvent {
        size: std::mem::size_of::<GalaEvent>() as u32,
        entity_name: entity_name.as_ptr(),
        entity_id: entity_id.as_ptr(),
        metric: metric.as_ptr(),
        message: null(),
        severity: GALA_SEV_INFO,
        pid: 0,
        comm: null(),
        ip: null(),
        container_id: null(),
        pod_id: null(),
        device: null(),
    }
}

/// A program built with a newer header (a longer struct) is served while the fields this
/// library does not know are zero, and refused when one is set.
#[test]
fn a_newer_event_struct_is_taken_while_its_new_fields_are_zero() {
    #[repr(C)]
    struct Newer {
        ev: GalaEvent,
        added: u64,
    }
    let (e, id, m) = (cs("e"), cs("id"), cs("m"));
    let mut newer = Newer {
        ev: GalaEvent {
            size: std::mem::size_of::<Newer>() as u32,
            ..event(&e, &id, &m)
        },
        added: 0,
    };
    // SAFETY: offline handle (no GALA_GOPHER_IPC_FD in the test environment); `newer` is
    // `size` bytes long.
    unsafe {
        let p = gala_probe_connect(null());
        assert!(!p.is_null(), "{}", last_error());
        assert_eq!(gala_probe_event(p, &newer.ev), 0, "{}", last_error());
        newer.added = 7;
        assert_eq!(gala_probe_event(p, &newer.ev), -1);
        assert!(last_error().contains("link a newer"), "{}", last_error());
        gala_probe_close(p);
    }
}

#[test]
fn a_null_probe_is_an_error_everywhere() {
    let path = cs("seq");
    let mut buf = [0 as c_char; 8];
    let mut n = 7u64;
    let mut pids = [0u32; 2];
    let value = cs("k");
    let values = [value.as_ptr()];
    // SAFETY: NULL handles are part of the contract; the other pointers are valid.
    unsafe {
        assert_eq!(gala_probe_wait(null_mut(), 1), GALA_WAKE_STOP);
        assert_eq!(last_error(), "probe is NULL");
        assert_eq!(gala_probe_running(null()), 0);
        assert_eq!(
            gala_probe_get(null(), path.as_ptr(), buf.as_mut_ptr(), buf.len()),
            -1
        );
        assert_eq!(gala_probe_get_u64(null(), path.as_ptr(), &mut n), -1);
        assert_eq!(n, 7, "out left alone");
        assert_eq!(gala_probe_has_subitem(null(), path.as_ptr()), 0);
        assert_eq!(gala_probe_pids(null(), pids.as_mut_ptr(), pids.len()), 0);
        assert_eq!(
            gala_probe_emit(null_mut(), path.as_ptr(), 1, values.as_ptr()),
            -1
        );
        assert_eq!(gala_probe_event(null_mut(), null()), -1);
        assert_eq!(gala_probe_flush(null_mut()), -1);
        gala_probe_status(null_mut(), GALA_LEVEL_INFO, null());
        gala_probe_close(null_mut());
    }
    assert_eq!(last_error(), "probe is NULL");
}

#[test]
fn a_panic_becomes_an_error() {
    let r = entry(-1, || -> Outcome<i32> { panic!("boom") });
    assert_eq!(r, -1);
    assert_eq!(last_error(), "internal error in the probe SDK: boom");
}

/// One offline probe (connect installs signal handlers and reads the environment once, so
/// all checks that need a probe share it).
#[test]
fn offline_probe_through_the_c_abi() {
    let dir = tempfile::tempdir().expect("tempdir");
    let meta = dir.path().join("t.meta");
    std::fs::write(&meta, META).expect("write meta");
    std::env::set_var(
        "GALA_GOPHER_CONFIG",
        r#"{"probeName":"cprobe","seq":"4","params":{"report_period":5,"report_event":true},
            "custom":{"subitems":["a"],"params":{"level":"3"}},
            "snoopers":[{"process":{"pid":42}},{"process":{"pid":7}}]}"#,
    );
    let meta_c = cs(meta.to_str().expect("utf-8 path"));
    // SAFETY: valid NUL-terminated path.
    let p = unsafe { gala_probe_connect(meta_c.as_ptr()) };
    std::env::remove_var("GALA_GOPHER_CONFIG");
    assert!(!p.is_null(), "connect: {}", last_error());

    // SAFETY: `p` is live until the close at the end; every other pointer is valid or NULL
    // as each case says.
    unsafe {
        assert_eq!(gala_probe_running(p), 1);

        // get: snprintf semantics.
        let mut buf = [0x55 as c_char; 5];
        let name = cs("probe_name");
        assert_eq!(gala_probe_get(p, name.as_ptr(), buf.as_mut_ptr(), 5), 6);
        assert_eq!(CStr::from_ptr(buf.as_ptr()).to_str().unwrap(), "cpro");
        assert_eq!(gala_probe_get(p, name.as_ptr(), null_mut(), 0), 6);
        assert_eq!(gala_probe_get(p, name.as_ptr(), null_mut(), 3), -1);
        let mut big = [0 as c_char; 64];
        for (path, want) in [
            ("pids", "42 7"),
            ("custom.params.level", "3"),
            ("custom.params.nope", ""),
            ("custom.subitems", "a"),
            ("params.report_period", "5"),
        ] {
            let c = cs(path);
            let n = gala_probe_get(p, c.as_ptr(), big.as_mut_ptr(), big.len());
            assert_eq!(n, want.len() as c_long, "{path}");
            assert_eq!(CStr::from_ptr(big.as_ptr()).to_str().unwrap(), want);
        }
        let unknown = cs("params.nope");
        assert_eq!(
            gala_probe_get(p, unknown.as_ptr(), big.as_mut_ptr(), big.len()),
            -1
        );
        assert!(last_error().contains("params.nope"), "{}", last_error());
        let not_utf8 = [0xffu8 as c_char, 0];
        assert_eq!(
            gala_probe_get(p, not_utf8.as_ptr(), big.as_mut_ptr(), big.len()),
            -1
        );
        assert!(last_error().contains("UTF-8"), "{}", last_error());

        // get_u64.
        let mut n = 0u64;
        for (path, want) in [
            ("seq", 4),
            ("params.report_event", 1),
            ("params.report_period", 5),
        ] {
            let c = cs(path);
            assert_eq!(gala_probe_get_u64(p, c.as_ptr(), &mut n), 0, "{path}");
            assert_eq!(n, want, "{path}");
        }
        let text = cs("probe_name");
        assert_eq!(gala_probe_get_u64(p, text.as_ptr(), &mut n), -1);
        assert_eq!(n, 5, "out left alone");
        assert_eq!(gala_probe_get_u64(p, text.as_ptr(), null_mut()), -1);

        // Sub-items and pids.
        let a = cs("a");
        let b = cs("b");
        assert_eq!(gala_probe_has_subitem(p, a.as_ptr()), 1);
        assert_eq!(gala_probe_has_subitem(p, b.as_ptr()), 0);
        let mut pids = [0u32; 1];
        assert_eq!(gala_probe_pids(p, pids.as_mut_ptr(), 1), 2);
        assert_eq!(pids, [42]);
        assert_eq!(gala_probe_pids(p, null_mut(), 0), 2);

        // emit: refused records leave nothing behind.
        let t = cs("t");
        let vals = [cs("k1"), cs("x y"), cs("1.5")];
        let ptrs: Vec<*const c_char> = vals.iter().map(|v| v.as_ptr()).collect();
        assert_eq!(gala_probe_emit(p, t.as_ptr(), 2, ptrs.as_ptr()), -1);
        assert!(last_error().contains("expected 3"), "{}", last_error());
        let bar = cs("a|b");
        let bad = [vals[0].as_ptr(), bar.as_ptr(), vals[2].as_ptr()];
        assert_eq!(gala_probe_emit(p, t.as_ptr(), 3, bad.as_ptr()), -1);
        assert!(last_error().contains("'|'"), "{}", last_error());
        let with_null = [vals[0].as_ptr(), null(), vals[2].as_ptr()];
        assert_eq!(gala_probe_emit(p, t.as_ptr(), 3, with_null.as_ptr()), -1);
        assert!(last_error().contains("value 2"), "{}", last_error());
        assert_eq!(gala_probe_emit(p, t.as_ptr(), 3, null()), -1);
        assert_eq!(gala_probe_emit(p, t.as_ptr(), 0, null()), -1);
        let other = cs("other");
        assert_eq!(gala_probe_emit(p, other.as_ptr(), 3, ptrs.as_ptr()), -1);
        assert!(
            last_error().contains("not in the probe's meta"),
            "{}",
            last_error()
        );
        assert_eq!(gala_probe_emit(p, t.as_ptr(), 3, ptrs.as_ptr()), 0);

        // event: required fields and the severity are checked.
        let (e, id, m, msg) = (cs("e"), cs("id"), cs("m"), cs("a | b"));
        let mut ev = GalaEvent {
            size: 0,
            message: msg.as_ptr(),
            severity: 12,
            ..event(&e, &id, &m)
        };
        // size: 0 (a forgotten initialiser) is refused; then this version's size.
        assert_eq!(gala_probe_event(p, &ev), -1);
        assert!(last_error().contains("size 0"), "{}", last_error());
        ev.size = std::mem::size_of::<GalaEvent>() as u32;
        assert_eq!(gala_probe_event(p, &ev), -1);
        assert!(last_error().contains("severity 12"), "{}", last_error());
        ev.severity = GALA_SEV_WARN;
        ev.metric = null();
        assert_eq!(gala_probe_event(p, &ev), -1);
        assert!(last_error().contains("metric is empty"), "{}", last_error());
        ev.metric = m.as_ptr();
        ev.ip = bar.as_ptr();
        assert_eq!(gala_probe_event(p, &ev), -1);
        ev.ip = null();
        assert_eq!(gala_probe_event(p, &ev), 0);

        gala_probe_status(p, 99, null());
        assert!(last_error().contains("level 99"), "{}", last_error());
        gala_probe_status(p, GALA_LEVEL_WARN, null());

        // Offline, nothing changes: the wait times out.
        assert_eq!(gala_probe_wait(p, 10), GALA_WAKE_TIMEOUT);
        assert_eq!(gala_probe_flush(p), 0);
        gala_probe_close(p);
    }
}
