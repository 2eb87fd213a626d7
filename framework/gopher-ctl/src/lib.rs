//! The local control socket of gala-gopher (`<run_dir>/gala_gopher_cmd.sock`) as seen from
//! outside the daemon: its wire format ([`protocol`]) and the blocking client ([`client`]) the
//! `gopher-ctl` binary runs. The daemon serves the socket with these same types (its listener
//! lives in the daemon, `gala_gopher::ctl`); this crate depends on nothing of the daemon, so
//! `gopher-ctl` builds without Kafka, HTTP or TLS.

pub mod client;
pub mod protocol;

pub use client::{request, ClientError};
pub use protocol::{
    decode_reply, decode_request, CtlReply, CtlRequest, ProtocolError, DEFAULT_SOCKET, IO_TIMEOUT,
    MAX_CONFIG, MAX_NAME, MAX_REPLY,
};

/// An I/O error as a person reads it: "No such file or directory", without "(os error 2)".
/// Both ends of the socket word their errors this way.
pub fn os_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_owned(),
        _ => text,
    }
}
