//! The probe itself: which programs each sub-item needs, loading the BPF object, draining
//! its ring buffer, and the period's `io_latency`, `io_err`, `io_count`, `io_pagecache`
//! records and events.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gala_ebpf::{BpfProbe, Need, Plan, Prog, Setup, Skeleton, Subitem};
use gala_probe_sdk::{Config, EmitError, Event, Level, Probe, Severity};
use libbpf_rs::{MapCore, MapFlags, Object};

use crate::blockdev::{dev_filter, BlockDevs, Disk};
use crate::counters::{sum_cpus, CounterDeltas};
use crate::errtext::{block_status, error_text, op_text};
use crate::latency::{over_threshold, DiskLatency, StageStats};
use crate::records::{comm_text, parse, ErrorRecord, LatencyRecord, Record};

use crate::skel::{types, IoSkel, IoSkelBuilder};

/// The probe's meta file, for the SDK.
pub const META: (&str, &str) = ("io.meta", include_str!("../io.meta"));

/// The probe's name in the catalogue.
pub const NAME: &str = "io";
const ENTITY: &str = "block";

const IO_START: Prog = Prog::tp_btf("io_start", "block_io_start");
const IO_ISSUE: Prog = Prog::tp_btf("io_issue", "block_rq_issue");
const IO_COMPLETE: Prog = Prog::tp_btf("io_complete", "block_rq_complete");
const IO_ERROR: Prog = Prog::tp_btf("io_error", "block_rq_error");
const IO_ERROR_COMPLETE: Prog = Prog::tp_btf("io_error_complete", "block_rq_complete");
const BIO_QUEUE: Prog = Prog::tp_btf("io_bio_queue", "block_bio_queue");
const PC_GET_PAGES: Prog = Prog::tp_btf("pc_get_pages", "mm_filemap_get_pages");
const PC_FAULT: Prog = Prog::tp_btf("pc_fault", "mm_filemap_fault");
const PC_MARK_ACCESSED: Prog = Prog::fentry("pc_mark_accessed", "folio_mark_accessed");
const PC_PAGE_ACCESSED: Prog = Prog::fentry("pc_page_accessed", "mark_page_accessed");
const PC_MARK_ACCESSED_KP: Prog = Prog::kprobe("pc_mark_accessed_kp", "folio_mark_accessed");
const PC_PAGE_ACCESSED_KP: Prog = Prog::kprobe("pc_page_accessed_kp", "mark_page_accessed");
const PC_DIRTY_BUFFER: Prog = Prog::tp_btf("pc_dirty_buffer", "block_dirty_buffer");
const PC_ADD: Prog = Prog::tp_btf("pc_add", "mm_filemap_add_to_page_cache");
const PC_DIRTY_FOLIO: Prog = Prog::tp_btf("pc_dirty_folio", "writeback_dirty_folio");
const PC_DIRTY_PAGE: Prog = Prog::tp_btf("pc_dirty_page", "writeback_dirty_page");

/// Need names of `page_cache`, one per `io_pagecache` field.
const NEED_ACCESS: &str = "page-cache lookups";
const NEED_BUFFER_DIRTY: &str = "dirtied buffers";
const NEED_LOAD: &str = "page-cache additions";
const NEED_PAGE_DIRTY: &str = "dirtied pages";

/// The sub-items and their hooks, best first: typed tracepoints (all there on 6.18), then
/// what older kernels have (5.10, 6.1: see README.md).
pub static SUBITEMS: &[Subitem] = &[
    Subitem {
        name: "io_trace",
        needs: &[
            // Without block_io_start (kernels before 6.5) the issue program starts a request
            // at the kernel's own `start_time_ns` stamp: no program needed.
            Need {
                what: "request start",
                variants: &[&[IO_START], &[]],
            },
            Need {
                what: "request issue",
                variants: &[&[IO_ISSUE]],
            },
            Need {
                what: "request completion",
                variants: &[&[IO_COMPLETE]],
            },
        ],
    },
    Subitem {
        name: "io_err",
        needs: &[Need {
            what: "request errors",
            variants: &[&[IO_ERROR], &[IO_ERROR_COMPLETE]],
        }],
    },
    Subitem {
        name: "io_count",
        needs: &[Need {
            what: "submitted bios",
            variants: &[&[BIO_QUEUE]],
        }],
    },
    Subitem {
        name: "page_cache",
        needs: &[
            Need {
                what: NEED_ACCESS,
                variants: &[
                    &[PC_GET_PAGES, PC_FAULT],
                    &[PC_MARK_ACCESSED],
                    &[PC_PAGE_ACCESSED],
                    &[PC_MARK_ACCESSED_KP],
                    &[PC_PAGE_ACCESSED_KP],
                ],
            },
            Need {
                what: NEED_BUFFER_DIRTY,
                variants: &[&[PC_DIRTY_BUFFER]],
            },
            Need {
                what: NEED_LOAD,
                variants: &[&[PC_ADD]],
            },
            Need {
                what: NEED_PAGE_DIRTY,
                variants: &[&[PC_DIRTY_FOLIO], &[PC_DIRTY_PAGE]],
            },
        ],
    },
];

