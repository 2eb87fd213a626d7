//! The probe against generated host trees: a hybrid host (v1 controllers and an empty unified
//! hierarchy) and a pure cgroup v2 host, every value checked against what the tree holds; the
//! scope, a container's missing file, and the meta file's agreement with the records.

use std::collections::HashMap;
use std::path::Path;

use gala_container::fixture::{self, container_id, Layout, BTIME};
use gala_container::{CgroupMode, Collector, Host, Record, Scope, META, TABLES};

/// Field names of each table, from the meta file.
fn fields() -> HashMap<String, Vec<String>> {
    gala_meta::parse_meta_file(Path::new(META.0), META.1, &Default::default())
        .expect("meta parses")
        .into_iter()
        .map(|t| {
            (
                t.name.clone(),
                t.fields.iter().map(|f| f.name.clone()).collect(),
            )
        })
        .collect()
}

/// Records of one container as table → field → value.
fn by_field(records: &[Record], short: &str) -> HashMap<&'static str, HashMap<String, String>> {
    let names = fields();
    records
        .iter()
        .filter(|r| r.values[0] == short)
        .map(|r| {
            let row = names[r.table]
                .iter()
                .cloned()
                .zip(r.values.iter().cloned())
                .collect();
            (r.table, row)
        })
        .collect()
}

/// Every container (an empty blacklist).
fn all() -> Scope {
    Scope {
        all_but: true,
        ..Scope::default()
    }
}

fn check_values(layout: Layout) {
    let dir = tempfile::tempdir().expect("tempdir");
    fixture::generate(dir.path(), layout, 3, 2, 4).expect("fixture");
    let host = Host::detect(dir.path(), CgroupMode::Auto).expect("host");
    let mut c = Collector::new(host);
    let cycle = c.cycle(&all());
    assert!(cycle.log.is_empty(), "{layout:?}: {:?}", cycle.log);
    assert_eq!(c.containers().count(), 3);
    // Container 2: 3 s of CPU, 3 MiB, 2 OOM kills, two processes of three descriptors.
    let id = container_id(2);
    let rows = by_field(&cycle.records, &id[..12]);
    assert_eq!(rows.len(), TABLES.len(), "{layout:?}: {rows:?}");
    let cpu = &rows["container_cpu"];
    assert_eq!(cpu["cpu_usage_seconds_total"], "3");
    assert_eq!(cpu["cpu_user_seconds_total"], "1.8");
    assert_eq!(cpu["cpu_system_seconds_total"], "1.2");
    assert_eq!(cpu["cpu_cfs_throttled_seconds_total"], "0.5");
    assert_eq!(cpu["cpu_load_average_10s"], "");
    let mem = &rows["container_memory"];
    assert_eq!(mem["memory_usage_bytes"], (3u64 << 20).to_string());
    assert_eq!(
        mem["memory_working_set_bytes"],
        ((3u64 << 20) - 2048).to_string()
    );
    assert_eq!(mem["memory_cache"], "4096");
    assert_eq!(mem["memory_mapped_file"], "1024");
    assert_eq!(mem["memory_rss"], ((3u64 << 20) - 4096).to_string());
    assert_eq!(rows["container_oom"]["oom_events_total"], "2");
    let fs = &rows["container_fs"];
    assert_eq!(fs["fs_reads_bytes_total"], "4096");
    assert_eq!(fs["fs_writes_bytes_total"], "8192");
    assert_eq!(fs["fs_read_seconds_total"], "");
    assert!(fs["fs_inodes_total"].parse::<u64>().expect("number") > 0);
    let net = &rows["container_network"];
    assert_eq!(net["network_receive_bytes_total"], "2000");
    assert_eq!(net["network_transmit_bytes_total"], "3000");
    assert_eq!(net["network_receive_errors_total"], "1");
    assert_eq!(net["network_transmit_packets_dropped_total"], "4");
    assert_eq!(rows["container_file"]["file_descriptors"], "6");
    let tck = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .expect("sysconf")
        .expect("CLK_TCK") as f64;
    let start: f64 = rows["container_start"]["start_time_seconds"]
        .parse()
        .expect("number");
    assert!(
        (start - (BTIME as f64 + 1000.0 / tck)).abs() < 1e-6,
        "{start}"
    );
}

#[test]
fn hybrid_host_values_come_from_the_v1_controllers() {
    check_values(Layout::Hybrid);
}

#[test]
fn pure_v2_host_values_come_from_the_unified_hierarchy() {
    check_values(Layout::Unified);
}

