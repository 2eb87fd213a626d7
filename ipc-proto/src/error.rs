//! Error types of the control channel: encoding, decoding, stream I/O and the environment.

use std::io;
use std::os::fd::RawFd;

/// A name in `GALA_GOPHER_IPC_ENCODING` that is neither `proto` nor `json`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IPC encoding {value:?} (expected \"proto\" or \"json\")")]
pub struct ParseEncodingError {
    /// The rejected value.
    pub value: String,
}

/// A message that cannot be turned into a frame.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The JSON mapping refused the message (e.g. an enum field holds a number the schema does not
    /// name, which protobuf keeps but the JSON mapping cannot express by name).
    #[error("cannot encode message as JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The encoded message is longer than the receiver accepts.
    #[error("encoded message is {len} bytes, more than the frame limit of {max} bytes")]
    FrameTooLarge {
        /// Length of the protobuf body or JSON line.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// One frame that could not be turned into a message. The frame has been consumed: the next
/// frame can still be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// A protobuf frame announced a body longer than the limit; its bytes are skipped.
    #[error("protobuf frame of {len} bytes exceeds the frame limit of {max} bytes")]
    FrameTooLarge {
        /// The announced body length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// A JSON line was longer than the limit; it is skipped up to its `\n`.
    #[error("JSON line exceeds the frame limit of {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// The body of a protobuf frame is not a valid message.
    #[error("invalid protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// A JSON line is not a valid message in the proto3 JSON mapping.
    #[error("invalid JSON message: {0}")]
    Json(#[from] serde_json::Error),
}

/// Failure to read a message from a stream.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The stream failed; it should be closed.
    #[error("reading control channel: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream in the middle of a frame.
    #[error("control channel closed in the middle of a frame")]
    Truncated,
    /// One frame was bad; the stream is still in sync and the next message can be read.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Failure to write a message to a stream.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The message could not be encoded; nothing was written.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The stream failed; part of the frame may have been written, so it should be closed.
    #[error("writing control channel: {0}")]
    Io(#[from] io::Error),
}

/// The environment does not describe a usable control channel.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A variable holds bytes that are not UTF-8.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable's name.
        var: &'static str,
    },
    /// `GALA_GOPHER_IPC_FD` is not a non-negative integer.
    #[error("GALA_GOPHER_IPC_FD={value:?} is not a file descriptor number")]
    InvalidFd {
        /// The variable's value.
        value: String,
    },
    /// `GALA_GOPHER_IPC_FD` is set but `GALA_GOPHER_IPC_ENCODING` is not.
    #[error("GALA_GOPHER_IPC_FD is set but GALA_GOPHER_IPC_ENCODING is not")]
    MissingEncoding,
    /// `GALA_GOPHER_IPC_ENCODING` names no known encoding.
    #[error("GALA_GOPHER_IPC_ENCODING: {0}")]
    Encoding(#[from] ParseEncodingError),
    /// The descriptor is closed, or not a socket, or an inspection of it failed.
    #[error("fd {fd} from GALA_GOPHER_IPC_FD: {source}")]
    FdUnusable {
        /// The descriptor number.
        fd: RawFd,
        /// What the system said.
        source: nix::Error,
    },
    /// The descriptor is a socket, but not a Unix stream socket.
    #[error("fd {fd} from GALA_GOPHER_IPC_FD is not a Unix stream socket")]
    NotUnixStream {
        /// The descriptor number.
        fd: RawFd,
    },
    /// An earlier call already took ownership of the descriptor.
    #[error("fd {fd} from GALA_GOPHER_IPC_FD was already taken by an earlier from_env call")]
    AlreadyTaken {
        /// The descriptor number.
        fd: RawFd,
    },
}
