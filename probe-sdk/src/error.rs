//! Errors of the probe SDK.

use std::path::PathBuf;

use gala_meta::RecordError;

/// The configuration could not be obtained or read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The offline configuration file could not be read.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file named by `GALA_GOPHER_CONFIG=@path`.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The offline configuration is not a proto3-JSON `ProbeConfig`.
    #[error("GALA_GOPHER_CONFIG: {0}")]
    Json(String),
    /// No such configuration path (see `Config::get`).
    #[error("unknown configuration path {0:?}")]
    UnknownPath(String),
}

/// A probe could not be connected to its daemon.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The control-channel variables or descriptor are unusable.
    #[error("control channel: {0}")]
    Env(#[from] gala_ipc_proto::EnvError),
    /// The offline configuration is bad.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The probe's meta file is bad.
    #[error("meta file: {0}")]
    Meta(#[from] gala_meta::MetaError),
    /// Sending the greeting or starting the reader failed.
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    /// Sending the greeting failed.
    #[error("control channel: {0}")]
    Write(#[from] gala_ipc_proto::WriteError),
}

/// A record or event was refused; nothing of it was written.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// A value contains `|`, `\n` or `\r`, which would break the line.
    #[error("{what} {index} of {table:?} contains '|', '\\n' or '\\r': {value:?}")]
    Separator {
        /// The table (or `event`).
        table: String,
        /// `value` or `field`.
        what: &'static str,
        /// Position of the value, from 1.
        index: usize,
        /// The value.
        value: String,
    },
    /// The table name is empty, too long or holds a separator.
    #[error("bad table name {0:?}")]
    BadTableName(String),
    /// The first value, the primary key, is empty.
    #[error("first value of {0:?} is empty: the daemon drops such records")]
    EmptyKey(String),
    /// The meta file has no such table.
    #[error("table {0:?} is not in the probe's meta file")]
    UnknownTable(String),
    /// The meta file's checks refuse the record (count of values, number format, histogram).
    #[error("record of {table:?}: {source}")]
    Invalid {
        /// The table.
        table: String,
        /// What the daemon's parser says.
        source: RecordError,
    },
    /// An event lacks a required field (`entity_name`, `entity_id`, `metric`).
    #[error("event: {0} is empty")]
    MissingEventField(&'static str),
    /// Writing to stdout failed (the daemon is gone).
    #[error("write stdout: {0}")]
    Io(#[from] std::io::Error),
}
