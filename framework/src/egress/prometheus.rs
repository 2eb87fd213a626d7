//! Renders the imdb as Prometheus text exposition 0.0.4.
//!
//! Metric families are planned once from the meta registry (`gala_gopher_<entity>_<field>`,
//! `# HELP` from the field description, `# TYPE` from the field type) and every scrape
//! fills their bodies from the latest record of each live series — histograms from the
//! series' running histogram ([`crate::imdb::running`]), whose counters never decrease,
//! unless `legacy_histogram` asks for the original's per-record form. Rendering never
//! consumes data: two scrapers see the same series.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use gala_meta::histogram::Histogram;
use gala_meta::record::is_null;
use gala_meta::{FieldType, Registry, TableId, TableMeta};

use crate::imdb::running::RunningHistogram;
use crate::imdb::Imdb;
use crate::server::{advise_huge_pages, Chunks};

/// What a family renders from one metric field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// gauge, counter or summary: the value itself.
    Scalar,
    /// histogram: `_bucket{le}` lines, `_sum` and `_count` of the running histogram of the
    /// table's n-th histogram field (legacy: the record's bare-name buckets only).
    Buckets(usize),
    /// legacy histogram: the `_sum` family of its own.
    LegacySum,
    /// histogram: the largest observed value.
    Max,
}

/// One metric family: its header and the samples of the current scrape.
#[derive(Debug)]
struct Family {
    name: String,
    header: String,
    /// Samples rendered by the current scrape; a large one leaves with the response.
    body: Vec<u8>,
    /// The body's length at the last scrape, reserved at the next one (one allocation).
    last_len: usize,
}

/// The families one table feeds: (field index, family, what to render).
#[derive(Debug)]
struct TablePlan {
    table: TableId,
    outputs: Vec<(usize, usize, Part)>,
}

/// Renders the imdb into exposition text. Each table's records are visited once (they are
/// the cache misses that dominate a large scrape), writing into per-family buffers that
/// then become the response's chunks in family order, as the exposition format requires:
/// the text is never copied into one more buffer, and each chunk is freed once it is sent,
/// so between scrapes the daemon holds no copy of the exposition.
#[derive(Debug)]
pub struct ScrapeRenderer {
    families: Vec<Family>,
    plans: Vec<TablePlan>,
    machine_id: Vec<u8>,
    legacy_histogram: bool,
    labels: Vec<u8>,
    /// Response buffers of small expositions, reused.
    pool: BufferPool,
    /// [`SMALL_EXPOSITION`] (tests lower it).
    small_exposition: usize,
}

/// An exposition up to this size is copied into a reused response buffer and the families
/// keep theirs (no page faults, at most two copies of a few MB); a larger one leaves as the
/// families' buffers, so the daemon never holds a second copy of a large exposition.
const SMALL_EXPOSITION: usize = 8 << 20;

/// A family body from this size gets transparent huge pages.
const HUGE_BODY: usize = 4 << 20;

/// Reused response buffers (one per concurrent scraper, at most [`POOLED_BUFFERS`]).
type BufferPool = Arc<Mutex<Vec<Vec<u8>>>>;

/// Most buffers kept in the pool.
const POOLED_BUFFERS: usize = 2;

/// A response buffer that goes back to the pool once it is sent.
struct PooledBuffer {
    buf: Vec<u8>,
    pool: BufferPool,
}

impl AsRef<[u8]> for PooledBuffer {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let mut pool = self.pool.lock();
        if pool.len() < POOLED_BUFFERS {
            pool.push(buf);
        }
    }
}

/// The Prometheus metric name of a field: `gala_gopher_<entity>_<field>`.
pub fn metric_name(meta: &TableMeta, field: &str) -> String {
    format!("gala_gopher_{}_{}", meta.entity, field)
}

