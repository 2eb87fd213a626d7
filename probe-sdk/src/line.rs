//! The separators of the line format: what a value may not hold, and how free text is made
//! safe to hold. Records and events both follow these rules.

use std::borrow::Cow;

/// True if `bytes` would break a line: it holds `|`, `\n` or `\r`.
pub fn breaks_line(bytes: &[u8]) -> bool {
    bytes.iter().any(|b| matches!(b, b'|' | b'\n' | b'\r'))
}

/// Makes free text safe inside a line: `|` becomes `/`, `\r` and `\n` a space.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    if !breaks_line(text.as_bytes()) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| match c {
                '|' => '/',
                '\r' | '\n' => ' ',
                c => c,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators_break_a_line() {
        for bad in ["|", "a|b", "\n", "a\rb"] {
            assert!(breaks_line(bad.as_bytes()), "{bad:?}");
        }
        for ok in ["", "a b", "a/b", "\t", "é"] {
            assert!(!breaks_line(ok.as_bytes()), "{ok:?}");
        }
    }

    #[test]
    fn escaping_replaces_separators_and_borrows_clean_text() {
        assert_eq!(escape_text("a|b\nc\rd"), "a/b c d");
        assert!(matches!(escape_text("clean"), Cow::Borrowed("clean")));
    }
}
