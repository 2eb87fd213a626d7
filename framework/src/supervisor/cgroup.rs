//! Per-probe cgroups: every process a probe starts, `setsid` grandchildren included, stays in
//! the probe's cgroup, so stopping the probe kills its whole tree, a daemon that starts after a
//! crash kills what its predecessor's probes left, and the kernel accounts each probe's CPU.
//!
//! cgroup v2 where it is mounted (alone, or as the unified hierarchy of a hybrid machine):
//! `cgroup.kill`, or freeze-and-kill on kernels before 5.14; CPU from `cpu.stat`. Otherwise
//! cgroup v1: the `freezer` hierarchy holds the tree (freeze, kill, thaw) and `cpuacct`, when
//! mounted, counts its CPU. Memory is the resident memory of the processes in the cgroup (no
//! controller needs to be delegated for it). Each daemon instance owns one directory,
//! `<its own cgroup>/<instance>/`, with one child per probe; [`Cgroups::sweep`] empties it at
//! start.

use std::collections::HashMap;
use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gala_cgroup::mountinfo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::config::CgroupMode;
use crate::selfmetrics;

/// How long [`ProbeCgroup::kill_all`] keeps killing before it gives up on a cgroup that does
/// not empty.
const KILL_DEADLINE: Duration = Duration::from_secs(2);

/// Why per-probe cgroups are not available.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No cgroup hierarchy the mode allows is mounted.
    #[error("no {0} hierarchy is mounted")]
    NotMounted(&'static str),
    /// The daemon's own cgroup is not listed in /proc/self/cgroup.
    #[error("the daemon's own {0} cgroup is not in /proc/self/cgroup")]
    OwnCgroup(&'static str),
    /// A file or directory of the hierarchy could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One mounted cgroup hierarchy, from a line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// `cgroup2`, or `cgroup` (v1).
    pub v2: bool,
    /// The v1 controllers of the hierarchy (its super options: `cpu`, `freezer`, ...).
    pub controllers: Vec<String>,
}

/// The cgroup hierarchies of a `/proc/<pid>/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    mountinfo::parse(text)
        .filter_map(|m| {
            let v2 = match m.fstype.as_str() {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let controllers = if v2 {
                Vec::new()
            } else {
                m.super_options.split(',').map(str::to_owned).collect()
            };
            Some(Mount {
                mount_point: PathBuf::from(m.mount_point),
                v2,
                controllers,
            })
        })
        .collect()
}

/// The path of the process's cgroup in the v2 hierarchy (`controller` `None`) or in the v1
/// hierarchy holding `controller`, from a `/proc/<pid>/cgroup` text.
pub fn own_cgroup(text: &str, controller: Option<&str>) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match controller {
            None => id == "0" && controllers.is_empty(),
            Some(c) => controllers.split(',').any(|x| x == c),
        };
        wanted.then(|| path.to_owned())
    })
}

