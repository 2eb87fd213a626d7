//! The blocking client `gopher-ctl` runs: one request, one reply, under one deadline.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::os_text;
use crate::protocol::{decode_reply, CtlReply, CtlRequest, ProtocolError};

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

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    /// Accepts one connection, reads the request to its end and answers `reply`, raw.
    fn answer_once(listener: UnixListener, reply: &'static [u8]) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            stream.read_to_end(&mut request).unwrap();
            stream.write_all(reply).unwrap();
        })
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
        let err = request(
            &path,
            &CtlRequest::ProbeGet {
                name: String::new(),
            },
            Duration::from_secs(1),
        )
        .unwrap_err();
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

    #[test]
    fn refusals_short_and_unreadable_replies_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.sock");
        let cases: [(&'static [u8], &str); 3] = [
            (
                b"error 8\nbad name",
                "the daemon refused the request: bad name",
            ),
            (
                b"ok 10\nshort",
                "the daemon closed the connection without a complete reply",
            ),
            (
                b"maybe 0\n",
                "unreadable reply: unknown reply status \"maybe\"",
            ),
        ];
        for (reply, want) in cases {
            let listener = UnixListener::bind(&path).unwrap();
            let peer = answer_once(listener, reply);
            let err = request(&path, &CtlRequest::Metrics, Duration::from_secs(10)).unwrap_err();
            assert!(err.to_string().ends_with(want), "{err}");
            peer.join().unwrap();
            std::fs::remove_file(&path).unwrap();
        }
    }
}