impl ScrapeRenderer {
    /// Plans the families of every table of `registry`. `machine_id` is the value of the
    /// `machine_id` label every sample carries; `legacy_histogram` selects the original's
    /// histogram form (buckets under the bare name, no `_count`).
    pub fn new(registry: &Registry, machine_id: &str, legacy_histogram: bool) -> Self {
        let mut r = ScrapeRenderer {
            families: Vec::new(),
            plans: Vec::new(),
            machine_id: Vec::new(),
            legacy_histogram,
            labels: Vec::with_capacity(256),
            pool: BufferPool::default(),
            small_exposition: SMALL_EXPOSITION,
        };
        escape_label_value(machine_id.as_bytes(), &mut r.machine_id);
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (id, meta) in registry.iter() {
            let mut outputs = Vec::new();
            let mut nth_histogram = 0;
            for (i, f) in meta.fields.iter().enumerate() {
                let base = metric_name(meta, &f.name);
                let mut add = |name: String, kind: Option<&str>, help: &str, part: Part| {
                    let fam = *by_name.entry(name.clone()).or_insert_with(|| {
                        r.families.push(Family::new(name, kind, help));
                        r.families.len() - 1
                    });
                    outputs.push((i, fam, part));
                };
                match f.ty {
                    FieldType::Key | FieldType::Label => {}
                    FieldType::Gauge | FieldType::Summary => {
                        add(base, Some("gauge"), &f.description, Part::Scalar)
                    }
                    FieldType::Counter => add(base, Some("counter"), &f.description, Part::Scalar),
                    FieldType::Histogram if legacy_histogram => {
                        let d = &f.description;
                        add(base.clone(), None, d, Part::Buckets(nth_histogram));
                        add(format!("{base}_sum"), None, d, Part::LegacySum);
                        add(format!("{base}_max"), None, d, Part::Max);
                    }
                    FieldType::Histogram => {
                        let max_help = format!("{} (largest observed value)", f.description);
                        add(
                            base.clone(),
                            Some("histogram"),
                            &f.description,
                            Part::Buckets(nth_histogram),
                        );
                        add(format!("{base}_max"), Some("gauge"), &max_help, Part::Max);
                    }
                }
                nth_histogram += usize::from(f.ty == FieldType::Histogram);
            }
            if !outputs.is_empty() {
                r.plans.push(TablePlan { table: id, outputs });
            }
        }
        r
    }

    /// Appends the exposition of every live series of `imdb` at `now_ms` to `out`, in one
    /// buffer (the metric log, tests); [`ScrapeRenderer::render_chunks`] for a response.
    pub fn render(&mut self, imdb: &Imdb, now_ms: u64, out: &mut Vec<u8>) {
        let mut chunks = Chunks::new();
        self.render_chunks(imdb, now_ms, &mut chunks);
        out.extend_from_slice(&chunks.concat());
    }

    /// Appends the exposition of every live series of `imdb` at `now_ms` to `out`, each
    /// family's samples as they were rendered.
    pub fn render_chunks(&mut self, imdb: &Imdb, now_ms: u64, out: &mut Chunks) {
        for f in &mut self.families {
            f.body.clear();
            if f.body.capacity() < f.last_len {
                // It left with the last response: an eighth more than last time, so a
                // growing table rarely needs a second allocation.
                f.body.reserve(f.last_len + f.last_len / 8);
                if f.body.capacity() >= HUGE_BODY {
                    advise_huge_pages(&mut f.body);
                }
            }
        }
        let registry = imdb.registry().clone();
        let mut number = Vec::with_capacity(32);
        for plan in &self.plans {
            let meta = registry.table(plan.table);
            let table = imdb.lock(plan.table);
            let mut values: Vec<&[u8]> = Vec::with_capacity(meta.fields.len());
            for rec in table.live(now_ms) {
                rec.values(&mut values);
                if values.len() != meta.fields.len() {
                    continue;
                }
                self.labels.clear();
                write_labels(meta, &values, &self.machine_id, &mut self.labels);
                let labels = &self.labels;
                for &(field, fam, part) in &plan.outputs {
                    let v = values[field];
                    let Family { name, body, .. } = &mut self.families[fam];
                    if let (Part::Buckets(nth), false) = (part, self.legacy_histogram) {
                        // The running totals, even when the latest report's value is null.
                        if let Some(h) = table.running(rec, nth).filter(|h| !h.is_empty()) {
                            render_running(body, name, labels, h, &mut number);
                        }
                        continue;
                    }
                    if is_null(v) {
                        continue;
                    }
                    if part == Part::Scalar {
                        sample(body, name, "", labels, None, v);
                        continue;
                    }
                    let Ok(h) = Histogram::parse(v) else { continue };
                    match part {
                        Part::Max => sample(body, name, "", labels, None, h.max.as_bytes()),
                        Part::LegacySum => sample(body, name, "", labels, None, h.sum.as_bytes()),
                        _ => render_legacy_buckets(body, name, labels, &h),
                    }
                }
            }
        }
        for f in &mut self.families {
            f.last_len = f.body.len();
        }
        let total: usize = self.families.iter().map(|f| f.body.len()).sum();
        if total <= self.small_exposition {
            let mut buf = self.pool.lock().pop().unwrap_or_default();
            for f in self.families.iter().filter(|f| !f.body.is_empty()) {
                buf.extend_from_slice(f.header.as_bytes());
                buf.extend_from_slice(&f.body);
            }
            let pool = self.pool.clone();
            out.push_bytes(Bytes::from_owner(PooledBuffer { buf, pool }));
            return;
        }
        for f in &mut self.families {
            if !f.body.is_empty() {
                out.push_copy(f.header.as_bytes());
                out.push_owned(std::mem::take(&mut f.body));
            }
        }
    }
}

