//! What a probe's BPF programs cost: the kernel's per-program run time and run count,
//! counted while `bpf_enable_stats(BPF_STATS_RUN_TIME)` is held open, reported every period
//! as the `ebpf_prog` table (`ebpf_prog.meta`).
//!
//! The statistics themselves cost two clock reads per program run (~3 % of a loopback
//! HTTP server's throughput with the tcp probe on), and switching them on or off patches
//! kernel text on every CPU (~8 ms of CPU, and a pause of every CPU), so by default they
//! are **sampled**: on for [`SAMPLE_WINDOW`] at the start of a report period once every
//! [`SAMPLE_EVERY`], off for the rest. The cost per run is exact for the window; the
//! counters only grow while it is open.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use gala_probe_sdk::{EmitError, Probe};
use libbpf_rs::Object;

use crate::plan::Plan;

/// The `ebpf_prog` table's meta file, for `Probe::builder().meta_str(..)`.
pub const COST_META: (&str, &str) = ("ebpf_prog.meta", include_str!("../ebpf_prog.meta"));

/// How a probe runs the statistics, from its environment: `GALA_EBPF_STATS=0` off
/// (`ebpf_prog` reports zeros), `=1` always on, unset or anything else sampled.
pub const ENV_STATS: &str = "GALA_EBPF_STATS";

/// How long the statistics are on in each report period when sampled.
pub const SAMPLE_WINDOW: Duration = Duration::from_secs(1);

/// At most how often a sampling window opens (at the first report period after it).
pub const SAMPLE_EVERY: Duration = Duration::from_secs(60);

/// When the kernel's BPF statistics run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsMode {
    /// Never: no cost, no figures.
    Off,
    /// For [`SAMPLE_WINDOW`] at the start of a report period, once every [`SAMPLE_EVERY`]
    /// (the default).
    Sampled,
    /// All the time.
    Always,
}

impl StatsMode {
    /// The mode `GALA_EBPF_STATS` asks for.
    pub fn from_env() -> Self {
        match std::env::var(ENV_STATS).as_deref() {
            Ok("0") | Ok("off") => StatsMode::Off,
            Ok("1") | Ok("on") | Ok("always") => StatsMode::Always,
            _ => StatsMode::Sampled,
        }
    }
}

/// The run-time statistics of one loaded program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgCost {
    /// Function name in the BPF object.
    pub prog: String,
    /// Nanoseconds run in total.
    pub run_time_ns: u64,
    /// Times run.
    pub run_count: u64,
}

/// Switches the kernel's BPF statistics on and off by `StatsMode` and reports the
/// programs' cost.
pub struct CostReport {
    mode: StatsMode,
    stats: Option<OwnedFd>,
    window_end: Option<Instant>,
    next_window: Instant,
    last: HashMap<String, (u64, u64)>,
    /// ns per run of each program in the last window it ran in.
    per_run: HashMap<String, f64>,
}

impl CostReport {
    /// Statistics in `mode`, switched on at once (the first window starts now). Without
    /// permission (or on kernels before 5.8) the counts stay 0 and
    /// [`enabled`](Self::enabled) is false.
    pub fn new(mode: StatsMode) -> Self {
        let mut cost = CostReport {
            mode,
            stats: None,
            window_end: None,
            next_window: Instant::now() + SAMPLE_EVERY,
            last: HashMap::new(),
            per_run: HashMap::new(),
        };
        if mode != StatsMode::Off {
            cost.stats = enable_stats();
            if cost.stats.is_none() {
                cost.mode = StatsMode::Off;
            } else if mode == StatsMode::Sampled {
                cost.window_end = Some(Instant::now() + SAMPLE_WINDOW);
            }
        }
        cost
    }

    /// Whether the kernel counts run time for us (now or in the sampling windows).
    pub fn enabled(&self) -> bool {
        self.mode != StatsMode::Off
    }

    /// The mode in effect (`Off` when the kernel refused the statistics).
    pub fn mode(&self) -> StatsMode {
        self.mode
    }

    /// Starts a sampling window (call after each report).
    pub fn start_window(&mut self, now: Instant) {
        if self.mode == StatsMode::Sampled && now >= self.next_window {
            self.next_window = now + SAMPLE_EVERY;
            if self.stats.is_none() {
                self.stats = enable_stats();
            }
            self.window_end = Some(now + SAMPLE_WINDOW);
        }
    }

    /// Ends the sampling window once it has passed (call often).
    pub fn tick(&mut self, now: Instant) {
        if self.window_end.is_some_and(|end| now >= end) {
            self.window_end = None;
            self.stats = None;
        }
    }

    /// Reads the statistics of every loaded program of `object`.
    pub fn read(object: &Object) -> Vec<ProgCost> {
        object
            .progs()
            .filter(|p| p.autoload())
            .filter_map(|p| {
                let (run_time_ns, run_count) = prog_stats(p.as_fd().as_raw_fd())?;
                Some(ProgCost {
                    prog: p.name().to_string_lossy().into_owned(),
                    run_time_ns,
                    run_count,
                })
            })
            .collect()
    }

    /// Emits one `ebpf_prog` record per loaded program of `object`.
    pub fn report(
        &mut self,
        probe: &mut Probe,
        probe_name: &str,
        object: &Object,
        plan: &Plan,
    ) -> Result<(), EmitError> {
        for cost in Self::read(object) {
            let hook = plan
                .hooks()
                .iter()
                .find(|(n, _)| *n == cost.prog)
                .map_or_else(String::new, |(_, h)| h.to_string());
            let (t0, c0) = self
                .last
                .insert(cost.prog.clone(), (cost.run_time_ns, cost.run_count))
                .unwrap_or((0, 0));
            // After a reload the counters restart below the last reading.
            let (dt, dc) = if cost.run_count >= c0 {
                (cost.run_time_ns.saturating_sub(t0), cost.run_count - c0)
            } else {
                (cost.run_time_ns, cost.run_count)
            };
            let per_run = if dc == 0 {
                self.per_run.get(&cost.prog).copied().unwrap_or(0.0)
            } else {
                let v = dt as f64 / dc as f64;
                self.per_run.insert(cost.prog.clone(), v);
                v
            };
            probe.emit(
                "ebpf_prog",
                &[
                    &probe_name,
                    &cost.prog,
                    &hook,
                    &cost.run_time_ns,
                    &cost.run_count,
                    &format!("{per_run:.1}"),
                ],
            )?;
        }
        Ok(())
    }
}

/// `bpf_enable_stats(BPF_STATS_RUN_TIME)`: the statistics run while the fd is open.
fn enable_stats() -> Option<OwnedFd> {
    // SAFETY: plain syscall wrapper; a non-negative result is an fd we now own.
    let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
    // SAFETY: a non-negative result is a new fd that nothing else owns.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `(run_time_ns, run_cnt)` of the program behind `fd`.
fn prog_stats(fd: i32) -> Option<(u64, u64)> {
    let mut info = libbpf_sys::bpf_prog_info::default();
    let mut len = std::mem::size_of_val(&info) as u32;
    // SAFETY: `info` is a properly sized, zeroed bpf_prog_info; `len` is its size.
    let ret = unsafe {
        libbpf_sys::bpf_obj_get_info_by_fd(
            fd,
            (&mut info as *mut libbpf_sys::bpf_prog_info).cast(),
            &mut len,
        )
    };
    (ret == 0).then_some((info.run_time_ns, info.run_cnt))
}
