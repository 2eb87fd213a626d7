//! One process's figures for a report period as the BPF side aggregates them, and the
//! step from one period to the next: the processes active in the period are reported, and a
//! process active in the previous period but idle in this one gets one zero record (so a
//! gauge does not keep showing the last busy period's value until the daemon expires it).

use std::collections::{BTreeMap, BTreeSet};

use gala_ebpf::Pod;

use crate::skel::types;

/// File systems of the `fs_ns` rows (`enum fs_kind` of `taskprobe.bpf.c`).
pub const FS_EXT4: usize = types::fs_kind::FS_EXT4.0 as usize;
/// overlayfs row.
pub const FS_OVERLAY: usize = types::fs_kind::FS_OVERLAY.0 as usize;
/// tmpfs row.
pub const FS_TMPFS: usize = types::fs_kind::FS_TMPFS.0 as usize;
/// Columns of an `fs_ns` row (`enum fs_op`).
pub const FS_OP_READ: usize = types::fs_op::FS_OP_READ.0 as usize;
/// write column.
pub const FS_OP_WRITE: usize = types::fs_op::FS_OP_WRITE.0 as usize;
/// open column.
pub const FS_OP_OPEN: usize = types::fs_op::FS_OP_OPEN.0 as usize;
/// flush (fsync) column.
pub const FS_OP_FLUSH: usize = types::fs_op::FS_OP_FLUSH.0 as usize;

/// `struct proc_stats` of `taskprobe.bpf.c`, as the skeleton generated it: counters and
/// maxima of one tgid — failed syscalls and the last one, the longest call per syscall
/// class (`ns`, indexed by `syscalls::Class`) and per file system and operation (`fs_ns`),
/// the slowest ioctl, page-cache and bio counts, off-CPU time, CPython collections.
pub type ProcStats = types::proc_stats;

// SAFETY: generated from the object's BTF: 8-byte integers and arrays of them only.
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

    /// Whether two records hold the same figures.
    fn same(a: &ProcStats, b: &ProcStats) -> bool {
        gala_ebpf::bytes_of(a) == gala_ebpf::bytes_of(b)
    }

    #[test]
    fn records_read_from_map_bytes() {
        let mut raw = vec![0u8; std::mem::size_of::<ProcStats>()];
        let mut put = |at: usize, v: u64| raw[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        put(std::mem::offset_of!(ProcStats, syscall_failed), 7);
        put(std::mem::offset_of!(ProcStats, gc_ns_max), 9);
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
        assert!(same(&out[&10], &ProcStats::default()));
        assert!(same(&out[&11], &busy));
        let out = p.next(BTreeMap::new());
        assert_eq!(out.keys().copied().collect::<Vec<_>>(), vec![11]);
        assert!(p.next(BTreeMap::new()).is_empty());
    }
}