/// An event waiting for the report (poll has no output channel). One per disk and metric
/// per period; later ones are counted in its text (the daemon de-duplicates per entity).
struct PendingEvent {
    disk: Disk,
    metric: &'static str,
    message: String,
    pid: u32,
    comm: String,
    more: u64,
}

/// The `io` probe's state.
pub struct IoProbe {
    skel: Option<Skeleton<IoSkel<'static>>>,
    sys: PathBuf,
    devs: BlockDevs,
    scanned: Option<Instant>,
    /// `None`: every disk; `Some(None)`: `dev_name` names no disk; `Some(Some(dev))`.
    filter: Option<Option<u32>>,
    dev_name: String,
    sample_ns: u64,
    start_at_issue: bool,
    latency_thr: u32,
    report_event: bool,
    seen: BTreeSet<u32>,
    latency: HashMap<u32, DiskLatency>,
    last_error: HashMap<u32, i32>,
    events: BTreeMap<(u32, &'static str), PendingEvent>,
    bytes: CounterDeltas<2>,
    pages: CounterDeltas<4>,
    bad_records: u64,
    /// `lost_latency`, `lost_errors`, `lost_starts` of the BPF object (key 0).
    lost: CounterDeltas<3>,
}

impl IoProbe {
    /// A probe with nothing loaded.
    pub fn new() -> Self {
        let sys = PathBuf::from("/sys");
        IoProbe {
            devs: BlockDevs::scan(&sys),
            scanned: Some(Instant::now()),
            sys,
            skel: None,
            filter: None,
            dev_name: String::new(),
            sample_ns: 0,
            start_at_issue: false,
            latency_thr: 0,
            report_event: false,
            seen: BTreeSet::new(),
            latency: HashMap::new(),
            last_error: HashMap::new(),
            events: BTreeMap::new(),
            bytes: CounterDeltas::default(),
            pages: CounterDeltas::default(),
            bad_records: 0,
            lost: CounterDeltas::default(),
        }
    }

    /// The records lost to a full ring buffer and the sampled requests lost to a full
    /// `io_trace` since the last report, as log lines.
    fn lost_records(&mut self) -> Vec<String> {
        let Some(bss) = self.skel.as_ref().and_then(|s| s.maps.bss_data.as_deref()) else {
            return Vec::new();
        };
        let [latency, errors, starts] = self
            .lost
            .delta(0, [bss.lost_latency, bss.lost_errors, bss.lost_starts]);
        let mut lines = Vec::new();
        if latency + errors > 0 {
            lines.push(lost_text(latency, errors));
        }
        if starts > 0 {
            lines.push(no_room_text(starts));
        }
        lines
    }

    /// Deletes the `io_trace` entries of requests that started over [`STALE_NS`] ago: they
    /// never completed (merged into another request after their start), and a plain hash
    /// keeps them until deleted. Returns how many went.
    fn drop_stale_requests(&self) -> usize {
        let Some(skel) = &self.skel else { return 0 };
        let map = &skel.maps.io_trace;
        let entries = map.keys().filter_map(|key| {
            let value = map.lookup(&key, MapFlags::ANY).ok().flatten()?;
            // `start_ns` is the first field of `struct io_trace`.
            let start = u64::from_ne_bytes(value.get(..8)?.try_into().ok()?);
            Some((key, start))
        });
        let stale = stale_keys(entries, monotonic_ns(), STALE_NS);
        for key in &stale {
            let _ = map.delete(key);
        }
        stale.len()
    }

