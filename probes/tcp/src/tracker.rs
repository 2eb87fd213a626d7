//! Aggregation of links into trackers, the rows of `tcp_metric` and `proc_flow_perf`.
//!
//! A tracker is (tgid, role, client ip, server ip, server port, family, and the client
//! port only with `report_cport`). Every report period the probe feeds the aggregator the
//! links it finds in the BPF map ([`Aggregator::observe`]), the final counters of the
//! sockets destroyed ([`Aggregator::close`]) and the sampled state
//! ([`Aggregator::sample`], [`Aggregator::delay`]). Counters are cumulative per link; the
//! aggregator keeps each link's last value and adds the difference to its tracker, so a
//! period's gauge is what happened in that period. A tracker is printed when it had a link
//! or data in the period; trackers idle for [`IDLE_AGE_S`] are forgotten.

use std::collections::HashMap;
use std::net::IpAddr;

use gala_ebpf::addr::{family_text, ip_text};
use gala_ebpf::Histogram;

use crate::record::{Direction, Link, LinkIdent, Sample, ROLE_CLIENT};

/// Seconds after which a tracker without links or data is forgotten.
pub const IDLE_AGE_S: u64 = 300;

/// A link unseen in the map for this many sweeps (and never closed) is forgotten.
const MAX_MISSES: u8 = 2;

/// Window buckets (segments or bytes).
pub const WINDOW_BUCKETS: &[u64] = &[1_000, 10_000, 100_000, 1_000_000, 10_000_000];
/// RTT buckets, µs.
pub const RTT_BUCKETS: &[u64] = &[50, 100, 200, 500, 1_000];
/// RTO/ATO buckets, µs.
pub const RTO_BUCKETS: &[u64] = &[1_000, 10_000, 20_000, 40_000, 80_000];
/// Socket buffer buckets, bytes: 128 KiB … 16 MiB.
pub const SOCKBUF_BUCKETS: &[u64] = &[
    128 << 10,
    256 << 10,
    512 << 10,
    1 << 20,
    2 << 20,
    4 << 20,
    8 << 20,
    16 << 20,
];
/// Delay buckets, ns: 1 ms … 10 s.
pub const DELAY_BUCKETS: &[u64] = &[
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
    10_000_000_000,
];

/// Index of each cumulative counter in [`Counters`].
pub mod c {
    /// Bytes received.
    pub const RX_BYTES: usize = 0;
    /// Bytes sent.
    pub const TX_BYTES: usize = 1;
    /// Segments in.
    pub const SEGS_IN: usize = 2;
    /// Segments out.
    pub const SEGS_OUT: usize = 3;
    /// Retransmitted segments.
    pub const RETRAN: usize = 4;
    /// Backlog drops.
    pub const BACKLOG: usize = 5;
    /// sk_drops.
    pub const SK_DROPS: usize = 6;
    /// Filter drops.
    pub const FILTER: usize = 7;
    /// Timeouts.
    pub const TMOUT: usize = 8;
    /// Send buffer limit hits.
    pub const SND_BUF: usize = 9;
    /// Receive memory failures.
    pub const RMEM: usize = 10;
    /// Protocol memory drops.
    pub const OOM: usize = 11;
    /// Resets sent.
    pub const SEND_RST: usize = 12;
    /// Resets received.
    pub const RECV_RST: usize = 13;
    /// Zero receive window segments.
    pub const ZERO_RCV: usize = 14;
    /// Zero send window segments.
    pub const ZERO_SND: usize = 15;
    /// Segments processed (ratio denominator).
    pub const WIN_EVENTS: usize = 16;
    /// Number of counters.
    pub const N: usize = 17;
}

