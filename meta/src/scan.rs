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

/// One bit per `|` among the first 64 bytes of `s` (bit i = byte i).
#[inline(always)]
fn block_mask(s: &[u8]) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if let Some(block) = s.first_chunk::<64>() {
            return block_mask_sse2(block);
        }
        // The short tail of a line: copied into a zeroed block (zero is never '|').
        let mut block = [0u8; 64];
        block[..s.len()].copy_from_slice(s);
        block_mask_sse2(&block)
    }
    #[cfg(not(target_arch = "x86_64"))]
    block_mask_swar(s)
}

/// [`block_mask`] of a whole block with SSE2, which every x86_64 CPU has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn block_mask_sse2(block: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
    };
    let mut mask = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        // SAFETY: SSE2 is part of the x86_64 baseline, and `chunk` is 16 readable bytes (the
        // load has no alignment requirement).
        let bits = unsafe {
            let v = _mm_loadu_si128(chunk.as_ptr().cast::<__m128i>());
            _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(b'|' as i8)))
        };
        mask |= u64::from(bits as u16) << (16 * i);
    }
    mask
}

/// [`block_mask`] over eight-byte words, without data-dependent branches, on other
/// architectures.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn block_mask_swar(s: &[u8]) -> u64 {
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

    #[inline(always)]
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

        /// The portable word scan and the SSE2 one agree on every block.
        #[test]
        fn both_block_scans_agree(s in proptest::collection::vec(
            prop_oneof![Just(b'|'), Just(b'}'), any::<u8>()], 0..80)) {
            prop_assert_eq!(block_mask_swar(&s), block_mask(&s));
        }
    }
}