    fn rescan(&mut self) {
        self.devs = BlockDevs::scan(&self.sys);
        self.scanned = Some(Instant::now());
        self.filter = dev_filter(&self.sys, &self.devs, &self.dev_name);
    }

    /// The disk of `dev` when it is to be reported: known (rescanning sysfs at most once a
    /// second for a new device) and selected by `dev_name`.
    fn disk(&mut self, dev: u32) -> Option<Disk> {
        if self.devs.disk_of(dev).is_none()
            && self
                .scanned
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.rescan();
        }
        let disk = self.devs.disk_of(dev)?;
        match self.filter {
            Some(Some(only)) if only != disk.dev() => None,
            Some(None) => None,
            _ => Some(disk.clone()),
        }
    }

    fn on_latency(&mut self, r: &LatencyRecord) {
        let Some(disk) = self.disk(r.dev) else { return };
        let key = disk.dev();
        self.seen.insert(key);
        self.latency
            .entry(key)
            .or_default()
            .add(r.req_ns, r.driver_ns, r.device_ns);
        if self.report_event && over_threshold(self.latency_thr, r.req_ns) {
            let comm = comm_text(&r.comm);
            let message = format!(
                "IO latency occured.(Disk {}({}:{}), COMM {}, PID {}, op: {}, datalen {}, \
                 req_latency {} ns, drv_latency {} ns, dev_latency {} ns, latency_thr {} ms)",
                disk.name,
                disk.major,
                disk.first_minor,
                comm,
                r.pid,
                op_text(r.op),
                r.len,
                r.req_ns,
                r.driver_ns,
                r.device_ns,
                self.latency_thr
            );
            self.queue_event(disk, "latency_req_max", message, r.pid, comm);
        }
    }

    fn on_error(&mut self, r: &ErrorRecord) {
        let Some(disk) = self.disk(r.dev) else { return };
        let key = disk.dev();
        self.seen.insert(key);
        let status = block_status(r.status);
        self.last_error.insert(key, status);
        if self.report_event {
            let comm = comm_text(&r.comm);
            let (pid, who) = if r.submitter == 1 {
                (r.pid, format!("COMM {comm}, PID {}", r.pid))
            } else {
                (0, format!("completed in COMM {comm}, PID {}", r.pid))
            };
            let message = format!(
                "IO errors occured.(Disk {}({}:{}), {}, op: {}, datalen {}, \
                 sector {}, blk_err({}) '{}')",
                disk.name,
                disk.major,
                disk.first_minor,
                who,
                op_text(r.op),
                r.len,
                r.sector,
                status,
                error_text(status)
            );
            let comm = if pid == 0 { String::new() } else { comm };
            self.queue_event(disk, "err_code", message, pid, comm);
        }
    }

    fn queue_event(
        &mut self,
        disk: Disk,
        metric: &'static str,
        message: String,
        pid: u32,
        comm: String,
    ) {
        let key = (disk.dev(), metric);
        if let Some(e) = self.events.get_mut(&key) {
            e.more += 1;
            return;
        }
        self.events.insert(
            key,
            PendingEvent {
                disk,
                metric,
                message,
                pid,
                comm,
                more: 0,
            },
        );
    }

    /// Groups per-device period values by disk (partitions add to their disk).
    fn by_disk<const N: usize>(&mut self, deltas: Vec<(u32, [u64; N])>) -> BTreeMap<u32, [u64; N]> {
        let mut out: BTreeMap<u32, [u64; N]> = BTreeMap::new();
        for (dev, delta) in deltas {
            let Some(disk) = self.disk(dev) else { continue };
            let key = disk.dev();
            self.seen.insert(key);
            let slot = out.entry(key).or_insert([0; N]);
            for (s, d) in slot.iter_mut().zip(delta) {
                *s += d;
            }
        }
        out
    }
}

/// Every key of a per-CPU counter map whose values are `T`, as `N` counters (`counters`
/// names them), with the CPUs summed.
fn read_counters<T: gala_ebpf::Pod + Default, const N: usize>(
    map: &dyn MapCore,
    counters: impl Fn(&T) -> [u64; N],
) -> Vec<(u32, [u64; N])> {
    let mut out = Vec::new();
    for key in map.keys() {
        let Ok(k) = <[u8; 4]>::try_from(key.as_slice()) else {
            continue;
        };
        if let Ok(Some(values)) = map.lookup_percpu(&key, MapFlags::ANY) {
            out.push((u32::from_ne_bytes(k), sum_cpus(&values, &counters)));
        }
    }
    out
}

