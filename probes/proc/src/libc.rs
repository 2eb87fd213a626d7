//! Where the snooped processes' libc is, and the resolver uprobes attached to each one: a
//! process's libc is the `libc.so.6` / `libc-*.so` / musl `ld-musl-*.so.1` mapping in
//! `/proc/<pid>/maps`, opened through `/proc/<pid>/root` so that a container's file is seen
//! from the host; a container's libc may also come from the configuration (`libc_path`).
//! Files are told apart by device and inode, so one libc reached by two paths is probed
//! once; its links are dropped when no snooped process or container uses it any more.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file, by device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    /// st_dev.
    pub dev: u64,
    /// st_ino.
    pub ino: u64,
}

impl FileId {
    /// The id of the file at `path`; `None` if it cannot be read.
    pub fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

/// Whether `name` (a file name without directories) is a C library that has the resolver.
pub fn is_libc_name(name: &str) -> bool {
    name == "libc.so.6"
        || name == "libc.so"
        || (name.starts_with("libc-") && name.ends_with(".so"))
        || (name.starts_with("ld-musl-") && name.ends_with(".so.1"))
}

/// The path of the libc mapped in a `/proc/<pid>/maps` text, as the process sees it.
pub fn libc_in_maps(maps: &str) -> Option<&str> {
    maps.lines().find_map(|line| {
        // address perms offset dev inode path (the path may hold spaces).
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(char::is_whitespace)?..];
        }
        let path = rest.trim();
        if !path.starts_with('/') || path.ends_with(" (deleted)") {
            return None;
        }
        let name = path.rsplit('/').next()?;
        is_libc_name(name).then_some(path)
    })
}

/// The host path of file `path` as process `pid` sees it (through its root directory).
pub fn host_path(proc_root: &Path, pid: u32, path: &str) -> PathBuf {
    proc_root
        .join(pid.to_string())
        .join("root")
        .join(path.trim_start_matches('/'))
}

/// The libc of process `pid` (host path and id), from `<proc_root>/<pid>/maps`.
pub fn process_libc(proc_root: &Path, pid: u32) -> Option<(FileId, PathBuf)> {
    let maps = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps")).ok()?;
    let path = host_path(proc_root, pid, libc_in_maps(&maps)?);
    Some((FileId::of(&path)?, path))
}

/// The uprobe links of every probed libc. `L` is the link type (libbpf's `Link`).
#[derive(Debug)]
pub struct LibcProbes<L> {
    attached: BTreeMap<FileId, (PathBuf, Vec<L>)>,
    /// Files whose attach failed, not retried while they stay wanted.
    failed: BTreeSet<FileId>,
    /// libc of each process seen, so that /proc is read once per process.
    by_pid: HashMap<u32, Option<(FileId, PathBuf)>>,
}

impl<L> Default for LibcProbes<L> {
    fn default() -> Self {
        LibcProbes {
            attached: BTreeMap::new(),
            failed: BTreeSet::new(),
            by_pid: HashMap::new(),
        }
    }
}

impl<L> LibcProbes<L> {
    /// The files probed now, with the path they were attached by.
    #[cfg(test)]
    pub fn attached(&self) -> impl Iterator<Item = (&FileId, &Path)> {
        self.attached.iter().map(|(id, (p, _))| (id, p.as_path()))
    }

    /// The libc files of `pids` (read from `/proc` once per pid, forgotten when the pid
    /// leaves the set) and of the container paths `extra`.
    pub fn wanted(
        &mut self,
        proc_root: &Path,
        pids: &BTreeSet<u32>,
        extra: &[PathBuf],
    ) -> BTreeMap<FileId, PathBuf> {
        self.by_pid.retain(|pid, _| pids.contains(pid));
        let mut out = BTreeMap::new();
        for pid in pids {
            let found = self
                .by_pid
                .entry(*pid)
                .or_insert_with(|| process_libc(proc_root, *pid));
            if let Some((id, path)) = found {
                out.entry(*id).or_insert_with(|| path.clone());
            }
        }
        for path in extra {
            if let Some(id) = FileId::of(path) {
                out.entry(id).or_insert_with(|| path.clone());
            }
        }
        out
    }

    /// Attaches to every file of `wanted` not yet probed (with `attach`) and drops the links
    /// of the files no longer wanted. Returns one log line per change or failure.
    pub fn sync(
        &mut self,
        wanted: &BTreeMap<FileId, PathBuf>,
        mut attach: impl FnMut(&Path) -> Result<Vec<L>, String>,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        self.failed.retain(|id| wanted.contains_key(id));
        let gone: Vec<FileId> = self
            .attached
            .keys()
            .filter(|id| !wanted.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            if let Some((path, _links)) = self.attached.remove(&id) {
                notes.push(format!("proc_dns: detached from {}", path.display()));
            }
        }
        for (id, path) in wanted {
            if self.attached.contains_key(id) || self.failed.contains(id) {
                continue;
            }
            match attach(path) {
                Ok(links) => {
                    notes.push(format!(
                        "proc_dns: {} uprobes on {}",
                        links.len(),
                        path.display()
                    ));
                    self.attached.insert(*id, (path.clone(), links));
                }
                Err(e) => {
                    notes.push(format!("proc_dns: cannot probe {}: {e}", path.display()));
                    self.failed.insert(*id);
                }
            }
        }
        notes
    }

