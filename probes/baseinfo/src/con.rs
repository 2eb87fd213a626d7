//! Sub-item `con`: how fast one directory (`elf_path`) grows inside each snooped container,
//! measured by walking it through `/proc/<pid>/root` of one of the container's processes
//! (no docker/containerd CLI); table `system_con_io`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use gala_probe_sdk::SnooperMode;

use crate::collector::{fixed2, Collector, Context, Previous, Report};
use crate::error::CollectError;
use crate::record;

/// The table.
pub const TABLE: &str = "system_con_io";

/// Entries a walk visits at most; a bigger directory is not measured.
pub const MAX_ENTRIES: u64 = 100_000;

/// Symbolic links followed at most while resolving `elf_path` (as the kernel's limit).
const MAX_SYMLINKS: u32 = 40;

/// Whether `/proc/<pid>/cgroup` text names the container `id_lower` (lowercase).
pub fn cgroup_names(text: &str, id_lower: &str) -> bool {
    !id_lower.is_empty()
        && text
            .lines()
            .any(|line| line.to_ascii_lowercase().contains(id_lower))
}

/// Whether two container ids denote the same container: one is a prefix of the other (the
/// runtime's 12-hex abbreviation or the full 64-hex id), ignoring case.
pub fn same_container(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    !a.is_empty() && !b.is_empty() && (a.starts_with(&b) || b.starts_with(&a))
}

/// Bytes per second by which a size changed: negative when it shrank.
pub fn growth_rate(cur: u64, prev: u64, secs: f64) -> f64 {
    (i128::from(cur) - i128::from(prev)) as f64 / secs
}

/// `path` resolved inside `root` as if `root` were `/` (as a chroot would): `..` stops at
/// `root` and absolute symbolic links restart from `root`, so that a link in the container
/// never leads into the host's tree. Every component must exist.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    // Components still to resolve, the next one last.
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, Path::new(path));
    let mut resolved = root.to_path_buf();
    let mut depth = 0usize;
    let mut links = 0u32;
    while let Some(name) = pending.pop() {
        if name == ".." {
            if depth > 0 {
                resolved.pop();
                depth -= 1;
            }
            continue;
        }
        resolved.push(&name);
        if !fs::symlink_metadata(&resolved)?.file_type().is_symlink() {
            depth += 1;
            continue;
        }
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        let target = fs::read_link(&resolved)?;
        resolved.pop();
        if target.is_absolute() {
            resolved = root.to_path_buf();
            depth = 0;
        }
        push_components(&mut pending, &target);
    }
    Ok(resolved)
}

/// Pushes the components of `path` onto `pending` so that the first is popped first (`..`
/// kept as such, `/` and `.` dropped).
fn push_components(pending: &mut Vec<OsString>, path: &Path) {
    let start = pending.len();
    for c in path.components() {
        match c {
            Component::Normal(n) => pending.push(n.to_owned()),
            Component::ParentDir => pending.push("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    pending[start..].reverse();
}

/// What a walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirSize {
    /// Sum of the sizes of the regular files (a file with several hard links once).
    pub bytes: u64,
    /// Entries visited.
    pub entries: u64,
    /// Subdirectories that could not be listed (their content is not counted).
    pub unreadable: u64,
}

/// The size of the tree at `path`: the sum of its regular files' sizes (apparent size, as
/// `du -sb` without the directories' own sizes). Symbolic links are not followed and other
/// filesystems mounted below are not entered (as `du -x`); a regular file is its own size.
/// `None` when the tree has more than `max_entries` entries.
pub fn dir_size(path: &Path, max_entries: u64) -> io::Result<Option<DirSize>> {
    let top = fs::symlink_metadata(path)?;
    let mut size = DirSize::default();
    if !top.is_dir() {
        if top.is_file() {
            size.bytes = top.len();
        }
        return Ok(Some(size));
    }
    let dev = top.dev();
    let mut linked: HashSet<u64> = HashSet::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if dir == path => return Err(e),
            // Removed while walking (a rotated log directory): nothing to count.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(_) => {
                size.unreadable += 1;
                continue;
            }
        };
        for entry in entries {
            let Ok(entry) = entry else {
                size.unreadable += 1;
                break;
            };
            size.entries += 1;
            if size.entries > max_entries {
                return Ok(None);
            }
            // Not following symbolic links; gone entries are skipped.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if meta.dev() == dev {
                    stack.push(entry.path());
                }
            } else if meta.is_file() && (meta.nlink() < 2 || linked.insert(meta.ino())) {
                size.bytes = size.bytes.saturating_add(meta.len());
            }
        }
    }
    Ok(Some(size))
}

