//! The probe itself: its sub-items and hooks, loading the BPF object for the active ones,
//! the resolver uprobes and CPython GC probes kept in step with the snooped processes, and
//! the report of each period (records, then events).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gala_ebpf::{log, BpfProbe, Need, Plan, Prog, Setup, Skeleton, Subitem};
use gala_probe_sdk::{Config, EmitError, Event, Level, Probe, Severity, SnooperMode};
use libbpf_rs::skel::OpenSkel;
use libbpf_rs::{Link, MapCore, MapFlags, Object, UprobeOpts, UsdtOpts};

use crate::dns::DnsStats;
use crate::events::events;
use crate::mapped::{Change, MappedProbes, LIBC, PYTHON};
use crate::skel::{types, TaskprobeSkel, TaskprobeSkelBuilder};
use crate::stats::{Periods, ProcStats};
use crate::syscalls::{class_table, Group};
use crate::tables::{rows, Enabled};

/// `enabled` bits of the BPF object (`enum sub_bit` in `taskprobe.bpf.c`).
const SUB_SYSCALL: u32 = types::sub_bit::SUB_SYSCALL.0;
const SUB_FS: u32 = types::sub_bit::SUB_FS.0;

/// What the task-storage programs need beyond their hooks (both 5.11+).
const TASK_STORAGE: &[&str] = &["BPF_MAP_TYPE_TASK_STORAGE", "BPF_FUNC_get_current_task_btf"];

const SYS_ENTER: Prog = Prog::tp_btf("taskprobe_sys_enter", "sys_enter").requiring(TASK_STORAGE);
const SYS_EXIT: Prog = Prog::tp_btf("taskprobe_sys_exit", "sys_exit").requiring(TASK_STORAGE);
const SYS_ENTER_HASH: Prog = Prog::tp_btf("taskprobe_sys_enter_hash", "sys_enter");
const SYS_EXIT_HASH: Prog = Prog::tp_btf("taskprobe_sys_exit_hash", "sys_exit");
const THREAD_EXIT_HASH: Prog = Prog::tp_btf("taskprobe_thread_exit_hash", "sched_process_exit");
const SCHED_SWITCH: Prog =
    Prog::tp_btf("taskprobe_sched_switch", "sched_switch").requiring(TASK_STORAGE);
const SCHED_SWITCH_HASH: Prog = Prog::tp_btf("taskprobe_sched_switch_hash", "sched_switch");

/// The maps of the per-thread state, each with the programs that use it: user space creates
/// a map only when one of them is chosen (a task-storage map cannot be created on 5.10, and
/// the hash maps are not needed on newer kernels).
const THREAD_MAPS: &[(&str, &[Prog])] = &[
    ("syscall_start", &[SYS_ENTER, SYS_EXIT]),
    (
        "syscall_start_h",
        &[SYS_ENTER_HASH, SYS_EXIT_HASH, THREAD_EXIT_HASH],
    ),
    ("offcpu_start", &[SCHED_SWITCH]),
    ("offcpu_start_h", &[SCHED_SWITCH_HASH]),
];

/// Need names used by the report to leave fields empty.
const NEED_SYSCALLS: &str = "syscall entry and exit";
const NEED_BIO: &str = "bio submission and completion";
const NEED_HANG: &str = "hung-task reports";
const NEED_RECLAIM: &str = "direct reclaim";
const NEED_LOOKUPS: &str = "page-cache lookups";
const NEED_DIRTY_BUFFERS: &str = "dirty buffers";
const NEED_PAGE_ADDS: &str = "page-cache additions";
const NEED_DIRTY_PAGES: &str = "dirty pages";

/// Syscall entry and exit: per-thread state in task storage (5.11+), else in a hash map
/// emptied when threads exit (5.10).
const SYSCALLS: Need = Need {
    what: NEED_SYSCALLS,
    variants: &[
        &[SYS_ENTER, SYS_EXIT],
        &[SYS_ENTER_HASH, SYS_EXIT_HASH, THREAD_EXIT_HASH],
    ],
};

