//! The legacy control channel end to end: a custom probe written in C against the original's
//! System V message queue (`tests/probes/legacy_ipc.c`, compiled here with the system `cc`),
//! declared `"ipc": "sysv"` in `gala-gopher-custom.json`, receives its configuration and
//! every change on the queue; it reports what it read as records, read back through
//! `/metrics`. The queue is the daemon's own (mode 0600), replaces a stale one, holds nothing
//! for a stopped probe, and is gone after the daemon exits.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use gala_e2e::{own_meta, repo_root, Daemon, Samples, Sandbox};

/// Position of the legacy probe in `gala-gopher-custom.json`: its message type is 102.
const INDEX: u32 = 2;
const ENV_KEY: &str = "GALA_GOPHER_LEGACY_IPC_PATH";

/// Compiles the probe into the sandbox's probe dir (warnings as errors), its meta beside it.
fn build_probe(sb: &Sandbox) -> PathBuf {
    let bin = sb.path().join("probes/legacy_ipc");
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1"])
        .arg(format!("-DCUSTOM_INDEX={INDEX}"))
        .arg("-o")
        .arg(&bin)
        .arg(repo_root().join("tests/probes/legacy_ipc.c"))
        .output()
        .expect("run cc");
    assert!(
        out.status.success(),
        "cc legacy_ipc.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).expect("chmod");
    std::fs::copy(
        repo_root().join("tests/probes/legacy_ipc.meta"),
        bin.with_extension("meta"),
    )
    .expect("copy meta");
    bin
}

/// A sandbox with custom probe `first` (socket only) first and `legacy` (`"ipc": "sysv"`,
/// sub-items alpha and beta, params threshold and mode) second; returns it with the key file.
fn sandbox(ipc: &str) -> (Sandbox, PathBuf) {
    let mut sb = Sandbox::new();
    // The test harness writes the json's keys sorted: "first" comes before "legacy".
    sb.add_custom_probe("first", "#!/bin/sh\nexec sleep 600\n", &own_meta("first"));
    let bin = build_probe(&sb);
    sb.declare_custom_probe("legacy", &bin, &["alpha", "beta"], &["threshold", "mode"]);
    let json = sb.path().join("gala-gopher-custom.json");
    let mut decl: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("read")).expect("json");
    decl["legacy"]["ipc"] = ipc.into();
    std::fs::write(&json, decl.to_string()).expect("write custom json");
    sb.write_config(
        "max_tables_num = 16; max_records_num = 100; max_metrics_num = 16; record_timeout = 60;",
        "supervisor = { stop_grace = 2; snooper_period = 1; };",
    );
    let key_file = sb.path().join("ipc-key");
    std::fs::write(&key_file, "").expect("key file");
    (sb, key_file)
}

fn ftok(path: &Path) -> libc::key_t {
    let c = CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: `c` is a valid NUL-terminated string.
    let key = unsafe { libc::ftok(c.as_ptr(), b'g' as libc::c_int) };
    assert_ne!(key, -1, "ftok {}", path.display());
    key
}

/// The queue of `key`, if there is one.
fn queue(key: libc::key_t) -> Option<libc::c_int> {
    // SAFETY: plain system call.
    let id = unsafe { libc::msgget(key, 0) };
    (id >= 0).then_some(id)
}

/// Removes the queue of its key when dropped, so that a failed test (its daemon killed)
/// leaves no queue behind.
struct RemoveQueue(libc::key_t);

impl Drop for RemoveQueue {
    fn drop(&mut self) {
        if let Some(id) = queue(self.0) {
            // SAFETY: IPC_RMID takes no buffer.
            unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
        }
    }
}

/// `IPC_STAT` of queue `id`: its mode bits and message count.
fn stat(id: libc::c_int) -> (u32, u64) {
    // SAFETY: msqid_ds is plain data; msgctl fills it.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid msqid_ds.
    let rc = unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) };
    assert_eq!(rc, 0, "IPC_STAT {id}");
    (u32::from(ds.msg_perm.mode) & 0o777, ds.msg_qnum as u64)
}

/// Gauge `field` of the probe's record in `s`.
fn gauge(s: &Samples, field: &str) -> Option<f64> {
    s.value(
        &format!("gala_gopher_legacy_ipc_{field}"),
        &[("index", &INDEX.to_string())],
    )
    .and_then(|v| v.parse().ok())
}

/// `cmd` of a PUT to the legacy probe enabling `items` (custom probes repeat their `bin`).
fn cmd(sb: &Sandbox, items: &[&str]) -> String {
    serde_json::json!({"bin": sb.path().join("probes/legacy_ipc"), "probe": items}).to_string()
}

/// The probe's record once `pred` accepts its gauges (by field name; NaN when absent):
/// its sub-items label and a lookup of its gauges.
fn record(
    d: &Daemon,
    what: &str,
    pred: impl Fn(&dyn Fn(&str) -> f64) -> bool,
) -> (String, impl Fn(&str) -> f64) {
    let s = d.wait_for(Duration::from_secs(10), what, |s| {
        gauge(s, "messages").is_some() && pred(&|f| gauge(s, f).unwrap_or(f64::NAN))
    });
    let subitems = s.find(
        "gala_gopher_legacy_ipc_messages",
        &[("index", &INDEX.to_string())],
    )[0]
    .labels["subitems"]
        .clone();
    (subitems, move |f: &str| gauge(&s, f).unwrap_or(f64::NAN))
}