/// Index of each histogram of a tracker.
pub mod h {
    /// srtt.
    pub const SRTT: usize = 0;
    /// rcv_rtt.
    pub const RCV_RTT: usize = 1;
    /// snd_cwnd.
    pub const SND_CWND: usize = 2;
    /// notsent_bytes.
    pub const NOTSENT: usize = 3;
    /// notack_bytes.
    pub const NOTACK: usize = 4;
    /// reordering.
    pub const REORDERING: usize = 5;
    /// snd_wnd.
    pub const SND_WND: usize = 6;
    /// rcv_wnd.
    pub const RCV_WND: usize = 7;
    /// avl_snd_wnd.
    pub const AVL_SND_WND: usize = 8;
    /// rto.
    pub const RTO: usize = 9;
    /// ato.
    pub const ATO: usize = 10;
    /// syn_srtt.
    pub const SYN_SRTT: usize = 11;
    /// sk_rcvbuf.
    pub const RCVBUF: usize = 12;
    /// sk_sndbuf.
    pub const SNDBUF: usize = 13;
    /// Number of histograms.
    pub const N: usize = 14;
}

const HIST_BUCKETS: [&[u64]; h::N] = [
    RTT_BUCKETS,
    RTT_BUCKETS,
    WINDOW_BUCKETS,
    WINDOW_BUCKETS,
    WINDOW_BUCKETS,
    WINDOW_BUCKETS,
    WINDOW_BUCKETS,
    WINDOW_BUCKETS,
    WINDOW_BUCKETS,
    RTO_BUCKETS,
    RTO_BUCKETS,
    RTT_BUCKETS,
    SOCKBUF_BUCKETS,
    SOCKBUF_BUCKETS,
];

/// The cumulative counters of a link (or their sum over a period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; c::N]);

impl Counters {
    /// The link's counters now.
    pub fn of(l: &Link) -> Self {
        let mut v = [0u64; c::N];
        v[c::RX_BYTES] = l.rx_bytes;
        v[c::TX_BYTES] = l.tx_bytes;
        v[c::SEGS_IN] = l.segs_in.into();
        v[c::SEGS_OUT] = l.segs_out.into();
        v[c::RETRAN] = l.retran_packets;
        v[c::BACKLOG] = l.backlog_drops.into();
        v[c::SK_DROPS] = l.sk_drops.into();
        v[c::FILTER] = l.filter_drops.into();
        v[c::TMOUT] = l.tmout_count.into();
        v[c::SND_BUF] = l.snd_buf_limit_count.into();
        v[c::RMEM] = l.rmem_scheduls.into();
        v[c::OOM] = l.tcp_oom.into();
        v[c::SEND_RST] = l.send_rsts.into();
        v[c::RECV_RST] = l.receive_rsts.into();
        v[c::ZERO_RCV] = l.zero_rcv_wnd.into();
        v[c::ZERO_SND] = l.zero_snd_wnd.into();
        v[c::WIN_EVENTS] = l.win_events.into();
        Counters(v)
    }

    /// The link's counters when it was made: zero, but the socket counters it already had
    /// (a connection older than the probe).
    pub fn baseline(l: &Link) -> Self {
        let mut v = [0u64; c::N];
        v[c::SEGS_IN] = l.segs_in0.into();
        v[c::SEGS_OUT] = l.segs_out0.into();
        v[c::SK_DROPS] = l.sk_drops0.into();
        Counters(v)
    }

    fn delta(&self, last: &Counters) -> Counters {
        let mut v = [0u64; c::N];
        for (i, d) in v.iter_mut().enumerate() {
            *d = self.0[i].saturating_sub(last.0[i]);
        }
        Counters(v)
    }

    fn add(&mut self, d: &Counters) {
        for (a, b) in self.0.iter_mut().zip(d.0) {
            *a = a.saturating_add(b);
        }
    }
}

/// What identifies a tracker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackerKey {
    /// Owning process.
    pub tgid: u32,
    /// Client or server.
    pub role: u8,
    /// Address family.
    pub family: u8,
    /// Client address.
    pub cip: [u8; 16],
    /// Server address.
    pub sip: [u8; 16],
    /// Server port.
    pub sport: u16,
    /// Client port, 0 unless `report_cport`.
    pub cport: u16,
    /// The real client's address from the SYN's TOA option (`toa_client_ip`), if any.
    pub toa: Option<IpAddr>,
}

