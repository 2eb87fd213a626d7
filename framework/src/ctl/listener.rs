//! The daemon's end of the control socket: binds `<run_dir>/gala_gopher_cmd.sock` (mode 0660
//! in a 0750 directory), reads each request with the codec of [`gopher_ctl::protocol`], lets a
//! [`CtlHandler`] answer and sends the reply. The daemon gives a client
//! [`IO_TIMEOUT`](gopher_ctl::IO_TIMEOUT) to send its request and as long to take the reply.

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gopher_ctl::{decode_request, os_text, CtlReply, CtlRequest, ProtocolError, IO_TIMEOUT};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use crate::ratelimit::{RateLimiter, Verdict};

/// Mode of the socket: the daemon's user and group only (the original's 10e402fb).
const SOCKET_MODE: u32 = 0o660;

/// Mode of a run directory this module creates.
const DIR_MODE: u32 = 0o750;

/// Connections served at once; further clients wait in the listen backlog.
const MAX_CONCURRENT: usize = 16;

/// Answers the requests of the control socket (the probe manager, in the daemon).
pub trait CtlHandler: Send + Sync + 'static {
    /// The text printed by `gopher-ctl`: a result JSON, a probe configuration or metrics.
    fn handle(self: Arc<Self>, req: CtlRequest) -> impl Future<Output = String> + Send;
}

