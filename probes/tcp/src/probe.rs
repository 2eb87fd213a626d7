//! The probe under the shared runner: loads the BPF object for the planned programs, runs
//! the `tcp_pass` iterator every sample period, attaches the tcp_delay programs only
//! inside the delay window, drains the ring buffer into the [`Aggregator`], sweeps the
//! `links` map every report period and prints `tcp_metric`, `proc_flow_perf` and the
//! threshold events.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use gala_ebpf::{log, BpfProbe, Hook, Plan, Scope, Setup, Skeleton, Subitem};
use gala_probe_sdk::{Config, EmitError, Event, Level, Probe, Severity};
use libbpf_rs::{MapCore, MapFlags, Object};

use crate::cluster_ip::Backends;
use crate::events::{check, Thresholds};
use crate::record::{decode, decode_link, Record};
use crate::skel::{TcpSkel, TcpSkelBuilder};
use crate::subitems::{abn, DELAY_PROGS, SUBITEMS, TOA_PROGS};
use crate::tracker::{flow_row, metric_row, Aggregator, Groups};

/// The probe's name in the catalogue.
pub const NAME: &str = "tcp";

/// Entity of the events.
const ENTITY: &str = "tcp_link";

/// Links read per batch from the map.
const BATCH: u32 = 256;

struct Loaded {
    // Dropped before the skeleton (field order): they use its programs and maps.
    delay_links: Vec<libbpf_rs::Link>,
    /// The fentry/fexit tcp_delay programs, attached once for good: a kernel before 6.0
    /// refuses to attach such a program a second time (ENOENT), so the window is their
    /// `delay_open` flag only.
    _sticky_links: Vec<libbpf_rs::Link>,
    skel: Skeleton<TcpSkel<'static>>,
    /// The planned tcp_delay programs attached only in the window.
    delay_progs: Vec<&'static str>,
}

impl Loaded {
    /// Opens or closes the window for the programs that stay attached.
    fn set_window(&mut self, open: bool) {
        if let Some(bss) = self.skel.maps.bss_data.as_deref_mut() {
            bss.delay_open = open.into();
        }
    }
}

/// A record's link identity, its server side translated when `backends` is on.
fn translate(backends: &mut Option<&mut Backends>, id: &mut crate::record::LinkIdent) {
    if let Some(b) = backends.as_deref_mut() {
        b.translate(id);
    }
}

/// The kernel's `CONFIG_HZ`: one jiffy is the resolution of the coarse clocks (their
/// resolution is the tick). `None` if the clock does not answer.
fn kernel_hz() -> Option<u32> {
    let mut res = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes one timespec through a valid pointer.
    if unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } != 0 {
        return None;
    }
    let ns = u64::try_from(res.tv_sec).ok()? * 1_000_000_000 + u64::try_from(res.tv_nsec).ok()?;
    (ns > 0).then(|| u32::try_from((1_000_000_000 + ns / 2) / ns).ok())?
}

/// How long the tcp_delay programs stay attached at the start of each sample period:
/// a twentieth of it, at least 100 ms. `None`: the whole period (they stay attached).
fn delay_window(sample_period: Duration) -> Option<Duration> {
    let w = (sample_period / 20).max(Duration::from_millis(100));
    (w < sample_period).then_some(w)
}

/// The tcp probe.
pub struct TcpProbe {
    loaded: Option<Loaded>,
    agg: Aggregator,
    scope: Scope,
    groups: Groups,
    thresholds: Thresholds,
    report_event: bool,
    epoch: u32,
    started: Instant,
    bad_records: u64,
    lost_seen: (u64, u64),
    sample_period: Duration,
    next_pass: Instant,
    window_end: Option<Instant>,
    pass_id: u32,
    /// `cluster_ip_backend` as configured: 1 looks client links' backends up in
    /// conntrack.
    cluster_ip: u32,
    backends: Backends,
}

impl TcpProbe {
    /// A probe with nothing loaded.
    pub fn new() -> Self {
        TcpProbe {
            loaded: None,
            agg: Aggregator::new(),
            scope: Scope::default(),
            groups: Groups::default(),
            thresholds: Thresholds::default(),
            report_event: false,
            epoch: 0,
            started: Instant::now(),
            bad_records: 0,
            lost_seen: (0, 0),
            sample_period: Duration::from_secs(5),
            next_pass: Instant::now(),
            window_end: None,
            pass_id: 0,
            cluster_ip: 0,
            backends: Backends::default(),
        }
    }

