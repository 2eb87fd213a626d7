//! baseinfo on this machine, against real peers:
//! - the collectors agree with Debian's `prometheus-node-exporter` (CPU seconds, memory, NIC
//!   bytes and packets, disk operations and bytes, filesystem sizes): each collection is
//!   bracketed by two node_exporter scrapes, and every value must lie between what
//!   node_exporter saw before and after, within the rounding stated in
//!   `probes/baseinfo/README.md`;
//! - the `system_infos` probe under the real daemon, with a `proc_name` snooper for a
//!   process this test starts, reports that process only, with its RSS and CPU use.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use gala_baseinfo::{Baseinfo, Context, HostRoot, Round, SystemInfo, SELF_META, SUBITEMS};
use gala_e2e::{http_get, start_node_exporter, KillOnDrop, Python, Samples, Sandbox};
use gala_probe_sdk::Config;

/// Field names of every baseinfo table, from the probe's own meta files.
fn field_names() -> HashMap<String, Vec<String>> {
    let mut out = HashMap::new();
    for (name, text) in SUBITEMS.iter().map(|s| s.meta).chain([SELF_META]) {
        let tables = gala_meta::parse_meta_file(Path::new(name), text, &Default::default())
            .expect("baseinfo meta");
        for t in tables {
            out.insert(
                t.name.clone(),
                t.fields.iter().map(|f| f.name.clone()).collect(),
            );
        }
    }
    out
}

/// The records of `table` in `round`, as field name → value.
fn rows(round: &Round, table: &str) -> Vec<HashMap<String, String>> {
    let names = field_names();
    let fields = &names[table];
    round
        .records
        .iter()
        .filter(|r| r.table == table)
        .map(|r| {
            fields
                .iter()
                .cloned()
                .zip(r.values.iter().cloned())
                .collect()
        })
        .collect()
}

fn num(row: &HashMap<String, String>, field: &str) -> f64 {
    row[field]
        .parse()
        .unwrap_or_else(|_| panic!("{field} = {:?} is not a number", row[field]))
}

/// Sum of the samples of `name` with `labels` in a node_exporter scrape.
fn node(s: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = s.find(name, labels);
    assert!(
        !found.is_empty(),
        "node_exporter has no {name}{labels:?}; it has {:?}",
        s.find(name, &[])
    );
    found
        .iter()
        .map(|x| x.value.parse::<f64>().expect("number"))
        .sum()
}

fn scrape(port: u16) -> Samples {
    let (status, body) = http_get(port, "/metrics").expect("scrape node_exporter");
    assert_eq!(status, 200);
    Samples::parse(&body)
}

/// Work for the interval: CPU on both cores, direct writes to the root disk, some traffic.
fn generate_load() {
    let busy = |ms| {
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_millis(ms);
            let mut x = 0u64;
            while Instant::now() < end {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
        })
    };
    let threads = [busy(800), busy(800)];
    let dir = tempfile::Builder::new()
        .prefix("gala-baseinfo-")
        .tempdir_in("/var/tmp")
        .expect("tempdir on the root disk");
    let mut f = std::fs::File::create(dir.path().join("load")).expect("create");
    let block = vec![0x5au8; 1 << 20];
    for _ in 0..8 {
        f.write_all(&block).expect("write");
        f.sync_all().expect("fsync");
    }
    // Best effort: the registries are the only reachable hosts.
    let _ = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-m",
            "2",
            "https://deb.debian.org/debian/dists/bookworm/Release",
        ])
        .status();
    for t in threads {
        let _ = t.join();
    }
}

/// node_exporter scrapes just before and just after one collection: for a counter, the
/// collection's reading lies between the two.
struct Bracket {
    before: Samples,
    after: Samples,
}