impl TrackerKey {
    /// The tracker of a link.
    pub fn of(id: &LinkIdent, report_cport: bool) -> Self {
        TrackerKey {
            tgid: id.tgid,
            role: id.role,
            family: id.family,
            cip: id.cip,
            sip: id.sip,
            sport: id.sport,
            cport: if report_cport { id.cport } else { 0 },
            toa: crate::toa::client_ip_in(&id.toa_opts, id.toa_len),
        }
    }

    /// `client` or `server`.
    pub fn role_text(&self) -> &'static str {
        role_text(self.role)
    }

    /// The event entity id: `tgid_role_cip_sip_port_family`.
    pub fn entity_id(&self) -> String {
        format!(
            "{}_{}_{}_{}_{}_{}",
            self.tgid,
            self.role_text(),
            ip_text(self.family.into(), &self.cip),
            ip_text(self.family.into(), &self.sip),
            self.sport,
            self.family
        )
    }
}

fn role_text(role: u8) -> &'static str {
    if role == ROLE_CLIENT {
        "client"
    } else {
        "server"
    }
}

/// One tracker's period.
#[derive(Debug, Clone)]
pub struct Period {
    /// Whether it had a link or data.
    pub active: bool,
    /// Counter deltas.
    pub c: Counters,
    /// Sum over links of the highest `lost_out` seen.
    pub lost_out: u64,
    /// Sum over links of the highest `sacked_out` seen.
    pub sacked_out: u64,
    /// The histograms (index [`h`]).
    pub h: Vec<Histogram>,
}

impl Period {
    fn new() -> Self {
        Period {
            active: false,
            c: Counters::default(),
            lost_out: 0,
            sacked_out: 0,
            h: HIST_BUCKETS.iter().map(|b| Histogram::new(b)).collect(),
        }
    }

    fn clear(&mut self) {
        self.active = false;
        self.c = Counters::default();
        self.lost_out = 0;
        self.sacked_out = 0;
        self.h.iter_mut().for_each(Histogram::clear);
    }

    /// `zero_win_rx_ratio`: percent of the processed segments with our window 0.
    pub fn zero_rx_ratio(&self) -> f64 {
        percent(self.c.0[c::ZERO_RCV], self.c.0[c::WIN_EVENTS])
    }

    /// `zero_win_tx_ratio`: percent of the processed segments with the peer's window 0.
    pub fn zero_tx_ratio(&self) -> f64 {
        percent(self.c.0[c::ZERO_SND], self.c.0[c::WIN_EVENTS])
    }

    /// `retrans_ratio`: retransmitted over sent segments (fraction).
    pub fn retrans_ratio(&self) -> f64 {
        let out = self.c.0[c::SEGS_OUT];
        if out == 0 {
            0.0
        } else {
            self.c.0[c::RETRAN] as f64 / out as f64
        }
    }

    /// `syn_srtt_max`, µs.
    pub fn syn_srtt_max(&self) -> u64 {
        self.h[h::SYN_SRTT].max()
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// One tracker.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// The process's comm.
    pub comm: String,
    /// The current period.
    pub period: Period,
    last_active_s: u64,
}

/// What identifies a `proc_flow_perf` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Owning process.
    pub tgid: u32,
    /// Client or server.
    pub role: u8,
    /// Address family.
    pub family: u8,
    /// The peer's address.
    pub remote: [u8; 16],
    /// Server port.
    pub sport: u16,
}

/// One flow's period.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Receive delays (`sys_delay`), ns.
    pub rx: Histogram,
    /// Send delays (`net_delay`), ns.
    pub tx: Histogram,
    last_active_s: u64,
}

#[derive(Debug, Clone, Copy)]
struct LinkState {
    last: Counters,
    seen: bool,
    misses: u8,
}

