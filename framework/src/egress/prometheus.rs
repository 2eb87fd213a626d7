//! Renders the imdb as Prometheus text exposition 0.0.4.
//!
//! Metric families are planned once from the meta registry (`gala_gopher_<entity>_<field>`,
//! `# HELP` from the field description, `# TYPE` from the field type) and every scrape
//! fills their bodies from the latest record of each live series — histograms from the
//! series' running histogram ([`crate::imdb::running`]), whose counters never decrease,
//! unless `legacy_histogram` asks for the original's per-record form. Rendering never
//! consumes data: two scrapers see the same series.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use gala_meta::histogram::Histogram;
use gala_meta::record::is_null;
use gala_meta::{FieldType, Registry, TableId, TableMeta};

use crate::imdb::running::RunningHistogram;
use crate::imdb::Imdb;
use crate::server::{advise_huge_pages, Chunks, COALESCE_BELOW};

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
    /// Samples rendered by the current scrape; it leaves with the response.
    body: Vec<u8>,
    /// The body's length at the last scrape, reserved at the next one (one allocation).
    last_len: usize,
    /// The last response's buffer, back once it was sent (see [`Returning`]).
    spare: Arc<Mutex<Option<Vec<u8>>>>,
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
/// the text is never copied into one more buffer. Once sent, a chunk goes back to its family
/// for the next scrape while the kept buffers stay within [`KEEP_BUFFERS`]; beyond that it is
/// freed, so a large exposition is never held between scrapes.
#[derive(Debug)]
pub struct ScrapeRenderer {
    families: Vec<Family>,
    plans: Vec<TablePlan>,
    machine_id: Vec<u8>,
    legacy_histogram: bool,
    labels: Vec<u8>,
    /// What the families' buffers that came back from sent responses may hold in all.
    keep: Arc<KeepBudget>,
}

/// Family buffers kept for the next scrape, in bytes of capacity, at most: a scrape of up to
/// this much text reuses its buffers (no page faults, one copy held between scrapes); a
/// larger one allocates afresh, and its buffers are freed once sent.
const KEEP_BUFFERS: usize = 8 << 20;

/// A family body from this size gets transparent huge pages.
const HUGE_BODY: usize = 4 << 20;

/// The bytes of capacity the families' spare buffers hold, against [`KEEP_BUFFERS`].
#[derive(Debug)]
struct KeepBudget {
    limit: usize,
    held: AtomicUsize,
}

/// A family buffer sent as a response chunk; once hyper has written it, it goes back to its
/// family if the budget allows, else it is freed.
struct Returning {
    buf: Vec<u8>,
    spare: Arc<Mutex<Option<Vec<u8>>>>,
    keep: Arc<KeepBudget>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let cap = buf.capacity();
        let held = &self.keep.held;
        let admitted = held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                (h + cap <= self.keep.limit).then_some(h + cap)
            })
            .is_ok();
        if admitted {
            if let Some(old) = self.spare.lock().replace(buf) {
                held.fetch_sub(old.capacity(), Ordering::AcqRel);
            }
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
            keep: Arc::new(KeepBudget {
                limit: KEEP_BUFFERS,
                held: AtomicUsize::new(0),
            }),
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
    /// buffer (for the tests; responses use [`ScrapeRenderer::render_chunks`]).
    #[cfg(test)]
    pub fn render(&mut self, imdb: &Imdb, now_ms: u64, out: &mut Vec<u8>) {
        let mut chunks = Chunks::new();
        self.render_chunks(imdb, now_ms, &mut chunks);
        out.extend_from_slice(&chunks.concat());
    }

    /// Appends the exposition of every live series of `imdb` at `now_ms` to `out`, each
    /// family's samples as they were rendered.
    pub fn render_chunks(&mut self, imdb: &Imdb, now_ms: u64, out: &mut Chunks) {
        for f in &mut self.families {
            if let Some(spare) = f.spare.lock().take() {
                self.keep.held.fetch_sub(spare.capacity(), Ordering::AcqRel);
                f.body = spare;
            }
            f.body.clear();
            if f.body.capacity() < f.last_len {
                // An eighth more than last time: a growing table rarely needs a second
                // allocation.
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
            if f.body.is_empty() {
                continue;
            }
            out.push_copy(f.header.as_bytes());
            let buf = std::mem::take(&mut f.body);
            if buf.len() < COALESCE_BELOW {
                out.push_copy(&buf);
                f.body = buf;
                continue;
            }
            out.push_bytes(Bytes::from_owner(Returning {
                buf,
                spare: f.spare.clone(),
                keep: self.keep.clone(),
            }));
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
            spare: Arc::default(),
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
