//! The control channel between the gala-gopher daemon and each probe process.
//!
//! The daemon hands every probe one end of a connected Unix stream socket as fd 3 and describes it in
//! the environment ([`ENV_IPC_FD`], [`ENV_IPC_ENCODING`], [`ENV_PROBE_NAME`]). Over it the daemon
//! sends [`v1::DaemonMessage`]s (complete configuration snapshots) and the probe may answer with
//! [`v1::ProbeMessage`]s. One schema (`proto/gala_gopher/ipc/v1/control.proto`), two encodings
//! ([`Encoding`]): length-prefixed protobuf, or one proto3-JSON object per line so that a shell or
//! Python probe needs no protobuf library.
//!
//! - [`encode`] builds one complete frame; [`FrameDecoder`] splits a byte stream back into messages.
//! - [`blocking`] reads and writes messages on a `std` stream (for probe authors), [`tokio_io`] on a
//!   tokio stream (for the daemon).
//! - [`from_env`] lets a probe pick up its end of the channel.
//!
//! A probe's side, in short:
//!
//! ```no_run
//! use std::io::BufReader;
//! use gala_ipc_proto::{blocking, from_env, v1};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! if let Some((stream, encoding)) = from_env()? {
//!     let mut reader = BufReader::new(&stream);
//!     while let Some(message) = blocking::read_message::<v1::DaemonMessage, _>(&mut reader, encoding)? {
//!         if let Some(v1::daemon_message::Body::Config(config)) = message.body {
//!             // apply `config`, then report it
//!             let status = v1::Status { config_seq: config.seq, ..Default::default() };
//!             let reply = v1::ProbeMessage { body: Some(v1::probe_message::Body::Status(status)) };
//!             blocking::write_message(&mut &stream, &reply, encoding)?;
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod encoding;
mod env;
mod error;
mod frame;
mod schema;
mod strict;

pub mod blocking;
pub mod tokio_io;

pub use encoding::Encoding;
pub use env::{from_env, ENV_IPC_ENCODING, ENV_IPC_FD, ENV_META, ENV_PROBE_NAME, IPC_FD};
pub use error::{DecodeError, EncodeError, EnvError, ParseEncodingError, ReadError, WriteError};
pub use frame::{encode, FrameDecoder, MAX_FRAME_LEN};
/// The reflection library of [`descriptor_pool`], for callers that read messages by field name.
pub use prost_reflect;
pub use schema::{descriptor_pool, message_descriptor};
pub use strict::{check_probe_config_json, StrictJsonError};

/// Types generated from `gala_gopher/ipc/v1/control.proto` (prost for protobuf, pbjson for the
/// proto3 JSON mapping).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/gala_gopher.ipc.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/gala_gopher.ipc.v1.serde.rs"));
}

/// `ProbeConfig.change_flags` bit: the snooper mode or the snooper objects changed.
pub const SNOOPER_CHG: u32 = 0x1;
/// `ProbeConfig.change_flags` bit: the enabled sub-items or a parameter changed.
pub const PARAMS_CHG: u32 = 0x2;

/// A message that can travel over the channel in both encodings: every generated type qualifies,
/// though only [`v1::DaemonMessage`] and [`v1::ProbeMessage`] are sent as top-level frames.
pub trait WireMessage:
    prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned
{
}

impl<M> WireMessage for M where
    M: prost::Message + Default + serde::Serialize + serde::de::DeserializeOwned
{
}

#[cfg(test)]
mod tests;
