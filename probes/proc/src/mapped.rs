//! Which files the snooped processes map, and the uprobes attached to each one: a process's
//! libc (the `libc.so.6` / `libc-*.so` / musl `ld-musl-*.so.1` mapping, for `proc_dns`) or
//! its CPython interpreter (`libpython3*.so*`, else the `python3*` executable, for
//! `proc_pygc`), found in `/proc/<pid>/maps` and opened through `/proc/<pid>/root` so that a
//! container's file is seen from the host; a container's libc may also come from the
//! configuration (`libc_path`). Files are told apart by device and inode, so one file reached
//! by two paths is probed once; its links are dropped when no snooped process or container
//! uses it any more. With snooped processes listed, each is probed on its own (a uprobe
//! attached for one pid installs its breakpoint in that process only, so the others pay
//! nothing); a container's file, or the host's in blacklist mode, is probed for every process.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gala_probe_sdk::Level;

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

/// The paths mapped in a `/proc/<pid>/maps` text, in order, with repeats (the path may hold
/// spaces; deleted files and anonymous mappings are left out).
fn mapped_paths(maps: &str) -> impl Iterator<Item = &str> {
    maps.lines().filter_map(|line| {
        // address perms offset dev inode path
        let mut rest = line;
        for _ in 0..5 {
            rest = rest.trim_start();
            rest = &rest[rest.find(char::is_whitespace)?..];
        }
        let path = rest.trim();
        (path.starts_with('/') && !path.ends_with(" (deleted)")).then_some(path)
    })
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The path of the libc mapped in a `/proc/<pid>/maps` text, as the process sees it.
pub fn libc_in_maps(maps: &str) -> Option<&str> {
    mapped_paths(maps).find(|p| is_libc_name(file_name(p)))
}

/// The file holding CPython's interpreter in a `/proc/<pid>/maps` text: `libpython3*.so*`
/// (a shared build: the USDT probes are in the library), else the `python3*` executable
/// (a static build, as Debian's).
pub fn python_in_maps(maps: &str) -> Option<&str> {
    let is_digits = |s: &str| s.chars().all(|c| c.is_ascii_digit() || c == '.');
    mapped_paths(maps)
        .find(|p| {
            file_name(p)
                .strip_prefix("libpython3")
                .is_some_and(|rest| rest.contains(".so"))
        })
        .or_else(|| {
            mapped_paths(maps).find(|p| {
                file_name(p)
                    .strip_prefix("python3")
                    .is_some_and(|rest| is_digits(rest.trim_end_matches('d')))
            })
        })
}

/// What kind of file a [`MappedProbes`] probes.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The sub-item, for log lines.
    pub subitem: &'static str,
    /// The file's path in a `/proc/<pid>/maps` text.
    pub find: fn(&str) -> Option<&str>,
}

/// The C library (resolver uprobes of `proc_dns`).
pub const LIBC: Target = Target {
    subitem: "proc_dns",
    find: libc_in_maps,
};

/// The CPython interpreter (USDT probes of `proc_pygc`).
pub const PYTHON: Target = Target {
    subitem: "proc_pygc",
    find: python_in_maps,
};

/// The host path of file `path` as process `pid` sees it (through its root directory).
pub fn host_path(proc_root: &Path, pid: u32, path: &str) -> PathBuf {
    proc_root
        .join(pid.to_string())
        .join("root")
        .join(path.trim_start_matches('/'))
}

/// The `target` file of process `pid` (host path and id), from `<proc_root>/<pid>/maps`.
pub fn process_file(proc_root: &Path, pid: u32, target: Target) -> Option<(FileId, PathBuf)> {
    let maps = std::fs::read_to_string(proc_root.join(pid.to_string()).join("maps")).ok()?;
    let path = host_path(proc_root, pid, (target.find)(&maps)?);
    Some((FileId::of(&path)?, path))
}

/// Where uprobes are attached: a file, for one process or (`pid` `None`) for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Site {
    /// The file.
    pub file: FileId,
    /// The process the probes fire in; `None`: every process that maps the file.
    pub pid: Option<u32>,
}