    /// Drops every link (before the BPF object goes).
    pub fn clear(&mut self) {
        self.attached.clear();
        self.failed.clear();
        self.by_pid.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            let p = std::env::temp_dir().join(format!("taskprobe-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            Scratch(p)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const MAPS: &str = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 fe:01 1234   /usr/bin/my app
7f1c2a400000-7f1c2a428000 r--p 00000000 fe:01 5678                       /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a428000-7f1c2a5bd000 r-xp 00028000 fe:01 5678                       /usr/lib/x86_64-linux-gnu/libc.so.6
7ffd1c1d0000-7ffd1c1f1000 rw-p 00000000 00:00 0                          [stack]
";

    #[test]
    fn libc_is_found_in_maps() {
        assert_eq!(
            libc_in_maps(MAPS),
            Some("/usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(
            libc_in_maps("7f-8f r-xp 0 08:01 9 /lib64/libc-2.28.so\n"),
            Some("/lib64/libc-2.28.so")
        );
        assert_eq!(
            libc_in_maps("7f-8f r-xp 0 08:01 9 /lib/ld-musl-x86_64.so.1\n"),
            Some("/lib/ld-musl-x86_64.so.1")
        );
        // Not libc, a deleted file, an anonymous mapping, a short line.
        assert_eq!(
            libc_in_maps("7f-8f r-xp 0 08:01 9 /lib/libcrypt.so.1\n"),
            None
        );
        assert_eq!(
            libc_in_maps("7f-8f r-xp 0 08:01 9 /lib/libc.so.6 (deleted)\n"),
            None
        );
        assert_eq!(libc_in_maps("7f-8f rw-p 0 00:00 0 \n7f-8f\n"), None);
        assert!(!is_libc_name("libcap.so.2"));
    }

    #[test]
    fn paths_go_through_the_process_root() {
        assert_eq!(
            host_path(Path::new("/proc"), 42, "/usr/lib/libc.so.6"),
            PathBuf::from("/proc/42/root/usr/lib/libc.so.6")
        );
    }

    #[test]
    fn one_file_is_probed_once_and_released_when_unused() {
        let dir = Scratch::new("maps");
        let proc_root = dir.path().join("proc");
        // Two processes sharing one libc file, a third without libc.
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libc.so.6"), b"elf").unwrap();
        for pid in [1u32, 2, 3] {
            let p = proc_root.join(pid.to_string());
            std::fs::create_dir_all(&p).unwrap();
            std::os::unix::fs::symlink("/", p.join("root")).unwrap();
            let maps = if pid == 3 {
                String::new()
            } else {
                format!("7f-8f r-xp 0 08:01 9 {}\n", lib.join("libc.so.6").display())
            };
            std::fs::write(p.join("maps"), maps).unwrap();
        }
        let mut probes = LibcProbes::<u8>::default();
        let mut attaches = 0;
        let mut attach = |_: &Path| {
            attaches += 1;
            Ok(vec![1u8, 2])
        };
        let wanted = probes.wanted(&proc_root, &BTreeSet::from([1, 2, 3]), &[]);
        assert_eq!(wanted.len(), 1);
        let notes = probes.sync(&wanted, &mut attach);
        assert_eq!(notes.len(), 1, "{notes:?}");
        // The container path of the same file adds nothing.
        let wanted = probes.wanted(
            &proc_root,
            &BTreeSet::from([2]),
            &[lib.join("libc.so.6"), PathBuf::from("/no/such/libc.so.6")],
        );
        assert!(probes.sync(&wanted, &mut attach).is_empty());
        let wanted = probes.wanted(&proc_root, &BTreeSet::from([3]), &[]);
        let notes = probes.sync(&wanted, &mut attach);
        assert!(notes[0].starts_with("proc_dns: detached"), "{notes:?}");
        assert_eq!(probes.attached().count(), 0);
        assert_eq!(attaches, 1);
    }

    #[test]
    fn a_failed_file_is_not_retried_while_wanted() {
        let dir = Scratch::new("failed");
        let f = dir.path().join("libc.so.6");
        std::fs::write(&f, b"x").unwrap();
        let wanted = BTreeMap::from([(FileId::of(&f).unwrap(), f.clone())]);
        let mut probes = LibcProbes::<u8>::default();
        let mut tries = 0;
        for _ in 0..3 {
            probes.sync(&wanted, |_| {
                tries += 1;
                Err("no symbol".into())
            });
        }
        assert_eq!(tries, 1);
        probes.sync(&BTreeMap::new(), |_| Ok(vec![]));
        probes.sync(&wanted, |_| {
            tries += 1;
            Ok(vec![])
        });
        assert_eq!(tries, 2);
    }
}
