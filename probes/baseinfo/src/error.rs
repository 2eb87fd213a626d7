//! Why a collector could not report.

use std::path::PathBuf;

/// A collector failed; the message names the file or source concerned.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// A file could not be read.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file, under the host root.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file's content is not what this kernel is expected to write.
    #[error("parse {}: {what}", path.display())]
    Parse {
        /// The file, under the host root.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// Any other source failed (a system call, netlink).
    #[error("{what}: {source}")]
    Os {
        /// What was attempted.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
}
