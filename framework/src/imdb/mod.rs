//! The in-memory DB: one table per meta table, holding the latest report of every series.
//!
//! A series is identified by the values of its table's `key` fields. A new report of a series
//! replaces the previous one (the original appended every report and rendered duplicates), so
//! any number of scrapers read the same latest values. A series not refreshed within its
//! lifetime — `record_timeout`, or twice the report period of the probe that wrote it if that
//! is longer ([`Stamp::hold_ms`]) — is invisible to readers and removed by [`Imdb::sweep`].
//!
//! Histogram fields are also added up per series as records arrive ([`running`]), so that
//! Prometheus gets counters that never decrease from probes reporting one period at a time.

pub mod running;
mod series;

use std::hash::BuildHasher;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use gala_meta::{FieldType, Registry, TableId, TableMeta};
use hashbrown::DefaultHashBuilder;
use parking_lot::lock_api::ArcMutexGuard;
use parking_lot::{Mutex, MutexGuard, RawMutex};

use running::{RunningHistogram, RunningStore};

/// A table lock that owns its reference to the table, so ingress can keep it across lines.
pub type TableGuard = ArcMutexGuard<RawMutex, Table>;

/// Limits of the in-memory DB (the `imdb` config section).
#[derive(Clone, Copy, Debug)]
pub struct ImdbLimits {
    /// Most series a table holds; a report of a new series beyond it is dropped.
    pub max_records: usize,
    /// A series not reported for this long disappears, in milliseconds.
    pub record_timeout_ms: u64,
}

/// When a report was stored, and how long its writer asks the series to be kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// The time of the report, milliseconds of [`crate::clock`].
    pub now_ms: u64,
    /// The least lifetime of the series, milliseconds: twice the writing probe's report
    /// period, so that a series reported less often than `record_timeout` does not vanish
    /// between two reports. The lifetime is the larger of this and `record_timeout`.
    pub hold_ms: u64,
}

impl Stamp {
    /// A report at `now_ms` kept for `record_timeout` only.
    pub fn at(now_ms: u64) -> Self {
        Stamp { now_ms, hold_ms: 0 }
    }
}

/// Why [`Imdb::upsert`] refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpsertError {
    /// The table already holds `max_records` series and this one is new.
    #[error("table full")]
    TableFull,
}

/// The latest report of one series.
#[derive(Debug)]
pub struct Record {
    /// Hash of the key, kept for rehashing.
    hash: u64,
    /// Length of the key at the start of `data` (lines are at most 16 MiB).
    key_len: u32,
    /// The series' slot in its table's [`RunningStore`] (unused when the table has no
    /// histogram field). Two `u32`s keep the record at 64 bytes, one cache line.
    running: u32,
    /// The key (key field values, each followed by `|`), then the record line after
    /// `|<table>|`: `v1|v2|...|vN|`, exactly the table's fields. One allocation, so a lookup
    /// and an update touch the same memory.
    data: Vec<u8>,
    /// When the series was last reported (milliseconds of [`crate::clock`]).
    updated_ms: u64,
    /// Until when the series is live: `updated_ms` plus its lifetime.
    expires_ms: u64,
    /// Table-wide sequence number of the last update; lets log egress find fresh records.
    seq: u64,
}

impl Record {
    /// The stored values, one slice per field, in meta order (null values are empty or `(null)`).
    pub fn values<'a>(&'a self, out: &mut Vec<&'a [u8]>) {
        out.clear();
        let line = self.line();
        let mut start = 0;
        for end in gala_meta::scan::bars(line) {
            out.push(&line[start..end]);
            start = end + 1;
        }
    }

    /// The stored record line: `v1|v2|...|vN|`.
    pub fn line(&self) -> &[u8] {
        &self.data[self.key_len as usize..]
    }

    fn key(&self) -> &[u8] {
        &self.data[..self.key_len as usize]
    }

    fn set(&mut self, line: &[u8], now_ms: u64, expires_ms: u64, seq: u64) {
        self.data.truncate(self.key_len as usize);
        self.data.extend_from_slice(line);
        self.updated_ms = now_ms;
        self.expires_ms = expires_ms;
        self.seq = seq;
    }

    /// When the series was last reported, in milliseconds of [`crate::clock`].
    pub fn updated_ms(&self) -> u64 {
        self.updated_ms
    }

    /// Table-wide sequence number of the last update.
    pub fn seq(&self) -> u64 {
        self.seq
    }
}

