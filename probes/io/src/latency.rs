//! The `io_latency` arithmetic: per disk and stage, the max, last, sum, jitter and count of
//! the sampled requests of one report period, and the `latency_thr` event check.

/// One stage's statistics over a report period. All values in nanoseconds except `count`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StageStats {
    /// Largest latency.
    pub max: u64,
    /// Latency of the last request.
    pub last: u64,
    /// Sum of the latencies.
    pub sum: u64,
    /// Largest difference between two consecutive requests' latencies (the original's
    /// definition: 0 with a single request).
    pub jitter: u64,
    /// Requests measured.
    pub count: u64,
}

impl StageStats {
    /// Adds one request's latency.
    pub fn add(&mut self, ns: u64) {
        if self.count > 0 {
            self.jitter = self.jitter.max(self.last.abs_diff(ns));
        }
        self.max = self.max.max(ns);
        self.sum = self.sum.saturating_add(ns);
        self.last = ns;
        self.count += 1;
    }
}

/// The three stages of one disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskLatency {
    /// Request stage: block_io_start → completion.
    pub req: StageStats,
    /// Driver stage: block_io_start → block_rq_issue.
    pub driver: StageStats,
    /// Device stage: block_rq_issue → completion.
    pub device: StageStats,
}

impl DiskLatency {
    /// Adds one completed request, given its three stage latencies.
    pub fn add(&mut self, req_ns: u64, driver_ns: u64, device_ns: u64) {
        self.req.add(req_ns);
        self.driver.add(driver_ns);
        self.device.add(device_ns);
    }
}

/// Nanoseconds per millisecond: `latency_thr` is in ms, the measurements in ns.
const NS_PER_MS: u64 = 1_000_000;

/// Whether a request latency of `req_ns` reaches `latency_thr_ms` (0 = no threshold).
/// The original compared `latency_thr << 3` with a value in ns; this converts properly.
pub fn over_threshold(latency_thr_ms: u32, req_ns: u64) -> bool {
    latency_thr_ms > 0 && req_ns >= u64::from(latency_thr_ms) * NS_PER_MS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_stats_follow_the_original_definitions() {
        let mut s = StageStats::default();
        s.add(100);
        assert_eq!(
            s,
            StageStats {
                max: 100,
                last: 100,
                sum: 100,
                jitter: 0,
                count: 1
            }
        );
        s.add(400); // jitter 300
        s.add(250); // jitter 150, max stays 400
        s.add(50); // jitter 200
        assert_eq!(s.max, 400);
        assert_eq!(s.last, 50);
        assert_eq!(s.sum, 800);
        assert_eq!(s.jitter, 300);
        assert_eq!(s.count, 4);
    }

    #[test]
    fn stages_add_up() {
        let mut d = DiskLatency::default();
        d.add(1_000, 300, 700);
        d.add(2_000, 500, 1_500);
        assert_eq!(d.req.sum, d.driver.sum + d.device.sum);
        assert_eq!(d.req.count, 2);
        assert_eq!(d.device.max, 1_500);
        assert_eq!(d.driver.jitter, 200);
    }

    #[test]
    fn threshold_is_milliseconds_against_nanoseconds() {
        assert!(!over_threshold(0, u64::MAX));
        assert!(!over_threshold(10, 9_999_999));
        assert!(over_threshold(10, 10_000_000));
        // The original's `thr << 3` would have fired at 80 ns.
        assert!(!over_threshold(10, 80));
        assert!(over_threshold(100_000, 100_000 * 1_000_000));
    }
}
