//! Turns a probe's snooper entries into the concrete processes and containers sent to it, and
//! tells whether that set changed since the last resolution.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use regex::{Regex, RegexBuilder};

use super::error::{QueryError, Result};
use super::ids::{normalise_container_id_prefix, normalise_pod_id};
use super::proc::{ContainerInfo, ProcSnapshot, ProcessInfo, ScanRoots};
use super::runtime::{Listing, RuntimeCli, RuntimeContainer, RuntimeInventory};
use crate::containers::ContainerLookup;

/// The original's cap on resolved objects per probe.
pub const DEFAULT_MAX_OBJECTS: usize = 1000;
/// How long a container runtime CLI may take by default.
pub const DEFAULT_RUNTIME_TIMEOUT: Duration = Duration::from_secs(5);
/// Compiled-size limit of one `comm` regex, so an entry cannot make the daemon allocate without
/// bound.
const COMM_REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A `proc_name` entry as plain strings, as the REST layer hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcNameEntry {
    /// Regular expression matched against `/proc/<pid>/comm`.
    pub comm: String,
    /// Substring of the cmdline; empty matches any.
    pub cmdline: String,
}

/// A probe's snooper entries as plain values, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnooperEntries {
    /// `proc_id` entries.
    pub proc_ids: Vec<u32>,
    /// `proc_name` entries.
    pub proc_names: Vec<ProcNameEntry>,
    /// `container_id` entries (1–64 hex digits, any case).
    pub container_ids: Vec<String>,
    /// `pod_id` entries (32 hex digits or a dashed uuid).
    pub pod_ids: Vec<String>,
    /// `container_name` entries (substrings of container names).
    pub container_names: Vec<String>,
}

/// A compiled `proc_name` entry.
#[derive(Debug, Clone)]
pub struct ProcPattern {
    /// Unanchored regex over the comm.
    pub comm: Regex,
    /// Substring of the cmdline; empty matches any.
    pub cmdline: String,
}

impl ProcPattern {
    /// Whether `p` matches both the comm regex and the cmdline substring.
    pub fn matches(&self, p: &ProcessInfo) -> bool {
        self.comm.is_match(&p.comm) && p.cmdline.contains(&self.cmdline)
    }
}

/// A probe's snooper entries, validated and ready to match.
#[derive(Debug, Clone, Default)]
pub struct SnooperQuery {
    proc_ids: BTreeSet<u32>,
    proc_names: Vec<ProcPattern>,
    container_id_prefixes: Vec<String>,
    pod_ids: BTreeSet<String>,
    container_names: Vec<String>,
}

impl SnooperQuery {
    /// Validates and compiles `entries`. Empty `comm`, `container_id` and `pod_id` strings are
    /// skipped, as the original did; an empty `container_name` matches every container.
    pub fn compile(entries: &SnooperEntries) -> Result<Self, QueryError> {
        let mut query = SnooperQuery {
            proc_ids: entries.proc_ids.iter().copied().collect(),
            ..SnooperQuery::default()
        };
        for entry in entries.proc_names.iter().filter(|e| !e.comm.is_empty()) {
            let comm = RegexBuilder::new(&entry.comm)
                .size_limit(COMM_REGEX_SIZE_LIMIT)
                .build()
                .map_err(|source| QueryError::BadCommRegex {
                    pattern: entry.comm.clone(),
                    source,
                })?;
            query.proc_names.push(ProcPattern {
                comm,
                cmdline: entry.cmdline.clone(),
            });
        }
        for id in entries.container_ids.iter().filter(|s| !s.is_empty()) {
            let prefix = normalise_container_id_prefix(id)
                .ok_or_else(|| QueryError::BadContainerId(id.clone()))?;
            query.container_id_prefixes.push(prefix);
        }
        for id in entries.pod_ids.iter().filter(|s| !s.is_empty()) {
            let pod = normalise_pod_id(id).ok_or_else(|| QueryError::BadPodId(id.clone()))?;
            query.pod_ids.insert(pod);
        }
        query.container_names = entries.container_names.clone();
        Ok(query)
    }

    /// Whether the query has no entry at all.
    pub fn is_empty(&self) -> bool {
        self.proc_ids.is_empty()
            && self.proc_names.is_empty()
            && self.container_id_prefixes.is_empty()
            && self.pod_ids.is_empty()
            && self.container_names.is_empty()
    }

