//! How a probe finds its end of the control channel: the variables the daemon sets, and adopting
//! the inherited descriptor safely.

use std::ffi::OsString;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    getsockname, getsockopt, sockopt, AddressFamily, SockType, SockaddrLike, SockaddrStorage,
};

use crate::encoding::Encoding;
use crate::error::EnvError;

/// Variable holding the number of the inherited control-channel descriptor.
pub const ENV_IPC_FD: &str = "GALA_GOPHER_IPC_FD";
/// Variable holding the channel's encoding: `proto` or `json` (see [`Encoding`]).
pub const ENV_IPC_ENCODING: &str = "GALA_GOPHER_IPC_ENCODING";
/// Variable holding the probe's name as the daemon knows it.
pub const ENV_PROBE_NAME: &str = "GALA_GOPHER_PROBE_NAME";
/// Variable naming the probe's meta file(s), `:`-separated, for the SDKs' record checks.
pub const ENV_META: &str = "GALA_GOPHER_META";
/// The descriptor number the daemon gives the channel in every probe.
pub const IPC_FD: RawFd = 3;

/// Set once a `from_env` call has taken ownership of the descriptor: a second owner would close
/// it twice.
static FD_TAKEN: AtomicBool = AtomicBool::new(false);

/// Picks up the control channel the daemon passed to this probe: `Ok(None)` when
/// `GALA_GOPHER_IPC_FD` is absent (the probe was not started by the daemon, or by an old one).
///
/// The descriptor must be an open Unix stream socket; it is marked close-on-exec so that programs
/// the probe runs do not hold the channel open. Only the first successful call gets the stream.
pub fn from_env() -> Result<Option<(UnixStream, Encoding)>, EnvError> {
    let vars = parse_vars(
        std::env::var_os(ENV_IPC_FD),
        std::env::var_os(ENV_IPC_ENCODING),
    )?;
    let Some((fd, encoding)) = vars else {
        return Ok(None);
    };
    if FD_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(EnvError::AlreadyTaken { fd });
    }
    match adopt_fd(fd) {
        Ok(stream) => Ok(Some((stream, encoding))),
        Err(err) => {
            // Nothing was taken: a later call may try again.
            FD_TAKEN.store(false, Ordering::SeqCst);
            Err(err)
        }
    }
}

/// Interprets the values of `GALA_GOPHER_IPC_FD` and `GALA_GOPHER_IPC_ENCODING`.
fn parse_vars(
    fd: Option<OsString>,
    encoding: Option<OsString>,
) -> Result<Option<(RawFd, Encoding)>, EnvError> {
    let Some(fd) = fd else {
        return Ok(None);
    };
    let fd = fd
        .into_string()
        .map_err(|_| EnvError::NotUnicode { var: ENV_IPC_FD })?;
    let fd = match fd.parse::<RawFd>() {
        Ok(number) if number >= 0 => number,
        _ => return Err(EnvError::InvalidFd { value: fd }),
    };
    let encoding = encoding
        .ok_or(EnvError::MissingEncoding)?
        .into_string()
        .map_err(|_| EnvError::NotUnicode {
            var: ENV_IPC_ENCODING,
        })?
        .parse::<Encoding>()?;
    Ok(Some((fd, encoding)))
}

/// Takes ownership of `fd` after checking it is an open Unix stream socket. On error the
/// descriptor is left as it was: it may belong to something else in this process.
fn adopt_fd(fd: RawFd) -> Result<UnixStream, EnvError> {
    let unusable = |source| EnvError::FdUnusable { fd, source };
    // EBADF here means the variable was inherited but the descriptor was not (e.g. by a
    // program the probe itself started).
    fcntl(fd, FcntlArg::F_GETFD).map_err(unusable)?;
    // SAFETY: F_GETFD just succeeded, so `fd` is open; the borrow does not outlive this call.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket_type = getsockopt(&borrowed, sockopt::SockType).map_err(unusable)?;
    let address: SockaddrStorage = getsockname(fd).map_err(unusable)?;
    if socket_type != SockType::Stream || address.family() != Some(AddressFamily::Unix) {
        return Err(EnvError::NotUnixStream { fd });
    }
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map_err(unusable)?;
    // SAFETY: `fd` is an open Unix stream socket that the daemon passed to this process for the
    // control channel alone; `from_env` makes sure only one owner is ever created.
    Ok(UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::os::unix::net::UnixDatagram;

    use super::*;

    fn vars(
        fd: Option<&str>,
        encoding: Option<&str>,
    ) -> Result<Option<(RawFd, Encoding)>, EnvError> {
        parse_vars(fd.map(OsString::from), encoding.map(OsString::from))
    }

    #[test]
    fn absent_fd_variable_means_no_channel() {
        assert!(vars(None, None).unwrap().is_none());
        assert!(vars(None, Some("json")).unwrap().is_none());
    }

    #[test]
    fn variables_are_parsed() {
        assert_eq!(
            vars(Some("3"), Some("json")).unwrap(),
            Some((3, Encoding::Json))
        );
        assert_eq!(
            vars(Some("7"), Some("proto")).unwrap(),
            Some((7, Encoding::Proto))
        );
    }

    #[test]
    fn bad_variables_are_named_in_errors() {
        let err = vars(Some("three"), Some("json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GALA_GOPHER_IPC_FD=\"three\" is not a file descriptor number"
        );
        assert!(matches!(
            vars(Some("-1"), Some("json")),
            Err(EnvError::InvalidFd { .. })
        ));
        assert!(matches!(
            vars(Some("3"), None),
            Err(EnvError::MissingEncoding)
        ));
        let err = vars(Some("3"), Some("xml")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "GALA_GOPHER_IPC_ENCODING: unknown IPC encoding \"xml\" (expected \"proto\" or \"json\")"
        );
    }

    #[test]
    fn adopts_a_unix_stream_socket_and_marks_it_close_on_exec() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let fd = theirs.into_raw_fd();
        let mut adopted = adopt_fd(fd).unwrap();
        let flags = FdFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
        adopted.write_all(b"ping").unwrap();
        let mut received = [0u8; 4];
        (&ours).read_exact(&mut received).unwrap();
        assert_eq!(&received, b"ping");
    }

    #[test]
    fn rejects_other_descriptors_without_closing_them() {
        let file = std::fs::File::open("/dev/null").unwrap();
        let err = adopt_fd(file.as_raw_fd()).unwrap_err();
        assert!(
            matches!(
                err,
                EnvError::FdUnusable {
                    source: nix::Error::ENOTSOCK,
                    ..
                }
            ),
            "{err}"
        );
        assert!(fcntl(file.as_raw_fd(), FcntlArg::F_GETFD).is_ok());

        let (datagram, _peer) = UnixDatagram::pair().unwrap();
        let err = adopt_fd(datagram.as_raw_fd()).unwrap_err();
        assert!(matches!(err, EnvError::NotUnixStream { .. }), "{err}");
        assert!(fcntl(datagram.as_raw_fd(), FcntlArg::F_GETFD).is_ok());

        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert!(matches!(
            adopt_fd(udp.as_raw_fd()),
            Err(EnvError::NotUnixStream { .. })
        ));
    }

    #[test]
    fn rejects_a_closed_descriptor() {
        // Far above anything a test opens, so it is closed whatever other test threads do.
        let err = adopt_fd(1_000_000).unwrap_err();
        assert!(
            matches!(
                err,
                EnvError::FdUnusable {
                    source: nix::Error::EBADF,
                    ..
                }
            ),
            "{err}"
        );
    }
}
