//! Renders the imdb as Prometheus text exposition 0.0.4.
//!
//! Metric families are planned once from the meta registry (`gala_gopher_<entity>_<field>`,
//! `# HELP` from the field description, `# TYPE` from the field type) and every scrape
//! fills their bodies from the latest record of each live series. Rendering never consumes
//! data: two scrapers see the same series.

use std::collections::HashMap;

use gala_meta::histogram::Histogram;
use gala_meta::record::is_null;
use gala_meta::{FieldType, Registry, TableId, TableMeta};

use crate::imdb::Imdb;

/// Which families one metric field writes to.
#[derive(Debug, Clone, Copy)]
enum FieldFamilies {
    /// gauge, counter or summary: one sample.
    Scalar(usize),
    /// histogram: `_bucket`/`_sum`/`_count` in `hist`, the maximum in `max`;
    /// `sum` is set only for the legacy form, whose `_sum` is a family of its own.
    Histogram {
        hist: usize,
        sum: Option<usize>,
        max: usize,
    },
}

/// One metric family: its header and the samples rendered by the current scrape.
#[derive(Debug)]
struct Family {
    name: String,
    header: String,
    body: Vec<u8>,
}

/// The families a table's metric fields feed.
#[derive(Debug)]
struct TablePlan {
    table: TableId,
    fields: Vec<(usize, FieldFamilies)>,
}

/// Renders the imdb into exposition text; owns the buffers it reuses between scrapes.
#[derive(Debug)]
pub struct ScrapeRenderer {
    families: Vec<Family>,
    plans: Vec<TablePlan>,
    machine_id: Vec<u8>,
    legacy_histogram: bool,
    labels: Vec<u8>,
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
        };
        escape_label_value(machine_id.as_bytes(), &mut r.machine_id);
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for (id, meta) in registry.iter() {
            let mut fields = Vec::new();
            for (i, f) in meta.fields.iter().enumerate() {
                let base = metric_name(meta, &f.name);
                let mut family = |name: String, kind: Option<&str>, help: &str| {
                    *by_name.entry(name.clone()).or_insert_with(|| {
                        r.families.push(Family::new(name, kind, help));
                        r.families.len() - 1
                    })
                };
                let out = match f.ty {
                    FieldType::Key | FieldType::Label => continue,
                    FieldType::Gauge | FieldType::Summary => {
                        FieldFamilies::Scalar(family(base, Some("gauge"), &f.description))
                    }
                    FieldType::Counter => {
                        FieldFamilies::Scalar(family(base, Some("counter"), &f.description))
                    }
                    FieldType::Histogram if legacy_histogram => FieldFamilies::Histogram {
                        hist: family(base.clone(), None, &f.description),
                        sum: Some(family(format!("{base}_sum"), None, &f.description)),
                        max: family(format!("{base}_max"), None, &f.description),
                    },
                    FieldType::Histogram => {
                        let max_help = format!("{} (largest observed value)", f.description);
                        FieldFamilies::Histogram {
                            hist: family(base.clone(), Some("histogram"), &f.description),
                            sum: None,
                            max: family(format!("{base}_max"), Some("gauge"), &max_help),
                        }
                    }
                };
                fields.push((i, out));
            }
            if !fields.is_empty() {
                r.plans.push(TablePlan { table: id, fields });
            }
        }
        r
    }

    /// Names of the families fed by more than one table (allowed, but worth a warning when
    /// their types differ).
    pub fn family_names(&self) -> impl Iterator<Item = &str> {
        self.families.iter().map(|f| f.name.as_str())
    }

    /// Appends the exposition of every live series of `imdb` at `now_ms` to `out`.
    pub fn render(&mut self, imdb: &Imdb, now_ms: u64, out: &mut Vec<u8>) {
        for f in &mut self.families {
            f.body.clear();
        }
        let since = imdb.fresh_since(now_ms);
        let registry = imdb.registry().clone();
        // Taken out so that rendering may borrow `self` mutably.
        let plans = std::mem::take(&mut self.plans);
        for plan in &plans {
            let meta = registry.table(plan.table);
            let table = imdb.lock(plan.table);
            let mut values: Vec<&[u8]> = Vec::with_capacity(meta.fields.len());
            for rec in table.live(since) {
                rec.values(&mut values);
                if values.len() != meta.fields.len() {
                    continue;
                }
                self.labels.clear();
                write_labels(meta, &values, &self.machine_id, &mut self.labels);
                for &(i, fam) in &plan.fields {
                    let v = values[i];
                    if is_null(v) {
                        continue;
                    }
                    match fam {
                        FieldFamilies::Scalar(f) => {
                            let fam = &mut self.families[f];
                            sample(&mut fam.body, &fam.name, "", &self.labels, None, v);
                        }
                        FieldFamilies::Histogram { hist, sum, max } => {
                            let Ok(h) = Histogram::parse(v) else { continue };
                            self.render_histogram(&h, hist, sum, max);
                        }
                    }
                }
            }
        }
        self.plans = plans;
        for f in &self.families {
            if !f.body.is_empty() {
                out.extend_from_slice(f.header.as_bytes());
                out.extend_from_slice(&f.body);
            }
        }
    }

    fn render_histogram(&mut self, h: &Histogram<'_>, hist: usize, sum: Option<usize>, max: usize) {
        let labels = &self.labels;
        let count = h.count().to_string();
        let fam = &mut self.families[hist];
        let bucket = if self.legacy_histogram { "" } else { "_bucket" };
        for (ub, cum) in &h.buckets {
            let cum = cum.to_string();
            sample(
                &mut fam.body,
                &fam.name,
                bucket,
                labels,
                Some(ub),
                cum.as_bytes(),
            );
        }
        sample(
            &mut fam.body,
            &fam.name,
            bucket,
            labels,
            Some("+Inf"),
            count.as_bytes(),
        );
        match sum {
            Some(s) => {
                let fam = &mut self.families[s];
                sample(&mut fam.body, &fam.name, "", labels, None, h.sum.as_bytes());
            }
            None => {
                sample(
                    &mut fam.body,
                    &fam.name,
                    "_sum",
                    labels,
                    None,
                    h.sum.as_bytes(),
                );
                sample(
                    &mut fam.body,
                    &fam.name,
                    "_count",
                    labels,
                    None,
                    count.as_bytes(),
                );
            }
        }
        let fam = &mut self.families[max];
        sample(&mut fam.body, &fam.name, "", labels, None, h.max.as_bytes());
    }
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
        }
    }
}

/// Writes `name<suffix>{labels[,le="<le>"]} value\n`.
fn sample(out: &mut Vec<u8>, name: &str, suffix: &str, labels: &[u8], le: Option<&str>, v: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(suffix.as_bytes());
    out.push(b'{');
    out.extend_from_slice(labels);
    if let Some(le) = le {
        out.extend_from_slice(b",le=\"");
        out.extend_from_slice(le.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b"} ");
    out.extend_from_slice(v);
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

/// Escapes a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(v: &[u8], out: &mut Vec<u8>) {
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
