//! When a probe that exited on its own is started again, and when it is given up on.

use std::time::Duration;

use crate::config::SupervisorConfig;

/// First wait before a restart; it doubles per consecutive quick failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// What to do after an unexpected exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start the probe again after this wait.
    RestartAfter(Duration),
    /// Too many quick failures in a row: leave it stopped until the operator asks again.
    GiveUp,
}

/// The restart state of one probe: capped exponential backoff, reset by a stable run.
#[derive(Debug, Clone)]
pub struct RestartPolicy {
    max_backoff: Duration,
    failed_after: u32,
    stable_run: Duration,
    next_backoff: Duration,
    quick_failures: u32,
}

impl RestartPolicy {
    /// A fresh policy with the configured limits.
    pub fn new(config: &SupervisorConfig) -> Self {
        RestartPolicy {
            max_backoff: config.restart_backoff_max,
            failed_after: config.failed_after,
            stable_run: config.stable_run,
            next_backoff: FIRST_BACKOFF.min(config.restart_backoff_max),
            quick_failures: 0,
        }
    }

    /// Forgets past failures (an operator asked for the probe again).
    pub fn reset(&mut self) {
        self.next_backoff = FIRST_BACKOFF.min(self.max_backoff);
        self.quick_failures = 0;
    }

    /// Decides after the probe exited (or failed to start) having run for `ran_for`.
    pub fn on_exit(&mut self, ran_for: Duration) -> Decision {
        if ran_for >= self.stable_run {
            self.reset();
        }
        if ran_for < self.stable_run {
            self.quick_failures += 1;
            if self.quick_failures >= self.failed_after {
                return Decision::GiveUp;
            }
        }
        let wait = self.next_backoff;
        self.next_backoff = (self.next_backoff * 2).min(self.max_backoff);
        Decision::RestartAfter(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max: u64, failed_after: u32) -> RestartPolicy {
        RestartPolicy::new(&SupervisorConfig {
            restart_backoff_max: Duration::from_secs(max),
            failed_after,
            stable_run: Duration::from_secs(60),
            ..SupervisorConfig::default()
        })
    }

    const QUICK: Duration = Duration::from_secs(1);
    const STABLE: Duration = Duration::from_secs(600);

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let mut p = policy(60, 100);
        let waits: Vec<_> = (0..9)
            .map(|_| match p.on_exit(QUICK) {
                Decision::RestartAfter(d) => d.as_secs(),
                Decision::GiveUp => 0,
            })
            .collect();
        assert_eq!(waits, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn a_stable_run_starts_over() {
        let mut p = policy(60, 3);
        assert_eq!(
            p.on_exit(QUICK),
            Decision::RestartAfter(Duration::from_secs(1))
        );
        assert_eq!(
            p.on_exit(QUICK),
            Decision::RestartAfter(Duration::from_secs(2))
        );
        assert_eq!(
            p.on_exit(STABLE),
            Decision::RestartAfter(Duration::from_secs(1))
        );
        assert_eq!(
            p.on_exit(QUICK),
            Decision::RestartAfter(Duration::from_secs(2))
        );
        assert_eq!(
            p.on_exit(QUICK),
            Decision::RestartAfter(Duration::from_secs(4))
        );
        assert_eq!(p.on_exit(QUICK), Decision::GiveUp);
    }

    #[test]
    fn repeated_quick_failures_give_up_until_reset() {
        let mut p = policy(60, 2);
        assert!(matches!(p.on_exit(QUICK), Decision::RestartAfter(_)));
        assert_eq!(p.on_exit(QUICK), Decision::GiveUp);
        p.reset();
        assert_eq!(
            p.on_exit(QUICK),
            Decision::RestartAfter(Duration::from_secs(1))
        );
    }
}
