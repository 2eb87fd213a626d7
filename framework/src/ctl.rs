//! The local control socket of `gopher-ctl` (`<run_dir>/gala_gopher_cmd.sock`): the request and
//! reply codec, the daemon-side server and the client the `gopher-ctl` binary uses.
//!
//! The original's fixed 1 MiB binary record is replaced by a private, length-prefixed format
//! (only `gopher-ctl` and the daemon of the same build speak it; `init_probes.sh` depends on the
//! command line, not on the wire):
//!
//! ```text
//! request = "GCTL1 " op " " name-length " " payload-length LF name payload
//!           op: "probe-get" | "probe-set" | "metrics"
//!           name: the probe name, 1..=64 bytes of UTF-8 without control characters
//!                 (empty for "metrics")
//!           payload: the raw JSON of "probe-set" (no `json=` prefix), at most 1 MiB;
//!                 empty for the other ops
//! reply   = status " " payload-length LF payload
//!           status "ok": payload is the daemon's answer, printed as is by gopher-ctl
//!           status "error": the daemon could not read the request; payload says why
//! ```
//!
//! Lengths are decimal byte counts. One request per connection; the daemon closes the connection
//! after its reply. The daemon gives a client 60 s to send its request and 60 s to take the
//! reply; `gopher-ctl` waits at most 60 s for the whole exchange.

use std::future::Future;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{watch, Semaphore};

use crate::ratelimit::{RateLimiter, Verdict};

/// Where the daemon listens unless `paths.run_dir` moves it.
pub const DEFAULT_SOCKET: &str = "/var/run/gala_gopher/gala_gopher_cmd.sock";

/// Longest probe name: custom probe names may have 64 bytes (the original's 31 cut them off).
pub const MAX_NAME: usize = 64;

/// Largest `probe set` JSON, as the REST body limit.
pub const MAX_CONFIG: usize = 1 << 20;

/// Largest reply a client accepts (a metrics exposition can be large; a bound still protects
/// the client from a confused peer).
pub const MAX_REPLY: usize = 256 << 20;

/// Longest header line of a request or reply, newline excluded.
const MAX_HEADER: usize = 64;

/// Send and receive timeout of both ends.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// Mode of the socket: the daemon's user and group only (the original's 10e402fb).
const SOCKET_MODE: u32 = 0o660;

/// Mode of a run directory this module creates.
const DIR_MODE: u32 = 0o750;

/// Connections served at once; further clients wait in the listen backlog.
const MAX_CONCURRENT: usize = 16;

const MAGIC: &str = "GCTL1";

/// One command of `gopher-ctl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlRequest {
    /// `gopher-ctl probe get <name>`: the probe's configuration, as REST GET.
    ProbeGet {
        /// Probe name as in the REST path.
        name: String,
    },
    /// `gopher-ctl probe set <name> '<json>'`: as REST PUT, the JSON without `json=`.
    ProbeSet {
        /// Probe name as in the REST path.
        name: String,
        /// The raw JSON body.
        json: String,
    },
    /// `gopher-ctl metric`: the metrics text.
    Metrics,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtlReply {
    /// The daemon's answer (JSON result, probe configuration or metrics text).
    Ok(String),
    /// The daemon could not read the request; the text says why.
    Error(String),
}

/// Why bytes are not a valid request or reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// No newline within the first bytes.
    #[error("header line longer than {MAX_HEADER} bytes")]
    HeaderTooLong,
    /// The header is not UTF-8 or has the wrong number of fields.
    #[error("malformed header {0:?}")]
    MalformedHeader(String),
    /// A request from another protocol or version.
    #[error("not a gopher-ctl request (expected \"{MAGIC}\", got {0:?})")]
    BadMagic(String),
    /// Unknown operation.
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    /// Unknown reply status.
    #[error("unknown reply status {0:?}")]
    UnknownStatus(String),
    /// A length field that is not a plain decimal number.
    #[error("{field} length {value:?} is not a decimal number")]
    BadLength {
        /// Which length.
        field: &'static str,
        /// The text found.
        value: String,
    },
    /// A length beyond its limit.
    #[error("{field} of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// Which part.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A probe operation without a name.
    #[error("probe name is empty")]
    EmptyName,
    /// A control character in the name.
    #[error("probe name contains a control character")]
    NameHasControl,
    /// A part that must be empty for this operation is not.
    #[error("{op} takes no {field}")]
    Unexpected {
        /// The operation.
        op: &'static str,
        /// The part that should be empty.
        field: &'static str,
    },
    /// A part that must be text is not UTF-8.
    #[error("{0} is not valid UTF-8")]
    NotUtf8(&'static str),
    /// The peer closed the connection in the middle of a message.
    #[error("connection closed before the end of the message")]
    Truncated,
    /// Bytes after the end of the message (one request per connection).
    #[error("{0} bytes after the end of the message")]
    TrailingBytes(usize),
}

