//! Renders the imdb as Prometheus text exposition 0.0.4.
//!
//! Metric families are planned once from the meta registry (`gala_gopher_<entity>_<field>`,
//! `# HELP` from the field description, `# TYPE` from the field type) and every scrape
//! fills their bodies from the latest record of each live series — histograms from the
//! series' running histogram ([`crate::imdb::running`]), whose counters never decrease,
//! unless `legacy_histogram` asks for the original's per-record form. Rendering never
//! consumes data: two scrapers see the same series.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use gala_meta::histogram::Histogram;
use gala_meta::record::is_null;
use gala_meta::{FieldType, Registry, TableId, TableMeta};

use crate::imdb::running::RunningHistogram;
use crate::imdb::{Imdb, Table};
use crate::labels::{LabelSink, Labels, TableLabels};
use crate::server::{advise_huge_pages, Chunks, COALESCE_BELOW};

/// What a family renders from one metric field of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
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

/// One metric family: its name and header.
#[derive(Debug)]
struct Family {
    name: String,
    header: String,
}

/// The samples one part of a scrape rendered for one family.
#[derive(Debug, Default)]
struct Body {
    /// Samples rendered by the current scrape; it leaves with the response.
    buf: Vec<u8>,
    /// The buffer's length at the last scrape, reserved at the next one (one allocation).
    last_len: usize,
    /// The last response's buffer, back once it was sent (see [`Returning`]).
    spare: Arc<Mutex<Option<Vec<u8>>>>,
}

/// What one rendering thread writes into: a body per family, and scratch space.
#[derive(Debug)]
struct Part {
    bodies: Vec<Body>,
    labels: Vec<u8>,
    number: Vec<u8>,
}

/// The families one table feeds: (field index, family, what to render).
#[derive(Debug)]
struct TablePlan {
    table: TableId,
    outputs: Vec<(usize, usize, Kind)>,
}

/// Renders the imdb into exposition text. Each table's records are visited once (they are
/// the cache misses that dominate a large scrape), writing into per-family buffers that
/// then become the response's chunks in family order, as the exposition format requires:
/// the text is never copied into one more buffer. A table of [`PARALLEL_FROM`] series or
/// more is split into consecutive ranges rendered by one thread each, every range into
/// buffers of its own, sent one after the other within each family. Once sent, a chunk goes
/// back to its place for the next scrape while the kept buffers stay within
/// [`KEEP_BUFFERS`]; beyond that it is freed, so a large exposition is never held between
/// scrapes.
#[derive(Debug)]
pub struct ScrapeRenderer {
    families: Vec<Family>,
    plans: Vec<TablePlan>,
    machine_id: Vec<u8>,
    legacy_histogram: bool,
    /// One per rendering thread; the first is the calling thread's.
    parts: Vec<Part>,
    /// The labels derived from processes and containers and chosen for probes.
    labels: Option<Arc<Labels>>,
    /// What the families' buffers that came back from sent responses may hold in all.
    keep: Arc<KeepBudget>,
}

/// Family buffers kept for the next scrape, in bytes of capacity, at most: a scrape of up to
/// this much text reuses its buffers (no page faults, one copy held between scrapes); a
/// larger one allocates afresh, and its buffers are freed once sent.
const KEEP_BUFFERS: usize = 8 << 20;

/// A family body from this size gets transparent huge pages.
const HUGE_BODY: usize = 4 << 20;

/// A table with this many series is rendered by several threads.
const PARALLEL_FROM: usize = 16384;

/// The most threads rendering one table.
const MAX_PARTS: usize = 4;

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
            parts: Vec::new(),
            labels: None,
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
                let mut add = |name: String, ty: Option<&str>, help: &str, kind: Kind| {
                    let fam = *by_name.entry(name.clone()).or_insert_with(|| {
                        r.families.push(Family::new(name, ty, help));
                        r.families.len() - 1
                    });
                    outputs.push((i, fam, kind));
                };
                match f.ty {
                    FieldType::Key | FieldType::Label => {}
                    FieldType::Gauge | FieldType::Summary => {
                        add(base, Some("gauge"), &f.description, Kind::Scalar)
                    }
                    FieldType::Counter => add(base, Some("counter"), &f.description, Kind::Scalar),
                    FieldType::Histogram if legacy_histogram => {
                        let d = &f.description;
                        add(base.clone(), None, d, Kind::Buckets(nth_histogram));
                        add(format!("{base}_sum"), None, d, Kind::LegacySum);
                        add(format!("{base}_max"), None, d, Kind::Max);
                    }
                    FieldType::Histogram => {
                        let max_help = format!("{} (largest observed value)", f.description);
                        add(
                            base.clone(),
                            Some("histogram"),
                            &f.description,
                            Kind::Buckets(nth_histogram),
                        );
                        add(format!("{base}_max"), Some("gauge"), &max_help, Kind::Max);
                    }
                }
                nth_histogram += usize::from(f.ty == FieldType::Histogram);
            }
            if !outputs.is_empty() {
                r.plans.push(TablePlan { table: id, outputs });
            }
        }
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        r.parts = (0..threads.clamp(1, MAX_PARTS))
            .map(|_| Part::new(r.families.len()))
            .collect();
        r
    }

    /// Adds the labels of `labels` to every series (see [`crate::labels`]).
    pub fn with_labels(mut self, labels: Arc<Labels>) -> Self {
        self.labels = Some(labels);
        self
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
        for body in self.parts.iter_mut().flat_map(|p| &mut p.bodies) {
            body.prepare(&self.keep);
        }
        let registry = imdb.registry().clone();
        for plan in &self.plans {
            let table = imdb.lock(plan.table);
            let labels = self.labels.as_deref();
            let pass = TablePass {
                plan,
                meta: registry.table(plan.table),
                table: &table,
                derived: labels.and_then(|l| l.for_table(plan.table, table.writer())),
                families: &self.families,
                machine_id: &self.machine_id,
                legacy_histogram: self.legacy_histogram,
                now_ms,
            };
            let n = table.len();
            let threads = if n >= PARALLEL_FROM {
                self.parts.len()
            } else {
                1
            };
            let step = n.div_ceil(threads).max(1);
            let mut parts = self.parts[..threads].iter_mut();
            let first = parts.next().expect("a renderer has a part");
            std::thread::scope(|s| {
                for (i, part) in parts.enumerate() {
                    let (pass, from) = (&pass, (i + 1) * step);
                    s.spawn(move || pass.render(part, from.min(n)..(from + step).min(n)));
                }
                pass.render(first, 0..step.min(n));
            });
        }
        for (fam, f) in self.families.iter().enumerate() {
            let mut header = Some(&f.header);
            for part in &mut self.parts {
                let body = &mut part.bodies[fam];
                body.last_len = body.buf.len();
                if body.buf.is_empty() {
                    continue;
                }
                if let Some(h) = header.take() {
                    out.push_copy(h.as_bytes());
                }
                let buf = std::mem::take(&mut body.buf);
                if buf.len() < COALESCE_BELOW {
                    out.push_copy(&buf);
                    body.buf = buf;
                    continue;
                }
                out.push_bytes(Bytes::from_owner(Returning {
                    buf,
                    spare: body.spare.clone(),
                    keep: self.keep.clone(),
                }));
            }
        }
    }
}

