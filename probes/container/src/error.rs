//! Errors of the container probe: what stops it (no cgroup hierarchy can be found) and what
//! one container's collection runs into (a file that cannot be read), each naming its file.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The mount table could not be read.
    #[error("read {path}: {source}")]
    Mountinfo {
        /// The mountinfo file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The mount table names no cgroup hierarchy at all.
    #[error(
        "{path} names no cgroup or cgroup2 mount: cgroups are not mounted in this mount namespace"
    )]
    NoCgroups {
        /// The mountinfo file.
        path: PathBuf,
    },
    /// `/proc` could not be listed.
    #[error("list {path}: {source}")]
    ListProc {
        /// The proc root.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One file of a container could not be read.
    #[error("read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// One file of a container does not hold what the kernel writes there.
    #[error("{path}: unexpected content")]
    Parse {
        /// The file.
        path: PathBuf,
    },
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
