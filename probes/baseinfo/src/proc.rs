//! Sub-item `proc`: per-process counters of the snooped processes from `/proc/<pid>/stat`,
//! `fd`, `limits`, `io` and `smaps_rollup`; table `system_proc`. A process is tracked by
//! (pid, start time), so a reused pid starts afresh, and its first sample only sets the
//! baseline (the whole record waits for the second one).

use std::collections::HashMap;
use std::fmt::{self, Display};
use std::io;
use std::path::{Path, PathBuf};

use gala_probe_sdk::SnooperMode;

use crate::collector::{delta, fixed2, Collector, Context, Previous, Report};
use crate::error::CollectError;
use crate::record;

/// The table.
pub const TABLE: &str = "system_proc";

/// What baseinfo uses of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcStat {
    /// Parent pid (field 4).
    pub ppid: u32,
    /// Process group (field 5).
    pub pgid: u32,
    /// Minor faults (field 10).
    pub minflt: u64,
    /// Major faults (field 12).
    pub majflt: u64,
    /// User time in clock ticks, guest time included (field 14).
    pub utime: u64,
    /// System time in clock ticks (field 15).
    pub stime: u64,
    /// Waited-for children's user time (field 16).
    pub cutime: u64,
    /// Waited-for children's system time (field 17).
    pub cstime: u64,
    /// Scheduling priority as the kernel shows it (field 18; negative for real-time).
    pub priority: i64,
    /// Nice value, -20..19 (field 19).
    pub nice: i64,
    /// Threads (field 20).
    pub num_threads: u64,
    /// Start time after boot in clock ticks (field 22): with the pid, the process's identity.
    pub starttime: u64,
    /// Virtual memory size in bytes (field 23).
    pub vsize: u64,
    /// Resident set in pages (field 24).
    pub rss: u64,
    /// CPU last run on (field 39).
    pub processor: u64,
    /// Time spent running a guest's vCPU, in clock ticks (field 43; 0 before Linux 2.6.24).
    pub guest_time: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) is in parentheses and may itself
/// contain spaces and `)`, so the fields are taken after the *last* `)`. `None` if the
/// text is not a stat line (fewer than 39 fields).
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field n of proc(5) is word n - 3 here (word 0 is the state, field 3).
    let mut words = [""; 41];
    let mut n = 0;
    for (slot, word) in words.iter_mut().zip(rest.split_ascii_whitespace()) {
        *slot = word;
        n += 1;
    }
    if n < 37 {
        return None;
    }
    let field = |f: usize| words[f - 3];
    let unsigned = |f: usize| field(f).parse::<u64>().ok();
    // Fields the kernel prints as signed longs; never negative in practice, clamped if so.
    let clamped = |f: usize| {
        field(f)
            .parse::<i64>()
            .ok()
            .map(|v| v.max(0).unsigned_abs())
    };
    Some(ProcStat {
        ppid: field(4).parse().ok()?,
        pgid: field(5).parse().ok()?,
        minflt: unsigned(10)?,
        majflt: unsigned(12)?,
        utime: unsigned(14)?,
        stime: unsigned(15)?,
        cutime: clamped(16)?,
        cstime: clamped(17)?,
        priority: field(18).parse().ok()?,
        nice: field(19).parse().ok()?,
        num_threads: clamped(20)?,
        starttime: unsigned(22)?,
        vsize: unsigned(23)?,
        rss: clamped(24)?,
        processor: clamped(39)?,
        guest_time: if n > 40 { unsigned(43).unwrap_or(0) } else { 0 },
    })
}

/// The keys of `/proc/<pid>/io` baseinfo reports, in table order.
pub const IO_KEYS: [&str; 7] = [
    "rchar",
    "wchar",
    "syscr",
    "syscw",
    "read_bytes",
    "write_bytes",
    "cancelled_write_bytes",
];

/// Parses `/proc/<pid>/io` by key: the counters of [`IO_KEYS`] (`None` where absent, as
/// `read_bytes` & co. on a kernel without task I/O accounting).
pub fn parse_io(text: &str) -> [Option<u64>; 7] {
    parse_keyed(text, &IO_KEYS)
}

/// The keys of `/proc/<pid>/smaps_rollup` baseinfo reports (kB), in table order.
pub const SMAPS_KEYS: [&str; 8] = [
    "Shared_Clean",
    "Shared_Dirty",
    "Private_Clean",
    "Private_Dirty",
    "Referenced",
    "LazyFree",
    "Swap",
    "SwapPss",
];

