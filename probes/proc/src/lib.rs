//! `taskprobe`, the `proc` probe: per-process kernel-side behaviour of the snooped
//! processes — failed syscalls and syscall latency, per-file-system latency, bio sizes and
//! latency, off-CPU and iowait time, page-cache activity, ioctl latency (typed tracepoints)
//! and libc resolver calls (uprobes). See README.md. The binary (`src/main.rs`) only runs
//! [`TaskProbe`].

mod dns;
mod events;
mod ioctl;
mod mapped;
mod probe;
mod stats;
mod syscalls;
mod tables;

gala_ebpf::skel_module!(
    /// The BPF skeleton generated from `src/bpf/taskprobe.bpf.c`; its `types` are the record
    /// layouts and the class, sub-item and file-system numbers.
    "taskprobe"
);

pub use probe::{AttachError, TaskProbe, NAME, SUBITEMS};

/// `taskprobe.meta`: the `proc` entity's tables.
pub const PROC_META: &str = include_str!("../taskprobe.meta");
/// `taskprobe_dns.meta`: the `dns` entity's table.
pub const DNS_META: &str = include_str!("../taskprobe_dns.meta");

/// The probe's meta files.
pub const METAS: [(&str, &str); 2] = [
    ("taskprobe.meta", PROC_META),
    ("taskprobe_dns.meta", DNS_META),
];