/// `struct io_bytes` as counters: read, write.
fn io_bytes(v: &types::io_bytes) -> [u64; 2] {
    let types::io_bytes {
        read_bytes,
        write_bytes,
    } = *v;
    [read_bytes, write_bytes]
}

/// `struct page_counts` as counters, in `io_pagecache` field order.
fn page_counts(v: &types::page_counts) -> [u64; 4] {
    let types::page_counts {
        access_pagecache,
        mark_buffer_dirty,
        load_page_cache,
        mark_page_dirty,
    } = *v;
    [
        access_pagecache,
        mark_buffer_dirty,
        load_page_cache,
        mark_page_dirty,
    ]
}

// SAFETY: generated from the object's BTF: u64 fields only.
unsafe impl gala_ebpf::Pod for types::io_bytes {}
// SAFETY: as above.
unsafe impl gala_ebpf::Pod for types::page_counts {}
// SAFETY: integers only, the padding spelled out.
unsafe impl gala_ebpf::Pod for types::io_cfg {}
// SAFETY: two u32.
#[cfg(test)]
unsafe impl gala_ebpf::Pod for types::gala_ctl {}

impl Default for IoProbe {
    fn default() -> Self {
        Self::new()
    }
}

fn stage_values(s: &StageStats) -> [String; 5] {
    [
        s.max.to_string(),
        s.last.to_string(),
        s.sum.to_string(),
        s.jitter.to_string(),
        s.count.to_string(),
    ]
}

impl BpfProbe for IoProbe {
    const NAME: &'static str = NAME;

