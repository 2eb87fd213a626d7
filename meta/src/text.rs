//! Reading a configuration or meta file as text: invalid UTF-8 is reported with the line it
//! is on, like every other error in these files.

use std::path::Path;

/// Why a file could not be read as text.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file holds bytes that are not UTF-8.
    #[error("line {line}: not valid UTF-8 (byte {column} of the line)")]
    NotUtf8 {
        /// 1-based line of the first invalid byte.
        line: u32,
        /// 1-based byte offset of that byte in its line.
        column: usize,
    },
}

/// Reads the file at `path` as UTF-8 text.
pub fn read_text(path: &Path) -> Result<String, TextError> {
    let bytes = std::fs::read(path)?;
    String::from_utf8(bytes).map_err(|e| {
        let (line, column) = position(e.as_bytes(), e.utf8_error().valid_up_to());
        TextError::NotUtf8 { line, column }
    })
}

/// The 1-based line and byte-in-line of offset `at` of `bytes`.
fn position(bytes: &[u8], at: usize) -> (u32, usize) {
    let before = &bytes[..at];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    (u32::try_from(line).unwrap_or(u32::MAX), at - start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_utf8_is_found_by_line_and_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.conf");
        std::fs::write(&path, b"a = 1;\nname = \"caf\xe9\";\n").unwrap();
        let e = read_text(&path).unwrap_err();
        assert!(
            matches!(
                e,
                TextError::NotUtf8 {
                    line: 2,
                    column: 12
                }
            ),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "line 2: not valid UTF-8 (byte 12 of the line)"
        );
    }

    #[test]
    fn positions() {
        assert_eq!(position(b"\xff", 0), (1, 1));
        assert_eq!(position(b"ab\n\ncd\xff", 6), (3, 3));
    }

    #[test]
    fn text_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ok");
        std::fs::write(&path, "é\n").unwrap();
        assert_eq!(read_text(&path).unwrap(), "é\n");
        let missing = read_text(&dir.path().join("none")).unwrap_err();
        assert!(
            matches!(missing, TextError::Io(ref e) if e.kind() == std::io::ErrorKind::NotFound)
        );
    }
}
