//! Typed errors of snooper resolution; each names the entry, file or program it failed on.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Result type of the snooper module.
pub type Result<T, E = SnooperError> = std::result::Result<T, E>;

/// A `/proc` scan that could not be made at all (single processes never fail a scan).
#[derive(Debug, thiserror::Error)]
pub enum SnooperError {
    /// The proc root itself cannot be listed.
    #[error("list {path}: {source}")]
    ListProcRoot {
        /// The proc root that was listed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// A snooper entry that cannot be turned into a query.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// A `proc_name` entry whose `comm` is not a valid regular expression.
    #[error("proc_name comm {pattern:?} is not a valid regular expression: {source}")]
    BadCommRegex {
        /// The pattern as given.
        pattern: String,
        /// What the regex compiler said.
        source: regex::Error,
    },
    /// A `container_id` entry that is not 1–64 hex digits.
    #[error("container_id {0:?} must be 1 to 64 hex digits")]
    BadContainerId(String),
    /// A `pod_id` entry that is neither 32 hex digits nor a dashed `8-4-4-4-12` uuid.
    #[error("pod_id {0:?} must be 32 hex digits or a dashed 8-4-4-4-12 hex uuid")]
    BadPodId(String),
}

/// A container runtime CLI call that gave no usable listing.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The program could not be started.
    #[error("run {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Waiting for the program failed.
    #[error("wait for {program}: {source}")]
    Wait {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The program did not finish in time and was killed.
    #[error("{program} did not finish within {timeout:?}; killed")]
    Timeout {
        /// The program.
        program: PathBuf,
        /// The time it was given.
        timeout: Duration,
    },
    /// The program wrote more output than we accept.
    #[error("{program} wrote more than {limit} bytes to stdout")]
    OutputTooLarge {
        /// The program.
        program: PathBuf,
        /// The accepted size.
        limit: usize,
    },
    /// The program exited unsuccessfully.
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        /// The program.
        program: PathBuf,
        /// How it ended.
        status: ExitStatus,
        /// The start of what it wrote to stderr.
        stderr: String,
    },
    /// The output is not in the expected format.
    #[error("{program} output: {reason}")]
    BadOutput {
        /// The program.
        program: PathBuf,
        /// What is wrong with it.
        reason: ListingError,
    },
}

/// A runtime CLI's listing that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ListingError {
    /// `crictl ps -o json` printed something else than its JSON (an error text, an old version).
    #[error("not crictl JSON: {0}")]
    NotCrictlJson(serde_json::Error),
}
