//! Errors of loading meta files into the table registry.

use std::fmt;
use std::path::PathBuf;

/// Result alias for meta loading.
pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Why a meta file or a set of meta files was rejected.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The file could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid libconfig.
    #[error("{}:{line}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u32,
        /// What is wrong.
        message: String,
    },
    /// The file is valid libconfig but not a valid meta description.
    #[error("{}:{line}: {}{message}", path.display(), TablePrefix(table.as_deref()))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending setting.
        line: u32,
        /// The table the problem belongs to, when known.
        table: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// Two meta tables have the same name.
    #[error(
        "{}:{}: table \"{name}\" is already defined at {}:{}",
        second.0.display(), second.1, first.0.display(), first.1
    )]
    DuplicateTable {
        /// The table name.
        name: String,
        /// File and line of the first definition.
        first: (PathBuf, u32),
        /// File and line of the second definition.
        second: (PathBuf, u32),
    },
    /// More tables were loaded than allowed.
    #[error("too many meta tables: more than {max}")]
    TooManyTables {
        /// The limit.
        max: usize,
    },
}

/// Renders `table "x": ` when a table name is known.
struct TablePrefix<'a>(Option<&'a str>);

impl fmt::Display for TablePrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(t) => write!(f, "table \"{t}\": "),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_formats() {
        let e = MetaError::Invalid {
            path: "/m/tcp.meta".into(),
            line: 12,
            table: Some("tcp_link".into()),
            message: "no key field".into(),
        };
        assert_eq!(
            e.to_string(),
            "/m/tcp.meta:12: table \"tcp_link\": no key field"
        );
        let e = MetaError::Invalid {
            path: "/m/tcp.meta".into(),
            line: 1,
            table: None,
            message: "missing \"version\"".into(),
        };
        assert_eq!(e.to_string(), "/m/tcp.meta:1: missing \"version\"");
        let e = MetaError::Syntax {
            path: "a.meta".into(),
            line: 3,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "a.meta:3: bad");
        let e = MetaError::DuplicateTable {
            name: "t".into(),
            first: ("a.meta".into(), 2),
            second: ("b.meta".into(), 5),
        };
        assert_eq!(
            e.to_string(),
            "b.meta:5: table \"t\" is already defined at a.meta:2"
        );
        let e = MetaError::Io {
            path: "x.meta".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(e.to_string(), "x.meta: gone");
        assert_eq!(
            MetaError::TooManyTables { max: 3 }.to_string(),
            "too many meta tables: more than 3"
        );
    }
}