impl CtlRequest {
    fn op(&self) -> &'static str {
        match self {
            CtlRequest::ProbeGet { .. } => "probe-get",
            CtlRequest::ProbeSet { .. } => "probe-set",
            CtlRequest::Metrics => "metrics",
        }
    }

    /// The wire form; fails on a name or JSON the daemon would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        let (name, payload) = match self {
            CtlRequest::ProbeGet { name } => (name.as_str(), ""),
            CtlRequest::ProbeSet { name, json } => (name.as_str(), json.as_str()),
            CtlRequest::Metrics => ("", ""),
        };
        if !matches!(self, CtlRequest::Metrics) {
            check_name(name)?;
        }
        check_len("probe configuration", payload.len(), MAX_CONFIG)?;
        let mut out =
            format!("{MAGIC} {} {} {}\n", self.op(), name.len(), payload.len()).into_bytes();
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(payload.as_bytes());
        Ok(out)
    }

    /// How the request is logged: operation and probe name, never the JSON.
    fn summary(&self) -> String {
        match self {
            CtlRequest::ProbeGet { name } => format!("probe get {name}"),
            CtlRequest::ProbeSet { name, .. } => format!("probe set {name}"),
            CtlRequest::Metrics => "metric".to_owned(),
        }
    }
}

/// Decodes a complete request from `buf`: `Ok(None)` while more bytes are needed, an error as
/// soon as the bytes cannot become a valid request.
pub fn decode_request(buf: &[u8]) -> Result<Option<CtlRequest>, ProtocolError> {
    let Some((header, body)) = split_header(buf)? else {
        return Ok(None);
    };
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, op, name_len, payload_len] = fields[..] else {
        return Err(ProtocolError::MalformedHeader(header.to_owned()));
    };
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic.to_owned()));
    }
    let name_len = parse_len("probe name", name_len, MAX_NAME)?;
    let payload_len = parse_len("probe configuration", payload_len, MAX_CONFIG)?;
    let op: &'static str = match op {
        "probe-get" => "probe-get",
        "probe-set" => "probe-set",
        "metrics" => "metrics",
        other => return Err(ProtocolError::UnknownOp(other.to_owned())),
    };
    if op == "metrics" && name_len > 0 {
        return Err(ProtocolError::Unexpected {
            op,
            field: "probe name",
        });
    }
    if op != "probe-set" && payload_len > 0 {
        return Err(ProtocolError::Unexpected {
            op,
            field: "probe configuration",
        });
    }
    let Some(body) = complete_body(body, name_len + payload_len)? else {
        return Ok(None);
    };
    let (name, payload) = body.split_at(name_len);
    if op == "metrics" {
        return Ok(Some(CtlRequest::Metrics));
    }
    let name = std::str::from_utf8(name).map_err(|_| ProtocolError::NotUtf8("probe name"))?;
    check_name(name)?;
    let name = name.to_owned();
    if op == "probe-get" {
        return Ok(Some(CtlRequest::ProbeGet { name }));
    }
    let json = std::str::from_utf8(payload)
        .map_err(|_| ProtocolError::NotUtf8("probe configuration"))?
        .to_owned();
    Ok(Some(CtlRequest::ProbeSet { name, json }))
}

impl CtlReply {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let (status, payload) = match self {
            CtlReply::Ok(text) => ("ok", text),
            CtlReply::Error(text) => ("error", text),
        };
        let mut out = format!("{status} {}\n", payload.len()).into_bytes();
        out.extend_from_slice(payload.as_bytes());
        out
    }
}

/// Decodes a complete reply from `buf`, like [`decode_request`].
pub fn decode_reply(buf: &[u8]) -> Result<Option<CtlReply>, ProtocolError> {
    let Some((header, body)) = split_header(buf)? else {
        return Ok(None);
    };
    let Some((status, len)) = header.split_once(' ') else {
        return Err(ProtocolError::MalformedHeader(header.to_owned()));
    };
    let ok = match status {
        "ok" => true,
        "error" => false,
        other => return Err(ProtocolError::UnknownStatus(other.to_owned())),
    };
    let len = parse_len("reply", len, MAX_REPLY)?;
    let Some(payload) = complete_body(body, len)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(payload)
        .map_err(|_| ProtocolError::NotUtf8("reply"))?
        .to_owned();
    Ok(Some(if ok {
        CtlReply::Ok(text)
    } else {
        CtlReply::Error(text)
    }))
}