    /// Whether resolving needs container names, i.e. a [`RuntimeInventory`].
    pub fn needs_runtime(&self) -> bool {
        !self.container_names.is_empty()
    }

    fn wants_container(&self, c: &ContainerInfo) -> bool {
        self.container_id_prefixes
            .iter()
            .any(|prefix| c.id.starts_with(prefix.as_str()))
            || c.pod_id
                .as_ref()
                .is_some_and(|pod| self.pod_ids.contains(pod))
            || c.name.as_ref().is_some_and(|name| {
                self.container_names
                    .iter()
                    .any(|wanted| name.contains(wanted.as_str()))
            })
    }
}

/// Which object kinds a probe accepts: the catalogue's snoop column.
pub use crate::probes::catalogue::SnoopKinds as Kinds;

/// One object a probe is told to observe. Containers sort before processes, so when the cap cuts
/// it cuts processes (highest pids first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Snooped {
    /// A container.
    Container(ContainerInfo),
    /// A process.
    Process(ProcessInfo),
}

/// Knobs of a resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOptions {
    /// The daemon's pid: it and its children never match a `proc_name` entry. Default: this
    /// process.
    pub daemon_pid: Option<u32>,
    /// Most objects returned; the surplus is cut and counted. Default: 1000, the original's cap.
    pub max_objects: usize,
    /// How long a container runtime CLI may take ([`Resolver::rescan`] only). Default: 5 s.
    pub runtime_timeout: Duration,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        ResolveOptions {
            daemon_pid: Some(std::process::id()),
            max_objects: DEFAULT_MAX_OBJECTS,
            runtime_timeout: DEFAULT_RUNTIME_TIMEOUT,
        }
    }
}

/// The objects of one resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Sorted, deduplicated, at most `max_objects` long.
    pub objects: Vec<Snooped>,
    /// How many objects the cap cut off.
    pub cut: usize,
}

/// Resolves `query` against one scan (and, for `container_name`, one runtime listing).
///
/// - `proc_id`: the process, if it is alive in the scan;
/// - `proc_name`: processes whose comm matches the regex and whose cmdline contains the substring,
///   except the daemon (`daemon_pid`) and its children;
/// - `container_id`, `pod_id`, `container_name`: the matching containers and all their processes.
///
/// Only the kinds in `kinds` are returned.
pub fn resolve(
    snapshot: &ProcSnapshot,
    runtime: Option<&RuntimeInventory>,
    query: &SnooperQuery,
    kinds: Kinds,
    options: &ResolveOptions,
) -> Resolution {
    let containers = known_containers(snapshot, runtime);
    let wanted: BTreeMap<&str, &ContainerInfo> = containers
        .values()
        .filter(|c| query.wants_container(c))
        .map(|c| (c.id.as_str(), c))
        .collect();

    let mut objects = Vec::new();
    if kinds.container {
        objects.extend(wanted.values().map(|c| Snooped::Container((*c).clone())));
    }
    if kinds.process {
        let is_daemon_or_child = |p: &ProcessInfo| {
            options
                .daemon_pid
                .is_some_and(|d| p.pid == d || p.ppid == d)
        };
        let selected = snapshot.processes().iter().filter(|p| {
            query.proc_ids.contains(&p.pid)
                || p.container_id
                    .as_deref()
                    .is_some_and(|id| wanted.contains_key(id))
                || (!is_daemon_or_child(p) && query.proc_names.iter().any(|pat| pat.matches(p)))
        });
        objects.extend(selected.map(|p| Snooped::Process(p.clone())));
    }
    // Containers were added in id order, then processes in pid order, each id and pid once:
    // the vector is already sorted and free of duplicates.
    debug_assert!(objects.windows(2).all(|w| w[0] < w[1]));
    let cut = objects.len().saturating_sub(options.max_objects);
    objects.truncate(options.max_objects);
    Resolution { objects, cut }
}

/// The containers seen in the scan, completed with names and pod uids from the runtimes; a
/// container only a runtime lists (its processes are outside this proc tree) has inode 0.
fn known_containers(
    snapshot: &ProcSnapshot,
    runtime: Option<&RuntimeInventory>,
) -> BTreeMap<String, ContainerInfo> {
    let mut containers = snapshot.containers().clone();
    for listed in runtime.map_or(&[][..], |r| &r.containers) {
        let c = containers
            .entry(listed.id.clone())
            .or_insert_with(|| ContainerInfo {
                id: listed.id.clone(),
                name: None,
                pod_id: None,
                cpucg_inode: 0,
            });
        c.name = Some(listed.name.clone());
        if c.pod_id.is_none() {
            c.pod_id.clone_from(&listed.pod_id);
        }
    }
    containers
}

