//! Sub-item `disk`: per-device I/O rates with `iostat -x` semantics from `/proc/diskstats`,
//! over the measured time since the previous report; table `system_iostat`. Rows are matched
//! by device name, and only whole disks (the entries of `/sys/block`) are reported, without
//! RAM disks and unbound loop devices.

use std::collections::BTreeSet;

use crate::collector::{delta, fixed2, Collector, Context, Previous, Report};
use crate::error::CollectError;
use crate::record;

/// The counters of one `/proc/diskstats` row that `system_iostat` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskCounters {
    /// Reads completed.
    pub reads: u64,
    /// Sectors (512 bytes) read.
    pub read_sectors: u64,
    /// Milliseconds spent by reads (a 32-bit counter in the kernel's output).
    pub read_ms: u64,
    /// Writes completed.
    pub writes: u64,
    /// Sectors (512 bytes) written.
    pub write_sectors: u64,
    /// Milliseconds spent by writes (32-bit).
    pub write_ms: u64,
    /// Milliseconds the device had I/O in flight (32-bit).
    pub io_ticks: u64,
    /// Weighted milliseconds doing I/O, i.e. the sum of every request's time in flight (32-bit).
    pub time_in_queue: u64,
}

impl DiskCounters {
    /// Whether a 64-bit count went backwards: the device was removed and re-created under the
    /// same name, so `prev` is not a baseline for `self`.
    fn restarted_since(&self, prev: &DiskCounters) -> bool {
        self.reads < prev.reads
            || self.writes < prev.writes
            || self.read_sectors < prev.read_sectors
            || self.write_sectors < prev.write_sectors
    }
}

/// Stat columns after major, minor and name that every kernel since 2.6.25 writes (4.18 adds
/// four discard columns, 5.5 two flush columns; those are ignored).
const MIN_STAT_COLUMNS: usize = 11;

/// Parses `/proc/diskstats`: each well-formed row's device name and counters, in file order.
/// Rows with fewer than 11 stat columns (the pre-2.6.25 partition format) or a non-numeric
/// column are skipped.
pub fn parse_diskstats(text: &str) -> Vec<(&str, DiskCounters)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace().skip(2);
            let name = words.next()?;
            let mut cols = [0u64; MIN_STAT_COLUMNS];
            for slot in cols.iter_mut() {
                *slot = words.next()?.parse().ok()?;
            }
            Some((
                name,
                DiskCounters {
                    reads: cols[0],
                    read_sectors: cols[2],
                    read_ms: cols[3],
                    writes: cols[4],
                    write_sectors: cols[6],
                    write_ms: cols[7],
                    io_ticks: cols[9],
                    time_in_queue: cols[10],
                },
            ))
        })
        .collect()
}

/// Whether `name` is a RAM disk of the `brd` driver (`ram0`, `ram1`, ...): memory, not I/O.
fn is_ram_disk(name: &str) -> bool {
    name.strip_prefix("ram")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The devices `system_iostat` reports, from the entries of `/sys/block` (whole disks: no
/// partitions) as `(name, has a loop backing file)`: all but RAM disks and loop devices with
/// nothing attached. Names in sysfs spell `/` as `!` (`cciss!c0d0`), `/proc/diskstats` as `/`.
pub fn reported_devices<'a>(block: impl IntoIterator<Item = (&'a str, bool)>) -> BTreeSet<String> {
    block
        .into_iter()
        .filter(|(name, backed)| !is_ram_disk(name) && (*backed || !is_loop(name)))
        .map(|(name, _)| name.replace('!', "/"))
        .collect()
}

fn is_loop(name: &str) -> bool {
    name.strip_prefix("loop")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `cur - prev` for a millisecond column the kernel prints as a 32-bit number: a step
/// backwards that is a wrap past 2^32 counts the way it went round; any other step backwards
/// (a re-created device, an accounting glitch) counts as 0.
pub fn delta_ms(cur: u64, prev: u64) -> u64 {
    const RANGE: u64 = 1 << 32;
    if cur >= prev {
        return cur - prev;
    }
    if prev < RANGE {
        let wrapped = cur + RANGE - prev;
        // A real wrap advances by less than half the range within one report period.
        if wrapped < RANGE / 2 {
            return wrapped;
        }
    }
    0
}

/// One `system_iostat` record: the `iostat -x` columns for the interval between two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IoStat {
    /// Reads per second.
    pub rspeed: f64,
    /// KiB read per second.
    pub rspeed_kb: f64,
    /// Mean time of a read, ms (queue plus service).
    pub r_await: f64,
    /// Mean size of a read, KiB.
    pub rareq: f64,
    /// Writes per second.
    pub wspeed: f64,
    /// KiB written per second.
    pub wspeed_kb: f64,
    /// Mean time of a write, ms.
    pub w_await: f64,
    /// Mean size of a write, KiB.
    pub wareq: f64,
    /// Mean number of requests in flight.
    pub aqu: f64,
    /// Percent of the interval with I/O in flight, at most 100.
    pub util: f64,
}

