//! The endpoint probe on gala-ebpf's runner: loads `endpoint.bpf.c`, keeps the BPF owner
//! maps in step with the processes in scope (preloading their listeners and UDP sockets from
//! `/proc`), attaches the UDP send/recv programs only while a process in scope has a UDP
//! socket, and every period turns the kernel's cumulative counters into the records of
//! `endpoint_tcp` and `endpoint_udp`.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use gala_ebpf::{log, BpfProbe, Histogram, Plan, Scope, Setup, Skeleton, Subitem};
use gala_probe_sdk::{Config, EmitError, Event, Level, Probe, Severity};
use libbpf_rs::{MapCore, MapFlags, Object};

use crate::bpf::*;
use crate::diag;
use crate::procfs::Procfs;
use crate::report::{self, Deltas, Listener, Names, ESTAB_BOUNDS};
use crate::scan::{self, Scan};

use crate::skel::{EndpointSkel, EndpointSkelBuilder};

/// The probe's name in the catalogue.
pub const NAME: &str = "socket";

struct Loaded {
    /// The kprobe-only fields that have their hook.
    sources: report::Sources,
    // Dropped before the skeleton that owns their programs and maps.
    udp_io: UdpIo,
    skel: Skeleton<EndpointSkel<'static>>,
}

/// The UDP send/recv programs run on every send and receive of the host, TCP included, so
/// they are attached only while a process in scope has a UDP socket: one the last refresh
/// found in `/proc`, or one the `cgroup/sock_create` program saw made since. They are
/// detached after two refreshes in a row without either.
struct UdpIo {
    /// The planned ones of [`UDP_IO`] (none: `udp_socket` off or without hooks).
    planned: Vec<&'static str>,
    links: Vec<libbpf_rs::Link>,
    /// `udp_created` as last read.
    created: u64,
    /// Refreshes in a row without a UDP socket in scope.
    idle: u32,
    /// The `cgroup/sock_create` link; `None` without cgroup v2 (new sockets are then seen
    /// at the next refresh).
    _create: Option<libbpf_rs::Link>,
}

impl UdpIo {
    /// Attaches the programs if they are planned and not attached.
    fn want(&mut self, object: &Object) {
        self.idle = 0;
        if self.planned.is_empty() || !self.links.is_empty() {
            return;
        }
        self.links = gala_ebpf::attach_named(object, &self.planned, NAME);
    }

    /// One refresh without a UDP socket in scope.
    fn idle_refresh(&mut self) {
        self.idle += 1;
        if self.idle >= 2 {
            self.links.clear();
        }
    }
}

/// Attaches the `cgroup/sock_create` program to the cgroup v2 root.
fn attach_sock_create(skel: &EndpointSkel<'_>) -> Option<libbpf_rs::Link> {
    let root = gala_ebpf::kernel::cgroup2_root()?;
    let attached = std::fs::File::open(&root)
        .map_err(|e| e.to_string())
        .and_then(|dir| {
            use std::os::fd::AsRawFd;
            skel.progs
                .ep_udp_create
                .attach_cgroup(dir.as_raw_fd())
                .map_err(|e| e.to_string())
        });
    match attached {
        Ok(link) => Some(link),
        Err(e) => {
            log(
                Level::Warn,
                NAME,
                &format!(
                    "cgroup/sock_create on {}: {e}; new UDP sockets are seen at the next report",
                    root.display()
                ),
            );
            None
        }
    }
}

/// tgid → printed tgid and comm, cached for one report.
struct ProcNames<'a> {
    proc: &'a Procfs,
    cache: HashMap<(u32, bool), (u32, String)>,
}

impl Names for ProcNames<'_> {
    fn name(&mut self, tgid: u32, multi: bool) -> (u32, String) {
        let proc = self.proc;
        self.cache
            .entry((tgid, multi))
            .or_insert_with(|| {
                let shown = if multi {
                    proc.pgid(tgid).filter(|g| *g != 0).unwrap_or(tgid)
                } else {
                    tgid
                };
                let mut comm = proc.comm(shown);
                if comm.is_empty() {
                    comm = proc.comm(tgid);
                }
                if comm.is_empty() {
                    comm = "unknown".to_owned();
                }
                (shown, comm)
            })
            .clone()
    }
}