/// The sub-items of `proc` (catalogue names) and their hooks, best first. Every first
/// choice is a typed tracepoint, a uprobe or a USDT probe (all there on 6.18); the later
/// variants are for older kernels (5.10, 6.1: see README.md).
pub const SUBITEMS: &[Subitem] = &[
    Subitem {
        name: "",
        needs: &[],
    },
    Subitem {
        name: "proc_syscall",
        needs: &[SYSCALLS],
    },
    Subitem {
        name: "proc_fs",
        needs: &[SYSCALLS],
    },
    Subitem {
        name: "proc_io",
        needs: &[
            SYSCALLS,
            Need {
                what: NEED_BIO,
                variants: &[&[
                    Prog::tp_btf("taskprobe_bio_queue", "block_bio_queue"),
                    Prog::tp_btf("taskprobe_rq_complete", "block_rq_complete"),
                    Prog::tp_btf("taskprobe_bio_complete", "block_bio_complete"),
                ]],
            },
            Need {
                what: NEED_HANG,
                variants: &[&[Prog::tp_btf("taskprobe_hang", "sched_process_hang")]],
            },
        ],
    },
    Subitem {
        name: "proc_dns",
        needs: &[Need {
            what: "libc resolver calls",
            variants: &[&[
                Prog::uprobe("taskprobe_getaddrinfo"),
                Prog::uprobe("taskprobe_getaddrinfo_ret"),
                Prog::uprobe("taskprobe_gethostbyname"),
                Prog::uprobe("taskprobe_gethostbyname_ret"),
            ]],
        }],
    },
    Subitem {
        name: "proc_pagecache",
        needs: &[
            Need {
                what: NEED_RECLAIM,
                variants: &[&[
                    Prog::tp_btf("taskprobe_reclaim_begin", "mm_vmscan_direct_reclaim_begin"),
                    Prog::tp_btf("taskprobe_reclaim_end", "mm_vmscan_direct_reclaim_end"),
                ]],
            },
            Need {
                what: NEED_LOOKUPS,
                variants: &[
                    &[
                        Prog::tp_btf("taskprobe_filemap_get_pages", "mm_filemap_get_pages"),
                        Prog::tp_btf("taskprobe_filemap_fault", "mm_filemap_fault"),
                    ],
                    &[Prog::fentry(
                        "taskprobe_folio_accessed",
                        "folio_mark_accessed",
                    )],
                    &[Prog::fentry(
                        "taskprobe_page_accessed",
                        "mark_page_accessed",
                    )],
                    &[Prog::kprobe(
                        "taskprobe_folio_accessed_kp",
                        "folio_mark_accessed",
                    )],
                    &[Prog::kprobe(
                        "taskprobe_page_accessed_kp",
                        "mark_page_accessed",
                    )],
                ],
            },
            Need {
                what: NEED_DIRTY_BUFFERS,
                variants: &[&[Prog::tp_btf("taskprobe_dirty_buffer", "block_dirty_buffer")]],
            },
            Need {
                what: NEED_PAGE_ADDS,
                variants: &[&[Prog::tp_btf(
                    "taskprobe_add_to_page_cache",
                    "mm_filemap_add_to_page_cache",
                )]],
            },
            Need {
                what: NEED_DIRTY_PAGES,
                variants: &[
                    &[Prog::tp_btf(
                        "taskprobe_dirty_folio",
                        "writeback_dirty_folio",
                    )],
                    &[Prog::tp_btf("taskprobe_dirty_page", "writeback_dirty_page")],
                ],
            },
        ],
    },
    Subitem {
        name: "proc_net",
        needs: &[SYSCALLS],
    },
    Subitem {
        name: "proc_offcpu",
        needs: &[Need {
            what: "context switches",
            variants: &[&[SCHED_SWITCH], &[SCHED_SWITCH_HASH]],
        }],
    },
    Subitem {
        name: "proc_ioctl",
        needs: &[SYSCALLS],
    },
    Subitem {
        name: "proc_pygc",
        needs: &[Need {
            what: "CPython garbage collections",
            variants: &[&[
                Prog::uprobe("taskprobe_gc_start"),
                Prog::uprobe("taskprobe_gc_done"),
            ]],
        }],
    },
];