    /// Runs the `tcp_pass` iterator once: every link's counters read, new sockets of
    /// snooped processes bound, samples into the ring buffer.
    fn pass(&mut self) {
        let Some(loaded) = self.loaded.as_mut() else {
            return;
        };
        self.pass_id = self.pass_id.wrapping_add(1);
        if let Some(bss) = loaded.skel.maps.bss_data.as_deref_mut() {
            bss.pass_id = self.pass_id;
        }
        // The plan chose one of the two pass programs (`subitems::PASS*`).
        let links = &loaded.skel.links;
        let Some(link) = links.tcp_pass.as_ref().or(links.tcp_pass_compat.as_ref()) else {
            return;
        };
        let run = libbpf_rs::Iter::new(link).and_then(|mut iter| {
            // The program writes nothing: the read returns at the end of the pass.
            let mut buf = [0u8; 64];
            while iter.read(&mut buf).map_err(libbpf_rs::Error::from)? > 0 {}
            Ok(())
        });
        if let Err(e) = run {
            log(Level::Warn, NAME, &format!("socket pass: {e}"));
        }
    }

    /// Attaches the planned tcp_delay programs (the window opens).
    fn open_window(&mut self, now: Instant) {
        let Some(loaded) = self.loaded.as_mut() else {
            return;
        };
        self.window_end = delay_window(self.sample_period).map(|w| now + w);
        loaded.set_window(true);
        if !loaded.delay_links.is_empty() {
            return;
        }
        loaded.delay_links =
            gala_ebpf::attach_named(loaded.skel.object(), &loaded.delay_progs, NAME);
    }

    /// The pass and the delay window, on their schedule.
    fn schedule(&mut self) {
        let now = Instant::now();
        if now >= self.next_pass {
            self.pass();
            self.next_pass = now + self.sample_period;
            self.open_window(now);
        }
        if self.window_end.is_some_and(|end| now >= end) {
            self.window_end = None;
            if let Some(loaded) = self.loaded.as_mut() {
                loaded.set_window(false);
                loaded.delay_links.clear();
            }
        }
    }

    fn now_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn drain(&mut self) {
        let Some(loaded) = self.loaded.as_mut() else {
            return;
        };
        let now_s = self.started.elapsed().as_secs();
        let (agg, scope, epoch, bad) = (
            &mut self.agg,
            &self.scope,
            self.epoch,
            &mut self.bad_records,
        );
        let mut backends = (self.cluster_ip == 1).then_some(&mut self.backends);
        let Some(ring) = loaded.skel.ring() else {
            return;
        };
        ring.drain(|data| match decode(data) {
            None => *bad += 1,
            Some(Record::Sample(mut s)) if scope.contains(s.ident.tgid) => {
                translate(&mut backends, &mut s.ident);
                agg.sample(&s, now_s)
            }
            Some(Record::Close(mut l)) if scope.contains(l.ident.tgid) => {
                translate(&mut backends, &mut l.ident);
                agg.close(&l, epoch, now_s);
                if let Some(b) = backends.as_deref_mut() {
                    b.forget(l.ident.id);
                }
            }
            Some(Record::Close(l)) => agg.forget(l.ident.id),
            Some(Record::Delay(mut id, dir, ns)) if scope.contains(id.tgid) => {
                translate(&mut backends, &mut id);
                agg.delay(&id, dir, ns, now_s)
            }
            Some(_) => {}
        });
    }

    /// Reads every link of the map into the aggregator; deletes those out of scope.
    fn sweep(&mut self) {
        let Some(loaded) = self.loaded.as_ref() else {
            return;
        };
        let now_s = self.now_s();
        let map = &loaded.skel.maps.links;
        let mut gone = Vec::new();
        match map.lookup_batch(BATCH, MapFlags::ANY, MapFlags::ANY) {
            Ok(iter) => {
                for (key, value) in iter {
                    let Some(mut link) = decode_link(&value) else {
                        self.bad_records += 1;
                        continue;
                    };
                    if self.scope.contains(link.ident.tgid) {
                        if self.cluster_ip == 1 {
                            self.backends.translate(&mut link.ident);
                        }
                        self.agg.observe(&link, self.epoch, now_s);
                    } else {
                        gone.push((key, link.ident.id));
                    }
                }
            }
            Err(e) => log(Level::Warn, NAME, &format!("reading the links map: {e}")),
        }
        for (key, id) in gone {
            // Already deleted by the BPF side (socket destroyed meanwhile) is fine.
            let _ = map.delete(&key);
            self.agg.forget(id);
            self.backends.forget(id);
        }
        self.agg.end_sweep();
    }

    /// Applies `cluster_ip_backend`: 1 is conntrack; 2 (flowtracer) is said to be missing
    /// from this build and works as 0.
    fn set_cluster_ip(&mut self, value: u32) {
        if value == self.cluster_ip {
            return;
        }
        self.cluster_ip = value;
        self.backends = Backends::default();
        if value == 2 {
            log(
                Level::Warn,
                NAME,
                "cluster_ip_backend 2 reads the flowtracer's map, and this build has no \
                 flowtracer: addresses are printed as the sockets have them",
            );
        }
    }

