//! Golden tests: every sub-item over a fixture `/proc` + `/sys` + `/etc` tree, two snapshots
//! ten seconds apart (`tests/fixtures/t0`, `t1`), must produce exactly the lines of
//! `tests/golden/<subitem>.txt`. `UPDATE_GOLDEN=1 cargo test -p gala-baseinfo --test golden`
//! rewrites them; review the diff before committing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gala_baseinfo::{Baseinfo, Context, HostRoot, Round, SystemInfo, SUBITEMS};
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
