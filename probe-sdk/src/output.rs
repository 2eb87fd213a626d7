//! Checked, buffered output of record and event lines on stdout.
//!
//! A record is rendered straight into the output buffer and checked there; if a check fails
//! the partial line is cut off again, so a refused record leaves no trace. When the probe's
//! meta file is known, the daemon's own parser (`gala-meta`) checks the line, so a record the
//! SDK accepts is one the daemon accepts.

use std::fmt::{Display, Write as _};
use std::io::Write;
use std::path::{Path, PathBuf};

use gala_meta::{classify, Line, MetaError, MetaLimits, Registry};

use crate::error::EmitError;
use crate::event::Event;
use crate::line::breaks_line;

pub use gala_ipc_proto::ENV_META;

/// Buffered bytes that trigger a flush.
pub const FLUSH_THRESHOLD: usize = 64 * 1024;

/// Longest table name the daemon accepts.
const MAX_TABLE_NAME: usize = 63;

/// Names the daemon reads as events and OTel logs, never as tables.
const RESERVED_TABLES: [&str; 2] = ["event", "log"];

/// The tables a probe may write, from its meta files.
#[derive(Debug, Default)]
pub struct Schema {
    registry: Option<Registry>,
}

impl Schema {
    /// No meta file: only the structural checks apply.
    pub fn unchecked() -> Self {
        Schema { registry: None }
    }

    /// The tables of the given meta files.
    pub fn from_files(paths: &[PathBuf]) -> Result<Self, MetaError> {
        let mut registry = Registry::new();
        for p in paths {
            registry.load_file(p, &MetaLimits::default())?;
        }
        Ok(Schema {
            registry: Some(registry),
        })
    }

    /// The tables of one meta file's text (`source` names it in errors).
    pub fn from_str(source: &Path, text: &str) -> Result<Self, MetaError> {
        Self::from_strs(&[(source, text)])
    }

    /// The tables of several meta files' texts, each with the name used in its errors.
    pub fn from_strs(files: &[(&Path, &str)]) -> Result<Self, MetaError> {
        let mut registry = Registry::new();
        for (source, text) in files {
            registry.add_tables(gala_meta::parse_meta_file(
                source,
                text,
                &MetaLimits::default(),
            )?)?;
        }
        Ok(Schema {
            registry: Some(registry),
        })
    }

    /// The meta files of this probe: `GALA_GOPHER_META`, else `<program>.meta` beside the
    /// executable (its name cut at the last `.`), else none.
    pub fn discover() -> Result<Self, MetaError> {
        let schema = Self::discover_env()?;
        if schema.is_checked() {
            return Ok(schema);
        }
        if let Ok(exe) = std::env::current_exe() {
            let beside = gala_meta::custom_meta_path(&exe);
            if beside.is_file() {
                return Self::from_files(&[beside]);
            }
        }
        Ok(schema)
    }

    /// The meta files named by `GALA_GOPHER_META`, else none.
    pub fn discover_env() -> Result<Self, MetaError> {
        let Some(list) = std::env::var_os(ENV_META) else {
            return Ok(Self::unchecked());
        };
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if paths.is_empty() {
            return Ok(Self::unchecked());
        }
        Self::from_files(&paths)
    }

    /// Whether a meta file is known.
    pub fn is_checked(&self) -> bool {
        self.registry.is_some()
    }

    /// Checks a complete record line (without `\n`) against the meta files.
    fn check(&self, table: &str, line: &[u8]) -> Result<(), EmitError> {
        let Some(registry) = &self.registry else {
            return Ok(());
        };
        let invalid = |source| EmitError::Invalid {
            table: table.to_owned(),
            source,
        };
        let Ok(Line::Record(rec)) = classify(line) else {
            return Err(EmitError::BadTableName(table.to_owned()));
        };
        let id = registry
            .lookup(rec.table)
            .ok_or_else(|| EmitError::UnknownTable(table.to_owned()))?;
        let mut values = Vec::new();
        rec.split_values(registry.table(id), &mut values)
            .map_err(invalid)
    }
}

/// Record and event lines waiting for stdout.
#[derive(Debug)]
pub struct Output<W: Write = std::io::Stdout> {
    schema: Schema,
    buf: Vec<u8>,
    sink: W,
}

impl Output {
    /// Output to this process's stdout.
    pub fn stdout(schema: Schema) -> Self {
        Output::new(schema, std::io::stdout())
    }
}

impl<W: Write> Output<W> {
    /// Output to `sink`.
    pub fn new(schema: Schema, sink: W) -> Self {
        Output {
            schema,
            buf: Vec::with_capacity(FLUSH_THRESHOLD),
            sink,
        }
    }