/// Writes the `_bucket` lines, `_sum` and `_count` of a running histogram; `number` is
/// scratch space.
fn render_running(
    out: &mut Vec<u8>,
    name: &str,
    labels: &[u8],
    h: &RunningHistogram,
    number: &mut Vec<u8>,
) {
    let (mut le, mut num) = (itoa::Buffer::new(), itoa::Buffer::new());
    for &(ub, cum) in h.buckets() {
        let v = num.format(cum).as_bytes();
        sample(out, name, "_bucket", labels, Some(le.format(ub)), v);
    }
    let count = num.format(h.count()).as_bytes();
    sample(out, name, "_bucket", labels, Some("+Inf"), count);
    number.clear();
    h.sum().write(number);
    sample(out, name, "_sum", labels, None, number);
    sample(out, name, "_count", labels, None, count);
}

/// Writes the bucket lines of one record's histogram in the original's form: under the bare
/// name, the last one repeated as `le="+Inf"`, no `_sum` (a family of its own) or `_count`.
fn render_legacy_buckets(out: &mut Vec<u8>, name: &str, labels: &[u8], h: &Histogram<'_>) {
    let mut num = itoa::Buffer::new();
    for (ub, cum) in &h.buckets {
        sample(out, name, "", labels, Some(ub), num.format(*cum).as_bytes());
    }
    let count = num.format(h.count()).as_bytes();
    sample(out, name, "", labels, Some("+Inf"), count);
}

impl Family {
    fn new(name: String, kind: Option<&str>, help: &str) -> Self {
        let mut header = format!("# HELP {name} ");
        escape_help(help, &mut header);
        header.push('\n');
        if let Some(kind) = kind {
            header.push_str(&format!("# TYPE {name} {kind}\n"));
        }
        Family {
            name,
            header,
            body: Vec::new(),
            last_len: 0,
        }
    }
}

/// Writes `name<suffix>{labels[,le="<le>"]} value\n`.
fn sample(out: &mut Vec<u8>, name: &str, suffix: &str, labels: &[u8], le: Option<&str>, v: &[u8]) {
    write_sample(out, &[name, suffix], labels, le, v, None);
}

/// Writes one sample line: the name (the concatenation of `name`), the labels (plus `le`
/// for a bucket), the value and, when given, a timestamp in milliseconds.
pub fn write_sample(
    out: &mut Vec<u8>,
    name: &[&str],
    labels: &[u8],
    le: Option<&str>,
    v: &[u8],
    timestamp_ms: Option<u64>,
) {
    for part in name {
        out.extend_from_slice(part.as_bytes());
    }
    out.push(b'{');
    out.extend_from_slice(labels);
    if let Some(le) = le {
        out.extend_from_slice(b",le=\"");
        out.extend_from_slice(le.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"} ");
    out.extend_from_slice(v);
    if let Some(ts) = timestamp_ms {
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    }
    out.push(b'\n');
}

/// Writes the label pairs of a record (key and label fields in meta order, null ones
/// skipped, then `machine_id`), without braces.
pub fn write_labels(meta: &TableMeta, values: &[&[u8]], machine_id: &[u8], out: &mut Vec<u8>) {
    for (f, v) in meta.fields.iter().zip(values) {
        if !f.ty.is_label() || is_null(v) {
            continue;
        }
        out.extend_from_slice(f.name.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label_value(v, out);
        out.extend_from_slice(b"\",");
    }
    out.extend_from_slice(b"machine_id=\"");
    out.extend_from_slice(machine_id);
    out.push(b'"');
}

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`; invalid UTF-8, NUL and CR
/// become U+FFFD ([`crate::labeltext`]), so one bad value cannot spoil the exposition.
pub fn escape_label_value(v: &[u8], out: &mut Vec<u8>) {
    if crate::labeltext::flaw(v).is_some() {
        return crate::labeltext::write_repaired(v, out, escape_clean);
    }
    escape_clean(v, out);
}

/// [`escape_label_value`] of a value known to be clean UTF-8.
fn escape_clean(v: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for i in memchr::memchr3_iter(b'\\', b'"', b'\n', v) {
        out.extend_from_slice(&v[start..i]);
        out.extend_from_slice(match v[i] {
            b'\\' => b"\\\\",
            b'"' => b"\\\"",
            _ => b"\\n",
        });
        start = i + 1;
    }
    out.extend_from_slice(&v[start..]);
}

/// Escapes `# HELP` text: `\` → `\\`, newline → `\n`.
fn escape_help(help: &str, out: &mut String) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests;