/// The uprobe links of every probed file of one [`Target`]. `L` is the link type (libbpf's
/// `Link`).
#[derive(Debug)]
pub struct MappedProbes<L> {
    target: Target,
    attached: BTreeMap<Site, (PathBuf, Vec<L>)>,
    /// Files whose attach failed, not retried while they stay wanted.
    failed: BTreeSet<FileId>,
    /// The file of each process seen, so that /proc is read once per process.
    by_pid: HashMap<u32, Option<(FileId, PathBuf)>>,
}

impl<L> MappedProbes<L> {
    /// No file probed yet.
    pub fn new(target: Target) -> Self {
        MappedProbes {
            target,
            attached: BTreeMap::new(),
            failed: BTreeSet::new(),
            by_pid: HashMap::new(),
        }
    }
    /// The sites probed now, with the path they were attached by.
    #[cfg(test)]
    pub fn attached(&self) -> impl Iterator<Item = (&Site, &Path)> {
        self.attached
            .iter()
            .map(|(site, (p, _))| (site, p.as_path()))
    }

    /// The files of `pids` (read from `/proc` once per pid, forgotten when the pid leaves
    /// the set), each for its pid if `per_pid` and for every process otherwise, and the
    /// paths `extra`, for every process.
    pub fn wanted(
        &mut self,
        proc_root: &Path,
        pids: &BTreeSet<u32>,
        extra: &[PathBuf],
        per_pid: bool,
    ) -> BTreeMap<Site, PathBuf> {
        self.by_pid.retain(|pid, _| pids.contains(pid));
        let mut out = BTreeMap::new();
        for pid in pids {
            let found = self
                .by_pid
                .entry(*pid)
                .or_insert_with(|| process_file(proc_root, *pid, self.target));
            if let Some((file, path)) = found {
                let site = Site {
                    file: *file,
                    pid: per_pid.then_some(*pid),
                };
                out.entry(site).or_insert_with(|| path.clone());
            }
        }
        for path in extra {
            if let Some(file) = FileId::of(path) {
                let site = Site { file, pid: None };
                out.entry(site).or_insert_with(|| path.clone());
            }
        }
        out
    }

    /// Attaches at every site of `wanted` not yet probed (with `attach`, given the file and
    /// the pid) and drops the links of the sites no longer wanted. A file whose attach
    /// failed is not tried again, for any pid, while it stays wanted. Returns every change,
    /// for the log.
    pub fn sync<E>(
        &mut self,
        wanted: &BTreeMap<Site, PathBuf>,
        mut attach: impl FnMut(&Path, Option<u32>) -> Result<Vec<L>, E>,
    ) -> Vec<Change<E>> {
        let mut changes = Vec::new();
        let subitem = self.target.subitem;
        self.failed
            .retain(|file| wanted.keys().any(|site| site.file == *file));
        let gone: Vec<Site> = self
            .attached
            .keys()
            .filter(|site| !wanted.contains_key(site))
            .copied()
            .collect();
        for site in gone {
            if let Some((path, _links)) = self.attached.remove(&site) {
                changes.push(Change::Detached {
                    subitem,
                    path,
                    pid: site.pid,
                });
            }
        }
        for (site, path) in wanted {
            if self.attached.contains_key(site) || self.failed.contains(&site.file) {
                continue;
            }
            match attach(path, site.pid) {
                Ok(links) => {
                    changes.push(Change::Attached {
                        subitem,
                        path: path.clone(),
                        pid: site.pid,
                        links: links.len(),
                    });
                    self.attached.insert(*site, (path.clone(), links));
                }
                Err(error) => {
                    changes.push(Change::Failed {
                        subitem,
                        path: path.clone(),
                        error,
                    });
                    self.failed.insert(site.file);
                }
            }
        }
        changes
    }

    /// Drops every link (before the BPF object goes).
    pub fn clear(&mut self) {
        self.attached.clear();
        self.failed.clear();
        self.by_pid.clear();
    }
}