/// The probe's state.
#[derive(Default)]
pub struct Endpoint {
    loaded: Option<Loaded>,
    proc: Procfs,
    scope: Scope,
    scan: Scan,
    listen_owners: HashMap<ListenKey, ListenVal>,
    /// Listener entries the last scan did not show.
    listen_missing: std::collections::HashSet<ListenKey>,
    tcp: Deltas<TcpKey, C_NUM>,
    udp: Deltas<UdpKey, 3>,
    estab: HashMap<TcpKey, Histogram>,
    udp_extra: HashMap<UdpKey, u64>,
    /// `sk_drops` per listener inode at the last report; `None` before the baseline.
    diag_prev: Option<HashMap<u64, u64>>,
    diag_failed: bool,
    bad_records: u64,
}

impl Endpoint {
    /// A probe with nothing loaded.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `/proc` for the processes in scope and brings the owner maps in line.
    fn refresh(&mut self) {
        let members = self.scope.members(|| self.proc.pids());
        self.scan = scan::scan(&self.proc, &members);
        let Some(l) = &self.loaded else {
            return;
        };
        let maps = &l.skel.maps;
        // Listeners: drop the owners out of scope, add the ones /proc shows.
        let mut present: HashMap<ListenKey, ListenVal> = entries(&maps.ep_listen).collect();
        for (k, v) in &present {
            if !self.scope.contains(v.tgid) {
                let _ = maps.ep_listen.delete(&bytes(k));
            }
        }
        present.retain(|_, v| self.scope.contains(v.tgid));
        // An entry /proc no longer shows (a closed listener whose close BPF did not match)
        // goes after two scans in a row without it: one miss may be a listener newer than
        // the scan.
        let scanned: std::collections::HashSet<ListenKey> = self
            .scan
            .listeners
            .iter()
            .map(|g| report::listen_key(g.netns, g.family, &g.addr, g.port))
            .collect();
        let missing: std::collections::HashSet<ListenKey> = present
            .keys()
            .filter(|k| !scanned.contains(*k))
            .copied()
            .collect();
        for k in missing.intersection(&self.listen_missing) {
            let _ = maps.ep_listen.delete(&bytes(k));
            present.remove(k);
        }
        self.listen_missing = missing;
        for g in &self.scan.listeners {
            let key = report::listen_key(g.netns, g.family, &g.addr, g.port);
            if present.contains_key(&key) {
                continue;
            }
            let Some(&owner) = g.holders.first() else {
                continue;
            };
            let val = ListenVal {
                tgid: owner,
                family: g.family,
                pad: 0,
                addr: g.addr,
                ino: g.inos.first().copied().unwrap_or(0),
            };
            if maps
                .ep_listen
                .update(&bytes(&key), &bytes(&val), MapFlags::ANY)
                .is_ok()
            {
                present.insert(key, val);
            }
        }
        self.listen_owners = present;
        // UDP sockets.
        let Some(l) = &mut self.loaded else {
            return;
        };
        if self.scan.udp_owner.is_empty() {
            l.udp_io.idle_refresh();
        } else {
            l.udp_io.want(l.skel.object());
        }
        let maps = &l.skel.maps;
        let owners: HashMap<Inode, Tgid> = entries(&maps.ep_udp_owner).collect();
        for (ino, tgid) in &owners {
            if !self.scope.contains(tgid.0) {
                let _ = maps.ep_udp_owner.delete(&bytes(ino));
            }
        }
        for (&ino, &tgid) in &self.scan.udp_owner {
            let (ino, tgid) = (Inode(ino), Tgid(tgid));
            if owners.get(&ino) != Some(&tgid) {
                let _ = maps
                    .ep_udp_owner
                    .update(&bytes(&ino), &bytes(&tgid), MapFlags::ANY);
            }
        }
    }
}

