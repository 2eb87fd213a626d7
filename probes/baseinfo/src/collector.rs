//! What every sub-item collector works with: the [`Collector`] trait, the [`Context`] of one
//! round (host root, configuration, clock, system constants), the [`Report`] it fills, and
//! [`Previous`], which turns counters into deltas over the *measured* elapsed time.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

use gala_probe_sdk::{Config, Params};

use crate::error::CollectError;
use crate::root::HostRoot;

/// One sub-item: reads its sources and reports its tables.
pub trait Collector: Send {
    /// Collects one round into `out`. An `Err` means nothing could be reported this round;
    /// a source that is merely missing should leave its fields empty and call
    /// [`Report::warn`] instead.
    fn collect(&mut self, ctx: &Context<'_>, out: &mut Report) -> Result<(), CollectError>;
}

/// Constants of the machine, detected once (fixed in tests so that output is reproducible).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemInfo {
    /// `sysconf(_SC_CLK_TCK)`: jiffies per second in `/proc/<pid>/stat` and `/proc/stat`.
    pub clk_tck: u64,
    /// `sysconf(_SC_PAGESIZE)`.
    pub page_size: u64,
    /// `sysconf(_SC_PHYS_PAGES)`.
    pub phys_pages: u64,
    /// `sysconf(_SC_NPROCESSORS_CONF)`.
    pub cpus_configured: u64,
}

impl SystemInfo {
    /// The values of this machine.
    pub fn detect() -> Self {
        // SAFETY: sysconf has no preconditions; -1 (unsupported) falls back below.
        let conf = |name| u64::try_from(unsafe { libc::sysconf(name) }).ok();
        SystemInfo {
            clk_tck: conf(libc::_SC_CLK_TCK).filter(|&v| v > 0).unwrap_or(100),
            page_size: conf(libc::_SC_PAGESIZE).filter(|&v| v > 0).unwrap_or(4096),
            phys_pages: conf(libc::_SC_PHYS_PAGES).unwrap_or(0),
            cpus_configured: conf(libc::_SC_NPROCESSORS_CONF).unwrap_or(1),
        }
    }
}

/// Everything a collector may look at during one round.
pub struct Context<'a> {
    /// Where host files are read.
    pub root: &'a HostRoot,
    /// The probe's configuration (params, snoopers).
    pub config: &'a Config,
    /// Monotonic time of this round, from an arbitrary origin.
    pub now: Duration,
    /// Machine constants.
    pub system: &'a SystemInfo,
}

impl Context<'_> {
    /// The parameters.
    pub fn params(&self) -> &Params {
        self.config.params()
    }

    /// Whether events are on and `value` exceeds the `res_upper_thr` percentage.
    pub fn above_upper_thr(&self, value: f64) -> bool {
        let thr = self.params().res_upper_thr;
        self.params().report_event && thr > 0 && value > f64::from(thr)
    }
}

/// One record line's table and values, in meta order.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The table.
    pub table: &'static str,
    /// The values, rendered.
    pub values: Vec<String>,
}

/// One event (always `WARN`, as the original's baseinfo events).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Entity name (`cpu`, `mem`, `nic`, `disk`, `fs`).
    pub entity_name: &'static str,
    /// Entity id.
    pub entity_id: String,
    /// The field concerned.
    pub metric: &'static str,
    /// Device, if any.
    pub device: String,
    /// Text.
    pub message: String,
}

/// What one round of one collector produced.
#[derive(Debug, Default)]
pub struct Report {
    /// Record lines.
    pub records: Vec<Record>,
    /// Events.
    pub events: Vec<EventRecord>,
    /// Degradations: a key (stable per kind of problem) and a message.
    pub warnings: Vec<(String, String)>,
}

impl Report {
    /// Adds a record of `table`.
    pub fn record(&mut self, table: &'static str, values: &[&dyn Display]) {
        self.records.push(Record {
            table,
            values: values.iter().map(|v| v.to_string()).collect(),
        });
    }

    /// Adds an event.
    pub fn event(
        &mut self,
        entity_name: &'static str,
        entity_id: impl Into<String>,
        metric: &'static str,
        device: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.events.push(EventRecord {
            entity_name,
            entity_id: entity_id.into(),
            metric,
            device: device.into(),
            message: message.into(),
        });
    }