/// The `con` collector.
#[derive(Debug, Default)]
pub struct ConCollector {
    /// Size of each (container id, directory) at the previous round.
    previous: Previous<(String, String), u64>,
    /// A process of each container, found in an earlier round and checked again each round.
    pids: HashMap<String, u32>,
}

impl Collector for ConCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        if ctx.config.snooper_mode() == SnooperMode::Blacklist {
            out.warn(
                "blacklist",
                "con reports only snooped containers and the snoopers are a blacklist: nothing is reported (give a snooper list)",
            );
            return Ok(());
        }
        let containers: BTreeMap<&str, ()> = ctx
            .config
            .containers()
            .filter(|c| !c.id.is_empty())
            .map(|c| (c.id.as_str(), ()))
            .collect();
        self.pids
            .retain(|id, _| containers.contains_key(id.as_str()));
        if containers.is_empty() {
            return Ok(());
        }
        let dir = ctx.params().elf_path.as_str();
        if dir.trim().is_empty() {
            out.warn(
                "elf_path",
                "params.elf_path is empty: con has no directory to measure and reports nothing",
            );
            return Ok(());
        }
        self.previous.begin();
        self.locate(ctx, containers.keys().copied());
        for &id in containers.keys() {
            let Some(&pid) = self.pids.get(id) else {
                out.warn(
                    format!("process:{id}"),
                    format!(
                        "no process of container {id} under {} (not running?); not measured",
                        ctx.root.path("/proc").display()
                    ),
                );
                continue;
            };
            let rootfs = ctx.root.path(format!("/proc/{pid}/root"));
            let walked = resolve_in_root(&rootfs, dir)
                .and_then(|path| Ok((dir_size(&path, MAX_ENTRIES)?, path)));
            let size = match walked {
                Ok((Some(size), path)) => {
                    if size.unreadable > 0 {
                        out.warn(
                            format!("unreadable:{id}"),
                            format!(
                                "{} of container {id}: {} subdirectories could not be read; their files are not counted",
                                path.display(),
                                size.unreadable
                            ),
                        );
                    }
                    size
                }
                Ok((None, path)) => {
                    out.warn(
                        format!("limit:{id}"),
                        format!(
                            "{} of container {id}: more than {MAX_ENTRIES} entries; not measured",
                            path.display()
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    out.warn(
                        format!("dir:{id}"),
                        format!(
                            "{dir} in container {id} (under {}): {e}; not measured",
                            rootfs.display()
                        ),
                    );
                    continue;
                }
            };
            let key = (id.to_owned(), dir.to_owned());
            if let Some((secs, prev)) = self.previous.advance(key, ctx.now, size.bytes) {
                record!(
                    out,
                    TABLE,
                    id,
                    dir,
                    fixed2(growth_rate(size.bytes, prev, secs))
                );
            }
        }
        Ok(())
    }
}

