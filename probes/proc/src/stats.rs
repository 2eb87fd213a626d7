//! One process's figures for a report period as the BPF side aggregates them, and the
//! step from one period to the next: the processes active in the period are reported, and a
//! process active in the previous period but idle in this one gets one zero record (so a
//! gauge does not keep showing the last busy period's value until the daemon expires it).

use std::collections::{BTreeMap, BTreeSet};

use gala_ebpf::Pod;

use crate::syscalls::SLOTS;

/// File systems of the `fs_ns` rows (keep in step with `FS_*` in `taskprobe.bpf.c`).
pub const FS_EXT4: usize = 1;
/// overlayfs row.
pub const FS_OVERLAY: usize = 2;
/// tmpfs row.
pub const FS_TMPFS: usize = 3;
/// Columns of an `fs_ns` row.
pub const FS_OP_READ: usize = 0;
/// write column.
pub const FS_OP_WRITE: usize = 1;
/// open column.
pub const FS_OP_OPEN: usize = 2;
/// flush (fsync) column.
pub const FS_OP_FLUSH: usize = 3;

/// `struct proc_stats` of `taskprobe.bpf.c`: counters and maxima of one tgid.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStats {
    /// Syscalls that returned an error.
    pub syscall_failed: u64,
    /// Number of the last failed syscall.
    pub last_failed_nr: i64,
    /// Its return value.
    pub last_failed_ret: i64,
    /// Longest call per syscall class (`syscalls::Class` as index), ns.
    pub ns: [u64; SLOTS],
    /// Longest call per file system and operation, ns.
    pub fs_ns: [[u64; 4]; 4],
    /// cmd of the longest ioctl.
    pub ioctl_cmd: u64,
    /// fd of the longest ioctl.
    pub ioctl_fd: i64,
    /// Time in direct reclaim, ns.
    pub reclaim_ns: u64,
    /// Page-cache pages looked up.
    pub access_pagecache: u64,
    /// Buffers marked dirty.
    pub mark_buffer_dirty: u64,
    /// Pages added to the page cache.
    pub load_page_cache: u64,
    /// Page-cache pages marked dirty.
    pub mark_page_dirty: u64,
    /// Read bios of at most 4 KiB.
    pub less_4k_io_read: u64,
    /// Write bios of at most 4 KiB.
    pub less_4k_io_write: u64,
    /// Read bios above 4 KiB.
    pub greater_4k_io_read: u64,
    /// Write bios above 4 KiB.
    pub greater_4k_io_write: u64,
    /// Longest bio, ns.
    pub bio_latency: u64,
    /// Bios completed with an error.
    pub bio_err_count: u64,
    /// Hung-task reports.
    pub hang_count: u64,
    /// Off-CPU time waiting for I/O, ns.
    pub iowait_ns: u64,
    /// Off-CPU time, ns.
    pub offcpu_ns: u64,
    /// CPython garbage collections that ended in the period.
    pub python_gc: u64,
    /// Their total duration, ns.
    pub gc_ns_sum: u64,
    /// The longest, ns.
    pub gc_ns_max: u64,
}

// SAFETY: only integers and arrays of integers, no padding (all 8-byte fields).
unsafe impl Pod for ProcStats {}

/// The processes reported in the previous period, to give each one zero record once it
/// goes idle.
#[derive(Debug, Default)]
pub struct Periods {
    previous: BTreeSet<u32>,
}

impl Periods {
    /// What to report for the period that ends now, given what the BPF side aggregated:
    /// every active process, and a zero record for each process active last time only.
    pub fn next(&mut self, active: BTreeMap<u32, ProcStats>) -> BTreeMap<u32, ProcStats> {
        let mut out = active;
        let now: BTreeSet<u32> = out.keys().copied().collect();
        for gone in self.previous.difference(&now) {
            out.insert(*gone, ProcStats::default());
        }
        self.previous = now;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_bpf_struct() {
        // The struct the skeleton generated from the object's BTF.
        assert_eq!(
            std::mem::size_of::<ProcStats>(),
            std::mem::size_of::<crate::skel::types::proc_stats>()
        );
        assert_eq!(
            std::mem::size_of::<ProcStats>(),
            (3 + SLOTS + 16 + 2 + 17) * 8
        );
        let mut raw = vec![0u8; std::mem::size_of::<ProcStats>()];
        raw[0] = 7;
        let last = raw.len() - 8;
        raw[last] = 9;
        let s: ProcStats = gala_ebpf::read_pod(&raw).unwrap();
        assert_eq!((s.syscall_failed, s.gc_ns_max), (7, 9));
        assert!(gala_ebpf::read_pod::<ProcStats>(&raw[1..]).is_none());
    }

    #[test]
    fn an_idle_process_gets_one_zero_record() {
        let mut p = Periods::default();
        let busy = ProcStats {
            syscall_failed: 3,
            ..Default::default()
        };
        let out = p.next(BTreeMap::from([(10, busy), (11, busy)]));
        assert_eq!(out.len(), 2);
        let out = p.next(BTreeMap::from([(11, busy)]));
        assert_eq!(out[&10], ProcStats::default());
        assert_eq!(out[&11], busy);
        let out = p.next(BTreeMap::new());
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![11]);
        assert!(p.next(BTreeMap::new()).is_empty());
    }
}
