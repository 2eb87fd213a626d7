//! Golden tests: every sub-item over a fixture `/proc` + `/sys` + `/etc` tree, two snapshots
//! ten seconds apart (`tests/fixtures/t0`, `t1`), must produce exactly the lines of
//! `tests/golden/<subitem>.txt`. `UPDATE_GOLDEN=1 cargo test -p gala-baseinfo --test golden`
//! rewrites them; review the diff before committing.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gala_baseinfo::fs::{FsCollector, FsStat, FsUsage, STAT_TIMEOUT};
use gala_baseinfo::{Baseinfo, Collector, Context, HostRoot, Round, SystemInfo, SUBITEMS};
use gala_probe_sdk::Config;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

/// The configuration of the golden run: every sub-item, events on with low thresholds, the
/// fixture's process and container snooped.
fn config(subitem: &str) -> Config {
    let json = format!(
        r#"{{"probeName":"baseinfo","subitems":["{subitem}"],
            "params":{{"reportPeriod":10,"reportEvent":true,"resUpperThr":30,"dropsThr":5,"elfPath":"/var/log"}},
            "snoopers":[{{"process":{{"pid":4242,"comm":"nginx"}}}},{{"process":{{"pid":999999,"comm":"gone"}}}},
                        {{"container":{{"id":"0123456789ab","name":"web"}}}}]}}"#
    );
    Config::offline_from("baseinfo", Some(&json)).expect("golden config")
}

/// Collectors of sub-items whose sources are system calls rather than files, with fixed
/// answers from the fixture snapshots.
fn fixed_collector(subitem: &str) -> Option<Box<dyn Collector>> {
    match subitem {
        "fs" => Some(Box::new(FsCollector::new(
            Arc::new(FixtureStatvfs::load()),
            STAT_TIMEOUT,
        ))),
        _ => None,
    }
}

/// `statvfs` answers (usage or errno) per mount point from
/// `tests/fixtures/<snapshot>/statvfs.txt`; ENOENT for a path it does not list.
struct FixtureStatvfs(HashMap<PathBuf, Result<FsUsage, i32>>);

impl FixtureStatvfs {
    fn load() -> Self {
        let mut answers = HashMap::new();
        for snapshot in ["t0", "t1"] {
            let dir = fixtures().join("fixtures").join(snapshot);
            let text = std::fs::read_to_string(dir.join("statvfs.txt")).expect("statvfs.txt");
            for line in text.lines().filter(|l| !l.starts_with('#')) {
                let path = |mount_point: &str| HostRoot::new(&dir).path(mount_point);
                if let Some(rest) = line.strip_prefix("errno ") {
                    let (errno, mount_point) = rest.split_once(' ').expect("errno line");
                    answers.insert(path(mount_point), Err(errno.parse().expect("errno")));
                    continue;
                }
                let cols: Vec<&str> = line.splitn(7, ' ').collect();
                let n = |i: usize| cols[i].parse::<u64>().expect("statvfs.txt number");
                let usage = FsUsage {
                    fragment_size: n(0),
                    blocks: n(1),
                    blocks_free: n(2),
                    blocks_available: n(3),
                    files: n(4),
                    files_free: n(5),
                };
                answers.insert(path(cols[6]), Ok(usage));
            }
        }
        FixtureStatvfs(answers)
    }
}

impl FsStat for FixtureStatvfs {
    fn stat(&self, path: &Path) -> std::io::Result<FsUsage> {
        let answer = self.0.get(path).copied().unwrap_or(Err(2));
        answer.map_err(std::io::Error::from_raw_os_error)
    }
}

const SYSTEM: SystemInfo = SystemInfo {
    clk_tck: 100,
    page_size: 4096,
    phys_pages: 2_000_000,
    cpus_configured: 4,
};

fn render(round: &Round, out: &mut String) {
    for r in round
        .records
        .iter()
        .filter(|r| r.table != "baseinfo_collector")
    {
        let _ = writeln!(out, "|{}|{}|", r.table, r.values.join("|"));
    }
    for e in &round.events {
        let _ = writeln!(
            out,
            "event {} {} {} device={:?}: {}",
            e.entity_name, e.entity_id, e.metric, e.device, e.message
        );
    }
    for l in &round.log {
        let _ = writeln!(out, "{l}");
    }
}

#[test]
fn every_subitem_matches_its_golden_file() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = Vec::new();
    for item in SUBITEMS {
        let config = config(item.name);
        let mut baseinfo = Baseinfo::default();
        baseinfo.configure(&config);
        if let Some(collector) = fixed_collector(item.name) {
            baseinfo.replace_collector(item.name, collector);
        }
        let mut text = String::new();
        for (i, snapshot) in ["t0", "t1"].iter().enumerate() {
            let root = HostRoot::new(fixtures().join("fixtures").join(snapshot));
            let ctx = Context {
                root: &root,
                config: &config,
                now: Duration::from_secs(100 + 10 * i as u64),
                system: &SYSTEM,
            };
            let round = baseinfo.collect(&ctx);
            let fixture_root = root.root().display().to_string();
            let _ = writeln!(text, "# round {} ({snapshot})", i + 1);
            let mut rendered = String::new();
            render(&round, &mut rendered);
            text.push_str(&rendered.replace(&fixture_root, "<root>"));
        }
        let golden = fixtures().join("golden").join(format!("{}.txt", item.name));
        if update {
            std::fs::create_dir_all(golden.parent().expect("dir")).expect("mkdir");
            std::fs::write(&golden, &text).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_default();
        if want != text {
            failures.push(format!(
                "{}: output differs from {}:\n--- want\n{want}--- got\n{text}",
                item.name,
                golden.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
