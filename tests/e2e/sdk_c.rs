//! The C SDK under the real daemon. The C conformance probe (`tests/probes/sdk_echo.c`) and
//! the sockstat example probe (`probes/extends/sockstat/`) are compiled here with the system
//! `cc` against `gala_probe.h` and the `libgala_probe.a` of this build; then the conformance
//! check of every SDK runs on the first, and the second reports real socket counts.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gala_e2e::sdk::check_conformance;
use gala_e2e::{repo_root, workspace_bin, Samples, Sandbox, IMDB_DEFAULT};

/// The directory of this build's binaries, which holds `libgala_probe.a`.
fn sdk_lib_dir() -> PathBuf {
    let dir = workspace_bin("gala-gopher")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    assert!(
        dir.join("libgala_probe.a").is_file(),
        "{}/libgala_probe.a not found: run `cargo build --workspace --lib --bins` (or `cargo build -p gala-probe-c`) in the same profile first",
        dir.display()
    );
    dir
}

/// Runs `cmd` and panics with its output unless it succeeds.
fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `tests/probes/sdk_echo.c` into `dir`, warnings as errors.
fn build_sdk_echo(dir: &Path) -> PathBuf {
    let bin = dir.join("sdk_echo");
    let mut cc = Command::new("cc");
    cc.args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-O1", "-I"])
        .arg(repo_root().join("probe-sdk/c/include"))
        .arg("-o")
        .arg(&bin)
        .arg(repo_root().join("tests/probes/sdk_echo.c"))
        .arg(sdk_lib_dir().join("libgala_probe.a"))
        .args(["-lpthread", "-ldl", "-lm"]);
    run(cc, "cc sdk_echo.c");
    bin
}

/// Builds the sockstat probe with its own Makefile into `dir`, warnings as errors.
fn build_sockstat(dir: &Path) -> PathBuf {
    let mut make = Command::new("make");
    make.arg("-C")
        .arg(repo_root().join("probes/extends/sockstat"))
        .arg(format!(
            "SDK_INC={}",
            repo_root().join("probe-sdk/c/include").display()
        ))
        .arg(format!("SDK_LIB={}", sdk_lib_dir().display()))
        .arg(format!("BUILD_DIR={}", dir.display()))
        .arg("CFLAGS=-O1 -Werror");
    run(make, "make sockstat_probe");
    dir.join("sockstat_probe")
}

#[test]
fn c_sdk_conformance() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = build_sdk_echo(dir.path());
    check_conformance("c", &bin, &[]);
}