/// Parses `/proc/<pid>/smaps_rollup` by key: the kB values of [`SMAPS_KEYS`] (`None` where
/// absent; a kernel thread's file is empty).
pub fn parse_smaps_rollup(text: &str) -> [Option<u64>; 8] {
    parse_keyed(text, &SMAPS_KEYS)
}

/// `key: value [unit]` lines: the first number after each wanted key.
fn parse_keyed<const N: usize>(text: &str, keys: &[&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if let Some(i) = keys.iter().position(|k| *k == key) {
            out[i] = value
                .split_ascii_whitespace()
                .next()
                .and_then(|v| v.parse().ok());
        }
    }
    out
}

/// A soft limit of `/proc/<pid>/limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A number.
    Finite(u64),
    /// `unlimited`.
    Unlimited,
}

/// Parses `/proc/<pid>/limits`: the soft limit of "Max open files".
pub fn parse_max_open_files(text: &str) -> Option<Limit> {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    match line.split_ascii_whitespace().next()? {
        "unlimited" => Some(Limit::Unlimited),
        soft => soft.parse().ok().map(Limit::Finite),
    }
}

/// Share of the open-files limit still free, in percent: 100 when unlimited, 0 when the
/// process holds more descriptors than its (lowered) limit allows.
pub fn fd_free_percent(fd_count: u64, limit: Limit) -> f64 {
    match limit {
        Limit::Unlimited => 100.0,
        Limit::Finite(0) => 0.0,
        Limit::Finite(max) => max.saturating_sub(fd_count) as f64 / max as f64 * 100.0,
    }
}

/// Clock ticks as a share of `secs` seconds of one CPU, in percent.
pub fn cpu_percent(ticks: u64, secs: f64, clk_tck: u64) -> f64 {
    let capacity = secs * clk_tck as f64;
    if capacity > 0.0 {
        ticks as f64 / capacity * 100.0
    } else {
        0.0
    }
}

/// The counters of one process at one instant (the absolute values are read only when a
/// record is due).
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    stat: ProcStat,
    io: Option<[Option<u64>; 7]>,
}

/// Why a process gave no sample.
enum Skip {
    /// It exited (or was never there): dropped silently.
    Gone,
    /// Its stat file is unreadable or malformed.
    Broken(CollectError),
}

/// Sources that were unreadable this round, each with one example, so that 2,000 processes
/// without the privilege make one log line, not 2,000.
#[derive(Default)]
struct Unreadable {
    first: Option<String>,
    more: usize,
}

impl Unreadable {
    fn note(&mut self, path: &Path, e: &io::Error) {
        self.note_with(|| format!("read {}: {e}", path.display()));
    }

    fn note_with(&mut self, message: impl FnOnce() -> String) {
        if self.first.is_none() {
            self.first = Some(message());
        } else {
            self.more += 1;
        }
    }

    fn report(self, out: &mut Report, key: &str, consequence: &str) {
        if let Some(first) = self.first {
            let others = match self.more {
                0 => String::new(),
                n => format!(" (and {n} more processes)"),
            };
            out.warn(key, format!("{first}{others}; {consequence}"));
        }
    }
}

/// Rounds a process's open-files limit is kept before `limits` is read again (at most; the
/// first refresh comes earlier, by pid): limits rarely change (`prlimit`), and this file is
/// an eighth of a round's cost.
pub const LIMIT_REFRESH_ROUNDS: u64 = 10;

/// The open-files limit of one process, to be read again in round `expires`, last used in
/// round `used`.
#[derive(Debug, Clone, Copy)]
struct CachedLimit {
    limit: Option<Limit>,
    expires: u64,
    used: u64,
}

/// The `proc` collector.
#[derive(Debug, Default)]
pub struct ProcCollector {
    previous: Previous<(u32, u64), ProcSample>,
    /// Open-files limits by (pid, start time).
    limits: HashMap<(u32, u64), CachedLimit>,
    /// Rounds so far.
    round: u64,
    /// One buffer for every file read, reused across processes and rounds.
    buf: Vec<u8>,
    /// Whether `/proc` is a procfs whose fd directories give their entry count as size
    /// (Linux 6.2), detected once.
    fd_size_is_count: Option<bool>,
}

