//! The accept loop with real sockets: plain HTTP, TLS 1.3, mutual TLS with run-time
//! certificates, and peers that misbehave.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, SupportedProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{serve, serve_with, Chunks, Handler, Timeouts, MAX_CONNECTIONS};
use crate::tls::test_pki::{Leaf, TestPki};

/// Answers every request with its method and path.
struct Echo;

impl Handler for Echo {
    async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Chunks> {
        let text = format!("{} {}", req.method(), req.uri().path());
        let mut resp = Response::new(Chunks::from(Bytes::from(text)));
        if req.uri().path() == "/teapot" {
            *resp.status_mut() = StatusCode::IM_A_TEAPOT;
        }
        resp
    }
}

/// A server under test; stops when dropped.
pub(crate) struct Running {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops the accept loop and waits until `serve` returned.
    pub async fn shutdown(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve returns on shutdown")
            .unwrap();
    }
}

/// Starts `serve` for `handler` on 127.0.0.1:0.
pub(crate) async fn start<H: Handler>(tls: Option<TlsAcceptor>, handler: Arc<H>) -> Running {
    start_with(None, tls, handler).await
}

async fn start_with<H: Handler>(
    timeouts: Option<Timeouts>,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, shutdown) = watch::channel(false);
    let task = match timeouts {
        None => tokio::spawn(serve("test server", listener, tls, handler, shutdown)),
        Some(t) => tokio::spawn(serve_with(
            t,
            "test server",
            listener,
            tls,
            handler,
            shutdown,
        )),
    };
    Running { addr, stop, task }
}

/// Sends `method path` with `Connection: close` and returns the whole raw response.
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
) -> std::io::Result<String> {
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.flush().await?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await?;
    Ok(String::from_utf8_lossy(&raw).into_owned())
}

/// A plain HTTP request.
pub(crate) async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
) -> std::io::Result<String> {
    exchange(TcpStream::connect(addr).await?, method, path).await
}

/// A client config trusting `pki`'s CA, limited to `versions`, presenting `cert` if given.
fn client(
    pki: &TestPki,
    versions: &[&'static SupportedProtocolVersion],
    cert: Option<&Leaf>,
) -> ClientConfig {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(pki.client_roots());
    match cert {
        Some(leaf) => {
            let (chain, key) = leaf.client_auth();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    }
}

/// `GET path` over TLS: the response, or the error of the handshake or of the exchange.
async fn https_get(addr: SocketAddr, config: ClientConfig, path: &str) -> std::io::Result<String> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let stream = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await?;
    exchange(stream, "GET", path).await
}

fn acceptor(pki: &TestPki, mtls: bool) -> TlsAcceptor {
    crate::tls::acceptor(&pki.server_config(mtls), "web_server")
        .unwrap()
        .unwrap()
}

fn assert_ok(resp: &std::io::Result<String>, body: &str) {
    let text = resp.as_ref().expect("exchange succeeds");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with(body), "{text}");
}

#[tokio::test]
async fn plain_http_is_served_until_shutdown() {
    let server = start(None, Arc::new(Echo)).await;
    assert_ok(&http_request(server.addr, "GET", "/a").await, "GET /a");
    let teapot = http_request(server.addr, "PUT", "/teapot").await.unwrap();
    assert!(teapot.starts_with("HTTP/1.1 418"), "{teapot}");
    let addr = server.addr;
    server.shutdown().await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "listener closed once serve returned"
    );
}

