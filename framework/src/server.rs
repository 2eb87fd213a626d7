//! The accept loop of every HTTP(S) listener of the daemon (metrics on `web_server`, REST on
//! `rest_api_server`): plain HTTP/1.1 or TLS 1.3 (see [`crate::tls`]) in front of a [`Handler`].
//!
//! One slow or failing peer never affects the others: each connection is its own task, the TLS
//! handshake and the request head have deadlines (the REST body has its own, see
//! [`crate::rest`]), each listener serves at most [`MAX_CONNECTIONS`] connections at a time
//! (the ones beyond are answered 503 and closed at once, so stalled clients can neither pile
//! up memory nor take the descriptors the other listener needs), and failures are logged
//! rate-limited (a port scanner must not flood the log) and counted in
//! `gala_gopher_daemon_http_connection_failures_total{server, stage}`.

use std::convert::Infallible;
use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::ratelimit::{RateLimiter, Verdict};

mod body;
pub use body::{advise_huge_pages, Chunks, COALESCE_BELOW};

/// Time a client gets to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time a client gets to send a complete request head (slow-loris guard).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections one listener serves at a time; `/metrics` and REST each have their own.
pub const MAX_CONNECTIONS: usize = 128;

/// What a plain-HTTP connection beyond [`MAX_CONNECTIONS`] gets before it is closed.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Connection failures logged at warn level per window; the rest go to debug and are counted.
const LOGGED_FAILURES: u32 = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);

/// Answers the requests of one listener.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request; errors are answered as HTTP statuses, never dropped connections.
    fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
    ) -> impl Future<Output = Response<Chunks>> + Send;
}

/// Serves `handler` on `listener` (over TLS when `tls` is given) until `shutdown` turns true or
/// its sender is dropped. `name` ("metrics server", "REST server") prefixes the log lines and is
/// the `server` label of the failure counter. Connections in flight are not waited for.
pub async fn serve<H: Handler>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) {
    let timeouts = Timeouts {
        handshake: TLS_HANDSHAKE_TIMEOUT,
        header: HEADER_READ_TIMEOUT,
        connections: MAX_CONNECTIONS,
    };
    serve_with(timeouts, name, listener, tls, handler, shutdown).await;
}

/// Deadlines of one connection and the connection limit (smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    handshake: Duration,
    header: Duration,
    connections: usize,
}

async fn serve_with<H: Handler>(
    timeouts: Timeouts,
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let failures = Arc::new(FailureLog::new(name));
    let slots = Arc::new(tokio::sync::Semaphore::new(timeouts.connections));
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning on the same error.
                    failures.report("accept", format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = stopped(&mut shutdown) => return,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            failures.report(
                "limit",
                format_args!("{} connections open: {peer} refused", timeouts.connections),
            );
            if tls.is_none() {
                // Best effort and never waiting: the socket buffer of a new connection is empty.
                let _ = stream.try_write(BUSY);
            }
            continue;
        };
        let handler = handler.clone();
        let tls = tls.clone();
        let failures = failures.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = tls else {
                return http(name, stream, peer, handler, timeouts.header).await;
            };
            match tokio::time::timeout(timeouts.handshake, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => http(name, stream, peer, handler, timeouts.header).await,
                Ok(Err(e)) => {
                    failures.report("tls", format_args!("TLS handshake with {peer} failed: {e}"))
                }
                Err(_) => failures.report(
                    "tls",
                    format_args!(
                        "TLS handshake with {peer} not done within {:?}",
                        timeouts.handshake
                    ),
                ),
            }
        });
    }
}

/// Resolves once `shutdown` is true or its sender is gone. The guard `wait_for` returns is not
/// `Send`, so it is dropped here rather than held inside a caller's `select!`.
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves HTTP/1.1 requests on one established connection.
async fn http<H, S>(
    name: &'static str,
    stream: S,
    peer: SocketAddr,
    handler: Arc<H>,
    header_timeout: Duration,
) where
    H: Handler,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(req).await) }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        // Peers that hang up or send garbage: their problem, not worth a warning.
        tracing::debug!("{name}: connection from {peer}: {e}");
    }
}

/// Rate-limited log of connection failures, shared by the connections of one listener.
struct FailureLog {
    name: &'static str,
    limiter: Mutex<RateLimiter>,
}

impl FailureLog {
    fn new(name: &'static str) -> Self {
        FailureLog {
            name,
            limiter: Mutex::new(RateLimiter::new(FAILURE_WINDOW, LOGGED_FAILURES)),
        }
    }

    fn report(&self, stage: &'static str, what: impl Display) {
        crate::selfmetrics::http_connection_failures(self.name, stage).increment(1);
        let verdict = self.limiter.lock().check(Instant::now());
        match verdict {
            Verdict::Log { suppressed: 0 } => tracing::warn!("{}: {what}", self.name),
            Verdict::Log { suppressed } => tracing::warn!(
                "{}: {what} ({suppressed} similar failures not logged)",
                self.name
            ),
            Verdict::Suppress => tracing::debug!("{}: {what}", self.name),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
