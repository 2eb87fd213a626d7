//! The records of `taskprobe.meta` for one process and period: which tables are printed (those
//! of the active sub-items) and which fields stay empty (a need the kernel gives no hook
//! for; the daemon drops empty metrics).

use crate::ioctl;
use crate::stats::{
    ProcStats, FS_EXT4, FS_OP_FLUSH, FS_OP_OPEN, FS_OP_READ, FS_OP_WRITE, FS_OVERLAY, FS_TMPFS,
};
use crate::syscalls::Class;

/// What is live, from the load plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enabled {
    /// proc_syscall: failures, sched and fork latency.
    pub syscall: bool,
    /// proc_io: I/O syscall latency.
    pub io_syscalls: bool,
    /// proc_io: bio sizes, latency, errors.
    pub bio: bool,
    /// proc_io: hung tasks.
    pub hang: bool,
    /// proc_fs.
    pub fs: bool,
    /// proc_net.
    pub net: bool,
    /// proc_ioctl.
    pub ioctl: bool,
    /// proc_offcpu.
    pub offcpu: bool,
    /// proc_pagecache: direct reclaim.
    pub reclaim: bool,
    /// proc_pagecache: page-cache lookups.
    pub page_lookups: bool,
    /// proc_pagecache: dirty buffers.
    pub dirty_buffers: bool,
    /// proc_pagecache: pages added to the page cache.
    pub page_adds: bool,
    /// proc_pagecache: dirty pages.
    pub dirty_pages: bool,
    /// proc_pygc.
    pub pygc: bool,
}

impl Enabled {
    fn pagecache(&self) -> bool {
        self.reclaim
            || self.page_lookups
            || self.dirty_buffers
            || self.page_adds
            || self.dirty_pages
    }

    fn io(&self) -> bool {
        self.bio || self.hang
    }
}

/// One record: its table and values in meta order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Table name.
    pub table: &'static str,
    /// Values, key first.
    pub values: Vec<String>,
}

fn val(on: bool, v: u64) -> String {
    if on {
        v.to_string()
    } else {
        String::new()
    }
}

fn row(table: &'static str, tgid: u32, values: impl IntoIterator<Item = String>) -> Row {
    let mut all = vec![tgid.to_string()];
    all.extend(values);
    Row { table, values: all }
}