impl ConCollector {
    /// Finds a process of each container in `ids`: the one of the previous round if it is
    /// still in the container, else a snooped process the daemon placed in it, else the
    /// first process whose cgroup names it in one pass over `/proc`.
    fn locate<'a>(&mut self, ctx: &Context<'_>, ids: impl Iterator<Item = &'a str>) {
        let in_container = |pid: u32, id_lower: &str| {
            ctx.root
                .read(format!("/proc/{pid}/cgroup"))
                .is_ok_and(|text| cgroup_names(&text, id_lower))
        };
        let mut missing: Vec<(&str, String)> = Vec::new();
        for id in ids {
            let id_lower = id.to_ascii_lowercase();
            if self
                .pids
                .get(id)
                .is_some_and(|&pid| in_container(pid, &id_lower))
            {
                continue;
            }
            let snooped = ctx
                .config
                .processes()
                .filter(|p| same_container(&p.container_id, id))
                .map(|p| p.pid)
                .find(|&pid| in_container(pid, &id_lower));
            match snooped {
                Some(pid) => {
                    self.pids.insert(id.to_owned(), pid);
                }
                None => {
                    self.pids.remove(id);
                    missing.push((id, id_lower));
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let Ok(pids) = gala_cgroup::pids(&ctx.root.path("/proc")) else {
            return;
        };
        for pid in pids {
            let Ok(text) = ctx.root.read(format!("/proc/{pid}/cgroup")) else {
                continue;
            };
            missing.retain(|(id, id_lower)| {
                let found = cgroup_names(&text, id_lower);
                if found {
                    self.pids.insert((*id).to_owned(), pid);
                }
                !found
            });
            if missing.is_empty() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::SystemInfo;
    use crate::root::HostRoot;
    use gala_probe_sdk::Config;
    use std::os::unix::fs::symlink;
    use std::time::Duration;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn cgroup_lines_naming_the_container() {
        let docker = format!("0::/system.slice/docker-{ID}.scope\n");
        assert!(cgroup_names(&docker, "0123456789ab"));
        assert!(cgroup_names(&docker.to_uppercase(), ID));
        assert!(!cgroup_names(
            "0::/user.slice/session-1.scope\n",
            "0123456789ab"
        ));
        assert!(!cgroup_names(&docker, ""));
        assert!(same_container(ID, "0123456789AB"));
        assert!(same_container("0123456789ab", ID));
        assert!(!same_container("", ID));
        assert!(!same_container("fedcba987654", ID));
    }

    #[test]
    fn growth_is_signed() {
        assert_eq!(growth_rate(3000, 1000, 10.0), 200.0);
        assert_eq!(growth_rate(1000, 3000, 10.0), -200.0);
        assert_eq!(growth_rate(0, u64::MAX, 1.0), -(u64::MAX as f64));
    }

    #[test]
    fn resolution_stays_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("data/log")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        // Absolute and relative links resolve inside the root, `..` stops at it.
        symlink("/data/log", root.join("var/log")).unwrap();
        symlink("../data", root.join("var/rel")).unwrap();
        symlink("/../../../..", root.join("up")).unwrap();
        symlink("loop", root.join("loop")).unwrap();
        assert_eq!(
            resolve_in_root(&root, "/var/log").unwrap(),
            root.join("data/log")
        );
        assert_eq!(
            resolve_in_root(&root, "var/rel/log/").unwrap(),
            root.join("data/log")
        );
        assert_eq!(
            resolve_in_root(&root, "/up/data").unwrap(),
            root.join("data")
        );
        assert_eq!(
            resolve_in_root(&root, "/../../data/./log").unwrap(),
            root.join("data/log")
        );
        assert_eq!(resolve_in_root(&root, "/").unwrap(), root);
        let e = resolve_in_root(&root, "/loop").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let e = resolve_in_root(&root, "/var/nope").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn size_of_regular_files_without_following_links() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("a/b")).unwrap();
        fs::write(d.join("x"), [0u8; 100]).unwrap();
        fs::write(d.join("a/y"), [0u8; 20]).unwrap();
        fs::write(d.join("a/b/z"), [0u8; 3]).unwrap();
        fs::hard_link(d.join("a/y"), d.join("a/b/y2")).unwrap();
        symlink("/etc", d.join("etc")).unwrap();
        symlink("x", d.join("x-link")).unwrap();
        let s = dir_size(d, 100).unwrap().unwrap();
        assert_eq!(s.bytes, 123);
        assert_eq!(s.entries, 8);
        assert_eq!(s.unreadable, 0);
        assert_eq!(dir_size(d, 7).unwrap(), None);
        assert_eq!(dir_size(&d.join("x"), 1).unwrap().unwrap().bytes, 100);
        assert!(dir_size(&d.join("nope"), 1).is_err());
    }

    /// A fake host with container process `pid`, its cgroup naming `ID`, and the collector's
    /// configuration snooping the container as `id` (with `elf_path`).
    struct Host {
        dir: tempfile::TempDir,
        config: Config,
    }

    impl Host {
        fn new(id: &str, elf_path: &str, processes: &str) -> Host {
            let json = format!(
                r#"{{"subitems":["con"],"params":{{"elfPath":"{elf_path}"}},
                    "snoopers":[{{"container":{{"id":"{id}"}}}}{processes}]}}"#
            );
            Host {
                dir: tempfile::tempdir().unwrap(),
                config: Config::offline_from("baseinfo", Some(&json)).unwrap(),
            }
        }

        fn process(&self, pid: u32, cgroup: &str) {
            let p = self.dir.path().join(format!("proc/{pid}"));
            fs::create_dir_all(p.join("root/var/log")).unwrap();
            fs::write(p.join("cgroup"), cgroup).unwrap();
        }

        fn log(&self, pid: u32, name: &str, len: usize) {
            let path = self
                .dir
                .path()
                .join(format!("proc/{pid}/root/var/log/{name}"));
            fs::write(path, vec![b'x'; len]).unwrap();
        }

        fn round(&self, c: &mut ConCollector, secs: u64) -> Report {
            let root = HostRoot::new(self.dir.path());
            let system = SystemInfo {
                clk_tck: 100,
                page_size: 4096,
                phys_pages: 1,
                cpus_configured: 1,
            };
            let ctx = Context {
                root: &root,
                config: &self.config,
                now: Duration::from_secs(secs),
                system: &system,
            };
            let mut out = Report::default();
            c.collect(&ctx, &mut out).unwrap();
            out
        }
    }