/// Which field groups are printed (the others are empty fields).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Groups {
    /// tcp_stats.
    pub stats: bool,
    /// tcp_rtt.
    pub rtt: bool,
    /// tcp_windows.
    pub windows: bool,
    /// tcp_rate.
    pub rate: bool,
    /// tcp_srtt.
    pub srtt: bool,
    /// tcp_sockbuf.
    pub sockbuf: bool,
    /// tcp_abnormal at all (sk_drops).
    pub abn: bool,
    /// tcp_abnormal: retransmits.
    pub retrans: bool,
    /// tcp_abnormal: resets.
    pub resets: bool,
    /// tcp_abnormal: drop reasons.
    pub drops: bool,
    /// tcp_abnormal: socket errors.
    pub errors: bool,
    /// tcp_abnormal: buffer limits.
    pub buf_limits: bool,
    /// tcp_abnormal: lost_out / sacked_out samples.
    pub samples: bool,
    /// tcp_delay.
    pub delay: bool,
}

/// The trackers, flows and per-link state.
#[derive(Debug, Default)]
pub struct Aggregator {
    /// Keep the client port in the tracker key.
    pub report_cport: bool,
    trackers: HashMap<TrackerKey, Tracker>,
    flows: HashMap<FlowKey, Flow>,
    links: HashMap<u64, LinkState>,
}

impl Aggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    fn tracker(&mut self, id: &LinkIdent, now_s: u64) -> &mut Tracker {
        let key = TrackerKey::of(id, self.report_cport);
        let t = self.trackers.entry(key).or_insert_with(|| Tracker {
            comm: id.comm_text(),
            period: Period::new(),
            last_active_s: now_s,
        });
        t.period.active = true;
        t.last_active_s = now_s;
        t
    }

    fn account(&mut self, l: &Link, epoch: u32, now_s: u64) -> &mut LinkState {
        let mut syn_srtt = None;
        let state = self.links.entry(l.ident.id).or_insert_with(|| {
            syn_srtt = (l.syn_srtt > 0).then_some(l.syn_srtt);
            LinkState {
                last: Counters::baseline(l),
                seen: false,
                misses: 0,
            }
        });
        let now = Counters::of(l);
        let d = now.delta(&state.last);
        state.last = now;
        let t = self.tracker(&l.ident, now_s);
        t.period.c.add(&d);
        if let Some(v) = syn_srtt {
            t.period.h[h::SYN_SRTT].record(v.into());
        }
        if l.hw_epoch == epoch {
            t.period.lost_out += u64::from(l.lost_out_hw);
            t.period.sacked_out += u64::from(l.sacked_out_hw);
        }
        self.links.get_mut(&l.ident.id).expect("just inserted")
    }

    /// A link found in the map this sweep; `epoch` is the period's.
    pub fn observe(&mut self, l: &Link, epoch: u32, now_s: u64) {
        self.account(l, epoch, now_s).seen = true;
    }

    /// The final counters of a destroyed socket.
    pub fn close(&mut self, l: &Link, epoch: u32, now_s: u64) {
        self.account(l, epoch, now_s);
        self.links.remove(&l.ident.id);
    }

    /// Forgets a link (its process left the scope).
    pub fn forget(&mut self, id: u64) {
        self.links.remove(&id);
    }

    /// One sample of a socket's state.
    pub fn sample(&mut self, s: &Sample, now_s: u64) {
        let p = &mut self.tracker(&s.ident, now_s).period;
        for (i, v) in [
            (h::SRTT, s.srtt),
            (h::RCV_RTT, s.rcv_rtt),
            (h::SND_CWND, s.snd_cwnd),
            (h::NOTSENT, s.notsent_bytes),
            (h::NOTACK, s.notack_bytes),
            (h::REORDERING, s.reordering),
            (h::SND_WND, s.snd_wnd),
            (h::RCV_WND, s.rcv_wnd),
            (h::AVL_SND_WND, s.avl_snd_wnd),
            (h::RTO, s.rto),
            (h::ATO, s.ato),
            (h::RCVBUF, s.sk_rcvbuf),
            (h::SNDBUF, s.sk_sndbuf),
        ] {
            p.h[i].record(v.into());
        }
    }

    /// One delay measurement, ns.
    pub fn delay(&mut self, id: &LinkIdent, dir: Direction, ns: u64, now_s: u64) {
        let key = FlowKey {
            tgid: id.tgid,
            role: id.role,
            family: id.family,
            remote: if id.role == ROLE_CLIENT {
                id.sip
            } else {
                id.cip
            },
            sport: id.sport,
        };
        let f = self.flows.entry(key).or_insert_with(|| Flow {
            rx: Histogram::new(DELAY_BUCKETS),
            tx: Histogram::new(DELAY_BUCKETS),
            last_active_s: now_s,
        });
        f.last_active_s = now_s;
        match dir {
            Direction::Rx => f.rx.record(ns),
            Direction::Tx => f.tx.record(ns),
        }
    }

    /// Ends a sweep of the map: links not seen for a few sweeps (and never closed) are
    /// forgotten.
    pub fn end_sweep(&mut self) {
        self.links.retain(|_, s| {
            if s.seen {
                s.seen = false;
                s.misses = 0;
                true
            } else {
                s.misses += 1;
                s.misses <= MAX_MISSES
            }
        });
    }

    /// The trackers active in this period, in key order.
    pub fn active(&self) -> Vec<(&TrackerKey, &Tracker)> {
        let mut v: Vec<_> = self
            .trackers
            .iter()
            .filter(|(_, t)| t.period.active)
            .collect();
        v.sort_by_key(|(k, _)| **k);
        v
    }

    /// The flows with samples in this period, in key order.
    pub fn active_flows(&self) -> Vec<(&FlowKey, &Flow)> {
        let mut v: Vec<_> = self
            .flows
            .iter()
            .filter(|(_, f)| !f.rx.is_empty() || !f.tx.is_empty())
            .collect();
        v.sort_by_key(|(k, _)| **k);
        v
    }

    /// Starts the next period; forgets trackers and flows idle for [`IDLE_AGE_S`].
    pub fn next_period(&mut self, now_s: u64) {
        for t in self.trackers.values_mut() {
            t.period.clear();
        }
        for f in self.flows.values_mut() {
            f.rx.clear();
            f.tx.clear();
        }
        let fresh = |last: u64| now_s.saturating_sub(last) < IDLE_AGE_S;
        self.trackers.retain(|_, t| fresh(t.last_active_s));
        self.flows.retain(|_, f| fresh(f.last_active_s));
    }

    /// Number of trackers held (active or not).
    #[cfg(test)]
    pub fn trackers(&self) -> usize {
        self.trackers.len()
    }

    /// Number of links held.
    #[cfg(test)]
    pub fn links(&self) -> usize {
        self.links.len()
    }
}

