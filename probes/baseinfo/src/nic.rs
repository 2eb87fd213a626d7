//! Sub-item `nic`: per physical NIC, traffic counters from `/proc/net/dev`, link state from
//! `/sys/class/net/<dev>/operstate` and root-qdisc statistics over netlink; table `nic`.
//! The device set is re-scanned every round, so hot-plugged NICs appear (after one
//! suppressed round) and removed ones disappear.

pub mod qdisc;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::collector::{delta, fixed2, rate, Collector, Context, Previous, Report};
use crate::error::CollectError;
use crate::record;

pub use qdisc::{dump_root_qdiscs, RootQdiscStats};

/// The interface counters file.
pub const NET_DEV: &str = "/proc/net/dev";

/// Counters of one interface, in table order: rx bytes, packets, errs, dropped, then tx.
pub type DevCounters = [u64; 8];

/// The column names in `/proc/net/dev`'s header of the four counters of each direction.
const COLUMNS: [&str; 4] = ["bytes", "packets", "errs", "drop"];

/// Names of the columns of the receive and transmit groups, as every kernel since 2.6 has
/// them (used when the header rows are missing).
const RX_DEFAULT: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];

/// Parses `/proc/net/dev`: per interface, its [`DevCounters`]. Columns are found by the
/// names in the header row (`|bytes packets errs drop ...|bytes packets ...`); a row that
/// lacks one of the wanted columns is left out rather than reported with a wrong value.
pub fn parse_net_dev(text: &str) -> BTreeMap<&str, DevCounters> {
    let mut rx: Vec<&str> = RX_DEFAULT.to_vec();
    let mut tx: Vec<&str> = RX_DEFAULT.to_vec();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if line.contains('|') {
            let groups: Vec<&str> = line.split('|').collect();
            if let [_, r, t, ..] = groups[..] {
                if r.split_ascii_whitespace().any(|w| w == "bytes") {
                    rx = r.split_ascii_whitespace().collect();
                    tx = t.split_ascii_whitespace().collect();
                }
            }
            continue;
        }
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let values: Vec<Option<u64>> = rest
            .split_ascii_whitespace()
            .map(|w| w.parse().ok())
            .collect();
        let column = |group: &[&str], offset: usize, name: &str| -> Option<u64> {
            let i = group.iter().position(|&c| c == name)?;
            *values.get(offset + i)?
        };
        let mut counters = [0u64; 8];
        let mut complete = true;
        for (i, name) in COLUMNS.iter().enumerate() {
            match (column(&rx, 0, name), column(&tx, rx.len(), name)) {
                (Some(r), Some(t)) => {
                    counters[i] = r;
                    counters[4 + i] = t;
                }
                _ => complete = false,
            }
        }
        if complete {
            out.insert(name.trim(), counters);
        }
    }
    out
}

/// The `status` label: `UP` when `operstate` says `up`, else `DOWN` (also when unknown).
pub fn link_status(operstate: Option<&str>) -> &'static str {
    match operstate {
        Some(s) if s.trim().eq_ignore_ascii_case("up") => "UP",
        _ => "DOWN",
    }
}

/// The physical NICs under `root`: entries of `sys/class/net` with no namesake in
/// `sys/devices/virtual/net`, sorted.
pub fn physical_nics(root: &Path) -> std::io::Result<Vec<String>> {
    let class = root.join("sys/class/net");
    let virt = root.join("sys/devices/virtual/net");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&class)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !virt.join(&name).exists() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// One NIC at one instant.
#[derive(Debug, Clone, Copy)]
struct NicSample {
    counters: DevCounters,
    tc: Option<RootQdiscStats>,
}

/// Events: field, index in [`DevCounters`], message, in the original's order.
const EVENTS: [(&str, usize, &str); 4] = [
    ("tx_dropped", 7, "net device tx queue drops"),
    ("rx_dropped", 3, "net device rx queue drops"),
    ("tx_errs", 6, "net device tx queue errors"),
    ("rx_errs", 2, "net device rx queue errors"),
];

/// The `nic` collector.
#[derive(Debug, Default)]
pub struct NicCollector {
    previous: Previous<String, NicSample>,
}

impl NicCollector {
    /// Root-qdisc statistics by device name, when the host root is this machine's `/` (netlink
    /// answers for this network namespace, not for a tree under another root).
    fn qdiscs(
        ctx: &Context<'_>,
        devices: &[String],
        out: &mut Report,
    ) -> HashMap<String, RootQdiscStats> {
        if ctx.root.root() != Path::new("/") {
            return HashMap::new();
        }
        let by_index = match dump_root_qdiscs() {
            Ok(stats) => stats,
            Err(e) => {
                out.warn(
                    "qdisc",
                    format!("netlink RTM_GETQDISC dump failed: {e}; the tc_* fields stay empty"),
                );
                return HashMap::new();
            }
        };
        devices
            .iter()
            .filter_map(|dev| {
                let index = nix::net::if_::if_nametoindex(dev.as_str()).ok()?;
                Some((dev.clone(), *by_index.get(&index)?))
            })
            .collect()
    }
}

