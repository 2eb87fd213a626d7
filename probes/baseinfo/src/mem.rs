//! Sub-item `mem`: `/proc/meminfo` (parsed by key, whatever the order) and
//! `/proc/sys/fs/dentry-state`; tables `system_meminfo` and `system_dentry`. Absolute values,
//! reported from the first round.

use std::collections::HashMap;

use crate::collector::{fixed2, Collector, Context, Report};
use crate::error::CollectError;
use crate::record;

/// Parses `/proc/meminfo` into key → value (kB for sized entries, a count for `HugePages_*`).
pub fn parse_meminfo(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, rest) = line.split_once(':')?;
            let value = rest.split_ascii_whitespace().next()?.parse().ok()?;
            Some((key.trim(), value))
        })
        .collect()
}

/// Parses `/proc/sys/fs/dentry-state`: (nr_dentry, nr_unused, age_limit).
pub fn parse_dentry_state(text: &str) -> Option<(u64, u64, u64)> {
    let mut cols = text.split_ascii_whitespace().map(|w| w.parse::<u64>());
    match (cols.next(), cols.next(), cols.next()) {
        (Some(Ok(a)), Some(Ok(b)), Some(Ok(c))) => Some((a, b, c)),
        _ => None,
    }
}

/// The `system_meminfo` fields after the key, in meta order, as `/proc/meminfo` keys; the
/// computed ones are `None`.
const MEMINFO_FIELDS: [Option<&str>; 24] = [
    Some("MemTotal"),
    Some("MemFree"),
    Some("MemAvailable"),
    None, // util
    Some("Buffers"),
    Some("Cached"),
    Some("Active"),
    Some("Inactive"),
    Some("SwapTotal"),
    Some("SwapFree"),
    None, // swap_util
    Some("Slab"),
    Some("SReclaimable"),
    Some("SUnreclaim"),
    Some("PageTables"),
    Some("VmallocUsed"),
    Some("KernelStack"),
    Some("Active(anon)"),
    Some("Inactive(anon)"),
    Some("Active(file)"),
    Some("Inactive(file)"),
    Some("Mlocked"),
    None, // big_page_kB
    Some("Shmem"),
];

/// The `mem` collector.
#[derive(Debug, Default)]
pub struct MemCollector;

impl Collector for MemCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let text = ctx.root.read("/proc/meminfo")?;
        let info = parse_meminfo(&text);
        let get = |k: &str| info.get(k).copied().unwrap_or(0);
        let total = get("MemTotal");
        if total == 0 {
            return Err(CollectError::Parse {
                path: ctx.root.path("/proc/meminfo"),
                what: "no MemTotal".into(),
            });
        }
        let used = total
            .saturating_sub(get("MemFree"))
            .saturating_sub(get("Buffers"))
            .saturating_sub(get("Cached"));
        let util = used as f64 / total as f64 * 100.0;
        let swap_total = get("SwapTotal");
        let swap_util = if swap_total > 0 {
            swap_total.saturating_sub(get("SwapFree")) as f64 / swap_total as f64 * 100.0
        } else {
            0.0
        };
        let big_pages = get("HugePages_Total") * get("Hugepagesize");
        let mut values = Vec::with_capacity(MEMINFO_FIELDS.len() + 1);
        values.push("/proc/meminfo".to_owned());
        for (i, key) in MEMINFO_FIELDS.iter().enumerate() {
            values.push(match (key, i) {
                (Some(k), _) => match info.get(k) {
                    Some(v) => v.to_string(),
                    // Not on this kernel: no value rather than a made-up 0.
                    None => String::new(),
                },
                (None, 3) => fixed2(util),
                (None, 10) => fixed2(swap_util),
                (None, _) => big_pages.to_string(),
            });
        }
        out.records.push(crate::Record {
            table: "system_meminfo",
            values,
        });
        for (metric, value, what) in [("util", util, "memory"), ("swap_util", swap_util, "swap")] {
            if ctx.above_upper_thr(value) {
                out.event(
                    "mem",
                    "/proc/meminfo",
                    metric,
                    "",
                    format!("too high {what} utilization: {value:.2}%"),
                );
            }
        }
        match ctx.root.read("/proc/sys/fs/dentry-state") {
            Ok(text) => match parse_dentry_state(&text) {
                Some((dentry, unused, age)) => {
                    record!(out, "system_dentry", "fs.dentry-state", dentry, unused, age)
                }
                None => out.warn("dentry", "unexpected content of /proc/sys/fs/dentry-state"),
            },
            Err(e) => out.warn("dentry", e),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_by_key_in_any_order() {
        let m = parse_meminfo("MemFree:  100 kB\nMemTotal: 1000 kB\nHugePages_Total:       2\nbroken\nActive(anon): 5 kB\n");
        assert_eq!(m["MemTotal"], 1000);
        assert_eq!(m["MemFree"], 100);
        assert_eq!(m["HugePages_Total"], 2);
        assert_eq!(m["Active(anon)"], 5);
        assert!(!m.contains_key("broken"));
    }

    #[test]
    fn dentry_state() {
        assert_eq!(
            parse_dentry_state("52147\t36297\t45\t0\t7\t0\n"),
            Some((52147, 36297, 45))
        );
        assert_eq!(parse_dentry_state("1 2\n"), None);
    }

    #[test]
    fn field_table_matches_the_meta_file() {
        let meta = include_str!("../meta/mem.meta");
        let start = meta.find("system_meminfo").unwrap();
        let end = meta.find("system_dentry").unwrap();
        let fields = meta[start..end].matches("type: \"gauge\"").count();
        assert_eq!(fields, MEMINFO_FIELDS.len());
    }
}