    /// The tables this output checks against.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// The sink, for tests.
    pub fn sink(&self) -> &W {
        &self.sink
    }

    /// Appends the record `|table|v1|...|vN|`; on error nothing is appended. For values of
    /// mixed types (see [`crate::emit!`]); [`Output::emit_iter`] takes any iterable.
    pub fn emit(&mut self, table: &str, values: &[&dyn Display]) -> Result<(), EmitError> {
        self.emit_iter(table, values)
    }

    /// Appends the record `|table|v1|...|vN|` from any iterable of displayable values (a row
    /// `&[u64]`, a `&Vec<String>`, an iterator adapter), each written with its `Display`
    /// straight into the buffer, so the caller builds no strings; the checks are those of
    /// [`Output::emit`], and on error nothing is appended.
    pub fn emit_iter<I>(&mut self, table: &str, values: I) -> Result<(), EmitError>
    where
        I: IntoIterator,
        I::Item: Display,
    {
        if table.is_empty()
            || table.len() > MAX_TABLE_NAME
            || breaks_line(table.as_bytes())
            || RESERVED_TABLES.contains(&table)
        {
            return Err(EmitError::BadTableName(table.to_owned()));
        }
        let start = self.buf.len();
        let result = self.render_record(start, table, values);
        match result {
            Ok(()) => {
                self.buf.push(b'\n');
                self.flush_if_full()
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }

    fn render_record<I>(&mut self, start: usize, table: &str, values: I) -> Result<(), EmitError>
    where
        I: IntoIterator,
        I::Item: Display,
    {
        self.buf.push(b'|');
        self.buf.extend_from_slice(table.as_bytes());
        self.buf.push(b'|');
        let mut count = 0;
        for (i, v) in values.into_iter().enumerate() {
            let value_start = self.buf.len();
            // Writing into a Vec cannot fail.
            let _ = write!(VecWriter(&mut self.buf), "{v}");
            let value = &self.buf[value_start..];
            if breaks_line(value) {
                return Err(EmitError::Separator {
                    table: table.to_owned(),
                    what: "value",
                    index: i + 1,
                    value: String::from_utf8_lossy(value).into_owned(),
                });
            }
            if i == 0 && value.is_empty() {
                return Err(EmitError::EmptyKey(table.to_owned()));
            }
            self.buf.push(b'|');
            count += 1;
        }
        if count == 0 {
            return Err(EmitError::EmptyKey(table.to_owned()));
        }
        self.schema.check(table, &self.buf[start..])
    }

    /// Appends the event line of `event`; on error nothing is appended.
    pub fn event(&mut self, event: &Event<'_>) -> Result<(), EmitError> {
        let line = event.render()?;
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
        self.flush_if_full()
    }

    fn flush_if_full(&mut self) -> Result<(), EmitError> {
        if self.buf.len() >= FLUSH_THRESHOLD {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes everything buffered to the sink.
    pub fn flush(&mut self) -> Result<(), EmitError> {
        if !self.buf.is_empty() {
            let result = self
                .sink
                .write_all(&self.buf)
                .and_then(|()| self.sink.flush());
            self.buf.clear();
            result?;
        }
        Ok(())
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }
}

/// `fmt::Write` over a byte vector, for rendering `Display` values in place.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for VecWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;

    const META: &str = r#"version = "1.0.0";
measurements: ({ table_name: "t"; entity_name: "e";
  fields: ({ name: "k"; type: "key"; }, { name: "l"; type: "label"; }, { name: "g"; type: "gauge"; }); });"#;

    fn checked() -> Output<Vec<u8>> {
        Output::new(
            Schema::from_str(Path::new("t.meta"), META).unwrap(),
            Vec::new(),
        )
    }

    #[test]
    fn renders_and_flushes_records() {
        let mut out = checked();
        out.emit("t", &[&"a", &"x y", &1.5]).unwrap();
        out.emit("t", &[&42, &"", &7]).unwrap();
        assert!(out.sink().is_empty(), "buffered until flushed");
        out.flush().unwrap();
        assert_eq!(out.sink(), b"|t|a|x y|1.5|\n|t|42||7|\n");
    }

    #[test]
    fn refuses_what_would_break_a_line_and_writes_nothing() {
        let mut out = checked();
        out.emit("t", &[&"ok", &"l", &1]).unwrap();
        let before = out.pending().to_vec();
        for bad in ["a|b", "a\nb", "a\rb", "|", "\n"] {
            let e = out.emit("t", &[&"k", &bad, &1]).unwrap_err();
            assert!(
                matches!(e, EmitError::Separator { index: 2, .. }),
                "{bad:?}: {e}"
            );
            assert_eq!(out.pending(), before, "{bad:?} left bytes behind");
        }
        assert!(matches!(
            out.emit("t", &[&"", &"l", &1]),
            Err(EmitError::EmptyKey(_))
        ));
        assert!(matches!(out.emit("t", &[]), Err(EmitError::EmptyKey(_))));
        assert!(matches!(
            out.emit_iter("t", std::iter::empty::<u32>()),
            Err(EmitError::EmptyKey(_))
        ));
        for table in ["", "a|b", "a\nb", &"x".repeat(64), "event", "log"] {
            assert!(matches!(
                out.emit(table, &[&"k"]),
                Err(EmitError::BadTableName(_))
            ));
        }
        assert_eq!(out.pending(), before);
    }

    #[test]
    fn checks_against_the_meta_file() {
        let mut out = checked();
        assert!(matches!(
            out.emit("other", &[&"k", &"l", &1]),
            Err(EmitError::UnknownTable(_))
        ));
        let e = out.emit("t", &[&"k", &"l"]).unwrap_err();
        assert!(e.to_string().contains("expected 3"), "{e}");
        assert!(matches!(
            out.emit("t", &[&"k", &"l", &1, &2]),
            Err(EmitError::Invalid { .. })
        ));
        assert!(matches!(
            out.emit("t", &[&"k", &"l", &"fast"]),
            Err(EmitError::Invalid { .. })
        ));
        assert!(out.pending().is_empty());
        // Without a meta file only the structure is checked.
        let mut loose = Output::new(Schema::unchecked(), Vec::new());
        loose.emit("other", &[&"k", &"fast"]).unwrap();
    }

    #[test]
    fn emits_any_iterable_of_displayable_values() {
        let mut out = checked();
        // A row of one type, by reference and by value.
        let row = vec!["k".to_string(), "l".to_string(), "3".to_string()];
        out.emit_iter("t", &row).unwrap();
        out.emit_iter("t", ["k2", "l", "4"]).unwrap();
        // An iterator adapter: nothing is collected or formatted ahead.
        out.emit_iter("t", (7..10).map(|n| n * 2)).unwrap();
        // Mixed types through `&dyn Display`, which is what `emit` passes on.
        out.emit_iter("t", [&"k3" as &dyn Display, &"l", &1.5])
            .unwrap();
        out.flush().unwrap();
        assert_eq!(
            std::str::from_utf8(out.sink()).unwrap(),
            "|t|k|l|3|\n|t|k2|l|4|\n|t|14|16|18|\n|t|k3|l|1.5|\n"
        );
    }

    #[test]
    fn an_iterator_is_held_to_the_same_rules() {
        let mut out = checked();
        out.emit_iter("t", ["ok", "l", "1"]).unwrap();
        let before = out.pending().to_vec();
        // A separator in a later value cuts the whole line off again.
        let e = out.emit_iter("t", ["k", "l", "1|2"]).unwrap_err();
        assert!(matches!(e, EmitError::Separator { index: 3, .. }), "{e}");
        // Values rendered empty by their Display still count as an empty key.
        let e = out.emit_iter("t", ["", "l", "1"]).unwrap_err();
        assert!(matches!(e, EmitError::EmptyKey(_)), "{e}");
        // The meta file's field count applies to what the iterator yields.
        let e = out
            .emit_iter("t", ["k", "l"].iter().cycle().take(5))
            .unwrap_err();
        assert!(matches!(e, EmitError::Invalid { .. }), "{e}");
        let e = out.emit_iter("t", std::iter::repeat_n("x", 2)).unwrap_err();
        assert!(e.to_string().contains("expected 3"), "{e}");
        assert_eq!(out.pending(), before);
    }

    #[test]
    fn flushes_by_itself_when_the_buffer_is_full() {
        let mut out = checked();
        let label = "x".repeat(1000);
        for i in 0..100 {
            out.emit("t", &[&i, &label, &1]).unwrap();
        }
        assert!(out.sink().len() >= FLUSH_THRESHOLD);
        assert!(out.pending().len() < FLUSH_THRESHOLD);
    }

    #[test]
    fn events_go_through_the_same_buffer() {
        let mut out = checked();
        let ev = Event::new("tcp_link", "1_2", "rx", Severity::Warn, "drops | high")
            .at("Tue Dec  1 19:40:38 2026");
        out.event(&ev).unwrap();
        out.flush().unwrap();
        assert_eq!(
            std::str::from_utf8(out.sink()).unwrap(),
            "|event|tcp_link|1_2|rx|||||||WARN|13|Tue Dec  1 19:40:38 2026 WARN Entity(1_2) drops / high|\n"
        );
    }
}