/// The sockstat probe run offline once on `proc_root`: its stdout.
fn sockstat_once(bin: &Path, proc_root: &Path) -> String {
    let meta = repo_root().join("probes/extends/sockstat/sockstat_probe.meta");
    let out = Command::new(bin)
        .arg("--once")
        .arg("--proc-root")
        .arg(proc_root)
        .env_remove("GALA_GOPHER_IPC_FD")
        .env_remove("GALA_GOPHER_CONFIG")
        .env("GALA_GOPHER_META", &meta)
        .stdin(Stdio::null())
        .output()
        .expect("run sockstat_probe");
    assert!(
        out.status.success(),
        "sockstat_probe --once: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "refused records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn sockstat_parses_the_fixture_and_degrades_without_sockstat6() {
    // No sandbox holds the gate here, and compiling must not meet a test running alone.
    let _gate = gala_e2e::gate::shared();
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = build_sockstat(dir.path());
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .expect("sysconf")
        .expect("page size") as u64;
    let fixture = repo_root().join("probes/extends/sockstat/testdata/proc");
    // The fixture has unknown lines and keys (MPTCP, `future`, `extra abc`): ignored.
    let all = format!("|sockstat_all|all|291|1|23|40|{}|{}|", 5 * page, 3 * page);
    assert_eq!(
        sockstat_once(&bin, &fixture),
        format!(
            "|sockstat_family|ipv4|17|6|0|1|2|8192|\n|sockstat_family|ipv6|5|4|0|2|0|0|\n{all}\n"
        )
    );

    // Without IPv6 the ipv6 row is left out, with one warning for the daemon log.
    let no_ipv6 = dir.path().join("proc");
    std::fs::create_dir_all(no_ipv6.join("net")).expect("mkdir");
    std::fs::copy(fixture.join("net/sockstat"), no_ipv6.join("net/sockstat")).expect("copy");
    let out = sockstat_once(&bin, &no_ipv6);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("[WARN] sockstat: ") && lines[0].contains("net/sockstat6"),
        "{out}"
    );
    assert_eq!(lines[1], "|sockstat_family|ipv4|17|6|0|1|2|8192|");
    assert_eq!(lines[2], all);
}

/// Value of `gala_gopher_sockstat_<field>{family}` as a number.
fn sockstat(s: &Samples, field: &str, family: &str) -> Option<f64> {
    s.value(
        &format!("gala_gopher_sockstat_{field}"),
        &[("family", family)],
    )
    .and_then(|v| v.parse().ok())
}

#[test]
fn sockstat_probe_reports_the_sockets_this_test_holds() {
    let mut sb = Sandbox::new();
    let bin = build_sockstat(&sb.path().join("probes"));
    std::fs::copy(
        repo_root().join("probes/extends/sockstat/sockstat_probe.meta"),
        sb.path().join("probes/sockstat_probe.meta"),
    )
    .expect("install meta");
    sb.declare_custom_probe("sockstat", &bin, &[], &[]);
    sb.write_config(IMDB_DEFAULT, "");

    // 1 listening + 2 x 20 connected IPv4 TCP sockets, open until the end of the test.
    const PAIRS: usize = 20;
    let listener = TcpListener::bind("127.0.0.1:0").expect("listen");
    let addr = listener.local_addr().expect("addr");
    let mut held = Vec::new();
    for _ in 0..PAIRS {
        let client = TcpStream::connect(addr).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        held.push((client, server));
    }
    let ours = (2 * PAIRS + 1) as f64;

    let d = sb.start();
    let body = format!(
        r#"{{"cmd":{{"bin":{},"probe":[]}},"params":{{"report_period":5}},"state":"running"}}"#,
        serde_json::to_string(&bin).expect("json")
    );
    let (status, text) = d.put("sockstat", &body);
    assert_eq!(status, 200, "PUT sockstat: {text}");

    let s = d.wait_for(Duration::from_secs(15), "sockstat series", |s| {
        sockstat(s, "tcp_inuse", "ipv4").is_some_and(|n| n >= ours)
            && sockstat(s, "tcp_alloc", "all").is_some()
    });
    for field in [
        "tcp_inuse",
        "udp_inuse",
        "udplite_inuse",
        "raw_inuse",
        "frag_inuse",
        "frag_memory_bytes",
    ] {
        assert!(sockstat(&s, field, "ipv4").is_some(), "{field} ipv4");
        if Path::new("/proc/net/sockstat6").exists() {
            assert!(sockstat(&s, field, "ipv6").is_some(), "{field} ipv6");
        }
    }
    for field in [
        "sockets_used",
        "tcp_orphan",
        "tcp_tw",
        "tcp_alloc",
        "tcp_mem_bytes",
        "udp_mem_bytes",
    ] {
        assert!(sockstat(&s, field, "all").is_some(), "{field} all");
    }
    assert!(sockstat(&s, "tcp_alloc", "all").unwrap_or(0.0) >= ours);
    assert!(sockstat(&s, "sockets_used", "all").unwrap_or(0.0) >= ours);
    let dropped: f64 = s
        .find(
            "gala_gopher_daemon_records_dropped_total",
            &[("probe", "sockstat")],
        )
        .iter()
        .map(|x| x.value.parse::<f64>().unwrap_or(0.0))
        .sum();
    assert_eq!(dropped, 0.0, "records dropped");

    // The C library greets the daemon as itself (same workspace version as this crate).
    let log = sb.path().join("log/debug/gopher.log");
    let hello = concat!("sdk \"c-", env!("CARGO_PKG_VERSION"), "\"");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains(hello)
    {
        assert!(Instant::now() < deadline, "no {hello} in {}", log.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(held);
}