/// What is live, from a load plan.
pub fn enabled(plan: &Plan) -> Enabled {
    Enabled {
        syscall: plan.active("proc_syscall"),
        io_syscalls: plan.has_need("proc_io", NEED_SYSCALLS),
        bio: plan.has_need("proc_io", NEED_BIO),
        hang: plan.has_need("proc_io", NEED_HANG),
        fs: plan.active("proc_fs"),
        net: plan.active("proc_net"),
        ioctl: plan.active("proc_ioctl"),
        offcpu: plan.active("proc_offcpu"),
        reclaim: plan.has_need("proc_pagecache", NEED_RECLAIM),
        page_lookups: plan.has_need("proc_pagecache", NEED_LOOKUPS),
        dirty_buffers: plan.has_need("proc_pagecache", NEED_DIRTY_BUFFERS),
        page_adds: plan.has_need("proc_pagecache", NEED_PAGE_ADDS),
        dirty_pages: plan.has_need("proc_pagecache", NEED_DIRTY_PAGES),
        pygc: plan.active("proc_pygc"),
    }
}

/// Whether per-thread map `name` is to be created under `plan` (`None`: not such a map,
/// always created).
fn map_needed(plan: &Plan, name: &str) -> Option<bool> {
    let (_, progs) = THREAD_MAPS.iter().find(|(map, _)| *map == name)?;
    Some(progs.iter().any(|p| plan.has(p.name)))
}

/// The syscall groups timed for `on`.
fn groups(on: &Enabled) -> Vec<Group> {
    [
        (on.syscall, Group::Syscall),
        (on.io_syscalls, Group::Io),
        (on.fs, Group::Fs),
        (on.net, Group::Net),
        (on.ioctl, Group::Ioctl),
    ]
    .into_iter()
    .filter_map(|(on, g)| on.then_some(g))
    .collect()
}

/// The loaded state.
struct Loaded {
    skel: Skeleton<TaskprobeSkel<'static>>,
}

/// The `proc` probe.
pub struct TaskProbe {
    libc: MappedProbes<Link>,
    python: MappedProbes<Link>,
    loaded: Option<Loaded>,
    on: Enabled,
    dns_on: bool,
    periods: Periods,
    dns: DnsStats,
    dns_dropped_logged: u64,
}

impl Default for TaskProbe {
    fn default() -> Self {
        TaskProbe {
            libc: MappedProbes::new(LIBC),
            python: MappedProbes::new(PYTHON),
            loaded: None,
            on: Enabled::default(),
            dns_on: false,
            periods: Periods::default(),
            dns: DnsStats::default(),
            dns_dropped_logged: 0,
        }
    }
}

impl TaskProbe {
    /// Reads and deletes every process's record of the period.
    fn drain_stats(&mut self) -> BTreeMap<u32, ProcStats> {
        let mut out = BTreeMap::new();
        let Some(l) = &self.loaded else {
            return out;
        };
        let map = &l.skel.maps.proc_stats;
        let keys: Vec<Vec<u8>> = map.keys().collect();
        for key in keys {
            let value = match map.lookup_and_delete(&key) {
                Ok(v) => v,
                // Kernels before 5.14 have no lookup-and-delete on hash maps.
                Err(_) => {
                    let v = map.lookup(&key, MapFlags::ANY).ok().flatten();
                    let _ = map.delete(&key);
                    v
                }
            };
            let (Some(value), Ok(tgid)) = (value, <[u8; 4]>::try_from(key.as_slice())) else {
                continue;
            };
            if let Some(stats) = gala_ebpf::read_pod::<ProcStats>(&value) {
                out.insert(u32::from_ne_bytes(tgid), stats);
            }
        }
        out
    }

    /// The libc files to probe for `config`.
    fn wanted_libcs(&mut self, config: &Config, pids: &BTreeSet<u32>) -> Vec<Change<AttachError>> {
        let proc_root = Path::new("/proc");
        let containers: Vec<PathBuf> = config
            .containers()
            .filter(|c| !c.libc_path.is_empty())
            .map(|c| PathBuf::from(&c.libc_path))
            .collect();
        let listed = config.snooper_mode() != SnooperMode::Blacklist;
        let processes = if listed {
            pids.clone()
        } else {
            // Everyone but the listed: the host's libc (ours) stands for them.
            BTreeSet::from([std::process::id()])
        };
        let wanted = self.libc.wanted(proc_root, &processes, &containers, listed);
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        let skel = &l.skel;
        self.libc
            .sync(&wanted, |path, pid| attach_resolver(skel, path, pid))
    }

