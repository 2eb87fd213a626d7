//! The metric log: every report stored in the imdb, appended once to `<metric_dir>/gopher_metrics_<n>`.
//!
//! This is the `logs` (Prometheus text) and `json` (one JSON object per line) value of
//! `metric.out_channel` (docs/reference/config-and-egress.md §6.2). Like the original's 1 s drain, each
//! report is written once; unlike it, nothing is deleted from the imdb (so the Prometheus
//! endpoint can still serve the same series), nothing is lost when the file is full, and the
//! directory is never wiped with `rm -rf`.
//!
//! The files form a series bounded by `logs.metric_total_size`: when the current file
//! `gopher_metrics_<n>` would exceed half of it, `gopher_metrics_<n+1>` is started and
//! `gopher_metrics_<n-1>` is deleted, so the directory never holds more than the total.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gala_meta::histogram::Histogram;
use gala_meta::record::is_null;
use gala_meta::{FieldType, TableMeta};
use tokio::sync::watch;

use crate::clock;
use crate::egress::json;
use crate::egress::prometheus::{escape_label_value, write_labels, write_sample};
use crate::imdb::{Imdb, Record};
use crate::labels::Labels;
use crate::logfile::{self, LogFileError};
use crate::ratelimit::{RateLimiter, Verdict};
use crate::selfmetrics;

/// Prefix of the metric log files; the suffix is the decimal file number.
pub const FILE_PREFIX: &str = "gopher_metrics_";

/// How records are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricLogFormat {
    /// Prometheus text lines with timestamps (`metric.out_channel = "logs"`).
    Text,
    /// One JSON object per record per line (`metric.out_channel = "json"`).
    Json,
}

