//! The daemon's debug log: `tracing` events to stderr and to `<logs.debug_dir>/<log_file_name>`.
//!
//! Lines look like the original's (docs/reference/config-and-egress.md §9):
//! `MM/DD/YY HH:MM:SS - [LEVEL] message`, followed by the event's structured fields
//! (`probe=tcp`) and those of the spans it happened in. The file is the current one plus one
//! `.1` backup, each at most 100 MB.
//!
//! Under systemd, when stderr is the journal (`JOURNAL_STREAM`), stderr carries only warnings
//! and errors, each line starting with its syslog priority (`<4>[WARN] ...`) instead of the
//! time: the file keeps the whole log and the journal is not a second copy of it.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
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
use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

use crate::logfile::{LogFileError, RotatingFile};

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
///
/// With a debug file and stderr connected to the systemd journal, stderr gets only warnings
/// and errors, prefixed with their syslog priority (see the module documentation).
pub fn init(level: &str, debug_file: Option<(PathBuf, String)>) -> Result<LogGuard, LoggingError> {
    let file = match debug_file {
        Some((dir, name)) => Some(open_debug_file(&dir, &name)?),
        None => None,
    };
    let mut filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::default().add_directive(parse_level(level).into()));
    // The rdkafka crate warns on every librdkafka error event it does not dispatch ("Ignored
    // event 'Error' on base producer poll"): the Kafka egress logs those itself, rate-limited.
    if let Ok(quiet) = "rdkafka=error".parse() {
        filter = filter.add_directive(quiet);
    }
    let journal = file.is_some()
        && std::env::var("JOURNAL_STREAM")
            .is_ok_and(|v| is_journal_stream(&v, io::stderr().as_raw_fd()));
    let (stderr_prefix, stderr_level) = if journal {
        (LinePrefix::Priority, LevelFilter::WARN)
    } else {
        (LinePrefix::Time, LevelFilter::TRACE)
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(line_layer(io::stderr, stderr_prefix).with_filter(stderr_level))
        .with(file.clone().map(|f| line_layer(f, LinePrefix::Time)))
        .try_init()
        .map_err(|e| LoggingError::Install(e.to_string()))?;
    Ok(LogGuard { file })
}

/// Whether `fd` is the stream systemd named in `JOURNAL_STREAM` (`<device>:<inode>`, set for a
/// service whose output goes to the journal). A child that inherited the variable with its
/// stderr redirected elsewhere does not match.
fn is_journal_stream(journal_stream: &str, fd: RawFd) -> bool {
    let Some((dev, ino)) = journal_stream.trim().split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (
        dev.parse::<nix::libc::dev_t>(),
        ino.parse::<nix::libc::ino_t>(),
    ) else {
        return false;
    };
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
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
fn line_layer<S, W>(writer: W, prefix: LinePrefix) -> fmt::Layer<S, LineFields, LineFormat, W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fmt::layer()
        .with_ansi(false)
        .fmt_fields(LineFields)
        .event_format(LineFormat(prefix))
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

/// What a line starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LinePrefix {
    /// `MM/DD/YY HH:MM:SS - ` in local time (the file, a terminal).
    Time,
    /// `<N>`, the syslog priority that journald reads (`SyslogLevelPrefix=`); the journal stamps
    /// the time itself.
    Priority,
}

/// `MM/DD/YY HH:MM:SS - [LEVEL] message field=value ...` in local time, or with the syslog
/// priority instead of the time (see [`LinePrefix`]).
struct LineFormat(LinePrefix);

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
        let level = *event.metadata().level();
        match self.0 {
            LinePrefix::Time => write!(
                writer,
                "{} - ",
                chrono::Local::now().format("%m/%d/%y %H:%M:%S")
            )?,
            LinePrefix::Priority => write!(writer, "<{}>", syslog_priority(level))?,
        }
        write!(writer, "[{}] ", level_name(level))?;
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

/// The syslog priority of a level: err 3, warning 4, info 6, debug 7.
fn syslog_priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
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
        capture_with(level, LinePrefix::Time, f)
    }

    /// [`capture`] with lines starting with `prefix`.
    fn capture_with(level: &str, prefix: LinePrefix, f: impl FnOnce()) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let file = open_debug_file(&tmp.path().join("debug"), "gopher.log").unwrap();
        let subscriber = tracing_subscriber::registry()
            .with(parse_level(level))
            .with(line_layer(file.clone(), prefix));
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
    fn journal_lines_start_with_the_syslog_priority() {
        let text = capture_with("debug", LinePrefix::Priority, || {
            tracing::error!(probe = "tcp", "failed");
            tracing::warn!("w");
            tracing::info!("i");
            tracing::debug!("d");
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "<3>[ERROR] failed probe=tcp",
                "<4>[WARN] w",
                "<6>[INFO] i",
                "<7>[DEBUG] d"
            ]
        );
    }

    #[test]
    fn journal_stream_is_recognised_by_device_and_inode() {
        let tmp = tempfile::tempdir().unwrap();
        let stream = std::fs::File::create(tmp.path().join("stream")).unwrap();
        let other = std::fs::File::create(tmp.path().join("other")).unwrap();
        let st = nix::sys::stat::fstat(stream.as_raw_fd()).unwrap();
        let value = format!("{}:{}", st.st_dev, st.st_ino);
        assert!(is_journal_stream(&value, stream.as_raw_fd()));
        assert!(
            !is_journal_stream(&value, other.as_raw_fd()),
            "stderr redirected elsewhere"
        );
        for bad in ["", "12", "a:b", "1:2:3"] {
            assert!(!is_journal_stream(bad, stream.as_raw_fd()), "{bad:?}");
        }
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