    /// The CPython interpreters to probe for `config`: those of the snooped processes, or
    /// in blacklist mode those of every process now running (a probe on a file covers the
    /// processes that start from it later too).
    fn wanted_pythons(
        &mut self,
        config: &Config,
        pids: &BTreeSet<u32>,
    ) -> Vec<Change<AttachError>> {
        let proc_root = Path::new("/proc");
        let listed = config.snooper_mode() != SnooperMode::Blacklist;
        let processes = if listed {
            pids.clone()
        } else {
            all_pids(proc_root)
                .filter(|p| !pids.contains(p) && *p != std::process::id())
                .collect()
        };
        let wanted = self.python.wanted(proc_root, &processes, &[], listed);
        let Some(l) = &self.loaded else {
            return Vec::new();
        };
        let skel = &l.skel;
        self.python
            .sync(&wanted, |path, pid| attach_gc(skel, path, pid))
    }
}

/// The process ids under `proc_root`.
fn all_pids(proc_root: &Path) -> impl Iterator<Item = u32> {
    std::fs::read_dir(proc_root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
}

/// Why the uprobes of one file could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A CPython USDT probe (`python:gc__start`, `python:gc__done`).
    #[error("python:{probe}: {source}")]
    Usdt {
        /// The probe's name.
        probe: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
    /// The uprobe on a required libc function (getaddrinfo).
    #[error("{function}: {source}")]
    Uprobe {
        /// The function.
        function: &'static str,
        /// libbpf's error.
        #[source]
        source: libbpf_rs::Error,
    },
}

/// The pid argument of libbpf's attach calls: one process, or -1 for all.
fn attach_pid(pid: Option<u32>) -> i32 {
    pid.map_or(-1, |p| p as i32)
}

/// Attaches the GC probes to the CPython interpreter at `path`, in process `pid` or in all
/// (its `python:gc__start` and `python:gc__done` USDT probes; libbpf enables their
/// semaphores).
fn attach_gc(
    skel: &TaskprobeSkel<'static>,
    path: &Path,
    pid: Option<u32>,
) -> Result<Vec<Link>, AttachError> {
    let p = &skel.progs;
    [
        ("gc__start", &p.taskprobe_gc_start),
        ("gc__done", &p.taskprobe_gc_done),
    ]
    .into_iter()
    .map(|(name, prog)| {
        prog.attach_usdt_with_opts(attach_pid(pid), path, "python", name, UsdtOpts::default())
            .map_err(|source| AttachError::Usdt {
                probe: name,
                source,
            })
    })
    .collect()
}

/// Attaches the resolver uprobes to the libc at `path`, in process `pid` or in all:
/// getaddrinfo is required, gethostbyname / gethostbyname2 are taken where the library has
/// them.
fn attach_resolver(
    skel: &TaskprobeSkel<'static>,
    path: &Path,
    pid: Option<u32>,
) -> Result<Vec<Link>, AttachError> {
    let attach = |prog: &libbpf_rs::ProgramMut<'_>, func: &str, ret: bool| {
        prog.attach_uprobe_with_opts(
            attach_pid(pid),
            path,
            0,
            UprobeOpts {
                retprobe: ret,
                func_name: Some(func.to_owned()),
                ..Default::default()
            },
        )
    };
    let p = &skel.progs;
    let mut links = Vec::new();
    for (func, entry, exit, required) in [
        (
            "getaddrinfo",
            &p.taskprobe_getaddrinfo,
            &p.taskprobe_getaddrinfo_ret,
            true,
        ),
        (
            "gethostbyname",
            &p.taskprobe_gethostbyname,
            &p.taskprobe_gethostbyname_ret,
            false,
        ),
        (
            "gethostbyname2",
            &p.taskprobe_gethostbyname,
            &p.taskprobe_gethostbyname_ret,
            false,
        ),
    ] {
        match attach(entry, func, false).and_then(|a| Ok((a, attach(exit, func, true)?))) {
            Ok((a, b)) => links.extend([a, b]),
            Err(source) if required => {
                return Err(AttachError::Uprobe {
                    function: func,
                    source,
                })
            }
            Err(_) => {}
        }
    }
    Ok(links)
}

