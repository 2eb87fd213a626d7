//! Finding the `|` separators of a record line, eight bytes at a time.
//!
//! Record values are a few bytes long, so a SIMD search restarted per value spends more on
//! set-up than on scanning; one pass over the line with a SWAR mask finds them all.

const BAR: u64 = u64::from_ne_bytes([b'|'; 8]);
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
/// Gathers the high bit of each byte of a word into the low eight bits of the product's top byte.
const GATHER: u64 = 0x0102_0408_1020_4080;

/// The positions of every `|` in a byte string, in order.
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    s: &'a [u8],
    /// Offset of the 64-byte block `mask` describes.
    base: usize,
    /// One bit per `|` byte of the current block not yet returned.
    mask: u64,
}

/// Iterates over the positions of `|` in `s`.
pub fn bars(s: &[u8]) -> Bars<'_> {
    Bars {
        s,
        base: 0,
        mask: block_mask(s),
    }
}

/// One bit per `|` among the first 64 bytes of `s` (bit i = byte i). The eight words are
/// scanned without data-dependent branches, so short fields cost no mispredictions.
#[inline]
fn block_mask(s: &[u8]) -> u64 {
    let mut mask = 0u64;
    let block = &s[..s.len().min(64)];
    let mut words = block.chunks_exact(8);
    let mut shift = 0;
    for w in &mut words {
        mask |= word_bits(u64::from_le_bytes(w.try_into().unwrap_or([0; 8]))) << shift;
        shift += 8;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 8];
        word[..tail.len()].copy_from_slice(tail);
        // Padding bytes are zero, never '|'.
        mask |= word_bits(u64::from_le_bytes(word)) << shift;
    }
    mask
}

/// Eight bits, one per byte of `word` that is `|`.
#[inline]
fn word_bits(word: u64) -> u64 {
    let w = word ^ BAR;
    // A byte of `w` is zero exactly where the input holds '|': exact high-bit flags.
    let high = !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7);
    (high >> 7).wrapping_mul(GATHER) >> 56
}

impl Iterator for Bars<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 64;
            if self.base >= self.s.len() {
                return None;
            }
            self.mask = block_mask(&self.s[self.base..]);
        }
        let pos = self.base + self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some(pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_every_bar() {
        assert_eq!(bars(b"").collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(bars(b"|").collect::<Vec<_>>(), vec![0]);
        assert_eq!(
            bars(b"a|}|b||0123456789|").collect::<Vec<_>>(),
            vec![1, 3, 5, 6, 17]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        /// Same positions as a plain byte search, for any bytes (incl. '}' = '|' ^ 1 and 0xfc).
        #[test]
        fn matches_a_plain_search(s in proptest::collection::vec(
            prop_oneof![Just(b'|'), Just(b'}'), Just(0u8), Just(0xfcu8), Just(0x80u8), any::<u8>()], 0..300)) {
            let want: Vec<usize> = s.iter().enumerate().filter(|(_, &b)| b == b'|').map(|(i, _)| i).collect();
            prop_assert_eq!(bars(&s).collect::<Vec<_>>(), want);
        }
    }
}
