//! The series of one table: records in a dense vector, found through an open-addressing index.
//!
//! Ingest updates known series far more often than it adds new ones, and with thousands of
//! series each lookup misses the cache. The index is a flat array of 8-byte slots (no
//! tombstones: removals rebuild it), so the writer can prefetch a whole run of lookups —
//! slot, record, record data — before doing them (see [`SeriesMap::prefetch`]).

use super::Record;

/// An empty slot; otherwise the high 32 bits hold the hash's high half and the low 32 bits the
/// record's index plus one.
const EMPTY: u64 = 0;

/// Records by key hash; the caller compares keys.
#[derive(Default)]
pub struct SeriesMap {
    slots: Vec<u64>,
    records: Vec<Record>,
}

/// The high half of a hash, as stored in a slot.
fn tag(hash: u64) -> u64 {
    hash >> 32
}

impl SeriesMap {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// The records, in no particular order.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The index of the record with `hash` whose key `is_key` accepts.
    #[inline]
    pub fn find(&self, hash: u64, mut is_key: impl FnMut(&Record) -> bool) -> Option<usize> {
        let mask = self.slots.len().checked_sub(1)?;
        let mut i = hash as usize & mask;
        loop {
            let slot = self.slots[i];
            if slot == EMPTY {
                return None;
            }
            if slot >> 32 == tag(hash) {
                let idx = (slot as u32 - 1) as usize;
                if is_key(&self.records[idx]) {
                    return Some(idx);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// The record at `idx` (from [`SeriesMap::find`]).
    pub fn get_mut(&mut self, idx: usize) -> &mut Record {
        &mut self.records[idx]
    }

    /// Adds a record whose key is not present.
    pub fn insert(&mut self, rec: Record) {
        if (self.records.len() + 1) * 2 > self.slots.len() {
            self.rebuild((self.slots.len() * 2).max(16));
        }
        self.records.push(rec);
        let idx = self.records.len() - 1;
        self.place(self.records[idx].hash, idx);
    }

    /// Keeps the records `keep` accepts; returns how many went.
    pub fn retain(&mut self, keep: impl FnMut(&Record) -> bool) -> usize {
        let before = self.records.len();
        self.records.retain(keep);
        let removed = before - self.records.len();
        if removed > 0 {
            let want = (self.records.len() * 2).next_power_of_two().max(16);
            // Shrink only when far too big, so a table that breathes does not thrash.
            let size = if self.slots.len() > want * 4 {
                want
            } else {
                self.slots.len()
            };
            self.rebuild(size);
        }
        removed
    }

    /// Asks the CPU to fetch what finding `hash` will read first: its home slot.
    #[inline]
    pub fn prefetch_slot(&self, hash: u64) {
        if let Some(mask) = self.slots.len().checked_sub(1) {
            prefetch(&self.slots[hash as usize & mask]);
        }
    }

    /// Once the slot is cached: fetches the record the home slot points at, if its tag
    /// matches (`data` says whether to fetch the record itself or its data).
    #[inline]
    pub fn prefetch_record(&self, hash: u64, data: bool) {
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return;
        };
        let slot = self.slots[hash as usize & mask];
        if slot != EMPTY && slot >> 32 == tag(hash) {
            let rec = &self.records[(slot as u32 - 1) as usize];
            if data {
                if let Some(b) = rec.data.first() {
                    prefetch(b);
                }
            } else {
                prefetch(rec);
            }
        }
    }

    fn rebuild(&mut self, size: usize) {
        self.slots.clear();
        self.slots.resize(size, EMPTY);
        for idx in 0..self.records.len() {
            self.place(self.records[idx].hash, idx);
        }
    }

    fn place(&mut self, hash: u64, idx: usize) {
        let mask = self.slots.len() - 1;
        let mut i = hash as usize & mask;
        while self.slots[i] != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = tag(hash) << 32 | (idx as u64 + 1);
    }
}

/// A hint to load the cache line holding `r`.
#[inline]
fn prefetch<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: a prefetch is a hint that never faults; `r` is a valid reference anyway.
        unsafe { _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(hash: u64, key: &str) -> Record {
        Record {
            hash,
            key_len: key.len() as u32,
            running: 0,
            data: key.as_bytes().to_vec(),
            updated_ms: 0,
            expires_ms: 0,
            seq: 0,
        }
    }

    fn find(m: &SeriesMap, hash: u64, key: &str) -> Option<usize> {
        m.find(hash, |r| r.key() == key.as_bytes())
    }

    #[test]
    fn finds_records_with_colliding_hashes_and_survives_growth_and_removal() {
        let mut m = SeriesMap::default();
        assert_eq!(find(&m, 7, "a"), None);
        // Same home slot and same tag: only the key tells them apart.
        for i in 0..100u64 {
            m.insert(rec(
                if i % 2 == 0 { 7 } else { i << 40 | 3 },
                &format!("k{i}"),
            ));
        }
        for i in 0..100u64 {
            let h = if i % 2 == 0 { 7 } else { i << 40 | 3 };
            let idx = find(&m, h, &format!("k{i}")).expect("present");
            assert_eq!(m.records()[idx].key(), format!("k{i}").as_bytes());
            m.prefetch_slot(h);
            m.prefetch_record(h, true);
        }
        assert_eq!(find(&m, 7, "k1"), None);
        assert_eq!(m.retain(|r| r.hash != 7), 50);
        assert_eq!(m.len(), 50);
        assert_eq!(find(&m, 7, "k0"), None);
        assert!(find(&m, 1 << 40 | 3, "k1").is_some());
        assert_eq!(m.retain(|_| false), 50);
        assert_eq!(find(&m, 1 << 40 | 3, "k1"), None);
    }
}