impl Collector for ProcCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        if ctx.config.snooper_mode() == SnooperMode::Blacklist {
            out.warn(
                "blacklist",
                "proc reports only snooped processes and the snoopers are a blacklist: nothing is reported (give a snooper list)",
            );
            return Ok(());
        }
        let mut pids = ctx.config.pids();
        pids.sort_unstable();
        pids.dedup();
        self.previous.begin();
        self.round += 1;
        let mut problems = Problems::default();
        let mut dir = ctx.root.path("/proc");
        let fast_fd_count = *self.fd_size_is_count.get_or_insert_with(|| is_procfs(&dir));
        for pid in pids {
            dir.push(pid.to_string());
            self.collect_one(ctx, pid, &mut dir, fast_fd_count, &mut problems, out);
            dir.pop();
        }
        let round = self.round;
        self.limits.retain(|_, l| l.used == round);
        problems
            .stat
            .report(out, "stat", "those processes are not reported");
        problems
            .fd
            .report(out, "fd", "fd_count and fd_free_per are left empty");
        problems
            .limits
            .report(out, "limits", "fd_free_per is left empty");
        problems.io.report(
            out,
            "io",
            "the I/O fields are left empty (reading another user's io file needs CAP_SYS_PTRACE)",
        );
        problems.smaps.report(
            out,
            "smaps_rollup",
            "the memory-map fields are left empty (smaps_rollup needs Linux 4.14 and ptrace read access)",
        );
        Ok(())
    }
}

/// Unreadable sources of one round.
#[derive(Default)]
struct Problems {
    stat: Unreadable,
    fd: Unreadable,
    limits: Unreadable,
    io: Unreadable,
    smaps: Unreadable,
}

/// Whether a read error means the process is gone.
fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// Reads `dir/name` into `buf` (cleared first) with plain `read` calls: procfs files
/// report no size, and a short read means the end of a seq_file.
fn read_into(dir: &mut PathBuf, name: &str, buf: &mut Vec<u8>) -> io::Result<()> {
    dir.push(name);
    let read = gala_cgroup::read_into(dir, buf);
    dir.pop();
    read
}

/// The text of a procfs file; a command name that is not UTF-8 is replaced, not refused.
fn text(buf: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(buf)
}

impl ProcCollector {
    /// Samples one process (`dir` is its `/proc/<pid>`) and reports it if it has a baseline.
    fn collect_one(
        &mut self,
        ctx: &Context<'_>,
        pid: u32,
        dir: &mut PathBuf,
        fast_fd_count: bool,
        problems: &mut Problems,
        out: &mut Report,
    ) {
        let sample = match self.sample(dir) {
            Ok((s, None)) => s,
            Ok((s, Some(e))) => {
                dir.push("io");
                problems.io.note(dir, &e);
                dir.pop();
                s
            }
            Err(Skip::Gone) => return,
            Err(Skip::Broken(e)) => {
                problems.stat.note_with(|| e.to_string());
                return;
            }
        };
        let key = (pid, sample.stat.starttime);
        let previous = self.previous.advance(key, ctx.now, sample);
        // The limit is read in the baseline round already, to spread the cost of a set of
        // new processes over two rounds.
        let Some(limit) = self.open_files_limit(key, dir, problems) else {
            return;
        };
        let Some((secs, prev)) = previous else {
            return;
        };

        // The absolute values, read only now that a record is due.
        let fd_count = match count_fds(dir, fast_fd_count) {
            Ok(n) => Some(n),
            Err(e) if is_gone(&e) => return,
            Err(e) => {
                dir.push("fd");
                problems.fd.note(dir, &e);
                dir.pop();
                None
            }
        };
        let smaps = match read_into(dir, "smaps_rollup", &mut self.buf) {
            Ok(()) => parse_smaps_rollup(&text(&self.buf)),
            // Missing before Linux 4.14, or the process has just exited.
            Err(e) if is_gone(&e) && !dir.exists() => return,
            Err(e) => {
                dir.push("smaps_rollup");
                problems.smaps.note(dir, &e);
                dir.pop();
                [None; 8]
            }
        };

        let (cur, old) = (&sample.stat, &prev.stat);
        let io = match (sample.io, prev.io) {
            (Some(c), Some(p)) => std::array::from_fn(|i| match (c[i], p[i]) {
                (Some(c), Some(p)) => Some(delta(c, p)),
                _ => None,
            }),
            _ => [None; 7],
        };
        let fd_free = fd_count.zip(limit).map(|(n, l)| fd_free_percent(n, l));
        let utime = delta(cur.utime, old.utime);
        let stime = delta(cur.stime, old.stime);
        let guest = delta(cur.guest_time, old.guest_time);
        let clk = ctx.system.clk_tck;
        let rss_pages = cur.rss;
        let pm_util = if ctx.system.phys_pages > 0 {
            fixed2(rss_pages as f64 / ctx.system.phys_pages as f64 * 100.0)
        } else {
            String::new()
        };
        record!(
            out,
            TABLE,
            pid,
            cur.pgid,
            cur.ppid,
            Opt(fd_count),
            Opt(fd_free.map(fixed2)),
            Opt(io[0]),
            Opt(io[1]),
            Opt(io[2]),
            Opt(io[3]),
            Opt(io[4]),
            Opt(io[5]),
            Opt(io[6]),
            Opt(smaps[0]),
            Opt(smaps[1]),
            Opt(smaps[2]),
            Opt(smaps[3]),
            Opt(smaps[4]),
            Opt(smaps[5]),
            Opt(smaps[6]),
            Opt(smaps[7]),
            delta(cur.minflt, old.minflt),
            delta(cur.majflt, old.majflt),
            utime,
            stime,
            delta(cur.cutime, old.cutime),
            delta(cur.cstime, old.cstime),
            cur.priority,
            cur.nice,
            cur.num_threads,
            cur.vsize,
            rss_pages.saturating_mul(ctx.system.page_size),
            pm_util,
            cur.processor,
            fixed2(cpu_percent(utime + stime, secs, clk)),
            fixed2(cpu_percent(utime.saturating_sub(guest), secs, clk)),
            fixed2(cpu_percent(stime, secs, clk)),
        );
    }