fn num(on: bool, v: impl ToString) -> String {
    if on {
        v.to_string()
    } else {
        String::new()
    }
}

fn hist(on: bool, h: &Histogram) -> String {
    if on {
        h.encode()
    } else {
        String::new()
    }
}

/// The `tcp_metric` row of a tracker, in meta order.
pub fn metric_row(k: &TrackerKey, t: &Tracker, g: &Groups) -> Vec<String> {
    let p = &t.period;
    let v = &p.c.0;
    let family = u16::from(k.family);
    let mut row = vec![
        k.tgid.to_string(),
        if t.comm.is_empty() {
            "unknown".to_owned()
        } else {
            t.comm.clone()
        },
        k.role_text().to_owned(),
        ip_text(family, &k.cip),
        k.toa.map(|ip| ip.to_string()).unwrap_or_default(),
        ip_text(family, &k.sip),
        k.cport.to_string(),
        k.sport.to_string(),
        family_text(family).to_owned(),
    ];
    for i in [c::RX_BYTES, c::TX_BYTES, c::SEGS_IN, c::SEGS_OUT] {
        row.push(num(g.stats, v[i]));
    }
    row.push(hist(g.rtt, &p.h[h::SRTT]));
    row.push(hist(g.rtt, &p.h[h::RCV_RTT]));
    for i in h::SND_CWND..=h::AVL_SND_WND {
        row.push(hist(g.windows, &p.h[i]));
    }
    row.push(num(g.windows, v[c::ZERO_RCV]));
    row.push(num(g.windows, v[c::ZERO_SND]));
    row.push(num(g.windows, format!("{:.2}", p.zero_rx_ratio())));
    row.push(num(g.windows, format!("{:.2}", p.zero_tx_ratio())));
    row.push(hist(g.rate, &p.h[h::RTO]));
    row.push(hist(g.rate, &p.h[h::ATO]));
    row.push(hist(g.srtt, &p.h[h::SYN_SRTT]));
    row.push(num(g.srtt, p.syn_srtt_max()));
    row.push(hist(g.sockbuf, &p.h[h::RCVBUF]));
    row.push(hist(g.sockbuf, &p.h[h::SNDBUF]));
    let lost_on = g.retrans || g.samples;
    row.push(num(g.retrans, v[c::RETRAN]));
    row.push(num(g.drops, v[c::BACKLOG]));
    row.push(num(g.abn, v[c::SK_DROPS]));
    row.push(num(lost_on, p.lost_out));
    row.push(num(lost_on, p.sacked_out));
    row.push(num(g.drops, v[c::FILTER]));
    row.push(num(g.errors, v[c::TMOUT]));
    row.push(num(g.buf_limits, v[c::SND_BUF]));
    row.push(num(g.buf_limits, v[c::RMEM]));
    row.push(num(g.drops, v[c::OOM]));
    row.push(num(g.resets, v[c::SEND_RST]));
    row.push(num(g.resets, v[c::RECV_RST]));
    row.push(num(g.retrans, format!("{:.4}", p.retrans_ratio())));
    row
}