/// A directory name for a probe (probe names are already restricted; this keeps any other
/// byte out of the path).
fn dir_name(probe: &str) -> String {
    probe
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What holds the probes' processes.
#[derive(Debug, Clone)]
enum Layout {
    /// The daemon's directory in the v2 hierarchy.
    V2 { base: PathBuf },
    /// The daemon's directories in the v1 `freezer` and (if mounted) `cpuacct` hierarchies.
    V1 {
        freezer: PathBuf,
        cpuacct: Option<PathBuf>,
    },
}

/// The daemon's per-probe cgroups.
pub struct Cgroups {
    layout: Layout,
    live: Mutex<HashMap<String, Arc<ProbeCgroup>>>,
}

impl Cgroups {
    /// Finds the hierarchy `mode` asks for (`Auto`: v2 if mounted, else v1) and creates the
    /// instance directory `instance` under the daemon's own cgroup. `Ok(None)` for `Off`.
    pub fn open(mode: CgroupMode, instance: &str) -> Result<Option<Cgroups>, CgroupError> {
        if mode == CgroupMode::Off {
            return Ok(None);
        }
        let mountinfo = fs::read_to_string("/proc/self/mountinfo")
            .map_err(io_error(Path::new("/proc/self/mountinfo")))?;
        let own = fs::read_to_string("/proc/self/cgroup")
            .map_err(io_error(Path::new("/proc/self/cgroup")))?;
        let mounts = parse_mountinfo(&mountinfo);
        let v2 = mounts.iter().find(|m| m.v2);
        let v1 = |controller: &str| {
            mounts
                .iter()
                .find(|m| !m.v2 && m.controllers.iter().any(|c| c == controller))
        };
        let dir = |mount: &Mount, controller: Option<&'static str>| {
            let path = own_cgroup(&own, controller)
                .ok_or(CgroupError::OwnCgroup(controller.unwrap_or("v2")))?;
            let base = mount
                .mount_point
                .join(path.trim_start_matches('/'))
                .join(dir_name(instance));
            fs::create_dir_all(&base).map_err(io_error(&base))?;
            Ok::<_, CgroupError>(base)
        };
        let layout = match (mode, v2) {
            (CgroupMode::Auto | CgroupMode::V2, Some(m)) => Layout::V2 {
                base: dir(m, None)?,
            },
            (CgroupMode::V2, None) => return Err(CgroupError::NotMounted("cgroup v2")),
            _ => {
                let freezer = v1("freezer").ok_or(CgroupError::NotMounted("cgroup v1 freezer"))?;
                Layout::V1 {
                    freezer: dir(freezer, Some("freezer"))?,
                    cpuacct: v1("cpuacct").map(|m| dir(m, Some("cpuacct"))).transpose()?,
                }
            }
        };
        Ok(Some(Cgroups {
            layout,
            live: Mutex::new(HashMap::new()),
        }))
    }

    /// `v2` or `v1`, for the log.
    pub fn version(&self) -> &'static str {
        match self.layout {
            Layout::V2 { .. } => "v2",
            Layout::V1 { .. } => "v1",
        }
    }

    /// The directory holding the probes' cgroups (the v1 freezer one).
    pub fn base(&self) -> &Path {
        match &self.layout {
            Layout::V2 { base } => base,
            Layout::V1 { freezer, .. } => freezer,
        }
    }

    /// The instance directories: [`Cgroups::base`], and the v1 cpuacct one.
    pub fn instance_dirs(&self) -> Vec<&Path> {
        match &self.layout {
            Layout::V2 { base } => vec![base],
            Layout::V1 { freezer, cpuacct } => std::iter::once(freezer)
                .chain(cpuacct)
                .map(PathBuf::as_path)
                .collect(),
        }
    }

    /// Kills every process left in the probe cgroups of a previous daemon instance and
    /// removes them; returns how many processes were killed.
    pub fn sweep(&self) -> usize {
        let Ok(entries) = fs::read_dir(self.base()) else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let left = self.cgroup_of(&name);
                killed += left.kill_all();
                left.remove();
            }
        }
        killed
    }

    /// At a clean stop, once the probes are stopped: kills what is left, removes every probe's
    /// cgroup and the instance directories.
    pub fn close(&self) {
        self.live.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let killed = self.sweep();
        if killed > 0 {
            tracing::warn!("killed {killed} processes left in the probes' cgroups at stop");
        }
        for dir in self.instance_dirs() {
            if let Err(e) = fs::remove_dir(dir) {
                tracing::warn!("removing cgroup {}: {e}", dir.display());
            }
        }
    }

    /// The cgroup of probe `probe` (created, and kept until [`Cgroups::release`]).
    pub fn probe(&self, probe: &str) -> Result<Arc<ProbeCgroup>, CgroupError> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cg) = live.get(probe) {
            return Ok(cg.clone());
        }
        let cg = Arc::new(self.cgroup_of(&dir_name(probe)));
        for dir in cg.dirs() {
            fs::create_dir_all(dir).map_err(io_error(dir))?;
        }
        live.insert(probe.to_owned(), cg.clone());
        Ok(cg)
    }

    /// Forgets probe `probe`'s cgroup and removes its directories (after [`ProbeCgroup::kill_all`]).
    pub fn release(&self, probe: &str) {
        let cg = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(probe);
        if let Some(cg) = cg {
            cg.remove();
        }
    }

    /// Sets each probe's CPU and memory self-metrics.
    pub fn record_usage(&self) {
        let live: Vec<(String, Arc<ProbeCgroup>)> = self
            .live
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(n, c)| (n.clone(), c.clone()))
            .collect();
        for (name, cg) in live {
            if let Some(ns) = cg.cpu_ns() {
                selfmetrics::probe_cpu_seconds(&name).set(ns as f64 / 1e9);
            }
            selfmetrics::probe_memory_bytes(&name).set(cg.resident_bytes() as f64);
        }
    }

    fn cgroup_of(&self, dir: &str) -> ProbeCgroup {
        match &self.layout {
            Layout::V2 { base } => ProbeCgroup {
                main: base.join(dir),
                cpuacct: None,
                v2: true,
            },
            Layout::V1 { freezer, cpuacct } => ProbeCgroup {
                main: freezer.join(dir),
                cpuacct: cpuacct.as_ref().map(|c| c.join(dir)),
                v2: false,
            },
        }
    }
}

