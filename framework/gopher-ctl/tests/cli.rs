//! The built `gopher-ctl` binary against a control socket served by the daemon's listener
//! (`gala_gopher::ctl::serve`): what it prints and its exit status (0 whenever the daemon
//! answered, 255 otherwise).
#![allow(clippy::unwrap_used)] // test code: a panic is the failure report

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use gala_gopher::ctl::{self, CtlHandler};
use gopher_ctl::CtlRequest;
use tokio::sync::watch;

/// Answers the way the probe manager will: JSON results, even for refusals.
struct Manager;

impl CtlHandler for Manager {
    async fn handle(self: Arc<Self>, req: CtlRequest) -> String {
        match req {
            CtlRequest::ProbeGet { name } if name == "tcp" => {
                "{\"cmd\":{\"probe\":[\"tcp_abnormal\"]},\"state\":\"running\"}".into()
            }
            CtlRequest::ProbeGet { .. } => {
                "{ \"result\": \"failed\", \"message\":\"Failed to get probe config\" }".into()
            }
            CtlRequest::ProbeSet { name, json } => {
                format!("{{ \"result\": \"success\", \"message\":\"{name} <- {json}\" }}\n")
            }
            CtlRequest::Metrics => String::new(),
        }
    }
}

fn gopher_ctl(socket: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gopher-ctl"));
    cmd.env_remove("GOPHER_CTL_SOCKET");
    if let Some(socket) = socket {
        cmd.arg("--socket").arg(socket);
    }
    cmd.args(args).output().expect("run gopher-ctl")
}

fn stdout(out: &Output) -> &str {
    std::str::from_utf8(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> &str {
    std::str::from_utf8(&out.stderr).unwrap()
}

#[test]
fn prints_the_answer_and_exits_0() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gala_gopher_cmd.sock");
    let (stop, shutdown) = watch::channel(false);
    // `serve` binds at once, so it is called inside the runtime.
    let server = {
        let _guard = rt.enter();
        rt.spawn(ctl::serve(&socket, Arc::new(Manager), shutdown))
    };

    let out = gopher_ctl(Some(&socket), &["probe", "get", "tcp"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{\"cmd\":{\"probe\":[\"tcp_abnormal\"]},\"state\":\"running\"}\n"
    );

    // A "failed" result is still a successful exchange.
    let out = gopher_ctl(Some(&socket), &["probe", "get", "nosuch"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Failed to get probe config"));

    let out = gopher_ctl(
        Some(&socket),
        &["probe", "set", "tcp", "{\"state\": \"running\"}"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "{ \"result\": \"success\", \"message\":\"tcp <- {\"state\": \"running\"}\" }\n"
    );

    // Nothing pending: nothing printed.
    let out = gopher_ctl(Some(&socket), &["metric"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    // The socket can come from the environment too.
    let out = Command::new(env!("CARGO_BIN_EXE_gopher-ctl"))
        .env("GOPHER_CTL_SOCKET", &socket)
        .args(["probe", "get", "tcp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    stop.send(true).unwrap();
    rt.block_on(server).unwrap().unwrap();
}

#[test]
fn missing_socket_exits_255_with_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("gala_gopher_cmd.sock");
    let out = gopher_ctl(Some(&socket), &["probe", "get", "tcp"]);
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(stdout(&out), "");
    assert_eq!(
        stderr(&out),
        format!(
            "gopher-ctl: cannot connect to {}: No such file or directory — is gala-gopher running?\n",
            socket.display()
        )
    );
}

#[test]
fn usage_errors_exit_255_and_help_exits_0() {
    for args in [
        &[][..],
        &["probe"][..],
        &["probe", "get"][..],
        &["probe", "set", "tcp"][..],
        &["probe", "del", "tcp"][..],
        &["metrics", "extra"][..],
    ] {
        let out = gopher_ctl(None, args);
        assert_eq!(out.status.code(), Some(255), "{args:?}");
        assert!(!stderr(&out).is_empty(), "{args:?}: a message on stderr");
    }
    let long = "n".repeat(65);
    let out = gopher_ctl(
        Some(Path::new("/nonexistent.sock")),
        &["probe", "get", &long],
    );
    assert_eq!(out.status.code(), Some(255));
    assert_eq!(
        stderr(&out),
        "gopher-ctl: probe name of 65 bytes exceeds the limit of 64 bytes\n"
    );

    let out = gopher_ctl(None, &["--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("probe"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("/var/run/gala_gopher/gala_gopher_cmd.sock"),
        "default socket shown: {}",
        stdout(&out)
    );
}
