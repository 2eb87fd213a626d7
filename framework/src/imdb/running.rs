//! Running histograms: the sum of every report of a series' histogram fields.
//!
//! The original's probes write, in each record, the observations of one report period only
//! (cumulative over the buckets, reset every period). Prometheus needs counters that never
//! decrease, so the imdb adds each stored record into a running histogram per series and
//! histogram field: once per ingested record, never per read. A report whose bucket bounds
//! differ from the running ones (a probe restarted with other bounds) restarts the running
//! histogram from that report. The running histograms go with their series when it ages out.
//!
//! The series of a table keep theirs in one [`RunningStore`] of the table, so records of
//! tables without histograms stay as small as before; a series holds a slot number.

use gala_meta::histogram;
use gala_meta::record::is_null;

/// The running `_sum` of a histogram: exact while every report's SUM is an unsigned integer
/// and the total fits in a `u64`, a float from the first one that is not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RunningSum {
    /// The exact sum of integer SUMs.
    Int(u64),
    /// The float sum, once a SUM was fractional, negative, special or the total overflowed.
    Float(f64),
}

impl RunningSum {
    /// Adds one report's SUM token (a validated number).
    fn add(&mut self, tok: &[u8]) {
        if let (RunningSum::Int(total), Some(v)) = (*self, parse_u64(tok)) {
            if let Some(t) = total.checked_add(v) {
                *self = RunningSum::Int(t);
                return;
            }
        }
        let v = std::str::from_utf8(tok)
            .ok()
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN);
        *self = RunningSum::Float(self.as_f64() + v);
    }

    /// The sum as a float.
    pub fn as_f64(self) -> f64 {
        match self {
            RunningSum::Int(v) => v as f64,
            RunningSum::Float(v) => v,
        }
    }

    /// Appends the sum in Prometheus number syntax (`+Inf`, `-Inf`, `NaN` for the specials).
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            RunningSum::Int(v) => out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes()),
            RunningSum::Float(v) if v.is_nan() => out.extend_from_slice(b"NaN"),
            RunningSum::Float(v) if v.is_infinite() => {
                out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" })
            }
            RunningSum::Float(v) => {
                use std::io::Write;
                // `{:?}` is the shortest text that reads back as the same float.
                let _ = write!(out, "{v:?}");
            }
        }
    }
}

