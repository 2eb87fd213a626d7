//! Runs the enabled sub-items once per round and gathers what they report, their own
//! success and duration, and the log lines of their degradations (each once until it
//! recovers).

use std::collections::HashSet;
use std::time::Instant;

use gala_probe_sdk::Config;

use crate::collector::{seconds, Collector, Context, EventRecord, Record, Report};
use crate::SUBITEMS;

/// The table of the collectors' own success and duration.
pub const SELF_TABLE: &str = "baseinfo_collector";

/// What one round produced.
#[derive(Debug, Default)]
pub struct Round {
    /// Record lines of every sub-item, then the `baseinfo_collector` records.
    pub records: Vec<Record>,
    /// Events.
    pub events: Vec<EventRecord>,
    /// Log lines (`[WARN] ...`) to print once.
    pub log: Vec<String>,
}

/// The enabled collectors and what has been logged about them.
#[derive(Default)]
pub struct Baseinfo {
    /// Index in [`SUBITEMS`] and collector, for the enabled sub-items.
    active: Vec<(usize, Box<dyn Collector>)>,
    /// Warning keys logged and not yet recovered.
    logged: HashSet<String>,
}

impl Baseinfo {
    /// Enables the sub-items `config` names and drops the others (with their history, so a
    /// re-enabled sub-item starts with a suppressed first round again).
    pub fn configure(&mut self, config: &Config) {
        self.active
            .retain(|(i, _)| config.has_subitem(SUBITEMS[*i].name));
        for (i, item) in SUBITEMS.iter().enumerate() {
            if config.has_subitem(item.name) && !self.active.iter().any(|(j, _)| *j == i) {
                self.active.push((i, (item.new)()));
            }
        }
        self.active.sort_by_key(|(i, _)| *i);
    }

    /// Names of the enabled sub-items.
    pub fn enabled(&self) -> Vec<&'static str> {
        self.active.iter().map(|(i, _)| SUBITEMS[*i].name).collect()
    }

    /// Puts `collector` in place of the enabled sub-item `name`'s (e.g. one whose system
    /// calls give fixed answers, in tests); false if `name` is not enabled.
    pub fn replace_collector(&mut self, name: &str, collector: Box<dyn Collector>) -> bool {
        let slot = self
            .active
            .iter_mut()
            .find(|(i, _)| SUBITEMS[*i].name == name);
        match slot {
            Some((_, c)) => {
                *c = collector;
                true
            }
            None => false,
        }
    }

    /// Runs every enabled collector once.
    pub fn collect(&mut self, ctx: &Context<'_>) -> Round {
        let mut round = Round::default();
        let mut health = Vec::with_capacity(self.active.len());
        for (i, collector) in &mut self.active {
            let name = SUBITEMS[*i].name;
            let mut report = Report::default();
            let started = Instant::now();
            let result = collector.collect(ctx, &mut report);
            let took = started.elapsed();
            let failed_key = format!("{name}:failed");
            let mut warned: HashSet<String> = HashSet::new();
            match &result {
                Ok(()) => {}
                Err(e) => {
                    warned.insert(failed_key.clone());
                    if self.logged.insert(failed_key.clone()) {
                        round.log.push(format!("[WARN] baseinfo: {name}: {e}; the sub-item reports nothing until this is fixed"));
                    }
                }
            }
            for (key, message) in report.warnings.drain(..) {
                let key = format!("{name}:{key}");
                if self.logged.insert(key.clone()) {
                    round
                        .log
                        .push(format!("[WARN] baseinfo: {name}: {message}"));
                }
                warned.insert(key);
            }
            // Problems of this sub-item that did not recur are logged again next time.
            let prefix = format!("{name}:");
            self.logged
                .retain(|k| !k.starts_with(&prefix) || warned.contains(k));
            round.records.append(&mut report.records);
            round.events.append(&mut report.events);
            health.push(Record {
                table: SELF_TABLE,
                values: vec![
                    name.to_owned(),
                    u8::from(result.is_ok()).to_string(),
                    seconds(took),
                ],
            });
        }
        round.records.extend(health);
        round
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::collector::SystemInfo;
    use crate::root::HostRoot;

    fn round(baseinfo: &mut Baseinfo, root: &HostRoot, config: &Config, secs: u64) -> Round {
        let system = SystemInfo {
            clk_tck: 100,
            page_size: 4096,
            phys_pages: 1000,
            cpus_configured: 1,
        };
        baseinfo.collect(&Context {
            root,
            config,
            now: Duration::from_secs(secs),
            system: &system,
        })
    }

    #[test]
    fn a_failing_sub_item_degrades_alone_and_is_logged_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(
            dir.path().join("proc/meminfo"),
            "MemTotal: 100 kB\nMemFree: 50 kB\n",
        )
        .unwrap();
        let root = HostRoot::new(dir.path());
        let config =
            Config::offline_from("baseinfo", Some(r#"{"subitems":["cpu","mem"]}"#)).unwrap();
        let mut baseinfo = Baseinfo::default();
        baseinfo.configure(&config);
        assert_eq!(baseinfo.enabled(), ["cpu", "mem"]);

        let first = round(&mut baseinfo, &root, &config, 10);
        let health: Vec<(&str, &str)> = first
            .records
            .iter()
            .filter(|r| r.table == SELF_TABLE)
            .map(|r| (r.values[0].as_str(), r.values[1].as_str()))
            .collect();
        assert_eq!(health, [("cpu", "0"), ("mem", "1")]);
        assert!(first.records.iter().any(|r| r.table == "system_meminfo"));
        let cpu_failed: Vec<&String> = first
            .log
            .iter()
            .filter(|l| l.contains("cpu: read ") && l.contains("proc/stat"))
            .collect();
        assert_eq!(cpu_failed.len(), 1, "{:?}", first.log);

        // Still failing: not logged again.
        let second = round(&mut baseinfo, &root, &config, 20);
        assert!(
            !second.log.iter().any(|l| l.contains("cpu: read")),
            "{:?}",
            second.log
        );

        // Recovered, then failing again: logged again.
        std::fs::write(dir.path().join("proc/stat"), "cpu 1 0 1 10 0 0 0 0\n").unwrap();
        let third = round(&mut baseinfo, &root, &config, 30);
        assert!(third
            .records
            .iter()
            .any(|r| r.table == SELF_TABLE && r.values[..2] == ["cpu", "1"]));
        std::fs::remove_file(dir.path().join("proc/stat")).unwrap();
        let fourth = round(&mut baseinfo, &root, &config, 40);
        assert!(
            fourth.log.iter().any(|l| l.contains("cpu: read")),
            "{:?}",
            fourth.log
        );
    }

    #[test]
    fn disabling_a_sub_item_drops_its_history() {
        let config = Config::offline_from("baseinfo", Some(r#"{"subitems":["cpu"]}"#)).unwrap();
        let none = Config::offline_from("baseinfo", Some(r#"{"subitems":[]}"#)).unwrap();
        let mut baseinfo = Baseinfo::default();
        baseinfo.configure(&config);
        baseinfo.configure(&none);
        assert!(baseinfo.enabled().is_empty());
        baseinfo.configure(&config);
        assert_eq!(baseinfo.enabled(), ["cpu"]);
    }
}