/// The series of one meta table.
#[derive(Default)]
pub struct Table {
    /// Series by key (the key field values, each followed by `|`).
    records: series::SeriesMap,
    /// Sequence number given to the next update.
    next_seq: u64,
    /// The running histograms of the series, when the table has histogram fields.
    running: RunningStore,
    /// The probe that wrote the table last (whose chosen labels its series get).
    writer: Option<Arc<str>>,
}

impl Table {
    fn new(meta: &TableMeta) -> Self {
        let hist_fields = (meta.fields.iter().enumerate())
            .filter(|(_, f)| f.ty == FieldType::Histogram)
            .map(|(i, _)| i)
            .collect();
        Table {
            running: RunningStore::new(hist_fields),
            ..Default::default()
        }
    }

    /// The running histogram of the `nth` histogram field (in meta order) of a series of
    /// this table: every report's buckets and SUM added up since the series appeared or its
    /// bucket bounds changed. Empty until a report had a non-null value for the field.
    pub fn running(&self, rec: &Record, nth: usize) -> Option<&RunningHistogram> {
        self.running.get(rec.running, nth)
    }

    /// Iterates over the series still live at `now_ms`.
    pub fn live(&self, now_ms: u64) -> impl Iterator<Item = &Record> {
        self.records
            .records()
            .iter()
            .filter(move |r| r.expires_ms >= now_ms)
    }

    /// Iterates over the series still live at `now_ms` among the stored ones at `range`
    /// (indexes below [`Table::len`]): disjoint ranges let several threads share the work.
    pub fn live_in(&self, range: Range<usize>, now_ms: u64) -> impl Iterator<Item = &Record> {
        self.records.records()[range]
            .iter()
            .filter(move |r| r.expires_ms >= now_ms)
    }

    /// Number of series stored (live or not yet swept).
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the table holds no series.
    pub fn is_empty(&self) -> bool {
        self.records.len() == 0
    }

    /// The probe that wrote the table last.
    pub fn writer(&self) -> Option<&str> {
        self.writer.as_deref()
    }

    /// Notes that `probe` writes the table.
    pub fn set_writer(&mut self, probe: &Arc<str>) {
        if !self.writer.as_ref().is_some_and(|w| Arc::ptr_eq(w, probe)) {
            self.writer = Some(probe.clone());
        }
    }

    /// Sequence number the next update will get; records with a lower one are older.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// Appends the key of a record to `out`: its key field values, each followed by `|`.
pub fn push_key(meta: &TableMeta, values: &[&[u8]], out: &mut Vec<u8>) {
    for &i in &meta.key_idx {
        out.extend_from_slice(values[i]);
        out.push(b'|');
    }
}

/// A record for [`Imdb::upsert_run`]: its key's hash ([`Imdb::hash_key`]), where its key
/// is in the run's key buffer, and its line.
#[derive(Debug, Clone)]
pub struct Pending<'a> {
    /// Hash of the key.
    pub hash: u64,
    /// The key's bytes in the key buffer passed along.
    pub key: Range<usize>,
    /// The record line after `|<table>|`.
    pub line: &'a [u8],
}

/// Records prefetched at a time by [`Imdb::upsert_run`]: enough to overlap the cache misses,
/// few enough that the fetched lines are still cached when used.
const PREFETCH_RUN: usize = 16;

/// The in-memory DB shared by ingress (writers) and egress (readers).
pub struct Imdb {
    registry: Arc<Registry>,
    hasher: DefaultHashBuilder,
    tables: Vec<Arc<Mutex<Table>>>,
    limits: ImdbLimits,
    series: AtomicU64,
}

