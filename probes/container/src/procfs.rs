//! The process side of a container, from `/proc/<pid>`: open descriptors, the first process
//! and its start time, the root filesystem's inodes and the network namespace's counters.

use std::collections::BTreeSet;

use crate::file::{read, unexpected, Warnings};
use crate::host::Host;
use crate::parse::{self, NetTotals};

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