/// The containers of `snapshot` that `names` knows, as if a runtime had listed them.
fn inventory_from_lookups(
    snapshot: &ProcSnapshot,
    names: &dyn ContainerLookup,
) -> RuntimeInventory {
    let listed = snapshot.containers().values().filter_map(|c| {
        let meta = names.lookup(&c.id)?;
        Some(RuntimeContainer {
            id: c.id.clone(),
            name: meta.name?,
            pod_id: meta.pod_uid,
        })
    });
    RuntimeInventory::from_listings([Ok(Listing {
        containers: listed.collect(),
        skipped: 0,
    })])
}

/// What an update found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveReport {
    /// Whether the objects differ from the previous resolution (initially: from none).
    pub changed: bool,
    /// How many objects the cap cut off this time.
    pub cut: usize,
}

/// Keeps one caller's (one probe's) last resolution so that periodic re-resolution can tell
/// whether anything changed.
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    last: Vec<Snooped>,
}

impl Resolver {
    /// A resolver whose last resolution is the empty set.
    pub fn new() -> Self {
        Resolver::default()
    }

    /// The objects of the last resolution.
    pub fn objects(&self) -> &[Snooped] {
        &self.last
    }

    /// Resolves against a scan the caller made (one scan can serve every probe) and remembers
    /// the result.
    pub fn update(
        &mut self,
        snapshot: &ProcSnapshot,
        runtime: Option<&RuntimeInventory>,
        query: &SnooperQuery,
        kinds: Kinds,
        options: &ResolveOptions,
    ) -> ResolveReport {
        let Resolution { objects, cut } = resolve(snapshot, runtime, query, kinds, options);
        let changed = objects != self.last;
        self.last = objects;
        ResolveReport { changed, cut }
    }

    /// Scans `roots`, then [`Resolver::update_listing_runtimes`]. Blocking: call it off the
    /// async executor.
    pub fn rescan(
        &mut self,
        roots: &ScanRoots,
        query: &SnooperQuery,
        kinds: Kinds,
        options: &ResolveOptions,
    ) -> Result<(ResolveReport, Vec<super::error::RuntimeError>)> {
        let snapshot = ProcSnapshot::scan(roots)?;
        Ok(self.update_listing_runtimes(&snapshot, query, kinds, options))
    }

    /// Updates against `snapshot`; when the query has `container_name` entries, the containers
    /// of the scan are named through `names` (the runtimes' API sockets, then their CLIs: see
    /// [`crate::containers::RuntimeDirectory`]), or, without it, through a listing of the
    /// installed runtime CLIs. Blocking when it asks runtimes.
    pub fn update_naming_containers(
        &mut self,
        snapshot: &ProcSnapshot,
        query: &SnooperQuery,
        kinds: Kinds,
        options: &ResolveOptions,
        names: Option<&dyn ContainerLookup>,
    ) -> (ResolveReport, Vec<super::error::RuntimeError>) {
        match names {
            Some(names) if query.needs_runtime() => {
                let named = inventory_from_lookups(snapshot, names);
                (
                    self.update(snapshot, Some(&named), query, kinds, options),
                    Vec::new(),
                )
            }
            Some(_) => (
                self.update(snapshot, None, query, kinds, options),
                Vec::new(),
            ),
            None => self.update_listing_runtimes(snapshot, query, kinds, options),
        }
    }

    /// Updates against `snapshot`, listing the installed runtimes' containers when the query
    /// has `container_name` entries. Runtime failures do not fail the resolution; they come
    /// back for the caller to log and count. Blocking when it lists runtimes.
    pub fn update_listing_runtimes(
        &mut self,
        snapshot: &ProcSnapshot,
        query: &SnooperQuery,
        kinds: Kinds,
        options: &ResolveOptions,
    ) -> (ResolveReport, Vec<super::error::RuntimeError>) {
        let runtime = query.needs_runtime().then(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            RuntimeInventory::collect(&RuntimeCli::installed(&path), options.runtime_timeout)
        });
        let report = self.update(snapshot, runtime.as_ref(), query, kinds, options);
        (report, runtime.map(|r| r.failures).unwrap_or_default())
    }
}