impl IoStat {
    /// The rates between `prev` and `cur`, `secs` apart (`secs` > 0).
    pub fn between(cur: &DiskCounters, prev: &DiskCounters, secs: f64) -> IoStat {
        let per_io = |v: u64, ios: u64| if ios == 0 { 0.0 } else { v as f64 / ios as f64 };
        let reads = delta(cur.reads, prev.reads);
        let writes = delta(cur.writes, prev.writes);
        // Sectors are 512 bytes whatever the device's block size: 2 per KiB.
        let read_kb = delta(cur.read_sectors, prev.read_sectors) as f64 / 2.0;
        let write_kb = delta(cur.write_sectors, prev.write_sectors) as f64 / 2.0;
        let busy_ms = delta_ms(cur.io_ticks, prev.io_ticks) as f64;
        IoStat {
            rspeed: reads as f64 / secs,
            rspeed_kb: read_kb / secs,
            r_await: per_io(delta_ms(cur.read_ms, prev.read_ms), reads),
            rareq: if reads == 0 {
                0.0
            } else {
                read_kb / reads as f64
            },
            wspeed: writes as f64 / secs,
            wspeed_kb: write_kb / secs,
            w_await: per_io(delta_ms(cur.write_ms, prev.write_ms), writes),
            wareq: if writes == 0 {
                0.0
            } else {
                write_kb / writes as f64
            },
            aqu: delta_ms(cur.time_in_queue, prev.time_in_queue) as f64 / 1000.0 / secs,
            // io_ticks can run a tick ahead of the clock that timed the interval.
            util: (busy_ms / 10.0 / secs).min(100.0),
        }
    }
}

/// The `disk` collector.
#[derive(Debug, Default)]
pub struct DiskCollector {
    previous: Previous<String, DiskCounters>,
}

impl DiskCollector {
    /// The devices to report, or `None` (report every row but RAM disks) when `/sys/block`
    /// cannot be listed.
    fn devices(ctx: &Context<'_>, out: &mut Report) -> Option<BTreeSet<String>> {
        let dir = ctx.root.path("/sys/block");
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                out.warn(
                    "sysblock",
                    format!(
                        "list {}: {e}; reporting every device of /proc/diskstats but ram*, partitions included",
                        dir.display()
                    ),
                );
                return None;
            }
        };
        let names: Vec<(String, bool)> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .map(|name| {
                let backed = is_loop(&name) && dir.join(&name).join("loop/backing_file").exists();
                (name, backed)
            })
            .collect();
        Some(reported_devices(
            names.iter().map(|(n, backed)| (n.as_str(), *backed)),
        ))
    }
}

