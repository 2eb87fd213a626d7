//! What the labels say of processes and containers, cached: a process is read from `/proc`
//! once, the first time a series names it; a container is asked of the runtimes once, off
//! the caller's thread (its names appear on the series once the runtime answered).
//!
//! [`ProcCache::refresh`], run every second, forgets the processes that exited (and the pids
//! once found missing that a new process now holds), and the containers no process or
//! series used for a minute; when a series named a container none of the cached processes
//! runs in, it reads every process to find it (at most every 10 s). A process that exits and whose pid is reused by another within
//! one refresh keeps the first one's labels until the next: pids wrap only after `pid_max`
//! (4,194,304 on 64-bit kernels), so this needs millions of processes started in a second.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};

use crate::containers::{ContainerLookup, ContainerMeta};
use crate::snooper::{parse_stat_start_ticks, read_process, ScanRoots};

/// The longest `cmdline` label, in bytes (the original's 127).
pub const CMDLINE_LABEL_MAX: usize = 127;

/// How long a container no series used is remembered, in refreshes (seconds).
const CONTAINER_IDLE_REFRESHES: u64 = 60;

/// How long after a runtime knew nothing of a container it is asked again, in refreshes.
const RETRY_REFRESHES: u64 = 30;

/// The least time between two scans of every process for a container a series named, in
/// refreshes: a series naming a container with no process here costs a scan this often.
const SCAN_REFRESHES: u64 = 10;

/// What the labels say of one process.
#[derive(Debug)]
pub struct ProcEntry {
    /// `/proc/<pid>/comm`.
    pub comm: String,
    /// `/proc/<pid>/cmdline`, NULs as spaces, at most 4095 bytes (what `proc_name` entries
    /// match).
    pub cmdline: String,
    /// When the process started, seconds since the epoch (0 when unknown).
    pub start_time: u64,
    /// The container it runs in.
    pub container: Option<Arc<ContainerEntry>>,
}

impl ProcEntry {
    /// The `cmdline` label: the command line's first [`CMDLINE_LABEL_MAX`] bytes.
    pub fn cmdline_label(&self) -> &str {
        let mut end = self.cmdline.len().min(CMDLINE_LABEL_MAX);
        while !self.cmdline.is_char_boundary(end) {
            end -= 1;
        }
        &self.cmdline[..end]
    }
}

/// What the labels say of one container.
#[derive(Debug)]
pub struct ContainerEntry {
    /// The full 64-hex id.
    pub full_id: String,
    /// The id as labels carry it: its first 12 hex digits, as the original.
    pub short_id: String,
    /// The pod's uid from the cgroup path, dashed.
    pub pod_uid: Option<String>,
    /// What the runtime said, once it answered, and the `pod` label made of it.
    meta: OnceLock<(ContainerMeta, Option<String>)>,
    /// The refresh at which it was last used, or when to ask the runtime again.
    last_used: AtomicU64,
    retry_at: AtomicU64,
}

impl ContainerEntry {
    fn new(full_id: &str, pod_uid: Option<String>) -> Self {
        ContainerEntry {
            full_id: full_id.to_owned(),
            short_id: full_id[..full_id.len().min(12)].to_owned(),
            pod_uid,
            meta: OnceLock::new(),
            last_used: AtomicU64::new(0),
            retry_at: AtomicU64::new(0),
        }
    }

    /// What the runtime said of the container, once it answered.
    pub fn meta(&self) -> Option<&ContainerMeta> {
        self.meta.get().map(|(meta, _)| meta)
    }

    /// The `pod` label, `<namespace>/<name>`, once the runtime gave both.
    pub fn pod(&self) -> Option<&str> {
        self.meta.get().and_then(|(_, pod)| pod.as_deref())
    }

    /// Keeps what the runtime said (the first answer).
    fn set_meta(&self, meta: ContainerMeta) {
        let pod = match (&meta.pod_namespace, &meta.pod_name) {
            (Some(namespace), Some(name)) => Some(format!("{namespace}/{name}")),
            _ => None,
        };
        let _ = self.meta.set((meta, pod));
    }

    /// The pod's uid: the runtime's, else the cgroup path's.
    pub fn pod_uid(&self) -> Option<&str> {
        (self.meta().and_then(|m| m.pod_uid.as_deref())).or(self.pod_uid.as_deref())
    }
}

