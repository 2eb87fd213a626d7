//! One collection cycle: finds the containers the scope asks for (a process of each, from
//! `/proc/<pid>/cgroup`), remembers them between cycles, samples each, and logs each problem
//! once until it recovers. A container whose files cannot be read degrades alone.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use crate::error::{Error, Result};
use crate::file::Warnings;
use crate::host::Host;
use crate::membership::Membership;
use crate::sample::{sample, Record, Tracked};
use crate::scope::Scope;

/// What one cycle produced.
#[derive(Debug, Default)]
pub struct Cycle {
    /// Record lines of every reported container.
    pub records: Vec<Record>,
    /// Log lines to print (each problem once until it recovers).
    pub log: Vec<String>,
}

/// The probe's state between cycles.
#[derive(Debug)]
pub struct Collector {
    host: Host,
    /// Reported containers by full id.
    tracked: BTreeMap<String, Tracked>,
    /// Warning keys logged and not yet recovered.
    logged: HashSet<String>,
}

impl Collector {
    /// A collector reading `host`'s trees.
    pub fn new(host: Host) -> Self {
        Collector {
            host,
            tracked: BTreeMap::new(),
            logged: HashSet::new(),
        }
    }

    /// The host it reads.
    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Full ids of the containers the last cycle reported.
    pub fn containers(&self) -> impl Iterator<Item = &str> {
        self.tracked.keys().map(String::as_str)
    }

    /// The membership of `pid`, if it is in a container.
    fn membership(&self, pid: u32) -> Option<Membership> {
        self.host.membership(pid)
    }

    /// Finds the containers of `scope`: the remembered ones (whether they still run is seen
    /// when their processes are listed), the snooped processes' containers, and, for the rest
    /// (every container in blacklist mode), one pass over `/proc` that skips the processes
    /// already known.
    fn locate(&mut self, scope: &Scope) -> Result<()> {
        self.tracked.retain(|id, _| scope.wants(id));
        for (id, pid) in &scope.hints {
            // Snooped processes carry full ids: a map lookup, a prefix search only for others.
            if self.tracked.contains_key(id)
                || self.tracked.keys().any(|t| t.starts_with(id.as_str()))
            {
                continue;
            }
            if let Some(m) = self.membership(*pid) {
                if m.container_id.starts_with(id.as_str()) && scope.wants(&m.container_id) {
                    self.track(*pid, m);
                }
            }
        }

        let missing = if scope.all_but {
            true
        } else {
            scope
                .ids
                .iter()
                .any(|l| !self.tracked.keys().any(|t| t.starts_with(l.as_str())))
        };
        if missing {
            self.scan(scope)?;
        }
        Ok(())
    }

    /// One pass over `/proc` for containers of `scope` not yet found.
    fn scan(&mut self, scope: &Scope) -> Result<()> {
        let known: HashSet<u32> = self
            .tracked
            .values()
            .flat_map(|t| t.pids.iter().copied().chain([t.pid]))
            .collect();
        let proc_root = self.host.proc_root();
        let pids = gala_cgroup::pids(&proc_root).map_err(|source| Error::ListProc {
            path: proc_root.clone(),
            source,
        })?;
        for pid in pids {
            if known.contains(&pid) {
                continue;
            }
            let Some(m) = self.membership(pid) else {
                continue;
            };
            if scope.wants(&m.container_id) && !self.tracked.contains_key(&m.container_id) {
                self.track(pid, m);
            }
        }
        Ok(())
    }

    fn track(&mut self, pid: u32, membership: Membership) {
        self.tracked.insert(
            membership.container_id.clone(),
            Tracked {
                pid,
                membership,
                init: None,
                pids: BTreeSet::new(),
            },
        );
    }

    /// Runs one cycle for `scope`.
    pub fn cycle(&mut self, scope: &Scope) -> Cycle {
        let mut cycle = Cycle::default();
        let mut warned = HashSet::new();
        if let Err(e) = self.locate(scope) {
            self.warn(
                &mut cycle,
                &mut warned,
                "locate".into(),
                format!("{e}; containers not started since are not found"),
            );
        }
        let mut all: Vec<(String, String)> = Vec::new();
        let mut gone = Vec::new();
        for (id, t) in &mut self.tracked {
            let mut warnings: Warnings = Vec::new();
            let Some(s) = sample(&self.host, t, &mut warnings) else {
                gone.push(id.clone());
                continue;
            };
            cycle.records.extend(s.records());
            let short = &id[..id.len().min(12)];
            all.extend(
                warnings
                    .into_iter()
                    .map(|(k, m)| (format!("{id}:{k}"), format!("container {short}: {m}"))),
            );
        }
        for id in gone {
            self.tracked.remove(&id);
        }
        for (key, message) in all {
            self.warn(&mut cycle, &mut warned, key, message);
        }
        // Problems that did not recur are logged again when they come back.
        self.logged.retain(|k| warned.contains(k));
        cycle
    }

    fn warn(
        &mut self,
        cycle: &mut Cycle,
        warned: &mut HashSet<String>,
        key: String,
        message: String,
    ) {
        if self.logged.insert(key.clone()) {
            cycle.log.push(format!("[WARN] container: {message}"));
        }
        warned.insert(key);
    }
}
