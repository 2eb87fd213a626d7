//! Ingress: reads a probe's stdout, splits it into lines and stores valid records in the imdb;
//! records, events and `|log|` lines also go to the [`Outputs`] egress provides.
//!
//! Every line is validated against the meta registry. A bad line is dropped, counted under
//! its probe and reason (`gala_gopher_daemon_records_dropped_total`), and logged
//! rate-limited; nothing else is affected. Memory is bounded: a line longer than
//! `max_line_len` is discarded up to its newline without being buffered, and at most
//! [`PIPELINE_DEPTH`] batches wait between the two stages.
//!
//! Each probe's output runs through two stages on two threads: the reader task splits lines
//! and records into a [`Batch`] ([`LineValidator`]), and a writer thread checks the value
//! types and stores the batch in the imdb ([`BatchWriter`]), so the work overlaps.
//!
//! The rest of the daemon sees one [`Pipeline`]: the imdb, the [`Outputs`] and the line limit,
//! which [`Pipeline::spawn`]s a reader per probe run and can wait for them all at shutdown.

mod batch;
mod lines;
mod output;
mod validate;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_meta::record::RecordError;
use metrics::Counter;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

use crate::clock;
use crate::imdb::{Imdb, Stamp};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::selfmetrics;

pub use batch::Batch;
pub use lines::LineSplitter;
pub use output::{EventOutput, ImdbOnly, Outputs, RecordOutput, Refused};
pub use validate::{LineValidator, NO_LOG_OUTPUT};
pub use writer::BatchWriter;

/// Batches in flight between a probe's validator and its writer.
pub const PIPELINE_DEPTH: usize = 4;

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
        // Exhaustive, so a new parser error needs a reason here.
        match e {
            RecordError::BadTableName => DropReason::BadTableName,
            RecordError::FieldCount { .. } => DropReason::FieldCount,
            RecordError::Unterminated => DropReason::Unterminated,
            RecordError::EmptyKey => DropReason::EmptyKey,
            RecordError::NonNumeric { .. } => DropReason::NonNumeric,
            RecordError::BadHistogram { .. } => DropReason::BadHistogram,
            RecordError::BadEvent(_) => DropReason::BadEvent,
        }
    }
}

/// Counts and logs (rate-limited) the lines one stage of a probe's ingress drops.
struct DropLog {
    probe: Arc<str>,
    counters: Vec<Counter>,
    counts: [u64; DropReason::ALL.len()],
    limiters: Vec<RateLimiter>,
}

impl DropLog {
    fn new(probe: &Arc<str>) -> Self {
        let counters = DropReason::ALL
            .iter()
            .map(|r| selfmetrics::records_dropped(probe, r.as_str()))
            .collect();
        DropLog {
            probe: probe.clone(),
            counters,
            counts: [0; DropReason::ALL.len()],
            limiters: DropReason::ALL
                .iter()
                .map(|_| RateLimiter::new(Duration::from_secs(10), 1))
                .collect(),
        }
    }

    /// Counts a dropped line and logs it unless this reason was logged in the last 10 s.
    fn drop(&mut self, reason: DropReason, line: &[u8], why: &dyn std::fmt::Display) {
        self.counts[reason.index()] += 1;
        if let Verdict::Log { suppressed } = self.limiters[reason.index()].check(Instant::now()) {
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

    /// Publishes the counts gathered since the last call.
    fn flush(&mut self) {
        for (n, c) in self.counts.iter_mut().zip(&self.counters) {
            if *n > 0 {
                c.increment(std::mem::take(n));
            }
        }
    }

    /// Drops counted under `reason` and not yet published.
    #[cfg(test)]
    fn pending(&self, reason: DropReason) -> u64 {
        self.counts[reason.index()]
    }
}

/// The ingress of the whole daemon, shared by every probe's supervisor, which holds it
/// without looking inside: where records are stored, where they and the events also go, and
/// the longest line accepted.
pub struct Pipeline {
    imdb: Arc<Imdb>,
    outputs: Box<dyn Outputs>,
    max_line_len: usize,
    /// Readers spawned and not yet ended.
    readers: watch::Sender<usize>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("max_line_len", &self.max_line_len)
            .field("readers", &*self.readers.borrow())
            .finish_non_exhaustive()
    }
}

/// Counts a reader until it ends (or its task is dropped).
struct ReaderGuard(Arc<Pipeline>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.readers.send_modify(|n| *n -= 1);
    }
}

