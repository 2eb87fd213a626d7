//! Threshold events of a tracker's period (entity `tcp_link`). Compared with the
//! original, the units are fixed: `syn_srtt_max` (µs) is compared with `latency_thr` (ms)
//! converted to µs, and the zero-window ratios (percent) really are compared with
//! `res_upper_thr` (percent) — the original cast the ratio to a char and never fired.

use crate::tracker::{c, Groups, Period};

/// The thresholds, from the params (0 = off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Thresholds {
    /// `drops_thr`: a count per period.
    pub drops: u64,
    /// `latency_thr`: ms.
    pub latency_ms: u64,
    /// `res_upper_thr`: percent.
    pub res_upper: u64,
}

/// One event to raise: the metric (field name) and the text.
#[derive(Debug, Clone, PartialEq)]
pub struct Alarm {
    /// Field name.
    pub metric: &'static str,
    /// Message.
    pub message: String,
}

/// The events a period raises.
pub fn check(p: &Period, g: &Groups, thr: &Thresholds) -> Vec<Alarm> {
    let mut out = Vec::new();
    let v = &p.c.0;
    if g.drops && v[c::OOM] > 0 {
        out.push(Alarm {
            metric: "tcp_oom",
            message: format!(
                "TCP out of memory: {} segments dropped (tcp_oom)",
                v[c::OOM]
            ),
        });
    }
    if thr.drops > 0 {
        let counts = [
            (
                g.retrans,
                "retran_packets",
                v[c::RETRAN],
                "segments retransmitted",
            ),
            (
                g.drops,
                "backlog_drops",
                v[c::BACKLOG],
                "segments dropped, backlog full",
            ),
            (
                g.drops,
                "filter_drops",
                v[c::FILTER],
                "segments dropped by a socket filter",
            ),
            (
                g.abn,
                "sk_drops",
                v[c::SK_DROPS],
                "segments dropped by the socket",
            ),
            (
                g.retrans || g.samples,
                "lost_out",
                p.lost_out,
                "segments lost",
            ),
            (
                g.retrans || g.samples,
                "sacked_out",
                p.sacked_out,
                "segments SACKed",
            ),
        ];
        for (on, metric, n, what) in counts {
            if on && n > thr.drops {
                out.push(Alarm {
                    metric,
                    message: format!("TCP {what}: {n} ({metric}) above drops_thr {}", thr.drops),
                });
            }
        }
    }
    if thr.res_upper > 0 && g.windows {
        for (metric, ratio, whose) in [
            ("zero_win_rx_ratio", p.zero_rx_ratio(), "receive"),
            ("zero_win_tx_ratio", p.zero_tx_ratio(), "peer's receive"),
        ] {
            if ratio > thr.res_upper as f64 {
                out.push(Alarm {
                    metric,
                    message: format!(
                        "TCP zero {whose} window on {ratio:.2}% of segments ({metric}) above res_upper_thr {}%",
                        thr.res_upper
                    ),
                });
            }
        }
    }
    if thr.latency_ms > 0 && g.srtt {
        let max_us = p.syn_srtt_max();
        if max_us > thr.latency_ms.saturating_mul(1000) {
            out.push(Alarm {
                metric: "syn_srtt_max",
                message: format!(
                    "TCP handshake round-trip {max_us} us (syn_srtt_max) above latency_thr {} ms",
                    thr.latency_ms
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::link;
    use crate::record::ROLE_SERVER;
    use crate::tracker::Aggregator;

    fn all() -> Groups {
        Groups {
            windows: true,
            srtt: true,
            abn: true,
            retrans: true,
            drops: true,
            samples: true,
            ..Groups::default()
        }
    }

    fn period(f: impl FnOnce(&mut crate::record::Link)) -> Period {
        let mut a = Aggregator::new();
        let mut l = link(1, 10, ROLE_SERVER, 40000, 80);
        f(&mut l);
        a.observe(&l, 0, 0);
        a.active()[0].1.period.clone()
    }

    fn metrics(p: &Period, g: &Groups, thr: &Thresholds) -> Vec<&'static str> {
        check(p, g, thr).iter().map(|a| a.metric).collect()
    }

    #[test]
    fn drop_counts_fire_above_drops_thr_only() {
        let thr = Thresholds {
            drops: 10,
            ..Thresholds::default()
        };
        let p = period(|l| {
            l.retran_packets = 11;
            l.backlog_drops = 10;
        });
        assert_eq!(metrics(&p, &all(), &thr), ["retran_packets"]);
        assert!(
            metrics(&p, &all(), &Thresholds::default()).is_empty(),
            "0 = off"
        );
        let g = Groups {
            retrans: false,
            ..all()
        };
        assert!(metrics(&p, &g, &thr).is_empty(), "group off, no event");
    }

    #[test]
    fn zero_window_ratio_is_compared_in_percent() {
        let thr = Thresholds {
            res_upper: 40,
            ..Thresholds::default()
        };
        let p = period(|l| {
            l.win_events = 10;
            l.zero_snd_wnd = 5;
            l.zero_rcv_wnd = 4;
        });
        assert_eq!(metrics(&p, &all(), &thr), ["zero_win_tx_ratio"]);
    }

    #[test]
    fn syn_srtt_in_us_against_latency_in_ms() {
        let thr = Thresholds {
            latency_ms: 10,
            ..Thresholds::default()
        };
        let slow = period(|l| l.syn_srtt = 10_001);
        assert_eq!(metrics(&slow, &all(), &thr), ["syn_srtt_max"]);
        let fast = period(|l| l.syn_srtt = 9_999);
        assert!(metrics(&fast, &all(), &thr).is_empty());
    }

    #[test]
    fn out_of_memory_fires_at_one() {
        let p = period(|l| l.tcp_oom = 1);
        assert_eq!(metrics(&p, &all(), &Thresholds::default()), ["tcp_oom"]);
    }
}
