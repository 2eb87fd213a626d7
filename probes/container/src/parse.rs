//! Pure parsers of the kernel files the probe reads: cgroup flat-keyed and nested-keyed files,
//! single numbers, `cgroup.procs`, `/proc/<pid>/net/dev`, `/proc/<pid>/stat` and `/proc/stat`.
//! None of them allocates per line or panics on any input.

/// The values of `keys` in a flat-keyed file (`<key> <value>` per line: `memory.stat`,
/// `cpu.stat`, `cpuacct.stat`, `memory.events`, `memory.oom_control`), in the order of `keys`;
/// a key that is absent or whose value is not a number is `None`.
pub fn flat_keyed<const N: usize>(text: &str, keys: [&str; N]) -> [Option<u64>; N] {
    let mut out = [None; N];
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        if let Some(i) = keys.iter().position(|k| *k == key) {
            if out[i].is_none() {
                out[i] = value.parse().ok();
            }
        }
    }
    out
}

/// A file holding one unsigned number (`cpuacct.usage`, `memory.usage_in_bytes`,
/// `memory.current`).
pub fn single_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// The pids of a `cgroup.procs` file; lines that are not pids are skipped.
pub fn procs(text: &str) -> impl Iterator<Item = u32> + '_ {
    text.lines().filter_map(|l| l.trim().parse().ok())
}

/// Bytes read and written, summed over devices, from a v1 blkio byte file
/// (`blkio.throttle.io_service_bytes_recursive`: `<maj>:<min> Read|Write|Sync|Async|Discard|Total <n>`).
/// An idle cgroup prints only `Total 0`: nothing read or written.
pub fn blkio_bytes(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        let mut words = line.split_ascii_whitespace();
        let (Some(dev), Some(op), Some(n)) = (words.next(), words.next(), words.next()) else {
            continue;
        };
        if !dev.contains(':') {
            continue;
        }
        let Ok(n) = n.parse::<u64>() else { continue };
        match op {
            "Read" => read = read.saturating_add(n),
            "Write" => write = write.saturating_add(n),
            _ => {}
        }
    }
    (read, write)
}

/// Bytes read and written, summed over devices, from a v2 `io.stat`
/// (`<maj>:<min> rbytes=<n> wbytes=<n> rios=<n> ...`).
pub fn io_stat_bytes(text: &str) -> (u64, u64) {
    let (mut read, mut write) = (0u64, 0u64);
    for line in text.lines() {
        for word in line.split_ascii_whitespace().skip(1) {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(n) = value.parse::<u64>() else {
                continue;
            };
            match key {
                "rbytes" => read = read.saturating_add(n),
                "wbytes" => write = write.saturating_add(n),
                _ => {}
            }
        }
    }
    (read, write)
}

/// Network counters of a network namespace, summed over its interfaces.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetTotals {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Packets dropped on receive.
    pub rx_dropped: u64,
    /// Bytes transmitted.
    pub tx_bytes: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
}

/// Sums `/proc/<pid>/net/dev` over every interface but loopback (`lo`), as cAdvisor does.
/// `None` when the text has no interface line at all (not a net/dev file).
pub fn net_dev(text: &str) -> Option<NetTotals> {
    let mut totals = NetTotals::default();
    let mut any = false;
    for line in text.lines() {
        let Some((name, counters)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, word) in v.iter_mut().zip(counters.split_ascii_whitespace()) {
            let Ok(x) = word.parse() else { break };
            *slot = x;
            n += 1;
        }
        if n < 16 {
            continue;
        }
        any = true;
        if name == "lo" {
            continue;
        }
        // rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets errs drop ...
        totals.rx_bytes = totals.rx_bytes.saturating_add(v[0]);
        totals.rx_errors = totals.rx_errors.saturating_add(v[2]);
        totals.rx_dropped = totals.rx_dropped.saturating_add(v[3]);
        totals.tx_bytes = totals.tx_bytes.saturating_add(v[8]);
        totals.tx_errors = totals.tx_errors.saturating_add(v[10]);
        totals.tx_dropped = totals.tx_dropped.saturating_add(v[11]);
    }
    any.then_some(totals)
}

/// Field 22 of `/proc/<pid>/stat`: the process's start time in clock ticks since boot. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted from the last `)`.
pub fn stat_start_ticks(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    // After `)`: state is field 3, so start time (field 22) is the 20th word.
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// The boot time (`btime`, seconds since the epoch) of `/proc/stat`.
pub fn btime(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_give_the_asked_keys_in_order() {
        let text = "cache 4096\nrss 8192\nmapped_file 12\ntotal_inactive_file 100\nbad x\n";
        assert_eq!(
            flat_keyed(
                text,
                ["rss", "cache", "missing", "total_inactive_file", "bad"]
            ),
            [Some(8192), Some(4096), None, Some(100), None]
        );
        // memory.oom_control: the first occurrence wins.
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(flat_keyed(oom, ["oom_kill"]), [Some(3)]);
        assert_eq!(flat_keyed("", ["a"]), [None]);
    }

    #[test]
    fn single_numbers_and_procs() {
        assert_eq!(single_u64("123456\n"), Some(123456));
        assert_eq!(single_u64("max\n"), None);
        assert_eq!(procs("1\n22\n\nx\n333\n").collect::<Vec<_>>(), [1, 22, 333]);
    }

    #[test]
    fn blkio_sums_read_and_write_over_devices() {
        let text = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 12288\n8:0 Discard 0\n8:0 Total 12288\n8:16 Read 1\n8:16 Write 2\nTotal 12291\n";
        assert_eq!(blkio_bytes(text), (4097, 8194));
        assert_eq!(blkio_bytes("Total 0\n"), (0, 0));
    }

    #[test]
    fn io_stat_sums_rbytes_and_wbytes() {
        let text = "8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n253:0 rbytes=1 wbytes=2 rios=1 wios=1\n";
        assert_eq!(io_stat_bytes(text), (101, 202));
        assert_eq!(io_stat_bytes(""), (0, 0));
    }

    #[test]
    fn net_dev_skips_loopback_and_sums_the_rest() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:  1000      10    0    0    0     0          0         0     1000      10    0    0    0     0       0          0\n  eth0: 2000 20 1 2 0 0 0 0 3000 30 3 4 0 0 0 0\nveth1: 5 1 0 0 0 0 0 0 7 1 0 1 0 0 0 0\n";
        assert_eq!(
            net_dev(text),
            Some(NetTotals {
                rx_bytes: 2005,
                rx_errors: 1,
                rx_dropped: 2,
                tx_bytes: 3007,
                tx_errors: 3,
                tx_dropped: 5,
            })
        );
        // Only loopback: zero, not unknown.
        let lo = "    lo: 1 1 0 0 0 0 0 0 1 1 0 0 0 0 0 0\n";
        assert_eq!(net_dev(lo), Some(NetTotals::default()));
        assert_eq!(net_dev("garbage"), None);
    }

    #[test]
    fn stat_start_time_survives_odd_command_names() {
        let text = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 1 0 98765 1000 10 18446744073709551615\n";
        assert_eq!(stat_start_ticks(text), Some(98765));
        assert_eq!(stat_start_ticks("42 (x) S 1"), None);
        assert_eq!(stat_start_ticks("no paren"), None);
    }

    #[test]
    fn btime_is_read_from_proc_stat() {
        assert_eq!(
            btime("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(btime("cpu 1\n"), None);
    }
}
