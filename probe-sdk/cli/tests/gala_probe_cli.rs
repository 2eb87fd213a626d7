//! The `gala-probe` shell helper as a shell probe uses it: each command a separate process
//! sharing fd 3, whose state (newest configuration, partial frames, what the script has seen)
//! survives between invocations; and the checks of `emit`, `event` and `check`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use gala_ipc_proto::v1::{
    daemon_message, probe_message, DaemonMessage, Params, ProbeConfig, ProbeMessage,
};
use gala_ipc_proto::{encode, Encoding};

const META: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/probes/sdk_echo.meta"
);

/// The daemon's end of one probe's channel, and a state directory of its own.
struct Channel {
    daemon: UnixStream,
    probe: UnixStream,
    state: tempfile::TempDir,
    encoding: Encoding,
}

impl Channel {
    fn new(encoding: Encoding) -> Self {
        let (daemon, probe) = UnixStream::pair().expect("socketpair");
        Channel {
            daemon,
            probe,
            state: tempfile::tempdir().expect("tempdir"),
            encoding,
        }
    }

    /// `gala-probe ARGS` with the probe's end at fd 3, as the daemon starts a probe.
    fn run(&self, args: &[&str]) -> Output {
        let fd = self.probe.as_raw_fd();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_gala-probe"));
        cmd.args(args)
            .env("GALA_GOPHER_IPC_FD", "3")
            .env("GALA_GOPHER_IPC_ENCODING", self.encoding.as_str())
            .env("GALA_GOPHER_PROBE_NAME", "shprobe")
            .env("GALA_PROBE_STATE_DIR", self.state.path())
            .env_remove("GALA_GOPHER_CONFIG")
            .stdin(Stdio::null());
        // SAFETY: dup2 and fcntl are async-signal-safe and allocate nothing.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec set.
                let moved = if fd == 3 {
                    nix::libc::fcntl(3, nix::libc::F_SETFD, 0)
                } else {
                    nix::libc::dup2(fd, 3)
                };
                if moved < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd.output().expect("run gala-probe")
    }

    fn send(&self, config: ProbeConfig) {
        let frame = encode(
            &DaemonMessage {
                body: Some(daemon_message::Body::Config(config)),
            },
            self.encoding,
        )
        .expect("encode");
        (&self.daemon).write_all(&frame).expect("send");
    }

    /// Everything the helper has sent to the daemon so far.
    fn received(&self) -> Vec<ProbeMessage> {
        self.daemon.set_nonblocking(true).expect("nonblocking");
        let mut decoder = gala_ipc_proto::FrameDecoder::<ProbeMessage>::new(self.encoding);
        let mut buf = [0u8; 65536];
        loop {
            match std::io::Read::read(&mut &self.daemon, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => decoder.push(&buf[..n]),
            }
        }
        self.daemon.set_nonblocking(false).expect("blocking");
        std::iter::from_fn(|| decoder.next().expect("decode")).collect()
    }
}

