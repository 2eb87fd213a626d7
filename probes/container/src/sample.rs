//! One container's values, read from its cgroup directories and from `/proc/<pid>` of its
//! processes, and their record lines (one per table). A file that cannot be read leaves its
//! fields empty and becomes a warning; the other fields are still read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gala_cgroup::abbreviate_container_id;

use crate::error::Error;
use crate::host::Host;
use crate::membership::Membership;
use crate::parse::{self, NetTotals};

/// The tables, in meta file order.
pub const TABLES: [&str; 7] = [
    "container_cpu",
    "container_fs",
    "container_memory",
    "container_network",
    "container_oom",
    "container_start",
    "container_file",
];

/// One record line: table and values after the key, `None` for an empty field.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The table.
    pub table: &'static str,
    /// The key (`container_id`, 12 hex) then the fields in meta order, as text; empty = null.
    pub values: Vec<String>,
}

/// CPU times, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    /// Total.
    pub usage: Option<f64>,
    /// User.
    pub user: Option<f64>,
    /// System.
    pub system: Option<f64>,
    /// Throttled by CFS bandwidth control.
    pub throttled: Option<f64>,
}

/// Memory, bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Page cache (`cache` / v2 `file`).
    pub cache: Option<u64>,
    /// Mapped files (`mapped_file` / v2 `file_mapped`).
    pub mapped_file: Option<u64>,
    /// Anonymous memory (`rss` / v2 `anon`).
    pub rss: Option<u64>,
    /// Usage (`memory.usage_in_bytes` / `memory.current`).
    pub usage: Option<u64>,
    /// Usage less inactive file pages.
    pub working_set: Option<u64>,
    /// OOM kills (`oom_kill` of `memory.oom_control` / `memory.events`).
    pub oom_kills: Option<u64>,
}

/// Block I/O and the root filesystem's inodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fs {
    /// Free inodes of the container's root filesystem.
    pub inodes_free: Option<u64>,
    /// Inodes of the container's root filesystem.
    pub inodes_total: Option<u64>,
    /// Bytes read from block devices.
    pub read_bytes: Option<u64>,
    /// Bytes written to block devices.
    pub write_bytes: Option<u64>,
}

/// Everything read of one container in one cycle.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    /// Abbreviated id (12 hex).
    pub id: String,
    /// CPU.
    pub cpu: Cpu,
    /// Memory.
    pub memory: Memory,
    /// Block I/O and inodes.
    pub fs: Fs,
    /// Network of the container's network namespace, loopback excluded.
    pub net: Option<NetTotals>,
    /// Start time, seconds since the epoch.
    pub start_time: Option<f64>,
    /// Open file descriptors of all its processes.
    pub fds: Option<u64>,
}

/// Where a container is and what is remembered of it between cycles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    /// A process of the container (the one its membership was read from).
    pub pid: u32,
    /// Its cgroup paths.
    pub membership: Membership,
    /// Its first process and that process's start time in clock ticks since boot.
    pub init: Option<(u32, u64)>,
    /// Its processes at the last cycle.
    pub pids: BTreeSet<u32>,
}

/// Collects warnings of one container: `(key, message)`.
pub type Warnings = Vec<(String, String)>;

/// Reads `path`, or records why not.
fn read(path: &Path, warnings: &mut Warnings) -> Option<String> {
    match crate::file::read_text(path) {
        Ok(text) => Some(text),
        Err(source) => {
            let message = Error::Read {
                path: path.to_path_buf(),
                source,
            }
            .to_string();
            warnings.push((path.display().to_string(), message));
            None
        }
    }
}

fn unexpected(path: &Path, warnings: &mut Warnings) {
    let message = Error::Parse {
        path: path.to_path_buf(),
    }
    .to_string();
    warnings.push((path.display().to_string(), message));
}

/// Reads one number from `dir/name`.
fn number(dir: &Path, name: &str, warnings: &mut Warnings) -> Option<u64> {
    let path = dir.join(name);
    let v = parse::single_u64(&read(&path, warnings)?);
    if v.is_none() {
        unexpected(&path, warnings);
    }
    v
}

