//! Process facts from a `/proc` tree and the containers they reveal: one scan, shared by every
//! snooper rule of a resolution.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::cgroup::{parse_cgroup, CpuCgroupDir};
use super::error::{Result, SnooperError};

/// The most bytes of `/proc/<pid>/cmdline` that are read (the original's limit).
pub const CMDLINE_MAX_BYTES: usize = 4095;

/// Where the proc and sys trees are: the host's, the host's seen from a container
/// (`$GOPHER_HOST_PATH/proc`), or a test fixture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRoots {
    /// The proc tree (`/proc`).
    pub proc_root: PathBuf,
    /// The sys tree (`/sys`); cgroups are looked up under `<sys_root>/fs/cgroup`.
    pub sys_root: PathBuf,
}

impl Default for ScanRoots {
    fn default() -> Self {
        ScanRoots {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
        }
    }
}

impl ScanRoots {
    /// The trees of the host mounted at `host_root` (`$GOPHER_HOST_PATH`, or `/`).
    pub fn under_host_root(host_root: &Path) -> Self {
        ScanRoots {
            proc_root: host_root.join("proc"),
            sys_root: host_root.join("sys"),
        }
    }
}

/// What the daemon knows about one process. Ordered by pid first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Parent process id (0 when unknown).
    pub ppid: u32,
    /// `/proc/<pid>/comm` without the newline.
    pub comm: String,
    /// `/proc/<pid>/cmdline`: first 4095 bytes, NULs turned into spaces, trailing spaces trimmed.
    pub cmdline: String,
    /// The target of `/proc/<pid>/exe`; empty when unreadable (kernel threads, permissions).
    pub exe: String,
    /// Full 64-hex id of the container the process runs in, lowercase.
    pub container_id: Option<String>,
    /// Uid of the pod the process runs in, dashed 36-char lowercase form.
    pub pod_id: Option<String>,
}

/// What the daemon knows about one container. Ordered by id first.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ContainerInfo {
    /// Full 64-hex container id, lowercase.
    pub id: String,
    /// Container name; known only from a container runtime CLI.
    pub name: Option<String>,
    /// Uid of the pod the container belongs to, dashed 36-char lowercase form.
    pub pod_id: Option<String>,
    /// Inode of the container's cpu cgroup directory; 0 when it cannot be found.
    pub cpucg_inode: u64,
}

/// One scan of a proc tree: every process that could be read, and the containers their cgroups
/// name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcSnapshot {
    processes: Vec<ProcessInfo>,
    containers: BTreeMap<String, ContainerInfo>,
}

impl ProcSnapshot {
    /// Scans `roots.proc_root`. Processes that vanish during the scan are skipped; fields that
    /// cannot be read are left empty. Fails only when the proc root cannot be listed.
    pub fn scan(roots: &ScanRoots) -> Result<Self> {
        let list_error = |source| SnooperError::ListProcRoot {
            path: roots.proc_root.clone(),
            source,
        };
        let mut processes = Vec::new();
        let mut cpu_dirs: BTreeMap<String, CpuCgroupDir> = BTreeMap::new();
        for pid in gala_cgroup::pids(&roots.proc_root).map_err(list_error)? {
            let Some((info, cpu_dir)) = read_process(&roots.proc_root.join(pid.to_string()), pid)
            else {
                continue;
            };
            if let (Some(id), Some(dir)) = (&info.container_id, cpu_dir) {
                cpu_dirs.entry(id.clone()).or_insert(dir);
            }
            processes.push(info);
        }
        processes.sort_unstable_by_key(|p| p.pid);

        let mut containers = BTreeMap::new();
        for p in &processes {
            let Some(id) = &p.container_id else { continue };
            let container = containers
                .entry(id.clone())
                .or_insert_with(|| ContainerInfo {
                    id: id.clone(),
                    name: None,
                    pod_id: None,
                    cpucg_inode: cpu_dirs
                        .get(id)
                        .map_or(0, |dir| cgroup_inode(dir, &roots.sys_root)),
                });
            if container.pod_id.is_none() {
                container.pod_id.clone_from(&p.pod_id);
            }
        }
        Ok(ProcSnapshot {
            processes,
            containers,
        })
    }

