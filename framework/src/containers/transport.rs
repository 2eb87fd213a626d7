//! HTTP over a runtime's unix socket: one connection per request (lookups are rare and cached),
//! every step under one deadline, bodies bounded. HTTP/1.1 for Docker and CRI-O; the HTTP/2
//! connection that [`super::grpc`] speaks on.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::HeaderMap;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

use super::error::{DecodeError, LookupError, Result};

/// Most bytes of a response body accepted from a runtime (an inspect answer is a few KiB).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// Runs `fut` to completion on a small runtime of its own, so that the blocking
/// [`super::ContainerLookup::lookup`] works from any thread; from inside a tokio runtime
/// (where blocking on another runtime is refused) it runs on a scoped thread.
pub fn block_on<F>(fut: F) -> std::io::Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let run = move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(fut))
    };
    if tokio::runtime::Handle::try_current().is_err() {
        return run();
    }
    std::thread::scope(|s| match s.spawn(run).join() {
        Ok(out) => out,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

/// Connects to `socket`.
pub async fn connect(socket: &Path) -> Result<TokioIo<UnixStream>> {
    UnixStream::connect(socket)
        .await
        .map(TokioIo::new)
        .map_err(|source| LookupError::Connect {
            socket: socket.to_path_buf(),
            source,
        })
}

/// `fut` under `timeout`, its expiry reported as [`LookupError::Timeout`] on `socket`.
pub async fn deadline<T>(
    socket: &Path,
    timeout: Duration,
    fut: impl Future<Output = Result<T>>,
) -> Result<T> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| {
            Err(LookupError::Timeout {
                socket: socket.to_path_buf(),
                timeout,
            })
        })
}

/// A response body read whole, with its trailers (gRPC status).
#[derive(Debug, Default)]
pub struct ReadBody {
    /// The data frames, concatenated.
    pub data: Bytes,
    /// The trailers, if any.
    pub trailers: Option<HeaderMap>,
}

/// Reads `body` up to [`MAX_BODY_BYTES`].
pub async fn read_body(socket: &Path, path: &str, mut body: Incoming) -> Result<ReadBody> {
    let mut data = BytesMut::new();
    let mut trailers = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|source| LookupError::Http {
            socket: socket.to_path_buf(),
            source,
        })?;
        match frame.into_data() {
            Ok(chunk) => {
                if data.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(LookupError::Decode {
                        socket: socket.to_path_buf(),
                        path: path.to_owned(),
                        reason: DecodeError::TooLarge(MAX_BODY_BYTES),
                    });
                }
                data.extend_from_slice(&chunk);
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers = Some(t);
                }
            }
        }
    }
    Ok(ReadBody {
        data: data.freeze(),
        trailers,
    })
}

/// `GET path` over HTTP/1.1 on `socket`: the body of a 200, `None` for a 404, an error for
/// anything else.
pub async fn http1_get(socket: &Path, path: &str, timeout: Duration) -> Result<Option<Bytes>> {
    deadline(socket, timeout, async {
        let http_err = |source| LookupError::Http {
            socket: socket.to_path_buf(),
            source,
        };
        let io = connect(socket).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(http_err)?;
        let conn = tokio::spawn(conn);
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|_| LookupError::InvalidRequest {
                socket: socket.to_path_buf(),
                path: path.to_owned(),
            })?;
        let response = sender.send_request(request).await.map_err(http_err)?;
        let status = response.status().as_u16();
        let result = match status {
            200 => Ok(Some(
                read_body(socket, path, response.into_body()).await?.data,
            )),
            404 => Ok(None),
            _ => Err(LookupError::Status {
                socket: socket.to_path_buf(),
                path: path.to_owned(),
                status,
            }),
        };
        conn.abort();
        result
    })
    .await
}
