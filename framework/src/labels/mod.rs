//! The labels the daemon adds to the series it outputs, in Prometheus, the metric log, JSON
//! and Kafka alike:
//!
//! - a table with a `tgid` key or label gets the process's `comm` (unless the table has a
//!   `comm` field of its own), and its container's and pod's labels; entity `proc` also gets
//!   `cmdline` and `start_time`;
//! - a table keyed by `container_id` gets that container's and pod's labels;
//! - the labels the operator chose for the probe that wrote the table: the `proc_name` entry's
//!   `label` for the processes it matches, `pod_labels` (each named pod label, or
//!   `not found`) and `custom_labels`.
//!
//! Order: the table's own labels, then process, container, pod, `pod_labels`, the
//! `proc_name` label and `custom_labels`; the caller adds `machine_id` last. An empty value is
//! left out. A chosen label never repeats a name the table or the derived labels already use
//! (that would make Prometheus refuse the whole scrape), and a name that is not a valid
//! Prometheus label name has its other characters replaced with `_`
//! (`app.kubernetes.io/name` → `app_kubernetes_io_name`).

pub mod cache;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use gala_meta::{Registry, TableId, TableMeta};
use parking_lot::RwLock;
use regex::Regex;

use crate::api::{ProbeSettings, ProcNameEntry};
use cache::{ContainerEntry, ProcCache, ProcEntry};

/// The labels a process-level table gets (one with a `tgid` key or label).
pub const PROCESS_LABELS: [&str; 7] = [
    "comm",
    "container_id",
    "container_name",
    "container_image",
    "pod_id",
    "pod",
    "pod_namespace",
];

/// The labels the tables of entity `proc` also get.
pub const PROC_LABELS: [&str; 2] = ["cmdline", "start_time"];

/// The labels a table keyed by `container_id` gets (metadata lists them for entity
/// `container`, as the original).
pub const CONTAINER_LABELS: [&str; 5] = [
    "container_name",
    "container_image",
    "pod_id",
    "pod",
    "pod_namespace",
];

/// Whether `name` is one of the derived labels.
fn is_derived(name: &str) -> bool {
    PROCESS_LABELS.contains(&name) || PROC_LABELS.contains(&name)
}

/// The value of a `pod_labels` label the pod does not have (the original's).
pub const POD_LABEL_NOT_FOUND: &str = "not found";

/// Where labels are written: each output's own syntax and escaping.
pub trait LabelSink {
    /// Writes one label; `value` is never empty.
    fn label(&mut self, name: &str, value: &[u8]);
}

/// What a table's records say about processes and containers: where their `tgid` and
/// `container_id` are.
#[derive(Debug, Default)]
struct TablePlan {
    tgid: Option<usize>,
    container_id: Option<usize>,
    own_comm: bool,
    proc_entity: bool,
    /// The table's field names, which chosen labels do not repeat.
    fields: HashSet<String>,
}

impl TablePlan {
    fn new(meta: &TableMeta) -> Self {
        let named = |name: &str| {
            (meta.fields.iter()).position(|f| f.ty.is_label() && f.name.eq_ignore_ascii_case(name))
        };
        TablePlan {
            tgid: named("tgid"),
            container_id: named("container_id"),
            own_comm: meta.fields.iter().any(|f| f.name == "comm"),
            proc_entity: meta.entity == "proc",
            fields: meta.fields.iter().map(|f| f.name.clone()).collect(),
        }
    }

    /// Whether records of this table get any derived label.
    fn derives(&self) -> bool {
        self.tgid.is_some() || self.container_id.is_some()
    }
}

/// The labels an operator chose for one probe.
#[derive(Debug, Default)]
pub struct ProbeLabels {
    custom: Vec<(String, String)>,
    pod_labels: Vec<(String, String)>,
    proc_names: Vec<ProcNameLabel>,
}

/// A `proc_name` entry with a label: the label goes to the processes it matches.
#[derive(Debug)]
struct ProcNameLabel {
    comm: Regex,
    cmdline: String,
    name: String,
    value: String,
}

