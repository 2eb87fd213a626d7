use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Barrier};
use tokio::task::JoinHandle;

use super::*;

fn get(name: &str) -> CtlRequest {
    CtlRequest::ProbeGet { name: name.into() }
}

fn set(name: &str, json: &str) -> CtlRequest {
    CtlRequest::ProbeSet {
        name: name.into(),
        json: json.into(),
    }
}

// --- codec ----------------------------------------------------------------------------------

#[test]
fn requests_round_trip() {
    for req in [
        get("tcp"),
        set(
            "baseinfo",
            "{\"cmd\": {\"probe\": [\"cpu\"]},\n \"state\": \"running\"}",
        ),
        set("custom probe ünï", ""),
        CtlRequest::Metrics,
    ] {
        let bytes = req.encode().unwrap();
        assert_eq!(decode_request(&bytes), Ok(Some(req.clone())), "{req:?}");
        for cut in 0..bytes.len() {
            assert_eq!(
                decode_request(&bytes[..cut]),
                Ok(None),
                "{req:?} cut at {cut}"
            );
        }
    }
}

#[test]
fn wire_form_is_the_documented_one() {
    assert_eq!(
        set("tcp", "{}").encode().unwrap(),
        b"GCTL1 probe-set 3 2\ntcp{}".to_vec()
    );
    assert_eq!(
        get("io").encode().unwrap(),
        b"GCTL1 probe-get 2 0\nio".to_vec()
    );
    assert_eq!(
        CtlRequest::Metrics.encode().unwrap(),
        b"GCTL1 metrics 0 0\n".to_vec()
    );
    assert_eq!(CtlReply::Ok("{}".into()).encode(), b"ok 2\n{}".to_vec());
    assert_eq!(CtlReply::Error("x".into()).encode(), b"error 1\nx".to_vec());
}

#[test]
fn encode_refuses_what_the_daemon_would() {
    assert_eq!(get("").encode(), Err(ProtocolError::EmptyName));
    assert_eq!(get(&"n".repeat(MAX_NAME)).encode().map(|_| ()), Ok(()));
    assert_eq!(
        get(&"n".repeat(MAX_NAME + 1)).encode(),
        Err(ProtocolError::TooLarge {
            field: "probe name",
            len: MAX_NAME + 1,
            max: MAX_NAME
        })
    );
    assert_eq!(get("a\nb").encode(), Err(ProtocolError::NameHasControl));
    let big = "x".repeat(MAX_CONFIG + 1);
    assert_eq!(
        set("tcp", &big).encode(),
        Err(ProtocolError::TooLarge {
            field: "probe configuration",
            len: MAX_CONFIG + 1,
            max: MAX_CONFIG
        })
    );
    assert!(
        set("tcp", &big[1..]).encode().is_ok(),
        "exactly 1 MiB is fine"
    );
}

#[test]
fn malformed_requests_are_refused_as_soon_as_possible() {
    let cases: &[(&[u8], ProtocolError)] = &[
        (
            b"GCTL2 metrics 0 0\n",
            ProtocolError::BadMagic("GCTL2".into()),
        ),
        (
            b"GCTL1 probe-del 3 0\ntcp",
            ProtocolError::UnknownOp("probe-del".into()),
        ),
        (
            b"GCTL1 metrics 0\n",
            ProtocolError::MalformedHeader("GCTL1 metrics 0".into()),
        ),
        (
            b"GCTL1 metrics  0 0\n",
            ProtocolError::MalformedHeader("GCTL1 metrics  0 0".into()),
        ),
        (
            b"GCTL1 probe-get +3 0\n",
            ProtocolError::BadLength {
                field: "probe name",
                value: "+3".into(),
            },
        ),
        (
            b"GCTL1 probe-set 3 99999999999\n",
            ProtocolError::BadLength {
                field: "probe configuration",
                value: "99999999999".into(),
            },
        ),
        // Refused from the header alone, before any of the announced bytes arrive.
        (
            b"GCTL1 probe-set 3 1048577\n",
            ProtocolError::TooLarge {
                field: "probe configuration",
                len: 1_048_577,
                max: MAX_CONFIG,
            },
        ),
        (
            b"GCTL1 probe-get 65 0\n",
            ProtocolError::TooLarge {
                field: "probe name",
                len: 65,
                max: MAX_NAME,
            },
        ),
        (
            b"GCTL1 metrics 3 0\ntcp",
            ProtocolError::Unexpected {
                op: "metrics",
                field: "probe name",
            },
        ),
        (
            b"GCTL1 probe-get 3 2\ntcp{}",
            ProtocolError::Unexpected {
                op: "probe-get",
                field: "probe configuration",
            },
        ),
        (b"GCTL1 probe-get 0 0\n", ProtocolError::EmptyName),
        (b"GCTL1 probe-get 3 0\nt\tp", ProtocolError::NameHasControl),
        (
            b"GCTL1 probe-get 2 0\n\xff\xfe",
            ProtocolError::NotUtf8("probe name"),
        ),
        (
            b"GCTL1 probe-set 3 2\ntcp\xff}",
            ProtocolError::NotUtf8("probe configuration"),
        ),
        (b"GCTL1 metrics 0 0\nmore", ProtocolError::TrailingBytes(4)),
    ];
    for (bytes, want) in cases {
        assert_eq!(
            decode_request(bytes).as_ref(),
            Err(want),
            "{:?}",
            String::from_utf8_lossy(bytes)
        );
    }
    let long = vec![b'G'; MAX_HEADER + 1];
    assert_eq!(decode_request(&long), Err(ProtocolError::HeaderTooLong));
    assert_eq!(decode_request(&long[..MAX_HEADER]), Ok(None));
}