/// Rendering one locked table into the families it feeds.
struct TablePass<'a> {
    plan: &'a TablePlan,
    meta: &'a TableMeta,
    table: &'a Table,
    derived: Option<TableLabels<'a>>,
    families: &'a [Family],
    machine_id: &'a [u8],
    legacy_histogram: bool,
    now_ms: u64,
}

impl TablePass<'_> {
    /// Renders the live series stored at `range` into `part`'s bodies.
    fn render(&self, part: &mut Part, range: Range<usize>) {
        let (meta, table) = (self.meta, self.table);
        let mut values: Vec<&[u8]> = Vec::with_capacity(meta.fields.len());
        for rec in table.live_in(range, self.now_ms) {
            rec.values(&mut values);
            if values.len() != meta.fields.len() {
                continue;
            }
            let labels = &mut part.labels;
            labels.clear();
            let derived = self.derived.as_ref();
            write_labels(meta, &values, derived, self.machine_id, labels);
            for &(field, fam, kind) in &self.plan.outputs {
                let v = values[field];
                let (name, body) = (&self.families[fam].name, &mut part.bodies[fam].buf);
                if let (Kind::Buckets(nth), false) = (kind, self.legacy_histogram) {
                    // The running totals, even when the latest report's value is null.
                    if let Some(h) = table.running(rec, nth).filter(|h| !h.is_empty()) {
                        render_running(body, name, labels, h, &mut part.number);
                    }
                    continue;
                }
                if is_null(v) {
                    continue;
                }
                if kind == Kind::Scalar {
                    sample(body, name, "", labels, None, v);
                    continue;
                }
                let Ok(h) = Histogram::parse(v) else { continue };
                match kind {
                    Kind::Max => sample(body, name, "", labels, None, h.max.as_bytes()),
                    Kind::LegacySum => sample(body, name, "", labels, None, h.sum.as_bytes()),
                    _ => render_legacy_buckets(body, name, labels, &h),
                }
            }
        }
    }
}

impl Part {
    /// A part with an empty body for each of `families` families.
    fn new(families: usize) -> Self {
        Part {
            bodies: (0..families).map(|_| Body::default()).collect(),
            labels: Vec::with_capacity(256),
            number: Vec::with_capacity(32),
        }
    }
}

impl Body {
    /// Readies the buffer for a scrape: the spare that came back if any, emptied, with room
    /// for as much as last time.
    fn prepare(&mut self, keep: &KeepBudget) {
        if let Some(spare) = self.spare.lock().take() {
            keep.held.fetch_sub(spare.capacity(), Ordering::AcqRel);
            self.buf = spare;
        }
        self.buf.clear();
        if self.buf.capacity() < self.last_len {
            // An eighth more than last time: a growing table rarely needs a second
            // allocation.
            self.buf.reserve(self.last_len + self.last_len / 8);
            if self.buf.capacity() >= HUGE_BODY {
                advise_huge_pages(&mut self.buf);
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
        Family { name, header }
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
/// skipped, then the `derived` ones, then `machine_id`), without braces.
pub fn write_labels(
    meta: &TableMeta,
    values: &[&[u8]],
    derived: Option<&TableLabels>,
    machine_id: &[u8],
    out: &mut Vec<u8>,
) {
    let mut sink = ExpositionLabels(out);
    for (f, v) in meta.fields.iter().zip(values) {
        if f.ty.is_label() && !is_null(v) {
            sink.label(&f.name, v);
        }
    }
    if let Some(derived) = derived {
        derived.write(values, &mut sink);
    }
    out.extend_from_slice(b"machine_id=\"");
    out.extend_from_slice(machine_id);
    out.push(b'"');
}

/// Writes labels as `name="value",`.
struct ExpositionLabels<'a>(&'a mut Vec<u8>);

impl LabelSink for ExpositionLabels<'_> {
    fn label(&mut self, name: &str, value: &[u8]) {
        self.0.extend_from_slice(name.as_bytes());
        self.0.extend_from_slice(b"=\"");
        escape_label_value(value, self.0);
        self.0.extend_from_slice(b"\",");
    }
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