impl Endpoint {
    /// The `endpoint_tcp` records of the period that ends now.
    fn tcp_rows(&mut self, now: Instant) -> Vec<report::TcpRow> {
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        let sources = l.sources;
        let maps = &l.skel.maps;
        let current = entries::<TcpKey, TcpVal>(&maps.ep_tcp_stats).map(|(k, v)| (k, v.c));
        let update = self.tcp.update(now, current);
        for k in &update.idle {
            let _ = maps.ep_tcp_stats.delete(&bytes(k));
        }
        let diag = self.listen_drops();
        let listeners: Vec<Listener> = self
            .scan
            .listeners
            .iter()
            .filter_map(|g| {
                let lk = report::listen_key(g.netns, g.family, &g.addr, g.port);
                let owner = self.listen_owners.get(&lk)?.tgid;
                let drops: Vec<u64> = g.inos.iter().filter_map(|i| diag.get(i)).copied().collect();
                Some(Listener {
                    key: report::server_key(owner, g.family, &g.addr, g.port),
                    multi: g.multi(),
                    listendrop: (!drops.is_empty()).then(|| drops.iter().sum()),
                })
            })
            .collect();
        let scope = &self.scope;
        let mut names = ProcNames {
            proc: &self.proc,
            cache: HashMap::new(),
        };
        report::tcp_rows(
            &listeners,
            &update.deltas,
            &self.estab,
            |t| scope.contains(t),
            &mut names,
            sources,
        )
    }

    /// Per listener inode, the increase of its `sk_drops` since the last report (sock_diag).
    fn listen_drops(&mut self) -> HashMap<u64, u64> {
        let now = match diag::listeners() {
            Ok(list) => list,
            Err(e) => {
                if !self.diag_failed {
                    log(
                        Level::Warn,
                        NAME,
                        &format!("{e}: listendrop counts the drops BPF sees only"),
                    );
                    self.diag_failed = true;
                }
                return HashMap::new();
            }
        };
        let (out, next) = report::drop_deltas(self.diag_prev.as_ref(), &now);
        self.diag_prev = Some(next);
        out
    }

    /// The `endpoint_udp` records of the period that ends now.
    fn udp_rows(&mut self, now: Instant) -> Vec<Vec<String>> {
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        let maps = &l.skel.maps;
        // Drops on sockets BPF did not know an owner for: resolve by inode.
        let unowned: Vec<(Inode, UdpUnowned)> = entries(&maps.ep_udp_unowned).collect();
        for (ino, u) in unowned {
            let _ = maps.ep_udp_unowned.delete(&bytes(&ino));
            if let Some(&tgid) = self.scan.udp_owner.get(&ino.0) {
                let _ = maps
                    .ep_udp_owner
                    .update(&bytes(&ino), &bytes(&Tgid(tgid)), MapFlags::ANY);
                let key = UdpKey { tgid, ..u.key };
                *self.udp_extra.entry(key).or_default() += u.drops;
            }
        }
        let current = entries::<UdpKey, UdpVal>(&maps.ep_udp_stats)
            .map(|(k, v)| (k, report::udp_counters(&v)));
        let update = self.udp.update(now, current);
        for k in &update.idle {
            let _ = maps.ep_udp_stats.delete(&bytes(k));
        }
        let mut deltas = update.deltas;
        for (key, drops) in self.udp_extra.drain() {
            deltas.entry(key).or_default()[0] += drops;
        }
        let mut keys: Vec<&UdpKey> = deltas
            .keys()
            .filter(|k| self.scope.contains(k.tgid))
            .collect();
        keys.sort_by_key(|k| (k.tgid, k.lport, k.laddr, k.rport, k.raddr));
        keys.into_iter()
            .map(|k| report::udp_row(k, &deltas[k]))
            .collect()
    }
}

/// Every entry of a map, key and value read as their generated types (malformed entries
/// skipped).
fn entries<'m, K: FromBpf + 'm, V: FromBpf + 'm>(
    map: &'m dyn MapCore,
) -> impl Iterator<Item = (K, V)> + 'm {
    map.keys().filter_map(move |k| {
        let v = map.lookup(&k, MapFlags::ANY).ok()??;
        Some((decode(&k)?, decode(&v)?))
    })
}

fn display(values: &[String]) -> Vec<&dyn std::fmt::Display> {
    values.iter().map(|v| v as &dyn std::fmt::Display).collect()
}