fn config(seq: u64, period: u32) -> ProbeConfig {
    ProbeConfig {
        probe_name: "shprobe".into(),
        seq,
        change_flags: 2,
        params: Some(Params {
            report_period: period,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

#[test]
fn state_survives_between_invocations_in_both_encodings() {
    for encoding in [Encoding::Json, Encoding::Proto] {
        let ch = Channel::new(encoding);
        ch.send(config(1, 30));
        assert_eq!(stdout(&ch.run(&["config", "get", "seq"])), "1\n");
        assert_eq!(
            stdout(&ch.run(&["config", "get", "params.report_period"])),
            "30\n"
        );
        // The config was shown to the script, so wait does not report it again.
        assert_eq!(ch.run(&["wait", "0.2"]).status.code(), Some(0));

        // Hello once, then the status of the applied config once.
        let got = ch.received();
        assert_eq!(got.len(), 2, "{got:?}");
        match &got[0].body {
            Some(probe_message::Body::Hello(h)) => {
                assert!(h.sdk_version.starts_with("sh-"));
                assert_eq!(h.probe_name, "shprobe");
            }
            other => panic!("{other:?}"),
        }
        match &got[1].body {
            Some(probe_message::Body::Status(s)) => assert_eq!(s.config_seq, 1),
            other => panic!("{other:?}"),
        }

        // A change while the script sleeps wakes it at once (exit 10).
        let daemon = ch.daemon.try_clone().expect("clone");
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let frame = encode(
                &DaemonMessage {
                    body: Some(daemon_message::Body::Config(config(2, 5))),
                },
                encoding,
            )
            .expect("encode");
            // Split in two writes: the first invocation may see only half of the frame.
            let (a, b) = frame.split_at(frame.len() / 2);
            (&daemon).write_all(a).expect("send");
            std::thread::sleep(Duration::from_millis(100));
            (&daemon).write_all(b).expect("send");
        });
        let started = Instant::now();
        assert_eq!(ch.run(&["wait", "10"]).status.code(), Some(10));
        assert!(started.elapsed() < Duration::from_secs(3));
        sender.join().expect("sender");
        assert_eq!(
            stdout(&ch.run(&["config", "get", "params.report_period"])),
            "5\n"
        );
        assert_eq!(ch.run(&["wait", "0.1"]).status.code(), Some(0));

        // The daemon closing the channel means stop (exit 11).
        let Channel { daemon, .. } = &ch;
        daemon.shutdown(std::net::Shutdown::Both).expect("shutdown");
        assert_eq!(ch.run(&["wait", "5"]).status.code(), Some(11));
    }
}

#[test]
fn queued_configs_collapse_into_the_newest_keeping_their_flags() {
    let ch = Channel::new(Encoding::Json);
    ch.send(config(1, 30));
    assert_eq!(stdout(&ch.run(&["config", "get", "seq"])), "1\n");
    let mut snooper_change = config(2, 30);
    snooper_change.change_flags = 1;
    ch.send(snooper_change);
    ch.send(config(3, 10));
    assert_eq!(ch.run(&["wait", "5"]).status.code(), Some(10));
    assert_eq!(stdout(&ch.run(&["config", "get", "seq"])), "3\n");
    assert_eq!(stdout(&ch.run(&["config", "get", "change_flags"])), "3\n");
    let json = stdout(&ch.run(&["config", "json"]));
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["params"]["reportPeriod"], 10);
}

#[test]
fn emit_refuses_what_would_break_a_line() {
    let ch = Channel::new(Encoding::Json);
    let emit = |values: &[&str]| {
        let mut args = vec!["emit", "--meta", META, "sdk_echo"];
        args.extend_from_slice(values);
        ch.run(&args)
    };
    let ok = emit(&["sh", "p", "a,b", "none", "5", "-1", "2"]);
    assert_eq!(stdout(&ok), "|sdk_echo|sh|p|a,b|none|5|-1|2|\n");
    for (values, why) in [
        (
            &["sh", "p|q", "a", "none", "5", "0", "2"][..],
            "contains '|'",
        ),
        (&["sh", "p\nq", "a", "none", "5", "0", "2"], "contains '|'"),
        (&["sh", "p\rq", "a", "none", "5", "0", "2"], "contains '|'"),
        (&["", "p", "a", "none", "5", "0", "2"], "first value"),
        (
            &["sh", "p", "a", "none", "5", "0"],
            "expected 7 values, got 6",
        ),
        (&["sh", "p", "a", "none", "fast", "0", "2"], "not a number"),
    ] {
        let out = emit(values);
        assert_eq!(out.status.code(), Some(2), "{values:?}");
        assert!(out.stdout.is_empty(), "{values:?} wrote {:?}", out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{values:?}: {err}");
    }
    let out = ch.run(&["emit", "--meta", META, "other", "x"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in the probe's meta file"));
}

#[test]
fn event_escapes_its_message_and_refuses_separators_elsewhere() {
    let ch = Channel::new(Encoding::Json);
    let out = ch.run(&["event", "e", "id", "m", "warn", "a|b\nc", "--device", "sda"]);
    let line = stdout(&out);
    let parsed = gala_meta::parse_event(line.trim_end().as_bytes()).expect("valid event");
    assert_eq!(parsed.device, b"sda");
    assert!(
        line.trim_end().ends_with("WARN Entity(id) a/b c|"),
        "{line}"
    );
    for args in [
        &["event", "e|x", "id", "m", "warn", "x"][..],
        &["event", "e", "id", "m", "warn", "x", "--ip", "1\n2"],
        &["event", "e", "id", "m", "loud", "x"],
        &["event", "", "id", "m", "warn", "x"],
    ] {
        let out = ch.run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn check_reports_every_line_the_daemon_would_drop() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gala-probe"))
        .args(["check", "--meta", META])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"|sdk_echo|sh|p|a|none|5|0|2|\n[INFO] hello\n|sdk_echo|sh|p|\n|nope|1|\n|sdk_echo|sh|p|a|none|x|0|2|\n|event|e|id|m||||||||||\n",
        )
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<String> = BufReader::new(&out.stdout[..])
        .lines()
        .map(|l| l.expect("line"))
        .collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[0].starts_with("line 3: dropped (field_count)"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("line 4: dropped (unknown_table)"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("line 5: dropped (non_numeric)"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[3], "2 lines accepted, 3 dropped, 1 log text");
}

#[test]
fn offline_config_comes_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_gala-probe"))
        .args(["config", "get", "custom.params.level"])
        .env_remove("GALA_GOPHER_IPC_FD")
        .env(
            "GALA_GOPHER_CONFIG",
            r#"{"custom":{"params":{"level":"9"}}}"#,
        )
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "9\n");
    let out = Command::new(env!("CARGO_BIN_EXE_gala-probe"))
        .args(["config", "get", "params.report_period"])
        .env_remove("GALA_GOPHER_IPC_FD")
        .env_remove("GALA_GOPHER_CONFIG")
        .output()
        .expect("run");
    assert_eq!(stdout(&out), "60\n");
    let out = Command::new(env!("CARGO_BIN_EXE_gala-probe"))
        .args(["config", "get", "params.nope"])
        .env_remove("GALA_GOPHER_IPC_FD")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}
