//! Splits a byte stream into lines with bounded memory.

/// Buffers a stream and hands out complete lines; a line longer than `max_line_len` is
/// reported once (by its head) and its remaining bytes are skipped up to the next newline.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    filled: usize,
    max_line_len: usize,
    discarding: bool,
}

/// Bytes read at once at least: the probe pipe's size, so one read can drain it.
const READ_SIZE: usize = 1 << 20;

/// Bytes of an over-long line passed to the callback to identify it.
const HEAD_LEN: usize = 200;

impl LineSplitter {
    /// A splitter for lines of at most `max_line_len` bytes (newline excluded).
    pub fn new(max_line_len: usize) -> Self {
        LineSplitter {
            buf: vec![0; max_line_len + READ_SIZE],
            filled: 0,
            max_line_len,
            discarding: false,
        }
    }

    /// The free part of the buffer, to read into; never empty.
    pub fn spare(&mut self) -> &mut [u8] {
        &mut self.buf[self.filled..]
    }

    /// Accounts for `n` bytes read into [`LineSplitter::spare`] and calls `f` with every
    /// complete line (`Ok`, newline removed) or the head of an over-long line (`Err`).
    /// At `eof` a final line without newline is passed on too.
    pub fn filled(&mut self, n: usize, eof: bool, mut f: impl FnMut(Result<&[u8], &[u8]>)) {
        let end = self.filled + n;
        let data = &self.buf[..end];
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            if self.discarding {
                self.discarding = false;
            } else {
                f(self.check(&data[start..nl]));
            }
            start = nl + 1;
        }
        let tail = end - start;
        if self.discarding {
            self.filled = 0;
        } else if eof {
            if tail > 0 {
                f(self.check(&data[start..end]));
            }
            self.filled = 0;
        } else if tail > self.max_line_len {
            f(Err(&data[start..start + HEAD_LEN.min(tail)]));
            self.discarding = true;
            self.filled = 0;
        } else {
            self.buf.copy_within(start..end, 0);
            self.filled = tail;
        }
    }
}

impl LineSplitter {
    fn check<'a>(&self, line: &'a [u8]) -> Result<&'a [u8], &'a [u8]> {
        if line.len() > self.max_line_len {
            Err(&line[..HEAD_LEN.min(line.len())])
        } else {
            Ok(line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` through a splitter and returns what it produced.
    fn run(max: usize, chunks: &[&[u8]]) -> Vec<Result<Vec<u8>, Vec<u8>>> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for (i, c) in chunks.iter().enumerate() {
            s.spare()[..c.len()].copy_from_slice(c);
            let eof = i + 1 == chunks.len();
            s.filled(c.len(), false, |r| {
                out.push(r.map(<[u8]>::to_vec).map_err(<[u8]>::to_vec))
            });
            if eof {
                s.filled(0, true, |r| {
                    out.push(r.map(<[u8]>::to_vec).map_err(<[u8]>::to_vec))
                });
            }
        }
        out
    }

    #[test]
    fn joins_lines_across_reads() {
        let out = run(100, &[b"|a|1|\n|b|", b"2|\n|c|3|"]);
        assert_eq!(
            out,
            vec![
                Ok(b"|a|1|".to_vec()),
                Ok(b"|b|2|".to_vec()),
                Ok(b"|c|3|".to_vec())
            ]
        );
    }

    #[test]
    fn skips_an_overlong_line_whole_and_keeps_the_next() {
        let long = [b'x'; 50];
        let out = run(20, &[&long[..30], &long[30..], b"\n|ok|1|\n"]);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_err());
        assert_eq!(out[1], Ok(b"|ok|1|".to_vec()));
    }

    #[test]
    fn a_line_of_exactly_the_limit_passes() {
        let line = vec![b'y'; 20];
        let mut input = line.clone();
        input.push(b'\n');
        assert_eq!(run(20, &[&input[..10], &input[10..]]), vec![Ok(line)]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// Any chunking of any input yields the lines of a plain split.
        #[test]
        fn chunking_does_not_change_lines(
            input in proptest::collection::vec(proptest::sample::select(vec![b'a', b'|', b'\n']), 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().filter(|&c| c <= input.len()).collect();
            cuts.extend([0, input.len()]);
            cuts.sort_unstable();
            let chunks: Vec<&[u8]> = cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect();
            let got = run(1000, &chunks);
            let mut want: Vec<Result<Vec<u8>, Vec<u8>>> =
                input.split(|&b| b == b'\n').map(|l| Ok(l.to_vec())).collect();
            if want.last().is_some_and(|l| l.as_ref().is_ok_and(Vec::is_empty)) {
                want.pop();
            }
            proptest::prop_assert_eq!(got, want);
        }

        /// With a small limit, every output line respects it and nothing panics.
        #[test]
        fn long_lines_never_pass(
            input in proptest::collection::vec(proptest::sample::select(vec![b'a', b'\n']), 0..400),
            cut in 0usize..400,
        ) {
            let cut = cut.min(input.len());
            for line in run(8, &[&input[..cut], &input[cut..]]).into_iter().flatten() {
                proptest::prop_assert!(line.len() <= 8);
            }
        }
    }
}
