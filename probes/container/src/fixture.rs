//! A generated host tree of containers for the tests and the benchmark: `proc/` (mountinfo,
//! stat, and per process `cgroup`, `stat`, `net/dev`, `fd/`, `root/`) and `sys/fs/cgroup/`
//! laid out as a hybrid (v1 controllers + unified) or a pure v2 host, with known values.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// How the cgroup hierarchies are mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// v1 `cpu`, `cpuacct`, `memory`, `blkio` hierarchies and an empty unified one (this
    /// project's test machine).
    Hybrid,
    /// One cgroup2 hierarchy at `/sys/fs/cgroup`.
    Unified,
}

/// Boot time written to `proc/stat`.
pub const BTIME: u64 = 1_700_000_000;

/// Full id of container `i` (distinct in its first 12 hex digits too).
pub fn container_id(i: usize) -> String {
    format!("{:012x}{:052x}", 0xc0ffee_000000_u64 + i as u64, i)
}

/// Pid of process `p` (0-based) of container `i`.
pub fn pid(i: usize, p: usize) -> u32 {
    10_000 + (i as u32) * 10 + p as u32
}

/// The container's cgroup path (kubelet's cgroupfs layout).
pub fn cgroup_path(i: usize) -> String {
    format!(
        "/kubepods/besteffort/pod{:08x}-0000-0000-0000-{:012x}/{}",
        i,
        i,
        container_id(i)
    )
}

fn write(path: &Path, text: &str) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, text)
}

/// Writes a tree of `containers` containers with `procs` processes each, plus `host_procs`
/// processes outside any container, under `root`. Container `i` uses `i + 1` seconds of CPU,
/// `(i + 1)` MiB of memory, and has had `i` OOM kills.
pub fn generate(
    root: &Path,
    layout: Layout,
    containers: usize,
    procs: usize,
    host_procs: usize,
) -> io::Result<()> {
    let cg = root.join("sys/fs/cgroup");
    let mountinfo = match layout {
        Layout::Hybrid => {
            "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"
        }
        Layout::Unified => {
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate\n"
        }
    };
    write(&root.join("proc/1/mountinfo"), mountinfo)?;
    write(
        &root.join("proc/stat"),
        &format!("cpu  1 2 3 4\nbtime {BTIME}\nprocesses 9\n"),
    )?;
    for h in 0..host_procs {
        let pid = 2 + h as u32;
        write(
            &root.join(format!("proc/{pid}/cgroup")),
            "1:cpu:/\n4:memory:/system.slice/x.service\n0::/system.slice/x.service\n",
        )?;
    }
    for i in 0..containers {
        let path = cgroup_path(i);
        let rel = path.trim_start_matches('/');
        let cpu_ns = (i as u64 + 1) * 1_000_000_000;
        let mem = (i as u64 + 1) << 20;
        let pids: Vec<u32> = (0..procs).map(|p| pid(i, p)).collect();
        let procs_text: String = pids.iter().map(|p| format!("{p}\n")).collect();
        let cgroup_file = match layout {
            Layout::Hybrid => format!(
                "7:blkio:{path}\n4:memory:{path}\n2:cpuacct:{path}\n1:cpu:{path}\n0::{path}\n"
            ),
            Layout::Unified => format!("0::{path}\n"),
        };
        match layout {
            Layout::Hybrid => {
                let d = cg.join("cpuacct").join(rel);
                write(&d.join("cpuacct.usage"), &format!("{cpu_ns}\n"))?;
                write(
                    &d.join("cpuacct.stat"),
                    &format!("user {}\nsystem {}\n", (i + 1) * 60, (i + 1) * 40),
                )?;
                write(
                    &cg.join("cpu").join(rel).join("cpu.stat"),
                    "nr_periods 10\nnr_throttled 2\nthrottled_time 500000000\n",
                )?;
                let d = cg.join("memory").join(rel);
                write(&d.join("memory.usage_in_bytes"), &format!("{mem}\n"))?;
                write(
                    &d.join("memory.stat"),
                    &format!(
                        "cache 4096\nrss {}\nrss_huge 0\nshmem 0\nmapped_file 1024\ninactive_file 2048\ntotal_cache 4096\ntotal_rss {}\ntotal_mapped_file 1024\ntotal_inactive_file 2048\ntotal_active_file 2048\n",
                        mem - 4096,
                        mem - 4096
                    ),
                )?;
                write(
                    &d.join("memory.oom_control"),
                    &format!("oom_kill_disable 0\nunder_oom 0\noom_kill {i}\n"),
                )?;
                write(
                    &cg.join("blkio")
                        .join(rel)
                        .join("blkio.throttle.io_service_bytes_recursive"),
                    "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\nTotal 12288\n",
                )?;
                write(
                    &cg.join("unified").join(rel).join("cgroup.procs"),
                    &procs_text,
                )?;
                write(
                    &cg.join("memory").join(rel).join("cgroup.procs"),
                    &procs_text,
                )?;
            }
            Layout::Unified => {
                let d = cg.join(rel);
                write(
                    &d.join("cpu.stat"),
                    &format!(
                        "usage_usec {}\nuser_usec {}\nsystem_usec {}\nnr_periods 10\nnr_throttled 2\nthrottled_usec 500000\n",
                        cpu_ns / 1000,
                        cpu_ns / 1000 * 6 / 10,
                        cpu_ns / 1000 * 4 / 10
                    ),
                )?;
                write(&d.join("memory.current"), &format!("{mem}\n"))?;
                write(
                    &d.join("memory.stat"),
                    &format!(
                        "anon {}\nfile 4096\nkernel 0\nfile_mapped 1024\nactive_file 2048\ninactive_file 2048\n",
                        mem - 4096
                    ),
                )?;
                write(
                    &d.join("memory.events"),
                    &format!("low 0\nhigh 0\nmax 1\noom 1\noom_kill {i}\noom_group_kill 0\n"),
                )?;
                write(
                    &d.join("io.stat"),
                    "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
                )?;
                write(&d.join("cgroup.procs"), &procs_text)?;
            }
        }
        for (p, pid) in pids.iter().enumerate() {
            let dir = root.join(format!("proc/{pid}"));
            write(&dir.join("cgroup"), &cgroup_file)?;
            // The first process started first.
            write(
                &dir.join("stat"),
                &format!(
                    "{pid} (sh) S 1 {pid} {pid} 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 {} 1000 10\n",
                    1000 + p
                ),
            )?;
            write(
                &dir.join("net/dev"),
                "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes packets errs drop fifo colls carrier compressed\n    lo: 100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n  eth0: 2000 20 1 2 0 0 0 0 3000 30 3 4 0 0 0 0\n",
            )?;
            for fd in 0..3 {
                write(&dir.join(format!("fd/{fd}")), "")?;
            }
            fs::create_dir_all(dir.join("root"))?;
        }
    }
    Ok(())
}

/// The directory of container `i` in hierarchy `sub` (`cpuacct`, `memory`, ... or `` for v2).
pub fn cgroup_dir(root: &Path, sub: &str, i: usize) -> PathBuf {
    let rel = cgroup_path(i);
    let mut dir = root.join("sys/fs/cgroup");
    if !sub.is_empty() {
        dir.push(sub);
    }
    dir.join(rel.trim_start_matches('/'))
}