    /// Logs what the BPF side could not keep since the last report.
    fn report_losses(&mut self) {
        let Some(bss) = self
            .loaded
            .as_ref()
            .and_then(|l| l.skel.maps.bss_data.as_deref())
        else {
            return;
        };
        let (full, lost) = (bss.links_full, bss.ring_lost);
        if full > self.lost_seen.0 {
            log(
                Level::Warn,
                NAME,
                &format!(
                    "links map full: {} new connections not tracked",
                    full - self.lost_seen.0
                ),
            );
        }
        if lost > self.lost_seen.1 {
            log(
                Level::Warn,
                NAME,
                &format!(
                    "ring buffer full: {} records lost (raise ringbuf_map_size)",
                    lost - self.lost_seen.1
                ),
            );
        }
        self.lost_seen = (full, lost);
    }

    fn next_epoch(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
        if let Some(bss) = self
            .loaded
            .as_mut()
            .and_then(|l| l.skel.maps.bss_data.as_deref_mut())
        {
            bss.epoch = self.epoch;
        }
    }

    /// `sample_period` (ms, clamped to 100–10000) for the pass schedule and the BPF gates.
    fn set_sample_period(&mut self, ms: u32) {
        let ms = ms.clamp(100, 10_000);
        self.sample_period = Duration::from_millis(ms.into());
        if let Some(data) = self
            .loaded
            .as_mut()
            .and_then(|l| l.skel.maps.data_data.as_deref_mut())
        {
            data.sample_period_ns = u64::from(ms) * 1_000_000;
        }
    }
}

impl Default for TcpProbe {
    fn default() -> Self {
        Self::new()
    }
}

/// The field groups the plan makes available.
fn groups(plan: &Plan) -> Groups {
    let on = |s| plan.active(s);
    let need = |w| plan.has_need("tcp_abnormal", w);
    Groups {
        stats: on("tcp_stats"),
        rtt: on("tcp_rtt"),
        windows: on("tcp_windows"),
        rate: on("tcp_rate"),
        srtt: on("tcp_srtt"),
        sockbuf: on("tcp_sockbuf"),
        abn: need(abn::SAMPLES) || need(abn::RETRANSMITS),
        retrans: need(abn::RETRANSMITS),
        resets: need(abn::RESETS),
        drops: need(abn::DROPS),
        errors: need(abn::ERRORS),
        buf_limits: need(abn::BUF_LIMITS),
        samples: need(abn::SAMPLES),
        delay: on("tcp_delay"),
    }
}

impl BpfProbe for TcpProbe {
    const NAME: &'static str = NAME;