/// Parses a run of ASCII digits into a `u64` (none on anything else or overflow).
fn parse_u64(tok: &[u8]) -> Option<u64> {
    if tok.is_empty() {
        return None;
    }
    tok.iter().try_fold(0u64, |v, &b| {
        b.is_ascii_digit().then_some(())?;
        v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// The running histogram of one field of one series.
#[derive(Debug, Clone)]
pub struct RunningHistogram {
    /// `(upper bound, cumulative count)` per bucket; empty before the first report.
    buckets: Vec<(u64, u64)>,
    sum: RunningSum,
}

impl Default for RunningHistogram {
    fn default() -> Self {
        RunningHistogram {
            buckets: Vec::new(),
            sum: RunningSum::Int(0),
        }
    }
}

impl RunningHistogram {
    /// `(upper bound, cumulative count)` per bucket, counts summed over every report since the
    /// series appeared (or its bounds last changed); empty before the first report.
    pub fn buckets(&self) -> &[(u64, u64)] {
        &self.buckets
    }

    /// The total count: the last bucket's cumulative count (what `le="+Inf"` holds).
    pub fn count(&self) -> u64 {
        self.buckets.last().map_or(0, |b| b.1)
    }

    /// The sum of the reports' SUMs.
    pub fn sum(&self) -> RunningSum {
        self.sum
    }

    /// Whether no report has been added.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Forgets every report, keeping the memory.
    fn clear(&mut self) {
        self.buckets.clear();
        self.sum = RunningSum::Int(0);
    }

    /// Adds one report's histogram value. A null value adds nothing; a value with other bucket
    /// bounds replaces the running histogram; a malformed one (ingress lets none through)
    /// clears it.
    pub fn add(&mut self, v: &[u8]) {
        if is_null(v) {
            return;
        }
        // The usual case in one pass: same bounds, add the counts as they are read.
        let (mut i, mut same) = (0, true);
        let buckets = &mut self.buckets;
        let walked = histogram::visit(v, |ub, cum| {
            match buckets.get_mut(i) {
                Some(b) if same && b.0 == ub => b.1 = b.1.saturating_add(cum),
                _ => same = false,
            }
            i += 1;
        });
        match walked {
            Ok((sum, _)) if same && i == self.buckets.len() => self.sum.add(sum),
            Ok(_) => {
                // New bounds (or the first report): start again from this report.
                self.clear();
                let buckets = &mut self.buckets;
                if let Ok((sum, _)) = histogram::visit(v, |ub, cum| buckets.push((ub, cum))) {
                    self.sum.add(sum);
                }
            }
            Err(_) => self.clear(),
        }
    }
}

/// The running histograms of every series of one table: `fields` per series, in consecutive
/// slots, reused after a series goes.
#[derive(Debug, Default)]
pub struct RunningStore {
    /// Indexes of the table's histogram fields, in meta order.
    fields: Box<[usize]>,
    hists: Vec<RunningHistogram>,
    /// Series slots of removed series, ready for reuse.
    free: Vec<u32>,
}

impl RunningStore {
    /// A store for a table whose histogram fields have these indexes (meta order).
    pub fn new(fields: Vec<usize>) -> Self {
        RunningStore {
            fields: fields.into_boxed_slice(),
            ..Default::default()
        }
    }

    /// Whether the table has histogram fields at all.
    #[inline]
    pub fn is_active(&self) -> bool {
        !self.fields.is_empty()
    }

    /// A slot for a new series, with empty histograms (0, holding nothing, when the table
    /// has no histogram field).
    pub fn alloc(&mut self) -> u32 {
        let n = self.fields.len();
        if n == 0 {
            return 0;
        }
        if let Some(slot) = self.free.pop() {
            let at = slot as usize * n;
            self.hists[at..at + n]
                .iter_mut()
                .for_each(RunningHistogram::clear);
            return slot;
        }
        let slot = (self.hists.len() / n) as u32;
        self.hists
            .resize_with(self.hists.len() + n, Default::default);
        slot
    }

    /// Gives back the slot of a removed series.
    pub fn release(&mut self, slot: u32) {
        self.free.push(slot);
    }

    /// Adds the histogram values of a record line (`v1|v2|...|vN|`) to the series' slot.
    pub fn add(&mut self, slot: u32, line: &[u8]) {
        let n = self.fields.len();
        let hists = &mut self.hists[slot as usize * n..(slot as usize + 1) * n];
        let mut want = self.fields.iter().zip(hists.iter_mut()).peekable();
        let mut start = 0;
        for (field, end) in gala_meta::scan::bars(line).enumerate() {
            let Some(&(&f, _)) = want.peek() else { break };
            if f == field {
                if let Some((_, h)) = want.next() {
                    h.add(&line[start..end]);
                }
            }
            start = end + 1;
        }
    }

    /// The running histogram of the `nth` histogram field (meta order) of a series' slot.
    pub fn get(&self, slot: u32, nth: usize) -> Option<&RunningHistogram> {
        if nth >= self.fields.len() {
            return None;
        }
        self.hists.get(slot as usize * self.fields.len() + nth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(reports: &[&str]) -> RunningHistogram {
        let mut h = RunningHistogram::default();
        for r in reports {
            h.add(r.as_bytes());
        }
        h
    }

    #[test]
    fn reports_add_up_bucket_by_bucket() {
        let h = running(&[
            "3 10 2 100 5 1000 6 4213 950",
            "3 10 1 100 1 1000 4 2500 990",
        ]);
        assert_eq!(h.buckets(), &[(10, 3), (100, 6), (1000, 10)]);
        assert_eq!(h.count(), 10);
        assert_eq!(h.sum(), RunningSum::Int(6713));
    }

    #[test]
    fn null_adds_nothing_and_new_bounds_restart() {
        let mut h = running(&["2 10 1 20 2 30 20", "(null)", ""]);
        assert_eq!((h.buckets(), h.count()), (&[(10, 1), (20, 2)][..], 2));
        h.add(b"2 10 1 50 3 70 40");
        assert_eq!(h.buckets(), &[(10, 1), (50, 3)], "other bounds restart");
        assert_eq!(h.sum(), RunningSum::Int(70));
        h.add(b"1 10 4 9 9");
        assert_eq!(h.buckets(), &[(10, 4)], "fewer buckets restart");
        h.add(b"2 10 1 x 5 5");
        assert!(h.is_empty(), "a malformed value clears");
    }

    #[test]
    fn the_sum_stays_exact_until_it_cannot() {
        let h = running(&["1 10 1 18446744073709551615 1", "1 10 1 0 0"]);
        assert_eq!(h.sum(), RunningSum::Int(u64::MAX));
        let h = running(&["1 10 1 18446744073709551615 1", "1 10 1 1 1"]);
        assert_eq!(h.sum(), RunningSum::Float(u64::MAX as f64 + 1.0));
        let h = running(&["1 10 1 3 1", "1 10 1 0.5 1", "1 10 1 2 1"]);
        assert_eq!(h.sum(), RunningSum::Float(5.5));
        let text = |s: RunningSum| {
            let mut out = Vec::new();
            s.write(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(RunningSum::Int(42)), "42");
        assert_eq!(text(RunningSum::Float(5.5)), "5.5");
        assert_eq!(text(RunningSum::Float(1e300)), "1e300");
        assert_eq!(text(running(&["1 1 1 +Inf 1"]).sum()), "+Inf");
        assert_eq!(text(running(&["1 1 1 -inf 1"]).sum()), "-Inf");
        assert_eq!(text(running(&["1 1 1 NaN 1"]).sum()), "NaN");
    }

    #[test]
    fn the_store_adds_the_histogram_fields_of_a_line_to_their_slot() {
        // Fields: key, histogram, gauge, histogram.
        let mut s = RunningStore::new(vec![1, 3]);
        assert!(s.is_active() && !RunningStore::default().is_active());
        let (a, b) = (s.alloc(), s.alloc());
        s.add(a, b"k|1 5 1 2 2|7|1 9 4 8 8|");
        s.add(a, b"k|1 5 2 3 3|7|(null)|");
        s.add(b, b"j|1 5 9 9 9|7|1 9 1 1 1|");
        assert_eq!(s.get(a, 0).unwrap().buckets(), &[(5, 3)]);
        assert_eq!(s.get(a, 1).unwrap().buckets(), &[(9, 4)]);
        assert_eq!(s.get(b, 0).unwrap().buckets(), &[(5, 9)]);
        assert!(s.get(a, 2).is_none());
        s.release(a);
        let c = s.alloc();
        assert_eq!(c, a, "a released slot is reused");
        assert!(s.get(c, 0).unwrap().is_empty() && s.get(c, 1).unwrap().is_empty());
        assert_eq!(s.get(b, 1).unwrap().count(), 1);
    }
}
