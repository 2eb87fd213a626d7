//! The daemon's debug log: `tracing` events to stderr and to `<logs.debug_dir>/<log_file_name>`.
//!
//! Lines look like the original's (spec config-and-egress.md §9):
//! `MM/DD/YY HH:MM:SS - [LEVEL] message`, followed by the event's structured fields
//! (`probe=tcp`) and those of the spans it happened in. The file is the current one plus one
//! `.1` backup, each at most 100 MB.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{EnvFilter, LevelFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{
    self, FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter,
};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::egress::logfile::{LogFileError, RotatingFile};

/// Most bytes of the debug log file and of its `.1` backup, each.
pub const DEBUG_FILE_MAX_BYTES: u64 = 100 * 1024 * 1024;

/// The file name used when `global.log_file_name` is empty.
pub const DEFAULT_FILE_NAME: &str = "gopher_debug.log";

/// Why the log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// The debug log file or its directory could not be opened or created.
    #[error("debug log: {0}")]
    File(#[from] LogFileError),
    /// A global subscriber is already installed.
    #[error("install the log subscriber: {0}")]
    Install(String),
}

/// Keeps the debug log open; hold it for the life of the daemon.
#[derive(Debug)]
pub struct LogGuard {
    file: Option<SharedFile>,
}

impl LogGuard {
    /// The debug log file being written, if any.
    pub fn file_path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|f| f.0.lock().path().to_owned())
    }
}

/// Maps `global.log_level` to a filter: `debug`, `info`, `warn`, `error`; like the original,
/// anything else means `debug`.
pub fn parse_level(level: &str) -> LevelFilter {
    match level {
        "info" => LevelFilter::INFO,
        "warn" => LevelFilter::WARN,
        "error" => LevelFilter::ERROR,
        _ => LevelFilter::DEBUG,
    }
}

/// Installs the global subscriber: events at `level` or above (see [`parse_level`]; the
/// `RUST_LOG` variable, when set and valid, overrides it) go to stderr and, with
/// `debug_file = Some((dir, name))`, to `<dir>/<name>` (created 0640, `dir` 0750; an empty
/// name means [`DEFAULT_FILE_NAME`]). Fails, naming the path, if the file cannot be opened.
pub fn init(level: &str, debug_file: Option<(PathBuf, String)>) -> Result<LogGuard, LoggingError> {
    let file = match debug_file {
        Some((dir, name)) => Some(open_debug_file(&dir, &name)?),
        None => None,
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::default().add_directive(parse_level(level).into()));
    tracing_subscriber::registry()
        .with(filter)
        .with(line_layer(io::stderr))
        .with(file.clone().map(line_layer))
        .try_init()
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    Ok(LogGuard { file })
}

/// Opens the rotating debug log `<dir>/<name>`.
fn open_debug_file(dir: &Path, name: &str) -> Result<SharedFile, LogFileError> {
    let name = if name.is_empty() {
        DEFAULT_FILE_NAME
    } else {
        name
    };
    let file = RotatingFile::open(dir, name, DEBUG_FILE_MAX_BYTES)?;
    Ok(SharedFile(Arc::new(Mutex::new(file))))
}

/// A formatting layer writing [`LineFormat`] lines to `writer`.
fn line_layer<S, W>(writer: W) -> fmt::Layer<S, LineFields, LineFormat, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fmt::layer()
        .with_ansi(false)
        .fmt_fields(LineFields)
        .event_format(LineFormat)
        .with_writer(writer)
}

/// The rotating debug log, shared by the threads that log.
#[derive(Debug, Clone)]
struct SharedFile(Arc<Mutex<RotatingFile>>);

/// Exclusive access to the debug log for one event (the formatter writes a whole line at once).
struct FileWriter<'a>(MutexGuard<'a, RotatingFile>);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = FileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        FileWriter(self.0.lock())
    }
}

/// `MM/DD/YY HH:MM:SS - [LEVEL] message field=value ...` in local time.
struct LineFormat;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let now = chrono::Local::now();
        write!(
            writer,
            "{} - [{}] ",
            now.format("%m/%d/%y %H:%M:%S"),
            level_name(*event.metadata().level())
        )?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>() {
                    if !fields.is_empty() {
                        write!(writer, " {fields}")?;
                    }
                }
            }
        }
        writeln!(writer)
    }
}

/// Writes the message, then ` name=value` for the other fields; a string value is quoted
/// only when it is empty or holds spaces, quotes or `=`.
struct LineFields;

