//! The original's "unsafe characters" rule for paths and names that reach the system.

/// Characters the original refuses in paths and names (`| ; & $ > < ( ) ? * ' `` ` `` [ ] \ !`).
const UNSAFE_CHARS: &[char] = &[
    '|', ';', '&', '$', '>', '<', '(', ')', '?', '*', '\'', '`', '[', ']', '\\', '!',
];

/// Sequences the original refuses (they allow `..` traversal and hidden names).
const UNSAFE_SEQUENCES: &[&str] = &["./", "/."];

/// The first character or sequence of `s` the original refuses (control characters too).
pub fn first_unsafe(s: &str) -> Option<String> {
    s.char_indices().find_map(|(at, c)| {
        if UNSAFE_CHARS.contains(&c) || c.is_control() {
            return Some(c.to_string());
        }
        UNSAFE_SEQUENCES
            .iter()
            .find(|seq| s[at..].starts_with(**seq))
            .map(|seq| (*seq).to_owned())
    })
}

/// Whether `s` holds a character or sequence the original refuses, or any control character.
pub fn has_unsafe_chars(s: &str) -> bool {
    first_unsafe(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::has_unsafe_chars;

    #[test]
    fn refuses_shell_metacharacters_traversal_and_control_chars() {
        for bad in [
            "a|b",
            "a;b",
            "$(x)",
            "../x",
            "/a/./b",
            "a/.hidden",
            "x\ny",
            "a`b`",
            "a\\b",
        ] {
            assert!(has_unsafe_chars(bad), "{bad:?}");
        }
        for good in [
            "/opt/gala-gopher/extend_probes/tcpprobe",
            "/var/log/gala-gopher/x_1.meta",
        ] {
            assert!(!has_unsafe_chars(good), "{good:?}");
        }
    }
}
