//! The listener over a real socket, with the client of `gopher-ctl`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gopher_ctl::{decode_reply, request, ClientError, CtlReply, CtlRequest, MAX_CONFIG};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Barrier};
use tokio::task::JoinHandle;

use super::listener::{serve, CtlHandler, CtlListener, CtlServerError};

/// Answers with what it was asked; requests for probe "slow" wait until two of them are in
/// flight, which only works if connections are served concurrently.
struct Answers {
    slow: Barrier,
}

impl CtlHandler for Answers {
    async fn handle(self: Arc<Self>, req: CtlRequest) -> String {
        match req {
            CtlRequest::ProbeGet { name } if name == "slow" => {
                self.slow.wait().await;
                "slow done".into()
            }
            CtlRequest::ProbeGet { name } => format!("{{\"probe\":\"{name}\"}}"),
            CtlRequest::ProbeSet { name, json } => format!("set {name} to {json}"),
            CtlRequest::Metrics => "gala_gopher_x 1\n".into(),
        }
    }
}

struct Running {
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), CtlServerError>>,
}

fn start(path: &Path) -> Running {
    let (stop, shutdown) = watch::channel(false);
    let handler = Arc::new(Answers {
        slow: Barrier::new(2),
    });
    let task = tokio::spawn(serve(path, handler, shutdown));
    Running { stop, task }
}

impl Running {
    async fn shutdown(self) {
        self.stop.send(true).unwrap();
        let result = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve returns on shutdown")
            .unwrap();
        assert!(result.is_ok(), "{result:?}");
    }
}

/// The blocking client, off the runtime's threads.
async fn ask(path: &Path, req: CtlRequest) -> Result<String, ClientError> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || request(&path, &req, Duration::from_secs(10)))
        .await
        .unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_every_request_kind_with_the_documented_modes() {
    let dir = tempfile::tempdir().unwrap();
    let run_dir = dir.path().join("run/gala_gopher");
    let path = run_dir.join("gala_gopher_cmd.sock");
    let server = start(&path);
    assert_eq!(
        ask(&path, CtlRequest::probe_get("tcp")).await.unwrap(),
        "{\"probe\":\"tcp\"}"
    );
    assert_eq!(
        ask(
            &path,
            CtlRequest::probe_set("tcp", "{\"state\": \"running\"}")
        )
        .await
        .unwrap(),
        "set tcp to {\"state\": \"running\"}"
    );
    assert_eq!(
        ask(&path, CtlRequest::Metrics).await.unwrap(),
        "gala_gopher_x 1\n"
    );
    let big = format!("\"{}\"", "j".repeat(MAX_CONFIG - 2));
    let answer = ask(&path, CtlRequest::probe_set("tcp", &big))
        .await
        .unwrap();
    assert_eq!(answer.len(), "set tcp to ".len() + MAX_CONFIG);
    assert_eq!(mode(&run_dir), 0o750);
    assert_eq!(mode(&path), 0o660);
    server.shutdown().await;
    assert!(!path.exists(), "socket removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_served_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let server = start(&path);
    let (a, b) = tokio::join!(
        ask(&path, CtlRequest::probe_get("slow")),
        ask(&path, CtlRequest::probe_get("slow"))
    );
    assert_eq!(a.unwrap(), "slow done");
    assert_eq!(b.unwrap(), "slow done");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_socket_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    // A previous run that died without cleaning up leaves the file behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let server = start(&path);
    assert_eq!(
        ask(&path, CtlRequest::probe_get("io")).await.unwrap(),
        "{\"probe\":\"io\"}"
    );
    assert_eq!(mode(&path), 0o660);
    server.shutdown().await;
}

#[tokio::test]
async fn live_socket_and_other_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.sock");
    let _other = std::os::unix::net::UnixListener::bind(&live).unwrap();
    let err = CtlListener::bind(&live).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: another process is listening on this socket",
            live.display()
        )
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "precious").unwrap();
    let err = CtlListener::bind(&file).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}: is a regular file, not a socket; remove it or change paths.run_dir",
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious");

    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    assert!(matches!(
        CtlListener::bind(&sub),
        Err(CtlServerError::NotASocket {
            kind: "directory",
            ..
        })
    ));
    // `serve` reports the same error as its result.
    let (_stop, shutdown) = watch::channel(false);
    let handler = Arc::new(Answers {
        slow: Barrier::new(2),
    });
    assert!(matches!(
        serve(&file, handler, shutdown).await,
        Err(CtlServerError::NotASocket { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_request_gets_an_error_reply_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ctl.sock");
    let server = start(&path);
    let mut raw = tokio::net::UnixStream::connect(&path).await.unwrap();
    raw.write_all(b"HELLO world 1 2\n").await.unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).await.unwrap();
    assert_eq!(
        decode_reply(&reply),
        Ok(Some(CtlReply::Error(
            "not a gopher-ctl request (expected \"GCTL1\", got \"HELLO\")".into()
        )))
    );
    // A client that hangs up mid-request.
    let mut cut = tokio::net::UnixStream::connect(&path).await.unwrap();
    cut.write_all(b"GCTL1 probe-set 3 10\ntcp{").await.unwrap();
    cut.shutdown().await.unwrap();
    let mut reply = Vec::new();
    cut.read_to_end(&mut reply).await.unwrap();
    assert_eq!(
        decode_reply(&reply),
        Ok(Some(CtlReply::Error(
            "connection closed before the end of the message".into()
        )))
    );
    assert_eq!(
        ask(&path, CtlRequest::probe_get("tcp")).await.unwrap(),
        "{\"probe\":\"tcp\"}"
    );
    server.shutdown().await;
}