/// What [`MappedProbes::sync`] did at one site, for the log; `E` is the attach error.
#[derive(Debug)]
pub enum Change<E> {
    /// Uprobes were attached.
    Attached {
        /// The sub-item they serve.
        subitem: &'static str,
        /// The file probed.
        path: PathBuf,
        /// Only in this process (`None`: in every process).
        pid: Option<u32>,
        /// How many links.
        links: usize,
    },
    /// The file is no longer wanted: its uprobes are gone.
    Detached {
        /// The sub-item they served.
        subitem: &'static str,
        /// The file.
        path: PathBuf,
        /// The process they were for (`None`: every process).
        pid: Option<u32>,
    },
    /// Attaching failed; the file is not retried while it stays wanted.
    Failed {
        /// The sub-item.
        subitem: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        error: E,
    },
}

impl<E> Change<E> {
    /// The log level of the change: a failure degrades the sub-item, the rest is progress.
    pub fn level(&self) -> Level {
        match self {
            Change::Failed { .. } => Level::Warn,
            Change::Attached { .. } | Change::Detached { .. } => Level::Info,
        }
    }
}

impl<E: std::fmt::Display> std::fmt::Display for Change<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Attached {
                subitem,
                path,
                pid,
                links,
            } => write!(
                f,
                "{subitem}: {links} uprobes on {}{}",
                path.display(),
                for_pid(*pid)
            ),
            Change::Detached { subitem, path, pid } => write!(
                f,
                "{subitem}: detached from {}{}",
                path.display(),
                for_pid(*pid)
            ),
            Change::Failed {
                subitem,
                path,
                error,
            } => write!(f, "{subitem}: cannot probe {}: {error}", path.display()),
        }
    }
}