/// The `proc_flow_perf` row of a flow, in meta order.
pub fn flow_row(k: &FlowKey, f: &Flow) -> Vec<String> {
    vec![
        k.tgid.to_string(),
        role_text(k.role).to_owned(),
        ip_text(k.family.into(), &k.remote),
        k.sport.to_string(),
        f.rx.encode(),
        f.tx.encode(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::link;
    use crate::record::ROLE_SERVER;

    fn all() -> Groups {
        Groups {
            stats: true,
            rtt: true,
            windows: true,
            rate: true,
            srtt: true,
            sockbuf: true,
            abn: true,
            retrans: true,
            resets: true,
            drops: true,
            errors: true,
            buf_limits: true,
            samples: true,
            delay: true,
        }
    }

    #[test]
    fn links_of_one_tracker_add_up_as_period_deltas() {
        let mut a = Aggregator::new();
        let mut l1 = link(1, 10, ROLE_SERVER, 40000, 80);
        let mut l2 = link(2, 10, ROLE_SERVER, 40001, 80);
        l1.tx_bytes = 100;
        l2.tx_bytes = 50;
        l1.segs_out = 12;
        l1.segs_out0 = 10;
        a.observe(&l1, 0, 0);
        a.observe(&l2, 0, 0);
        a.end_sweep();
        let act = a.active();
        assert_eq!(act.len(), 1, "client port not in the key by default");
        let p = &act[0].1.period;
        assert_eq!(p.c.0[c::TX_BYTES], 150);
        assert_eq!(p.c.0[c::SEGS_OUT], 2, "counted from the baseline");
        a.next_period(5);
        l1.tx_bytes = 130;
        a.observe(&l1, 1, 5);
        a.close(&l2, 1, 5);
        let act = a.active();
        assert_eq!(act[0].1.period.c.0[c::TX_BYTES], 30);
        assert_eq!(a.links(), 1, "the closed link is gone");
    }

    #[test]
    fn report_cport_splits_trackers_and_roles_pick_the_sides() {
        let mut a = Aggregator::new();
        a.report_cport = true;
        a.observe(&link(1, 10, ROLE_CLIENT, 40000, 80), 0, 0);
        a.observe(&link(2, 10, ROLE_CLIENT, 40001, 80), 0, 0);
        assert_eq!(a.active().len(), 2);
        let (k, t) = a.active()[0];
        let row = metric_row(k, t, &all());
        assert_eq!(row.len(), 45, "the meta's field count");
        assert_eq!(
            &row[..9],
            [
                "10",
                "curl",
                "client",
                "127.0.0.1",
                "",
                "127.0.0.2",
                "40000",
                "80",
                "2"
            ]
        );
        assert_eq!(k.entity_id(), "10_client_127.0.0.1_127.0.0.2_80_2");
    }

    #[test]
    fn disabled_groups_print_empty_fields() {
        let mut a = Aggregator::new();
        a.observe(&link(1, 10, ROLE_CLIENT, 40000, 80), 0, 0);
        let (k, t) = a.active()[0];
        let g = Groups {
            stats: true,
            ..Groups::default()
        };
        let row = metric_row(k, t, &g);
        assert_eq!(row[9], "0");
        assert!(row[13..].iter().all(String::is_empty), "{row:?}");
    }

    #[test]
    fn samples_syn_srtt_high_water_and_ratios() {
        let mut a = Aggregator::new();
        let mut l = link(1, 10, ROLE_SERVER, 40000, 80);
        l.syn_srtt = 70;
        l.hw_epoch = 3;
        l.lost_out_hw = 4;
        l.win_events = 10;
        l.zero_rcv_wnd = 5;
        l.segs_out = 100;
        l.retran_packets = 5;
        a.observe(&l, 3, 0);
        a.observe(&l, 3, 0);
        let s = Sample {
            ident: l.ident,
            srtt: 120,
            ..Default::default()
        };
        a.sample(&s, 0);
        let (_, t) = a.active()[0];
        let p = &t.period;
        assert_eq!(
            p.h[h::SYN_SRTT].count(),
            1,
            "syn_srtt counted once per link"
        );
        assert_eq!(p.syn_srtt_max(), 70);
        assert_eq!(
            p.h[h::SRTT].encode(),
            "6 50 0 100 0 200 1 500 1 1000 1 18446744073709551615 1 120 120"
        );
        assert_eq!(p.lost_out, 8, "high water of the epoch, per observation");
        assert_eq!(p.zero_rx_ratio(), 50.0);
        assert_eq!(p.retrans_ratio(), 0.05);
        a.next_period(1);
        l.hw_epoch = 3;
        a.observe(&l, 4, 1);
        assert_eq!(
            a.active()[0].1.period.lost_out,
            0,
            "an old epoch's high water"
        );
    }

    #[test]
    fn unseen_links_and_idle_trackers_age_out() {
        let mut a = Aggregator::new();
        a.observe(&link(1, 10, ROLE_CLIENT, 1, 80), 0, 0);
        for _ in 0..=MAX_MISSES {
            a.end_sweep();
        }
        assert_eq!(a.links(), 1);
        a.end_sweep();
        assert_eq!(a.links(), 0);
        a.next_period(IDLE_AGE_S - 1);
        assert_eq!(a.trackers(), 1);
        assert!(a.active().is_empty(), "not printed without a link or data");
        a.next_period(IDLE_AGE_S);
        assert_eq!(a.trackers(), 0);
    }

    #[test]
    fn delays_go_to_the_flow_of_the_peer() {
        let mut a = Aggregator::new();
        let l = link(1, 10, ROLE_SERVER, 40000, 80);
        a.delay(&l.ident, Direction::Rx, 2_000_000, 0);
        a.delay(&l.ident, Direction::Tx, 500, 0);
        let flows = a.active_flows();
        let row = flow_row(flows[0].0, flows[0].1);
        assert_eq!(&row[..4], ["10", "server", "127.0.0.1", "80"]);
        assert!(row[4].starts_with("6 1000000 0 10000000 1 "), "{}", row[4]);
        a.next_period(1);
        assert!(a.active_flows().is_empty());
    }
}
