//! The cgroup side of a container: CPU, memory and block I/O from the controllers' files
//! (v1 where the controller is mounted in a v1 hierarchy, else v2), and the container's
//! processes from `cgroup.procs`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::file::{keyed, number, read, Warnings};
use crate::host::Host;
use crate::membership::Membership;
use crate::parse;

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