/// The cache; see the module documentation.
pub struct ProcCache {
    roots: ScanRoots,
    /// By pid; `None`: no such process when it was looked for.
    procs: RwLock<HashMap<u32, Option<Arc<ProcEntry>>>>,
    /// By full id and by short id.
    containers: RwLock<Containers>,
    /// Containers waiting for the runtimes (None when no runtime lookup is configured).
    ask: Option<Mutex<Sender<Arc<ContainerEntry>>>>,
    /// Whether a series named a container no process of the cache runs in: the next refresh
    /// scans `/proc` for containers.
    want_scan: std::sync::atomic::AtomicBool,
    /// The refresh of the last such scan.
    last_scan: AtomicU64,
    refreshes: AtomicU64,
    boot_time: u64,
    ticks_per_second: u64,
}

#[derive(Default)]
struct Containers {
    by_full: HashMap<String, Arc<ContainerEntry>>,
    by_short: HashMap<String, Arc<ContainerEntry>>,
}

impl ProcCache {
    /// A cache reading `roots`, asking `lookup` about containers on a thread of its own.
    pub fn new(roots: ScanRoots, lookup: Option<Arc<dyn ContainerLookup>>) -> Self {
        let ask = lookup.map(|lookup| {
            let (tx, rx) = mpsc::channel::<Arc<ContainerEntry>>();
            let spawned = std::thread::Builder::new()
                .name("container-meta".into())
                .spawn(move || {
                    for entry in rx {
                        match lookup.lookup(&entry.full_id) {
                            Some(meta) => entry.set_meta(meta),
                            None => {
                                let now = entry.last_used.load(Ordering::Relaxed);
                                entry
                                    .retry_at
                                    .store(now + RETRY_REFRESHES, Ordering::Relaxed);
                            }
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!("no container metadata: cannot start its thread: {e}");
            }
            Mutex::new(tx)
        });
        let boot_time = std::fs::read_to_string(roots.proc_root.join("stat"))
            .ok()
            .and_then(|s| parse_btime(&s))
            .unwrap_or(0);
        // SAFETY: sysconf has no preconditions.
        let ticks = unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) };
        ProcCache {
            roots,
            procs: RwLock::default(),
            containers: RwLock::default(),
            ask,
            want_scan: Default::default(),
            last_scan: AtomicU64::new(0),
            refreshes: AtomicU64::new(1),
            boot_time,
            ticks_per_second: u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100),
        }
    }

    /// The process `pid`, read from `/proc` the first time.
    pub fn process(&self, pid: u32) -> Option<Arc<ProcEntry>> {
        if let Some(hit) = self.procs.read().get(&pid) {
            if let Some(c) = hit.as_ref().and_then(|p| p.container.as_ref()) {
                self.touch(c);
            }
            return hit.clone();
        }
        let entry = self.read(pid).map(Arc::new);
        self.procs.write().insert(pid, entry.clone());
        entry
    }

    /// The container whose id (full or the 12-digit short form, any case) is `id`.
    pub fn container(&self, id: &[u8]) -> Option<Arc<ContainerEntry>> {
        let id = std::str::from_utf8(id).ok()?.to_ascii_lowercase();
        let containers = self.containers.read();
        let hit = containers
            .by_short
            .get(&id)
            .or_else(|| containers.by_full.get(&id))
            .cloned();
        drop(containers);
        match &hit {
            Some(c) => self.touch(c),
            None => self.want_scan.store(true, Ordering::Relaxed),
        }
        hit
    }

    /// Notes that `c` was used in this refresh period; asks the runtimes about it if due.
    fn touch(&self, c: &Arc<ContainerEntry>) {
        let now = self.refreshes.load(Ordering::Relaxed);
        if c.last_used.swap(now, Ordering::Relaxed) != now && c.meta().is_none() {
            self.ask_when_due(c, now);
        }
    }

    fn ask_when_due(&self, c: &Arc<ContainerEntry>, now: u64) {
        let Some(ask) = &self.ask else { return };
        if c.retry_at.load(Ordering::Relaxed) > now {
            return;
        }
        // In flight: not asked again until the runtimes answered.
        c.retry_at.store(u64::MAX, Ordering::Relaxed);
        let _ = ask.lock().send(c.clone());
    }

    fn read(&self, pid: u32) -> Option<ProcEntry> {
        let dir = self.roots.proc_root.join(pid.to_string());
        let (info, _) = read_process(&dir, pid)?;
        let start_ticks = std::fs::read(dir.join("stat"))
            .ok()
            .and_then(|s| parse_stat_start_ticks(&s));
        let start_time = match (start_ticks, self.boot_time) {
            (Some(t), boot) if boot > 0 => boot + t / self.ticks_per_second,
            _ => 0,
        };
        let container = info
            .container_id
            .as_deref()
            .map(|id| self.container_entry(id, info.pod_id.clone()));
        Some(ProcEntry {
            comm: info.comm,
            cmdline: info.cmdline,
            start_time,
            container,
        })
    }