    fn subitems(&self) -> &'static [Subitem] {
        SUBITEMS
    }

    fn load(&mut self, plan: &Plan, config: &Config) -> Result<(), gala_ebpf::Error> {
        let setup = Setup::new(plan)
            .rings(&["io_events"])
            .ring_mb(config.params().ringbuf_map_size);
        self.skel = Some(Skeleton::load(
            IoSkelBuilder::default(),
            &setup,
            |_| Ok(()),
        )?);
        self.start_at_issue = !plan.has(IO_START.name);
        self.write_cfg();
        Ok(())
    }

    fn unload(&mut self) {
        self.skel = None;
        self.bytes.reset();
        self.pages.reset();
        self.lost.reset();
    }

    fn object(&self) -> Option<&Object> {
        self.skel.as_ref().map(|s| s.object())
    }

    fn configure(&mut self, config: &Config, _pids: &BTreeSet<u32>) {
        let p = config.params();
        self.sample_ns = u64::from(p.sample_period) * 1_000_000;
        self.latency_thr = p.latency_thr;
        self.report_event = p.report_event;
        if self.dev_name != p.dev_name {
            self.dev_name = p.dev_name.clone();
            self.seen.clear();
        }
        self.rescan();
        if matches!(self.filter, Some(None)) {
            gala_ebpf::log(
                Level::Warn,
                NAME,
                &format!(
                    "dev_name {:?} is no block device here: nothing is reported",
                    self.dev_name
                ),
            );
        }
        self.write_cfg();
    }

    fn poll(&mut self) {
        let Some(ring) = self.skel.as_mut().and_then(|s| s.ring()) else {
            return;
        };
        let mut records = Vec::new();
        let mut bad = 0;
        ring.drain(|data| match parse(data) {
            Some(r) => records.push(r),
            None => bad += 1,
        });
        self.bad_records += bad;
        for r in records {
            match r {
                Record::Latency(l) => self.on_latency(&l),
                Record::Error(e) => self.on_error(&e),
            }
        }
    }

    fn report(&mut self, probe: &mut Probe, config: &Config, plan: &Plan) -> Result<(), EmitError> {
        self.rescan();
        let (raw_bytes, raw_pages) = match &self.skel {
            Some(skel) => (
                read_counters(&skel.maps.io_count, io_bytes),
                read_counters(&skel.maps.page_cache, page_counts),
            ),
            None => (Vec::new(), Vec::new()),
        };
        let bytes: Vec<_> = raw_bytes
            .into_iter()
            .map(|(k, v)| (k, self.bytes.delta(k, v)))
            .collect();
        let pages: Vec<_> = raw_pages
            .into_iter()
            .map(|(k, v)| (k, self.pages.delta(k, v)))
            .collect();
        let bytes = self.by_disk(bytes);
        let pages = self.by_disk(pages);
        // Drop disks that went away or that dev_name no longer selects.
        let seen: Vec<u32> = self.seen.iter().copied().collect();
        self.seen = seen
            .into_iter()
            .filter(|d| self.disk(*d).is_some())
            .collect();

        let trace = config.has_subitem("io_trace");
        let err = config.has_subitem("io_err");
        let count = config.has_subitem("io_count");
        let cache = config.has_subitem("page_cache");
        let empty = String::new;
        for &dev in &self.seen {
            let Some(disk) = self.devs.disk_of(dev) else {
                continue;
            };
            let (major, minor, name) = (disk.major, disk.first_minor, disk.name.as_str());
            if trace {
                let vals: Vec<String> = if plan.active("io_trace") {
                    let l = self.latency.get(&dev).copied().unwrap_or_default();
                    [l.req, l.driver, l.device]
                        .iter()
                        .flat_map(stage_values)
                        .collect()
                } else {
                    vec![empty(); 15]
                };
                let mut row: Vec<&dyn std::fmt::Display> = vec![&major, &minor, &name, &name];
                row.extend(vals.iter().map(|v| v as &dyn std::fmt::Display));
                probe.emit("io_latency", &row)?;
            }
            if err {
                let code = if plan.active("io_err") {
                    self.last_error.get(&dev).copied().unwrap_or(0).to_string()
                } else {
                    empty()
                };
                probe.emit("io_err", &[&major, &minor, &name, &name, &code])?;
            }
            if count {
                let [r, w] = if plan.active("io_count") {
                    bytes
                        .get(&dev)
                        .copied()
                        .unwrap_or([0; 2])
                        .map(|v| v.to_string())
                } else {
                    [empty(), empty()]
                };
                probe.emit("io_count", &[&major, &minor, &name, &name, &r, &w])?;
            }
            if cache {
                let p = pages.get(&dev).copied().unwrap_or([0; 4]);
                let field = |i: usize, need: &str| {
                    if plan.has_need("page_cache", need) {
                        p[i].to_string()
                    } else {
                        empty()
                    }
                };
                let (a, b, c, d) = (
                    field(0, NEED_ACCESS),
                    field(1, NEED_BUFFER_DIRTY),
                    field(2, NEED_LOAD),
                    field(3, NEED_PAGE_DIRTY),
                );
                probe.emit(
                    "io_pagecache",
                    &[&major, &minor, &name, &name, &a, &b, &c, &d],
                )?;
            }
        }
        for e in std::mem::take(&mut self.events).into_values() {
            let id = e.disk.entity_id();
            let message = if e.more > 0 {
                format!("{} ({} more in this period)", e.message, e.more)
            } else {
                e.message
            };
            let ev = Event::new(ENTITY, &id, e.metric, Severity::Warn, &message)
                .pid(e.pid)
                .comm(&e.comm)
                .device(&e.disk.name);
            if let Err(err) = probe.event(&ev) {
                gala_ebpf::log(Level::Warn, NAME, &format!("an event was refused: {err}"));
            }
        }
        for text in self.lost_records() {
            gala_ebpf::log(Level::Warn, NAME, &text);
        }
        let stale = self.drop_stale_requests();
        if stale > 0 {
            gala_ebpf::log(
                Level::Info,
                NAME,
                &format!("{stale} sampled requests never completed (merged); dropped"),
            );
        }
        if self.bad_records > 0 {
            gala_ebpf::log(
                Level::Warn,
                NAME,
                &format!("{} malformed ring buffer records ignored", self.bad_records),
            );
            self.bad_records = 0;
        }
        self.latency.clear();
        self.last_error.clear();
        Ok(())
    }
}

impl IoProbe {
    /// Writes `struct io_cfg` (sampling interval, where requests start) into its map.
    fn write_cfg(&self) {
        let Some(skel) = &self.skel else { return };
        let key = 0u32.to_ne_bytes();
        let value = types::io_cfg {
            sample_ns: self.sample_ns,
            start_at_issue: self.start_at_issue.into(),
            pad: 0,
        };
        let value = gala_ebpf::bytes_of(&value);
        if let Err(e) = skel.maps.io_cfg.update(&key, value, MapFlags::ANY) {
            gala_ebpf::log(Level::Warn, NAME, &format!("writing io_cfg: {e}"));
        }
    }
}