#[test]
fn a_legacy_probe_reads_its_config_and_changes_from_the_sysv_queue() {
    let (sb, key_file) = sandbox("sysv");
    let key = ftok(&key_file);
    let _cleanup = RemoveQueue(key);
    // A stale queue of a crashed daemon, with a message for the probe: replaced at start.
    // SAFETY: plain system call.
    let stale = unsafe { libc::msgget(key, libc::IPC_CREAT | 0o600) };
    assert!(stale >= 0, "create the stale queue");
    let junk = [102i64.to_ne_bytes().as_slice(), b"junk"].concat();
    // SAFETY: `junk` is a long type followed by 4 bytes of text.
    let rc = unsafe { libc::msgsnd(stale, junk.as_ptr().cast(), 4, libc::IPC_NOWAIT) };
    assert_eq!(rc, 0, "queue a message on the stale queue");

    let key_path = key_file.to_str().expect("utf-8 path");
    let d = sb.start_with_env(&[(ENV_KEY, key_path)]);
    let id = queue(key).expect("the daemon's queue");
    assert_ne!(id, stale, "the stale queue was replaced");
    assert_eq!(
        stat(id),
        (0o600, 0),
        "mode 0600, empty until a probe starts"
    );

    let (status, body) = d.put(
        "legacy",
        &format!(
            r#"{{"cmd": {}, "params": {{"report_period": 7, "custom_param": [{{"threshold": "12"}}]}}, "blacklist": {{}}, "state": "running"}}"#,
            cmd(&sb, &["alpha"])
        ),
    );
    assert_eq!(status, 200, "{body}");
    let (subitems, v) = record(&d, "the first message", |v| v("report_period") == 7.0);
    assert_eq!(subitems, "alpha");
    assert_eq!(v("threshold"), 12.0);
    assert_eq!(v("flags"), 3.0, "a start sends SNOOPER_CHG | PARAMS_CHG");
    assert_eq!(v("mode"), 1.0, "blacklist");
    assert_eq!(v("malformed"), 0.0);
    let first = v("messages");

    // A parameter change: PARAMS_CHG only.
    let (status, body) = d.put(
        "legacy",
        &format!(
            r#"{{"cmd": {}, "params": {{"report_period": 9, "custom_param": [{{"threshold": "40"}}]}}}}"#,
            cmd(&sb, &["alpha", "beta"])
        ),
    );
    assert_eq!(status, 200, "{body}");
    let (subitems, v) = record(&d, "the params change", |v| v("report_period") == 9.0);
    assert_eq!(subitems, "alpha,beta");
    assert_eq!((v("threshold"), v("flags")), (40.0, 2.0));
    assert!(v("messages") > first);

    // A snooper change: the resolved pid, SNOOPER_CHG only.
    let own = d.pid();
    let (status, body) = d.put(
        "legacy",
        &format!(r#"{{"snoopers": {{"proc_id": [{own}]}}}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let (_, v) = record(&d, "the snooper change", |v| v("objects") == 1.0);
    assert_eq!(
        (v("first_pid"), v("flags"), v("mode")),
        (own as f64, 1.0, 0.0)
    );
    assert_eq!(v("malformed"), 0.0);

    // A PUT that changes nothing sends nothing.
    let before = v("messages");
    let (status, body) = d.put("legacy", r#"{"params": {"report_period": 9}}"#);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(1500));
    let (_, v) = record(&d, "no new message", |_| true);
    assert_eq!(v("messages"), before);

    // Stopped: changes are kept but nothing waits on the queue; the next start gets them.
    let (status, body) = d.put("legacy", r#"{"state": "stopped"}"#);
    assert_eq!(status, 200, "{body}");
    let (status, body) = d.put("legacy", r#"{"params": {"report_period": 11}}"#);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(stat(id).1, 0, "no message for a stopped probe");
    let (status, body) = d.put("legacy", r#"{"state": "running"}"#);
    assert_eq!(status, 200, "{body}");
    let (_, v) = record(&d, "the restart", |v| {
        v("report_period") == 11.0 && v("messages") == 1.0
    });
    assert_eq!((v("flags"), v("threshold"), v("objects")), (3.0, 40.0, 1.0));

    // The probe declared first without the option gets nothing on the queue.
    let (status, body) = d.put("first", r#"{"state": "running"}"#);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(stat(id).1, 0, "nothing queued for first (type 101)");

    let status = d.terminate();
    assert!(status.success(), "daemon exit: {status}");
    assert_eq!(queue(key), None, "the queue is removed at exit");
}

#[test]
fn without_the_option_there_is_no_queue() {
    let (sb, key_file) = sandbox("socket");
    let key = ftok(&key_file);
    let _cleanup = RemoveQueue(key);
    let key_path = key_file.to_str().expect("utf-8 path");
    let d = sb.start_with_env(&[(ENV_KEY, key_path)]);
    let body = format!(r#"{{"cmd": {}, "state": "running"}}"#, cmd(&sb, &["alpha"]));
    let (status, body) = d.put("legacy", &body);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(queue(key), None);
    drop(d);
}

#[test]
fn a_bad_ipc_value_stops_startup_naming_the_file() {
    let (sb, _) = sandbox("msgq");
    let out = sb.command().output().expect("run gala-gopher");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let json = sb.path().join("gala-gopher-custom.json");
    assert!(
        err.contains(&format!(
            // The harness writes the json on one line.
            "{}:1: probe \"legacy\": \"ipc\" must be \"socket\" or \"sysv\"",
            json.display()
        )),
        "{err}"
    );
}

#[test]
fn a_missing_key_file_stops_startup() {
    let (sb, key_file) = sandbox("sysv");
    std::fs::remove_file(&key_file).expect("rm key file");
    let mut cmd = sb.command();
    cmd.env(ENV_KEY, &key_file);
    let out = cmd.output().expect("run gala-gopher");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("ftok({}, 'g')", key_file.display())),
        "{err}"
    );
}
