//! Sub-item `fs`: block and inode usage of each mounted filesystem as `df` and `df -i` show
//! it, from the mount table (`mountinfo`) and `statvfs(2)`, without shell-outs; table
//! `system_df`. Absolute values, reported from the first round.
//!
//! Pseudo and container-internal filesystems are skipped by type and mount point (the
//! defaults of node_exporter's filesystem collector), bind mounts of a filesystem already
//! reported are skipped as `df` does, and so are filesystems with no blocks. `statvfs` runs
//! with a deadline so that a hung network mount cannot stall the whole probe.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::collector::{Collector, Context, Report};
use crate::error::CollectError;
use crate::record;

pub use gala_cgroup::mountinfo::{parse_line as parse_mountinfo_line, unescape_octal, Mount};

/// Filesystem types never reported: kernel pseudo filesystems, and images and overlays
/// whose usage is not the host's (node_exporter's default `fs-types-exclude`). `autofs` must
/// never be stat'ed: that would trigger the automount.
pub const EXCLUDED_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// Whether a mount point is never reported: `/dev`, `/proc`, `/sys` and below, systemd's
/// per-service credentials, and the mounts container engines make for their containers
/// (node_exporter's default `mount-points-exclude`). `/var/lib/docker` itself, often a data
/// disk of its own, is reported.
pub fn excluded_mount_point(mount_point: &str) -> bool {
    let at_or_below = |dir: &str| {
        mount_point
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    let strictly_below = |dir: &str| {
        mount_point
            .strip_prefix(dir)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|rest| !rest.is_empty())
    };
    ["/dev", "/proc", "/sys"].into_iter().any(at_or_below)
        || [
            "/run/credentials",
            "/var/lib/docker",
            "/var/lib/containers/storage",
        ]
        .into_iter()
        .any(strictly_below)
}

/// Whether `path` is `dir` or below it.
fn is_within(path: &str, dir: &str) -> bool {
    dir == "/"
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The mounts `system_df` reports, in mount-table order:
/// * of several mounts on one path only the last, which hides the others;
/// * none of an [excluded type](EXCLUDED_FS_TYPES) or [mount point](excluded_mount_point);
/// * of the mounts of one filesystem (`device`), the one of its root nearest `/` (as `df`),
///   and a bind mount only if it shows a part of the filesystem no kept mount shows (btrfs
///   subvolumes `/@` and `/@home` are both kept; `/data` and a bind of `/data/logs` are one).
pub fn select(mounts: &[Mount]) -> Vec<&Mount> {
    let mut last_on: HashMap<&str, usize> = HashMap::new();
    for (i, m) in mounts.iter().enumerate() {
        last_on.insert(&m.mount_point, i);
    }
    let mut candidates: Vec<usize> = (0..mounts.len())
        .filter(|&i| {
            let m = &mounts[i];
            last_on.get(m.mount_point.as_str()) == Some(&i)
                && !EXCLUDED_FS_TYPES.contains(&m.fstype.as_str())
                && !excluded_mount_point(&m.mount_point)
        })
        .collect();
    candidates.sort_by_key(|&i| (mounts[i].root.len(), mounts[i].mount_point.len(), i));
    let mut shown: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut keep = vec![false; mounts.len()];
    for i in candidates {
        let m = &mounts[i];
        let roots = shown.entry(m.device.as_str()).or_default();
        if !roots.iter().any(|r| is_within(&m.root, r)) {
            roots.push(&m.root);
            keep[i] = true;
        }
    }
    mounts
        .iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|(m, _)| m)
        .collect()
}

/// What `statvfs(2)` says of a filesystem; block counts are in units of `fragment_size`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    /// `f_frsize` (`f_bsize` if that is 0).
    pub fragment_size: u64,
    /// `f_blocks`.
    pub blocks: u64,
    /// `f_bfree`: free blocks, root's reserve included.
    pub blocks_free: u64,
    /// `f_bavail`: blocks free for unprivileged users.
    pub blocks_available: u64,
    /// `f_files`: inodes (0 where the filesystem has no fixed number, e.g. btrfs).
    pub files: u64,
    /// `f_ffree`: free inodes.
    pub files_free: u64,
}

