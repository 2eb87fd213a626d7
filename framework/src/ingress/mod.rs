//! Ingress: reads a probe's stdout, splits it into lines and stores valid records in the imdb.
//!
//! Every line is validated against the meta registry. A bad line is dropped, counted under
//! its probe and reason (`gala_gopher_daemon_records_dropped_total`), and logged
//! rate-limited; nothing else is affected. Memory is bounded: a line longer than
//! `max_line_len` is discarded up to its newline without being buffered.

mod lines;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_meta::record::{classify, parse_event, Line, RecordError};
use gala_meta::TableId;
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::clock;
use crate::imdb::{Imdb, TableGuard, UpsertError};
use crate::ratelimit::{RateLimiter, Verdict};

pub use lines::LineSplitter;

/// Why a line from a probe was dropped; the `reason` label of the drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The table name is missing, empty or too long.
    BadTableName,
    /// No meta file defines the table.
    UnknownTable,
    /// The number of values differs from the table's fields.
    FieldCount,
    /// The last value lacks its closing `|`.
    Unterminated,
    /// The first column (the primary key) is empty.
    EmptyKey,
    /// A gauge/counter/summary value is not a number.
    NonNumeric,
    /// A histogram value is not a valid encoding.
    BadHistogram,
    /// The line is longer than `ingress.max_line_len`.
    LineTooLong,
    /// The table already holds `imdb.max_records_num` series.
    TableFull,
    /// An `|event|` line lacks required fields.
    BadEvent,
    /// An `|event|`/`|log|` line whose output channel is not available.
    NoRoute,
}

impl DropReason {
    /// Every reason, in the order of [`DropReason::index`].
    pub const ALL: [DropReason; 11] = [
        DropReason::BadTableName,
        DropReason::UnknownTable,
        DropReason::FieldCount,
        DropReason::Unterminated,
        DropReason::EmptyKey,
        DropReason::NonNumeric,
        DropReason::BadHistogram,
        DropReason::LineTooLong,
        DropReason::TableFull,
        DropReason::BadEvent,
        DropReason::NoRoute,
    ];

    /// The label value used in the drop counter.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BadTableName => "bad_table_name",
            DropReason::UnknownTable => "unknown_table",
            DropReason::FieldCount => "field_count",
            DropReason::Unterminated => "unterminated",
            DropReason::EmptyKey => "empty_key",
            DropReason::NonNumeric => "non_numeric",
            DropReason::BadHistogram => "bad_histogram",
            DropReason::LineTooLong => "line_too_long",
            DropReason::TableFull => "table_full",
            DropReason::BadEvent => "bad_event",
            DropReason::NoRoute => "no_route",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_record_error(e: &RecordError) -> Self {
        match e.reason() {
            "field_count" => DropReason::FieldCount,
            "unterminated" => DropReason::Unterminated,
            "empty_key" => DropReason::EmptyKey,
            "non_numeric" => DropReason::NonNumeric,
            "bad_histogram" => DropReason::BadHistogram,
            "bad_event" => DropReason::BadEvent,
            _ => DropReason::BadTableName,
        }
    }
}

/// Counters of one probe's ingress, published as self-metrics.
struct ProbeCounters {
    received: Counter,
    dropped: Vec<Counter>,
}

impl ProbeCounters {
    fn new(probe: &str) -> Self {
        let received = metrics::counter!(
            "gala_gopher_daemon_records_received_total",
            "probe" => probe.to_string()
        );
        let dropped = DropReason::ALL
            .iter()
            .map(|r| {
                metrics::counter!(
                    "gala_gopher_daemon_records_dropped_total",
                    "probe" => probe.to_string(),
                    "reason" => r.as_str()
                )
            })
            .collect();
        ProbeCounters { received, dropped }
    }
}

/// Validates and stores the lines of one probe.
pub struct LineProcessor {
    probe: Arc<str>,
    imdb: Arc<Imdb>,
    counters: ProbeCounters,
    received: u64,
    dropped: [u64; DropReason::ALL.len()],
    drop_log: Vec<RateLimiter>,
    text_log: RateLimiter,
    last_table: Option<(Vec<u8>, TableId)>,
    /// The table locked by the previous line, kept until [`LineProcessor::flush`] so that a
    /// run of lines for one table takes its lock once.
    held: Option<(TableId, TableGuard)>,
    key: Vec<u8>,
    /// Allocation reused for the value slices of each line (always empty between lines).
    values: Vec<&'static [u8]>,
}

impl LineProcessor {
    /// A processor storing `probe`'s records into `imdb`.
    pub fn new(probe: &str, imdb: Arc<Imdb>) -> Self {
        LineProcessor {
            probe: probe.into(),
            imdb,
            counters: ProbeCounters::new(probe),
            received: 0,
            dropped: [0; DropReason::ALL.len()],
            drop_log: DropReason::ALL
                .iter()
                .map(|_| RateLimiter::new(Duration::from_secs(10), 1))
                .collect(),
            text_log: RateLimiter::new(Duration::from_secs(1), 100),
            last_table: None,
            held: None,
            key: Vec::with_capacity(128),
            values: Vec::with_capacity(64),
        }
    }