/// How old an `io_trace` entry gets before it counts as a request that never completes.
const STALE_NS: u64 = 60_000_000_000;

/// The keys of `entries` (key, start time) that started more than `max_age` ns before `now`.
fn stale_keys(
    entries: impl Iterator<Item = (Vec<u8>, u64)>,
    now: u64,
    max_age: u64,
) -> Vec<Vec<u8>> {
    entries
        .filter(|(_, start)| now.saturating_sub(*start) > max_age)
        .map(|(key, _)| key)
        .collect()
}

/// CLOCK_MONOTONIC in ns, the clock of `bpf_ktime_get_ns`.
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The log line for sampled requests the table of requests in flight had no room for.
fn no_room_text(starts: u64) -> String {
    format!(
        "io_trace full: {starts} sampled requests not traced in this period \
         (io_latency misses them; raise sample_period)"
    )
}

/// The log line for records the ring buffer had no room for.
fn lost_text(latency: u64, errors: u64) -> String {
    format!(
        "ring buffer full: {latency} latency and {errors} error records lost in this period \
         (io_latency and io_err miss them; raise ringbuf_map_size or sample_period)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_ebpf::{Hook, KernelModel as Model};
    use libbpf_rs::skel::{OpenSkel, SkelBuilder};

    #[test]
    fn every_planned_program_is_in_the_object_on_its_hook() {
        let problems = gala_ebpf::check_skeleton(IoSkelBuilder::default(), SUBITEMS);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_snooper_control_block_is_laid_out_from_btf() {
        let mut slot = std::mem::MaybeUninit::uninit();
        let open = IoSkelBuilder::default().open(&mut slot).unwrap();
        let value = gala_ebpf::snoop::ctl_value(open.open_object(), 1, 4242).unwrap();
        let want = types::gala_ctl {
            mode: 1,
            self_tgid: 4242,
        };
        assert_eq!(value, gala_ebpf::bytes_of(&want));
    }

    #[test]
    fn a_planned_program_missing_from_the_object_is_an_error() {
        const TYPO: &[Subitem] = &[Subitem {
            name: "io_trace",
            needs: &[Need {
                what: "request issue",
                variants: &[&[Prog::tp_btf("io_isue", "block_rq_issue")]],
            }],
        }];
        let plan = Plan::choose(TYPO, |_| true, |_| true);
        let mut slot = std::mem::MaybeUninit::uninit();
        let mut open = IoSkelBuilder::default().open(&mut slot).unwrap();
        let err = plan.apply(open.open_object_mut()).unwrap_err();
        assert!(
            matches!(&err, gala_ebpf::Error::NoSuchProgram(n) if n == "io_isue"),
            "{err}"
        );
    }

    #[test]
    fn lost_records_say_what_is_missing_and_what_to_change() {
        let t = lost_text(12, 1);
        assert!(t.contains("12 latency and 1 error records lost"), "{t}");
        assert!(t.contains("ringbuf_map_size"), "{t}");
        let t = no_room_text(3);
        assert!(t.contains("io_trace full: 3 sampled requests"), "{t}");
    }

    #[test]
    fn only_requests_older_than_the_limit_are_stale() {
        let entries = vec![
            (vec![1], 1_000),
            (vec![2], 50_000),
            (vec![3], 90_000),
            // Started after `now` was read: not stale.
            (vec![4], 200_000),
        ];
        assert_eq!(
            stale_keys(entries.into_iter(), 100_000, 40_000),
            [vec![1], vec![2]]
        );
        assert!(monotonic_ns() > 0);
    }

    /// Tracepoints available, fentry/kprobes not (this machine), minus `missing`.
    fn plan_without(missing: &[&str]) -> Plan {
        Plan::choose(
            SUBITEMS,
            |_| true,
            |h| match h {
                Hook::TpBtf(t) => !missing.contains(t),
                _ => false,
            },
        )
    }

    #[test]
    fn tracepoints_first_fentry_never_on_this_kernel() {
        let plan = plan_without(&[]);
        for item in ["io_trace", "io_err", "io_count", "page_cache"] {
            assert!(plan.active(item), "{item}");
        }
        assert!(plan.has("io_start") && plan.has("io_error") && plan.has("pc_get_pages"));
        assert!(!plan.has("io_error_complete") && !plan.has("pc_mark_accessed"));
        assert!(plan.notes.is_empty(), "{:?}", plan.notes);
    }

    #[test]
    fn older_kernels_fall_back_or_degrade_per_field() {
        // No block_io_start: requests start at issue; no block_rq_error: errors from
        // completions.
        let plan = plan_without(&["block_io_start", "block_rq_error"]);
        assert!(plan.active("io_trace") && !plan.has("io_start"));
        assert!(plan.active("io_err") && plan.has("io_error_complete"));
        // No mm_filemap_get_pages and no fentry: only access_pagecache stays empty.
        let plan = plan_without(&["mm_filemap_get_pages"]);
        assert!(!plan.active("page_cache"));
        assert!(!plan.has_need("page_cache", NEED_ACCESS));
        for need in [NEED_BUFFER_DIRTY, NEED_LOAD, NEED_PAGE_DIRTY] {
            assert!(plan.has_need("page_cache", need), "{need}");
        }
        assert!(plan.has("pc_add") && !plan.has("pc_fault"));
        assert_eq!(plan.notes.len(), 1);
    }

    /// The kernels of the matrix as their BTF has them: Debian's 5.10.223 and 6.1.176, and
    /// this host's 6.18.
    const K5_10: Model = Model {
        missing_tracepoints: &[
            "block_io_start",
            "block_rq_error",
            "mm_filemap_get_pages",
            "mm_filemap_fault",
            "writeback_dirty_folio",
        ],
        missing_features: &[],
        functions: Some(&["mark_page_accessed"]),
        fentry: true,
        kprobes: true,
    };

    const K6_1: Model = Model {
        missing_tracepoints: &[
            "block_io_start",
            "mm_filemap_get_pages",
            "mm_filemap_fault",
            "writeback_dirty_page",
        ],
        missing_features: &[],
        functions: Some(&["folio_mark_accessed", "mark_page_accessed"]),
        fentry: true,
        kprobes: true,
    };

    const K6_18: Model = Model {
        missing_tracepoints: &["writeback_dirty_page"],
        missing_features: &[],
        functions: Some(&["folio_mark_accessed", "mark_page_accessed"]),
        fentry: false,
        kprobes: false,
    };

    #[test]
    fn every_field_has_a_hook_on_5_10_6_1_and_6_18() {
        for k in [&K5_10, &K6_1, &K6_18] {
            let plan = k.plan(SUBITEMS);
            assert!(plan.notes.is_empty(), "{:?}", plan.notes);
            for item in ["io_trace", "io_err", "io_count", "page_cache"] {
                assert!(plan.active(item), "{item}");
            }
        }
    }

    #[test]
    fn each_kernel_gets_its_own_hooks() {
        let on = |k: &Model| {
            let plan = k.plan(SUBITEMS);
            let mut progs: Vec<&str> = plan.hooks().iter().map(|(p, _)| *p).collect();
            progs.sort_unstable();
            progs
        };
        assert_eq!(
            on(&K6_18),
            [
                "io_bio_queue",
                "io_complete",
                "io_error",
                "io_issue",
                "io_start",
                "pc_add",
                "pc_dirty_buffer",
                "pc_dirty_folio",
                "pc_fault",
                "pc_get_pages"
            ]
        );
        assert_eq!(
            on(&K6_1),
            [
                "io_bio_queue",
                "io_complete",
                "io_error",
                "io_issue",
                "pc_add",
                "pc_dirty_buffer",
                "pc_dirty_folio",
                "pc_mark_accessed"
            ]
        );
        assert_eq!(
            on(&K5_10),
            [
                "io_bio_queue",
                "io_complete",
                "io_error_complete",
                "io_issue",
                "pc_add",
                "pc_dirty_buffer",
                "pc_dirty_page",
                "pc_page_accessed"
            ]
        );
        // fentry refused: kprobes.
        let plan = Model {
            fentry: false,
            ..K5_10
        }
        .plan(SUBITEMS);
        assert!(plan.has("pc_page_accessed_kp") && !plan.has("pc_page_accessed"));
        let plan = Model {
            fentry: false,
            ..K6_1
        }
        .plan(SUBITEMS);
        assert!(plan.has("pc_mark_accessed_kp") && !plan.has("pc_page_accessed_kp"));
    }
}
