//! Finding the `|` separators of a record line, eight bytes at a time.
//!
//! Record values are a few bytes long, so a SIMD search restarted per value spends more on
//! set-up than on scanning; one pass over the line with a SWAR mask finds them all.

const BAR: u64 = u64::from_ne_bytes([b'|'; 8]);
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The positions of every `|` in a byte string, in order.
#[derive(Debug, Clone)]
pub struct Bars<'a> {
    s: &'a [u8],
    /// Offset of the word `mask` describes.
    base: usize,
    /// One high bit per `|` byte of the current word not yet returned.
    mask: u64,
}

/// Iterates over the positions of `|` in `s`.
pub fn bars(s: &[u8]) -> Bars<'_> {
    let mut b = Bars {
        s,
        base: 0,
        mask: 0,
    };
    b.mask = b.word_mask(0);
    b
}

impl Bars<'_> {
    /// Exact mask of `|` bytes in the (zero-padded) word at `at`: high bit of each match.
    #[inline]
    fn word_mask(&self, at: usize) -> u64 {
        let word = match self
            .s
            .get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
        {
            Some(full) => full,
            None => {
                // The last, partial word: zero-padded.
                let mut word = [0u8; 8];
                let tail = self.s.get(at..).unwrap_or_default();
                word[..tail.len()].copy_from_slice(tail);
                word
            }
        };
        let w = u64::from_le_bytes(word) ^ BAR;
        // A byte of `w` is zero exactly where the input holds '|'; padding bytes are 0 ^ '|'.
        !(((w & LOW7).wrapping_add(LOW7)) | w | LOW7)
    }
}

impl Iterator for Bars<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        while self.mask == 0 {
            self.base += 8;
            if self.base >= self.s.len() {
                return None;
            }
            self.mask = self.word_mask(self.base);
        }
        let pos = self.base + (self.mask.trailing_zeros() / 8) as usize;
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
            prop_oneof![Just(b'|'), Just(b'}'), Just(0u8), Just(0xfcu8), any::<u8>()], 0..100)) {
            let want: Vec<usize> = s.iter().enumerate().filter(|(_, &b)| b == b'|').map(|(i, _)| i).collect();
            prop_assert_eq!(bars(&s).collect::<Vec<_>>(), want);
        }
    }
}
