//! The first ingress stage: classifies lines and splits records into their table's fields.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_meta::record::{classify, parse_event, Line};
use gala_meta::{Registry, TableId};

use super::output::{EventOutput, Refused};
use super::{recycle, split_level, Batch, DropLog, DropReason};
use crate::ratelimit::{RateLimiter, Verdict};

/// Why an event has nowhere to go.
const NO_EVENT_OUTPUT: &str = "no event output (event.out_channel is \"\")";
/// Why a log line has nowhere to go (only the Kafka event channel takes them).
pub const NO_LOG_OUTPUT: &str = "log lines need a Kafka event channel";

/// Splits one probe's lines: records with the right fields go into a [`Batch`], events and
/// log lines to its [`EventOutput`] (when there is one), bad lines are counted.
pub struct LineValidator {
    probe: Arc<str>,
    registry: Arc<Registry>,
    /// Where events and log lines go; `None`: they are `no_route`.
    events: Option<Box<dyn EventOutput>>,
    drops: DropLog,
    text_log: RateLimiter,
    last_table: Option<(Vec<u8>, TableId)>,
    /// Allocation reused for the value slices of each line (always empty between lines).
    values: Vec<&'static [u8]>,
}

impl LineValidator {
    /// A validator for `probe`'s lines.
    pub fn new(probe: &str, registry: Arc<Registry>) -> Self {
        let probe: Arc<str> = probe.into();
        LineValidator {
            drops: DropLog::new(&probe),
            probe,
            registry,
            events: None,
            text_log: RateLimiter::new(Duration::from_secs(1), 100),
            last_table: None,
            values: Vec::with_capacity(64),
        }
    }

    /// Sends this probe's events and `|log|` lines to `events` instead of counting them as
    /// `no_route`.
    pub fn with_events(mut self, events: Box<dyn EventOutput>) -> Self {
        self.events = Some(events);
        self
    }

    /// Handles one line (without its newline): a valid record is appended to `batch`.
    pub fn line(&mut self, line: &[u8], batch: &mut Batch) {
        let rec = match classify(line) {
            Ok(Line::Record(rec)) => rec,
            Ok(Line::Text(text)) => return self.text(text),
            Ok(Line::Event(ev)) => return self.event(line, ev),
            Ok(Line::Log(log)) => return self.log(line, log),
            Err(e) => return self.drops.drop(DropReason::from_record_error(&e), line, &e),
        };
        let id = match &self.last_table {
            Some((name, id)) if name.as_slice() == rec.table => *id,
            _ => match self.registry.lookup(rec.table) {
                Some(id) => {
                    self.last_table = Some((rec.table.to_vec(), id));
                    id
                }
                None => {
                    return self
                        .drops
                        .drop(DropReason::UnknownTable, line, &"unknown table")
                }
            },
        };
        let meta = self.registry.table(id);
        let mut values = recycle(std::mem::take(&mut self.values));
        // Value types are checked by the writer thread, which has the spare time.
        match rec.split_fields(meta, &mut values) {
            Ok(()) => {
                // Store the table's values only, up to and including the last one's '|'.
                let stored = values.last().map_or(0, |v| {
                    v.as_ptr() as usize + v.len() + 1 - rec.rest.as_ptr() as usize
                });
                batch.push(id, &rec.rest[..stored], &values);
            }
            Err(e) => self.drops.drop(DropReason::from_record_error(&e), line, &e),
        }
        self.values = recycle(values);
    }

    /// Counts a line longer than `ingress.max_line_len`, identified by its first bytes.
    pub fn too_long(&mut self, head: &[u8]) {
        self.drops
            .drop(DropReason::LineTooLong, head, &"line too long");
    }

    /// Publishes the drop counts gathered since the last call.
    pub fn flush(&mut self) {
        self.drops.flush();
    }

    /// Drops counted under `reason` and not yet published.
    #[cfg(test)]
    pub(crate) fn pending(&self, reason: DropReason) -> u64 {
        self.drops.pending(reason)
    }

    /// Hands an `|event|` line to the event output; de-duplication and queue drops are
    /// counted there, malformed and unroutable events here.
    fn event(&mut self, line: &[u8], ev: &[u8]) {
        let ev = match parse_event(ev) {
            Ok(ev) => ev,
            Err(e) => return self.drops.drop(DropReason::BadEvent, line, &e),
        };
        let result = match &mut self.events {
            Some(out) => out.event(&ev),
            None => Err(Refused::NoRoute(NO_EVENT_OUTPUT)),
        };
        if let Err(refused) = result {
            self.refused(line, &refused);
        }
    }

    /// Hands a `|log|` line to the event output; only the Kafka one takes them (as the
    /// original, which forwards them only to Kafka), others refuse them as `no_route`.
    fn log(&mut self, line: &[u8], log: &[u8]) {
        let result = match &mut self.events {
            Some(out) => out.log(log),
            None => Err(Refused::NoRoute(NO_LOG_OUTPUT)),
        };
        if let Err(refused) = result {
            self.refused(line, &refused);
        }
    }

    /// Counts a line the event output refused.
    fn refused(&mut self, line: &[u8], refused: &Refused) {
        let reason = match refused {
            Refused::NoRoute(_) => DropReason::NoRoute,
            Refused::Malformed(_) => DropReason::BadEvent,
        };
        self.drops.drop(reason, line, refused);
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