/// Why the metric log could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MetricLogError {
    /// The directory or the first file could not be created.
    #[error(transparent)]
    File(#[from] LogFileError),
    /// The directory could not be listed for stale files.
    #[error("list {}: {source}", path.display())]
    List {
        /// The metric directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A stale metric file could not be removed.
    #[error("remove {}: {source}", path.display())]
    Remove {
        /// The stale file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// Appends the records the imdb received since the previous tick to the metric log.
pub struct MetricLogWriter {
    imdb: Arc<Imdb>,
    format: MetricLogFormat,
    machine_id: String,
    /// `machine_id` escaped as a Prometheus label value.
    machine_label: Vec<u8>,
    legacy_histogram: bool,
    /// Per table: its `next_seq()` at the previous tick; records with a seq at least this are new.
    last_seq: Vec<u64>,
    files: FileSeries,
    /// The rendering of one table's new records; `ends` marks where each record ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
    labels: Vec<u8>,
    /// The labels derived from processes and containers and chosen for probes.
    derived: Option<Arc<Labels>>,
    oversized: u64,
}

impl MetricLogWriter {
    /// Creates `dir` if needed (0750), removes the stale `gopher_metrics_<n>` files of a
    /// previous run (and nothing else) and starts `gopher_metrics_0`. The files together stay
    /// within `total_bytes`. `machine_id` is the `machine_id` label of every record;
    /// `legacy_histogram` selects the original's histogram lines (buckets under the bare name,
    /// no `_count`) for the text format.
    pub fn new(
        imdb: Arc<Imdb>,
        format: MetricLogFormat,
        dir: PathBuf,
        total_bytes: u64,
        machine_id: String,
        legacy_histogram: bool,
    ) -> Result<Self, MetricLogError> {
        logfile::create_dir(&dir)?;
        remove_stale_files(&dir)?;
        let files = FileSeries::start(dir, (total_bytes / 2).max(1))?;
        let mut machine_label = Vec::new();
        escape_label_value(machine_id.as_bytes(), &mut machine_label);
        let tables = imdb.registry().len();
        Ok(MetricLogWriter {
            imdb,
            format,
            machine_id,
            machine_label,
            legacy_histogram,
            last_seq: vec![0; tables],
            files,
            buf: Vec::with_capacity(64 * 1024),
            ends: Vec::new(),
            labels: Vec::with_capacity(256),
            derived: None,
            oversized: 0,
        })
    }

    /// Adds the labels of `labels` to every record (see [`crate::labels`]).
    pub fn with_labels(mut self, labels: Arc<Labels>) -> Self {
        self.derived = Some(labels);
        self
    }

    /// The file currently written.
    pub fn current_path(&self) -> PathBuf {
        self.files.path(self.files.n)
    }

    /// Records dropped so far because one record alone was larger than a file may be.
    pub fn oversized(&self) -> u64 {
        self.oversized
    }

    /// Appends every record updated since the previous tick; returns how many were written.
    /// `now_ms` is the [`crate::clock::now_ms`] time; timestamps are wall-clock time.
    pub fn tick(&mut self, now_ms: u64) -> io::Result<usize> {
        self.tick_at(now_ms, clock::wall_ms())
    }

    /// [`MetricLogWriter::tick`] with an explicit wall clock (`wall_ms` is the wall-clock
    /// time corresponding to `now_ms`). A record's timestamp is the wall-clock time of its report.
    pub fn tick_at(&mut self, now_ms: u64, wall_ms: u64) -> io::Result<usize> {
        let imdb = self.imdb.clone();
        let registry = imdb.registry().clone();
        let mut written = 0;
        for (id, meta) in registry.iter() {
            self.buf.clear();
            self.ends.clear();
            {
                let table = imdb.lock(id);
                let Some(last) = self.last_seq.get_mut(id.0 as usize) else {
                    continue;
                };
                let last = std::mem::replace(last, table.next_seq());
                if table.next_seq() == last {
                    continue;
                }
                let mut fresh: Vec<&Record> =
                    table.live(now_ms).filter(|r| r.seq() >= last).collect();
                // Report order, as the original wrote them.
                fresh.sort_unstable_by_key(|r| r.seq());
                let derived =
                    (self.derived.as_deref()).and_then(|l| l.for_table(id, table.writer()));
                let derived = derived.as_ref();
                let mut values: Vec<&[u8]> = Vec::with_capacity(meta.fields.len());
                for rec in fresh {
                    rec.values(&mut values);
                    if values.len() != meta.fields.len() {
                        continue;
                    }
                    let ts = wall_ms.saturating_sub(now_ms.saturating_sub(rec.updated_ms()));
                    match self.format {
                        MetricLogFormat::Json => json::render_record(
                            meta,
                            &values,
                            derived,
                            &self.machine_id,
                            ts,
                            &mut self.buf,
                        ),
                        MetricLogFormat::Text => {
                            self.labels.clear();
                            let (id, out) = (&self.machine_label, &mut self.labels);
                            write_labels(meta, &values, derived, id, out);
                            let text = TextSample {
                                labels: &self.labels,
                                timestamp: ts,
                                legacy_histogram: self.legacy_histogram,
                            };
                            text.render_record(meta, &values, &mut self.buf);
                        }
                    }
                    self.ends.push(self.buf.len());
                }
            }
            if self.ends.is_empty() {
                continue;
            }
            if self.format == MetricLogFormat::Text {
                // The original's empty line after each table's group.
                self.buf.push(b'\n');
                if let Some(last) = self.ends.last_mut() {
                    *last += 1;
                }
            }
            let mut start = 0;
            for &end in &self.ends {
                if self.files.push(&self.buf[start..end])? {
                    written += 1;
                } else {
                    self.oversized += 1;
                }
                start = end;
            }
        }
        self.files.flush()?;
        Ok(written)
    }

    /// Ticks every `period` until `shutdown` turns true (or its sender goes away), then writes
    /// what is left once more. File I/O runs on the blocking pool; failures are counted in
    /// `gala_gopher_daemon_metric_log_errors_total` and logged (rate-limited).
    pub async fn run(mut self, period: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut error_log = RateLimiter::new(Duration::from_secs(60), 5);
        let mut stop = *shutdown.borrow();
        let mut oversized = 0;
        loop {
            if !stop {
                stop = tokio::select! {
                    _ = ticker.tick() => false,
                    changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
                };
            }
            let job = tokio::task::spawn_blocking(move || {
                let result = self.tick(clock::now_ms());
                (self, result)
            });
            let result = match job.await {
                Ok((writer, result)) => {
                    self = writer;
                    result
                }
                Err(e) => {
                    tracing::error!("metric log writer stopped: {e}");
                    return;
                }
            };
            match result {
                Ok(n) => selfmetrics::metric_log_records().increment(n as u64),
                Err(e) => {
                    selfmetrics::metric_log_errors().increment(1);
                    if let Verdict::Log { suppressed } = error_log.check(Instant::now()) {
                        tracing::warn!(suppressed, "metric log: {e}");
                    }
                }
            }
            if self.oversized > oversized {
                let n = self.oversized - std::mem::replace(&mut oversized, self.oversized);
                selfmetrics::metric_log_errors().increment(n);
                if let Verdict::Log { suppressed } = error_log.check(Instant::now()) {
                    tracing::warn!(
                        suppressed,
                        "metric log: {n} records larger than half of logs.metric_total_size dropped"
                    );
                }
            }
            if stop {
                return;
            }
        }
    }
}

/// Renders the text lines of one record: `name{labels} value timestamp_ms`.
struct TextSample<'a> {
    labels: &'a [u8],
    timestamp: u64,
    legacy_histogram: bool,
}

impl TextSample<'_> {
    fn render_record(&self, meta: &TableMeta, values: &[&[u8]], out: &mut Vec<u8>) {
        for (f, &v) in meta.fields.iter().zip(values) {
            if f.ty.is_label() || is_null(v) {
                continue;
            }
            if f.ty != FieldType::Histogram {
                self.line(out, meta, &f.name, "", None, v);
                continue;
            }
            // A malformed histogram skips its own column only.
            let Ok(h) = Histogram::parse(v) else { continue };
            let count = h.count().to_string();
            let bucket = if self.legacy_histogram { "" } else { "_bucket" };
            for (ub, cum) in &h.buckets {
                let cum = cum.to_string();
                self.line(out, meta, &f.name, bucket, Some(ub), cum.as_bytes());
            }
            self.line(out, meta, &f.name, bucket, Some("+Inf"), count.as_bytes());
            self.line(out, meta, &f.name, "_sum", None, h.sum.as_bytes());
            if !self.legacy_histogram {
                self.line(out, meta, &f.name, "_count", None, count.as_bytes());
            }
            self.line(out, meta, &f.name, "_max", None, h.max.as_bytes());
        }
    }

    /// Writes `gala_gopher_<entity>_<field><suffix>{labels[,le="<le>"]} value timestamp\n`.
    fn line(
        &self,
        out: &mut Vec<u8>,
        meta: &TableMeta,
        field: &str,
        suffix: &str,
        le: Option<&str>,
        v: &[u8],
    ) {
        // The name of `prometheus::metric_name`, without allocating it.
        let name = ["gala_gopher_", &meta.entity, "_", field, suffix];
        write_sample(out, &name, self.labels, le, v, Some(self.timestamp));
    }
}

/// `gopher_metrics_<n>`: the file number, or `None` for any other name.
fn file_number(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(FILE_PREFIX)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Removes the files and symlinks called `gopher_metrics_<n>` in `dir` (a link itself, never
/// its target, so a planted link cannot redirect our writes); nothing else is touched.
fn remove_stale_files(dir: &Path) -> Result<(), MetricLogError> {
    let list_err = |source| MetricLogError::List {
        path: dir.to_owned(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(list_err)? {
        let entry = entry.map_err(list_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if file_number(name).is_none() {
            continue;
        }
        // `file_type` does not follow symlinks; directories are left alone.
        let ty = entry.file_type().map_err(list_err)?;
        if !ty.is_file() && !ty.is_symlink() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(MetricLogError::Remove { path, source }),
        }
    }
    Ok(())
}

/// The numbered metric files: the current one and at most one predecessor.
struct FileSeries {
    dir: PathBuf,
    n: u64,
    file: File,
    /// Bytes in the current file.
    len: u64,
    /// Most bytes one file may hold.
    limit: u64,
    /// Records not yet written to the current file.
    pending: Vec<u8>,
}

impl FileSeries {
    fn start(dir: PathBuf, limit: u64) -> Result<Self, LogFileError> {
        let path = dir.join(format!("{FILE_PREFIX}0"));
        let file = logfile::open_append(&path)?;
        Ok(FileSeries {
            dir,
            n: 0,
            file,
            len: 0,
            limit,
            pending: Vec::with_capacity(64 * 1024),
        })
    }

    fn path(&self, n: u64) -> PathBuf {
        self.dir.join(format!("{FILE_PREFIX}{n}"))
    }

    /// Queues one whole record, moving to the next file first if it would not fit. Returns
    /// false (dropping it) when the record alone is larger than a file may be.
    fn push(&mut self, record: &[u8]) -> io::Result<bool> {
        let size = record.len() as u64;
        if size > self.limit {
            return Ok(false);
        }
        if self.len + self.pending.len() as u64 + size > self.limit {
            self.flush()?;
            self.next_file()?;
        }
        self.pending.extend_from_slice(record);
        Ok(true)
    }

    /// Writes the queued records to the current file. On failure they are dropped.
    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.pending);
        let size = self.pending.len() as u64;
        self.pending.clear();
        match result {
            Ok(()) => {
                self.len += size;
                Ok(())
            }
            // Part of it may be on disk: count it all so the size bound holds.
            Err(e) => {
                self.len += size;
                Err(with_path(e, "write", &self.path(self.n)))
            }
        }
    }

    /// Deletes file n-1 and starts file n+1.
    fn next_file(&mut self) -> io::Result<()> {
        if let Some(prev) = self.n.checked_sub(1) {
            let prev = self.path(prev);
            match std::fs::remove_file(&prev) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(with_path(e, "remove", &prev)),
            }
        }
        let next = self.path(self.n + 1);
        // The name may be a leftover of our own (or a planted link): start a new file.
        match std::fs::remove_file(&next) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(with_path(e, "remove", &next)),
        }
        self.file = logfile::open_append(&next)?;
        self.n += 1;
        self.len = 0;
        Ok(())
    }
}

/// An I/O error whose message names the operation and the path.
fn with_path(e: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{op} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imdb::ImdbLimits;
    use gala_meta::{parse_meta_file, MetaLimits, Registry};

    const META: &str = r#"version = "1.0.0"
measurements:
(
    {
        table_name: "tcp_link",
        entity_name: "tcp",
        fields:
        (
            { description: "pid", type: "key", name: "tgid", },
            { description: "role", type: "label", name: "role", },
            { description: "rx", type: "gauge", name: "rx_bytes", },
            { description: "retrans", type: "counter", name: "retrans", },
            { description: "segs", type: "summary", name: "segs", },
            { description: "srtt", type: "histogram", name: "srtt", },
        ),
    },
    {
        table_name: "disk",
        entity_name: "block",
        fields:
        (
            { description: "dev", type: "key", name: "dev", },
            { description: "iops", type: "gauge", name: "iops", },
        ),
    },
)
"#;

    const TIMEOUT_MS: u64 = 60_000;

    fn imdb() -> Arc<Imdb> {
        let tables = parse_meta_file(Path::new("test.meta"), META, &MetaLimits { max_fields: 64 })
            .expect("test meta parses");
        let mut registry = Registry::new();
        registry.add_tables(tables).expect("no duplicates");
        let limits = ImdbLimits {
            max_records: 1000,
            record_timeout_ms: TIMEOUT_MS,
        };
        Arc::new(Imdb::new(Arc::new(registry), limits))
    }

    /// Stores a report of `table`: `values` are its fields in meta order.
    fn put(imdb: &Imdb, table: &str, values: &[&str], now_ms: u64) {
        let registry = imdb.registry();
        let id = registry.lookup(table.as_bytes()).expect("known table");
        let meta = registry.table(id);
        let line = format!("{}|", values.join("|"));
        let split: Vec<&[u8]> = values.iter().map(|v| v.as_bytes()).collect();
        let mut key = Vec::new();
        crate::imdb::push_key(meta, &split, &mut key);
        let mut t = imdb.lock(id);
        imdb.upsert(
            &mut t,
            &key,
            line.as_bytes(),
            crate::imdb::Stamp::at(now_ms),
        )
        .expect("room in table");
    }

    fn writer(
        imdb: &Arc<Imdb>,
        dir: &Path,
        format: MetricLogFormat,
        total: u64,
        legacy: bool,
    ) -> MetricLogWriter {
        MetricLogWriter::new(
            imdb.clone(),
            format,
            dir.to_owned(),
            total,
            "uuid-10.0.0.1".into(),
            legacy,
        )
        .expect("writer starts")
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The metric files of `dir` as (number, size), sorted.
    fn metric_files(dir: &Path) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let e = e.unwrap();
                let n = file_number(e.file_name().to_str()?)?;
                Some((n, e.metadata().unwrap().len()))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn text_lines_with_labels_and_timestamp() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Text, 1 << 20, false);
        put(
            &db,
            "tcp_link",
            &["42", "client", "10", "3", "", "2 10 1 100 4 250 90"],
            1_000,
        );
        put(&db, "disk", &["sda", "7"], 1_500);
        assert_eq!(w.tick_at(2_000, 1_700_000_002_000).unwrap(), 2);
        let l = r#"tgid="42",role="client",machine_id="uuid-10.0.0.1""#;
        let ts = 1_700_000_001_000u64;
        let want = format!(
            "gala_gopher_tcp_rx_bytes{{{l}}} 10 {ts}\n\
             gala_gopher_tcp_retrans{{{l}}} 3 {ts}\n\
             gala_gopher_tcp_srtt_bucket{{{l},le=\"10\"}} 1 {ts}\n\
             gala_gopher_tcp_srtt_bucket{{{l},le=\"100\"}} 4 {ts}\n\
             gala_gopher_tcp_srtt_bucket{{{l},le=\"+Inf\"}} 4 {ts}\n\
             gala_gopher_tcp_srtt_sum{{{l}}} 250 {ts}\n\
             gala_gopher_tcp_srtt_count{{{l}}} 4 {ts}\n\
             gala_gopher_tcp_srtt_max{{{l}}} 90 {ts}\n\
             \n\
             gala_gopher_block_iops{{dev=\"sda\",machine_id=\"uuid-10.0.0.1\"}} 7 1700000001500\n\
             \n"
        );
        assert_eq!(read(&tmp.path().join("gopher_metrics_0")), want);
        assert_eq!(
            crate::egress::prometheus::metric_name(
                db.registry().table(gala_meta::TableId(0)),
                "rx_bytes"
            ),
            "gala_gopher_tcp_rx_bytes"
        );
    }

    #[test]
    fn legacy_histogram_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Text, 1 << 20, true);
        put(&db, "tcp_link", &["1", "", "", "", "", "1 10 2 15 9"], 0);
        w.tick_at(0, 5_000).unwrap();
        let l = r#"tgid="1",machine_id="uuid-10.0.0.1""#;
        assert_eq!(
            read(&tmp.path().join("gopher_metrics_0")),
            format!(
                "gala_gopher_tcp_srtt{{{l},le=\"10\"}} 2 5000\n\
                 gala_gopher_tcp_srtt{{{l},le=\"+Inf\"}} 2 5000\n\
                 gala_gopher_tcp_srtt_sum{{{l}}} 15 5000\n\
                 gala_gopher_tcp_srtt_max{{{l}}} 9 5000\n\n"
            )
        );
    }

    #[test]
    fn each_report_is_written_once() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Text, 1 << 20, false);
        put(&db, "disk", &["sda", "1"], 0);
        put(&db, "disk", &["sdb", "2"], 0);
        assert_eq!(w.tick_at(100, 100).unwrap(), 2);
        assert_eq!(w.tick_at(200, 200).unwrap(), 0, "nothing new");
        put(&db, "disk", &["sdb", "3"], 300);
        assert_eq!(w.tick_at(400, 400).unwrap(), 1);
        put(&db, "disk", &["sda", "4"], 500);
        put(&db, "disk", &["sda", "5"], 600); // replaces the previous report before the tick
        assert_eq!(w.tick_at(700, 700).unwrap(), 1);
        let text = read(&tmp.path().join("gopher_metrics_0"));
        let values: Vec<&str> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect();
        assert_eq!(values, ["1", "2", "3", "5"]);
        // The imdb keeps its series: the log does not consume them.
        assert_eq!(db.series(), 2);
    }

    #[test]
    fn reports_are_written_in_report_order() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Text, 1 << 20, false);
        let devs: Vec<String> = (0..50).map(|i| format!("d{i}")).collect();
        for (i, d) in devs.iter().enumerate() {
            put(&db, "disk", &[d, &i.to_string()], 0);
        }
        w.tick_at(0, 0).unwrap();
        let text = read(&tmp.path().join("gopher_metrics_0"));
        let got: Vec<String> = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split(' ').nth(1).unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn expired_records_are_not_written() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Text, 1 << 20, false);
        put(&db, "disk", &["old", "1"], 0);
        put(&db, "disk", &["new", "2"], TIMEOUT_MS + 5_000);
        assert_eq!(w.tick_at(TIMEOUT_MS + 5_000, 0).unwrap(), 1);
        assert!(read(&tmp.path().join("gopher_metrics_0")).contains("dev=\"new\""));
    }

    #[test]
    fn json_lines() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Json, 1 << 20, false);
        put(
            &db,
            "tcp_link",
            &["42", "cl\"i", "10", "3", "8", "1 10 2 15 9"],
            1_000,
        );
        put(&db, "disk", &["sda", "7"], 2_000);
        assert_eq!(w.tick_at(2_000, 1_000_000).unwrap(), 2);
        let text = read(&tmp.path().join("gopher_metrics_0"));
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            serde_json::json!({
                "timestamp": 999_000, "entity_name": "tcp", "table_name": "tcp_link",
                "labels": {"tgid": "42", "role": "cl\"i", "machine_id": "uuid-10.0.0.1"},
                "metrics": {"rx_bytes": "10", "retrans": "3", "segs": "8"},
                "histos": {"srtt": {"10": 2, "count": 2, "sum": 15, "max": 9}}
            })
        );
        assert_eq!(lines[1]["table_name"], "disk");
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn rotation_keeps_the_directory_within_total_size() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let total = 4_000;
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Text, total, false);
        let mut now = 0;
        for round in 0..200u64 {
            for d in 0..5 {
                put(&db, "disk", &[&format!("sd{d}"), &round.to_string()], now);
            }
            now += 1_000;
            assert_eq!(w.tick_at(now, now).unwrap(), 5);
            let files = metric_files(tmp.path());
            let sum: u64 = files.iter().map(|f| f.1).sum();
            assert!(sum <= total, "round {round}: {files:?}");
            assert!(files.len() <= 2, "round {round}: {files:?}");
            assert!(files.iter().all(|f| f.1 <= total / 2), "{files:?}");
            if let [a, b] = files[..] {
                assert_eq!(a.0 + 1, b.0, "consecutive files");
            }
        }
        let files = metric_files(tmp.path());
        assert!(
            files.last().unwrap().0 > 10,
            "rotated many times: {files:?}"
        );
        assert_eq!(
            w.current_path(),
            tmp.path()
                .join(format!("gopher_metrics_{}", files.last().unwrap().0))
        );
        let latest = read(&w.current_path());
        assert!(
            latest.contains(" 199 "),
            "newest reports in the current file"
        );
        // Records are never split across files.
        for (n, _) in files {
            let t = read(&tmp.path().join(format!("gopher_metrics_{n}")));
            assert!(t
                .lines()
                .all(|l| l.is_empty() || l.starts_with("gala_gopher_block_iops{")));
            assert!(t.is_empty() || t.ends_with('\n'));
        }
    }

    #[test]
    fn oversized_record_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let mut w = writer(&db, tmp.path(), MetricLogFormat::Json, 100, false);
        put(&db, "disk", &["sda", "1"], 0);
        assert_eq!(w.tick_at(0, 0).unwrap(), 0);
        assert_eq!(w.oversized(), 1);
        assert!(metric_files(tmp.path()).iter().map(|f| f.1).sum::<u64>() <= 100);
    }

    #[test]
    fn start_removes_only_own_stale_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for name in ["gopher_metrics_17", "gopher_metrics_00"] {
            std::fs::write(dir.join(name), "stale").unwrap();
        }
        for name in [
            "gopher_metrics_",
            "gopher_metrics_x",
            "gopher_metrics_1.bak",
            "notes.txt",
        ] {
            std::fs::write(dir.join(name), "keep").unwrap();
        }
        std::fs::create_dir(dir.join("gopher_metrics_5")).unwrap();
        std::os::unix::fs::symlink(dir.join("notes.txt"), dir.join("gopher_metrics_6")).unwrap();
        std::os::unix::fs::symlink(dir.join("notes.txt"), dir.join("gopher_metrics_0")).unwrap();
        let _w = writer(&imdb(), dir, MetricLogFormat::Text, 1 << 20, false);
        assert_eq!(read(&dir.join("gopher_metrics_0")), "", "new empty file 0");
        assert!(dir
            .join("gopher_metrics_0")
            .symlink_metadata()
            .unwrap()
            .is_file());
        assert!(!dir.join("gopher_metrics_17").exists());
        assert!(!dir.join("gopher_metrics_00").exists());
        for name in [
            "gopher_metrics_",
            "gopher_metrics_x",
            "gopher_metrics_1.bak",
            "notes.txt",
        ] {
            assert_eq!(read(&dir.join(name)), "keep", "{name}");
        }
        assert!(dir.join("gopher_metrics_5").is_dir());
        assert!(
            std::fs::symlink_metadata(dir.join("gopher_metrics_6")).is_err(),
            "link removed"
        );
    }

    #[test]
    fn creates_missing_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("var/log/metrics");
        let _w = writer(&imdb(), &dir, MetricLogFormat::Text, 1 << 20, false);
        assert!(dir.join("gopher_metrics_0").is_file());
    }

    #[test]
    fn setup_error_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let blocker = tmp.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let dir = blocker.join("metrics");
        let err = MetricLogWriter::new(
            imdb(),
            MetricLogFormat::Text,
            dir,
            1 << 20,
            "m".into(),
            false,
        )
        .err()
        .expect("cannot create a directory under a file");
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(file_number("gopher_metrics_0"), Some(0));
        assert_eq!(file_number("gopher_metrics_123"), Some(123));
        for bad in [
            "gopher_metrics_",
            "gopher_metrics_-1",
            "gopher_metrics_+1",
            "gopher_metrics_1a",
            "x_gopher_metrics_1",
        ] {
            assert_eq!(file_number(bad), None, "{bad}");
        }
    }

    #[tokio::test]
    async fn run_writes_until_shutdown() {
        let tmp = tempfile::tempdir().unwrap();
        let db = imdb();
        let w = writer(&db, tmp.path(), MetricLogFormat::Text, 1 << 20, false);
        let (tx, rx) = watch::channel(false);
        let task = tokio::spawn(w.run(Duration::from_millis(20), rx));
        put(&db, "disk", &["sda", "1"], clock::now_ms());
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(read(&tmp.path().join("gopher_metrics_0")).contains("dev=\"sda\""));
        put(&db, "disk", &["sdb", "2"], clock::now_ms());
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops")
            .unwrap();
        // The final tick wrote the last report.
        assert!(read(&tmp.path().join("gopher_metrics_0")).contains("dev=\"sdb\""));
    }
}