/// The records for process `tgid` with figures `s`.
pub fn rows(tgid: u32, s: &ProcStats, on: &Enabled) -> Vec<Row> {
    let ns = |c: Class| s.ns[c as usize].to_string();
    let mut out = Vec::new();
    if on.syscall {
        out.push(row("proc_syscall", tgid, [s.syscall_failed.to_string()]));
        out.push(row(
            "proc_syscall_sched",
            tgid,
            [
                Class::SchedYield,
                Class::Futex,
                Class::EpollWait,
                Class::EpollPwait,
            ]
            .map(ns),
        ));
        out.push(row(
            "proc_syscall_fork",
            tgid,
            [Class::Fork, Class::Vfork, Class::Clone].map(ns),
        ));
    }
    if on.io_syscalls {
        out.push(row(
            "proc_syscall_io",
            tgid,
            [
                Class::Mount,
                Class::Umount,
                Class::Read,
                Class::Write,
                Class::Fsync,
            ]
            .map(ns),
        ));
    }
    if on.net {
        out.push(row(
            "proc_syscall_net",
            tgid,
            [Class::Sendmsg, Class::Recvmsg].map(ns),
        ));
    }
    if on.fs {
        let fs = |kind: usize, ops: &[usize]| -> Vec<String> {
            ops.iter()
                .map(|op| s.fs_ns[kind][*op].to_string())
                .collect()
        };
        let all = [FS_OP_READ, FS_OP_WRITE, FS_OP_OPEN, FS_OP_FLUSH];
        out.push(row("proc_ext4", tgid, fs(FS_EXT4, &all)));
        out.push(row("proc_overlay", tgid, fs(FS_OVERLAY, &all)));
        out.push(row(
            "proc_tmpfs",
            tgid,
            fs(FS_TMPFS, &[FS_OP_READ, FS_OP_WRITE, FS_OP_FLUSH]),
        ));
    }
    if on.pagecache() {
        out.push(row(
            "proc_page",
            tgid,
            [
                val(on.reclaim, s.reclaim_ns),
                val(on.page_lookups, s.access_pagecache),
                val(on.dirty_buffers, s.mark_buffer_dirty),
                val(on.page_adds, s.load_page_cache),
                val(on.dirty_pages, s.mark_page_dirty),
            ],
        ));
    }
    if on.io() {
        out.push(row(
            "proc_io",
            tgid,
            [
                val(on.bio, s.less_4k_io_read),
                val(on.bio, s.less_4k_io_write),
                val(on.bio, s.greater_4k_io_read),
                val(on.bio, s.greater_4k_io_write),
                val(on.bio, s.bio_latency),
                val(on.bio, s.bio_err_count),
                val(on.hang, s.hang_count),
            ],
        ));
    }
    if on.offcpu {
        out.push(row(
            "proc_cpu",
            tgid,
            [s.iowait_ns.to_string(), s.offcpu_ns.to_string()],
        ));
    }
    if on.pygc {
        out.push(row(
            "proc_pygc",
            tgid,
            [s.python_gc, s.gc_ns_sum, s.gc_ns_max].map(|v| v.to_string()),
        ));
    }
    // The labels describe the period's longest ioctl: none, no record.
    let ns_ioctl = s.ns[Class::Ioctl as usize];
    if on.ioctl && ns_ioctl > 0 {
        let cmd = ioctl::decode(s.ioctl_cmd);
        out.push(row(
            "proc_syscall_ioctl",
            tgid,
            [
                s.ioctl_fd.to_string(),
                cmd.dir.to_owned(),
                cmd.kind,
                cmd.nr.to_string(),
                cmd.size.to_string(),
                ns_ioctl.to_string(),
            ],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gala_probe_sdk::{Output, Schema};
    use std::path::Path;

    fn schema() -> Schema {
        Schema::from_strs(&[
            (Path::new("taskprobe.meta"), crate::PROC_META),
            (Path::new("taskprobe_dns.meta"), crate::DNS_META),
        ])
        .expect("meta files parse")
    }

    fn all() -> Enabled {
        Enabled {
            syscall: true,
            io_syscalls: true,
            bio: true,
            hang: true,
            fs: true,
            net: true,
            ioctl: true,
            offcpu: true,
            reclaim: true,
            page_lookups: true,
            dirty_buffers: true,
            page_adds: true,
            dirty_pages: true,
            pygc: true,
        }
    }

    #[test]
    fn every_row_fits_its_table() {
        let mut s = ProcStats {
            syscall_failed: 5,
            ioctl_cmd: 0x5401,
            ioctl_fd: 3,
            offcpu_ns: 1000,
            python_gc: 2,
            gc_ns_sum: 300,
            gc_ns_max: 200,
            ..Default::default()
        };
        s.ns[Class::Read as usize] = 42;
        s.ns[Class::Ioctl as usize] = 7;
        s.fs_ns[FS_TMPFS][FS_OP_FLUSH] = 9;
        let rows = rows(77, &s, &all());
        assert_eq!(rows.len(), 13);
        let mut out = Output::new(schema(), Vec::new());
        for r in &rows {
            let values: Vec<&dyn std::fmt::Display> = r
                .values
                .iter()
                .map(|v| v as &dyn std::fmt::Display)
                .collect();
            out.emit(r.table, &values)
                .unwrap_or_else(|e| panic!("{}: {e}", r.table));
        }
        let find = |t: &str| rows.iter().find(|r| r.table == t).unwrap().values.clone();
        assert_eq!(find("proc_syscall"), ["77", "5"]);
        assert_eq!(find("proc_syscall_io"), ["77", "0", "0", "42", "0", "0"]);
        assert_eq!(find("proc_tmpfs"), ["77", "0", "0", "9"]);
        assert_eq!(find("proc_cpu"), ["77", "0", "1000"]);
        assert_eq!(find("proc_pygc"), ["77", "2", "300", "200"]);
        assert_eq!(
            find("proc_syscall_ioctl"),
            ["77", "3", "--", "T", "1", "0", "7"]
        );
    }

    #[test]
    fn only_active_subitems_print_and_missing_needs_stay_empty() {
        let s = ProcStats {
            syscall_failed: 1,
            less_4k_io_read: 2,
            ..Default::default()
        };
        let on = Enabled {
            bio: true,
            page_adds: true,
            ..Default::default()
        };
        let rows = rows(1, &s, &on);
        let tables: Vec<&str> = rows.iter().map(|r| r.table).collect();
        assert_eq!(tables, ["proc_page", "proc_io"]);
        assert_eq!(rows[0].values, ["1", "", "", "", "0", ""]);
        assert_eq!(rows[1].values, ["1", "2", "0", "0", "0", "0", "0", ""]);
        // No ioctl in the period: no ioctl record even when the sub-item is on.
        let on = Enabled {
            ioctl: true,
            ..Default::default()
        };
        assert!(super::rows(1, &s, &on).is_empty());
    }
}