/// Reads `keys` from the flat-keyed file `dir/name`.
fn keyed<const N: usize>(
    dir: &Path,
    name: &str,
    keys: [&str; N],
    warnings: &mut Warnings,
) -> [Option<u64>; N] {
    let path = dir.join(name);
    match read(&path, warnings) {
        Some(text) => parse::flat_keyed(&text, keys),
        None => [None; N],
    }
}

fn ns_to_s(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64 / 1e9)
}

fn us_to_s(v: Option<u64>) -> Option<f64> {
    v.map(|v| v as f64 / 1e6)
}

/// The directory of `controller`, or a warning that there is none.
fn dir_of(
    host: &Host,
    m: &Membership,
    controller: &str,
    warnings: &mut Warnings,
) -> Option<PathBuf> {
    let dir = m.dir(&host.mounts, controller);
    if dir.is_none() {
        warnings.push((
            format!("dir:{controller}"),
            format!(
                "no {controller} cgroup directory for the container (not in a mounted hierarchy)"
            ),
        ));
    }
    dir
}

/// CPU times.
pub fn read_cpu(host: &Host, m: &Membership, warnings: &mut Warnings) -> Cpu {
    if Membership::is_v1(&host.mounts, "cpuacct") {
        let mut cpu = Cpu::default();
        if let Some(dir) = dir_of(host, m, "cpuacct", warnings) {
            cpu.usage = ns_to_s(number(&dir, "cpuacct.usage", warnings));
            let [user, system] = keyed(&dir, "cpuacct.stat", ["user", "system"], warnings);
            let tck = host.clk_tck as f64;
            cpu.user = user.map(|t| t as f64 / tck);
            cpu.system = system.map(|t| t as f64 / tck);
        }
        if let Some(dir) = dir_of(host, m, "cpu", warnings) {
            let [throttled] = keyed(&dir, "cpu.stat", ["throttled_time"], warnings);
            cpu.throttled = ns_to_s(throttled);
        }
        return cpu;
    }
    let Some(dir) = dir_of(host, m, "cpu", warnings) else {
        return Cpu::default();
    };
    let [usage, user, system, throttled] = keyed(
        &dir,
        "cpu.stat",
        ["usage_usec", "user_usec", "system_usec", "throttled_usec"],
        warnings,
    );
    Cpu {
        usage: us_to_s(usage),
        user: us_to_s(user),
        system: us_to_s(system),
        throttled: us_to_s(throttled),
    }
}

/// Memory and OOM kills.
pub fn read_memory(host: &Host, m: &Membership, warnings: &mut Warnings) -> Memory {
    let Some(dir) = dir_of(host, m, "memory", warnings) else {
        return Memory::default();
    };
    let v1 = Membership::is_v1(&host.mounts, "memory");
    let (usage_file, keys, events) = if v1 {
        (
            "memory.usage_in_bytes",
            ["cache", "mapped_file", "rss", "total_inactive_file"],
            "memory.oom_control",
        )
    } else {
        (
            "memory.current",
            ["file", "file_mapped", "anon", "inactive_file"],
            "memory.events",
        )
    };
    let usage = number(&dir, usage_file, warnings);
    let [cache, mapped_file, rss, inactive_file] = keyed(&dir, "memory.stat", keys, warnings);
    let [oom_kills] = keyed(&dir, events, ["oom_kill"], warnings);
    // cAdvisor's working set: usage less the inactive file pages, never below zero.
    let working_set = usage.map(|u| u.saturating_sub(inactive_file.unwrap_or(0)));
    Memory {
        cache,
        mapped_file,
        rss,
        usage,
        working_set,
        oom_kills,
    }
}

/// v1 blkio byte files, best first: the throttle files count every bio, the others only
/// those of the CFQ/BFQ schedulers.
const BLKIO_FILES: [&str; 4] = [
    "blkio.throttle.io_service_bytes_recursive",
    "blkio.throttle.io_service_bytes",
    "blkio.io_service_bytes_recursive",
    "blkio.io_service_bytes",
];