    /// The open-files limit of the process `key` in `dir`: cached, or read if not cached or
    /// due for refresh; `None` if the process is gone.
    fn open_files_limit(
        &mut self,
        key: (u32, u64),
        dir: &mut PathBuf,
        problems: &mut Problems,
    ) -> Option<Option<Limit>> {
        let round = self.round;
        if let Some(cached) = self.limits.get_mut(&key) {
            if round < cached.expires {
                cached.used = round;
                return Some(cached.limit);
            }
        }
        match read_into(dir, "limits", &mut self.buf) {
            Ok(()) => {
                let limit = parse_max_open_files(&text(&self.buf));
                // The first refresh is spread by pid, so that processes started together
                // are not all read again in the same round.
                let expires = match self.limits.contains_key(&key) {
                    true => round + LIMIT_REFRESH_ROUNDS,
                    false => round + 1 + u64::from(key.0) % LIMIT_REFRESH_ROUNDS,
                };
                let used = round;
                self.limits.insert(
                    key,
                    CachedLimit {
                        limit,
                        expires,
                        used,
                    },
                );
                Some(limit)
            }
            Err(e) if is_gone(&e) => None,
            Err(e) => {
                dir.push("limits");
                problems.limits.note(dir, &e);
                dir.pop();
                Some(None)
            }
        }
    }

    /// Reads the counters of the process in `dir`: its stat and io files, and why the io
    /// file could not be read, if it could not.
    fn sample(&mut self, dir: &mut PathBuf) -> Result<(ProcSample, Option<io::Error>), Skip> {
        let stat = match read_into(dir, "stat", &mut self.buf) {
            Ok(()) => match parse_stat(&text(&self.buf)) {
                Some(stat) => stat,
                // A process exiting between open and read leaves an empty file.
                None if self.buf.is_empty() => return Err(Skip::Gone),
                None => {
                    dir.push("stat");
                    let path = dir.clone();
                    dir.pop();
                    return Err(Skip::Broken(CollectError::Parse {
                        path,
                        what: "not a stat line".into(),
                    }));
                }
            },
            Err(e) if is_gone(&e) => return Err(Skip::Gone),
            Err(source) => {
                dir.push("stat");
                let path = dir.clone();
                dir.pop();
                return Err(Skip::Broken(CollectError::Read { path, source }));
            }
        };
        match read_into(dir, "io", &mut self.buf) {
            Ok(()) => Ok((
                ProcSample {
                    stat,
                    io: Some(parse_io(&text(&self.buf))),
                },
                None,
            )),
            // No io file at all is a kernel without task I/O accounting, unless the process
            // has just exited.
            Err(e) if is_gone(&e) && !dir.exists() => Err(Skip::Gone),
            Err(e) => Ok((ProcSample { stat, io: None }, Some(e))),
        }
    }
}