    /// The entry of container `full_id`, made (and handed to the runtimes) the first time.
    fn container_entry(&self, full_id: &str, pod_uid: Option<String>) -> Arc<ContainerEntry> {
        if let Some(c) = self.containers.read().by_full.get(full_id) {
            self.touch(c);
            return c.clone();
        }
        let mut containers = self.containers.write();
        let entry = containers
            .by_full
            .entry(full_id.to_owned())
            .or_insert_with(|| Arc::new(ContainerEntry::new(full_id, pod_uid)))
            .clone();
        containers
            .by_short
            .insert(entry.short_id.clone(), entry.clone());
        drop(containers);
        self.touch(&entry);
        entry
    }

    /// Forgets exited processes and idle containers; finds the containers series asked for.
    /// Called every second.
    pub fn refresh(&self) {
        let now = self.refreshes.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(pids) = gala_cgroup::pids(&self.roots.proc_root) else {
            return;
        };
        let live: HashSet<u32> = pids.collect();
        self.procs.write().retain(|pid, entry| match entry {
            // A process that exited goes; a pid found missing is looked for again once a
            // process holds it.
            Some(_) => live.contains(pid),
            None => !live.contains(pid),
        });
        let last = self.last_scan.load(Ordering::Relaxed);
        let scan_due = last == 0 || now.saturating_sub(last) >= SCAN_REFRESHES;
        if scan_due && self.want_scan.swap(false, Ordering::Relaxed) {
            self.last_scan.store(now, Ordering::Relaxed);
            for &pid in &live {
                if !self.procs.read().contains_key(&pid) {
                    self.process(pid);
                }
            }
        }
        let mut containers = self.containers.write();
        containers.by_full.retain(|_, c| {
            Arc::strong_count(c) > 2
                || now.saturating_sub(c.last_used.load(Ordering::Relaxed))
                    < CONTAINER_IDLE_REFRESHES
        });
        let Containers { by_full, by_short } = &mut *containers;
        by_short.retain(|_, c| by_full.contains_key(&c.full_id));
        let due: Vec<_> = by_full
            .values()
            .filter(|c| c.meta().is_none() && c.retry_at.load(Ordering::Relaxed) <= now)
            .cloned()
            .collect();
        drop(containers);
        for c in due {
            self.ask_when_due(&c, now);
        }
    }

    /// Waits until the runtimes answered for `full_id` or `timeout` passed (for the tests).
    #[cfg(test)]
    pub fn wait_meta(&self, full_id: &str, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            let c = self.containers.read().by_full.get(full_id).cloned();
            if c.is_some_and(|c| c.meta().is_some()) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        false
    }
}

/// `btime` (boot time, seconds since the epoch) from the text of `/proc/stat`.
pub fn parse_btime(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cmdline_label_is_cut_on_a_character() {
        let entry = |cmdline: String| ProcEntry {
            comm: String::new(),
            cmdline,
            start_time: 0,
            container: None,
        };
        let long = format!("{}é tail", "a".repeat(CMDLINE_LABEL_MAX - 1));
        assert_eq!(
            entry(long).cmdline_label(),
            "a".repeat(CMDLINE_LABEL_MAX - 1)
        );
        assert_eq!(entry("java -jar x".into()).cmdline_label(), "java -jar x");
    }

    #[test]
    fn btime_is_read() {
        assert_eq!(
            parse_btime("cpu 1 2\nbtime 1765000000\nprocesses 9\n"),
            Some(1765000000)
        );
        assert_eq!(parse_btime("cpu 1 2\n"), None);
    }

    #[test]
    fn this_process_is_read_once_and_forgotten_after_it_exits() {
        let cache = ProcCache::new(ScanRoots::default(), None);
        let me = cache.process(std::process::id()).expect("this process");
        assert_eq!(
            me.comm,
            crate::snooper::parse_comm(&std::fs::read("/proc/self/comm").unwrap())
        );
        assert!(me.cmdline_label().len() <= CMDLINE_LABEL_MAX);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(
            me.start_time > 1_600_000_000 && me.start_time <= now + 1,
            "{}",
            me.start_time
        );
        let again = cache.process(std::process::id()).unwrap();
        assert!(Arc::ptr_eq(&me, &again), "cached");

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert_eq!(cache.process(pid).unwrap().comm, "sleep");
        child.kill().unwrap();
        child.wait().unwrap();
        cache.refresh();
        assert!(cache.process(pid).is_none(), "gone after the refresh");
        assert!(
            cache.procs.read().get(&pid).is_some_and(|e| e.is_none()),
            "remembered missing"
        );
    }
}
