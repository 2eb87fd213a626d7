//! Helpers shared by the end-to-end tests: a sandbox directory holding a complete daemon
//! installation (config, meta files, custom probes, run and log dirs), the real daemon
//! process started in it, and a small HTTP client and exposition parser; the gate between
//! the tests of one binary ([`gate`]) and what a test does when the machine lacks something
//! it needs ([`require`]). `docs/testing.md` describes how the suites are organised.

pub mod bench;
pub mod containers;
pub mod ebpf;
pub mod gate;
pub mod require;
pub mod runtimes;
pub mod sdk;
pub mod tansu;
pub mod tcp_peer;
pub mod workload;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary of this workspace, built next to the test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // Tests run from target/<profile>/deps/, benchmark binaries from target/<profile>/.
    let dir = exe.parent().expect("executable has a directory");
    let dir = if dir.ends_with("deps") {
        dir.parent().expect("deps has a parent")
    } else {
        dir
    };
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} not found: run `cargo build --workspace --bins` (same profile) before the tests",
        bin.display()
    );
    bin
}

/// The repository root (the workspace this crate is in).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// A child process killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `python3 -c <script>` child with piped stdin and stdout, killed and reaped on drop:
/// the scripted peers and workloads of the end-to-end tests.
pub struct Python {
    child: KillOnDrop,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Python {
    /// Starts `script` with the `python3` of `PATH`.
    pub fn spawn(script: &str) -> Python {
        Python::spawn_with("python3", script)
    }

    /// Starts `script` with the interpreter `python`.
    pub fn spawn_with(python: &str, script: &str) -> Python {
        let mut child = Command::new(python)
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{python}: {e}"));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        Python {
            child: KillOnDrop(child),
            stdin,
            stdout,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// The next line the script prints, trimmed (empty once it has exited).
    pub fn line(&mut self) -> String {
        use std::io::BufRead;
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("python3 output");
        line.trim().to_owned()
    }

    /// Writes `line` (and a newline) to the script's stdin.
    pub fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("python3 input");
        self.stdin.flush().expect("flush");
    }

    /// The child alone (its pipes closed), for a script that neither reads nor prints any
    /// more.
    pub fn into_child(self) -> KillOnDrop {
        self.child
    }
}

/// Starts Debian's `prometheus-node-exporter` (default collectors) on a free loopback port
/// and waits until it answers; `None` if it is not installed.
pub fn start_node_exporter() -> Option<(KillOnDrop, u16)> {
    let bin = [
        "/usr/bin/prometheus-node-exporter",
        "/usr/bin/node_exporter",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start node_exporter");
    let guard = KillOnDrop(child);
    poll_until(Duration::from_secs(10), 50, || {
        http_get(port, "/metrics")
            .map(|_| ())
            .map_err(|e| format!("node_exporter did not answer: {e}"))
    });
    Some((guard, port))
}

/// A free TCP port on 127.0.0.1, for a server a test starts later.
///
/// The port is below the kernel's ephemeral range (32768 and up by default), so no
/// client socket of a concurrent test can take it between this check and its use; the
/// candidates are spread by process id and a counter so parallel tests do not collide.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20000;
    const SPAN: u32 = 12000;
    let base = std::process::id().wrapping_mul(7919);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + base.wrapping_add(n.wrapping_mul(13)) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// A temp directory laid out like an installation; no root needed. It holds the shared side
/// of the binary's [`gate`] while it lives.
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Port of the metrics server.
    pub metrics_port: u16,
    /// Port of the REST server.
    pub rest_port: u16,
    /// The TLS keys of the `web_server` section [`Sandbox::write_config`] writes
    /// (`ssl_auth`, `private_key`, `cert_file`, `ca_file`); default `ssl_auth = "off";`.
    pub web_server_tls: String,
    /// The same keys for the `rest_api_server` section; default `ssl_auth = "off";`.
    pub rest_api_tls: String,
    custom: serde_json::Map<String, serde_json::Value>,
    /// Released last, once the directory is gone.
    _gate: gate::Guard,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    /// A fresh sandbox with empty meta and probe dirs.
    pub fn new() -> Self {
        // First: a test that must run alone may be running.
        let gate = gate::shared();
        // No leading '.': the daemon refuses paths containing "/." (the original's rule).
        let dir = tempfile::Builder::new()
            .prefix("gala-e2e-")
            .tempdir()
            .expect("tempdir");
        for sub in [
            "meta",
            "probes",
            "run",
            "log/metrics",
            "log/event",
            "log/meta",
            "log/debug",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(dir.path().join("machine_id"), "e2e-uuid\n").expect("machine_id");
        Sandbox {
            dir,
            metrics_port: free_port(),
            rest_port: free_port(),
            web_server_tls: r#"ssl_auth = "off";"#.to_owned(),
            rest_api_tls: r#"ssl_auth = "off";"#.to_owned(),
            custom: serde_json::Map::new(),
            _gate: gate,
        }
    }

    /// The sandbox root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `meta/<name>`.
    pub fn write_meta(&self, name: &str, content: &str) {
        std::fs::write(self.path().join("meta").join(name), content).expect("write meta");
    }

    /// Adds a custom probe `name` whose program is `script` (with a shebang) and whose meta
    /// file is `meta`; it is declared in the custom-probe json.
    pub fn add_custom_probe(&mut self, name: &str, script: &str, meta: &str) -> PathBuf {
        let bin = self.path().join("probes").join(format!("{name}.sh"));
        std::fs::write(&bin, script).expect("write probe");
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        std::fs::write(bin.with_extension("meta"), meta).expect("write probe meta");
        self.declare_custom_probe(name, &bin, &[], &[]);
        bin
    }

    /// Declares `bin` (already in place, its meta file beside it) as custom probe `name` with
    /// the given sub-items (`probe`) and parameter labels (`custom_param`).
    pub fn declare_custom_probe(
        &mut self,
        name: &str,
        bin: &Path,
        subitems: &[&str],
        params: &[&str],
    ) {
        self.custom.insert(
            name.into(),
            serde_json::json!({"bin": bin, "probe": subitems, "custom_param": params.join(",")}),
        );
        let json = self.path().join("gala-gopher-custom.json");
        std::fs::write(
            &json,
            serde_json::Value::Object(self.custom.clone()).to_string(),
        )
        .expect("write custom json");
        std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    }

    /// The events written so far to the event log (`log/event/gopher_event_*`), oldest first.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let dir = self.path().join("log/event");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        // The backup `.1` holds older lines than the current file.
        files.sort_by_key(|p| std::cmp::Reverse(p.extension().is_some()));
        files
            .iter()
            .flat_map(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                text.lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Waits up to `timeout` for an event that `pred` accepts; `what` names it in the panic.
    pub fn wait_event(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        poll_until(timeout, 100, || {
            self.events().into_iter().find(|e| pred(e)).ok_or_else(|| {
                format!(
                    "no event {what} in {}: {:?}",
                    self.path().join("log/event").display(),
                    self.events()
                )
            })
        })
    }

    /// Writes `probes.init`.
    pub fn write_probes_init(&self, content: &str) {
        std::fs::write(self.path().join("probes.init"), content).expect("write probes.init");
    }

    /// Writes `gala-gopher.conf` with the sandbox paths; `extra` is appended verbatim
    /// (libconfig allows a section only once, so pass sections this does not write).
    pub fn write_config(&self, imdb: &str, extra: &str) -> PathBuf {
        let p = self.path().display();
        let conf = format!(
            r#"global = {{ log_file_name = "gopher.log"; log_level = "info"; rest_api_on = true; }};
rest_api_server = {{ bind_addr = "127.0.0.1"; port = {rest_port}; {rest_tls} }};
metric = {{ out_channel = "web_server"; kafka_topic = "gala_gopher"; }};
event = {{ out_channel = "logs"; kafka_topic = "gala_gopher_event"; }};
meta = {{ out_channel = "logs"; kafka_topic = "gala_gopher_metadata"; }};
imdb = {{ {imdb} }};
web_server = {{ bind_addr = "127.0.0.1"; port = {port}; {tls} }};
logs = {{
  metric_total_size = 100;
  metric_dir = "{p}/log/metrics";
  event_dir = "{p}/log/event";
  meta_dir = "{p}/log/meta";
  debug_dir = "{p}/log/debug";
}};
paths = {{
  meta_dir = "{p}/meta";
  extend_probe_dir = "{p}/probes";
  probes_init = "{p}/probes.init";
  custom_probes = "{p}/gala-gopher-custom.json";
  run_dir = "{p}/run";
  machine_id_file = "{p}/machine_id";
}};
{extra}
"#,
            port = self.metrics_port,
            rest_port = self.rest_port,
            tls = self.web_server_tls,
            rest_tls = self.rest_api_tls,
        );
        let path = self.path().join("gala-gopher.conf");
        std::fs::write(&path, conf).expect("write config");
        path
    }

    /// A sandbox where built-in `tcp` and custom `echo_json` are both `ipc-echo-probe`, which
    /// reports the configuration it was sent ([`IPC_ECHO_META`]); snoopers are resolved every
    /// second, probes stop within 2 s, and `extra` is appended to the config.
    pub fn with_echo_probe(extra: &str) -> Sandbox {
        let mut sb = Sandbox::new();
        sb.write_meta("ipc_echo.meta", IPC_ECHO_META);
        let echo = workspace_bin("ipc-echo-probe");
        std::fs::copy(&echo, sb.path().join("probes/tcpprobe")).expect("install tcpprobe");
        sb.add_custom_probe(
            "echo_json",
            &format!("#!/bin/sh\nexec {}\n", echo.display()),
            &own_meta("echo_json"),
        );
        sb.write_config(
            "max_tables_num = 16; max_records_num = 100; max_metrics_num = 16; record_timeout = 60;",
            &format!("supervisor = {{ stop_grace = 2; snooper_period = 1; }};\n{extra}"),
        );
        sb
    }

    /// A sandbox with the baseinfo probe (`system_infos`) and its meta files installed, and a
    /// config that resolves snoopers every second and stops probes within 2 s.
    pub fn with_baseinfo() -> Sandbox {
        let sb = Sandbox::new();
        std::fs::copy(
            workspace_bin("system_infos"),
            sb.path().join("probes/system_infos"),
        )
        .expect("install system_infos");
        let metas = gala_baseinfo::SUBITEMS.iter().map(|s| s.meta);
        for (name, text) in metas.chain([gala_baseinfo::SELF_META]) {
            sb.write_meta(name, text);
        }
        sb.write_config(
            IMDB_DEFAULT,
            "supervisor = { stop_grace = 2; snooper_period = 1; };",
        );
        sb
    }

    /// Starts the daemon on the sandbox config and waits until `/metrics` answers.
    pub fn start(&self) -> Daemon {
        self.start_when(|port| http_get(port, "/metrics").is_ok())
    }

    /// Starts the daemon on the sandbox config and waits until `ready(metrics_port)` holds
    /// (for a metrics server that plain HTTP cannot reach).
    pub fn start_when(&self, ready: impl Fn(u16) -> bool) -> Daemon {
        self.spawn_until(self.command(), ready)
    }

    /// Starts the daemon like [`Sandbox::start`] with extra environment variables, which its
    /// probes inherit.
    pub fn start_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        let mut cmd = self.command();
        cmd.envs(env.iter().copied());
        self.spawn_until(cmd, |port| http_get(port, "/metrics").is_ok())
    }

    /// Spawns `cmd` (a [`Sandbox::command`]) and waits until `ready(metrics_port)` holds.
    fn spawn_until(&self, mut cmd: Command, ready: impl Fn(u16) -> bool) -> Daemon {
        let mut child = cmd.spawn().expect("spawn gala-gopher");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("gala-gopher exited at start ({status}): {err}");
            }
            if ready(self.metrics_port) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "gala-gopher did not serve /metrics"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon {
            child,
            port: self.metrics_port,
            rest_port: self.rest_port,
            run_dir: self.dir.path().join("run"),
            _gate: gate::shared(),
        }
    }

    /// The daemon command for this sandbox (stderr piped, environment without GOPHER_*).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(workspace_bin("gala-gopher"));
        cmd.arg("-c")
            .arg(self.path().join("gala-gopher.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, _) in std::env::vars() {
            if k.starts_with("GOPHER_") {
                cmd.env_remove(k);
            }
        }
        cmd
    }
}

/// A running daemon; killed when dropped. Like its sandbox, it holds the [`gate`] shared.
pub struct Daemon {
    child: Child,
    port: u16,
    rest_port: u16,
    /// The sandbox's `paths.run_dir`, where the daemon lists its cgroup directories.
    run_dir: PathBuf,
    _gate: gate::Guard,
}

impl Daemon {
    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET /metrics` body as sent, bytes and all; panics on a non-200 answer.
    pub fn scrape_bytes(&self) -> Vec<u8> {
        let (status, body) = http_request_bytes(self.port, "GET", "/metrics", b"").expect("scrape");
        assert_eq!(status, 200, "scrape status");
        body
    }

    /// `GET /metrics` body; panics on a non-200 answer.
    pub fn scrape(&self) -> String {
        let (status, body) = http_get(self.port, "/metrics").expect("scrape");
        assert_eq!(status, 200, "scrape status");
        body
    }

    /// Scrapes until `pred` holds for the parsed samples (or panics after `timeout`).
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&Samples) -> bool,
    ) -> Samples {
        poll_until(timeout, 100, || {
            let body = self.scrape();
            let samples = Samples::parse(&body);
            if pred(&samples) {
                Ok(samples)
            } else {
                // The last scrape's samples (at most 200) say what was there instead.
                let seen: Vec<&str> = body
                    .lines()
                    .filter(|l| !l.starts_with('#'))
                    .take(200)
                    .collect();
                Err(format!(
                    "timed out waiting for {what}; the last scrape:\n{}",
                    seen.join("\n")
                ))
            }
        })
    }

    /// `PUT /<probe>` with body `json=<json>`; returns status and body.
    pub fn put(&self, probe: &str, json: &str) -> (u16, String) {
        self.rest("PUT", probe, format!("json={json}").as_bytes())
    }

    /// `GET /<probe>` from the REST server; returns status and body.
    pub fn get(&self, probe: &str) -> (u16, String) {
        self.rest("GET", probe, b"")
    }

    /// A request to the REST server. The daemon opens its REST port after the metrics port
    /// that [`Sandbox::start`] waits for, so a refused connection is retried for a while.
    fn rest(&self, method: &str, probe: &str, body: &[u8]) -> (u16, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match http_request(self.rest_port, method, &format!("/{probe}"), body) {
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(50));
                }
                result => return result.unwrap_or_else(|e| panic!("{method} /{probe}: {e}")),
            }
        }
    }

    /// `GET /<probe>` parsed as JSON; panics unless the answer is 200 with JSON.
    pub fn probe_json(&self, probe: &str) -> serde_json::Value {
        let (status, body) = self.get(probe);
        assert_eq!(status, 200, "GET /{probe}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET /{probe}: {e}: {body}"))
    }

    /// Polls `GET /<probe>` until `pred` accepts the JSON (or panics after `timeout`).
    pub fn wait_probe(
        &self,
        probe: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        poll_until(timeout, 50, || {
            let v = self.probe_json(probe);
            if pred(&v) {
                Ok(v)
            } else {
                Err(format!("timed out waiting for {what}: {v}"))
            }
        })
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        self.child.wait().expect("wait")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_empty_cgroups(&self.run_dir);
    }
}

/// After a SIGKILL the daemon could not remove its cgroup directories (`<run_dir>/cgroups`
/// lists them): removes those its probes have left (they die with the daemon, within a
/// moment), so test runs do not pile up empty cgroups. Kills nothing: a process still there
/// is for the next daemon of the sandbox to sweep, as a test may check.
fn remove_empty_cgroups(run_dir: &Path) {
    let Ok(list) = std::fs::read_to_string(run_dir.join("cgroups")) else {
        return;
    };
    for base in list.lines().map(Path::new) {
        let probes: Vec<PathBuf> = std::fs::read_dir(base)
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default();
        for dir in probes {
            let deadline = Instant::now() + Duration::from_secs(1);
            while std::fs::remove_dir(&dir).is_err() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir(base);
    }
}

/// Runs `cmd` with `args` and returns its standard output, trimmed; panics with its standard
/// error when it cannot start or fails.
pub fn run_ok(cmd: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Calls `attempt` every `every_ms` until it returns `Ok`; panics with its last `Err` text
/// once `timeout` has passed.
pub fn poll_until<T>(
    timeout: Duration,
    every_ms: u64,
    mut attempt: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok(v) => return v,
            Err(why) => assert!(Instant::now() < deadline, "{why}"),
        }
        std::thread::sleep(Duration::from_millis(every_ms));
    }
}

/// A minimal HTTP/1.1 GET on 127.0.0.1; returns status and body.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    http_request(port, "GET", path, b"")
}

/// A minimal HTTP/1.1 request on 127.0.0.1; returns status and body (invalid UTF-8 as
/// U+FFFD: [`http_request_bytes`] has the bytes).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let (status, body) = http_request_bytes(port, method, path, body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// [`http_request`] with the body as the server sent it.
pub fn http_request_bytes(
    port: u16,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = memchr::memmem::find(&raw, b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("bad status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

/// The payload of a `Transfer-Encoding: chunked` body (Go servers such as node_exporter
/// send one when they do not know the length up front).
fn dechunk(mut body: &[u8]) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::other("bad chunked body");
    let mut out = Vec::with_capacity(body.len());
    loop {
        let eol = memchr::memmem::find(body, b"\r\n").ok_or_else(bad)?;
        let size_line = std::str::from_utf8(&body[..eol]).map_err(|_| bad())?;
        let rest = &body[eol + 2..];
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| bad())?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest.get(..size).ok_or_else(bad)?;
        out.extend_from_slice(chunk);
        body = rest
            .get(size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(bad)?;
    }
}

/// One sample of an exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Label pairs.
    pub labels: BTreeMap<String, String>,
    /// Value text.
    pub value: String,
}

/// The samples of one exposition (comments skipped).
#[derive(Debug, Clone, Default)]
pub struct Samples(pub Vec<Sample>);

impl Samples {
    /// Parses text exposition (label values may hold escaped quotes).
    pub fn parse(text: &str) -> Self {
        let mut out = Vec::new();
        for line in text.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, rest) = match line.find('{') {
                Some(i) => (&line[..i], &line[i..]),
                None => line.split_at(line.find(' ').unwrap_or(line.len())),
            };
            let mut labels = BTreeMap::new();
            let mut rest = rest;
            if let Some(body) = rest.strip_prefix('{') {
                let mut chars = body.char_indices().peekable();
                let mut key = String::new();
                let mut end = body.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '}' => {
                            end = i + 1;
                            break;
                        }
                        ',' => {}
                        '=' => {
                            chars.next(); // opening quote
                            let mut val = String::new();
                            while let Some((_, c)) = chars.next() {
                                match c {
                                    '\\' => match chars.next().map(|(_, c)| c) {
                                        Some('n') => val.push('\n'),
                                        Some(c) => val.push(c),
                                        None => {}
                                    },
                                    '"' => break,
                                    c => val.push(c),
                                }
                            }
                            labels.insert(std::mem::take(&mut key), val);
                        }
                        c => key.push(c),
                    }
                }
                rest = &body[end..];
            }
            let value = rest.split_whitespace().next().unwrap_or("").to_string();
            out.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Samples(out)
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.0
            .iter()
            .filter(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The value of the single sample matching `name` and `labels`, if exactly one matches.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<&str> {
        match self.find(name, labels).as_slice() {
            [one] => Some(one.value.as_str()),
            _ => None,
        }
    }
}

/// Whether process `pid` exists (zombies count as existing).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` is alive: it exists and is not a zombie waiting for its reaper.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// A meta file with one table of its own, `e2e_<name>`: every custom probe needs a meta file
/// and table names are unique, so probes that report into shared tables get this one.
pub fn own_meta(name: &str) -> String {
    format!(
        "version = \"1.0.0\";\nmeasurements: ({{ table_name: \"e2e_{name}\"; entity_name: \"e2e_{name}\";\n  fields: ({{ description: \"k\"; type: \"key\"; name: \"k\"; }}); }});\n"
    )
}

/// The table of `ipc-echo-probe` (`tests/src/bin/`), which reports the configuration it was
/// sent: encoding, snooper mode, sub-items, pids, change flags, sequence number, period.
pub const IPC_ECHO_META: &str = r#"
version = "1.0.0";
measurements: (
  { table_name: "ipc_echo"; entity_name: "ipc_echo";
    fields: (
      { description: "probe"; type: "key"; name: "probe"; },
      { description: "encoding of the channel"; type: "label"; name: "encoding"; },
      { description: "snooper mode"; type: "label"; name: "mode"; },
      { description: "enabled sub-items"; type: "label"; name: "subitems"; },
      { description: "process snoopers"; type: "label"; name: "pids"; },
      { description: "change flags"; type: "gauge"; name: "flags"; },
      { description: "message sequence number"; type: "gauge"; name: "seq"; },
      { description: "report period"; type: "gauge"; name: "report_period"; },
    ); },
);
"#;

/// A meta file with two tables for the demo probe: `demo_latency` (entity `demo_http`,
/// a histogram) and `demo_conn` (entity `demo_conn`, a counter and a gauge).
pub const DEMO_META: &str = r#"
# demo probe: one histogram table, one counter/gauge table
version = "1.0.0";
measurements:
(
    {
        table_name: "demo_latency";
        entity_name: "demo_http";
        fields:
        (
            { description: "server port"; type: "key"; name: "port"; },
            { description: "request method"; type: "label"; name: "method"; },
            { description: "request latency in ms"; type: "histogram"; name: "latency"; },
        );
    },
    {
        table_name: "demo_conn";
        entity_name: "demo_conn";
        fields:
        (
            { description: "connection id"; type: "key"; name: "conn"; },
            { description: "bytes sent"; type: "counter"; name: "tx_bytes"; },
            { description: "smoothed round-trip time"; type: "gauge"; name: "srtt"; },
        );
    },
);
"#;

/// Default `imdb` section body for tests.
pub const IMDB_DEFAULT: &str =
    "max_tables_num = 1024; max_records_num = 1024; max_metrics_num = 64; record_timeout = 60;";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    /// The `.rs` files of `dir`, by file stem.
    fn rust_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "rs"))
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
            .collect();
        names.sort();
        names
    }

    /// Every file of `e2e/` is a module of exactly one suite, and every suite of `suites/` is
    /// a test target: no end-to-end test is left out of `cargo test` (a file that is no
    /// module would not even be compiled).
    #[test]
    fn every_e2e_file_is_in_one_suite_and_every_suite_is_a_test_target() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut suite_of: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let suites = rust_files(&root.join("suites"));
        for suite in &suites {
            let text = std::fs::read_to_string(root.join("suites").join(format!("{suite}.rs")))
                .expect("suite file");
            for line in text.lines() {
                if let Some(module) = line
                    .trim()
                    .strip_prefix("#[path = \"../e2e/")
                    .and_then(|l| l.strip_suffix(".rs\"]"))
                {
                    suite_of
                        .entry(module.to_owned())
                        .or_default()
                        .push(suite.clone());
                }
            }
        }
        for file in rust_files(&root.join("e2e")) {
            match suite_of.get(&file).map(Vec::as_slice) {
                Some([_]) => {}
                Some(more) => panic!("e2e/{file}.rs is a module of several suites: {more:?}"),
                None => panic!("e2e/{file}.rs is in no suite: add it to one of suites/*.rs"),
            }
        }
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("Cargo.toml");
        for suite in &suites {
            assert!(
                manifest.contains(&format!("path = \"suites/{suite}.rs\"")),
                "suites/{suite}.rs is no [[test]] of tests/Cargo.toml"
            );
        }
    }
}
