//! Label values as the Prometheus text format accepts them: UTF-8 without NUL or CR. One bad
//! byte in one label value makes Prometheus refuse the whole exposition (`invalid UTF-8 label
//! value`) and mark the target down, so values a probe copies from outside (process,
//! database, path names) are checked at ingest, where each case is counted by [`Flaw`], and
//! repaired at render ([`write_repaired`]), the bad bytes shown as U+FFFD as events already
//! are.

/// U+FFFD, the replacement character, in UTF-8.
const REPLACEMENT: &[u8] = "\u{FFFD}".as_bytes();

/// What makes a label value unfit for the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// A NUL byte.
    Nul,
    /// A carriage return (the format has no escape for it).
    Cr,
}

impl Flaw {
    /// Every flaw, in the order of [`Flaw::index`].
    pub const ALL: [Flaw; 3] = [Flaw::InvalidUtf8, Flaw::Nul, Flaw::Cr];

    /// The `reason` label of `gala_gopher_daemon_label_values_repaired_total`.
    pub fn as_str(self) -> &'static str {
        match self {
            Flaw::InvalidUtf8 => "invalid_utf8",
            Flaw::Nul => "nul",
            Flaw::Cr => "cr",
        }
    }

    /// The bytes it is about, for messages.
    pub fn what(self) -> &'static str {
        match self {
            Flaw::InvalidUtf8 => "invalid UTF-8",
            Flaw::Nul => "NUL",
            Flaw::Cr => "CR",
        }
    }

    /// Position in [`Flaw::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The flaw of `v` (invalid UTF-8 first, then NUL, then CR), or `None` for a clean value.
pub fn flaw(v: &[u8]) -> Option<Flaw> {
    if std::str::from_utf8(v).is_err() {
        return Some(Flaw::InvalidUtf8);
    }
    match memchr::memchr2(0, b'\r', v).map(|i| v[i]) {
        Some(0) => Some(Flaw::Nul),
        Some(_) => Some(Flaw::Cr),
        None => None,
    }
}

/// Writes `v` through `write` (which escapes clean text) with every invalid UTF-8 sequence,
/// NUL and CR replaced by U+FFFD.
pub fn write_repaired(v: &[u8], out: &mut Vec<u8>, write: impl Fn(&[u8], &mut Vec<u8>)) {
    for chunk in v.utf8_chunks() {
        let valid = chunk.valid().as_bytes();
        let mut start = 0;
        for i in memchr::memchr2_iter(0, b'\r', valid) {
            write(&valid[start..i], out);
            out.extend_from_slice(REPLACEMENT);
            start = i + 1;
        }
        write(&valid[start..], out);
        if !chunk.invalid().is_empty() {
            out.extend_from_slice(REPLACEMENT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repaired(v: &[u8]) -> String {
        let mut out = Vec::new();
        write_repaired(v, &mut out, |s, o| o.extend_from_slice(s));
        String::from_utf8(out).expect("always UTF-8")
    }

    #[test]
    fn flaws_are_found_in_order() {
        assert_eq!(flaw(b"nginx: worker"), None);
        assert_eq!(flaw("café".as_bytes()), None);
        assert_eq!(flaw(b"a\xffb"), Some(Flaw::InvalidUtf8));
        assert_eq!(flaw(b"a\0\xff"), Some(Flaw::InvalidUtf8));
        assert_eq!(flaw(b"a\0b\r"), Some(Flaw::Nul));
        assert_eq!(flaw(b"a\rb\0"), Some(Flaw::Cr));
        assert_eq!(flaw(b"caf\xc3"), Some(Flaw::InvalidUtf8), "a cut sequence");
    }

    #[test]
    fn bad_bytes_become_replacement_characters() {
        assert_eq!(repaired(b"ok"), "ok");
        assert_eq!(repaired(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(repaired(b"a\0b\rc"), "a\u{FFFD}b\u{FFFD}c");
        assert_eq!(repaired(b"\xc3\xa9\xc3"), "é\u{FFFD}");
        assert_eq!(repaired(b"\xff\xfe"), "\u{FFFD}\u{FFFD}");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_repair_to_clean_text(v in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let text = repaired(&v);
            proptest::prop_assert_eq!(flaw(text.as_bytes()), None);
            proptest::prop_assert_eq!(flaw(&v).is_none(), text.as_bytes() == v.as_slice());
        }
    }
}