/// A counter's change over the collector's interval, bounded by node_exporter: at least its
/// change from the scrape after the first collection to the scrape before the second, at
/// most from the scrape before the first to the scrape after the second.
fn counter_bounds(b0: &Bracket, b1: &Bracket, name: &str, labels: &[(&str, &str)]) -> (f64, f64) {
    let inner = node(&b1.before, name, labels) - node(&b0.after, name, labels);
    let outer = node(&b1.after, name, labels) - node(&b0.before, name, labels);
    (inner, outer)
}

/// Asserts `lo - slack <= ours <= hi + slack`.
fn within(what: &str, ours: f64, (lo, hi): (f64, f64), slack: f64) {
    assert!(
        ours >= lo - slack && ours <= hi + slack,
        "{what}: baseinfo {ours} outside node_exporter's [{lo}, {hi}] ± {slack}"
    );
}

#[test]
fn collectors_agree_with_node_exporter() {
    // No sandbox holds the gate here, and the load below must not meet a test running alone.
    let _gate = gala_e2e::gate::shared();
    let (_ne, port) = start_node_exporter().expect(
        "node_exporter not installed: apt-get install prometheus-node-exporter (dev.sh test does)",
    );
    let root = HostRoot::default();
    let system = SystemInfo::detect();
    let config = Config::offline_from(
        "baseinfo",
        Some(r#"{"subitems":["cpu","mem","nic","disk","fs"]}"#),
    )
    .expect("config");
    let mut baseinfo = Baseinfo::default();
    baseinfo.configure(&config);
    let origin = Instant::now();
    let mut bracketed = || {
        let before = scrape(port);
        let now = origin.elapsed() + Duration::from_secs(1);
        let ctx = Context {
            root: &root,
            config: &config,
            now,
            system: &system,
        };
        let round = baseinfo.collect(&ctx);
        let after = scrape(port);
        (Bracket { before, after }, round, now)
    };
    let (b0, _, start) = bracketed();
    generate_load();
    std::thread::sleep(Duration::from_secs(3).saturating_sub(origin.elapsed()));
    let (b1, r1, end) = bracketed();
    // The interval the collectors measured, as they measured it.
    let secs = (end - start).as_secs_f64();
    let bounds = |name: &str, labels: &[(&str, &str)]| counter_bounds(&b0, &b1, name, labels);

    for health in rows(&r1, "baseinfo_collector") {
        assert_eq!(health["success"], "1", "{health:?}");
    }

    // CPU: milliseconds in each state during the interval, per CPU (10 ms jiffies).
    let cpus = rows(&r1, "system_cpu");
    assert!(!cpus.is_empty(), "no system_cpu records");
    for row in &cpus {
        let cpu = row["cpu"].as_str();
        for (field, mode) in [
            ("user_msec", "user"),
            ("system_msec", "system"),
            ("idle_msec", "idle"),
            ("iowait_msec", "iowait"),
        ] {
            let ours = num(row, field) / 1000.0;
            let b = bounds("node_cpu_seconds_total", &[("cpu", cpu), ("mode", mode)]);
            within(&format!("cpu {cpu} {mode} seconds"), ours, b, 0.011);
        }
    }

    // Memory: kB against bytes; MemAvailable moves, so it lies between the two scrapes.
    let mem = &rows(&r1, "system_meminfo")[0];
    let total = node(&b1.after, "node_memory_MemTotal_bytes", &[]);
    within(
        "MemTotal",
        num(mem, "total_kB") * 1024.0,
        (total, total),
        0.0,
    );
    let avail = |s: &Samples| node(s, "node_memory_MemAvailable_bytes", &[]);
    let (a, b) = (avail(&b1.before), avail(&b1.after));
    within(
        "MemAvailable",
        num(mem, "available_kB") * 1024.0,
        (a.min(b), a.max(b)),
        4e6,
    );

    // NICs: changes over the interval.
    let nics = rows(&r1, "nic");
    assert!(!nics.is_empty(), "no physical NIC reported");
    for row in &nics {
        let dev = row["dev_name"].as_str();
        for (field, metric) in [
            ("rx_bytes", "node_network_receive_bytes_total"),
            ("tx_bytes", "node_network_transmit_bytes_total"),
            ("rx_packets", "node_network_receive_packets_total"),
            ("tx_packets", "node_network_transmit_packets_total"),
        ] {
            let b = bounds(metric, &[("device", dev)]);
            within(&format!("{dev} {field}"), num(row, field), b, 0.0);
        }
    }

    // Disks: per-second rates (two decimals) back to counts over the measured interval.
    let disks = rows(&r1, "system_iostat");
    let common: Vec<_> = disks
        .iter()
        .filter(|r| {
            !b1.after
                .find(
                    "node_disk_reads_completed_total",
                    &[("device", &r["disk_name"])],
                )
                .is_empty()
        })
        .collect();
    assert!(
        !common.is_empty(),
        "no disk in common with node_exporter: {disks:?}"
    );
    let rounding = 0.005 * secs;
    for row in common {
        let dev = row["disk_name"].as_str();
        let labels = [("device", dev)];
        within(
            &format!("{dev} reads"),
            num(row, "rspeed") * secs,
            bounds("node_disk_reads_completed_total", &labels),
            rounding,
        );
        within(
            &format!("{dev} writes"),
            num(row, "wspeed") * secs,
            bounds("node_disk_writes_completed_total", &labels),
            rounding,
        );
        within(
            &format!("{dev} written bytes"),
            num(row, "wspeed_kB") * 1024.0 * secs,
            bounds("node_disk_written_bytes_total", &labels),
            rounding * 1024.0,
        );
    }

    // Filesystems: sizes in 1K blocks against bytes.
    let fs = rows(&r1, "system_df");
    let rootfs = fs
        .iter()
        .find(|r| r["MountOn"] == "/")
        .expect("/ in system_df");
    let size = node(
        &b1.after,
        "node_filesystem_size_bytes",
        &[("mountpoint", "/")],
    );
    within(
        "/ size",
        num(rootfs, "Blocks") * 1024.0,
        (size, size),
        1023.0,
    );
    let avail = |s: &Samples| node(s, "node_filesystem_avail_bytes", &[("mountpoint", "/")]);
    let (a, b) = (avail(&b1.before), avail(&b1.after));
    within(
        "/ available",
        num(rootfs, "Free") * 1024.0,
        (a.min(b), a.max(b)),
        1023.0,
    );
}

/// Starts a process named `gala_busy` that spins one core and holds 200 MiB resident.
fn busy_process() -> KillOnDrop {
    let script = r#"
import ctypes, sys
ctypes.CDLL(None).prctl(15, b"gala_busy", 0, 0, 0)
held = bytearray(200 * 1024 * 1024)
for i in range(0, len(held), 4096):
    held[i] = 1
print("ready", flush=True)
while True:
    pass
"#;
    let mut py = Python::spawn(script);
    assert_eq!(py.line(), "ready");
    py.into_child()
}

/// A sandbox with `system_infos` and its meta files installed, and a running daemon.
fn daemon_with_baseinfo() -> (Sandbox, gala_e2e::Daemon) {
    let sb = Sandbox::with_baseinfo();
    let d = sb.start();
    (sb, d)
}

/// Host-wide sub-items under the daemon: absolute values at once, rates after one period,
/// threshold events in the event log, and every sub-item's own success metric.
#[test]
fn host_wide_subitems_report_and_raise_events() {
    let (sb, d) = daemon_with_baseinfo();
    let (status, text) = d.put(
        "baseinfo",
        r#"{"cmd":{"probe":["cpu","mem","nic","net","disk","fs","host"]},"params":{"report_period":5,"report_event":1,"res_upper_thr":1},"state":"running"}"#,
    );
    assert_eq!(status, 200, "{text}");
    let s = d.wait_for(
        Duration::from_secs(30),
        "rates after the second round",
        |s: &Samples| {
            s.value("gala_gopher_cpu_total_used_per", &[("cpu", "cpu")])
                .is_some()
        },
    );
    for (name, labels) in [
        (
            "gala_gopher_mem_total_kB",
            &[("infos", "/proc/meminfo")][..],
        ),
        ("gala_gopher_host_value", &[]),
        ("gala_gopher_fs_UsePer", &[("MountOn", "/")]),
        ("gala_gopher_net_tcp_curr_estab", &[]),
    ] {
        assert!(!s.find(name, labels).is_empty(), "{name}{labels:?} missing");
    }
    for sub in ["cpu", "mem", "nic", "net", "disk", "fs", "host"] {
        assert_eq!(
            s.value("gala_gopher_baseinfo_success", &[("subitem", sub)]),
            Some("1"),
            "{sub}"
        );
    }
    // Memory in use is above 1 % on any machine: the mem event is raised, once.
    let event = sb.wait_event(Duration::from_secs(10), "mem util", |e| {
        e["Resource"]["metric"] == "gala_gopher_mem_util"
    });
    assert_eq!(event["SeverityText"], "WARN");
    let body = event["Body"].as_str().expect("Body");
    assert!(
        body.contains("Entity(/proc/meminfo) too high memory utilization"),
        "{body}"
    );
    assert!(
        event["Attributes"]["entity_id"]
            .as_str()
            .is_some_and(|id| id.ends_with("_mem_:proc:meminfo")),
        "{event}"
    );
    let repeats = sb
        .events()
        .iter()
        .filter(|e| e["Resource"]["metric"] == "gala_gopher_mem_util")
        .count();
    assert_eq!(repeats, 1, "de-duplicated per entity for event.timeout");
}

/// Runs alone (`gate::exclusive`): the busy process's share of a core is what it checks, and
/// a neighbour on the other core would eat into it (and the process would slow the tests
/// beside it).
#[test]
fn proc_snooper_reports_the_snooped_process_only() {
    let _alone = gala_e2e::gate::exclusive();
    let (_sb, d) = daemon_with_baseinfo();
    let busy = busy_process();
    let pid = busy.0.id().to_string();
    let (status, text) = d.put(
        "baseinfo",
        r#"{"cmd":{"probe":["proc"]},"snoopers":{"proc_name":[{"comm":"^gala_busy$"}]},"params":{"report_period":5},"state":"running"}"#,
    );
    assert_eq!(status, 200, "{text}");
    // The first report of a process is suppressed: its rates need two samples.
    let s = d.wait_for(
        Duration::from_secs(30),
        "system_proc of the busy process",
        |s: &Samples| {
            s.value("gala_gopher_proc_cpu_util", &[("tgid", &pid)])
                .is_some()
        },
    );
    let value = |name: &str| -> f64 {
        s.value(name, &[("tgid", &pid)])
            .unwrap_or_else(|| panic!("{name} missing"))
            .parse()
            .expect("number")
    };
    let cpu = value("gala_gopher_proc_cpu_util");
    assert!(
        (60.0..=110.0).contains(&cpu),
        "a spinning process uses one core: cpu_util {cpu}"
    );
    let rss = value("gala_gopher_proc_pm_size");
    assert!(
        rss >= 200.0 * 1024.0 * 1024.0,
        "RSS {rss} below the 200 MiB held"
    );
    assert!(value("gala_gopher_proc_num_threads") >= 1.0);
    let tgids: BTreeMap<String, ()> = s
        .find("gala_gopher_proc_cpu_util", &[])
        .iter()
        .map(|x| (x.labels["tgid"].clone(), ()))
        .collect();
    assert_eq!(
        tgids.keys().collect::<Vec<_>>(),
        [&pid],
        "only the snooped process"
    );
    let ok = s.value("gala_gopher_baseinfo_success", &[("subitem", "proc")]);
    assert_eq!(ok, Some("1"));
}