impl Imdb {
    /// An empty DB with one table per registry table.
    pub fn new(registry: Arc<Registry>, limits: ImdbLimits) -> Self {
        let tables = (registry.iter())
            .map(|(_, meta)| Arc::new(Mutex::new(Table::new(meta))))
            .collect();
        Imdb {
            registry,
            tables,
            hasher: DefaultHashBuilder::default(),
            limits,
            series: AtomicU64::new(0),
        }
    }

    /// The meta registry the tables follow.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The configured limits.
    pub fn limits(&self) -> ImdbLimits {
        self.limits
    }

    /// Locks one table for reading or writing.
    pub fn lock(&self, id: TableId) -> MutexGuard<'_, Table> {
        self.tables[id.0 as usize].lock()
    }

    /// Locks one table with a guard that does not borrow the imdb.
    pub fn lock_owned(&self, id: TableId) -> TableGuard {
        self.tables[id.0 as usize].lock_arc()
    }

    /// The hash of a key built by [`push_key`].
    pub fn hash_key(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Stores a validated report of the series `key` (built by [`push_key`]); `line` is the
    /// record line after `|<table>|`, exactly the table's fields.
    pub fn upsert(
        &self,
        table: &mut Table,
        key: &[u8],
        line: &[u8],
        at: Stamp,
    ) -> Result<(), UpsertError> {
        self.upsert_hashed(table, self.hash_key(key), key, line, at)
    }

    /// Stores a run of records of one table (keys in `keys`), fetching the memory of a few
    /// lookups ahead before doing them; `refused` gets the line of each record a full table
    /// refuses. Returns the number stored.
    pub fn upsert_run(
        &self,
        table: &mut Table,
        keys: &[u8],
        run: &[Pending],
        at: Stamp,
        mut refused: impl FnMut(&[u8]),
    ) -> u64 {
        let mut stored = 0;
        for chunk in run.chunks(PREFETCH_RUN) {
            // Each pass reads what the previous one fetched: slot, then record, then data.
            chunk
                .iter()
                .for_each(|p| table.records.prefetch_slot(p.hash));
            chunk
                .iter()
                .for_each(|p| table.records.prefetch_record(p.hash, false));
            chunk
                .iter()
                .for_each(|p| table.records.prefetch_record(p.hash, true));
            for p in chunk {
                match self.upsert_hashed(table, p.hash, &keys[p.key.clone()], p.line, at) {
                    Ok(()) => stored += 1,
                    Err(UpsertError::TableFull) => refused(p.line),
                }
            }
        }
        stored
    }

    fn upsert_hashed(
        &self,
        table: &mut Table,
        hash: u64,
        key: &[u8],
        line: &[u8],
        at: Stamp,
    ) -> Result<(), UpsertError> {
        let seq = table.next_seq;
        table.next_seq += 1;
        let now_ms = at.now_ms;
        let expires_ms = now_ms + self.limits.record_timeout_ms.max(at.hold_ms);
        if let Some(idx) = table.records.find(hash, |r| r.key() == key) {
            let rec = table.records.get_mut(idx);
            rec.set(line, now_ms, expires_ms, seq);
            if table.running.is_active() {
                table.running.add(rec.running, line);
            }
            return Ok(());
        }
        if table.records.len() >= self.limits.max_records {
            return Err(UpsertError::TableFull);
        }
        let mut data = Vec::with_capacity(key.len() + line.len());
        data.extend_from_slice(key);
        data.extend_from_slice(line);
        let mut running = 0;
        if table.running.is_active() {
            running = table.running.alloc();
            table.running.add(running, line);
        }
        table.records.insert(Record {
            hash,
            key_len: key.len() as u32,
            running,
            data,
            updated_ms: now_ms,
            expires_ms,
            seq,
        });
        self.series.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Removes the series not reported within their lifetime; returns how many went.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let mut removed = 0;
        for table in &self.tables {
            let table = &mut *table.lock();
            let store = &mut table.running;
            removed += table.records.retain(|r| {
                let keep = r.expires_ms >= now_ms;
                if !keep && store.is_active() {
                    store.release(r.running);
                }
                keep
            });
        }
        self.series.fetch_sub(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Number of series stored across all tables.
    pub fn series(&self) -> u64 {
        self.series.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