/// How the usage of a mounted filesystem is measured: [`Statvfs`] on a live system.
pub trait FsStat: Send + Sync {
    /// The usage of the filesystem mounted at `path`.
    fn stat(&self, path: &Path) -> io::Result<FsUsage>;
}

/// `statvfs(2)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Statvfs;

impl FsStat for Statvfs {
    // fsblkcnt_t and c_ulong are u64 on 64-bit Linux, not everywhere.
    #[allow(clippy::useless_conversion)]
    fn stat(&self, path: &Path) -> io::Result<FsUsage> {
        let s = nix::sys::statvfs::statvfs(path).map_err(io::Error::from)?;
        let frsize = u64::from(s.fragment_size());
        Ok(FsUsage {
            fragment_size: if frsize > 0 {
                frsize
            } else {
                u64::from(s.block_size())
            },
            blocks: u64::from(s.blocks()),
            blocks_free: u64::from(s.blocks_free()),
            blocks_available: u64::from(s.blocks_available()),
            files: u64::from(s.files()),
            files_free: u64::from(s.files_free()),
        })
    }
}

/// One `system_df` row in `df` units: 1 KiB blocks and whole percents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DfRow {
    /// Inodes in total (`df -i` Inodes).
    pub inodes: u64,
    /// Inodes in use.
    pub iused: u64,
    /// Inodes free.
    pub ifree: u64,
    /// IUsed / Inodes, percent rounded up.
    pub iuse_per: u64,
    /// Size, KiB (`df` 1K-blocks).
    pub blocks: u64,
    /// Used, KiB: blocks − free blocks (root's reserve counts as free space here).
    pub used: u64,
    /// Available to unprivileged users, KiB.
    pub free: u64,
    /// Used / (Used + Available), percent rounded up: 100 when users cannot write any more.
    pub use_per: u64,
}

/// `count` units of `unit` bytes in KiB, rounded up as `df` does.
fn kib(count: u64, unit: u64) -> u64 {
    let bytes = u128::from(count) * u128::from(unit);
    u64::try_from(bytes.div_ceil(1024)).unwrap_or(u64::MAX)
}

/// `part / (part + rest) * 100` rounded up to a whole percent, as `df`; 0 when both are 0.
fn ceil_percent(part: u64, rest: u64) -> u64 {
    let whole = u128::from(part) + u128::from(rest);
    if whole == 0 {
        return 0;
    }
    u64::try_from((u128::from(part) * 100).div_ceil(whole)).unwrap_or(100)
}

impl DfRow {
    /// The row `df` and `df -i` print for `u`.
    pub fn from_usage(u: &FsUsage) -> DfRow {
        let used_blocks = u.blocks.saturating_sub(u.blocks_free);
        let iused = u.files.saturating_sub(u.files_free);
        DfRow {
            inodes: u.files,
            iused,
            ifree: u.files_free.min(u.files),
            iuse_per: ceil_percent(iused, u.files_free.min(u.files)),
            blocks: kib(u.blocks, u.fragment_size),
            used: kib(used_blocks, u.fragment_size),
            free: kib(u.blocks_available, u.fragment_size),
            use_per: ceil_percent(used_blocks, u.blocks_available),
        }
    }
}

/// How long one `statvfs` may take before its mount is set aside (node_exporter's
/// `mount-timeout`).
pub const STAT_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of one `statvfs` call.
enum StatOutcome {
    Done(io::Result<FsUsage>),
    /// No answer within the deadline (now, or a call of an earlier round still hangs).
    Hung,
}

/// The `fs` collector.
pub struct FsCollector {
    stat: Arc<dyn FsStat>,
    timeout: Duration,
    /// Paths whose `statvfs` has not returned yet; they are not stat'ed again until it does.
    hung: Arc<Mutex<HashSet<PathBuf>>>,
}

impl Default for FsCollector {
    fn default() -> Self {
        FsCollector::new(Arc::new(Statvfs), STAT_TIMEOUT)
    }
}

