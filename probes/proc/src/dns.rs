//! `proc_dns`: the libc resolver calls (getaddrinfo, gethostbyname, gethostbyname2) that the
//! uprobes report one by one, aggregated per (tgid, name) and period. Delays are over the
//! successful calls only and printed in units of 64 ns (`ns >> 6`), as the original does;
//! `error_ratio` is failed / all calls in percent.

use std::collections::BTreeMap;

use gala_ebpf::Pod;

use crate::skel::types;

/// Most (tgid, name) pairs kept per period; more are dropped and counted.
pub const MAX_ENTRIES: usize = 4096;

/// `struct dns_event` of `taskprobe.bpf.c`, as the skeleton generated it: the process
/// (`tgid`), `error` (non-zero when the call failed), `duration_ns` from entry to return
/// and the NUL-terminated `domain`.
pub type DnsRecord = types::dns_event;

// SAFETY: generated from the object's BTF: integers and a char array only, no padding.
unsafe impl Pod for DnsRecord {}

/// The name of a record as a label value: up to the NUL, invalid UTF-8 replaced, and the
/// characters a record line cannot hold (`|`, control characters) replaced by `?`; `None`
/// when empty.
pub fn domain_text(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
    let text: String = String::from_utf8_lossy(&raw[..end])
        .chars()
        .map(|c| if c == '|' || c.is_control() { '?' } else { c })
        .collect();
    (!text.is_empty()).then_some(text)
}

/// One (tgid, name)'s calls in the period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Calls {
    count: u64,
    errors: u64,
    ok_sum_ns: u64,
    ok_max_ns: u64,
}

/// One `proc_dns` record.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsRow {
    /// Process.
    pub tgid: u32,
    /// Name looked up.
    pub domain: String,
    /// Mean successful delay, ns >> 6.
    pub delay_avg: u64,
    /// Longest successful delay, ns >> 6.
    pub max_delay: u64,
    /// Failed / all, percent.
    pub error_ratio: f64,
    /// Calls.
    pub count: u64,
    /// Failed calls.
    pub error_count: u64,
}

/// The calls of the current period, and which keys were reported last time.
#[derive(Debug, Default)]
pub struct DnsStats {
    calls: BTreeMap<(u32, String), Calls>,
    /// Records that did not fit (`MAX_ENTRIES`) or were malformed, since start.
    pub dropped: u64,
}

impl DnsStats {
    /// Counts one ring buffer record; a short one is dropped and counted.
    pub fn add_raw(&mut self, data: &[u8]) {
        match gala_ebpf::read_pod::<DnsRecord>(data) {
            Some(r) => match domain_text(gala_ebpf::char_bytes(&r.domain)) {
                Some(domain) => self.add(r.tgid, domain, r.error != 0, r.duration_ns),
                None => self.dropped += 1,
            },
            None => self.dropped += 1,
        }
    }

    /// Counts one call.
    pub fn add(&mut self, tgid: u32, domain: String, failed: bool, duration_ns: u64) {
        let key = (tgid, domain);
        if !self.calls.contains_key(&key) && self.calls.len() >= MAX_ENTRIES {
            self.dropped += 1;
            return;
        }
        let c = self.calls.entry(key).or_default();
        c.count += 1;
        if failed {
            c.errors += 1;
        } else {
            c.ok_sum_ns = c.ok_sum_ns.saturating_add(duration_ns);
            c.ok_max_ns = c.ok_max_ns.max(duration_ns);
        }
    }

    /// The records of the period that ends now: the pairs with calls, and one zero record
    /// for each pair that had calls in the previous period only. Starts the next period.
    pub fn take_rows(&mut self) -> Vec<DnsRow> {
        let mut rows = Vec::new();
        self.calls.retain(|(tgid, domain), c| {
            let ok = c.count - c.errors;
            rows.push(DnsRow {
                tgid: *tgid,
                domain: domain.clone(),
                delay_avg: c.ok_sum_ns.checked_div(ok).unwrap_or(0) >> 6,
                max_delay: c.ok_max_ns >> 6,
                error_ratio: if c.count > 0 {
                    c.errors as f64 * 100.0 / c.count as f64
                } else {
                    0.0
                },
                count: c.count,
                error_count: c.errors,
            });
            // Keep an idle pair for one more (zero) record, then forget it.
            let keep = c.count > 0;
            *c = Calls::default();
            keep
        });
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tgid: u32, name: &[u8], error: u32, ns: u64) -> Vec<u8> {
        let mut r = DnsRecord {
            tgid,
            error,
            duration_ns: ns,
            ..Default::default()
        };
        for (c, b) in r.domain.iter_mut().zip(name) {
            *c = *b as i8;
        }
        gala_ebpf::bytes_of(&r).to_vec()
    }

    #[test]
    fn names_become_safe_labels() {
        assert_eq!(
            domain_text(b"localhost\0junk").as_deref(),
            Some("localhost")
        );
        assert_eq!(domain_text(b"a|b\nc\0").as_deref(), Some("a?b?c"));
        assert_eq!(domain_text(b"\0"), None);
        assert_eq!(domain_text(&[0xff, b'x', 0]).as_deref(), Some("\u{fffd}x"));
    }

    #[test]
    fn calls_aggregate_per_process_and_name() {
        let mut d = DnsStats::default();
        d.add_raw(&record(5, b"localhost", 0, 6400));
        d.add_raw(&record(5, b"localhost", 0, 12800));
        d.add_raw(&record(5, b"localhost", 1, 1_000_000));
        d.add_raw(&record(5, b"nonexistent.invalid", 1, 64));
        d.add_raw(&record(6, b"localhost", 0, 640));
        d.add_raw(&[1, 2, 3]);
        assert_eq!(d.dropped, 1);
        let rows = d.take_rows();
        assert_eq!(rows.len(), 3);
        let lh = &rows[0];
        assert_eq!((lh.tgid, lh.domain.as_str()), (5, "localhost"));
        // Delays over the two successes only: mean 9600 ns, max 12800 ns, in 64 ns units.
        assert_eq!((lh.delay_avg, lh.max_delay), (150, 200));
        assert_eq!((lh.count, lh.error_count), (3, 1));
        assert!((lh.error_ratio - 100.0 / 3.0).abs() < 1e-9);
        let bad = &rows[1];
        assert_eq!(
            (bad.delay_avg, bad.max_delay, bad.error_ratio),
            (0, 0, 100.0)
        );
        // Next period: one zero record per pair, then nothing.
        let rows = d.take_rows();
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|r| r.count == 0 && r.error_ratio == 0.0));
        assert!(d.take_rows().is_empty());
    }

    #[test]
    fn the_number_of_pairs_is_bounded() {
        let mut d = DnsStats::default();
        for i in 0..MAX_ENTRIES + 5 {
            d.add(1, format!("h{i}"), false, 1);
        }
        d.add(1, "h0".into(), false, 1);
        assert_eq!(d.dropped, 5);
        assert_eq!(d.take_rows().len(), MAX_ENTRIES);
    }
}