#[test]
fn replies_round_trip_and_bad_ones_are_refused() {
    for reply in [
        CtlReply::Ok(String::new()),
        CtlReply::Ok("{ \"result\": \"failed\", \"message\":\"x\" }\n".into()),
        CtlReply::Error("bad request".into()),
    ] {
        let bytes = reply.encode();
        assert_eq!(decode_reply(&bytes), Ok(Some(reply.clone())));
        for cut in 0..bytes.len() {
            assert_eq!(decode_reply(&bytes[..cut]), Ok(None));
        }
    }
    assert_eq!(
        decode_reply(b"fine 0\n"),
        Err(ProtocolError::UnknownStatus("fine".into()))
    );
    assert_eq!(
        decode_reply(b"ok\n"),
        Err(ProtocolError::MalformedHeader("ok".into()))
    );
    assert_eq!(
        decode_reply(b"ok 999999999\n"),
        Err(ProtocolError::TooLarge {
            field: "reply",
            len: 999_999_999,
            max: MAX_REPLY
        })
    );
    assert_eq!(
        decode_reply(b"ok 1\nab"),
        Err(ProtocolError::TrailingBytes(1))
    );
    assert_eq!(
        decode_reply(b"ok 1\n\xff"),
        Err(ProtocolError::NotUtf8("reply"))
    );
}

proptest! {
    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn decoders_never_panic_behind_a_valid_header(
        head in prop::sample::select(vec![
            "GCTL1 probe-get 4 0\n", "GCTL1 probe-set 2 5\n", "GCTL1 metrics 0 0\n", "ok 5\n", "error 3\n",
        ]),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut bytes = head.as_bytes().to_vec();
        bytes.extend_from_slice(&tail);
        let _ = decode_request(&bytes);
        let _ = decode_reply(&bytes);
    }

    #[test]
    fn any_valid_request_round_trips(name in "[^\\p{Cc}]{1,16}", json in any::<String>()) {
        prop_assume!(name.len() <= MAX_NAME);
        for req in [get(&name), set(&name, &json)] {
            let bytes = req.encode().unwrap();
            prop_assert_eq!(decode_request(&bytes), Ok(Some(req)));
        }
    }

    #[test]
    fn any_reply_round_trips(text in any::<String>(), ok in any::<bool>()) {
        let reply = if ok { CtlReply::Ok(text) } else { CtlReply::Error(text) };
        prop_assert_eq!(decode_reply(&reply.encode()), Ok(Some(reply)));
    }
}

// --- server over a real socket ----------------------------------------------------------------

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
    assert_eq!(ask(&path, get("tcp")).await.unwrap(), "{\"probe\":\"tcp\"}");
    assert_eq!(
        ask(&path, set("tcp", "{\"state\": \"running\"}"))
            .await
            .unwrap(),
        "set tcp to {\"state\": \"running\"}"
    );
    assert_eq!(
        ask(&path, CtlRequest::Metrics).await.unwrap(),
        "gala_gopher_x 1\n"
    );
    let big = format!("\"{}\"", "j".repeat(MAX_CONFIG - 2));
    let answer = ask(&path, set("tcp", &big)).await.unwrap();
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
    let (a, b) = tokio::join!(ask(&path, get("slow")), ask(&path, get("slow")));
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
    assert_eq!(ask(&path, get("io")).await.unwrap(), "{\"probe\":\"io\"}");
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
    assert_eq!(ask(&path, get("tcp")).await.unwrap(), "{\"probe\":\"tcp\"}");
    server.shutdown().await;
}

#[test]
fn client_errors_say_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.sock");
    let err = request(&path, &CtlRequest::Metrics, Duration::from_secs(1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot connect to {}: No such file or directory — is gala-gopher running?",
            path.display()
        )
    );
    let err = request(&path, &get(""), Duration::from_secs(1)).unwrap_err();
    assert_eq!(err.to_string(), "probe name is empty");
}

#[test]
fn client_times_out_on_a_silent_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("silent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let err = request(&path, &CtlRequest::Metrics, Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, ClientError::TimedOut { .. }), "{err}");
}