impl FsCollector {
    /// A collector measuring with `stat`, giving each call `timeout`.
    pub fn new(stat: Arc<dyn FsStat>, timeout: Duration) -> Self {
        FsCollector {
            stat,
            timeout,
            hung: Arc::default(),
        }
    }

    /// Runs `stat` on a thread of its own, so that a call that never returns (a dead NFS
    /// server) costs one thread and one deadline, not the probe.
    fn stat_within_deadline(&self, path: &Path) -> StatOutcome {
        {
            let mut hung = self.hung.lock().unwrap_or_else(PoisonError::into_inner);
            if !hung.insert(path.to_owned()) {
                return StatOutcome::Hung;
            }
        }
        let (tx, rx) = mpsc::channel();
        let (stat, hung, owned) = (
            Arc::clone(&self.stat),
            Arc::clone(&self.hung),
            path.to_owned(),
        );
        let spawned = std::thread::Builder::new()
            .name("baseinfo-statvfs".into())
            .spawn(move || {
                let result = stat.stat(&owned);
                // Cleared before the answer is sent: an answer in time leaves nothing behind.
                hung.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&owned);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            self.hung
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(path);
            return StatOutcome::Done(Err(e));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(result) => StatOutcome::Done(result),
            Err(_) => StatOutcome::Hung,
        }
    }
}

/// The mount table of the namespace whose paths `statvfs` resolves: our own when reading the
/// live root, the host's init's when the host is mounted elsewhere (`GOPHER_HOST_PATH`).
fn mountinfo_path(root: &Path) -> &'static str {
    if root == Path::new("/") {
        "/proc/self/mountinfo"
    } else {
        "/proc/1/mountinfo"
    }
}

/// Whether a value would break the record line (values cannot hold `|` or line breaks).
fn breaks_record(value: &str) -> bool {
    value.contains(['|', '\n', '\r'])
}