impl Pipeline {
    /// Records go to `imdb` and, with events and log lines, to `outputs`; lines longer than
    /// `max_line_len` (`ingress.max_line_len`) are dropped.
    pub fn new(imdb: Arc<Imdb>, outputs: Box<dyn Outputs>, max_line_len: usize) -> Self {
        Pipeline {
            imdb,
            outputs,
            max_line_len,
            readers: watch::Sender::new(0),
        }
    }

    /// Reads `reader` (probe `probe`'s stdout) to its end on a task of its own (see
    /// [`Pipeline::read`]); a read error is logged. Must be called inside the runtime.
    pub fn spawn<R>(self: &Arc<Self>, reader: R, probe: &str, hold_ms: Arc<AtomicU64>)
    where
        R: AsyncRead + Unpin + Send + 'static,
    {
        // Counted before the task runs, so a drain that follows finds it.
        self.readers.send_modify(|n| *n += 1);
        let guard = ReaderGuard(self.clone());
        let probe = probe.to_owned();
        tokio::spawn(async move {
            if let Err(e) = guard.0.read(reader, &probe, hold_ms).await {
                tracing::warn!(probe, "reading stdout failed: {e}");
            }
            drop(guard);
        });
    }

    /// Waits until every reader [`Pipeline::spawn`]ed has ended (its probe closed its stdout
    /// and every record read is stored), for at most `timeout`; whether they all ended.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let mut readers = self.readers.subscribe();
        let ended = tokio::time::timeout(timeout, readers.wait_for(|&n| n == 0)).await;
        ended.is_ok()
    }

    /// Reads `reader` to its end, validating its lines on this task and storing them in the
    /// imdb on a writer thread; returns once every record read is stored. `hold_ms` is the
    /// least lifetime of the probe's series ([`Stamp::hold_ms`]), read for every batch.
    /// Records, events and log lines also go to the probe's [`Outputs`]; without an event
    /// output, events and log lines are counted as `no_route`.
    pub async fn read<R: AsyncRead + Unpin>(
        &self,
        mut reader: R,
        probe: &str,
        hold_ms: Arc<AtomicU64>,
    ) -> std::io::Result<()> {
        let (full_tx, mut full_rx) = mpsc::channel::<Batch>(PIPELINE_DEPTH);
        let (empty_tx, mut empty_rx) = mpsc::channel::<Batch>(PIPELINE_DEPTH + 1);
        let mut writer = BatchWriter::new(probe, self.imdb.clone());
        if let Some(output) = self.outputs.records(probe) {
            writer = writer.with_output(output);
        }
        let thread = std::thread::Builder::new()
            .name(format!("ingest-{probe}"))
            .spawn(move || {
                while let Some(mut batch) = full_rx.blocking_recv() {
                    writer.write(&mut batch);
                    writer.flush();
                    batch.clear();
                    // The validator may be gone already; then the batch is simply freed.
                    let _ = empty_tx.try_send(batch);
                }
            })?;
        let mut validator = LineValidator::new(probe, self.imdb.registry().clone());
        if let Some(output) = self.outputs.events(probe) {
            validator = validator.with_events(output);
        }
        let mut splitter = LineSplitter::new(self.max_line_len);
        let result = loop {
            let n = match reader.read(splitter.spare()).await {
                Ok(n) => n,
                Err(e) => break Err(e),
            };
            let eof = n == 0;
            let mut batch = empty_rx.try_recv().unwrap_or_default();
            batch.at = Stamp {
                now_ms: clock::now_ms(),
                hold_ms: hold_ms.load(Ordering::Relaxed),
            };
            splitter.filled(n, eof, |item| match item {
                Ok(line) => validator.line(line, &mut batch),
                Err(head) => validator.too_long(head),
            });
            validator.flush();
            if !batch.is_empty() && full_tx.send(batch).await.is_err() {
                break Err(std::io::Error::other("ingest writer thread ended"));
            }
            if eof {
                break Ok(());
            }
        };
        drop(full_tx);
        // The writer finishes the batches in flight, then ends.
        let joined = tokio::task::spawn_blocking(move || thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            return Err(std::io::Error::other("ingest writer thread panicked"));
        }
        result
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

#[cfg(test)]
mod tests;
