//! Typed errors of the runtime clients; each names the socket (or program) it failed on.

use std::path::PathBuf;
use std::time::Duration;

/// Result type of the containers module.
pub type Result<T, E = LookupError> = std::result::Result<T, E>;

/// Why a runtime could not answer a lookup. "No such container" is not an error (`Ok(None)`).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The socket exists but cannot be connected to (daemon down, permissions).
    #[error("connect to {}: {source}", socket.display())]
    Connect {
        /// The API socket.
        socket: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The runtime did not answer within the timeout.
    #[error("{} did not answer within {timeout:?}", socket.display())]
    Timeout {
        /// The API socket.
        socket: PathBuf,
        /// The time it was given.
        timeout: Duration,
    },
    /// The HTTP exchange failed (handshake, broken connection, malformed response).
    #[error("HTTP over {}: {source}", socket.display())]
    Http {
        /// The API socket.
        socket: PathBuf,
        /// What hyper said.
        source: hyper::Error,
    },
    /// A request that cannot be built (a path that is no URI).
    #[error("cannot request {path} from {}", socket.display())]
    InvalidRequest {
        /// The API socket.
        socket: PathBuf,
        /// The request path.
        path: String,
    },
    /// The runtime answered with an HTTP status other than 200 and 404.
    #[error("{} answered HTTP {status} to {path}", socket.display())]
    Status {
        /// The API socket.
        socket: PathBuf,
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
    },
    /// The runtime answered with a gRPC status other than OK and NOT_FOUND.
    #[error("{} answered gRPC status {code} to {path}: {message}", socket.display())]
    Grpc {
        /// The API socket.
        socket: PathBuf,
        /// The method path.
        path: String,
        /// The `grpc-status` code.
        code: u32,
        /// The `grpc-message`, percent-decoding left out.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("answer of {} to {path}: {reason}", socket.display())]
    Decode {
        /// The API socket (or CLI program).
        socket: PathBuf,
        /// The request path (or CLI subcommand).
        path: String,
        /// What is wrong with it.
        reason: DecodeError,
    },
    /// The runtime's CLI failed.
    #[error(transparent)]
    Cli(#[from] crate::snooper::RuntimeError),
}

/// An answer that is not what the protocol says.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The gRPC body is not one length-prefixed message.
    #[error("gRPC framing: {0}")]
    Framing(&'static str),
    /// The gRPC message is not the expected protobuf message.
    #[error("protobuf: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// The JSON body is not the expected document.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is larger than accepted.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}