impl<'w> FormatFields<'w> for LineFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = FieldVisitor {
            message: None,
            rest: String::new(),
        };
        fields.record(&mut visitor);
        let mut sep = "";
        if let Some(message) = visitor.message {
            writer.write_str(&message)?;
            sep = " ";
        }
        let rest = visitor.rest.trim_start();
        if !rest.is_empty() {
            write!(writer, "{sep}{rest}")?;
        }
        Ok(())
    }
}

/// Collects the fields of one event or span.
struct FieldVisitor {
    message: Option<String>,
    rest: String,
}

impl Visit for FieldVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        use std::fmt::Write as _;
        let plain = !value.is_empty()
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=');
        if field.name() == "message" {
            self.message = Some(value.to_owned());
        } else if plain {
            let _ = write!(self.rest, " {}={value}", field.name());
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_str(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            self.message = Some(format!("{value:?}"));
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

/// The original's level names; `trace` is shown as `DEBUG`.
fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARN",
        Level::INFO => "INFO",
        _ => "DEBUG",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` with a subscriber writing to a debug file in a fresh directory; returns the file text.
    fn capture(level: &str, f: impl FnOnce()) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let file = open_debug_file(&tmp.path().join("debug"), "gopher.log").unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(parse_level(level))
            .with(line_layer(file.clone()));
        tracing::subscriber::with_default(subscriber, f);
        std::fs::read_to_string(tmp.path().join("debug/gopher.log")).unwrap()
    }

    /// Checks the `MM/DD/YY HH:MM:SS - ` prefix and returns the rest of the line.
    fn strip_time(line: &str) -> &str {
        let b = line.as_bytes();
        assert!(line.len() > 20, "{line}");
        for (i, c) in b[..17].iter().enumerate() {
            match i {
                2 | 5 => assert_eq!(*c, b'/', "{line}"),
                8 => assert_eq!(*c, b' ', "{line}"),
                11 | 14 => assert_eq!(*c, b':', "{line}"),
                _ => assert!(c.is_ascii_digit(), "{line}"),
            }
        }
        assert_eq!(&line[17..20], " - ", "{line}");
        &line[20..]
    }

    #[test]
    fn line_format_with_fields() {
        let text = capture("info", || {
            tracing::info!(probe = "tcp", "probe started");
            tracing::warn!("disk {} almost full", "sda");
            tracing::error!(code = 3, path = "/a b", empty = "", "failed");
        });
        let lines: Vec<&str> = text.lines().map(strip_time).collect();
        assert_eq!(
            lines,
            [
                "[INFO] probe started probe=tcp",
                "[WARN] disk sda almost full",
                "[ERROR] failed code=3 path=\"/a b\" empty=\"\"",
            ]
        );
    }

    #[test]
    fn span_fields_are_appended() {
        let text = capture("debug", || {
            let span = tracing::info_span!("probe", name = "baseinfo");
            let _e = span.enter();
            tracing::debug!("restarting");
        });
        assert_eq!(
            strip_time(text.trim_end()),
            "[DEBUG] restarting name=baseinfo"
        );
    }

    #[test]
    fn level_filter() {
        let text = capture("warn", || {
            tracing::debug!("d");
            tracing::info!("i");
            tracing::warn!("w");
            tracing::error!("e");
        });
        let lines: Vec<&str> = text.lines().map(strip_time).collect();
        assert_eq!(lines, ["[WARN] w", "[ERROR] e"]);
    }

    #[test]
    fn level_names() {
        assert_eq!(parse_level("debug"), LevelFilter::DEBUG);
        assert_eq!(parse_level("info"), LevelFilter::INFO);
        assert_eq!(parse_level("warn"), LevelFilter::WARN);
        assert_eq!(parse_level("error"), LevelFilter::ERROR);
        assert_eq!(
            parse_level("verbose"),
            LevelFilter::DEBUG,
            "unknown means debug"
        );
        assert_eq!(level_name(Level::TRACE), "DEBUG");
    }

    #[test]
    fn empty_name_uses_default() {
        let tmp = tempfile::tempdir().unwrap();
        let f = open_debug_file(tmp.path(), "").unwrap();
        assert_eq!(f.0.lock().path(), tmp.path().join(DEFAULT_FILE_NAME));
    }

    #[test]
    fn open_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let err = open_debug_file(&blocker.join("debug"), "gopher.log").unwrap_err();
        let err = LoggingError::from(err).to_string();
        assert!(err.contains(&*blocker.to_string_lossy()), "{err}");
    }
}