/// Bytes read and written.
pub fn read_io(host: &Host, m: &Membership, warnings: &mut Warnings) -> (Option<u64>, Option<u64>) {
    let v1 = Membership::is_v1(&host.mounts, "blkio");
    let Some(dir) = dir_of(host, m, if v1 { "blkio" } else { "io" }, warnings) else {
        return (None, None);
    };
    if v1 {
        for name in BLKIO_FILES {
            if let Ok(text) = crate::file::read_text(&dir.join(name)) {
                let (r, w) = parse::blkio_bytes(&text);
                return (Some(r), Some(w));
            }
        }
        warnings.push((
            format!("{}/blkio", dir.display()),
            format!(
                "{}: none of {} is readable",
                dir.display(),
                BLKIO_FILES.join(", ")
            ),
        ));
        return (None, None);
    }
    match read(&dir.join("io.stat"), warnings) {
        Some(text) => {
            let (r, w) = parse::io_stat_bytes(&text);
            (Some(r), Some(w))
        }
        None => (None, None),
    }
}

/// The container's processes: `cgroup.procs` of its directory and of every sub-cgroup, read in
/// the unified hierarchy if it holds the container, else in the first v1 hierarchy that does.
/// `Err` with the error of the container's own `cgroup.procs` (`NotFound` once it is removed).
pub fn read_pids(host: &Host, m: &Membership) -> std::io::Result<BTreeSet<u32>> {
    let dir = m.unified_dir(&host.mounts).or_else(|| {
        ["memory", "cpu", "cpuacct", "pids"]
            .iter()
            .find_map(|c| host.mounts.v1(c).and_then(|_| m.dir(&host.mounts, c)))
    });
    let Some(dir) = dir else {
        return Err(std::io::Error::other(
            "no cgroup directory of the container to list its processes",
        ));
    };
    let mut pids = BTreeSet::new();
    let mut pending = vec![dir];
    let mut first = true;
    while let Some(d) = pending.pop() {
        let text = if first {
            crate::file::read_text(&d.join("cgroup.procs"))?
        } else {
            // A sub-cgroup that vanished in between has no processes.
            crate::file::read_text(&d.join("cgroup.procs")).unwrap_or_default()
        };
        first = false;
        pids.extend(parse::procs(&text));
        if let Ok(entries) = std::fs::read_dir(&d) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    pending.push(e.path());
                }
            }
        }
    }
    Ok(pids)
}

/// Open descriptors of `pids` (a process that exits meanwhile counts nothing).
pub fn count_fds(host: &Host, pids: &BTreeSet<u32>) -> u64 {
    pids.iter()
        .filter_map(|&pid| std::fs::read_dir(host.proc_file(pid, "fd")).ok())
        .map(|d| d.count() as u64)
        .sum()
}

/// Start time of `pid`, clock ticks since boot.
pub fn start_ticks(host: &Host, pid: u32) -> Option<u64> {
    let text = crate::file::read_text(&host.proc_file(pid, "stat")).ok()?;
    parse::stat_start_ticks(&text)
}

/// The container's first process: the earliest started of `pids`, or the remembered one if it
/// is still among them.
pub fn first_process(
    host: &Host,
    known: Option<(u32, u64)>,
    pids: &BTreeSet<u32>,
) -> Option<(u32, u64)> {
    if let Some((pid, ticks)) = known {
        if pids.contains(&pid) {
            return Some((pid, ticks));
        }
    }
    pids.iter()
        .filter_map(|&pid| Some((pid, start_ticks(host, pid)?)))
        .min_by_key(|&(pid, ticks)| (ticks, pid))
}

/// Inodes of the filesystem at `/proc/<pid>/root`.
pub fn read_inodes(host: &Host, pid: u32, warnings: &mut Warnings) -> (Option<u64>, Option<u64>) {
    let path = host.proc_file(pid, "root");
    match nix::sys::statvfs::statvfs(&path) {
        Ok(s) => (Some(s.files_free()), Some(s.files())),
        Err(e) => {
            warnings.push((
                "statvfs:root".into(),
                format!("statvfs {}: {e}", path.display()),
            ));
            (None, None)
        }
    }
}