impl ProbeLabels {
    /// The labels of `settings`: `custom_labels`, `pod_labels` and the `proc_name` labels.
    pub fn of(settings: &ProbeSettings) -> Self {
        Self::new(
            &settings.custom_labels,
            &settings.pod_labels,
            &settings.snoopers.proc_name,
        )
    }

    /// `custom` labels, the `pod_labels` to copy, and the labels of `proc_names` entries. A
    /// name is used once: by the first `pod_labels` entry that has it, else by the
    /// `proc_name` labels, else by `custom`.
    pub fn new(
        custom: &BTreeMap<String, String>,
        pod_labels: &[String],
        proc_names: &[ProcNameEntry],
    ) -> Self {
        let mut taken = HashSet::new();
        let pod_labels: Vec<_> = (pod_labels.iter())
            .filter_map(|k| Some((label_name(k)?, k.clone())))
            .filter(|(name, _)| taken.insert(name.clone()))
            .collect();
        let proc_names: Vec<_> = (proc_names.iter())
            .filter_map(|p| {
                let (name, value) = p.label.as_ref()?;
                let name = label_name(name).filter(|n| !taken.contains(n))?;
                Some(ProcNameLabel {
                    // Accepted by the REST layer, which compiled it.
                    comm: Regex::new(&p.comm).ok()?,
                    cmdline: p.cmdline.clone(),
                    name,
                    value: value.clone(),
                })
            })
            .collect();
        taken.extend(proc_names.iter().map(|l| l.name.clone()));
        let custom = (custom.iter())
            .filter_map(|(k, v)| Some((label_name(k)?, v.clone())))
            .filter(|(name, _)| !taken.contains(name))
            .collect();
        ProbeLabels {
            custom,
            pod_labels,
            proc_names,
        }
    }

    /// Whether there is nothing to add.
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty() && self.pod_labels.is_empty() && self.proc_names.is_empty()
    }
}

/// The labels of every table; see the module documentation.
pub struct Labels {
    cache: ProcCache,
    tables: Vec<TablePlan>,
    probes: RwLock<HashMap<String, Arc<ProbeLabels>>>,
}

impl std::fmt::Debug for Labels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labels").finish_non_exhaustive()
    }
}

impl Labels {
    /// The labels of the tables of `registry`, resolving processes and containers with `cache`.
    pub fn new(registry: &Registry, cache: ProcCache) -> Self {
        Labels {
            cache,
            tables: registry
                .iter()
                .map(|(_, meta)| TablePlan::new(meta))
                .collect(),
            probes: RwLock::default(),
        }
    }

    /// The process and container cache.
    pub fn cache(&self) -> &ProcCache {
        &self.cache
    }

    /// Sets the labels chosen for `probe` (after every accepted change).
    pub fn set_probe(&self, probe: &str, labels: ProbeLabels) {
        let mut probes = self.probes.write();
        if labels.is_empty() {
            probes.remove(probe);
        } else {
            probes.insert(probe.to_owned(), Arc::new(labels));
        }
    }

    /// The labels chosen for `probe`, if any.
    pub fn probe(&self, probe: &str) -> Option<Arc<ProbeLabels>> {
        self.probes.read().get(probe).cloned()
    }