/// Why the control socket cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CtlServerError {
    /// The socket's directory cannot be created.
    #[error("creating socket directory {}: {}", path.display(), os_text(error))]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Something else than a socket is at the path; it is left alone.
    #[error("{}: is a {kind}, not a socket; remove it or change paths.run_dir", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there.
        kind: &'static str,
    },
    /// Another process serves the socket.
    #[error("{}: another process is listening on this socket", path.display())]
    InUse {
        /// The path.
        path: PathBuf,
    },
    /// The path cannot be inspected or the stale socket removed.
    #[error("{}: {}", path.display(), os_text(error))]
    Stale {
        /// The path.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Binding or setting the mode failed.
    #[error("binding {}: {}", path.display(), os_text(error))]
    Bind {
        /// The path.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
}

/// A bound control socket; the socket file is removed when this is dropped.
#[derive(Debug)]
pub struct CtlListener {
    listener: UnixListener,
    path: PathBuf,
}

impl CtlListener {
    /// Binds `path` (inside a Tokio runtime): creates the directory (0750) if missing, replaces a
    /// stale socket left by a previous run, refuses any other kind of file or a socket somebody
    /// still listens on, and sets the socket's mode to 0660.
    pub fn bind(path: &Path) -> Result<Self, CtlServerError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                let create = |error| CtlServerError::CreateDir {
                    path: dir.to_owned(),
                    error,
                };
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(dir)
                    .map_err(create)?;
                // The umask may have taken bits away; the documented mode is 0750.
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
                    .map_err(create)?;
            }
        }
        remove_stale_socket(path)?;
        let bind = |error| CtlServerError::Bind {
            path: path.to_owned(),
            error,
        };
        let listener = UnixListener::bind(path).map_err(bind)?;
        let listener = CtlListener {
            listener,
            path: path.to_owned(),
        };
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(SOCKET_MODE))
            .map_err(bind)?;
        Ok(listener)
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Serves requests, several connections at once, until `shutdown` turns true (or its sender
    /// is dropped); then removes the socket file.
    pub async fn serve<H: CtlHandler>(self, handler: Arc<H>, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(Semaphore::new(MAX_CONCURRENT));
        let failures = Arc::new(Mutex::new(RateLimiter::new(Duration::from_secs(60), 10)));
        loop {
            let accepted = tokio::select! {
                accepted = async {
                    let permit = permits.clone().acquire_owned().await;
                    (permit, self.listener.accept().await)
                } => accepted,
                () = crate::server::stopped(&mut shutdown) => return,
            };
            let (stream, permit) = match accepted {
                (Ok(permit), Ok((stream, _))) => (stream, permit),
                (_, Err(e)) => {
                    log_failure(&failures, format_args!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                // The semaphore is never closed.
                (Err(_), Ok(_)) => return,
            };
            let handler = handler.clone();
            let failures = failures.clone();
            tokio::spawn(async move {
                connection(stream, handler, &failures).await;
                drop(permit);
            });
        }
    }
}

impl Drop for CtlListener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds `path` at once (see [`CtlListener::bind`]; call it inside a Tokio runtime) and returns
/// the future that serves `handler` until `shutdown`; a bind error is that future's result.
/// The future does not borrow `path`, so it can be spawned.
pub fn serve<H: CtlHandler>(
    path: &Path,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), CtlServerError>> + Send + 'static {
    let bound = CtlListener::bind(path);
    async move {
        bound?.serve(handler, shutdown).await;
        Ok(())
    }
}

/// Removes a socket file nobody listens on; refuses every other kind of file.
fn remove_stale_socket(path: &Path) -> Result<(), CtlServerError> {
    let stale = |error| CtlServerError::Stale {
        path: path.to_owned(),
        error,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(stale(e)),
    };
    let kind = meta.file_type();
    if !kind.is_socket() {
        let kind = if kind.is_file() {
            "regular file"
        } else if kind.is_dir() {
            "directory"
        } else if kind.is_symlink() {
            "symbolic link"
        } else {
            "special file"
        };
        return Err(CtlServerError::NotASocket {
            path: path.to_owned(),
            kind,
        });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(CtlServerError::InUse {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(stale(e)),
                _ => Ok(()),
            }
        }
        Err(e) => Err(stale(e)),
    }
}

/// One connection: read the request, let the handler answer, send the reply.
async fn connection<H: CtlHandler>(
    mut stream: UnixStream,
    handler: Arc<H>,
    failures: &Mutex<RateLimiter>,
) {
    let reply = match tokio::time::timeout(IO_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(req)) => {
            tracing::info!("gopher-ctl: {}", req.summary());
            CtlReply::Ok(handler.handle(req).await)
        }
        Ok(Err(ReadError::Protocol(e))) => {
            log_failure(failures, format_args!("bad request: {e}"));
            CtlReply::Error(e.to_string())
        }
        Ok(Err(ReadError::Io(e))) => {
            tracing::debug!("gopher-ctl: reading a request: {e}");
            return;
        }
        Err(_) => {
            log_failure(failures, format_args!("no request within {IO_TIMEOUT:?}"));
            CtlReply::Error(format!("no request within {} s", IO_TIMEOUT.as_secs()))
        }
    };
    let sent = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&reply.encode()).await?;
        stream.shutdown().await
    })
    .await;
    match sent {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("gopher-ctl: sending a reply: {e}"),
        Err(_) => log_failure(
            failures,
            format_args!("reply not taken within {IO_TIMEOUT:?}"),
        ),
    }
}

enum ReadError {
    Protocol(ProtocolError),
    Io(std::io::Error),
}

/// Reads until the buffer holds one complete request; never buffers more than the limits allow
/// plus one read.
async fn read_request(stream: &mut UnixStream) -> Result<CtlRequest, ReadError> {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let n = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
        if n == 0 {
            return Err(if buf.is_empty() {
                ReadError::Io(std::io::ErrorKind::UnexpectedEof.into())
            } else {
                ReadError::Protocol(ProtocolError::Truncated)
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(req) = decode_request(&buf).map_err(ReadError::Protocol)? {
            return Ok(req);
        }
    }
}

fn log_failure(limiter: &Mutex<RateLimiter>, what: std::fmt::Arguments<'_>) {
    let verdict = limiter.lock().check(Instant::now());
    match verdict {
        Verdict::Log { suppressed: 0 } => tracing::warn!("gopher-ctl socket: {what}"),
        Verdict::Log { suppressed } => {
            tracing::warn!("gopher-ctl socket: {what} ({suppressed} similar failures not logged)")
        }
        Verdict::Suppress => tracing::debug!("gopher-ctl socket: {what}"),
    }
}
