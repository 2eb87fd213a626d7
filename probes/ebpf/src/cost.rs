//! What a probe's BPF programs cost: the kernel's per-program run time and run count,
//! counted once `bpf_enable_stats(BPF_STATS_RUN_TIME)` is held open, reported every period
//! as the `ebpf_prog` table (`ebpf_prog.meta`).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use gala_probe_sdk::{EmitError, Probe};
use libbpf_rs::Object;

use crate::plan::Plan;

/// The `ebpf_prog` table's meta file, for `Probe::builder().meta_str(..)`.
pub const COST_META: (&str, &str) = ("ebpf_prog.meta", include_str!("../ebpf_prog.meta"));

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

/// Holds the kernel's BPF statistics on and reports the programs' cost.
pub struct CostReport {
    stats: Option<OwnedFd>,
    last: HashMap<String, (u64, u64)>,
}

impl CostReport {
    /// Switches the statistics on for as long as this value lives. Without permission
    /// (or on kernels before 5.8) the counts stay 0 and [`enabled`](Self::enabled) is false.
    pub fn enable() -> Self {
        // SAFETY: plain syscall wrapper; a non-negative result is an fd we now own.
        let fd = unsafe { libbpf_sys::bpf_enable_stats(libbpf_sys::BPF_STATS_RUN_TIME) };
        let stats = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
        CostReport {
            stats,
            last: HashMap::new(),
        }
    }

    /// Whether the kernel counts run time for us.
    pub fn enabled(&self) -> bool {
        self.stats.is_some()
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
            let per_run = if dc == 0 { 0.0 } else { dt as f64 / dc as f64 };
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