impl BpfProbe for Endpoint {
    const NAME: &'static str = NAME;

    fn subitems(&self) -> &'static [Subitem] {
        SUBITEMS
    }

    fn load(&mut self, plan: &Plan, config: &Config) -> Result<(), gala_ebpf::Error> {
        // The UDP send/recv programs wait for a UDP socket in scope (refresh, poll).
        let setup = Setup::new(plan)
            .rings(&["ep_events"])
            .ring_mb(config.params().ringbuf_map_size)
            .manual(UDP_IO);
        let retrans_kprobe = plan.has(RETRANS_KPROBE.name);
        let skel = Skeleton::load(EndpointSkelBuilder::default(), &setup, |open| {
            if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
                ro.retrans_kprobe = retrans_kprobe;
            }
            Ok(())
        })?;
        let udp_io = UdpIo {
            planned: UDP_IO.iter().copied().filter(|p| plan.has(p)).collect(),
            links: Vec::new(),
            created: 0,
            idle: 0,
            _create: plan
                .has(UDP_CREATE)
                .then(|| attach_sock_create(&skel))
                .flatten(),
        };
        let sources = report::Sources {
            syn_overflow: plan.has(CONN_REQUEST.name),
            synack_sent: plan.has(SYNACK[0].name),
        };
        self.loaded = Some(Loaded {
            sources,
            udp_io,
            skel,
        });
        self.tcp.clear();
        self.udp.clear();
        self.estab.clear();
        self.udp_extra.clear();
        // The baseline: listeners seen later are new, their drops all fall in the period.
        self.diag_prev = None;
        let _ = self.listen_drops();
        Ok(())
    }

    fn unload(&mut self) {
        self.loaded = None;
    }

    fn object(&self) -> Option<&Object> {
        self.loaded.as_ref().map(|l| l.skel.object())
    }

    fn configure(&mut self, config: &Config, pids: &BTreeSet<u32>) {
        self.scope = Scope::new(config.snooper_mode(), pids.clone());
        self.refresh();
    }

    fn poll(&mut self) {
        let Some(l) = &mut self.loaded else {
            return;
        };
        let created = l.skel.maps.bss_data.as_deref().map_or(0, |b| b.udp_created);
        if created != l.udp_io.created {
            l.udp_io.created = created;
            l.udp_io.want(l.skel.object());
        }
        let estab = &mut self.estab;
        let bad = &mut self.bad_records;
        let Some(ring) = l.skel.ring() else {
            return;
        };
        ring.drain(|data| match decode::<EstabRec>(data) {
            Some(r) => estab
                .entry(r.key)
                .or_insert_with(|| Histogram::new(ESTAB_BOUNDS))
                .record(r.latency_ns),
            None => *bad += 1,
        });
    }

    fn report(&mut self, probe: &mut Probe, config: &Config, plan: &Plan) -> Result<(), EmitError> {
        self.refresh();
        let now = Instant::now();
        let events = config.params().report_event;
        if self.loaded.is_none() {
            return Ok(());
        }
        if plan.active("tcp_socket") {
            let rows = self.tcp_rows(now);
            for row in &rows {
                probe.emit("endpoint_tcp", &display(&row.values))?;
                if events {
                    for (metric, id, text) in report::tcp_events(row) {
                        let e = Event::new("endpoint_tcp", &id, metric, Severity::Warn, &text)
                            .pid(row.tgid)
                            .comm(&row.values[1])
                            .ip(&row.values[5]);
                        probe.event(&e)?;
                    }
                }
            }
        }
        if plan.active("udp_socket") {
            for values in self.udp_rows(now) {
                probe.emit("endpoint_udp", &display(&values))?;
            }
        }
        self.estab.clear();
        if self.bad_records > 0 {
            log(
                Level::Warn,
                NAME,
                &format!("{} malformed ring buffer records ignored", self.bad_records),
            );
            self.bad_records = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_planned_program_is_in_the_object_on_its_hook() {
        let problems = gala_ebpf::check_skeleton(EndpointSkelBuilder::default(), SUBITEMS);
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
