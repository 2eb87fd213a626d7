//! Typed errors of the configuration module; every error names where the bad value came from.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Result type of the configuration module.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default (the key was absent from the file and no variable set it).
    Default,
    /// A setting in the configuration file.
    File {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line of the setting.
        line: u32,
    },
    /// A `GOPHER_*` environment variable.
    Env {
        /// Name of the variable.
        var: &'static str,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("built-in default"),
            Origin::File { path, line } => write!(f, "{}:{line}", path.display()),
            Origin::Env { var } => write!(f, "environment variable {var}"),
        }
    }
}

/// What is wrong with one configuration value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The libconfig value has the wrong type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// The type the key takes.
        expected: &'static str,
        /// The type found in the file.
        found: &'static str,
    },
    /// An environment variable meant for an integer key is not an integer.
    #[error("{0:?} is not an integer")]
    NotInteger(String),
    /// An integer outside the accepted range.
    #[error("{value} is out of range {}", range_text(.min, .max))]
    OutOfRange {
        /// The value given.
        value: i64,
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value; `None` when only the lower bound applies.
        max: Option<i64>,
    },
    /// A string that is not one of the accepted keywords.
    #[error("unknown value {value:?}, expected one of {allowed}")]
    UnknownValue {
        /// The value given.
        value: String,
        /// The accepted values, ready to print.
        allowed: &'static str,
    },
    /// A path containing characters or sequences that the original rejects as unsafe.
    #[error("{value:?} contains the unsafe sequence {found:?}")]
    UnsafeCharacters {
        /// The value given.
        value: String,
        /// The first offending character or sequence.
        found: String,
    },
    /// An empty string where a value is needed.
    #[error("must not be empty")]
    Empty,
    /// A relative path where an absolute one is needed.
    #[error("{0:?} is not an absolute path")]
    NotAbsolute(String),
    /// A string that is malformed for this key.
    #[error("{value:?} is invalid: {reason}")]
    Malformed {
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// A value that another setting makes mandatory is missing.
    #[error("required when {because}")]
    Required {
        /// The setting that makes it mandatory, ready to print.
        because: String,
    },
    /// Two settings that cannot hold together.
    #[error("conflicts with {0}")]
    Conflict(String),
}

/// Renders a range the way Rust writes it: `1..=4096`, or `1..` when unbounded above.
fn range_text(min: &i64, max: &Option<i64>) -> String {
    match max {
        Some(max) => format!("{min}..={max}"),
        None => format!("{min}.."),
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read configuration: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not valid libconfig syntax.
    #[error("{}:{line}: syntax error: {message}", path.display())]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// 1-based line of the error.
        line: u32,
        /// The parser's message.
        message: String,
    },
    /// A value (from the file or an environment variable) is invalid.
    #[error("{origin}: {key}: {problem}")]
    Invalid {
        /// Where the offending value came from.
        origin: Origin,
        /// `section.key` of the offending setting.
        key: String,
        /// What is wrong with it.
        problem: Problem,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(origin: Origin, key: impl Into<String>, problem: Problem) -> Self {
        ConfigError::Invalid {
            origin,
            key: key.into(),
            problem,
        }
    }
}
