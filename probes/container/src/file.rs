//! Reading small kernel files: one `open` and `read`s into a buffer sized for them, without
//! the size query (`statx`) and seek `std::fs::read_to_string` makes first — a third of the
//! system calls of a cycle otherwise, and sizes of procfs and cgroupfs files are always 0 or
//! 4096 — and noting, as a warning, a file that cannot be read or parsed.

use std::io;
use std::path::Path;

use crate::error::Error;
use crate::parse;

/// The text of `path`.
pub fn read_text(path: &Path) -> io::Result<String> {
    let mut buf = Vec::new();
    gala_cgroup::read_into(path, &mut buf)?;
    String::from_utf8(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Problems met while reading one container: `(key, message)`, the key naming the file.
pub type Warnings = Vec<(String, String)>;

/// Reads `path`, or records why not.
pub fn read(path: &Path, warnings: &mut Warnings) -> Option<String> {
    match read_text(path) {
        Ok(text) => Some(text),
        Err(source) => {
            let message = Error::Read {
                path: path.to_path_buf(),
                source,
            }
            .to_string();
            warnings.push((path.display().to_string(), message));
            None
        }
    }
}

/// Records that `path` does not hold what the kernel writes there.
pub fn unexpected(path: &Path, warnings: &mut Warnings) {
    let message = Error::Parse {
        path: path.to_path_buf(),
    }
    .to_string();
    warnings.push((path.display().to_string(), message));
}

/// Reads one number from `dir/name`.
pub fn number(dir: &Path, name: &str, warnings: &mut Warnings) -> Option<u64> {
    let path = dir.join(name);
    let v = parse::single_u64(&read(&path, warnings)?);
    if v.is_none() {
        unexpected(&path, warnings);
    }
    v
}

/// Reads `keys` from the flat-keyed file `dir/name`.
pub fn keyed<const N: usize>(
    dir: &Path,
    name: &str,
    keys: [&str; N],
    warnings: &mut Warnings,
) -> [Option<u64>; N] {
    let path = dir.join(name);
    match read(&path, warnings) {
        Some(text) => parse::flat_keyed(&text, keys),
        None => [None; N],
    }
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
