//! A log rate limiter: at most N messages per window, then a count of what was suppressed.

use std::time::{Duration, Instant};

/// Lets through at most `burst` events per `window`; counts the rest.
#[derive(Debug)]
pub struct RateLimiter {
    window: Duration,
    burst: u32,
    window_start: Option<Instant>,
    passed: u32,
    suppressed: u64,
}

/// What to do with one event.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Log it; `suppressed` events were swallowed since the last one logged.
    Log { suppressed: u64 },
    /// Swallow it.
    Suppress,
}

impl RateLimiter {
    /// A limiter letting `burst` events through per `window`.
    pub fn new(window: Duration, burst: u32) -> Self {
        RateLimiter {
            window,
            burst,
            window_start: None,
            passed: 0,
            suppressed: 0,
        }
    }

    /// Decides for one event happening at `now`.
    pub fn check(&mut self, now: Instant) -> Verdict {
        match self.window_start {
            Some(start) if now.duration_since(start) < self.window => {}
            _ => {
                self.window_start = Some(now);
                self.passed = 0;
            }
        }
        if self.passed < self.burst {
            self.passed += 1;
            Verdict::Log {
                suppressed: std::mem::take(&mut self.suppressed),
            }
        } else {
            self.suppressed += 1;
            Verdict::Suppress
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_burst_through_then_counts_suppressed() {
        let mut rl = RateLimiter::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert_eq!(rl.check(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(rl.check(t0), Verdict::Log { suppressed: 0 });
        assert_eq!(rl.check(t0), Verdict::Suppress);
        assert_eq!(rl.check(t0 + Duration::from_secs(1)), Verdict::Suppress);
        let later = t0 + Duration::from_secs(11);
        assert_eq!(rl.check(later), Verdict::Log { suppressed: 2 });
        assert_eq!(rl.check(later), Verdict::Log { suppressed: 0 });
    }
}