    /// Handles one line (without its newline) read at `now_ms`.
    pub fn line(&mut self, line: &[u8], now_ms: u64) {
        let rec = match classify(line) {
            Ok(Line::Record(rec)) => rec,
            Ok(Line::Text(text)) => return self.text(text),
            Ok(Line::Event(ev)) => {
                return match parse_event(ev) {
                    Ok(_) => self.drop(DropReason::NoRoute, line, &"event output is not enabled"),
                    Err(e) => self.drop(DropReason::BadEvent, line, &e),
                };
            }
            Ok(Line::Log(_)) => {
                return self.drop(
                    DropReason::NoRoute,
                    line,
                    &"log lines need a Kafka event channel",
                )
            }
            Err(e) => return self.drop(DropReason::from_record_error(&e), line, &e),
        };
        let id = match &self.last_table {
            Some((name, id)) if name.as_slice() == rec.table => *id,
            _ => match self.imdb.registry().lookup(rec.table) {
                Some(id) => {
                    self.last_table = Some((rec.table.to_vec(), id));
                    id
                }
                None => return self.drop(DropReason::UnknownTable, line, &"unknown table"),
            },
        };
        let LineProcessor {
            imdb,
            held,
            values: spare,
            key,
            ..
        } = self;
        let meta = imdb.registry().table(id);
        let mut values = recycle(std::mem::take(spare));
        let result = match rec.split_values(meta, &mut values) {
            Err(e) => Err((DropReason::from_record_error(&e), Some(e))),
            Ok(()) => {
                // Store the validated values only, up to and including the last one's '|'.
                let stored = values.last().map_or(0, |v| {
                    v.as_ptr() as usize + v.len() + 1 - rec.rest.as_ptr() as usize
                });
                if held.as_ref().is_none_or(|(held_id, _)| *held_id != id) {
                    *held = None;
                    *held = Some((id, imdb.lock_owned(id)));
                }
                let table = &mut held.as_mut().expect("locked above").1;
                imdb.upsert(table, meta, &values, &rec.rest[..stored], now_ms, key)
                    .map_err(|UpsertError::TableFull| (DropReason::TableFull, None))
            }
        };
        *spare = recycle(values);
        match result {
            Ok(()) => self.received += 1,
            Err((reason, Some(e))) => self.drop(reason, line, &e),
            Err((reason, None)) => self.drop(reason, line, &"table full (imdb.max_records_num)"),
        }
    }

    /// Releases the table lock and publishes the counts gathered since the last flush; call
    /// it after each chunk of lines, before waiting for more input.
    pub fn flush(&mut self) {
        self.held = None;
        if self.received > 0 {
            self.counters
                .received
                .increment(std::mem::take(&mut self.received));
        }
        for (i, n) in self.dropped.iter_mut().enumerate() {
            if *n > 0 {
                self.counters.dropped[i].increment(std::mem::take(n));
            }
        }
    }

    /// Counts and logs (rate-limited) a dropped line.
    pub fn drop(&mut self, reason: DropReason, line: &[u8], why: &dyn std::fmt::Display) {
        self.dropped[reason.index()] += 1;
        if let Verdict::Log { suppressed } = self.drop_log[reason.index()].check(Instant::now()) {
            let shown = &line[..line.len().min(200)];
            tracing::warn!(
                probe = &*self.probe,
                reason = reason.as_str(),
                suppressed,
                "dropped record: {why}: {}",
                String::from_utf8_lossy(shown)
            );
        }
    }

    /// Logs a line that is not a record, at the level of its `[INFO]`/`[WARN]`/`[ERROR]` prefix.
    fn text(&mut self, text: &[u8]) {
        if text.is_empty() {
            return;
        }
        let Verdict::Log { suppressed } = self.text_log.check(Instant::now()) else {
            return;
        };
        if suppressed > 0 {
            tracing::warn!(probe = &*self.probe, "{suppressed} log lines suppressed");
        }
        let (level, msg) = split_level(text);
        let msg = String::from_utf8_lossy(msg);
        let probe = &*self.probe;
        match level {
            Some(tracing::Level::ERROR) => tracing::error!(probe, "{msg}"),
            Some(tracing::Level::WARN) => tracing::warn!(probe, "{msg}"),
            Some(_) => tracing::info!(probe, "{msg}"),
            None => tracing::debug!(probe, "{msg}"),
        }
    }
}

/// Empties a vector of slices and hands back its allocation under another lifetime
/// (the in-place collect reuses the buffer, so this does not allocate).
fn recycle<'a, 'b>(mut v: Vec<&'a [u8]>) -> Vec<&'b [u8]> {
    v.clear();
    v.into_iter().map(|_| -> &'b [u8] { &[] }).collect()
}

/// Splits a probe log line into its level prefix (`[INFO]`, `[WARN]`, `[ERROR]`) and message.
pub fn split_level(text: &[u8]) -> (Option<tracing::Level>, &[u8]) {
    for (prefix, level) in [
        (&b"[INFO]"[..], tracing::Level::INFO),
        (b"[WARN]", tracing::Level::WARN),
        (b"[ERROR]", tracing::Level::ERROR),
    ] {
        if let Some(rest) = text.strip_prefix(prefix) {
            return (Some(level), rest.trim_ascii_start());
        }
    }
    (None, text)
}

/// Reads `reader` to its end, feeding every line to `proc`.
pub async fn read_probe_output<R: AsyncRead + Unpin>(
    mut reader: R,
    mut proc: LineProcessor,
    max_line_len: usize,
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::new(max_line_len);
    loop {
        let n = reader.read(splitter.spare()).await?;
        let now = clock::now_ms();
        let eof = n == 0;
        splitter.filled(n, eof, |item| match item {
            Ok(line) => proc.line(line, now),
            Err(head) => proc.drop(DropReason::LineTooLong, head, &"line too long"),
        });
        proc.flush();
        if eof {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
