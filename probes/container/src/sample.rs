//! One container's values, read from its cgroup directories ([`crate::cgroupfs`]) and from
//! `/proc/<pid>` of its processes ([`crate::procfs`]), and their record lines (one per table).
//! A file that cannot be read leaves its fields empty and becomes a warning; the other fields
//! are still read.

use std::collections::BTreeSet;

use gala_cgroup::abbreviate_container_id;

use crate::cgroupfs::{read_cpu, read_io, read_memory, read_pids, Cpu, Memory};
use crate::file::Warnings;
use crate::host::Host;
use crate::membership::Membership;
use crate::parse::NetTotals;
use crate::procfs::{count_fds, first_process, read_inodes, read_net};

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
            let still = host
                .membership(t.pid)
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
