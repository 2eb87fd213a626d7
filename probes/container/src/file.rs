//! Reading small kernel files: one `open` and `read`s into a buffer sized for them, without
//! the size query (`statx`) and seek `std::fs::read_to_string` makes first — a third of the
//! system calls of a cycle otherwise, and sizes of procfs and cgroupfs files are always 0 or 4096.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Most kernel files the probe reads fit in one page.
const FIRST_READ: usize = 4096;

/// The text of `path`.
pub fn read_text(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut buf = Vec::with_capacity(FIRST_READ);
    loop {
        if buf.len() == buf.capacity() {
            buf.reserve(FIRST_READ);
        }
        let len = buf.len();
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        match file.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                break;
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => return Err(e),
        }
    }
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_small_and_large_files_whole() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, 4095, 4096, 4097, 20_000] {
            let path = dir.path().join(format!("f{len}"));
            let text: String = (0..len)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            std::fs::write(&path, &text).unwrap();
            assert_eq!(read_text(&path).unwrap(), text);
        }
        assert!(read_text(&dir.path().join("missing")).is_err());
        std::fs::write(dir.path().join("bin"), [0xff, 0xfe]).unwrap();
        assert_eq!(
            read_text(&dir.path().join("bin")).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