#[test]
fn whitelist_reports_exactly_the_listed_containers() {
    let dir = tempfile::tempdir().unwrap();
    fixture::generate(dir.path(), Layout::Hybrid, 4, 1, 2).unwrap();
    let mut c = Collector::new(Host::detect(dir.path(), CgroupMode::Auto).unwrap());
    let scope = Scope {
        all_but: false,
        ids: vec![container_id(1), container_id(3)[..12].to_owned()],
        hints: Vec::new(),
    };
    let cycle = c.cycle(&scope);
    let mut ids: Vec<&str> = cycle.records.iter().map(|r| r.values[0].as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, [&container_id(1)[..12], &container_id(3)[..12]]);
    // Blacklisting one of four reports the other three.
    let black = Scope {
        all_but: true,
        ids: vec![container_id(0)],
        hints: Vec::new(),
    };
    c.cycle(&black);
    let mut seen: Vec<String> = c.containers().map(str::to_owned).collect();
    seen.sort();
    assert_eq!(seen, [container_id(1), container_id(2), container_id(3)]);
    // An empty whitelist reports nothing.
    assert!(c.cycle(&Scope::default()).records.is_empty());
}

#[test]
fn a_missing_file_empties_its_fields_for_that_container_only_and_is_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    fixture::generate(dir.path(), Layout::Hybrid, 2, 1, 0).unwrap();
    let usage = fixture::cgroup_dir(dir.path(), "memory", 0).join("memory.usage_in_bytes");
    std::fs::remove_file(&usage).unwrap();
    let mut c = Collector::new(Host::detect(dir.path(), CgroupMode::Auto).unwrap());
    let cycle = c.cycle(&all());
    let broken = by_field(&cycle.records, &container_id(0)[..12]);
    let fine = by_field(&cycle.records, &container_id(1)[..12]);
    assert_eq!(broken["container_memory"]["memory_usage_bytes"], "");
    assert_eq!(broken["container_memory"]["memory_working_set_bytes"], "");
    assert_eq!(broken["container_memory"]["memory_cache"], "4096");
    assert_eq!(broken["container_cpu"]["cpu_usage_seconds_total"], "1");
    assert_eq!(
        fine["container_memory"]["memory_usage_bytes"],
        (2u64 << 20).to_string()
    );
    assert_eq!(cycle.log.len(), 1, "{:?}", cycle.log);
    assert!(
        cycle.log[0].contains("memory.usage_in_bytes"),
        "{:?}",
        cycle.log
    );
    // Still missing: not logged again; back and gone again: logged again.
    assert!(c.cycle(&all()).log.is_empty());
    std::fs::write(&usage, "5\n").unwrap();
    assert!(c.cycle(&all()).log.is_empty());
    std::fs::remove_file(&usage).unwrap();
    assert_eq!(c.cycle(&all()).log.len(), 1);
}

#[test]
fn a_container_whose_processes_are_gone_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    fixture::generate(dir.path(), Layout::Unified, 2, 1, 0).unwrap();
    let mut c = Collector::new(Host::detect(dir.path(), CgroupMode::Auto).unwrap());
    c.cycle(&all());
    assert_eq!(c.containers().count(), 2);
    // Container 0 stops: its cgroup is empty, then removed; container 1's goes at once.
    std::fs::write(
        fixture::cgroup_dir(dir.path(), "", 0).join("cgroup.procs"),
        "",
    )
    .unwrap();
    std::fs::remove_dir_all(dir.path().join(format!("proc/{}", fixture::pid(0, 0)))).unwrap();
    let cycle = c.cycle(&all());
    assert_eq!(c.containers().collect::<Vec<_>>(), [container_id(1)]);
    assert!(cycle
        .records
        .iter()
        .all(|r| r.values[0] == container_id(1)[..12]));
    std::fs::remove_dir_all(fixture::cgroup_dir(dir.path(), "", 1)).unwrap();
    c.cycle(&all());
    assert_eq!(c.containers().count(), 0);
}

#[test]
fn unified_mode_ignores_the_v1_hierarchies() {
    let dir = tempfile::tempdir().unwrap();
    fixture::generate(dir.path(), Layout::Hybrid, 1, 1, 0).unwrap();
    let host = Host::detect(dir.path(), CgroupMode::Unified).unwrap();
    assert!(host.mounts.v1.is_empty());
    let mut c = Collector::new(host);
    let cycle = c.cycle(&all());
    // The fixture's unified hierarchy holds only cgroup.procs: CPU and memory are empty and
    // said to be, the process-based fields are there.
    let rows = by_field(&cycle.records, &container_id(0)[..12]);
    assert!(!rows.contains_key("container_cpu"));
    assert_eq!(rows["container_file"]["file_descriptors"], "3");
    assert!(
        cycle.log.iter().any(|l| l.contains("cpu.stat")),
        "{:?}",
        cycle.log
    );
}

#[test]
fn no_cgroup_mount_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("proc/1")).unwrap();
    std::fs::write(
        dir.path().join("proc/1/mountinfo"),
        "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n",
    )
    .unwrap();
    let e = Host::detect(dir.path(), CgroupMode::Auto).unwrap_err();
    assert!(e.to_string().contains("names no cgroup"), "{e}");
}