/// Whether `proc` is a mounted procfs (not a fixture tree).
fn is_procfs(proc: &Path) -> bool {
    nix::sys::statfs::statfs(proc)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
}

/// Open descriptors of the process in `dir`: on procfs since Linux 6.2 the size of its `fd`
/// directory (no directory walk, which makes the kernel build an inode per descriptor);
/// otherwise, or when that size is 0, the entries of `fd`.
fn count_fds(dir: &mut PathBuf, size_is_count: bool) -> io::Result<u64> {
    dir.push("fd");
    let result = (|| {
        if size_is_count {
            let size = std::fs::metadata(&*dir)?.len();
            if size > 0 {
                return Ok(size);
            }
        }
        std::fs::read_dir(&*dir).map(|entries| entries.count() as u64)
    })();
    dir.pop();
    result
}

/// An optional value: empty in the record line when absent.
struct Opt<T>(Option<T>);

impl<T: Display> Display for Opt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::SystemInfo;
    use crate::root::HostRoot;
    use gala_probe_sdk::Config;
    use std::time::Duration;

    /// A stat line of `comm` with the given utime, stime, guest_time and starttime.
    fn stat_line(pid: u32, comm: &str, utime: u64, stime: u64, guest: u64, start: u64) -> String {
        format!(
            "{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 100 0 3 0 {utime} {stime} 7 8 20 -5 2 0 {start} 4096000 50 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 {guest} 0 0 0 0 0 0 0 0 0\n"
        )
    }

    #[test]
    fn stat_fields_after_the_last_parenthesis() {
        for comm in ["nginx", "a b", "x) S 99 (y", ")", "(( ))", ""] {
            let s = parse_stat(&stat_line(42, comm, 11, 22, 3, 777)).unwrap();
            assert_eq!((s.ppid, s.pgid), (1, 42), "{comm:?}");
            assert_eq!((s.minflt, s.majflt, s.utime, s.stime), (100, 3, 11, 22));
            assert_eq!((s.cutime, s.cstime, s.priority, s.nice), (7, 8, 20, -5));
            assert_eq!(
                (s.num_threads, s.starttime, s.vsize, s.rss),
                (2, 777, 4096000, 50)
            );
            assert_eq!((s.processor, s.guest_time), (1, 3));
        }
    }

    #[test]
    fn stat_of_an_old_kernel_and_garbage() {
        // 2.6.18: 41 fields, no guest_time.
        let old = "7 (init) S 0 1 1 0 -1 4194560 10 0 1 0 5 6 0 0 20 0 1 0 9 100 3 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0\n";
        let s = parse_stat(old).unwrap();
        assert_eq!(
            (s.utime, s.starttime, s.processor, s.guest_time),
            (5, 9, 0, 0)
        );
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("1 (x) S 0 1"), None);
        assert_eq!(parse_stat("no parenthesis at all 1 2 3"), None);
        let bad = stat_line(1, "x", 1, 2, 0, 3).replace(" 4096000 ", " lots ");
        assert_eq!(parse_stat(&bad), None);
    }

    #[test]
    fn io_and_smaps_by_key() {
        let io = parse_io("rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 0\ncancelled_write_bytes: 7\n");
        assert_eq!(io, [10, 20, 3, 4, 4096, 0, 7].map(Some));
        // No task I/O accounting: the byte counters are absent.
        let io = parse_io("syscw: 4\nrchar: 10\n");
        assert_eq!(io, [Some(10), None, None, Some(4), None, None, None]);
        let smaps = parse_smaps_rollup(
            "5612c8191000-7ffe30657000 ---p 00000000 00:00 0      [rollup]\nRss:  1744 kB\nShared_Clean:  1592 kB\nShared_Dirty: 0 kB\nPrivate_Clean: 44 kB\nPrivate_Dirty: 108 kB\nReferenced: 1744 kB\nLazyFree: 0 kB\nSwap: 5 kB\nSwapPss: 2 kB\n",
        );
        assert_eq!(smaps, [1592, 0, 44, 108, 1744, 0, 5, 2].map(Some));
        assert_eq!(parse_smaps_rollup(""), [None; 8]);
    }

    #[test]
    fn open_files_limit_and_free_share() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \nMax processes             63439                63439                processes \nMax open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(Limit::Finite(1024)));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(parse_max_open_files(unlimited), Some(Limit::Unlimited));
        assert_eq!(parse_max_open_files("Max processes 5 5\n"), None);
        assert_eq!(fd_free_percent(256, Limit::Finite(1024)), 75.0);
        assert_eq!(fd_free_percent(9, Limit::Unlimited), 100.0);
        assert_eq!(fd_free_percent(2000, Limit::Finite(1024)), 0.0);
        assert_eq!(fd_free_percent(3, Limit::Finite(0)), 0.0);
    }

    #[test]
    fn cpu_share_of_the_measured_time() {
        assert_eq!(cpu_percent(400, 10.0, 100), 40.0);
        assert_eq!(cpu_percent(250, 2.5, 100), 100.0);
        assert_eq!(cpu_percent(5, 0.0, 100), 0.0);
    }

    /// A fake host with process trees written by `files`, and the collector's view of it.
    struct Host {
        dir: tempfile::TempDir,
        config: Config,
    }

    const SYSTEM: SystemInfo = SystemInfo {
        clk_tck: 100,
        page_size: 4096,
        phys_pages: 1000,
        cpus_configured: 2,
    };

    impl Host {
        fn new(pids: &[u32], mode: &str) -> Host {
            let procs: Vec<String> = pids
                .iter()
                .map(|p| format!(r#"{{"process":{{"pid":{p}}}}}"#))
                .collect();
            let json = format!(
                r#"{{"subitems":["proc"],"snooperMode":"{mode}","snoopers":[{}]}}"#,
                procs.join(",")
            );
            Host {
                dir: tempfile::tempdir().unwrap(),
                config: Config::offline_from("baseinfo", Some(&json)).unwrap(),
            }
        }

        fn write(&self, path: &str, text: &str) {
            let path = self.dir.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn process(&self, pid: u32, utime: u64, start: u64, with_io: bool) {
            self.write(
                &format!("proc/{pid}/stat"),
                &stat_line(pid, "p", utime, 10, 0, start),
            );
            for fd in 0..3 {
                self.write(&format!("proc/{pid}/fd/{fd}"), "");
            }
            self.write(
                &format!("proc/{pid}/limits"),
                "Max open files            4                 4096               files\n",
            );
            let io = format!("proc/{pid}/io");
            if with_io {
                self.write(&io, &format!("rchar: {}\nwchar: 5\n", utime * 10));
            } else {
                let _ = std::fs::remove_file(self.dir.path().join(io));
            }
        }

        fn round(&self, c: &mut ProcCollector, secs: u64) -> Report {
            let root = HostRoot::new(self.dir.path());
            let ctx = Context {
                root: &root,
                config: &self.config,
                now: Duration::from_secs(secs),
                system: &SYSTEM,
            };
            let mut out = Report::default();
            c.collect(&ctx, &mut out).unwrap();
            out
        }
    }

    #[test]
    fn first_sample_waits_and_gone_pids_are_silent() {
        let host = Host::new(&[7, 8, 999], "SNOOPER_MODE_WHITELIST");
        host.process(7, 100, 5000, true);
        host.process(8, 100, 6000, true);
        let mut c = ProcCollector::default();
        let r = host.round(&mut c, 10);
        assert!(r.records.is_empty() && r.warnings.is_empty(), "{r:?}");
        host.process(7, 150, 5000, true);
        std::fs::remove_dir_all(host.dir.path().join("proc/8")).unwrap();
        let r = host.round(&mut c, 12);
        let keys: Vec<_> = r.warnings.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["smaps_rollup"]);
        assert_eq!(r.records.len(), 1);
        let v = &r.records[0].values;
        assert_eq!(v.len(), 36);
        // tgid, pgid, ppid, fd_count, fd_free_per, rchar delta (500 over 2 s), wchar delta.
        assert_eq!(v[..7], ["7", "7", "1", "3", "25.00", "500", "0"]);
        // No smaps_rollup file: its fields are empty (and warned about).
        assert_eq!(v[12], "");
        // utime delta, nice, pm_size, pm_util, cpu_util (60 ticks in 2 s = 30 %).
        assert_eq!(
            [&v[22], &v[27], &v[30], &v[31]],
            ["50", "-5", "204800", "5.00"]
        );
        assert_eq!(v[33..], ["25.00", "25.00", "0.00"]);
    }

    #[test]
    fn a_reused_pid_starts_afresh() {
        let host = Host::new(&[7], "SNOOPER_MODE_WHITELIST");
        let mut c = ProcCollector::default();
        host.process(7, 100, 5000, true);
        host.round(&mut c, 10);
        // Same pid, new process: fewer ticks than before, another start time.
        host.process(7, 3, 9000, true);
        assert!(host.round(&mut c, 20).records.is_empty());
        host.process(7, 13, 9000, true);
        let r = host.round(&mut c, 30);
        assert_eq!(r.records.len(), 1);
        assert_eq!(r.records[0].values[22], "10");
    }

    #[test]
    fn counters_going_backwards_give_zero() {
        let host = Host::new(&[7], "SNOOPER_MODE_WHITELIST");
        let mut c = ProcCollector::default();
        host.process(7, 100, 5000, true);
        host.round(&mut c, 10);
        host.process(7, 90, 5000, true);
        let r = host.round(&mut c, 20);
        let v = &r.records[0].values;
        assert_eq!([&v[5], &v[22], &v[33], &v[34]], ["0", "0", "0.00", "0.00"]);
    }

    #[test]
    fn missing_io_leaves_the_io_fields_empty_and_warns_once_per_round() {
        let host = Host::new(&[7, 8], "SNOOPER_MODE_WHITELIST");
        let mut c = ProcCollector::default();
        host.process(7, 100, 5000, false);
        host.process(8, 100, 5000, false);
        let r = host.round(&mut c, 10);
        let io: Vec<_> = r.warnings.iter().filter(|(k, _)| k == "io").collect();
        assert_eq!(io.len(), 1, "{:?}", r.warnings);
        assert!(
            io[0].1.contains("proc/7/io") && io[0].1.contains("and 1 more"),
            "{}",
            io[0].1
        );
        let r = host.round(&mut c, 20);
        assert_eq!(r.records.len(), 2);
        for rec in &r.records {
            assert!(rec.values[5..12].iter().all(String::is_empty), "{rec:?}");
            assert_eq!(rec.values[22], "0");
        }
    }

    #[test]
    fn the_open_files_limit_is_read_again_every_few_rounds() {
        let host = Host::new(&[7], "SNOOPER_MODE_WHITELIST");
        let mut c = ProcCollector::default();
        host.process(7, 100, 5000, true);
        let mut free = Vec::new();
        for round in 0..=LIMIT_REFRESH_ROUNDS + 1 {
            if round == 2 {
                // prlimit: 4 -> 12 open files.
                host.write("proc/7/limits", "Max open files 12 4096 files\n");
            }
            let r = host.round(&mut c, 10 * (round + 1));
            free.extend(r.records.iter().map(|r| r.values[4].clone()));
        }
        // Read in the baseline round (round 1), first again in round 1 + 1 + 7 % 10 = 9, then
        // every LIMIT_REFRESH_ROUNDS rounds; records start in round 2.
        assert_eq!(free.len() as u64, LIMIT_REFRESH_ROUNDS + 1);
        assert_eq!(free[..7], ["25.00"; 7]);
        assert_eq!(free[7..], ["75.00"; 4]);
    }

    #[test]
    fn a_command_name_that_is_not_utf8_is_no_obstacle() {
        let host = Host::new(&[7], "SNOOPER_MODE_WHITELIST");
        let mut c = ProcCollector::default();
        host.process(7, 100, 5000, true);
        let stat = |utime| {
            let mut raw = b"7 (\xff\xfe) x)".to_vec();
            let line = stat_line(7, "", utime, 10, 0, 5000);
            raw.extend_from_slice(&line.as_bytes()[line.find(')').unwrap() + 1..]);
            std::fs::write(host.dir.path().join("proc/7/stat"), raw).unwrap();
        };
        stat(100);
        host.round(&mut c, 10);
        stat(120);
        let r = host.round(&mut c, 20);
        assert_eq!(r.records.len(), 1, "{r:?}");
        assert_eq!(r.records[0].values[22], "20");
    }

    #[test]
    fn blacklist_mode_reports_nothing() {
        let host = Host::new(&[7], "SNOOPER_MODE_BLACKLIST");
        host.process(7, 100, 5000, true);
        let mut c = ProcCollector::default();
        host.round(&mut c, 10);
        let r = host.round(&mut c, 20);
        assert!(r.records.is_empty());
        assert_eq!(r.warnings[0].0, "blacklist");
    }
}
