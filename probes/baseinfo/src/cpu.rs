//! Sub-item `cpu`: per-CPU time from `/proc/stat`, softirqs from `/proc/softirqs`, backlog
//! drops and RPS from `/proc/net/softnet_stat`, frequency from `/proc/cpuinfo`; tables
//! `system_cpu` and `system_cpu_util`. Rows are matched by CPU number, never by position.

use std::collections::BTreeMap;

use crate::collector::{delta, fixed2, Collector, Context, Previous, Report};
use crate::error::CollectError;
use crate::record;

/// The eight time columns of a `cpu` line of `/proc/stat`, in jiffies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user, nice, system, idle, iowait, irq, softirq, steal.
    pub cols: [u64; 8],
}

impl CpuTimes {
    fn total(&self) -> u64 {
        self.cols.iter().sum()
    }

    fn busy(&self) -> u64 {
        self.total() - self.cols[3] - self.cols[4]
    }
}

/// Parses `/proc/stat`: the aggregate `cpu` line and each `cpuN` line.
pub fn parse_stat(text: &str) -> (Option<CpuTimes>, BTreeMap<u32, CpuTimes>) {
    let mut all = None;
    let mut per_cpu = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let Some(name) = words.next().and_then(|w| w.strip_prefix("cpu")) else {
            continue;
        };
        let mut times = CpuTimes::default();
        for (slot, word) in times.cols.iter_mut().zip(words) {
            *slot = word.parse().unwrap_or(0);
        }
        if name.is_empty() {
            all = Some(times);
        } else if let Ok(n) = name.parse() {
            per_cpu.insert(n, times);
        }
    }
    (all, per_cpu)
}

/// The softirq rows baseinfo reports, in table order.
pub const SOFTIRQS: [&str; 4] = ["RCU", "TIMER", "SCHED", "NET_RX"];

/// Parses `/proc/softirqs`: per CPU, the counts of [`SOFTIRQS`].
pub fn parse_softirqs(text: &str) -> BTreeMap<u32, [u64; 4]> {
    let mut lines = text.lines();
    let cpus: Vec<u32> = lines
        .next()
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|w| w.strip_prefix("CPU")?.parse().ok())
        .collect();
    let mut out: BTreeMap<u32, [u64; 4]> = cpus.iter().map(|&c| (c, [0; 4])).collect();
    for line in lines {
        let mut words = line.split_ascii_whitespace();
        let Some(name) = words.next().and_then(|w| w.strip_suffix(':')) else {
            continue;
        };
        let Some(slot) = SOFTIRQS.iter().position(|&s| s == name) else {
            continue;
        };
        for (cpu, word) in cpus.iter().zip(words) {
            if let Some(counts) = out.get_mut(cpu) {
                counts[slot] = word.parse().unwrap_or(0);
            }
        }
    }
    out
}

/// Parses `/proc/net/softnet_stat` (hex columns): per CPU, (dropped, received_rps). Newer
/// kernels give the CPU number in column 13; older ones list online CPUs in order.
pub fn parse_softnet(text: &str, online: &[u32]) -> BTreeMap<u32, (u64, u64)> {
    let mut out = BTreeMap::new();
    for (row, line) in text.lines().enumerate() {
        let cols: Vec<u64> = line
            .split_ascii_whitespace()
            .map(|w| u64::from_str_radix(w, 16).unwrap_or(0))
            .collect();
        if cols.len() < 10 {
            continue;
        }
        let cpu = match cols.get(12) {
            Some(&c) => u32::try_from(c).ok(),
            None => online.get(row).copied(),
        };
        if let Some(cpu) = cpu {
            out.insert(cpu, (cols[1], cols[9]));
        }
    }
    out
}

/// Parses `/proc/cpuinfo`: per `processor`, its `cpu MHz` (absent on some architectures).
pub fn parse_cpuinfo_mhz(text: &str) -> BTreeMap<u32, f64> {
    let mut out = BTreeMap::new();
    let mut processor = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key.trim() {
            "processor" => processor = value.trim().parse().ok(),
            "cpu MHz" => {
                if let (Some(p), Ok(mhz)) = (processor, value.trim().parse()) {
                    out.insert(p, mhz);
                }
            }
            _ => {}
        }
    }
    out
}

/// One CPU's counters at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct CpuSample {
    times: CpuTimes,
    softirqs: [u64; 4],
    softnet: (u64, u64),
}

/// Key of the aggregate line in the history.
const ALL: u32 = u32::MAX;

/// The `cpu` collector.
#[derive(Debug, Default)]
pub struct CpuCollector {
    previous: Previous<u32, CpuSample>,
}