    fn subitems(&self) -> &'static [Subitem] {
        SUBITEMS
    }

    fn load(&mut self, plan: &Plan, config: &Config) -> Result<(), gala_ebpf::Error> {
        let g = groups(plan);
        // The tcp_delay programs run only inside the window (`open_window`).
        let setup = Setup::new(plan)
            .rings(&["events"])
            .ring_mb(config.params().ringbuf_map_size)
            .manual(DELAY_PROGS);
        let skel = Skeleton::load(TcpSkelBuilder::default(), &setup, |open| {
            if let Some(ro) = open.maps.rodata_data.as_deref_mut() {
                ro.en_stats = g.stats.into();
                ro.en_abn = g.abn.into();
                ro.en_win = g.windows.into();
                ro.en_rtt = g.rtt.into();
                ro.en_srtt = g.srtt.into();
                ro.en_rate = g.rate.into();
                ro.en_sockbuf = g.sockbuf.into();
                ro.en_delay = g.delay.into();
                ro.en_toa = TOA_PROGS.iter().any(|p| plan.has(p)).into();
                ro.kernel_hz = kernel_hz().unwrap_or(0);
            }
            Ok(())
        })?;
        let (sticky, windowed): (Vec<_>, Vec<_>) = plan
            .hooks()
            .iter()
            .filter(|(name, _)| DELAY_PROGS.contains(name))
            .partition(|(_, hook)| matches!(hook, Hook::Fentry(_) | Hook::Fexit(_)));
        let sticky: Vec<&'static str> = sticky.iter().map(|&&(name, _)| name).collect();
        let delay_progs = windowed.iter().map(|&&(name, _)| name).collect();
        let sticky_links = gala_ebpf::attach_named(skel.object(), &sticky, NAME);
        for (port, n) in crate::procnet::host_listen_ports(Path::new("/proc")) {
            let key = u32::from(port).to_ne_bytes();
            let _ = skel
                .maps
                .listen_ports
                .update(&key, &n.to_ne_bytes(), MapFlags::NO_EXIST);
        }
        self.groups = g;
        self.loaded = Some(Loaded {
            delay_links: Vec::new(),
            _sticky_links: sticky_links,
            skel,
            delay_progs,
        });
        self.set_sample_period(config.params().sample_period);
        self.next_pass = Instant::now();
        self.window_end = None;
        self.pass_id = 0;
        if let Some(bss) = self
            .loaded
            .as_mut()
            .and_then(|l| l.skel.maps.bss_data.as_deref_mut())
        {
            bss.epoch = self.epoch;
        }
        self.lost_seen = (0, 0);
        // The first window opens now (the first pass follows the snooper map, in
        // `configure`).
        self.open_window(Instant::now());
        Ok(())
    }

    fn unload(&mut self) {
        self.loaded = None;
        self.agg = Aggregator::new();
    }

    fn object(&self) -> Option<&Object> {
        self.loaded.as_ref().map(|l| l.skel.object())
    }

    fn configure(&mut self, config: &Config, pids: &BTreeSet<u32>) {
        let scope = Scope::new(config.snooper_mode(), pids.clone());
        let changed = scope != self.scope;
        if changed {
            let mode = if scope.is_blacklist() {
                "all but"
            } else {
                "only"
            };
            log(
                Level::Info,
                NAME,
                &format!("scope: {mode} {} tgids", scope.pids().len()),
            );
        }
        self.scope = scope;
        let p = config.params();
        self.agg.report_cport = p.report_cport;
        self.report_event = p.report_event;
        self.thresholds = Thresholds {
            drops: p.drops_thr.into(),
            latency_ms: p.latency_thr.into(),
            res_upper: p.res_upper_thr.into(),
        };
        self.set_sample_period(p.sample_period);
        self.set_cluster_ip(p.cluster_ip_backend);
        // The snooper map is in step now: a pass binds the sockets the processes in scope
        // already have (older than the probe, or than their entry into the scope).
        if changed || self.pass_id == 0 {
            self.next_pass = Instant::now();
            self.schedule();
        }
    }

    fn poll(&mut self) {
        self.schedule();
        self.drain();
    }

    /// Often enough that a 1 MB ring buffer holds the close records of ~20k connections
    /// per second between two drains.
    fn tick(&self) -> Duration {
        Duration::from_millis(50)
    }

    fn report(
        &mut self,
        probe: &mut Probe,
        _config: &Config,
        _plan: &Plan,
    ) -> Result<(), EmitError> {
        self.pass();
        self.drain();
        self.sweep();
        self.next_epoch();
        self.report_losses();
        if let Some(e) = self.backends.take_failure() {
            log(
                Level::Warn,
                NAME,
                &format!("{e}; server addresses stay untranslated"),
            );
        }
        let g = self.groups;
        for (k, t) in self.agg.active() {
            let row = metric_row(k, t, &g);
            let values: Vec<&dyn std::fmt::Display> =
                row.iter().map(|v| v as &dyn std::fmt::Display).collect();
            probe.emit("tcp_metric", &values)?;
            if !self.report_event {
                continue;
            }
            let id = k.entity_id();
            let server_ip = &row[5];
            for alarm in check(&t.period, &g, &self.thresholds) {
                probe.event(
                    &Event::new(ENTITY, &id, alarm.metric, Severity::Warn, &alarm.message)
                        .pid(k.tgid)
                        .comm(&t.comm)
                        .ip(server_ip),
                )?;
            }
        }
        if g.delay {
            for (k, f) in self.agg.active_flows() {
                let row = flow_row(k, f);
                let values: Vec<&dyn std::fmt::Display> =
                    row.iter().map(|v| v as &dyn std::fmt::Display).collect();
                probe.emit("proc_flow_perf", &values)?;
            }
        }
        if self.bad_records > 0 {
            log(
                Level::Warn,
                NAME,
                &format!("{} malformed BPF records ignored", self.bad_records),
            );
            self.bad_records = 0;
        }
        let now_s = self.now_s();
        self.agg.next_period(now_s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_hz_is_one_of_the_configurable_values() {
        let hz = kernel_hz().expect("coarse clock");
        assert!([100, 250, 300, 1000].contains(&hz), "CONFIG_HZ {hz}");
    }

    #[test]
    fn the_delay_window_is_a_twentieth_of_the_period_at_least_100_ms() {
        let ms = Duration::from_millis;
        assert_eq!(delay_window(ms(5000)), Some(ms(250)));
        assert_eq!(delay_window(ms(10000)), Some(ms(500)));
        assert_eq!(delay_window(ms(1000)), Some(ms(100)));
        assert_eq!(delay_window(ms(100)), None);
    }

    #[test]
    fn groups_follow_the_plan() {
        let plan = Plan::choose(SUBITEMS, |s| s == "tcp_rtt", |_| true);
        let g = groups(&plan);
        assert!(g.rtt && !g.stats && !g.abn && !g.delay);
    }
}