/// The command name of `tgid`, for event texts; empty when it is gone.
fn comm_of(tgid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{tgid}/comm"))
        .map(|c| c.trim_end().to_owned())
        .unwrap_or_default()
}

/// The probe's name in the catalogue.
pub const NAME: &str = "proc";

impl BpfProbe for TaskProbe {
    const NAME: &'static str = NAME;

    fn subitems(&self) -> &'static [Subitem] {
        SUBITEMS
    }

    fn load(&mut self, plan: &Plan, _config: &Config) -> Result<(), gala_ebpf::Error> {
        let on = enabled(plan);
        let dns_on = plan.active("proc_dns");
        // The DNS ring buffer keeps the object's own size; it is read only with proc_dns.
        let rings: &[&str] = if dns_on { &["dns_events"] } else { &[] };
        let setup = Setup::new(plan).rings(rings);
        let skel = Skeleton::load(TaskprobeSkelBuilder::default(), &setup, |open| {
            for mut map in open.open_object_mut().maps_mut() {
                let Some(name) = map.name().to_str().map(str::to_owned) else {
                    continue;
                };
                if let Some(create) = map_needed(plan, &name) {
                    map.set_autocreate(create)
                        .map_err(gala_ebpf::Error::bpf(format!("not creating map {name}")))?;
                }
            }
            if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
                ro.enabled =
                    if on.syscall { SUB_SYSCALL } else { 0 } | if on.fs { SUB_FS } else { 0 };
                ro.syscall_class = class_table(&groups(&on));
            }
            Ok(())
        })?;
        self.loaded = Some(Loaded { skel });
        self.on = on;
        self.dns_on = dns_on;
        self.periods = Periods::default();
        self.dns = DnsStats::default();
        Ok(())
    }

    fn unload(&mut self) {
        self.libc.clear();
        self.python.clear();
        self.loaded = None;
        self.on = Enabled::default();
        self.dns_on = false;
    }

    fn object(&self) -> Option<&Object> {
        self.loaded.as_ref().map(|l| l.skel.object())
    }

    fn configure(&mut self, config: &Config, pids: &BTreeSet<u32>) {
        let mut changes = Vec::new();
        if self.dns_on {
            changes.extend(self.wanted_libcs(config, pids));
        }
        if self.on.pygc {
            changes.extend(self.wanted_pythons(config, pids));
        }
        for change in changes {
            log(change.level(), Self::NAME, &change.to_string());
        }
    }

    fn poll(&mut self) {
        let dns = &mut self.dns;
        if let Some(ring) = self.loaded.as_mut().and_then(|l| l.skel.ring()) {
            ring.drain(|data| dns.add_raw(data));
        }
    }

    fn report(
        &mut self,
        probe: &mut Probe,
        config: &Config,
        _plan: &Plan,
    ) -> Result<(), EmitError> {
        let active = self.drain_stats();
        let period = self.periods.next(active);
        let report_event = config.params().report_event;
        let latency_thr = config.params().latency_thr;
        for (tgid, stats) in &period {
            for row in rows(*tgid, stats, &self.on) {
                let values: Vec<&dyn std::fmt::Display> = row
                    .values
                    .iter()
                    .map(|v| v as &dyn std::fmt::Display)
                    .collect();
                probe.emit(row.table, &values)?;
            }
            if report_event {
                let found = events(*tgid, "", stats, &self.on, latency_thr);
                if !found.is_empty() {
                    let comm = comm_of(*tgid);
                    let id = tgid.to_string();
                    for ev in events(*tgid, &comm, stats, &self.on, latency_thr) {
                        probe.event(
                            &Event::new("proc", &id, ev.metric, Severity::Warn, &ev.message)
                                .pid(*tgid),
                        )?;
                    }
                }
            }
        }
        if self.dns_on {
            for r in self.dns.take_rows() {
                probe.emit(
                    "proc_dns",
                    &[
                        &r.tgid,
                        &r.domain,
                        &r.delay_avg,
                        &r.max_delay,
                        &format!("{:.3}", r.error_ratio),
                        &r.count,
                        &r.error_count,
                    ],
                )?;
                if report_event && r.error_ratio > 0.0 {
                    let id = format!("{}_{}", r.tgid, r.domain);
                    let message = format!(
                        "Process(PID:{}) DNS error ratio({:.3} %).",
                        r.tgid, r.error_ratio
                    );
                    probe.event(
                        &Event::new("dns", &id, "error_ratio", Severity::Warn, &message)
                            .pid(r.tgid),
                    )?;
                }
            }
            if self.dns.dropped > self.dns_dropped_logged {
                log(
                    Level::Warn,
                    Self::NAME,
                    &format!(
                        "proc_dns: {} lookups dropped so far (malformed or over {} names)",
                        self.dns.dropped,
                        crate::dns::MAX_ENTRIES
                    ),
                );
                self.dns_dropped_logged = self.dns.dropped;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ebpf::{Hook, KernelModel as Model};

    #[test]
    fn every_planned_program_is_in_the_object_on_its_hook() {
        let problems = gala_ebpf::check_skeleton(TaskprobeSkelBuilder::default(), SUBITEMS);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn every_subitem_of_the_catalogue_is_planned() {
        let names: Vec<&str> = SUBITEMS
            .iter()
            .map(|s| s.name)
            .filter(|n| !n.is_empty())
            .collect();
        assert_eq!(
            names,
            [
                "proc_syscall",
                "proc_fs",
                "proc_io",
                "proc_dns",
                "proc_pagecache",
                "proc_net",
                "proc_offcpu",
                "proc_ioctl",
                "proc_pygc"
            ]
        );
    }

    #[test]
    fn a_missing_tracepoint_degrades_only_its_fields() {
        let plan = Plan::choose(
            SUBITEMS,
            |_| true,
            |h| *h != Hook::TpBtf("sched_process_hang"),
        );
        let on = enabled(&plan);
        assert!(on.bio && on.io_syscalls && !on.hang);
        assert!(on.syscall && on.offcpu && on.page_adds);
        assert!(plan.notes.iter().any(|n| n.contains("hung-task")));
        let groups = groups(&on);
        assert_eq!(groups.len(), 5);
    }

    #[test]
    fn only_the_enabled_subitems_load_programs() {
        let plan = Plan::choose(SUBITEMS, |s| s == "proc_offcpu", |_| true);
        assert!(plan.has("taskprobe_sched_switch"));
        assert!(!plan.has("taskprobe_sys_enter") && !plan.has("taskprobe_getaddrinfo"));
        let on = enabled(&plan);
        assert_eq!(
            on,
            Enabled {
                offcpu: true,
                ..Default::default()
            }
        );
        assert!(groups(&on).is_empty());
    }

    const TASK_STORAGE_FEATURES: &[&str] =
        &["BPF_MAP_TYPE_TASK_STORAGE", "BPF_FUNC_get_current_task_btf"];

    /// Debian bullseye's 5.10: no task storage, no folios, older tracepoints.
    const K5_10: Model = Model {
        missing_tracepoints: &[
            "mm_filemap_get_pages",
            "mm_filemap_fault",
            "writeback_dirty_folio",
        ],
        functions: Some(&["mark_page_accessed"]),
        fentry: true,
        kprobes: true,
        missing_features: TASK_STORAGE_FEATURES,
    };

    /// Debian bookworm's 6.1.
    const K6_1: Model = Model {
        missing_tracepoints: &[
            "mm_filemap_get_pages",
            "mm_filemap_fault",
            "writeback_dirty_page",
        ],
        functions: Some(&["folio_mark_accessed", "mark_page_accessed"]),
        fentry: true,
        kprobes: true,
        missing_features: &[],
    };

    /// This machine's 6.18: no kprobes, fentry refused.
    const K6_18: Model = Model {
        missing_tracepoints: &["writeback_dirty_page"],
        functions: Some(&["folio_mark_accessed", "mark_page_accessed"]),
        fentry: false,
        kprobes: false,
        missing_features: &[],
    };

    #[test]
    fn every_subitem_loads_on_5_10_6_1_and_6_18() {
        for k in [&K5_10, &K6_1, &K6_18] {
            let plan = k.plan(SUBITEMS);
            assert!(plan.notes.is_empty(), "{:?}", plan.notes);
            for s in SUBITEMS {
                assert!(plan.active(s.name), "{}", s.name);
            }
        }
    }

    #[test]
    fn this_kernel_keeps_task_storage_and_the_tracepoints() {
        let plan = K6_18.plan(SUBITEMS);
        for p in [
            "taskprobe_sys_enter",
            "taskprobe_sys_exit",
            "taskprobe_sched_switch",
            "taskprobe_filemap_get_pages",
            "taskprobe_filemap_fault",
            "taskprobe_dirty_folio",
        ] {
            assert!(plan.has(p), "{p}");
        }
        for p in [
            "taskprobe_sys_enter_hash",
            "taskprobe_thread_exit_hash",
            "taskprobe_sched_switch_hash",
            "taskprobe_folio_accessed",
            "taskprobe_dirty_page",
        ] {
            assert!(!plan.has(p), "{p}");
        }
        assert_eq!(map_needed(&plan, "syscall_start"), Some(true));
        assert_eq!(map_needed(&plan, "offcpu_start"), Some(true));
        assert_eq!(map_needed(&plan, "syscall_start_h"), Some(false));
        assert_eq!(map_needed(&plan, "offcpu_start_h"), Some(false));
        assert_eq!(map_needed(&plan, "proc_stats"), None);
    }

    #[test]
    fn without_task_storage_hash_maps_carry_the_thread_state() {
        let plan = K5_10.plan(SUBITEMS);
        for p in [
            "taskprobe_sys_enter_hash",
            "taskprobe_sys_exit_hash",
            "taskprobe_thread_exit_hash",
            "taskprobe_sched_switch_hash",
        ] {
            assert!(plan.has(p), "{p}");
        }
        assert!(!plan.has("taskprobe_sys_enter") && !plan.has("taskprobe_sched_switch"));
        // A task-storage map cannot be created on 5.10: it must be left out.
        assert_eq!(map_needed(&plan, "syscall_start"), Some(false));
        assert_eq!(map_needed(&plan, "offcpu_start"), Some(false));
        assert_eq!(map_needed(&plan, "syscall_start_h"), Some(true));
        assert_eq!(map_needed(&plan, "offcpu_start_h"), Some(true));
        // Only the subitems that need them create them.
        let plan = Plan::choose_progs(SUBITEMS, |s| s == "proc_offcpu", |p| p.requires.is_empty());
        assert_eq!(map_needed(&plan, "syscall_start_h"), Some(false));
        assert_eq!(map_needed(&plan, "offcpu_start_h"), Some(true));
    }

    #[test]
    fn page_cache_falls_back_to_older_hooks() {
        let plan = K5_10.plan(SUBITEMS);
        assert!(plan.has("taskprobe_page_accessed") && plan.has("taskprobe_dirty_page"));
        assert!(!plan.has("taskprobe_folio_accessed") && !plan.has("taskprobe_dirty_folio"));
        let plan = K6_1.plan(SUBITEMS);
        assert!(plan.has("taskprobe_folio_accessed") && plan.has("taskprobe_dirty_folio"));
        assert!(!plan.has("taskprobe_page_accessed") && !plan.has("taskprobe_dirty_page"));
        // fentry refused (lockdown): kprobes.
        let plan = Model {
            fentry: false,
            ..K6_1
        }
        .plan(SUBITEMS);
        assert!(plan.has("taskprobe_folio_accessed_kp"));
        let plan = Model {
            fentry: false,
            ..K5_10
        }
        .plan(SUBITEMS);
        assert!(plan.has("taskprobe_page_accessed_kp"));
        // Neither: only access_pagecache stays empty.
        let plan = Model {
            fentry: false,
            kprobes: false,
            ..K5_10
        }
        .plan(SUBITEMS);
        assert!(!plan.has_need("proc_pagecache", NEED_LOOKUPS));
        assert!(plan.has_need("proc_pagecache", NEED_DIRTY_PAGES));
        assert_eq!(plan.notes.len(), 1, "{:?}", plan.notes);
    }

    #[test]
    fn the_thread_maps_are_maps_of_the_object() {
        use libbpf_rs::skel::SkelBuilder;
        let mut slot = std::mem::MaybeUninit::uninit();
        let open = TaskprobeSkelBuilder::default().open(&mut slot).unwrap();
        let maps: Vec<String> = open
            .open_object()
            .maps()
            .map(|m| m.name().to_string_lossy().into_owned())
            .collect();
        for (name, _) in THREAD_MAPS {
            assert!(maps.iter().any(|m| m == name), "{name} not in {maps:?}");
        }
    }
}