    #[test]
    fn rate_of_growth_and_shrinkage_after_a_suppressed_first_round() {
        let host = Host::new("0123456789ab", "/var/log", "");
        host.process(10, "0::/init.scope\n");
        host.process(20, &format!("0::/system.slice/docker-{ID}.scope\n"));
        host.log(20, "a.log", 1000);
        let mut c = ConCollector::default();
        let r = host.round(&mut c, 100);
        assert!(r.records.is_empty() && r.warnings.is_empty(), "{r:?}");
        host.log(20, "a.log", 3000);
        let r = host.round(&mut c, 110);
        assert_eq!(r.records[0].values, ["0123456789ab", "/var/log", "200.00"]);
        host.log(20, "a.log", 500);
        let r = host.round(&mut c, 115);
        assert_eq!(r.records[0].values[2], "-500.00");
    }

    #[test]
    fn a_snooped_process_of_the_container_is_used_and_replaced_when_it_exits() {
        let procs = format!(r#",{{"process":{{"pid":30,"containerId":"{ID}"}}}}"#);
        let host = Host::new(ID, "/var/log", &procs);
        let cgroup = format!("12:cpu:/docker/{ID}\n");
        host.process(30, &cgroup);
        host.log(30, "a", 10);
        let mut c = ConCollector::default();
        host.round(&mut c, 1);
        assert_eq!(c.pids.get(ID), Some(&30));
        // The process exits; another one of the container is found by the scan.
        fs::remove_dir_all(host.dir.path().join("proc/30")).unwrap();
        host.process(31, &cgroup);
        host.log(31, "a", 10);
        let r = host.round(&mut c, 2);
        assert_eq!(c.pids.get(ID), Some(&31));
        assert_eq!(r.records[0].values[2], "0.00");
    }

    #[test]
    fn nothing_without_elf_path_a_process_or_the_directory() {
        let host = Host::new("0123456789ab", "", "");
        let mut c = ConCollector::default();
        let r = host.round(&mut c, 1);
        assert_eq!(r.warnings[0].0, "elf_path");

        let host = Host::new("0123456789ab", "/var/log", "");
        let r = host.round(&mut c, 2);
        assert_eq!(r.warnings[0].0, "process:0123456789ab");

        let host = Host::new("0123456789ab", "/srv/none", "");
        host.process(20, &format!("0::/docker-{ID}.scope\n"));
        let r = host.round(&mut c, 3);
        assert_eq!(r.warnings[0].0, "dir:0123456789ab", "{r:?}");
        assert!(r.records.is_empty());
    }
}