/// The header line (without its newline) and the bytes after it, once the newline has arrived.
fn split_header(buf: &[u8]) -> Result<Option<(&str, &[u8])>, ProtocolError> {
    let window = &buf[..buf.len().min(MAX_HEADER + 1)];
    let Some(end) = memchr::memchr(b'\n', window) else {
        return if buf.len() > MAX_HEADER {
            Err(ProtocolError::HeaderTooLong)
        } else {
            Ok(None)
        };
    };
    let header = std::str::from_utf8(&buf[..end]).map_err(|_| {
        ProtocolError::MalformedHeader(String::from_utf8_lossy(&buf[..end]).into_owned())
    })?;
    Ok(Some((header, &buf[end + 1..])))
}

/// The body once all `len` announced bytes have arrived; more than that is an error.
fn complete_body(body: &[u8], len: usize) -> Result<Option<&[u8]>, ProtocolError> {
    match body.len() {
        n if n < len => Ok(None),
        n if n > len => Err(ProtocolError::TrailingBytes(n - len)),
        _ => Ok(Some(body)),
    }
}

/// A length field: 1 to 10 ASCII digits, at most `max`.
fn parse_len(field: &'static str, text: &str, max: usize) -> Result<usize, ProtocolError> {
    let bad = || ProtocolError::BadLength {
        field,
        value: text.to_owned(),
    };
    if text.is_empty() || text.len() > 10 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let len: usize = text.parse().map_err(|_| bad())?;
    check_len(field, len, max)?;
    Ok(len)
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), ProtocolError> {
    if len > max {
        return Err(ProtocolError::TooLarge { field, len, max });
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), ProtocolError> {
    if name.is_empty() {
        return Err(ProtocolError::EmptyName);
    }
    check_len("probe name", name.len(), MAX_NAME)?;
    if name.chars().any(char::is_control) {
        return Err(ProtocolError::NameHasControl);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Client

/// Why `gopher-ctl` got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command itself is invalid (name or JSON too long, ...).
    #[error("{0}")]
    Request(ProtocolError),
    /// Nobody listens on the socket.
    #[error("cannot connect to {}: {} — is gala-gopher running?", path.display(), os_text(error))]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("{}: {}", path.display(), os_text(error))]
    Io {
        /// The socket path.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// No complete reply within the timeout.
    #[error("{}: no reply within {} s", path.display(), timeout.as_secs())]
    TimedOut {
        /// The socket path.
        path: PathBuf,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The daemon closed the connection before a complete reply.
    #[error("{}: the daemon closed the connection without a complete reply", path.display())]
    Closed {
        /// The socket path.
        path: PathBuf,
    },
    /// The reply is not in this build's format (daemon of another version?).
    #[error("{}: unreadable reply: {error}", path.display())]
    BadReply {
        /// The socket path.
        path: PathBuf,
        /// What is wrong with it.
        error: ProtocolError,
    },
    /// The daemon refused the request as malformed.
    #[error("the daemon refused the request: {0}")]
    Refused(String),
}

/// Sends `req` to the daemon listening on `socket` and returns its answer; `timeout` bounds
/// the whole exchange.
pub fn request(socket: &Path, req: &CtlRequest, timeout: Duration) -> Result<String, ClientError> {
    let bytes = req.encode().map_err(ClientError::Request)?;
    let deadline = Instant::now() + timeout;
    let path = || socket.to_owned();
    let io = |error: std::io::Error| match error.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => ClientError::TimedOut {
            path: path(),
            timeout,
        },
        _ => ClientError::Io {
            path: path(),
            error,
        },
    };
    let remaining = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| ClientError::TimedOut {
                path: path(),
                timeout,
            })
    };
    let mut stream =
        std::os::unix::net::UnixStream::connect(socket).map_err(|error| ClientError::Connect {
            path: path(),
            error,
        })?;
    stream.set_write_timeout(Some(remaining()?)).map_err(io)?;
    stream.write_all(&bytes).map_err(io)?;
    // Nothing more comes from us; the daemon sees the end of the request at once.
    stream.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        stream.set_read_timeout(Some(remaining()?)).map_err(io)?;
        let n = match stream.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        if n == 0 {
            return Err(ClientError::Closed { path: path() });
        }
        buf.extend_from_slice(&chunk[..n]);
        match decode_reply(&buf) {
            Ok(None) => {}
            Ok(Some(CtlReply::Ok(text))) => return Ok(text),
            Ok(Some(CtlReply::Error(text))) => return Err(ClientError::Refused(text)),
            Err(error) => {
                return Err(ClientError::BadReply {
                    path: path(),
                    error,
                })
            }
        }
    }
}

/// An I/O error as a person reads it: "No such file or directory", without "(os error 2)".
fn os_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}

// ---------------------------------------------------------------------------------------------
// Server

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

#[cfg(test)]
mod tests;