    /// The processes, sorted by pid.
    pub fn processes(&self) -> &[ProcessInfo] {
        &self.processes
    }

    /// The process with `pid`, if it was seen.
    pub fn process(&self, pid: u32) -> Option<&ProcessInfo> {
        self.processes
            .binary_search_by_key(&pid, |p| p.pid)
            .ok()
            .map(|i| &self.processes[i])
    }

    /// The containers that have at least one process in the scan, by id.
    pub fn containers(&self) -> &BTreeMap<String, ContainerInfo> {
        &self.containers
    }
}

/// Reads one process from its `/proc/<pid>` directory. `None` when it has vanished: `stat`, which
/// every process has and anyone may read, is unreadable.
pub fn read_process(dir: &Path, pid: u32) -> Option<(ProcessInfo, Option<CpuCgroupDir>)> {
    let stat = std::fs::read(dir.join("stat")).ok()?;
    let ppid = parse_stat_ppid(&stat).unwrap_or(0);
    let comm = std::fs::read(dir.join("comm"))
        .map(|raw| parse_comm(&raw))
        .unwrap_or_default();
    let cmdline = read_prefix(&dir.join("cmdline"), CMDLINE_MAX_BYTES)
        .map(|raw| normalise_cmdline(&raw))
        .unwrap_or_default();
    let exe = std::fs::read_link(dir.join("exe"))
        .map(|target| target.to_string_lossy().into_owned())
        .unwrap_or_default();
    let identity = std::fs::read(dir.join("cgroup"))
        .map(|raw| parse_cgroup(&String::from_utf8_lossy(&raw)))
        .unwrap_or_default();
    let info = ProcessInfo {
        pid,
        ppid,
        comm,
        cmdline,
        exe,
        container_id: identity.container_id,
        pod_id: identity.pod_id,
    };
    Some((info, identity.cpu_dir))
}

/// The first `limit` bytes of a file.
fn read_prefix(path: &Path, limit: usize) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    File::open(path)?.take(limit as u64).read_to_end(&mut raw)?;
    Ok(raw)
}

/// The inode of the first existing candidate directory; 0 when none exists.
fn cgroup_inode(dir: &CpuCgroupDir, sys_root: &Path) -> u64 {
    dir.candidates(sys_root)
        .into_iter()
        .flatten()
        .find_map(|path| std::fs::metadata(path).ok().filter(|m| m.is_dir()))
        .map_or(0, |m| m.ino())
}

/// The parent pid from the text of `/proc/<pid>/stat`: `pid (comm) state ppid ...`. The comm may
/// itself contain spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_ppid(stat: &[u8]) -> Option<u32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let _state = fields.next()?;
    fields.next()?.parse().ok()
}

/// The start time of a process from the text of `/proc/<pid>/stat`, in clock ticks since boot
/// (field 22, counted after the last `)` as [`parse_stat_ppid`] does).
pub fn parse_stat_start_ticks(stat: &[u8]) -> Option<u64> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields 3.. follow the comm: the start time is the 20th of them.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The text of `/proc/<pid>/comm`: without its newline, invalid UTF-8 replaced.
pub fn parse_comm(raw: &[u8]) -> String {
    let raw = raw.strip_suffix(b"\n").unwrap_or(raw);
    String::from_utf8_lossy(raw).into_owned()
}