/// Network totals of the namespace of `pid`.
pub fn read_net(host: &Host, pid: u32, warnings: &mut Warnings) -> Option<NetTotals> {
    let path = host.proc_file(pid, "net/dev");
    let text = read(&path, warnings)?;
    let totals = parse::net_dev(&text);
    if totals.is_none() {
        unexpected(&path, warnings);
    }
    totals
}

/// Reads everything of one container and updates what is remembered of it; `None` when the
/// container has ended (its cgroup is gone or empty, or its process has left it).
pub fn sample(host: &Host, t: &mut Tracked, warnings: &mut Warnings) -> Option<Sample> {
    let mut fds = None;
    match read_pids(host, &t.membership) {
        Ok(pids) => {
            let first = *pids.first()?;
            if !pids.contains(&t.pid) {
                t.pid = first;
            }
            fds = Some(count_fds(host, &pids));
            t.init = first_process(host, t.init, &pids);
            t.pids = pids;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            // Its processes cannot be listed: it runs while the process it was found by does.
            let still = crate::collector::membership_of(host, t.pid)
                .is_some_and(|m| m.container_id == t.membership.container_id);
            if !still {
                return None;
            }
            warnings.push((
                "procs".into(),
                format!("its processes cannot be listed: {e}"),
            ));
        }
    }
    let m = &t.membership;
    let cpu = read_cpu(host, m, warnings);
    let memory = read_memory(host, m, warnings);
    let (read_bytes, write_bytes) = read_io(host, m, warnings);
    // The first process stands for the container (its root and network namespace); the one
    // the container was found by when its processes could not be listed.
    let pid = t.init.map_or(t.pid, |(pid, _)| pid);
    let (inodes_free, inodes_total) = read_inodes(host, pid, warnings);
    let net = read_net(host, pid, warnings);
    let start_time = match (t.init, host.btime) {
        (Some((_, ticks)), Some(btime)) => Some(btime as f64 + ticks as f64 / host.clk_tck as f64),
        _ => None,
    };
    Some(Sample {
        id: abbreviate_container_id(&m.container_id),
        cpu,
        memory,
        fs: Fs {
            inodes_free,
            inodes_total,
            read_bytes,
            write_bytes,
        },
        net,
        start_time,
        fds,
    })
}

fn text<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

impl Sample {
    /// The record lines of this sample: one per table, left out when every field of the
    /// table is empty.
    pub fn records(&self) -> Vec<Record> {
        let none: Option<u64> = None;
        let net = self.net;
        let tables: [(&'static str, Vec<String>); 7] = [
            (
                TABLES[0],
                vec![
                    // cAdvisor reads the load average only with --enable_load_reader: see the README.
                    text(none),
                    text(self.cpu.system),
                    text(self.cpu.usage),
                    text(self.cpu.user),
                    text(self.cpu.throttled),
                ],
            ),
            (
                TABLES[1],
                vec![
                    text(self.fs.inodes_free),
                    text(self.fs.inodes_total),
                    // No per-cgroup source of I/O time on current kernels: see the README.
                    text(none),
                    text(none),
                    text(self.fs.read_bytes),
                    text(self.fs.write_bytes),
                ],
            ),
            (
                TABLES[2],
                vec![
                    text(self.memory.cache),
                    text(self.memory.mapped_file),
                    text(self.memory.rss),
                    text(self.memory.usage),
                    text(self.memory.working_set),
                ],
            ),
            (
                TABLES[3],
                vec![
                    text(net.map(|n| n.rx_bytes)),
                    text(net.map(|n| n.rx_errors)),
                    text(net.map(|n| n.rx_dropped)),
                    text(net.map(|n| n.tx_bytes)),
                    text(net.map(|n| n.tx_errors)),
                    text(net.map(|n| n.tx_dropped)),
                ],
            ),
            (TABLES[4], vec![text(self.memory.oom_kills)]),
            (TABLES[5], vec![text(self.start_time)]),
            (TABLES[6], vec![text(self.fds)]),
        ];
        tables
            .into_iter()
            .filter(|(_, fields)| fields.iter().any(|f| !f.is_empty()))
            .map(|(table, fields)| {
                let mut values = Vec::with_capacity(fields.len() + 1);
                values.push(self.id.clone());
                values.extend(fields);
                Record { table, values }
            })
            .collect()
    }
}
