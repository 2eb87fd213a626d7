//! Per-period values from the cumulative per-CPU counters of the BPF maps: each read sums
//! the CPUs and subtracts the previous read of the same key.

use std::collections::HashMap;

use gala_ebpf::{read_pod, Pod};

/// The previous reading of each key of one counter map, with `N` counters per key.
#[derive(Debug, Default)]
pub struct CounterDeltas<const N: usize> {
    last: HashMap<u32, [u64; N]>,
}

/// Sums per-CPU values, each a `T` read as `N` counters by `counters`; a short CPU value
/// counts 0.
pub fn sum_cpus<T: Pod + Default, const N: usize>(
    per_cpu: &[Vec<u8>],
    counters: impl Fn(&T) -> [u64; N],
) -> [u64; N] {
    let mut out = [0u64; N];
    for value in per_cpu.iter().filter_map(|v| read_pod::<T>(v)) {
        for (slot, v) in out.iter_mut().zip(counters(&value)) {
            *slot = slot.wrapping_add(v);
        }
    }
    out
}

impl<const N: usize> CounterDeltas<N> {
    /// What `key` counted since the last call (everything on the first call after the
    /// key appeared). A counter below its previous reading restarted (a reload, or the key
    /// was evicted and re-created): its whole value counts.
    pub fn delta(&mut self, key: u32, now: [u64; N]) -> [u64; N] {
        let prev = self.last.insert(key, now).unwrap_or([0; N]);
        let mut out = [0u64; N];
        for i in 0..N {
            out[i] = if now[i] >= prev[i] {
                now[i] - prev[i]
            } else {
                now[i]
            };
        }
        out
    }

    /// Forgets every reading (a new BPF object starts from zero).
    pub fn reset(&mut self) {
        self.last.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_between_reads() {
        let mut d = CounterDeltas::<2>::default();
        assert_eq!(d.delta(7, [4096, 0]), [4096, 0]);
        assert_eq!(d.delta(7, [4096, 8192]), [0, 8192]);
        assert_eq!(d.delta(7, [10_000, 8192]), [10_000 - 4096, 0]);
        // restarted counters
        assert_eq!(d.delta(7, [100, 50]), [100, 50]);
        d.reset();
        assert_eq!(d.delta(7, [200, 50]), [200, 50]);
    }

    #[test]
    fn per_cpu_sum() {
        let cpu = |a: u64, b: u64| [a.to_ne_bytes(), b.to_ne_bytes()].concat();
        let v = vec![cpu(1, 2), cpu(10, 20), vec![1, 2, 3]];
        let both = |c: &[u64; 2]| *c;
        assert_eq!(sum_cpus(&v, both), [11, 22]);
        assert_eq!(sum_cpus(&[], both), [0, 0]);
    }
}