    /// What records of `table`, last written by `writer`, get; `None` when nothing.
    pub fn for_table(&self, table: TableId, writer: Option<&str>) -> Option<TableLabels<'_>> {
        let chosen = writer.and_then(|w| self.probe(w));
        (self.tables[table.0 as usize].derives() || chosen.is_some()).then_some(TableLabels {
            labels: self,
            table,
            chosen,
        })
    }

    /// Writes the labels of one record of `table` (`values` in meta order), written by a
    /// probe with the `chosen` labels, to `sink`.
    pub fn write(
        &self,
        table: TableId,
        chosen: Option<&ProbeLabels>,
        values: &[&[u8]],
        sink: &mut impl LabelSink,
    ) {
        let plan = &self.tables[table.0 as usize];
        let mut process = None;
        let mut container = None;
        if let Some(i) = plan.tgid {
            process = parse_pid(values[i]).and_then(|pid| self.cache.process(pid));
            container = process.as_ref().and_then(|p| p.container.clone());
        } else if let Some(i) = plan.container_id {
            container = self.cache.container(values[i]);
        }
        if let Some(p) = &process {
            write_process(plan, p, sink);
        }
        if let Some(c) = &container {
            write_container(plan, c, sink);
        }
        let Some(chosen) = chosen else { return };
        let mut put = |name: &str, value: &str| {
            if !plan.fields.contains(name) && !is_derived(name) && name != "machine_id" {
                put(sink, name, value.as_bytes());
            }
        };
        if let Some(c) = container.as_ref().filter(|c| c.pod_uid().is_some()) {
            let labels = c.meta().map(|m| &m.labels);
            for (name, key) in &chosen.pod_labels {
                let value = labels.and_then(|l| l.get(key));
                put(name, value.map_or(POD_LABEL_NOT_FOUND, String::as_str));
            }
        }
        if let Some(p) = &process {
            if let Some(l) = (chosen.proc_names.iter())
                .find(|l| l.comm.is_match(&p.comm) && p.cmdline.contains(&l.cmdline))
            {
                put(&l.name, &l.value);
            }
        }
        for (name, value) in &chosen.custom {
            put(name, value);
        }
    }
}

/// The labels of one table's records ([`Labels::for_table`]).
pub struct TableLabels<'a> {
    labels: &'a Labels,
    table: TableId,
    chosen: Option<Arc<ProbeLabels>>,
}

impl TableLabels<'_> {
    /// Writes the labels of one record (`values` in meta order) to `sink`.
    pub fn write(&self, values: &[&[u8]], sink: &mut impl LabelSink) {
        (self.labels).write(self.table, self.chosen.as_deref(), values, sink);
    }
}

fn write_process(plan: &TablePlan, p: &ProcEntry, sink: &mut impl LabelSink) {
    if !plan.own_comm {
        put(sink, "comm", p.comm.as_bytes());
    }
    if plan.proc_entity {
        put(sink, "cmdline", p.cmdline_label().as_bytes());
        if p.start_time > 0 {
            put(
                sink,
                "start_time",
                itoa::Buffer::new().format(p.start_time).as_bytes(),
            );
        }
    }
}

fn write_container(plan: &TablePlan, c: &ContainerEntry, sink: &mut impl LabelSink) {
    if plan.container_id.is_none() {
        put(sink, "container_id", c.short_id.as_bytes());
    }
    let meta = c.meta();
    let name = meta.and_then(|m| m.name.as_deref()).unwrap_or_default();
    put(sink, "container_name", name.as_bytes());
    let image = meta.and_then(|m| m.image.as_deref()).unwrap_or_default();
    put(sink, "container_image", image.as_bytes());
    put(sink, "pod_id", c.pod_uid().unwrap_or_default().as_bytes());
    put(sink, "pod", c.pod().unwrap_or_default().as_bytes());
    let namespace = meta
        .and_then(|m| m.pod_namespace.as_deref())
        .unwrap_or_default();
    put(sink, "pod_namespace", namespace.as_bytes());
}

/// Writes a label unless its value is empty.
fn put(sink: &mut impl LabelSink, name: &str, value: &[u8]) {
    if !value.is_empty() {
        sink.label(name, value);
    }
}

/// A pid field's value.
fn parse_pid(v: &[u8]) -> Option<u32> {
    std::str::from_utf8(v)
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

/// `name` as a Prometheus label name: characters other than ASCII letters, digits and `_`
/// become `_`, and a leading digit gets a `_` before it; `None` when empty or reserved
/// (`__` prefix).
pub fn label_name(name: &str) -> Option<String> {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    (!out.is_empty() && !out.starts_with("__")).then_some(out)
}

#[cfg(test)]
mod tests;
