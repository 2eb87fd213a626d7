//! Fixed-bucket histograms in the record encoding `N ub_1 cum_1 ... ub_N cum_N SUM MAX`
//! (cumulative counts). The last bucket is always `u64::MAX`, so a value above the largest
//! configured bound is still counted (the daemon renders `+Inf` from the total).

/// A histogram over fixed upper bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    bounds: &'static [u64],
    counts: Vec<u64>,
    sum: u64,
    max: u64,
}

impl Histogram {
    /// An empty histogram over `bounds` (strictly increasing), plus the overflow bucket.
    pub fn new(bounds: &'static [u64]) -> Self {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0,
            max: 0,
        }
    }

    /// Counts one value.
    pub fn record(&mut self, v: u64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum = self.sum.saturating_add(v);
        self.max = self.max.max(v);
    }

    /// Adds another histogram over the same bounds.
    pub fn merge(&mut self, other: &Histogram) {
        debug_assert_eq!(self.bounds, other.bounds);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// Number of values counted.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Largest value counted (0 when empty).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Whether no value was counted.
    pub fn is_empty(&self) -> bool {
        self.count() == 0
    }

    /// Forgets every value, keeping the bounds.
    pub fn clear(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.sum = 0;
        self.max = 0;
    }

    /// The record encoding.
    pub fn encode(&self) -> String {
        use std::fmt::Write;
        let mut out = format!("{}", self.counts.len());
        let mut cum = 0;
        let bounds = self.bounds.iter().copied().chain([u64::MAX]);
        for (ub, c) in bounds.zip(&self.counts) {
            cum += c;
            let _ = write!(out, " {ub} {cum}");
        }
        let _ = write!(out, " {} {}", self.sum, self.max);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_with_an_overflow_bucket() {
        let mut h = Histogram::new(&[10, 100]);
        for v in [1, 10, 11, 500] {
            h.record(v);
        }
        assert_eq!(h.encode(), "3 10 2 100 3 18446744073709551615 4 522 500");
        let mut g = Histogram::new(&[10, 100]);
        g.merge(&h);
        g.record(50);
        assert_eq!(g.count(), 5);
        assert_eq!(g.max(), 500);
        g.clear();
        assert!(g.is_empty());
        assert_eq!(g.encode(), "3 10 0 100 0 18446744073709551615 0 0 0");
    }

    #[test]
    fn encoding_is_accepted_by_the_daemon() {
        let mut h = Histogram::new(&[50, 100, 200]);
        h.record(70);
        h.record(5000);
        gala_meta::histogram::validate(h.encode().as_bytes()).expect("valid histogram");
    }
}
