//! Reading proc trees: the pids a proc directory lists, and kernel files read without the
//! size query (`statx`) `std::fs::read` makes first (procfs and cgroupfs files report no
//! size).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

/// Reads `path` into `buf` (cleared first) with plain `read` calls, to the end: a short read
/// is not the end of every kernel file (`smaps` hands out one page at a time).
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
    let mut file = File::open(path)?;
    buf.clear();
    loop {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        let len = buf.len();
        let spare = buf.capacity() - len;
        buf.resize(len + spare, 0);
        match file.read(&mut buf[len..]) {
            Ok(0) => {
                buf.truncate(len);
                return Ok(());
            }
            Ok(n) => buf.truncate(len + n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(len),
            Err(e) => {
                buf.truncate(len);
                return Err(e);
            }
        }
    }
}

/// The pids listed in `proc_root` (`/proc`, or the host's seen from a container), in
/// directory order; entries that vanish while listed are skipped.
pub fn pids(proc_root: &Path) -> io::Result<impl Iterator<Item = u32>> {
    let entries = std::fs::read_dir(proc_root)?;
    Ok(entries.filter_map(|e| parse_pid(e.ok()?.file_name().to_str()?)))
}

/// A `/proc` directory name as a pid; `None` for `self`, `sys`, ..., for `+1` and for 0.
pub fn parse_pid(name: &str) -> Option<u32> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|&pid| pid != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pid_directories_count() {
        assert_eq!(parse_pid("42"), Some(42));
        assert_eq!(parse_pid("4194304"), Some(4_194_304));
        for name in [
            "self",
            "thread-self",
            "",
            "+1",
            "-1",
            "0",
            "99999999999",
            "1a",
        ] {
            assert_eq!(parse_pid(name), None, "{name}");
        }
        let me = std::process::id();
        assert!(pids(Path::new("/proc")).unwrap().any(|p| p == me));
        assert!(pids(Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn kernel_files_are_read_whole() {
        let mut buf = Vec::new();
        read_into(Path::new("/proc/self/status"), &mut buf).unwrap();
        let text = String::from_utf8(buf.clone()).unwrap();
        assert!(
            text.starts_with("Name:") && text.contains("\nPid:"),
            "{text}"
        );
        // Longer than a page: /proc/self/smaps of any process.
        read_into(Path::new("/proc/self/smaps"), &mut buf).unwrap();
        assert!(buf.len() > 4096, "{}", buf.len());
        assert!(read_into(Path::new("/nonexistent"), &mut buf).is_err());
    }
}