/// " for pid N" in a log line, or nothing for a site of every process.
fn for_pid(pid: Option<u32>) -> String {
    pid.map(|p| format!(" for pid {p}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The attach error of the tests.
    type E = &'static str;

    /// The changes as log lines.
    fn lines(changes: Vec<Change<E>>) -> Vec<String> {
        changes.iter().map(ToString::to_string).collect()
    }

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
    fn python_is_found_in_maps_library_first() {
        // A static build (Debian): the executable holds the interpreter.
        assert_eq!(
            python_in_maps(
                "55-66 r-xp 0 fe:01 1 /usr/bin/python3.11\n7f-8f r-xp 0 fe:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
            ),
            Some("/usr/bin/python3.11")
        );
        // A shared build (Fedora, openEuler): the library does.
        assert_eq!(
            python_in_maps(
                "55-66 r-xp 0 fe:01 1 /usr/bin/python3.9\n7f-8f r-xp 0 fe:01 3 /usr/lib64/libpython3.9.so.1.0\n"
            ),
            Some("/usr/lib64/libpython3.9.so.1.0")
        );
        assert_eq!(
            python_in_maps("55-66 r-xp 0 fe:01 1 /opt/py/bin/python3\n"),
            Some("/opt/py/bin/python3")
        );
        // Not an interpreter: a python-named tool, python 2, a module.
        for other in [
            "/usr/bin/python3-config",
            "/usr/bin/python2.7",
            "/usr/lib/python3/dist-packages/_cffi_backend.so",
        ] {
            assert_eq!(
                python_in_maps(&format!("55-66 r-xp 0 fe:01 1 {other}\n")),
                None
            );
        }
        assert_eq!(
            libc_in_maps("55-66 r-xp 0 fe:01 1 /usr/bin/python3.11\n"),
            None
        );
    }

    #[test]
    fn paths_go_through_the_process_root() {
        assert_eq!(
            host_path(Path::new("/proc"), 42, "/usr/lib/libc.so.6"),
            PathBuf::from("/proc/42/root/usr/lib/libc.so.6")
        );
    }

    /// A `/proc` with processes 1 and 2 sharing one libc file and 3 without one; returns
    /// the proc root and the library.
    fn fixture(dir: &Scratch) -> (PathBuf, PathBuf) {
        let proc_root = dir.path().join("proc");
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
        (proc_root, lib.join("libc.so.6"))
    }

    #[test]
    fn one_file_is_probed_once_and_released_when_unused() {
        let dir = Scratch::new("maps");
        let (proc_root, libc) = fixture(&dir);
        let mut probes = MappedProbes::<u8>::new(LIBC);
        let mut attaches = Vec::new();
        let mut attach = |_: &Path, pid: Option<u32>| -> Result<Vec<u8>, E> {
            attaches.push(pid);
            Ok(vec![1u8, 2])
        };
        let wanted = probes.wanted(&proc_root, &BTreeSet::from([1, 2, 3]), &[], false);
        assert_eq!(wanted.len(), 1);
        let notes = lines(probes.sync(&wanted, &mut attach));
        assert_eq!(notes.len(), 1, "{notes:?}");
        // The container path of the same file adds nothing.
        let wanted = probes.wanted(
            &proc_root,
            &BTreeSet::from([2]),
            &[libc, PathBuf::from("/no/such/libc.so.6")],
            false,
        );
        assert!(probes.sync(&wanted, &mut attach).is_empty());
        let wanted = probes.wanted(&proc_root, &BTreeSet::from([3]), &[], false);
        let notes = lines(probes.sync(&wanted, &mut attach));
        assert!(notes[0].starts_with("proc_dns: detached"), "{notes:?}");
        assert_eq!(probes.attached().count(), 0);
        assert_eq!(attaches, [None]);
    }

    #[test]
    fn per_pid_each_process_is_probed_on_its_own() {
        let dir = Scratch::new("perpid");
        let (proc_root, libc) = fixture(&dir);
        let mut probes = MappedProbes::<u8>::new(LIBC);
        let mut attaches = Vec::new();
        let mut attach = |_: &Path, pid: Option<u32>| -> Result<Vec<u8>, E> {
            attaches.push(pid);
            Ok(vec![1u8])
        };
        let wanted = probes.wanted(&proc_root, &BTreeSet::from([1, 2, 3]), &[], true);
        let notes = lines(probes.sync(&wanted, &mut attach));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].ends_with(" for pid 1"), "{notes:?}");
        // Pid 1 leaves; a container's copy of the file is probed for every process.
        let wanted = probes.wanted(&proc_root, &BTreeSet::from([2]), &[libc], true);
        let notes = lines(probes.sync(&wanted, &mut attach));
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("detached") && notes[0].ends_with(" for pid 1"));
        assert_eq!(attaches, [Some(1), Some(2), None]);
        let pids: Vec<Option<u32>> = probes.attached().map(|(s, _)| s.pid).collect();
        assert_eq!(pids, [None, Some(2)]);
    }

    #[test]
    fn a_failed_file_is_not_retried_while_wanted() {
        let dir = Scratch::new("failed");
        let f = dir.path().join("libc.so.6");
        std::fs::write(&f, b"x").unwrap();
        let file = FileId::of(&f).unwrap();
        let wanted = BTreeMap::from([
            (Site { file, pid: Some(1) }, f.clone()),
            (Site { file, pid: Some(2) }, f.clone()),
        ]);
        let mut probes = MappedProbes::<u8>::new(LIBC);
        let mut tries = 0;
        for _ in 0..3 {
            let changes = probes.sync(&wanted, |_, _| -> Result<Vec<u8>, E> {
                tries += 1;
                Err("no symbol")
            });
            assert!(changes.iter().all(|c| c.level() == Level::Warn));
        }
        assert_eq!(tries, 1, "not for the other pid either");
        probes.sync(&BTreeMap::new(), |_, _| -> Result<Vec<u8>, E> {
            Ok(vec![])
        });
        let changes = probes.sync(&wanted, |_, _| -> Result<Vec<u8>, E> {
            tries += 1;
            Ok(vec![])
        });
        assert!(changes.iter().all(|c| c.level() == Level::Info));
        assert_eq!(tries, 3);
    }
}