/// The text of `/proc/<pid>/cmdline` as the original compared it: at most 4095 bytes, NULs turned
/// into spaces, trailing spaces trimmed, invalid UTF-8 replaced.
pub fn normalise_cmdline(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(CMDLINE_MAX_BYTES)];
    let spaced: Vec<u8> = raw.iter().map(|&b| if b == 0 { b' ' } else { b }).collect();
    let end = spaced.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    String::from_utf8_lossy(&spaced[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ppid_is_read_after_the_last_parenthesis() {
        assert_eq!(
            parse_stat_ppid(b"42 (bash) S 7 42 42 0 -1 4194560"),
            Some(7)
        );
        assert_eq!(parse_stat_ppid(b"43 (a) b) (c) R 1 0 0"), Some(1));
        assert_eq!(parse_stat_ppid(b"44 (x\ny) Z 0 0"), Some(0));
        assert_eq!(parse_stat_ppid(b"45 (x) S"), None);
        assert_eq!(parse_stat_ppid(b"45 (x) S -3"), None);
        assert_eq!(parse_stat_ppid(b"no parenthesis 1 2"), None);
        assert_eq!(parse_stat_ppid(b""), None);
    }

    #[test]
    fn start_time_is_the_22nd_field() {
        let stat = b"13478 (a (b) c) R 13433 13433 3468 0 -1 4194304 99 0 0 0 0 0 0 0 20 0 1 0 2439257 3133440 383";
        assert_eq!(parse_stat_start_ticks(stat), Some(2439257));
        assert_eq!(parse_stat_start_ticks(b"1 (x) S 0 1 1 0"), None);
        assert_eq!(parse_stat_start_ticks(b""), None);
    }

    #[test]
    fn cmdline_nuls_become_spaces_and_trailing_ones_go() {
        assert_eq!(
            normalise_cmdline(b"sleep\x001000.123\x00"),
            "sleep 1000.123"
        );
        assert_eq!(normalise_cmdline(b"a\x00\x00b\x00\x00\x00"), "a  b");
        assert_eq!(normalise_cmdline(b""), "");
        assert_eq!(normalise_cmdline(b"\x00\x00"), "");
        let long = vec![b'x'; 5000];
        assert_eq!(normalise_cmdline(&long).len(), CMDLINE_MAX_BYTES);
        assert_eq!(normalise_cmdline(b"bad\xffutf8"), "bad\u{fffd}utf8");
    }

    #[test]
    fn comm_loses_only_its_newline() {
        assert_eq!(parse_comm(b"nginx\n"), "nginx");
        assert_eq!(parse_comm(b"kworker/0:1H"), "kworker/0:1H");
        assert_eq!(parse_comm(b"a b\n\n"), "a b\n");
    }

    #[test]
    fn a_missing_proc_root_is_an_error_naming_it() {
        let roots = ScanRoots {
            proc_root: PathBuf::from("/nonexistent/proc-root"),
            sys_root: PathBuf::from("/nonexistent/sys-root"),
        };
        let err = ProcSnapshot::scan(&roots).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/proc-root"), "{err}");
    }

    #[test]
    fn the_real_proc_contains_this_process() {
        let snapshot = ProcSnapshot::scan(&ScanRoots::default()).unwrap();
        let me = snapshot.process(std::process::id()).expect("own pid seen");
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw() as u32);
        assert!(!me.exe.is_empty());
        assert_eq!(
            std::path::Path::new(&me.exe),
            std::env::current_exe().unwrap()
        );
    }

    proptest! {
        #[test]
        fn stat_parsing_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_stat_ppid(&raw);
            let _ = parse_stat_start_ticks(&raw);
        }

        #[test]
        fn cmdline_never_panics_and_stays_bounded(raw in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let text = normalise_cmdline(&raw);
            prop_assert!(!text.ends_with(' '));
            prop_assert!(!text.contains('\0'));
            // Replacement characters can grow invalid bytes from 1 to 3 bytes.
            prop_assert!(text.len() <= 3 * CMDLINE_MAX_BYTES);
        }

        #[test]
        fn comm_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_comm(&raw);
        }
    }
}