impl Collector for NicCollector {
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError> {
        let class = ctx.root.path("/sys/class/net");
        let devices = physical_nics(ctx.root.root()).map_err(|source| CollectError::Read {
            path: class,
            source,
        })?;
        let text = ctx.root.read(NET_DEV)?;
        let counters = parse_net_dev(&text);
        let tc = Self::qdiscs(ctx, &devices, out);
        let params = ctx.params();
        let events_on = params.report_event && params.drops_thr > 0;
        self.previous.begin();
        // Entries of /sys/class/net that are not interfaces (bonding_masters) have no row.
        for dev in devices.iter().filter(|d| counters.contains_key(d.as_str())) {
            let sample = NicSample {
                counters: counters[dev.as_str()],
                tc: tc.get(dev).copied(),
            };
            let Some((secs, prev)) = self.previous.advance(dev.clone(), ctx.now, sample) else {
                continue;
            };
            let operstate = ctx
                .root
                .read_optional(format!("/sys/class/net/{dev}/operstate"))
                .ok()
                .flatten();
            let (cur, old) = (sample.counters, prev.counters);
            let d = |i: usize| delta(cur[i], old[i]);
            let kib_per_s = |i: usize| fixed2(rate(cur[i], old[i], secs) / 1024.0);
            let tc_delta = |f: fn(&RootQdiscStats) -> u64| match (&sample.tc, &prev.tc) {
                (Some(c), Some(p)) => delta(f(c), f(p)).to_string(),
                _ => String::new(),
            };
            let tc_now = |f: fn(&RootQdiscStats) -> u64| {
                sample
                    .tc
                    .as_ref()
                    .map_or_else(String::new, |c| f(c).to_string())
            };
            record!(
                out,
                "nic",
                dev,
                link_status(operstate.as_deref()),
                d(0),
                d(1),
                d(2),
                d(3),
                d(4),
                d(5),
                d(6),
                d(7),
                kib_per_s(0),
                kib_per_s(4),
                tc_delta(|s| s.drops),
                tc_delta(|s| s.overlimits),
                tc_now(|s| s.backlog),
                tc_now(|s| s.ecn_mark)
            );
            if events_on {
                for (metric, i, what) in EVENTS {
                    if d(i) > u64::from(params.drops_thr) {
                        out.event("nic", dev, metric, dev, format!("{what}({}).", d(i)));
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET_DEV_TEXT: &str = "\
Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  878352945  6861344   0    0    0    0     0     0    878352945  6861344   0    0    0    0      0      0
  eth0: 58324993484 49590277  1    2    0    0     0     0   26857829724 19952463  3    4    0    0      0      0
";

    #[test]
    fn counters_by_header_columns() {
        let m = parse_net_dev(NET_DEV_TEXT);
        assert_eq!(
            m["eth0"],
            [58324993484, 49590277, 1, 2, 26857829724, 19952463, 3, 4]
        );
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), ["eth0", "lo"]);
    }

    #[test]
    fn old_layout_without_space_and_without_header() {
        // 2.4-era rows glue the first number to the colon; no header rows at all.
        let m = parse_net_dev("eth1:100 2 0 1 0 0 0 0 200 3 0 5 0 0 0 0\n");
        assert_eq!(m["eth1"], [100, 2, 0, 1, 200, 3, 0, 5]);
    }

    #[test]
    fn a_header_with_other_columns() {
        // A kernel with one more receive column before `drop`: found by name.
        let m = parse_net_dev(
            " face |bytes packets errs extra drop|bytes packets errs drop\n  e0: 1 2 3 99 4 5 6 7 8\n",
        );
        assert_eq!(m["e0"], [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn rows_missing_columns_are_left_out() {
        let text =
            format!("{NET_DEV_TEXT}  eth9: 1 2 3\n  eth8: 1 2 x 4 0 0 0 0 5 6 7 8 0 0 0 0\n");
        let m = parse_net_dev(&text);
        assert!(!m.contains_key("eth9"));
        assert!(!m.contains_key("eth8"));
        assert_eq!(m.len(), 2);
        assert!(parse_net_dev("").is_empty());
    }

    #[test]
    fn status_from_operstate() {
        assert_eq!(link_status(Some("up\n")), "UP");
        assert_eq!(link_status(Some("UP")), "UP");
        assert_eq!(link_status(Some("down\n")), "DOWN");
        assert_eq!(link_status(Some("unknown\n")), "DOWN");
        assert_eq!(link_status(None), "DOWN");
    }

    #[test]
    fn physical_means_not_under_devices_virtual() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in ["eth0", "lo", "veth1", "ens3"] {
            std::fs::create_dir_all(root.join("sys/class/net").join(d)).unwrap();
        }
        for d in ["lo", "veth1"] {
            std::fs::create_dir_all(root.join("sys/devices/virtual/net").join(d)).unwrap();
        }
        assert_eq!(physical_nics(root).unwrap(), ["ens3", "eth0"]);
        assert!(physical_nics(&root.join("nowhere")).is_err());
    }
}