    /// Notes that part of the sub-item is degraded; logged once per `key` until it recovers.
    pub fn warn(&mut self, key: impl Into<String>, message: impl Display) {
        self.warnings.push((key.into(), message.to_string()));
    }
}

/// Adds a record with values of mixed types: `record!(out, "table", a, b, c)`.
#[macro_export]
macro_rules! record {
    ($out:expr, $table:expr $(, $value:expr)* $(,)?) => {
        $out.record($table, &[$(&$value as &dyn ::std::fmt::Display),*])
    };
}

/// The previous sample of each entity and when it was taken. [`Previous::advance`] hands
/// back the previous sample and the seconds since, so rates use the measured time; the first
/// sample of an entity yields nothing (the first round is suppressed uniformly). Entities
/// not seen in a round are forgotten.
#[derive(Debug)]
pub struct Previous<K, S> {
    samples: HashMap<K, (Duration, S)>,
    round: u64,
    seen: HashMap<K, u64>,
}

impl<K, S> Default for Previous<K, S> {
    fn default() -> Self {
        Previous {
            samples: HashMap::new(),
            round: 0,
            seen: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone, S> Previous<K, S> {
    /// Starts a round: entities not advanced since the last `begin` are dropped.
    pub fn begin(&mut self) {
        let round = self.round;
        self.seen.retain(|_, r| *r == round);
        let seen = &self.seen;
        self.samples.retain(|k, _| seen.contains_key(k));
        self.round += 1;
    }

    /// Stores `sample` of `key` taken at `now`; returns the previous one and the seconds
    /// elapsed since it, or `None` for a new entity (or a clock that did not advance).
    pub fn advance(&mut self, key: K, now: Duration, sample: S) -> Option<(f64, S)> {
        self.seen.insert(key.clone(), self.round);
        let old = self.samples.insert(key, (now, sample))?;
        let secs = now.checked_sub(old.0)?.as_secs_f64();
        (secs > 0.0).then_some((secs, old.1))
    }
}

/// `cur - prev` for a counter; 0 when the counter went backwards (reset or wrap).
pub fn delta(cur: u64, prev: u64) -> u64 {
    cur.saturating_sub(prev)
}

/// `(cur - prev) / secs` for a counter; 0 when it went backwards.
pub fn rate(cur: u64, prev: u64, secs: f64) -> f64 {
    delta(cur, prev) as f64 / secs
}

/// A duration in seconds with microsecond precision.
pub fn seconds(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

/// A number with two decimals, as the original printed rates and percentages.
pub fn fixed2(v: f64) -> String {
    format!("{v:.2}")
}

/// `part / whole * 100` with two decimals; 0 when `whole` is 0.
pub fn percent(part: f64, whole: f64) -> String {
    if whole > 0.0 {
        fixed2(part / whole * 100.0)
    } else {
        fixed2(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_yields_measured_elapsed_time_and_forgets_vanished_entities() {
        let mut p: Previous<&str, u64> = Previous::default();
        p.begin();
        assert_eq!(p.advance("a", Duration::from_secs(10), 5), None);
        assert_eq!(p.advance("b", Duration::from_secs(10), 7), None);
        p.begin();
        assert_eq!(
            p.advance("a", Duration::from_millis(12_500), 9),
            Some((2.5, 5))
        );
        // "b" was not seen in this round: it starts afresh next time.
        p.begin();
        assert_eq!(p.advance("b", Duration::from_secs(20), 8), None);
        assert_eq!(p.advance("a", Duration::from_secs(20), 10), Some((7.5, 9)));
        // A clock that did not move gives no rate.
        p.begin();
        assert_eq!(p.advance("a", Duration::from_secs(20), 11), None);
    }

    #[test]
    fn counters_going_backwards_count_as_zero() {
        assert_eq!(delta(5, 9), 0);
        assert_eq!(rate(30, 10, 4.0), 5.0);
        assert_eq!(rate(1, 10, 4.0), 0.0);
        assert_eq!(percent(1.0, 3.0), "33.33");
        assert_eq!(percent(1.0, 0.0), "0.00");
    }
}
