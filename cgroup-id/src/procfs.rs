//! The processes of a proc tree: the pids its directory lists.

use std::io;
use std::path::Path;

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
}