#[tokio::test]
async fn mtls_requires_a_certificate_signed_by_the_ca() {
    let pki = TestPki::new();
    let server = start(Some(acceptor(&pki, true)), Arc::new(Echo)).await;
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];

    let anonymous = https_get(server.addr, client(&pki, tls13, None), "/metrics").await;
    let err = anonymous.expect_err("a client without certificate is refused");
    assert!(
        err.to_string().contains("CertificateRequired"),
        "refused for the missing certificate: {err}"
    );

    let signed = https_get(
        server.addr,
        client(&pki, tls13, Some(&pki.client)),
        "/metrics",
    )
    .await;
    assert_ok(&signed, "GET /metrics");

    let stranger = https_get(
        server.addr,
        client(&pki, tls13, Some(&pki.stranger)),
        "/metrics",
    )
    .await;
    let err = stranger.expect_err("a certificate of another CA is refused");
    assert!(
        err.to_string().contains("UnknownCA") || err.to_string().contains("BadCertificate"),
        "refused for the unknown issuer: {err}"
    );

    let tls12 = https_get(
        server.addr,
        client(&pki, &[&rustls::version::TLS12], Some(&pki.client)),
        "/metrics",
    )
    .await;
    let err = tls12.expect_err("TLS 1.2 is refused");
    assert!(err.to_string().contains("ProtocolVersion"), "{err}");

    // None of the failures affected the listener.
    let again = https_get(server.addr, client(&pki, tls13, Some(&pki.client)), "/x").await;
    assert_ok(&again, "GET /x");
    server.shutdown().await;
}

#[tokio::test]
async fn without_ca_file_any_tls13_client_is_served() {
    let pki = TestPki::new();
    let server = start(Some(acceptor(&pki, false)), Arc::new(Echo)).await;
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];
    assert_ok(
        &https_get(server.addr, client(&pki, tls13, None), "/metrics").await,
        "GET /metrics",
    );
    let tls12 = https_get(
        server.addr,
        client(&pki, &[&rustls::version::TLS12], None),
        "/metrics",
    )
    .await;
    assert!(tls12.is_err(), "TLS 1.2 refused: {tls12:?}");
    // A client that speaks plain HTTP to the TLS port gets no HTTP answer.
    if let Ok(text) = http_request(server.addr, "GET", "/metrics").await {
        assert!(!text.starts_with("HTTP/"), "{text}");
    }
    assert_ok(
        &https_get(server.addr, client(&pki, tls13, None), "/after").await,
        "GET /after",
    );
    server.shutdown().await;
}

#[tokio::test]
async fn silent_peer_is_dropped_after_the_handshake_timeout_and_blocks_nobody() {
    let pki = TestPki::new();
    let timeouts = Timeouts {
        handshake: Duration::from_millis(300),
        header: Duration::from_secs(30),
        connections: MAX_CONNECTIONS,
    };
    let server = start_with(Some(timeouts), Some(acceptor(&pki, false)), Arc::new(Echo)).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    // Served while the silent peer holds its connection open.
    let tls13: &[&'static SupportedProtocolVersion] = &[&rustls::version::TLS13];
    assert_ok(
        &https_get(server.addr, client(&pki, tls13, None), "/busy").await,
        "GET /busy",
    );
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("the server closes the silent connection");
    assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    server.shutdown().await;
}

#[tokio::test]
async fn slow_request_head_is_dropped_after_the_header_timeout() {
    let timeouts = Timeouts {
        handshake: Duration::from_secs(10),
        header: Duration::from_millis(300),
        connections: MAX_CONNECTIONS,
    };
    let server = start_with(Some(timeouts), None, Arc::new(Echo)).await;
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut raw))
        .await
        .expect("the server gives up on the unfinished head");
    assert!(read.is_ok() || raw.is_empty(), "{read:?}");
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("200 OK"), "{text}");
    server.shutdown().await;
}

#[tokio::test]
async fn connections_beyond_the_limit_get_503_and_a_freed_slot_serves_again() {
    let timeouts = Timeouts {
        handshake: Duration::from_secs(10),
        header: Duration::from_secs(30),
        connections: 2,
    };
    let server = start_with(Some(timeouts), None, Arc::new(Echo)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(server.addr).await.unwrap();
        c.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        held.push(c);
    }
    // Both slots are taken once the server has accepted them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(server.addr).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut raw))
        .await
        .expect("refused at once")
        .ok();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_ok(&http_request(server.addr, "GET", "/a").await, "GET /a");
    server.shutdown().await;
}