impl Collector for FsCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let file = mountinfo_path(ctx.root.root());
        let text = ctx.root.read(file)?;
        let mut unparsable = 0;
        let mut mounts = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match parse_mountinfo_line(line) {
                Some(m)
                    if [&m.mount_point, &m.source, &m.fstype]
                        .iter()
                        .any(|v| breaks_record(v)) =>
                {
                    out.warn(
                        format!("unprintable:{}", m.mount_point),
                        format!(
                            "mount {:?} ({:?} on {:?}) is not reported: record values cannot hold '|' or line breaks",
                            m.mount_point, m.fstype, m.source
                        ),
                    );
                }
                Some(m) => mounts.push(m),
                None => unparsable += 1,
            }
        }
        if unparsable > 0 {
            out.warn(
                "mountinfo",
                format!(
                    "{}: {unparsable} unparsable lines skipped",
                    ctx.root.path(file).display()
                ),
            );
        }
        for m in select(&mounts) {
            let path = ctx.root.path(&m.mount_point);
            let usage = match self.stat_within_deadline(&path) {
                StatOutcome::Done(Ok(usage)) => usage,
                StatOutcome::Done(Err(e)) => {
                    out.warn(
                        format!("statvfs:{}", m.mount_point),
                        format!("statvfs {}: {e}", path.display()),
                    );
                    continue;
                }
                StatOutcome::Hung => {
                    out.warn(
                        format!("hung:{}", m.mount_point),
                        format!(
                            "statvfs {} has not returned within {:?}; the mount is skipped until it does",
                            path.display(),
                            self.timeout
                        ),
                    );
                    continue;
                }
            };
            if usage.blocks == 0 {
                // No size, as df hides it: a pseudo filesystem not in the exclusion list.
                continue;
            }
            let row = DfRow::from_usage(&usage);
            let mp = m.mount_point.as_str();
            record!(
                out,
                "system_df",
                mp,
                if m.read_only { "ro" } else { "rw" },
                m.source,
                m.fstype,
                row.inodes,
                row.iused,
                row.ifree,
                row.iuse_per,
                row.blocks,
                row.used,
                row.free,
                row.use_per
            );
            if ctx.above_upper_thr(row.iuse_per as f64) {
                out.event(
                    "fs",
                    mp,
                    "IUsePer",
                    m.source.as_str(),
                    format!("too many inodes consumed: {}%", row.iuse_per),
                );
            }
            if ctx.above_upper_thr(row.use_per as f64) {
                out.event(
                    "fs",
                    mp,
                    "UsePer",
                    m.source.as_str(),
                    format!("too many blocks used: {}%", row.use_per),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::SystemInfo;
    use crate::root::HostRoot;
    use gala_probe_sdk::Config;

    fn mount(device: &str, root: &str, mount_point: &str, fstype: &str) -> Mount {
        Mount {
            device: device.into(),
            root: root.into(),
            mount_point: mount_point.into(),
            read_only: false,
            fstype: fstype.into(),
            source: "/dev/x".into(),
            super_options: "rw".into(),
        }
    }

    #[test]
    fn excluded_mount_points() {
        for mp in [
            "/dev",
            "/dev/shm",
            "/proc",
            "/proc/sys/fs/binfmt_misc",
            "/sys",
            "/sys/fs/cgroup",
            "/run/credentials/getty@tty1.service",
            "/var/lib/docker/overlay2/abc/merged",
            "/var/lib/containers/storage/overlay",
        ] {
            assert!(excluded_mount_point(mp), "{mp}");
        }
        for mp in [
            "/",
            "/devices",
            "/system",
            "/run",
            "/run/credentials",
            "/var/lib/docker",
            "/var/lib/containers",
            "/home",
        ] {
            assert!(!excluded_mount_point(mp), "{mp}");
        }
    }

    #[test]
    fn selection_as_df_does() {
        let mounts = [
            mount("8:2", "/", "/", "ext4"),
            mount("0:21", "/", "/proc", "proc"),
            mount("0:5", "/", "/dev", "devtmpfs"),
            mount("253:0", "/logs", "/var/log/app", "xfs"),
            mount("253:0", "/", "/data", "xfs"),
            mount("253:0", "/", "/srv/data", "xfs"),
            mount("0:40", "/@", "/btr", "btrfs"),
            mount("0:40", "/@home", "/home", "btrfs"),
            mount("0:40", "/@home/alice", "/alice", "btrfs"),
            mount("8:17", "/", "/mnt/x", "ext4"),
            mount("0:60", "/", "/mnt/x", "tmpfs"),
            mount("0:70", "/", "/tmp", "tmpfs"),
            mount("0:80", "/", "/var/lib/docker/overlay2/a/merged", "xfs"),
        ];
        let got: Vec<&str> = select(&mounts)
            .iter()
            .map(|m| m.mount_point.as_str())
            .collect();
        assert_eq!(got, ["/", "/data", "/btr", "/home", "/mnt/x", "/tmp"]);
        // The tmpfs on top of /mnt/x is the one reported.
        assert_eq!(select(&mounts)[4].fstype, "tmpfs");
        assert!(select(&[]).is_empty());
    }

    #[test]
    fn df_units_and_rounding() {
        let u = FsUsage {
            fragment_size: 4096,
            blocks: 1000,
            blocks_free: 300,
            blocks_available: 250,
            files: 1000,
            files_free: 999,
        };
        assert_eq!(
            DfRow::from_usage(&u),
            DfRow {
                inodes: 1000,
                iused: 1,
                ifree: 999,
                iuse_per: 1,
                blocks: 4000,
                used: 2800,
                free: 1000,
                // 700 / 950 = 73.7 %: rounded up.
                use_per: 74,
            }
        );
        // 512-byte fragments: KiB rounded up; no inode table (btrfs): zeros.
        let small = FsUsage {
            fragment_size: 512,
            blocks: 3,
            blocks_free: 3,
            blocks_available: 0,
            files: 0,
            files_free: 0,
        };
        let row = DfRow::from_usage(&small);
        assert_eq!((row.blocks, row.used, row.free), (2, 0, 0));
        assert_eq!((row.inodes, row.iuse_per, row.use_per), (0, 0, 0));
        // The reserve exhausted: users see 100 %.
        let full = FsUsage {
            blocks_available: 0,
            blocks_free: 50,
            ..u
        };
        assert_eq!(DfRow::from_usage(&full).use_per, 100);
    }

    /// Answers from a table; `/slow` blocks until `release` is dropped.
    struct TableStat {
        usage: HashMap<PathBuf, FsUsage>,
        gate: Mutex<()>,
    }

    impl FsStat for TableStat {
        fn stat(&self, path: &Path) -> io::Result<FsUsage> {
            if path.ends_with("slow") {
                let _wait = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
            }
            self.usage
                .get(path)
                .copied()
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
        }
    }

    #[test]
    fn a_hung_statvfs_sets_its_mount_aside_until_it_returns() {
        let stat = Arc::new(TableStat {
            usage: HashMap::from([(PathBuf::from("/r/slow"), FsUsage::default())]),
            gate: Mutex::new(()),
        });
        let collector = FsCollector::new(stat.clone(), Duration::from_millis(20));
        let gate = stat.gate.lock().unwrap();
        let slow = Path::new("/r/slow");
        assert!(matches!(
            collector.stat_within_deadline(slow),
            StatOutcome::Hung
        ));
        // Still pending: not called again.
        assert!(matches!(
            collector.stat_within_deadline(slow),
            StatOutcome::Hung
        ));
        assert!(matches!(
            collector.stat_within_deadline(Path::new("/r/other")),
            StatOutcome::Done(Err(_))
        ));
        drop(gate);
        let mut answered = false;
        for _ in 0..200 {
            if let StatOutcome::Done(Ok(_)) = collector.stat_within_deadline(slow) {
                answered = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(answered);
    }

    #[test]
    fn collects_under_the_host_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/1")).unwrap();
        std::fs::write(
            dir.path().join("proc/1/mountinfo"),
            "22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw\n\
             23 22 0:21 / /proc rw - proc proc rw\n\
             24 22 8:17 / /a|b rw - ext4 /dev/sdb1 rw\n\
             25 22 8:18 / /empty rw - fuse.lxcfs lxcfs rw\n\
             26 22 8:19 / /gone rw - ext4 /dev/sdb3 rw\n\
             garbage\n",
        )
        .unwrap();
        let root = HostRoot::new(dir.path());
        let full = FsUsage {
            fragment_size: 4096,
            blocks: 100,
            blocks_free: 5,
            blocks_available: 0,
            files: 10,
            files_free: 1,
        };
        let stat = Arc::new(TableStat {
            usage: HashMap::from([
                (root.path("/"), full),
                (root.path("/empty"), FsUsage::default()),
            ]),
            gate: Mutex::new(()),
        });
        let json = r#"{"probeName":"baseinfo","subitems":["fs"],"params":{"reportEvent":true,"resUpperThr":80}}"#;
        let config = Config::offline_from("baseinfo", Some(json)).unwrap();
        let system = SystemInfo::detect();
        let ctx = Context {
            root: &root,
            config: &config,
            now: Duration::from_secs(1),
            system: &system,
        };
        let mut out = Report::default();
        FsCollector::new(stat, STAT_TIMEOUT)
            .collect(&ctx, &mut out)
            .unwrap();
        assert_eq!(out.records.len(), 1);
        let meta = include_str!("../meta/fs.meta");
        assert_eq!(out.records[0].values.len(), meta.matches(" name: ").count());
        assert_eq!(
            out.records[0].values,
            [
                "/",
                "rw",
                "/dev/sda2",
                "ext4",
                "10",
                "9",
                "1",
                "90",
                "400",
                "380",
                "0",
                "100"
            ]
        );
        let events: Vec<&str> = out.events.iter().map(|e| e.metric).collect();
        assert_eq!(events, ["IUsePer", "UsePer"]);
        assert_eq!(out.events[0].entity_id, "/");
        assert_eq!(out.events[0].device, "/dev/sda2");
        let keys: Vec<&str> = out.warnings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["unprintable:/a|b", "mountinfo", "statvfs:/gone"]);
    }
}
