//! The abnormal-event rules of the `proc` entity (emitted only with `report_event`): the
//! original's rules, which it never compiled (a misspelt macro), with the units fixed —
//! `latency_thr` is in milliseconds and `iowait_ns` in nanoseconds.

use crate::stats::ProcStats;
use crate::tables::Enabled;

/// One event: the metric it is about and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEvent {
    /// Field name (`syscall_failed`, `iowait_ns`, `hang_count`, `bio_err_count`).
    pub metric: &'static str,
    /// Message.
    pub message: String,
}

/// The events for process `tgid` (`comm` for the text) in a period with figures `s`;
/// `latency_thr_ms` 0 switches the iowait rule off.
pub fn events(
    tgid: u32,
    comm: &str,
    s: &ProcStats,
    on: &Enabled,
    latency_thr_ms: u32,
) -> Vec<ProcEvent> {
    let mut out = Vec::new();
    if on.syscall && s.syscall_failed > 0 {
        out.push(ProcEvent {
            metric: "syscall_failed",
            message: format!(
                "Process(COMM:{comm} PID:{tgid}) syscall failed(SysCall-ID:{} RET:{} COUNT:{}).",
                s.last_failed_nr, s.last_failed_ret, s.syscall_failed
            ),
        });
    }
    let thr_ns = u64::from(latency_thr_ms) * 1_000_000;
    if on.offcpu && thr_ns > 0 && s.iowait_ns > thr_ns {
        out.push(ProcEvent {
            metric: "iowait_ns",
            message: format!(
                "Process(COMM:{comm} PID:{tgid}) iowait {} ns (threshold {latency_thr_ms} ms).",
                s.iowait_ns
            ),
        });
    }
    if on.hang && s.hang_count > 0 {
        out.push(ProcEvent {
            metric: "hang_count",
            message: format!(
                "Process(COMM:{comm} PID:{tgid}) hang count {}.",
                s.hang_count
            ),
        });
    }
    if on.bio && s.bio_err_count > 0 {
        out.push(ProcEvent {
            metric: "bio_err_count",
            message: format!(
                "Process(COMM:{comm} PID:{tgid}) bio error {}.",
                s.bio_err_count
            ),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Enabled {
        Enabled {
            syscall: true,
            offcpu: true,
            hang: true,
            bio: true,
            ..Default::default()
        }
    }

    #[test]
    fn quiet_periods_raise_nothing() {
        assert!(events(1, "a", &ProcStats::default(), &on(), 10).is_empty());
    }

    #[test]
    fn each_rule_fires_on_its_own_condition() {
        let s = ProcStats {
            syscall_failed: 3,
            last_failed_nr: 3,
            last_failed_ret: -9,
            hang_count: 1,
            bio_err_count: 2,
            ..Default::default()
        };
        let ev = events(42, "app", &s, &on(), 0);
        let metrics: Vec<&str> = ev.iter().map(|e| e.metric).collect();
        assert_eq!(metrics, ["syscall_failed", "hang_count", "bio_err_count"]);
        assert_eq!(
            ev[0].message,
            "Process(COMM:app PID:42) syscall failed(SysCall-ID:3 RET:-9 COUNT:3)."
        );
        // Disabled sub-items raise nothing.
        assert!(events(42, "app", &s, &Enabled::default(), 0).is_empty());
    }

    #[test]
    fn iowait_threshold_is_in_milliseconds() {
        let s = ProcStats {
            iowait_ns: 10_000_000, // 10 ms
            ..Default::default()
        };
        assert!(events(1, "a", &s, &on(), 10).is_empty(), "not above 10 ms");
        let ev = events(1, "a", &s, &on(), 9);
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].metric, "iowait_ns");
        assert!(events(1, "a", &s, &on(), 0).is_empty(), "0 = rule off");
    }
}
