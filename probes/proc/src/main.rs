//! `taskprobe`, the `proc` probe: per-process kernel-side behaviour of the snooped
//! processes — failed syscalls and syscall latency, per-file-system latency, bio sizes and
//! latency, off-CPU and iowait time, page-cache activity, ioctl latency (typed tracepoints)
//! and libc resolver calls (uprobes). See README.md.

mod dns;
mod events;
mod ioctl;
mod mapped;
mod probe;
mod stats;
mod syscalls;
mod tables;

#[allow(clippy::all, unused_imports, missing_docs)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/taskprobe.skel.rs"));
}

use std::process::ExitCode;

/// `taskprobe.meta`: the `proc` entity's tables.
pub const PROC_META: &str = include_str!("../taskprobe.meta");
/// `taskprobe_dns.meta`: the `dns` entity's table.
pub const DNS_META: &str = include_str!("../taskprobe_dns.meta");

fn main() -> ExitCode {
    let metas = [
        ("taskprobe.meta", PROC_META),
        ("taskprobe_dns.meta", DNS_META),
    ];
    match gala_ebpf::run(probe::TaskProbe::default(), &metas) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            gala_ebpf::log(gala_probe_sdk::Level::Error, "proc", &e.to_string());
            ExitCode::FAILURE
        }
    }
}