impl Collector for DiskCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let text = ctx.root.read("/proc/diskstats")?;
        let devices = Self::devices(ctx, out);
        self.previous.begin();
        for (name, counters) in parse_diskstats(&text) {
            let wanted = match &devices {
                Some(set) => set.contains(name),
                None => !is_ram_disk(name),
            };
            if !wanted {
                continue;
            }
            let Some((secs, prev)) = self.previous.advance(name.to_owned(), ctx.now, counters)
            else {
                continue;
            };
            if counters.restarted_since(&prev) {
                // A new device under an old name: this sample is its baseline.
                continue;
            }
            let s = IoStat::between(&counters, &prev, secs);
            record!(
                out,
                "system_iostat",
                name,
                fixed2(s.rspeed),
                fixed2(s.rspeed_kb),
                fixed2(s.r_await),
                fixed2(s.rareq),
                fixed2(s.wspeed),
                fixed2(s.wspeed_kb),
                fixed2(s.w_await),
                fixed2(s.wareq),
                fixed2(s.aqu),
                fixed2(s.util)
            );
            if ctx.above_upper_thr(s.util) {
                out.event(
                    "disk",
                    name,
                    "util",
                    name,
                    format!("disk device saturated: {:.2}%", s.util),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_by_name_with_any_number_of_trailing_columns() {
        let text = "\
   8       0 sda 100 5 800 40 50 2 400 90 0 120 130\n\
   8       1 sda1 10 0 80 4 5 0 40 9 0 12 13 0 0 0 0\n\
 259       0 nvme0n1 1 0 8 1 2 0 16 3 1 4 5 0 0 0 0 7 8 9 10\n\
   8       2 sda2 1 2 3 4\n\
   8       3 sda3 1 2 x 4 5 6 7 8 9 10 11\n\
   8       4\n";
        let rows = parse_diskstats(text);
        let names: Vec<&str> = rows.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["sda", "sda1", "nvme0n1"]);
        assert_eq!(
            rows[0].1,
            DiskCounters {
                reads: 100,
                read_sectors: 800,
                read_ms: 40,
                writes: 50,
                write_sectors: 400,
                write_ms: 90,
                io_ticks: 120,
                time_in_queue: 130,
            }
        );
        assert_eq!(rows[2].1.time_in_queue, 5);
    }

    #[test]
    fn counters_beyond_32_bits() {
        let rows = parse_diskstats("8 0 sda 1 0 8589934592 0 0 0 0 0 0 0 0\n");
        assert_eq!(rows[0].1.read_sectors, 1 << 33);
    }

    #[test]
    fn whole_disks_without_ram_and_unbound_loops() {
        let set = reported_devices([
            ("sda", false),
            ("nvme0n1", false),
            ("dm-0", false),
            ("loop0", true),
            ("loop1", false),
            ("ram0", false),
            ("ramdisk", false),
            ("zram0", false),
            ("cciss!c0d0", false),
        ]);
        let got: Vec<&str> = set.iter().map(String::as_str).collect();
        assert_eq!(
            got,
            [
                "cciss/c0d0",
                "dm-0",
                "loop0",
                "nvme0n1",
                "ramdisk",
                "sda",
                "zram0"
            ]
        );
    }

    #[test]
    fn millisecond_columns_wrap_at_32_bits() {
        assert_eq!(delta_ms(500, 200), 300);
        assert_eq!(delta_ms(100, u64::from(u32::MAX) - 99), 200);
        // A small step backwards is no wrap.
        assert_eq!(delta_ms(100, 150), 0);
        // Values past 32 bits cannot have wrapped at 32 bits.
        assert_eq!(delta_ms(100, 1 << 33), 0);
    }

    #[test]
    fn iostat_semantics_over_the_measured_interval() {
        let prev = DiskCounters::default();
        let cur = DiskCounters {
            reads: 100,
            read_sectors: 2000,
            read_ms: 250,
            writes: 40,
            write_sectors: 640,
            write_ms: 400,
            io_ticks: 1500,
            time_in_queue: 3000,
        };
        let s = IoStat::between(&cur, &prev, 5.0);
        assert_eq!(s.rspeed, 20.0);
        assert_eq!(s.rspeed_kb, 200.0);
        assert_eq!(s.r_await, 2.5);
        assert_eq!(s.rareq, 10.0);
        assert_eq!(s.wspeed, 8.0);
        assert_eq!(s.wspeed_kb, 64.0);
        assert_eq!(s.w_await, 10.0);
        assert_eq!(s.wareq, 8.0);
        assert_eq!(s.aqu, 0.6);
        assert_eq!(s.util, 30.0);
        let idle = IoStat::between(&prev, &prev, 5.0);
        assert_eq!((idle.r_await, idle.rareq, idle.util), (0.0, 0.0, 0.0));
    }

    fn write(root: &std::path::Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn collector_reports_whole_disks_from_the_second_round() {
        use crate::collector::SystemInfo;
        use crate::root::HostRoot;
        use gala_probe_sdk::Config;
        use std::time::Duration;

        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let json = r#"{"probeName":"baseinfo","subitems":["disk"],"params":{"reportEvent":true,"resUpperThr":50}}"#;
        let config = Config::offline_from("baseinfo", Some(json)).unwrap();
        let system = SystemInfo::detect();
        let mut collector = DiskCollector::default();
        let mut round = |secs: u64, diskstats: &str| {
            write(dir.path(), "proc/diskstats", diskstats);
            let ctx = Context {
                root: &root,
                config: &config,
                now: Duration::from_secs(secs),
                system: &system,
            };
            let mut out = Report::default();
            collector.collect(&ctx, &mut out).unwrap();
            out
        };
        // Without /sys/block: every row but RAM disks, and a warning.
        let first = round(
            10,
            "8 0 sda 0 0 0 0 0 0 0 0 0 0 0\n1 0 ram0 0 0 0 0 0 0 0 0 0 0 0\n",
        );
        assert!(first.records.is_empty());
        assert_eq!(first.warnings.len(), 1);
        write(dir.path(), "sys/block/sda/dev", "8:0\n");
        let second = round(
            12,
            "8 0 sda 10 0 20 5 0 0 0 0 0 1200 30\n8 1 sda1 10 0 20 5 0 0 0 0 0 2000 30\n",
        );
        assert!(second.warnings.is_empty());
        assert_eq!(second.records.len(), 1);
        let values = &second.records[0].values;
        assert_eq!(
            values,
            &[
                "sda", "5.00", "5.00", "0.50", "1.00", "0.00", "0.00", "0.00", "0.00", "0.01",
                "60.00"
            ]
        );
        let meta = include_str!("../meta/disk.meta");
        assert_eq!(values.len(), meta.matches(" name: ").count());
        assert_eq!(second.events.len(), 1);
        assert_eq!(second.events[0].entity_id, "sda");
        // The device went away and came back with fresh counters: a new baseline.
        assert!(round(14, "").records.is_empty());
        assert!(round(16, "8 0 sda 1 0 2 1 0 0 0 0 0 1 1\n")
            .records
            .is_empty());
        assert_eq!(
            round(18, "8 0 sda 2 0 4 2 0 0 0 0 0 2 2\n").records.len(),
            1
        );
    }

    #[test]
    fn util_is_capped_and_restarts_are_detected() {
        let prev = DiskCounters::default();
        let cur = DiskCounters {
            io_ticks: 10_050,
            ..prev
        };
        assert_eq!(IoStat::between(&cur, &prev, 10.0).util, 100.0);
        let old = DiskCounters {
            reads: 1000,
            ..prev
        };
        let new = DiskCounters { reads: 3, ..prev };
        assert!(new.restarted_since(&old));
        assert!(!old.restarted_since(&new));
    }
}