/// One probe's cgroup (directories in one or two hierarchies).
#[derive(Debug)]
pub struct ProbeCgroup {
    /// The v2 directory, or the v1 freezer one: membership and killing.
    main: PathBuf,
    /// The v1 cpuacct directory.
    cpuacct: Option<PathBuf>,
    v2: bool,
}

impl ProbeCgroup {
    fn dirs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.main).chain(&self.cpuacct)
    }

    /// The `cgroup.procs` files a new process joins, opened close-on-exec: the child writes
    /// `0` to each between fork and exec ([`join`]).
    pub fn procs_files(&self) -> std::io::Result<Vec<OwnedFd>> {
        self.dirs()
            .map(|d| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
                    .map(OwnedFd::from)
            })
            .collect()
    }

    /// The pids in the cgroup.
    pub fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.main.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process of the cgroup and waits (up to [`KILL_DEADLINE`]) until none is
    /// left; returns how many were seen. v2: `cgroup.kill`, or freeze-and-kill without it; v1:
    /// freeze, kill, thaw.
    pub fn kill_all(&self) -> usize {
        let first = self.pids();
        if first.is_empty() {
            return 0;
        }
        let kill_file = self.main.join("cgroup.kill");
        let deadline = Instant::now() + KILL_DEADLINE;
        loop {
            if self.v2 && kill_file.exists() {
                let _ = fs::write(&kill_file, "1");
            } else {
                // Frozen, no process can fork a new one between the read and the kill.
                self.freeze(true);
                for pid in self.pids() {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                self.freeze(false);
            }
            std::thread::sleep(Duration::from_millis(5));
            if self.pids().is_empty() || Instant::now() > deadline {
                break;
            }
        }
        let left = self.pids().len();
        if left > 0 {
            tracing::warn!(
                cgroup = %self.main.display(),
                "{left} processes still in the cgroup after SIGKILL"
            );
        }
        first.len()
    }

    fn freeze(&self, frozen: bool) {
        let (file, value) = if self.v2 {
            ("cgroup.freeze", if frozen { "1" } else { "0" })
        } else {
            ("freezer.state", if frozen { "FROZEN" } else { "THAWED" })
        };
        let path = self.main.join(file);
        if fs::write(&path, value).is_err() || !frozen {
            return;
        }
        // Freezing is asynchronous; wait (briefly) until it took hold.
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline {
            let done = if self.v2 {
                fs::read_to_string(self.main.join("cgroup.events"))
                    .is_ok_and(|t| t.lines().any(|l| l == "frozen 1"))
            } else {
                fs::read_to_string(&path).is_ok_and(|t| t.trim() == "FROZEN")
            };
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// CPU time of the processes of the cgroup since it was created, in nanoseconds (v1
    /// without `cpuacct`: unknown).
    pub fn cpu_ns(&self) -> Option<u64> {
        if self.v2 {
            let stat = fs::read_to_string(self.main.join("cpu.stat")).ok()?;
            stat.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(|us| us * 1000)
        } else {
            let usage = fs::read_to_string(self.cpuacct.as_ref()?.join("cpuacct.usage")).ok()?;
            usage.trim().parse().ok()
        }
    }

    /// Resident memory of the processes in the cgroup, bytes.
    pub fn resident_bytes(&self) -> u64 {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .unwrap_or(4096) as u64;
        self.pids()
            .iter()
            .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/statm")).ok())
            .filter_map(|t| t.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>()
            * page
    }

    /// Removes the directories (an rmdir fails while a process is left; the next sweep
    /// retries).
    fn remove(&self) {
        for dir in self.dirs() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// Between fork and exec: moves the calling process into the cgroups of `fds` (from
/// [`ProbeCgroup::procs_files`]). Async-signal-safe: `write` only.
pub fn join(fds: &[i32]) -> std::io::Result<()> {
    for &fd in fds {
        // SAFETY: writes one byte from a static buffer to an open descriptor.
        if unsafe { nix::libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// The raw descriptors of `files`, for [`join`] (the files stay open in the parent until the
/// spawn returns).
pub fn raw(files: &[OwnedFd]) -> Vec<i32> {
    files.iter().map(AsRawFd::as_raw_fd).collect()
}

/// Used by tests: writes `pid` into the cgroup (as the daemon's children do themselves).
#[cfg(test)]
fn add(cg: &ProbeCgroup, pid: u32) -> std::io::Result<()> {
    use std::io::Write;
    for dir in cg.dirs() {
        fs::OpenOptions::new()
            .write(true)
            .open(dir.join("cgroup.procs"))?
            .write_all(pid.to_string().as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 1 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
26 25 0:24 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
27 26 0:25 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
28 26 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
29 26 0:27 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
30 26 0:28 / /sys/fs/cgroup/my\\040dir rw,relatime - cgroup cgroup rw,name=systemd
";

    #[test]
    fn mountinfo_lists_the_cgroup_hierarchies() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 4);
        assert!(mounts[0].v2);
        assert_eq!(mounts[0].mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[1].controllers, ["rw", "cpu", "cpuacct"]);
        assert_eq!(mounts[3].mount_point, Path::new("/sys/fs/cgroup/my dir"));
        assert!(parse_mountinfo("garbage\n\n- - -").is_empty());
    }

    #[test]
    fn own_cgroup_by_hierarchy() {
        let text = "12:freezer:/a\n4:cpu,cpuacct:/b/c\n1:name=systemd:/s\n0::/unified/x\n";
        assert_eq!(own_cgroup(text, None).as_deref(), Some("/unified/x"));
        assert_eq!(own_cgroup(text, Some("cpuacct")).as_deref(), Some("/b/c"));
        assert_eq!(own_cgroup(text, Some("freezer")).as_deref(), Some("/a"));
        assert_eq!(own_cgroup(text, Some("memory")), None);
        assert_eq!(own_cgroup("4:cpu:/x\n", None), None);
    }

    #[test]
    fn odd_names() {
        assert_eq!(dir_name("my probe/../x"), "my_probe____x");
    }

    /// Real cgroups (the tests run as root on a hybrid v1 + v2 host, as CI's): a process in a
    /// probe's cgroup, and a `setsid` grandchild it forks, are killed; the directories go.
    fn kill_all_kills_a_setsid_grandchild(mode: CgroupMode) {
        use std::io::Write;
        let instance = format!("gala-gopher-unit-{}-{mode:?}", std::process::id());
        let cgroups = Cgroups::open(mode, &instance)
            .unwrap_or_else(|e| panic!("{mode:?}: {e} (this test needs a hybrid cgroup host)"))
            .expect("only Off gives None");
        let cg = cgroups.probe("p").expect("probe cgroup");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read go; setsid sleep 300 & sleep 300"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        add(&cg, child.id()).expect("join");
        // sh forks the setsid child once it read the line, after the join: it starts in the
        // cgroup; wait for sh and its two sleeps.
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("go");
        let deadline = Instant::now() + Duration::from_secs(5);
        while cg.pids().len() < 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let pids = cg.pids();
        assert!(pids.len() >= 3, "{mode:?}: {pids:?}");
        assert_eq!(cgroups.probe("p").expect("same").pids(), pids);
        assert_eq!(cg.kill_all(), pids.len());
        assert!(cg.pids().is_empty(), "{mode:?}");
        let _ = child.wait();
        cgroups.release("p");
        assert!(!cg.main.exists(), "{mode:?}: released");
        fs::remove_dir(cgroups.base()).expect("instance dir");
        if let Layout::V1 {
            cpuacct: Some(c), ..
        } = &cgroups.layout
        {
            fs::remove_dir(c).expect("cpuacct instance dir");
        }
    }

    #[test]
    fn v2_kill_all_kills_a_setsid_grandchild() {
        kill_all_kills_a_setsid_grandchild(CgroupMode::V2);
    }

    #[test]
    fn v1_kill_all_kills_a_setsid_grandchild() {
        kill_all_kills_a_setsid_grandchild(CgroupMode::V1);
    }
}