impl Collector for CpuCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let (all, per_cpu) = parse_stat(&ctx.root.read("/proc/stat")?);
        let softirqs = match ctx.root.read("/proc/softirqs") {
            Ok(text) => parse_softirqs(&text),
            Err(e) => {
                out.warn("softirqs", e);
                BTreeMap::new()
            }
        };
        let online: Vec<u32> = per_cpu.keys().copied().collect();
        let softnet = match ctx.root.read("/proc/net/softnet_stat") {
            Ok(text) => parse_softnet(&text, &online),
            Err(e) => {
                out.warn("softnet", e);
                BTreeMap::new()
            }
        };
        let mhz = match ctx.root.read("/proc/cpuinfo") {
            Ok(text) => parse_cpuinfo_mhz(&text),
            Err(e) => {
                out.warn("cpuinfo", e);
                BTreeMap::new()
            }
        };
        let ms_per_jiffy = 1000.0 / ctx.system.clk_tck as f64;
        self.previous.begin();
        for (&cpu, &times) in &per_cpu {
            let sample = CpuSample {
                times,
                softirqs: softirqs.get(&cpu).copied().unwrap_or_default(),
                softnet: softnet.get(&cpu).copied().unwrap_or_default(),
            };
            let Some((_, prev)) = self.previous.advance(cpu, ctx.now, sample) else {
                continue;
            };
            let irq = |i: usize| delta(sample.softirqs[i], prev.softirqs[i]);
            let ms = |i: usize| {
                let jiffies = delta(sample.times.cols[i], prev.times.cols[i]);
                (jiffies as f64 * ms_per_jiffy).round() as u64
            };
            let util = busy_percent(&sample.times, &prev.times);
            let mhz = mhz.get(&cpu).map_or_else(String::new, |m| fixed2(*m));
            record!(
                out,
                "system_cpu",
                cpu,
                irq(0),
                irq(1),
                irq(2),
                irq(3),
                ms(0),
                ms(1),
                ms(2),
                ms(3),
                ms(4),
                ms(5),
                ms(6),
                ms(7),
                delta(sample.softnet.0, prev.softnet.0),
                delta(sample.softnet.1, prev.softnet.1),
                fixed2(util),
                mhz
            );
        }
        if let Some(times) = all {
            let sample = CpuSample {
                times,
                ..Default::default()
            };
            if let Some((_, prev)) = self.previous.advance(ALL, ctx.now, sample) {
                let util = busy_percent(&times, &prev.times);
                record!(out, "system_cpu_util", "cpu", fixed2(util));
                if ctx.above_upper_thr(util) {
                    out.event(
                        "cpu",
                        "cpu",
                        "total_used_per",
                        "",
                        format!("too high cpu utilization: {util:.2}%"),
                    );
                }
            }
        }
        Ok(())
    }
}

/// Busy share of the interval between two samples, in percent.
fn busy_percent(cur: &CpuTimes, prev: &CpuTimes) -> f64 {
    let total = delta(cur.total(), prev.total());
    if total == 0 {
        return 0.0;
    }
    delta(cur.busy(), prev.busy()) as f64 / total as f64 * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_by_cpu_number() {
        let (all, per) = parse_stat(
            "cpu  10 1 5 100 2 0 1 0 0 0\ncpu0 4 0 2 50 1 0 0 0 0 0\ncpu3 6 1 3 50 1 0 1 0 0 0\nintr 5\n",
        );
        assert_eq!(all.unwrap().cols, [10, 1, 5, 100, 2, 0, 1, 0]);
        assert_eq!(per.keys().copied().collect::<Vec<_>>(), [0, 3]);
        assert_eq!(per[&3].busy(), 11);
    }

    #[test]
    fn softirqs_by_column_header() {
        let s = parse_softirqs(
            "                    CPU0       CPU2\n          HI:          1          2\n       TIMER:        100        200\n      NET_RX:          7          8\n         RCU:          3          4\n       SCHED:          9         10\n",
        );
        assert_eq!(s[&0], [3, 100, 9, 7]);
        assert_eq!(s[&2], [4, 200, 10, 8]);
    }

    #[test]
    fn softnet_rows_by_cpu_column_or_position() {
        let new = "0000000a 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000 00000000 00000003\n";
        assert_eq!(parse_softnet(new, &[0, 3]), BTreeMap::from([(3, (2, 16))]));
        let old = "0000000a 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010\n";
        assert_eq!(parse_softnet(old, &[5]), BTreeMap::from([(5, (2, 16))]));
        assert!(parse_softnet("garbage\n", &[0]).is_empty());
    }

    #[test]
    fn cpuinfo_mhz_per_processor() {
        let m = parse_cpuinfo_mhz(
            "processor\t: 0\ncpu MHz\t\t: 2400.123\n\nprocessor\t: 1\nmodel name: x\n",
        );
        assert_eq!(m, BTreeMap::from([(0, 2400.123)]));
    }

    #[test]
    fn busy_share() {
        let a = CpuTimes {
            cols: [0, 0, 0, 0, 0, 0, 0, 0],
        };
        let b = CpuTimes {
            cols: [30, 0, 10, 50, 10, 0, 0, 0],
        };
        assert_eq!(busy_percent(&b, &a), 40.0);
        assert_eq!(busy_percent(&a, &a), 0.0);
    }
}
